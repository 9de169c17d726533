/*-------------------------------------------------------------------------
 *
 * sessions.c
 *	  The listener's session table: states, time limits, output, close.
 *
 * Session states (app_set_state() is the one setter):
 *	 APP_STARTUP	waiting for the first PostgreSQL-framed packet
 *	 APP_HELLO		HELLO sent, waiting for RESOLVE
 *	 APP_RESOLVED	candidates sent, waiting for ATTACHED
 *	 APP_ATTACHED	the application reached instance N; down-notice pending
 *	 APP_CONTROL	cm_ctl on the control socket, waiting for its command
 *	 APP_ANSWERING	cm_ctl's answer being written as its socket takes it
 * A session that breaks the protocol gets ERROR and is closed; a plain
 * PostgreSQL client gets an ErrorResponse saying what it reached.
 *
 * Every state but ATTACHED has a time limit, so that a peer that trickles
 * or stalls cannot hold a session, and a descriptor, for good: STARTUP,
 * HELLO and CONTROL must be over within LSN_HANDSHAKE_SECS of connecting
 * (the client library sends its RESOLVE at once, cm_ctl its command),
 * RESOLVED within attach_timeout of the candidates (the client connects
 * to them meanwhile, which takes up to its connect_timeout per candidate
 * and the server's authentication), and ANSWERING within LSN_ANSWER_US of
 * the answer, which is dropped after that.  An attached session has none:
 * it lasts as long as the application's SQL connection.  The 10 kB buffer
 * a startup packet may need is given back once the startup is over; later
 * frames are at most CMPROTO_MAX_MSG bytes.  Every deadline and log window
 * is on the monotonic clock (cmclock.h), so a step of the system's wall
 * clock neither expires nor freezes anything.
 *
 * Hostile peers: the sessions in their handshake (STARTUP, HELLO,
 * CONTROL) are kept in a queue in the order they connected.  When a new
 * connection cannot be taken, for want of descriptors or over
 * max_connections, the oldest of them is closed to make room if it has
 * been in its handshake for LSN_EVICT_AGE_US: a client library's
 * handshake takes one round trip, so a flood of idle or trickling
 * connections cannot keep applications out, while a burst of real ones
 * is refused at the limit rather than evicting one another.
 * Resolved, attached or answered sessions are never evicted.  What such
 * connections make the listener log goes through lsn_log_noise(): once a
 * minute per source address and kind of message, and at most
 * LSN_LOG_BUDGET lines a minute in all (common/cmloglimit.h).
 *
 *-------------------------------------------------------------------------
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cmclock.h"
#include "listener.h"

const char *const app_state_names[] = {
	"free", "startup", "hello", "resolved", "attached", "control", "answering"
};

app		   *lsn_apps;
int			lsn_napps_alloc;
int			lsn_napps;
lsn_queue	lsn_queues[LSN_NQUEUES] = {{-1, -1}, {-1, -1}, {-1, -1}};
cmloglimit	lsn_noise = {.what = "connections that never resolved",.burst = 1,.budget = LSN_LOG_BUDGET};

/* The free slots of lsn_apps[], so that accepting does not scan them. */
static int	free_head = -1;

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
		case APP_ANSWERING:
			return LSN_Q_ANSWER;
		case APP_FREE:
		case APP_ATTACHED:
			return LSN_Q_NONE;
	}
	cm_fatal(ROLE_EXIT_RESTART, "bad application session state %d", (int) state);
}

/* How long a session may stay in the states of queue q, in microseconds. */
static int64_t
lsn_queue_limit_us(lsn_queue_id q)
{
	if (q == LSN_Q_ANSWER)
		return LSN_ANSWER_US;
	return (q == LSN_Q_RESOLVED ? (int64_t) lsn_ctx->conf->attach_timeout : LSN_HANDSHAKE_SECS) *
		1000000;
}

static void
queue_remove(lsn_queue_id q, app *a)
{
	if (a->q_prev >= 0)
		lsn_apps[a->q_prev].q_next = a->q_next;
	else
		lsn_queues[q].head = a->q_next;
	if (a->q_next >= 0)
		lsn_apps[a->q_next].q_prev = a->q_prev;
	else
		lsn_queues[q].tail = a->q_prev;
	a->q_prev = a->q_next = -1;
}

/* At the tail: its limit runs from now, later than everyone's before it. */
static void
queue_append(lsn_queue_id q, app *a)
{
	int			k = (int) (a - lsn_apps);

	a->timer_from = cmclock_us();
	a->q_prev = lsn_queues[q].tail;
	a->q_next = -1;
	if (lsn_queues[q].tail >= 0)
		lsn_apps[lsn_queues[q].tail].q_next = k;
	else
		lsn_queues[q].head = k;
	lsn_queues[q].tail = k;
}

/* Also keeps lsn_napps, the free list and the timer queues. */
void
app_set_state(app *a, app_state state)
{
	int			k = (int) (a - lsn_apps);
	lsn_queue_id from = app_queue(a->state);
	lsn_queue_id to = app_queue(state);

	if (a->state == APP_FREE && state != APP_FREE)
	{
		/* lsn_accept() takes the head; anything else would break the list */
		if (k != free_head)
			cm_fatal(ROLE_EXIT_RESTART, "session slot %d taken, but the free list starts at %d",
					 k, free_head);
		free_head = a->free_next;
		lsn_napps++;
	}
	else if (a->state != APP_FREE && state == APP_FREE)
	{
		a->free_next = free_head;
		free_head = k;
		lsn_napps--;
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

/*
 * A free slot for a new session (still APP_FREE: app_set_state() takes it
 * off the free list), growing the table when none is left; NULL when out
 * of memory.
 */
app *
lsn_session_new(void)
{
	int			grow;
	app		   *na;

	if (free_head >= 0)
		return &lsn_apps[free_head];
	grow = lsn_napps_alloc ? lsn_napps_alloc * 2 : 64;
	na = realloc(lsn_apps, sizeof(app) * grow);
	if (na == NULL)
		return NULL;
	memset(na + lsn_napps_alloc, 0, sizeof(app) * (grow - lsn_napps_alloc));
	for (int k = grow - 1; k >= lsn_napps_alloc; k--)
	{
		na[k].free_next = free_head;
		free_head = k;
	}
	lsn_apps = na;
	lsn_napps_alloc = grow;
	return &lsn_apps[free_head];
}

/* ---- rate-limited logging ---- */

/* Say how many lines the budget dropped, once its window is over. */
static void
log_dropped(uint64_t dropped)
{
	if (dropped > 0)
		cm_log(CMLOG_LOG, "%llu messages about %s were not logged "
			   "in the last minute (at most %d a minute, one per source address and kind)",
			   (unsigned long long) dropped, lsn_noise.what, LSN_LOG_BUDGET);
}

void
lsn_log_window(int64_t now)
{
	log_dropped(cmloglimit_window(&lsn_noise, now));
}

/*
 * LOG a line about a connection that did not get as far as RESOLVE (or
 * broke the protocol): once a minute per source address and kind (a
 * short fixed text), and LSN_LOG_BUDGET lines a minute in all, so that a
 * flood cannot fill the log.  The next line of the same source and kind
 * says how many were not logged.
 */
void
lsn_log_noise(const char *host, const char *kind, const char *fmt,...)
{
	char		line[512];
	uint64_t	suppressed;
	uint64_t	dropped;
	bool		allowed;
	va_list		ap;

	allowed = cmloglimit_allowed(&lsn_noise, host, strlen(host), cmloglimit_kind(kind),
								 cmclock_us(), &suppressed, &dropped);
	log_dropped(dropped);
	if (!allowed)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (suppressed > 0)
		cm_log(CMLOG_LOG, "%s (%llu more like it from %s in the last minute were not logged)",
			   line, (unsigned long long) suppressed, host);
	else
		cm_log(CMLOG_LOG, "%s", line);
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

/* Hold a's output from here to lsn_release(). */
void
lsn_hold(app *a)
{
	held_for = a;
	held_len = 0;
}

/* Send what was held for a, if it is still open, and hold no more. */
void
lsn_release(app *a)
{
	if (a->state != APP_FREE)
		(void) app_flush(a);
	held_for = NULL;
	held_len = 0;
}

static bool
app_send_now(app *a, const void *buf, size_t len)
{
	/* Frames are small; a client that does not read is not our problem. */
	return send(a->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT) == (ssize_t) len;
}

void
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
	free(a->out);
	a->out = NULL;
	a->outlen = a->outoff = 0;
	app_set_state(a, APP_FREE);
}

/* Send what app_read() held for a; false (and a closed) if it failed. */
bool
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

bool
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
size_t
app_encode(const cmproto_msg *m, uint8_t *buf, size_t cap)
{
	int			n = cmproto_encode(m, buf, cap);

	if (n < 0)
		cm_fatal(ROLE_EXIT_RESTART, "could not encode %s: %s",
				 cmproto_type_name(m->type), cmproto_strerror(n));
	return (size_t) n;
}

bool
app_send(app *a, const cmproto_msg *m)
{
	uint8_t		buf[CMPROTO_MAX_MSG];

	return app_write(a, buf, app_encode(m, buf, sizeof(buf)));
}

/* ERROR to the client, then close; logged by the caller, if at all. */
void
app_send_error(app *a, int code, const char *why)
{
	cmproto_msg m;

	cmproto_error_msg(&m, code, why);
	if (app_send(a, &m))
		app_close(a);
}

/* ERROR to the client, then close; logged through the noise limit. */
void
app_reject(app *a, int code, const char *why)
{
	lsn_log_noise(a->host, why, "app %s: %s", a->peer, why);
	app_send_error(a, code, why);
}

void
pg_reject(app *a, const char *sqlstate, const char *message, const char *hint)
{
	uint8_t		buf[CMPROTO_PG_MAX_ERROR];
	int			n = cmproto_pg_encode_error(buf, sizeof(buf), sqlstate, message, hint);

	if (n > 0)
		(void) app_write(a, buf, n);
	if (a->state != APP_FREE)
		app_close(a);
}

/*
 * Once the startup is over and what it brought is consumed, the session
 * reads frames of at most LSN_INBUF_SMALL bytes: give back the large
 * buffer (kept if the small one cannot be had; it serves as well).
 */
void
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

/*
 * Close the sessions of queue q whose time limit is over (its head first:
 * the queue is in the order its limits run out).
 */
static void
lsn_expire(lsn_queue_id q, int64_t now)
{
	int64_t		limit = lsn_queue_limit_us(q);

	while (lsn_queues[q].head >= 0 && now - lsn_apps[lsn_queues[q].head].timer_from >= limit)
	{
		app		   *a = &lsn_apps[lsn_queues[q].head];
		char		kind[32];

		snprintf(kind, sizeof(kind), "timeout %s", app_state_names[a->state]);
		if (q == LSN_Q_ANSWER)
			cm_log(CMLOG_DEBUG1, "control client did not take its answer within %lld ms "
				   "(%zu of %zu bytes written); closed",
				   (long long) (LSN_ANSWER_US / 1000), a->outoff, a->outlen);
		else if (q == LSN_Q_RESOLVED)
			lsn_log_noise(a->host, kind,
						  "app %s pid %u closed: no ATTACHED within attach_timeout (%d s) of its candidates",
						  a->peer, a->client_pid, lsn_ctx->conf->attach_timeout);
		else
			lsn_log_noise(a->host, kind,
						  "app %s closed: no request within %d s of connecting (state %s)",
						  a->peer, LSN_HANDSHAKE_SECS, app_state_names[a->state]);
		app_close(a);
	}
}

/*
 * Close every session whose time limit is over; returns when the next
 * limit runs out (cmclock_us()), INT64_MAX if none does.
 */
int64_t
lsn_sessions_timer(int64_t now)
{
	int64_t		next = INT64_MAX;

	for (int q = 0; q < LSN_NQUEUES; q++)
	{
		int64_t		due;

		lsn_expire(q, now);
		if (lsn_queues[q].head < 0)
			continue;
		due = lsn_apps[lsn_queues[q].head].timer_from + lsn_queue_limit_us(q);
		if (due < next)
			next = due;
	}
	return next;
}

/*
 * Make room for a new connection: close the session that has been in its
 * handshake longest, if that is LSN_EVICT_AGE_US or more.  False when
 * there is no such session.
 */
bool
lsn_evict_handshake(const char *why)
{
	int64_t		age;
	app		   *a;

	if (lsn_queues[LSN_Q_HANDSHAKE].head < 0)
		return false;
	a = &lsn_apps[lsn_queues[LSN_Q_HANDSHAKE].head];
	age = cmclock_us() - a->timer_from;
	if (age < LSN_EVICT_AGE_US)
		return false;
	lsn_log_noise(a->host, "evicted",
				  "app %s closed in its handshake (state %s, %.1f s after connecting) to make room for a new connection: %s",
				  a->peer, app_state_names[a->state], age / 1e6, why);
	app_close(a);
	return true;
}
