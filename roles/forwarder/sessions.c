/*-------------------------------------------------------------------------
 *
 * sessions.c
 *	  The forwarder's session table: states, the end of a session, what
 *	  its sockets wait for, the refusal.
 *
 * Session states (fw_set_state() is the one setter):
 *	 FW_FIRST		reading the head of the client's first packet
 *	 FW_REFUSING	'N' sent to an SSLRequest or GSSENCRequest that no
 *					instance can take: the ErrorResponse follows the
 *					startup packet
 *	 FW_CONNECTING	a non-blocking connect to the chosen instance
 *	 FW_RELAY		bytes both ways (relay.c)
 *	 FW_CANCEL		a CancelRequest on its way to an instance (cancel.c)
 * Every state but FW_RELAY ends at a deadline (the first packet within
 * FW_FIRST_TIMEOUT_MS of accepting, a connect within
 * heartbeat_connect_timeout); a relayed session lasts as long as its
 * client and server keep it.  A session's epoll events carry its index and
 * generation, so that an event of a session ended meanwhile, or of its
 * slot's next session, is told apart.
 *
 *-------------------------------------------------------------------------
 */
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "forwarder.h"

_Static_assert(SHM_MAX_FORWARDS == CMCONF_MAX_FORWARDS &&
			   SHM_MAX_INSTANCES == CMCONF_MAX_INSTANCES,
			   "the shared counts have a place for every port and instance");

fw_sess    *fw_sessions;
int			fw_nsessions_alloc;
int			fw_nsessions_used;
int			fw_nclients;
int			fw_ntimed;

/* The states that end at a deadline: the first packet, the connect. */
bool
fw_timed(fw_state state)
{
	return state == FW_FIRST || state == FW_REFUSING ||
		state == FW_CONNECTING || state == FW_CANCEL;
}

/*
 * The one setter of a session's state; it counts the sessions with a
 * deadline, so that a wake-up with none (every session relaying) does not
 * look at the table at all.
 */
void
fw_set_state(fw_sess *s, fw_state state)
{
	fw_ntimed += (int) fw_timed(state) - (int) fw_timed(s->state);
	s->state = state;
}

fw_sess *
fw_new(void)
{
	for (int i = 0; i < fw_nsessions_alloc; i++)
		if (fw_sessions[i].state == FW_FREE)
		{
			fw_sess    *s = &fw_sessions[i];
			uint32_t	gen = s->gen + 1;

			memset(s, 0, sizeof(*s));
			s->gen = gen ? gen : 1;
			s->cfd = s->sfd = -1;
			s->pipes[0][0] = s->pipes[0][1] = s->pipes[1][0] = s->pipes[1][1] = -1;
			s->instno = -1;
			fw_nsessions_used++;
			return s;
		}
	{
		int			n = fw_nsessions_alloc ? fw_nsessions_alloc * 2 : 64;
		fw_sess    *grown = realloc(fw_sessions, sizeof(fw_sess) * n);

		if (grown == NULL)
			return NULL;
		memset(grown + fw_nsessions_alloc, 0, sizeof(fw_sess) * (n - fw_nsessions_alloc));
		fw_sessions = grown;
		fw_nsessions_alloc = n;
	}
	return fw_new();
}

int
fw_idx(const fw_sess *s)
{
	return (int) (s - fw_sessions);
}

void
fw_close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

void
fw_end(fw_sess *s)
{
	if (s->counted)
		__atomic_fetch_sub(&fw_ctx->shm->fw_sessions[s->port][s->instno], 1, __ATOMIC_RELAXED);
	if (s->client)
		fw_nclients--;
	s->counted = false;
	s->client = false;
	fw_close_fd(&s->cfd);
	fw_close_fd(&s->sfd);
	for (int d = 0; d < 2; d++)
	{
		fw_close_fd(&s->pipes[d][0]);
		fw_close_fd(&s->pipes[d][1]);
	}
	fw_set_state(s, FW_FREE);
	fw_nsessions_used--;
}

/* Register what each socket waits for now, when it changed. */
bool
fw_watch(fw_sess *s, uint32_t cmask, uint32_t smask)
{
	if (s->cfd >= 0 && cmask != s->cmask)
	{
		if (!fw_ep_set(EPOLL_CTL_MOD, s->cfd, cmask, EV_MAKE(EV_CLIENT, s->gen, fw_idx(s))))
			return false;
		s->cmask = cmask;
	}
	if (s->sfd >= 0 && smask != s->smask)
	{
		if (!fw_ep_set(s->smask == 0 && s->state == FW_CONNECTING ? EPOLL_CTL_ADD : EPOLL_CTL_MOD,
					   s->sfd, smask, EV_MAKE(EV_SERVER, s->gen, fw_idx(s))))
			return false;
		s->smask = smask;
	}
	return true;
}

/*
 * Tell the client why it gets no instance, as a server would: the
 * ErrorResponse, then the end of the session.
 */
void
fw_refuse(fw_sess *s, const char *sqlstate, const char *message)
{
	uint8_t		buf[CMPROTO_PG_MAX_ERROR];
	int			n = cmproto_pg_encode_error(buf, sizeof(buf), sqlstate, message, NULL);

	if (n > 0)
		(void) !send(s->cfd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);

	/*
	 * The rest of the client's packet, unread, would make the close a reset
	 * that can overtake the ErrorResponse: read what has come.
	 */
	while (recv(s->cfd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
	fw_end(s);
}

const char *
fw_target_name(const fw_sess *s)
{
	return cmproto_target_name(s->target);
}
