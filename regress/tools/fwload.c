/*-------------------------------------------------------------------------
 *
 * fwload.c
 *	  Many concurrent sessions through a forward port, for tests: a fake
 *	  backend and the clients.
 *
 *	 fwload serve
 *	 fwload clients -p PORT -n N [-w WAVE] [-t SECONDS]
 *
 * "serve" is an instance as far as the forwarder can tell: it listens on
 * 127.0.0.1 (a free port, printed as "port N"), accepts every connection,
 * reads its startup packet and answers as a server that trusts the
 * client: AuthenticationOk, BackendKeyData (process ID: the connection's
 * descriptor) and ReadyForQuery; from then on it sends back every byte
 * it reads, so that a session's bytes cross the forwarder both ways, as
 * after a real server's start-up.  It holds no backend, which lets a test
 * open thousands of sessions without thousands of server processes.  On
 * its standard input it takes the line "count" and answers "open N", the
 * connections it has open; end of file ends it.
 *
 * "clients" opens N connections to 127.0.0.1:PORT, no more than WAVE
 * (default 200) at once that are not yet relayed, and on each sends a
 * startup packet (user "fwload", database "sK" for connection K) followed
 * by a line "ping K", and reads back the server's start-up messages and
 * that line: a session counts as relayed once they have all come,
 * unchanged and on the same connection.  Then it prints "relayed N in S
 * s" and holds every connection open until a line "close" on its
 * standard input (or its end of file), closes them all and prints
 * "closed".  Anything else (a connect that fails, a session closed early,
 * a byte that differs, N not relayed within SECONDS, default 60) is
 * printed as "error: ..." and exits 1.  The open-files limit is raised to
 * its hard limit first.
 *
 * Only loopback: both ends are 127.0.0.1.
 *
 *-------------------------------------------------------------------------
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cmclock.h"

#define MSG_MAX		128
#define EV_STDIN	UINT64_C(0xffffffff)
#define EV_LISTENER	UINT64_C(0xfffffffe)

/*
 * What "serve" answers a startup packet: AuthenticationOk, BackendKeyData
 * (its process ID and key, bytes KEY_AT to KEY_AT + 7, vary),
 * ReadyForQuery.
 */
static const uint8_t preamble[] = {
	'R', 0, 0, 0, 8, 0, 0, 0, 0,
	'K', 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0,
	'Z', 0, 0, 0, 5, 'I'
};
#define KEY_AT		14

typedef struct client
{
	int			fd;
	bool		relayed;
	size_t		len;			/* of the message */
	size_t		linelen;		/* of its line, the end of the message */
	size_t		got;			/* read back so far */
	char		msg[MSG_MAX];
} client;

/* A connection of "serve": its startup packet, then what it echoes. */
typedef struct served
{
	uint8_t		lenbuf[4];
	int			lenlen;
	uint32_t	left;			/* of the startup packet */
	bool		started;
} served;

static void
raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max)
	{
		rl.rlim_cur = rl.rlim_max;
		(void) setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void
ep_add(int ep, int fd, uint32_t events, uint64_t data)
{
	struct epoll_event ev = {.events = events,.data.u64 = data};

	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
	{
		printf("error: epoll_ctl: %s\n", strerror(errno));
		exit(1);
	}
}

/* Connection k's startup packet and its line; the line's length. */
static size_t
build_msg(int k, char *buf, size_t *linelen)
{
	char		params[64];
	int			plen = snprintf(params, sizeof(params), "user%cfwload%cdatabase%cs%d%c",
								0, 0, 0, k, 0) + 1;
	uint32_t	len = htonl(8 + plen);
	uint32_t	proto = htonl(196608);
	int			line;

	memcpy(buf, &len, 4);
	memcpy(buf + 4, &proto, 4);
	memcpy(buf + 8, params, plen);
	line = snprintf(buf + 8 + plen, MSG_MAX - 8 - plen, "ping %d\n", k);
	*linelen = line;
	return 8 + plen + line;
}

static int
open_one(int ep, int port, int k)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,.sin_port = htons(port)};
	int			fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 && errno != EINPROGRESS))
	{
		printf("error: connection %d: could not connect: %s\n", k, strerror(errno));
		exit(1);
	}
	ep_add(ep, fd, EPOLLOUT, (uint64_t) k);
	return fd;
}

/* A ready connection of the clients; true once it is relayed. */
static bool
client_event(int ep, client *c, int k, uint32_t events)
{
	char		buf[MSG_MAX];
	ssize_t		n;

	if (c->len == 0)
	{
		int			err = 0;
		socklen_t	elen = sizeof(err);
		struct epoll_event ev = {.events = EPOLLIN,.data.u64 = (uint64_t) k};

		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0 || err != 0)
		{
			printf("error: connection %d: could not connect: %s\n", k, strerror(err));
			exit(1);
		}
		c->len = build_msg(k, c->msg, &c->linelen);
		if (send(c->fd, c->msg, c->len, MSG_NOSIGNAL) != (ssize_t) c->len ||
			epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
		{
			printf("error: connection %d: could not send: %s\n", k, strerror(errno));
			exit(1);
		}
		return false;
	}
	n = recv(c->fd, buf, sizeof(preamble) + c->linelen - c->got, 0);
	if (n < 0 && errno == EAGAIN)
		return false;
	if (n <= 0 || (events & EPOLLERR))
	{
		printf("error: connection %d closed after %zu of %zu bytes back\n",
			   k, c->got, sizeof(preamble) + c->linelen);
		exit(1);
	}
	for (ssize_t i = 0; i < n; i++, c->got++)
	{
		size_t		at = c->got;
		bool		key = at >= KEY_AT && at < KEY_AT + 8;
		char		want = at < sizeof(preamble) ? (char) preamble[at] :
			c->msg[c->len - c->linelen + at - sizeof(preamble)];

		if (!key && buf[i] != want)
		{
			printf("error: connection %d: byte %zu came back changed\n", k, at);
			exit(1);
		}
	}
	if (c->got < sizeof(preamble) + c->linelen)
		return false;
	c->relayed = true;
	(void) epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	return true;
}

static int
run_clients(int port, int n, int wave, double secs)
{
	client	   *cl = calloc(n, sizeof(client));
	int			ep = epoll_create1(EPOLL_CLOEXEC);
	int			opened = 0,
				relayed = 0;
	double		t0 = cmclock_us() / 1e6;
	char		line[64];

	if (cl == NULL || ep < 0)
	{
		printf("error: out of memory\n");
		free(cl);
		return 1;
	}
	while (relayed < n)
	{
		struct epoll_event evs[256];
		int			ready;

		while (opened < n && opened - relayed < wave)
		{
			cl[opened].fd = open_one(ep, port, opened);
			opened++;
		}
		if (cmclock_us() / 1e6 - t0 > secs)
		{
			printf("error: %d of %d relayed within %.0f s\n", relayed, n, secs);
			free(cl);
			return 1;
		}
		ready = epoll_wait(ep, evs, 256, 1000);
		for (int i = 0; i < ready; i++)
		{
			int			k = (int) evs[i].data.u64;

			if (client_event(ep, &cl[k], k, evs[i].events))
				relayed++;
		}
	}
	printf("relayed %d in %.3f s\n", n, cmclock_us() / 1e6 - t0);
	fflush(stdout);
	while (fgets(line, sizeof(line), stdin) != NULL && strcmp(line, "close\n") != 0)
		;
	for (int k = 0; k < n; k++)
		close(cl[k].fd);
	free(cl);
	printf("closed\n");
	return 0;
}

/*
 * Bytes p[0..n) of a connection of "serve": its startup packet (answered
 * with the preamble once read whole); what follows it goes back.  False
 * when the connection is to be closed.
 */
static bool
serve_bytes(int fd, served *c, const uint8_t *p, size_t n)
{
	size_t		i = 0;

	while (!c->started && i < n)
	{
		if (c->lenlen < 4)
		{
			c->lenbuf[c->lenlen++] = p[i++];
			if (c->lenlen == 4)
			{
				uint32_t	len;

				memcpy(&len, c->lenbuf, 4);
				if (ntohl(len) < 8)
					return false;
				c->left = ntohl(len) - 4;
			}
			continue;
		}
		if (c->left > 0)
		{
			size_t		take = n - i < c->left ? n - i : c->left;

			c->left -= take;
			i += take;
		}
		if (c->left == 0)
		{
			uint8_t		answer[sizeof(preamble)];
			uint32_t	pid = htonl((uint32_t) fd),
						key = htonl((uint32_t) fd ^ 0x5a5a5a5a);

			memcpy(answer, preamble, sizeof(answer));
			memcpy(answer + KEY_AT, &pid, 4);
			memcpy(answer + KEY_AT + 4, &key, 4);
			if (send(fd, answer, sizeof(answer), MSG_NOSIGNAL) != sizeof(answer))
				return false;
			c->started = true;
		}
	}
	return i == n || send(fd, p + i, n - i, MSG_NOSIGNAL) == (ssize_t) (n - i);
}

/* One readable connection of the fake backend. */
static void
serve_read(int fd, served *c, int *open)
{
	uint8_t		buf[4096];
	ssize_t		n = recv(fd, buf, sizeof(buf), 0);

	if (n < 0 && errno == EAGAIN)
		return;
	if (n <= 0 || !serve_bytes(fd, c, buf, (size_t) n))
	{
		close(fd);
		(*open)--;
	}
}

static int
run_serve(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t	salen = sizeof(sa);
	int			lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int			ep = epoll_create1(EPOLL_CLOEXEC);
	int			open = 0;
	struct rlimit rl;
	served	   *conns;

	/* a connection's state at the index of its descriptor */
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 1048576)
		rl.rlim_cur = 1048576;
	conns = calloc(rl.rlim_cur, sizeof(served));
	if (conns == NULL)
	{
		printf("error: out of memory\n");
		return 1;
	}
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (lfd < 0 || ep < 0 || bind(lfd, (struct sockaddr *) &sa, sizeof(sa)) < 0 ||
		listen(lfd, 4096) < 0 || getsockname(lfd, (struct sockaddr *) &sa, &salen) < 0)
	{
		printf("error: could not listen: %s\n", strerror(errno));
		free(conns);
		return 1;
	}
	ep_add(ep, lfd, EPOLLIN, EV_LISTENER);
	ep_add(ep, STDIN_FILENO, EPOLLIN, EV_STDIN);
	printf("port %d\n", ntohs(sa.sin_port));
	fflush(stdout);
	for (;;)
	{
		struct epoll_event evs[256];
		int			ready = epoll_wait(ep, evs, 256, -1);

		for (int i = 0; i < ready; i++)
		{
			uint64_t	d = evs[i].data.u64;

			if (d == EV_LISTENER)
			{
				int			fd;

				while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0)
				{
					memset(&conns[fd], 0, sizeof(served));
					ep_add(ep, fd, EPOLLIN, (uint64_t) fd);
					open++;
				}
			}
			else if (d == EV_STDIN)
			{
				char		line[64];
				ssize_t		n = read(STDIN_FILENO, line, sizeof(line));

				if (n <= 0)
				{
					free(conns);
					return 0;
				}
				printf("open %d\n", open);
				fflush(stdout);
			}
			else
				serve_read((int) d, &conns[d], &open);
		}
	}
}

int
main(int argc, char **argv)
{
	int			port = 0,
				n = 0,
				wave = 200;
	double		secs = 60;
	int			opt;

	raise_nofile();
	if (argc >= 2 && strcmp(argv[1], "serve") == 0)
		return run_serve();
	if (argc < 2 || strcmp(argv[1], "clients") != 0)
	{
		fprintf(stderr, "usage: fwload serve | fwload clients -p PORT -n N [-w WAVE] [-t SECONDS]\n");
		return 2;
	}
	optind = 2;
	while ((opt = getopt(argc, argv, "p:n:w:t:")) != -1)
	{
		if (opt == 'p')
			port = atoi(optarg);
		else if (opt == 'n')
			n = atoi(optarg);
		else if (opt == 'w')
			wave = atoi(optarg);
		else if (opt == 't')
			secs = atof(optarg);
		else
			return 2;
	}
	if (port <= 0 || port > 65535 || n <= 0 || wave <= 0 || secs <= 0)
	{
		fprintf(stderr, "fwload: -p PORT and -n N are required, and positive\n");
		return 2;
	}
	return run_clients(port, n, wave, secs);
}
