/*-------------------------------------------------------------------------
 *
 * cmlog.h
 *	  Message levels of conmgr, named and ordered as PostgreSQL's
 *	  log_min_messages.
 *
 * Shared by the configuration parser (log_min_messages) and the daemon's
 * logging (log/log.c).  Nothing here prints.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CMLOG_H
#define CMLOG_H

#include <stddef.h>

typedef enum cmlog_level
{
	CMLOG_DEBUG5 = 0,
	CMLOG_DEBUG4,
	CMLOG_DEBUG3,
	CMLOG_DEBUG2,
	CMLOG_DEBUG1,
	CMLOG_INFO,
	CMLOG_NOTICE,
	CMLOG_WARNING,
	CMLOG_ERROR,
	CMLOG_LOG,
	CMLOG_FATAL,
	CMLOG_PANIC
} cmlog_level;

#define CMLOG_LAST	CMLOG_PANIC

/* cmlog.c */
extern const char *cmlog_level_name(int level);
extern int	cmlog_level_from_name(const char *name);
extern size_t cmlog_escape(char *dst, size_t cap, const char *src);

#endif							/* CMLOG_H */
