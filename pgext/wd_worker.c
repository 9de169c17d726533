/*-------------------------------------------------------------------------
 *
 * wd_worker.c
 *	  The "watchdog" background worker: heartbeat sessions with conmgr.
 *	  Its start-up and its event loop.
 *
 * Started by the postmaster once the instance is consistent (on a standby:
 * once it accepts read-only connections), restarted 5 s after an error
 * exit.  It owns the listen sockets on watchdog.port and one session per
 * connected conmgr process, and it is the only writer of the session table
 * in shared memory.  It is stopped with SIGTERM (die), like any worker.
 * Nothing a peer sends can make it exit: every problem closes that
 * session and is logged.
 *
 * Its other files each hold one job (wd_worker_int.h lists them):
 * wd_session.c the session table and a session's life, wd_protocol.c what
 * a peer sends, wd_accept.c the listen sockets and accepting, wd_attrs.c
 * the instance's attributes, timeline and promotion watch.
 *
 * Everything runs in one loop around one epoll set, which holds the
 * listen sockets, every session and the postmaster-death pipe, and one
 * epoll_pwait() per wake-up (see wd_init_signals() for why this is not a
 * WaitEventSet).  The wait ends at the earliest of the sessions' timers
 * and the next attribute check.  A session's timer is its next heartbeat
 * to send, the end of its peer's timeout or the end of its handshake,
 * whichever comes first; the timers sit in a wheel of 1 ms slots
 * (common/cmwheel.c), so a wake-up looks at the sessions whose time has
 * come and at no other, and setting a timer costs the same whatever the
 * number of sessions.
 * Every deadline and rate window is on the monotonic clock (WdMono): a
 * step of the wall clock neither declares every session lost at once nor
 * delays a detection.  A session whose deadline has passed is read before
 * it is judged, since its frames may be waiting unread (this process was
 * descheduled, or more sessions were ready than one batch of events
 * holds).  A wake-up accepts at most WD_ACCEPT_BATCH connections.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "postmaster/postmaster.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/pmsignal.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "cmwheel.h"
#include "cmproto.h"
#include "watchdog.h"
#include "wd_worker_int.h"

#define WD_EPOLL_BATCH		256
#define WD_GATHER_US		10000	/* least time between busy wake-ups */

int			wd_epfd = -1;
TimestampTz wd_woke_ts;			/* when the last wait ended */
static uint64 wd_wakeups;		/* waits ended */
static sigset_t wd_wait_mask;	/* signals unblocked while waiting */
static uint64 wd_timers_run;	/* session timers run */

/* Add or change a descriptor in the epoll set; false (errno set) on failure. */
bool
wd_epoll_ctl(int op, int fd, uint32 events, uint64 data)
{
	struct epoll_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.events = events;
	ev.data.u64 = data;
	return epoll_ctl(wd_epfd, op, fd, &ev) == 0;
}

/*
 * The start-up line: the limits, and who may register.  It says so when
 * nothing but reaching the port is needed.
 */
static void
wd_log_startup(void)
{
	char		cap[64];

	if (wd_max_sessions_per_address > 0)
		snprintf(cap, sizeof(cap), "%d per address", wd_max_sessions_per_address);
	else
		strlcpy(cap, "no limit per address", sizeof(cap));
	ereport(LOG,
			(errmsg("watchdog: listening on port %d for conmgr heartbeats (%d sessions at most, %s; %s)",
					wd_port, wd_shared->max_sessions, cap,
					wd_auth_key_len > 0 ?
					(wd_anyone_allowed() ? "key required, from any address" :
					 "key required, from watchdog.allowed_addresses only") :
					(wd_anyone_allowed() ?
					 "no key and no watchdog.allowed_addresses: any host that reaches this port may register" :
					 "no key, from watchdog.allowed_addresses only"))));
}

/* ---- the wait ---- */

/*
 * Why the worker does not wait in a WaitEventSet: a set cannot remove a
 * socket (PostgreSQL 15) and sessions come and go, so the sessions would
 * live in an epoll set of their own inside it, and every wake-up would
 * cost two waits, the set's and then one on the sessions.  So the worker
 * waits on its own epoll set, once a wake-up, and does for itself what
 * latch.c does on Linux: the postmaster-death pipe (postmaster_alive_fds)
 * is in the set, and a signal ends the wait.  Where latch.c uses a
 * self-pipe (15) or a signalfd (16 and later) so that a signal arriving
 * just before the wait still ends it, the worker keeps the signals whose
 * handlers set its flags (SIGHUP: reload, SIGTERM: die, SIGINT, SIGUSR1:
 * procsignal) blocked except inside epoll_pwait() (and wd_gather()'s
 * ppoll()), which unblocks them atomically: one that came earlier ends the
 * wait at once, its handler run.  The latch: those handlers set it, and
 * ResetLatch() clears it after each wait, without a system call.  The
 * worker never marks its latch as slept on (maybe_sleeping), so a
 * SetLatch() from another process sends no signal and is seen at the next
 * wake-up; other processes reach the worker by the signals above.
 */
static void
wd_init_signals(sigset_t *wait_mask)
{
	sigset_t	block;

	sigprocmask(SIG_SETMASK, NULL, wait_mask);
	block = *wait_mask;
	sigaddset(&block, SIGHUP);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_SETMASK, &block, NULL);
}

/*
 * Before a wait that follows a wake-up with events, let frames gather.
 * Thousands of peers beat at phases of their own, so a worker that waits
 * again at once wakes for every few frames, and the wake-up costs more
 * than the frames; sleeping first until WD_GATHER_US after the last
 * wake-up (or until "next", the next timer, if sooner) bounds busy
 * wake-ups to 1 s / WD_GATHER_US, and every frame that arrived meanwhile
 * comes back from one wait.  A frame waits at most that long, a small
 * part of the shortest heartbeat_interval; an idle worker, or one woken
 * by a timer, does not sleep here.  Signals end the sleep as they end a
 * wait; false then, so that the wait does not block before they are
 * handled.
 */
static bool
wd_gather(WdMono woke_at, int last_events, WdMono next)
{
	WdMono		now;
	WdMono		until;
	struct timespec ts;
	struct pollfd pfd;

	if (last_events == 0 || last_events == WD_EPOLL_BATCH)
		return true;
	now = wd_mono_now();
	until = Min(woke_at + WD_GATHER_US, next);
	if (until <= now)
		return true;
	ts.tv_sec = (until - now) / USECS_PER_SEC;
	ts.tv_nsec = ((until - now) % USECS_PER_SEC) * 1000;
	/* a promotion asked for ends the sleep: it is not to wait for others */
	pfd.fd = wd_promote_watch_fd;
	pfd.events = POLLIN;
	pgstat_report_wait_start(PG_WAIT_EXTENSION);
	if (ppoll(&pfd, pfd.fd >= 0 ? 1 : 0, &ts, &wd_wait_mask) < 0 && errno == EINTR)
	{
		pgstat_report_wait_end();
		return false;
	}
	pgstat_report_wait_end();
	pg_atomic_write_u64(&wd_shared->wakeups, ++wd_wakeups);
	return true;
}

/* ---- timers ---- */

static inline WdSession *
wd_timer_session(cmwheel_node *timer)
{
	return (WdSession *) ((char *) timer - offsetof(WdSession, timer));
}

/*
 * Run the timers that are due; returns the monotonic time of the next one.
 * Heartbeats are sent up to WD_SEND_SLACK_US early, so that the sessions
 * whose beats fall within that much of each other share a wake-up; so
 * every timer due by then is taken off the wheel first, and run after,
 * which also runs each at most once here even when it stays due (a
 * deadline a little ahead).
 */
static WdMono
wd_run_timers(void)
{
	WdMono		now = wd_mono_now();
	WdMono		next;
	WdMono		first;
	cmwheel_node *due;

	wd_check_attrs(now);
	wd_log_window(&wd_noiselog, now);
	wd_log_window(&wd_authlog, now);
	wd_log_window(&wd_sessionlog, now);

	/*
	 * Taking them off the wheel read their timers, not the rest of their
	 * entries: ask for the entry of the one after next and the row of the
	 * next (wd_prefetch_entry()).
	 */
	due = cmwheel_take_due(&wd_timers, now + WD_SEND_SLACK_US);
	if (due != NULL)
		wd_prefetch_entry(wd_timer_session(due));
	while (due != NULL)
	{
		WdSession  *s = wd_timer_session(due);

		due = due->next;
		if (due != NULL)
		{
			if (due->next != NULL)
				wd_prefetch_entry(wd_timer_session(due->next));
			wd_prefetch_stats(wd_timer_session(due));
		}
		pg_atomic_write_u64(&wd_shared->timers_run, ++wd_timers_run);
		if (wd_session_timer(s, now))
			wd_timer_arm(s);
		else
			wd_release(s->idx);
	}

	next = wd_attrs_next_check();
	if (cmwheel_next(&wd_timers, &first))
		next = Min(next, first);
	return next;
}

/* ---- start-up and the loop ---- */

/*
 * Set the worker up: signals, its part of shared memory, the shared key,
 * the session table, the epoll set with the postmaster-death pipe and the
 * listen sockets, the instance's attributes; then the signal mask of the
 * waits, and the start-up line.  Any failure is an ERROR: the postmaster
 * starts the worker again.
 */
static void
wd_start(void)
{
	wd_bgworker_start();
	LWLockAcquire(wd_shared->lock, LW_EXCLUSIVE);
	/* Sessions of an earlier incarnation are gone with their sockets. */
	memset(wd_shared->sessions, 0,
		   sizeof(WdSessionStat) * wd_shared->max_sessions);
	wd_shared->watchdog_pid = MyProcPid;
	LWLockRelease(wd_shared->lock);

	wd_load_key();
	wd_sessions_init();

	wd_epfd = epoll_create1(EPOLL_CLOEXEC);
	if (wd_epfd < 0)
		ereport(ERROR,
				(errcode_for_socket_access(),
				 errmsg("watchdog: could not create epoll descriptor: %m")));
	if (!wd_epoll_ctl(EPOLL_CTL_ADD, postmaster_alive_fds[POSTMASTER_FD_WATCH],
					  EPOLLIN, WD_EV_POSTMASTER))
		ereport(ERROR,
				(errcode_for_socket_access(),
				 errmsg("watchdog: could not wait for postmaster death: %m")));
	wd_open_listeners();

	wd_attrs_init();
	wd_woke_ts = GetCurrentTimestamp();

	wd_init_signals(&wd_wait_mask);
	wd_log_startup();
}

/*
 * SIGHUP: read the configuration again, and log the start-up line again
 * when who may register has changed.
 */
static void
wd_reload(void)
{
	char	   *allowed = pstrdup(wd_allowed_addresses);
	int			cap = wd_max_sessions_per_address;

	ConfigReloadPending = false;
	ProcessConfigFile(PGC_SIGHUP);
	/* default_transaction_read_only may have changed: look now. */
	wd_attrs_check_now();
	/* Registered sessions stay; new ones meet the new settings. */
	if (strcmp(allowed, wd_allowed_addresses) != 0 ||
		cap != wd_max_sessions_per_address)
		wd_log_startup();
	pfree(allowed);
}

/*
 * One event of a wait: the promotion watch, the postmaster-death pipe, a
 * listen socket or a session, told apart by the epoll data (WD_EV).
 * "now" is when the wait ended.
 */
static void
wd_event(const struct epoll_event *ev, WdMono now)
{
	uint32		gen = (uint32) (ev->data.u64 >> 32);
	uint32		idx = (uint32) ev->data.u64;
	WdSession  *s;

	if (ev->data.u64 == WD_EV_PROMOTE)
	{
		wd_promote_event();
		return;
	}
	if (ev->data.u64 == WD_EV_POSTMASTER)
	{
		/* What WL_EXIT_ON_PM_DEATH does. */
		if (!PostmasterIsAliveInternal())
			proc_exit(1);
		return;
	}
	if (gen == 0)
	{
		wd_accept(idx);
		return;
	}
	s = wd_sessions[idx];
	/* closed earlier in this batch, its entry maybe reused since */
	if (s == NULL || s->gen != gen || s->state == WD_SESS_FREE)
		return;
	if (!(ev->events & EPOLLOUT) || wd_flush(s))
	{
		if (ev->events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP))
			wd_read(s, now, (ev->events & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)) != 0);
	}
	wd_release(idx);
}

/* The session an event of a wait is for, or NULL. */
static inline WdSession *
wd_event_session(const struct epoll_event *ev)
{
	uint32		gen = (uint32) (ev->data.u64 >> 32);
	uint32		idx = (uint32) ev->data.u64;

	return gen != 0 && idx < (uint32) wd_nsessions ? wd_sessions[idx] : NULL;
}

/*
 * Handle the "n" events of a wait, asking for what the next ones will
 * touch ahead (wd_prefetch_entry()): the entry of the event after next,
 * the statistics row of the next one, whose entry was asked for one event
 * earlier.
 */
static void
wd_events(const struct epoll_event *evs, int n, WdMono now)
{
	WdSession  *s;

	for (int i = 0; i < n && i < 2; i++)
		if ((s = wd_event_session(&evs[i])) != NULL)
			wd_prefetch_entry(s);
	for (int i = 0; i < n; i++)
	{
		if (i + 2 < n && (s = wd_event_session(&evs[i + 2])) != NULL)
			wd_prefetch_entry(s);
		if (i + 1 < n && (s = wd_event_session(&evs[i + 1])) != NULL)
			wd_prefetch_stats(s);
		wd_event(&evs[i], now);
	}
}

/*
 * The worker's loop: run the timers that are due, let frames gather if
 * the last wake-up was busy, wait until the next timer or an event, then
 * handle signals and every event of the wait.
 */
void
watchdog_main(Datum arg)
{
	WdMono		woke_at = 0;
	int			n = 0;

	wd_start();
	for (;;)
	{
		struct epoll_event evs[WD_EPOLL_BATCH];
		WdMono		next;
		WdMono		now;
		int			timeout;

		next = wd_run_timers();
		if (!wd_gather(woke_at, n, next))
			next = 0;
		now = wd_mono_now();
		/* rounded up: waking a little early would only loop again */
		timeout = next <= now ? 0 : (int) Min((next - now + 999) / 1000, INT_MAX);

		pgstat_report_wait_start(PG_WAIT_EXTENSION);
		n = epoll_pwait(wd_epfd, evs, lengthof(evs), timeout, &wd_wait_mask);
		pgstat_report_wait_end();
		woke_at = wd_mono_now();
		wd_woke_ts = GetCurrentTimestamp();
		pg_atomic_write_u64(&wd_shared->wakeups, ++wd_wakeups);
		if (n < 0)
		{
			if (errno != EINTR)
				ereport(ERROR,
						(errcode_for_socket_access(),
						 errmsg("watchdog: could not wait for events: %m")));
			n = 0;
		}
		if (MyLatch->is_set)
			ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
			wd_reload();
		wd_events(evs, n, woke_at);
	}
}
