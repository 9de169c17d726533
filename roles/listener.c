/*-------------------------------------------------------------------------
 *
 * listener.c
 *	  The listener role: applications' resolve requests and down-notices.
 *
 * Forked by the supervisor, one per conmgr; shows in ps as "conmgr:
 * listener :PORT".  It owns the listen sockets on `port` (listen_addresses,
 * localhost by default) and
 * every application session (docs/protocol.md, section 2), and only reads
 * the shared instance table.  Heartbeat roles write its eventfd when an
 * instance's routing changes; it then re-reads the table and sends
 * INSTANCE_DOWN to every session attached to an instance that is no longer
 * up or has become a stale primary (route.c), and closes them.
 *
 * Session states (app_set_state() is the one setter):
 *	 APP_STARTUP	waiting for the first PostgreSQL-framed packet
 *	 APP_HELLO		HELLO sent, waiting for RESOLVE
 *	 APP_RESOLVED	candidates sent, waiting for ATTACHED
 *	 APP_ATTACHED	the application reached instance N; down-notice pending
 *	 APP_CONTROL	cm_ctl on the control socket, waiting for its command
 * A session that breaks the protocol gets ERROR and is closed; a plain
 * PostgreSQL client gets an ErrorResponse saying what it reached.
 *
 * Every state but ATTACHED has a time limit, so that a peer that trickles
 * or stalls cannot hold a session, and a descriptor, for good: STARTUP,
 * HELLO and CONTROL must be over within LSN_HANDSHAKE_SECS of connecting
 * (the client library sends its RESOLVE at once, cm_ctl its command), and
 * RESOLVED within attach_timeout of the candidates (the client connects
 * to them meanwhile, which takes up to its connect_timeout per candidate
 * and the server's authentication).  An attached session has none: it
 * lasts as long as the application's SQL connection.  The 10 kB buffer a
 * startup packet may need is given back once the startup is over; later
 * frames are at most CMPROTO_MAX_MSG bytes.  Every deadline, pause and
 * log window is on the monotonic clock (cmclock.h), so a step of the
 * system's wall clock neither expires nor freezes anything.
 *
 * Hostile peers: the sessions in their handshake (STARTUP, HELLO,
 * CONTROL) are kept in a queue in the order they connected.  When a new
 * connection cannot be taken, for want of descriptors or over
 * max_connections, the oldest of them is closed to make room if it has
 * been in its handshake for LSN_EVICT_AGE_US: a client library's
 * handshake takes one round trip, so a flood of idle or trickling
 * connections cannot keep applications out, while a burst of real ones
 * is refused at the limit as before instead of evicting one another.  Resolved or attached sessions are
 * never evicted.  What such connections make the listener log goes
 * through lsn_log_noise(): once a minute per source address and kind of
 * message, and at most LSN_LOG_BUDGET lines a minute in all.
 *
 * SIGTERM (fast stop): every attached session gets INSTANCE_DOWN with
 * reason "conmgr shutting down", then the role exits 0.  SIGUSR1 (smart
 * stop): the listen sockets are closed and the role exits 0 once the last
 * session has ended; until then, down-notices still go out.  It also
 * exits when the supervisor dies.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cmclock.h"
#include "cmproto.h"
#include "conmgr.h"

#define LSN_MAX_LISTEN	8
#define LSN_HANDSHAKE_SECS 10	/* connect to RESOLVE, at most */
#define LSN_EVICT_AGE_US INT64_C(1000000)	/* a handshake evictable after */
#define LSN_INBUF		(CMPROTO_PG_MAX_STARTUP + 4)	/* in STARTUP */
#define LSN_INBUF_SMALL CMPROTO_MAX_MSG /* after it */
#define LSN_LOG_SLOTS	64		/* sources remembered by the log limit */
#define LSN_LOG_WINDOW_US INT64_C(60000000)
#define LSN_LOG_BUDGET	50		/* noise lines per window, all sources */
#define LSN_HOSTLEN		64		/* a numeric address, with a scope */
#define LSN_ACCEPT_BATCH 32		/* connections taken per wake-up, at most */

typedef enum app_state
{
	APP_FREE,
	APP_STARTUP,
	APP_HELLO,
	APP_RESOLVED,
	APP_ATTACHED,
	APP_CONTROL					/* cm_ctl on the control socket */
} app_state;

static const char *const app_state_names[] = {
	"free", "startup", "hello", "resolved", "attached", "control"
};

typedef struct app
{
	app_state	state;
	int			fd;
	int			instance;		/* when ATTACHED */
	uint64_t	downs_seen;		/* the slot's downs counter at attach */
	uint64_t	offered;		/* bit per instance offered as candidate */
	uint32_t	client_pid;
	int			target;			/* enum cmproto_target, -1 before RESOLVE */
	int			version;		/* protocol version of its RESOLVE */
	int64_t		since;			/* connected, then attached (wall clock us,
								 * for cm_ctl status) */
	int64_t		timer_from;		/* its time limit runs from (cmclock_us()) */
	int			q_prev;			/* timer queue links (indices), -1 = none */
	int			q_next;
	int			free_next;		/* free list link (index), -1 = none */
	char		host[LSN_HOSTLEN];	/* the peer's address, for the log limit */
	char		peer[LSN_HOSTLEN + 8];	/* address:port */
	size_t		inlen;
	size_t		incap;			/* LSN_INBUF in STARTUP, then LSN_INBUF_SMALL */
	uint8_t    *inbuf;
	uint32_t	gen;			/* bumped per session, tags its epoll events */
} app;

/*
 * One epoll set holds every descriptor the role waits on, so that a wake-up
 * costs what is ready, not what is open (a poll() over 1,000 attached
 * sessions spent two thirds of the listener's time in the kernel's per-socket
 * poll work).  An event's data is a session's index and generation, or one
 * of the tags below for the role's own descriptors.
 */
#define EV_TAG			UINT64_C(0xffffffff00000000)
#define EV_DEATH		(EV_TAG | 1)
#define EV_WAKE			(EV_TAG | 2)
#define EV_CONTROL		(EV_TAG | 3)
#define EV_LISTEN		(EV_TAG | 16)	/* + index in listen_fds[] */

static int	ep_fd = -1;

static cm_ctx *ctx;
static app *apps;
static int	napps_alloc;
static int	napps;
static int	ctl_fd = -1;		/* the control socket, CMDATA/conmgr.ctl */
static char ctl_path[4200];
static int	listen_fds[LSN_MAX_LISTEN];
static int	nlisten;
static unsigned rotation[CMPROTO_TARGET_LAST + 1];

/* The free slots of apps[], so that accepting does not scan them. */
static int	free_head = -1;

/*
 * The sessions whose state has a time limit, one queue per limit, each in
 * the order its sessions joined it, so that only its head can be due
 * (lsn_timers()).  app_set_state() keeps them.
 */
typedef enum lsn_queue_id
{
	LSN_Q_NONE = -1,			/* ATTACHED, FREE: no time limit */
	LSN_Q_HANDSHAKE,			/* STARTUP, HELLO, CONTROL: from connecting */
	LSN_Q_RESOLVED,				/* RESOLVED: from the candidates */
	LSN_NQUEUES
} lsn_queue_id;

typedef struct lsn_queue
{
	int			head;			/* oldest, -1 = empty */
	int			tail;
} lsn_queue;

static lsn_queue queues[LSN_NQUEUES] = {{-1, -1}, {-1, -1}};

/* The noise log limit (lsn_log_noise()). */
typedef struct log_entry
{
	char		host[LSN_HOSTLEN];
	uint32_t	kind;
	int64_t		last_us;		/* 0: unused */
	uint64_t	suppressed;
} log_entry;
static log_entry log_entries[LSN_LOG_SLOTS];
static int64_t log_window_start;
static int	log_window_lines;
static uint64_t log_window_dropped;
static volatile sig_atomic_t got_sigterm;
static volatile sig_atomic_t got_smart;

/*
 * A descriptor held in reserve: when accept() fails for want of
 * descriptors, it is closed so that the pending connection can be taken
 * and closed, like one over max_connections.  Left pending, the connection
 * would keep the listen socket readable and the loop spinning.  Should
 * even that fail (the system-wide table is full), accepting pauses for a
 * second.
 */
static int	spare_fd = -1;
static int64_t accept_paused_until; /* cmclock_us(); 0 = not paused */
static bool accepting = true;	/* listen sockets in the epoll set */

static bool lsn_evict_handshake(const char *why);

static void
handle_sigterm(int sig)
{
	if (sig == SIGUSR1)
		got_smart = 1;
	else
		got_sigterm = 1;
}

static bool
ep_set(int op, int fd, uint32_t events, uint64_t data)
{
	struct epoll_event ev;

	ev.events = events;
	ev.data.u64 = data;
	return epoll_ctl(ep_fd, op, fd, &ev) == 0;
}

/* Listen sockets in or out of the epoll set's interest (accept pause). */
static void
lsn_watch_listen(bool on)
{
	for (int i = 0; i < nlisten; i++)
		if (!ep_set(EPOLL_CTL_MOD, listen_fds[i], on ? EPOLLIN : 0, EV_LISTEN + i))
			cm_fatal(ROLE_EXIT_RESTART, "could not watch a listen socket: %s", strerror(errno));
	accepting = on;
}

static lsn_queue_id
app_queue(app_state state)
{
	switch (state)
	{
		case APP_STARTUP:
		case APP_HELLO:
		case APP_CONTROL:
			return LSN_Q_HANDSHAKE;
		case APP_RESOLVED:
			return LSN_Q_RESOLVED;
		case APP_FREE:
		case APP_ATTACHED:
			return LSN_Q_NONE;
	}
	cm_fatal(ROLE_EXIT_RESTART, "bad application session state %d", (int) state);
}

/* How long a session may stay in the states of queue q, in microseconds. */
static int64_t
queue_limit_us(lsn_queue_id q)
{
	return (q == LSN_Q_RESOLVED ? (int64_t) ctx->conf->attach_timeout : LSN_HANDSHAKE_SECS) *
		1000000;
}

static void
queue_remove(lsn_queue_id q, app *a)
{
	if (a->q_prev >= 0)
		apps[a->q_prev].q_next = a->q_next;
	else
		queues[q].head = a->q_next;
	if (a->q_next >= 0)
		apps[a->q_next].q_prev = a->q_prev;
	else
		queues[q].tail = a->q_prev;
	a->q_prev = a->q_next = -1;
}

/* At the tail: its limit runs from now, later than everyone's before it. */
static void
queue_append(lsn_queue_id q, app *a)
{
	int			k = (int) (a - apps);

	a->timer_from = cmclock_us();
	a->q_prev = queues[q].tail;
	a->q_next = -1;
	if (queues[q].tail >= 0)
		apps[queues[q].tail].q_next = k;
	else
		queues[q].head = k;
	queues[q].tail = k;
}

/* Also keeps napps, the free list and the timer queues. */
static void
app_set_state(app *a, app_state state)
{
	int			k = (int) (a - apps);
	lsn_queue_id from = app_queue(a->state);
	lsn_queue_id to = app_queue(state);

	if (a->state == APP_FREE && state != APP_FREE)
	{
		/* lsn_accept() takes the head; anything else would break the list */
		if (k != free_head)
			cm_fatal(ROLE_EXIT_RESTART, "session slot %d taken, but the free list starts at %d",
					 k, free_head);
		free_head = a->free_next;
		napps++;
	}
	else if (a->state != APP_FREE && state == APP_FREE)
	{
		a->free_next = free_head;
		free_head = k;
		napps--;
	}
	if (from != to)
	{
		if (from != LSN_Q_NONE)
			queue_remove(from, a);
		if (to != LSN_Q_NONE)
			queue_append(to, a);
	}
	a->state = state;
}

/* ---- rate-limited logging ---- */

static uint32_t
log_kind(const char *text)
{
	uint32_t	h = 5381;

	for (const unsigned char *p = (const unsigned char *) text; *p; p++)
		h = h * 33 + *p;
	return h;
}

/* Say how many lines the budget dropped, once its window is over. */
static void
log_window(int64_t now)
{
	if (now - log_window_start < LSN_LOG_WINDOW_US)
		return;
	if (log_window_dropped > 0)
		cm_log(CMLOG_LOG, "%llu messages about connections that never resolved were not logged "
			   "in the last minute (at most %d a minute, one per source address and kind)",
			   (unsigned long long) log_window_dropped, LSN_LOG_BUDGET);
	log_window_start = now;
	log_window_lines = 0;
	log_window_dropped = 0;
}

/*
 * LOG a line about a connection that did not get as far as RESOLVE (or
 * broke the protocol): once per LSN_LOG_WINDOW_US per source address and
 * kind (a short fixed text), and LSN_LOG_BUDGET lines per window in all,
 * so that a flood cannot fill the log.  The next line of the same source
 * and kind says how many were not logged.
 */
static void
lsn_log_noise(const char *host, const char *kind, const char *fmt,...)
	__attribute__((format(printf, 3, 4)));

static void
lsn_log_noise(const char *host, const char *kind, const char *fmt,...)
{
	int64_t		now = cmclock_us();
	uint32_t	h = log_kind(kind);
	log_entry  *e = NULL;
	log_entry  *oldest = &log_entries[0];
	char		line[512];
	va_list		ap;

	for (int i = 0; i < LSN_LOG_SLOTS; i++)
	{
		log_entry  *c = &log_entries[i];

		if (c->last_us != 0 && c->kind == h && strcmp(c->host, host) == 0)
		{
			e = c;
			break;
		}
		if (c->last_us < oldest->last_us)
			oldest = c;
	}
	if (e != NULL && now - e->last_us < LSN_LOG_WINDOW_US)
	{
		e->suppressed++;
		return;
	}
	log_window(now);
	if (log_window_lines >= LSN_LOG_BUDGET)
	{
		log_window_dropped++;
		return;
	}
	log_window_lines++;
	if (e == NULL)
	{
		e = oldest;
		snprintf(e->host, sizeof(e->host), "%s", host);
		e->kind = h;
		e->suppressed = 0;
	}
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (e->suppressed > 0)
		cm_log(CMLOG_LOG, "%s (%llu more like it from %s in the last minute were not logged)",
			   line, (unsigned long long) e->suppressed, host);
	else
		cm_log(CMLOG_LOG, "%s", line);
	e->suppressed = 0;
	e->last_us = now;
}

/*
 * What one read of a session answers goes out in one send(): a probe that
 * came with its RESOLVE (as libpq-cm sends them to a conmgr it has met) is
 * answered by the ErrorResponse, HELLO and the candidates together, so the
 * kernel delivers one segment and the client wakes once.  app_read() holds
 * the output of the session it serves here and sends it when done; a frame
 * that does not fit sends what is held first, so the order stays.
 */
static app *held_for;
static size_t held_len;
static uint8_t held[4096];

static bool
app_send_now(app *a, const void *buf, size_t len)
{
	/* Frames are small; a client that does not read is not our problem. */
	return send(a->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT) == (ssize_t) len;
}

static void
app_close(app *a)
{
	/* an ERROR or INSTANCE_DOWN held for this session goes first */
	if (held_for == a && held_len > 0)
		(void) app_send_now(a, held, held_len);
	if (held_for == a)
		held_len = 0;
	close(a->fd);
	a->fd = -1;
	free(a->inbuf);
	a->inbuf = NULL;
	a->inlen = a->incap = 0;
	app_set_state(a, APP_FREE);
}

/* Send what app_read() held for a; false (and a closed) if it failed. */
static bool
app_flush(app *a)
{
	size_t		len = held_len;

	if (held_for != a || len == 0)
		return true;
	held_len = 0;
	if (!app_send_now(a, held, len))
	{
		cm_log(CMLOG_DEBUG1, "app %s: could not send, closing", a->peer);
		app_close(a);
		return false;
	}
	return true;
}

static bool
app_write(app *a, const void *buf, size_t len)
{
	if (held_for == a)
	{
		if (held_len + len > sizeof(held) && !app_flush(a))
			return false;
		if (len <= sizeof(held) - held_len)
		{
			memcpy(held + held_len, buf, len);
			held_len += len;
			return true;
		}
	}
	if (!app_send_now(a, buf, len))
	{
		cm_log(CMLOG_DEBUG1, "app %s: could not send, closing", a->peer);
		app_close(a);
		return false;
	}
	return true;
}

/* Encode a frame we built ourselves: a failure is our bug. */
static size_t
app_encode(const cmproto_msg *m, uint8_t *buf, size_t cap)
{
	int			n = cmproto_encode(m, buf, cap);

	if (n < 0)
		cm_fatal(ROLE_EXIT_RESTART, "could not encode %s: %s",
				 cmproto_type_name(m->type), cmproto_strerror(n));
	return (size_t) n;
}

static bool
app_send(app *a, const cmproto_msg *m)
{
	uint8_t		buf[CMPROTO_MAX_MSG];

	return app_write(a, buf, app_encode(m, buf, sizeof(buf)));
}

/* ERROR to the client, then close; logged by the caller, if at all. */
static void
app_send_error(app *a, int code, const char *why)
{
	cmproto_msg m;

	memset(&m, 0, sizeof(m));
	m.type = CMPROTO_ERROR;
	m.u.error.code = code;
	snprintf(m.u.error.message, sizeof(m.u.error.message), "%s", why);
	if (app_send(a, &m))
		app_close(a);
}

/* ERROR to the client, then close; logged through the noise limit. */
static void
app_reject(app *a, int code, const char *why)
{
	lsn_log_noise(a->host, why, "app %s: %s", a->peer, why);
	app_send_error(a, code, why);
}

static void
pg_reject(app *a, const char *sqlstate, const char *message, const char *hint)
{
	uint8_t		buf[CMPROTO_PG_MAX_ERROR];
	int			n = cmproto_pg_encode_error(buf, sizeof(buf), sqlstate, message, hint);

	if (n > 0)
		(void) app_write(a, buf, n);
	if (a->state != APP_FREE)
		app_close(a);
}

/* ---- routing ---- */

typedef route_candidate candidate;

/*
 * An instance's slot, from the listener's copy of it.  A writer that stays
 * inside an update (it died or was stopped mid-write; the supervisor
 * repairs a dead one's slot) is not waited for past shm.h's bound: the
 * last consistent copy stands, as it does while a live writer is slow.
 */
static shm_slot slot_seen[CMCONF_MAX_INSTANCES];

static shm_slot
slot_read(int i)
{
	bool		was_stuck = (slot_seen[i].changecount & 1) != 0;

	if (shm_read(&ctx->shm->slots[i], &slot_seen[i]))
	{
		if (was_stuck)
			cm_log(CMLOG_LOG, "instance %d: its shared slot is readable again", i);
	}
	else if (!was_stuck)
		cm_log(CMLOG_LOG, "instance %d: its shared slot stayed in mid-update for %d ms "
			   "(writer pid %d); using its last consistent state", i,
			   SHM_READ_WAIT_US / 1000, (int) ctx->shm->slots[i].writer_pid);
	return slot_seen[i];
}

/*
 * The roles and fault of the last route_view_read(), against which the
 * next one finds what changed and so what to log.
 */
static route_view view_logged;
static bool view_logged_valid;

/* The highest timeline seen since the listener started (route.c). */
static route_memory timelines_seen;

static void
log_fault(const route_view *v, const shm_slot *slots)
{
	const struct cmconf_instance *a,
			   *b;

	if (v->fault == ROUTE_FAULT_NONE)
	{
		cm_log(CMLOG_LOG, "instances no longer in conflict: routing to the primary again");
		return;
	}
	a = &ctx->conf->inst[v->fault_a];
	b = &ctx->conf->inst[v->fault_b];
	if (v->fault == ROUTE_FAULT_TWO_PRIMARIES)
		cm_log(CMLOG_LOG, "configuration fault: instances %d (%s:%d) and %d (%s:%d) are both primaries on timeline %u; "
			   "no primary is routed until one of them is demoted or stopped",
			   v->fault_a, cmconf_connect_host(a), a->backend_port,
			   v->fault_b, cmconf_connect_host(b), b->backend_port,
			   slots[v->fault_a].timeline);
	else
		cm_log(CMLOG_LOG, "configuration fault: instances %d (%s:%d) and %d (%s:%d) have different database system identifiers "
			   "(%llu, %llu); no primary is routed until conmgr.conf names instances of one database",
			   v->fault_a, cmconf_connect_host(a), a->backend_port,
			   v->fault_b, cmconf_connect_host(b), b->backend_port,
			   (unsigned long long) slots[v->fault_a].system_identifier,
			   (unsigned long long) slots[v->fault_b].system_identifier);
}

/*
 * Read every slot into slots[] and classify the instances; log what
 * changed since the last call, so that a fault or a stale primary is
 * logged once per change, whichever of a resolve or a wake-up sees it
 * first.
 */
static void
route_view_read(shm_slot *slots, route_view *v)
{
	bool		up[CMCONF_MAX_INSTANCES] = {false};
	int			n = (int) ctx->shm->nslots;

	for (int i = 0; i < n; i++)
	{
		if (!ctx->conf->inst[i].configured)
		{
			memset(&slots[i], 0, sizeof(slots[i]));
			continue;
		}
		slots[i] = slot_read(i);
		up[i] = slots[i].state == SHM_UP;
	}
	route_classify(slots, up, n, &timelines_seen, v);

	if (!view_logged_valid ? v->fault != ROUTE_FAULT_NONE :
		v->fault != view_logged.fault || v->fault_a != view_logged.fault_a ||
		v->fault_b != view_logged.fault_b)
		log_fault(v, slots);
	for (int i = 0; i < n; i++)
	{
		if (v->role[i] == ROUTE_STALE_PRIMARY &&
			(!view_logged_valid || view_logged.role[i] != ROUTE_STALE_PRIMARY))
		{
			if (slots[i].timeline >= v->max_timeline && v->promoting >= 0)
				cm_log(CMLOG_LOG, "instance %d is a stale primary: it is on timeline %u, and the promotion of "
					   "instance %d, a standby on timeline %u, has been asked for; "
					   "it gets no new sessions, and its attached sessions are told it is lost",
					   i, slots[i].timeline, v->promoting, slots[v->promoting].timeline);
			else
				cm_log(CMLOG_LOG, "instance %d is a stale primary: it is on timeline %u, and %s timeline %u; "
					   "it gets no new sessions, and its attached sessions are told it is lost",
					   i, slots[i].timeline,
					   v->up_timeline == v->max_timeline ? "an instance up is on" :
					   "no instance up now, but one seen since conmgr started, was on",
					   v->max_timeline);
		}
		else if (view_logged_valid && view_logged.role[i] == ROUTE_STALE_PRIMARY &&
				 v->role[i] != ROUTE_STALE_PRIMARY)
			cm_log(CMLOG_LOG, "instance %d is no longer a stale primary (%s)",
				   i, route_role_name(v->role[i]));
	}
	view_logged = *v;
	view_logged_valid = true;
}

/*
 * The candidates for a RESOLVE (route_choose()): equal instances rotated
 * one position per request of the target.
 */
static int
resolve(int target, const shm_slot *slots, const route_view *v, candidate *out)
{
	return route_choose(target, slots, v, (int) ctx->shm->nslots,
						(int64_t) ctx->conf->heartbeat_interval * 1500000,
						cmclock_us(), rotation[target]++, out);
}

static void app_refuse_fault(app *a, const route_view *v, const shm_slot *slots);

/*
 * The answer to a RESOLVE: every CANDIDATE and the CANDIDATES_END in one
 * buffer and one send(), so that the client wakes once, not once a frame.
 */
static void
app_resolve(app *a, const cmproto_msg *req)
{
	static uint8_t out[(CMCONF_MAX_INSTANCES + 1) * CMPROTO_MAX_MSG];
	candidate	cands[CMCONF_MAX_INSTANCES];
	shm_slot	slots[CMCONF_MAX_INSTANCES];
	route_view	v;
	size_t		len = 0;
	uint64_t	offered = 0;
	int			n;
	int			version;
	cmproto_msg m;

	version = req->u.resolve.version;
	if (version < CMPROTO_MIN_VERSION || version > CMPROTO_VERSION)
	{
		app_reject(a, CMPROTO_ERR_VERSION, "unsupported protocol version");
		return;
	}
	a->client_pid = req->u.resolve.client_pid;
	a->target = req->u.resolve.target;
	a->version = version;
	route_view_read(slots, &v);
	n = resolve(req->u.resolve.target, slots, &v, cands);
	if (v.fault != ROUTE_FAULT_NONE &&
		(n == 0 || route_fault_refuses(req->u.resolve.target)))
	{
		app_refuse_fault(a, &v, slots);
		return;
	}
	for (int i = 0; i < n; i++)
	{
		const struct cmconf_instance *in = &ctx->conf->inst[cands[i].instno];

		memset(&m, 0, sizeof(m));
		m.type = CMPROTO_CANDIDATE;
		m.u.candidate.instance = cands[i].instno;
		m.u.candidate.port = in->backend_port;
		/* PROMOTING is the heartbeat's: applications see the role */
		m.u.candidate.attrs = cands[i].attrs & CMPROTO_ATTR_ALL;
		m.u.candidate.addr_kind = in->hostaddr[0] ? CMPROTO_ADDR_NUMERIC : CMPROTO_ADDR_HOSTNAME;
		snprintf(m.u.candidate.host, sizeof(m.u.candidate.host), "%s", cmconf_connect_host(in));
		len += app_encode(&m, out + len, sizeof(out) - len);
		offered |= UINT64_C(1) << cands[i].instno;
	}
	memset(&m, 0, sizeof(m));
	m.type = CMPROTO_CANDIDATES_END;
	m.u.candidates_end.count = n;
	len += app_encode(&m, out + len, sizeof(out) - len);
	if (!app_write(a, out, len))
		return;
	a->offered = offered;
	cm_log(CMLOG_DEBUG1, "app %s pid %u: %s -> %d candidates", a->peer,
		   a->client_pid, cmproto_target_name(req->u.resolve.target), n);
	app_set_state(a, APP_RESOLVED);
}

/*
 * The refusal of a target that a configuration fault leaves without a
 * safe instance: ERROR naming both instances, which libpq-cm turns into
 * the connection's error (SQLSTATE 08001 in the drivers that give one).
 * Not logged here: route_view_read() logged the fault once.
 */
static void
app_refuse_fault(app *a, const route_view *v, const shm_slot *slots)
{
	const struct cmconf_instance *ia = &ctx->conf->inst[v->fault_a];
	const struct cmconf_instance *ib = &ctx->conf->inst[v->fault_b];
	char		why[CMPROTO_ERRMSG_MAX + 1];

	if (v->fault == ROUTE_FAULT_TWO_PRIMARIES)
		snprintf(why, sizeof(why),
				 "refusing target_session_attrs=%s: instances %d (%s:%d) and %d (%s:%d) are both primaries on timeline %u",
				 cmproto_target_name(a->target), v->fault_a, cmconf_connect_host(ia), ia->backend_port,
				 v->fault_b, cmconf_connect_host(ib), ib->backend_port, slots[v->fault_a].timeline);
	else
		snprintf(why, sizeof(why),
				 "refusing target_session_attrs=%s: instances %d (%s:%d) and %d (%s:%d) belong to different databases (system identifiers differ)",
				 cmproto_target_name(a->target), v->fault_a, cmconf_connect_host(ia), ia->backend_port,
				 v->fault_b, cmconf_connect_host(ib), ib->backend_port);
	app_send_error(a, a->version >= 2 ? CMPROTO_ERR_CONFLICT : CMPROTO_ERR_INTERNAL, why);
}

/* INSTANCE_DOWN to a; false (and a closed) if it could not be sent. */
static bool
app_notify_down(app *a, int reason)
{
	cmproto_msg m;

	/* A version 1 client knows no stale primary: to it the instance is lost. */
	if (reason == CMPROTO_DOWN_STALE && a->version < 2)
		reason = CMPROTO_DOWN_LOST;
	memset(&m, 0, sizeof(m));
	m.type = CMPROTO_INSTANCE_DOWN;
	m.u.instance_down.instance = a->instance;
	m.u.instance_down.reason = reason;
	return app_send(a, &m);
}

/* INSTANCE_DOWN to a, which is then closed. */
static void
app_send_down(app *a, int reason)
{
	if (app_notify_down(a, reason))
		app_close(a);
}

static void
app_attach(app *a, const cmproto_msg *m)
{
	int			inst = m->u.attached.instance;
	shm_slot	slots[CMCONF_MAX_INSTANCES];
	route_view	v;
	shm_slot	s;

	if ((a->offered & (UINT64_C(1) << inst)) == 0)
	{
		app_reject(a, CMPROTO_ERR_PROTOCOL, "protocol violation: attached to an instance that was not offered");
		return;
	}
	a->instance = inst;
	a->since = shm_now();
	app_set_state(a, APP_ATTACHED);
	route_view_read(slots, &v);
	s = slots[inst];
	a->downs_seen = s.downs;
	if (s.state != SHM_UP)
		app_send_down(a, s.down_reason ? (int) s.down_reason : CMPROTO_DOWN_LOST);
	else if (v.role[inst] == ROUTE_STALE_PRIMARY)
		app_send_down(a, CMPROTO_DOWN_STALE);
}

/*
 * A wake-up: notify sessions whose instance went down or became a stale
 * primary (its writes would be lost: the application must reconnect, and
 * is routed to the new primary then).  A primary in a configuration fault
 * keeps its sessions: conmgr does not know which of the two is right, and
 * refusing new sessions is what it can do without guessing.  Every notice is
 * sent before any of those sessions is closed: a close costs more than a
 * send (its FIN, and on loopback the peer's side of both), and the last
 * session of thousands would otherwise wait for all the closes before
 * its own notice went out.
 */
static void
check_instances(void)
{
	shm_slot	slots[CMCONF_MAX_INSTANCES];
	route_view	v;
	int			notified[CMCONF_MAX_INSTANCES] = {0};
	int64_t		start = cmclock_us();
	int		   *sent = NULL;	/* made at the first notice: most passes send none */
	bool		sent_made = false;
	int			nsent = 0;

	route_view_read(slots, &v);
	for (int k = 0; k < napps_alloc; k++)
	{
		app		   *a = &apps[k];
		shm_slot   *s;
		int			reason;

		if (a->state != APP_ATTACHED)
			continue;
		s = &slots[a->instance];
		if (s->state == SHM_UP && s->downs == a->downs_seen &&
			v.role[a->instance] != ROUTE_STALE_PRIMARY)
			continue;
		notified[a->instance]++;
		if (s->state == SHM_UP && s->downs == a->downs_seen)
			reason = CMPROTO_DOWN_STALE;
		else
			reason = s->down_reason ? (int) s->down_reason : CMPROTO_DOWN_LOST;
		if (!sent_made)
		{
			sent = malloc(sizeof(int) * napps_alloc);
			sent_made = true;
		}
		if (sent == NULL)
			app_send_down(a, reason);	/* out of memory: close at once */
		else if (app_notify_down(a, reason))
			sent[nsent++] = k;
	}
	for (int i = 0; i < nsent; i++)
		app_close(&apps[sent[i]]);
	free(sent);
	/* one line per instance and pass, written once the pass is over */
	for (uint32_t i = 0; i < ctx->shm->nslots; i++)
		if (notified[i] > 0)
			cm_log(CMLOG_LOG, "down-notice for instance %u sent to %d application session%s in %.1f ms",
				   i, notified[i], notified[i] == 1 ? "" : "s", (cmclock_us() - start) / 1000.0);
}

/* ---- input ---- */

/*
 * One of the PostgreSQL-framed packets that open a session.  True when the
 * session still waits for its startup packet (after an SSLRequest) and
 * the next one may already be buffered; false when the packet is
 * incomplete or the session moved on or ended.
 */
static bool
app_startup_packet(app *a)
{
	size_t		pktlen;
	cmproto_pg_kind kind;
	int			rc = cmproto_pg_classify(a->inbuf, a->inlen, &pktlen, &kind);
	uint8_t		buf[CMPROTO_PG_MAX_ERROR + CMPROTO_MAX_MSG];
	int			n;
	cmproto_msg m;

	if (rc == CMPROTO_INCOMPLETE)
		return false;
	if (rc < 0)
	{
		lsn_log_noise(a->host, "invalid startup packet", "app %s: invalid startup packet: %s",
					  a->peer, cmproto_strerror(rc));
		pg_reject(a, "08P01", "invalid startup packet", NULL);
		return false;
	}
	memmove(a->inbuf, a->inbuf + pktlen, a->inlen - pktlen);
	a->inlen -= pktlen;
	switch (kind)
	{
		case CMPROTO_PG_GSSENC_REQUEST:
			n = cmproto_pg_encode_error(buf, sizeof(buf), "08004",
										"this is conmgr, a PostgreSQL connection manager, not a PostgreSQL server",
										"Connect through libpq-cm, which asks conmgr for an instance and connects to it.");
			memset(&m, 0, sizeof(m));
			m.type = CMPROTO_HELLO;
			m.u.hello.min_version = CMPROTO_MIN_VERSION;
			m.u.hello.max_version = CMPROTO_VERSION;
			n += cmproto_encode(&m, buf + n, sizeof(buf) - n);
			if (app_write(a, buf, n))
				app_set_state(a, APP_HELLO);
			return false;
		case CMPROTO_PG_SSL_REQUEST:
			return app_write(a, "N", 1);	/* the startup packet follows */
		case CMPROTO_PG_CANCEL_REQUEST:
			app_close(a);
			return false;
		case CMPROTO_PG_STARTUP:
			lsn_log_noise(a->host, "plain client",
						  "app %s: a plain PostgreSQL client connected; told it this is conmgr", a->peer);
			pg_reject(a, "08004",
					  "this is conmgr, a PostgreSQL connection manager, not a PostgreSQL server",
					  "Connect through libpq-cm (LD_PRELOAD or -lpq-cm), or directly to an instance.");
			return false;
		case CMPROTO_PG_UNSUPPORTED:
			pg_reject(a, "08P01", "unsupported frontend protocol", NULL);
			return false;
	}
	return false;
}

static void
app_frames(app *a)
{
	while (a->state != APP_FREE && a->state != APP_STARTUP)
	{
		size_t		len;
		cmproto_msg m;
		int			rc = cmproto_frame(a->inbuf, a->inlen, &len);
		char		why[128];

		if (rc == CMPROTO_INCOMPLETE)
			return;
		if (rc == CMPROTO_OK)
			rc = cmproto_decode(a->inbuf, len, CMPROTO_PEER_APP, &m);
		if (rc < 0)
		{
			snprintf(why, sizeof(why), "protocol violation: %s", cmproto_strerror(rc));
			app_reject(a, CMPROTO_ERR_PROTOCOL, why);
			return;
		}
		memmove(a->inbuf, a->inbuf + len, a->inlen - len);
		a->inlen -= len;
		if (m.type == CMPROTO_RESOLVE && a->state == APP_HELLO)
			app_resolve(a, &m);
		else if (m.type == CMPROTO_ATTACHED && a->state == APP_RESOLVED)
			app_attach(a, &m);
		else if (m.type == CMPROTO_ERROR)
		{
			cm_log(CMLOG_DEBUG1, "app %s reported: %s", a->peer, m.u.error.message);
			app_close(a);
		}
		else
		{
			snprintf(why, sizeof(why), "protocol violation: unexpected %s",
					 cmproto_type_name(m.type));
			app_reject(a, CMPROTO_ERR_PROTOCOL, why);
		}
	}
}

/*
 * The control socket (docs/conmgr.md): one request line, "status", then
 * the answer and end of file.  Only the owner can connect (mode 0600).
 * The answer is written within one second or dropped, so a stuck cm_ctl
 * cannot hold up the applications.
 */
static void
ctl_answer(app *a)
{
	static const char *const states[] = {"unknown", "connecting", "up", "down"};
	size_t		cap = 4096 + 256 * (size_t) (napps_alloc + CMCONF_MAX_INSTANCES);
	shm_slot	slots[CMCONF_MAX_INSTANCES];
	route_view	v;
	char	   *buf = malloc(cap);
	size_t		len = 0;
	int			ninst = 0,
				napp = 0;
	int64_t		deadline_ms;

	if (buf == NULL)
	{
		app_close(a);
		return;
	}
	route_view_read(slots, &v);
	for (uint32_t i = 0; i < ctx->shm->nslots; i++)
	{
		const shm_slot *sl = &slots[i];

		if (!ctx->conf->inst[i].configured)
			continue;
		len += snprintf(buf + len, cap - len,
						"instance %u state=%s attrs=%u since=%lld last_received=%lld downs=%llu "
						"timeline=%u route=%s\n",
						i, sl->state >= 0 && sl->state <= SHM_DOWN ? states[sl->state] : "?",
						sl->attrs, (long long) sl->state_since,
						(long long) sl->last_received, (unsigned long long) sl->downs,
						sl->timeline, route_role_key(v.role[i]));
		ninst++;
	}
	for (int k = 0; k < napps_alloc; k++)
	{
		app		   *o = &apps[k];

		if (o->state == APP_FREE || o->state == APP_CONTROL)
			continue;
		len += snprintf(buf + len, cap - len,
						"app peer=%s pid=%u target=%s state=%s instance=%d since=%lld\n",
						o->peer, o->client_pid,
						o->target >= 0 ? cmproto_target_name(o->target) : "-",
						app_state_names[o->state], o->instance, (long long) o->since);
		napp++;
	}
	len += snprintf(buf + len, cap - len, "end instances=%d apps=%d\n", ninst, napp);

	deadline_ms = cmclock_ms() + 1000;
	for (size_t off = 0; off < len;)
	{
		ssize_t		n = send(a->fd, buf + off, len - off, MSG_DONTWAIT | MSG_NOSIGNAL);
		struct pollfd p = {a->fd, POLLOUT, 0};

		if (n > 0)
		{
			off += n;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			break;
		if (cmclock_ms() >= deadline_ms ||
			poll(&p, 1, (int) (deadline_ms - cmclock_ms())) <= 0)
			break;
	}
	free(buf);
	app_close(a);
}

static void
ctl_read(app *a)
{
	char	   *nl;

	a->inbuf[a->inlen < 64 ? a->inlen : 63] = '\0';
	nl = strchr((char *) a->inbuf, '\n');
	if (nl == NULL)
	{
		if (a->inlen >= 63)
			app_close(a);		/* no command is that long */
		return;
	}
	*nl = '\0';
	if (strcmp((char *) a->inbuf, "status") == 0)
	{
		ctl_answer(a);
		return;
	}
	(void) app_write(a, "error unknown command\n", 22);
	if (a->state != APP_FREE)
		app_close(a);
}

/*
 * Once the startup is over and what it brought is consumed, the session
 * reads frames of at most LSN_INBUF_SMALL bytes: give back the large
 * buffer (kept if the small one cannot be had; it serves as well).
 */
static void
app_shrink_inbuf(app *a)
{
	uint8_t    *small;

	if (a->incap <= LSN_INBUF_SMALL || a->inlen > LSN_INBUF_SMALL ||
		(small = malloc(LSN_INBUF_SMALL)) == NULL)
		return;
	memcpy(small, a->inbuf, a->inlen);
	free(a->inbuf);
	a->inbuf = small;
	a->incap = LSN_INBUF_SMALL;
}

static void
app_read(app *a)
{
	size_t		cap = a->state == APP_STARTUP ? a->incap : LSN_INBUF_SMALL;
	ssize_t		n = recv(a->fd, a->inbuf + a->inlen, cap - a->inlen, MSG_DONTWAIT);

	if (n == 0)
	{
		cm_log(CMLOG_DEBUG1, "app %s closed its session", a->peer);
		app_close(a);
		return;
	}
	if (n < 0)
	{
		/* libpq-cm ends its sessions with a reset (docs/protocol.md, 2.3) */
		if (errno == ECONNRESET)
			cm_log(CMLOG_DEBUG1, "app %s reset its session", a->peer);
		if (errno != EAGAIN && errno != EINTR)
			app_close(a);
		return;
	}
	a->inlen += n;
	if (a->state == APP_CONTROL)
	{
		ctl_read(a);
		return;
	}
	held_for = a;
	held_len = 0;
	/* libpq waits for the 'N' before its startup packet; others may not. */
	if (a->state == APP_STARTUP)
		while (app_startup_packet(a))
			;
	app_frames(a);
	if (a->state != APP_FREE)
		(void) app_flush(a);
	held_for = NULL;
	held_len = 0;
	if (a->state != APP_FREE && a->state != APP_STARTUP)
		app_shrink_inbuf(a);
}

/*
 * Out of descriptors: the spare one makes room to take a pending
 * connection, to be refused.  Returns it, or -1 with errno set (Linux says
 * EMFILE before it looks at the queue, so there may be none).
 */
static int
lsn_accept_spare(int lfd, struct sockaddr_storage *ss, socklen_t *sl)
{
	int			fd;
	int			saved;

	close(spare_fd);
	*sl = sizeof(*ss);
	fd = accept4(lfd, (struct sockaddr *) ss, sl, SOCK_CLOEXEC);
	saved = errno;
	spare_fd = fd < 0 ? open("/dev/null", O_RDONLY | O_CLOEXEC) : -1;
	errno = saved;
	return fd;
}

/* Whether a connection waits in the listen socket's queue. */
static bool
lsn_pending(int lfd)
{
	struct pollfd p = {lfd, POLLIN, 0};

	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/*
 * Take at most LSN_ACCEPT_BATCH connections a wake-up: the listen socket
 * stays ready while more wait, and the sessions already open get their turn
 * first (a flood of connections must not starve their reads and ends).
 */
static void
lsn_accept(int lfd, bool control)
{
	for (int taken = 0; taken < LSN_ACCEPT_BATCH; taken++)
	{
		struct sockaddr_storage ss;
		socklen_t	sl = sizeof(ss);
		char		host[NI_MAXHOST],
					serv[NI_MAXSERV];
		int			fd = accept4(lfd, (struct sockaddr *) &ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		int			no_fd_errno = 0;
		app		   *a = NULL;

		/*
		 * Out of descriptors: a stalled handshake gives up its own, if a
		 * connection is really waiting (EMFILE comes before EAGAIN).
		 */
		if (fd < 0 && errno == EMFILE && !control && lsn_pending(lfd) &&
			lsn_evict_handshake("out of descriptors"))
		{
			sl = sizeof(ss);
			fd = accept4(lfd, (struct sockaddr *) &ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		}
		if (fd < 0 && (errno == EMFILE || errno == ENFILE) && spare_fd >= 0)
		{
			no_fd_errno = errno;
			fd = lsn_accept_spare(lfd, &ss, &sl);
		}
		if (fd < 0)
		{
			if ((errno == EMFILE || errno == ENFILE) && spare_fd < 0)
			{
				cm_log(CMLOG_LOG, "could not accept a connection: %s; not accepting for 1 s",
					   strerror(errno));
				accept_paused_until = cmclock_us() + 1000000;
				lsn_watch_listen(false);
			}
			else if (errno != EAGAIN && errno != EINTR)
				cm_log(CMLOG_LOG, "could not accept a connection: %s", strerror(errno));
			return;
		}
		if (control)
			strcpy(host, "control"), strcpy(serv, "socket");
		else if (getnameinfo((struct sockaddr *) &ss, sl, host, sizeof(host), serv,
							 sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV) != 0)
			strcpy(host, "?"), strcpy(serv, "?");
		if (no_fd_errno != 0)
		{
			struct rlimit rl;

			if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
				rl.rlim_cur = 0;
			lsn_log_noise(host, "out of descriptors",
						  "connection from %s:%s closed: %s (open-files limit %llu)",
						  host, serv, strerror(no_fd_errno), (unsigned long long) rl.rlim_cur);
			close(fd);
			spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
			continue;
		}
		if (!control && ctx->conf->max_connections > 0 &&
			napps >= ctx->conf->max_connections &&
			!lsn_evict_handshake("max_connections reached"))
		{
			lsn_log_noise(host, "max_connections",
						  "connection from %s:%s closed: max_connections (%d) reached",
						  host, serv, ctx->conf->max_connections);
			close(fd);
			continue;
		}
		if (free_head >= 0)
			a = &apps[free_head];
		else
		{
			int			grow = napps_alloc ? napps_alloc * 2 : 64;
			app		   *na = realloc(apps, sizeof(app) * grow);

			if (na == NULL)
			{
				cm_log(CMLOG_WARNING, "out of memory: connection from %s:%s closed", host, serv);
				close(fd);
				continue;
			}
			memset(na + napps_alloc, 0, sizeof(app) * (grow - napps_alloc));
			for (int k = grow - 1; k >= napps_alloc; k--)
			{
				na[k].free_next = free_head;
				free_head = k;
			}
			apps = na;
			a = &apps[napps_alloc];
			napps_alloc = grow;
		}
		a->incap = control ? LSN_INBUF_SMALL : LSN_INBUF;
		if ((a->inbuf = malloc(a->incap)) == NULL)
		{
			cm_log(CMLOG_WARNING, "out of memory: connection from %s:%s closed", host, serv);
			close(fd);
			continue;
		}
		if (++a->gen == UINT32_MAX)
			a->gen = 1;			/* stay clear of the EV_* tags */
		if (!ep_set(EPOLL_CTL_ADD, fd, EPOLLIN, ((uint64_t) a->gen << 32) | (uint32_t) (a - apps)))
		{
			cm_log(CMLOG_WARNING, "connection from %s:%s closed: could not watch it: %s",
				   host, serv, strerror(errno));
			free(a->inbuf);
			a->inbuf = NULL;
			close(fd);
			continue;
		}
		a->fd = fd;
		a->inlen = 0;
		a->offered = 0;
		a->instance = -1;
		a->target = -1;
		a->client_pid = 0;
		a->since = shm_now();
		snprintf(a->host, sizeof(a->host), "%s", host);
		snprintf(a->peer, sizeof(a->peer), "%s:%s", host, serv);
		app_set_state(a, control ? APP_CONTROL : APP_STARTUP);
	}
}

static void
lsn_listen_on(const char *name)
{
	struct addrinfo hints,
			   *res;
	char		port[16];
	int			rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	snprintf(port, sizeof(port), "%d", ctx->conf->port);
	rc = getaddrinfo(strcmp(name, "*") == 0 ? NULL : name, port, &hints, &res);
	if (rc != 0)
	{
		cm_log(CMLOG_WARNING, "could not resolve listen address \"%s\": %s", name, gai_strerror(rc));
		return;
	}
	for (struct addrinfo *ai = res; ai && nlisten < LSN_MAX_LISTEN; ai = ai->ai_next)
	{
		int			fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		int			one = 1;

		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		/* Linux hands it on to every accepted socket: no call per session */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (ai->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 512) < 0)
		{
			cm_log(CMLOG_WARNING, "could not listen on \"%s\" port %d (%s): %s",
				   name, ctx->conf->port, ai->ai_family == AF_INET6 ? "IPv6" : "IPv4",
				   strerror(errno));
			close(fd);
			continue;
		}
		listen_fds[nlisten++] = fd;
	}
	freeaddrinfo(res);
}

static void
ctl_cleanup(void)
{
	if (ctl_fd >= 0)
		unlink(ctl_path);
}

/* CMDATA/conmgr.ctl, for cm_ctl status; owner-only. */
static void
ctl_open(void)
{
	struct sockaddr_un sun;
	mode_t		old;

	if ((size_t) snprintf(ctl_path, sizeof(ctl_path), "%s/conmgr.ctl", ctx->cmdata) >=
		sizeof(sun.sun_path))
	{
		cm_log(CMLOG_WARNING, "control socket path \"%s\" is too long; cm_ctl status will not work",
			   ctl_path);
		return;
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	strcpy(sun.sun_path, ctl_path);
	unlink(ctl_path);
	ctl_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	old = umask(0077);
	if (ctl_fd < 0 || bind(ctl_fd, (struct sockaddr *) &sun, sizeof(sun)) < 0 ||
		listen(ctl_fd, 16) < 0)
	{
		cm_log(CMLOG_WARNING, "could not create control socket \"%s\": %s", ctl_path, strerror(errno));
		if (ctl_fd >= 0)
			close(ctl_fd);
		ctl_fd = -1;
	}
	umask(old);
	atexit(ctl_cleanup);
}

/* Every entry of listen_addresses ("localhost" unless configured). */
static void
lsn_open(void)
{
	char		list[CMCONF_LISTEN_MAX + 1];
	char	   *save = NULL;

	snprintf(list, sizeof(list), "%s", ctx->conf->listen_addresses);
	for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
	{
		char	   *end;

		while (*tok == ' ' || *tok == '\t')
			tok++;
		end = tok + strlen(tok);
		while (end > tok && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		lsn_listen_on(tok);
	}
	if (nlisten == 0)
		cm_fatal(ROLE_EXIT_FATAL, "could not listen on any address of \"%s\" port %d",
				 ctx->conf->listen_addresses, ctx->conf->port);
}

/*
 * Close the sessions of queue q whose time limit is over (its head first:
 * the queue is in the order its limits run out).
 */
static void
lsn_expire(lsn_queue_id q, int64_t now)
{
	int64_t		limit = queue_limit_us(q);

	while (queues[q].head >= 0 && now - apps[queues[q].head].timer_from >= limit)
	{
		app		   *a = &apps[queues[q].head];
		char		kind[32];

		snprintf(kind, sizeof(kind), "timeout %s", app_state_names[a->state]);
		if (q == LSN_Q_RESOLVED)
			lsn_log_noise(a->host, kind,
						  "app %s pid %u closed: no ATTACHED within attach_timeout (%d s) of its candidates",
						  a->peer, a->client_pid, ctx->conf->attach_timeout);
		else
			lsn_log_noise(a->host, kind,
						  "app %s closed: no request within %d s of connecting (state %s)",
						  a->peer, LSN_HANDSHAKE_SECS, app_state_names[a->state]);
		app_close(a);
	}
}

/*
 * Make room for a new connection: close the session that has been in its
 * handshake longest, if that is LSN_EVICT_AGE_US or more.  False when
 * there is no such session.
 */
static bool
lsn_evict_handshake(const char *why)
{
	int64_t		age;
	app		   *a;

	if (queues[LSN_Q_HANDSHAKE].head < 0)
		return false;
	a = &apps[queues[LSN_Q_HANDSHAKE].head];
	age = cmclock_us() - a->timer_from;
	if (age < LSN_EVICT_AGE_US)
		return false;
	lsn_log_noise(a->host, "evicted",
				  "app %s closed in its handshake (state %s, %.1f s after connecting) to make room for a new connection: %s",
				  a->peer, app_state_names[a->state], age / 1e6, why);
	app_close(a);
	return true;
}

static int64_t
earlier(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

/*
 * The listener's timers: sessions whose time limit is over are closed,
 * the accept pause ends, the log budget's window turns.  Returns the
 * wait's timeout in ms (-1: none).
 */
static int
lsn_timers(void)
{
	int64_t		now = cmclock_us();
	int64_t		next = INT64_MAX;

	if (accept_paused_until != 0 && now >= accept_paused_until)
	{
		accept_paused_until = 0;
		if (spare_fd < 0)
			spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		lsn_watch_listen(true);
	}
	if (accept_paused_until != 0)
		next = accept_paused_until;
	/* lines the log budget dropped are counted when its window is over */
	log_window(now);
	if (log_window_dropped > 0)
		next = earlier(next, log_window_start + LSN_LOG_WINDOW_US);
	for (int q = 0; q < LSN_NQUEUES; q++)
	{
		lsn_expire(q, now);
		if (queues[q].head >= 0)
			next = earlier(next, apps[queues[q].head].timer_from + queue_limit_us(q));
	}
	if (next == INT64_MAX)
		return -1;
	/* rounded up, so that the wake-up finds the deadline passed */
	return next - now >= 60000000 ? 60000 : (int) ((next - now + 999) / 1000);
}

void
listener_main(cm_ctx *c)
{
	sigset_t	waitmask;

	ctx = c;
	cm_log_init(ctx->conf, "listener");
	{
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = handle_sigterm;	/* no SA_RESTART: the wait must wake */
		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGUSR1, &sa, NULL);
	}
	signal(SIGINT, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	/*
	 * The supervisor forks us with every signal blocked; from here on only
	 * the stop signals are, taken inside epoll_pwait(), so none is missed.
	 */
	{
		sigset_t	stops;

		sigemptyset(&stops);
		sigaddset(&stops, SIGTERM);
		sigaddset(&stops, SIGUSR1);
		sigprocmask(SIG_SETMASK, &stops, NULL);
		sigemptyset(&waitmask);
	}
	lsn_open();
	ctl_open();
	spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if ((ep_fd = epoll_create1(EPOLL_CLOEXEC)) < 0)
		cm_fatal(ROLE_EXIT_RESTART, "could not create an epoll set: %s", strerror(errno));
	if (!ep_set(EPOLL_CTL_ADD, ctx->death_fd, EPOLLIN, EV_DEATH) ||
		!ep_set(EPOLL_CTL_ADD, ctx->wake_fd, EPOLLIN, EV_WAKE) ||
		(ctl_fd >= 0 && !ep_set(EPOLL_CTL_ADD, ctl_fd, EPOLLIN, EV_CONTROL)))
		cm_fatal(ROLE_EXIT_RESTART, "could not watch the role's descriptors: %s", strerror(errno));
	for (int i = 0; i < nlisten; i++)
		if (!ep_set(EPOLL_CTL_ADD, listen_fds[i], EPOLLIN, EV_LISTEN + i))
			cm_fatal(ROLE_EXIT_RESTART, "could not watch a listen socket: %s", strerror(errno));
	cm_log(CMLOG_LOG, "listening for applications on \"%s\" port %d",
		   ctx->conf->listen_addresses, ctx->conf->port);

	while (!got_sigterm)
	{
		struct epoll_event ev[64];
		int			n;

		if (got_smart && nlisten > 0)
		{
			for (int i = 0; i < nlisten; i++)
				close(listen_fds[i]);	/* which also leaves the epoll set */
			nlisten = 0;
			cm_log(CMLOG_LOG, "smart shutdown: no new sessions; %d still open", napps);
		}
		if (got_smart && napps == 0)
			exit(ROLE_EXIT_DONE);

		n = epoll_pwait(ep_fd, ev, 64, lsn_timers(), &waitmask);
		if (n < 0)
		{
			if (errno == EINTR)
				continue;
			cm_fatal(ROLE_EXIT_RESTART, "epoll_pwait failed: %s", strerror(errno));
		}
		for (int i = 0; i < n; i++)
		{
			uint64_t	d = ev[i].data.u64;

			if (d == EV_DEATH)
				exit(ROLE_EXIT_DONE);
			else if (d == EV_WAKE)
			{
				uint64_t	v;

				(void) !read(ctx->wake_fd, &v, sizeof(v));
				check_instances();
			}
			else if (d == EV_CONTROL)
				lsn_accept(ctl_fd, true);
			else if (d >= EV_LISTEN && d < EV_LISTEN + LSN_MAX_LISTEN)
			{
				if ((int) (d - EV_LISTEN) < nlisten && accepting)
					lsn_accept(listen_fds[d - EV_LISTEN], false);
			}
			else
			{
				uint32_t	k = (uint32_t) d;
				app		   *a = (int) k < napps_alloc ? &apps[k] : NULL;

				/* closed meanwhile (a down-notice), or its slot reused */
				if (a && a->state != APP_FREE && a->gen == (uint32_t) (d >> 32))
					app_read(a);
			}
		}
	}

	/* Fast stop: tell attached applications, then go. */
	for (int k = 0; k < napps_alloc; k++)
	{
		if (apps[k].state == APP_ATTACHED)
			app_send_down(&apps[k], CMPROTO_DOWN_SHUTDOWN);
		else if (apps[k].state != APP_FREE)
			app_close(&apps[k]);
	}
	exit(ROLE_EXIT_DONE);
}
