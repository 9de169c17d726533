/*-------------------------------------------------------------------------
 *
 * stormer.c
 *	  A hostile-peer load tool for tests: a bounded storm of bad connections.
 *
 *	 stormer -p PORT -P wd|app [-h HOST] [-s SRC[,SRC...]] [-n TOTAL]
 *			 [-w WAVE] [-i WAVE_MS] [-c MAXOPEN] [-d SECONDS] [-H HOLD_SECONDS]
 *			 [-m MODE[,MODE...]]
 *
 * Opens TOTAL connections (default 10000) to HOST:PORT (default 127.0.0.1),
 * WAVE of them (default 40) every WAVE_MS (default 100), from the source
 * addresses given in turn, never more than MAXOPEN (default 4000) open at
 * once, and makes each one misbehave in one of the modes given by -m, in
 * turn; by default the first five:
 *
 *	 garbage   64 random bytes
 *	 silent    connects and sends nothing (a half-open handshake)
 *	 half      half of a valid first message, then nothing
 *	 slow      a slow-loris: a message that never ends, one byte every 300 ms
 *	 oversize  a header announcing a message longer than the protocol allows
 *	 resolved  (app) the probe and a RESOLVE, then nothing: a client that
 *			   got its candidates and never reports ATTACHED
 *	 attached  (app) the same, then ATTACHED to the first candidate, then
 *			   nothing: an idle application
 *
 * In the last two modes a session counts as answered when the answer to
 * its RESOLVE (read in one piece: conmgr sends it in one write) ends with
 * CANDIDATES_END naming at least one candidate; "attached" sends its
 * ATTACHED then.
 *
 * The messages are those of the protocol named by -P: the heartbeat
 * protocol (HB_HELLO) for watchdog.port, the application protocol (the
 * GSSENCRequest probe, then RESOLVE; or a PostgreSQL startup packet) for
 * conmgr's port (docs/protocol.md).  What the server sends is read and
 * dropped.  A connection is closed by the tool HOLD_SECONDS (default 15)
 * after it connected if the server has not closed it by then; everything
 * is closed at the end, and the run ends after SECONDS (default 60) in any
 * case.  Only loopback addresses (127.0.0.0/8) are accepted, as target and
 * as sources.  The open-files limit is raised to its hard limit.
 *
 * Output, one line per mode used and a total:
 *	 mode=silent opened=2000 connected=2000 failed=0 closed_by_server=2000
 *		  closed_by_us=0 close_ms_median=10003 close_ms_max=10050 answered=0
 *	 total ... elapsed_s=25.1 connected_per_s=398.4 max_open=1200
 * Exit 0 once the run is over, 2 on a usage error.
 *
 *-------------------------------------------------------------------------
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cmproto.h"

#define MAX_SOURCES		64
#define SLOW_EVERY_MS	300
#define CONNECT_TIMEOUT 5.0

enum mode
{
	M_GARBAGE, M_SILENT, M_HALF, M_SLOW, M_OVERSIZE, M_RESOLVED, M_ATTACHED, M_COUNT
};
static const char *const mode_names[M_COUNT] = {
	"garbage", "silent", "half", "slow", "oversize", "resolved", "attached"
};
#define M_HOSTILE		5		/* the default modes: the first five */

typedef struct conn
{
	int			fd;				/* -1 once closed */
	enum mode	mode;
	bool		counted;		/* in nopen */
	bool		connected;
	bool		answered;		/* resolved, attached: candidates came */
	double		opened_at;
	double		next_byte;		/* slow: when to send the next byte */
	size_t		sent;			/* slow: bytes of slow_msg sent */
} conn;

typedef struct stats
{
	long		opened,
				connected,
				failed,
				by_server,
				by_us,
				answered;
	double	   *close_ms;		/* time to the server's close, per conn */
} stats;

static stats st[M_COUNT];
static bool app_proto;
static uint8_t first_msg[CMPROTO_MAX_MSG + 8];	/* a valid first message */
static size_t first_len;
static uint8_t slow_msg[64];	/* a message that never completes */
static size_t slow_len;
static uint8_t oversize_msg[64];
static size_t oversize_len;
static volatile sig_atomic_t stop;
static long nopen;				/* connections open or connecting */

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
on_signal(int sig)
{
	(void) sig;
	stop = 1;
}

static void
usage(void)
{
	fprintf(stderr,
			"usage: stormer -p PORT -P wd|app [-h HOST] [-s SRC[,SRC...]] [-n TOTAL]\n"
			"               [-w WAVE] [-i WAVE_MS] [-c MAXOPEN] [-d SECONDS] [-H HOLD_SECONDS]\n"
			"               [-m garbage|silent|half|slow|oversize|resolved|attached[,...]]\n");
	exit(2);
}

static bool
loopback(const char *s, struct in_addr *out)
{
	return inet_pton(AF_INET, s, out) == 1 && (ntohl(out->s_addr) >> 24) == 127;
}

static void
put32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

/* The protocol's messages, built with the shared codec where they are valid. */
static void
build_messages(void)
{
	cmproto_msg m;
	int			n;

	memset(&m, 0, sizeof(m));
	if (!app_proto)
	{
		m.type = CMPROTO_HB_HELLO;
		m.u.hb_hello.min_version = CMPROTO_MIN_VERSION;
		m.u.hb_hello.max_version = CMPROTO_VERSION;
		m.u.hb_hello.interval = 1;
		m.u.hb_hello.timeout = 3;
		memset(m.u.hb_hello.nonce, 0x5a, CMPROTO_NONCE_LEN);
		n = cmproto_encode(&m, first_msg, sizeof(first_msg));
		if (n < 0)
			exit(1);
		first_len = n;
		/* slow: the HB_HELLO itself, 58 bytes, is 17 s at 300 ms a byte */
		memcpy(slow_msg, first_msg, first_len);
		slow_len = first_len;
		/* a header announcing 65535 bytes */
		memcpy(oversize_msg, "h\0\xff\xff", 4);
		memset(oversize_msg + 4, 'A', 28);
		oversize_len = 32;
		return;
	}
	/* app: the GSSENCRequest probe, then a RESOLVE frame */
	put32(first_msg, 8);
	put32(first_msg + 4, 80877104);
	m.type = CMPROTO_RESOLVE;
	m.u.resolve.version = CMPROTO_VERSION;
	m.u.resolve.target = CMPROTO_TARGET_ANY;
	m.u.resolve.client_pid = 1;
	strcpy(m.u.resolve.application_name, "stormer");
	n = cmproto_encode(&m, first_msg + 8, sizeof(first_msg) - 8);
	if (n < 0)
		exit(1);
	first_len = 8 + n;
	/* slow: a startup packet announcing 10000 bytes (2.5 h at 300 ms) */
	put32(slow_msg, 10000);
	put32(slow_msg + 4, 196608);
	memset(slow_msg + 8, 'x', sizeof(slow_msg) - 8);
	slow_len = sizeof(slow_msg);
	/* a first packet announcing 2 GB */
	put32(oversize_msg, 0x7fffffff);
	put32(oversize_msg + 4, 196608);
	memset(oversize_msg + 8, 'A', 24);
	oversize_len = 32;
}

static void
conn_close(conn *c, bool by_server, double t)
{
	stats	   *s = &st[c->mode];

	close(c->fd);
	c->fd = -1;
	if (c->counted)
		nopen--;
	c->counted = false;
	if (!c->connected)
		s->failed++;
	else if (by_server)
		s->close_ms[s->by_server++] = (t - c->opened_at) * 1000;
	else
		s->by_us++;
}

static void
conn_send(conn *c, const void *buf, size_t len, double t)
{
	if (send(c->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 &&
		errno != EAGAIN)
		conn_close(c, true, t);
}

/* Connected: say what this mode says first. */
static void
conn_start(conn *c, double t)
{
	uint8_t		garbage[64];

	switch (c->mode)
	{
		case M_GARBAGE:
			for (size_t i = 0; i < sizeof(garbage); i++)
				garbage[i] = (uint8_t) random();
			garbage[0] = 0xff;	/* never a valid type or length */
			conn_send(c, garbage, sizeof(garbage), t);
			break;
		case M_SILENT:
			break;
		case M_HALF:
			conn_send(c, first_msg, app_proto ? 8 + (first_len - 8) / 2 : first_len / 2, t);
			break;
		case M_SLOW:
			c->next_byte = t;
			break;
		case M_OVERSIZE:
			conn_send(c, oversize_msg, oversize_len, t);
			break;
		case M_RESOLVED:
		case M_ATTACHED:
			conn_send(c, first_msg, first_len, t);
			break;
		case M_COUNT:
			break;
	}
}

/*
 * The answer to a RESOLVE, read in one piece: the probe's ErrorResponse,
 * HELLO, CANDIDATE frames, CANDIDATES_END.  Returns the first candidate's
 * instance, or -1 when the answer is not that, or names none.
 */
static int
first_candidate(const uint8_t *buf, size_t len)
{
	size_t		off;
	int			first = -1;

	if (len < 5 || buf[0] != 'E')
		return -1;
	off = 1 + (((size_t) buf[1] << 24) | ((size_t) buf[2] << 16) |
			   ((size_t) buf[3] << 8) | buf[4]);
	while (off < len)
	{
		size_t		flen;
		cmproto_msg m;

		if (cmproto_frame(buf + off, len - off, &flen) != CMPROTO_OK ||
			cmproto_decode(buf + off, flen, CMPROTO_PEER_LISTENER, &m) != CMPROTO_OK)
			return -1;
		off += flen;
		if (m.type == CMPROTO_CANDIDATE && first < 0)
			first = m.u.candidate.instance;
		else if (m.type == CMPROTO_CANDIDATES_END)
			return first;
	}
	return -1;
}

/* resolved, attached: the first read is the answer to the RESOLVE. */
static void
conn_answer(conn *c, const uint8_t *buf, size_t len, double t)
{
	int			inst = first_candidate(buf, len);
	cmproto_msg m;
	uint8_t		out[CMPROTO_MAX_MSG];
	int			n;

	c->answered = true;
	if (inst < 0)
		return;
	st[c->mode].answered++;
	if (c->mode != M_ATTACHED)
		return;
	memset(&m, 0, sizeof(m));
	m.type = CMPROTO_ATTACHED;
	m.u.attached.instance = (uint16_t) inst;
	m.u.attached.backend_pid = 1;
	n = cmproto_encode(&m, out, sizeof(out));
	if (n > 0)
		conn_send(c, out, (size_t) n, t);
}

/* Start connecting; a failure at once is counted as such. */
static void
conn_open(conn *c, uint64_t tag, int ep, const struct sockaddr_in *dst,
		  const struct in_addr *src, double t)
{
	struct sockaddr_in b;
	struct epoll_event e;
	int			one = 1;

	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
	{
		st[c->mode].failed++;
		return;
	}
	c->counted = true;
	nopen++;
	memset(&b, 0, sizeof(b));
	b.sin_family = AF_INET;
	if (src != NULL)
		b.sin_addr = *src;
	(void) setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
	e.events = EPOLLOUT | EPOLLIN;
	e.data.u64 = tag;
	if ((src != NULL && bind(c->fd, (struct sockaddr *) &b, sizeof(b)) < 0) ||
		(connect(c->fd, (const struct sockaddr *) dst, sizeof(*dst)) < 0 &&
		 errno != EINPROGRESS) ||
		epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e) < 0)
		conn_close(c, false, t);
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
	const char *host = "127.0.0.1";
	int			port = 0;
	char	   *srcs = NULL;
	struct in_addr src[MAX_SOURCES];
	int			nsrc = 0;
	long		total = 10000,
				wave = 40,
				wave_ms = 100,
				maxopen = 4000;
	double		duration = 60,
				hold = 15;
	struct sockaddr_in dst;
	struct rlimit rl;
	conn	   *conns;
	long		nopened = 0,
				max_open = 0;
	int			ep;
	enum mode	modes[M_COUNT];
	int			nmodes = 0;
	bool		used[M_COUNT] = {false};
	double		t0,
				next_wave,
				last_slow = 0,
				t_end;
	int			c;

	while ((c = getopt(argc, argv, "h:p:P:s:n:w:i:c:d:H:m:")) != -1)
	{
		switch (c)
		{
			case 'h':
				host = optarg;
				break;
			case 'p':
				port = atoi(optarg);
				break;
			case 'P':
				if (strcmp(optarg, "app") == 0)
					app_proto = true;
				else if (strcmp(optarg, "wd") != 0)
					usage();
				break;
			case 's':
				srcs = optarg;
				break;
			case 'n':
				total = atol(optarg);
				break;
			case 'w':
				wave = atol(optarg);
				break;
			case 'i':
				wave_ms = atol(optarg);
				break;
			case 'c':
				maxopen = atol(optarg);
				break;
			case 'd':
				duration = atof(optarg);
				break;
			case 'H':
				hold = atof(optarg);
				break;
			case 'm':
				for (char *save = NULL, *tok = strtok_r(optarg, ",", &save); tok;
					 tok = strtok_r(NULL, ",", &save))
				{
					int			k = 0;

					while (k < M_COUNT && strcmp(tok, mode_names[k]) != 0)
						k++;
					if (k == M_COUNT || nmodes == M_COUNT)
					{
						fprintf(stderr, "stormer: unknown mode \"%s\" (or too many)\n", tok);
						usage();
					}
					modes[nmodes++] = (enum mode) k;
				}
				break;
			default:
				usage();
		}
	}
	memset(&dst, 0, sizeof(dst));
	dst.sin_family = AF_INET;
	dst.sin_port = htons(port);
	if (port <= 0 || port > 65535 || !loopback(host, &dst.sin_addr) ||
		total < 1 || total > 1000000 || wave < 1 || wave_ms < 1 || maxopen < 1 ||
		duration <= 0 || duration > 600 || hold <= 0)
	{
		fprintf(stderr, "stormer: a loopback target (127.0.0.0/8), a port and sane bounds are required\n");
		usage();
	}
	for (int k = 0; k < nmodes; k++)
		if (modes[k] >= M_RESOLVED && !app_proto)
		{
			fprintf(stderr, "stormer: mode \"%s\" is for -P app\n", mode_names[modes[k]]);
			usage();
		}
	if (nmodes == 0)
		for (int k = 0; k < M_HOSTILE; k++)
			modes[nmodes++] = (enum mode) k;
	for (int k = 0; k < nmodes; k++)
		used[modes[k]] = true;
	for (char *save = NULL, *tok = srcs ? strtok_r(srcs, ",", &save) : NULL; tok;
		 tok = strtok_r(NULL, ",", &save))
	{
		if (nsrc == MAX_SOURCES || !loopback(tok, &src[nsrc]))
		{
			fprintf(stderr, "stormer: source \"%s\" is not a loopback address (or too many)\n", tok);
			usage();
		}
		nsrc++;
	}

	/* Room for MAXOPEN sockets. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
	{
		rl.rlim_cur = rl.rlim_max;
		(void) setrlimit(RLIMIT_NOFILE, &rl);
		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
			(rlim_t) maxopen + 16 > rl.rlim_cur)
			maxopen = (long) rl.rlim_cur - 16;
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGPIPE, SIG_IGN);
	srandom(getpid());
	build_messages();

	conns = calloc(total, sizeof(conn));
	for (int m = 0; m < M_COUNT; m++)
		st[m].close_ms = calloc(total, sizeof(double));
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (conns == NULL || ep < 0)
	{
		perror("stormer");
		return 1;
	}

	t0 = now();
	t_end = t0 + duration;
	next_wave = t0;
	while (!stop)
	{
		struct epoll_event ev[256];
		double		t = now();
		int			n;
		bool		slow_round = t - last_slow >= SLOW_EVERY_MS / 1000.0;

		if (t >= t_end)
			break;
		/* A wave. */
		if (t >= next_wave && nopened < total)
		{
			for (long k = 0; k < wave && nopened < total && nopen < maxopen; k++)
			{
				conn	   *cn = &conns[nopened];

				cn->mode = modes[nopened % nmodes];
				cn->opened_at = t;
				st[cn->mode].opened++;
				nopened++;
				conn_open(cn, (uint64_t) (cn - conns), ep, &dst,
						  nsrc > 0 ? &src[nopened % nsrc] : NULL, t);
			}
			next_wave += wave_ms / 1000.0;
			if (max_open < nopen)
				max_open = nopen;
		}

		n = epoll_wait(ep, ev, 256, 20);
		t = now();
		for (int i = 0; i < n; i++)
		{
			conn	   *cn = &conns[ev[i].data.u64];

			if (cn->fd < 0)
				continue;
			if (!cn->connected)
			{
				int			err = 0;
				socklen_t	len = sizeof(err);
				struct epoll_event e;

				if (getsockopt(cn->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0)
				{
					conn_close(cn, false, t);
					continue;
				}
				if (!(ev[i].events & EPOLLOUT))
					continue;
				cn->connected = true;
				st[cn->mode].connected++;
				e.events = EPOLLIN;
				e.data.u64 = ev[i].data.u64;
				(void) epoll_ctl(ep, EPOLL_CTL_MOD, cn->fd, &e);
				conn_start(cn, t);
				continue;
			}
			if (ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
			{
				uint8_t		buf[4096];
				ssize_t		r;

				while ((r = recv(cn->fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
				{
					if ((cn->mode == M_RESOLVED || cn->mode == M_ATTACHED) && !cn->answered)
						conn_answer(cn, buf, (size_t) r, t);
					if (cn->fd < 0)
						break;	/* the ATTACHED could not be sent */
				}
				if (cn->fd < 0)
					continue;
				if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
				{
					conn_close(cn, true, t);
				}
			}
		}

		/* Slow bytes, hold limits and connect timeouts: a scan. */
		if (slow_round)
		{
			last_slow = t;
			for (long k = 0; k < nopened; k++)
			{
				conn	   *cn = &conns[k];

				if (cn->fd < 0)
					continue;
				if (t - cn->opened_at >= (cn->connected ? hold : CONNECT_TIMEOUT))
					conn_close(cn, false, t);
				else if (cn->connected && cn->mode == M_SLOW && cn->sent < slow_len &&
						 t >= cn->next_byte)
				{
					conn_send(cn, slow_msg + cn->sent, 1, t);
					cn->sent++;
					cn->next_byte = t + SLOW_EVERY_MS / 1000.0;
				}
			}
		}
		if (nopened == total && nopen == 0)
			break;
	}
	t_end = now();
	for (long k = 0; k < nopened; k++)
		if (conns[k].fd >= 0)
			conn_close(&conns[k], false, t_end);

	{
		long		tot_opened = 0,
					tot_conn = 0,
					tot_failed = 0,
					tot_server = 0,
					tot_us = 0;

		for (int m = 0; m < M_COUNT; m++)
		{
			stats	   *s = &st[m];
			double		med = 0,
						max = 0;

			if (!used[m])
				continue;

			if (s->by_server > 0)
			{
				qsort(s->close_ms, s->by_server, sizeof(double), cmp_double);
				med = s->close_ms[s->by_server / 2];
				max = s->close_ms[s->by_server - 1];
			}
			printf("mode=%s opened=%ld connected=%ld failed=%ld closed_by_server=%ld "
				   "closed_by_us=%ld close_ms_median=%.0f close_ms_max=%.0f answered=%ld\n",
				   mode_names[m], s->opened, s->connected, s->failed, s->by_server,
				   s->by_us, med, max, s->answered);
			tot_opened += s->opened;
			tot_conn += s->connected;
			tot_failed += s->failed;
			tot_server += s->by_server;
			tot_us += s->by_us;
		}
		printf("total opened=%ld connected=%ld failed=%ld closed_by_server=%ld closed_by_us=%ld "
			   "elapsed_s=%.1f connected_per_s=%.1f max_open=%ld\n",
			   tot_opened, tot_conn, tot_failed, tot_server, tot_us, t_end - t0,
			   tot_conn / (t_end - t0), max_open);
	}
	for (int m = 0; m < M_COUNT; m++)
		free(st[m].close_ms);
	free(conns);
	close(ep);
	return 0;
}
