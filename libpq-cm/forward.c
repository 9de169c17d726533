/*-------------------------------------------------------------------------
 *
 * forward.c
 *	  The plain forwarders: every libpq function of forward.h, defined
 *	  here with libpq's own prototype, hands the inner connection to the
 *	  real function, and then (CM_FN: a call that may do I/O) lets the
 *	  watcher's duplicate of the SQL socket follow libpq's if the call
 *	  closed it (cm_follow_sql()).
 *
 *-------------------------------------------------------------------------
 */
#include <libpq-events.h>

#include "handle.h"

#define INNER cm_inner(conn)
#define OPTS cm_inner_or_opts(conn)

#define CM_FN(type, name, params, args) \
type \
name params \
{ \
	type		r_ = REAL(name) args; \
\
	cm_follow_sql(conn); \
	return r_; \
}

#define CM_FN_STATE(type, name, params, args) \
type \
name params \
{ \
	return REAL(name) args; \
}

#include "forward.h"
