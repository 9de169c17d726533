/*-------------------------------------------------------------------------
 *
 * logger.c
 *	  The logger role: the one writer of conmgr's log.
 *
 * Forked first by the supervisor; shows in ps as "conmgr: logger".  Every
 * other process sends its lines into one pipe made by the supervisor
 * before forking (supervisor/log.c: one record per write, at most
 * PIPE_BUF bytes, so records never interleave; non-blocking, so a role
 * never waits on logging and counts what it had to drop instead).  The
 * logger writes each line to its stderr (the terminal, or the log file of
 * conmgr -l, which cm_ctl start passes) and, with log_destination =
 * syslog, to syslog.
 *
 * The destination and the syslog settings come from the shared table,
 * where the supervisor publishes them at start and after each reload; the
 * logger looks at their generation before it writes what it has read, so
 * the lines that report a reload already follow it.  SIGUSR1 (sent by the
 * supervisor on cm_ctl logrotate) makes it open the log file again before
 * it writes the next line; it also opens it at start, so a logger
 * restarted after a rotation writes to the new file.
 *
 * It ignores SIGTERM and SIGINT: it exits when every writer has closed the
 * pipe, so the lines of the last roles to stop are still written.  The
 * supervisor keeps the read end open too, so a logger restarted after a
 * crash resumes the same pipe and loses only what was in the dead one's
 * hands.  Its one blocking point is the read of that pipe; SIGUSR1
 * interrupts it.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "conmgr.h"

static volatile sig_atomic_t got_reopen;
static shm_logconf settings;	/* the published settings in force here */

static void
handle_sigusr1(int sig)
{
	(void) sig;
	got_reopen = 1;
}

/*
 * One record: a level byte ('A' + level), then one line ending in '\n'.
 * The line has no other newline, nor any control character: cm_vlog
 * escapes them in every message, so splitting the pipe at '\n' finds the
 * records their senders wrote, whatever text from peers they carry.
 */
static void
write_record(const char *rec, size_t len)
{
	int			level = rec[0] - 'A';
	const char *line = rec + 1;
	size_t		linelen = len - 1;

	if (level < 0 || level > CMLOG_LAST || linelen == 0)
		return;
	if (settings.log_destination & CMCONF_LOG_STDERR)
		(void) !write(STDERR_FILENO, line, linelen);
	if (settings.log_destination & CMCONF_LOG_SYSLOG)
	{
		/* syslog has its own time and pid: send "role LEVEL:  message" */
		const char *p = strstr(line, "] ");

		p = p ? p + 2 : line;
		syslog(cm_syslog_priority(level), "%.*s", (int) (line + linelen - p - 1), p);
	}
}

/* Take over newly published settings; syslog is opened again if they moved. */
static void
follow_settings(cm_ctx *ctx, bool first)
{
	shm_logconf now;
	bool		was_open;
	bool		moved;

	if (!first && __atomic_load_n(&ctx->shm->logconf.generation, __ATOMIC_ACQUIRE) ==
		settings.generation)
		return;
	now = settings;
	if (!shm_logconf_read(&ctx->shm->logconf, &now))
	{
		/*
		 * The supervisor stopped mid-publication: keep ours (at start, stderr
		 * alone) and look again with the next record.
		 */
		settings.changecount = now.changecount;
		if (!first)
			return;
		now.log_destination = CMCONF_LOG_STDERR;
	}
	was_open = !first && (settings.log_destination & CMCONF_LOG_SYSLOG);
	moved = first || now.syslog_facility != settings.syslog_facility ||
		strcmp(now.syslog_ident, settings.syslog_ident) != 0;
	/* openlog() keeps a pointer to settings.syslog_ident: close first */
	if (was_open && (moved || !(now.log_destination & CMCONF_LOG_SYSLOG)))
		closelog();
	settings = now;
	if ((settings.log_destination & CMCONF_LOG_SYSLOG) && (!was_open || moved))
		cm_syslog_open(settings.syslog_ident, settings.syslog_facility);
}

static void
reopen_log_file(cm_ctx *ctx)
{
	got_reopen = 0;
	if (ctx->log_file == NULL)
		return;
	if (cm_log_reopen_file(ctx->log_file) < 0)
		cm_log(CMLOG_WARNING, "could not reopen log file \"%s\": %s; writing on to the old one",
			   ctx->log_file, strerror(errno));
}

void
logger_main(cm_ctx *ctx, int readfd)
{
	char		buf[2 * CM_LOG_RECORD_MAX];
	size_t		len = 0;

	/* Our own few lines go straight to stderr and syslog, as "logger". */
	cm_log_init(NULL, "logger");
	signal(SIGTERM, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	{
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = handle_sigusr1; /* no SA_RESTART: the read must end */
		sigaction(SIGUSR1, &sa, NULL);
	}
	/* Forked with every signal blocked: our handlers are in place now. */
	{
		sigset_t	none;

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
	}
	reopen_log_file(ctx);
	follow_settings(ctx, true);

	for (;;)
	{
		ssize_t		n;
		char	   *start = buf;
		char	   *nl;

		if (got_reopen)
			reopen_log_file(ctx);
		n = read(readfd, buf + len, sizeof(buf) - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;				/* every writer is gone */

		/*
		 * A signal sent before these bytes were written has been handled by
		 * now: the supervisor's "reopened" line goes to the new file.
		 */
		if (got_reopen)
			reopen_log_file(ctx);
		follow_settings(ctx, false);
		len += n;
		while ((nl = memchr(start, '\n', buf + len - start)) != NULL)
		{
			write_record(start, nl + 1 - start);
			start = nl + 1;
		}
		len = buf + len - start;
		memmove(buf, start, len);
		if (len == sizeof(buf))
			len = 0;			/* cannot happen: records end in '\n' */
	}
	exit(ROLE_EXIT_DONE);
}
