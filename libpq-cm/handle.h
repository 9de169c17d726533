/*-------------------------------------------------------------------------
 *
 * handle.h
 *	  From the PGconn * an application passes to the cm_conn behind it and
 *	  its real connection: what every libpq entry point of the library
 *	  (connect.c, conn.c, forward.c) does first.
 *
 * Every exported function that takes a PGconn * turns a cm_conn into its
 * inner connection (cm_inner()) and calls the real libpq function.
 * Pointers that are not ours are real PGconns -- libpq calls many of its
 * own exported functions through the PLT, so our wrappers receive its
 * internal calls too -- and are passed straight through.
 *
 * Inline, as every forwarded call of every query goes through them
 * (docs/benchmarks.md, figure 3).  They call down only, into watcher.c,
 * options.c and real.c, which never include this header.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CM_HANDLE_H
#define CM_HANDLE_H

#include <string.h>

#include "cm_int.h"
#include "real.h"

/*
 * Ours, or NULL for a real libpq PGconn (or NULL).  A real PGconn starts
 * with a pointer, which never equals the magic, so reading the first eight
 * bytes of either kind is safe.
 */
static inline cm_conn *
cm_conn_of(const PGconn *conn)
{
	uint64_t	magic;

	if (conn == NULL)
		return NULL;
	memcpy(&magic, conn, sizeof(magic));
	return magic == CM_CONN_MAGIC ? (cm_conn *) conn : NULL;
}

/* The real PGconn to hand to libpq for conn (NULL while there is none). */
static inline PGconn *
cm_inner(const PGconn *conn)
{
	cm_conn    *c = cm_conn_of(conn);

	if (c == NULL)
		return (PGconn *) conn;
	if (c->cm_polled && c->cm_instance >= 0 && !c->lost)
		cm_check_lost(c);
	return c->inner;
}

/*
 * The real PGconn that answers the accessors of the application's options
 * (PQdb(), PQuser(), PQpass(), PQconninfo()…): the inner connection once
 * there is one, else the options connection of the destination being
 * tried (options.c), as libpq answers them from the options at once.
 */
static inline PGconn *
cm_inner_or_opts(const PGconn *conn)
{
	cm_conn    *c = cm_conn_of(conn);
	PGconn	   *inner = cm_inner(conn);

	if (c == NULL || inner != NULL)
		return inner;
	return cm_opts_conn(c);
}

/*
 * After a real call on conn's inner connection that may do I/O: libpq
 * closes its socket itself when the server hangs up or the protocol
 * breaks, and the watcher's duplicate of it must go at once, or the socket
 * would stay open and the server would not see the connection end
 * (watcher.c).  Inline, since it follows nearly every call of a busy
 * connection.
 */
static inline void
cm_follow_sql(const PGconn *conn)
{
	cm_conn    *c = cm_conn_of(conn);

	if (c != NULL && __atomic_load_n(&c->sql_fd, __ATOMIC_RELAXED) >= 0 &&
		(c->inner == NULL || REAL(PQsocket) (c->inner) < 0))
		cm_sql_release(c);
}

#endif							/* CM_HANDLE_H */
