/*-------------------------------------------------------------------------
 *
 * wd_accept.c
 *	  The watchdog worker's listen sockets, and the connections it takes.
 *
 * The worker listens on watchdog.port at each of watchdog.listen_addresses
 * and takes at most WD_ACCEPT_BATCH connections a wake-up.  A connection
 * from outside watchdog.allowed_addresses, when that is set, is refused at
 * once; an accepted one becomes a session in its handshake (wd_session.c,
 * wd_protocol.c).  A spare descriptor lets the worker take a connection
 * and close it when the process has run out of descriptors, instead of
 * leaving it in the queue.
 *
 * Hostile peers (docs/watchdog.md, "Hostile peers"): at most WD_MAX_PENDING
 * connections are in their handshake at once.  When one more arrives, the
 * oldest handshake of the source address with the most handshakes is
 * closed to make room, so a flood of idle or trickling connections from
 * some addresses cannot keep a conmgr elsewhere from registering; it never
 * touches a registered session.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nodes/pg_list.h"
#include "utils/varlena.h"

#include "cmproto.h"
#include "watchdog.h"
#include "wd_worker_int.h"

#define WD_ACCEPT_BATCH		32	/* connections taken per wake-up, at most */

static int	listen_fds[WD_MAX_LISTEN];
static int	nlisten;
static int	reserve_fd = -1;	/* spare descriptor for EMFILE */

/* ---- listening ---- */

static void
wd_listen_on(struct addrinfo *ai, const char *name)
{
	int			fd;
	int			one = 1;

	if (nlisten >= WD_MAX_LISTEN)
	{
		ereport(LOG,
				(errmsg("watchdog: too many listen addresses, ignoring \"%s\"", name)));
		return;
	}
	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
				ai->ai_protocol);
	if (fd < 0)
	{
		ereport(LOG,
				(errcode_for_socket_access(),
				 errmsg("watchdog: could not create socket for \"%s\": %m", name)));
		return;
	}
	(void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ai->ai_family == AF_INET6)
		(void) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, WD_LISTEN_BACKLOG) < 0)
	{
		ereport(LOG,
				(errcode_for_socket_access(),
				 errmsg("watchdog: could not listen on \"%s\" port %d: %m",
						name, wd_port)));
		close(fd);
		return;
	}
	if (!wd_epoll_ctl(EPOLL_CTL_ADD, fd, EPOLLIN, WD_EV(0, nlisten)))
		ereport(ERROR,
				(errcode_for_socket_access(),
				 errmsg("watchdog: could not wait on the listen socket for \"%s\": %m",
						name)));
	listen_fds[nlisten] = fd;
	nlisten++;
}

/*
 * Listen on watchdog.port at every address of watchdog.listen_addresses;
 * an ERROR when none can be listened on.  The spare descriptor is opened
 * first.
 */
void
wd_open_listeners(void)
{
	char	   *raw;
	List	   *names;
	ListCell   *lc;
	char		port[16];

	reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	raw = pstrdup(wd_listen_addresses);
	if (!SplitGUCList(raw, ',', &names))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("watchdog: invalid list syntax in \"watchdog.listen_addresses\"")));
	snprintf(port, sizeof(port), "%d", wd_port);

	foreach(lc, names)
	{
		char	   *name = (char *) lfirst(lc);
		struct addrinfo hints;
		struct addrinfo *res;
		int			rc;

		memset(&hints, 0, sizeof(hints));
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_flags = AI_PASSIVE;
		rc = getaddrinfo(strcmp(name, "*") == 0 ? NULL : name, port,
						 &hints, &res);
		if (rc != 0)
		{
			ereport(LOG,
					(errmsg("watchdog: could not resolve \"%s\": %s",
							name, gai_strerror(rc))));
			continue;
		}
		for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next)
			wd_listen_on(ai, name);
		freeaddrinfo(res);
	}
	if (nlisten == 0)
		ereport(ERROR,
				(errmsg("watchdog: could not listen on any address of \"%s\" port %d",
						wd_listen_addresses, wd_port)));
}

/* ---- accepting ---- */

/*
 * Tell a connection that is refused before it has a session why, as far
 * as one non-blocking send goes.
 */
static void
wd_refuse_fd(int fd, int code, const char *message)
{
	cmproto_msg msg;
	uint8		buf[CMPROTO_MAX_MSG];
	int			n;

	cmproto_error_msg(&msg, code, message);
	n = cmproto_encode(&msg, buf, sizeof(buf));
	if (n > 0)
		(void) send(fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/*
 * Make room for a connection from "peer" when WD_MAX_PENDING are in their
 * handshake: close the oldest handshake of the source address that has
 * the most (counting the newcomer), or the oldest of all when every
 * address has one.  A conmgr completes its handshake in one round trip, so
 * a flood from other addresses does not reach it, and one from its own
 * address reaches it only if WD_MAX_PENDING connections arrive within that
 * round trip.  Registered sessions are never touched.
 */
static void
wd_evict_pending(const WdAddr *peer)
{
	WdSession  *victim = NULL;
	int			best = 0;
	char		why[128];

	for (int i = 0; i < wd_npending; i++)
	{
		WdSession  *p = wd_pending[i];
		WdSession  *oldest = p;
		int			n = wd_addr_same_host(&p->peer, peer) ? 2 : 1;
		bool		first = true;

		for (int j = 0; j < wd_npending && first; j++)
		{
			WdSession  *q = wd_pending[j];

			if (j == i || !wd_addr_same_host(&q->peer, &p->peer))
				continue;
			if (j < i)
				first = false;	/* this address was counted at j */
			n++;
			if (q->accepted_at < oldest->accepted_at)
				oldest = q;
		}
		if (!first)
			continue;
		if (n > best || (n == best && oldest->accepted_at < victim->accepted_at))
		{
			best = n;
			victim = oldest;
		}
	}
	if (victim == NULL)
		return;
	snprintf(why, sizeof(why),
			 "%d connections in handshake, the most from this address: closed the oldest to make room",
			 WD_MAX_PENDING);
	wd_lose(victim, why);
	wd_release(victim->idx);
}

/*
 * Take at most WD_ACCEPT_BATCH connections a wake-up: the listen socket
 * stays readable, so the rest are taken on the next pass of the loop,
 * after the timers (and the registered sessions' beats) have had their
 * turn.  "listener" is the listen socket's index, as its epoll data says.
 */
void
wd_accept(int listener)
{
	int			lfd = listen_fds[listener];

	for (int taken = 0; taken < WD_ACCEPT_BATCH; taken++)
	{
		struct sockaddr_storage ss;
		socklen_t	sslen = sizeof(ss);
		WdSession  *s;
		WdAddr		peer;
		int			fd;
		int			one = 1;

		fd = accept4(lfd, (struct sockaddr *) &ss, &sslen,
					 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
		{
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if ((errno == EMFILE || errno == ENFILE) && reserve_fd >= 0)
			{
				static const WdAddr nowhere;

				/* Accept with the spare descriptor and refuse at once. */
				close(reserve_fd);
				sslen = sizeof(ss);
				fd = accept(lfd, (struct sockaddr *) &ss, &sslen);
				if (fd >= 0)
					close(fd);
				reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
				if (fd < 0 || !wd_addr_from_sockaddr((struct sockaddr *) &ss, &peer))
					peer = nowhere;
				wd_log_noise(&peer, "out of file descriptors",
							 "watchdog: out of file descriptors, refused a connection (raise the open-files limit above max_files_per_process + 2 * watchdog.max_heartbeat_connections)");
				return;
			}
			ereport(LOG,
					(errcode_for_socket_access(),
					 errmsg("watchdog: could not accept a connection: %m")));
			return;
		}

		if (!wd_addr_from_sockaddr((struct sockaddr *) &ss, &peer))
		{
			close(fd);
			continue;
		}
		if (!wd_address_allowed(&peer))
		{
			char		host[INET6_ADDRSTRLEN];

			wd_log_noise(&peer, "address not allowed",
						 "watchdog: refusing connection from %s: not in watchdog.allowed_addresses",
						 wd_addr_to_string(&peer, host, sizeof(host)));
			wd_refuse_fd(fd, CMPROTO_ERR_AUTH,
						 "address not allowed by watchdog.allowed_addresses");
			close(fd);
			continue;
		}
		if (wd_npending >= WD_MAX_PENDING)
			wd_evict_pending(&peer);
		s = wd_new_session();
		if (s == NULL)
		{
			char		host[INET6_ADDRSTRLEN];

			/* Out of memory: there is always a free entry here. */
			wd_log_noise(&peer, "too many connections",
						 "watchdog: refusing connection from %s: out of memory (%d sessions registered, %d in handshake)",
						 wd_addr_to_string(&peer, host, sizeof(host)),
						 wd_nregistered, wd_npending);
			close(fd);
			continue;
		}
		s->fd = fd;
		if (!wd_session_wait(s, EPOLL_CTL_ADD, false))
		{
			char		host[INET6_ADDRSTRLEN];

			ereport(LOG,
					(errcode_for_socket_access(),
					 errmsg("watchdog: refusing connection from %s: could not wait on its socket: %m",
							wd_addr_to_string(&peer, host, sizeof(host)))));
			close(fd);
			wd_release(s->idx);
			continue;
		}
		(void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

		s->peer = peer;
		s->accepted_at = wd_mono_now();
		s->last_received = s->accepted_at;
		wd_set_state(s, WD_SESS_HELLO);
		wd_timer_arm(s);
	}
}
