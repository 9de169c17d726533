/*-------------------------------------------------------------------------
 *
 * log.h
 *	  The daemon's messages (log.c): what every role of conmgr logs with.
 *
 * A message is one line, PostgreSQL's way:
 *	 2026-11-24 22:40:38.462 UTC [3196] heartbeat 1 LOG:  heartbeat up
 * and, as ereport()'s errdetail() and errhint() give, an optional DETAIL
 * line (more about what happened, full sentences) and HINT line (what to
 * do about it) with the same prefix, written together with it.  The
 * format of every function takes glibc's %m for strerror(errno).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CM_LOG_H
#define CM_LOG_H

#include <stddef.h>
#include <stdnoreturn.h>

#include "cmlog.h"
#include "shm.h"

struct cmconf;

/* A log record on the logger pipe: level byte + lines, at most PIPE_BUF. */
#define CM_LOG_RECORD_MAX	4096

extern void cm_log_init(const struct cmconf *conf, const char *role);
extern void cm_log_use_pipe(int writefd);
extern void cm_log_attach_shared(const shm_logconf *shared);
extern int	cm_log_reopen_file(const char *path);
extern void cm_syslog_open(const char *ident, int facility);
extern int	cm_syslog_priority(int level);
extern void cm_syslog_record(int level, const char *lines, size_t len);

/* A message alone. */
extern void cm_log(int level, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));

/* A message with a DETAIL and/or a HINT line (NULL: none). */
extern void cm_ereport(int level, const char *detail, const char *hint,
					   const char *fmt,...)
			__attribute__((format(printf, 4, 5)));

/* A FATAL message, then exit(exitcode). */
extern noreturn void cm_fatal(int exitcode, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));
extern noreturn void cm_fatal_hint(int exitcode, const char *hint, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));

#endif							/* CM_LOG_H */
