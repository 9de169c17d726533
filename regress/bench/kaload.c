/*-------------------------------------------------------------------------
 *
 * kaload.c
 *	  The comparator of the heartbeat's packet rate: idle TCP connections
 *	  kept alive by the kernel's per-socket keepalive, for the benchmarks.
 *
 *	 kaload -n N -a HOSTS -i IDLE -v INTERVAL -c COUNT
 *	        [-e both|client|server] [-s STAGGER] [-d DURATION] [-l ADDR]
 *
 * Listens on ADDR (default 127.0.0.1), an ephemeral port, and opens N
 * connections to itself from HOSTS source addresses 127.0.1.1,
 * 127.0.1.2, ... (round robin: N / HOSTS connections per "client host"),
 * spread evenly over STAGGER seconds (default IDLE) so that the probes
 * are spread too.  On the ends named by -e (default both: the client, as
 * libpq's keepalives_idle/interval/count would, and the server, as
 * tcp_keepalives_idle/interval/count would) it sets SO_KEEPALIVE,
 * TCP_KEEPIDLE=IDLE, TCP_KEEPINTVL=INTERVAL, TCP_KEEPCNT=COUNT: a dead
 * peer is found within IDLE + INTERVAL x COUNT seconds.  Then it stays
 * idle until SIGTERM or DURATION (default 3600) seconds.
 *
 * Lines: "listening port=P", then "ready n=N at_us=T" once all are open.
 *
 *-------------------------------------------------------------------------
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "benchutil.h"

static int	idle = 10,
			intvl = 1,
			cnt = 1;

static void
keepalive(int fd)
{
	int			one = 1;

	if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) < 0 ||
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle)) < 0 ||
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl)) < 0 ||
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt)) < 0)
	{
		perror("kaload: setsockopt");
		exit(1);
	}
}

static void
die(const char *what)
{
	perror(what);
	exit(1);
}

int
main(int argc, char **argv)
{
	int			n = 1000,
				hosts = 20,
				c,
				lfd,
				one = 1;
	double		stagger = -1,
				duration = 3600,
				t0;
	const char *ends = "both",
			   *laddr = "127.0.0.1";
	struct sockaddr_in sa;
	socklen_t	salen = sizeof(sa);
	sigset_t	ss;

	while ((c = getopt(argc, argv, "n:a:i:v:c:e:s:d:l:")) != -1)
	{
		switch (c)
		{
			case 'n':
				n = atoi(optarg);
				break;
			case 'a':
				hosts = atoi(optarg);
				break;
			case 'i':
				idle = atoi(optarg);
				break;
			case 'v':
				intvl = atoi(optarg);
				break;
			case 'c':
				cnt = atoi(optarg);
				break;
			case 'e':
				ends = optarg;
				break;
			case 's':
				stagger = atof(optarg);
				break;
			case 'd':
				duration = atof(optarg);
				break;
			case 'l':
				laddr = optarg;
				break;
			default:
				fprintf(stderr, "usage: kaload -n N -a HOSTS -i IDLE -v INTERVAL -c COUNT "
						"[-e both|client|server] [-s STAGGER] [-d DURATION] [-l ADDR]\n");
				return 2;
		}
	}
	if (stagger < 0)
		stagger = idle;
	setvbuf(stdout, NULL, _IOLBF, 0);
	raise_nofile();

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	inet_pton(AF_INET, laddr, &sa.sin_addr);
	if ((lfd = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
		setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
		bind(lfd, (struct sockaddr *) &sa, sizeof(sa)) < 0 ||
		listen(lfd, 4096) < 0 ||
		getsockname(lfd, (struct sockaddr *) &sa, &salen) < 0)
		die("kaload: listen");
	printf("listening port=%d\n", ntohs(sa.sin_port));

	t0 = mono_s();
	for (int i = 0; i < n; i++)
	{
		struct sockaddr_in src;
		int			cfd,
					sfd;
		double		when = t0 + stagger * i / n;

		while (mono_s() < when)
			usleep(1000);
		memset(&src, 0, sizeof(src));
		src.sin_family = AF_INET;
		src.sin_addr.s_addr = htonl((127u << 24) | (1u << 8) | (1 + i % hosts));
		if ((cfd = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
			bind(cfd, (struct sockaddr *) &src, sizeof(src)) < 0 ||
			connect(cfd, (struct sockaddr *) &sa, sizeof(sa)) < 0 ||
			(sfd = accept(lfd, NULL, NULL)) < 0)
			die("kaload: connection");
		if (strcmp(ends, "server") != 0)
			keepalive(cfd);
		if (strcmp(ends, "client") != 0)
			keepalive(sfd);
	}
	printf("ready n=%d at_us=%lld\n", n, real_us());

	/* Idle: the kernel does the rest. */
	sigemptyset(&ss);
	sigaddset(&ss, SIGTERM);
	sigaddset(&ss, SIGINT);
	sigprocmask(SIG_BLOCK, &ss, NULL);
	{
		struct timespec ts = {(time_t) duration, 0};

		(void) sigtimedwait(&ss, NULL, &ts);
	}
	return 0;
}
