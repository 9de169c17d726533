/*-------------------------------------------------------------------------
 *
 * wd_worker_int.h
 *	  What the parts of the "watchdog" background worker share.
 *
 * The worker is one process, written in five files with one job each:
 *
 *	wd_worker.c		start-up, the event loop and the pass over due timers
 *	wd_session.c	the session table and a session's life: states, timers,
 *					the shared statistics rows, sending, closing and losing
 *	wd_protocol.c	what a peer sends: reading, decoding, the handshake
 *					(HB_HELLO, the shared key, HB_WELCOME) and beats
 *	wd_accept.c		the listen sockets, accepting, refusing, and making
 *					room among connections in their handshake
 *	wd_attrs.c		the instance's attributes and timeline, and the watch
 *					for a promotion request
 *
 * Everything declared here lives in that one process; what other
 * processes see is wd_shared (watchdog.h).  Not for the extension's other
 * parts (watchdog.c, wd_terminator.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef WD_WORKER_INT_H
#define WD_WORKER_INT_H

#include "cmwheel.h"
#include "cmproto.h"
#include "watchdog.h"

#define WD_MAX_LISTEN		16
#define WD_OUTBUF			1024	/* most output queued for a session */
#define WD_SEND_SLACK_US	5000	/* send a beat up to 5 ms early */
#define WD_TIMER_TICK_US	1000	/* width of a slot of the timer wheel */

/*
 * epoll data: a session's generation (never 0) in the high half and its
 * index in wd_sessions[] in the low half, so that an event still queued
 * for a session closed earlier in the same batch is not taken for the one
 * that reuses its entry; generation 0 marks a listen socket, or with
 * index WD_MAX_LISTEN the postmaster-death pipe.
 */
#define WD_EV(gen, idx)		(((uint64) (gen) << 32) | (uint32) (idx))
#define WD_EV_POSTMASTER	WD_EV(0, WD_MAX_LISTEN)
#define WD_EV_PROMOTE		WD_EV(0, WD_MAX_LISTEN + 1)

/* Session states; the one setter is wd_set_state(). */
typedef enum WdSessState
{
	WD_SESS_FREE,				/* entry unused */
	WD_SESS_HELLO,				/* accepted, waiting for HB_HELLO */
	WD_SESS_AUTH,				/* HB_CHALLENGE sent, waiting for HB_AUTH */
	WD_SESS_UP					/* registered: heartbeats flow */
} WdSessState;

/*
 * A session.  The fields a heartbeat touches come first, so that a beat
 * received or sent reads one or two cache lines of it; with 10,000
 * sessions the table does not stay in the caches, and each line a beat
 * touches is likely a cache miss.  Its input and output are not buffered
 * here: a session is read into one buffer of the worker's (wd_read()) and
 * sent from the caller's, and only what is left over, a frame that has
 * not all arrived or bytes the socket did not take, is kept, in memory of
 * its own taken when there is some and freed when it is gone.
 */
typedef struct WdSession
{
	WdSessState state;
	int			fd;
	uint32		seq;			/* of the last HB_BEAT sent */
	uint16		version;
	uint16		inlen;			/* bytes in "partial" */
	uint16		outlen;			/* bytes in "unsent" */
	bool		want_write;		/* EPOLLOUT registered */
	int32		interval;		/* seconds */
	int32		timeout;		/* seconds */
	int			slot;			/* index in wd_shared->sessions when UP */
	int			idx;			/* index in wd_sessions[] */
	uint32		gen;			/* with idx, the epoll tag */
	WdMono		last_received;
	/* a session needs one of these at a time */
	union
	{
		WdMono		next_send;	/* when registered */
		WdMono		accepted_at;	/* in the handshake */
	};
	cmwheel_node timer;			/* in wd_timers, keyed by wd_timer_due() */
	uint8	   *partial;		/* the start of a frame, or NULL */
	uint8	   *unsent;			/* WD_OUTBUF bytes of output queue, or NULL */
	/* what the handshake and the end of a session need */
	int			pidx;			/* index in wd_pending[] while in handshake */
	WdAddr		peer;
	struct WdNonces *nonces;	/* during a key exchange only, else NULL */
} WdSession;

/* The two nonces of a key exchange, from HB_HELLO until it ends. */
typedef struct WdNonces
{
	uint8		conmgr[CMPROTO_NONCE_LEN];
	uint8		watchdog[CMPROTO_NONCE_LEN];
} WdNonces;

/*
 * Ask for a session's entry, and its row of shared statistics, to be
 * brought into the caches ahead of the beat that is to use them, while
 * this process waits in the system call of the beat before: with 10,000
 * sessions neither stays in the caches from one beat to the next, and a
 * miss that is waited for one at a time is a good part of what a beat
 * costs the worker outside the kernel.  The row is read from the entry,
 * so the entry is asked for a beat earlier (see the callers).  Only hints:
 * nothing is read through an address that may not be valid.
 */
static inline void
wd_prefetch_entry(const WdSession *s)
{
	__builtin_prefetch(s);
	__builtin_prefetch((const char *) s + 64);
}

static inline void
wd_prefetch_stats(const WdSession *s)
{
	if (s->slot >= 0)
	{
		const WdSessionStat *st = &wd_shared->sessions[s->slot];

		__builtin_prefetch(&st->changecount, 1);
		__builtin_prefetch(&st->beats_sent, 1);
	}
}

/* The attributes as a session of its version may see them. */
static inline uint32
wd_session_attrs(const WdSession *s, uint32 attrs)
{
	return attrs & cmproto_hb_attrs_valid(s->version);
}

/*
 * LOG "watchdog: <message>", limited by wd_noiselog under the kind of
 * "reason"; for what unregistered connections cause.
 */
#define wd_log_noise(addr, reason, ...) \
	wd_log_limited(&wd_noiselog, addr, reason, __VA_ARGS__)

/* wd_worker.c */
extern int	wd_epfd;
extern TimestampTz wd_woke_ts;
extern bool wd_epoll_ctl(int op, int fd, uint32 events, uint64 data);

/* wd_session.c */
extern WdSession **wd_sessions;
extern int	wd_nsessions;
extern WdSession *wd_pending[WD_MAX_PENDING];
extern int	wd_npending;
extern int	wd_nregistered;
extern cmwheel wd_timers;
extern WdLogLimit wd_authlog;
extern WdLogLimit wd_noiselog;
extern WdLogLimit wd_sessionlog;
extern void wd_sessions_init(void);
extern WdSession *wd_new_session(void);
extern void wd_release(int i);
extern const char *wd_peer_str(const WdSession *s);
extern void wd_set_state(WdSession *s, WdSessState state);
extern void wd_timer_arm(WdSession *s);
extern bool wd_session_timer(WdSession *s, WdMono now);
extern int	wd_host_sessions(const WdAddr *peer, const WdSession *self);
extern int	wd_register(WdSession *s, bool authenticated);
extern void wd_update_stats(WdSession *s, bool received, bool sent);
extern bool wd_session_wait(WdSession *s, int op, bool want_write);
extern void *wd_session_alloc(WdSession *s, Size size);
extern bool wd_flush(WdSession *s);
extern bool wd_send(WdSession *s, const cmproto_msg *msg);
extern void wd_send_error(WdSession *s, int code, const char *message);
extern void wd_close(WdSession *s);
extern void wd_lose(WdSession *s, const char *why);
extern void wd_lose_kind(WdSession *s, const char *why, const char *kind);

/* wd_protocol.c */
extern size_t wd_auth_key_len;
extern void wd_load_key(void);
extern void wd_read(WdSession *s, WdMono now, bool to_end);

/* wd_accept.c */
extern void wd_open_listeners(void);
extern void wd_accept(int listener);

/* wd_attrs.c */
extern uint32 wd_cur_attrs;
extern uint32 wd_cur_timeline;
extern int	wd_promote_watch_fd;
extern void wd_attrs_init(void);
extern void wd_attrs_check_now(void);
extern void wd_check_attrs(WdMono now);
extern WdMono wd_attrs_next_check(void);
extern void wd_promote_event(void);

#endif							/* WD_WORKER_INT_H */
