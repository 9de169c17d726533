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
 * at run time (the logging ones, marked in cmconf.c's table) are taken
 * over and published in the shared table, where every role reads them;
 * each other parameter that differs is named in the log as needing a
 * restart and keeps its value.  Roles are not signalled: they read the
 * published settings as they log.
 *
 * SIGUSR1 (cm_ctl logrotate) opens the log file (conmgr -l) again, here
 * and then in the logger, so that after "mv conmgr.log conmgr.log.1" the
 * next lines go to a new conmgr.log.
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
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "cmclock.h"
#include "conmgr.h"

#define SUP_KILL_AFTER_MS	5000
#define SUP_BACKOFF_MAX_MS	30000

typedef enum role_kind
{
	ROLE_LOGGER,
	ROLE_LISTENER,
	ROLE_HEARTBEAT
} role_kind;

typedef struct role
{
	role_kind	kind;
	int			instno;			/* heartbeat only */
	pid_t		pid;
	int64_t		started_at;		/* monotonic ms */
	int64_t		restart_at;		/* monotonic ms, 0 = none pending */
	int			backoff_ms;
} role;

static cm_ctx ctx;
static role roles[1 + CMCONF_MAX_INSTANCES];
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
static int	pidfile_fd = -1;
static char pidfile_path[4200];

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

static void
role_title(const role *r, char *buf, size_t len)
{
	if (r->kind == ROLE_LOGGER)
		snprintf(buf, len, "logger");
	else if (r->kind == ROLE_LISTENER)
		snprintf(buf, len, "listener :%d", ctx.conf->port);
	else
		snprintf(buf, len, "heartbeat %d %s:%d", r->instno,
				 cmconf_connect_host(&ctx.conf->inst[r->instno]),
				 ctx.conf->inst[r->instno].watchdog_port);
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
		cm_log(CMLOG_WARNING, "could not fork %s: %s", title, strerror(errno));
		r->restart_at = cmclock_ms() + 1000;
		return;
	}
	if (pid == 0)
	{
		close(selfpipe[0]);
		close(selfpipe[1]);
		close(deathpipe[1]);	/* else our own copy keeps the pipe open */
		if (pidfile_fd >= 0)
			close(pidfile_fd);
		signal(SIGCHLD, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGQUIT, SIG_DFL);
		signal(SIGUSR1, SIG_DFL);
		/* Reload is the supervisor's business; roles read the shared settings. */
		signal(SIGHUP, SIG_IGN);
		/* A terminal's ^C reaches the whole group: it is the supervisor's. */
		signal(SIGINT, SIG_IGN);

		/*
		 * Only heartbeat roles use the key; a listener or logger that leaks
		 * its memory (it faces applications, or writes what peers send)
		 * must not leak the key with it.
		 */
		if (r->kind != ROLE_HEARTBEAT)
		{
			explicit_bzero(ctx.key, sizeof(ctx.key));
			ctx.keylen = 0;
		}
		setproctitle("-conmgr: %s", title);
		if (r->kind == ROLE_LOGGER)
		{
			close(logpipe[1]);
			logger_main(&ctx, logpipe[0]);
		}
		close(logpipe[0]);
		cm_log_use_pipe(logpipe[1]);
		if (r->kind == ROLE_LISTENER)
			listener_main(&ctx);
		heartbeat_main(&ctx, r->instno);
	}
	sigprocmask(SIG_SETMASK, &saved, NULL);
	r->pid = pid;
	r->started_at = cmclock_ms();
	r->restart_at = 0;
	cm_log(CMLOG_DEBUG1, "started %s (pid %d)", title, (int) pid);
}

static void
write_pidfile_status(const char *status)
{
	char		buf[256];
	int			n;

	n = snprintf(buf, sizeof(buf), "%d\n%s\n%lld\n%d\n%s\n", (int) getpid(),
				 ctx.cmdata, (long long) (shm_now() / 1000000), ctx.conf->port, status);
	/* Overwrite, then cut: a reader never finds the file empty. */
	if (pwrite(pidfile_fd, buf, n, 0) == n && ftruncate(pidfile_fd, n) == 0)
		return;
	cm_log(CMLOG_WARNING, "could not write \"%s\": %s", pidfile_path, strerror(errno));
}

/* Whether the file we hold open as the pid file is the one at its path. */
static bool
pidfile_at_path(void)
{
	struct stat held,
				atpath;

	return fstat(pidfile_fd, &held) == 0 && stat(pidfile_path, &atpath) == 0 &&
		held.st_dev == atpath.st_dev && held.st_ino == atpath.st_ino;
}

/*
 * Take CMDATA/conmgr.pid; a lock held by a live conmgr means "already
 * running".  A stopping conmgr removes the file while it still holds the
 * lock (removing it after would remove a file another conmgr may have
 * locked meanwhile), so a start that opened the file just before that
 * gets the lock of a file no longer in CMDATA: it must find the file it
 * locked still at the path, or start again with the one there now.
 * Without that check it would run with a pid file nobody can see, and
 * the next start would make a second conmgr beside it.
 */
static void
take_pidfile(void)
{
	snprintf(pidfile_path, sizeof(pidfile_path), "%s/conmgr.pid", ctx.cmdata);
	for (int attempt = 1;; attempt++)
	{
		pidfile_fd = open(pidfile_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (pidfile_fd < 0)
			cm_fatal(1, "could not open lock file \"%s\": %s", pidfile_path, strerror(errno));
		if (flock(pidfile_fd, LOCK_EX | LOCK_NB) < 0)
		{
			char		buf[32] = "";

			if (errno != EWOULDBLOCK)
				cm_fatal(1, "could not lock \"%s\": %s", pidfile_path, strerror(errno));
			(void) !pread(pidfile_fd, buf, sizeof(buf) - 1, 0);
			cm_fatal(1, "another conmgr (pid %d) is running in \"%s\"", atoi(buf), ctx.cmdata);
		}
		if (pidfile_at_path())
			break;
		close(pidfile_fd);
		pidfile_fd = -1;
		if (attempt == 100)
			cm_fatal(1, "could not lock \"%s\": it was replaced 100 times while being locked",
					 pidfile_path);
	}
	/* The lock is free: any pid in the file is from a conmgr that crashed. */
	write_pidfile_status("starting");
}

/*
 * Remove our pid file, while we still hold its lock (see take_pidfile()),
 * and only if it is still ours: a file put at the path by someone else
 * (ours was removed by hand) is not ours to remove.
 */
static void
remove_pidfile(void)
{
	if (pidfile_at_path())
		unlink(pidfile_path);
}

static void
check_directory(void)
{
	struct stat st;

	if (stat(ctx.cmdata, &st) < 0)
		cm_fatal(1, "could not access directory \"%s\": %s", ctx.cmdata, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		cm_fatal(1, "\"%s\" is not a directory", ctx.cmdata);
	if (st.st_uid != geteuid())
		cm_fatal(1, "directory \"%s\" is not owned by the user running conmgr (uid %d)",
				 ctx.cmdata, (int) geteuid());
	if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
		cm_fatal(1, "directory \"%s\" has group or world access (mode %04o); chmod 0700 it",
				 ctx.cmdata, (unsigned) (st.st_mode & 07777));
}

/*
 * heartbeat_key_file (relative to CMDATA): a regular file only its owner
 * can read, 16 to 1023 bytes once trailing white space is cut.
 */
static void
load_key(void)
{
	char		path[4200];
	const char *f = ctx.conf->heartbeat_key_file;
	struct stat st;
	ssize_t		n;
	int			fd;

	if (f[0] == '\0')
		return;
	if (f[0] == '/')
		snprintf(path, sizeof(path), "%s", f);
	else
		snprintf(path, sizeof(path), "%s/%s", ctx.cmdata, f);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		cm_fatal(1, "could not open heartbeat_key_file \"%s\": %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		cm_fatal(1, "heartbeat_key_file \"%s\" is not a regular file", path);
	if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
		cm_fatal(1, "heartbeat_key_file \"%s\" is accessible to group or others (mode %04o); chmod 0600 it",
				 path, (unsigned) (st.st_mode & 07777));
	n = read(fd, ctx.key, sizeof(ctx.key));
	close(fd);
	while (n > 0 && (ctx.key[n - 1] == '\n' || ctx.key[n - 1] == '\r' ||
					 ctx.key[n - 1] == ' ' || ctx.key[n - 1] == '\t'))
		n--;
	if (n < 16 || (size_t) n >= sizeof(ctx.key))
		cm_fatal(1, "the key in heartbeat_key_file \"%s\" must be 16 to %zu bytes long",
				 path, sizeof(ctx.key) - 1);
	ctx.keylen = (size_t) n;
}

/*
 * The open-files limit: the soft one is raised to the hard one first.  A
 * soft limit of 1024 protects programs that use select(); conmgr waits with
 * epoll and poll, and holds a descriptor per application session, so it
 * takes what the hard limit allows (as systemd advises such daemons to),
 * then checks that this covers what the configuration needs.
 */
static void
check_nofile(void)
{
	struct rlimit rl;
	int			need = cmconf_nofile_needed(ctx.conf);

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max)
	{
		rlim_t		was = rl.rlim_cur;

		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
			cm_log(CMLOG_DEBUG1, "open-files limit raised from %llu to the hard limit, %llu",
				   (unsigned long long) was, (unsigned long long) rl.rlim_max);
		else
			cm_log(CMLOG_DEBUG1, "could not raise the open-files limit from %llu to %llu: %s",
				   (unsigned long long) was, (unsigned long long) rl.rlim_max, strerror(errno));
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
		rl.rlim_cur < (rlim_t) need)
		cm_fatal(1, "open-files limit %llu is too low: conmgr needs %d "
				 "(9 + %d instances x 2 + max_connections %d); raise the hard limit (\"ulimit -Hn\")",
				 (unsigned long long) rl.rlim_cur, need, ctx.conf->ninstances,
				 ctx.conf->max_connections);
}

static const char *
signame(int sig)
{
	const char *s = sigabbrev_np(sig);

	return s ? s : "?";
}

/* Record exits; launches happen at the loop's tail. */
static bool
process_child_exits(bool stopping)
{
	bool		fatal = false;
	int			status;
	pid_t		pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
	{
		for (int i = 0; i < nroles; i++)
		{
			role	   *r = &roles[i];
			char		title[320];
			int64_t		now = cmclock_ms();

			if (r->pid != pid)
				continue;
			r->pid = 0;
			role_title(r, title, sizeof(title));
			if (r->kind == ROLE_HEARTBEAT)
			{
				shm_repair(&ctx.shm->slots[r->instno]);
				{
					uint64_t	one = 1;

					(void) !write(ctx.wake_fd, &one, sizeof(one));
				}
			}
			if (stopping)
				break;
			if (WIFEXITED(status) && WEXITSTATUS(status) == ROLE_EXIT_FATAL)
			{
				cm_log(CMLOG_LOG, "%s (pid %d) exited with a fatal error; stopping", title, (int) pid);
				fatal = true;
				break;
			}
			if (WIFEXITED(status) && WEXITSTATUS(status) == ROLE_EXIT_DONE)
			{
				cm_log(CMLOG_LOG, "%s (pid %d) exited", title, (int) pid);
				break;			/* done: not restarted */
			}
			if (WIFSIGNALED(status))
				cm_log(CMLOG_LOG, "%s (pid %d) was terminated by signal %d (SIG%s)%s",
					   title, (int) pid, WTERMSIG(status), signame(WTERMSIG(status)),
					   WCOREDUMP(status) ? " (core dumped)" : "");
			else
				cm_log(CMLOG_LOG, "%s (pid %d) exited with code %d", title, (int) pid,
					   WEXITSTATUS(status));
			if (now - r->started_at < 10000)
				r->backoff_ms = r->backoff_ms ? r->backoff_ms * 2 : 1000;
			else
				r->backoff_ms = 1000;
			if (r->backoff_ms > SUP_BACKOFF_MAX_MS)
				r->backoff_ms = SUP_BACKOFF_MAX_MS;
			r->restart_at = now + r->backoff_ms;
			cm_log(CMLOG_LOG, "restarting %s in %d ms", title, r->backoff_ms);
			break;
		}
	}
	return fatal;
}

/* Roles still running, the logger not counted. */
static int
live_roles(void)
{
	int			n = 0;

	for (int i = 0; i < nroles; i++)
		if (roles[i].pid > 0 && roles[i].kind != ROLE_LOGGER)
			n++;
	return n;
}

/* roles[0] is the logger, roles[1] the listener. */
static bool
listener_alive(void)
{
	return roles[1].pid > 0;
}

/* The logger is not asked to stop: it ends when the log pipe is closed. */
static void
signal_roles(int sig)
{
	for (int i = 0; i < nroles; i++)
		if (roles[i].pid > 0 && (roles[i].kind != ROLE_LOGGER || sig == SIGKILL))
			kill(roles[i].pid, sig);
}

/* Put the reloadable logging settings where every process reads them. */
static void
publish_log_settings(void)
{
	shm_logconf lc;

	memset(&lc, 0, sizeof(lc));
	lc.log_min_messages = ctx.conf->log_min_messages;
	lc.log_destination = ctx.conf->log_destination;
	lc.syslog_facility = ctx.conf->syslog_facility;
	snprintf(lc.syslog_ident, sizeof(lc.syslog_ident), "%s", ctx.conf->syslog_ident);
	shm_logconf_publish(&ctx.shm->logconf, &lc);
}

typedef struct reload_tally
{
	int			applied;
	int			kept;
} reload_tally;

static void
reload_change(void *arg, const char *name, const char *oldval,
			  const char *newval, bool reloadable)
{
	reload_tally *t = arg;

	if (oldval[0] == '\0')
		oldval = "(not set)";
	if (newval[0] == '\0')
		newval = "(not set)";
	if (reloadable)
	{
		cm_log(CMLOG_LOG, "parameter \"%s\" changed from \"%s\" to \"%s\"",
			   name, oldval, newval);
		t->applied++;
		return;
	}
	cm_log(CMLOG_LOG, "parameter \"%s\" needs a restart to change; keeping \"%s\" "
		   "(%s now says \"%s\")", name, oldval, CMCONF_FILENAME, newval);
	t->kept++;
}

/*
 * SIGHUP: read conmgr.conf again.  All or nothing for a file with errors;
 * otherwise the reloadable parameters are taken over, the others keep the
 * value conmgr started with and are named.  conf is the supervisor's own
 * struct: roles restarted later get the reloaded logging settings too.
 */
static void
process_reload(struct cmconf *conf)
{
	static struct cmconf newconf;
	static struct cmconf before;
	static struct cmconf_diags diags;
	reload_tally tally = {0, 0};
	char		path[4200];

	snprintf(path, sizeof(path), "%s/%s", ctx.cmdata, CMCONF_FILENAME);
	cm_log(CMLOG_LOG, "received SIGHUP, reloading configuration file \"%s\"", path);
	if (cmconf_load_file(path, &newconf, &diags) != 0)
	{
		/* at LOG, which no log_min_messages but FATAL and PANIC hides */
		for (int i = 0; i < diags.count; i++)
			cm_log(CMLOG_LOG, "%s", diags.d[i].msg);
		if (diags.dropped > 0)
			cm_log(CMLOG_LOG, "%d more problems not shown", diags.dropped);
		cm_log(CMLOG_LOG, "configuration file \"%s\" contains errors; nothing was changed", path);
		return;
	}
	for (int i = 0; i < diags.count; i++)
		cm_log(CMLOG_LOG, "%s", diags.d[i].msg);

	before = *conf;
	cmconf_apply_reloadable(conf, &newconf);
	if (strcmp(before.syslog_ident, conf->syslog_ident) != 0 ||
		before.syslog_facility != conf->syslog_facility ||
		before.log_destination != conf->log_destination)
	{
		/* our own direct lines; the logger re-opens syslog by itself */
		closelog();
		if (conf->log_destination & CMCONF_LOG_SYSLOG)
			cm_syslog_open(conf->syslog_ident, conf->syslog_facility);
	}
	publish_log_settings();
	cmconf_compare(&before, &newconf, reload_change, &tally);
	if (tally.applied + tally.kept == 0)
		cm_log(CMLOG_LOG, "configuration file reloaded: no parameter changed");
	else
		cm_log(CMLOG_LOG, "configuration file reloaded: %d parameters changed, %d applied, "
			   "%d need a restart", tally.applied + tally.kept, tally.applied, tally.kept);
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
	if (ctx.log_file == NULL)
	{
		cm_log(CMLOG_LOG, "received SIGUSR1, but conmgr has no log file to reopen "
			   "(it writes to the standard error it was started with)");
		return;
	}
	if (cm_log_reopen_file(ctx.log_file) < 0)
	{
		cm_log(CMLOG_WARNING, "could not reopen log file \"%s\": %s; writing on to the old one",
			   ctx.log_file, strerror(errno));
		return;
	}
	if (roles[0].pid > 0)
		kill(roles[0].pid, SIGUSR1);
	cm_log(CMLOG_LOG, "received SIGUSR1, reopened log file \"%s\"", ctx.log_file);
}

int
supervisor_main(const char *cmdata, const char *log_file, int argc, char **argv)
{
	static struct cmconf conf;
	static struct cmconf_diags diags;
	char		path[4200];
	bool		stopping = false;
	bool		draining = false;	/* the listener was asked to stop */
	bool		fast = false;
	int64_t		kill_at = 0;
	extern char **environ;

	/*
	 * setproctitle() reuses argv's memory: keep our own copies of the paths,
	 * in ctx at once, so that they stay reachable whichever way we return.
	 */
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
	ctx.conf = &conf;
	cm_log_init(NULL, "supervisor");
	check_directory();
	snprintf(path, sizeof(path), "%s/%s", cmdata, CMCONF_FILENAME);
	if (cmconf_load_file(path, &conf, &diags) != 0)
	{
		for (int i = 0; i < diags.count; i++)
			cm_log(diags.d[i].level, "%s", diags.d[i].msg);
		cm_fatal(1, "configuration file \"%s\" contains errors", path);
	}
	cm_log_init(&conf, "supervisor");
	for (int i = 0; i < diags.count; i++)
		cm_log(diags.d[i].level, "%s", diags.d[i].msg);
	check_nofile();
	load_key();
	take_pidfile();

	ctx.shm = shm_create(CMCONF_MAX_INSTANCES);
	if (ctx.shm == NULL)
		cm_fatal(1, "could not create shared memory: %s", strerror(errno));
	for (int i = 0; i < CMCONF_MAX_INSTANCES; i++)
		ctx.shm->slots[i].instno = i;
	publish_log_settings();
	cm_log_attach_shared(&ctx.shm->logconf);
	ctx.wake_fd = eventfd(0, EFD_NONBLOCK);
	if (ctx.wake_fd < 0 || pipe2(deathpipe, 0) < 0 ||
		pipe2(selfpipe, O_NONBLOCK | O_CLOEXEC) < 0 || pipe2(logpipe, O_CLOEXEC) < 0)
		cm_fatal(1, "could not create pipes: %s", strerror(errno));
	/* Writers never block on the log; the logger's reads do. */
	fcntl(logpipe[1], F_SETFL, O_NONBLOCK);
	ctx.death_fd = deathpipe[0];
	fcntl(deathpipe[1], F_SETFD, FD_CLOEXEC);

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

	roles[nroles++] = (role)
	{
		.kind = ROLE_LOGGER, .instno = -1
	};
	roles[nroles++] = (role)
	{
		.kind = ROLE_LISTENER, .instno = -1
	};
	for (int i = 0; i < CMCONF_MAX_INSTANCES; i++)
		if (conf.inst[i].configured)
			roles[nroles++] = (role)
			{
				.kind = ROLE_HEARTBEAT, .instno = i
			};
	launch(&roles[0]);
	cm_log_use_pipe(logpipe[1]);
	for (int i = 1; i < nroles; i++)
		launch(&roles[i]);
	/* The children hold the death pipe's read end; our write end stays. */
	write_pidfile_status("ready");
	setproctitle("-conmgr: supervisor -D %s", cmdata);
	cm_log(CMLOG_LOG, "conmgr ready: %d instances, applications on \"%s\" port %d",
		   conf.ninstances, conf.listen_addresses, conf.port);

	for (;;)
	{
		int64_t		now = cmclock_ms();
		int			timeout = -1;
		struct pollfd pfd = {selfpipe[0], POLLIN, 0};
		char		drain[64];

		if (pending_quit)
		{
			cm_log(CMLOG_LOG, "received immediate shutdown request");
			signal_roles(SIGKILL);
			remove_pidfile();
			_exit(0);
		}
		if (pending_smart && !stopping && !draining)
		{
			cm_log(CMLOG_LOG, "received smart shutdown request; waiting for application sessions to end");
			write_pidfile_status("stopping");
			draining = true;
			if (listener_alive())
				kill(roles[1].pid, SIGUSR1);
		}
		if (pending_fast && !stopping && !fast)
		{
			/* The listener goes first, so applications hear "shutting down". */
			cm_log(CMLOG_LOG, "received fast shutdown request; stopping the listener");
			write_pidfile_status("stopping");
			draining = fast = true;
			if (listener_alive())
				kill(roles[1].pid, SIGTERM);
			kill_at = now + SUP_KILL_AFTER_MS;
		}
		if (pending_reload)
		{
			pending_reload = 0;
			process_reload(&conf);
		}
		if (pending_logrotate)
		{
			pending_logrotate = 0;
			process_logrotate();
		}
		if (pending_child)
		{
			pending_child = 0;
			if (process_child_exits(stopping) && !stopping)
			{
				stopping = true;
				signal_roles(SIGTERM);
				kill_at = now + SUP_KILL_AFTER_MS;
			}
		}
		if (draining && !stopping && !listener_alive())
		{
			cm_log(CMLOG_LOG, "listener stopped; stopping the heartbeats");
			stopping = true;
			signal_roles(SIGTERM);
			kill_at = now + SUP_KILL_AFTER_MS;
		}
		if (fast && !stopping && now >= kill_at && listener_alive())
		{
			cm_log(CMLOG_LOG, "listener still running after %d s; killing it", SUP_KILL_AFTER_MS / 1000);
			kill(roles[1].pid, SIGKILL);
			kill_at = now + 60000;
		}
		if (stopping)
		{
			if (live_roles() == 0 && logpipe[1] >= 0)
			{
				/* Last writer gone: the logger drains the pipe and exits. */
				cm_log(CMLOG_LOG, "roles stopped; stopping the logger");
				cm_log_use_pipe(-1);
				close(logpipe[1]);
				logpipe[1] = -1;
			}
			if (live_roles() == 0 && roles[0].pid == 0)
				break;
			if (now >= kill_at)
			{
				cm_log(CMLOG_LOG, "roles still running after %d s; killing them", SUP_KILL_AFTER_MS / 1000);
				signal_roles(SIGKILL);
				kill_at = now + 60000;
			}
			timeout = (int) (kill_at - now);
		}
		else
		{
			if (fast)
				timeout = (int) (kill_at > now ? kill_at - now : 0);
			/* Launch what is due; wait until the next due launch. */
			for (int i = 0; i < nroles; i++)
			{
				role	   *r = &roles[i];

				if (draining && r->kind == ROLE_LISTENER)
					continue;
				if (r->pid == 0 && r->restart_at != 0)
				{
					if (now >= r->restart_at)
						launch(r);
					else if (timeout < 0 || r->restart_at - now < timeout)
						timeout = (int) (r->restart_at - now);
				}
			}
		}
		if (poll(&pfd, 1, timeout) > 0)
			while (read(selfpipe[0], drain, sizeof(drain)) > 0)
				;
	}
	cm_log(CMLOG_LOG, "conmgr stopped");
	remove_pidfile();
	return 0;
}
