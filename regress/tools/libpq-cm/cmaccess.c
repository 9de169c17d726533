/*-------------------------------------------------------------------------
 *
 * cmaccess.c
 *	  What a connection's accessors say while it connects, and after it
 *	  failed: one line per accessor, for comparing libpq-cm with libpq.
 *
 *	  cmaccess string|params now|end KEYWORD=VALUE...
 *	  cmaccess raw now|end CONNINFO
 *
 * "string" starts the connection with PQconnectStart() and a connection
 * string made of the pairs, "raw" with the connection string (or URI)
 * given; "params" with PQconnectStartParams() and the
 * pairs as arrays (expand_dbname 1, so a dbname may be a connection
 * string).  "now" prints right after the start; "end" first polls until
 * the connection is made or fails (at most 10 s), then prints.  With
 * CMACCESS_NONBLOCKING set in the environment, PQsetnonblocking(conn, 1)
 * follows the start.
 *
 * Built twice from this file: cmaccess with libpq-cm, cmaccess-plain with
 * libpq alone (regress/t/061_libpq_cm_api.t compares their output).
 *
 *-------------------------------------------------------------------------
 */
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#define MAX_PAIRS	32

static void
print_str(const char *name, const char *v)
{
	if (v == NULL)
		printf("%s=NULL\n", name);
	else
		printf("%s='%s'\n", name, v);
}

static void
print_accessors(PGconn *conn)
{
	PQconninfoOption *o;
	const char *err = PQerrorMessage(conn);

	printf("PQstatus=%s\n", PQstatus(conn) == CONNECTION_BAD ? "BAD" :
		   PQstatus(conn) == CONNECTION_OK ? "OK" : "in progress");
	printf("PQsocket=%s\n", PQsocket(conn) >= 0 ? "valid" : "-1");
	print_str("PQdb", PQdb(conn));
	print_str("PQuser", PQuser(conn));
	print_str("PQpass", PQpass(conn));
	print_str("PQhost", PQhost(conn));
	print_str("PQport", PQport(conn));
	print_str("PQtty", PQtty(conn));
	print_str("PQoptions", PQoptions(conn));
	printf("PQprotocolVersion=%d\n", PQprotocolVersion(conn));
	printf("PQserverVersion=%d\n", PQserverVersion(conn));
	printf("PQtransactionStatus=%d\n", (int) PQtransactionStatus(conn));
	print_str("PQparameterStatus(server_version)",
			  PQparameterStatus(conn, "server_version"));
	printf("PQbackendPID=%d\n", PQbackendPID(conn));
	printf("PQconnectionNeedsPassword=%d\n", PQconnectionNeedsPassword(conn));
	printf("PQconnectionUsedPassword=%d\n", PQconnectionUsedPassword(conn));
	printf("PQclientEncoding=%d\n", PQclientEncoding(conn));
	printf("PQsslInUse=%d\n", PQsslInUse(conn));
	printf("PQgssEncInUse=%d\n", PQgssEncInUse(conn));
	printf("PQpipelineStatus=%d\n", (int) PQpipelineStatus(conn));
	printf("PQisnonblocking=%d\n", PQisnonblocking(conn));
	printf("PQerrorMessage=%s\n", err == NULL ? "NULL" : err[0] ? "text" : "empty");
	o = PQconninfo(conn);
	if (o == NULL)
		printf("PQconninfo=NULL\n");
	for (PQconninfoOption *p = o; p && p->keyword; p++)
		print_str(p->keyword, p->val);
	PQconninfoFree(o);
}

/* Seconds on the monotonic clock (deadlines, STYLE rule 22). */
static double
mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Poll until the connection is made or fails, for at most 10 s. */
static void
finish_connecting(PGconn *conn)
{
	double		end = mono_s() + 10;
	PostgresPollingStatusType ps = PGRES_POLLING_WRITING;

	while (ps != PGRES_POLLING_OK && ps != PGRES_POLLING_FAILED &&
		   mono_s() < end)
	{
		struct pollfd p = {PQsocket(conn),
		ps == PGRES_POLLING_READING ? POLLIN : POLLOUT, 0};

		if (p.fd < 0 || poll(&p, 1, 1000) != 0)
			ps = PQconnectPoll(conn);
	}
	if (ps != PGRES_POLLING_OK && ps != PGRES_POLLING_FAILED)
		printf("still connecting after 10 s\n");
}

int
main(int argc, char **argv)
{
	const char *keys[MAX_PAIRS + 1];
	const char *vals[MAX_PAIRS + 1];
	char		conninfo[8192] = "";
	int			n = 0;
	PGconn	   *conn;

	bool		raw = argc > 1 && strcmp(argv[1], "raw") == 0;

	if (argc < 3 || argc - 3 > MAX_PAIRS || (raw && argc != 4) ||
		(!raw && strcmp(argv[1], "string") != 0 && strcmp(argv[1], "params") != 0) ||
		(strcmp(argv[2], "now") != 0 && strcmp(argv[2], "end") != 0))
	{
		fprintf(stderr, "usage: cmaccess string|params now|end KEYWORD=VALUE...\n"
				"       cmaccess raw now|end CONNINFO\n");
		return 2;
	}
	for (int i = 3; i < argc && !raw; i++)
	{
		char	   *eq = strchr(argv[i], '=');
		size_t		len = strlen(conninfo);

		if (eq == NULL)
		{
			fprintf(stderr, "cmaccess: argument %d (\"%s\") is not KEYWORD=VALUE\n",
					i, argv[i]);
			return 2;
		}
		*eq = '\0';
		keys[n] = argv[i];
		vals[n++] = eq + 1;
		/* keyword='value', with ' and \ escaped */
		len += snprintf(conninfo + len, sizeof(conninfo) - len, "%s%s='",
						len ? " " : "", argv[i]);
		for (const char *s = eq + 1; *s && len + 3 < sizeof(conninfo); s++)
		{
			if (*s == '\'' || *s == '\\')
				conninfo[len++] = '\\';
			conninfo[len++] = *s;
		}
		if (len + 2 >= sizeof(conninfo))
		{
			fprintf(stderr, "cmaccess: connection string too long\n");
			return 2;
		}
		conninfo[len++] = '\'';
		conninfo[len] = '\0';
	}
	keys[n] = vals[n] = NULL;

	if (raw)
		conn = PQconnectStart(argv[3]);
	else if (strcmp(argv[1], "string") == 0)
		conn = PQconnectStart(conninfo);
	else
		conn = PQconnectStartParams(keys, vals, 1);
	if (conn == NULL)
	{
		fprintf(stderr, "cmaccess: out of memory\n");
		return 1;
	}
	if (getenv("CMACCESS_NONBLOCKING") != NULL)
		printf("PQsetnonblocking=%d\n", PQsetnonblocking(conn, 1));
	if (strcmp(argv[2], "end") == 0)
		finish_connecting(conn);
	print_accessors(conn);
	PQfinish(conn);
	return 0;
}
