/*-------------------------------------------------------------------------
 *
 * cmloglimit.c
 *	  Rate limits for the log lines that peers can cause (cmloglimit.h).
 *
 * Used by conmgr's listener and, compiled with the server's flags, by the
 * watchdog extension: it calls nothing but memcmp and memcpy
 * (regress/t/001_codec_deps.t checks).
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "cmloglimit.h"

/* A kind of message, from its text: a hash that needs no table. */
uint32_t
cmloglimit_kind(const char *text)
{
	uint32_t	h = 5381;

	for (const unsigned char *p = (const unsigned char *) text; *p; p++)
		h = h * 33 + *p;
	return h;
}

/*
 * Turn the window over once it is over: returns how many lines the budget
 * dropped in the window that ended, for the caller to say so; 0 otherwise.
 */
uint64_t
cmloglimit_window(cmloglimit *lim, int64_t now)
{
	uint64_t	dropped;

	if (now - lim->window_start < CMLOGLIMIT_WINDOW_US)
		return 0;
	dropped = lim->window_dropped;
	lim->window_start = now;
	lim->window_lines = 0;
	lim->window_dropped = 0;
	return dropped;
}

/*
 * When cmloglimit_window() has something to report: the end of the
 * window, if the budget dropped lines in it; INT64_MAX otherwise.
 */
int64_t
cmloglimit_next(const cmloglimit *lim)
{
	return lim->window_dropped > 0 ? lim->window_start + CMLOGLIMIT_WINDOW_US : INT64_MAX;
}

/* The entry of this source and kind, or NULL and the one to reuse. */
static cmloglimit_entry *
find_entry(cmloglimit *lim, const void *source, size_t len, uint32_t kind,
		   cmloglimit_entry **oldest)
{
	*oldest = &lim->entries[0];
	for (int i = 0; i < CMLOGLIMIT_SLOTS; i++)
	{
		cmloglimit_entry *c = &lim->entries[i];

		if (c->last_logged != 0 && c->kind == kind && c->sourcelen == len &&
			memcmp(c->source, source, len) == 0)
			return c;
		if (c->last_logged < (*oldest)->last_logged)
			*oldest = c;
	}
	return NULL;
}

/*
 * Whether a message of this kind about this source may be logged now; if
 * so, *suppressed says how many like it were not logged since the last
 * one.  A source longer than CMLOGLIMIT_SOURCE_MAX counts by its first
 * bytes.  The window over all sources may turn here: *dropped is then
 * what cmloglimit_window() returned, for the caller to say before its own
 * line, and 0 otherwise.
 */
bool
cmloglimit_allowed(cmloglimit *lim, const void *source, size_t sourcelen,
				   uint32_t kind, int64_t now, uint64_t *suppressed,
				   uint64_t *dropped)
{
	size_t		len = sourcelen < CMLOGLIMIT_SOURCE_MAX ? sourcelen : CMLOGLIMIT_SOURCE_MAX;
	cmloglimit_entry *oldest;
	cmloglimit_entry *e = find_entry(lim, source, len, kind, &oldest);

	*dropped = 0;
	if (e != NULL && now - e->window_start < CMLOGLIMIT_WINDOW_US &&
		e->lines >= lim->burst)
	{
		e->suppressed++;
		return false;
	}
	*dropped = cmloglimit_window(lim, now);
	if (lim->window_lines >= lim->budget)
	{
		lim->window_dropped++;
		return false;
	}
	lim->window_lines++;
	if (e == NULL)
	{
		e = oldest;
		memcpy(e->source, source, len);
		e->sourcelen = (uint8_t) len;
		e->kind = kind;
		e->suppressed = 0;
		e->window_start = now;
		e->lines = 0;
	}
	else if (now - e->window_start >= CMLOGLIMIT_WINDOW_US)
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
