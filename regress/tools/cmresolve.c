/*-------------------------------------------------------------------------
 *
 * cmresolve.c
 *	  An application-protocol client for tests: probe, resolve, attach.
 *
 *	 cmresolve -p PORT -t TARGET [-h HOST] [-a] [-w SECONDS] [-r N] [-P]
 *			   [-s SECONDS] [-S SECONDS]
 *
 * Connects to conmgr, sends the GSSENCRequest probe, checks the answer
 * (ErrorResponse then HELLO, docs/protocol.md 2.1), sends RESOLVE and
 * prints each candidate.  With -a it reports ATTACHED to the first
 * candidate and waits (default 30 s) for INSTANCE_DOWN or end of file,
 * printing what came.  Lines:
 *	 postmaster            (the peer answered G or N: not conmgr)
 *	 candidate instance=N host=H port=P attrs=A
 *	 end count=N
 *	 down instance=N reason=R at_us=T   / eof / error code=C message=M
 * (T: when the notice arrived, wall clock in microseconds, to compare with
 * the times in conmgr's log).
 * With -r N it instead runs N whole sessions in a row (connect, probe,
 * resolve, close) and prints "latency n=N median_us=.. p99_us=.. max_us=..".
 * -s stalls that long between HELLO and the RESOLVE, -S between the
 * candidates and the ATTACHED (a slow client; fractions allowed); after
 * the candidates, -S prints "resolved", and a stalled RESOLVE that finds
 * the session closed prints "no answer to RESOLVE".
 * With -P the RESOLVE goes with the probe, in one packet (as libpq-cm sends
 * it to a conmgr it has met), and after the answer a line
 *	 segments data_in=N
 * says in how many TCP segments with data the whole answer came (the
 * kernel's tcpi_data_segs_in).
 * Exit 0 when the exchange went as the protocol says, 1 otherwise.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/tcp.h>

#include "cmclient.h"
#include "cmproto.h"

static cmclient cc;

/* Next frame into *m; 1 ok, 0 eof, -1 timeout or bad frame (said). */
static int
next_frame(cmproto_msg *m, int timeout_ms)
{
	int			rc = cmclient_next(&cc, m, timeout_ms);

	if (rc == CMCLIENT_BAD)
		printf("bad frame: %s\n", cmproto_strerror(cc.proto_rc));
	if (rc == CMCLIENT_OK)
		return 1;
	return rc == CMCLIENT_EOF || rc == CMCLIENT_IO ? 0 : -1;
}

static bool quiet;
static bool pipelined;			/* -P */
static double stall_resolve;	/* -s */
static double stall_attach;		/* -S */

static void
stall(double secs)
{
	struct timespec ts = {(time_t) secs, (long) ((secs - (time_t) secs) * 1e9)};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

#define say(...) do { if (!quiet) printf(__VA_ARGS__); } while (0)

/* Connect, probe, resolve; prints what it sees unless quiet. */
static int
session(const char *host, const char *port, int t, bool q, int *firstp)
{
	cmproto_msg m;
	cmproto_pg_error err;
	int			rc,
				first = -1;

	quiet = q;
	if (cmclient_connect(&cc, host, port, 5000) != CMCLIENT_OK)
	{
		say("connect failed: %s\n", strerror(errno));
		return 1;
	}
	if (cmclient_send_probe(&cc, pipelined ? t : -1, "cmresolve") != CMCLIENT_OK)
		return 1;
	rc = cmclient_probe_answer(&cc, &err, 5000);
	if (rc == CMCLIENT_POSTMASTER)
	{
		say("postmaster\n");
		return 0;
	}
	if (rc == CMCLIENT_BAD)
	{
		say("bad answer to the probe: %s\n", cmproto_strerror(cc.proto_rc));
		return 1;
	}
	if (rc != CMCLIENT_OK)
	{
		if (cc.len == 0)
			say("no answer to the probe\n");
		return 1;
	}
	say("probe-error sqlstate=%s message=%s\n", err.sqlstate, err.message);
	if (next_frame(&m, 5000) != 1 || m.type != CMPROTO_HELLO)
	{
		say("no HELLO\n");
		return 1;
	}
	say("hello versions=%u-%u\n", m.u.hello.min_version, m.u.hello.max_version);

	if (!pipelined)
	{
		fflush(stdout);
		stall(stall_resolve);
		if (cmclient_send_resolve(&cc, t, "cmresolve") != CMCLIENT_OK)
			return 1;
	}
	for (;;)
	{
		if (next_frame(&m, 5000) != 1)
		{
			say("no answer to RESOLVE\n");
			return 1;
		}
		if (m.type == CMPROTO_CANDIDATE)
		{
			say("candidate instance=%u host=%s port=%u attrs=%u\n",
				m.u.candidate.instance, m.u.candidate.host,
				m.u.candidate.port, m.u.candidate.attrs);
			if (first < 0)
				first = m.u.candidate.instance;
			continue;
		}
		if (m.type == CMPROTO_CANDIDATES_END)
		{
			say("end count=%u\n", m.u.candidates_end.count);
			if (pipelined)
			{
				struct tcp_info ti;
				socklen_t	tl = sizeof(ti);

				memset(&ti, 0, sizeof(ti));
				if (getsockopt(cc.fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) == 0)
					say("segments data_in=%u\n", ti.tcpi_data_segs_in);
			}
			break;
		}
		if (m.type == CMPROTO_ERROR)
		{
			say("error code=%u message=%s\n", m.u.error.code, m.u.error.message);
			return 1;
		}
		say("unexpected %s\n", cmproto_type_name(m.type));
		return 1;
	}
	*firstp = first;
	return 0;
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return x < y ? -1 : x > y;
}

/* -r N: N complete sessions in a row; print median and p99 in microseconds. */
static int
measure(const char *host, const char *port, int t, int n)
{
	double	   *us = calloc(n, sizeof(double));

	for (int i = 0; i < n; i++)
	{
		struct timespec a,
					b;
		int			first;

		clock_gettime(CLOCK_MONOTONIC, &a);
		if (session(host, port, t, true, &first) != 0 || first < 0)
		{
			printf("resolve %d failed\n", i);
			free(us);
			return 1;
		}
		cmclient_close(&cc);
		clock_gettime(CLOCK_MONOTONIC, &b);
		us[i] = (b.tv_sec - a.tv_sec) * 1e6 + (b.tv_nsec - a.tv_nsec) / 1e3;
	}
	qsort(us, n, sizeof(double), cmp_double);
	printf("latency n=%d median_us=%.0f p99_us=%.0f max_us=%.0f\n", n, us[n / 2],
		   us[(int) (n * 0.99) < n ? (int) (n * 0.99) : n - 1], us[n - 1]);
	free(us);
	return 0;
}

int
main(int argc, char **argv)
{
	const char *host = "127.0.0.1",
			   *port = NULL,
			   *target = "any";
	int			attach = 0,
				repeat = 0,
				wait_s = 30,
				c,
				rc,
				t,
				first = -1;
	cmproto_msg m;

	while ((c = getopt(argc, argv, "h:p:t:aw:r:Ps:S:")) != -1)
	{
		switch (c)
		{
			case 'h':
				host = optarg;
				break;
			case 'p':
				port = optarg;
				break;
			case 't':
				target = optarg;
				break;
			case 'a':
				attach = 1;
				break;
			case 'w':
				wait_s = atoi(optarg);
				break;
			case 'r':
				repeat = atoi(optarg);
				break;
			case 'P':
				pipelined = true;
				break;
			case 's':
				stall_resolve = atof(optarg);
				break;
			case 'S':
				stall_attach = atof(optarg);
				break;
			default:
				fprintf(stderr, "usage: cmresolve -p PORT -t TARGET [-h HOST] [-a] [-w SECONDS] [-r N] [-P] [-s SECONDS] [-S SECONDS]\n");
				return 2;
		}
	}
	if (port == NULL || (t = cmproto_target_from_name(target)) < 0)
	{
		fprintf(stderr, "cmresolve: need -p PORT and a valid -t TARGET\n");
		return 2;
	}
	if (repeat > 0)
		return measure(host, port, t, repeat);
	rc = session(host, port, t, false, &first);
	if (rc != 0)
		return rc;
	fflush(stdout);
	if (!attach || first < 0)
		return 0;
	if (stall_attach > 0)
	{
		printf("resolved\n");
		fflush(stdout);
		stall(stall_attach);
	}

	memset(&m, 0, sizeof(m));
	m.type = CMPROTO_ATTACHED;
	m.u.attached.instance = first;
	m.u.attached.backend_pid = 0;
	if (cmclient_send(&cc, &m) != CMCLIENT_OK)
		return 1;
	printf("attached instance=%d\n", first);
	fflush(stdout);
	rc = next_frame(&m, wait_s * 1000);
	if (rc == 0)
		printf("eof\n");
	else if (rc < 0)
		printf("timeout\n");
	else if (m.type == CMPROTO_INSTANCE_DOWN)
	{
		struct timespec now;

		clock_gettime(CLOCK_REALTIME, &now);
		printf("down instance=%u reason=%u at_us=%lld\n", m.u.instance_down.instance,
			   m.u.instance_down.reason,
			   (long long) now.tv_sec * 1000000 + now.tv_nsec / 1000);
	}
	else
		printf("unexpected %s\n", cmproto_type_name(m.type));
	return 0;
}
