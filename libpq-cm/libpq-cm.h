/*-------------------------------------------------------------------------
 *
 * libpq-cm.h
 *	  The client library's additions to libpq's API.
 *
 * Include this instead of (or after) libpq-fe.h and link with
 * "-lpq-cm -lpq".  Everything else is libpq's own API, unchanged: an
 * application names conmgr as it would name a server
 * ("host=localhost port=27546 target_session_attrs=read-write") and the
 * library finds the instance, connects to it and keeps conmgr's socket open
 * for down-notices.  See docs/libpq-cm.md.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LIBPQ_CM_H
#define LIBPQ_CM_H

#include <libpq-fe.h>

#ifdef __cplusplus
extern "C"
{
#endif

/*
 * PQstatus() while the library waits for conmgr's answer (the probe, then
 * the candidate list).  Far above libpq's own ConnStatusType values, so
 * that no future libpq status can take it.
 */
#define CONNECTION_AWAITING_CMRESPONSE ((ConnStatusType) 1000)

/*
 * The socket to conmgr, or -1 when the connection did not go through
 * conmgr (or is not connected).  It becomes readable when conmgr reports
 * the instance lost or conmgr itself goes away; the application then calls
 * PQconsumeInput() or PQgetResult() as usual and gets libpq's ordinary
 * "connection lost" behaviour.  The application must not read from it.
 */
extern int	PQcmSocket(const PGconn *conn);

/*
 * For drivers that keep their own copy of the host they were given and
 * never ask libpq (psqlODBC's SQLGetInfo(SQL_SERVER_NAME); see
 * contrib/odbc): how many connections the calling thread has completed
 * through conmgr, and in *host and *port (either may be NULL) where the
 * latest one landed: the instance's host and port, in thread-local storage
 * that the thread's next such connection overwrites.  0 and NULLs when the
 * thread has none.  A driver compares the count before and after its
 * connect call: unchanged means the connection did not go through conmgr
 * (or not through libpq-cm).  An application has PQhost() and PQport().
 */
extern unsigned long PQcmLastInstance(const char **host, const char **port);

#ifdef __cplusplus
}
#endif

#endif							/* LIBPQ_CM_H */
