/*-------------------------------------------------------------------------
 *
 * supervisor.c
 *	  The conmgr parent process: checks, shared table, roles, shutdown.
 *
 * Like the postmaster, it does none of the children's work: it refuses to
 * run as root, checks CMDATA and conmgr.conf and the open-files limit,
 * takes CMDATA/conmgr.pid under an exclusive lock, creates the shared
 * instance table, the listener's eventfd and the death pipe *before* it
 * forks, then forks the logger (first, so every line has a reader), the
 * listener and one heartbeat role per instance, and watches them.  A role that exits with 1 or dies from a signal is
 * restarted after a back-off (1 s, doubling up to 30 s while it keeps
 * dying within 10 s of its start); a dead heartbeat role's slot is
 * repaired first, so the listener never routes on a stale "up".  Exit
 * code 2 from a role is a fatal configuration problem: conmgr stops.
 *
 * Shutdown modes, as the postmaster's:
 *	 SIGTERM (smart)	 the listener stops accepting and exits once the last
 *						 application session has closed; heartbeats go on
 *						 meanwhile, so down-notices still reach them; then
 *						 the heartbeat roles are stopped
 *	 SIGINT (fast)		 the listener tells attached applications "conmgr
 *						 shutting down" and exits; then the heartbeat roles
 *						 are stopped
 *	 SIGQUIT (immediate) every role is killed at once
 * Roles still alive 5 s after their SIGTERM get SIGKILL.
 *
 * SIGHUP (cm_ctl reload) re-reads conmgr.conf.  A file with errors is
 * reported and changes nothing.  Otherwise the parameters that may change
 * at run time (the logging ones, marked in cmconf_param.c's table) are taken
 * over and published in the shared table, where every role reads them;
 * each other parameter that differs is named in the log as needing a
 * restart and keeps its value.  Roles are not signalled: they read the
 * published settings as they log.
 *
 * SIGUSR1 (cm_ctl logrotate) opens the log file (conmgr -l) again, here
 * and then in the logger, so that after "mv conmgr.log conmgr.log.1" the
 * next lines go to a new conmgr.log.
 *
 * The loop has the postmaster's ServerLoop's shape: signal handlers only
 * set a pending flag and wake the loop through a pipe; each turn handles
 * every pending flag in a process_*() function of its own, moves the
 * shutdown on (advance_shutdown), and ends in launch_missing_roles(), the
 * one place that starts roles.  Where the shutdown stands is one sup_state,
 * changed only by sup_set_state(), which logs each change at DEBUG1.  The
 * roles are rows of role_types[] (kind, ps title, main, restart policy,
 * shutdown stage): a new role is a row there and its main in conmgr.h.
 *
 *-------------------------------------------------------------------------
 */
#include <bsd/unistd.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cmclock.h"
#include "conmgr.h"
#include "supervisor.h"

#define SUP_KILL_AFTER_MS	5000	/* SIGTERM to SIGKILL */
#define SUP_REKILL_MS		60000	/* SIGKILL again, should one not suffice */
#define SUP_BACKOFF_MAX_MS	30000

/*
 * The supervisor's state, as the postmaster's PMState: which roles it
 * starts and what it waits for.  It moves only forward, from top to
 * bottom (a step may be skipped), and only through sup_set_state().
 */
typedef enum sup_state
{
	SUP_STARTING,				/* checks done; the roles are being started */
	SUP_RUNNING,				/* a role that dies is restarted after its
								 * back-off */
	SUP_STOP_SMART,				/* SIGTERM: the first-stopped roles (the
								 * listener) end once their sessions have; the
								 * others run on and are restarted as usual */
	SUP_STOP_FAST,				/* SIGINT: the first-stopped roles were sent
								 * SIGTERM, and get SIGKILL at kill_at */
	SUP_WAIT_ROLES,				/* every role but the logger was sent SIGTERM;
								 * nothing is restarted; SIGKILL at kill_at */
	SUP_WAIT_LOGGER,			/* the log pipe is closed: the logger drains
								 * it and exits */
	SUP_EXIT					/* every role is gone: conmgr stops */
} sup_state;

static const char *const sup_state_names[] = {
	[SUP_STARTING] = "starting",
	[SUP_RUNNING] = "running",
	[SUP_STOP_SMART] = "smart shutdown",
	[SUP_STOP_FAST] = "fast shutdown",
	[SUP_WAIT_ROLES] = "waiting for roles to exit",
	[SUP_WAIT_LOGGER] = "waiting for the logger to exit",
	[SUP_EXIT] = "exit",
};

typedef enum role_kind
{
	ROLE_LOGGER,				/* reads the log pipe; there is one */
	ROLE_LISTENER,
	ROLE_HEARTBEAT,
	ROLE_FORWARDER
} role_kind;

/* How many processes of a role run. */
typedef enum role_count
{
	ROLE_ONE,
	ROLE_PER_INSTANCE,			/* one per configured instance */
	ROLE_PER_FORWARDER			/* cmconf_forwarders(): forwarder_processes
								 * when forward_ports is set */
} role_count;

/*
 * When a role is restarted.  Every role follows the exit-code contract
 * of conmgr.h: 0 is done, 2 stops conmgr, and 1 or death by a signal is
 * a failure.
 */
typedef enum role_restart
{
	ROLE_RESTART_ON_FAILURE		/* after the back-off (1 s, doubling up to 30
								 * s while it keeps dying within 10 s) */
} role_restart;

/* How a role is stopped at shutdown; the stages run in this order. */
typedef enum role_stop
{
	ROLE_STOP_FIRST,			/* smart: SIGUSR1, it exits once its sessions
								 * have; fast: SIGTERM, SIGKILL 5 s later */
	ROLE_STOP_WITH_ROLES,		/* SIGTERM once the first stage is gone */
	ROLE_STOP_LAST				/* end of file on the log pipe, once every
								 * other role is gone */
} role_stop;

/* A role's main, as the supervisor calls it in the child; never returns. */
typedef void (*role_main_fn) (cm_ctx *ctx, int instno) __attribute__((__noreturn__));

/* A row of role_types[]: everything the supervisor knows about a role. */
typedef struct role_type
{
	role_kind	kind;
	const char *title;			/* ps title and log name, a printf format
								 * given the application port (ROLE_ONE), the
								 * instance's number, host and watchdog port
								 * (ROLE_PER_INSTANCE), or the process's
								 * number (ROLE_PER_FORWARDER) */
	role_count	count;
	role_main_fn main;
	role_restart restart;
	role_stop	stop;
	bool		owns_slot;		/* writes its instance's shared slot, which is
								 * repaired when it dies */
	bool		keeps_key;		/* keeps heartbeat_key_file's bytes */
} role_type;

/* A process of a role: one per ROLE_ONE row, one per instance or number. */
typedef struct role
{
	const role_type *type;
	int			instno;			/* the instance (ROLE_PER_INSTANCE), the
								 * forwarder's number (ROLE_PER_FORWARDER),
								 * else -1 */
	pid_t		pid;			/* 0 = not running */
	int64_t		started_at;		/* monotonic ms */
	int64_t		restart_at;		/* monotonic ms, 0 = none pending */
	int			backoff_ms;
} role;

static noreturn void logger_role(cm_ctx *c, int instno);
static noreturn void listener_role(cm_ctx *c, int instno);
static noreturn void forwarder_role(cm_ctx *c, int instno);

/*
 * The roles, in the order they are started.  The logger comes first, so
 * that every other role's first line has a reader.
 */
static const role_type role_types[] = {
	{ROLE_LOGGER, "logger", ROLE_ONE, logger_role,
	ROLE_RESTART_ON_FAILURE, ROLE_STOP_LAST, false, false},
	{ROLE_LISTENER, "listener :%d", ROLE_ONE, listener_role,
	ROLE_RESTART_ON_FAILURE, ROLE_STOP_FIRST, false, false},
	{ROLE_HEARTBEAT, "heartbeat %d %s:%d", ROLE_PER_INSTANCE, heartbeat_main,
	ROLE_RESTART_ON_FAILURE, ROLE_STOP_WITH_ROLES, true, true},
	{ROLE_FORWARDER, "forwarder %d", ROLE_PER_FORWARDER, forwarder_role,
	ROLE_RESTART_ON_FAILURE, ROLE_STOP_FIRST, false, false},
};

#define NROLE_TYPES		((int) (sizeof(role_types) / sizeof(role_types[0])))

static cm_ctx ctx;
static struct cmconf conf;		/* ours; a reload changes its logging part */
static sup_state state = SUP_STARTING;
static int64_t kill_at;			/* monotonic ms: SIGKILL to roles asked to
								 * stop (SUP_STOP_FAST, SUP_WAIT_*) */
static role roles[NROLE_TYPES * CMCONF_MAX_INSTANCES];
static int	nroles;
static int	selfpipe[2];
static int	logpipe[2];			/* roles -> logger; we keep both ends */
static int	deathpipe[2];		/* only we keep the write end */
static volatile sig_atomic_t pending_child,
			pending_smart,
			pending_fast,
			pending_quit,
			pending_reload,
			pending_logrotate;

static void
sup_signal(int sig)
{
	int			saved = errno;

	switch (sig)
	{
		case SIGCHLD:
			pending_child = 1;
			break;
		case SIGQUIT:
			pending_quit = 1;
			break;
		case SIGTERM:
			pending_smart = 1;
			break;
		case SIGHUP:
			pending_reload = 1;
			break;
		case SIGUSR1:
			pending_logrotate = 1;
			break;
		default:
			pending_fast = 1;
			break;
	}
	(void) !write(selfpipe[1], "x", 1);
	errno = saved;
}

/* The one place the state changes. */
static void
sup_set_state(sup_state newstate)
{
	if (newstate == state)
		return;
	cm_log(CMLOG_DEBUG1, "supervisor state changed from \"%s\" to \"%s\"",
		   sup_state_names[state], sup_state_names[newstate]);
	state = newstate;
}

static noreturn void
logger_role(cm_ctx *c, int instno)
{
	(void) instno;
	logger_main(c, logpipe[0]);
}

static noreturn void
listener_role(cm_ctx *c, int instno)
{
	(void) instno;
	listener_main(c);
}

static noreturn void
forwarder_role(cm_ctx *c, int instno)
{
	forwarder_main(c, instno);
}

static void
role_title(const role *r, char *buf, size_t len)
{
	const struct cmconf_instance *in;

	if (r->type->count == ROLE_PER_FORWARDER)
	{
		snprintf(buf, len, r->type->title, r->instno);
		return;
	}
	if (r->type->count != ROLE_PER_INSTANCE)
	{
		snprintf(buf, len, r->type->title, conf.port);
		return;
	}
	in = &conf.inst[r->instno];
	snprintf(buf, len, r->type->title, r->instno, cmconf_connect_host(in),
			 in->watchdog_port);
}

/*
 * The forward ports' listen sockets and the forwarders' hand-off pairs:
 * closed in a role that is not a forwarder (the listener must not keep a
 * forward port open), and here when a stop begins (no new clients).  The
 * wake-up eventfds stay: heartbeat roles write them.
 */
static void
close_forwarding(void)
{
	for (int i = 0; i < ctx.fw_nlisten; i++)
		close(ctx.fw_listen_fd[i]);
	ctx.fw_nlisten = 0;
	for (int k = 0; k < ctx.nforwarders; k++)
		for (int e = 0; e < 2; e++)
			if (ctx.fw_handoff[k][e] >= 0)
			{
				close(ctx.fw_handoff[k][e]);
				ctx.fw_handoff[k][e] = -1;
			}
}

/*
 * The child's side of launch(): our signal handlers and descriptors off,
 * then the role's main.
 */
static noreturn void
launch_child(const role *r, const char *title)
{
	close(selfpipe[0]);
	close(selfpipe[1]);
	close(deathpipe[1]);		/* else our own copy keeps the pipe open */
	sup_pidfile_close();
	signal(SIGCHLD, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGQUIT, SIG_DFL);
	signal(SIGUSR1, SIG_DFL);
	/* Reload is the supervisor's business; roles read the shared settings. */
	signal(SIGHUP, SIG_IGN);
	/* A terminal's ^C reaches the whole group: it is the supervisor's. */
	signal(SIGINT, SIG_IGN);

	/*
	 * Only heartbeat roles use the key; a listener or logger that leaks its
	 * memory (it faces applications, or writes what peers send) must not leak
	 * the key with it.
	 */
	if (!r->type->keeps_key)
	{
		explicit_bzero(ctx.key, sizeof(ctx.key));
		ctx.keylen = 0;
	}
	if (r->type->kind != ROLE_FORWARDER)
		close_forwarding();
	setproctitle("-conmgr: %s", title);
	if (r->type->kind == ROLE_LOGGER)
		close(logpipe[1]);
	else
	{
		close(logpipe[0]);
		cm_log_use_pipe(logpipe[1]);
	}
	r->type->main(&ctx, r->instno);
}

/*
 * Fork a role.  Every signal is blocked across fork(), as the postmaster
 * does, and stays blocked in the child until the role has installed its
 * own handlers (each role's main unblocks them).  Until then the child
 * carries our handlers, which would only set a flag in its copy of our
 * memory and write to a pipe it has closed: a stop signal sent to a role
 * just started would be lost.  The child puts them back to the defaults
 * before the role installs its own.
 */
static void
launch(role *r)
{
	char		title[320];
	pid_t		pid;
	sigset_t	all,
				saved;

	role_title(r, title, sizeof(title));
	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, &saved);
	pid = fork();
	if (pid < 0)
	{
		sigprocmask(SIG_SETMASK, &saved, NULL);
		cm_log(CMLOG_WARNING, "could not fork %s: %m", title);
		r->restart_at = cmclock_ms() + 1000;
		return;
	}
	if (pid == 0)
		launch_child(r, title);
	sigprocmask(SIG_SETMASK, &saved, NULL);
	r->pid = pid;
	r->started_at = cmclock_ms();
	r->restart_at = 0;
	cm_log(CMLOG_DEBUG1, "started %s (pid %d)", title, (int) pid);
}

static const char *
signame(int sig)
{
	const char *s = sigabbrev_np(sig);

	return s ? s : "?";
}

/*
 * Record the exit of role r with the given wait status: log it, and set
 * its restart time if it is to come back.  True if it asks conmgr to stop.
 */
static bool
record_exit(role *r, int status)
{
	char		title[320];
	pid_t		pid = r->pid;
	int64_t		now = cmclock_ms();

	r->pid = 0;
	role_title(r, title, sizeof(title));
	if (r->type->owns_slot)
	{
		shm_repair(&ctx.shm->slots[r->instno]);
		cm_wake_routers(&ctx);
	}
	/* its sessions went with it: they are no longer counted */
	if (r->type->kind == ROLE_FORWARDER)
		memset(&ctx.shm->fw[r->instno], 0, sizeof(ctx.shm->fw[r->instno]));
	if (state >= SUP_WAIT_ROLES)
		return false;
	if (WIFEXITED(status) && WEXITSTATUS(status) == ROLE_EXIT_FATAL)
	{
		cm_log(CMLOG_LOG, "%s (pid %d) exited with a fatal error; stopping", title, (int) pid);
		return true;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == ROLE_EXIT_DONE)
	{
		cm_log(CMLOG_LOG, "%s (pid %d) exited", title, (int) pid);
		return false;			/* done: not restarted */
	}
	if (WIFSIGNALED(status))
		cm_log(CMLOG_LOG, "%s (pid %d) was terminated by signal %d (SIG%s)%s",
			   title, (int) pid, WTERMSIG(status), signame(WTERMSIG(status)),
			   WCOREDUMP(status) ? " (core dumped)" : "");
	else
		cm_log(CMLOG_LOG, "%s (pid %d) exited with code %d", title, (int) pid,
			   WEXITSTATUS(status));
	if (r->type->restart != ROLE_RESTART_ON_FAILURE)
		return false;
	if (now - r->started_at < 10000)
		r->backoff_ms = r->backoff_ms ? r->backoff_ms * 2 : 1000;
	else
		r->backoff_ms = 1000;
	if (r->backoff_ms > SUP_BACKOFF_MAX_MS)
		r->backoff_ms = SUP_BACKOFF_MAX_MS;
	r->restart_at = now + r->backoff_ms;
	cm_log(CMLOG_LOG, "restarting %s in %d ms", title, r->backoff_ms);
	return false;
}

/* Roles still running that stop at the given stage. */
static int
live_roles(role_stop stage)
{
	int			n = 0;

	for (int i = 0; i < nroles; i++)
		if (roles[i].pid > 0 && roles[i].type->stop == stage)
			n++;
	return n;
}

/* Signal the running roles of one shutdown stage. */
static void
signal_stage(role_stop stage, int sig)
{
	for (int i = 0; i < nroles; i++)
		if (roles[i].pid > 0 && roles[i].type->stop == stage)
			kill(roles[i].pid, sig);
}

/* The logger is not asked to stop: it ends when the log pipe is closed. */
static void
signal_roles(int sig)
{
	for (int i = 0; i < nroles; i++)
		if (roles[i].pid > 0 && (roles[i].type->stop != ROLE_STOP_LAST || sig == SIGKILL))
			kill(roles[i].pid, sig);
}

static const role *
logger(void)
{
	for (int i = 0; i < nroles; i++)
		if (roles[i].type->kind == ROLE_LOGGER)
			return &roles[i];
	return NULL;
}

/* SIGTERM to every role but the logger; SIGKILL when they are slow. */
static void
stop_roles(void)
{
	sup_set_state(SUP_WAIT_ROLES);
	signal_roles(SIGTERM);
	kill_at = cmclock_ms() + SUP_KILL_AFTER_MS;
}

/* SIGCHLD: reap; launches happen at the loop's tail. */
static void
process_child_exits(void)
{
	bool		fatal = false;
	int			status;
	pid_t		pid;

	pending_child = 0;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
	{
		for (int i = 0; i < nroles; i++)
		{
			if (roles[i].pid == pid)
			{
				fatal |= record_exit(&roles[i], status);
				break;
			}
		}
	}
	if (fatal)
		stop_roles();
}

/* SIGQUIT: every role is killed at once, and so ends conmgr. */
static noreturn void
process_immediate_stop(void)
{
	cm_log(CMLOG_LOG, "received immediate shutdown request");
	signal_roles(SIGKILL);
	sup_pidfile_remove();
	_exit(0);
}

/* SIGTERM: the listener stops once the last application session ends. */
static void
process_smart_stop(void)
{
	pending_smart = 0;
	if (state != SUP_RUNNING)
		return;
	cm_log(CMLOG_LOG, "received smart shutdown request; waiting for application sessions to end");
	sup_pidfile_status("stopping");
	sup_set_state(SUP_STOP_SMART);
	close_forwarding();
	signal_stage(ROLE_STOP_FIRST, SIGUSR1);
}

/* SIGINT: the listener goes first, so applications hear "shutting down". */
static void
process_fast_stop(void)
{
	pending_fast = 0;
	if (state != SUP_RUNNING && state != SUP_STOP_SMART)
		return;
	cm_log(CMLOG_LOG, "received fast shutdown request; stopping the listener");
	sup_pidfile_status("stopping");
	sup_set_state(SUP_STOP_FAST);
	close_forwarding();
	signal_stage(ROLE_STOP_FIRST, SIGTERM);
	kill_at = cmclock_ms() + SUP_KILL_AFTER_MS;
}

/* SIGHUP: conmgr.conf again, the logging part taken over (reload.c). */
static void
process_reload(void)
{
	pending_reload = 0;
	sup_reload(ctx.cmdata, &conf, ctx.shm);
}

/*
 * SIGUSR1: open the log file again, here (our own lines before the logger
 * starts and after it stops, and a restarted logger's inherited stderr)
 * and in the logger.  The line that reports it is logged after the
 * logger was signalled, so it is the first of the new file.
 */
static void
process_logrotate(void)
{
	const role *lg = logger();

	pending_logrotate = 0;
	if (ctx.log_file == NULL)
	{
		cm_log(CMLOG_LOG, "received SIGUSR1, but conmgr has no log file to reopen "
			   "(it writes to the standard error it was started with)");
		return;
	}
	if (cm_log_reopen_file(ctx.log_file) < 0)
	{
		cm_ereport(CMLOG_WARNING, "Writing on to the old one.", NULL,
				   "could not reopen log file \"%s\": %m",
				   ctx.log_file);
		return;
	}
	if (lg != NULL && lg->pid > 0)
		kill(lg->pid, SIGUSR1);
	cm_log(CMLOG_LOG, "received SIGUSR1, reopened log file \"%s\"", ctx.log_file);
}

/*
 * Move the shutdown on as far as the roles' state allows, as the
 * postmaster's PostmasterStateMachine: the first stage gone starts the
 * next, and SIGKILL follows SIGTERM after SUP_KILL_AFTER_MS.
 */
static void
advance_shutdown(void)
{
	int64_t		now = cmclock_ms();

	if (state == SUP_STOP_SMART || state == SUP_STOP_FAST)
	{
		if (live_roles(ROLE_STOP_FIRST) == 0)
		{
			cm_log(CMLOG_LOG, "listener stopped; stopping the heartbeats");
			stop_roles();
		}
		else if (state == SUP_STOP_FAST && now >= kill_at)
		{
			cm_log(CMLOG_LOG, "listener still running after %d s; killing it", SUP_KILL_AFTER_MS / 1000);
			signal_stage(ROLE_STOP_FIRST, SIGKILL);
			kill_at = now + SUP_REKILL_MS;
		}
	}
	if (state == SUP_WAIT_ROLES && live_roles(ROLE_STOP_FIRST) +
		live_roles(ROLE_STOP_WITH_ROLES) == 0)
	{
		/* Last writer gone: the logger drains the pipe and exits. */
		cm_log(CMLOG_LOG, "roles stopped; stopping the logger");
		cm_log_use_pipe(-1);
		close(logpipe[1]);
		logpipe[1] = -1;
		sup_set_state(SUP_WAIT_LOGGER);
	}
	if (state == SUP_WAIT_LOGGER && live_roles(ROLE_STOP_LAST) == 0)
	{
		sup_set_state(SUP_EXIT);
		return;
	}
	if (state >= SUP_WAIT_ROLES && now >= kill_at)
	{
		cm_log(CMLOG_LOG, "roles still running after %d s; killing them", SUP_KILL_AFTER_MS / 1000);
		signal_roles(SIGKILL);
		kill_at = now + SUP_REKILL_MS;
	}
}

/*
 * The loop's tail: start every role the state wants and whose back-off
 * is over.  Returns the milliseconds until the next launch is due, -1 if
 * none is pending.
 */
static int
launch_missing_roles(void)
{
	int64_t		now = cmclock_ms();
	int			timeout = -1;

	if (state >= SUP_WAIT_ROLES)
		return -1;
	for (int i = 0; i < nroles; i++)
	{
		role	   *r = &roles[i];

		/* Asked to stop: not brought back. */
		if (state != SUP_RUNNING && r->type->stop == ROLE_STOP_FIRST)
			continue;
		if (r->pid != 0 || r->restart_at == 0)
			continue;
		if (now >= r->restart_at)
			launch(r);
		else if (timeout < 0 || r->restart_at - now < timeout)
			timeout = (int) (r->restart_at - now);
	}
	return timeout;
}

/* How long to wait for a signal: until the next launch or SIGKILL. */
static int
sleep_time(int next_launch)
{
	int64_t		now = cmclock_ms();
	int			until_kill = kill_at > now ? (int) (kill_at - now) : 0;

	if (state < SUP_STOP_FAST)
		return next_launch;
	if (next_launch >= 0 && next_launch < until_kill)
		return next_launch;
	return until_kill;
}

/*
 * The supervisor's loop, as the postmaster's ServerLoop: wait for a
 * signal, handle each pending one, move the shutdown on, start what is
 * missing.
 */
static void
server_loop(void)
{
	int			timeout;

	while (state != SUP_EXIT)
	{
		struct pollfd pfd = {selfpipe[0], POLLIN, 0};
		char		drain[64];

		if (pending_quit)
			process_immediate_stop();
		if (pending_smart)
			process_smart_stop();
		if (pending_fast)
			process_fast_stop();
		if (pending_reload)
			process_reload();
		if (pending_logrotate)
			process_logrotate();
		if (pending_child)
			process_child_exits();
		advance_shutdown();
		if (state == SUP_EXIT)
			break;
		timeout = sleep_time(launch_missing_roles());
		if (poll(&pfd, 1, timeout) > 0)
			while (read(selfpipe[0], drain, sizeof(drain)) > 0)
				;
	}
}

/*
 * setproctitle() reuses argv's memory: keep our own copies of the paths,
 * in ctx at once, so that they stay reachable whichever way we return.
 * Returns 0, or 1 with the problem on stderr.
 */
static int
init_process(const char *cmdata, const char *log_file, int argc, char **argv)
{
	extern char **environ;
	bool		want_log_file = log_file != NULL && log_file[0] != '\0';

	ctx.cmdata = cmdata = strdup(cmdata);
	ctx.log_file = log_file = want_log_file ? strdup(log_file) : NULL;
	if (cmdata == NULL || (want_log_file && log_file == NULL))
	{
		fprintf(stderr, "conmgr: out of memory\n");
		return 1;
	}
	setproctitle_init(argc, argv, environ);
	if (geteuid() == 0)
	{
		fprintf(stderr, "conmgr: cannot be run as root\n"
				"Please log in (using, e.g., \"su\") as the (unprivileged) user that will own the conmgr directory.\n");
		return 1;
	}
	if (log_file != NULL && cm_log_reopen_file(log_file) < 0)
	{
		fprintf(stderr, "conmgr: could not open log file \"%s\": %s\n",
				log_file, strerror(errno));
		return 1;
	}
	return 0;
}

/* CMDATA, conmgr.conf, the open-files limit, the key and the pid file. */
static void
load_config(void)
{
	static struct cmconf_diags diags;
	char		path[4200];

	ctx.conf = &conf;
	cm_log_init(NULL, "supervisor");
	sup_check_directory(ctx.cmdata);
	snprintf(path, sizeof(path), "%s/%s", ctx.cmdata, CMCONF_FILENAME);
	if (cmconf_load_file(path, &conf, &diags) != 0)
	{
		for (int i = 0; i < diags.count; i++)
			cm_log(diags.d[i].level, "%s", diags.d[i].msg);
		cm_fatal(1, "configuration file \"%s\" contains errors", path);
	}
	cm_log_init(&conf, "supervisor");
	for (int i = 0; i < diags.count; i++)
		cm_log(diags.d[i].level, "%s", diags.d[i].msg);
	sup_check_nofile(&conf);
	sup_load_key(&ctx);
	sup_pidfile_take(ctx.cmdata, conf.port);
}

/* What the roles inherit: the shared table and the pipes, made before fork. */
static void
create_shared(void)
{
	ctx.shm = shm_create(CMCONF_MAX_INSTANCES);
	if (ctx.shm == NULL)
		cm_fatal(1, "could not create shared memory: %m");
	for (int i = 0; i < CMCONF_MAX_INSTANCES; i++)
		ctx.shm->slots[i].instno = i;
	sup_publish_log_settings(&conf, ctx.shm);
	cm_log_attach_shared(&ctx.shm->logconf);
	ctx.wake_fd = eventfd(0, EFD_NONBLOCK);
	if (ctx.wake_fd < 0 || pipe2(deathpipe, 0) < 0 ||
		pipe2(selfpipe, O_NONBLOCK | O_CLOEXEC) < 0 || pipe2(logpipe, O_CLOEXEC) < 0)
		cm_fatal(1, "could not create pipes: %m");
	ctx.nforwarders = cmconf_forwarders(&conf);
	for (int k = 0; k < ctx.nforwarders; k++)
	{
		ctx.fw_wake_fd[k] = eventfd(0, EFD_NONBLOCK);
		if (ctx.fw_wake_fd[k] < 0 ||
			socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0, ctx.fw_handoff[k]) < 0)
			cm_fatal(1, "could not create the forwarders' sockets: %m");
	}
	/* Writers never block on the log; the logger's reads do. */
	fcntl(logpipe[1], F_SETFL, O_NONBLOCK);
	ctx.death_fd = deathpipe[0];
	fcntl(deathpipe[1], F_SETFD, FD_CLOEXEC);
}

static void
install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = sup_signal;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGCHLD, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGQUIT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/*
 * The forward ports' listen sockets, opened once for every forwarder
 * process and kept here while conmgr runs: a client that connects while
 * a forwarder restarts waits in the queue, and the port is never bound
 * by someone else in between.  A port with no address to listen on stops
 * conmgr before any role starts, exit code 1 as the other start-up
 * checks.
 */
static void
open_forward_ports(void)
{
	for (int p = 0; p < conf.forward_ports.n; p++)
	{
		int			fds[CM_FW_MAX_LISTEN];
		int			n = role_listen_any(conf.listen_addresses, conf.forward_ports.f[p].port,
										"forward port", fds, CM_FW_MAX_LISTEN - ctx.fw_nlisten);

		if (n == 0)
		{
			sup_pidfile_remove();
			cm_fatal(1, "could not listen on any address of \"%s\" forward port %d",
					 conf.listen_addresses, conf.forward_ports.f[p].port);
		}
		for (int k = 0; k < n; k++)
		{
			ctx.fw_listen_fd[ctx.fw_nlisten] = fds[k];
			ctx.fw_listen_port[ctx.fw_nlisten] = p;
			ctx.fw_nlisten++;
		}
	}
}

/* One process per role_types[] row, per configured instance, or forwarder. */
static void
start_roles(void)
{
	for (const role_type *rt = role_types; rt < role_types + NROLE_TYPES; rt++)
	{
		if (rt->count == ROLE_PER_FORWARDER)
		{
			for (int k = 0; k < ctx.nforwarders; k++)
			{
				role		r = {.type = rt,.instno = k};

				roles[nroles++] = r;
			}
			continue;
		}
		if (rt->count != ROLE_PER_INSTANCE)
		{
			role		r = {.type = rt,.instno = -1};

			roles[nroles++] = r;
			continue;
		}
		for (int i = 0; i < CMCONF_MAX_INSTANCES; i++)
		{
			role		r = {.type = rt,.instno = i};

			if (conf.inst[i].configured)
				roles[nroles++] = r;
		}
	}
	for (int i = 0; i < nroles; i++)
	{
		launch(&roles[i]);
		/* From now on our own lines go through the logger too. */
		if (roles[i].type->kind == ROLE_LOGGER)
			cm_log_use_pipe(logpipe[1]);
	}
}

int
supervisor_main(const char *cmdata, const char *log_file, int argc, char **argv)
{
	if (init_process(cmdata, log_file, argc, argv) != 0)
		return 1;
	load_config();
	create_shared();
	open_forward_ports();
	install_signals();
	start_roles();
	/* The children hold the death pipe's read end; our write end stays. */
	sup_pidfile_status("ready");
	setproctitle("-conmgr: supervisor -D %s", ctx.cmdata);
	sup_set_state(SUP_RUNNING);
	cm_log(CMLOG_LOG, "conmgr ready: %d instances, applications on \"%s\" port %d",
		   conf.ninstances, conf.listen_addresses, conf.port);
	server_loop();
	cm_log(CMLOG_LOG, "conmgr stopped");
	sup_pidfile_remove();
	return 0;
}
