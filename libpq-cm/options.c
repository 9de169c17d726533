/*-------------------------------------------------------------------------
 *
 * options.c
 *	  The application's connection options: flattened, split into
 *	  destinations, and turned into the options of each real attempt.
 *
 * libpq reads options from four places: the keyword/value arrays (or the
 * conninfo string), a connection string expanded from "dbname", a service
 * file, and the environment.  We flatten the first two the way libpq does
 * (later values win, empty values count as unset), add what a service
 * gives as libpq itself reads it, and fall back to the environment for the
 * few options that decide where to connect.  A real attempt is then made
 * with the flattened options, its host, hostaddr, port and
 * target_session_attrs replaced, and no expansion, so nothing of the
 * original can override what conmgr chose.
 *
 * Whatever we cannot interpret exactly as libpq would (a syntax error, an
 * unknown target_session_attrs, a service libpq cannot read) is left
 * entirely to libpq: the connection is then a plain libpq connection
 * ("pass-through"), and libpq's error is the application's.
 *
 *-------------------------------------------------------------------------
 */
#include <stdlib.h>
#include <string.h>

#include "cm_int.h"
#include "real.h"

static char *
xstrdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* Set key to val in c->opts (replacing an earlier value). */
static bool
opt_set(cm_conn *c, const char *key, const char *val)
{
	cm_kv	   *kv;

	for (int i = 0; i < c->nopts; i++)
		if (strcmp(c->opts[i].key, key) == 0)
		{
			char	   *v = strdup(val);

			if (v == NULL)
				return false;
			free(c->opts[i].val);
			c->opts[i].val = v;
			return true;
		}
	kv = realloc(c->opts, (c->nopts + 1) * sizeof(cm_kv));
	if (kv == NULL)
		return false;
	c->opts = kv;
	kv[c->nopts].key = strdup(key);
	kv[c->nopts].val = strdup(val);
	if (kv[c->nopts].key == NULL || kv[c->nopts].val == NULL)
		return false;
	c->nopts++;
	return true;
}

const char *
cm_opt(const cm_conn *c, const char *key)
{
	for (int i = 0; i < c->nopts; i++)
		if (strcmp(c->opts[i].key, key) == 0)
			return c->opts[i].val;
	return NULL;
}

/* Options of PQconninfoParse() output into c->opts; false on failure. */
static bool
opt_merge_conninfo(cm_conn *c, const char *conninfo)
{
	char	   *err = NULL;
	PQconninfoOption *o = REAL(PQconninfoParse) (conninfo, &err);
	bool		ok = true;

	if (o == NULL)
	{
		if (err)
			REAL(PQfreemem) (err);
		return false;
	}
	for (PQconninfoOption *p = o; p->keyword; p++)
		if (p->val != NULL && p->val[0] != '\0')
			ok = ok && opt_set(c, p->keyword, p->val);
	REAL(PQconninfoFree) (o);
	return ok;
}

/* libpq's test for "this dbname is a connection string". */
static bool
is_connstr(const char *s)
{
	return strncmp(s, "postgresql://", 13) == 0 ||
		strncmp(s, "postgres://", 11) == 0 || strchr(s, '=') != NULL;
}

/* Flatten the arrays the way conninfo_array_parse() reads them. */
static bool
opt_flatten(cm_conn *c, const char *const *keys, const char *const *vals,
			int expand)
{
	bool		expanded = false;

	for (int i = 0; keys[i] != NULL; i++)
	{
		const char *v = vals[i];

		if (v == NULL || v[0] == '\0')
			continue;
		if (expand && !expanded && strcmp(keys[i], "dbname") == 0)
		{
			expanded = true;
			if (is_connstr(v))
			{
				if (!opt_merge_conninfo(c, v))
					return false;
				continue;
			}
		}
		if (!opt_set(c, keys[i], v))
			return false;
	}
	return true;
}

/* Split a comma list; n items into out[], false if more than max. */
static int
split_list(const char *s, char **out, int max)
{
	int			n = 0;
	const char *p = s;

	for (;;)
	{
		const char *e = strchr(p, ',');
		size_t		len = e ? (size_t) (e - p) : strlen(p);

		if (n == max)
			return -1;
		out[n] = strndup(p, len);
		if (out[n] == NULL)
			return -1;
		n++;
		if (e == NULL)
			return n;
		p = e + 1;
	}
}

static const char *
opt_or_env(const cm_conn *c, const char *key, const char *env)
{
	const char *v = cm_opt(c, key);

	if (v == NULL)
		v = getenv(env);
	return (v != NULL && v[0] != '\0') ? v : NULL;
}

/*
 * The destination list, as libpq builds it from host, hostaddr and port;
 * false when libpq would reject it (it will say why).
 */
static bool
build_dests(cm_conn *c)
{
	const char *host = opt_or_env(c, "host", "PGHOST");
	const char *hostaddr = opt_or_env(c, "hostaddr", "PGHOSTADDR");
	const char *port = opt_or_env(c, "port", "PGPORT");
	char	   *hosts[CM_MAX_DESTS] = {0},
			   *addrs[CM_MAX_DESTS] = {0},
			   *ports[CM_MAX_DESTS] = {0};
	int			nh = 0,
				na = 0,
				np = 0,
				n;
	bool		ok = true;

	if (host && (nh = split_list(host, hosts, CM_MAX_DESTS)) < 0)
		ok = false;
	if (ok && hostaddr && (na = split_list(hostaddr, addrs, CM_MAX_DESTS)) < 0)
		ok = false;
	if (ok && port && (np = split_list(port, ports, CM_MAX_DESTS)) < 0)
		ok = false;
	n = nh > na ? nh : na;
	if (n == 0)
		n = 1;					/* the default Unix socket */
	if (ok && ((nh && na && nh != na) || (np > 1 && np != n)))
		ok = false;
	for (int i = 0; ok && i < n; i++)
	{
		cm_dest    *d = &c->dests[i];
		const char *h = i < nh ? hosts[i] : "";
		const char *a = i < na ? addrs[i] : "";
		const char *pt = np == 0 ? "5432" : np == 1 ? ports[0] : ports[i];

		d->host = strdup(h);
		d->hostaddr = a[0] ? strdup(a) : NULL;
		d->port = strdup(pt[0] ? pt : "5432");
		d->unix_socket = a[0] == '\0' && (h[0] == '\0' || h[0] == '/' || h[0] == '@');
		c->ndests = i + 1;
		if (d->host == NULL || d->port == NULL || (a[0] && d->hostaddr == NULL))
			ok = false;
	}
	for (int i = 0; i < CM_MAX_DESTS; i++)
	{
		free(hosts[i]);
		free(addrs[i]);
		free(ports[i]);
	}
	return ok;
}

static char **
dup_array(const char *const *a, int n)
{
	char	  **r = calloc(n + 1, sizeof(char *));

	for (int i = 0; r && i < n; i++)
		if (a[i] && (r[i] = strdup(a[i])) == NULL)
		{
			for (int j = 0; j < i; j++)
				free(r[j]);
			free(r);
			return NULL;
		}
	return r;
}

/*
 * A real libpq connection started (PQconnectStartParams) with the
 * application's own options, exactly as given, followed by the
 * NULL-terminated extra keys and values, which win over them.  NULL when
 * out of memory.
 */
static PGconn *
start_orig_plus(const cm_conn *c, const char *const *xkeys,
				const char *const *xvals)
{
	const char **k,
			  **v;
	int			n = 0,
				nx = 0,
				expand = 1;
	PGconn	   *pg = NULL;

	while (c->orig_keys && c->orig_keys[n])
		n++;
	if (c->orig_keys == NULL)
		n = 1;
	while (xkeys[nx])
		nx++;
	k = calloc(n + nx + 1, sizeof(char *));
	v = calloc(n + nx + 1, sizeof(char *));
	if (k != NULL && v != NULL)
	{
		if (c->orig_keys)
		{
			memcpy(k, c->orig_keys, n * sizeof(char *));
			memcpy(v, c->orig_vals, n * sizeof(char *));
			expand = c->orig_expand;
		}
		else
		{
			/* the connection string, expanded as the first dbname */
			k[0] = "dbname";
			v[0] = c->orig_conninfo && is_connstr(c->orig_conninfo) ? c->orig_conninfo : NULL;
		}
		memcpy(k + n, xkeys, nx * sizeof(char *));
		memcpy(v + n, xvals, nx * sizeof(char *));
		pg = REAL(PQconnectStartParams) (k, v, expand);
	}
	free(k);
	free(v);
	return pg;
}

/*
 * Apply the service file the way libpq does, by asking libpq: a real
 * connection started with the application's own options and a
 * channel_binding that is no value, which libpq refuses when it checks the
 * options, after it has read the service file and applied the environment
 * and the defaults, and before any I/O.  So the file searched (PGSERVICEFILE,
 * else ~/.pg_service.conf, then PGSYSCONFDIR's or the loaded libpq's own
 * sysconfdir) and the precedence (the application's options over the
 * service's, the service's over the environment's) are libpq's own.  Every
 * value that differs from what the environment or the default would give
 * and that the application did not set comes from the service, and joins
 * c->opts.  False when libpq cannot read the service (no file, no such
 * service, a syntax error, a nested service): libpq then says so itself.
 */
static bool
opt_apply_service(cm_conn *c)
{
	const char *keys[2] = {"channel_binding", NULL};
	const char *vals[2] = {"-", NULL};
	PGconn	   *pg = start_orig_plus(c, keys, vals);
	PQconninfoOption *o = pg ? REAL(PQconninfo) (pg) : NULL;
	bool		ok = false;

	for (PQconninfoOption *p = o; p && p->keyword; p++)
	{
		const char *env = p->envvar ? getenv(p->envvar) : NULL;
		const char *dflt = env && env[0] ? env : p->compiled;

		/* libpq always has a port once it has read the options */
		if (strcmp(p->keyword, "port") == 0)
			ok = p->val != NULL;
		if (p->val == NULL || p->val[0] == '\0' ||
			strcmp(p->keyword, "channel_binding") == 0 ||
			cm_opt(c, p->keyword) != NULL ||
			(dflt != NULL && strcmp(dflt, p->val) == 0))
			continue;
		if (!opt_set(c, p->keyword, p->val))
			ok = false;
	}
	if (o)
		REAL(PQconninfoFree) (o);
	if (pg)
		REAL(PQfinish) (pg);
	return ok;
}

/*
 * A new handle for the application's options: exactly one of conninfo
 * (PQconnectStart) or keys/vals (PQconnectStartParams).  NULL only when
 * out of memory.
 */
cm_conn *
cm_conn_new(const char *conninfo, const char *const *keys,
			const char *const *vals, int expand)
{
	cm_conn    *c = calloc(1, sizeof(cm_conn));
	bool		ok;
	const char *tsa,
			   *timeout;

	if (c == NULL)
		return NULL;
	c->magic = CM_CONN_MAGIC;
	c->sess.fd = -1;
	c->sql_fd = -1;
	c->watch_slot = -1;
	c->cm_instance = -1;
	if (conninfo)
	{
		c->orig_conninfo = strdup(conninfo);
		ok = c->orig_conninfo != NULL && opt_merge_conninfo(c, conninfo);
	}
	else
	{
		int			n = 0;

		while (keys[n])
			n++;
		c->orig_keys = dup_array(keys, n);
		c->orig_vals = calloc(n + 1, sizeof(char *));
		for (int i = 0; c->orig_vals && i < n; i++)
			c->orig_vals[i] = xstrdup(vals[i]);
		c->orig_expand = expand;
		ok = c->orig_keys && c->orig_vals && opt_flatten(c, keys, vals, expand);
	}
	if (c->orig_conninfo == NULL && c->orig_keys == NULL)
	{
		cm_conn_free(c);
		return NULL;
	}

	/* What we cannot read as libpq would, libpq handles alone. */
	if (ok && opt_or_env(c, "service", "PGSERVICE"))
		ok = opt_apply_service(c);
	tsa = opt_or_env(c, "target_session_attrs", "PGTARGETSESSIONATTRS");
	c->target = cmproto_target_from_name(tsa ? tsa : "any");
	c->tsa = c->target >= 0 ? cmproto_target_name(c->target) : NULL;
	if (!ok || c->target < 0 || !build_dests(c))
		c->passthrough = true;
	timeout = opt_or_env(c, "connect_timeout", "PGCONNECT_TIMEOUT");
	if (timeout)
	{
		c->connect_timeout = atoi(timeout);
		/* libpq rounds 1 s up to 2 s, so that one tick is not too short */
		if (c->connect_timeout == 1)
			c->connect_timeout = 2;
		if (c->connect_timeout < 0)
			c->connect_timeout = 0;
	}
	return c;
}

void
cm_conn_free(cm_conn *c)
{
	for (int i = 0; i < c->nopts; i++)
	{
		free(c->opts[i].key);
		free(c->opts[i].val);
	}
	free(c->opts);
	for (int i = 0; c->orig_keys && c->orig_keys[i]; i++)
	{
		free(c->orig_keys[i]);
		free(c->orig_vals ? c->orig_vals[i] : NULL);
	}
	free(c->orig_keys);
	free(c->orig_vals);
	free(c->orig_conninfo);
	for (int i = 0; i < c->ndests; i++)
	{
		free(c->dests[i].host);
		free(c->dests[i].hostaddr);
		free(c->dests[i].port);
	}
	c->magic = 0;
	free(c);
}

/* Join field "which" (0 host, 1 hostaddr, 2 port) of dests[first..last]. */
static char *
join_dests(const cm_conn *c, int first, int last, int which)
{
	size_t		len = 1;
	char	   *s;

	for (int i = first; i <= last; i++)
	{
		const cm_dest *d = &c->dests[i];
		const char *v = which == 0 ? d->host : which == 1 ? d->hostaddr : d->port;

		len += (v ? strlen(v) : 0) + 1;
	}
	s = calloc(1, len);
	for (int i = first; s && i <= last; i++)
	{
		const cm_dest *d = &c->dests[i];
		const char *v = which == 0 ? d->host : which == 1 ? d->hostaddr : d->port;

		if (i > first)
			strcat(s, ",");
		strcat(s, v ? v : "");
	}
	return s;
}

static PGconn *
start_with(const char *const *keys, const char *const *vals, int expand,
		   bool sync)
{
	PGconn	   *pg;

	if (sync)
	{
		cm_in_real++;
		pg = REAL(PQconnectdbParams) (keys, vals, expand);
		cm_in_real--;
	}
	else
		pg = REAL(PQconnectStartParams) (keys, vals, expand);
	return pg;
}

/*
 * Start (or, in sync mode, complete) a real libpq connection for attempt
 * a: the flattened options with the attempt's host, port and
 * target_session_attrs.
 */
PGconn *
cm_start_real(cm_conn *c, const cm_attempt *a, bool sync)
{
	const char **keys = calloc(c->nopts + 5, sizeof(char *));
	const char **vals = calloc(c->nopts + 5, sizeof(char *));
	char	   *host = NULL,
			   *hostaddr = NULL,
			   *port = NULL;
	int			n = 0;
	PGconn	   *pg = NULL;

	if (keys == NULL || vals == NULL)
		goto out;
	for (int i = 0; i < c->nopts; i++)
	{
		const char *k = c->opts[i].key;

		if (strcmp(k, "host") == 0 || strcmp(k, "hostaddr") == 0 ||
			strcmp(k, "port") == 0 || strcmp(k, "target_session_attrs") == 0)
			continue;

		/*
		 * The service's options are all in c->opts already; libpq would read
		 * it again and give a candidate named by host alone the hostaddr that
		 * named conmgr.
		 */
		if (strcmp(k, "service") == 0 && a->cand != NULL &&
			!a->cand->numeric && cm_opt(c, "hostaddr") != NULL)
			continue;
		keys[n] = k;
		vals[n++] = c->opts[i].val;
	}
	if (a->cand != NULL)
	{
		keys[n] = "host";
		vals[n++] = a->cand->host;
		keys[n] = "port";
		vals[n++] = a->cand->port;
		if (a->cand->numeric)
		{
			keys[n] = "hostaddr";
			vals[n++] = a->cand->host;
		}
	}
	else
	{
		bool		any_addr = false;

		for (int i = a->first_dest; i <= a->last_dest; i++)
			any_addr |= c->dests[i].hostaddr != NULL;
		host = join_dests(c, a->first_dest, a->last_dest, 0);
		port = join_dests(c, a->first_dest, a->last_dest, 2);
		if (any_addr)
			hostaddr = join_dests(c, a->first_dest, a->last_dest, 1);
		if (host == NULL || port == NULL || (any_addr && hostaddr == NULL))
			goto out;
		keys[n] = "host";
		vals[n++] = host;
		keys[n] = "port";
		vals[n++] = port;
		if (hostaddr)
		{
			keys[n] = "hostaddr";
			vals[n++] = hostaddr;
		}
	}
	keys[n] = "target_session_attrs";
	vals[n++] = a->tsa;
	keys[n] = NULL;
	pg = start_with(keys, vals, 0, sync);
out:
	free(keys);
	free(vals);
	free(host);
	free(hostaddr);
	free(port);
	return pg;
}

/* The application's own options, untouched, to the real libpq. */
PGconn *
cm_start_passthrough(cm_conn *c, bool sync)
{
	PGconn	   *pg;

	if (c->orig_keys)
		return start_with((const char *const *) c->orig_keys,
						  (const char *const *) c->orig_vals,
						  c->orig_expand, sync);
	if (sync)
	{
		cm_in_real++;
		pg = REAL(PQconnectdb) (c->orig_conninfo);
		cm_in_real--;
	}
	else
		pg = REAL(PQconnectStart) (c->orig_conninfo);
	return pg;
}

/*
 * The options connection of the destination being tried: a real libpq
 * connection started with the application's own options, exactly as given
 * (libpq flattens them, expands dbname and applies the service file, the
 * environment, the defaults and the password file itself), but with that
 * destination's host and port and a hostaddr that is no address ("-").
 * libpq fails it at its first step, the numeric parse of hostaddr, before
 * any I/O, and it then holds what libpq makes of the options: PQdb(),
 * PQuser(), PQpass() (the password file's entry for this host and port),
 * PQoptions(), PQconninfo().  Made on the first such question while there
 * is no inner connection, kept until the handle is torn down, so that the
 * strings returned stay valid as libpq's do.  NULL when it cannot be made.
 */
PGconn *
cm_opts_conn(cm_conn *c)
{
	int			di = c->di < c->ndests ? c->di : c->ndests - 1;
	const cm_dest *d;
	const char *keys[4] = {"host", "hostaddr", "port", NULL};
	const char *vals[4];
	PGconn	   *pg;

	if (di < 0)
		return NULL;
	if (c->opts_pg[di] != NULL)
		return c->opts_pg[di];
	d = &c->dests[di];
	/* libpq looks up the password file by host, else by hostaddr */
	vals[0] = d->host[0] ? d->host : d->hostaddr ? d->hostaddr : "";
	vals[1] = "-";
	vals[2] = d->port;
	vals[3] = NULL;
	pg = start_orig_plus(c, keys, vals);
	if (pg != NULL && REAL(PQstatus) (pg) != CONNECTION_BAD)
	{
		/* not what libpq does with that hostaddr: make no other attempt */
		REAL(PQfinish) (pg);
		pg = NULL;
	}
	c->opts_pg[di] = pg;
	return pg;
}

/*
 * PQconninfo() of an options connection, made to show the application's
 * host, hostaddr and port (those libpq would show: the option, else its
 * environment variable, else its default) rather than the destination's.
 */
void
cm_opts_restore(const cm_conn *c, PQconninfoOption *o)
{
	for (; o->keyword != NULL; o++)
	{
		const char *v;

		if (strcmp(o->keyword, "host") != 0 &&
			strcmp(o->keyword, "hostaddr") != 0 &&
			strcmp(o->keyword, "port") != 0)
			continue;
		if ((v = cm_opt(c, o->keyword)) == NULL &&
			(o->envvar == NULL || (v = getenv(o->envvar)) == NULL || v[0] == '\0'))
			v = o->compiled;
		free(o->val);
		o->val = xstrdup(v);
	}
}

void
cm_opts_free(cm_conn *c)
{
	for (int i = 0; i < CM_MAX_DESTS; i++)
		if (c->opts_pg[i] != NULL)
		{
			REAL(PQfinish) (c->opts_pg[i]);
			c->opts_pg[i] = NULL;
		}
}
