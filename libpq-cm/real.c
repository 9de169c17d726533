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
#include <stdlib.h>
#include <unistd.h>

#include "cm_int.h"

/*
 * Non-zero while this thread runs inside a real libpq connect function
 * that calls back into exported entry points (PQconnectdbParams calls
 * PQconnectStartParams through the PLT): our connect wrappers then step
 * aside.
 */
__thread int cm_in_real;

void *
cm_real_lookup(const char *name, void **slot)
{
	void	   *p = dlsym(RTLD_NEXT, name);

	if (p == NULL)
	{
		/*
		 * Nothing sensible can be returned for a missing libpq function:
		 * the library was loaded without a real libpq behind it.  Say so
		 * in one line rather than crash on a null pointer.
		 */
		char		msg[256];
		int			n = snprintf(msg, sizeof(msg),
								 "libpq-cm: the real libpq has no function \"%s\" (is libpq.so.5 behind libpq-cm?)\n",
								 name);

		if (n > 0 && write(STDERR_FILENO, msg, (size_t) n) < 0)
			n = 0;
		abort();
	}
	__atomic_store_n(slot, p, __ATOMIC_RELEASE);
	return p;
}
