/*-------------------------------------------------------------------------
 *
 * accept.c
 *	  The listen sockets, and taking connections from them.
 *
 * The listener listens on `port` at every address of listen_addresses
 * (localhost by default) and on the control socket (control.c).  It takes
 * at most LSN_ACCEPT_BATCH connections a wake-up, so that the sessions
 * already open get their turn between a flood's connections.  Out of
 * descriptors, a stalled handshake gives up its own (sessions.c), else a
 * descriptor held in reserve is closed so that the pending connection can
 * be taken and closed, like one over max_connections: left pending, it
 * would keep the listen socket readable and the loop spinning.  Should
 * even that fail (the system-wide table is full), accepting pauses for a
 * second.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cmclock.h"
#include "listener.h"

#define LSN_ACCEPT_BATCH 32		/* connections taken per wake-up, at most */

int			lsn_listen_fds[LSN_MAX_LISTEN];
int			lsn_nlisten;

static int	spare_fd = -1;		/* the descriptor held in reserve */
static int64_t accept_paused_until; /* cmclock_us(); 0 = not paused */
static bool accepting = true;	/* listen sockets in the epoll set */

/* Whether the listen sockets are watched (not in an accept pause). */
bool
lsn_accepting(void)
{
	return accepting;
}

/* Take the descriptor to hold in reserve. */
void
lsn_open_spare(void)
{
	if (spare_fd < 0)
		spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* Listen sockets in or out of the epoll set's interest (accept pause). */
static void
lsn_watch_listen(bool on)
{
	for (int i = 0; i < lsn_nlisten; i++)
		if (!lsn_ep_set(EPOLL_CTL_MOD, lsn_listen_fds[i], on ? EPOLLIN : 0, EV_LISTEN + i))
			cm_fatal(ROLE_EXIT_RESTART, "could not watch a listen socket: %s", strerror(errno));
	accepting = on;
}

/*
 * The accept pause: ends it when it is over.  Returns when it ends
 * (cmclock_us()), INT64_MAX when accepting.
 */
int64_t
lsn_accept_timer(int64_t now)
{
	if (accept_paused_until != 0 && now >= accept_paused_until)
	{
		accept_paused_until = 0;
		lsn_open_spare();
		lsn_watch_listen(true);
	}
	return accept_paused_until != 0 ? accept_paused_until : INT64_MAX;
}

/*
 * Out of descriptors: the spare one makes room to take a pending
 * connection, to be refused.  Returns it, or -1 with errno set (Linux says
 * EMFILE before it looks at the queue, so there may be none).
 */
static int
lsn_accept_spare(int lfd, struct sockaddr_storage *ss, socklen_t *sl)
{
	int			fd;
	int			saved;

	close(spare_fd);
	*sl = sizeof(*ss);
	fd = accept4(lfd, (struct sockaddr *) ss, sl, SOCK_CLOEXEC);
	saved = errno;
	spare_fd = fd < 0 ? open("/dev/null", O_RDONLY | O_CLOEXEC) : -1;
	errno = saved;
	return fd;
}

/* Whether a connection waits in the listen socket's queue. */
static bool
lsn_pending(int lfd)
{
	struct pollfd p = {lfd, POLLIN, 0};

	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/*
 * Take one connection: a descriptor, or -1 when there is none to take now
 * (logged, and accepting paused, if no descriptor can be had at all).
 * *no_fd_errno is set when the connection came through the spare
 * descriptor and must only be refused.
 */
static int
accept_one(int lfd, bool control, struct sockaddr_storage *ss, socklen_t *sl,
		   int *no_fd_errno)
{
	int			fd;

	*sl = sizeof(*ss);
	*no_fd_errno = 0;
	fd = accept4(lfd, (struct sockaddr *) ss, sl, SOCK_NONBLOCK | SOCK_CLOEXEC);

	/*
	 * Out of descriptors: a stalled handshake gives up its own, if a
	 * connection is really waiting (EMFILE comes before EAGAIN).
	 */
	if (fd < 0 && errno == EMFILE && !control && lsn_pending(lfd) &&
		lsn_evict_handshake("out of descriptors"))
	{
		*sl = sizeof(*ss);
		fd = accept4(lfd, (struct sockaddr *) ss, sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
	}
	if (fd < 0 && (errno == EMFILE || errno == ENFILE) && spare_fd >= 0)
	{
		*no_fd_errno = errno;
		fd = lsn_accept_spare(lfd, ss, sl);
	}
	if (fd >= 0)
		return fd;
	if ((errno == EMFILE || errno == ENFILE) && spare_fd < 0)
	{
		cm_log(CMLOG_LOG, "could not accept a connection: %s; not accepting for 1 s",
			   strerror(errno));
		accept_paused_until = cmclock_us() + 1000000;
		lsn_watch_listen(false);
	}
	else if (errno != EAGAIN && errno != EINTR)
		cm_log(CMLOG_LOG, "could not accept a connection: %s", strerror(errno));
	return -1;
}

/*
 * Whether a connection from host:serv may have a session: not when it
 * came through the spare descriptor, nor over max_connections (unless a
 * stalled handshake makes room).  Logged when refused.
 */
static bool
admit(const char *host, const char *serv, bool control, int no_fd_errno)
{
	if (no_fd_errno != 0)
	{
		struct rlimit rl;

		if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
			rl.rlim_cur = 0;
		lsn_log_noise(host, "out of descriptors",
					  "connection from %s:%s closed: %s (open-files limit %llu)",
					  host, serv, strerror(no_fd_errno), (unsigned long long) rl.rlim_cur);
		return false;
	}
	if (!control && lsn_ctx->conf->max_connections > 0 &&
		lsn_napps >= lsn_ctx->conf->max_connections &&
		!lsn_evict_handshake("max_connections reached"))
	{
		lsn_log_noise(host, "max_connections",
					  "connection from %s:%s closed: max_connections (%d) reached",
					  host, serv, lsn_ctx->conf->max_connections);
		return false;
	}
	return true;
}

/*
 * A session for the connection fd from host:serv, in its first state;
 * false (and nothing kept) when it cannot have one.
 */
static bool
session_start(int fd, bool control, const char *host, const char *serv)
{
	app		   *a = lsn_session_new();

	if (a == NULL)
	{
		cm_log(CMLOG_WARNING, "out of memory: connection from %s:%s closed", host, serv);
		return false;
	}
	a->incap = control ? LSN_INBUF_SMALL : LSN_INBUF;
	if ((a->inbuf = malloc(a->incap)) == NULL)
	{
		cm_log(CMLOG_WARNING, "out of memory: connection from %s:%s closed", host, serv);
		return false;
	}
	if (++a->gen == UINT32_MAX)
		a->gen = 1;				/* stay clear of the EV_* tags */
	if (!lsn_ep_set(EPOLL_CTL_ADD, fd, EPOLLIN, lsn_ev_data(a)))
	{
		cm_log(CMLOG_WARNING, "connection from %s:%s closed: could not watch it: %s",
			   host, serv, strerror(errno));
		free(a->inbuf);
		a->inbuf = NULL;
		return false;
	}
	a->fd = fd;
	a->inlen = 0;
	a->offered = 0;
	a->instance = -1;
	a->target = -1;
	a->client_pid = 0;
	a->since = shm_now();
	snprintf(a->host, sizeof(a->host), "%s", host);
	snprintf(a->peer, sizeof(a->peer), "%s:%s", host, serv);
	app_set_state(a, control ? APP_CONTROL : APP_STARTUP);
	return true;
}

/*
 * Take at most LSN_ACCEPT_BATCH connections a wake-up: the listen socket
 * stays ready while more wait, and the sessions already open get their turn
 * first (a flood of connections must not starve their reads and ends).
 */
void
lsn_accept(int lfd, bool control)
{
	for (int taken = 0; taken < LSN_ACCEPT_BATCH; taken++)
	{
		struct sockaddr_storage ss;
		socklen_t	sl;
		char		host[NI_MAXHOST],
					serv[NI_MAXSERV];
		int			no_fd_errno;
		int			fd = accept_one(lfd, control, &ss, &sl, &no_fd_errno);

		if (fd < 0)
			return;
		if (control)
			strcpy(host, "control"), strcpy(serv, "socket");
		else if (getnameinfo((struct sockaddr *) &ss, sl, host, sizeof(host), serv,
							 sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV) != 0)
			strcpy(host, "?"), strcpy(serv, "?");
		if (!admit(host, serv, control, no_fd_errno) ||
			!session_start(fd, control, host, serv))
			close(fd);
		if (no_fd_errno != 0)
			lsn_open_spare();
	}
}

/* Every entry of listen_addresses ("localhost" unless configured). */
void
lsn_open(void)
{
	lsn_nlisten = role_listen(lsn_ctx->conf->listen_addresses, lsn_ctx->conf->port, "port",
							  lsn_listen_fds, LSN_MAX_LISTEN);
}
