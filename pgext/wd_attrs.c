/*-------------------------------------------------------------------------
 *
 * wd_attrs.c
 *	  What the watchdog worker tells conmgr about its instance: the
 *	  attributes (in recovery, promotion requested, read-only by default)
 *	  and the timeline.
 *
 * The worker looks every watchdog.check_attr_interval and after a reload;
 * a standby also looks for its promotion every WD_PROMOTION_POLL_US, and
 * at once when an inotify watch on the data directory sees the request
 * made.  When what a session's protocol version carries has changed, the
 * session is told with HB_ATTRS at once rather than at its next beat:
 * conmgr routes by these attributes, and the timeline tells it the newest
 * primary from one left behind by a promotion.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlogrecovery.h"
#include "miscadmin.h"
#include "storage/lwlock.h"

#include "cmproto.h"
#include "watchdog.h"
#include "wd_worker_int.h"

#define WD_PROMOTION_POLL_US 20000	/* a standby looks for its promotion */

uint32		wd_cur_attrs;
uint32		wd_cur_timeline;	/* what the sessions were last told */
int			wd_promote_watch_fd = -1;	/* inotify, while in recovery */
static WdMono next_attr_check;
static WdMono next_promotion_poll;	/* while in recovery */

/* ---- looking at the instance ---- */

/*
 * Whether this standby's promotion has been asked for: pg_ctl promote and
 * pg_promote() create PROMOTE_SIGNAL_FILE, then signal the postmaster;
 * the startup process removes the file when it takes the request, and
 * from then on PromoteIsTriggered() says so until recovery ends (it also
 * covers PostgreSQL 15's promote_trigger_file).  Both looks cost a
 * spinlock and a stat().
 */
static bool
wd_promotion_requested(void)
{
	struct stat st;

	return PromoteIsTriggered() || stat(PROMOTE_SIGNAL_FILE, &st) == 0;
}

static uint32
wd_current_attrs(void)
{
	uint32		attrs = 0;

	if (RecoveryInProgress())
	{
		attrs |= CMPROTO_ATTR_IN_RECOVERY;
		if (wd_promotion_requested())
			attrs |= CMPROTO_ATTR_PROMOTING;
	}
	if (DefaultXactReadOnly)
		attrs |= CMPROTO_ATTR_READ_ONLY;
	return attrs;
}

/*
 * The timeline this instance is on: the one it writes WAL on, or on a
 * standby the one of the last record it replayed, which moves to a new
 * primary's timeline once the standby follows it.  conmgr compares them to
 * tell the newest primary from one left behind by a promotion.  Both calls
 * take a spinlock at most (no WAL is read), and exist from PostgreSQL 15
 * on, the oldest version pgext builds for.  Recovery never starts again
 * once over, so the first branch cannot meet a server back in recovery.
 */
static uint32
wd_current_timeline(void)
{
	TimeLineID	tli;

	if (!RecoveryInProgress())
		return GetWALInsertionTimeLine();
	(void) GetXLogReplayRecPtr(&tli);
	return tli;
}

/* ---- the promotion watch ---- */

/*
 * On a standby, hear of a promotion the moment it is asked for: pg_ctl
 * promote and pg_promote() create PROMOTE_SIGNAL_FILE in the data
 * directory before they signal the postmaster, so a watch on the
 * directory wakes this process before the startup process has begun to
 * promote, and conmgr can stop sending writes to the old primary before
 * the new one takes any.  Without the watch (inotify refused), the poll of
 * wd_check_attrs() still sees the request, within WD_PROMOTION_POLL_US.
 */
static void
wd_watch_promotion(void)
{
	int			fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);

	if (fd >= 0 &&
		inotify_add_watch(fd, DataDir, IN_CREATE | IN_MOVED_TO) >= 0 &&
		wd_epoll_ctl(EPOLL_CTL_ADD, fd, EPOLLIN, WD_EV_PROMOTE))
	{
		wd_promote_watch_fd = fd;
		return;
	}
	ereport(LOG,
			(errmsg("watchdog: could not watch the data directory for a promotion request: %m"),
			 errdetail("A promotion is seen within %d ms instead.",
					   WD_PROMOTION_POLL_US / 1000)));
	if (fd >= 0)
		close(fd);
}

/* Something was created in the data directory: look for a promotion now. */
void
wd_promote_event(void)
{
	char		buf[4096] pg_attribute_aligned(sizeof(struct inotify_event));

	while (read(wd_promote_watch_fd, buf, sizeof(buf)) > 0)
		;
	next_promotion_poll = 0;
}

/* ---- telling the sessions ---- */

/* At start: what the instance is now, and the watch on a standby. */
void
wd_attrs_init(void)
{
	wd_cur_attrs = wd_current_attrs();
	wd_cur_timeline = wd_current_timeline();
	next_attr_check = 0;
	if (wd_cur_attrs & CMPROTO_ATTR_IN_RECOVERY)
		wd_watch_promotion();
}

/* Look at the next pass of the timers (after a reload, for instance). */
void
wd_attrs_check_now(void)
{
	next_attr_check = 0;
}

/*
 * Every watchdog.check_attr_interval: when the attributes or the timeline
 * changed, tell every registered session with HB_ATTRS.  A session hears
 * of what its version carries: version 1 of attribute changes only (its
 * HB_ATTRS has no timeline), version 2 of the timeline too, version 3 of
 * a promotion asked for as well.
 */
void
wd_check_attrs(WdMono now)
{
	uint32		attrs;
	uint32		timeline;

	/*
	 * A standby looks for its promotion every WD_PROMOTION_POLL_US, whatever
	 * check_attr_interval says, and at once when the promotion is asked for
	 * (wd_promote_event()): until conmgr hears of it, the old primary (if it
	 * still runs) is the only primary conmgr knows, and new writes go there.
	 * The looks cost a spinlock and a stat(), so the cost is the wake-ups,
	 * fifty a second on a standby only.
	 */
	if (now < next_attr_check)
	{
		if (!(wd_cur_attrs & CMPROTO_ATTR_IN_RECOVERY) || now < next_promotion_poll)
			return;
		next_promotion_poll = now + WD_PROMOTION_POLL_US;
		if (RecoveryInProgress() &&
			wd_promotion_requested() == ((wd_cur_attrs & CMPROTO_ATTR_PROMOTING) != 0))
			return;
	}
	next_attr_check = now + (WdMono) wd_check_attr_interval * 1000;

	attrs = wd_current_attrs();
	timeline = wd_current_timeline();
	if (attrs == wd_cur_attrs && timeline == wd_cur_timeline)
		return;
	ereport(LOG,
			(errmsg("watchdog: instance attributes changed: %s%s, %s, timeline %u",
					(attrs & CMPROTO_ATTR_IN_RECOVERY) ? "in recovery" : "not in recovery",
					(attrs & CMPROTO_ATTR_PROMOTING) ? " (promotion requested)" : "",
					(attrs & CMPROTO_ATTR_READ_ONLY) ? "read-only by default" : "read-write by default",
					timeline)));
	for (int i = 0; i < wd_nsessions; i++)
	{
		WdSession  *s = wd_sessions[i];
		cmproto_msg msg;

		if (s == NULL || s->state != WD_SESS_UP)
			continue;
		if (wd_session_attrs(s, attrs) == wd_session_attrs(s, wd_cur_attrs) &&
			(s->version < 2 || timeline == wd_cur_timeline))
			continue;
		memset(&msg, 0, sizeof(msg));
		msg.type = CMPROTO_HB_ATTRS;
		msg.u.hb_attrs.attrs = wd_session_attrs(s, attrs);
		if (s->version >= 2)
			msg.u.hb_attrs.timeline = timeline;
		(void) wd_send(s, &msg);
		wd_release(i);
	}
	wd_cur_attrs = attrs;
	wd_cur_timeline = timeline;
	if (!(attrs & CMPROTO_ATTR_IN_RECOVERY) && wd_promote_watch_fd >= 0)
	{
		/* recovery never starts again: nothing more to watch for */
		(void) epoll_ctl(wd_epfd, EPOLL_CTL_DEL, wd_promote_watch_fd, NULL);
		close(wd_promote_watch_fd);
		wd_promote_watch_fd = -1;
	}
}

/* When wd_check_attrs() next has something to look at. */
WdMono
wd_attrs_next_check(void)
{
	WdMono		next = next_attr_check;

	if (wd_cur_attrs & CMPROTO_ATTR_IN_RECOVERY)
		next = Min(next, next_promotion_poll);
	return next;
}
