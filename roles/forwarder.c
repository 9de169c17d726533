/*-------------------------------------------------------------------------
 *
 * forwarder.c
 *	  The forwarder role: forward_ports, for clients that speak the
 *	  PostgreSQL protocol themselves.
 *
 * A client that connects to a forward port (conmgr.conf forward_ports,
 * TARGET=PORT) is connected to the instance a RESOLVE for that target
 * would be given first now (the listener's ranking, route.c), and from
 * then on bytes pass both ways untouched, so TLS, GSSAPI, authentication,
 * COPY and replication work as they do directly.  The only bytes read
 * are the first packet's first eight (sixteen for a CancelRequest):
 *
 *	 - a CancelRequest is sent on to every instance that is up: it names a
 *	   backend by process ID and secret key, which only the instance that
 *	   runs that backend has, so the others ignore it, and the forwarder
 *	   needs no memory of which session went where (it could not read the
 *	   key of a TLS session anyway);
 *	 - anything else (SSLRequest, GSSENCRequest, a startup packet) opens a
 *	   connection to the chosen instance, which gets those bytes first;
 *	 - when no instance fits, or none of the fitting ones accepts the
 *	   connection, the client gets an ErrorResponse (SQLSTATE 08001, the
 *	   message names the target), after an 'N' to an SSLRequest or a
 *	   GSSENCRequest, which is what a server without TLS answers.
 *
 * Data moves between the two sockets through a pipe per direction with
 * splice(), so it is not copied through this process.  A direction is
 * read only when its pipe is empty, and written as the other socket
 * allows; end of file in one direction is passed on with shutdown(), and
 * the session ends when both directions have ended.
 *
 * When the heartbeat roles publish a change (the eventfd fw_wake_fd), the
 * forwarder looks at every session: one whose instance was declared lost
 * (down, or down and up again since the session began) is cut at once,
 * both sockets closed, so a client blocked in a query gets an error; so
 * is one whose instance no longer fits its port's target (a primary
 * demoted behind a read-write port, a stale primary).  The watchdog's
 * terminator ends the server side of a lost host's sessions.
 *
 * Runs in a process of its own, so forwarding never delays the listener's
 * resolves or down-notices.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cmclock.h"
#include "cmproto.h"
#include "conmgr.h"

#define FW_MAX_LISTEN		64
#define FW_EPOLL_BATCH		256
#define FW_ACCEPT_BATCH		32
#define FW_PIPE_CHUNK		65536
#define FW_FIRST_TIMEOUT_MS	10000	/* for the first packet */

/* epoll data: kind in the top byte, then generation, then index */
#define EV_LISTEN	1
#define EV_CLIENT	2
#define EV_SERVER	3
#define EV_WAKE		4
#define EV_DEATH	5
#define EV_MAKE(kind, gen, idx) \
	(((uint64_t) (kind) << 56) | ((uint64_t) ((gen) & 0xFFFFFF) << 32) | (uint32_t) (idx))
#define EV_KIND(d)	((int) ((d) >> 56))
#define EV_GEN(d)	((uint32_t) (((d) >> 32) & 0xFFFFFF))
#define EV_IDX(d)	((uint32_t) (d))

typedef enum fw_state
{
	FW_FREE,
	FW_FIRST,					/* reading the client's first packet */
	FW_REFUSING,				/* 'N' sent: the ErrorResponse follows */
	FW_CONNECTING,				/* non-blocking connect to the instance */
	FW_RELAY,					/* bytes both ways */
	FW_CANCEL					/* a CancelRequest on its way to an instance */
} fw_state;

_Static_assert(SHM_MAX_FORWARDS == CMCONF_MAX_FORWARDS &&
			   SHM_MAX_INSTANCES == CMCONF_MAX_INSTANCES,
			   "the shared counts have a place for every port and instance");

typedef struct fw_sess
{
	fw_state	state;
	bool		counted;		/* in ctx->shm->fw_sessions */
	bool		client;			/* counted in nclients */
	bool		over_limit;		/* beyond max_connections: refused */
	uint32_t	gen;
	int			cfd;			/* the client; -1 for FW_CANCEL */
	int			sfd;			/* the instance; -1 until connecting */
	int			port;			/* index in the forward ports */
	int			target;
	int			instno;			/* the instance connected to */
	uint64_t	downs;			/* its slot's downs when connected */
	int			cands[CMCONF_MAX_INSTANCES];	/* in the order to try */
	int			ncands;
	int			next_cand;
	char		fault[CMPROTO_ERRMSG_MAX + 1];	/* the refusal of a fault, or
												 * "" */
	uint8_t		first[16];		/* the first packet's head */
	size_t		firstlen;
	size_t		firstneed;
	int64_t		deadline;		/* monotonic ms, FW_FIRST / FW_CONNECTING */
	int			pipes[2][2];	/* [0]: client -> server, [1]: back */
	size_t		inpipe[2];
	bool		eof[2];			/* source of direction d ended */
	bool		shut[2];		/* shutdown(SHUT_WR) passed on */
	uint32_t	cmask,			/* epoll events registered */
				smask;
} fw_sess;

typedef struct fw_listen
{
	int			fd;
	int			port;			/* index in ctx->conf->forward_ports.f */
} fw_listen;

static cm_ctx *ctx;
static int	epfd = -1;
static fw_listen listens[FW_MAX_LISTEN];
static int	nlisten;
static fw_sess *sessions;
static int	nsessions_alloc;
static int	nsessions_used;
static int	nclients;			/* sessions with a client: max_connections */
static int	ntimed;				/* sessions with a deadline (fw_timed()) */
static route_reader reader = {.quiet = true};
static int64_t accept_paused_until; /* monotonic ms; 0 = accepting */
static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t smart_requested;

/* SIGTERM (fast shutdown): every session ends now. */
static void
handle_sigterm(int sig)
{
	(void) sig;
	stop_requested = 1;
}

/* SIGUSR1 (smart shutdown): no new sessions; exit once the last ends. */
static void
handle_sigusr1(int sig)
{
	(void) sig;
	smart_requested = 1;
}

static bool
ep_set(int op, int fd, uint32_t events, uint64_t data)
{
	struct epoll_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.events = events;
	ev.data.u64 = data;
	return epoll_ctl(epfd, op, fd, &ev) == 0;
}

/* ---- sessions ---- */

/* The states that end at a deadline: the first packet, the connect. */
static bool
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
static void
fw_set_state(fw_sess *s, fw_state state)
{
	ntimed += (int) fw_timed(state) - (int) fw_timed(s->state);
	s->state = state;
}

static fw_sess *
fw_new(void)
{
	for (int i = 0; i < nsessions_alloc; i++)
		if (sessions[i].state == FW_FREE)
		{
			fw_sess    *s = &sessions[i];
			uint32_t	gen = s->gen + 1;

			memset(s, 0, sizeof(*s));
			s->gen = gen ? gen : 1;
			s->cfd = s->sfd = -1;
			s->pipes[0][0] = s->pipes[0][1] = s->pipes[1][0] = s->pipes[1][1] = -1;
			s->instno = -1;
			nsessions_used++;
			return s;
		}
	{
		int			n = nsessions_alloc ? nsessions_alloc * 2 : 64;
		fw_sess    *grown = realloc(sessions, sizeof(fw_sess) * n);

		if (grown == NULL)
			return NULL;
		memset(grown + nsessions_alloc, 0, sizeof(fw_sess) * (n - nsessions_alloc));
		sessions = grown;
		nsessions_alloc = n;
	}
	return fw_new();
}

static int
fw_idx(const fw_sess *s)
{
	return (int) (s - sessions);
}

static void
fw_close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void
fw_end(fw_sess *s)
{
	if (s->counted)
		__atomic_fetch_sub(&ctx->shm->fw_sessions[s->port][s->instno], 1, __ATOMIC_RELAXED);
	if (s->client)
		nclients--;
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
	nsessions_used--;
}

/* Register what each socket waits for now, when it changed. */
static bool
fw_watch(fw_sess *s, uint32_t cmask, uint32_t smask)
{
	if (s->cfd >= 0 && cmask != s->cmask)
	{
		if (!ep_set(EPOLL_CTL_MOD, s->cfd, cmask, EV_MAKE(EV_CLIENT, s->gen, fw_idx(s))))
			return false;
		s->cmask = cmask;
	}
	if (s->sfd >= 0 && smask != s->smask)
	{
		if (!ep_set(s->smask == 0 && s->state == FW_CONNECTING ? EPOLL_CTL_ADD : EPOLL_CTL_MOD,
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
static void
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

static const char *
fw_target_name(const fw_sess *s)
{
	return cmproto_target_name(s->target);
}

/* ---- connecting ---- */

static void fw_connect_next(fw_sess *s);

/* The instances to try for the session's target, best first. */
static void
fw_choose(fw_sess *s)
{
	shm_slot	slots[CMCONF_MAX_INSTANCES];
	route_view	v;
	route_candidate cands[CMCONF_MAX_INSTANCES];

	route_read(&reader, ctx, slots, &v);
	s->ncands = route_resolve(&reader, ctx, s->target, slots, &v, cands);
	s->fault[0] = '\0';
	if (route_refuses(&v, s->target, s->ncands))
	{
		s->ncands = 0;
		route_fault_text(ctx, &v, slots, s->target, s->fault, sizeof(s->fault));
	}
	for (int i = 0; i < s->ncands; i++)
		s->cands[i] = cands[i].instno;
	s->next_cand = 0;
}

/* A non-blocking connect to instance i; the socket, or -1. */
static int
fw_dial(int i)
{
	const struct cmconf_instance *in = &ctx->conf->inst[i];
	struct addrinfo hints,
			   *res;
	char		port[16];
	int			fd = -1;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = in->hostaddr[0] ? AI_NUMERICHOST : 0;
	snprintf(port, sizeof(port), "%d", in->backend_port);
	if (getaddrinfo(cmconf_connect_host(in), port, &hints, &res) != 0)
		return -1;
	for (struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next)
	{
		int			one = 1;

		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS)
		{
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	return fd;
}

/* Connect to the next candidate, or refuse the client when none is left. */
static void
fw_connect_next(fw_sess *s)
{
	char		msg[CMPROTO_ERRMSG_MAX + 64];

	fw_close_fd(&s->sfd);
	s->smask = 0;
	if (s->over_limit)
	{
		cm_log(CMLOG_LOG, "forwarder: refused a client on forward port %d: max_connections (%d) reached",
			   ctx->conf->forward_ports.f[s->port].port, ctx->conf->max_connections);
		fw_refuse(s, "53300", "sorry, too many clients already");
		return;
	}
	while (s->next_cand < s->ncands)
	{
		int			i = s->cands[s->next_cand++];

		s->sfd = fw_dial(i);
		if (s->sfd < 0)
		{
			cm_log(CMLOG_LOG, "forward port %d (%s): could not connect to instance %d (%s:%d)",
				   ctx->conf->forward_ports.f[s->port].port, fw_target_name(s), i,
				   cmconf_connect_host(&ctx->conf->inst[i]), ctx->conf->inst[i].backend_port);
			continue;
		}
		s->instno = i;
		fw_set_state(s, FW_CONNECTING);
		s->deadline = cmclock_ms() + (int64_t) ctx->conf->heartbeat_connect_timeout * 1000;
		if (!fw_watch(s, 0, EPOLLOUT))
			fw_end(s);
		return;
	}
	if (s->fault[0] != '\0')
		snprintf(msg, sizeof(msg), "conmgr: %s", s->fault);
	else if (s->ncands == 0)
		snprintf(msg, sizeof(msg),
				 "conmgr: no instance fits target_session_attrs=%s (forward port %d)",
				 fw_target_name(s), ctx->conf->forward_ports.f[s->port].port);
	else
		snprintf(msg, sizeof(msg),
				 "conmgr: could not connect to any instance that fits target_session_attrs=%s (forward port %d)",
				 fw_target_name(s), ctx->conf->forward_ports.f[s->port].port);
	fw_refuse(s, "08001", msg);
}

/* The connect ended: relay, or try the next candidate. */
static void
fw_connected(fw_sess *s)
{
	int			err = 0;
	socklen_t	len = sizeof(err);
	shm_slot	slot;

	if (getsockopt(s->sfd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0)
	{
		cm_log(CMLOG_LOG, "forward port %d (%s): could not connect to instance %d: %s",
			   ctx->conf->forward_ports.f[s->port].port, fw_target_name(s), s->instno,
			   strerror(err ? err : errno));
		(void) epoll_ctl(epfd, EPOLL_CTL_DEL, s->sfd, NULL);
		fw_connect_next(s);
		return;
	}
	(void) shm_read(&ctx->shm->slots[s->instno], &slot);
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
	__atomic_fetch_add(&ctx->shm->fw_sessions[s->port][s->instno], 1, __ATOMIC_RELAXED);
}

/* ---- relaying ---- */

/*
 * Move what direction d can move now: from its source into its pipe when
 * the pipe is empty, from the pipe into its destination.  False when the
 * session has ended (closed here).
 */
static bool
fw_move(fw_sess *s, int d)
{
	int			src = d == 0 ? s->cfd : s->sfd;
	int			dst = d == 0 ? s->sfd : s->cfd;

	if (s->inpipe[d] == 0 && !s->eof[d])
	{
		ssize_t		n = splice(src, NULL, s->pipes[d][1], NULL, FW_PIPE_CHUNK,
							   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);

		if (n > 0)
			s->inpipe[d] = (size_t) n;
		else if (n == 0)
			s->eof[d] = true;
		else if (errno != EAGAIN && errno != EINTR)
		{
			fw_end(s);
			return false;
		}
	}
	while (s->inpipe[d] > 0)
	{
		ssize_t		n = splice(s->pipes[d][0], NULL, dst, NULL, s->inpipe[d],
							   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);

		if (n > 0)
			s->inpipe[d] -= (size_t) n;
		else if (n < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		else
		{
			fw_end(s);
			return false;
		}
	}
	if (s->eof[d] && s->inpipe[d] == 0 && !s->shut[d])
	{
		(void) shutdown(dst, SHUT_WR);
		s->shut[d] = true;
	}
	return true;
}

/*
 * The directions that can move (d0: client to server, d1: server to
 * client) as far as they go, then what to wait for.  The waits are
 * level-triggered, so a direction left out here is reported again while
 * it still has something to move.
 */
static void
fw_relay_dirs(fw_sess *s, bool d0, bool d1)
{
	uint32_t	cmask = 0,
				smask = 0;

	if ((d0 && !fw_move(s, 0)) || (d1 && !fw_move(s, 1)))
		return;
	if (s->shut[0] && s->shut[1])
	{
		fw_end(s);
		return;
	}
	if (!s->eof[0] && s->inpipe[0] == 0)
		cmask |= EPOLLIN;
	if (s->inpipe[0] > 0)
		smask |= EPOLLOUT;
	if (!s->eof[1] && s->inpipe[1] == 0)
		smask |= EPOLLIN;
	if (s->inpipe[1] > 0)
		cmask |= EPOLLOUT;
	if (!fw_watch(s, cmask, smask))
		fw_end(s);
}

/* Both directions (a session that has just connected) */
static void
fw_relay(fw_sess *s)
{
	fw_relay_dirs(s, true, true);
}

/*
 * The directions an event on one of a relayed session's sockets concerns:
 * readable is its own direction's source, writable the other's
 * destination; a hang-up, both.  Trying a direction whose source has
 * nothing would cost a splice() that only says EAGAIN, twice a
 * transaction.
 */
static void
fw_relay_event(fw_sess *s, int kind, uint32_t events)
{
	bool		in = (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0;
	bool		out = (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) != 0;

	if (kind == EV_CLIENT)
		fw_relay_dirs(s, in, out);
	else
		fw_relay_dirs(s, out, in);
}

/* ---- the first packet ---- */

/* A CancelRequest, to every instance that is up. */
static void
fw_cancel(fw_sess *s)
{
	shm_slot	slot;
	uint8_t		request[16];
	int			si = fw_idx(s);

	/* fw_new() may move the table: s is found again by its index */
	memcpy(request, s->first, sizeof(request));

	for (uint32_t i = 0; i < ctx->shm->nslots; i++)
	{
		fw_sess    *c;

		if (!ctx->conf->inst[i].configured ||
			!shm_read(&ctx->shm->slots[i], &slot) || slot.state != SHM_UP)
			continue;
		c = fw_new();
		if (c == NULL)
			break;
		fw_set_state(c, FW_CANCEL);
		memcpy(c->first, request, sizeof(request));
		c->firstlen = sizeof(request);
		c->sfd = fw_dial((int) i);
		c->instno = (int) i;
		c->deadline = cmclock_ms() + (int64_t) ctx->conf->heartbeat_connect_timeout * 1000;
		if (c->sfd < 0 ||
			!ep_set(EPOLL_CTL_ADD, c->sfd, EPOLLOUT, EV_MAKE(EV_SERVER, c->gen, fw_idx(c))))
			fw_end(c);
		else
			c->smask = EPOLLOUT;
	}
	fw_end(&sessions[si]);
}

/* Read the head of the first packet; act once it is known. */
static void
fw_first(fw_sess *s)
{
	size_t		pktlen;
	cmproto_pg_kind kind;
	int			rc;
	ssize_t		n = recv(s->cfd, s->first + s->firstlen, s->firstneed - s->firstlen, 0);

	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
	{
		fw_end(s);
		return;
	}
	if (n > 0)
		s->firstlen += (size_t) n;
	if (s->firstlen < s->firstneed)
		return;
	rc = cmproto_pg_classify(s->first, s->firstlen, &pktlen, &kind);
	if (rc < 0 && rc != CMPROTO_INCOMPLETE)
	{
		fw_refuse(s, "08P01", "conmgr: invalid startup packet");
		return;
	}
	if (kind == CMPROTO_PG_CANCEL_REQUEST)
	{
		if (s->firstneed < 16)
		{
			s->firstneed = 16;
			return;
		}
		fw_cancel(s);
		return;
	}
	fw_choose(s);
	if (s->over_limit)
		s->ncands = 0;
	if (s->ncands == 0 &&
		(kind == CMPROTO_PG_SSL_REQUEST || kind == CMPROTO_PG_GSSENC_REQUEST))
	{
		/* as a server without TLS or GSSAPI: the startup packet follows */
		if (send(s->cfd, "N", 1, MSG_NOSIGNAL | MSG_DONTWAIT) != 1)
		{
			fw_end(s);
			return;
		}
		fw_set_state(s, FW_REFUSING);
		s->firstlen = 0;
		return;
	}
	if (!fw_watch(s, 0, 0))
	{
		fw_end(s);
		return;
	}
	fw_connect_next(s);
}

/* ---- accepting ---- */

/* Stop taking connections (out of descriptors) for a second, or resume. */
static void
fw_pause_accept(bool pause)
{
	for (int i = 0; i < nlisten; i++)
		(void) ep_set(EPOLL_CTL_MOD, listens[i].fd, pause ? 0 : EPOLLIN,
					  EV_MAKE(EV_LISTEN, 0, i));
	accept_paused_until = pause ? cmclock_ms() + 1000 : 0;
}

static void
fw_accept(const fw_listen *l)
{
	for (int taken = 0; taken < FW_ACCEPT_BATCH; taken++)
	{
		int			fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		fw_sess    *s;
		int			one = 1;

		if (fd < 0)
		{
			if (errno == EMFILE || errno == ENFILE)
			{
				cm_ereport(CMLOG_LOG, "Not accepting for 1 s.", NULL,
						   "forwarder: could not accept a connection: %m");
				fw_pause_accept(true);
			}
			return;
		}
		s = fw_new();
		if (s == NULL)
		{
			close(fd);
			return;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		s->cfd = fd;
		s->client = true;
		nclients++;
		/* refused, as a server over its limit, once its first packet is in */
		s->over_limit = ctx->conf->max_connections > 0 &&
			nclients > ctx->conf->max_connections;
		s->port = l->port;
		s->target = ctx->conf->forward_ports.f[l->port].target;
		fw_set_state(s, FW_FIRST);
		s->firstneed = 8;
		s->deadline = cmclock_ms() + FW_FIRST_TIMEOUT_MS;
		if (!ep_set(EPOLL_CTL_ADD, fd, EPOLLIN, EV_MAKE(EV_CLIENT, s->gen, fw_idx(s))))
		{
			fw_end(s);
			continue;
		}
		s->cmask = EPOLLIN;
	}
}

/* Every forward port on every entry of listen_addresses. */
static void
fw_open(void)
{
	for (int p = 0; p < ctx->conf->forward_ports.n; p++)
	{
		int			fds[FW_MAX_LISTEN];
		int			n = role_listen(ctx->conf->listen_addresses,
									ctx->conf->forward_ports.f[p].port, "forward port",
									fds, FW_MAX_LISTEN - nlisten);

		for (int k = 0; k < n; k++)
		{
			if (!ep_set(EPOLL_CTL_ADD, fds[k], EPOLLIN, EV_MAKE(EV_LISTEN, 0, nlisten)))
				cm_fatal(ROLE_EXIT_RESTART, "forwarder: could not wait on a listen socket: %m");
			listens[nlisten].fd = fds[k];
			listens[nlisten].port = p;
			nlisten++;
		}
	}
}

/* ---- changes of the instances ---- */

/*
 * Cut every relayed session whose instance was lost since it connected,
 * or no longer fits its port's target.
 */
static void
fw_check_instances(void)
{
	shm_slot	slots[CMCONF_MAX_INSTANCES];
	route_view	v;
	int			cut[CMCONF_MAX_INSTANCES] = {0};

	route_read(&reader, ctx, slots, &v);
	for (int k = 0; k < nsessions_alloc; k++)
	{
		fw_sess    *s = &sessions[k];
		const shm_slot *sl;

		if (s->state != FW_RELAY)
			continue;
		sl = &slots[s->instno];
		if (sl->state == SHM_UP && sl->downs == s->downs &&
			route_rank(s->target, v.role[s->instno], sl->attrs) >= 0)
			continue;
		cut[s->instno]++;
		fw_end(s);
	}
	for (uint32_t i = 0; i < ctx->shm->nslots; i++)
		if (cut[i] > 0)
			cm_log(CMLOG_LOG, "forwarder: cut %d forwarded session%s to instance %u (%s)",
				   cut[i], cut[i] == 1 ? "" : "s", i,
				   slots[i].state != SHM_UP ? "lost" : route_role_name(v.role[i]));
}

/* ---- the loop ---- */

/* Sessions whose first packet or connect is overdue; the next deadline. */
static int64_t
fw_expire(int64_t now)
{
	int64_t		next = -1;

	for (int k = 0; k < nsessions_alloc && ntimed > 0; k++)
	{
		fw_sess    *s = &sessions[k];

		if (!fw_timed(s->state))
			continue;
		if (now >= s->deadline)
		{
			if (s->state == FW_CONNECTING)
			{
				(void) epoll_ctl(epfd, EPOLL_CTL_DEL, s->sfd, NULL);
				fw_connect_next(s);
			}
			else
				fw_end(s);
			continue;
		}
		if (next < 0 || s->deadline < next)
			next = s->deadline;
	}
	return next;
}

static void
fw_event(uint64_t data, uint32_t events)
{
	int			kind = EV_KIND(data);
	fw_sess    *s;

	if (kind == EV_LISTEN)
	{
		fw_accept(&listens[EV_IDX(data)]);
		return;
	}
	if (EV_IDX(data) >= (uint32_t) nsessions_alloc)
		return;
	s = &sessions[EV_IDX(data)];
	if (s->state == FW_FREE || (s->gen & 0xFFFFFF) != EV_GEN(data))
		return;
	/* an error or a hang-up the state does not read on would come back */
	if (kind == EV_CLIENT && (events & (EPOLLERR | EPOLLHUP)) && s->state != FW_RELAY)
	{
		fw_end(s);
		return;
	}
	if ((events & EPOLLERR) && s->state == FW_RELAY)
	{
		fw_end(s);
		return;
	}
	switch (s->state)
	{
		case FW_FIRST:
			fw_first(s);
			break;
		case FW_REFUSING:
			/* the startup packet after our 'N': the refusal (no candidates) */
			fw_connect_next(s);
			break;
		case FW_CONNECTING:
			if (kind == EV_SERVER && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
				fw_connected(s);
			if (s->state == FW_RELAY)
				fw_relay(s);
			break;
		case FW_RELAY:
			fw_relay_event(s, kind, events);
			break;
		case FW_CANCEL:
			(void) !send(s->sfd, s->first, s->firstlen, MSG_NOSIGNAL);
			fw_end(s);
			break;
		case FW_FREE:
			break;
	}
}

noreturn void
forwarder_main(cm_ctx *c)
{
	sigset_t	waitmask;

	ctx = c;
	cm_log_init(ctx->conf, "forwarder");
	role_stop_signals(handle_sigterm, handle_sigusr1);
	sigemptyset(&waitmask);

	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0 ||
		!ep_set(EPOLL_CTL_ADD, ctx->fw_wake_fd, EPOLLIN, EV_MAKE(EV_WAKE, 0, 0)) ||
		!ep_set(EPOLL_CTL_ADD, ctx->death_fd, EPOLLIN, EV_MAKE(EV_DEATH, 0, 0)))
		cm_fatal(ROLE_EXIT_RESTART, "forwarder: could not set up its wait: %m");
	fw_open();
	cm_log(CMLOG_LOG, "forwarder: forwarding %s", ctx->conf->forward_ports.text);

	while (!stop_requested)
	{
		struct epoll_event evs[FW_EPOLL_BATCH];
		int64_t		now = cmclock_ms();
		int64_t		next = fw_expire(now);
		int			n;

		if (smart_requested && nlisten > 0)
		{
			for (int i = 0; i < nlisten; i++)
				close(listens[i].fd);
			nlisten = 0;
			cm_log(CMLOG_LOG, "forwarder: smart shutdown: no new sessions; %d still open",
				   nsessions_used);
		}
		if (smart_requested && nsessions_used == 0)
			break;
		if (accept_paused_until != 0 && nlisten > 0)
		{
			if (now >= accept_paused_until)
				fw_pause_accept(false);
			else if (next < 0 || accept_paused_until < next)
				next = accept_paused_until;
		}

		n = epoll_pwait(epfd, evs, FW_EPOLL_BATCH, next < 0 ? -1 : (int) (next - now), &waitmask);
		if (n < 0 && errno != EINTR)
			cm_fatal(ROLE_EXIT_RESTART, "forwarder: could not wait: %m");
		for (int i = 0; i < n; i++)
		{
			int			kind = EV_KIND(evs[i].data.u64);

			if (kind == EV_DEATH)
				exit(ROLE_EXIT_DONE);	/* the supervisor is gone */
			if (kind == EV_WAKE)
			{
				uint64_t	v;

				(void) !read(ctx->fw_wake_fd, &v, sizeof(v));
				fw_check_instances();
				continue;
			}
			fw_event(evs[i].data.u64, evs[i].events);
		}
	}
	exit(ROLE_EXIT_DONE);
}
