/*-------------------------------------------------------------------------
 *
 * real.c
 *	  Finding the real libpq underneath the wrappers.
 *
 * The library is loaded in front of the real libpq in three ways (linked
 * before -lpq, LD_PRELOAD, or as the drop-in libpq.so.5 whose dependency
 * libpq-real.so.5 is the real one).  In each case the next definition of a
 * libpq symbol after ours, dlsym(RTLD_NEXT), is the real function, and we
 * never need to know where libpq lives.
 *
 *-------------------------------------------------------------------------
 */
#include <dlfcn.h>
#include <stdio.h>
#include <unistd.h>

#include "real.h"

/*
 * Non-zero while this thread runs inside a real libpq connect function
 * that calls back into exported entry points (PQconnectdbParams calls
 * PQconnectStartParams through the PLT): our connect wrappers then step
 * aside.
 */
__thread int cm_in_real;

/*
 * A libpq function the loaded libpq lacks: the application called a function
 * of a newer libpq (pq_newer.h) than the one it runs with, or nothing stands
 * behind libpq-cm.  Without libpq-cm the dynamic linker would have refused
 * that call ("symbol lookup error", exit status 127) and so do we, in the
 * same words plus the version loaded, rather than crash on a null pointer:
 * no return value could stand for a function that does not exist.
 */
static void missing_function(const char *name) __attribute__((noreturn));

static void
missing_function(const char *name)
{
	int			(*libversion) (void) = (int (*) (void)) dlsym(RTLD_NEXT, "PQlibVersion");
	char		msg[256];
	int			n;

	if (libversion != NULL)
	{
		int			v = libversion();

		n = snprintf(msg, sizeof(msg),
					 "libpq-cm: symbol lookup error: undefined symbol: %s (the loaded libpq is version %d.%d)\n",
					 name, v / 10000, v % 10000);
	}
	else
		n = snprintf(msg, sizeof(msg),
					 "libpq-cm: symbol lookup error: undefined symbol: %s (no libpq.so.5 is loaded behind libpq-cm)\n",
					 name);
	if (n > 0 && write(STDERR_FILENO, msg, (size_t) n) < 0)
		n = 0;
	_exit(127);
}

void *
cm_real_lookup(const char *name, void **slot)
{
	void	   *p = dlsym(RTLD_NEXT, name);

	if (p == NULL)
		missing_function(name);
	__atomic_store_n(slot, p, __ATOMIC_RELEASE);
	return p;
}
