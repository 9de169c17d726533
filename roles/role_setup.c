/*-------------------------------------------------------------------------
 *
 * role_setup.c
 *	  What the roles that serve clients (listener, forwarder) set up the
 *	  same way: their stop signals and their listen sockets.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conmgr.h"

/*
 * The stop signals, taken inside the role's epoll_pwait() only: the
 * supervisor forks a role with every signal blocked; from here on only
 * SIGTERM (fast stop) and SIGUSR1 (smart stop) are, and the wait, given an
 * empty mask, unblocks them, so none is missed between a check of the
 * flags and the wait.
 */
void
role_stop_signals(void (*on_term) (int), void (*on_smart) (int))
{
	struct sigaction sa;
	sigset_t	stops;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_term;	/* no SA_RESTART: the wait must wake */
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = on_smart;
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGINT, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&stops);
	sigaddset(&stops, SIGTERM);
	sigaddset(&stops, SIGUSR1);
	sigprocmask(SIG_SETMASK, &stops, NULL);
}

/* Listen on one name of listen_addresses; adds to fds[*n] (max in all). */
static void
listen_on(const char *name, int port, const char *what, int *fds, int *n, int max)
{
	struct addrinfo hints,
			   *res;
	char		serv[16];
	int			rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	snprintf(serv, sizeof(serv), "%d", port);
	rc = getaddrinfo(strcmp(name, "*") == 0 ? NULL : name, serv, &hints, &res);
	if (rc != 0)
	{
		cm_log(CMLOG_WARNING, "could not resolve listen address \"%s\": %s", name, gai_strerror(rc));
		return;
	}
	for (struct addrinfo *ai = res; ai && *n < max; ai = ai->ai_next)
	{
		int			fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		int			one = 1;

		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		/* Linux hands it on to every accepted socket: no call per session */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (ai->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 512) < 0)
		{
			cm_log(CMLOG_WARNING, "could not listen on \"%s\" %s %d (%s): %m",
				   name, what, port, ai->ai_family == AF_INET6 ? "IPv6" : "IPv4");
			close(fd);
			continue;
		}
		fds[(*n)++] = fd;
	}
	freeaddrinfo(res);
}

/*
 * Listen on port on every entry of the comma-separated addresses
 * (listen_addresses); the non-blocking sockets go into fds, at most max.
 * Returns how many; an address that cannot be used is logged ("what"
 * names the port in the message: "port", "forward port") and skipped.
 */
int
role_listen_any(const char *addresses, int port, const char *what, int *fds, int max)
{
	char		list[CMCONF_LISTEN_MAX + 1];
	char	   *save = NULL;
	int			n = 0;

	snprintf(list, sizeof(list), "%s", addresses);
	for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
	{
		char	   *end;

		while (*tok == ' ' || *tok == '\t')
			tok++;
		end = tok + strlen(tok);
		while (end > tok && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		listen_on(tok, port, what, fds, &n, max);
	}
	return n;
}

/* role_listen_any(), and a role that gets no socket stops conmgr. */
int
role_listen(const char *addresses, int port, const char *what, int *fds, int max)
{
	int			n = role_listen_any(addresses, port, what, fds, max);

	if (n == 0)
		cm_fatal(ROLE_EXIT_FATAL, "could not listen on any address of \"%s\" %s %d",
				 addresses, what, port);
	return n;
}
