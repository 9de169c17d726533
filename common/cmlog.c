/*-------------------------------------------------------------------------
 *
 * cmlog.c
 *	  Names of the message levels (see cmlog.h).
 *
 *-------------------------------------------------------------------------
 */
#include <strings.h>

#include "cmlog.h"

static const char *const level_names[] = {
	[CMLOG_DEBUG5] = "DEBUG5",
	[CMLOG_DEBUG4] = "DEBUG4",
	[CMLOG_DEBUG3] = "DEBUG3",
	[CMLOG_DEBUG2] = "DEBUG2",
	[CMLOG_DEBUG1] = "DEBUG1",
	[CMLOG_INFO] = "INFO",
	[CMLOG_NOTICE] = "NOTICE",
	[CMLOG_WARNING] = "WARNING",
	[CMLOG_ERROR] = "ERROR",
	[CMLOG_LOG] = "LOG",
	[CMLOG_FATAL] = "FATAL",
	[CMLOG_PANIC] = "PANIC",
};

const char *
cmlog_level_name(int level)
{
	if (level < 0 || level > CMLOG_LAST)
		return "UNKNOWN";
	return level_names[level];
}

/* Case-insensitive; "DEBUG" is DEBUG2, as in PostgreSQL.  -1 if unknown. */
int
cmlog_level_from_name(const char *name)
{
	if (strcasecmp(name, "DEBUG") == 0)
		return CMLOG_DEBUG2;
	for (int i = 0; i <= CMLOG_LAST; i++)
	{
		if (strcasecmp(name, level_names[i]) == 0)
			return i;
	}
	return -1;
}
