/*-------------------------------------------------------------------------
 *
 * forwarder.h
 *	  The forwarder role's own declarations, shared by its files.
 *
 * main.c		the loop: signals, the epoll set, deadlines, dispatch, stops
 * table.c		the session table as data: slots, free stack, deadline
 *				queues (no system calls; regress/unit/test_fwtable.c)
 * sessions.c	the sessions: states and their one setter, the end of a
 *				session, what its sockets wait for, the refusal
 * accept.c		accepting on the forward ports, the hand-off of clients
 *				between forwarder processes
 * connect.c	the first packet, the choice of an instance, the connect
 * resolve.c	the instances' addresses, names looked up by a thread
 * cancel.c		a CancelRequest, sent on to the instances that are up
 * relay.c		bytes both ways with splice()
 * keywatch.c	a session's BackendKeyData, read as it passes (no system
 *				calls; regress/unit/test_fwkeywatch.c)
 * cut.c		sessions cut when their instance is lost or no longer fits
 *
 * Every file runs in each forwarder process (forwarder_processes of them,
 * each with sessions of its own), in its loop but for resolve.c's lookup
 * thread; the state below is the loop's, shared by those files and by
 * nothing else.  docs/conmgr.md,
 * "Forward ports", says what the role does for its clients.
 *
 *-------------------------------------------------------------------------
 */
#ifndef FORWARDER_H
#define FORWARDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>

#include "cmproto.h"
#include "conmgr.h"

#define FW_EPOLL_BATCH		256
#define FW_ACCEPT_BATCH		32
#define FW_PIPE_CHUNK		65536
#define FW_COPY_CHUNK		16384	/* a read through a buffer (relay.c) */
#define FW_BULK_MIN			8192	/* a read this large: splice() next */
#define FW_FIRST_TIMEOUT_MS	10000	/* for the first packet */

/* epoll data: kind in the top byte, then generation, then index */
#define EV_LISTEN	1
#define EV_CLIENT	2
#define EV_SERVER	3
#define EV_WAKE		4
#define EV_DEATH	5
#define EV_RESOLVED	6
#define EV_HANDOFF	7
#define EV_MAKE(kind, gen, idx) \
	(((uint64_t) (kind) << 56) | ((uint64_t) ((gen) & 0xFFFFFF) << 32) | (uint32_t) (idx))
#define EV_KIND(d)	((int) ((d) >> 56))
#define EV_GEN(d)	((uint32_t) (((d) >> 32) & 0xFFFFFF))
#define EV_IDX(d)	((uint32_t) (d))

typedef enum fw_state
{
	FW_FREE,
	FW_FIRST,					/* reading the client's first packet */
	FW_REFUSING,				/* 'N' sent: the ErrorResponse follows */
	FW_CONNECTING,				/* non-blocking connect to the instance */
	FW_RELAY,					/* bytes both ways */
	FW_CANCEL					/* a CancelRequest on its way to an instance */
} fw_state;

/*
 * The sessions whose state ends at a deadline, one queue per time limit
 * (table.c); fw_set_state() keeps them.
 */
typedef enum fw_queue_id
{
	FW_Q_NONE = -1,				/* FREE, RELAY: no deadline */
	FW_Q_FIRST,					/* FIRST, REFUSING: FW_FIRST_TIMEOUT_MS from
								 * accepting, or from the 'N' after failed
								 * connects */
	FW_Q_CONNECT,				/* CONNECTING, CANCEL:
								 * heartbeat_connect_timeout from the connect */
	FW_NQUEUES
} fw_queue_id;

/* What keywatch.c reads of the server's bytes. */
typedef enum fw_kw_state
{
	FW_KW_DONE,					/* not watching (any more) */
	FW_KW_ANSWER,				/* the answer to SSLRequest/GSSENCRequest */
	FW_KW_ANSWERED,				/* 'N': more answers, or the first message */
	FW_KW_HEADER,				/* a message's type and length */
	FW_KW_SKIP,					/* a message's body, not wanted */
	FW_KW_KEY					/* BackendKeyData's process ID and key */
} fw_kw_state;

typedef struct fw_keywatch
{
	fw_kw_state state;
	uint8_t		hdr[5];
	uint32_t	hdrlen;
	uint32_t	left;			/* of the body */
	uint32_t	seen;			/* bytes read in all */
	bool		found;
	uint8_t		key[8];			/* process ID and secret key, as sent */
} fw_keywatch;

typedef struct fw_sess
{
	fw_state	state;
	bool		counted;		/* in our shm_forwarder's sessions */
	bool		client;			/* counted in fw_shm->clients */
	bool		over_limit;		/* beyond max_connections: refused */
	bool		negotiating;	/* the first packet asks for TLS or GSSAPI */
	bool		asked_again;	/* FW_REFUSING: a second request got 'N' */
	bool		key_shared;		/* its key is in our shm_forwarder's keys */
	uint32_t	gen;
	int			cfd;			/* the client; -1 for FW_CANCEL */
	int			sfd;			/* the instance; -1 until connecting */
	int			port;			/* index in the forward ports */
	int			target;
	int			instno;			/* the instance connected to */
	uint64_t	downs;			/* its slot's downs when connected */
	int			cands[CMCONF_MAX_INSTANCES];	/* in the order to try */
	int			ncands;
	int			next_cand;
	char		fault[CMPROTO_ERRMSG_MAX + 1];	/* the refusal of a fault, or
												 * "" */
	uint8_t		first[CMPROTO_PG_CANCEL_MAX];	/* the first packet's head, or
												 * a whole CancelRequest */
	size_t		firstlen;
	size_t		firstneed;
	int64_t		deadline;		/* monotonic ms, FW_FIRST / FW_CONNECTING */
	int			pipes[2][2];	/* [0]: client -> server, [1]: back */
	size_t		inpipe[2];
	bool		bulk[2];		/* direction d moves with splice() */
	bool		eof[2];			/* source of direction d ended */
	bool		shut[2];		/* shutdown(SHUT_WR) passed on */
	uint32_t	cmask,			/* epoll events registered */
				smask;
	fw_queue_id queue;			/* the deadline queue it is in */
	int			q_prev;			/* queue links (indices), -1 = none */
	int			q_next;
	int			free_next;		/* free stack link (index), -1 = none */
	fw_keywatch kw;				/* the server's BackendKeyData, in the clear */
} fw_sess;

typedef struct fw_queue
{
	int			head;			/* joined first, -1 = empty */
	int			tail;
} fw_queue;

typedef struct fw_table
{
	fw_sess    *s;				/* the slots */
	int			nalloc;			/* slots in s[] */
	int			nused;			/* sessions open */
	int			free_head;		/* top of the free stack, -1 = empty */
	fw_queue	queues[FW_NQUEUES];
} fw_table;

#define FW_TABLE_INIT {.free_head = -1, .queues = {{-1, -1}, {-1, -1}}}

/* An address of an instance, as getaddrinfo() gave it. */
#define FW_MAX_ADDRS		8
typedef struct fw_addr
{
	struct sockaddr_storage sa;
	socklen_t	len;
	int			family;
} fw_addr;

extern cm_ctx *fw_ctx;
extern int	fw_self;			/* this forwarder's number */
extern shm_forwarder *fw_shm;	/* its counts in shared memory */
extern int	fw_ep_fd;
extern route_reader fw_routes;
extern fw_table fw_tab;			/* the sessions */

/* main.c */
extern bool fw_ep_set(int op, int fd, uint32_t events, uint64_t data);

/* table.c */
extern fw_sess *fwtab_take(fw_table *t);
extern void fwtab_give(fw_table *t, fw_sess *s);
extern void fwtab_join(fw_table *t, fw_sess *s, fw_queue_id q);
extern fw_sess *fwtab_head(const fw_table *t, fw_queue_id q);

/* sessions.c */
extern void fw_set_state(fw_sess *s, fw_state state);
extern void fw_count_client(int delta);
extern void fw_count_session(const fw_sess *s, int delta);
extern fw_sess *fw_new(void);
extern int	fw_idx(const fw_sess *s);
extern int64_t fw_expire(int64_t now);
extern void fw_close_fd(int *fd);
extern void fw_end(fw_sess *s);
extern bool fw_watch(fw_sess *s, uint32_t cmask, uint32_t smask);
extern void fw_refuse(fw_sess *s, const char *sqlstate, const char *message);
extern const char *fw_target_name(const fw_sess *s);

/* accept.c */
extern void fw_open(void);
extern void fw_close_ports(void);
extern void fw_accept(int l);
extern void fw_handed(void);
extern int64_t fw_accept_timer(int64_t now);

/* connect.c */
extern int	fw_dial(int i);
extern void fw_first(fw_sess *s);
extern void fw_connect_next(fw_sess *s);
extern void fw_refusing_read(fw_sess *s);
extern void fw_connected(fw_sess *s);

/* resolve.c */
extern int	fw_resolve_fd;		/* eventfd: lookup thread -> loop */
extern void fw_resolve_start(void);
extern void fw_resolve_again(int i);
extern void fw_resolve_all(void);
extern void fw_resolved(void);
extern const fw_addr *fw_addrs(int i, int *n);

/* cancel.c */
extern void fw_key_share(fw_sess *s, bool on);
extern void fw_cancel(fw_sess *s);
extern void fw_cancel_send(fw_sess *s);

/* keywatch.c */
extern void fw_keywatch_start(fw_keywatch *w, bool answer_first);
extern bool fw_keywatch_feed(fw_keywatch *w, const uint8_t *p, size_t n);

/* relay.c */
extern void fw_relay(fw_sess *s);
extern void fw_relay_event(fw_sess *s, int kind, uint32_t events);

/* cut.c */
extern void fw_check_instances(void);

#endif							/* FORWARDER_H */
