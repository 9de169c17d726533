/*-------------------------------------------------------------------------
 *
 * cmload.c
 *	  Application-protocol load on a conmgr listener, for the benchmarks
 *	  (docs/protocol.md, section 2).
 *
 *	 cmload attach -p PORT -n N -i INSTANCE [-h HOST] [-w SECONDS]
 *	     opens N sessions (probe, RESOLVE any, ATTACHED to INSTANCE), says
 *	     "attached", then waits (at most SECONDS, default 60) until every
 *	     session got INSTANCE_DOWN, and reports when each notice arrived;
 *	     a session is read once (its event is one-shot) and closed only
 *	     after the last notice, so that the tool's own closes do not
 *	     delay the reading of the notices it times;
 *	 cmload resolve -p PORT -c CLIENTS -d SECONDS [-h HOST] [-t TARGET] [-P] [-F]
 *	     CLIENTS threads run whole sessions (connect, probe, RESOLVE,
 *	     close) back to back for SECONDS and report the throughput.  A
 *	     session ends as libpq-cm ends one, with a reset (SO_LINGER 0).
 *	 -P (either mode): send RESOLVE with the probe instead of after
 *	     conmgr's HELLO, as libpq-cm does with a conmgr it has already met.
 *	 -F (resolve): end each session with an orderly close (FIN, leaving
 *	     TIME_WAIT here), as a client other than libpq-cm may.
 *
 * Lines:
 *	 attached n=N at_us=T
 *	 down n=N got=G eof=E missed=M first_us=T last_us=T
 *	 resolve clients=C seconds=S n=N per_s=R failed=F cpu_us_per=U
 *	   (U: this process's CPU time, user + system, per resolve)
 *	 latency n=.. median_us=.. p99_us=.. min_us=.. max_us=.. mean_us=..
 * T: wall clock in microseconds.  The open-files limit is raised to the
 * hard limit first.  Exit 0 when everything went as the protocol says.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cmclient.h"
#include "cmproto.h"
#include "benchutil.h"

typedef cmclient conn;

static struct addrinfo *dest;
static bool pipelined;			/* -P: RESOLVE sent with the probe */
static bool orderly_close;		/* -F: end sessions with a FIN */

/*
 * Connect, probe, RESOLVE (common/cmclient.c, with a blocking connect);
 * on success the socket stays open in c->fd and *found tells whether
 * "want" (an instance number, or -1) was a candidate.
 */
static int
session(conn *c, int target, int want, bool *found)
{
	cmproto_msg cands[CMPROTO_MAX_INSTANCES];
	cmproto_msg m;
	cmproto_pg_error err;
	int			n;

	*found = false;
	if (cmclient_connect_addr(c, dest, -1) != CMCLIENT_OK)
		return -1;
	if (cmclient_probe(c, pipelined ? target : -1, "cmload", &err, &m, 5000) != CMCLIENT_OK ||
		(!pipelined && cmclient_send_resolve(c, target, "cmload") != CMCLIENT_OK) ||
		cmclient_candidates(c, cands, CMPROTO_MAX_INSTANCES, &n, &m, 5000) != CMCLIENT_OK)
	{
		cmclient_close(c);
		return -1;
	}
	for (int i = 0; i < n && i < CMPROTO_MAX_INSTANCES; i++)
		if (cands[i].u.candidate.instance == want)
			*found = true;
	return 0;
}

/* End a session as libpq-cm does: with a reset (docs/protocol.md, 2.3). */
static void
end_session(conn *c)
{
	struct linger abort_close = {1, 0};

	if (!orderly_close)
		(void) setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &abort_close, sizeof(abort_close));
	close(c->fd);
	c->fd = -1;
}

/* ---- attach ---- */

static int
do_attach(int n, int instance, int wait_s)
{
	conn	   *cs = calloc(n, sizeof(conn));
	long long  *arrived = calloc(n, sizeof(long long));
	int			ep = epoll_create1(0),
				got = 0,
				eof = 0,
				done = 0;
	long long	first = 0,
				last = 0;
	double		deadline;

	for (int i = 0; i < n; i++)
	{
		bool		found;
		cmproto_msg m;

		if (session(&cs[i], CMPROTO_TARGET_ANY, instance, &found) != 0)
		{
			printf("failed session=%d: %s\n", i, strerror(errno));
			return 1;
		}
		if (!found)
		{
			printf("failed session=%d: instance %d is not a candidate\n", i, instance);
			return 1;
		}
		memset(&m, 0, sizeof(m));
		m.type = CMPROTO_ATTACHED;
		m.u.attached.instance = instance;
		m.u.attached.backend_pid = 0;
		if (cmclient_send(&cs[i], &m) != CMCLIENT_OK)
		{
			printf("failed session=%d: ATTACHED: %s\n", i, strerror(errno));
			return 1;
		}
		{
			struct epoll_event ev = {.events = EPOLLIN | EPOLLONESHOT,.data.u32 = i};

			epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
		}
	}
	printf("attached n=%d at_us=%lld\n", n, real_us());
	fflush(stdout);

	deadline = mono_s() + wait_s;
	while (done < n && mono_s() < deadline)
	{
		struct epoll_event evs[256];
		int			k = epoll_wait(ep, evs, 256, 100);

		for (int e = 0; e < k; e++)
		{
			int			i = evs[e].data.u32;
			conn	   *c = &cs[i];
			ssize_t		r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
			long long	now = real_us();
			size_t		flen;
			cmproto_msg m;

			if (r > 0)
				c->len += r;
			if (arrived[i] == 0 &&
				cmproto_frame(c->buf, c->len, &flen) == CMPROTO_OK &&
				cmproto_decode(c->buf, flen, CMPROTO_PEER_LISTENER, &m) == CMPROTO_OK &&
				m.type == CMPROTO_INSTANCE_DOWN)
			{
				arrived[i] = now;
				got++;
				if (first == 0 || now < first)
					first = now;
				if (now > last)
					last = now;
			}
			if (r <= 0 || arrived[i] != 0)
			{
				if (arrived[i] == 0)
				{
					arrived[i] = -1;
					eof++;
				}
				done++;
			}
			else
			{
				/* part of a frame: wait for the rest */
				struct epoll_event ev = {.events = EPOLLIN | EPOLLONESHOT,.data.u32 = i};

				epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
			}
		}
	}
	for (int i = 0; i < n; i++)
		close(cs[i].fd);
	printf("down n=%d got=%d eof=%d missed=%d first_us=%lld last_us=%lld\n",
		   n, got, eof, n - got, first, last);
	return got == n ? 0 : 1;
}

/* ---- resolve throughput ---- */

typedef struct worker
{
	pthread_t	th;
	int			target;
	double		deadline;
	long		n;
	long		failed;
	int			cap;
	double	   *lat;
} worker;

static void *
resolve_loop(void *arg)
{
	worker	   *w = arg;
	conn	   *c = calloc(1, sizeof(conn));

	while (mono_s() < w->deadline)
	{
		double		t0 = mono_s();
		bool		found;

		if (session(c, w->target, -1, &found) != 0)
		{
			w->failed++;
			continue;
		}
		end_session(c);
		if (w->n < w->cap)
			w->lat[w->n] = mono_s() - t0;
		w->n++;
	}
	free(c);
	return NULL;
}

static int
do_resolve(int clients, double seconds, int target)
{
	worker	   *ws = calloc(clients, sizeof(worker));
	double		t0 = mono_s(),
				elapsed;
	long		n = 0,
				failed = 0;
	int			nl = 0;
	double	   *all;
	double		cpu0 = self_cpu_s();

	for (int i = 0; i < clients; i++)
	{
		ws[i].target = target;
		ws[i].deadline = t0 + seconds;
		ws[i].cap = 1000000;
		ws[i].lat = calloc(ws[i].cap, sizeof(double));
		pthread_create(&ws[i].th, NULL, resolve_loop, &ws[i]);
	}
	for (int i = 0; i < clients; i++)
	{
		pthread_join(ws[i].th, NULL);
		n += ws[i].n;
		failed += ws[i].failed;
	}
	elapsed = mono_s() - t0;
	all = calloc(n > 0 ? n : 1, sizeof(double));
	for (int i = 0; i < clients; i++)
		for (long j = 0; j < ws[i].n && j < ws[i].cap; j++)
			all[nl++] = ws[i].lat[j];
	printf("resolve clients=%d seconds=%.3f n=%ld per_s=%.1f failed=%ld cpu_us_per=%.1f\n",
		   clients, elapsed, n, n / elapsed, failed,
		   (self_cpu_s() - cpu0) * 1e6 / (n > 0 ? n : 1));
	print_summary("latency", all, nl, NULL);
	return failed == 0 && n > 0 ? 0 : 1;
}

static void
usage(void)
{
	fprintf(stderr,
			"usage: cmload attach -p PORT -n N -i INSTANCE [-h HOST] [-w SECONDS]\n"
			"       cmload resolve -p PORT -c CLIENTS -d SECONDS [-h HOST] [-t TARGET] [-P] [-F]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	const char *host = "127.0.0.1",
			   *port = NULL,
			   *mode;
	int			n = 1000,
				instance = 0,
				wait_s = 60,
				clients = 4,
				target = CMPROTO_TARGET_ANY,
				c;
	double		seconds = 5;
	struct addrinfo hints;

	if (argc < 2)
		usage();
	mode = argv[1];
	optind = 2;
	while ((c = getopt(argc, argv, "h:p:n:i:w:c:d:t:PF")) != -1)
	{
		switch (c)
		{
			case 'h':
				host = optarg;
				break;
			case 'p':
				port = optarg;
				break;
			case 'n':
				n = atoi(optarg);
				break;
			case 'i':
				instance = atoi(optarg);
				break;
			case 'w':
				wait_s = atoi(optarg);
				break;
			case 'c':
				clients = atoi(optarg);
				break;
			case 'd':
				seconds = atof(optarg);
				break;
			case 'P':
				pipelined = true;
				break;
			case 'F':
				orderly_close = true;
				break;
			case 't':
				if ((target = cmproto_target_from_name(optarg)) < 0)
					usage();
				break;
			default:
				usage();
		}
	}
	if (port == NULL || n < 1 || clients < 1)
		usage();
	setvbuf(stdout, NULL, _IOLBF, 0);
	raise_nofile();
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(host, port, &hints, &dest) != 0)
	{
		fprintf(stderr, "cmload: cannot resolve %s:%s\n", host, port);
		return 2;
	}
	if (strcmp(mode, "attach") == 0)
		return do_attach(n, instance, wait_s);
	if (strcmp(mode, "resolve") == 0)
		return do_resolve(clients, seconds, target);
	usage();
	return 2;
}
