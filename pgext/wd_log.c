/*-------------------------------------------------------------------------
 *
 * wd_log.c
 *	  Rate limits for the log lines that peers can cause.
 *
 * Anyone who reaches watchdog.port can make the watchdog write a line (a
 * connection that never registers, a failed authentication, and without
 * a key a registration and its loss), and each loss makes the terminator
 * write one per session it ends.  A WdLogLimit lets at most "burst" lines
 * a minute through per source address and kind of message, and "budget"
 * a minute over all sources (a flood from many addresses would otherwise
 * cycle its table); the next line of a kind says how many like it were
 * held back, and once a minute a line counts what the budget dropped.
 * Windows are on the monotonic clock.  Each process keeps its own limits.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "watchdog.h"

#define WD_LOG_WINDOW_US	(60 * USECS_PER_SEC)

/* A kind of message, from its text: a hash that needs no table. */
uint32
wd_log_kind(const char *text)
{
	uint32		h = 5381;

	for (const unsigned char *p = (const unsigned char *) text; *p; p++)
		h = h * 33 + *p;
	return h;
}

/* Say how many lines the budget dropped, once its window is over. */
void
wd_log_window(WdLogLimit *lim, WdMono now)
{
	if (now - lim->window_start < WD_LOG_WINDOW_US)
		return;
	if (lim->window_dropped > 0)
		ereport(LOG,
				(errmsg("watchdog: %llu messages about %s were not logged in the last minute",
						(unsigned long long) lim->window_dropped, lim->what),
				 errdetail("At most %d such messages are logged a minute, %d per source address and reason.",
						   lim->budget, lim->burst)));
	lim->window_start = now;
	lim->window_lines = 0;
	lim->window_dropped = 0;
}

/*
 * Whether a message of this kind about this source address may be logged
 * now; if so, *suppressed says how many like it were not logged since the
 * last one.
 */
bool
wd_log_allowed(WdLogLimit *lim, const WdAddr *addr, uint32 kind, WdMono now,
			   uint64 *suppressed)
{
	WdLogEntry *e = NULL;
	WdLogEntry *oldest = &lim->entries[0];

	for (int i = 0; i < WD_LOG_SLOTS; i++)
	{
		WdLogEntry *c = &lim->entries[i];

		if (c->last_logged != 0 && c->kind == kind &&
			wd_addr_same_host(&c->addr, addr))
		{
			e = c;
			break;
		}
		if (c->last_logged < oldest->last_logged)
			oldest = c;
	}
	if (e != NULL && now - e->window_start < WD_LOG_WINDOW_US &&
		e->lines >= lim->burst)
	{
		e->suppressed++;
		return false;
	}
	wd_log_window(lim, now);
	if (lim->window_lines >= lim->budget)
	{
		lim->window_dropped++;
		return false;
	}
	lim->window_lines++;
	if (e == NULL)
	{
		e = oldest;
		e->addr = *addr;
		e->kind = kind;
		e->suppressed = 0;
		e->window_start = 0;
	}
	if (now - e->window_start >= WD_LOG_WINDOW_US)
	{
		e->window_start = now;
		e->lines = 0;
	}
	e->lines++;
	*suppressed = e->suppressed;
	e->suppressed = 0;
	e->last_logged = now;
	return true;
}
