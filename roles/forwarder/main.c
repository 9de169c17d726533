/*-------------------------------------------------------------------------
 *
 * main.c
 *	  The forwarder role: forward_ports, for clients that speak the
 *	  PostgreSQL protocol themselves.
 *
 * Forked by the supervisor when forward_ports is set, forwarder_processes
 * of them (by default one per processor), each with sessions of its own;
 * they show in ps as "conmgr: forwarder N".  They share the ports: the
 * kernel wakes one per connection, and accept.c hands clients on so that
 * each process holds a like share.  A client that connects to a forward
 * port (conmgr.conf forward_ports, TARGET=PORT; accept.c) is connected to
 * the instance a RESOLVE for that target would be given first now
 * (connect.c, at the addresses resolve.c keeps), and from then on bytes
 * pass both ways untouched (relay.c); a CancelRequest goes to every
 * instance that is up (cancel.c).  It only
 * reads the shared instance table, and writes its own counts there: its
 * clients (for max_connections and the hand-off) and its sessions per
 * port and instance (for cm_ctl status).  When the heartbeat roles
 * publish a change (the eventfd fw_wake_fd), the sessions whose instance
 * was lost or no longer fits are cut (cut.c).  forwarder.h says which file
 * does what.
 *
 * This file is the loop: one epoll set, one wait whose timeout is the
 * next of the sessions' deadlines and the accept pause, and a dispatch of
 * what is ready.  Nothing in the loop blocks but that wait (host names
 * are looked up by resolve.c's thread).  Running in a process of its own,
 * forwarding never delays the listener's resolves or down-notices.
 *
 * SIGTERM (fast stop): every session ends now, the role exits 0.  SIGUSR1
 * (smart stop): the ports are closed and the role exits 0 once the last
 * session has ended.  It also exits when the supervisor dies.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "cmclock.h"
#include "forwarder.h"

cm_ctx	   *fw_ctx;
int			fw_self;
shm_forwarder *fw_shm;
int			fw_ep_fd = -1;
route_reader fw_routes = {.quiet = true};

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

bool
fw_ep_set(int op, int fd, uint32_t events, uint64_t data)
{
	struct epoll_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.events = events;
	ev.data.u64 = data;
	return epoll_ctl(fw_ep_fd, op, fd, &ev) == 0;
}

/* The wait's timeout in ms: the next deadline, the accept pause's end. */
static int
fw_next_timeout(void)
{
	int64_t		now = cmclock_ms();
	int64_t		next = fw_expire(now);
	int64_t		resume = fw_accept_timer(now);

	if (resume >= 0 && (next < 0 || resume < next))
		next = resume;
	return next < 0 ? -1 : (int) (next - now);
}

/* A ready socket of a session. */
static void
fw_event(uint64_t data, uint32_t events)
{
	int			kind = EV_KIND(data);
	fw_sess    *s;

	if (EV_IDX(data) >= (uint32_t) fw_tab.nalloc)
		return;
	s = &fw_tab.s[EV_IDX(data)];
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
			fw_refusing_read(s);
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
			fw_cancel_send(s);
			break;
		case FW_FREE:
			break;
	}
}

/* One ready descriptor. */
static void
fw_dispatch(uint64_t data, uint32_t events)
{
	switch (EV_KIND(data))
	{
		case EV_DEATH:
			exit(ROLE_EXIT_DONE);	/* the supervisor is gone */
		case EV_WAKE:
			{
				uint64_t	v;

				(void) !read(fw_ctx->fw_wake_fd[fw_self], &v, sizeof(v));
				fw_check_instances();
				fw_resolve_all();
				break;
			}
		case EV_RESOLVED:
			fw_resolved();
			break;
		case EV_LISTEN:
			fw_accept((int) EV_IDX(data));
			break;
		case EV_HANDOFF:
			fw_handed();
			break;
		default:
			fw_event(data, events);
			break;
	}
}

/* Smart stop: no new sessions; true once the last one has ended. */
static bool
fw_smart_stop(void)
{
	static bool smart_started;

	if (!smart_started)
	{
		smart_started = true;
		fw_close_ports();
		cm_log(CMLOG_LOG, "forwarder: smart shutdown: no new sessions; %d still open",
			   fw_tab.nused);
	}
	return fw_tab.nused == 0;
}

noreturn void
forwarder_main(cm_ctx *c, int self)
{
	sigset_t	waitmask;
	int			handoff;

	fw_ctx = c;
	fw_self = self;
	fw_shm = &fw_ctx->shm->fw[self];
	cm_log_init(fw_ctx->conf, "forwarder");
	role_stop_signals(handle_sigterm, handle_sigusr1);
	sigemptyset(&waitmask);

	fw_ep_fd = epoll_create1(EPOLL_CLOEXEC);
	handoff = fw_ctx->fw_handoff[self][0];
	if (fw_ep_fd < 0 ||
		!fw_ep_set(EPOLL_CTL_ADD, fw_ctx->fw_wake_fd[self], EPOLLIN, EV_MAKE(EV_WAKE, 0, 0)) ||
		!fw_ep_set(EPOLL_CTL_ADD, fw_ctx->death_fd, EPOLLIN, EV_MAKE(EV_DEATH, 0, 0)) ||
		(handoff >= 0 && !fw_ep_set(EPOLL_CTL_ADD, handoff, EPOLLIN, EV_MAKE(EV_HANDOFF, 0, 0))))
		cm_fatal(ROLE_EXIT_RESTART, "forwarder: could not set up its wait: %m");
	fw_resolve_start();
	fw_open();
	/* from now on others may hand clients to this one */
	__atomic_store_n(&fw_shm->pid, getpid(), __ATOMIC_RELAXED);
	cm_log(CMLOG_LOG, "forwarder: forwarding %s (process %d of %d)",
		   fw_ctx->conf->forward_ports.text, self + 1, fw_ctx->nforwarders);

	while (!stop_requested)
	{
		struct epoll_event evs[FW_EPOLL_BATCH];
		int			timeout = fw_next_timeout();
		int			n;

		if (smart_requested && fw_smart_stop())
			break;
		n = epoll_pwait(fw_ep_fd, evs, FW_EPOLL_BATCH, timeout, &waitmask);
		if (n < 0 && errno != EINTR)
			cm_fatal(ROLE_EXIT_RESTART, "forwarder: could not wait: %m");
		for (int i = 0; i < n; i++)
			fw_dispatch(evs[i].data.u64, evs[i].events);
	}
	exit(ROLE_EXIT_DONE);
}
