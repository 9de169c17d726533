/*-------------------------------------------------------------------------
 *
 * pq_newer.h
 *	  The libpq functions that take a PGconn and are newer than libpq 15:
 *	  their prototypes, for a build against an older libpq-fe.h.
 *
 * One build of libpq-cm serves every libpq from 15 on, so it defines the
 * wrappers of functions its own header may not declare.  Each declaration
 * below stands under the LIBPQ_HAS_* macro that a libpq-fe.h declaring it
 * defines, so that the same source compiles against the headers of 15, 16,
 * 17 and 18.  Functions that came without such a macro are declared
 * unconditionally: repeating a prototype identical to the header's is
 * valid C.  The wrapper finds the real function at run time (REAL(), real.c);
 * what happens when the loaded libpq lacks it is said in real.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PQ_NEWER_H
#define PQ_NEWER_H

#include <libpq-fe.h>

/* libpq 16 */
extern int	PQconnectionUsedGSSAPI(const PGconn *conn);

/* libpq 17 */
#ifndef LIBPQ_HAS_ASYNC_CANCEL
typedef struct pg_cancel_conn PGcancelConn;
extern PGcancelConn *PQcancelCreate(PGconn *conn);
#endif
#ifndef LIBPQ_HAS_CHANGE_PASSWORD
extern PGresult *PQchangePassword(PGconn *conn, const char *user,
								  const char *passwd);
#endif
#ifndef LIBPQ_HAS_CHUNK_MODE
extern int	PQsetChunkedRowsMode(PGconn *conn, int chunkSize);
#endif
#ifndef LIBPQ_HAS_CLOSE_PREPARED
extern PGresult *PQclosePrepared(PGconn *conn, const char *stmt);
extern PGresult *PQclosePortal(PGconn *conn, const char *portal);
extern int	PQsendClosePrepared(PGconn *conn, const char *stmt);
extern int	PQsendClosePortal(PGconn *conn, const char *portal);
#endif
#ifndef LIBPQ_HAS_SEND_PIPELINE_SYNC
extern int	PQsendPipelineSync(PGconn *conn);
#endif

/* libpq 18 */
extern char *PQservice(const PGconn *conn);
#ifndef LIBPQ_HAS_FULL_PROTOCOL_VERSION
extern int	PQfullProtocolVersion(const PGconn *conn);
#endif
#ifndef LIBPQ_HAS_PROMPT_OAUTH_DEVICE
/* an enum in libpq 18's header: passed as an int */
typedef int PGauthData;
extern int	PQdefaultAuthDataHook(PGauthData type, PGconn *conn, void *data);
#endif

#endif							/* PQ_NEWER_H */
