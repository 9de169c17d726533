/*-------------------------------------------------------------------------
 *
 * wd_session.c
 *	  The watchdog worker's session table, and the life of a session.
 *
 * One entry per conmgr connection, from accept to close: its state (one
 * setter, wd_set_state(), which also keeps the list of handshakes and the
 * count of registered sessions per address), its timer in one wheel, its
 * row in the shared table that pgx_stat_watchdog shows (this process is
 * the rows' only writer), its output and what of it the socket has not
 * taken yet, and its end.  What a peer sends is wd_protocol.c's.
 *
 * A registered session that times out, closes, resets or breaks the
 * protocol is lost: its address is queued for the terminator
 * (wd_terminator.c).  A session that never registered causes no
 * termination.  A lost session whose address has other registered
 * sessions (two conmgrs on one host, NAT, loopback) is not handed to the
 * terminator either: that address still has a live conmgr, so its host
 * has not lost its path to this server.  The last of them to be lost is.
 *
 * The rate limits of what peers can make the worker log (wd_log.c) are
 * here too: what connections that never registered cause, and failed
 * authentications, are logged once a minute per source address and reason
 * and at most 50 such lines a minute in all, so that a flood cannot fill
 * the server log; registrations and losses 10 a minute per address and
 * reason and 100 in all, since without a key a register-and-close loop is
 * a flood of them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "storage/latch.h"
#include "storage/lwlock.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "cmaddrcount.h"
#include "cmwheel.h"
#include "cmproto.h"
#include "watchdog.h"
#include "wd_worker_int.h"

/*
 * One pointer per possible session: max_heartbeat_connections registered
 * ones and WD_MAX_PENDING in handshake.  A session's memory is allocated
 * when a connection is accepted and freed by wd_release() once it is
 * closed (what it holds besides, by wd_close()), with its timer in it, so
 * an idle slot costs a pointer here and an int in each free stack: taking
 * an entry or a shared slot, like running a timer, never searches all
 * sessions; nor does counting a client address's registered sessions
 * (host_counts).
 */
WdSession **wd_sessions;
int			wd_nsessions;		/* entries in wd_sessions[] */
static int *free_entries;		/* stack of the NULL entries of wd_sessions[] */
static int	nfree_entries;
static int *free_slots;			/* stack of the free wd_shared->sessions[] */
static int	nfree_slots;
cmwheel		wd_timers;			/* every open session's timer */
static uint32 last_gen;			/* of the last session allocated */
WdSession  *wd_pending[WD_MAX_PENDING]; /* sessions in HELLO or AUTH */
int			wd_npending;
int			wd_nregistered;		/* sessions UP */
static cmaddrcount host_counts; /* sessions UP per client address */

WdLogLimit	wd_authlog = {"failed authentications", 1, 50};
WdLogLimit	wd_noiselog = {"connections that never registered", 1, 50};
WdLogLimit	wd_sessionlog = {"registrations and losses", 10, 100};

/* ---- the table ---- */

/* An array of n items that may pass 1 GB near the GUC's maximum. */
static void *
wd_alloc_huge(Size size, int n)
{
	return MemoryContextAllocExtended(TopMemoryContext, size * n,
									  MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
}

/*
 * Size the table from watchdog.max_heartbeat_connections, once: every
 * entry, shared slot, timer and address count the worker will use.
 */
void
wd_sessions_init(void)
{
	uint32		counts_size;

	/* The lowest entries and slots are taken first. */
	wd_nsessions = wd_shared->max_sessions + WD_MAX_PENDING;
	wd_sessions = wd_alloc_huge(sizeof(WdSession *), wd_nsessions);
	free_entries = wd_alloc_huge(sizeof(int), wd_nsessions);
	for (int i = wd_nsessions - 1; i >= 0; i--)
		free_entries[nfree_entries++] = i;
	free_slots = wd_alloc_huge(sizeof(int), wd_shared->max_sessions);
	for (int i = wd_shared->max_sessions - 1; i >= 0; i--)
		free_slots[nfree_slots++] = i;
	cmwheel_init(&wd_timers, WD_TIMER_TICK_US, wd_mono_now());
	counts_size = cmaddrcount_size(wd_shared->max_sessions);
	cmaddrcount_init(&host_counts,
					 wd_alloc_huge(sizeof(cmaddrcount_entry), counts_size),
					 counts_size);
}

/*
 * A new session entry, or NULL when every entry is taken or memory is
 * short.  It is FREE until the caller sets its state.
 */
WdSession *
wd_new_session(void)
{
	WdSession  *s;
	int			i;

	/*
	 * An entry takes a chunk of the next power of two (AllocSet): a byte more
	 * than 128 would double what every connection costs.
	 */
	StaticAssertStmt(sizeof(WdSession) <= 128, "a session entry must fit 128 bytes");
	if (nfree_entries == 0)
		return NULL;
	s = MemoryContextAllocExtended(TopMemoryContext, sizeof(WdSession),
								   MCXT_ALLOC_NO_OOM);
	if (s == NULL)
		return NULL;
	i = free_entries[--nfree_entries];
	Assert(wd_sessions[i] == NULL);
	memset(s, 0, sizeof(WdSession));
	s->state = WD_SESS_FREE;
	s->idx = i;
	if (++last_gen == 0)
		last_gen = 1;
	s->gen = last_gen;
	s->pidx = -1;
	s->fd = -1;
	s->slot = -1;
	cmwheel_node_init(&s->timer);
	wd_sessions[i] = s;
	return s;
}

/*
 * Free the entry of a closed session.  Called only where no pointer to it
 * is held any more: after its event, its timer or its attribute push.
 */
void
wd_release(int i)
{
	WdSession  *s = wd_sessions[i];

	if (s != NULL && s->state == WD_SESS_FREE)
	{
		Assert(!cmwheel_queued(&s->timer));
		Assert(s->partial == NULL && s->unsent == NULL && s->nonces == NULL);
		pfree(s);
		wd_sessions[i] = NULL;
		free_entries[nfree_entries++] = i;
	}
}

/* The peer's address and port, for log lines (valid until the next call). */
const char *
wd_peer_str(const WdSession *s)
{
	static char buf[INET6_ADDRSTRLEN + 8];
	char		host[INET6_ADDRSTRLEN];

	wd_addr_to_string(&s->peer, host, sizeof(host));
	snprintf(buf, sizeof(buf), "%s:%u", host, s->peer.port);
	return buf;
}

/* ---- states and timers ---- */

static inline bool
wd_in_handshake(WdSessState state)
{
	return state == WD_SESS_HELLO || state == WD_SESS_AUTH;
}

/* Also keeps wd_pending[] (the sessions in handshake) and the counts. */
void
wd_set_state(WdSession *s, WdSessState state)
{
	bool		was = wd_in_handshake(s->state);
	bool		is = wd_in_handshake(state);

	if (was && !is)
	{
		WdSession  *last = wd_pending[--wd_npending];

		wd_pending[s->pidx] = last;
		last->pidx = s->pidx;
		s->pidx = -1;
		if (s->nonces != NULL)
		{
			pfree(s->nonces);
			s->nonces = NULL;
		}
	}
	else if (!was && is)
	{
		Assert(wd_npending < WD_MAX_PENDING);
		s->pidx = wd_npending;
		wd_pending[wd_npending++] = s;
	}
	if (s->state == WD_SESS_UP)
	{
		wd_nregistered--;
		(void) cmaddrcount_remove(&host_counts, s->peer.family, s->peer.addr);
	}
	s->state = state;
	if (state == WD_SESS_UP)
	{
		wd_nregistered++;
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
 * touching the wheel: the timer then runs early, finds nothing due and is
 * set again, which costs one timer operation an interval instead of one a
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

void
wd_timer_arm(WdSession *s)
{
	cmwheel_set(&wd_timers, &s->timer, wd_timer_due(s));
}

/* Registered sessions from the host of "peer", other than "self". */
int
wd_host_sessions(const WdAddr *peer, const WdSession *self)
{
	int			n = cmaddrcount_get(&host_counts, peer->family, peer->addr);

	if (self->state == WD_SESS_UP && wd_addr_same_host(&self->peer, peer))
		n--;
	return n;
}

/* ---- the shared statistics rows ---- */

/* Take a row for a session that registers; -1 when none is free. */
int
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
void
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

/* ---- waiting on a session ---- */

/*
 * Add the session's socket to the epoll set (EPOLL_CTL_ADD) or set its
 * events again (EPOLL_CTL_MOD): input and the peer's end always, and room
 * to write when "want_write".  False (errno set) on failure.
 *
 * Edge-triggered while there is nothing to write, which is nearly always:
 * a level-triggered socket goes back on the ready list after each wait
 * that reports it, and the next wait polls it once more only to find it
 * drained, and that second poll of every socket that had a frame is work
 * of a beat's size.  So wd_read() reads a session until a read falls
 * short (TCP has then handed over all it held, and what arrives later is
 * a new edge), or, once the peer's end is reported (EPOLLRDHUP, which
 * can come with the last frames in one edge), until it reads that end;
 * and it asks again with EPOLL_CTL_MOD, which reports the socket at the
 * next wait if it is still readable, when it stops before.  While output
 * is queued the socket is level-triggered: a send that takes nothing is
 * then waited out whatever made it short.
 */
bool
wd_session_wait(WdSession *s, int op, bool want_write)
{
	return wd_epoll_ctl(op, s->fd,
						EPOLLIN | EPOLLRDHUP | (want_write ? EPOLLOUT : EPOLLET),
						WD_EV(s->gen, s->idx));
}

/* ---- sending ---- */

/*
 * Wait for the socket to take more while output is queued, and only
 * then; false when that failed (s is lost).
 */
static bool
wd_want_write(WdSession *s)
{
	bool		want = s->outlen > 0;
	char		why[128];

	if (s->want_write == want)
		return true;
	if (wd_session_wait(s, EPOLL_CTL_MOD, want))
	{
		s->want_write = want;
		return true;
	}
	snprintf(why, sizeof(why), "could not change its wait events: %m");
	wd_lose(s, why);
	return false;
}

/*
 * Memory for what a session holds besides its entry (a partial frame, its
 * unsent output, its nonces), or NULL, the session lost, when there is
 * none: one session's shortage ends that session, not the worker.
 */
void *
wd_session_alloc(WdSession *s, Size size)
{
	void	   *p = MemoryContextAllocExtended(TopMemoryContext, size,
											   MCXT_ALLOC_NO_OOM);

	if (p == NULL)
		wd_lose(s, "out of memory");
	return p;
}

/*
 * Send what the socket takes of "len" bytes at "buf"; how many it took,
 * or -1 when the connection failed (s is lost).
 */
static ssize_t
wd_write(WdSession *s, const uint8 *buf, size_t len)
{
	size_t		done = 0;

	while (done < len)
	{
		ssize_t		n = send(s->fd, buf + done, len - done, MSG_NOSIGNAL);

		if (n < 0)
		{
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			wd_lose(s, strerror(errno));
			return -1;
		}
		done += n;
	}
	return done;
}

/* Write what is queued; false when the connection failed (s is lost). */
bool
wd_flush(WdSession *s)
{
	if (s->outlen > 0)
	{
		ssize_t		n = wd_write(s, s->unsent, s->outlen);

		if (n < 0)
			return false;
		memmove(s->unsent, s->unsent + n, s->outlen - n);
		s->outlen -= n;
		if (s->outlen == 0)
		{
			pfree(s->unsent);
			s->unsent = NULL;
		}
	}
	return wd_want_write(s);
}

/*
 * Send one message, or queue it behind what is queued.  The queue holds
 * WD_OUTBUF bytes; a message that does not fit is dropped: the queue only
 * fills when the peer has stopped reading for many intervals, and its
 * timeout will end the session anyway.
 */
bool
wd_send(WdSession *s, const cmproto_msg *msg)
{
	uint8		buf[CMPROTO_MAX_MSG];
	int			n = cmproto_encode_version(msg, s->version ? s->version : CMPROTO_VERSION,
										   buf, sizeof(buf));
	ssize_t		sent;

	StaticAssertStmt(WD_OUTBUF >= CMPROTO_MAX_MSG && WD_OUTBUF <= PG_UINT16_MAX,
					 "a message must fit the output queue, and its length outlen");
	if (n < 0)
	{
		elog(LOG, "watchdog: could not encode %s: %s",
			 cmproto_type_name(msg->type), cmproto_strerror(n));
		return true;
	}
	if (s->outlen > 0)
	{
		if (s->outlen + n > WD_OUTBUF)
			return true;
		memcpy(s->unsent + s->outlen, buf, n);
		s->outlen += n;
		return wd_flush(s);
	}
	sent = wd_write(s, buf, n);
	if (sent < 0)
		return false;
	if (sent < n)
	{
		s->unsent = wd_session_alloc(s, WD_OUTBUF);
		if (s->unsent == NULL)
			return false;
		memcpy(s->unsent, buf + sent, n - sent);
		s->outlen = n - sent;
	}
	return wd_want_write(s);
}

void
wd_send_error(WdSession *s, int code, const char *message)
{
	cmproto_msg msg;

	cmproto_error_msg(&msg, code, message);
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
	msg.u.hb_beat.attrs = wd_session_attrs(s, wd_cur_attrs);
	if (!wd_send(s, &msg))
		return false;
	wd_update_stats(s, false, true);
	return true;
}

/* ---- the end of a session ---- */

void
wd_close(WdSession *s)
{
	if (s->state == WD_SESS_FREE)
		return;
	(void) epoll_ctl(wd_epfd, EPOLL_CTL_DEL, s->fd, NULL);
	close(s->fd);
	s->fd = -1;
	cmwheel_remove(&wd_timers, &s->timer);
	if (s->partial != NULL)
		pfree(s->partial);
	if (s->unsent != NULL)
		pfree(s->unsent);
	s->partial = s->unsent = NULL;
	s->inlen = s->outlen = 0;
	wd_set_state(s, WD_SESS_FREE);
}

/* The session ends; if it was registered, its host is terminated. */
void
wd_lose(WdSession *s, const char *why)
{
	wd_lose_kind(s, why, why);
}

/*
 * The same; "kind" names the reason for the log limit where "why" holds
 * text the peer chose (its ERROR message), which must not make every line
 * a new kind.
 */
void
wd_lose_kind(WdSession *s, const char *why, const char *kind)
{
	if (s->state == WD_SESS_UP)
	{
		/*
		 * An address with other registered sessions is shared (two conmgrs on
		 * one host, NAT, loopback), and its host has not lost its path to
		 * this server: its SQL sessions are left alone until the last of them
		 * is lost.
		 */
		int			others = wd_host_sessions(&s->peer, s);
		uint64		suppressed;

		if (wd_log_allowed(&wd_sessionlog, &s->peer, wd_log_kind(kind),
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
							wd_peer_str(s), why),
					 errdetail("%s", detail)));
		}
		wd_unregister_lost(s, others == 0);
	}
	else
		wd_log_noise(&s->peer, kind,
					 "watchdog: closing unregistered connection from %s: %s",
					 wd_peer_str(s), why);
	wd_close(s);
}

/* ---- a session's timer ---- */

/*
 * A session's timer has come: read it if its deadline has passed, lose it
 * if it stays silent, send its heartbeat when that is due.  False when
 * the session was closed.
 */
bool
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
		wd_read(s, now, false);
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
