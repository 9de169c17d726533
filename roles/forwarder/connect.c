/*-------------------------------------------------------------------------
 *
 * connect.c
 *	  A forwarded session's start: the first packet, the choice of an
 *	  instance, the connect.
 *
 * Of what the client sends, the forwarder reads only the first packet's
 * first eight bytes (a CancelRequest whole, cancel.c); of what the
 * server sends, only the start-up of a session in the clear, for its key
 * (keywatch.c).  Anything but a
 * CancelRequest (SSLRequest, GSSENCRequest, a startup packet) opens a
 * connection to the instance a RESOLVE for the port's target would be
 * given first now (the listener's ranking, route.c), then to the next
 * candidate if that one does not accept; the instance gets the bytes read
 * first, and relay.c passes the rest.  When no instance fits, or none of
 * the fitting ones accepts the connection, the client gets an
 * ErrorResponse (SQLSTATE 08001, the message names the target), after an
 * 'N' to an SSLRequest or a GSSENCRequest, which is what a server
 * without TLS answers.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cmclock.h"
#include "forwarder.h"

/* The instances to try for the session's target, best first. */
static void
fw_choose(fw_sess *s)
{
	shm_slot	slots[CMCONF_MAX_INSTANCES];
	route_view	v;
	route_candidate cands[CMCONF_MAX_INSTANCES];

	route_read(&fw_routes, fw_ctx, slots, &v);
	s->ncands = route_resolve(&fw_routes, fw_ctx, s->target, slots, &v, cands);
	s->fault[0] = '\0';
	if (route_refuses(&v, s->target, s->ncands))
	{
		s->ncands = 0;
		route_fault_text(fw_ctx, &v, slots, s->target, s->fault, sizeof(s->fault));
	}
	for (int i = 0; i < s->ncands; i++)
		s->cands[i] = cands[i].instno;
	s->next_cand = 0;
}

/*
 * A non-blocking connect to instance i at the addresses kept for it
 * (resolve.c: no lookup here); the socket, or -1.
 */
int
fw_dial(int i)
{
	int			n;
	const fw_addr *addrs = fw_addrs(i, &n);
	int			fd = -1;

	for (int k = 0; k < n && fd < 0; k++)
	{
		int			one = 1;

		fd = socket(addrs[k].family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (connect(fd, (const struct sockaddr *) &addrs[k].sa, addrs[k].len) < 0 &&
			errno != EINPROGRESS)
		{
			close(fd);
			fd = -1;
		}
	}
	if (fd < 0)
		fw_resolve_again(i);
	return fd;
}

/*
 * Before a refusal, a client whose first packet asked for TLS or GSSAPI
 * gets the 'N' of a server without them, and the ErrorResponse waits for
 * its startup packet (FW_REFUSING): an ErrorResponse in answer to the
 * request itself is one libpq does not show ("server sent an error
 * response during SSL exchange").  A session still reading its first
 * packet keeps that packet's deadline and its place in the queue; one
 * whose connects failed gets a first packet's time from now.  True when
 * the 'N' went (or the session ended on it); false when the refusal is
 * due now.
 */
static bool
fw_refuse_after_n(fw_sess *s)
{
	bool		fresh = s->state != FW_FIRST;

	if (!s->negotiating)
		return false;
	s->negotiating = false;
	if (send(s->cfd, "N", 1, MSG_NOSIGNAL | MSG_DONTWAIT) != 1 ||
		!fw_watch(s, EPOLLIN, 0))
	{
		fw_end(s);
		return true;
	}
	fw_set_state(s, FW_REFUSING);
	s->firstlen = 0;
	if (fresh)
		s->deadline = cmclock_ms() + FW_FIRST_TIMEOUT_MS;
	return true;
}

/*
 * Read the client's packet head into s->first up to "need" bytes: true
 * once it holds them; false while more is to come, or when the client
 * went away (the session ended).
 */
static bool
fw_read_head(fw_sess *s, size_t need)
{
	ssize_t		n = recv(s->cfd, s->first + s->firstlen, need - s->firstlen, 0);

	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
	{
		fw_end(s);
		return false;
	}
	if (n > 0)
		s->firstlen += (size_t) n;
	return s->firstlen >= need;
}

/*
 * FW_REFUSING: what the client sends after our 'N'.  A client refused
 * GSSAPI encryption may ask for TLS next (libpq with gssencmode=prefer
 * and sslmode=prefer): that request gets 'N' too, once, so that the
 * ErrorResponse still answers the startup packet; anything else gets the
 * refusal (no candidates are left).
 */
void
fw_refusing_read(fw_sess *s)
{
	size_t		pktlen;
	cmproto_pg_kind kind;

	if (!fw_read_head(s, CMPROTO_PG_PROBE_LEN))
		return;
	(void) cmproto_pg_classify(s->first, s->firstlen, &pktlen, &kind);
	if (!s->asked_again &&
		(kind == CMPROTO_PG_SSL_REQUEST || kind == CMPROTO_PG_GSSENC_REQUEST) &&
		pktlen == CMPROTO_PG_PROBE_LEN)
	{
		s->asked_again = true;
		s->firstlen = 0;
		if (send(s->cfd, "N", 1, MSG_NOSIGNAL | MSG_DONTWAIT) != 1)
			fw_end(s);
		return;
	}
	fw_connect_next(s);
}

/*
 * Connect to the next candidate, or refuse the client when none is left
 * (or it is over max_connections).
 */
void
fw_connect_next(fw_sess *s)
{
	char		msg[CMPROTO_ERRMSG_MAX + 64];

	fw_close_fd(&s->sfd);
	s->smask = 0;
	while (!s->over_limit && s->next_cand < s->ncands)
	{
		int			i = s->cands[s->next_cand++];

		s->sfd = fw_dial(i);
		if (s->sfd < 0)
		{
			cm_log(CMLOG_LOG, "forward port %d (%s): could not connect to instance %d (%s:%d)",
				   fw_ctx->conf->forward_ports.f[s->port].port, fw_target_name(s), i,
				   cmconf_connect_host(&fw_ctx->conf->inst[i]), fw_ctx->conf->inst[i].backend_port);
			continue;
		}
		s->instno = i;
		fw_set_state(s, FW_CONNECTING);
		s->deadline = cmclock_ms() + (int64_t) fw_ctx->conf->heartbeat_connect_timeout * 1000;
		if (!fw_watch(s, 0, EPOLLOUT))
			fw_end(s);
		return;
	}
	if (fw_refuse_after_n(s))
		return;
	if (s->over_limit)
	{
		cm_log(CMLOG_LOG, "forwarder: refused a client on forward port %d: max_connections (%d) reached",
			   fw_ctx->conf->forward_ports.f[s->port].port, fw_ctx->conf->max_connections);
		fw_refuse(s, "53300", "sorry, too many clients already");
		return;
	}
	if (s->fault[0] != '\0')
		snprintf(msg, sizeof(msg), "conmgr: %s", s->fault);
	else if (s->ncands == 0)
		snprintf(msg, sizeof(msg),
				 "conmgr: no instance fits target_session_attrs=%s (forward port %d)",
				 fw_target_name(s), fw_ctx->conf->forward_ports.f[s->port].port);
	else
		snprintf(msg, sizeof(msg),
				 "conmgr: could not connect to any instance that fits target_session_attrs=%s (forward port %d)",
				 fw_target_name(s), fw_ctx->conf->forward_ports.f[s->port].port);
	fw_refuse(s, "08001", msg);
}

/* The connect ended: relay, or try the next candidate. */
void
fw_connected(fw_sess *s)
{
	int			err = 0;
	socklen_t	len = sizeof(err);
	shm_slot	slot;

	if (getsockopt(s->sfd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0)
	{
		cm_log(CMLOG_LOG, "forward port %d (%s): could not connect to instance %d: %s",
			   fw_ctx->conf->forward_ports.f[s->port].port, fw_target_name(s), s->instno,
			   strerror(err ? err : errno));
		(void) epoll_ctl(fw_ep_fd, EPOLL_CTL_DEL, s->sfd, NULL);
		fw_resolve_again(s->instno);
		fw_connect_next(s);
		return;
	}
	(void) shm_read(&fw_ctx->shm->slots[s->instno], &slot);
	s->downs = slot.downs;
	if (pipe2(s->pipes[0], O_NONBLOCK | O_CLOEXEC) < 0 ||
		pipe2(s->pipes[1], O_NONBLOCK | O_CLOEXEC) < 0)
	{
		cm_log(CMLOG_WARNING, "forwarder: could not make a pipe: %m");
		fw_end(s);
		return;
	}
	/* the bytes read to classify the first packet go first */
	if (send(s->sfd, s->first, s->firstlen, MSG_NOSIGNAL) != (ssize_t) s->firstlen)
	{
		fw_end(s);
		return;
	}
	fw_set_state(s, FW_RELAY);
	s->counted = true;
	fw_count_session(s, 1);
}

/* Read the head of the first packet; act once it is known. */
void
fw_first(fw_sess *s)
{
	size_t		pktlen;
	cmproto_pg_kind kind;
	int			rc;

	if (!fw_read_head(s, s->firstneed))
		return;
	rc = cmproto_pg_classify(s->first, s->firstlen, &pktlen, &kind);
	if (rc < 0 && rc != CMPROTO_INCOMPLETE)
	{
		fw_refuse(s, "08P01", "conmgr: invalid startup packet");
		return;
	}
	if (kind == CMPROTO_PG_CANCEL_REQUEST)
	{
		/* the whole request: its key is 4 bytes long, or up to 256 */
		if (s->firstneed < pktlen)
		{
			s->firstneed = pktlen;
			return;
		}
		fw_cancel(s);
		return;
	}
	fw_choose(s);
	s->negotiating = kind == CMPROTO_PG_SSL_REQUEST || kind == CMPROTO_PG_GSSENC_REQUEST;
	if (!fw_watch(s, 0, 0))
	{
		fw_end(s);
		return;
	}
	fw_keywatch_start(&s->kw, s->negotiating);
	fw_connect_next(s);
}
