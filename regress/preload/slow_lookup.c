/*-------------------------------------------------------------------------
 *
 * slow_lookup.c
 *	  A slow name server for tests, preloaded into conmgr: one host name
 *	  whose lookup takes seconds.
 *
 *	 LD_PRELOAD=build/regress/slow_lookup.so CM_SLOW_HOST=NAME
 *	 CM_SLOW_SECS=N conmgr ...
 *
 * getaddrinfo() of NAME sleeps N seconds (default 3), as a lookup does
 * when a DNS server is slow, then answers what a lookup of 127.0.0.1
 * answers; every other call is getaddrinfo()'s own.  A test can then tell
 * whether a lookup holds up what should not wait for it, without a DNS
 * server and without traffic off loopback.
 *
 *-------------------------------------------------------------------------
 */
#include <dlfcn.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int (*getaddrinfo_fn) (const char *, const char *, const struct addrinfo *,
							   struct addrinfo **);

int			getaddrinfo(const char *node, const char *service,
						const struct addrinfo *hints, struct addrinfo **res);

int
getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
			struct addrinfo **res)
{
	getaddrinfo_fn real = (getaddrinfo_fn) dlsym(RTLD_NEXT, "getaddrinfo");
	const char *slow = getenv("CM_SLOW_HOST");

	if (real == NULL)
		return EAI_SYSTEM;
	if (node != NULL && slow != NULL && strcmp(node, slow) == 0)
	{
		const char *secs = getenv("CM_SLOW_SECS");
		struct timespec ts = {.tv_sec = secs ? atoi(secs) : 3};

		while (nanosleep(&ts, &ts) != 0)
			;
		node = "127.0.0.1";
	}
	return real(node, service, hints, res);
}
