/*-------------------------------------------------------------------------
 *
 * log.c
 *	  The daemon's messages: stderr and/or syslog, PostgreSQL-style lines.
 *
 * Each process sets its role name once (cm_log_init); a line reads
 *	 2026-11-24 22:40:38.462 UTC [3196] heartbeat 1 LOG:  heartbeat up
 * Messages below log_min_messages (PostgreSQL's order: LOG ranks above
 * ERROR) are dropped.  Each line is one write(2) of at most PIPE_BUF bytes,
 * so lines of different processes never interleave on a shared stderr.
 * A logger role with its own pipe will replace direct writes.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "conmgr.h"

static const struct cmconf *log_conf;
static char log_role[64] = "conmgr";

void
cm_log_init(const struct cmconf *conf, const char *role)
{
	static const int facilities[] = {LOG_LOCAL0, LOG_LOCAL1, LOG_LOCAL2,
	LOG_LOCAL3, LOG_LOCAL4, LOG_LOCAL5, LOG_LOCAL6, LOG_LOCAL7};

	log_conf = conf;
	snprintf(log_role, sizeof(log_role), "%s", role);
	if (conf && (conf->log_destination & CMCONF_LOG_SYSLOG))
		openlog(conf->syslog_ident, LOG_PID | LOG_NDELAY,
				facilities[conf->syslog_facility]);
}

static int
syslog_priority(int level)
{
	if (level >= CMLOG_FATAL)
		return LOG_CRIT;
	if (level == CMLOG_ERROR)
		return LOG_ERR;
	if (level == CMLOG_WARNING)
		return LOG_WARNING;
	if (level == CMLOG_NOTICE || level == CMLOG_LOG)
		return LOG_NOTICE;
	if (level == CMLOG_INFO)
		return LOG_INFO;
	return LOG_DEBUG;
}

static void
cm_vlog(int level, const char *fmt, va_list ap)
{
	char		msg[1024];
	char		line[4096];
	struct timeval tv;
	struct tm	tm;
	char		ts[32];
	int			n;
	int			saved = errno;

	if (log_conf && level < log_conf->log_min_messages)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (!log_conf || (log_conf->log_destination & CMCONF_LOG_STDERR))
	{
		gettimeofday(&tv, NULL);
		gmtime_r(&tv.tv_sec, &tm);
		strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M:%S", &tm);
		n = snprintf(line, sizeof(line), "%s.%03d UTC [%d] %s %s:  %s\n",
					 ts, (int) (tv.tv_usec / 1000), (int) getpid(), log_role,
					 cmlog_level_name(level), msg);
		if (n > 0)
			(void) !write(STDERR_FILENO, line,
						  (size_t) n < sizeof(line) ? (size_t) n : sizeof(line) - 1);
	}
	if (log_conf && (log_conf->log_destination & CMCONF_LOG_SYSLOG))
		syslog(syslog_priority(level), "%s: %s", log_role, msg);
	errno = saved;
}

void
cm_log(int level, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	cm_vlog(level, fmt, ap);
	va_end(ap);
}

void
cm_fatal(int exitcode, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	cm_vlog(CMLOG_FATAL, fmt, ap);
	va_end(ap);
	exit(exitcode);
}
