/*-------------------------------------------------------------------------
 *
 * conn.c
 *	  The accessors of the handle whose answer depends on where the
 *	  connection is (talking to conmgr, connecting to the instance,
 *	  connected, lost), and the settings an application makes on it.
 *
 * Telling our handle from libpq's is handle.h's.  Every other function
 * that takes a PGconn * is a plain forwarder (forward.c); the connect
 * family, reset and finish are connect.c's.
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "handle.h"

static bool
talking_to_conmgr(const cm_conn *c)
{
	return c->phase == CMP_NEXT_DEST || c->phase == CMP_PROBE_CONNECT ||
		c->phase == CMP_PROBE_WAIT || c->phase == CMP_RESOLVE_WAIT;
}

ConnStatusType
PQstatus(const PGconn *conn)
{
	cm_conn    *c = cm_conn_of(conn);
	PGconn	   *inner = cm_inner(conn);

	if (c == NULL)
		return REAL(PQstatus) (conn);
	switch (c->phase)
	{
		case CMP_NEXT_DEST:
		case CMP_PROBE_CONNECT:
			return CONNECTION_STARTED;
		case CMP_PROBE_WAIT:
			/* conmgr or a server: we do not know yet */
			return CONNECTION_AWAITING_RESPONSE;
		case CMP_RESOLVE_WAIT:
			return CONNECTION_AWAITING_CMRESPONSE;
		case CMP_BACKEND:
			return REAL(PQstatus) (inner);
		case CMP_OK:
			/* conmgr said the instance is gone: the connection is */
			return c->lost ? CONNECTION_BAD : REAL(PQstatus) (inner);
		case CMP_FAILED:
			break;
	}
	return CONNECTION_BAD;
}

int
PQsocket(const PGconn *conn)
{
	cm_conn    *c = cm_conn_of(conn);

	if (c == NULL)
		return REAL(PQsocket) (conn);
	if (talking_to_conmgr(c))
		return c->sess.fd;
	return c->inner ? REAL(PQsocket) (c->inner) : -1;
}

int
PQcmSocket(const PGconn *conn)
{
	cm_conn    *c = cm_conn_of(conn);

	if (c == NULL || c->phase == CMP_PROBE_CONNECT || c->phase == CMP_PROBE_WAIT)
		return -1;
	c->cm_polled = 1;
	return c->sess.fd;
}

char *
PQerrorMessage(const PGconn *conn)
{
	cm_conn    *c = cm_conn_of(conn);

	if (c == NULL)
		return REAL(PQerrorMessage) (conn);
	if (c->phase == CMP_FAILED || c->inner == NULL)
		return c->err.buf;
	return REAL(PQerrorMessage) (c->inner);
}

/*
 * libpq sets protocol 3.0 for each server from the start of the attempt
 * (PG_PROTOCOL(3, 0)) and says 3 until the connection fails: so do we
 * while there is no inner connection.
 */
int
PQprotocolVersion(const PGconn *conn)
{
	cm_conn    *c = cm_conn_of(conn);
	PGconn	   *inner = cm_inner(conn);

	if (c == NULL || inner != NULL)
		return REAL(PQprotocolVersion) (inner);
	return c->phase == CMP_FAILED ? 0 : 3;
}

/* The options the connection was made with, as libpq shows them. */
PQconninfoOption *
PQconninfo(PGconn *conn)
{
	cm_conn    *c = cm_conn_of(conn);
	PGconn	   *pg = cm_inner_or_opts(conn);
	PQconninfoOption *o = REAL(PQconninfo) (pg);

	if (c != NULL && pg != c->inner && o != NULL)
		cm_opts_restore(c, o);
	return o;
}

/* While we talk to conmgr, the destination being tried; then the server. */
static const cm_dest *
current_dest(const cm_conn *c)
{
	if (c->ndests == 0)
		return NULL;
	return &c->dests[c->di < c->ndests ? c->di : c->ndests - 1];
}

char *
PQhost(const PGconn *conn)
{
	cm_conn    *c = cm_conn_of(conn);
	const cm_dest *d;

	if (c == NULL)
		return REAL(PQhost) (conn);
	if (c->inner && !talking_to_conmgr(c))
		return REAL(PQhost) (c->inner);
	if ((d = current_dest(c)) == NULL)
		return NULL;
	return d->host[0] ? d->host : d->hostaddr;
}

char *
PQhostaddr(const PGconn *conn)
{
	cm_conn    *c = cm_conn_of(conn);

	if (c == NULL)
		return REAL(PQhostaddr) (conn);
	if (c->inner && !talking_to_conmgr(c))
		return REAL(PQhostaddr) (c->inner);
	return c->sess.cur_addr;
}

char *
PQport(const PGconn *conn)
{
	cm_conn    *c = cm_conn_of(conn);
	const cm_dest *d;

	if (c == NULL)
		return REAL(PQport) (conn);
	if (c->inner && !talking_to_conmgr(c))
		return REAL(PQport) (c->inner);
	return (d = current_dest(c)) ? d->port : NULL;
}

/*
 * Settings the application makes on the handle are kept, so that the
 * inner connection of a later attempt or of PQreset() gets them too.
 */
PQnoticeReceiver
PQsetNoticeReceiver(PGconn *conn, PQnoticeReceiver proc, void *arg)
{
	cm_conn    *c = cm_conn_of(conn);
	PQnoticeReceiver old;

	if (c == NULL)
		return REAL(PQsetNoticeReceiver) (conn, proc, arg);
	old = c->settings.has_receiver ? c->settings.receiver : NULL;
	if (proc == NULL)
		return c->inner ? REAL(PQsetNoticeReceiver) (c->inner, proc, arg) : old;
	c->settings.has_receiver = true;
	c->settings.receiver = proc;
	c->settings.receiver_arg = arg;
	return c->inner ? REAL(PQsetNoticeReceiver) (c->inner, proc, arg) : old;
}

PQnoticeProcessor
PQsetNoticeProcessor(PGconn *conn, PQnoticeProcessor proc, void *arg)
{
	cm_conn    *c = cm_conn_of(conn);
	PQnoticeProcessor old;

	if (c == NULL)
		return REAL(PQsetNoticeProcessor) (conn, proc, arg);
	old = c->settings.has_processor ? c->settings.processor : NULL;
	if (proc == NULL)
		return c->inner ? REAL(PQsetNoticeProcessor) (c->inner, proc, arg) : old;
	c->settings.has_processor = true;
	c->settings.processor = proc;
	c->settings.processor_arg = arg;
	return c->inner ? REAL(PQsetNoticeProcessor) (c->inner, proc, arg) : old;
}

PGVerbosity
PQsetErrorVerbosity(PGconn *conn, PGVerbosity verbosity)
{
	cm_conn    *c = cm_conn_of(conn);
	PGVerbosity old;

	if (c == NULL)
		return REAL(PQsetErrorVerbosity) (conn, verbosity);
	old = c->settings.has_verbosity ? c->settings.verbosity : PQERRORS_DEFAULT;
	c->settings.has_verbosity = true;
	c->settings.verbosity = verbosity;
	return c->inner ? REAL(PQsetErrorVerbosity) (c->inner, verbosity) : old;
}

PGContextVisibility
PQsetErrorContextVisibility(PGconn *conn, PGContextVisibility show_context)
{
	cm_conn    *c = cm_conn_of(conn);
	PGContextVisibility old;

	if (c == NULL)
		return REAL(PQsetErrorContextVisibility) (conn, show_context);
	old = c->settings.has_context ? c->settings.context : PQSHOW_CONTEXT_ERRORS;
	c->settings.has_context = true;
	c->settings.context = show_context;
	return c->inner ? REAL(PQsetErrorContextVisibility) (c->inner, show_context) : old;
}

void
PQtrace(PGconn *conn, FILE *debug_port)
{
	cm_conn    *c = cm_conn_of(conn);

	if (c == NULL)
	{
		REAL(PQtrace) (conn, debug_port);
		return;
	}
	c->settings.trace = debug_port;
	if (c->inner)
		REAL(PQtrace) (c->inner, debug_port);
}

void
PQuntrace(PGconn *conn)
{
	cm_conn    *c = cm_conn_of(conn);

	if (c == NULL)
	{
		REAL(PQuntrace) (conn);
		return;
	}
	c->settings.trace = NULL;
	if (c->inner)
		REAL(PQuntrace) (c->inner);
}

void
PQsetTraceFlags(PGconn *conn, int flags)
{
	cm_conn    *c = cm_conn_of(conn);

	if (c == NULL)
	{
		REAL(PQsetTraceFlags) (conn, flags);
		return;
	}
	c->settings.has_trace_flags = true;
	c->settings.trace_flags = flags;
	if (c->inner)
		REAL(PQsetTraceFlags) (c->inner, flags);
}

/* libpq keeps the setting from the start; a failed connection says 0. */
int
PQisnonblocking(const PGconn *conn)
{
	cm_conn    *c = cm_conn_of(conn);
	PGconn	   *inner = cm_inner(conn);

	if (c == NULL || inner != NULL)
		return REAL(PQisnonblocking) (inner);
	return c->phase != CMP_FAILED && c->settings.has_nonblocking &&
		c->settings.nonblocking != 0;
}

int
PQsetnonblocking(PGconn *conn, int arg)
{
	cm_conn    *c = cm_conn_of(conn);
	int			rc;

	if (c == NULL)
		return REAL(PQsetnonblocking) (conn, arg);
	c->settings.has_nonblocking = true;
	c->settings.nonblocking = arg;
	if (c->inner == NULL)
		return 0;
	/* it flushes, and a flush may read the server's hang-up */
	rc = REAL(PQsetnonblocking) (c->inner, arg);
	cm_follow_sql(conn);
	return rc;
}
