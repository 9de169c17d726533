/*-------------------------------------------------------------------------
 *
 * heartbeat.c
 *	  The heartbeat role: one process per configured instance.
 *
 * Forked by the supervisor with the instance number; shows in ps as
 * "conmgr: heartbeat N host:port".  It keeps the heartbeat session with
 * that instance's watchdog (docs/protocol.md, section 3) and is the only
 * writer of the instance's slot in the shared table: state, attributes,
 * timeline, times.  Every change that matters for routing (up, down,
 * attributes, timeline) also writes the listener's eventfd, so routing
 * never waits for a poll.
 *
 * States (hb_set_state() is the one setter):
 *	 HB_CONNECTING	non-blocking connect in progress
 *	 HB_HANDSHAKE	HB_HELLO sent, waiting for HB_WELCOME (or a challenge)
 *	 HB_UP			heartbeats flow; the instance is routable
 *	 HB_WAIT		lost or failed; next attempt after
 *					heartbeat_connect_interval
 * Connect plus handshake must finish within heartbeat_connect_timeout.
 * While up, a heartbeat goes out every heartbeat_interval and the
 * instance is declared down after heartbeat_timeout without any frame, on
 * end of file or reset, or on any protocol error.
 *
 * It exits 0 on SIGTERM or when the supervisor dies (end of file on the
 * death pipe), and never exits on anything a watchdog sends.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cmclock.h"
#include "cmproto.h"
#include "cmsha256.h"
#include "conmgr.h"

typedef enum hb_state
{
	HB_CONNECTING,
	HB_HANDSHAKE,
	HB_UP,
	HB_WAIT
} hb_state;

static const char *const hb_state_names[] = {
	"connecting", "handshake", "up", "waiting to reconnect"
};

typedef struct hb
{
	cm_ctx	   *ctx;
	int			instno;
	const struct cmconf_instance *inst;
	shm_slot   *slot;
	hb_state	state;
	int			fd;
	int64_t		deadline;		/* monotonic ms: end of attempt or timeout */
	int64_t		next_send;		/* monotonic ms */
	int64_t		retry_at;		/* monotonic ms */
	uint32_t	seq;
	uint32_t	attrs;
	uint32_t	timeline;		/* 0 when the watchdog does not say */
	int			version;		/* the session's protocol version, once known */
	bool		was_up;
	bool		watchdog_proved;	/* this attempt's HB_CHALLENGE proved the
									 * key */
	uint8_t		nonce_c[CMPROTO_NONCE_LEN];
	size_t		inlen;
	uint8_t		inbuf[CMPROTO_MAX_MSG];
	char		where[300];		/* host:port for messages */
} hb;

static volatile sig_atomic_t got_sigterm;

static void
handle_sigterm(int sig)
{
	(void) sig;
	got_sigterm = 1;
}

static void
wake_listener(hb *h)
{
	cm_wake_routers(h->ctx);
}

/* Publish state and attributes; wake the listener when routing changes. */
static void
hb_publish(hb *h, int state, uint32_t reason)
{
	shm_slot   *s = h->slot;
	bool		routing = (s->state == SHM_UP) != (state == SHM_UP) ||
		(state == SHM_UP && (s->attrs != h->attrs || s->timeline != h->timeline));

	shm_write_begin(s);
	if (s->state != state)
		s->state_since = shm_now();
	if (s->state == SHM_UP && state != SHM_UP)
	{
		s->downs++;
		s->down_reason = reason;
	}
	s->state = state;
	s->attrs = h->attrs;
	s->timeline = h->timeline;
	s->writer_pid = getpid();
	shm_write_end(s);
	if (routing)
		wake_listener(h);
}

/* "timeline N", or what a version 1 watchdog leaves unsaid; for the log. */
static const char *
hb_timeline_str(uint32_t timeline)
{
	static char buf[32];

	if (timeline == 0)
		return "timeline not reported";
	snprintf(buf, sizeof(buf), "timeline %u", timeline);
	return buf;
}

static void
hb_set_state(hb *h, hb_state state)
{
	if (h->state != state)
		cm_log(CMLOG_DEBUG1, "instance %d at %s: %s -> %s", h->instno,
			   h->where, hb_state_names[h->state], hb_state_names[state]);
	h->state = state;
}

/* The session ended or an attempt failed: close, publish, wait. */
static void hb_fail(hb *h, uint32_t reason, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));

static void
hb_fail(hb *h, uint32_t reason, const char *fmt,...)
{
	char		why[512];
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);

	if (h->state == HB_UP)
		cm_log(CMLOG_LOG, "instance %d at %s is down: %s", h->instno, h->where, why);
	else
		cm_log(h->was_up ? CMLOG_DEBUG1 : CMLOG_LOG,
			   "could not establish heartbeat with instance %d at %s: %s",
			   h->instno, h->where, why);
	if (h->fd >= 0)
		close(h->fd);
	h->fd = -1;
	h->was_up = h->state == HB_UP;
	h->attrs = 0;
	h->timeline = 0;
	h->version = 0;
	hb_publish(h, SHM_DOWN, reason);
	h->retry_at = cmclock_ms() + (int64_t) h->ctx->conf->heartbeat_connect_interval * 1000;
	hb_set_state(h, HB_WAIT);
}

static bool
hb_send(hb *h, const cmproto_msg *m)
{
	uint8_t		buf[CMPROTO_MAX_MSG];
	int			n = cmproto_encode_version(m, h->version ? h->version : CMPROTO_VERSION,
										   buf, sizeof(buf));

	if (n < 0)
		cm_fatal(ROLE_EXIT_RESTART, "could not encode %s: %s",
				 cmproto_type_name(m->type), cmproto_strerror(n));
	/* A frame is tiny and the socket buffer empty but for unread beats. */
	if (send(h->fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT) != n)
	{
		hb_fail(h, CMPROTO_DOWN_LOST, "could not send: %s",
				errno ? strerror(errno) : "socket buffer full");
		return false;
	}
	shm_set_last_sent(h->slot);
	return true;
}

static void
hb_send_error(hb *h, int code, const char *message)
{
	cmproto_msg m;

	cmproto_error_msg(&m, code, message);
	(void) hb_send(h, &m);
}

static void
hb_connect(hb *h)
{
	const struct cmconf_instance *in = h->inst;
	struct addrinfo hints,
			   *res;
	char		port[16];
	int			rc,
				one = 1;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = in->hostaddr[0] ? AI_NUMERICHOST : 0;
	snprintf(port, sizeof(port), "%d", in->watchdog_port);
	h->deadline = cmclock_ms() + (int64_t) h->ctx->conf->heartbeat_connect_timeout * 1000;
	h->inlen = 0;
	hb_set_state(h, HB_CONNECTING);
	hb_publish(h, h->was_up ? SHM_DOWN : SHM_CONNECTING, 0);

	rc = getaddrinfo(cmconf_connect_host(in), port, &hints, &res);
	if (rc != 0)
	{
		hb_fail(h, CMPROTO_DOWN_LOST, "could not resolve \"%s\": %s",
				cmconf_connect_host(in), gai_strerror(rc));
		return;
	}
	h->fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (h->fd < 0)
	{
		freeaddrinfo(res);
		hb_fail(h, CMPROTO_DOWN_LOST, "could not create socket: %s", strerror(errno));
		return;
	}
	(void) setsockopt(h->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	rc = connect(h->fd, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	if (rc < 0 && errno != EINPROGRESS)
		hb_fail(h, CMPROTO_DOWN_LOST, "could not connect: %s", strerror(errno));
}

static void
hb_send_hello(hb *h)
{
	cmproto_msg m;
	int			r;

	memset(&m, 0, sizeof(m));
	m.type = CMPROTO_HB_HELLO;
	m.u.hb_hello.min_version = CMPROTO_MIN_VERSION;
	m.u.hb_hello.max_version = CMPROTO_VERSION;
	m.u.hb_hello.interval = h->ctx->conf->heartbeat_interval;
	m.u.hb_hello.timeout = h->ctx->conf->heartbeat_timeout;
	m.u.hb_hello.flags = h->ctx->keylen > 0 ? CMPROTO_HB_HAS_KEY : 0;
	r = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (r < 0 || read(r, h->nonce_c, CMPROTO_NONCE_LEN) != CMPROTO_NONCE_LEN)
		cm_fatal(ROLE_EXIT_RESTART, "could not read /dev/urandom: %m");
	close(r);
	memcpy(m.u.hb_hello.nonce, h->nonce_c, CMPROTO_NONCE_LEN);
	h->watchdog_proved = false;
	if (hb_send(h, &m))
		hb_set_state(h, HB_HANDSHAKE);
}

/*
 * HB_CHALLENGE: check the watchdog's proof of the shared key, then prove
 * conmgr's own with HB_AUTH.
 */
static void
hb_handle_challenge(hb *h, const cmproto_msg *m)
{
	uint8_t		expected[CMPROTO_PROOF_LEN];
	cmproto_msg reply;

	if (h->watchdog_proved)
	{
		/* One proof per session: conmgr signs no second nonce. */
		hb_send_error(h, CMPROTO_ERR_PROTOCOL, "unexpected second HB_CHALLENGE");
		if (h->fd >= 0)
			hb_fail(h, CMPROTO_DOWN_PROTOCOL,
					"protocol violation: a second HB_CHALLENGE");
		return;
	}
	if (h->ctx->keylen == 0)
	{
		hb_send_error(h, CMPROTO_ERR_AUTH, "conmgr has no key");
		if (h->fd >= 0)
			hb_fail(h, CMPROTO_DOWN_PROTOCOL,
					"the watchdog requires a shared key, and conmgr has no heartbeat_key_file");
		return;
	}
	cmproto_hb_proof(h->ctx->key, h->ctx->keylen, CMPROTO_AUTH_LABEL_WATCHDOG,
					 h->nonce_c, m->u.hb_challenge.nonce, expected);
	if (!cmsha256_equal(expected, m->u.hb_challenge.proof, CMPROTO_PROOF_LEN))
	{
		hb_send_error(h, CMPROTO_ERR_AUTH, "authentication failed");
		if (h->fd >= 0)
			hb_fail(h, CMPROTO_DOWN_PROTOCOL,
					"authentication failed: the watchdog does not hold conmgr's key");
		return;
	}
	h->watchdog_proved = true;
	h->version = m->u.hb_challenge.version;
	memset(&reply, 0, sizeof(reply));
	reply.type = CMPROTO_HB_AUTH;
	cmproto_hb_proof(h->ctx->key, h->ctx->keylen, CMPROTO_AUTH_LABEL_CONMGR,
					 h->nonce_c, m->u.hb_challenge.nonce, reply.u.hb_auth.proof);
	(void) hb_send(h, &reply);
}

/* HB_WELCOME: the session is registered and the instance is up. */
static void
hb_handle_welcome(hb *h, const cmproto_msg *m)
{
	/*
	 * With a key, only the proof conmgr checked itself counts: the WELCOME's
	 * flag is the peer's word, and any peer can set it.
	 */
	if (h->ctx->keylen > 0 && !h->watchdog_proved)
	{
		hb_send_error(h, CMPROTO_ERR_AUTH, "authentication required");
		if (h->fd >= 0)
			hb_fail(h, CMPROTO_DOWN_PROTOCOL,
					(m->u.hb_welcome.flags & CMPROTO_HB_AUTHENTICATED) != 0 ?
					"authentication failed: the watchdog claimed authentication without proving the key" :
					"authentication failed: the watchdog has no key, and conmgr requires one");
		return;
	}
	h->attrs = m->u.hb_welcome.attrs;
	h->timeline = m->u.hb_welcome.timeline;
	h->version = m->u.hb_welcome.version;
	shm_write_begin(h->slot);
	h->slot->system_identifier = m->u.hb_welcome.system_identifier;
	h->slot->server_version_num = m->u.hb_welcome.server_version_num;
	shm_write_end(h->slot);
	hb_set_state(h, HB_UP);
	h->next_send = cmclock_ms() + (int64_t) h->ctx->conf->heartbeat_interval * 1000;
	/* From now on the deadline is the peer's silence, not the attempt. */
	h->deadline = cmclock_ms() + (int64_t) h->ctx->conf->heartbeat_timeout * 1000;
	shm_set_last_received(h->slot);
	hb_publish(h, SHM_UP, 0);
	cm_log(CMLOG_LOG, "instance %d at %s is up (%s, %s, %s)", h->instno, h->where,
		   (h->attrs & CMPROTO_ATTR_IN_RECOVERY) ? "standby" : "primary",
		   (h->attrs & CMPROTO_ATTR_READ_ONLY) ? "read-only" : "read-write",
		   hb_timeline_str(h->timeline));
}

/*
 * HB_BEAT or HB_ATTRS while up: publish the attributes and the timeline
 * when they changed.
 */
static void
hb_handle_attrs(hb *h, const cmproto_msg *m)
{
	uint32_t	attrs = m->type == CMPROTO_HB_BEAT ?
		m->u.hb_beat.attrs : m->u.hb_attrs.attrs;

	/* HB_BEAT carries no timeline: the last HB_ATTRS' stands. */
	uint32_t	timeline = m->type == CMPROTO_HB_ATTRS && h->version >= 2 ?
		m->u.hb_attrs.timeline : h->timeline;

	if (attrs == h->attrs && timeline == h->timeline)
		return;
	cm_log(CMLOG_LOG, "instance %d at %s attributes changed: %s%s, %s, %s",
		   h->instno, h->where,
		   (attrs & CMPROTO_ATTR_IN_RECOVERY) ? "standby" : "primary",
		   (attrs & CMPROTO_ATTR_PROMOTING) ? " (promotion requested)" : "",
		   (attrs & CMPROTO_ATTR_READ_ONLY) ? "read-only" : "read-write",
		   hb_timeline_str(timeline));
	h->attrs = attrs;
	h->timeline = timeline;
	hb_publish(h, SHM_UP, 0);
}

/* One decoded frame from the watchdog, in any state. */
static void
hb_handle(hb *h, const cmproto_msg *m)
{
	switch (m->type)
	{
		case CMPROTO_ERROR:
			hb_fail(h, CMPROTO_DOWN_PROTOCOL, "watchdog reported: %s: %s",
					cmproto_error_code_name(m->u.error.code), m->u.error.message);
			return;
		case CMPROTO_HB_CHALLENGE:
			if (h->state != HB_HANDSHAKE)
				break;
			hb_handle_challenge(h, m);
			return;
		case CMPROTO_HB_WELCOME:
			if (h->state != HB_HANDSHAKE)
				break;
			hb_handle_welcome(h, m);
			return;
		case CMPROTO_HB_BEAT:
		case CMPROTO_HB_ATTRS:
			if (h->state != HB_UP)
				break;
			hb_handle_attrs(h, m);
			return;
	}
	hb_send_error(h, CMPROTO_ERR_PROTOCOL, "unexpected message");
	if (h->fd >= 0)
		hb_fail(h, CMPROTO_DOWN_PROTOCOL, "protocol violation: unexpected %s in state %s",
				cmproto_type_name(m->type), hb_state_names[h->state]);
}

static void
hb_read(hb *h)
{
	ssize_t		n = recv(h->fd, h->inbuf + h->inlen, sizeof(h->inbuf) - h->inlen,
						 MSG_DONTWAIT);

	if (n == 0)
	{
		hb_fail(h, CMPROTO_DOWN_LOST, "connection closed by the watchdog");
		return;
	}
	if (n < 0)
	{
		if (errno != EAGAIN && errno != EINTR)
			hb_fail(h, CMPROTO_DOWN_LOST, "could not receive: %s", strerror(errno));
		return;
	}
	h->inlen += n;
	if (h->state == HB_UP)
	{
		h->deadline = cmclock_ms() + (int64_t) h->ctx->conf->heartbeat_timeout * 1000;
		shm_set_last_received(h->slot);
	}
	while (h->fd >= 0)
	{
		size_t		len;
		cmproto_msg m;
		int			rc = cmproto_frame(h->inbuf, h->inlen, &len);

		if (rc == CMPROTO_INCOMPLETE)
			return;
		if (rc == CMPROTO_OK)
			rc = cmproto_decode_version(h->inbuf, len, CMPROTO_PEER_WATCHDOG,
										h->version ? h->version : CMPROTO_VERSION, &m);
		if (rc < 0)
		{
			hb_send_error(h, CMPROTO_ERR_PROTOCOL, cmproto_strerror(rc));
			if (h->fd >= 0)
				hb_fail(h, CMPROTO_DOWN_PROTOCOL, "protocol violation: %s",
						cmproto_strerror(rc));
			return;
		}
		memmove(h->inbuf, h->inbuf + len, h->inlen - len);
		h->inlen -= len;
		hb_handle(h, &m);
	}
}

/* Timers; returns the poll timeout in ms. */
static int
hb_timers(hb *h)
{
	int64_t		now = cmclock_ms();
	int64_t		next;

	switch (h->state)
	{
		case HB_WAIT:
			if (now >= h->retry_at)
			{
				hb_connect(h);
				return 0;
			}
			next = h->retry_at;
			break;
		case HB_CONNECTING:
		case HB_HANDSHAKE:
			if (now >= h->deadline)
			{
				hb_fail(h, CMPROTO_DOWN_TIMEOUT,
						"no answer within heartbeat_connect_timeout (%d s)",
						h->ctx->conf->heartbeat_connect_timeout);
				return 0;
			}
			next = h->deadline;
			break;
		case HB_UP:
			if (now >= h->deadline)
			{
				hb_fail(h, CMPROTO_DOWN_TIMEOUT,
						"nothing received for heartbeat_timeout (%d s)",
						h->ctx->conf->heartbeat_timeout);
				return 0;
			}
			if (now >= h->next_send)
			{
				cmproto_msg m;

				memset(&m, 0, sizeof(m));
				m.type = CMPROTO_HB_BEAT;
				m.u.hb_beat.seq = ++h->seq;
				h->next_send += (int64_t) h->ctx->conf->heartbeat_interval * 1000;
				if (h->next_send <= now)
					h->next_send = now + (int64_t) h->ctx->conf->heartbeat_interval * 1000;
				if (!hb_send(h, &m))
					return 0;
			}
			next = h->deadline < h->next_send ? h->deadline : h->next_send;
			break;
		default:
			cm_fatal(ROLE_EXIT_RESTART, "bad heartbeat state %d", h->state);
	}
	return next - now > 60000 ? 60000 : (int) (next - now);
}

void
heartbeat_main(cm_ctx *ctx, int instno)
{
	hb			h;
	char		role[32];
	sigset_t	waitmask;

	memset(&h, 0, sizeof(h));
	h.ctx = ctx;
	h.instno = instno;
	h.inst = &ctx->conf->inst[instno];
	h.slot = &ctx->shm->slots[instno];
	h.fd = -1;
	h.state = HB_WAIT;
	snprintf(h.where, sizeof(h.where), "%s%s%s:%d",
			 strchr(cmconf_connect_host(h.inst), ':') ? "[" : "",
			 cmconf_connect_host(h.inst),
			 strchr(cmconf_connect_host(h.inst), ':') ? "]" : "",
			 h.inst->watchdog_port);
	snprintf(role, sizeof(role), "heartbeat %d", instno);
	cm_log_init(ctx->conf, role);
	signal(SIGTERM, handle_sigterm);
	signal(SIGINT, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);

	/*
	 * The supervisor forks us with every signal blocked; from here on only
	 * SIGTERM is, and it is taken inside ppoll(), so it is never missed.
	 */
	{
		sigset_t	term;

		sigemptyset(&term);
		sigaddset(&term, SIGTERM);
		sigprocmask(SIG_SETMASK, &term, NULL);
		sigemptyset(&waitmask);
	}

	hb_connect(&h);
	while (!got_sigterm)
	{
		struct pollfd pfd[2];
		int			timeout = hb_timers(&h);
		int			n;

		pfd[0].fd = ctx->death_fd;
		pfd[0].events = POLLIN;
		pfd[1].fd = h.fd;
		pfd[1].events = h.state == HB_CONNECTING ? POLLOUT : POLLIN;
		pfd[1].revents = 0;
		{
			struct timespec ts = {timeout / 1000, (long) (timeout % 1000) * 1000000};

			n = ppoll(pfd, h.fd >= 0 ? 2 : 1, &ts, &waitmask);
		}
		if (n < 0 && errno != EINTR)
			cm_fatal(ROLE_EXIT_RESTART, "poll failed: %m");
		if (n <= 0)
			continue;
		if (pfd[0].revents)
			exit(ROLE_EXIT_DONE);	/* the supervisor is gone */
		if (h.fd < 0 || pfd[1].revents == 0)
			continue;
		if (h.state == HB_CONNECTING)
		{
			int			err = 0;
			socklen_t	len = sizeof(err);

			getsockopt(h.fd, SOL_SOCKET, SO_ERROR, &err, &len);
			if (err != 0)
				hb_fail(&h, CMPROTO_DOWN_LOST, "could not connect: %s", strerror(err));
			else
				hb_send_hello(&h);
			continue;
		}
		hb_read(&h);
	}
	exit(ROLE_EXIT_DONE);
}
