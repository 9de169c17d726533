/*-------------------------------------------------------------------------
 *
 * listener.h
 *	  The listener role's own declarations, shared by its files.
 *
 * main.c		the loop: signals, the epoll set, the next timeout, stops
 * sessions.c	the session table: states, time-limit queues, output, close
 * protocol.c	the application protocol: startup packets, RESOLVE,
 *				ATTACHED, down-notices
 * control.c	the control socket (cm_ctl status), never blocking
 * accept.c		listen sockets and accepting, with the spare descriptor
 *
 * Every file runs in the one listener process; the state below is its
 * state, shared by those files and by nothing else.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LISTENER_H
#define LISTENER_H

#include <stdbool.h>
#include <stdint.h>

#include "cmloglimit.h"
#include "cmproto.h"
#include "conmgr.h"

#define LSN_MAX_LISTEN	8
#define LSN_HANDSHAKE_SECS 10	/* connect to RESOLVE, at most */
#define LSN_ANSWER_US	INT64_C(1000000)	/* a control answer written within */
#define LSN_EVICT_AGE_US INT64_C(1000000)	/* a handshake evictable after */
#define LSN_INBUF		(CMPROTO_PG_MAX_STARTUP + 4)	/* in STARTUP */
#define LSN_INBUF_SMALL CMPROTO_MAX_MSG /* after it */
#define LSN_LOG_BUDGET	50		/* noise lines per window, all sources */
#define LSN_HOSTLEN		64		/* a numeric address, with a scope */

typedef enum app_state
{
	APP_FREE,
	APP_STARTUP,
	APP_HELLO,
	APP_RESOLVED,
	APP_ATTACHED,
	APP_CONTROL,				/* cm_ctl on the control socket */
	APP_ANSWERING				/* its answer being written */
} app_state;

extern const char *const app_state_names[];

typedef struct app
{
	app_state	state;
	int			fd;
	int			instance;		/* when ATTACHED */
	uint64_t	downs_seen;		/* the slot's downs counter at attach */
	uint64_t	offered;		/* bit per instance offered as candidate */
	uint32_t	client_pid;
	int			target;			/* enum cmproto_target, -1 before RESOLVE */
	int			version;		/* protocol version of its RESOLVE */
	int64_t		since;			/* connected, then attached (wall clock us,
								 * for cm_ctl status) */
	int64_t		timer_from;		/* its time limit runs from (cmclock_us()) */
	int			q_prev;			/* timer queue links (indices), -1 = none */
	int			q_next;
	int			free_next;		/* free list link (index), -1 = none */
	char		host[LSN_HOSTLEN];	/* the peer's address, for the log limit */
	char		peer[LSN_HOSTLEN + 8];	/* address:port */
	size_t		inlen;
	size_t		incap;			/* LSN_INBUF in STARTUP, then LSN_INBUF_SMALL */
	uint8_t    *inbuf;
	char	   *out;			/* ANSWERING: the control answer */
	size_t		outlen;
	size_t		outoff;			/* written so far */
	uint32_t	gen;			/* bumped per session, tags its epoll events */
} app;

/*
 * The sessions whose state has a time limit, one queue per limit, each in
 * the order its sessions joined it, so that only its head can be due
 * (lsn_expire()).  app_set_state() keeps them.
 */
typedef enum lsn_queue_id
{
	LSN_Q_NONE = -1,			/* ATTACHED, FREE: no time limit */
	LSN_Q_HANDSHAKE,			/* STARTUP, HELLO, CONTROL: from connecting */
	LSN_Q_RESOLVED,				/* RESOLVED: from the candidates */
	LSN_Q_ANSWER,				/* ANSWERING: from the answer */
	LSN_NQUEUES
} lsn_queue_id;

typedef struct lsn_queue
{
	int			head;			/* oldest, -1 = empty */
	int			tail;
} lsn_queue;

/*
 * One epoll set holds every descriptor the role waits on, so that a wake-up
 * costs what is ready, not what is open (poll() does the kernel's
 * per-socket work for every descriptor it is given, on every call).  An
 * event's data is a session's index and generation, or one of the tags
 * below for the role's own descriptors.
 */
#define EV_TAG			UINT64_C(0xffffffff00000000)
#define EV_DEATH		(EV_TAG | 1)
#define EV_WAKE			(EV_TAG | 2)
#define EV_CONTROL		(EV_TAG | 3)
#define EV_LISTEN		(EV_TAG | 16)	/* + index in lsn_listen_fds[] */

extern cm_ctx *lsn_ctx;
extern int	lsn_ep_fd;
extern app *lsn_apps;
extern int	lsn_napps_alloc;	/* slots in lsn_apps[] */
extern int	lsn_napps;			/* sessions open */
extern lsn_queue lsn_queues[LSN_NQUEUES];
extern route_reader lsn_routes;
extern cmloglimit lsn_noise;

/* main.c */
extern bool lsn_ep_set(int op, int fd, uint32_t events, uint64_t data);
extern uint64_t lsn_ev_data(const app *a);

/* sessions.c */
extern app *lsn_session_new(void);
extern void app_set_state(app *a, app_state state);
extern void lsn_log_noise(const char *host, const char *kind, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));
extern void lsn_log_window(int64_t now);
extern void lsn_hold(app *a);
extern void lsn_release(app *a);
extern void app_close(app *a);
extern bool app_flush(app *a);
extern bool app_write(app *a, const void *buf, size_t len);
extern size_t app_encode(const cmproto_msg *m, uint8_t *buf, size_t cap);
extern bool app_send(app *a, const cmproto_msg *m);
extern void app_send_error(app *a, int code, const char *why);
extern void app_reject(app *a, int code, const char *why);
extern void pg_reject(app *a, const char *sqlstate, const char *message, const char *hint);
extern void app_shrink_inbuf(app *a);
extern int64_t lsn_sessions_timer(int64_t now);
extern bool lsn_evict_handshake(const char *why);

/* protocol.c */
extern void app_read(app *a);
extern void app_send_down(app *a, int reason);
extern void check_instances(void);

/* control.c */
extern int	lsn_ctl_fd;			/* the control socket, CMDATA/conmgr.ctl */
extern void ctl_open(void);
extern void ctl_read(app *a);
extern void ctl_write(app *a);

/* accept.c */
extern int	lsn_listen_fds[LSN_MAX_LISTEN];
extern int	lsn_nlisten;
extern void lsn_open(void);
extern void lsn_open_spare(void);
extern void lsn_accept(int lfd, bool control);
extern bool lsn_accepting(void);
extern int64_t lsn_accept_timer(int64_t now);

#endif							/* LISTENER_H */
