/*-------------------------------------------------------------------------
 *
 * connect.c
 *	  Connecting: libpq's connect functions, with the conmgr detour, and
 *	  the state machine that runs them.
 *
 * A connection walks the application's host list in order.  Each
 * destination is a Unix socket or a known postmaster (connect to it with
 * libpq), or is probed (probe.c; only loopback destinations and those
 * PGCMADDRS names, trust.c: any other is a postmaster).  A postmaster,
 * and the known postmasters right after it, become one real libpq attempt
 * over that part of the list, so libpq's own multi-host rules apply
 * there.  conmgr is asked for the instances that fit target_session_attrs,
 * and each candidate becomes a real attempt, in conmgr's order; the first
 * that connects is reported to conmgr (ATTACHED) and conmgr's socket is
 * kept, and watched (watcher.c), for the life of the connection.  When
 * every destination failed, the messages of all of them are the
 * connection's error, as with libpq.
 *
 * prefer-standby and prefer-primary over several destinations follow
 * libpq's rule for its host list, generalised to conmgrs: a first pass
 * over the whole list asks for standbys only (primaries only), a second
 * pass takes what there is.  That needs every run of servers whole, so the
 * list is first classified: unknown destinations are probed (conmgrs are
 * hung up on and asked again when their turn comes); one that fails then
 * is not tried again.
 *
 * The state machine (cm_poll()) is the one owner of the connection's
 * phase (enum cm_phase): one step function per phase, and every change
 * goes through set_phase().  The probe and the resolve (probe.c) are steps
 * that return their result, what they reached and their messages, and the
 * state machine decides what follows and appends the messages to the
 * connection's error; they never call back.
 *
 * The same state machine serves both styles.  Asynchronous (PQconnectStart
 * + PQconnectPoll): each step returns what to wait for, and PQsocket() is
 * conmgr's socket while we talk to conmgr, then the server's.
 * Synchronous (PQconnectdb & co.): we wait ourselves, with connect_timeout
 * per destination for the conmgr part, and let the real
 * PQconnectdbParams() make each real attempt, so that libpq's own timeout
 * and host-list handling apply unchanged.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmclock.h"
#include "handle.h"

/*
 * A step function's answer when the phase changed and the next step is to
 * run at once; else it returns the PostgresPollingStatusType to give the
 * application.
 */
#define CM_AGAIN	(-1)

static void
set_phase(cm_conn *c, cm_phase phase)
{
	c->phase = phase;
}

/* Give a new inner connection the settings the application made. */
static void
apply_settings(cm_conn *c)
{
	cm_settings *s = &c->settings;
	PGconn	   *pg = c->inner;

	if (pg == NULL)
		return;
	if (s->has_processor)
		REAL(PQsetNoticeProcessor) (pg, s->processor, s->processor_arg);
	if (s->has_receiver)
		REAL(PQsetNoticeReceiver) (pg, s->receiver, s->receiver_arg);
	if (s->has_verbosity)
		REAL(PQsetErrorVerbosity) (pg, s->verbosity);
	if (s->has_context)
		REAL(PQsetErrorContextVisibility) (pg, s->context);
	if (s->trace)
		REAL(PQtrace) (pg, s->trace);
	if (s->has_trace_flags)
		REAL(PQsetTraceFlags) (pg, s->trace_flags);
	if (s->has_nonblocking)
		REAL(PQsetnonblocking) (pg, s->nonblocking);
}

/*
 * The target of this pass: the strict half of a prefer-* target in the
 * first of two passes, else the application's.
 */
static int
pass_target(const cm_conn *c)
{
	if (c->pass == 1 && c->target == CMPROTO_TARGET_PREFER_STANDBY)
		return CMPROTO_TARGET_STANDBY;
	if (c->pass == 1 && c->target == CMPROTO_TARGET_PREFER_PRIMARY)
		return CMPROTO_TARGET_PRIMARY;
	return c->target;
}

/* What to ask conmgr for at destination c->di, for probe.c. */
static cm_request
request(const cm_conn *c)
{
	cm_request	q;

	q.target = pass_target(c);
	q.app = cm_opt(c, "application_name");
	if (q.app == NULL)
		q.app = cm_opt(c, "fallback_application_name");
	if (q.app == NULL)
		q.app = getenv("PGAPPNAME");
	q.classifying = c->classifying;
	return q;
}

/*
 * Take a step of probe.c on destination c->di: what it reached; its
 * messages join the connection's error.
 */
static cm_step
run_step(cm_conn *c, cm_probe_op op)
{
	cm_request	q = request(c);
	cm_result	r = cm_probe_step(op, &c->sess, &c->dests[c->di], &q);

	if (r.err.len > 0)
		cm_text_appendf(&c->err, "%s", r.err.buf);
	return r.step;
}

/* Queue the real attempts for the postmaster at c->di and known ones after. */
static void
queue_postmasters(cm_conn *c)
{
	int			last = c->di;
	cm_attempt *a;

	while (last + 1 < c->ndests &&
		   (c->dests[last + 1].unix_socket ||
			cm_known_postmaster(&c->dests[last + 1])))
		last++;
	c->nattempts = 0;
	c->ai_next = 0;
	a = &c->attempts[c->nattempts++];
	memset(a, 0, sizeof(*a));
	a->first_dest = c->di;
	a->last_dest = last;
	a->tsa = c->pass == 2 ? "any" : cmproto_target_name(pass_target(c));
	/* the whole list: hand libpq the application's options untouched */
	a->whole = c->pass == 0 && c->di == 0 && last == c->ndests - 1 &&
		c->target != CMPROTO_TARGET_PREFER_PRIMARY;
	if (c->pass == 0 && c->target == CMPROTO_TARGET_PREFER_PRIMARY)
	{
		/* libpq 15 does not know prefer-primary: primary first, then any */
		a->tsa = "primary";
		c->attempts[c->nattempts] = *a;
		c->attempts[c->nattempts++].tsa = "any";
	}
	c->di = last;				/* the run ends here */
}

/* Queue conmgr's candidates (c->sess.cand) as real attempts, in its order. */
static void
queue_candidates(cm_conn *c)
{
	const char *tsa;

	/*
	 * libpq checks the attributes it can check from the server's startup
	 * reports (in_hot_standby, default_transaction_read_only) at no cost,
	 * which catches a role that changed since conmgr last heard; the "prefer"
	 * orders are conmgr's to decide.
	 */
	switch (pass_target(c))
	{
		case CMPROTO_TARGET_PREFER_STANDBY:
		case CMPROTO_TARGET_PREFER_PRIMARY:
			tsa = "any";
			break;
		default:
			tsa = cmproto_target_name(pass_target(c));
	}
	c->ai_next = 0;
	for (c->nattempts = 0; c->nattempts < c->sess.ncand; c->nattempts++)
	{
		cm_attempt *a = &c->attempts[c->nattempts];

		memset(a, 0, sizeof(*a));
		a->first_dest = a->last_dest = c->di;
		a->cand = &c->sess.cand[c->nattempts];
		a->tsa = tsa;
	}
}

static void
drop_inner(cm_conn *c)
{
	if (c->spent)
		REAL(PQfinish) (c->spent);
	c->spent = c->inner;
	c->inner = NULL;
}

/* The calling thread's latest connection through conmgr (PQcmLastInstance). */
static __thread unsigned long last_count;
static __thread char last_host[CMPROTO_HOST_MAX + 1];
static __thread char last_port[sizeof(((cm_candidate *) 0)->port)];

unsigned long
PQcmLastInstance(const char **host, const char **port)
{
	if (host)
		*host = last_count ? last_host : NULL;
	if (port)
		*port = last_count ? last_port : NULL;
	return last_count;
}

/* The connection is complete: report it to conmgr and watch conmgr. */
static bool
connected(cm_conn *c, const cm_attempt *a)
{
	if (a->cand != NULL)
	{
		if (!cm_send_attached(&c->sess, a->cand->instance,
							  REAL(PQbackendPID) (c->inner)))
		{
			cm_text_appendf(&c->err, "conmgr closed the connection before the instance was reached\n");
			return false;
		}
		c->cm_instance = a->cand->instance;
		cm_watch(c, REAL(PQsocket) (c->inner));
		snprintf(last_host, sizeof(last_host), "%s", a->cand->host);
		snprintf(last_port, sizeof(last_port), "%s", a->cand->port);
		last_count++;
	}
	if (c->spent)
		REAL(PQfinish) (c->spent);
	c->spent = NULL;
	cm_text_reset(&c->err);
	set_phase(c, CMP_OK);
	return true;
}

/* The current real attempt failed: keep its message, go on. */
static void
attempt_failed(cm_conn *c)
{
	if (c->inner)
		cm_text_appendf(&c->err, "%s", REAL(PQerrorMessage) (c->inner));
	else
		cm_text_appendf(&c->err, "out of memory\n");
	drop_inner(c);
}

/*
 * Start the next queued attempt.  Returns the polling status for the
 * caller, or CM_AGAIN when there is none left (or it failed at once), in
 * which case the caller moves on.
 */
static int
start_attempt(cm_conn *c)
{
	while (c->ai_next < c->nattempts)
	{
		const cm_attempt *a = &c->attempts[c->ai_next++];

		c->inner = a->whole ? cm_start_passthrough(c, c->sync)
			: cm_start_real(c, a, c->sync);
		if (c->inner == NULL || REAL(PQstatus) (c->inner) == CONNECTION_BAD)
		{
			attempt_failed(c);
			continue;
		}
		apply_settings(c);
		if (c->sync)
		{
			if (connected(c, a))
				return PGRES_POLLING_OK;
			drop_inner(c);
			continue;
		}
		set_phase(c, CMP_BACKEND);
		return PGRES_POLLING_WRITING;
	}
	c->nattempts = c->ai_next = 0;
	return CM_AGAIN;
}

/* Done with destination c->di (all its attempts failed); next one. */
static int
next_dest(cm_conn *c)
{
	if (c->classifying && c->di < c->ndests)
		c->kind[c->di] = CMK_FAILED;
	cm_session_close(&c->sess);
	c->di++;
	set_phase(c, CMP_NEXT_DEST);
	return CM_AGAIN;
}

/* First pass: destination c->di is of kind k; on to the next. */
static int
classified(cm_conn *c, int k)
{
	c->kind[c->di] = (int8_t) k;
	cm_session_close(&c->sess);
	c->di++;
	set_phase(c, CMP_NEXT_DEST);
	return CM_AGAIN;
}

/* Start from the first destination, with a first pass where needed. */
static void
begin(cm_conn *c)
{
	set_phase(c, CMP_NEXT_DEST);
	memset(c->kind, 0, sizeof(c->kind));
	c->classifying = !c->passthrough && c->ndests > 1 &&
		(c->target == CMPROTO_TARGET_PREFER_STANDBY ||
		 c->target == CMPROTO_TARGET_PREFER_PRIMARY);
	c->pass = c->classifying ? 1 : 0;
}

/* Start the attempts queued, or go on with the next destination. */
static int
start_attempts(cm_conn *c)
{
	int			rc;

	if ((rc = start_attempt(c)) != CM_AGAIN)
		return rc;
	return next_dest(c);
}

/*
 * Destination c->di is a server: classify it, or hand it and the known
 * servers after it to libpq.
 */
static int
at_postmaster(cm_conn *c)
{
	if (c->classifying)
		return classified(c, CMK_POSTMASTER);
	queue_postmasters(c);
	return start_attempts(c);
}

/* Start probing c->dests[c->di] (again, after CMS_REPROBE). */
static int
start_probe(cm_conn *c)
{
	switch (run_step(c, CMO_START))
	{
		case CMS_FAILED:
			return next_dest(c);
		case CMS_POSTMASTER:
			return at_postmaster(c);
		case CMS_PROBE_SENT:
			set_phase(c, CMP_PROBE_WAIT);
			return PGRES_POLLING_READING;
		default:
			set_phase(c, CMP_PROBE_CONNECT);
			return PGRES_POLLING_WRITING;
	}
}

/* The application's options are left to libpq: one attempt with them. */
static int
start_passthrough(cm_conn *c)
{
	c->nattempts = 1;
	memset(&c->attempts[0], 0, sizeof(cm_attempt));
	c->attempts[0].whole = true;
	c->ai_next = 0;
	c->di = c->ndests > 0 ? c->ndests - 1 : 0;
	return start_attempt(c);
}

/*
 * The end of the list: a classifying pass is followed by the first real
 * one, a strict pass by the one that takes what there is; after the last
 * pass, the connection has failed.
 */
static int
end_of_list(cm_conn *c)
{
	if (c->classifying)
	{
		c->classifying = false;
		c->di = 0;
		return CM_AGAIN;
	}
	if (c->pass == 1)
	{
		c->pass = 2;			/* nothing strict anywhere: take what there is */
		c->di = 0;
		return CM_AGAIN;
	}
	set_phase(c, CMP_FAILED);
	if (c->inner == NULL)
	{
		c->inner = c->spent;
		c->spent = NULL;
	}
	return PGRES_POLLING_FAILED;
}

/* CMP_NEXT_DEST: look at destination c->di. */
static int
step_next_dest(cm_conn *c)
{
	const cm_dest *d;
	int			rc;

	if (c->passthrough && c->di == 0 && c->nattempts == 0)
	{
		if ((rc = start_passthrough(c)) != CM_AGAIN)
			return rc;
		c->di = c->ndests;
	}
	if (c->di >= c->ndests)
		return end_of_list(c);
	d = &c->dests[c->di];
	if (c->kind[c->di] == CMK_FAILED)
	{
		c->di++;
		return CM_AGAIN;
	}
	if (d->unix_socket || cm_known_postmaster(d))
		return at_postmaster(c);
	c->deadline = c->connect_timeout > 0 ?
		cmclock_ms() + (int64_t) c->connect_timeout * 1000 : 0;
	return start_probe(c);
}

/* CMP_PROBE_CONNECT: the probe's socket is writable. */
static int
step_probe_connect(cm_conn *c)
{
	switch (run_step(c, CMO_CONNECTED))
	{
		case CMS_MORE:
			return PGRES_POLLING_WRITING;
		case CMS_FAILED:
			return next_dest(c);
		default:
			set_phase(c, CMP_PROBE_WAIT);
			return PGRES_POLLING_READING;
	}
}

/* CMP_PROBE_WAIT: the answer to the probe is readable. */
static int
step_probe_wait(cm_conn *c)
{
	switch (run_step(c, CMO_PROBE_READ))
	{
		case CMS_MORE:
			return PGRES_POLLING_READING;
		case CMS_FAILED:
			return next_dest(c);
		case CMS_REPROBE:
			/* the same destination, probed plainly this time */
			return start_probe(c);
		case CMS_POSTMASTER:
			return at_postmaster(c);
		default:
			break;
	}
	/* conmgr, which has our RESOLVE */
	if (c->classifying)
		return classified(c, CMK_CONMGR);
	c->nattempts = c->ai_next = 0;
	set_phase(c, CMP_RESOLVE_WAIT);
	/* the answer to a RESOLVE sent with the probe may be read already */
	return c->sess.rlen > 0 ? CM_AGAIN : PGRES_POLLING_READING;
}

/* CMP_RESOLVE_WAIT: conmgr's candidate list is readable. */
static int
step_resolve_wait(cm_conn *c)
{
	switch (run_step(c, CMO_RESOLVE_READ))
	{
		case CMS_MORE:
			return PGRES_POLLING_READING;
		case CMS_FAILED:
			return next_dest(c);
		default:
			queue_candidates(c);
			return start_attempts(c);
	}
}

/* CMP_BACKEND: the real libpq connection attempt goes on. */
static int
step_backend(cm_conn *c)
{
	PostgresPollingStatusType ps = REAL(PQconnectPoll) (c->inner);
	const cm_attempt *a = &c->attempts[c->ai_next - 1];

	if (ps == PGRES_POLLING_OK)
	{
		if (connected(c, a))
			return PGRES_POLLING_OK;
		drop_inner(c);
	}
	else if (ps == PGRES_POLLING_FAILED)
		attempt_failed(c);
	else
		return ps;
	return start_attempts(c);
}

/* One step of the state machine; see the file header. */
static PostgresPollingStatusType
cm_poll(cm_conn *c)
{
	for (;;)
	{
		int			rc = CM_AGAIN;

		switch (c->phase)
		{
			case CMP_NEXT_DEST:
				rc = step_next_dest(c);
				break;
			case CMP_PROBE_CONNECT:
				rc = step_probe_connect(c);
				break;
			case CMP_PROBE_WAIT:
				rc = step_probe_wait(c);
				break;
			case CMP_RESOLVE_WAIT:
				rc = step_resolve_wait(c);
				break;
			case CMP_BACKEND:
				rc = step_backend(c);
				break;
			case CMP_OK:
				return PGRES_POLLING_OK;
			case CMP_FAILED:
				return PGRES_POLLING_FAILED;
		}
		if (rc != CM_AGAIN)
			return (PostgresPollingStatusType) rc;
	}
}

/* PQconnectdb & co.: run the state machine to the end, waiting here. */
static void
connect_sync(cm_conn *c)
{
	c->sync = true;
	for (;;)
	{
		PostgresPollingStatusType ps = cm_poll(c);
		struct pollfd p;
		int			timeout_ms = -1;
		int			rc;

		if (ps == PGRES_POLLING_OK || ps == PGRES_POLLING_FAILED)
			break;
		p.fd = c->sess.fd;
		p.events = ps == PGRES_POLLING_READING ? POLLIN : POLLOUT;
		p.revents = 0;
		if (c->deadline > 0)
		{
			int64_t		left = c->deadline - cmclock_ms();

			timeout_ms = left > 0 ? (int) left + 1 : 0;
		}
		rc = poll(&p, 1, timeout_ms);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc == 0)
		{
			const cm_dest *d = &c->dests[c->di];

			cm_text_failed(&c->err, d->host, d->hostaddr, c->sess.cur_addr,
						   d->port, "timeout expired");
			(void) next_dest(c);
		}
	}
	c->sync = false;
}

/* A handle whose setup failed before anything could be tried. */
static PGconn *
new_conn(const char *conninfo, const char *const *keys,
		 const char *const *vals, int expand, bool sync)
{
	cm_conn    *c = cm_conn_new(conninfo, keys, vals, expand);

	if (c == NULL)
		return NULL;
	begin(c);
	if (sync)
		connect_sync(c);
	else
		(void) cm_poll(c);		/* get a socket for the first wait */
	return (PGconn *) c;
}

PGconn *
PQconnectStart(const char *conninfo)
{
	if (cm_in_real || conninfo == NULL)
		return REAL(PQconnectStart) (conninfo);
	return new_conn(conninfo, NULL, NULL, 0, false);
}

PGconn *
PQconnectStartParams(const char *const *keywords, const char *const *values,
					 int expand_dbname)
{
	if (cm_in_real || keywords == NULL || values == NULL)
		return REAL(PQconnectStartParams) (keywords, values, expand_dbname);
	return new_conn(NULL, keywords, values, expand_dbname, false);
}

PGconn *
PQconnectdb(const char *conninfo)
{
	if (cm_in_real || conninfo == NULL)
		return REAL(PQconnectdb) (conninfo);
	return new_conn(conninfo, NULL, NULL, 0, true);
}

PGconn *
PQconnectdbParams(const char *const *keywords, const char *const *values,
				  int expand_dbname)
{
	if (cm_in_real || keywords == NULL || values == NULL)
		return REAL(PQconnectdbParams) (keywords, values, expand_dbname);
	return new_conn(NULL, keywords, values, expand_dbname, true);
}

PGconn *
PQsetdbLogin(const char *pghost, const char *pgport, const char *pgoptions,
			 const char *pgtty, const char *dbName, const char *login,
			 const char *pwd)
{
	/* the same precedence as libpq: dbName may be a connection string */
	const char *keys[] = {"dbname", "host", "port", "options", "user", "password", NULL};
	const char *vals[] = {dbName, pghost, pgport, pgoptions, login, pwd, NULL};

	if (cm_in_real)
		return REAL(PQsetdbLogin) (pghost, pgport, pgoptions, pgtty, dbName,
								   login, pwd);
	return new_conn(NULL, keys, vals, 1, true);
}

/*
 * libpq's ping functions open a connection with PQconnectStart[Params]()
 * through the PLT and then read its fields directly, so they must get a
 * real PGconn: they run entirely in libpq.  A ping of conmgr's port thus
 * says whether conmgr answers (it refuses the login, which counts as
 * PQPING_OK, as for a server).
 */
PGPing
PQping(const char *conninfo)
{
	PGPing		r;

	cm_in_real++;
	r = REAL(PQping) (conninfo);
	cm_in_real--;
	return r;
}

PGPing
PQpingParams(const char *const *keywords, const char *const *values,
			 int expand_dbname)
{
	PGPing		r;

	cm_in_real++;
	r = REAL(PQpingParams) (keywords, values, expand_dbname);
	cm_in_real--;
	return r;
}

PostgresPollingStatusType
PQconnectPoll(PGconn *conn)
{
	cm_conn    *c = cm_conn_of(conn);

	if (c == NULL)
		return REAL(PQconnectPoll) (conn);
	return cm_poll(c);
}

/*
 * Close everything but the handle and its options; ready to connect again.
 * The watcher lets go first, closing its duplicate of the SQL socket, so
 * that libpq's close is the last and the server sees the connection end.
 */
static void
teardown(cm_conn *c)
{
	cm_unwatch(c);
	cm_session_free(&c->sess);
	if (c->inner)
		REAL(PQfinish) (c->inner);
	if (c->spent)
		REAL(PQfinish) (c->spent);
	c->inner = c->spent = NULL;
	cm_opts_free(c);
}

static void
restart(cm_conn *c)
{
	teardown(c);
	c->di = 0;
	c->nattempts = c->ai_next = 0;
	c->cm_instance = -1;
	c->lost = 0;
	cm_text_reset(&c->err);
	begin(c);
}

void
PQfinish(PGconn *conn)
{
	cm_conn    *c = cm_conn_of(conn);

	if (c == NULL)
	{
		REAL(PQfinish) (conn);
		return;
	}
	teardown(c);
	cm_conn_free(c);
}

/*
 * PQreset through conmgr connects again from the start, so that it may
 * land on another instance (the new primary); a connection that did not go
 * through conmgr is reset by libpq itself, as ever.
 */
void
PQreset(PGconn *conn)
{
	cm_conn    *c = cm_conn_of(conn);

	if (c == NULL)
	{
		REAL(PQreset) (conn);
		return;
	}
	if (c->cm_instance < 0 && c->inner && c->phase == CMP_OK)
	{
		REAL(PQreset) (c->inner);
		return;
	}
	restart(c);
	connect_sync(c);
}

int
PQresetStart(PGconn *conn)
{
	cm_conn    *c = cm_conn_of(conn);

	if (c == NULL)
		return REAL(PQresetStart) (conn);
	if (c->cm_instance < 0 && c->inner && c->phase == CMP_OK)
		return REAL(PQresetStart) (c->inner);
	restart(c);
	return cm_poll(c) != PGRES_POLLING_FAILED;
}

PostgresPollingStatusType
PQresetPoll(PGconn *conn)
{
	cm_conn    *c = cm_conn_of(conn);

	if (c == NULL)
		return REAL(PQresetPoll) (conn);
	if (c->cm_instance < 0 && c->inner && c->phase == CMP_OK)
		return REAL(PQresetPoll) (c->inner);
	return cm_poll(c);
}
