/*-------------------------------------------------------------------------
 *
 * conmgr.h
 *	  What the supervisor hands its roles, and the daemon's logging.
 *
 * The supervisor builds one cm_ctx before it forks; every role gets the
 * same (read-only) configuration, the shared instance table, the eventfds
 * that heartbeat roles write to wake the listener and each forwarder, and
 * the read end of the pipe whose write end only the supervisor holds (end
 * of file there means the supervisor is gone and the role must exit).
 * The forwarders also get the forward ports' listen sockets, which the
 * supervisor opens once and keeps, so that the ports stay open while a
 * forwarder restarts, and a socket pair each, on which a forwarder hands
 * a client it accepted to a less busy one.  The configuration is
 * the one read at start: a reload changes only the logging settings, and
 * those are read from the shared table (shm.h), not from here.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CONMGR_H
#define CONMGR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>
#include <stdnoreturn.h>

#include "cmconf.h"
#include "cmlog.h"
#include "cmproto.h"
#include "shm.h"

/*
 * The listen sockets of all forward ports together: an IPv4 and an IPv6
 * one per port and entry of listen_addresses.
 */
#define CM_FW_MAX_LISTEN	64

typedef struct cm_ctx
{
	const struct cmconf *conf;
	shm_header *shm;
	int			wake_fd;		/* eventfd: heartbeat roles -> listener */
	int			nforwarders;	/* forwarder processes; 0 = no forward_ports */
	/* eventfds: heartbeat roles -> forwarder k */
	int			fw_wake_fd[CMCONF_MAX_FORWARDERS];
	/* datagram socket pairs: forwarder k reads [k][0], others send on [k][1] */
	int			fw_handoff[CMCONF_MAX_FORWARDERS][2];
	int			fw_nlisten;		/* the forward ports' listen sockets: */
	int			fw_listen_fd[CM_FW_MAX_LISTEN];
	int			fw_listen_port[CM_FW_MAX_LISTEN];	/* index in forward_ports */
	int			death_fd;		/* supervisor-death pipe, read end */
	const char *cmdata;
	const char *log_file;		/* conmgr -l, absolute; NULL = inherited
								 * stderr */
	uint8_t		key[1024];		/* heartbeat_key_file's bytes; zeroes outside
								 * the supervisor and the heartbeat roles */
	size_t		keylen;			/* 0 = no key */
} cm_ctx;

/* Role exit codes (the supervisor's contract). */
#define ROLE_EXIT_DONE		0	/* do not restart */
#define ROLE_EXIT_RESTART	1	/* restart after the back-off */
#define ROLE_EXIT_FATAL		2	/* configuration problem: stop conmgr */

/* log/log.c: the daemon's messages */
#include "log.h"

/* roles/logger.c */
extern noreturn void logger_main(cm_ctx *ctx, int readfd);

/* roles/listener/main.c */
extern noreturn void listener_main(cm_ctx *ctx);

/* roles/role_setup.c */
extern void role_stop_signals(void (*on_term) (int), void (*on_smart) (int));
extern int	role_listen_any(const char *addresses, int port, const char *what,
							int *fds, int max);
extern int	role_listen(const char *addresses, int port, const char *what,
						int *fds, int max);

/* roles/forwarder/main.c */
extern noreturn void forwarder_main(cm_ctx *ctx, int self);

/*
 * A change of an instance's slot: the listener and the forwarder look
 * again (heartbeat roles; the supervisor after repairing a slot).
 */
static inline void
cm_wake_routers(const cm_ctx *ctx)
{
	uint64_t	one = 1;

	(void) !write(ctx->wake_fd, &one, sizeof(one));
	for (int k = 0; k < ctx->nforwarders; k++)
		(void) !write(ctx->fw_wake_fd[k], &one, sizeof(one));
}

/* What routing makes of an instance (roles/route.c). */
typedef enum route_role
{
	ROUTE_DOWN = 0,				/* heartbeat not up, or not configured */
	ROUTE_STANDBY,				/* in recovery */
	ROUTE_PROMOTING,			/* in recovery, its promotion asked for */
	ROUTE_PRIMARY,				/* the primary on the highest timeline */
	ROUTE_STALE_PRIMARY,		/* a primary on an older timeline */
	ROUTE_CONFLICT				/* a primary in a configuration fault */
} route_role;

/* A configuration fault: conmgr will not choose a primary. */
typedef enum route_fault
{
	ROUTE_FAULT_NONE = 0,
	ROUTE_FAULT_TWO_PRIMARIES,	/* two primaries on the highest timeline */
	ROUTE_FAULT_SYSTEM_ID		/* instances of different databases */
} route_fault;

typedef struct route_view
{
	route_role	role[CMCONF_MAX_INSTANCES];
	uint32_t	max_timeline;	/* highest known (route_memory included); 0 =
								 * none */
	uint32_t	up_timeline;	/* highest among up instances; 0 = none said */
	int			promoting;		/* the promotion that makes primaries stale,
								 * -1 none */
	route_fault fault;
	int			fault_a;		/* the two instances it names, -1 if none */
	int			fault_b;
} route_view;

/*
 * The highest timeline seen of one database (system identifier), kept by
 * the caller of route_classify() from one call to the next.
 */
typedef struct route_memory
{
	uint64_t	system_identifier;	/* 0: nothing seen yet */
	uint32_t	timeline;
} route_memory;

/* An instance offered for a target, as a RESOLVE's CANDIDATE names it. */
typedef struct route_candidate
{
	int			instno;
	uint32_t	attrs;
} route_candidate;

/* roles/route.c */
extern void route_classify(const shm_slot *slots, const bool *up, int n,
						   route_memory *mem, route_view *v);
extern int	route_rank(int target, route_role role, uint32_t attrs);
extern int	route_choose(int target, const shm_slot *slots, const route_view *v, int n,
						 int64_t now_us, int64_t late_after_us, unsigned rot,
						 route_candidate *out);
extern bool route_fault_refuses(int target);
extern bool route_refuses(const route_view *v, int target, int ncandidates);
extern const char *route_role_name(route_role role);
extern const char *route_role_key(route_role role);

/*
 * What a process that routes keeps between reads of the shared table
 * (roles/route_view.c): its last consistent copy of each slot, what it
 * last logged of the roles, the highest timeline seen, and the rotation
 * among equal candidates of each target.  The listener has one; so may
 * any other role that must choose as a RESOLVE does.
 */
typedef struct route_reader
{
	shm_slot	slot_seen[CMCONF_MAX_INSTANCES];
	route_view	logged;
	bool		logged_valid;
	bool		quiet;			/* log nothing: the listener logs the changes */
	route_memory timelines_seen;
	unsigned	rotation[CMPROTO_TARGET_LAST + 1];
} route_reader;

/* roles/route_view.c */
extern void route_read(route_reader *r, const cm_ctx *ctx, shm_slot *slots, route_view *v);
extern void route_fault_text(const cm_ctx *ctx, const route_view *v, const shm_slot *slots,
							 int target, char *buf, size_t len);
extern int	route_resolve(route_reader *r, const cm_ctx *ctx, int target,
						  const shm_slot *slots, const route_view *v, route_candidate *out);

/* roles/heartbeat.c */
extern noreturn void heartbeat_main(cm_ctx *ctx, int instno);

/* supervisor.c */
extern int	supervisor_main(const char *cmdata, const char *log_file,
							int argc, char **argv);

#endif							/* CONMGR_H */
