/*-------------------------------------------------------------------------
 *
 * cmconf.c
 *	  Parser of conmgr.conf.
 *
 * The syntax is a strict subset of postgresql.conf's: one "name = value"
 * per line, "#" comments, values quoted ('it''s', 'a\'b', 'c\\d') or bare
 * ([A-Za-z0-9_.:+-], so 27546 and ::1 need no quotes).  Every parameter is
 * a row of cmconf_params[] (cmconf_param.c, with its default and the
 * conversion of its values); a row marked per-instance takes a number
 * suffix (backend_host0, backend_port12).  A line is lexed, its name looked
 * up, duplicates refused, its value converted by type and range; the checks
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
 * (cmconf_apply_reloadable).  The defaults and conmgr -v's output
 * (cmconf_format) come from the same rows.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmconf_int.h"
#include "cmproto.h"
#include "cmlog.h"

#define NPARAMS		cmconf_nparams

/* Where each parameter was set, for duplicate and consistency messages. */
typedef struct parse_state
{
	const char *filename;
	struct cmconf *conf;
	struct cmconf_diags *diags;
	int			line;
	int			global_line[CMCONF_MAX_PARAMS];
	int			inst_line[CMCONF_MAX_INSTANCES][CMCONF_MAX_PARAMS];
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

static void err_at(parse_state *st, int line, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));

static void
err_at(parse_state *st, int line, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	diag_add(st->diags, CMLOG_ERROR, st->filename, line, fmt, ap);
	va_end(ap);
}

static void warn_at(parse_state *st, int line, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));

static void
warn_at(parse_state *st, int line, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	diag_add(st->diags, CMLOG_WARNING, st->filename, line, fmt, ap);
	va_end(ap);
}

/* Convert and store one value; an error recorded otherwise. */
static void
set_value(parse_state *st, const cmconf_param *par, int instno,
		  const char *name, const char *value)
{
	char		err[CMCONF_DIAG_LEN];

	if (!cmconf_param_store(par, name, instno, value,
							cmconf_param_field(par, st->conf, instno),
							err, sizeof(err)))
		err_at(st, st->line, "%s", err);
}

/* ---- names ---- */

/*
 * Find the parameter of a name (already lowercased); for per-instance ones
 * the number goes to *instno.  Reports its own errors; NULL if none.
 */
static const cmconf_param *
lookup_param(parse_state *st, const char *name, int *instno)
{
	char		shown[CMCONF_SHOW_BUF];

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
				   cmconf_show(name, strlen(name), shown));
			return NULL;
		}
		for (const char *p = num; *p && n <= CMCONF_MAX_INSTANCES; p++)
			n = n * 10 + (*p - '0');
		if (n >= CMCONF_MAX_INSTANCES)
		{
			err_at(st, st->line,
				   "invalid instance number in \"%s\": must be between 0 and %d",
				   cmconf_show(name, strlen(name), shown), CMCONF_MAX_INSTANCES - 1);
			return NULL;
		}
		*instno = (int) n;
		return par;
	}
	err_at(st, st->line, "unrecognized configuration parameter \"%s\"",
		   cmconf_show(name, strlen(name), shown));
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
 * The value that starts at p, quoted ('it''s', 'a\'b') or bare, into
 * value[] (CMCONF_LINE_MAX + 1 bytes: a value is part of a line).  Returns
 * where the line goes on after it, or NULL with an error recorded.
 */
static const char *
lex_value(parse_state *st, const char *p, const char *name, char *value)
{
	size_t		n = 0;
	char		shown[CMCONF_SHOW_BUF];

	if (*p == '\'')
	{
		p++;
		for (;;)
		{
			if (*p == '\0')
			{
				err_at(st, st->line, "unterminated quoted string in the value of \"%s\"", name);
				return NULL;
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
					return NULL;
				}
				if (p[1] != '\'' && p[1] != '\\')
				{
					err_at(st, st->line,
						   "invalid escape \"\\%s\" in the value of \"%s\": only \\' and \\\\ are allowed",
						   cmconf_show(p + 1, 1, shown), name);
					return NULL;
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
					   cmconf_show(p, 1, shown), name);
			return NULL;
		}
	}
	value[n] = '\0';
	return p;
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
	char		shown[CMCONF_SHOW_BUF];

	while (*p == ' ' || *p == '\t' || *p == '\r')
		p++;
	if (*p == '\0' || *p == '#')
		return;

	if (!is_name_char(*p, true))
	{
		err_at(st, st->line, "syntax error at \"%s\": expected a parameter name",
			   cmconf_show(p, 1, shown));
		return;
	}
	start = p;
	while (is_name_char(*p, p == start))
		p++;
	if ((size_t) (p - start) > CMCONF_NAME_MAX)
	{
		err_at(st, st->line, "parameter name \"%s\" is too long: at most %d characters",
			   cmconf_show(start, (size_t) (p - start), shown), CMCONF_NAME_MAX);
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
				   cmconf_show(p, 1, shown), name);
		return;
	}
	p++;
	while (*p == ' ' || *p == '\t')
		p++;

	if ((p = lex_value(st, p, name, value)) == NULL)
		return;

	while (*p == ' ' || *p == '\t' || *p == '\r')
		p++;
	if (*p != '\0' && *p != '#')
	{
		err_at(st, st->line,
			   "syntax error at \"%s\" after the value of \"%s\": one parameter per line, quote values with spaces or commas",
			   cmconf_show(p, 1, shown), name);
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

/*
 * Every row's default; a row whose default is "" leaves its field empty
 * (not set).  The defaults are values their rows accept, as the unit tests
 * check, so storing them reports nothing.
 */
void
cmconf_set_defaults(struct cmconf *conf)
{
	char		err[CMCONF_DIAG_LEN];

	memset(conf, 0, sizeof(*conf));
	for (int i = 0; i < NPARAMS; i++)
	{
		const cmconf_param *par = &cmconf_params[i];
		int			ninst = par->per_instance ? CMCONF_MAX_INSTANCES : 1;

		if (par->boot_val[0] == '\0')
			continue;
		for (int k = 0; k < ninst; k++)
			(void) cmconf_param_store(par, par->name, k, par->boot_val,
									  cmconf_param_field(par, conf, k),
									  err, sizeof(err));
	}
}

/* The row of a global parameter by name; the table has every one asked. */
static int
param_index(const char *name)
{
	for (int i = 0; i < NPARAMS; i++)
		if (strcmp(cmconf_params[i].name, name) == 0)
			return i;
	abort();
}

static void
check_whole(parse_state *st)
{
	struct cmconf *conf = st->conf;
	int			interval_idx = param_index("heartbeat_interval"),
				timeout_idx = param_index("heartbeat_timeout");

	conf->ninstances = 0;
	conf->inst_end = 0;
	for (int i = 0; i < CMCONF_MAX_INSTANCES; i++)
	{
		int		   *lines = st->inst_line[i];

		for (int k = 0; k < NPARAMS; k++)
			if (lines[k] != 0 && cmconf_param_names_instance(&cmconf_params[k]))
				conf->inst[i].configured = true;
		if (conf->inst[i].configured)
		{
			conf->ninstances++;
			conf->inst_end = i + 1;
			continue;
		}
		for (int k = 0; k < NPARAMS; k++)
		{
			if (lines[k] != 0 && !cmconf_param_names_instance(&cmconf_params[k]))
				err_at(st, lines[k],
					   "%s%d is set but instance %d has neither backend_host%d nor backend_hostaddr%d",
					   cmconf_params[k].name, i, i, i, i);
		}
	}
	if (conf->ninstances == 0)
		err_at(st, 0, "no instance is configured: set backend_host0 or backend_hostaddr0 at least");

	for (int i = 0; i < conf->forward_ports.n; i++)
		if (conf->forward_ports.f[i].port == conf->port)
			err_at(st, st->global_line[param_index("forward_ports")],
				   "invalid value for parameter \"forward_ports\": port %d of %s is conmgr's own port (parameter \"port\")",
				   conf->port, cmproto_target_name(conf->forward_ports.f[i].target));
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

static void out(outbuf *o, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));

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
 * One parameter as conmgr.conf spells it.  An instance's address rows that
 * are not set are left out: an empty one is an error in the file.
 */
static void
out_param(outbuf *o, const cmconf_param *par, const struct cmconf *conf, int instno)
{
	char		name[CMCONF_NAME_MAX + 16];
	char		value[CMCONF_LISTEN_MAX + 1];

	cmconf_param_format(par, conf, instno, value, sizeof(value));
	if (par->per_instance && cmconf_param_names_instance(par) && value[0] == '\0')
		return;
	if (par->per_instance)
		snprintf(name, sizeof(name), "%s%d", par->name, instno);
	else
		snprintf(name, sizeof(name), "%s", par->name);
	if (cmconf_param_quoted(par))
		out_quoted(o, name, value);
	else
		out(o, "%s = %s\n", name, value);
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
	for (int i = 0; i < NPARAMS; i++)
		if (!cmconf_params[i].per_instance)
			out_param(&o, &cmconf_params[i], conf, -1);
	for (int k = 0; k < CMCONF_MAX_INSTANCES; k++)
	{
		if (!conf->inst[k].configured)
			continue;
		out(&o, "\n# instance %d\n", k);
		for (int i = 0; i < NPARAMS; i++)
			if (cmconf_params[i].per_instance)
				out_param(&o, &cmconf_params[i], conf, k);
	}
	return o.len;
}

/* What conmgr connects to: backend_hostaddr when set, else backend_host. */
const char *
cmconf_connect_host(const struct cmconf_instance *inst)
{
	return inst->hostaddr[0] ? inst->hostaddr : inst->host;
}

/*
 * How many forwarder processes run: none without forward_ports;
 * forwarder_processes when set; else one per processor this process may
 * run on (its affinity, so a cpuset or taskset is respected), at most
 * CMCONF_MAX_FORWARDERS.
 */
int
cmconf_forwarders(const struct cmconf *conf)
{
	cpu_set_t	cpus;
	int			n = 1;

	if (conf->forward_ports.n == 0)
		return 0;
	if (conf->forwarder_processes > 0)
		return conf->forwarder_processes;
	if (sched_getaffinity(0, sizeof(cpus), &cpus) == 0)
		n = CPU_COUNT(&cpus);
	else
		n = (int) sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n > CMCONF_MAX_FORWARDERS ? CMCONF_MAX_FORWARDERS : n;
}

/*
 * Open files a role of conmgr needs at most (each role is a process of its
 * own with the same limit): the listener 9 + instances x 2 +
 * max_connections; with forward_ports, a forwarder
 * CMCONF_FW_FIXED_FILES + 3 per forwarder process + instances x 2 (a
 * CancelRequest's copies) plus, per forward port, 2 listen sockets (IPv4
 * and IPv6) per entry of listen_addresses, and 6 per session (two
 * sockets, two pipes): any one forwarder may hold every session.
 */
int
cmconf_nofile_needed(const struct cmconf *conf)
{
	long		n = 9L + 2L * conf->ninstances + conf->max_connections;

	if (conf->forward_ports.n > 0)
	{
		long		entries = 1;
		long		fw;

		for (const char *p = conf->listen_addresses; *p; p++)
			entries += *p == ',';
		fw = CMCONF_FW_FIXED_FILES + (long) CMCONF_FW_FILES_PER_PROCESS * cmconf_forwarders(conf) +
			2L * conf->ninstances + 2L * entries * conf->forward_ports.n + 6L * conf->max_connections;
		if (fw > n)
			n = fw;
	}
	return n > INT_MAX ? INT_MAX : (int) n;
}

/* ---- reload ---- */

static int
compare_one(const cmconf_param *par, int instno, const struct cmconf *oldconf,
			const struct cmconf *newconf, cmconf_change_fn fn, void *arg)
{
	char		name[64];
	char		a[CMCONF_LISTEN_MAX + 1];
	char		b[CMCONF_LISTEN_MAX + 1];

	/*
	 * An instance added or removed is named by its host parameters alone: its
	 * ports' defaults on the side where it is absent mean nothing.
	 */
	if (par->per_instance && par->type == PT_INT &&
		oldconf->inst[instno].configured != newconf->inst[instno].configured)
		return 0;
	cmconf_param_format(par, oldconf, instno, a, sizeof(a));
	cmconf_param_format(par, newconf, instno, b, sizeof(b));
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
