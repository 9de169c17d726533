/*-------------------------------------------------------------------------
 *
 * cmproto_names.c
 *	  The text of the protocols' numbers: codec statuses, ERROR codes,
 *	  INSTANCE_DOWN reasons and target_session_attrs values.
 *
 * Log lines, cm_ctl's output and libpq-cm's error messages take their
 * words from here, so a code reads the same wherever it is reported;
 * docs/protocol.md lists the same names.  A message type's name lives in
 * the codec's table instead (cmproto_type_name() in cmproto.c).  Compiled
 * into the daemon, libpq-cm and the watchdog extension, without
 * allocation, stdio or exit.
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "cmproto.h"

const char *
cmproto_strerror(int status)
{
	switch ((cmproto_status) status)
	{
		case CMPROTO_OK:
			return "success";
		case CMPROTO_INCOMPLETE:
			return "message incomplete";
		case CMPROTO_ETRUNCATED:
			return "message truncated";
		case CMPROTO_ETOOLONG:
			return "message too long";
		case CMPROTO_ESHORTLEN:
			return "message length too short";
		case CMPROTO_EBADFLAGS:
			return "invalid header flags";
		case CMPROTO_EUNKNOWNTYPE:
			return "unknown message type";
		case CMPROTO_EUNEXPECTED:
			return "message type not expected from this peer";
		case CMPROTO_ERANGE:
			return "field out of range";
		case CMPROTO_EBADSTRING:
			return "invalid string";
		case CMPROTO_ESTRTOOLONG:
			return "string too long";
		case CMPROTO_ETRAILING:
			return "trailing bytes after message";
		case CMPROTO_EBADMAGIC:
			return "bad magic number";
		case CMPROTO_ENOSPACE:
			return "buffer too small";
	}
	return "unknown protocol status";
}

const char *
cmproto_error_code_name(int code)
{
	switch ((cmproto_error_code) code)
	{
		case CMPROTO_ERR_PROTOCOL:
			return "protocol violation";
		case CMPROTO_ERR_VERSION:
			return "unsupported protocol version";
		case CMPROTO_ERR_AUTH:
			return "authentication failed";
		case CMPROTO_ERR_TOO_MANY:
			return "too many heartbeat sessions";
		case CMPROTO_ERR_SHUTDOWN:
			return "shutting down";
		case CMPROTO_ERR_INTERNAL:
			return "internal error";
		case CMPROTO_ERR_CONFLICT:
			return "instances in conflict";
	}
	return "unknown error code";
}

const char *
cmproto_down_reason_name(int reason)
{
	switch ((cmproto_down_reason) reason)
	{
		case CMPROTO_DOWN_TIMEOUT:
			return "heartbeat timeout";
		case CMPROTO_DOWN_LOST:
			return "heartbeat connection lost";
		case CMPROTO_DOWN_PROTOCOL:
			return "heartbeat protocol violation";
		case CMPROTO_DOWN_SHUTDOWN:
			return "conmgr shutting down";
		case CMPROTO_DOWN_STALE:
			return "stale primary";
	}
	return "unknown reason";
}

/* libpq's spellings; "prefer-primary" is conmgr's addition. */
static const char *const target_names[] = {
	[CMPROTO_TARGET_ANY] = "any",
	[CMPROTO_TARGET_READ_WRITE] = "read-write",
	[CMPROTO_TARGET_READ_ONLY] = "read-only",
	[CMPROTO_TARGET_PRIMARY] = "primary",
	[CMPROTO_TARGET_STANDBY] = "standby",
	[CMPROTO_TARGET_PREFER_STANDBY] = "prefer-standby",
	[CMPROTO_TARGET_PREFER_PRIMARY] = "prefer-primary",
};

const char *
cmproto_target_name(int target)
{
	if (target < 0 || target > CMPROTO_TARGET_LAST)
		return NULL;
	return target_names[target];
}

/* Case-sensitive, as libpq compares target_session_attrs; -1 if unknown. */
int
cmproto_target_from_name(const char *name)
{
	for (int i = 0; i <= CMPROTO_TARGET_LAST; i++)
	{
		if (strcmp(name, target_names[i]) == 0)
			return i;
	}
	return -1;
}
