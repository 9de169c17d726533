/*-------------------------------------------------------------------------
 *
 * cmnewer.c
 *	  Calls a libpq function by name, found at run time as an application
 *	  that decides for itself would find it: "cmnewer PQcancelCreate".
 *
 * Prints "absent" (exit 3) when no loaded library defines the name, else
 * calls it with a NULL connection (which every libpq function taking a
 * PGconn first accepts) and prints "returned" (exit 0).  Run with libpq 15
 * behind libpq-cm, a libpq 17 function ends the process: see
 * docs/libpq-cm.md, "Which libpq it serves".
 *
 *-------------------------------------------------------------------------
 */
#include <dlfcn.h>
#include <stdio.h>

#include "libpq-cm.h"

int
main(int argc, char **argv)
{
	void	   *(*fn) (void *);

	if (argc != 2)
	{
		fprintf(stderr, "usage: cmnewer FUNCTION\n");
		return 2;
	}
	/* a reference, so that the program links with libpq-cm */
	(void) PQcmSocket(NULL);
	*(void **) &fn = dlsym(RTLD_DEFAULT, argv[1]);
	if (fn == NULL)
	{
		printf("absent\n");
		return 3;
	}
	(void) fn(NULL);
	printf("returned\n");
	return 0;
}
