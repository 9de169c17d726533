/*-------------------------------------------------------------------------
 *
 * cm_int.h
 *	  libpq-cm internals: the connection handle, the types its parts
 *	  share, and the prototypes of the files below the connect state
 *	  machine.
 *
 * The application never holds a real libpq PGconn: it holds a cm_conn,
 * which owns the real connection to the instance ("inner") once there is
 * one, and conmgr's socket when the connection went through conmgr.  The
 * functions that tell a cm_conn from a real PGconn and find its inner
 * connection are in handle.h.
 *
 * The files call each other in one direction only (libpq-cm/README.md):
 * connect.c, conn.c and forward.c, the entry points, call down into
 * probe.c, options.c, watcher.c, trust.c, errtext.c and real.c, and none
 * of those calls up.  This header declares only functions of the lower
 * files and holds no code.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CM_INT_H
#define CM_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "libpq-cm.h"
#include "pq_newer.h"
#include "cmproto.h"
#include "errtext.h"

#define CM_CONN_MAGIC		UINT64_C(0x21216e6e6f634d43)	/* "CMconn!!" */
#define CM_MAX_DESTS		64	/* entries of one host list */

/* One entry of the application's host list. */
typedef struct cm_dest
{
	char	   *host;			/* host name, address or socket directory */
	char	   *hostaddr;		/* numeric address, or NULL */
	char	   *port;			/* port as given (text) */
	bool		unix_socket;	/* a socket directory: never conmgr */
} cm_dest;

/* What a destination turned out to be (classifying prefer-* lists). */
#define CMK_UNKNOWN		0
#define CMK_POSTMASTER	1
#define CMK_CONMGR		2
#define CMK_FAILED		3

/* Where a connection is in its life; see connect.c. */
typedef enum cm_phase
{
	CMP_NEXT_DEST,				/* about to look at the next destination */
	CMP_PROBE_CONNECT,			/* non-blocking connect for the probe */
	CMP_PROBE_WAIT,				/* probe sent, waiting for G/N or conmgr */
	CMP_RESOLVE_WAIT,			/* RESOLVE sent, reading candidates */
	CMP_BACKEND,				/* real libpq connecting ("inner") */
	CMP_OK,						/* connected */
	CMP_FAILED					/* every destination failed */
} cm_phase;

/* One instance conmgr offered (a CANDIDATE message). */
typedef struct cm_candidate
{
	int			instance;
	bool		numeric;		/* host is an address: it goes to libpq as
								 * hostaddr too */
	char		host[CMPROTO_HOST_MAX + 1];
	char		port[8];
} cm_candidate;

/* A real libpq connection attempt still to make for this destination. */
typedef struct cm_attempt
{
	bool		whole;			/* the application's own options, untouched */
	int			first_dest;		/* a run of postmasters: dests[first..last] */
	int			last_dest;
	const cm_candidate *cand;	/* else conmgr's candidate (in the session,
								 * which outlives the attempt) */
	const char *tsa;			/* target_session_attrs to give libpq */
} cm_attempt;

typedef struct cm_kv
{
	char	   *key;
	char	   *val;
} cm_kv;

/* Settings an application made that a new inner connection must inherit. */
typedef struct cm_settings
{
	bool		has_receiver;
	PQnoticeReceiver receiver;
	void	   *receiver_arg;
	bool		has_processor;
	PQnoticeProcessor processor;
	void	   *processor_arg;
	bool		has_verbosity;
	PGVerbosity verbosity;
	bool		has_context;
	PGContextVisibility context;
	FILE	   *trace;
	bool		has_trace_flags;
	int			trace_flags;
	bool		has_nonblocking;
	int			nonblocking;
} cm_settings;

/*
 * The socket to the destination being tried, and what was read from it:
 * the probe, then, when the destination is conmgr, the session with it,
 * which a connection made through conmgr keeps for its whole life
 * (probe.c owns it; watcher.c watches fd).
 */
typedef struct cm_session
{
	int			fd;				/* probe socket, then conmgr's socket */
	struct addrinfo *ai;		/* addresses of the destination */
	struct addrinfo *ai_cur;
	char		cur_addr[64];	/* numeric address being tried */
	bool		loopback;		/* every address of the destination is a
								 * loopback one: its owner is checked */
	uint8_t		rbuf[CMPROTO_PG_MAX_ERROR + 2 * CMPROTO_MAX_MSG];
	size_t		rlen;
	bool		got_error_response; /* conmgr's ErrorResponse read */
	bool		conmgr_met;		/* fd is a session with conmgr (HELLO read) */
	int			pipelined;		/* protocol version of a RESOLVE sent with the
								 * probe, or 0 */
	/* the candidate list read so far (the RESOLVE's answer) */
	cm_candidate cand[CMPROTO_MAX_INSTANCES + 2];
	int			ncand;
} cm_session;

/* What the connect state machine asks of probe.c for one destination. */
typedef struct cm_request
{
	int			target;			/* enum cmproto_target of this pass */
	const char *app;			/* application_name to send, or NULL */
	bool		classifying;	/* a first look at a prefer-* list: no RESOLVE
								 * with the probe, nothing learnt of a
								 * conmgr's version */
} cm_request;

/* What a step of the probe or the resolve reached. */
typedef enum cm_step
{
	CMS_MORE,					/* wait for the socket, then call again */
	CMS_PROBE_SENT,				/* connected and probe sent: wait to read */
	CMS_POSTMASTER,				/* the destination is a PostgreSQL server */
	CMS_CONMGR,					/* conmgr: RESOLVE sent */
	CMS_REPROBE,				/* conmgr no longer speaks the version of the
								 * RESOLVE sent with the probe: probe the same
								 * destination again */
	CMS_CANDIDATES,				/* the candidate list is complete */
	CMS_FAILED					/* the destination failed; err says why */
} cm_step;

/*
 * The steps of one destination (probe.c), in the order the connect state
 * machine takes them.
 */
typedef enum cm_probe_op
{
	CMO_START,					/* resolve its name, connect, send the probe */
	CMO_CONNECTED,				/* the connect finished (socket writable) */
	CMO_PROBE_READ,				/* read the answer to the probe */
	CMO_RESOLVE_READ			/* read conmgr's candidate list */
} cm_probe_op;

/*
 * A step's result: where it got to, and the messages it has for the
 * connection's error message (libpq's words, each line ending in a
 * newline; empty when it has none).
 */
typedef struct cm_result
{
	cm_step		step;
	cm_text		err;
} cm_result;

typedef struct cm_conn
{
	uint64_t	magic;			/* CM_CONN_MAGIC while alive */
	PGconn	   *inner;			/* real connection, or NULL */
	PGconn	   *spent;			/* the last failed attempt, kept for its error
								 * state (needs-password & co.) */
	cm_phase	phase;			/* changed only by connect.c's set_phase() */
	bool		sync;			/* PQconnectdb & co.: we wait ourselves */

	/* the application's options, flattened (last value of each wins) */
	cm_kv	   *opts;
	int			nopts;
	char	   *orig_conninfo;	/* PQconnectStart's string, or NULL */
	char	  **orig_keys;		/* else the original arrays */
	char	  **orig_vals;
	int			orig_expand;
	bool		passthrough;	/* a case we leave entirely to libpq */
	const char *tsa;			/* target_session_attrs (static string) */
	int			target;			/* enum cmproto_target */
	int			connect_timeout;	/* seconds, 0 = none */

	cm_dest		dests[CM_MAX_DESTS];
	int			ndests;
	int			di;				/* current destination */
	bool		classifying;	/* classifying a prefer-* list, see connect.c */
	int			pass;			/* 0 one pass; 1 strict, 2 fallback */
	int8_t		kind[CM_MAX_DESTS]; /* what that pass found (CMK_*) */

	cm_session	sess;			/* probe, then conmgr session */
	int			cm_instance;	/* instance reached through conmgr, or -1 */
	int64_t		deadline;		/* sync mode: end of this destination's time
								 * (cmclock_ms()), or 0 */

	/* real connection attempts queued for the current destination */
	cm_attempt	attempts[CMPROTO_MAX_INSTANCES + 2];
	int			nattempts;
	int			ai_next;		/* next attempt to start */

	cm_settings settings;
	/* per destination: the options connection (options.c), or NULL */
	PGconn	   *opts_pg[CM_MAX_DESTS];
	cm_text		err;			/* the error message while there is no inner
								 * connection to ask */

	/* watcher (watcher.c); watch_slot, sql_fd and lost change under its lock */
	int			watch_slot;		/* index in the watch table, or -1 */
	int			sql_fd;			/* our private duplicate of inner's socket
								 * (F_DUPFD_CLOEXEC), or -1: the only
								 * descriptor the watcher shuts down */
	volatile int lost;			/* conmgr said down, or went away */
	volatile int cm_polled;		/* the application asked PQcmSocket() */
} cm_conn;

/* options.c */
extern cm_conn *cm_conn_new(const char *conninfo, const char *const *keys,
							const char *const *vals, int expand);
extern void cm_conn_free(cm_conn *c);
extern const char *cm_opt(const cm_conn *c, const char *key);
extern PGconn *cm_start_real(cm_conn *c, const cm_attempt *a, bool sync);
extern PGconn *cm_start_passthrough(cm_conn *c, bool sync);
extern PGconn *cm_opts_conn(cm_conn *c);
extern void cm_opts_restore(const cm_conn *c, PQconninfoOption *o);
extern void cm_opts_free(cm_conn *c);

/* probe.c */
extern bool cm_known_postmaster(const cm_dest *d);
extern cm_result cm_probe_step(cm_probe_op op, cm_session *s,
							   const cm_dest *d, const cm_request *q);
extern bool cm_send_attached(cm_session *s, int instance, int backend_pid);
extern void cm_session_close(cm_session *s);
extern void cm_session_free(cm_session *s);

/* trust.c */
extern bool cm_all_loopback(const struct addrinfo *ai);
extern bool cm_named_conmgr(const cm_dest *d, char *why, size_t whylen);
extern bool cm_trusted_server(int fd, char *why, size_t whylen);
extern bool cm_candidate_valid(const cmproto_msg *m, char *why, size_t whylen);

/* watcher.c */
extern void cm_watch(cm_conn *c, int sql_sock);
extern void cm_unwatch(cm_conn *c);
extern void cm_check_lost(cm_conn *c);
extern void cm_sql_release(cm_conn *c);

#endif							/* CM_INT_H */
