/*-------------------------------------------------------------------------
 *
 * real.h
 *	  Calling the real libpq underneath the wrappers (real.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CM_REAL_H
#define CM_REAL_H

#include "libpq-cm.h"
#include "pq_newer.h"

/* real.c */
extern __thread int cm_in_real;
extern void *cm_real_lookup(const char *name, void **slot);

/*
 * The real libpq's function "name": the next definition after ours in the
 * symbol search order (dlsym(RTLD_NEXT)), looked up once per call site.
 */
#define REAL(name) \
	({ \
		static void *real_slot_; \
		void	   *real_p_ = __atomic_load_n(&real_slot_, __ATOMIC_ACQUIRE); \
		if (real_p_ == NULL) \
			real_p_ = cm_real_lookup(#name, &real_slot_); \
		(__typeof__(&name)) real_p_; \
	})

#endif							/* CM_REAL_H */
