/*-------------------------------------------------------------------------
 *
 * accept.c
 *	  The forward ports' listen sockets and accepting.
 *
 * Each forward port listens on every entry of listen_addresses.  A new
 * client becomes a session in FW_FIRST, which must bring the head of its
 * first packet within FW_FIRST_TIMEOUT_MS; one beyond max_connections is
 * still taken, and refused as a server over its limit refuses once that
 * packet is in.  Out of descriptors, the ports stop accepting for a
 * second (fw_accept_timer() resumes them), since the pending connection
 * would wake the loop at once again.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cmclock.h"
#include "forwarder.h"

fw_listen	fw_listens[FW_MAX_LISTEN];
int			fw_nlisten;

static int64_t accept_paused_until; /* monotonic ms; 0 = accepting */

/* Stop taking connections (out of descriptors) for a second, or resume. */
static void
fw_pause_accept(bool pause)
{
	for (int i = 0; i < fw_nlisten; i++)
		(void) fw_ep_set(EPOLL_CTL_MOD, fw_listens[i].fd, pause ? 0 : EPOLLIN,
						 EV_MAKE(EV_LISTEN, 0, i));
	accept_paused_until = pause ? cmclock_ms() + 1000 : 0;
}

/* Resume accepting when the pause is over; when it ends (ms), or -1. */
int64_t
fw_accept_timer(int64_t now)
{
	if (accept_paused_until == 0 || fw_nlisten == 0)
		return -1;
	if (now >= accept_paused_until)
	{
		fw_pause_accept(false);
		return -1;
	}
	return accept_paused_until;
}

void
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
		fw_nclients++;
		/* refused, as a server over its limit, once its first packet is in */
		s->over_limit = fw_ctx->conf->max_connections > 0 &&
			fw_nclients > fw_ctx->conf->max_connections;
		s->port = l->port;
		s->target = fw_ctx->conf->forward_ports.f[l->port].target;
		fw_set_state(s, FW_FIRST);
		s->firstneed = 8;
		s->deadline = cmclock_ms() + FW_FIRST_TIMEOUT_MS;
		if (!fw_ep_set(EPOLL_CTL_ADD, fd, EPOLLIN, EV_MAKE(EV_CLIENT, s->gen, fw_idx(s))))
		{
			fw_end(s);
			continue;
		}
		s->cmask = EPOLLIN;
	}
}

/* Every forward port on every entry of listen_addresses. */
void
fw_open(void)
{
	for (int p = 0; p < fw_ctx->conf->forward_ports.n; p++)
	{
		int			fds[FW_MAX_LISTEN];
		int			n = role_listen(fw_ctx->conf->listen_addresses,
									fw_ctx->conf->forward_ports.f[p].port, "forward port",
									fds, FW_MAX_LISTEN - fw_nlisten);

		for (int k = 0; k < n; k++)
		{
			if (!fw_ep_set(EPOLL_CTL_ADD, fds[k], EPOLLIN, EV_MAKE(EV_LISTEN, 0, fw_nlisten)))
				cm_fatal(ROLE_EXIT_RESTART, "forwarder: could not wait on a listen socket: %m");
			fw_listens[fw_nlisten].fd = fds[k];
			fw_listens[fw_nlisten].port = p;
			fw_nlisten++;
		}
	}
}
