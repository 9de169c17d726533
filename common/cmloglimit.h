/*-------------------------------------------------------------------------
 *
 * cmloglimit.h
 *	  Rate limits for the log lines that peers can cause.
 *
 * Anyone who reaches a listening port can make the process behind it log
 * a line (conmgr's listener: a connection that never resolves; the
 * watchdog: one that never registers, a failed authentication).  A
 * cmloglimit lets at most "burst" lines a window through per source and
 * kind of message, and "budget" a window over all sources, since a flood
 * from many sources would otherwise cycle the table of sources; the next
 * line of a source and kind learns how many like it were held back, and
 * once the window is over the caller learns how many the budget dropped.
 *
 * A source is a short byte string the caller chooses (an address as text
 * or as bytes), compared exactly; a kind is a hash of a short fixed text.
 * Plain data and arithmetic on the caller's clock (microseconds of a
 * monotonic clock): nothing here reads a clock, allocates or logs, so the
 * extension compiles it too and regress/unit/test_cmloglimit.c drives it
 * with made-up times.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CMLOGLIMIT_H
#define CMLOGLIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CMLOGLIMIT_SLOTS	64	/* sources and kinds remembered */
#define CMLOGLIMIT_SOURCE_MAX 64	/* bytes of a source that count */
#define CMLOGLIMIT_WINDOW_US INT64_C(60000000)

typedef struct cmloglimit_entry
{
	uint8_t		source[CMLOGLIMIT_SOURCE_MAX];
	uint8_t		sourcelen;
	uint32_t	kind;
	int64_t		last_logged;	/* 0: entry unused */
	int64_t		window_start;	/* of this entry's window */
	int			lines;			/* logged in that window */
	uint64_t	suppressed;		/* not logged since last_logged */
} cmloglimit_entry;

/*
 * Initialised by the caller as {what, burst, budget}; the rest starts at
 * zero.
 */
typedef struct cmloglimit
{
	const char *what;			/* for the line that counts what was dropped */
	int			burst;			/* lines a window per source and kind */
	int			budget;			/* lines a window over all sources */
	int64_t		window_start;
	int			window_lines;
	uint64_t	window_dropped; /* over the budget in this window */
	cmloglimit_entry entries[CMLOGLIMIT_SLOTS];
} cmloglimit;

/* cmloglimit.c */
extern uint32_t cmloglimit_kind(const char *text);
extern bool cmloglimit_allowed(cmloglimit *lim, const void *source, size_t sourcelen,
							   uint32_t kind, int64_t now, uint64_t *suppressed,
							   uint64_t *dropped);
extern uint64_t cmloglimit_window(cmloglimit *lim, int64_t now);
extern int64_t cmloglimit_next(const cmloglimit *lim);

#endif							/* CMLOGLIMIT_H */
