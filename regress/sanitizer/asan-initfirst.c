/*-------------------------------------------------------------------------
 *
 * asan-initfirst.c
 *	  Start AddressSanitizer before any other library's constructor, in a
 *	  program not built with it (make check-asan, docs/hardening.md).
 *
 * Under make check-asan, libpq-cm is injected into psql, pgbench, python3
 * and the like with the ASan runtime first in LD_PRELOAD.  Preloaded
 * libraries are initialised after the program's own dependencies, so the
 * runtime starts lazily, on the first malloc() of some other constructor.
 * When that constructor is libp11-kit's (libpq -> libldap -> gnutls), the
 * malloc() happens inside newlocale(), with glibc's locale lock held for
 * writing; ASan's start-up calls dlerror(), which takes the same lock for
 * reading, and leaves it broken: the program hangs at exit, in p11-kit's
 * destructor (freelocale()).  Reproduced without conmgr: a program linked
 * with libp11-kit that calls setlocale(LC_ALL, "") hangs at exit with
 * LD_PRELOAD=libasan.so.
 *
 * This library, preloaded right after the runtime, is marked
 * DF_1_INITFIRST (-z initfirst): the dynamic linker runs its constructor
 * before every other one, and it starts the runtime there.
 *
 *-------------------------------------------------------------------------
 */
void		__asan_init(void);

__attribute__((constructor))
static void
asan_initfirst(void)
{
	__asan_init();
}
