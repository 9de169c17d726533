/*-------------------------------------------------------------------------
 *
 * cmclock.h
 *	  The clock for deadlines: CLOCK_MONOTONIC.
 *
 * Every timeout, expiry, pause and rate window in conmgr is measured on
 * this clock, which no one can step: a change of the system's wall clock
 * (an administrator, NTP, a VM resumed) must neither expire a session nor
 * freeze a timer.  The wall clock (shm_now()) is only for what people
 * read: log lines, cm_ctl status.  The value is comparable between
 * conmgr's processes (one boot, one clock).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CMCLOCK_H
#define CMCLOCK_H

#include <stdint.h>

/* cmclock.c */
extern int64_t cmclock_us(void);
extern int64_t cmclock_ms(void);
extern double cmclock_s(void);

#endif							/* CMCLOCK_H */
