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
 * logger writes each line to its stderr (the terminal, or the file cm_ctl
 * gave) and, with log_destination = syslog, to syslog.
 *
 * It ignores SIGTERM and SIGINT: it exits when every writer has closed the
 * pipe, so the lines of the last roles to stop are still written.  The
 * supervisor keeps the read end open too, so a logger restarted after a
 * crash resumes the same pipe and loses only what was in the dead one's
 * hands.
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

/* One record: a level byte ('A' + level), then one line ending in '\n'. */
static void
write_record(const struct cmconf *conf, const char *rec, size_t len)
{
	int			level = rec[0] - 'A';
	const char *line = rec + 1;
	size_t		linelen = len - 1;

	if (level < 0 || level > CMLOG_LAST || linelen == 0)
		return;
	if (conf->log_destination & CMCONF_LOG_STDERR)
		(void) !write(STDERR_FILENO, line, linelen);
	if (conf->log_destination & CMCONF_LOG_SYSLOG)
	{
		/* syslog has its own time and pid: send "role LEVEL:  message" */
		const char *p = strstr(line, "] ");

		p = p ? p + 2 : line;
		syslog(cm_syslog_priority(level), "%.*s", (int) (line + linelen - p - 1), p);
	}
}

void
logger_main(cm_ctx *ctx, int readfd)
{
	char		buf[2 * CM_LOG_RECORD_MAX];
	size_t		len = 0;

	signal(SIGTERM, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	if (ctx->conf->log_destination & CMCONF_LOG_SYSLOG)
		cm_syslog_open(ctx->conf);

	for (;;)
	{
		ssize_t		n = read(readfd, buf + len, sizeof(buf) - len);
		char	   *start = buf;
		char	   *nl;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;				/* every writer is gone */
		len += n;
		while ((nl = memchr(start, '\n', buf + len - start)) != NULL)
		{
			write_record(ctx->conf, start, nl + 1 - start);
			start = nl + 1;
		}
		len = buf + len - start;
		memmove(buf, start, len);
		if (len == sizeof(buf))
			len = 0;			/* cannot happen: records end in '\n' */
	}
	exit(ROLE_EXIT_DONE);
}
