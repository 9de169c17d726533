/*-------------------------------------------------------------------------
 *
 * test_cmloglimit.c
 *	  Test common/cmloglimit.c, the rate limit of peers' log lines.
 *
 * On a made-up clock: one line per window per source and kind with burst
 * 1 (the listener's), the count of those held back on the next one, "burst"
 * lines with a larger burst (the watchdog's), sources compared by their
 * bytes and kinds apart, the budget over all sources and the count of
 * what it dropped when the window turns (and when cmloglimit_next() says
 * it turns), and a table of sources that recycles its oldest entry.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <string.h>

#include "cmloglimit.h"
#include "tap.h"

#define SEC		INT64_C(1000000)
#define WIN		CMLOGLIMIT_WINDOW_US

static cmloglimit lim;

static bool
allow(const char *src, const char *kind, int64_t now, uint64_t *supp, uint64_t *dropped)
{
	return cmloglimit_allowed(&lim, src, strlen(src), cmloglimit_kind(kind), now, supp, dropped);
}

static void
test_burst_one(void)
{
	uint64_t	supp = 99,
				dropped = 99;
	int			allowed = 0;

	memset(&lim, 0, sizeof(lim));
	lim.what = "test";
	lim.burst = 1;
	lim.budget = 50;
	ok(allow("10.0.0.1", "silent", 1 * SEC, &supp, &dropped) && supp == 0 && dropped == 0,
	   "the first line of a source and kind is logged");
	for (int i = 0; i < 5; i++)
		allowed += allow("10.0.0.1", "silent", 2 * SEC + i, &supp, &dropped);
	ok(allowed == 0, "the next five within the window are not");
	ok(allow("10.0.0.1", "garbage", 3 * SEC, &supp, &dropped) && supp == 0,
	   "another kind from the same source is");
	ok(allow("10.0.0.10", "silent", 3 * SEC, &supp, &dropped),
	   "the same kind from another source is (sources compare whole)");
	ok(!allow("10.0.0.1", "silent", 1 * SEC + WIN - 1, &supp, &dropped),
	   "one microsecond before the window is over: still held back");
	ok(allow("10.0.0.1", "silent", 1 * SEC + WIN, &supp, &dropped) && supp == 6,
	   "at the window's end: logged, and six like it were held back (%llu)",
	   (unsigned long long) supp);
	ok(!allow("10.0.0.1", "silent", 1 * SEC + WIN + 1, &supp, &dropped),
	   "its window runs from then");
}

static void
test_burst_many(void)
{
	uint64_t	supp,
				dropped;
	int			allowed = 0;

	memset(&lim, 0, sizeof(lim));
	lim.what = "test";
	lim.burst = 10;
	lim.budget = 100;
	for (int i = 0; i < 15; i++)
		allowed += allow("db1", "registered", SEC + i * SEC, &supp, &dropped);
	ok(allowed == 10, "burst 10: ten lines of fifteen in a window (%d)", allowed);
	ok(allow("db1", "registered", SEC + WIN, &supp, &dropped) && supp == 5,
	   "the next window: logged, five held back (%llu)", (unsigned long long) supp);
}

static void
test_budget(void)
{
	uint64_t	supp,
				dropped;
	int			allowed = 0;
	char		src[32];
	int64_t		t0 = 100 * SEC;

	memset(&lim, 0, sizeof(lim));
	lim.what = "test";
	lim.burst = 1;
	lim.budget = 50;
	ok(cmloglimit_next(&lim) == INT64_MAX, "nothing dropped: no report due");
	for (int i = 0; i < 80; i++)
	{
		snprintf(src, sizeof(src), "10.1.0.%d", i);
		allowed += allow(src, "silent", t0 + i, &supp, &dropped);
	}
	ok(allowed == 50, "80 sources at once: the budget lets 50 through (%d)", allowed);
	ok(cmloglimit_next(&lim) == t0 + WIN, "the report is due when the window ends");
	ok(cmloglimit_window(&lim, t0 + WIN - 1) == 0, "not before");
	ok(cmloglimit_window(&lim, t0 + WIN) == 30, "then it counts the 30 dropped");
	ok(cmloglimit_window(&lim, t0 + 2 * WIN) == 0, "once");
	ok(cmloglimit_next(&lim) == INT64_MAX, "and no report is due after it");

	/* a line that turns the window over hands back what it dropped */
	memset(&lim, 0, sizeof(lim));
	lim.what = "test";
	lim.burst = 1;
	lim.budget = 1;
	(void) allow("a", "k", 1 * SEC, &supp, &dropped);
	(void) allow("b", "k", 2 * SEC, &supp, &dropped);
	(void) allow("c", "k", 3 * SEC, &supp, &dropped);
	ok(allow("d", "k", 1 * SEC + WIN, &supp, &dropped) && dropped == 2,
	   "the first line of the next window is logged, and learns of the two dropped");
}

static void
test_recycle(void)
{
	uint64_t	supp,
				dropped;
	char		src[32];

	memset(&lim, 0, sizeof(lim));
	lim.what = "test";
	lim.burst = 1;
	lim.budget = 1000;
	for (int i = 0; i < CMLOGLIMIT_SLOTS; i++)
	{
		snprintf(src, sizeof(src), "10.2.0.%d", i);
		(void) allow(src, "silent", SEC + i, &supp, &dropped);
	}
	ok(allow("10.3.0.1", "silent", 2 * SEC, &supp, &dropped),
	   "a new source when the table is full is logged");
	ok(allow("10.2.0.0", "silent", 3 * SEC, &supp, &dropped),
	   "it took the oldest entry: that source is logged again");
	ok(!allow("10.2.0.5", "silent", 4 * SEC, &supp, &dropped),
	   "the others are still remembered");
}

int
main(void)
{
	test_burst_one();
	test_burst_many();
	test_budget();
	test_recycle();
	return tap_done();
}
