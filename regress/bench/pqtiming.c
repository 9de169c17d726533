/*-------------------------------------------------------------------------
 *
 * pqtiming.c
 *	  A plain libpq program (linked with -lpq only) that times connections,
 *	  for the benchmarks.  The conmgr side of a comparison runs this same
 *	  binary with LD_PRELOAD=libpq-cm.so.1, the direct side without, so
 *	  the comparator is unmodified libpq.
 *
 *	 pqtiming conn N CONNINFO [FILE]     N x (connect, SELECT 1, finish)
 *	 pqtiming connect N CONNINFO [FILE]  N x (connect, finish)
 *	 pqtiming firstok CONNINFO PAUSE_MS TIMEOUT_S
 *	                                     connect again and again (PAUSE_MS
 *	                                     between failures) until one works
 *	 pqtiming waitpromote CONNINFO TIMEOUT_S
 *	                                     one connection polling
 *	                                     pg_is_in_recovery() until false
 *	 pqtiming block CONNINFO SQL         connect, run SQL (PQexec), report
 *	                                     when it returned
 *
 * Lines:
 *	 conn n=N median_us=.. p99_us=.. min_us=.. max_us=.. mean_us=..
 *	 failed message=...
 *	 looping at_us=T                     (firstok: started)
 *	 firstok at_us=T attempt_start_us=T attempts=N
 *	 promoted at_us=T polls=N
 *	 running at_us=T                     (block: the query is sent)
 *	 result at_us=T status=S connstatus=OK|BAD message=...
 * T: wall clock in microseconds.  FILE gets every latency (us), in order.
 * Exit 0 when every connection worked (firstok: when one did in time).
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "benchutil.h"

static void
print_flat(const char *prefix, const char *msg)
{
	printf("%s", prefix);
	for (const char *p = msg ? msg : ""; *p; p++)
		putchar(*p == '\n' || *p == '\t' ? ' ' : *p);
	putchar('\n');
	fflush(stdout);
}

static int
do_conn(int n, const char *conninfo, const char *file, int with_select)
{
	double	   *t = calloc(n, sizeof(double));

	for (int i = 0; i < n; i++)
	{
		double		t0 = mono_s();
		PGconn	   *conn = PQconnectdb(conninfo);

		if (PQstatus(conn) != CONNECTION_OK)
		{
			print_flat("failed message=", PQerrorMessage(conn));
			return 1;
		}
		if (with_select)
		{
			PGresult   *res = PQexec(conn, "SELECT 1");

			if (PQresultStatus(res) != PGRES_TUPLES_OK)
			{
				print_flat("failed message=", PQerrorMessage(conn));
				return 1;
			}
			PQclear(res);
		}
		PQfinish(conn);
		t[i] = mono_s() - t0;
	}
	print_summary(with_select ? "conn" : "connect", t, n, file);
	return 0;
}

static int
do_firstok(const char *conninfo, int pause_ms, double timeout)
{
	double		deadline = mono_s() + timeout;
	int			attempts = 0;

	printf("looping at_us=%lld\n", real_us());
	fflush(stdout);
	while (mono_s() < deadline)
	{
		long long	start = real_us();
		PGconn	   *conn = PQconnectdb(conninfo);

		attempts++;
		if (PQstatus(conn) == CONNECTION_OK)
		{
			long long	at = real_us();

			printf("firstok at_us=%lld attempt_start_us=%lld attempts=%d port=%s\n",
				   at, start, attempts, PQport(conn));
			fflush(stdout);
			PQfinish(conn);
			return 0;
		}
		PQfinish(conn);
		usleep(pause_ms * 1000);
	}
	printf("timeout attempts=%d\n", attempts);
	return 1;
}

static int
do_waitpromote(const char *conninfo, double timeout)
{
	double		deadline = mono_s() + timeout;
	PGconn	   *conn = PQconnectdb(conninfo);
	long		polls = 0;

	if (PQstatus(conn) != CONNECTION_OK)
	{
		print_flat("failed message=", PQerrorMessage(conn));
		return 1;
	}
	printf("watching\n");
	fflush(stdout);
	while (mono_s() < deadline)
	{
		PGresult   *res = PQexec(conn, "SELECT pg_is_in_recovery()");
		long long	at = real_us();

		polls++;
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
		{
			print_flat("failed message=", PQerrorMessage(conn));
			return 1;
		}
		if (strcmp(PQgetvalue(res, 0, 0), "f") == 0)
		{
			printf("promoted at_us=%lld polls=%ld\n", at, polls);
			return 0;
		}
		PQclear(res);
		usleep(1000);
	}
	printf("timeout polls=%ld\n", polls);
	return 1;
}

static int
do_block(const char *conninfo, const char *sql)
{
	PGconn	   *conn = PQconnectdb(conninfo);
	PGresult   *res;
	long long	at;

	if (PQstatus(conn) != CONNECTION_OK)
	{
		print_flat("failed message=", PQerrorMessage(conn));
		return 1;
	}
	printf("running at_us=%lld\n", real_us());
	fflush(stdout);
	res = PQexec(conn, sql);
	at = real_us();
	printf("result at_us=%lld status=%s connstatus=%s ", at,
		   PQresStatus(PQresultStatus(res)),
		   PQstatus(conn) == CONNECTION_OK ? "OK" : "BAD");
	print_flat("message=", PQerrorMessage(conn));
	PQclear(res);
	PQfinish(conn);
	return 0;
}

int
main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 4 && (strcmp(argv[1], "conn") == 0 || strcmp(argv[1], "connect") == 0))
		return do_conn(atoi(argv[2]), argv[3], argc > 4 ? argv[4] : NULL,
					   strcmp(argv[1], "conn") == 0);
	if (argc == 5 && strcmp(argv[1], "firstok") == 0)
		return do_firstok(argv[2], atoi(argv[3]), atof(argv[4]));
	if (argc == 4 && strcmp(argv[1], "waitpromote") == 0)
		return do_waitpromote(argv[2], atof(argv[3]));
	if (argc == 4 && strcmp(argv[1], "block") == 0)
		return do_block(argv[2], argv[3]);
	fprintf(stderr, "usage: pqtiming conn|connect N CONNINFO [FILE]\n"
			"       pqtiming firstok CONNINFO PAUSE_MS TIMEOUT_S\n"
			"       pqtiming waitpromote CONNINFO TIMEOUT_S\n"
			"       pqtiming block CONNINFO SQL\n");
	return 2;
}
