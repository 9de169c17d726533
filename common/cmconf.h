/*-------------------------------------------------------------------------
 *
 * cmconf.h
 *	  conmgr.conf: the parsed configuration and its parser.
 *
 * The parser reads the whole file once into a struct cmconf that the
 * daemon's roles read and never change (a reload parses into a new struct;
 * the supervisor takes over only the reloadable parameters).  It never stops at the first
 * problem: every error and warning is collected, each naming the file,
 * the line and the parameter.  It allocates nothing, prints nothing and
 * never exits.  docs/configuration.md is the user's reference.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CMCONF_H
#define CMCONF_H

#include <stdbool.h>
#include <stddef.h>

#define CMCONF_FILENAME			"conmgr.conf"
#define CMCONF_MAX_INSTANCES	64	/* instance numbers 0..63 */
#define CMCONF_HOST_MAX			255
#define CMCONF_IDENT_MAX		63
#define CMCONF_LINE_MAX			4096
#define CMCONF_NAME_MAX			63	/* longest parameter name */
#define CMCONF_FILE_MAX			(1024 * 1024)
#define CMCONF_MAX_DIAGS		64
#define CMCONF_DIAG_LEN			400

/* log_destination bits */
#define CMCONF_LOG_STDERR		0x01
#define CMCONF_LOG_SYSLOG		0x02

/* One instance of the set, by its number. */
struct cmconf_instance
{
	bool		configured;		/* has backend_host<N> or backend_hostaddr<N> */
	char		host[CMCONF_HOST_MAX + 1];	/* "" when not set */
	char		hostaddr[CMCONF_HOST_MAX + 1];	/* "" when not set; wins */
	int			backend_port;
	int			watchdog_port;
};

#define CMCONF_LISTEN_MAX		1023

/*
 * forward_ports: a port per target_session_attrs value at most (7 of
 * them), as "TARGET=PORT, ...".
 */
#define CMCONF_MAX_FORWARDS		7

/* forwarder_processes: at most this many, also when chosen by processors */
#define CMCONF_MAX_FORWARDERS	16

struct cmconf_forward
{
	int			target;			/* cmproto_target */
	int			port;
};

struct cmconf_forwards
{
	char		text[CMCONF_LISTEN_MAX + 1];	/* as written; "" = none */
	int			n;
	struct cmconf_forward f[CMCONF_MAX_FORWARDS];
};

struct cmconf
{
	int			port;
	char		listen_addresses[CMCONF_LISTEN_MAX + 1];	/* "*" = all */
	struct cmconf_forwards forward_ports;	/* the forwarder's ports */
	int			forwarder_processes;	/* 0 = one per processor */
	int			heartbeat_interval; /* seconds */
	int			heartbeat_timeout;	/* seconds */
	int			heartbeat_connect_interval; /* seconds */
	int			heartbeat_connect_timeout;	/* seconds */
	int			log_destination;	/* CMCONF_LOG_* bits */
	int			syslog_facility;	/* n of LOCALn, 0..7 */
	char		syslog_ident[CMCONF_IDENT_MAX + 1];
	int			log_min_messages;	/* enum cmlog_level */
	int			max_connections;	/* 0 = no limit */
	int			attach_timeout; /* seconds, candidates to ATTACHED */
	char		heartbeat_key_file[CMCONF_HOST_MAX + 1];	/* "" = no key */
	int			ninstances;		/* configured instances */
	int			inst_end;		/* one past the highest configured instance
								 * number: no instance at or above it */
	struct cmconf_instance inst[CMCONF_MAX_INSTANCES];
};

struct cmconf_diag
{
	int			level;			/* CMLOG_WARNING or CMLOG_ERROR */
	int			line;			/* 0 when about the whole file */
	char		msg[CMCONF_DIAG_LEN];	/* "file:line: ..." */
};

struct cmconf_diags
{
	int			count;			/* entries in d[] */
	int			nerrors;
	int			nwarnings;
	int			dropped;		/* not stored: d[] was full */
	struct cmconf_diag d[CMCONF_MAX_DIAGS];
};

/* A difference found by cmconf_compare(); "" stands for "not set". */
typedef void (*cmconf_change_fn) (void *arg, const char *name,
								  const char *oldval, const char *newval,
								  bool reloadable);

/* cmconf.c */
extern void cmconf_set_defaults(struct cmconf *conf);
extern int	cmconf_parse_buffer(const char *filename, const char *text,
								size_t len, struct cmconf *conf,
								struct cmconf_diags *diags);
extern int	cmconf_load_file(const char *path, struct cmconf *conf,
							 struct cmconf_diags *diags);
extern size_t cmconf_format(const struct cmconf *conf, char *buf, size_t cap);
extern const char *cmconf_connect_host(const struct cmconf_instance *inst);

/*
 * A forwarder's descriptors besides its sessions, listen sockets and a
 * CancelRequest's copies: the 9 every role may hold (standard streams,
 * log pipe, the supervisor's pipe and eventfds, its epoll set), its
 * lookup thread's eventfd and the socket of a lookup in progress, and a
 * client beyond max_connections, accepted to be refused or cancelling;
 * and per forwarder process, its wake-up eventfd and the two ends of its
 * hand-off socket pair (every forwarder holds all of them).
 */
#define CMCONF_FW_FIXED_FILES	12
#define CMCONF_FW_FILES_PER_PROCESS	3
extern int	cmconf_forwarders(const struct cmconf *conf);
extern int	cmconf_nofile_needed(const struct cmconf *conf);
extern int	cmconf_compare(const struct cmconf *oldconf, const struct cmconf *newconf,
						   cmconf_change_fn fn, void *arg);
extern void cmconf_apply_reloadable(struct cmconf *dst, const struct cmconf *src);

#endif							/* CMCONF_H */
