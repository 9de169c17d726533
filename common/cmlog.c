/*-------------------------------------------------------------------------
 *
 * cmlog.c
 *	  Names of the message levels, and the escaping of a message's text
 *	  (see cmlog.h).
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <string.h>
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

/*
 * A message's text as it may go into a log record: every control
 * character (C0 and DEL) is written as an escape, \n, \r, \t or \xNN, so
 * that a record is one line whatever a peer's text holds.  Backslashes
 * are kept as they are: the escapes are for the reader, not to be undone.
 * Writes at most cap - 1 bytes and a NUL, never part of an escape; returns
 * the length written.
 */
size_t
cmlog_escape(char *dst, size_t cap, const char *src)
{
	size_t		n = 0;

	if (cap == 0)
		return 0;
	for (; *src; src++)
	{
		unsigned char c = (unsigned char) *src;
		char		esc[5];
		size_t		len;

		if (c >= 0x20 && c != 0x7f)
		{
			esc[0] = (char) c;
			len = 1;
		}
		else if (c == '\n' || c == '\r' || c == '\t')
		{
			esc[0] = '\\';
			esc[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
			len = 2;
		}
		else
			len = (size_t) snprintf(esc, sizeof(esc), "\\x%02X", c);
		if (n + len >= cap)
			break;
		memcpy(dst + n, esc, len);
		n += len;
	}
	dst[n] = '\0';
	return n;
}
