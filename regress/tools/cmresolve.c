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

#include "cmproto.h"

static int	fd;
static uint8_t buf[4096];
static size_t len;

/* Read until at least "need" bytes are buffered; false on EOF/timeout. */
static int
fill(size_t need, int timeout_ms)
{
	while (len < need)
	{
		struct pollfd p = {fd, POLLIN, 0};
		ssize_t		n;

		if (poll(&p, 1, timeout_ms) <= 0)
			return -1;
		n = recv(fd, buf + len, sizeof(buf) - len, 0);
		if (n <= 0)
			return 0;
		len += n;
	}
	return 1;
}

static void
consume(size_t n)
{
	memmove(buf, buf + n, len - n);
	len -= n;
}

/* Next frame into *m; 1 ok, 0 eof, -1 timeout or bad frame. */
static int
next_frame(cmproto_msg *m, int timeout_ms)
{
	for (;;)
	{
		size_t		flen;
		int			rc = cmproto_frame(buf, len, &flen);

		if (rc == CMPROTO_OK)
		{
			rc = cmproto_decode(buf, flen, CMPROTO_PEER_LISTENER, m);
			consume(flen);
			if (rc < 0)
			{
				printf("bad frame: %s\n", cmproto_strerror(rc));
				return -1;
			}
			return 1;
		}
		if (rc < 0)
		{
			printf("bad frame: %s\n", cmproto_strerror(rc));
			return -1;
		}
		rc = fill(len + 1, timeout_ms);
		if (rc <= 0)
			return rc;
	}
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
	struct addrinfo hints,
			   *res;
	cmproto_msg m;
	size_t		elen;
	cmproto_pg_error err;
	int			rc,
				first = -1;

	quiet = q;
	len = 0;
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(host, port, &hints, &res) != 0)
	{
		say("connect failed: %s\n", strerror(errno));
		return 1;
	}
	if ((fd = socket(res->ai_family, SOCK_STREAM, 0)) < 0 ||
		connect(fd, res->ai_addr, res->ai_addrlen) < 0)
	{
		say("connect failed: %s\n", strerror(errno));
		freeaddrinfo(res);
		return 1;
	}
	freeaddrinfo(res);
	len = cmproto_pg_encode_probe(buf, sizeof(buf));
	if (pipelined)
	{
		rc = cmproto_encode_resolve(buf + len, sizeof(buf) - len, CMPROTO_VERSION, t,
									(uint32_t) getpid(), "cmresolve");
		if (rc < 0)
			return 1;
		len += (size_t) rc;
	}
	if (send(fd, buf, len, 0) != (ssize_t) len)
		return 1;
	len = 0;
	if (fill(1, 5000) <= 0)
	{
		say("no answer to the probe\n");
		return 1;
	}
	if (buf[0] == 'G' || buf[0] == 'N')
	{
		say("postmaster\n");
		return 0;
	}
	while ((rc = cmproto_pg_decode_error(buf, len, &elen, &err)) == CMPROTO_INCOMPLETE)
		if (fill(len + 1, 5000) <= 0)
			return 1;
	if (rc != CMPROTO_OK)
	{
		say("bad answer to the probe: %s\n", cmproto_strerror(rc));
		return 1;
	}
	say("probe-error sqlstate=%s message=%s\n", err.sqlstate, err.message);
	consume(elen);
	if (next_frame(&m, 5000) != 1 || m.type != CMPROTO_HELLO)
	{
		say("no HELLO\n");
		return 1;
	}
	say("hello versions=%u-%u\n", m.u.hello.min_version, m.u.hello.max_version);

	if (!pipelined)
	{
		uint8_t		out[CMPROTO_MAX_MSG];

		fflush(stdout);
		stall(stall_resolve);
		rc = cmproto_encode_resolve(out, sizeof(out), CMPROTO_VERSION, t,
									(uint32_t) getpid(), "cmresolve");
		if (rc < 0 || send(fd, out, rc, 0) != rc)
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
				if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) == 0)
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
		close(fd);
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
			case 'h': host = optarg; break;
			case 'p': port = optarg; break;
			case 't': target = optarg; break;
			case 'a': attach = 1; break;
			case 'w': wait_s = atoi(optarg); break;
			case 'r': repeat = atoi(optarg); break;
			case 'P': pipelined = true; break;
			case 's': stall_resolve = atof(optarg); break;
			case 'S': stall_attach = atof(optarg); break;
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
	rc = cmproto_encode(&m, buf + len, sizeof(buf) - len);
	if (rc < 0 || send(fd, buf + len, rc, 0) != rc)
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
