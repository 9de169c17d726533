/*-------------------------------------------------------------------------
 *
 * short_send.c
 *	  A socket that takes one byte at a time, for tests, preloaded into
 *	  PostgreSQL: the watchdog's sends are cut short.
 *
 *	 LD_PRELOAD=build/regress/short_send.so CM_SHORT_SEND_PORT=PORT postgres ...
 *
 * send() on a socket whose local port is PORT takes one byte on one call
 * and none (EAGAIN) on the next, as a socket whose peer reads slowly does;
 * the watchdog must then keep what was not sent, wait until the socket
 * is writable and send the rest, in order.  The first cut is written to
 * standard error ("short_send: cutting sends on port PORT"), so that a
 * test can tell the library is in place.  Every other send() is send()'s
 * own.
 *
 *-------------------------------------------------------------------------
 */
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/types.h>

typedef ssize_t (*send_fn) (int, const void *, size_t, int);

ssize_t		send(int fd, const void *buf, size_t len, int flags);

/* The local port of fd, or -1. */
static int
local_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t	sslen = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *) &ss, &sslen) < 0)
		return -1;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *) &ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *) &ss)->sin6_port);
	return -1;
}

ssize_t
send(int fd, const void *buf, size_t len, int flags)
{
	static int	refuse;
	static int	told;
	send_fn		real = (send_fn) dlsym(RTLD_NEXT, "send");
	const char *port = getenv("CM_SHORT_SEND_PORT");

	if (real == NULL)
	{
		errno = ENOSYS;
		return -1;
	}
	if (port == NULL || len == 0 || local_port(fd) != atoi(port))
		return real(fd, buf, len, flags);
	if (!told)
	{
		told = 1;
		fprintf(stderr, "short_send: cutting sends on port %s\n", port);
	}
	refuse = !refuse;
	if (!refuse)
	{
		errno = EAGAIN;
		return -1;
	}
	return real(fd, buf, 1, flags);
}
