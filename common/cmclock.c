/*-------------------------------------------------------------------------
 *
 * cmclock.c
 *	  The clock for deadlines (see cmclock.h).
 *
 *-------------------------------------------------------------------------
 */
#include <time.h>

#include "cmclock.h"

/* CLOCK_MONOTONIC in microseconds. */
int64_t
cmclock_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* CLOCK_MONOTONIC in milliseconds. */
int64_t
cmclock_ms(void)
{
	return cmclock_us() / 1000;
}

/* CLOCK_MONOTONIC in seconds, for deadlines given in seconds (cm_ctl -t). */
double
cmclock_s(void)
{
	return cmclock_us() / 1e6;
}
