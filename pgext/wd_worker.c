/*-------------------------------------------------------------------------
 *
 * wd_worker.c
 *	  The "watchdog" background worker: heartbeat sessions with conmgr.
 *
 * Started by the postmaster once the instance is consistent (on a standby:
 * once it accepts read-only connections), restarted 5 s after an error
 * exit.  It owns the listen sockets on watchdog.port and one session per
 * connected conmgr process, and it is the only writer of the session table
 * in shared memory.  It is stopped with SIGTERM (die), like any worker.
 *
 * Everything runs in one loop around one epoll set, which holds the
 * listen sockets, every session and the postmaster-death pipe, and one
 * epoll_pwait() per wake-up (see watchdog_main() for why this is not a
 * WaitEventSet).  The wait ends at the earliest of the sessions' timers
 * and the next attribute check.  A session's timer is its next heartbeat
 * to send, the end of its peer's timeout or the end of its handshake,
 * whichever comes first; the timers sit in a heap (common/cmheap.c), so a
 * wake-up looks at the sessions whose time has come and at no other.
 * Every deadline and rate window is on the monotonic clock (WdMono): a
 * step of the wall clock neither declares every session lost at once nor
 * delays a detection.  A session whose deadline has passed is read before
 * it is judged, since its frames may be waiting unread (this process was
 * descheduled, or more sessions were ready than one batch of events
 * holds).  A wake-up accepts at most WD_ACCEPT_BATCH connections.
 *
 * Per session (docs/protocol.md section 3): HB_HELLO, then HB_CHALLENGE /
 * HB_AUTH when watchdog.auth_key_file is set, then HB_WELCOME, which
 * registers the session; then HB_BEAT every interval each way, and HB_ATTRS
 * at once when the instance's attributes or (protocol version 2) its
 * timeline change.  A registered session
 * that times out, closes, resets or breaks the protocol is lost: its
 * address is queued for the terminator (wd_terminator.c).  A session that
 * never registered causes no termination.  Nothing a peer sends can make
 * this process exit: every problem closes that session and is logged.
 *
 * Who may register (docs/watchdog.md, "Who may register"): a connection
 * from outside watchdog.allowed_addresses, when that is set, is refused as
 * soon as it is accepted; an HB_HELLO asking for an interval or timeout
 * over CMPROTO_HB_INTERVAL_MAX / CMPROTO_HB_TIMEOUT_MAX is refused; and an
 * address with watchdog.max_sessions_per_address registered sessions gets
 * no more (checked at HB_HELLO and again at registration, since others
 * may have registered during a key exchange).
 *
 * Hostile peers (docs/watchdog.md, "Hostile peers"): at most WD_MAX_PENDING
 * connections are in their handshake at once.  When one more arrives, the
 * oldest handshake of the source address with the most handshakes is
 * closed to make room, so a flood of idle or trickling connections from
 * some addresses cannot keep a conmgr elsewhere from registering; it never
 * touches a registered session.  What is logged about connections that
 * never registered (and about failed authentication) goes through a rate
 * limit (wd_log.c): once a minute per source address and reason, and at
 * most 50 such lines a minute in all, so that a flood cannot fill the
 * server log; registrations and losses through another, 10 a minute per
 * address and reason and 100 in all, since without a key a
 * register-and-close loop is a flood of them.
 *
 * A lost session whose address has other registered sessions (two
 * conmgrs on one host, NAT, loopback) is not handed to the terminator:
 * that address still has a live conmgr, so its host has not lost its path
 * to this server.  The last of them to be lost is.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlogrecovery.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "postmaster/postmaster.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/pmsignal.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "cmaddrcount.h"
#include "cmheap.h"
#include "cmlog.h"
#include "cmproto.h"
#include "cmsha256.h"
#include "watchdog.h"

#define WD_MAX_LISTEN		16
#define WD_OUTBUF			1024
#define WD_EPOLL_BATCH		256
#define WD_KEY_MIN			16
#define WD_KEY_MAX			1024
#define WD_SEND_SLACK_US	5000	/* send a beat up to 5 ms early */
#define WD_ACCEPT_BATCH		32	/* connections taken per wake-up, at most */
#define WD_GATHER_US		10000	/* least time between busy wake-ups */
#define WD_PROMOTION_POLL_US 20000	/* a standby looks for its promotion */

/*
 * epoll data: a session's generation (never 0) in the high half and its
 * index in sessions[] in the low half, so that an event still queued for
 * a session closed earlier in the same batch is not taken for the one
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

typedef struct WdSession
{
	WdSessState state;
	int			idx;			/* index in sessions[] */
	uint32		gen;			/* with idx, the epoll tag */
	int			pidx;			/* index in pending[] while in handshake */
	int			fd;
	int			slot;			/* index in wd_shared->sessions when UP */
	WdAddr		peer;
	uint16		version;
	int32		interval;		/* seconds */
	int32		timeout;		/* seconds */
	WdMono		accepted_at;
	WdMono		last_received;
	WdMono		next_send;
	cmheap_node timer;			/* in timers, keyed by wd_timer_due() */
	struct WdSession *due_next; /* in the list of one wake-up's due timers */
	uint32		seq;
	bool		want_write;		/* EPOLLOUT registered */
	uint8		nonce_c[CMPROTO_NONCE_LEN];
	uint8		nonce_w[CMPROTO_NONCE_LEN];
	size_t		inlen;
	size_t		outlen;
	uint8		inbuf[CMPROTO_MAX_MSG];
	uint8		outbuf[WD_OUTBUF];
} WdSession;

/*
 * One pointer per possible session: max_heartbeat_connections registered
 * ones and WD_MAX_PENDING in handshake.  A session's memory (its buffers
 * are most of it) is allocated when a connection is accepted and freed by
 * wd_release() once it is closed, so an idle slot costs a pointer here,
 * an entry in the timer heap (a key and a pointer) and an int in each free
 * stack: taking an entry or a shared slot, like running a timer, never
 * searches all sessions; nor does counting a client address's registered
 * sessions (host_counts).
 */
static WdSession **sessions;
static int	nsessions;			/* entries in sessions[] */
static int *free_entries;		/* stack of the NULL entries of sessions[] */
static int	nfree_entries;
static int *free_slots;			/* stack of the free wd_shared->sessions[] */
static int	nfree_slots;
static cmheap timers;			/* every open session's timer */
static uint32 last_gen;			/* of the last session allocated */
static WdSession *pending[WD_MAX_PENDING];	/* sessions in HELLO or AUTH */
static int	npending;
static int	nregistered;		/* sessions UP */
static cmaddrcount host_counts; /* sessions UP per client address */
static int	listen_fds[WD_MAX_LISTEN];
static int	nlisten;
static int	epfd = -1;
static int	reserve_fd = -1;	/* spare descriptor for EMFILE */
static uint32 cur_attrs;
static uint32 cur_timeline;		/* what the sessions were last told */
static WdMono next_attr_check;
static WdMono next_promotion_poll;	/* while in recovery */
static int	promote_watch_fd = -1;	/* inotify, while in recovery */
static uint64 wd_wakeups;		/* waits ended */
static sigset_t wd_wait_mask;	/* signals unblocked while waiting */
static TimestampTz wd_woke_ts;	/* when the last wait ended */
static uint64 wd_timers_run;	/* session timers run */
static uint8 auth_key[WD_KEY_MAX];
static size_t auth_key_len;
static WdLogLimit authlog = {"failed authentications", 1, 50};
static WdLogLimit noiselog = {"connections that never registered", 1, 50};
static WdLogLimit sessionlog = {"registrations and losses", 10, 100};

static void wd_lose(WdSession *s, const char *why);
static void wd_lose_kind(WdSession *s, const char *why, const char *kind);
static void wd_close(WdSession *s);

/* ---- small helpers ---- */

static const char *
peer_str(const WdSession *s)
{
	static char buf[INET6_ADDRSTRLEN + 8];
	char		host[INET6_ADDRSTRLEN];

	wd_addr_to_string(&s->peer, host, sizeof(host));
	snprintf(buf, sizeof(buf), "%s:%u", host, s->peer.port);
	return buf;
}

/* Add or change a descriptor in the epoll set; false (errno set) on failure. */
static bool
wd_epoll_ctl(int op, int fd, uint32 events, uint64 data)
{
	struct epoll_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.events = events;
	ev.data.u64 = data;
	return epoll_ctl(epfd, op, fd, &ev) == 0;
}

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

/* The attributes as a session of its version may see them. */
static inline uint32
wd_session_attrs(const WdSession *s, uint32 attrs)
{
	return attrs & cmproto_hb_attrs_valid(s->version);
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

static inline bool
wd_in_handshake(WdSessState state)
{
	return state == WD_SESS_HELLO || state == WD_SESS_AUTH;
}

/* Also keeps pending[] (the sessions in handshake) and the counts. */
static void
wd_set_state(WdSession *s, WdSessState state)
{
	bool		was = wd_in_handshake(s->state);
	bool		is = wd_in_handshake(state);

	if (was && !is)
	{
		WdSession  *last = pending[--npending];

		pending[s->pidx] = last;
		last->pidx = s->pidx;
		s->pidx = -1;
	}
	else if (!was && is)
	{
		Assert(npending < WD_MAX_PENDING);
		s->pidx = npending;
		pending[npending++] = s;
	}
	if (s->state == WD_SESS_UP)
	{
		nregistered--;
		(void) cmaddrcount_remove(&host_counts, s->peer.family, s->peer.addr);
	}
	s->state = state;
	if (state == WD_SESS_UP)
	{
		nregistered++;
		/* There is room: the table is sized for every slot. */
		if (cmaddrcount_add(&host_counts, s->peer.family, s->peer.addr) < 0)
			elog(ERROR, "watchdog: address table is full");
	}
}

/* When a session's silence or its handshake ends it. */
static WdMono
wd_deadline(const WdSession *s)
{
	if (s->state == WD_SESS_UP)
		return s->last_received + (WdMono) s->timeout * USECS_PER_SEC;
	return s->accepted_at + (WdMono) WD_HANDSHAKE_TIMEOUT_MS * 1000;
}

/*
 * When the session's timer must run: its deadline, or its next heartbeat
 * if that comes first.  A frame received moves the deadline later without
 * touching the heap: the timer then runs early, finds nothing due and is
 * set again, which costs one heap operation an interval instead of one a
 * frame.
 */
static WdMono
wd_timer_due(const WdSession *s)
{
	WdMono		due = wd_deadline(s);

	if (s->state == WD_SESS_UP)
		due = Min(due, s->next_send);
	return due;
}

static void
wd_timer_arm(WdSession *s)
{
	/* There is room: the heap has an entry for every session. */
	if (!cmheap_set(&timers, &s->timer, wd_timer_due(s)))
		elog(ERROR, "watchdog: timer heap is full");
}

/*
 * LOG "watchdog: <message>", limited by noiselog under the kind of
 * "reason"; for what unregistered connections cause.
 */
#define wd_log_noise(addr, reason, ...) \
	wd_log_limited(&noiselog, addr, reason, __VA_ARGS__)

/* Registered sessions from the host of "peer", other than "self". */
static int
wd_host_sessions(const WdAddr *peer, const WdSession *self)
{
	int			n = cmaddrcount_get(&host_counts, peer->family, peer->addr);

	if (self->state == WD_SESS_UP && wd_addr_same_host(&self->peer, peer))
		n--;
	return n;
}

/* ---- the shared session table ---- */

static int
wd_register(WdSession *s, bool authenticated)
{
	TimestampTz now = GetCurrentTimestamp();
	WdSessionStat *st;
	int			slot;

	/* This process is the only writer: its stack says which are free. */
	if (nfree_slots == 0)
		return -1;
	slot = free_slots[--nfree_slots];
	st = &wd_shared->sessions[slot];
	Assert(!st->in_use);
	LWLockAcquire(wd_shared->lock, LW_EXCLUSIVE);
	memset(st, 0, sizeof(*st));
	st->in_use = true;
	st->authenticated = authenticated;
	st->peer = s->peer;
	st->interval = s->interval;
	st->timeout = s->timeout;
	st->connected_since = now;
	st->last_received = now;
	LWLockRelease(wd_shared->lock);
	return slot;
}

/*
 * A beat received or sent, in the session's slot; written without the
 * lock (see WdSessionStat), at the time of the wake-up that handles it.
 */
static void
wd_update_stats(WdSession *s, bool received, bool sent)
{
	volatile WdSessionStat *st;

	if (s->slot < 0)
		return;
	st = &wd_shared->sessions[s->slot];
	st->changecount++;
	pg_write_barrier();
	if (received)
	{
		st->last_received = wd_woke_ts;
		st->frames_received++;
	}
	if (sent)
	{
		st->last_sent = wd_woke_ts;
		st->beats_sent++;
	}
	pg_write_barrier();
	st->changecount++;
}

/* Free the slot and, if "terminate", queue the address for the terminator. */
static void
wd_unregister_lost(WdSession *s, bool terminate)
{
	TimestampTz now = GetCurrentTimestamp();
	Latch	   *latch;

	LWLockAcquire(wd_shared->lock, LW_EXCLUSIVE);
	memset(&wd_shared->sessions[s->slot], 0, sizeof(WdSessionStat));
	if (terminate && wd_shared->loss_tail - wd_shared->loss_head <
		(uint64) wd_shared->loss_capacity)
	{
		WdLoss	   *loss = &WdLosses(wd_shared)[wd_shared->loss_tail %
												wd_shared->loss_capacity];

		loss->addr = s->peer;
		loss->detected_at = now;
		wd_shared->loss_tail++;
	}
	else if (terminate)
		wd_shared->losses_dropped++;
	wd_shared->sessions_lost++;
	latch = terminate ? wd_shared->terminator_latch : NULL;
	LWLockRelease(wd_shared->lock);
	free_slots[nfree_slots++] = s->slot;
	s->slot = -1;
	if (latch != NULL)
		SetLatch(latch);
}

/* ---- sending ---- */

static bool
wd_want_write(WdSession *s, bool want)
{
	if (s->want_write == want)
		return true;
	if (!wd_epoll_ctl(EPOLL_CTL_MOD, s->fd, EPOLLIN | (want ? EPOLLOUT : 0),
					  WD_EV(s->gen, s->idx)))
		return false;
	s->want_write = want;
	return true;
}

/* Write what is queued; false when the connection failed (s is lost). */
static bool
wd_flush(WdSession *s)
{
	while (s->outlen > 0)
	{
		ssize_t		n = send(s->fd, s->outbuf, s->outlen, MSG_NOSIGNAL);

		if (n < 0)
		{
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			wd_lose(s, strerror(errno));
			return false;
		}
		memmove(s->outbuf, s->outbuf + n, s->outlen - n);
		s->outlen -= n;
	}
	if (!wd_want_write(s, s->outlen > 0))
	{
		char		why[128];

		snprintf(why, sizeof(why), "could not change its wait events: %m");
		wd_lose(s, why);
		return false;
	}
	return true;
}

/*
 * Queue one message and try to write it.  A message that does not fit the
 * queue is dropped: the queue only fills when the peer has stopped reading
 * for many intervals, and its timeout will end the session anyway.
 */
static bool
wd_send(WdSession *s, const cmproto_msg *msg)
{
	uint8		buf[CMPROTO_MAX_MSG];
	int			n = cmproto_encode_version(msg, s->version ? s->version : CMPROTO_VERSION,
										   buf, sizeof(buf));

	if (n < 0)
	{
		elog(LOG, "watchdog: could not encode %s: %s",
			 cmproto_type_name(msg->type), cmproto_strerror(n));
		return true;
	}
	if (s->outlen + n > sizeof(s->outbuf))
		return true;
	memcpy(s->outbuf + s->outlen, buf, n);
	s->outlen += n;
	return wd_flush(s);
}

static void
wd_send_error(WdSession *s, int code, const char *message)
{
	cmproto_msg msg;

	memset(&msg, 0, sizeof(msg));
	msg.type = CMPROTO_ERROR;
	msg.u.error.code = code;
	strlcpy(msg.u.error.message, message, sizeof(msg.u.error.message));
	/* Best effort: the session is closed right after. */
	(void) wd_send(s, &msg);
}

static bool
wd_send_beat(WdSession *s)
{
	cmproto_msg msg;

	memset(&msg, 0, sizeof(msg));
	msg.type = CMPROTO_HB_BEAT;
	msg.u.hb_beat.seq = ++s->seq;
	msg.u.hb_beat.attrs = wd_session_attrs(s, cur_attrs);
	if (!wd_send(s, &msg))
		return false;
	wd_update_stats(s, false, true);
	return true;
}

/* ---- session life ---- */

static void
wd_close(WdSession *s)
{
	if (s->state == WD_SESS_FREE)
		return;
	(void) epoll_ctl(epfd, EPOLL_CTL_DEL, s->fd, NULL);
	close(s->fd);
	s->fd = -1;
	cmheap_remove(&timers, &s->timer);
	wd_set_state(s, WD_SESS_FREE);
}

/* The session ends; if it was registered, its host is terminated. */
static void
wd_lose(WdSession *s, const char *why)
{
	wd_lose_kind(s, why, why);
}

/*
 * The same; "kind" names the reason for the log limit where "why" holds
 * text the peer chose (its ERROR message), which must not make every line
 * a new kind.
 */
static void
wd_lose_kind(WdSession *s, const char *why, const char *kind)
{
	if (s->state == WD_SESS_UP)
	{
		/*
		 * An address with other registered sessions is shared (two conmgrs
		 * on one host, NAT, loopback), and its host has not lost its path
		 * to this server: its SQL sessions are left alone until the last
		 * of them is lost.
		 */
		int			others = wd_host_sessions(&s->peer, s);
		uint64		suppressed;

		if (wd_log_allowed(&sessionlog, &s->peer, wd_log_kind(kind),
						   wd_mono_now(), &suppressed))
		{
			char		detail[256];
			char		held[96] = "";

			if (suppressed > 0)
				snprintf(held, sizeof(held),
						 " %llu similar messages about this address were not logged.",
						 (unsigned long long) suppressed);
			if (others > 0)
				snprintf(detail, sizeof(detail),
						 "SQL sessions from this host are not terminated: %d other heartbeat sessions from this address are registered.%s",
						 others, held);
			else
				snprintf(detail, sizeof(detail),
						 "SQL sessions from this host will be terminated.%s", held);
			ereport(LOG,
					(errmsg("watchdog: lost heartbeat session with conmgr at %s: %s",
							peer_str(s), why),
					 errdetail("%s", detail)));
		}
		wd_unregister_lost(s, others == 0);
	}
	else
		wd_log_noise(&s->peer, kind,
					 "watchdog: closing unregistered connection from %s: %s",
					 peer_str(s), why);
	wd_close(s);
}

/* One kind for all failures: logged once a minute per source address. */
static void
wd_auth_failed(WdSession *s, const char *why)
{
	uint64		suppressed;

	if (wd_log_allowed(&authlog, &s->peer, 0, wd_mono_now(), &suppressed))
		ereport(LOG,
				(errmsg("watchdog: authentication of conmgr at %s failed: %s",
						peer_str(s), why),
				 suppressed > 0 ?
				 errdetail("%llu similar failures from this address were not logged.",
						   (unsigned long long) suppressed) : 0));
	wd_send_error(s, CMPROTO_ERR_AUTH, "authentication failed");
	wd_close(s);
}

/*
 * Refuse the session if its address has watchdog.max_sessions_per_address
 * registered already; true if it was refused (and closed).
 */
static bool
wd_refuse_over_host_cap(WdSession *s)
{
	if (wd_max_sessions_per_address == 0 ||
		wd_host_sessions(&s->peer, s) < wd_max_sessions_per_address)
		return false;
	wd_log_noise(&s->peer, "too many sessions from this address",
				 "watchdog: refusing conmgr at %s: %d heartbeat sessions from this address are registered (watchdog.max_sessions_per_address)",
				 peer_str(s), wd_max_sessions_per_address);
	wd_send_error(s, CMPROTO_ERR_TOO_MANY,
				  "too many heartbeat sessions from this address");
	wd_close(s);
	return true;
}

/* Register the session and send HB_WELCOME. */
static void
wd_welcome(WdSession *s, bool authenticated)
{
	WdMono		now = wd_mono_now();
	cmproto_msg msg;

	/* Sessions from this address may have registered since its HB_HELLO. */
	if (wd_refuse_over_host_cap(s))
		return;
	s->slot = wd_register(s, authenticated);
	if (s->slot < 0)
	{
		/* Cannot happen: nregistered was checked against the slots. */
		wd_send_error(s, CMPROTO_ERR_TOO_MANY, "too many heartbeat sessions");
		wd_close(s);
		return;
	}
	wd_set_state(s, WD_SESS_UP);
	s->last_received = now;
	s->next_send = now + (WdMono) s->interval * USECS_PER_SEC;
	wd_timer_arm(s);

	memset(&msg, 0, sizeof(msg));
	msg.type = CMPROTO_HB_WELCOME;
	msg.u.hb_welcome.version = s->version;
	msg.u.hb_welcome.flags = authenticated ? CMPROTO_HB_AUTHENTICATED : 0;
	msg.u.hb_welcome.attrs = wd_session_attrs(s, cur_attrs);
	msg.u.hb_welcome.server_version_num = PG_VERSION_NUM;
	msg.u.hb_welcome.system_identifier = GetSystemIdentifier();
	if (s->version >= 2)
		msg.u.hb_welcome.timeline = cur_timeline;
	if (!wd_send(s, &msg) || !wd_log_registrations)
		return;
	wd_log_limited(&sessionlog, &s->peer, "registered",
				   "watchdog: conmgr at %s registered (heartbeat_interval %d s, heartbeat_timeout %d s%s)",
				   peer_str(s), s->interval, s->timeout,
				   authenticated ? ", authenticated" : "");
}

static void
wd_handle_hello(WdSession *s, const cmproto_msg *msg)
{
	int			version;

	version = cmproto_negotiate(msg->u.hb_hello.min_version,
								msg->u.hb_hello.max_version,
								CMPROTO_MIN_VERSION, CMPROTO_VERSION);
	if (version == 0)
	{
		wd_log_noise(&s->peer, "version",
					 "watchdog: conmgr at %s speaks protocol versions %u to %u, this watchdog %d to %d",
					 peer_str(s), msg->u.hb_hello.min_version,
					 msg->u.hb_hello.max_version,
					 CMPROTO_MIN_VERSION, CMPROTO_VERSION);
		wd_send_error(s, CMPROTO_ERR_VERSION, "unsupported protocol version");
		wd_close(s);
		return;
	}
	if (msg->u.hb_hello.interval > CMPROTO_HB_INTERVAL_MAX ||
		msg->u.hb_hello.timeout > CMPROTO_HB_TIMEOUT_MAX)
	{
		char		why[128];

		if (msg->u.hb_hello.interval > CMPROTO_HB_INTERVAL_MAX)
			snprintf(why, sizeof(why),
					 "heartbeat_interval %u s is out of range (1 to %d s)",
					 msg->u.hb_hello.interval, CMPROTO_HB_INTERVAL_MAX);
		else
			snprintf(why, sizeof(why),
					 "heartbeat_timeout %u s is out of range (1 to %d s)",
					 msg->u.hb_hello.timeout, CMPROTO_HB_TIMEOUT_MAX);
		wd_send_error(s, CMPROTO_ERR_PROTOCOL, why);
		if (s->state != WD_SESS_FREE)
			wd_lose_kind(s, why, "heartbeat timings out of range");
		return;
	}
	if (nregistered >= wd_shared->max_sessions)
	{
		/* Before authentication: anyone can cause this line. */
		wd_log_noise(&s->peer, "too many sessions",
					 "watchdog: refusing conmgr at %s: too many heartbeat sessions (watchdog.max_heartbeat_connections is %d)",
					 peer_str(s), wd_shared->max_sessions);
		wd_send_error(s, CMPROTO_ERR_TOO_MANY, "too many heartbeat sessions");
		wd_close(s);
		return;
	}
	if (wd_refuse_over_host_cap(s))
		return;

	s->version = (uint16) version;
	s->interval = (int32) msg->u.hb_hello.interval;
	s->timeout = (int32) msg->u.hb_hello.timeout;
	memcpy(s->nonce_c, msg->u.hb_hello.nonce, CMPROTO_NONCE_LEN);

	if (auth_key_len > 0)
	{
		cmproto_msg reply;

		if (!pg_strong_random(s->nonce_w, CMPROTO_NONCE_LEN))
		{
			ereport(LOG,
					(errmsg("watchdog: could not generate a random nonce")));
			wd_send_error(s, CMPROTO_ERR_INTERNAL, "internal error");
			wd_close(s);
			return;
		}
		memset(&reply, 0, sizeof(reply));
		reply.type = CMPROTO_HB_CHALLENGE;
		reply.u.hb_challenge.version = s->version;
		memcpy(reply.u.hb_challenge.nonce, s->nonce_w, CMPROTO_NONCE_LEN);
		cmproto_hb_proof(auth_key, auth_key_len, CMPROTO_AUTH_LABEL_WATCHDOG,
						 s->nonce_c, s->nonce_w, reply.u.hb_challenge.proof);
		wd_set_state(s, WD_SESS_AUTH);
		(void) wd_send(s, &reply);
		return;
	}
	wd_welcome(s, false);
}

static void
wd_handle_auth(WdSession *s, const cmproto_msg *msg)
{
	uint8		expected[CMPROTO_PROOF_LEN];

	cmproto_hb_proof(auth_key, auth_key_len, CMPROTO_AUTH_LABEL_CONMGR,
					 s->nonce_c, s->nonce_w, expected);
	if (!cmsha256_equal(expected, msg->u.hb_auth.proof, CMPROTO_PROOF_LEN))
	{
		wd_auth_failed(s, "wrong key");
		return;
	}
	wd_welcome(s, true);
}

/* One decoded frame; returns false when the session was closed. */
static bool
wd_handle(WdSession *s, const cmproto_msg *msg)
{
	/* A peer's text goes into the log escaped: one record, one line. */
	char		peer_text[4 * CMPROTO_ERRMSG_MAX + 1];
	char		why[sizeof(peer_text) + 64];

	if (msg->type == CMPROTO_ERROR)
	{
		cmlog_escape(peer_text, sizeof(peer_text), msg->u.error.message);
		snprintf(why, sizeof(why), "conmgr reported: %s: %s",
				 cmproto_error_code_name(msg->u.error.code), peer_text);
		if (s->state == WD_SESS_AUTH && msg->u.error.code == CMPROTO_ERR_AUTH)
		{
			wd_auth_failed(s, "conmgr rejected the watchdog's proof or has no key");
			return false;
		}
		wd_lose_kind(s, why, "conmgr reported an error");
		return false;
	}

	switch (s->state)
	{
		case WD_SESS_HELLO:
			if (msg->type != CMPROTO_HB_HELLO)
				break;
			wd_handle_hello(s, msg);
			return s->state != WD_SESS_FREE;
		case WD_SESS_AUTH:
			if (msg->type != CMPROTO_HB_AUTH)
				break;
			wd_handle_auth(s, msg);
			return s->state != WD_SESS_FREE;
		case WD_SESS_UP:
			if (msg->type != CMPROTO_HB_BEAT)
				break;
			wd_update_stats(s, true, false);
			return true;
		case WD_SESS_FREE:
			elog(ERROR, "watchdog: frame for a free session");
	}
	snprintf(why, sizeof(why), "protocol violation: unexpected %s",
			 cmproto_type_name(msg->type));
	wd_send_error(s, CMPROTO_ERR_PROTOCOL, why);
	if (s->state != WD_SESS_FREE)
		wd_lose(s, why);
	return false;
}

/* Decode every complete frame in the input buffer. */
static void
wd_process_input(WdSession *s)
{
	while (s->state != WD_SESS_FREE)
	{
		size_t		msglen;
		cmproto_msg msg;
		int			rc;
		char		why[128];

		rc = cmproto_frame(s->inbuf, s->inlen, &msglen);
		if (rc == CMPROTO_INCOMPLETE)
			return;
		if (rc == CMPROTO_OK)
			rc = cmproto_decode(s->inbuf, msglen, CMPROTO_PEER_CONMGR, &msg);
		if (rc < 0)
		{
			snprintf(why, sizeof(why), "protocol violation: %s",
					 cmproto_strerror(rc));
			wd_send_error(s, CMPROTO_ERR_PROTOCOL, why);
			if (s->state != WD_SESS_FREE)
				wd_lose(s, why);
			return;
		}
		memmove(s->inbuf, s->inbuf + msglen, s->inlen - msglen);
		s->inlen -= msglen;
		if (!wd_handle(s, &msg))
			return;
	}
}

static void
wd_read(WdSession *s)
{
	/*
	 * A few reads at most, so one busy peer cannot starve the others; a
	 * read that does not fill the buffer has taken all there was, and the
	 * next frame will make the socket readable again.
	 */
	for (int i = 0; i < 4 && s->state != WD_SESS_FREE; i++)
	{
		size_t		room = sizeof(s->inbuf) - s->inlen;
		ssize_t		n = recv(s->fd, s->inbuf + s->inlen, room, 0);

		if (n < 0)
		{
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			wd_lose(s, strerror(errno));
			return;
		}
		if (n == 0)
		{
			wd_lose(s, "connection closed by peer");
			return;
		}
		s->inlen += n;
		s->last_received = wd_mono_now();
		wd_process_input(s);
		if ((size_t) n < room)
			return;
	}
}

/* ---- accepting ---- */

/*
 * Tell a connection that is refused before it has a session why, as far
 * as one non-blocking send goes.
 */
static void
wd_refuse_fd(int fd, int code, const char *message)
{
	cmproto_msg msg;
	uint8		buf[CMPROTO_MAX_MSG];
	int			n;

	memset(&msg, 0, sizeof(msg));
	msg.type = CMPROTO_ERROR;
	msg.u.error.code = code;
	strlcpy(msg.u.error.message, message, sizeof(msg.u.error.message));
	n = cmproto_encode(&msg, buf, sizeof(buf));
	if (n > 0)
		(void) send(fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/*
 * A new session entry, or NULL when every entry is taken or memory is
 * short.  It is FREE until the caller sets its state.
 */
static WdSession *
wd_new_session(void)
{
	WdSession  *s;
	int			i;

	if (nfree_entries == 0)
		return NULL;
	s = MemoryContextAllocExtended(TopMemoryContext, sizeof(WdSession),
								   MCXT_ALLOC_NO_OOM);
	if (s == NULL)
		return NULL;
	i = free_entries[--nfree_entries];
	Assert(sessions[i] == NULL);
	memset(s, 0, offsetof(WdSession, inbuf));
	s->state = WD_SESS_FREE;
	s->idx = i;
	if (++last_gen == 0)
		last_gen = 1;
	s->gen = last_gen;
	s->pidx = -1;
	s->fd = -1;
	s->slot = -1;
	cmheap_node_init(&s->timer);
	sessions[i] = s;
	return s;
}

/*
 * Free the entry of a closed session.  Called only where no pointer to it
 * is held any more: after its event, its timer or its attribute push.
 */
static void
wd_release(int i)
{
	WdSession  *s = sessions[i];

	if (s != NULL && s->state == WD_SESS_FREE)
	{
		Assert(!cmheap_queued(&s->timer));
		pfree(s);
		sessions[i] = NULL;
		free_entries[nfree_entries++] = i;
	}
}

/*
 * Make room for a connection from "peer" when WD_MAX_PENDING are in their
 * handshake: close the oldest handshake of the source address that has
 * the most (counting the newcomer), or the oldest of all when every
 * address has one.  A conmgr completes its handshake in one round trip, so
 * a flood from other addresses does not reach it, and one from its own
 * address reaches it only if WD_MAX_PENDING connections arrive within that
 * round trip.  Registered sessions are never touched.
 */
static void
wd_evict_pending(const WdAddr *peer)
{
	WdSession  *victim = NULL;
	int			best = 0;
	char		why[128];

	for (int i = 0; i < npending; i++)
	{
		WdSession  *p = pending[i];
		WdSession  *oldest = p;
		int			n = wd_addr_same_host(&p->peer, peer) ? 2 : 1;
		bool		first = true;

		for (int j = 0; j < npending && first; j++)
		{
			WdSession  *q = pending[j];

			if (j == i || !wd_addr_same_host(&q->peer, &p->peer))
				continue;
			if (j < i)
				first = false;	/* this address was counted at j */
			n++;
			if (q->accepted_at < oldest->accepted_at)
				oldest = q;
		}
		if (!first)
			continue;
		if (n > best || (n == best && oldest->accepted_at < victim->accepted_at))
		{
			best = n;
			victim = oldest;
		}
	}
	if (victim == NULL)
		return;
	snprintf(why, sizeof(why),
			 "%d connections in handshake, the most from this address: closed the oldest to make room",
			 WD_MAX_PENDING);
	wd_lose(victim, why);
	wd_release(victim->idx);
}

/*
 * Take at most WD_ACCEPT_BATCH connections a wake-up: the listen socket
 * stays readable, so the rest are taken on the next pass of the loop,
 * after the timers (and the registered sessions' beats) have had their
 * turn.
 */
static void
wd_accept(int lfd)
{
	for (int taken = 0; taken < WD_ACCEPT_BATCH; taken++)
	{
		struct sockaddr_storage ss;
		socklen_t	sslen = sizeof(ss);
		WdSession  *s;
		WdAddr		peer;
		int			fd;
		int			one = 1;

		fd = accept4(lfd, (struct sockaddr *) &ss, &sslen,
					 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
		{
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if ((errno == EMFILE || errno == ENFILE) && reserve_fd >= 0)
			{
				static const WdAddr nowhere;

				/* Accept with the spare descriptor and refuse at once. */
				close(reserve_fd);
				sslen = sizeof(ss);
				fd = accept(lfd, (struct sockaddr *) &ss, &sslen);
				if (fd >= 0)
					close(fd);
				reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
				if (fd < 0 || !wd_addr_from_sockaddr((struct sockaddr *) &ss, &peer))
					peer = nowhere;
				wd_log_noise(&peer, "out of file descriptors",
							 "watchdog: out of file descriptors, refused a connection (raise the open-files limit above max_files_per_process + 2 * watchdog.max_heartbeat_connections)");
				return;
			}
			ereport(LOG,
					(errcode_for_socket_access(),
					 errmsg("watchdog: could not accept a connection: %m")));
			return;
		}

		if (!wd_addr_from_sockaddr((struct sockaddr *) &ss, &peer))
		{
			close(fd);
			continue;
		}
		if (!wd_address_allowed(&peer))
		{
			char		host[INET6_ADDRSTRLEN];

			wd_log_noise(&peer, "address not allowed",
						 "watchdog: refusing connection from %s: not in watchdog.allowed_addresses",
						 wd_addr_to_string(&peer, host, sizeof(host)));
			wd_refuse_fd(fd, CMPROTO_ERR_AUTH,
						 "address not allowed by watchdog.allowed_addresses");
			close(fd);
			continue;
		}
		if (npending >= WD_MAX_PENDING)
			wd_evict_pending(&peer);
		s = wd_new_session();
		if (s == NULL)
		{
			char		host[INET6_ADDRSTRLEN];

			/* Out of memory: there is always a free entry here. */
			wd_log_noise(&peer, "too many connections",
						 "watchdog: refusing connection from %s: out of memory (%d sessions registered, %d in handshake)",
						 wd_addr_to_string(&peer, host, sizeof(host)),
						 nregistered, npending);
			close(fd);
			continue;
		}
		if (!wd_epoll_ctl(EPOLL_CTL_ADD, fd, EPOLLIN, WD_EV(s->gen, s->idx)))
		{
			char		host[INET6_ADDRSTRLEN];

			ereport(LOG,
					(errcode_for_socket_access(),
					 errmsg("watchdog: refusing connection from %s: could not wait on its socket: %m",
							wd_addr_to_string(&peer, host, sizeof(host)))));
			close(fd);
			wd_release(s->idx);
			continue;
		}
		(void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

		s->fd = fd;
		s->peer = peer;
		s->accepted_at = wd_mono_now();
		s->last_received = s->accepted_at;
		wd_set_state(s, WD_SESS_HELLO);
		wd_timer_arm(s);
	}
}

/* ---- timers ---- */

/*
 * Every watchdog.check_attr_interval: when the attributes or the timeline
 * changed, tell every registered session with HB_ATTRS.  A session hears
 * of what its version carries: version 1 of attribute changes only (its
 * HB_ATTRS has no timeline), version 2 of the timeline too, version 3 of
 * a promotion asked for as well.
 */
static void
wd_check_attrs(WdMono now)
{
	uint32		attrs;
	uint32		timeline;

	/*
	 * A standby looks for its promotion every WD_PROMOTION_POLL_US, whatever
	 * check_attr_interval says, and at once when the promotion is asked for
	 * (wd_promote_event()): until conmgr hears of it, the old primary (if
	 * it still runs) is the only primary conmgr knows, and new writes go
	 * there.  The looks cost a spinlock and a stat(), so the cost is the
	 * wake-ups, fifty a second on a standby only.
	 */
	if (now < next_attr_check)
	{
		if (!(cur_attrs & CMPROTO_ATTR_IN_RECOVERY) || now < next_promotion_poll)
			return;
		next_promotion_poll = now + WD_PROMOTION_POLL_US;
		if (RecoveryInProgress() &&
			wd_promotion_requested() == ((cur_attrs & CMPROTO_ATTR_PROMOTING) != 0))
			return;
	}
	next_attr_check = now + (WdMono) wd_check_attr_interval * 1000;

	attrs = wd_current_attrs();
	timeline = wd_current_timeline();
	if (attrs == cur_attrs && timeline == cur_timeline)
		return;
	ereport(LOG,
			(errmsg("watchdog: instance attributes changed: %s%s, %s, timeline %u",
					(attrs & CMPROTO_ATTR_IN_RECOVERY) ? "in recovery" : "not in recovery",
					(attrs & CMPROTO_ATTR_PROMOTING) ? " (promotion requested)" : "",
					(attrs & CMPROTO_ATTR_READ_ONLY) ? "read-only by default" : "read-write by default",
					timeline)));
	for (int i = 0; i < nsessions; i++)
	{
		WdSession  *s = sessions[i];
		cmproto_msg msg;

		if (s == NULL || s->state != WD_SESS_UP)
			continue;
		if (wd_session_attrs(s, attrs) == wd_session_attrs(s, cur_attrs) &&
			(s->version < 2 || timeline == cur_timeline))
			continue;
		memset(&msg, 0, sizeof(msg));
		msg.type = CMPROTO_HB_ATTRS;
		msg.u.hb_attrs.attrs = wd_session_attrs(s, attrs);
		if (s->version >= 2)
			msg.u.hb_attrs.timeline = timeline;
		(void) wd_send(s, &msg);
		wd_release(i);
	}
	cur_attrs = attrs;
	cur_timeline = timeline;
	LWLockAcquire(wd_shared->lock, LW_EXCLUSIVE);
	wd_shared->attrs = attrs;
	LWLockRelease(wd_shared->lock);
	if (!(attrs & CMPROTO_ATTR_IN_RECOVERY) && promote_watch_fd >= 0)
	{
		/* recovery never starts again: nothing more to watch for */
		(void) epoll_ctl(epfd, EPOLL_CTL_DEL, promote_watch_fd, NULL);
		close(promote_watch_fd);
		promote_watch_fd = -1;
	}
}

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
		promote_watch_fd = fd;
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
static void
wd_promote_event(void)
{
	char		buf[4096] pg_attribute_aligned(sizeof(struct inotify_event));

	while (read(promote_watch_fd, buf, sizeof(buf)) > 0)
		;
	next_promotion_poll = 0;
}

/*
 * A session's timer has come: read it if its deadline has passed, lose it
 * if it stays silent, send its heartbeat when that is due.  False when
 * the session was closed.
 */
static bool
wd_session_timer(WdSession *s, WdMono now)
{
	if (now >= wd_deadline(s))
	{
		/*
		 * Read what is waiting first: this process may have been busy or
		 * descheduled, or its batch of events may not have reached this
		 * session yet, and a frame that arrived in time is a sign of life
		 * even when it is read late.
		 */
		wd_read(s);
		if (s->state == WD_SESS_FREE)
			return false;
	}
	if (now >= wd_deadline(s))
	{
		char		why[64];

		if (s->state == WD_SESS_UP)
			snprintf(why, sizeof(why),
					 "nothing received for %d s (heartbeat_timeout)",
					 s->timeout);
		else
			strlcpy(why, "handshake not completed in time", sizeof(why));
		wd_lose(s, why);
		return false;
	}
	if (s->state == WD_SESS_UP && now >= s->next_send - WD_SEND_SLACK_US)
	{
		s->next_send += (WdMono) s->interval * USECS_PER_SEC;
		if (s->next_send <= now)
			s->next_send = now + (WdMono) s->interval * USECS_PER_SEC;
		if (!wd_send_beat(s))
			return false;
	}
	return true;
}

/*
 * Run the timers that are due; returns the monotonic time of the next one.
 * Heartbeats are sent up to WD_SEND_SLACK_US early, so that the sessions
 * whose beats fall within that much of each other share a wake-up; so
 * every timer due by then is taken off the heap first, and run after,
 * which also runs each at most once here even when it stays due (a
 * deadline a little ahead).
 */
static WdMono
wd_run_timers(void)
{
	WdMono		now = wd_mono_now();
	WdMono		next;
	WdSession  *due = NULL;
	WdSession **tail = &due;
	cmheap_node *top;

	wd_check_attrs(now);
	wd_log_window(&noiselog, now);
	wd_log_window(&authlog, now);
	wd_log_window(&sessionlog, now);

	while ((top = cmheap_top(&timers)) != NULL &&
		   cmheap_top_key(&timers) <= now + WD_SEND_SLACK_US)
	{
		WdSession  *s = (WdSession *) ((char *) top - offsetof(WdSession, timer));

		(void) cmheap_pop(&timers);
		s->due_next = NULL;
		*tail = s;
		tail = &s->due_next;
	}
	while (due != NULL)
	{
		WdSession  *s = due;

		due = s->due_next;
		pg_atomic_write_u64(&wd_shared->timers_run, ++wd_timers_run);
		if (wd_session_timer(s, now))
			wd_timer_arm(s);
		else
			wd_release(s->idx);
	}

	next = next_attr_check;
	if (cur_attrs & CMPROTO_ATTR_IN_RECOVERY)
		next = Min(next, next_promotion_poll);
	if (cmheap_top(&timers) != NULL)
		next = Min(next, cmheap_top_key(&timers));
	return next;
}

/* ---- start-up ---- */

static void
wd_load_key(void)
{
	int			fd;
	struct stat st;
	ssize_t		n;

	auth_key_len = 0;
	if (wd_auth_key_file == NULL || wd_auth_key_file[0] == '\0')
		return;

	fd = open(wd_auth_key_file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("watchdog: could not open key file \"%s\": %m",
						wd_auth_key_file)));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
	{
		close(fd);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("watchdog: key file \"%s\" is not a regular file",
						wd_auth_key_file)));
	}
	if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
	{
		close(fd);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("watchdog: key file \"%s\" is accessible to group or others",
						wd_auth_key_file),
				 errhint("chmod 0600 the file.")));
	}
	n = read(fd, auth_key, sizeof(auth_key));
	close(fd);
	if (n < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("watchdog: could not read key file \"%s\": %m",
						wd_auth_key_file)));
	while (n > 0 && (auth_key[n - 1] == '\n' || auth_key[n - 1] == '\r' ||
					 auth_key[n - 1] == ' ' || auth_key[n - 1] == '\t'))
		n--;
	if (n < WD_KEY_MIN || (size_t) n >= sizeof(auth_key))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("watchdog: key in \"%s\" must be %d to %d bytes long",
						wd_auth_key_file, WD_KEY_MIN, WD_KEY_MAX - 1)));
	auth_key_len = n;
}

static void
wd_listen_on(struct addrinfo *ai, const char *name)
{
	int			fd;
	int			one = 1;

	if (nlisten >= WD_MAX_LISTEN)
	{
		ereport(LOG,
				(errmsg("watchdog: too many listen addresses, ignoring \"%s\"", name)));
		return;
	}
	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
				ai->ai_protocol);
	if (fd < 0)
	{
		ereport(LOG,
				(errcode_for_socket_access(),
				 errmsg("watchdog: could not create socket for \"%s\": %m", name)));
		return;
	}
	(void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ai->ai_family == AF_INET6)
		(void) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, WD_LISTEN_BACKLOG) < 0)
	{
		ereport(LOG,
				(errcode_for_socket_access(),
				 errmsg("watchdog: could not listen on \"%s\" port %d: %m",
						name, wd_port)));
		close(fd);
		return;
	}
	if (!wd_epoll_ctl(EPOLL_CTL_ADD, fd, EPOLLIN, WD_EV(0, nlisten)))
		ereport(ERROR,
				(errcode_for_socket_access(),
				 errmsg("watchdog: could not wait on the listen socket for \"%s\": %m",
						name)));
	listen_fds[nlisten] = fd;
	nlisten++;
}

static void
wd_open_listeners(void)
{
	char	   *raw = pstrdup(wd_listen_addresses);
	List	   *names;
	ListCell   *lc;
	char		port[16];

	if (!SplitGUCList(raw, ',', &names))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("watchdog: invalid list syntax in \"watchdog.listen_addresses\"")));
	snprintf(port, sizeof(port), "%d", wd_port);

	foreach(lc, names)
	{
		char	   *name = (char *) lfirst(lc);
		struct addrinfo hints;
		struct addrinfo *res;
		int			rc;

		memset(&hints, 0, sizeof(hints));
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_flags = AI_PASSIVE;
		rc = getaddrinfo(strcmp(name, "*") == 0 ? NULL : name, port,
						 &hints, &res);
		if (rc != 0)
		{
			ereport(LOG,
					(errmsg("watchdog: could not resolve \"%s\": %s",
							name, gai_strerror(rc))));
			continue;
		}
		for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next)
			wd_listen_on(ai, name);
		freeaddrinfo(res);
	}
	if (nlisten == 0)
		ereport(ERROR,
				(errmsg("watchdog: could not listen on any address of \"%s\" port %d",
						wd_listen_addresses, wd_port)));
}

/*
 * The start-up line: the limits, and who may register.  It says so when
 * nothing but reaching the port is needed.
 */
static void
wd_log_startup(void)
{
	char		cap[64];

	if (wd_max_sessions_per_address > 0)
		snprintf(cap, sizeof(cap), "%d per address", wd_max_sessions_per_address);
	else
		strlcpy(cap, "no limit per address", sizeof(cap));
	ereport(LOG,
			(errmsg("watchdog: listening on port %d for conmgr heartbeats (%d sessions at most, %s; %s)",
					wd_port, wd_shared->max_sessions, cap,
					auth_key_len > 0 ?
					(wd_anyone_allowed() ? "key required, from any address" :
					 "key required, from watchdog.allowed_addresses only") :
					(wd_anyone_allowed() ?
					 "no key and no watchdog.allowed_addresses: any host that reaches this port may register" :
					 "no key, from watchdog.allowed_addresses only"))));
}

/* An array of n items that may pass 1 GB near the GUC's maximum. */
static void *
wd_alloc_huge(Size size, int n)
{
	return MemoryContextAllocExtended(TopMemoryContext, size * n,
									  MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
}

/*
 * Why the worker does not wait in a WaitEventSet: a set cannot remove a
 * socket (PostgreSQL 15) and sessions come and go, so the sessions would
 * live in an epoll set of their own inside it, and every wake-up would
 * cost two waits, the set's and then one on the sessions.  So the worker
 * waits on its own epoll set, once a wake-up, and does for itself what
 * latch.c does on Linux: the postmaster-death pipe (postmaster_alive_fds)
 * is in the set, and a signal ends the wait.  Where latch.c uses a
 * self-pipe (15) or a signalfd (16 and later) so that a signal arriving
 * just before the wait still ends it, the worker keeps the signals whose
 * handlers set its flags (SIGHUP: reload, SIGTERM: die, SIGINT, SIGUSR1:
 * procsignal) blocked except inside epoll_pwait() (and wd_gather()'s
 * ppoll()), which unblocks them atomically: one that came earlier ends the wait at once, its handler
 * run.  The latch: those handlers set it, and ResetLatch() clears it
 * after each wait, without a system call.  The worker never marks its
 * latch as slept on (maybe_sleeping), so a SetLatch() from another
 * process sends no signal and is seen at the next wake-up; other
 * processes reach the worker by the signals above.
 */
static void
wd_init_signals(sigset_t *wait_mask)
{
	sigset_t	block;

	sigprocmask(SIG_SETMASK, NULL, wait_mask);
	block = *wait_mask;
	sigaddset(&block, SIGHUP);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_SETMASK, &block, NULL);
}

/*
 * Before a wait that follows a wake-up with events, let frames gather.
 * Thousands of peers beat at phases of their own, so a worker that waits
 * again at once wakes for every few frames, and the wake-up costs more
 * than the frames; sleeping first until WD_GATHER_US after the last
 * wake-up (or until "next", the next timer, if sooner) bounds busy
 * wake-ups to 1 s / WD_GATHER_US, and every frame that arrived meanwhile
 * comes back from one wait.  A frame waits at most that long, a small
 * part of the shortest heartbeat_interval; an idle worker, or one woken
 * by a timer, does not sleep here.  Signals end the sleep as they end a
 * wait; false then, so that the wait does not block before they are
 * handled.
 */
static bool
wd_gather(WdMono woke_at, int last_events, WdMono next)
{
	WdMono		now;
	WdMono		until;
	struct timespec ts;
	struct pollfd pfd;

	if (last_events == 0 || last_events == WD_EPOLL_BATCH)
		return true;
	now = wd_mono_now();
	until = Min(woke_at + WD_GATHER_US, next);
	if (until <= now)
		return true;
	ts.tv_sec = (until - now) / USECS_PER_SEC;
	ts.tv_nsec = ((until - now) % USECS_PER_SEC) * 1000;
	/* a promotion asked for ends the sleep: it is not to wait for others */
	pfd.fd = promote_watch_fd;
	pfd.events = POLLIN;
	pgstat_report_wait_start(PG_WAIT_EXTENSION);
	if (ppoll(&pfd, pfd.fd >= 0 ? 1 : 0, &ts, &wd_wait_mask) < 0 && errno == EINTR)
	{
		pgstat_report_wait_end();
		return false;
	}
	pgstat_report_wait_end();
	pg_atomic_write_u64(&wd_shared->wakeups, ++wd_wakeups);
	return true;
}

void
watchdog_main(Datum arg)
{
	WdMono		woke_at = 0;
	int			n = 0;
	uint32		counts_size;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	wd_attach_shmem();
	LWLockAcquire(wd_shared->lock, LW_EXCLUSIVE);
	/* Sessions of an earlier incarnation are gone with their sockets. */
	memset(wd_shared->sessions, 0,
		   sizeof(WdSessionStat) * wd_shared->max_sessions);
	wd_shared->watchdog_pid = MyProcPid;
	LWLockRelease(wd_shared->lock);

	wd_load_key();

	/* The lowest entries and slots are taken first. */
	nsessions = wd_shared->max_sessions + WD_MAX_PENDING;
	sessions = wd_alloc_huge(sizeof(WdSession *), nsessions);
	free_entries = wd_alloc_huge(sizeof(int), nsessions);
	for (int i = nsessions - 1; i >= 0; i--)
		free_entries[nfree_entries++] = i;
	free_slots = wd_alloc_huge(sizeof(int), wd_shared->max_sessions);
	for (int i = wd_shared->max_sessions - 1; i >= 0; i--)
		free_slots[nfree_slots++] = i;
	cmheap_init(&timers, wd_alloc_huge(sizeof(cmheap_entry), nsessions),
				nsessions);
	counts_size = cmaddrcount_size(wd_shared->max_sessions);
	cmaddrcount_init(&host_counts,
					 wd_alloc_huge(sizeof(cmaddrcount_entry), counts_size),
					 counts_size);

	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0)
		ereport(ERROR,
				(errcode_for_socket_access(),
				 errmsg("watchdog: could not create epoll descriptor: %m")));
	if (!wd_epoll_ctl(EPOLL_CTL_ADD, postmaster_alive_fds[POSTMASTER_FD_WATCH],
					  EPOLLIN, WD_EV_POSTMASTER))
		ereport(ERROR,
				(errcode_for_socket_access(),
				 errmsg("watchdog: could not wait for postmaster death: %m")));
	reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	wd_open_listeners();

	cur_attrs = wd_current_attrs();
	cur_timeline = wd_current_timeline();
	next_attr_check = 0;
	if (cur_attrs & CMPROTO_ATTR_IN_RECOVERY)
		wd_watch_promotion();
	wd_woke_ts = GetCurrentTimestamp();

	wd_init_signals(&wd_wait_mask);
	wd_log_startup();

	for (;;)
	{
		struct epoll_event evs[WD_EPOLL_BATCH];
		WdMono		next;
		WdMono		now;
		int			timeout;

		next = wd_run_timers();
		if (!wd_gather(woke_at, n, next))
			next = 0;
		now = wd_mono_now();
		/* rounded up: waking a little early would only loop again */
		timeout = next <= now ? 0 : (int) Min((next - now + 999) / 1000, INT_MAX);

		pgstat_report_wait_start(PG_WAIT_EXTENSION);
		n = epoll_pwait(epfd, evs, lengthof(evs), timeout, &wd_wait_mask);
		pgstat_report_wait_end();
		woke_at = wd_mono_now();
		wd_woke_ts = GetCurrentTimestamp();
		pg_atomic_write_u64(&wd_shared->wakeups, ++wd_wakeups);
		if (n < 0)
		{
			if (errno != EINTR)
				ereport(ERROR,
						(errcode_for_socket_access(),
						 errmsg("watchdog: could not wait for events: %m")));
			n = 0;
		}
		if (MyLatch->is_set)
			ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			char	   *allowed = pstrdup(wd_allowed_addresses);
			int			cap = wd_max_sessions_per_address;

			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			/* default_transaction_read_only may have changed: look now. */
			next_attr_check = 0;
			/* Registered sessions stay; new ones meet the new settings. */
			if (strcmp(allowed, wd_allowed_addresses) != 0 ||
				cap != wd_max_sessions_per_address)
				wd_log_startup();
			pfree(allowed);
		}

		for (int i = 0; i < n; i++)
		{
			uint32		gen = (uint32) (evs[i].data.u64 >> 32);
			uint32		idx = (uint32) evs[i].data.u64;
			WdSession  *s;

			if (evs[i].data.u64 == WD_EV_PROMOTE)
			{
				wd_promote_event();
				continue;
			}
			if (evs[i].data.u64 == WD_EV_POSTMASTER)
			{
				/* What WL_EXIT_ON_PM_DEATH does. */
				if (!PostmasterIsAliveInternal())
					proc_exit(1);
				continue;
			}
			if (gen == 0)
			{
				wd_accept(listen_fds[idx]);
				continue;
			}
			s = sessions[idx];
			/* closed earlier in this batch, its entry maybe reused since */
			if (s == NULL || s->gen != gen || s->state == WD_SESS_FREE)
				continue;
			if (!(evs[i].events & EPOLLOUT) || wd_flush(s))
			{
				if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
					wd_read(s);
			}
			wd_release(idx);
		}
	}
}
