/*-------------------------------------------------------------------------
 *
 * route.c
 *	  Which instance is the primary, and which fit a target: pure functions.
 *
 * A promotion leaves two instances that say they are primaries for as long
 * as the old one keeps running: the new one, on a new timeline, and the
 * old one, on the timeline it was promoted from, whose writes are lost
 * when it is rewound.  The watchdogs report each instance's timeline and
 * system identifier (docs/protocol.md, section 3), and route_classify()
 * turns the table of up instances into a role per instance:
 *
 *	 - the primary on the highest timeline is the primary; a primary below
 *	   that timeline is a stale primary.  The highest timeline is the
 *	   highest the caller has seen of this database (route_memory), not
 *	   only among the instances up now: when the new primary goes down in
 *	   turn, the old one is still a branch that a rewind will cut, and
 *	   routing writes back to it would lose them twice;
 *	 - a standby whose promotion has been asked for (protocol version 3)
 *	   will be a primary on a timeline above its own: a primary on its
 *	   timeline or below is stale from that moment, before the promotion
 *	   is over, so that no write goes to the old primary once the new one
 *	   can take writes.  That timeline is not remembered (route_memory):
 *	   it is a promise, and a promotion that never ends leaves the primary
 *	   stale only while the request stands;
 *	 - two primaries on that timeline, or up instances with different system
 *	   identifiers, are a configuration fault: no primary is routable until
 *	   it is resolved, rather than conmgr guessing which one is right.
 *
 * A stale primary, or one in a fault, matches no target at all: its data
 * is, or may be, a branch that the other primary does not have and that a
 * rewind will throw away, so reads from it are no better than writes
 * (docs/conmgr.md, "One primary at a time").  A watchdog that speaks
 * protocol version 1 reports no timeline (0): its primary is never judged
 * stale, and conmgr cannot order it against another primary, so two
 * primaries where one of them has no timeline are a fault as well.
 *
 * route_choose() then ranks the instances that fit a target, as a RESOLVE
 * is answered.  Nothing here reads shared memory or a clock, logs or
 * allocates: the caller (route_view.c) passes copies of the slots, its
 * memory of timelines, the time and its rotation, and
 * regress/unit/test_route.c drives it directly.
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "cmproto.h"
#include "conmgr.h"

static bool
is_primary(const shm_slot *s)
{
	return (s->attrs & CMPROTO_ATTR_IN_RECOVERY) == 0;
}

/* A standby whose promotion was asked for, on a timeline it reported. */
static bool
is_promoting(const shm_slot *s)
{
	return !is_primary(s) && (s->attrs & CMPROTO_ATTR_PROMOTING) != 0 &&
		s->timeline != 0;
}

static void
set_fault(route_view *v, route_fault fault, int a, int b)
{
	if (v->fault != ROUTE_FAULT_NONE)
		return;
	v->fault = fault;
	v->fault_a = a;
	v->fault_b = b;
}

/*
 * The role of each of the n instances whose slot copies are slots[]; an
 * instance counts only when up[i] (configured, and its heartbeat up).
 */
void
route_classify(const shm_slot *slots, const bool *up, int n,
			   route_memory *mem, route_view *v)
{
	int			first_sysid = -1;
	int			first_primary = -1;
	bool		comparable;
	uint32_t	stale_below;

	memset(v, 0, sizeof(*v));
	v->fault_a = v->fault_b = -1;
	v->promoting = -1;
	for (int i = 0; i < n; i++)
	{
		if (!up[i])
			continue;
		if (slots[i].timeline > v->max_timeline)
			v->max_timeline = slots[i].timeline;
		if (slots[i].system_identifier == 0)
			continue;
		if (first_sysid < 0)
			first_sysid = i;
		else if (slots[i].system_identifier != slots[first_sysid].system_identifier)
			set_fault(v, ROUTE_FAULT_SYSTEM_ID, first_sysid, i);
	}

	/* Timelines of different databases do not compare. */
	comparable = v->fault == ROUTE_FAULT_NONE;
	v->up_timeline = v->max_timeline;
	if (comparable && first_sysid >= 0)
	{
		uint64_t	sysid = slots[first_sysid].system_identifier;

		/* another database altogether: what was seen is of no use */
		if (mem->system_identifier != sysid)
		{
			mem->system_identifier = sysid;
			mem->timeline = 0;
		}
		if (mem->timeline > v->max_timeline)
			v->max_timeline = mem->timeline;
		mem->timeline = v->max_timeline;
	}

	/* Primaries below this timeline are stale. */
	stale_below = v->max_timeline;
	for (int i = 0; i < n && comparable; i++)
		if (up[i] && is_promoting(&slots[i]) && slots[i].timeline >= stale_below)
		{
			stale_below = slots[i].timeline + 1;
			v->promoting = i;
		}

	for (int i = 0; i < n; i++)
	{
		if (!up[i])
			v->role[i] = ROUTE_DOWN;
		else if (!is_primary(&slots[i]))
			v->role[i] = is_promoting(&slots[i]) ? ROUTE_PROMOTING : ROUTE_STANDBY;
		else if (comparable && slots[i].timeline != 0 &&
				 slots[i].timeline < stale_below)
			v->role[i] = ROUTE_STALE_PRIMARY;
		else
		{
			v->role[i] = ROUTE_PRIMARY;
			if (first_primary < 0)
				first_primary = i;
			else
				set_fault(v, ROUTE_FAULT_TWO_PRIMARIES, first_primary, i);
		}
	}

	/* In a fault, no primary is the primary. */
	if (v->fault != ROUTE_FAULT_NONE)
		for (int i = 0; i < n; i++)
			if (v->role[i] == ROUTE_PRIMARY)
				v->role[i] = ROUTE_CONFLICT;
}

/*
 * How well an instance of this role and these attributes matches the
 * target: 0 best, 1 second choice, -1 not at all.
 */
int
route_rank(int target, route_role role, uint32_t attrs)
{
	bool		standby = role == ROUTE_STANDBY || role == ROUTE_PROMOTING;
	bool		ro = (attrs & CMPROTO_ATTR_READ_ONLY) != 0;

	if (!standby && role != ROUTE_PRIMARY)
		return -1;
	switch (target)
	{
		case CMPROTO_TARGET_ANY:
			return 0;
		case CMPROTO_TARGET_READ_WRITE:
			return !standby && !ro ? 0 : -1;
		case CMPROTO_TARGET_READ_ONLY:
			return standby || ro ? 0 : -1;
		case CMPROTO_TARGET_PRIMARY:
			return !standby ? 0 : -1;
		case CMPROTO_TARGET_STANDBY:
			return standby ? 0 : -1;
		case CMPROTO_TARGET_PREFER_STANDBY:
			return standby ? 0 : 1;
		case CMPROTO_TARGET_PREFER_PRIMARY:
			return !standby ? 0 : 1;
	}
	return -1;
}

/*
 * The up instances among the n of slots[] that match the target, best
 * rank first, into out[] (room for n); returns how many.  Within a rank,
 * instances whose last heartbeat (last_received_mono) is older than
 * late_after_us at now_us (a beat missed: the server or its link may have
 * died, and the heartbeat has not timed out yet) come after those heard
 * from on time; each of the two groups is rotated by rot positions, which
 * the caller advances by one per request of the target, so that equal
 * instances share the load.  After a crash and a promotion, the new
 * primary is thus offered before the silent old one until the old one is
 * declared down.  A stale primary, or one in a fault, matches nothing
 * (route_rank()).
 */
int
route_choose(int target, const shm_slot *slots, const route_view *v, int n,
			 int64_t now_us, int64_t late_after_us, unsigned rot,
			 route_candidate *out)
{
	route_candidate group[4][CMCONF_MAX_INSTANCES]; /* rank * 2 + late */
	int			ngroup[4] = {0, 0, 0, 0};
	int			nout = 0;

	for (int i = 0; i < n; i++)
	{
		const shm_slot *s = &slots[i];
		int			r = route_rank(target, v->role[i], s->attrs);
		int			g;

		if (r < 0)
			continue;
		g = r * 2 + (now_us - s->last_received_mono > late_after_us ? 1 : 0);
		group[g][ngroup[g]].instno = i;
		group[g][ngroup[g]].attrs = s->attrs;
		ngroup[g]++;
	}
	for (int g = 0; g < 4; g++)
		for (int k = 0; k < ngroup[g]; k++)
			out[nout++] = group[g][(k + rot) % ngroup[g]];
	return nout;
}

/*
 * Whether a fault makes conmgr refuse this target outright: those that ask
 * for the primary first.  The others are served by the standbys, and are
 * refused only when no standby is up (route_refuses()).
 */
bool
route_fault_refuses(int target)
{
	return target == CMPROTO_TARGET_READ_WRITE ||
		target == CMPROTO_TARGET_PRIMARY ||
		target == CMPROTO_TARGET_PREFER_PRIMARY;
}

/*
 * Whether a request for the target, which route_choose() found
 * ncandidates for, is refused for the view's configuration fault rather
 * than answered.
 */
bool
route_refuses(const route_view *v, int target, int ncandidates)
{
	return v->fault != ROUTE_FAULT_NONE &&
		(ncandidates == 0 || route_fault_refuses(target));
}

/*
 * The role as one word, as the control socket's instance lines carry it
 * (route=...) and cm_ctl reads it.
 */
const char *
route_role_key(route_role role)
{
	switch (role)
	{
		case ROUTE_DOWN:
			return "down";
		case ROUTE_STANDBY:
			return "standby";
		case ROUTE_PROMOTING:
			return "promoting";
		case ROUTE_PRIMARY:
			return "primary";
		case ROUTE_STALE_PRIMARY:
			return "stale-primary";
		case ROUTE_CONFLICT:
			return "conflict";
	}
	return "?";
}

const char *
route_role_name(route_role role)
{
	switch (role)
	{
		case ROUTE_DOWN:
			return "down";
		case ROUTE_STANDBY:
			return "standby";
		case ROUTE_PROMOTING:
			return "standby being promoted";
		case ROUTE_PRIMARY:
			return "primary";
		case ROUTE_STALE_PRIMARY:
			return "stale primary";
		case ROUTE_CONFLICT:
			return "primary in conflict";
	}
	return "?";
}
