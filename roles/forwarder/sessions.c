/*-------------------------------------------------------------------------
 *
 * sessions.c
 *	  The forwarder's sessions: states and their deadlines, the end of a
 *	  session, what its sockets wait for, the refusal.
 *
 * Session states (fw_set_state() is the one setter):
 *	 FW_FIRST		reading the head of the client's first packet
 *	 FW_REFUSING	'N' sent to an SSLRequest or GSSENCRequest that no
 *					instance takes (none fits, none accepted the connect,
 *					or over max_connections): the ErrorResponse follows
 *					the startup packet
 *	 FW_CONNECTING	a non-blocking connect to the chosen instance
 *	 FW_RELAY		bytes both ways (relay.c)
 *	 FW_CANCEL		a CancelRequest on its way to an instance (cancel.c)
 * Every state but FW_RELAY ends at a deadline (the first packet within
 * FW_FIRST_TIMEOUT_MS of accepting, a connect within
 * heartbeat_connect_timeout), kept in the table's queues (table.c); a
 * relayed session lasts as long as its client and server keep it.  A
 * session's epoll events carry its index and generation, so that an event
 * of a session ended meanwhile, or of its slot's next session, is told
 * apart.
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

fw_table	fw_tab = FW_TABLE_INIT;

/* The deadline queue of a state (table.c). */
static fw_queue_id
fw_queue_of(fw_state state)
{
	switch (state)
	{
		case FW_FIRST:
		case FW_REFUSING:
			return FW_Q_FIRST;
		case FW_CONNECTING:
		case FW_CANCEL:
			return FW_Q_CONNECT;
		case FW_FREE:
		case FW_RELAY:
			return FW_Q_NONE;
	}
	cm_fatal(ROLE_EXIT_RESTART, "bad forwarded session state %d", (int) state);
}

/*
 * The one setter of a session's state; it keeps the deadline queues, so
 * that expiring looks at the sessions that are due and no others.  A
 * connect (to the next candidate too) starts its time limit again, so it
 * joins its queue at the tail; FW_REFUSING keeps FW_FIRST's limit and
 * place.  The caller sets s->deadline for the new limit.
 */
void
fw_set_state(fw_sess *s, fw_state state)
{
	fw_queue_id to = fw_queue_of(state);

	if (to != s->queue || to == FW_Q_CONNECT)
		fwtab_join(&fw_tab, s, to);
	s->state = state;
}

/* A new session's slot; NULL when out of memory. */
fw_sess *
fw_new(void)
{
	return fwtab_take(&fw_tab);
}

int
fw_idx(const fw_sess *s)
{
	return (int) (s - fw_tab.s);
}

/*
 * Sessions whose first packet or connect is overdue end, or try their
 * next candidate; the next deadline (monotonic ms), or -1.
 */
int64_t
fw_expire(int64_t now)
{
	int64_t		next = -1;

	for (int q = 0; q < FW_NQUEUES; q++)
	{
		fw_sess    *s;

		while ((s = fwtab_head(&fw_tab, q)) != NULL && now >= s->deadline)
		{
			if (s->state == FW_CONNECTING)
			{
				(void) epoll_ctl(fw_ep_fd, EPOLL_CTL_DEL, s->sfd, NULL);
				fw_connect_next(s);
			}
			else
				fw_end(s);
		}
		if (s != NULL && (next < 0 || s->deadline < next))
			next = s->deadline;
	}
	return next;
}

void
fw_close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* This forwarder's clients, counted in its shared row alone. */
void
fw_count_client(int delta)
{
	/*
	 * its one writer: a reader (max_connections, the hand-off) sees a whole
	 * word
	 */
	__atomic_store_n(&fw_shm->clients, fw_shm->clients + (uint32_t) delta, __ATOMIC_RELAXED);
}

/* A relayed session of s's port and instance, in the shared counts. */
void
fw_count_session(const fw_sess *s, int delta)
{
	uint32_t   *n = &fw_shm->sessions[s->port][s->instno];

	__atomic_store_n(n, *n + (uint32_t) delta, __ATOMIC_RELAXED);
}

void
fw_end(fw_sess *s)
{
	if (s->counted)
		fw_count_session(s, -1);
	if (s->client)
		fw_count_client(-1);
	if (s->key_shared)
		fw_key_share(s, false);
	s->counted = false;
	s->client = false;
	fw_close_fd(&s->cfd);
	fw_close_fd(&s->sfd);
	for (int d = 0; d < 2; d++)
	{
		fw_close_fd(&s->pipes[d][0]);
		fw_close_fd(&s->pipes[d][1]);
	}
	fwtab_give(&fw_tab, s);
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
