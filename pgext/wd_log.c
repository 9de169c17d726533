/*-------------------------------------------------------------------------
 *
 * wd_log.c
 *	  Rate limits for the log lines that peers can cause.
 *
 * Anyone who reaches watchdog.port can make the watchdog write a line (a
 * connection that never registers, a failed authentication, and without
 * a key a registration and its loss), and each loss makes the terminator
 * write one per session it ends.  A WdLogLimit (common/cmloglimit.h, the
 * limiter conmgr's listener uses too) lets at most "burst" lines a minute
 * through per source address and kind of message, and "budget" a minute
 * over all sources (a flood from many addresses would otherwise cycle its
 * table); the next line of a kind says how many like it were held back,
 * and once a minute a line counts what the budget dropped.  Windows are
 * on the monotonic clock.  Each process keeps its own limits.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "watchdog.h"

/* A kind of message, from its text: a hash that needs no table. */
uint32
wd_log_kind(const char *text)
{
	return cmloglimit_kind(text);
}

static void
wd_log_dropped(const WdLogLimit *lim, uint64 dropped)
{
	if (dropped > 0)
		ereport(LOG,
				(errmsg("watchdog: %llu messages about %s were not logged in the last minute",
						(unsigned long long) dropped, lim->what),
				 errdetail("At most %d such messages are logged a minute, %d per source address and reason.",
						   lim->budget, lim->burst)));
}

/* Say how many lines the budget dropped, once its window is over. */
void
wd_log_window(WdLogLimit *lim, WdMono now)
{
	wd_log_dropped(lim, cmloglimit_window(lim, now));
}

/*
 * Whether a message of this kind about this source address may be logged
 * now; if so, *suppressed says how many like it were not logged since the
 * last one.  The source is the address without its port.
 */
bool
wd_log_allowed(WdLogLimit *lim, const WdAddr *addr, uint32 kind, WdMono now,
			   uint64 *suppressed)
{
	uint8		source[17];
	size_t		len = addr->family == AF_INET ? 4 : 16;
	uint64		dropped;
	bool		allowed;

	source[0] = addr->family;
	memcpy(source + 1, addr->addr, len);
	allowed = cmloglimit_allowed(lim, source, len + 1, kind, now, suppressed, &dropped);
	wd_log_dropped(lim, dropped);
	return allowed;
}
