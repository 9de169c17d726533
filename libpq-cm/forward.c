/*-------------------------------------------------------------------------
 *
 * forward.c
 *	  The plain forwarders: every libpq function of forward.h, defined
 *	  here with libpq's own prototype, hands the inner connection to the
 *	  real function.
 *
 *-------------------------------------------------------------------------
 */
#include <libpq-events.h>

#include "cm_int.h"

#define INNER cm_inner(conn)

#define CM_FN(type, name, params, args) \
type \
name params \
{ \
	return REAL(name) args; \
}

#include "forward.h"
