/*-------------------------------------------------------------------------
 *
 * hbclient.c
 *	  A heartbeat-protocol client for tests and benchmarks.
 *
 * Plays the conmgr heartbeat role against a watchdog with the shared codec,
 * for one or many sessions at once, and prints one line per event so that
 * a TAP test can follow what happened and when:
 *
 *	 T=0.004 s=0 welcome version=3 attrs=0 flags=0 timeline=1
 *	 T=1.503 s=0 attrs attrs=1 timeline=1
 *	 T=9.998 s=0 closed connection closed by peer
 *
 * T is seconds since start (CLOCK_MONOTONIC), W the wall clock, for
 * comparison with events the test sees elsewhere.  SIGUSR1 makes every session
 * go silent (it keeps reading but sends nothing, like a host whose link
 * died one way); SIGTERM or the --duration deadline ends the run, closing
 * every socket.  With -c N, at most N sessions are in their handshake at
 * once (the next connects when one is welcomed or closed), so that many
 * sessions register without meeting the watchdog's limit of connections
 * in handshake.  -V N offers protocol versions up to N only (a conmgr of
 * that version, for the compatibility tests).  Not installed; built into
 * build/regress/.
 *
 *-------------------------------------------------------------------------
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cmproto.h"
#include "cmsha256.h"

typedef struct session
{
	int			fd;
	bool		up;
	bool		done;
	uint32_t	seq;
	int			version;		/* agreed, once the watchdog named it */
	double		next_send;
	double		last_sent;		/* wall clock, for the tests */
	double		last_received;
	uint8_t		nonce_c[CMPROTO_NONCE_LEN];
	size_t		inlen;
	uint8_t		inbuf[CMPROTO_MAX_MSG];
} session;

static volatile sig_atomic_t go_silent;
static volatile sig_atomic_t stop;
static double t0;
static bool verbose;
static int	max_version = CMPROTO_VERSION;
static uint8_t key[1024];
static size_t keylen;

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
event(int i, const char *fmt,...)
{
	va_list		ap;

	struct timespec wall;

	clock_gettime(CLOCK_REALTIME, &wall);
	printf("T=%.3f W=%.3f s=%d ", now() - t0,
		   wall.tv_sec + wall.tv_nsec / 1e9, i);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

static void
on_signal(int sig)
{
	if (sig == SIGUSR1)
		go_silent = 1;
	else
		stop = 1;
}

static void
usage(void)
{
	fprintf(stderr,
			"usage: hbclient -h HOST -p PORT [-b BINDADDR] [-i INTERVAL] [-t TIMEOUT]\n"
			"                [-n SESSIONS] [-c MAX_HANDSHAKES] [-k KEYFILE] [-d DURATION]\n"
			"                [-s SILENT_AFTER] [-V MAX_VERSION] [-v]\n");
	exit(2);
}

static void
load_key(const char *path)
{
	FILE	   *f = fopen(path, "rb");

	if (f == NULL)
	{
		fprintf(stderr, "hbclient: could not open key file \"%s\": %s\n",
				path, strerror(errno));
		exit(1);
	}
	keylen = fread(key, 1, sizeof(key), f);
	fclose(f);
	while (keylen > 0 && (key[keylen - 1] == '\n' || key[keylen - 1] == '\r' ||
						  key[keylen - 1] == ' ' || key[keylen - 1] == '\t'))
		keylen--;
}

static void
finish(session *s, int i, const char *why)
{
	if (s->done)
		return;
	event(i, "closed %s", why);
	close(s->fd);
	s->fd = -1;
	s->done = true;
}

static void
send_msg(session *s, int i, const cmproto_msg *m)
{
	uint8_t		buf[CMPROTO_MAX_MSG];
	int			n = cmproto_encode(m, buf, sizeof(buf));

	if (n < 0)
	{
		fprintf(stderr, "hbclient: encode: %s\n", cmproto_strerror(n));
		exit(1);
	}
	if (send(s->fd, buf, n, MSG_NOSIGNAL) != n)
	{
		finish(s, i, "send failed");
		return;
	}
	{
		struct timespec wall;

		clock_gettime(CLOCK_REALTIME, &wall);
		s->last_sent = wall.tv_sec + wall.tv_nsec / 1e9;
	}
}

static int
connect_to(const char *host, const char *port, const char *bindaddr)
{
	struct addrinfo hints,
			   *res;
	int			fd,
				rc,
				one = 1;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST;
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0)
	{
		fprintf(stderr, "hbclient: %s: %s\n", host, gai_strerror(rc));
		exit(1);
	}
	fd = socket(res->ai_family, SOCK_STREAM, 0);
	if (fd < 0)
	{
		perror("hbclient: socket");
		exit(1);
	}
	if (bindaddr != NULL)
	{
		struct addrinfo *b;

		if (getaddrinfo(bindaddr, NULL, &hints, &b) != 0 ||
			bind(fd, b->ai_addr, b->ai_addrlen) < 0)
		{
			fprintf(stderr, "hbclient: could not bind to %s: %s\n",
					bindaddr, strerror(errno));
			exit(1);
		}
		freeaddrinfo(b);
	}
	if (connect(fd, res->ai_addr, res->ai_addrlen) < 0)
	{
		fprintf(stderr, "hbclient: could not connect to %s:%s: %s\n",
				host, port, strerror(errno));
		exit(1);
	}
	freeaddrinfo(res);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static void
handle(session *s, int i, const cmproto_msg *m, int interval)
{
	cmproto_msg reply;

	memset(&reply, 0, sizeof(reply));
	switch (m->type)
	{
		case CMPROTO_HB_CHALLENGE:
			{
				uint8_t		expected[CMPROTO_PROOF_LEN];

				s->version = m->u.hb_challenge.version;

				if (keylen == 0)
				{
					event(i, "challenge without key");
					reply.type = CMPROTO_ERROR;
					reply.u.error.code = CMPROTO_ERR_AUTH;
					strcpy(reply.u.error.message, "conmgr has no key");
					send_msg(s, i, &reply);
					finish(s, i, "no key");
					return;
				}
				cmproto_hb_proof(key, keylen, CMPROTO_AUTH_LABEL_WATCHDOG,
								 s->nonce_c, m->u.hb_challenge.nonce, expected);
				if (!cmsha256_equal(expected, m->u.hb_challenge.proof,
									CMPROTO_PROOF_LEN))
				{
					event(i, "challenge bad-proof");
					reply.type = CMPROTO_ERROR;
					reply.u.error.code = CMPROTO_ERR_AUTH;
					strcpy(reply.u.error.message, "authentication failed");
					send_msg(s, i, &reply);
					finish(s, i, "watchdog proof wrong");
					return;
				}
				reply.type = CMPROTO_HB_AUTH;
				cmproto_hb_proof(key, keylen, CMPROTO_AUTH_LABEL_CONMGR,
								 s->nonce_c, m->u.hb_challenge.nonce,
								 reply.u.hb_auth.proof);
				send_msg(s, i, &reply);
				event(i, "challenge ok");
				return;
			}
		case CMPROTO_HB_WELCOME:
			s->up = true;
			s->next_send = now() + interval;
			s->version = m->u.hb_welcome.version;
			event(i, "welcome version=%u attrs=%u flags=%u timeline=%u",
				  m->u.hb_welcome.version, m->u.hb_welcome.attrs,
				  m->u.hb_welcome.flags, m->u.hb_welcome.timeline);
			return;
		case CMPROTO_HB_BEAT:
			if (verbose)
				event(i, "beat seq=%u attrs=%u", m->u.hb_beat.seq,
					  m->u.hb_beat.attrs);
			return;
		case CMPROTO_HB_ATTRS:
			event(i, "attrs attrs=%u timeline=%u", m->u.hb_attrs.attrs,
				  m->u.hb_attrs.timeline);
			return;
		case CMPROTO_ERROR:
			event(i, "error code=%u message=%s", m->u.error.code,
				  m->u.error.message);
			return;
	}
	event(i, "unexpected %s", cmproto_type_name(m->type));
}

static void
receive(session *s, int i, int interval)
{
	ssize_t		n = recv(s->fd, s->inbuf + s->inlen,
						 sizeof(s->inbuf) - s->inlen, MSG_DONTWAIT);

	if (n == 0)
	{
		finish(s, i, "connection closed by peer");
		return;
	}
	if (n < 0)
	{
		if (errno != EAGAIN && errno != EINTR)
			finish(s, i, strerror(errno));
		return;
	}
	s->inlen += n;
	s->last_received = now();
	while (!s->done)
	{
		size_t		len;
		cmproto_msg m;
		int			rc = cmproto_frame(s->inbuf, s->inlen, &len);

		if (rc == CMPROTO_INCOMPLETE)
			return;
		if (rc == CMPROTO_OK)
			rc = cmproto_decode_version(s->inbuf, len, CMPROTO_PEER_WATCHDOG,
										s->version ? s->version : max_version, &m);
		if (rc < 0)
		{
			finish(s, i, cmproto_strerror(rc));
			return;
		}
		memmove(s->inbuf, s->inbuf + len, s->inlen - len);
		s->inlen -= len;
		handle(s, i, &m, interval);
	}
}

/* Connect session i and send its HB_HELLO. */
static void
open_session(session *s, int i, const char *host, const char *port,
			 const char *bindaddr, int interval, int timeout)
{
	cmproto_msg m;
	int			r = open("/dev/urandom", O_RDONLY);

	s->fd = connect_to(host, port, bindaddr);
	if (r < 0 || read(r, s->nonce_c, CMPROTO_NONCE_LEN) != CMPROTO_NONCE_LEN)
	{
		perror("hbclient: /dev/urandom");
		exit(1);
	}
	close(r);
	memset(&m, 0, sizeof(m));
	m.type = CMPROTO_HB_HELLO;
	m.u.hb_hello.min_version = CMPROTO_MIN_VERSION;
	m.u.hb_hello.max_version = (uint16_t) max_version;
	m.u.hb_hello.interval = interval;
	m.u.hb_hello.timeout = timeout;
	m.u.hb_hello.flags = keylen > 0 ? CMPROTO_HB_HAS_KEY : 0;
	memcpy(m.u.hb_hello.nonce, s->nonce_c, CMPROTO_NONCE_LEN);
	s->version = 0;
	send_msg(s, i, &m);
	s->last_received = now();
}

int
main(int argc, char **argv)
{
	const char *host = NULL,
			   *port = NULL,
			   *bindaddr = NULL;
	int			interval = 10,
				timeout = 20,
				nsess = 1,
				max_handshakes = 0,
				opened = 0,
				c;
	double		duration = 60,
				silent_after = -1,
				deadline;
	session    *ss;
	struct pollfd *pfds;
	bool		announced_silent = false;

	while ((c = getopt(argc, argv, "h:p:b:i:t:n:c:k:d:s:V:v")) != -1)
	{
		switch (c)
		{
			case 'h':
				host = optarg;
				break;
			case 'p':
				port = optarg;
				break;
			case 'b':
				bindaddr = optarg;
				break;
			case 'i':
				interval = atoi(optarg);
				break;
			case 't':
				timeout = atoi(optarg);
				break;
			case 'n':
				nsess = atoi(optarg);
				break;
			case 'c':
				max_handshakes = atoi(optarg);
				break;
			case 'k':
				load_key(optarg);
				break;
			case 'd':
				duration = atof(optarg);
				break;
			case 's':
				silent_after = atof(optarg);
				break;
			case 'V':
				max_version = atoi(optarg);
				if (max_version < CMPROTO_MIN_VERSION || max_version > CMPROTO_VERSION)
					usage();
				break;
			case 'v':
				verbose = true;
				break;
			default:
				usage();
		}
	}
	if (host == NULL || port == NULL || nsess < 1)
		usage();

	signal(SIGUSR1, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	t0 = now();
	deadline = t0 + duration;

	ss = calloc(nsess, sizeof(session));
	pfds = calloc(nsess, sizeof(struct pollfd));
	for (int i = 0; i < nsess; i++)
		ss[i].fd = -1;
	if (max_handshakes <= 0)
	{
		for (; opened < nsess; opened++)
			open_session(&ss[opened], opened, host, port, bindaddr,
						 interval, timeout);
		event(-1, "started sessions=%d", nsess);
	}

	while (!stop)
	{
		double		t = now();
		double		next = deadline;
		int			live = 0;
		int			handshaking = 0;

		if (t >= deadline)
			break;
		if (opened < nsess)
		{
			for (int i = 0; i < opened; i++)
				if (!ss[i].up && !ss[i].done)
					handshaking++;
			for (; opened < nsess && handshaking < max_handshakes; handshaking++)
			{
				open_session(&ss[opened], opened, host, port, bindaddr,
							 interval, timeout);
				opened++;
			}
			if (opened == nsess)
				event(-1, "started sessions=%d", nsess);
		}
		if (silent_after >= 0 && t - t0 >= silent_after)
			go_silent = 1;
		if (go_silent && !announced_silent)
		{
			announced_silent = true;
			for (int i = 0; i < nsess; i++)
				event(i, "silent last_sent=%.3f", ss[i].last_sent);
		}
		for (int i = 0; i < nsess; i++)
		{
			session    *s = &ss[i];

			pfds[i].fd = s->done ? -1 : s->fd;
			pfds[i].events = POLLIN;
			if (s->done)
				continue;
			live++;
			if (s->fd < 0)
				continue;		/* not opened yet */
			if (s->up && t - s->last_received >= timeout)
			{
				finish(s, i, "heartbeat timeout");
				continue;
			}
			if (s->up && !go_silent && t >= s->next_send)
			{
				cmproto_msg m;

				memset(&m, 0, sizeof(m));
				m.type = CMPROTO_HB_BEAT;
				m.u.hb_beat.seq = ++s->seq;
				send_msg(s, i, &m);
				s->next_send += interval;
			}
			if (s->up && !go_silent && s->next_send < next)
				next = s->next_send;
			if (s->up && s->last_received + timeout < next)
				next = s->last_received + timeout;
		}
		if (live == 0)
			break;
		if (poll(pfds, nsess, (int) ((next - now()) * 1000) + 1) < 0 &&
			errno != EINTR)
		{
			perror("hbclient: poll");
			exit(1);
		}
		for (int i = 0; i < nsess; i++)
		{
			if (pfds[i].fd >= 0 && (pfds[i].revents & (POLLIN | POLLERR | POLLHUP)))
				receive(&ss[i], i, interval);
		}
	}
	for (int i = 0; i < opened; i++)
		if (!ss[i].done)
			finish(&ss[i], i, "client exiting");
	event(-1, "exit");
	free(ss);
	free(pfds);
	return 0;
}
