/*-------------------------------------------------------------------------
 *
 * main.c
 *	  The listener role: applications' resolve requests and down-notices.
 *
 * Forked by the supervisor, one per conmgr; shows in ps as "conmgr:
 * listener :PORT".  It owns the listen sockets on `port` (accept.c), the
 * control socket (control.c) and every application session (sessions.c,
 * protocol.c; docs/protocol.md, section 2), and only reads the shared
 * instance table (route_view.c).  Heartbeat roles write its eventfd when
 * an instance's routing changes; it then re-reads the table and sends
 * INSTANCE_DOWN to every session attached to an instance that is no
 * longer up or has become a stale primary (route.c), and closes them.
 *
 * This file is the loop: one epoll set, one wait whose timeout is the
 * next of the role's deadlines (lsn_next_timeout()), and a dispatch of
 * what is ready.  Nothing in the loop blocks but that wait.
 *
 * SIGTERM (fast stop): every attached session gets INSTANCE_DOWN with
 * reason "conmgr shutting down", then the role exits 0.  SIGUSR1 (smart
 * stop): the listen sockets are closed and the role exits 0 once the last
 * session has ended; until then, down-notices still go out.  It also
 * exits when the supervisor dies.
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
#include "listener.h"

cm_ctx	   *lsn_ctx;
int			lsn_ep_fd = -1;
route_reader lsn_routes;

static volatile sig_atomic_t got_sigterm;
static volatile sig_atomic_t got_smart;

static void
handle_sigterm(int sig)
{
	if (sig == SIGUSR1)
		got_smart = 1;
	else
		got_sigterm = 1;
}

bool
lsn_ep_set(int op, int fd, uint32_t events, uint64_t data)
{
	struct epoll_event ev;

	ev.events = events;
	ev.data.u64 = data;
	return epoll_ctl(lsn_ep_fd, op, fd, &ev) == 0;
}

/* A session's epoll data: its generation and its index. */
uint64_t
lsn_ev_data(const app *a)
{
	return ((uint64_t) a->gen << 32) | (uint32_t) (a - lsn_apps);
}

/* The epoll set, with the role's own descriptors in it. */
static void
lsn_watch(void)
{
	if ((lsn_ep_fd = epoll_create1(EPOLL_CLOEXEC)) < 0)
		cm_fatal(ROLE_EXIT_RESTART, "could not create an epoll set: %s", strerror(errno));
	if (!lsn_ep_set(EPOLL_CTL_ADD, lsn_ctx->death_fd, EPOLLIN, EV_DEATH) ||
		!lsn_ep_set(EPOLL_CTL_ADD, lsn_ctx->wake_fd, EPOLLIN, EV_WAKE) ||
		(lsn_ctl_fd >= 0 && !lsn_ep_set(EPOLL_CTL_ADD, lsn_ctl_fd, EPOLLIN, EV_CONTROL)))
		cm_fatal(ROLE_EXIT_RESTART, "could not watch the role's descriptors: %s", strerror(errno));
	for (int i = 0; i < lsn_nlisten; i++)
		if (!lsn_ep_set(EPOLL_CTL_ADD, lsn_listen_fds[i], EPOLLIN, EV_LISTEN + i))
			cm_fatal(ROLE_EXIT_RESTART, "could not watch a listen socket: %s", strerror(errno));
}

/*
 * The listener's timers: sessions whose time limit is over are closed,
 * the accept pause ends, the log budget's window turns.  Returns the
 * wait's timeout in ms until the next of them (-1: none).
 */
static int
lsn_next_timeout(void)
{
	int64_t		now = cmclock_us();
	int64_t		next = lsn_accept_timer(now);
	int64_t		due;

	/* lines the log budget dropped are counted when its window is over */
	lsn_log_window(now);
	due = cmloglimit_next(&lsn_noise);
	if (due < next)
		next = due;
	due = lsn_sessions_timer(now);
	if (due < next)
		next = due;
	if (next == INT64_MAX)
		return -1;
	/* rounded up, so that the wake-up finds the deadline passed */
	return next - now >= 60000000 ? 60000 : (int) ((next - now + 999) / 1000);
}

/* One ready descriptor. */
static void
lsn_dispatch(uint64_t d)
{
	if (d == EV_DEATH)
		exit(ROLE_EXIT_DONE);
	else if (d == EV_WAKE)
	{
		uint64_t	v;

		(void) !read(lsn_ctx->wake_fd, &v, sizeof(v));
		check_instances();
	}
	else if (d == EV_CONTROL)
		lsn_accept(lsn_ctl_fd, true);
	else if (d >= EV_LISTEN && d < EV_LISTEN + LSN_MAX_LISTEN)
	{
		if ((int) (d - EV_LISTEN) < lsn_nlisten && lsn_accepting())
			lsn_accept(lsn_listen_fds[d - EV_LISTEN], false);
	}
	else
	{
		uint32_t	k = (uint32_t) d;
		app		   *a = (int) k < lsn_napps_alloc ? &lsn_apps[k] : NULL;

		/* closed meanwhile (a down-notice), or its slot reused */
		if (a == NULL || a->state == APP_FREE || a->gen != (uint32_t) (d >> 32))
			return;
		if (a->state == APP_ANSWERING)
			ctl_write(a);
		else
			app_read(a);
	}
}

/* Smart stop: no new sessions; exit once the last one has ended. */
static void
lsn_smart_stop(void)
{
	if (lsn_nlisten > 0)
	{
		for (int i = 0; i < lsn_nlisten; i++)
			close(lsn_listen_fds[i]);	/* which also leaves the epoll set */
		lsn_nlisten = 0;
		cm_log(CMLOG_LOG, "smart shutdown: no new sessions; %d still open", lsn_napps);
	}
	if (lsn_napps == 0)
		exit(ROLE_EXIT_DONE);
}

/* Fast stop: tell attached applications, then go. */
static noreturn void
lsn_fast_stop(void)
{
	for (int k = 0; k < lsn_napps_alloc; k++)
	{
		if (lsn_apps[k].state == APP_ATTACHED)
			app_send_down(&lsn_apps[k], CMPROTO_DOWN_SHUTDOWN);
		else if (lsn_apps[k].state != APP_FREE)
			app_close(&lsn_apps[k]);
	}
	exit(ROLE_EXIT_DONE);
}

void
listener_main(cm_ctx *c)
{
	sigset_t	waitmask;

	lsn_ctx = c;
	cm_log_init(lsn_ctx->conf, "listener");
	role_stop_signals(handle_sigterm, handle_sigterm);
	sigemptyset(&waitmask);
	lsn_open();
	ctl_open();
	lsn_open_spare();
	lsn_watch();
	cm_log(CMLOG_LOG, "listening for applications on \"%s\" port %d",
		   lsn_ctx->conf->listen_addresses, lsn_ctx->conf->port);

	while (!got_sigterm)
	{
		struct epoll_event ev[64];
		int			n;

		if (got_smart)
			lsn_smart_stop();
		n = epoll_pwait(lsn_ep_fd, ev, 64, lsn_next_timeout(), &waitmask);
		if (n < 0 && errno != EINTR)
			cm_fatal(ROLE_EXIT_RESTART, "epoll_pwait failed: %s", strerror(errno));
		for (int i = 0; i < n; i++)
			lsn_dispatch(ev[i].data.u64);
	}
	lsn_fast_stop();
}
