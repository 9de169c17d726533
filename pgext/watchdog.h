/*-------------------------------------------------------------------------
 *
 * watchdog.h
 *	  Shared declarations of the watchdog extension.
 *
 * The extension has three parts: watchdog.c (module load: GUCs, shared
 * memory, worker registration, the SQL-callable view function), the
 * "watchdog" background worker (heartbeat sessions with conmgr processes:
 * wd_worker.c and the files wd_worker_int.h lists) and wd_terminator.c
 * (the "watchdog terminator" background worker: ends the SQL sessions of
 * a lost conmgr's host); wd_log.c holds the rate limits both workers use.
 * They meet in one shared-memory struct, WdShared, declared here.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WATCHDOG_H
#define WATCHDOG_H

#include <sys/socket.h>

#include "datatype/timestamp.h"
#include "port/atomics.h"
#include "portability/instr_time.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
/*
 * PostgreSQL 18 moved WaitEventSet and its functions out of storage/latch.h
 * into storage/waiteventset.h (latch.h still includes it, for WaitLatch's
 * WL_* flags only); the worker's loop uses the set itself.
 */
#if PG_VERSION_NUM >= 180000
#include "storage/waiteventset.h"
#endif

#include "cmloglimit.h"

#define WD_DEFAULT_PORT			27545
#define WD_HANDSHAKE_TIMEOUT_MS 10000	/* accept -> registered */
#define WD_MAX_PENDING			64	/* connections still in handshake */
#define WD_LISTEN_BACKLOG		512

/*
 * A point on the monotonic clock, in microseconds: every deadline, expiry
 * and rate window of the extension is one, so that a step of the wall
 * clock neither expires nor freezes anything.  TimestampTz (wall clock) is
 * kept for what people read: pgx_stat_watchdog and the terminator's
 * comparison with backend start times.
 */
typedef int64 WdMono;

static inline WdMono
wd_mono_now(void)
{
	instr_time	t;

	INSTR_TIME_SET_CURRENT(t);
	return (WdMono) INSTR_TIME_GET_MICROSEC(t);
}

/* An IP address (IPv4-mapped IPv6 is stored as IPv4) and a port. */
typedef struct WdAddr
{
	uint8		family;			/* AF_INET or AF_INET6 */
	uint8		pad;
	uint16		port;			/* host order */
	uint8		addr[16];		/* 4 or 16 bytes used */
} WdAddr;

/*
 * A log rate limit (common/cmloglimit.h, through wd_log.c): initialised as
 * {what, burst, budget}, one entry per source address and kind.
 */
typedef cmloglimit WdLogLimit;

/* One network of watchdog.allowed_addresses. */
typedef struct WdCidr
{
	uint8		family;			/* AF_INET or AF_INET6 */
	uint8		bits;			/* prefix length */
	uint8		addr[16];		/* host bits are zero */
} WdCidr;

/*
 * One registered heartbeat session, as pgx_stat_watchdog shows it.  A
 * slot is taken and freed under the lock; the counters and times of each
 * beat are written without it, between two increments of changecount (as
 * PostgreSQL's backend status entries are), since the worker is their
 * only writer: a reader copies a slot again while changecount is odd or
 * has moved.
 */
typedef struct WdSessionStat
{
	bool		in_use;
	bool		authenticated;
	WdAddr		peer;
	int32		interval;		/* seconds, the conmgr's heartbeat_interval */
	int32		timeout;		/* seconds, the conmgr's heartbeat_timeout */
	uint32		changecount;	/* odd while a beat's update is written */
	TimestampTz connected_since;
	TimestampTz last_received;
	TimestampTz last_sent;
	uint64		frames_received;
	uint64		beats_sent;
} WdSessionStat;

/* A lost conmgr, queued for the terminator. */
typedef struct WdLoss
{
	WdAddr		addr;
	TimestampTz detected_at;
} WdLoss;

/*
 * The extension's shared memory.  The lock protects everything below it;
 * the watchdog is the only writer of sessions[] and of the loss queue's
 * tail, the terminator the only consumer of the queue.  Sized at start
 * from watchdog.max_heartbeat_connections: sessions[] has that many slots,
 * the loss queue as many entries again (each session is lost at most once,
 * so the queue cannot overflow while the terminator keeps up).
 */
typedef struct WdShared
{
	LWLock	   *lock;
	int			max_sessions;
	int			loss_capacity;
	uint64		loss_head;		/* next entry the terminator reads */
	uint64		loss_tail;		/* next entry the watchdog writes */
	uint64		losses_dropped; /* queue was full (should never happen) */
	pid_t		watchdog_pid;
	pid_t		terminator_pid;
	Latch	   *terminator_latch;
	uint64		sessions_lost;
	uint64		backends_terminated;
	/* Written by the watchdog alone, read without the lock. */
	pg_atomic_uint64 wakeups;	/* waits of its event loop that ended */
	pg_atomic_uint64 timers_run;	/* session timers it ran */
	WdSessionStat sessions[FLEXIBLE_ARRAY_MEMBER];
	/* followed by WdLoss losses[loss_capacity] */
} WdShared;

#define WdLosses(shared) \
	((WdLoss *) ((char *) (shared) + offsetof(WdShared, sessions) + \
				 sizeof(WdSessionStat) * (shared)->max_sessions))

/* watchdog.c */
extern PGDLLIMPORT WdShared *wd_shared;
extern int	wd_port;
extern char *wd_listen_addresses;
extern int	wd_check_attr_interval;
extern int	wd_max_heartbeat_connections;
extern char *wd_auth_key_file;
extern int	wd_max_sessions_per_address;
extern bool wd_log_registrations;
extern char *wd_allowed_addresses;
extern bool wd_address_allowed(const WdAddr *addr);
extern bool wd_anyone_allowed(void);
extern void wd_attach_shmem(void);
extern void wd_bgworker_start(void);
extern const char *wd_addr_to_string(const WdAddr *addr, char *buf, size_t len);
extern bool wd_addr_from_sockaddr(const struct sockaddr *sa, WdAddr *out);
extern bool wd_addr_same_host(const WdAddr *a, const WdAddr *b);

/* wd_log.c */
extern uint32 wd_log_kind(const char *text);
extern void wd_log_window(WdLogLimit *lim, WdMono now);
extern bool wd_log_allowed(WdLogLimit *lim, const WdAddr *addr, uint32 kind,
						   WdMono now, uint64 *suppressed);

/*
 * LOG the message unless "lim" holds it back; the kind is "reason", and
 * the line says how many like it about this address were not logged.
 */
#define wd_log_limited(lim, addr, reason, ...) \
	do { \
		uint64		supp_; \
		if (wd_log_allowed((lim), (addr), wd_log_kind(reason), \
						   wd_mono_now(), &supp_)) \
			ereport(LOG, \
					(errmsg(__VA_ARGS__), \
					 supp_ > 0 ? \
					 errdetail("%llu similar messages about this address were not logged.", \
							   (unsigned long long) supp_) : 0)); \
	} while (0)

/* wd_worker.c */
extern PGDLLEXPORT void watchdog_main(Datum arg);

/* wd_terminator.c */
extern PGDLLEXPORT void watchdog_terminator_main(Datum arg);

#endif							/* WATCHDOG_H */
