/*-------------------------------------------------------------------------
 *
 * cmapp.c
 *	  A libpq application linked with libpq-cm ("-lpq-cm -lpq"), for tests.
 *
 *	 cmapp connect CONNINFO       PQconnectdb, then report
 *	 cmapp async CONNINFO         PQconnectStart + PQconnectPoll, then report
 *	 cmapp block CONNINFO SQL     connect, run SQL with PQexec (blocking)
 *	 cmapp block-hold CONNINFO SQL  the same, but once the result is printed
 *	                              the process stays (connection and all)
 *	                              until a signal ends it: many of them
 *	                              failing at once are then not timed
 *	                              against each other's exits
 *	 cmapp pollcm CONNINFO SQL    PQsendQuery, poll PQsocket and PQcmSocket;
 *	                              on POLLIN of the latter, PQconsumeInput
 *	 cmapp reset CONNINFO         connect, report, wait for a line on stdin,
 *	                              PQreset, report, wait for another line
 *	 cmapp fds CONNINFO           open descriptors before, connected, after
 *	                              PQfinish, and after 50 more connections
 *	 cmapp finish CONNINFO        connect, report, wait for a line on stdin,
 *	                              PQfinish, wait for another line
 *	 cmapp reuse CONNINFO watch|poll
 *	                              connect; wait for a line (the test ends
 *	                              the backend); read until libpq closes
 *	                              its socket; open
 *	                              sockets until one takes the number
 *	                              libpq's socket had (an unrelated TCP
 *	                              connection on loopback); wait for a line
 *	                              (the test makes conmgr report the
 *	                              connection lost); "poll": wait until
 *	                              PQcmSocket() is readable and call
 *	                              PQconsumeInput(); then use the unrelated
 *	                              connection both ways; wait for a line,
 *	                              PQfinish
 *	 cmapp threads N CONNINFO     N threads, 10 connections each
 *	 cmapp fork CONNINFO          a connection survives a child that
 *	                              connects (and exits) on its own
 *	 cmapp timing N CI [CI2]      N x (connect, SELECT 1, finish) to CI and
 *	                              (alternating) CI2: latencies
 *
 * Report lines (one "key=value" set per line):
 *	 connected host=H hostaddr=A port=P cmsocket=yes|no recovery=t|f
 *	 async statuses=S1,S2,... sockets=N awaiting=yes|no
 *	 failed message=...
 *	 result status=... sqlstate=... connstatus=OK|BAD elapsed=SECONDS message=...
 *	 timing n=N median_us=.. p99_us=..    (and "timing2 ..." for CI2)
 *	 fds before=N connected=N finished=N again=N
 *	 backend pid=N sqlfd=N app=PID
 *	 finished
 *	 closed connstatus=OK|BAD sqlfd=N
 *	 reused fd=N|none
 *	 cmsocket readable|silent
 *	 unrelated ok | unrelated failed STEP: ERROR
 *	 threads ok=N failed=N
 *	 fork child=ok|failed parent=ok|failed
 * Exit 0 when it ran as asked (a query error is a result, not a failure).
 *
 *-------------------------------------------------------------------------
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "libpq-cm.h"

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One line, newlines flattened, for the test to match. */
static void
print_flat(const char *prefix, const char *msg)
{
	printf("%s", prefix);
	for (const char *p = msg ? msg : ""; *p; p++)
		putchar(*p == '\n' || *p == '\t' ? ' ' : *p);
	putchar('\n');
}

static int
report(PGconn *conn)
{
	PGresult   *res;

	if (PQstatus(conn) != CONNECTION_OK)
	{
		print_flat("failed message=", PQerrorMessage(conn));
		return 1;
	}
	res = PQexec(conn, "SELECT pg_is_in_recovery()");
	printf("connected host=%s hostaddr=%s port=%s cmsocket=%s recovery=%s\n",
		   PQhost(conn), PQhostaddr(conn), PQport(conn),
		   PQcmSocket(conn) >= 0 ? "yes" : "no",
		   PQresultStatus(res) == PGRES_TUPLES_OK ? PQgetvalue(res, 0, 0) : "?");
	PQclear(res);
	fflush(stdout);
	return 0;
}

static const char *
status_name(ConnStatusType s)
{
	switch ((int) s)
	{
		case CONNECTION_OK:
			return "OK";
		case CONNECTION_BAD:
			return "BAD";
		case CONNECTION_STARTED:
			return "STARTED";
		case CONNECTION_MADE:
			return "MADE";
		case CONNECTION_AWAITING_RESPONSE:
			return "AWAITING_RESPONSE";
		case CONNECTION_AUTH_OK:
			return "AUTH_OK";
		case CONNECTION_CHECK_TARGET:
			return "CHECK_TARGET";
		case CONNECTION_AWAITING_CMRESPONSE:
			return "AWAITING_CMRESPONSE";
		default:
			return "OTHER";
	}
}

static int
do_async(const char *conninfo)
{
	PGconn	   *conn = PQconnectStart(conninfo);
	PostgresPollingStatusType ps = PGRES_POLLING_WRITING;
	char		statuses[4096] = "";
	const char *last = "";
	int			sockets = 0,
				last_sock = -2;
	int			awaiting = 0;
	int			rc;

	if (conn == NULL)
		return 1;
	while (ps != PGRES_POLLING_OK && ps != PGRES_POLLING_FAILED)
	{
		struct pollfd p = {PQsocket(conn), ps == PGRES_POLLING_READING ? POLLIN : POLLOUT, 0};
		const char *st = status_name(PQstatus(conn));

		if (PQstatus(conn) == CONNECTION_BAD)
			break;
		if (p.fd != last_sock)
		{
			sockets++;
			last_sock = p.fd;
		}
		if (strcmp(st, last) != 0 && strlen(statuses) < sizeof(statuses) - 32)
		{
			strcat(statuses, statuses[0] ? "," : "");
			strcat(statuses, st);
			last = st;
		}
		awaiting |= PQstatus(conn) == CONNECTION_AWAITING_CMRESPONSE;
		if (poll(&p, 1, 10000) <= 0)
		{
			printf("failed message=timeout in the async loop\n");
			PQfinish(conn);
			return 1;
		}
		ps = PQconnectPoll(conn);
	}
	printf("async statuses=%s sockets=%d awaiting=%s\n", statuses, sockets,
		   awaiting ? "yes" : "no");
	rc = report(conn);
	PQfinish(conn);
	return rc;
}

static void
print_result(PGconn *conn, PGresult *res, double t0)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

	printf("result status=%s sqlstate=%s connstatus=%s elapsed=%.3f ",
		   res ? PQresStatus(PQresultStatus(res)) : "NULL",
		   state ? state : "none",
		   PQstatus(conn) == CONNECTION_OK ? "OK" : "BAD", now_s() - t0);
	print_flat("message=", PQerrorMessage(conn));
	fflush(stdout);
}

static int
do_block(const char *conninfo, const char *sql, int hold)
{
	PGconn	   *conn = PQconnectdb(conninfo);
	PGresult   *res;
	double		t0;

	if (report(conn) != 0)
	{
		PQfinish(conn);
		return 1;
	}
	printf("running\n");
	fflush(stdout);
	t0 = now_s();
	res = PQexec(conn, sql);
	print_result(conn, res, t0);
	if (hold)
		for (;;)
			pause();
	PQclear(res);
	PQfinish(conn);
	return 0;
}

static int
do_pollcm(const char *conninfo, const char *sql)
{
	PGconn	   *conn = PQconnectdb(conninfo);
	PGresult   *res = NULL;
	double		t0;
	int			cmfd;

	if (report(conn) != 0)
	{
		PQfinish(conn);
		return 1;
	}
	cmfd = PQcmSocket(conn);
	if (cmfd < 0 || !PQsendQuery(conn, sql))
	{
		print_flat("failed message=", cmfd < 0 ? "no conmgr socket" : PQerrorMessage(conn));
		PQfinish(conn);
		return 1;
	}
	printf("running\n");
	fflush(stdout);
	t0 = now_s();
	for (;;)
	{
		struct pollfd p[2] = {{PQsocket(conn), POLLIN, 0}, {cmfd, POLLIN, 0}};

		if (poll(p, 2, 120000) <= 0)
			break;
		if (p[1].revents)
			printf("cmsocket readable after %.3f\n", now_s() - t0);
		/* what the manual asks: consume input and look at the results */
		if (!PQconsumeInput(conn) || !PQisBusy(conn))
			break;
	}
	while ((res = PQgetResult(conn)) != NULL)
	{
		print_result(conn, res, t0);
		PQclear(res);
		if (PQstatus(conn) != CONNECTION_OK)
			break;
	}
	print_result(conn, NULL, t0);
	PQfinish(conn);
	return 0;
}

/* Wait for a line on stdin; false at end of file. */
static int
wait_line(void)
{
	char		line[64];

	return fgets(line, sizeof(line), stdin) != NULL;
}

static int
do_reset(const char *conninfo)
{
	PGconn	   *conn = PQconnectdb(conninfo);
	int			rc;

	if (report(conn) != 0)
	{
		PQfinish(conn);
		return 1;
	}
	if (!wait_line())
	{
		PQfinish(conn);
		return 1;
	}
	PQreset(conn);
	printf("reset\n");
	rc = report(conn);
	printf("backend pid=%d sqlfd=%d app=%d\n", PQbackendPID(conn), PQsocket(conn), (int) getpid());
	(void) wait_line();
	PQfinish(conn);
	return rc;
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return x < y ? -1 : x > y;
}

/* One connect + SELECT 1 + finish; its duration, or -1. */
static double
time_one(const char *conninfo)
{
	double		t0 = now_s();
	PGconn	   *conn = PQconnectdb(conninfo);
	PGresult   *res = PQexec(conn, "SELECT 1");
	int			ok = PQresultStatus(res) == PGRES_TUPLES_OK;

	if (!ok)
		print_flat("failed message=", PQerrorMessage(conn));
	PQclear(res);
	PQfinish(conn);
	return ok ? now_s() - t0 : -1;
}

/*
 * N timed connections to each conninfo given (one or two), alternating
 * between them so that both see the same machine.
 */
static int
do_timing(int n, int nci, char **ci)
{
	double	   *t[2];

	if (n < 1)
		return 2;
	for (int k = 0; k < nci; k++)
		t[k] = calloc(n, sizeof(double));
	for (int i = 0; i < n; i++)
		for (int k = 0; k < nci; k++)
			if ((t[k][i] = time_one(ci[k])) < 0)
			{
				for (int j = 0; j < nci; j++)
					free(t[j]);
				return 1;
			}
	for (int k = 0; k < nci; k++)
	{
		qsort(t[k], n, sizeof(double), cmp_double);
		printf("timing%s n=%d median_us=%.0f p99_us=%.0f\n", k ? "2" : "", n,
			   t[k][n / 2] * 1e6, t[k][(int) (n * 0.99)] * 1e6);
		free(t[k]);
	}
	return 0;
}

static int
count_fds(void)
{
	DIR		   *d = opendir("/proc/self/fd");
	int			n = 0;

	if (d == NULL)
		return -1;
	while (readdir(d) != NULL)
		n++;
	closedir(d);
	return n - 3;				/* ".", ".." and the directory's own */
}

static int
do_fds(const char *conninfo)
{
	int			before = count_fds(),
				connected,
				finished;
	PGconn	   *conn = PQconnectdb(conninfo);

	if (report(conn) != 0)
	{
		PQfinish(conn);
		return 1;
	}
	connected = count_fds();
	PQfinish(conn);
	finished = count_fds();
	/* more rounds: nothing may accumulate */
	for (int i = 0; i < 50; i++)
	{
		conn = PQconnectdb(conninfo);
		PQfinish(conn);
	}
	printf("fds before=%d connected=%d finished=%d again=%d\n", before, connected,
		   finished, count_fds());
	return 0;
}

static int
do_finish(const char *conninfo)
{
	PGconn	   *conn = PQconnectdb(conninfo);

	if (report(conn) != 0)
	{
		PQfinish(conn);
		return 1;
	}
	printf("backend pid=%d sqlfd=%d app=%d\n", PQbackendPID(conn), PQsocket(conn), (int) getpid());
	if (!wait_line())
		return 1;
	PQfinish(conn);
	printf("finished\n");
	return wait_line() ? 0 : 1;
}

/* A listening TCP socket on 127.0.0.1, any port; its address in *sa. */
static int
loopback_listener(struct sockaddr_in *sa)
{
	socklen_t	len = sizeof(*sa);
	int			l = socket(AF_INET, SOCK_STREAM, 0);

	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (l < 0 || bind(l, (struct sockaddr *) sa, sizeof(*sa)) < 0 ||
		listen(l, 16) < 0 || getsockname(l, (struct sockaddr *) sa, &len) < 0)
	{
		perror("listener");
		exit(1);
	}
	return l;
}

/* Send msg on from, read it on to (within 5 s); NULL or what failed. */
static const char *
pass_message(int from, int to, const char *msg)
{
	struct pollfd p = {to, POLLIN, 0};
	char		buf[16];
	ssize_t		n;

	if (send(from, msg, strlen(msg), MSG_NOSIGNAL) != (ssize_t) strlen(msg))
		return "send";
	if (poll(&p, 1, 5000) <= 0)
		return "poll";
	n = recv(to, buf, sizeof(buf), 0);
	if (n < 0)
		return "recv";
	if (n != (ssize_t) strlen(msg) || memcmp(buf, msg, n) != 0)
	{
		errno = 0;
		return "recv (end of file or other bytes)";
	}
	return NULL;
}

static int
do_reuse(const char *conninfo, const char *how)
{
	struct sockaddr_in sa;
	int			l = loopback_listener(&sa);
	PGconn	   *conn = PQconnectdb(conninfo);
	int			sqlfd,
				cmfd,
				cli = -1,
				srv,
				held[16],
				nheld = 0;
	const char *fail;

	if (report(conn) != 0)
	{
		PQfinish(conn);
		return 1;
	}
	sqlfd = PQsocket(conn);
	cmfd = strcmp(how, "poll") == 0 ? PQcmSocket(conn) : -1;
	printf("backend pid=%d sqlfd=%d app=%d\n", PQbackendPID(conn), sqlfd, (int) getpid());
	if (!wait_line())
		return 1;

	/*
	 * The backend is gone: libpq reads the server's hang-up and closes its
	 * socket.  Only reading, so that nothing sent meets the server's reset.
	 */
	for (int i = 0; i < 10 && PQsocket(conn) >= 0; i++)
	{
		struct pollfd p = {PQsocket(conn), POLLIN, 0};

		if (poll(&p, 1, 1000) > 0)
			PQconsumeInput(conn);
	}
	printf("closed connstatus=%s sqlfd=%d\n",
		   PQstatus(conn) == CONNECTION_OK ? "OK" : "BAD", PQsocket(conn));

	/* an unrelated connection on the number libpq's socket had */
	while (nheld < 16)
	{
		int			s = socket(AF_INET, SOCK_STREAM, 0);

		if (s < 0 || s == sqlfd)
		{
			cli = s;
			break;
		}
		held[nheld++] = s;
	}
	if (cli < 0 || connect(cli, (struct sockaddr *) &sa, sizeof(sa)) < 0 ||
		(srv = accept(l, NULL, NULL)) < 0)
	{
		printf("reused fd=none\n");
		return 1;
	}
	printf("reused fd=%d\n", cli);
	if (!wait_line())
		return 1;
	if (cmfd >= 0)
	{
		struct pollfd p = {cmfd, POLLIN, 0};

		printf("cmsocket %s\n", poll(&p, 1, 30000) > 0 ? "readable" : "silent");
		PQconsumeInput(conn);
	}
	if ((fail = pass_message(cli, srv, "ping")) == NULL)
		fail = pass_message(srv, cli, "pong");
	if (fail)
		printf("unrelated failed %s: %s\n", fail, errno ? strerror(errno) : "-");
	else
		printf("unrelated ok\n");
	if (!wait_line())
		return 1;
	PQfinish(conn);
	close(cli);
	close(srv);
	close(l);
	while (nheld > 0)
		close(held[--nheld]);
	return 0;
}

static int
query_ok(PGconn *conn)
{
	PGresult   *res = PQexec(conn, "SELECT pg_backend_pid()");
	int			ok = PQresultStatus(res) == PGRES_TUPLES_OK;

	PQclear(res);
	return ok;
}

static const char *thread_conninfo;

static void *
thread_main(void *arg)
{
	int		   *failed = arg;

	for (int i = 0; i < 10; i++)
	{
		PGconn	   *conn = PQconnectdb(thread_conninfo);

		if (PQstatus(conn) != CONNECTION_OK || PQcmSocket(conn) < 0 || !query_ok(conn))
			(*failed)++;
		PQfinish(conn);
	}
	return NULL;
}

static int
do_threads(int n, const char *conninfo)
{
	pthread_t	tid[64];
	int			failed[64] = {0};
	int			total = 0;

	if (n < 1 || n > 64)
		return 2;
	thread_conninfo = conninfo;
	for (int i = 0; i < n; i++)
		pthread_create(&tid[i], NULL, thread_main, &failed[i]);
	for (int i = 0; i < n; i++)
	{
		pthread_join(tid[i], NULL);
		total += failed[i];
	}
	printf("threads ok=%d failed=%d\n", n * 10 - total, total);
	return 0;
}

static int
do_fork(const char *conninfo)
{
	PGconn	   *conn = PQconnectdb(conninfo);
	pid_t		pid;
	int			status;

	if (report(conn) != 0 || !query_ok(conn))
		return 1;
	fflush(stdout);
	pid = fork();
	if (pid == 0)
	{
		/* the child leaves the parent's connection alone, as libpq asks */
		PGconn	   *mine = PQconnectdb(conninfo);
		int			ok = PQstatus(mine) == CONNECTION_OK && PQcmSocket(mine) >= 0 &&
			query_ok(mine);

		PQfinish(mine);
		_exit(ok ? 0 : 1);
	}
	waitpid(pid, &status, 0);
	usleep(200000);				/* time for a wrong shutdown to show */
	printf("fork child=%s parent=%s\n",
		   WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "ok" : "failed",
		   PQstatus(conn) == CONNECTION_OK && query_ok(conn) ? "ok" : "failed");
	PQfinish(conn);
	return 0;
}

int
main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 3 && strcmp(argv[1], "connect") == 0)
	{
		PGconn	   *conn = PQconnectdb(argv[2]);
		int			rc = report(conn);

		PQfinish(conn);
		return rc;
	}
	if (argc == 3 && strcmp(argv[1], "async") == 0)
		return do_async(argv[2]);
	if (argc == 4 && strcmp(argv[1], "block") == 0)
		return do_block(argv[2], argv[3], 0);
	if (argc == 4 && strcmp(argv[1], "block-hold") == 0)
		return do_block(argv[2], argv[3], 1);
	if (argc == 4 && strcmp(argv[1], "pollcm") == 0)
		return do_pollcm(argv[2], argv[3]);
	if (argc == 3 && strcmp(argv[1], "reset") == 0)
		return do_reset(argv[2]);
	if (argc == 3 && strcmp(argv[1], "fds") == 0)
		return do_fds(argv[2]);
	if (argc == 3 && strcmp(argv[1], "finish") == 0)
		return do_finish(argv[2]);
	if (argc == 4 && strcmp(argv[1], "reuse") == 0 &&
		(strcmp(argv[3], "watch") == 0 || strcmp(argv[3], "poll") == 0))
		return do_reuse(argv[2], argv[3]);
	if (argc == 4 && strcmp(argv[1], "threads") == 0)
		return do_threads(atoi(argv[2]), argv[3]);
	if (argc == 3 && strcmp(argv[1], "fork") == 0)
		return do_fork(argv[2]);
	if ((argc == 4 || argc == 5) && strcmp(argv[1], "timing") == 0)
		return do_timing(atoi(argv[2]), argc - 3, argv + 3);
	fprintf(stderr, "usage: cmapp connect|async|reset|fds|finish|fork CONNINFO | block|block-hold|pollcm CONNINFO SQL | reuse CONNINFO watch|poll | threads N CONNINFO | timing N CONNINFO [CONNINFO2]\n");
	return 2;
}
