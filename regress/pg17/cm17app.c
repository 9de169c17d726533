/*-------------------------------------------------------------------------
 *
 * cm17app.c
 *	  A libpq 17 application, built in the PostgreSQL 17 chroot against
 *	  libpq 17 alone and run with the host's libpq-cm by LD_PRELOAD
 *	  (regress/pg17/061_libpq17.t): it connects through conmgr and uses
 *	  libpq 17's functions that take the connection.
 *
 *	  cm17app CONNINFO ROLE
 *
 * One line per step, "ok STEP ..." or "FAIL STEP: why"; exit status 0 when
 * every step passed.  ROLE is a role whose password PQchangePassword()
 * sets.
 *
 *-------------------------------------------------------------------------
 */
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#if !defined(LIBPQ_HAS_ASYNC_CANCEL) || !defined(LIBPQ_HAS_CLOSE_PREPARED) || \
	!defined(LIBPQ_HAS_SEND_PIPELINE_SYNC) || !defined(LIBPQ_HAS_CHUNK_MODE) || \
	!defined(LIBPQ_HAS_CHANGE_PASSWORD)
#error "cm17app needs libpq 17's libpq-fe.h"
#endif

static int	failures;

static void
report(int ok, const char *step, const char *fmt,...)
{
	va_list		ap;

	printf("%s %s", ok ? "ok" : "FAIL", step);
	va_start(ap, fmt);
	if (fmt[0])
	{
		printf(ok ? " " : ": ");
		vprintf(fmt, ap);
	}
	va_end(ap);
	printf("\n");
	fflush(stdout);
	if (!ok)
		failures++;
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static const char *
sqlstate(const PGresult *r)
{
	const char *s = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;

	return s ? s : "none";
}

/* Run sql; its single value, or NULL (and a FAIL line) */
static char *
value(PGconn *conn, const char *step, const char *sql)
{
	PGresult   *r = PQexec(conn, sql);
	char	   *v = NULL;

	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
		v = strdup(PQgetvalue(r, 0, 0));
	else
		report(0, step, "%s: %s", sql, PQerrorMessage(conn));
	PQclear(r);
	return v;
}

/*
 * Whether the backend pid is running pg_sleep(), as a second connection
 * (conninfo) sees it: a cancel that arrives before the query starts is
 * ignored by the server, so the test waits for that (at most 10 s).
 */
static int
sleeping(const char *conninfo, int pid)
{
	PGconn	   *other = PQconnectdb(conninfo);
	char		sql[200];
	double		end = now_s() + 10;
	int			yes = 0;

	snprintf(sql, sizeof(sql),
			 "SELECT count(*) FROM pg_stat_activity WHERE pid = %d AND state = 'active' "
			 "AND query LIKE 'SELECT pg_sleep%%'", pid);
	while (!yes && PQstatus(other) == CONNECTION_OK && now_s() < end)
	{
		PGresult   *r = PQexec(other, sql);

		yes = PQresultStatus(r) == PGRES_TUPLES_OK && strcmp(PQgetvalue(r, 0, 0), "1") == 0;
		PQclear(r);
		if (!yes)
		{
			struct timespec ts = {0, 50 * 1000 * 1000};

			nanosleep(&ts, NULL);
		}
	}
	PQfinish(other);
	return yes;
}

/* Cancel a pg_sleep(60) with PQcancelCreate() and PQcancelBlocking(). */
static void
test_cancel(PGconn *conn, const char *conninfo)
{
	PGcancelConn *cc;
	PGresult   *r;
	double		t0 = now_s();
	int			sent;

	if (!PQsendQuery(conn, "SELECT pg_sleep(60)"))
	{
		report(0, "cancel", "PQsendQuery: %s", PQerrorMessage(conn));
		return;
	}
	if (!sleeping(conninfo, PQbackendPID(conn)))
		report(0, "cancel", "pg_sleep() not seen running within 10 s");
	cc = PQcancelCreate(conn);
	if (cc == NULL || PQcancelStatus(cc) == CONNECTION_BAD)
	{
		report(0, "cancel", "PQcancelCreate: %s", cc ? PQcancelErrorMessage(cc) : "NULL");
		return;
	}
	sent = PQcancelBlocking(cc);
	if (!sent)
		report(0, "cancel", "PQcancelBlocking: %s", PQcancelErrorMessage(cc));
	PQcancelFinish(cc);
	r = PQgetResult(conn);
	report(sent && PQresultStatus(r) == PGRES_FATAL_ERROR &&
		   strcmp(sqlstate(r), "57014") == 0 && now_s() - t0 < 30,
		   "cancel", "pg_sleep(60) ended with SQLSTATE %s after %.1f s",
		   sqlstate(r), now_s() - t0);
	PQclear(r);
	while ((r = PQgetResult(conn)) != NULL)
		PQclear(r);
}

/* PQclosePrepared() and PQsendClosePrepared(), PQclosePortal(). */
static void
test_close(PGconn *conn)
{
	PGresult   *r = PQprepare(conn, "cm17_s1", "SELECT 1", 0, NULL);
	int			ok;

	PQclear(r);
	r = PQclosePrepared(conn, "cm17_s1");
	ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	PQclear(r);
	r = PQexecPrepared(conn, "cm17_s1", 0, NULL, NULL, NULL, 0);
	report(ok && strcmp(sqlstate(r), "26000") == 0, "PQclosePrepared",
		   "the statement is gone (SQLSTATE %s)", sqlstate(r));
	PQclear(r);

	PQclear(PQprepare(conn, "cm17_s2", "SELECT 2", 0, NULL));
	ok = PQsendClosePrepared(conn, "cm17_s2");
	r = PQgetResult(conn);
	ok = ok && PQresultStatus(r) == PGRES_COMMAND_OK;
	PQclear(r);
	ok = ok && PQgetResult(conn) == NULL;
	r = PQdescribePrepared(conn, "cm17_s2");
	report(ok && strcmp(sqlstate(r), "26000") == 0, "PQsendClosePrepared",
		   "the statement is gone (SQLSTATE %s)", sqlstate(r));
	PQclear(r);

	r = PQclosePortal(conn, "cm17_no_such_portal");
	report(PQresultStatus(r) == PGRES_COMMAND_OK, "PQclosePortal",
		   "%s", PQresStatus(PQresultStatus(r)));
	PQclear(r);
	ok = PQsendClosePortal(conn, "cm17_no_such_portal");
	r = PQgetResult(conn);
	report(ok && PQresultStatus(r) == PGRES_COMMAND_OK, "PQsendClosePortal",
		   "%s", PQresStatus(PQresultStatus(r)));
	PQclear(r);
	while ((r = PQgetResult(conn)) != NULL)
		PQclear(r);
}

/* Two queries, each followed by PQsendPipelineSync(), in one pipeline. */
static void
test_pipeline(PGconn *conn)
{
	static const ExecStatusType want[] = {
		PGRES_TUPLES_OK, 0, PGRES_PIPELINE_SYNC, PGRES_TUPLES_OK, 0, PGRES_PIPELINE_SYNC
	};
	char		got[256] = "";
	int			ok = PQenterPipelineMode(conn);

	ok = ok && PQsendQueryParams(conn, "SELECT 1", 0, NULL, NULL, NULL, NULL, 0);
	ok = ok && PQsendPipelineSync(conn) == 1;
	ok = ok && PQsendQueryParams(conn, "SELECT 2", 0, NULL, NULL, NULL, NULL, 0);
	ok = ok && PQsendPipelineSync(conn) == 1;
	ok = ok && PQflush(conn) == 0;
	for (size_t i = 0; ok && i < sizeof(want) / sizeof(want[0]); i++)
	{
		PGresult   *r = PQgetResult(conn);
		ExecStatusType st = r ? PQresultStatus(r) : 0;

		snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s",
				 i ? "," : "", r ? PQresStatus(st) : "NULL");
		if ((r == NULL) != (want[i] == 0) || (r && st != want[i]))
			ok = 0;
		if (r && st == PGRES_TUPLES_OK &&
			atoi(PQgetvalue(r, 0, 0)) != (i == 0 ? 1 : 2))
			ok = 0;
		PQclear(r);
	}
	ok = ok && PQexitPipelineMode(conn) == 1;
	report(ok, "PQsendPipelineSync", "%s", got);
}

/* Ten rows in chunks of at most four. */
static void
test_chunks(PGconn *conn)
{
	char		got[256] = "";
	int			ok = PQsendQuery(conn, "SELECT generate_series(1, 10)");
	int			rows = 0;
	PGresult   *r;

	ok = ok && PQsetChunkedRowsMode(conn, 4) == 1;
	while (ok && (r = PQgetResult(conn)) != NULL)
	{
		snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s:%d",
				 got[0] ? "," : "", PQresStatus(PQresultStatus(r)), PQntuples(r));
		if (PQresultStatus(r) == PGRES_TUPLES_CHUNK)
			rows += PQntuples(r);
		PQclear(r);
	}
	report(ok && strcmp(got, "PGRES_TUPLES_CHUNK:4,PGRES_TUPLES_CHUNK:4,"
						"PGRES_TUPLES_CHUNK:2,PGRES_TUPLES_OK:0") == 0 && rows == 10,
		   "PQsetChunkedRowsMode", "%s", got);
}

/* PQchangePassword() stores a SCRAM verifier for role. */
static void
test_change_password(PGconn *conn, const char *role)
{
	PGresult   *r = PQchangePassword(conn, role, "cm17-new-secret");
	char		sql[256];
	char	   *v;

	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		report(0, "PQchangePassword", "%s", PQerrorMessage(conn));
	PQclear(r);
	snprintf(sql, sizeof(sql),
			 "SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = '%s'", role);
	if ((v = value(conn, "PQchangePassword", sql)) != NULL)
		report(strcmp(v, "SCRAM-SHA-256$") == 0, "PQchangePassword",
			   "the role's password is %s...", v);
	free(v);
}

int
main(int argc, char **argv)
{
	int			(*cm_socket) (const PGconn *);
	PGconn	   *conn;
	char	   *v;

	if (argc != 3)
	{
		fprintf(stderr, "usage: cm17app CONNINFO ROLE\n");
		return 2;
	}
	report(PQlibVersion() >= 170000, "libpq", "version %d", PQlibVersion());
	*(void **) &cm_socket = dlsym(RTLD_DEFAULT, "PQcmSocket");
	report(cm_socket != NULL, "libpq-cm", "%s", cm_socket ? "loaded" : "not loaded");
	conn = PQconnectdb(argv[1]);
	if (PQstatus(conn) != CONNECTION_OK)
	{
		report(0, "connect", "%s", PQerrorMessage(conn));
		return 1;
	}
	report(cm_socket && cm_socket(conn) >= 0, "connect",
		   "through conmgr to %s:%s", PQhost(conn), PQport(conn));
	if ((v = value(conn, "server", "SELECT current_setting('server_version_num')")) != NULL)
		report(atoi(v) >= 170000, "server", "version %s", v);
	free(v);
	report(PQconnectionUsedGSSAPI(conn) == 0, "PQconnectionUsedGSSAPI", "0");

	test_cancel(conn, argv[1]);
	test_close(conn);
	test_pipeline(conn);
	test_chunks(conn);
	test_change_password(conn, argv[2]);

	if ((v = value(conn, "after", "SELECT 42")) != NULL)
		report(strcmp(v, "42") == 0, "after", "the connection still answers");
	free(v);
	PQfinish(conn);
	printf("%d failures\n", failures);
	return failures ? 1 : 0;
}
