/*-------------------------------------------------------------------------
 *
 * accept.c
 *	  The forward ports' listen sockets, accepting, and the hand-off of
 *	  clients between forwarder processes.
 *
 * The supervisor opens each forward port on every entry of
 * listen_addresses once; every forwarder process waits on the same
 * sockets, with EPOLLEXCLUSIVE, so that a connection wakes one of them
 * (an idle one first).  The kernel's choice is not a fair share: an idle
 * forwarder would take every connection, and kept connections made one
 * after another would all land in one process.  So a forwarder that
 * accepts a client while another runs with fewer clients hands the client
 * on to the one with fewest, over that one's datagram socket pair
 * (SCM_RIGHTS), before reading a byte of it; the counts are each
 * forwarder's own in shared memory.  Sessions thus spread evenly, and a
 * short connection on an otherwise idle conmgr is never handed on.
 *
 * A new client becomes a session in FW_FIRST, which must bring the head
 * of its first packet within FW_FIRST_TIMEOUT_MS; one beyond
 * max_connections (counted over every forwarder) is still taken, and
 * refused as a server over its limit refuses once that packet is in.  Out
 * of descriptors, the ports stop accepting for a second (fw_accept_timer()
 * resumes them), since the pending connection would wake the loop at once
 * again.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cmclock.h"
#include "forwarder.h"

#define FW_HANDOFF_BATCH	32

static int64_t accept_paused_until; /* monotonic ms; 0 = accepting */

/*
 * Wait on the listen sockets (one forwarder wakes per connection), or
 * stop; false when a socket could not be added.
 */
static bool
fw_listen_wait(bool on)
{
	bool		ok = true;

	for (int i = 0; i < fw_ctx->fw_nlisten; i++)
	{
		/* EPOLLEXCLUSIVE cannot be modified: the socket leaves and comes back */
		if (on)
			ok &= fw_ep_set(EPOLL_CTL_ADD, fw_ctx->fw_listen_fd[i], EPOLLIN | EPOLLEXCLUSIVE,
							EV_MAKE(EV_LISTEN, 0, i));
		else
			(void) epoll_ctl(fw_ep_fd, EPOLL_CTL_DEL, fw_ctx->fw_listen_fd[i], NULL);
	}
	return ok;
}

/* Stop taking connections (out of descriptors) for a second, or resume. */
static void
fw_pause_accept(bool pause)
{
	(void) fw_listen_wait(!pause);
	accept_paused_until = pause ? cmclock_ms() + 1000 : 0;
}

/* Resume accepting when the pause is over; when it ends (ms), or -1. */
int64_t
fw_accept_timer(int64_t now)
{
	if (accept_paused_until == 0 || fw_ctx->fw_nlisten == 0)
		return -1;
	if (now >= accept_paused_until)
	{
		fw_pause_accept(false);
		return -1;
	}
	return accept_paused_until;
}

/* Clients of every forwarder: what max_connections limits. */
static uint32_t
fw_all_clients(void)
{
	uint32_t	n = 0;

	for (int k = 0; k < fw_ctx->nforwarders; k++)
		n += __atomic_load_n(&fw_ctx->shm->fw[k].clients, __ATOMIC_RELAXED);
	return n;
}

/* A client of forward port index port, accepted here or handed to us. */
static void
fw_take(int fd, int port)
{
	fw_sess    *s = fw_new();

	if (s == NULL)
	{
		close(fd);
		return;
	}
	s->cfd = fd;
	s->client = true;
	fw_count_client(1);
	/* refused, as a server over its limit, once its first packet is in */
	s->over_limit = fw_ctx->conf->max_connections > 0 &&
		fw_all_clients() > (uint32_t) fw_ctx->conf->max_connections;
	s->port = port;
	s->target = fw_ctx->conf->forward_ports.f[port].target;
	fw_set_state(s, FW_FIRST);
	s->firstneed = 8;
	s->deadline = cmclock_ms() + FW_FIRST_TIMEOUT_MS;
	if (!fw_ep_set(EPOLL_CTL_ADD, fd, EPOLLIN, EV_MAKE(EV_CLIENT, s->gen, fw_idx(s))))
	{
		fw_end(s);
		return;
	}
	s->cmask = EPOLLIN;
}

/* A hand-off datagram: the forward port's index, and the client's socket. */
typedef struct fw_handoff_msg
{
	uint8_t		port;
	struct iovec iov;
	union
	{
		struct cmsghdr hdr;
		char		buf[CMSG_SPACE(sizeof(int))];
	}			ctl;
	struct msghdr msg;
} fw_handoff_msg;

/* m set up to send or receive one datagram of its kind. */
static void
fw_handoff_msg_init(fw_handoff_msg *m)
{
	memset(m, 0, sizeof(*m));
	m->iov.iov_base = &m->port;
	m->iov.iov_len = 1;
	m->msg.msg_iov = &m->iov;
	m->msg.msg_iovlen = 1;
	m->msg.msg_control = m->ctl.buf;
	m->msg.msg_controllen = sizeof(m->ctl.buf);
}

/*
 * Hand a client just accepted to the running forwarder with the fewest
 * clients, when it has fewer than this one; true when it went.
 */
static bool
fw_hand_off(int fd, int port)
{
	uint32_t	least = fw_shm->clients;
	int			to = -1;
	fw_handoff_msg m;
	struct cmsghdr *c;

	for (int k = 0; k < fw_ctx->nforwarders; k++)
	{
		uint32_t	n;

		if (k == fw_self || fw_ctx->fw_handoff[k][1] < 0 ||
			__atomic_load_n(&fw_ctx->shm->fw[k].pid, __ATOMIC_RELAXED) == 0)
			continue;
		n = __atomic_load_n(&fw_ctx->shm->fw[k].clients, __ATOMIC_RELAXED);
		if (n < least)
		{
			least = n;
			to = k;
		}
	}
	if (to < 0)
		return false;
	fw_handoff_msg_init(&m);
	m.port = (uint8_t) port;
	c = CMSG_FIRSTHDR(&m.msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	/* a full queue or any failure: the client stays here */
	if (sendmsg(fw_ctx->fw_handoff[to][1], &m.msg, MSG_DONTWAIT | MSG_NOSIGNAL) != 1)
		return false;
	close(fd);
	return true;
}

/* Clients another forwarder handed to this one. */
void
fw_handed(void)
{
	for (int taken = 0; taken < FW_HANDOFF_BATCH; taken++)
	{
		fw_handoff_msg m;
		struct cmsghdr *c;
		int			fd = -1;
		ssize_t		n;

		fw_handoff_msg_init(&m);
		n = recvmsg(fw_ctx->fw_handoff[fw_self][0], &m.msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n < 0)
			return;
		c = CMSG_FIRSTHDR(&m.msg);
		if (c != NULL && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
			c->cmsg_len == CMSG_LEN(sizeof(int)))
			memcpy(&fd, CMSG_DATA(c), sizeof(int));
		if (fd < 0)
			continue;
		/* only forwarders hold the pair; a bad port byte is not theirs */
		if (n != 1 || (m.msg.msg_flags & MSG_CTRUNC) || m.port >= fw_ctx->conf->forward_ports.n)
		{
			cm_log(CMLOG_WARNING, "forwarder: a handed client came with port index %u; closed",
				   (unsigned) m.port);
			close(fd);
			continue;
		}
		fw_take(fd, m.port);
	}
}

void
fw_accept(int l)
{
	int			listen_fd = fw_ctx->fw_listen_fd[l];
	int			port = fw_ctx->fw_listen_port[l];

	for (int taken = 0; taken < FW_ACCEPT_BATCH; taken++)
	{
		int			fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

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
		if (!fw_hand_off(fd, port))
			fw_take(fd, port);
	}
}

/* Wait on the forward ports the supervisor opened. */
void
fw_open(void)
{
	if (!fw_listen_wait(true))
		cm_fatal(ROLE_EXIT_RESTART, "forwarder: could not wait on a listen socket: %m");
}

/* No new clients (smart stop): our copies of the ports are closed. */
void
fw_close_ports(void)
{
	for (int i = 0; i < fw_ctx->fw_nlisten; i++)
		close(fw_ctx->fw_listen_fd[i]); /* which also leaves the epoll set */
	fw_ctx->fw_nlisten = 0;
	accept_paused_until = 0;
}
