/*-------------------------------------------------------------------------
 *
 * resolve.c
 *	  The instances' addresses, looked up off the forwarder's loop.
 *
 * The forwarder connects to an instance at the addresses kept here, so a
 * session never waits on a name lookup, nor do the other sessions behind
 * it in the loop.  An instance given by backend_hostaddr is a numeric
 * address, converted once at start-up without any lookup.  One given by
 * backend_host is looked up by a thread of its own (getaddrinfo() blocks,
 * for as long as a DNS server takes): at start-up, whenever the heartbeat
 * roles publish a change of the instances (a failover may come with a
 * moved name, and the heartbeat role looks the name up again at each
 * connect), when the addresses kept are older than FW_ADDRS_MAX_AGE_MS at
 * a connect, and when a connect to them fails.  Until an answer comes the
 * previous addresses serve; an instance never looked up yet is skipped as
 * a candidate that could not be reached (logged) and the next one tried.
 * The thread takes one request at a time, blocks every signal, touches
 * nothing but its request and answer slots (under the mutex), and wakes
 * the loop through an eventfd (EV_RESOLVED).  A change of an instance's
 * addresses is logged.
 *
 *-------------------------------------------------------------------------
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "cmclock.h"
#include "forwarder.h"

#define FW_ADDRS_MAX_AGE_MS	60000

typedef struct fw_lookup
{
	int			n;				/* addresses found, 0 = none */
	int			gai_err;		/* getaddrinfo()'s error, 0 = none */
	fw_addr		addr[FW_MAX_ADDRS];
} fw_lookup;

int			fw_resolve_fd = -1;

/* The loop's: what connects use, and what it asked the thread for. */
static fw_lookup kept[CMCONF_MAX_INSTANCES];
static int64_t kept_at[CMCONF_MAX_INSTANCES];	/* monotonic ms, 0 = never */
static bool asked[CMCONF_MAX_INSTANCES];

/* Shared with the thread, under mu. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static bool wanted[CMCONF_MAX_INSTANCES];
static bool answered[CMCONF_MAX_INSTANCES];
static fw_lookup answer[CMCONF_MAX_INSTANCES];

/* Instance i's host name and port looked up, into *l. */
static void
fw_lookup_host(int i, bool numeric, fw_lookup *l)
{
	const struct cmconf_instance *in = &fw_ctx->conf->inst[i];
	struct addrinfo hints,
			   *res;
	char		port[16];

	memset(l, 0, sizeof(*l));
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = numeric ? AI_NUMERICHOST : 0;
	snprintf(port, sizeof(port), "%d", in->backend_port);
	l->gai_err = getaddrinfo(cmconf_connect_host(in), port, &hints, &res);
	if (l->gai_err != 0)
		return;
	for (struct addrinfo *ai = res; ai != NULL && l->n < FW_MAX_ADDRS; ai = ai->ai_next)
	{
		if (ai->ai_addrlen > sizeof(l->addr[0].sa))
			continue;
		memcpy(&l->addr[l->n].sa, ai->ai_addr, ai->ai_addrlen);
		l->addr[l->n].len = ai->ai_addrlen;
		l->addr[l->n].family = ai->ai_family;
		l->n++;
	}
	freeaddrinfo(res);
}

/* The thread: one lookup after another, as the loop asks. */
static void *
fw_resolver(void *arg)
{
	(void) arg;
	pthread_mutex_lock(&mu);
	for (;;)
	{
		int			i = 0;
		fw_lookup	l;
		uint64_t	one = 1;

		while (i < CMCONF_MAX_INSTANCES && !wanted[i])
			i++;
		if (i == CMCONF_MAX_INSTANCES)
		{
			pthread_cond_wait(&cv, &mu);
			continue;
		}
		wanted[i] = false;
		pthread_mutex_unlock(&mu);
		fw_lookup_host(i, false, &l);
		pthread_mutex_lock(&mu);
		answer[i] = l;
		answered[i] = true;
		(void) !write(fw_resolve_fd, &one, sizeof(one));
	}
	return NULL;
}

/* Ask the thread to look instance i's name up again (at most one at a time). */
void
fw_resolve_again(int i)
{
	if (fw_ctx->conf->inst[i].hostaddr[0] != '\0' || asked[i])
		return;
	asked[i] = true;
	pthread_mutex_lock(&mu);
	wanted[i] = true;
	pthread_cond_signal(&cv);
	pthread_mutex_unlock(&mu);
}

/* Every configured instance named by backend_host looked up again. */
void
fw_resolve_all(void)
{
	for (int i = 0; i < CMCONF_MAX_INSTANCES; i++)
		if (fw_ctx->conf->inst[i].configured)
			fw_resolve_again(i);
}

/* A numeric address of a's for the log. */
static const char *
fw_addr_text(const fw_addr *a, char *buf, size_t len)
{
	const void *p = a->family == AF_INET6 ?
		(const void *) &((const struct sockaddr_in6 *) &a->sa)->sin6_addr :
		(const void *) &((const struct sockaddr_in *) &a->sa)->sin_addr;

	if (inet_ntop(a->family, p, buf, len) == NULL)
		snprintf(buf, len, "?");
	return buf;
}

/* Take a lookup's answer for instance i; log what changed. */
static void
fw_keep(int i, const fw_lookup *l)
{
	const char *host = fw_ctx->conf->inst[i].host;
	char		list[256] = "";

	kept_at[i] = cmclock_ms();
	if (l->n == 0)
	{
		/* the previous addresses serve until a lookup finds some */
		cm_log(CMLOG_LOG, "forwarder: could not look up instance %d's host \"%s\": %s",
			   i, host, l->gai_err ? gai_strerror(l->gai_err) : "no address");
		return;
	}
	if (l->n == kept[i].n && memcmp(l->addr, kept[i].addr, sizeof(fw_addr) * l->n) == 0)
		return;
	for (int k = 0; k < l->n; k++)
	{
		char		one[INET6_ADDRSTRLEN];
		size_t		used = strlen(list);

		snprintf(list + used, sizeof(list) - used, "%s%s", k ? ", " : "",
				 fw_addr_text(&l->addr[k], one, sizeof(one)));
	}
	cm_log(CMLOG_LOG, "forwarder: instance %d's host \"%s\" is at %s", i, host, list);
	kept[i] = *l;
}

/* The thread's answers, taken (EV_RESOLVED). */
void
fw_resolved(void)
{
	uint64_t	v;

	(void) !read(fw_resolve_fd, &v, sizeof(v));
	for (int i = 0; i < CMCONF_MAX_INSTANCES; i++)
	{
		fw_lookup	l;
		bool		got;

		pthread_mutex_lock(&mu);
		got = answered[i];
		answered[i] = false;
		if (got)
			l = answer[i];
		pthread_mutex_unlock(&mu);
		if (!got)
			continue;
		asked[i] = false;
		fw_keep(i, &l);
	}
}

/*
 * Instance i's addresses to connect to (*n of them; none when its name was
 * never found), asking for a fresh lookup when they are old.
 */
const fw_addr *
fw_addrs(int i, int *n)
{
	if (kept_at[i] != 0 && cmclock_ms() - kept_at[i] > FW_ADDRS_MAX_AGE_MS)
		fw_resolve_again(i);
	*n = kept[i].n;
	return kept[i].addr;
}

/*
 * The numeric addresses converted, the thread started with every signal
 * blocked (they are the loop's), and the names' first lookups asked for.
 */
void
fw_resolve_start(void)
{
	pthread_t	thread;
	sigset_t	all,
				old;
	int			rc;

	for (int i = 0; i < CMCONF_MAX_INSTANCES; i++)
		if (fw_ctx->conf->inst[i].configured && fw_ctx->conf->inst[i].hostaddr[0] != '\0')
		{
			fw_lookup_host(i, true, &kept[i]);
			kept_at[i] = cmclock_ms();
		}
	fw_resolve_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (fw_resolve_fd < 0 ||
		!fw_ep_set(EPOLL_CTL_ADD, fw_resolve_fd, EPOLLIN, EV_MAKE(EV_RESOLVED, 0, 0)))
		cm_fatal(ROLE_EXIT_RESTART, "forwarder: could not make its lookups' eventfd: %m");
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&thread, NULL, fw_resolver, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
	{
		errno = rc;
		cm_fatal(ROLE_EXIT_RESTART, "forwarder: could not start its lookup thread: %m");
	}
	pthread_detach(thread);
	fw_resolve_all();
}
