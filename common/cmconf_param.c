/*-------------------------------------------------------------------------
 *
 * cmconf_param.c
 *	  conmgr.conf's parameter table and the conversion of its values.
 *
 * Every parameter is one row of cmconf_params[]: its name, type, range,
 * whether it is per instance (a number suffix: backend_host0), whether a
 * reload may change it, its default and a one-line description.  From the
 * table come the defaults (cmconf_set_defaults), the parser's lookups and
 * checks, conmgr -v's output and a reload's comparison (cmconf.c).
 * Adding a parameter is one row here and one field in struct cmconf or
 * struct cmconf_instance; docs/configuration.md describes it for users.
 *
 * A value is converted and checked here (cmconf_param_store), with the
 * error message for a bad one, and shown back as conmgr.conf spells it
 * (cmconf_param_format).
 *
 *-------------------------------------------------------------------------
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cmconf_int.h"
#include "cmhost.h"
#include "cmlog.h"
#include "cmproto.h"

#define G(f)	offsetof(struct cmconf, f)
#define I(f)	offsetof(struct cmconf_instance, f)

/*
 * Per-instance rows, then the others; conmgr -v prints them in this
 * order.  A row's default must be a value its type accepts ("" only for
 * a string that may be unset); the unit tests check every row.
 */
const cmconf_param cmconf_params[] = {
	{"backend_host", PT_HOST, true, I(host), 1, CMCONF_HOST_MAX, PC_RESTART, "",
	"host name or IP address of the instance's server"},
	{"backend_hostaddr", PT_HOSTADDR, true, I(hostaddr), 1, CMCONF_HOST_MAX, PC_RESTART, "",
	"numeric address of the instance's server, used instead of backend_host"},
	{"backend_port", PT_INT, true, I(backend_port), 1, 65535, PC_RESTART, "27500",
	"the instance's PostgreSQL port, handed to applications"},
	{"watchdog_port", PT_INT, true, I(watchdog_port), 1, 65535, PC_RESTART, "27545",
	"the instance's watchdog.port, where heartbeat sessions connect"},
	{"port", PT_INT, false, G(port), 1, 65535, PC_RESTART, "27546",
	"where applications connect to conmgr"},
	{"listen_addresses", PT_LISTEN, false, G(listen_addresses), 1, CMCONF_LISTEN_MAX, PC_RESTART, "localhost",
	"where conmgr listens for applications: \"*\" or a list of names and addresses"},
	{"forward_ports", PT_FORWARD, false, G(forward_ports), 0, 0, PC_RESTART, "",
	"ports forwarding clients to a target's instance: TARGET=PORT, ...; empty = none"},
	{"forwarder_processes", PT_INT, false, G(forwarder_processes), 0, CMCONF_MAX_FORWARDERS, PC_RESTART, "0",
	"processes sharing the forward ports' clients; 0 = one per processor"},
	{"heartbeat_interval", PT_INT, false, G(heartbeat_interval), 1, CMPROTO_HB_INTERVAL_MAX, PC_RESTART, "10",
	"seconds between heartbeats, each way"},
	{"heartbeat_timeout", PT_INT, false, G(heartbeat_timeout), 1, CMPROTO_HB_TIMEOUT_MAX, PC_RESTART, "20",
	"seconds of silence after which the peer is declared lost"},
	{"heartbeat_connect_interval", PT_INT, false, G(heartbeat_connect_interval), 1, INT_MAX, PC_RESTART, "1",
	"seconds to wait before retrying a failed heartbeat connection"},
	{"heartbeat_connect_timeout", PT_INT, false, G(heartbeat_connect_timeout), 1, INT_MAX, PC_RESTART, "10",
	"seconds allowed for connecting and the heartbeat handshake"},
	{"log_destination", PT_LOGDEST, false, G(log_destination), 0, 0, PC_RELOAD, "stderr",
	"where messages go: stderr, syslog or both"},
	{"syslog_facility", PT_FACILITY, false, G(syslog_facility), 0, 7, PC_RELOAD, "LOCAL0",
	"syslog facility, LOCAL0 to LOCAL7"},
	{"syslog_ident", PT_STRING, false, G(syslog_ident), 1, CMCONF_IDENT_MAX, PC_RELOAD, "conmgr",
	"program name in syslog"},
	{"log_min_messages", PT_LEVEL, false, G(log_min_messages), 0, CMLOG_LAST, PC_RELOAD, "WARNING",
	"lowest level written, in PostgreSQL's order"},
	{"max_connections", PT_INT, false, G(max_connections), 0, INT_MAX, PC_RESTART, "0",
	"most application sessions at once; 0 = no limit"},
	{"attach_timeout", PT_INT, false, G(attach_timeout), 1, INT_MAX, PC_RESTART, "600",
	"seconds a session with its candidates may take to report ATTACHED"},
	{"heartbeat_key_file", PT_STRING, false, G(heartbeat_key_file), 0, CMCONF_HOST_MAX, PC_RESTART, "",
	"file with the key shared with the watchdogs; empty = no key"},
};

const int	cmconf_nparams = (int) (sizeof(cmconf_params) / sizeof(cmconf_params[0]));

_Static_assert(CMCONF_MAX_FORWARDS == CMPROTO_TARGET_LAST + 1,
			   "forward_ports has room for one port per target");
_Static_assert(sizeof(cmconf_params) / sizeof(cmconf_params[0]) <= CMCONF_MAX_PARAMS,
			   "raise CMCONF_MAX_PARAMS");

/*
 * Bytes from the file as a diagnostic shows them: printable ASCII as is,
 * anything else (control characters, bytes of a non-UTF-8 or multi-byte
 * text) as \xNN, and at most CMCONF_SHOW_MAX bytes of it followed by "...", so
 * that a terminal never receives raw control bytes and a long value never
 * pushes the parameter's name and rule out of the message.
 */
const char *
cmconf_show(const char *s, size_t len, char *buf)
{
	char	   *o = buf;

	for (size_t i = 0; i < len && i < CMCONF_SHOW_MAX; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c >= 0x20 && c < 0x7f)
			*o++ = (char) c;
		else
			o += snprintf(o, 5, "\\x%02X", c);
	}
	if (len > CMCONF_SHOW_MAX)
		o += snprintf(o, 4, "...");
	*o = '\0';
	return buf;
}

/* ---- value conversion ---- */

static bool
parse_int(const char *s, long min, long max, int *out)
{
	const char *p = s;
	bool		neg = false;
	long long	v = 0;

	if (*p == '+' || *p == '-')
		neg = (*p++ == '-');
	if (*p == '\0')
		return false;
	for (; *p; p++)
	{
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (*p - '0');
		if (v > (long long) INT_MAX + 1)
			return false;
	}
	if (neg)
		v = -v;
	if (v < min || v > max)
		return false;
	*out = (int) v;
	return true;
}

/*
 * Next item of a comma-separated list, blanks around it cut; false at the
 * end of the list.  An empty item comes back as "" (callers refuse it).
 */
static bool
next_item(const char **pp, char *item, size_t cap)
{
	const char *p = *pp;
	const char *start,
			   *end;
	size_t		n;

	if (p == NULL)
		return false;
	while (*p == ' ' || *p == '\t')
		p++;
	start = p;
	while (*p && *p != ',')
		p++;
	end = p;
	while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	n = (size_t) (end - start) < cap ? (size_t) (end - start) : cap - 1;
	memcpy(item, start, n);
	item[n] = '\0';
	*pp = *p ? p + 1 : NULL;
	return true;
}

static bool
parse_logdest(const char *s, int *out)
{
	char		item[16];
	int			mask = 0;

	for (const char *p = s; next_item(&p, item, sizeof(item));)
	{
		if (strcasecmp(item, "stderr") == 0)
			mask |= CMCONF_LOG_STDERR;
		else if (strcasecmp(item, "syslog") == 0)
			mask |= CMCONF_LOG_SYSLOG;
		else
			return false;
	}
	*out = mask;
	return true;
}

/* "*", or comma-separated host names / numeric addresses. */
static bool
parse_listen(const char *s)
{
	char		item[CMCONF_HOST_MAX + 2];

	if (strcmp(s, "*") == 0)
		return true;
	for (const char *p = s; next_item(&p, item, sizeof(item));)
	{
		if (item[0] == '\0' || strlen(item) > CMCONF_HOST_MAX ||
			(!cmhost_is_numeric(item) && !cmhost_is_name(item)))
			return false;
	}
	return true;
}

/*
 * "TARGET=PORT, ..." into *out; false with the reason in why.  Each
 * target and each port at most once; whether a port is conmgr's own port
 * is for the parser to check once the whole file is read.
 */
static bool
parse_forward(const char *s, struct cmconf_forwards *out, char *why, size_t whylen)
{
	char		item[CMCONF_LISTEN_MAX + 2];
	char		shown[CMCONF_SHOW_BUF];

	memset(out, 0, sizeof(*out));
	for (const char *p = s; s[0] != '\0' && next_item(&p, item, sizeof(item));)
	{
		char	   *eq = strchr(item, '=');
		char	   *name = item;
		char	   *port = eq ? eq + 1 : NULL;
		char	   *end;
		struct cmconf_forward fw;

		if (item[0] == '\0')
		{
			snprintf(why, whylen, "an empty item in the list");
			return false;
		}
		if (eq == NULL)
		{
			snprintf(why, whylen, "item \"%s\" is not TARGET=PORT",
					 cmconf_show(item, strlen(item), shown));
			return false;
		}
		/* blanks around "=" */
		for (end = eq; end > name && (end[-1] == ' ' || end[-1] == '\t'); end--)
			;
		*end = '\0';
		while (*port == ' ' || *port == '\t')
			port++;
		fw.target = cmproto_target_from_name(name);
		if (fw.target < 0)
		{
			snprintf(why, whylen,
					 "unknown target \"%s\" (one of any, read-write, read-only, primary, standby, prefer-standby, prefer-primary)",
					 cmconf_show(name, strlen(name), shown));
			return false;
		}
		if (!parse_int(port, 1, 65535, &fw.port))
		{
			snprintf(why, whylen, "port \"%s\" of %s must be an integer between 1 and 65535",
					 cmconf_show(port, strlen(port), shown), name);
			return false;
		}
		for (int i = 0; i < out->n; i++)
		{
			if (out->f[i].target == fw.target)
			{
				snprintf(why, whylen, "target %s is given twice", name);
				return false;
			}
			if (out->f[i].port == fw.port)
			{
				snprintf(why, whylen, "port %d is given twice", fw.port);
				return false;
			}
		}
		/* seven targets, each once: no room is ever short */
		out->f[out->n++] = fw;
	}
	if (strlen(s) > CMCONF_LISTEN_MAX)
	{
		snprintf(why, whylen, "at most %d characters", CMCONF_LISTEN_MAX);
		return false;
	}
	strcpy(out->text, s);
	return true;
}

/* PT_INT, PT_FACILITY, PT_LEVEL, PT_LOGDEST: an int field. */
static bool
store_int(const cmconf_param *par, const char *name, const char *value,
		  const char *shown, int *field, char *err, size_t errlen)
{
	int			v = 0;
	const char *rule = NULL;

	switch (par->type)
	{
		case PT_INT:
			if (!parse_int(value, par->min, par->max, &v))
			{
				snprintf(err, errlen,
						 "invalid value \"%s\" for parameter \"%s\": must be an integer between %ld and %ld",
						 shown, name, par->min, par->max);
				return false;
			}
			break;
		case PT_FACILITY:
			if (strncasecmp(value, "LOCAL", 5) != 0 || value[5] < '0' ||
				value[5] > '7' || value[6] != '\0')
				rule = "must be one of LOCAL0 to LOCAL7";
			else
				v = value[5] - '0';
			break;
		case PT_LEVEL:
			v = cmlog_level_from_name(value);
			if (v < 0)
				rule = "must be one of DEBUG5 to DEBUG1, DEBUG, INFO, NOTICE, WARNING, ERROR, LOG, FATAL, PANIC";
			break;
		default:				/* PT_LOGDEST */
			if (!parse_logdest(value, &v))
				rule = "must be a list of \"stderr\" and \"syslog\"";
			break;
	}
	if (rule != NULL)
	{
		snprintf(err, errlen, "invalid value \"%s\" for parameter \"%s\": %s",
				 shown, name, rule);
		return false;
	}
	*field = v;
	return true;
}

/* PT_HOST, PT_HOSTADDR: a name or an address, checked by cmhost. */
static bool
store_host(const cmconf_param *par, const char *name, int instno,
		   const char *value, const char *shown, char *field,
		   char *err, size_t errlen)
{
	if (value[0] == '\0')
	{
		snprintf(err, errlen, "parameter \"%s\" must not be empty", name);
		return false;
	}
	if (strlen(value) > CMCONF_HOST_MAX)
	{
		snprintf(err, errlen, "value of parameter \"%s\" is too long: at most %d characters",
				 name, CMCONF_HOST_MAX);
		return false;
	}
	if (par->type == PT_HOSTADDR && !cmhost_is_numeric(value))
	{
		snprintf(err, errlen,
				 "invalid value \"%s\" for parameter \"%s\": must be a numeric IPv4 or IPv6 address (host names go in backend_host%d)",
				 shown, name, instno);
		return false;
	}
	if (par->type == PT_HOST && !cmhost_is_numeric(value) &&
		!cmhost_is_name(value))
	{
		snprintf(err, errlen,
				 "invalid value \"%s\" for parameter \"%s\": not a host name or an IP address",
				 shown, name);
		return false;
	}
	strcpy(field, value);
	return true;
}

/* Where row par's value lives in conf (instance instno's, if per instance). */
void *
cmconf_param_field(const cmconf_param *par, struct cmconf *conf, int instno)
{
	char	   *base = par->per_instance ?
		(char *) &conf->inst[instno] : (char *) conf;

	return base + par->offset;
}

/*
 * Convert value (the parameter as written in the file is name; instno its
 * instance for a per-instance row) and store it in field.  False, with the
 * message in err and field untouched, if the value is not one the row
 * accepts.
 */
bool
cmconf_param_store(const cmconf_param *par, const char *name, int instno,
				   const char *value, void *field, char *err, size_t errlen)
{
	char		shown[CMCONF_SHOW_BUF];

	cmconf_show(value, strlen(value), shown);
	switch (par->type)
	{
		case PT_INT:
		case PT_FACILITY:
		case PT_LEVEL:
		case PT_LOGDEST:
			return store_int(par, name, value, shown, field, err, errlen);
		case PT_HOST:
		case PT_HOSTADDR:
			return store_host(par, name, instno, value, shown, field, err, errlen);
		case PT_STRING:
			if ((long) strlen(value) < par->min || (long) strlen(value) > par->max)
			{
				snprintf(err, errlen,
						 "invalid value \"%s\" for parameter \"%s\": must be %ld to %ld characters long",
						 shown, name, par->min, par->max);
				return false;
			}
			break;
		case PT_FORWARD:
			{
				struct cmconf_forwards fw;
				char		why[CMCONF_DIAG_LEN];

				if (!parse_forward(value, &fw, why, sizeof(why)))
				{
					snprintf(err, errlen, "invalid value \"%s\" for parameter \"%s\": %s",
							 shown, name, why);
					return false;
				}
				memcpy(field, &fw, sizeof(fw));
				return true;
			}
		case PT_LISTEN:
			if (!parse_listen(value))
			{
				snprintf(err, errlen,
						 "invalid value \"%s\" for parameter \"%s\": must be \"*\" or a list of host names and IP addresses",
						 shown, name);
				return false;
			}
			if (strlen(value) > CMCONF_LISTEN_MAX)
			{
				snprintf(err, errlen, "value of parameter \"%s\" is too long: at most %d characters",
						 name, CMCONF_LISTEN_MAX);
				return false;
			}
			break;
	}
	strcpy((char *) field, value);
	return true;
}

/* ---- values shown ---- */

/*
 * Row par's value in conf as text, as conmgr.conf would spell it (without
 * quotes); "" for a parameter of an instance conf does not configure.
 */
void
cmconf_param_format(const cmconf_param *par, const struct cmconf *conf,
					int instno, char *buf, size_t cap)
{
	const void *field;
	int			v;

	if (par->per_instance && !conf->inst[instno].configured)
	{
		buf[0] = '\0';
		return;
	}
	field = cmconf_param_field(par, (struct cmconf *) conf, instno);
	if (par->type == PT_FORWARD)
	{
		snprintf(buf, cap, "%s", ((const struct cmconf_forwards *) field)->text);
		return;
	}
	if (par->type == PT_STRING || par->type == PT_HOST ||
		par->type == PT_HOSTADDR || par->type == PT_LISTEN)
	{
		snprintf(buf, cap, "%s", (const char *) field);
		return;
	}
	v = *(const int *) field;
	switch (par->type)
	{
		case PT_INT:
			snprintf(buf, cap, "%d", v);
			return;
		case PT_FACILITY:
			snprintf(buf, cap, "LOCAL%d", v);
			return;
		case PT_LEVEL:
			snprintf(buf, cap, "%s", cmlog_level_name(v));
			return;
		case PT_LOGDEST:
			snprintf(buf, cap, "%s%s%s",
					 (v & CMCONF_LOG_STDERR) ? "stderr" : "",
					 (v & CMCONF_LOG_STDERR) && (v & CMCONF_LOG_SYSLOG) ? "," : "",
					 (v & CMCONF_LOG_SYSLOG) ? "syslog" : "");
			return;
		default:
			break;
	}
	buf[0] = '\0';
}

/* Whether conmgr -v writes the value in quotes: all but numbers and names. */
bool
cmconf_param_quoted(const cmconf_param *par)
{
	return par->type != PT_INT && par->type != PT_FACILITY && par->type != PT_LEVEL;
}

/* Whether setting the row makes its instance configured: the addresses. */
bool
cmconf_param_names_instance(const cmconf_param *par)
{
	return par->type == PT_HOST || par->type == PT_HOSTADDR;
}
