/*-------------------------------------------------------------------------
 *
 * cm_int.h
 *	  libpq-cm internals: the connection handle and the functions the
 *	  library's files share.
 *
 * The application never holds a real libpq PGconn: it holds a cm_conn,
 * which owns the real connection to the instance ("inner") once there is
 * one, and conmgr's socket when the connection went through conmgr.  Every
 * exported function that takes a PGconn * turns a cm_conn into its inner
 * connection (cm_inner()) and calls the real libpq function.  Pointers
 * that are not ours are real PGconns -- libpq calls many of its own
 * exported functions through the PLT, so our wrappers receive its internal
 * calls too -- and are passed straight through.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CM_INT_H
#define CM_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "libpq-cm.h"
#include "pq_newer.h"
#include "cmproto.h"

#define CM_CONN_MAGIC		UINT64_C(0x21216e6e6f634d43)	/* "CMconn!!" */
#define CM_ERRBUF_SIZE		4096
#define CM_MAX_DESTS		64		/* entries of one host list */

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

/* A real libpq connection attempt still to make for this destination. */
typedef struct cm_attempt
{
	bool		whole;			/* the application's own options, untouched */
	int			first_dest;		/* a run of postmasters: dests[first..last] */
	int			last_dest;
	int			instance;		/* a conmgr candidate: its number, else -1 */
	bool		numeric;		/* the candidate's host is an address: it
								 * goes to libpq as hostaddr too */
	char		host[CMPROTO_HOST_MAX + 1];
	char		port[8];
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

typedef struct cm_conn
{
	uint64_t	magic;			/* CM_CONN_MAGIC while alive */
	PGconn	   *inner;			/* real connection, or NULL */
	PGconn	   *spent;			/* the last failed attempt, kept for its
								 * error state (needs-password & co.) */
	cm_phase	phase;
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
	bool		classifying;	/* classifying a prefer-* list, see
								 * connect.c */
	int			pass;			/* 0 one pass; 1 strict, 2 fallback */
	int8_t		kind[CM_MAX_DESTS]; /* what that pass found (CMK_*) */

	/* probe and conmgr session */
	int			fd;				/* probe socket, then conmgr's socket */
	struct addrinfo *ai;		/* addresses of the current destination */
	struct addrinfo *ai_cur;
	char		cur_addr[64];	/* numeric address being tried */
	bool		loopback;		/* every address of the destination is a
								 * loopback one: its owner is checked */
	uint8_t		rbuf[CMPROTO_PG_MAX_ERROR + 2 * CMPROTO_MAX_MSG];
	size_t		rlen;
	bool		got_error_response; /* conmgr's ErrorResponse read */
	bool		conmgr_met;		/* fd is a session with conmgr (HELLO read) */
	int			pipelined;		/* protocol version of a RESOLVE sent with
								 * the probe, or 0 */
	int			cm_instance;	/* instance reached through conmgr, or -1 */
	double		deadline;		/* sync mode: end of this destination's time */

	/* real connection attempts queued for the current destination */
	cm_attempt	attempts[CMPROTO_MAX_INSTANCES + 2];
	int			nattempts;
	int			ai_next;		/* next attempt to start */

	cm_settings settings;
	/* per destination: the options connection (options.c), or NULL */
	PGconn	   *opts_pg[CM_MAX_DESTS];
	char		errbuf[CM_ERRBUF_SIZE];
	size_t		errlen;

	/* watcher (watcher.c); watch_slot, sql_fd and lost change under its lock */
	int			watch_slot;		/* index in the watch table, or -1 */
	int			sql_fd;			/* our private duplicate of inner's socket
								 * (F_DUPFD_CLOEXEC), or -1: the only
								 * descriptor the watcher shuts down */
	volatile int lost;			/* conmgr said down, or went away */
	volatile int cm_polled;		/* the application asked PQcmSocket() */
} cm_conn;

/* real.c */
extern __thread int cm_in_real;
extern void *cm_real_lookup(const char *name, void **slot);

/*
 * The real libpq's function "name": the next definition after ours in the
 * symbol search order (dlsym(RTLD_NEXT)), looked up once per call site.
 */
#define REAL(name) \
	({ \
		static void *real_slot_; \
		void	   *real_p_ = __atomic_load_n(&real_slot_, __ATOMIC_ACQUIRE); \
		if (real_p_ == NULL) \
			real_p_ = cm_real_lookup(#name, &real_slot_); \
		(__typeof__(&name)) real_p_; \
	})

/* conn.c */
extern void cm_check_lost(cm_conn *c);

/*
 * Ours, or NULL for a real libpq PGconn (or NULL).  A real PGconn starts
 * with a pointer, which never equals the magic, so reading the first eight
 * bytes of either kind is safe.  Inline, with cm_inner(): every forwarded
 * call of every query goes through both (docs/benchmarks.md, figure 3).
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
extern void cm_errorf(cm_conn *c, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));

/* connect.c */
extern PostgresPollingStatusType cm_poll(cm_conn *c);
extern int	cm_pass_target(const cm_conn *c);
extern void cm_apply_settings(cm_conn *c);

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

/* probe.c: results of the probe and resolve steps */
typedef enum cm_step
{
	CMS_MORE,					/* wait for the socket, then call again */
	CMS_PROBE_SENT,				/* connected and probe sent: wait to read */
	CMS_POSTMASTER,				/* the destination is a PostgreSQL server */
	CMS_CONMGR,					/* conmgr: RESOLVE sent */
	CMS_REPROBE,				/* conmgr no longer speaks the version of
								 * the RESOLVE sent with the probe: probe
								 * the same destination again */
	CMS_CANDIDATES,				/* the candidate list is complete */
	CMS_FAILED					/* the destination failed; errbuf says why */
} cm_step;

extern bool cm_known_postmaster(const cm_dest *d);
extern void cm_remember_postmaster(const cm_dest *d);
extern cm_step cm_probe_start(cm_conn *c);
extern cm_step cm_probe_connected(cm_conn *c);
extern cm_step cm_probe_read(cm_conn *c);
extern cm_step cm_resolve_read(cm_conn *c);
extern void cm_close_fd(cm_conn *c);
extern bool cm_send_attached(cm_conn *c, int instance, int backend_pid);
extern const char *cm_dest_addr(const cm_conn *c);

/* trust.c */
extern bool cm_all_loopback(const struct addrinfo *ai);
extern bool cm_named_conmgr(const cm_dest *d, char *why, size_t whylen);
extern bool cm_trusted_server(int fd, char *why, size_t whylen);
extern bool cm_candidate_valid(const cmproto_msg *m, char *why, size_t whylen);

/* watcher.c */
extern void cm_watch(cm_conn *c, int sql_sock);
extern void cm_unwatch(cm_conn *c);
extern void cm_mark_lost(cm_conn *c);
extern void cm_sql_release(cm_conn *c);

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

#endif							/* CM_INT_H */
