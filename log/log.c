/*-------------------------------------------------------------------------
 *
 * log.c
 *	  The daemon's messages: stderr and/or syslog, PostgreSQL-style lines.
 *
 * Each process sets its role name once (cm_log_init); log.h shows a line.
 * A message, with its DETAIL and HINT lines, is one record: their control
 * characters, which only text from peers has (a watchdog's ERROR, an
 * application's), are escaped here, the one place every message passes
 * (cmlog_escape), so that no peer can forge a record or send a terminal
 * escape to whoever reads the log.  Messages below log_min_messages
 * (PostgreSQL's order: LOG ranks above ERROR) are dropped at the source;
 * once the supervisor has made the shared table (cm_log_attach_shared),
 * the level and the destination are read from there, so that a reload
 * reaches every process.  Once the logger role runs (cm_log_use_pipe),
 * each record goes to it in one non-blocking write of at most PIPE_BUF
 * bytes: never interleaved, never waited for; when the pipe is full the
 * record is dropped and counted, and the count is reported with the next
 * record that gets through.  Before that (start-up checks, cm_fatal before
 * the fork) records go straight to stderr.
 *
 * With a log file (conmgr -l), stdout and stderr are that file, opened
 * for appending; cm_log_reopen_file() opens the path again, for log
 * rotation, in the supervisor and in the logger, the two processes that
 * write to it.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
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
static const shm_logconf *log_shared;
static char log_role[64] = "conmgr";
static int	log_pipe = -1;
static unsigned long log_dropped;

_Static_assert(SHM_IDENT_LEN >= CMCONF_IDENT_MAX + 1, "syslog_ident does not fit in shm_logconf");

void
cm_log_use_pipe(int writefd)
{
	log_pipe = writefd;
}

/*
 * The ident must stay valid while syslog is open (openlog keeps the
 * pointer): callers pass a configuration's own array, and call
 * closelog() before they change it.
 */
void
cm_syslog_open(const char *ident, int facility)
{
	static const int facilities[] = {LOG_LOCAL0, LOG_LOCAL1, LOG_LOCAL2,
	LOG_LOCAL3, LOG_LOCAL4, LOG_LOCAL5, LOG_LOCAL6, LOG_LOCAL7};

	if (facility < 0 || facility > 7)
		facility = 0;
	openlog(ident, LOG_PID | LOG_NDELAY, facilities[facility]);
}

void
cm_log_init(const struct cmconf *conf, const char *role)
{
	log_conf = conf;
	snprintf(log_role, sizeof(log_role), "%s", role);
	if (conf && (conf->log_destination & CMCONF_LOG_SYSLOG) && log_pipe < 0)
		cm_syslog_open(conf->syslog_ident, conf->syslog_facility);
}

/* From now on (and in every child forked after), obey the shared settings. */
void
cm_log_attach_shared(const shm_logconf *shared)
{
	log_shared = shared;
}

/* One aligned int each: no change counter needed to read them alone. */
static int
min_level(void)
{
	if (log_shared && __atomic_load_n(&log_shared->generation, __ATOMIC_ACQUIRE) != 0)
		return __atomic_load_n(&log_shared->log_min_messages, __ATOMIC_RELAXED);
	return log_conf ? log_conf->log_min_messages : CMLOG_DEBUG5;
}

static int
destination(void)
{
	if (log_shared && __atomic_load_n(&log_shared->generation, __ATOMIC_ACQUIRE) != 0)
		return __atomic_load_n(&log_shared->log_destination, __ATOMIC_RELAXED);
	return log_conf ? log_conf->log_destination : CMCONF_LOG_STDERR;
}

/*
 * Open the log file (again) and make it stdout and stderr.  -1 with errno
 * set when it cannot be opened: the old descriptors stay as they were.
 */
int
cm_log_reopen_file(const char *path)
{
	int			fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	int			saved;

	if (fd < 0)
		return -1;
	if (dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0)
	{
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	close(fd);
	return 0;
}

int
cm_syslog_priority(int level)
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

/*
 * The lines of a record (without its level byte) to syslog, one message
 * each: syslog has its own time and pid, so "role LEVEL:  text".
 */
void
cm_syslog_record(int level, const char *lines, size_t len)
{
	const char *end = lines + len;

	while (lines < end)
	{
		const char *nl = memchr(lines, '\n', end - lines);
		const char *stop = nl ? nl : end;
		const char *p = memmem(lines, stop - lines, "] ", 2);

		p = p ? p + 2 : lines;
		syslog(cm_syslog_priority(level), "%.*s", (int) (stop - p), p);
		lines = nl ? nl + 1 : end;
	}
}

/*
 * One line of a record into line: the level byte the logger reads, then
 * "prefix LABEL:  text" (LABEL the level's name for the message, DETAIL
 * or HINT after it).  Returns its length, 0 if it does not fit.
 */
static size_t
record_line(char *line, size_t cap, int level, const char *prefix,
			const char *label, const char *text)
{
	char		esc[CM_LOG_RECORD_MAX];
	size_t		room = strlen(prefix) + strlen(label) + 6;	/* byte, ":  ", NL, NUL */
	int			n;

	if (room + 4 > cap)
		return 0;
	room = cap - room;
	cmlog_escape(esc, sizeof(esc), text);
	/* what does not fit is cut, and the cut shown */
	if (strlen(esc) > room)
		strcpy(esc + room - 3, "...");
	n = snprintf(line, cap, "%c%s %s:  %s\n", 'A' + level, prefix, label, esc);
	return n > 0 && (size_t) n < cap ? (size_t) n : 0;
}

/*
 * Where a record goes: the logger's pipe, in one write, so that its lines
 * stay together; or stderr and syslog, each line without its level byte.
 */
static void
emit(int level, const char *rec, size_t n, const char *prefix)
{
	int			dest;

	if (log_pipe >= 0)
	{
		if (log_dropped > 0)
		{
			char		note[200];
			int			k = snprintf(note, sizeof(note),
									 "%c%s LOG:  %lu log lines were dropped (logger pipe full)\n",
									 'A' + CMLOG_LOG, prefix, log_dropped);

			if (k > 0 && write(log_pipe, note, k) == k)
				log_dropped = 0;
		}
		if (write(log_pipe, rec, n) != (ssize_t) n)
			log_dropped++;
		return;
	}
	dest = destination();
	for (const char *line = rec; line < rec + n;)
	{
		const char *nl = memchr(line, '\n', rec + n - line);
		size_t		len = (nl ? nl + 1 : rec + n) - line;

		if (dest & CMCONF_LOG_STDERR)
			(void) !write(STDERR_FILENO, line + 1, len - 1);
		if (dest & CMCONF_LOG_SYSLOG)
			cm_syslog_record(level, line + 1, len - 1);
		line += len;
	}
}

static void
cm_vlog(int level, const char *detail, const char *hint, const char *fmt, va_list ap)
{
	char		raw[1024];
	char		rec[CM_LOG_RECORD_MAX];
	char		prefix[128];
	struct timeval tv;
	struct tm	tm;
	char		ts[32];
	size_t		n;
	int			saved = errno;

	if (level < min_level())
		return;
	vsnprintf(raw, sizeof(raw), fmt, ap);
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M:%S", &tm);
	snprintf(prefix, sizeof(prefix), "%s.%03d UTC [%d] %s", ts,
			 (int) (tv.tv_usec / 1000), (int) getpid(), log_role);
	/* the message takes at most half the record, leaving room for the rest */
	n = record_line(rec, sizeof(rec) / 2, level, prefix, cmlog_level_name(level), raw);
	if (detail != NULL)
		n += record_line(rec + n, sizeof(rec) - n, level, prefix, "DETAIL", detail);
	if (hint != NULL)
		n += record_line(rec + n, sizeof(rec) - n, level, prefix, "HINT", hint);
	emit(level, rec, n, prefix);
	errno = saved;
}

void
cm_log(int level, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	cm_vlog(level, NULL, NULL, fmt, ap);
	va_end(ap);
}

void
cm_ereport(int level, const char *detail, const char *hint, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	cm_vlog(level, detail, hint, fmt, ap);
	va_end(ap);
}

void
cm_fatal(int exitcode, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	cm_vlog(CMLOG_FATAL, NULL, NULL, fmt, ap);
	va_end(ap);
	exit(exitcode);
}

void
cm_fatal_hint(int exitcode, const char *hint, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	cm_vlog(CMLOG_FATAL, NULL, hint, fmt, ap);
	va_end(ap);
	exit(exitcode);
}
