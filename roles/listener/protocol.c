/*-------------------------------------------------------------------------
 *
 * protocol.c
 *	  The application protocol: startup packets, RESOLVE, ATTACHED and
 *	  down-notices (docs/protocol.md, section 2).
 *
 * A session opens with PostgreSQL-framed packets: libpq-cm's probe (a
 * GSSENCRequest) gets an ErrorResponse and HELLO, a plain PostgreSQL
 * client an ErrorResponse saying what it reached.  Then come conmgr's own
 * frames: RESOLVE is answered with the candidates that route_resolve()
 * chooses, ATTACHED records the instance the application reached, and a
 * wake-up from a heartbeat role (check_instances()) sends INSTANCE_DOWN to
 * every session attached to an instance that is no longer up or has become
 * a stale primary (route.c), and closes them.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cmclock.h"
#include "listener.h"

static void app_refuse_fault(app *a, const route_view *v, const shm_slot *slots);

/*
 * The answer to a RESOLVE: every CANDIDATE and the CANDIDATES_END in one
 * buffer and one send(), so that the client wakes once, not once a frame.
 */
static void
app_resolve(app *a, const cmproto_msg *req)
{
	static uint8_t out[(CMCONF_MAX_INSTANCES + 1) * CMPROTO_MAX_MSG];
	route_candidate cands[CMCONF_MAX_INSTANCES];
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
	route_read(&lsn_routes, lsn_ctx, slots, &v);
	n = route_resolve(&lsn_routes, lsn_ctx, req->u.resolve.target, slots, &v, cands);
	if (route_refuses(&v, req->u.resolve.target, n))
	{
		app_refuse_fault(a, &v, slots);
		return;
	}
	for (int i = 0; i < n; i++)
	{
		const struct cmconf_instance *in = &lsn_ctx->conf->inst[cands[i].instno];

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
 * Not logged here: route_read() logged the fault once.
 */
static void
app_refuse_fault(app *a, const route_view *v, const shm_slot *slots)
{
	char		why[CMPROTO_ERRMSG_MAX + 1];

	route_fault_text(lsn_ctx, v, slots, a->target, why, sizeof(why));
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
void
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
	route_read(&lsn_routes, lsn_ctx, slots, &v);
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
void
check_instances(void)
{
	shm_slot	slots[CMCONF_MAX_INSTANCES];
	route_view	v;
	int			notified[CMCONF_MAX_INSTANCES] = {0};
	int64_t		start = cmclock_us();
	int		   *sent = NULL;	/* made at the first notice: most passes send
								 * none */
	bool		sent_made = false;
	int			nsent = 0;

	route_read(&lsn_routes, lsn_ctx, slots, &v);
	for (int k = 0; k < lsn_napps_alloc; k++)
	{
		app		   *a = &lsn_apps[k];
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
			sent = malloc(sizeof(int) * lsn_napps_alloc);
			sent_made = true;
		}
		if (sent == NULL)
			app_send_down(a, reason);	/* out of memory: close at once */
		else if (app_notify_down(a, reason))
			sent[nsent++] = k;
	}
	for (int i = 0; i < nsent; i++)
		app_close(&lsn_apps[sent[i]]);
	free(sent);
	/* one line per instance and pass, written once the pass is over */
	for (uint32_t i = 0; i < lsn_ctx->shm->nslots; i++)
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

void
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
	lsn_hold(a);
	/* libpq waits for the 'N' before its startup packet; others may not. */
	if (a->state == APP_STARTUP)
		while (app_startup_packet(a))
			;
	app_frames(a);
	lsn_release(a);
	if (a->state != APP_FREE && a->state != APP_STARTUP)
		app_shrink_inbuf(a);
}
