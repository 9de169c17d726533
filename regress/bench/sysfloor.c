/*-------------------------------------------------------------------------
 *
 * sysfloor.c
 *	  What the system calls of one heartbeat cost on this machine's
 *	  loopback, for figure 7 of the benchmarks.
 *
 *	 sysfloor [-c CONNS] [-n ROUNDS]
 *
 * For each heartbeat a session exchanges, the watchdog makes one send()
 * of a beat to its peer and one recv() of the peer's beat.  This tool
 * plays both sides over CONNS TCP connections on 127.0.0.1 (TCP_NODELAY,
 * as both sides set it): the parent, in the watchdog's place, sends an
 * HB_BEAT-sized frame on every connection in turn, then receives one
 * from every connection in turn; a child process, in the peers' place,
 * sends each frame back as it arrives.  ROUNDS rounds (default 20, after
 * one not counted) over all the connections; what is printed is the
 * parent's CPU time (getrusage: user + system) per frame sent and
 * received, and an epoll_wait() that finds one socket ready.  On
 * loopback a send() also carries the receiving side's TCP work, as the
 * watchdog's send() does for its peer and the peer's send() does for the
 * watchdog, so this is what a session costs the watchdog a beat before
 * any work of its own, with as many sockets as it has (the kernel's data
 * for 10,000 connections does not stay in the caches as one's does):
 *
 *	 pair_us=5.678 conns=10000 beats=200000 epoll_us=0.321
 *
 *-------------------------------------------------------------------------
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "benchutil.h"

#define BEAT_LEN	12			/* an HB_BEAT: 4-byte header, 8-byte body */

static void
die(const char *what)
{
	perror(what);
	exit(1);
}

/* Write all of buf or die. */
static void
send_all(int fd, const char *buf, size_t len)
{
	if (send(fd, buf, len, MSG_NOSIGNAL) != (ssize_t) len)
		die("sysfloor: send");
}

/* Read exactly len bytes or die. */
static void
recv_all(int fd, char *buf, size_t len)
{
	if (recv(fd, buf, len, MSG_WAITALL) != (ssize_t) len)
		die("sysfloor: recv");
}

/* The peers: send every frame back until the parent closes. */
static void
echo(int *fds, int conns)
{
	int			ep = epoll_create1(0);
	char		buf[BEAT_LEN];

	if (ep < 0)
		die("sysfloor: epoll");
	for (int i = 0; i < conns; i++)
	{
		struct epoll_event ev = {.events = EPOLLIN,.data.u32 = i};

		if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev) < 0)
			die("sysfloor: epoll_ctl");
	}
	for (;;)
	{
		struct epoll_event evs[256];
		int			n = epoll_wait(ep, evs, 256, -1);

		for (int e = 0; e < n; e++)
		{
			int			fd = fds[evs[e].data.u32];

			if (recv(fd, buf, sizeof(buf), MSG_WAITALL) != sizeof(buf))
				_exit(0);
			send_all(fd, buf, sizeof(buf));
		}
	}
}

int
main(int argc, char **argv)
{
	int			conns = 1;
	int			rounds = 20;
	int			c;
	int			l;
	int			one = 1;
	int		   *fds;
	char		buf[BEAT_LEN];
	struct sockaddr_in sin;
	socklen_t	len = sizeof(sin);
	pid_t		child;
	double		t0,
				pair_us,
				epoll_us;
	long		beats;
	int			ep;
	struct epoll_event ev = {.events = EPOLLIN};

	while ((c = getopt(argc, argv, "c:n:")) != -1)
	{
		switch (c)
		{
			case 'c':
				conns = atoi(optarg);
				break;
			case 'n':
				rounds = atoi(optarg);
				break;
			default:
				fprintf(stderr, "usage: sysfloor [-c CONNS] [-n ROUNDS]\n");
				return 2;
		}
	}
	if (conns < 1 || rounds < 1)
	{
		fprintf(stderr, "sysfloor: CONNS and ROUNDS must be positive\n");
		return 2;
	}
	raise_nofile();
	fds = calloc(conns, sizeof(int));
	memset(buf, 0x5a, sizeof(buf));

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	l = socket(AF_INET, SOCK_STREAM, 0);
	if (l < 0 || bind(l, (struct sockaddr *) &sin, sizeof(sin)) < 0 ||
		listen(l, 4096) < 0 || getsockname(l, (struct sockaddr *) &sin, &len) < 0)
		die("sysfloor: listen");
	child = fork();
	if (child < 0)
		die("sysfloor: fork");
	if (child == 0)
	{
		close(l);
		for (int i = 0; i < conns; i++)
		{
			fds[i] = socket(AF_INET, SOCK_STREAM, 0);
			if (fds[i] < 0 || connect(fds[i], (struct sockaddr *) &sin, sizeof(sin)) < 0)
				die("sysfloor: connect");
			setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		}
		echo(fds, conns);
	}
	for (int i = 0; i < conns; i++)
	{
		fds[i] = accept(l, NULL, NULL);
		if (fds[i] < 0)
			die("sysfloor: accept");
		setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	close(l);

	/* one round to warm up, then the counted ones */
	t0 = 0;
	for (int r = 0; r <= rounds; r++)
	{
		if (r == 1)
			t0 = self_cpu_s();
		for (int i = 0; i < conns; i++)
			send_all(fds[i], buf, sizeof(buf));
		for (int i = 0; i < conns; i++)
			recv_all(fds[i], buf, sizeof(buf));
	}
	beats = (long) conns * rounds;
	pair_us = (self_cpu_s() - t0) * 1e6 / beats;

	/* one frame waiting: every epoll_wait finds it */
	ep = epoll_create1(0);
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fds[0], &ev) < 0)
		die("sysfloor: epoll");
	send_all(fds[0], buf, sizeof(buf));
	while (epoll_wait(ep, &ev, 1, -1) != 1)
		;
	t0 = self_cpu_s();
	for (int i = 0; i < 200000; i++)
	{
		if (epoll_wait(ep, &ev, 1, 0) != 1)
			die("sysfloor: epoll_wait");
	}
	epoll_us = (self_cpu_s() - t0) * 1e6 / 200000;

	for (int i = 0; i < conns; i++)
		close(fds[i]);
	waitpid(child, NULL, 0);
	printf("pair_us=%.3f conns=%d beats=%ld epoll_us=%.3f\n", pair_us, conns, beats, epoll_us);
	return 0;
}
