/*-------------------------------------------------------------------------
 *
 * cmconf.c
 *	  Parser of conmgr.conf.
 *
 * The syntax is a strict subset of postgresql.conf's: one "name = value"
 * per line, "#" comments, values quoted ('it''s', 'a\'b', 'c\\d') or bare
 * ([A-Za-z0-9_.:+-], so 27546 and ::1 need no quotes).  Every parameter is
 * a row of cmconf_params[]; a row marked per-instance takes a number suffix
 * (backend_host0, backend_port12).  A line is lexed, its name looked up,
 * duplicates refused, its value converted by type and range; the checks
 * that need the whole file (a port for an instance without a host, no
 * instance at all, timeout not above interval) run at the end.
 *
 * Each diagnostic starts with "file:line: " (or "file: " for the whole
 * file) and names the parameter; all are collected, up to
 * CMCONF_MAX_DIAGS, and the parse fails if any is an error.
 *
 * Each row also says whether a reload may change the parameter: for a
 * reload, the daemon parses the file into a new struct, lists the
 * differences (cmconf_compare) and copies only the reloadable ones
 * (cmconf_apply_reloadable).
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmconf.h"
#include "cmhost.h"
#include "cmlog.h"
#include "cmproto.h"

typedef enum param_type
{
	PT_INT,
	PT_STRING,
	PT_FACILITY,				/* LOCAL0..LOCAL7 */
	PT_LEVEL,					/* a cmlog level name */
	PT_LOGDEST,					/* 'stderr', 'syslog' or both */
	PT_HOST,					/* host name or numeric address */
	PT_HOSTADDR,				/* numeric address only */
	PT_LISTEN					/* "*" or a list of host names/addresses */
} param_type;

/* When a new value takes effect, as PostgreSQL's GucContext. */
typedef enum param_context
{
	PC_RESTART,					/* read at start; a reload keeps the old value */
	PC_RELOAD					/* a reload (SIGHUP) applies it */
} param_context;

typedef struct cmconf_param
{
	const char *name;
	param_type	type;
	bool		per_instance;
	size_t		offset;			/* in struct cmconf or cmconf_instance */
	long		min;			/* PT_INT range; PT_STRING max length */
	long		max;
	param_context context;
} cmconf_param;

#define G(f)	offsetof(struct cmconf, f)
#define I(f)	offsetof(struct cmconf_instance, f)

/*
 * Per-instance rows first, and backend_hostaddr before backend_host, so
 * that the longest prefix is tried first.
 */
static const cmconf_param cmconf_params[] = {
	{"backend_hostaddr", PT_HOSTADDR, true, I(hostaddr), 1, CMCONF_HOST_MAX, PC_RESTART},
	{"backend_host", PT_HOST, true, I(host), 1, CMCONF_HOST_MAX, PC_RESTART},
	{"backend_port", PT_INT, true, I(backend_port), 1, 65535, PC_RESTART},
	{"watchdog_port", PT_INT, true, I(watchdog_port), 1, 65535, PC_RESTART},
	{"port", PT_INT, false, G(port), 1, 65535, PC_RESTART},
	{"listen_addresses", PT_LISTEN, false, G(listen_addresses), 1, CMCONF_LISTEN_MAX, PC_RESTART},
	{"heartbeat_interval", PT_INT, false, G(heartbeat_interval), 1, CMPROTO_HB_INTERVAL_MAX, PC_RESTART},
	{"heartbeat_timeout", PT_INT, false, G(heartbeat_timeout), 1, CMPROTO_HB_TIMEOUT_MAX, PC_RESTART},
	{"heartbeat_connect_interval", PT_INT, false, G(heartbeat_connect_interval), 1, INT_MAX, PC_RESTART},
	{"heartbeat_connect_timeout", PT_INT, false, G(heartbeat_connect_timeout), 1, INT_MAX, PC_RESTART},
	{"log_destination", PT_LOGDEST, false, G(log_destination), 0, 0, PC_RELOAD},
	{"syslog_facility", PT_FACILITY, false, G(syslog_facility), 0, 7, PC_RELOAD},
	{"syslog_ident", PT_STRING, false, G(syslog_ident), 1, CMCONF_IDENT_MAX, PC_RELOAD},
	{"log_min_messages", PT_LEVEL, false, G(log_min_messages), 0, CMLOG_LAST, PC_RELOAD},
	{"max_connections", PT_INT, false, G(max_connections), 0, INT_MAX, PC_RESTART},
	{"attach_timeout", PT_INT, false, G(attach_timeout), 1, INT_MAX, PC_RESTART},
	{"heartbeat_key_file", PT_STRING, false, G(heartbeat_key_file), 0, CMCONF_HOST_MAX, PC_RESTART},
};

#define NPARAMS		((int) (sizeof(cmconf_params) / sizeof(cmconf_params[0])))
#define NINSTPARAMS 4			/* the per-instance rows above */

/* Where each parameter was set, for duplicate and consistency messages. */
typedef struct parse_state
{
	const char *filename;
	struct cmconf *conf;
	struct cmconf_diags *diags;
	int			line;
	int			global_line[NPARAMS];
	int			inst_line[CMCONF_MAX_INSTANCES][NINSTPARAMS];
} parse_state;

static void
diag_add(struct cmconf_diags *diags, int level, const char *filename,
		 int line, const char *fmt, va_list ap)
{
	struct cmconf_diag *d;
	int			n;

	if (level == CMLOG_ERROR)
		diags->nerrors++;
	else
		diags->nwarnings++;
	if (diags->count >= CMCONF_MAX_DIAGS)
	{
		diags->dropped++;
		return;
	}
	d = &diags->d[diags->count++];
	d->level = level;
	d->line = line;
	if (line > 0)
		n = snprintf(d->msg, sizeof(d->msg), "%s:%d: ", filename, line);
	else
		n = snprintf(d->msg, sizeof(d->msg), "%s: ", filename);
	if (n < 0 || (size_t) n >= sizeof(d->msg))
		n = 0;
	vsnprintf(d->msg + n, sizeof(d->msg) - n, fmt, ap);
}

static void
err_at(parse_state *st, int line, const char *fmt,...)
	__attribute__((format(printf, 3, 4)));
static void
err_at(parse_state *st, int line, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	diag_add(st->diags, CMLOG_ERROR, st->filename, line, fmt, ap);
	va_end(ap);
}

static void
warn_at(parse_state *st, int line, const char *fmt,...)
	__attribute__((format(printf, 3, 4)));
static void
warn_at(parse_state *st, int line, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	diag_add(st->diags, CMLOG_WARNING, st->filename, line, fmt, ap);
	va_end(ap);
}

/*
 * Bytes from the file as a diagnostic shows them: printable ASCII as is,
 * anything else (control characters, bytes of a non-UTF-8 or multi-byte
 * text) as \xNN, and at most SHOW_MAX bytes of it followed by "...", so
 * that a terminal never receives raw control bytes and a long value never
 * pushes the parameter's name and rule out of the message.
 */
#define SHOW_MAX	48
#define SHOW_BUF	(SHOW_MAX * 4 + 4)

static const char *
show(const char *s, size_t len, char *buf)
{
	char	   *o = buf;

	for (size_t i = 0; i < len && i < SHOW_MAX; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c >= 0x20 && c < 0x7f)
			*o++ = (char) c;
		else
			o += snprintf(o, 5, "\\x%02X", c);
	}
	if (len > SHOW_MAX)
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

/* Convert and store one value; false with an error recorded otherwise. */
static void
set_value(parse_state *st, const cmconf_param *par, int instno,
		  const char *name, const char *value)
{
	char	   *base = par->per_instance ?
		(char *) &st->conf->inst[instno] : (char *) st->conf;
	void	   *field = base + par->offset;
	int			v;
	char		shown[SHOW_BUF];

	show(value, strlen(value), shown);
	switch (par->type)
	{
		case PT_INT:
			if (!parse_int(value, par->min, par->max, &v))
			{
				err_at(st, st->line,
					   "invalid value \"%s\" for parameter \"%s\": must be an integer between %ld and %ld",
					   shown, name, par->min, par->max);
				return;
			}
			*(int *) field = v;
			return;
		case PT_STRING:
			if ((long) strlen(value) < par->min || (long) strlen(value) > par->max)
			{
				err_at(st, st->line,
					   "invalid value \"%s\" for parameter \"%s\": must be %ld to %ld characters long",
					   shown, name, par->min, par->max);
				return;
			}
			strcpy((char *) field, value);
			return;
		case PT_HOST:
		case PT_HOSTADDR:
			if (value[0] == '\0')
			{
				err_at(st, st->line, "parameter \"%s\" must not be empty", name);
				return;
			}
			if (strlen(value) > CMCONF_HOST_MAX)
			{
				err_at(st, st->line,
					   "value of parameter \"%s\" is too long: at most %d characters",
					   name, CMCONF_HOST_MAX);
				return;
			}
			if (par->type == PT_HOSTADDR && !cmhost_is_numeric(value))
			{
				err_at(st, st->line,
					   "invalid value \"%s\" for parameter \"%s\": must be a numeric IPv4 or IPv6 address (host names go in backend_host%d)",
					   shown, name, instno);
				return;
			}
			if (par->type == PT_HOST && !cmhost_is_numeric(value) &&
				!cmhost_is_name(value))
			{
				err_at(st, st->line,
					   "invalid value \"%s\" for parameter \"%s\": not a host name or an IP address",
					   shown, name);
				return;
			}
			strcpy((char *) field, value);
			return;
		case PT_FACILITY:
			if (strncasecmp(value, "LOCAL", 5) != 0 || value[5] < '0' ||
				value[5] > '7' || value[6] != '\0')
			{
				err_at(st, st->line,
					   "invalid value \"%s\" for parameter \"%s\": must be one of LOCAL0 to LOCAL7",
					   shown, name);
				return;
			}
			*(int *) field = value[5] - '0';
			return;
		case PT_LEVEL:
			v = cmlog_level_from_name(value);
			if (v < 0)
			{
				err_at(st, st->line,
					   "invalid value \"%s\" for parameter \"%s\": must be one of DEBUG5 to DEBUG1, DEBUG, INFO, NOTICE, WARNING, ERROR, LOG, FATAL, PANIC",
					   shown, name);
				return;
			}
			*(int *) field = v;
			return;
		case PT_LISTEN:
			if (!parse_listen(value))
			{
				err_at(st, st->line,
					   "invalid value \"%s\" for parameter \"%s\": must be \"*\" or a list of host names and IP addresses",
					   shown, name);
				return;
			}
			if (strlen(value) > CMCONF_LISTEN_MAX)
			{
				err_at(st, st->line, "value of parameter \"%s\" is too long: at most %d characters",
					   name, CMCONF_LISTEN_MAX);
				return;
			}
			strcpy((char *) field, value);
			return;
		case PT_LOGDEST:
			if (!parse_logdest(value, &v))
			{
				err_at(st, st->line,
					   "invalid value \"%s\" for parameter \"%s\": must be a list of \"stderr\" and \"syslog\"",
					   shown, name);
				return;
			}
			*(int *) field = v;
			return;
	}
}

/* ---- names ---- */

/*
 * Find the parameter of a name (already lowercased); for per-instance ones
 * the number goes to *instno.  Reports its own errors; NULL if none.
 */
static const cmconf_param *
lookup_param(parse_state *st, const char *name, int *instno)
{
	char		shown[SHOW_BUF];

	*instno = -1;
	for (int i = 0; i < NPARAMS; i++)
	{
		const cmconf_param *par = &cmconf_params[i];
		size_t		plen = strlen(par->name);
		const char *num;
		long		n = 0;

		if (!par->per_instance)
		{
			if (strcmp(name, par->name) == 0)
				return par;
			continue;
		}
		if (strncmp(name, par->name, plen) != 0)
			continue;
		num = name + plen;
		if (*num == '\0')
		{
			err_at(st, st->line,
				   "parameter \"%s\" needs an instance number, as in \"%s0\"",
				   name, name);
			return NULL;
		}
		if (strspn(num, "0123456789") != strlen(num))
			continue;			/* backend_hostaddr vs backend_host + "addr" */
		if (num[0] == '0' && num[1] != '\0')
		{
			err_at(st, st->line,
				   "invalid instance number in \"%s\": no leading zeros",
				   show(name, strlen(name), shown));
			return NULL;
		}
		for (const char *p = num; *p && n <= CMCONF_MAX_INSTANCES; p++)
			n = n * 10 + (*p - '0');
		if (n >= CMCONF_MAX_INSTANCES)
		{
			err_at(st, st->line,
				   "invalid instance number in \"%s\": must be between 0 and %d",
				   show(name, strlen(name), shown), CMCONF_MAX_INSTANCES - 1);
			return NULL;
		}
		*instno = (int) n;
		return par;
	}
	err_at(st, st->line, "unrecognized configuration parameter \"%s\"",
		   show(name, strlen(name), shown));
	return NULL;
}

static int *
line_slot(parse_state *st, const cmconf_param *par, int instno)
{
	int			idx = (int) (par - cmconf_params);

	if (par->per_instance)
		return &st->inst_line[instno][idx];
	return &st->global_line[idx];
}

/* ---- lexing ---- */

static bool
is_name_char(char c, bool first)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
		(!first && c >= '0' && c <= '9');
}

static bool
is_bare_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		(c >= '0' && c <= '9') || c == '_' || c == '.' || c == ':' ||
		c == '+' || c == '-';
}

/*
 * One line, NUL-terminated, without its newline: at most CMCONF_LINE_MAX
 * bytes, so a value, which is a part of it, always fits value[]; a name is
 * checked against name[] before it is copied.
 */
static void
parse_line(parse_state *st, const char *p)
{
	char		name[CMCONF_NAME_MAX + 1];
	char		value[CMCONF_LINE_MAX + 1];
	const char *start;
	size_t		n = 0;
	const cmconf_param *par;
	int			instno;
	int		   *where;
	char		shown[SHOW_BUF];

	while (*p == ' ' || *p == '\t' || *p == '\r')
		p++;
	if (*p == '\0' || *p == '#')
		return;

	if (!is_name_char(*p, true))
	{
		err_at(st, st->line, "syntax error at \"%s\": expected a parameter name",
			   show(p, 1, shown));
		return;
	}
	start = p;
	while (is_name_char(*p, p == start))
		p++;
	if ((size_t) (p - start) > CMCONF_NAME_MAX)
	{
		err_at(st, st->line, "parameter name \"%s\" is too long: at most %d characters",
			   show(start, (size_t) (p - start), shown), CMCONF_NAME_MAX);
		return;
	}
	for (; start < p; start++)
		name[n++] = (*start >= 'A' && *start <= 'Z') ? *start - 'A' + 'a' : *start;
	name[n] = '\0';

	while (*p == ' ' || *p == '\t')
		p++;
	if (*p != '=')
	{
		if (*p == '\0' || *p == '#' || *p == '\r')
			err_at(st, st->line, "syntax error: \"=\" and a value expected after \"%s\"", name);
		else
			err_at(st, st->line, "syntax error at \"%s\": \"=\" expected after \"%s\"",
				   show(p, 1, shown), name);
		return;
	}
	p++;
	while (*p == ' ' || *p == '\t')
		p++;

	n = 0;
	if (*p == '\'')
	{
		p++;
		for (;;)
		{
			if (*p == '\0')
			{
				err_at(st, st->line, "unterminated quoted string in the value of \"%s\"", name);
				return;
			}
			if (*p == '\'' && p[1] == '\'')
			{
				value[n++] = '\'';
				p += 2;
			}
			else if (*p == '\'')
			{
				p++;
				break;
			}
			else if (*p == '\\')
			{
				if (p[1] == '\0')
				{
					/* "\" at the end of the line: the quote is still open */
					err_at(st, st->line, "unterminated quoted string in the value of \"%s\"", name);
					return;
				}
				if (p[1] != '\'' && p[1] != '\\')
				{
					err_at(st, st->line,
						   "invalid escape \"\\%s\" in the value of \"%s\": only \\' and \\\\ are allowed",
						   show(p + 1, 1, shown), name);
					return;
				}
				value[n++] = p[1];
				p += 2;
			}
			else
				value[n++] = *p++;
		}
	}
	else
	{
		while (is_bare_char(*p))
			value[n++] = *p++;
		if (n == 0)
		{
			if (*p == '\0' || *p == '#' || *p == '\r')
				err_at(st, st->line, "missing value for parameter \"%s\"", name);
			else
				err_at(st, st->line,
					   "syntax error at \"%s\" in the value of \"%s\": quote values that contain it",
					   show(p, 1, shown), name);
			return;
		}
	}
	value[n] = '\0';

	while (*p == ' ' || *p == '\t' || *p == '\r')
		p++;
	if (*p != '\0' && *p != '#')
	{
		err_at(st, st->line,
			   "syntax error at \"%s\" after the value of \"%s\": one parameter per line, quote values with spaces or commas",
			   show(p, 1, shown), name);
		return;
	}

	if ((par = lookup_param(st, name, &instno)) == NULL)
		return;
	where = line_slot(st, par, instno);
	if (*where != 0)
	{
		err_at(st, st->line, "parameter \"%s\" is already set at line %d",
			   name, *where);
		return;
	}
	*where = st->line;
	set_value(st, par, instno, name, value);
}

/* ---- whole file ---- */

void
cmconf_set_defaults(struct cmconf *conf)
{
	memset(conf, 0, sizeof(*conf));
	conf->port = 27546;
	strcpy(conf->listen_addresses, "localhost");
	conf->heartbeat_interval = 10;
	conf->heartbeat_timeout = 20;
	conf->heartbeat_connect_interval = 1;
	conf->heartbeat_connect_timeout = 10;
	conf->log_destination = CMCONF_LOG_STDERR;
	conf->syslog_facility = 0;
	strcpy(conf->syslog_ident, "conmgr");
	conf->log_min_messages = CMLOG_WARNING;
	conf->max_connections = 0;
	conf->attach_timeout = 600;
	for (int i = 0; i < CMCONF_MAX_INSTANCES; i++)
	{
		conf->inst[i].backend_port = 27500;
		conf->inst[i].watchdog_port = 27545;
	}
}

static void
check_whole(parse_state *st)
{
	struct cmconf *conf = st->conf;
	int			interval_idx = -1,
				timeout_idx = -1;

	conf->ninstances = 0;
	for (int i = 0; i < CMCONF_MAX_INSTANCES; i++)
	{
		int		   *lines = st->inst_line[i];

		/* rows 0 and 1 are hostaddr and host, 2 and 3 the ports */
		conf->inst[i].configured = lines[0] != 0 || lines[1] != 0;
		if (conf->inst[i].configured)
		{
			conf->ninstances++;
			continue;
		}
		for (int k = 2; k < NINSTPARAMS; k++)
		{
			if (lines[k] != 0)
				err_at(st, lines[k],
					   "%s%d is set but instance %d has neither backend_host%d nor backend_hostaddr%d",
					   cmconf_params[k].name, i, i, i, i);
		}
	}
	if (conf->ninstances == 0)
		err_at(st, 0, "no instance is configured: set backend_host0 or backend_hostaddr0 at least");

	for (int i = 0; i < NPARAMS; i++)
	{
		if (strcmp(cmconf_params[i].name, "heartbeat_interval") == 0)
			interval_idx = i;
		else if (strcmp(cmconf_params[i].name, "heartbeat_timeout") == 0)
			timeout_idx = i;
	}
	if (conf->heartbeat_timeout <= conf->heartbeat_interval)
	{
		int			line = st->global_line[timeout_idx];

		if (line == 0)
			line = st->global_line[interval_idx];
		warn_at(st, line,
				"heartbeat_timeout (%d) is not greater than heartbeat_interval (%d): every heartbeat session will time out",
				conf->heartbeat_timeout, conf->heartbeat_interval);
	}
}

int
cmconf_parse_buffer(const char *filename, const char *text, size_t len,
					struct cmconf *conf, struct cmconf_diags *diags)
{
	parse_state st;
	char		line[CMCONF_LINE_MAX + 1];
	size_t		pos = 0;

	memset(diags, 0, sizeof(*diags));
	memset(&st, 0, sizeof(st));
	st.filename = filename;
	st.conf = conf;
	st.diags = diags;
	cmconf_set_defaults(conf);

	while (pos < len)
	{
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t		n = nl ? (size_t) (nl - (text + pos)) : len - pos;

		st.line++;
		if (n > CMCONF_LINE_MAX)
			err_at(&st, st.line, "line is too long: at most %d bytes", CMCONF_LINE_MAX);
		else if (memchr(text + pos, '\0', n) != NULL)
			err_at(&st, st.line, "line contains a NUL byte");
		else
		{
			memcpy(line, text + pos, n);
			line[n] = '\0';
			parse_line(&st, line);
		}
		pos += n + (nl ? 1 : 0);
	}
	check_whole(&st);
	return diags->nerrors > 0 ? -1 : 0;
}

int
cmconf_load_file(const char *path, struct cmconf *conf,
				 struct cmconf_diags *diags)
{
	static char buf[CMCONF_FILE_MAX + 1];
	size_t		len = 0;
	int			fd;
	parse_state st;

	memset(diags, 0, sizeof(*diags));
	memset(&st, 0, sizeof(st));
	st.filename = path;
	st.diags = diags;
	cmconf_set_defaults(conf);

	/* O_NONBLOCK: a FIFO in its place must not hang us on open */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
	{
		err_at(&st, 0, "could not open configuration file: %s", strerror(errno));
		return -1;
	}
	{
		struct stat sb;

		if (fstat(fd, &sb) == 0 && !S_ISREG(sb.st_mode) && !S_ISDIR(sb.st_mode))
		{
			err_at(&st, 0, "configuration file is not a regular file");
			close(fd);
			return -1;
		}
	}
	for (;;)
	{
		ssize_t		n = read(fd, buf + len, sizeof(buf) - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
		{
			err_at(&st, 0, "could not read configuration file: %s", strerror(errno));
			close(fd);
			return -1;
		}
		if (n == 0)
			break;
		len += n;
		if (len > CMCONF_FILE_MAX)
		{
			err_at(&st, 0, "configuration file is too large: at most %d bytes", CMCONF_FILE_MAX);
			close(fd);
			return -1;
		}
	}
	close(fd);
	return cmconf_parse_buffer(path, buf, len, conf, diags);
}

/* ---- output ---- */

typedef struct outbuf
{
	char	   *p;
	size_t		cap;
	size_t		len;			/* what would have been written */
} outbuf;

static void
out(outbuf *o, const char *fmt,...) __attribute__((format(printf, 2, 3)));
static void
out(outbuf *o, const char *fmt,...)
{
	va_list		ap;
	int			n;

	va_start(ap, fmt);
	n = vsnprintf(o->len < o->cap ? o->p + o->len : NULL,
				  o->len < o->cap ? o->cap - o->len : 0, fmt, ap);
	va_end(ap);
	if (n > 0)
		o->len += n;
}

static void
out_quoted(outbuf *o, const char *name, const char *value)
{
	out(o, "%s = '", name);
	for (const char *p = value; *p; p++)
	{
		if (*p == '\'')
			out(o, "''");
		else if (*p == '\\')
			out(o, "\\\\");
		else
			out(o, "%c", *p);
	}
	out(o, "'\n");
}

/*
 * The normalised configuration: every parameter, defaults included,
 * instances in number order.  Re-parsing it gives the same struct.  Returns
 * the length it needs (like snprintf); truncated when cap is too small.
 */
size_t
cmconf_format(const struct cmconf *conf, char *buf, size_t cap)
{
	outbuf		o = {buf, cap, 0};

	if (cap > 0)
		buf[0] = '\0';
	out(&o, "port = %d\n", conf->port);
	out_quoted(&o, "listen_addresses", conf->listen_addresses);
	out(&o, "heartbeat_interval = %d\n", conf->heartbeat_interval);
	out(&o, "heartbeat_timeout = %d\n", conf->heartbeat_timeout);
	out(&o, "heartbeat_connect_interval = %d\n", conf->heartbeat_connect_interval);
	out(&o, "heartbeat_connect_timeout = %d\n", conf->heartbeat_connect_timeout);
	out(&o, "log_destination = '%s%s%s'\n",
		(conf->log_destination & CMCONF_LOG_STDERR) ? "stderr" : "",
		(conf->log_destination & CMCONF_LOG_STDERR) &&
		(conf->log_destination & CMCONF_LOG_SYSLOG) ? "," : "",
		(conf->log_destination & CMCONF_LOG_SYSLOG) ? "syslog" : "");
	out(&o, "syslog_facility = LOCAL%d\n", conf->syslog_facility);
	out_quoted(&o, "syslog_ident", conf->syslog_ident);
	out(&o, "log_min_messages = %s\n", cmlog_level_name(conf->log_min_messages));
	out(&o, "max_connections = %d\n", conf->max_connections);
	out(&o, "attach_timeout = %d\n", conf->attach_timeout);
	out_quoted(&o, "heartbeat_key_file", conf->heartbeat_key_file);
	for (int i = 0; i < CMCONF_MAX_INSTANCES; i++)
	{
		const struct cmconf_instance *in = &conf->inst[i];
		char		name[32];

		if (!in->configured)
			continue;
		out(&o, "\n# instance %d\n", i);
		if (in->host[0])
		{
			snprintf(name, sizeof(name), "backend_host%d", i);
			out_quoted(&o, name, in->host);
		}
		if (in->hostaddr[0])
		{
			snprintf(name, sizeof(name), "backend_hostaddr%d", i);
			out_quoted(&o, name, in->hostaddr);
		}
		out(&o, "backend_port%d = %d\n", i, in->backend_port);
		out(&o, "watchdog_port%d = %d\n", i, in->watchdog_port);
	}
	return o.len;
}

/* What conmgr connects to: backend_hostaddr when set, else backend_host. */
const char *
cmconf_connect_host(const struct cmconf_instance *inst)
{
	return inst->hostaddr[0] ? inst->hostaddr : inst->host;
}

/* Open files conmgr needs: 9 + instances x 2 + max_connections. */
int
cmconf_nofile_needed(const struct cmconf *conf)
{
	long		n = 9L + 2L * conf->ninstances + conf->max_connections;

	return n > INT_MAX ? INT_MAX : (int) n;
}

/* ---- reload ---- */

/*
 * One parameter's value as text, as conmgr.conf would spell it (without
 * quotes); "" for a parameter of an instance the file does not configure.
 */
static void
format_value(const cmconf_param *par, const struct cmconf *conf, int instno,
			 char *buf, size_t cap)
{
	const char *base;
	const void *field;

	if (par->per_instance && !conf->inst[instno].configured)
	{
		buf[0] = '\0';
		return;
	}
	base = par->per_instance ? (const char *) &conf->inst[instno] : (const char *) conf;
	field = base + par->offset;
	switch (par->type)
	{
		case PT_INT:
			snprintf(buf, cap, "%d", *(const int *) field);
			return;
		case PT_STRING:
		case PT_HOST:
		case PT_HOSTADDR:
		case PT_LISTEN:
			snprintf(buf, cap, "%s", (const char *) field);
			return;
		case PT_FACILITY:
			snprintf(buf, cap, "LOCAL%d", *(const int *) field);
			return;
		case PT_LEVEL:
			snprintf(buf, cap, "%s", cmlog_level_name(*(const int *) field));
			return;
		case PT_LOGDEST:
			{
				int			v = *(const int *) field;

				snprintf(buf, cap, "%s%s%s",
						 (v & CMCONF_LOG_STDERR) ? "stderr" : "",
						 (v & CMCONF_LOG_STDERR) && (v & CMCONF_LOG_SYSLOG) ? "," : "",
						 (v & CMCONF_LOG_SYSLOG) ? "syslog" : "");
				return;
			}
	}
	buf[0] = '\0';
}

static int
compare_one(const cmconf_param *par, int instno, const struct cmconf *oldconf,
			const struct cmconf *newconf, cmconf_change_fn fn, void *arg)
{
	char		name[64];
	char		a[CMCONF_LISTEN_MAX + 1];
	char		b[CMCONF_LISTEN_MAX + 1];

	/*
	 * An instance added or removed is named by its host parameters alone:
	 * its ports' defaults on the side where it is absent mean nothing.
	 */
	if (par->per_instance && par->type == PT_INT &&
		oldconf->inst[instno].configured != newconf->inst[instno].configured)
		return 0;
	format_value(par, oldconf, instno, a, sizeof(a));
	format_value(par, newconf, instno, b, sizeof(b));
	if (strcmp(a, b) == 0)
		return 0;
	if (par->per_instance)
		snprintf(name, sizeof(name), "%s%d", par->name, instno);
	else
		snprintf(name, sizeof(name), "%s", par->name);
	fn(arg, name, a, b, par->context == PC_RELOAD);
	return 1;
}

/*
 * Call fn for each parameter whose value differs between oldconf and
 * newconf, in the table's order, instances by number; returns how many
 * differ.
 */
int
cmconf_compare(const struct cmconf *oldconf, const struct cmconf *newconf,
			   cmconf_change_fn fn, void *arg)
{
	int			n = 0;

	for (int i = 0; i < NPARAMS; i++)
	{
		const cmconf_param *par = &cmconf_params[i];

		if (!par->per_instance)
		{
			n += compare_one(par, -1, oldconf, newconf, fn, arg);
			continue;
		}
		for (int k = 0; k < CMCONF_MAX_INSTANCES; k++)
			if (oldconf->inst[k].configured || newconf->inst[k].configured)
				n += compare_one(par, k, oldconf, newconf, fn, arg);
	}
	return n;
}

/* Copy the parameters that a reload may change from src into dst. */
void
cmconf_apply_reloadable(struct cmconf *dst, const struct cmconf *src)
{
	for (int i = 0; i < NPARAMS; i++)
	{
		const cmconf_param *par = &cmconf_params[i];
		size_t		size;

		if (par->context != PC_RELOAD || par->per_instance)
			continue;
		/* strings are validated to hold at most max bytes and a NUL */
		size = par->type == PT_STRING ? (size_t) par->max + 1 : sizeof(int);
		memcpy((char *) dst + par->offset, (const char *) src + par->offset, size);
	}
}
