/*-------------------------------------------------------------------------
 *
 * test_route.c
 *	  Test roles/route.c: one primary at a time (docs/conmgr.md).
 *
 * Tables of instances as the heartbeat roles would publish them (up or
 * not, in recovery or not, timeline, system identifier), and what
 * route_classify() must make of them: the primary on the highest
 * timeline, stale primaries below it, a fault for two primaries on that
 * timeline or for two databases; that the highest timeline seen stays the
 * bar when the instances on it go down; that a standby whose promotion
 * was asked for makes the primary on its timeline stale at once, without
 * raising the remembered bar; then route_rank() for every target and
 * role, so that no target ever reaches a stale or conflicting primary;
 * route_choose()'s order (rank, then heartbeat on time, then the rotation
 * among equals) and route_refuses() in a fault.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <string.h>

#include "cmproto.h"
#include "conmgr.h"
#include "tap.h"

#define SYSID	UINT64_C(7300000000000000001)
#define P		0				/* attrs of a primary */
#define S		CMPROTO_ATTR_IN_RECOVERY
#define PR		(CMPROTO_ATTR_IN_RECOVERY | CMPROTO_ATTR_PROMOTING)

typedef struct inst
{
	bool		up;
	uint32_t	attrs;
	uint32_t	timeline;
	uint64_t	sysid;
} inst;

/* Classify with the memory of earlier calls, as the listener does. */
static void
classify_with(const inst *in, int n, route_memory *mem, route_view *v)
{
	shm_slot	slots[CMCONF_MAX_INSTANCES];
	bool		up[CMCONF_MAX_INSTANCES];

	memset(slots, 0, sizeof(slots));
	for (int i = 0; i < n; i++)
	{
		slots[i].state = in[i].up ? SHM_UP : SHM_DOWN;
		slots[i].attrs = in[i].attrs;
		slots[i].timeline = in[i].timeline;
		slots[i].system_identifier = in[i].sysid;
		up[i] = in[i].up;
	}
	route_classify(slots, up, n, mem, v);
}

/* Classify as a listener that has seen nothing before. */
static void
classify(const inst *in, int n, route_view *v)
{
	route_memory mem = {0, 0};

	classify_with(in, n, &mem, v);
}

static void
test_classify(void)
{
	route_view	v;

	/* one primary, one standby: nothing to see */
	{
		inst		in[] = {{true, P, 1, SYSID}, {true, S, 1, SYSID}};

		classify(in, 2, &v);
		ok(v.role[0] == ROUTE_PRIMARY && v.role[1] == ROUTE_STANDBY &&
		   v.fault == ROUTE_FAULT_NONE && v.max_timeline == 1,
		   "primary and standby on timeline 1: primary, standby, no fault");
	}

	/* the standby promoted, the old primary still running */
	{
		inst		in[] = {{true, P, 1, SYSID}, {true, P, 2, SYSID}};

		classify(in, 2, &v);
		ok(v.role[0] == ROUTE_STALE_PRIMARY && v.role[1] == ROUTE_PRIMARY &&
		   v.fault == ROUTE_FAULT_NONE && v.max_timeline == 2,
		   "primaries on timelines 1 and 2: the one on 1 is stale, no fault");
	}

	/* order does not matter, nor does a third instance down */
	{
		inst		in[] = {{true, P, 5, SYSID}, {false, P, 9, SYSID}, {true, P, 4, SYSID}};

		classify(in, 3, &v);
		ok(v.role[0] == ROUTE_PRIMARY && v.role[1] == ROUTE_DOWN &&
		   v.role[2] == ROUTE_STALE_PRIMARY && v.max_timeline == 5,
		   "an instance that is down counts for nothing, not even its timeline");
	}

	/* a standby that follows the new primary makes the lone old one stale */
	{
		inst		in[] = {{true, P, 1, SYSID}, {true, S, 2, SYSID}};

		classify(in, 2, &v);
		ok(v.role[0] == ROUTE_STALE_PRIMARY && v.role[1] == ROUTE_STANDBY,
		   "primary on 1, standby on 2: the primary is stale");
	}

	/* two primaries on one timeline: a fault naming both */
	{
		inst		in[] = {{true, S, 1, SYSID}, {true, P, 1, SYSID}, {true, P, 1, SYSID}};

		classify(in, 3, &v);
		ok(v.fault == ROUTE_FAULT_TWO_PRIMARIES && v.fault_a == 1 && v.fault_b == 2,
		   "two primaries on timeline 1: fault, naming instances 1 and 2");
		ok(v.role[1] == ROUTE_CONFLICT && v.role[2] == ROUTE_CONFLICT &&
		   v.role[0] == ROUTE_STANDBY,
		   "both are in conflict, the standby stays a standby");
	}

	/* two on the highest timeline, one below: stale and a fault */
	{
		inst		in[] = {{true, P, 1, SYSID}, {true, P, 3, SYSID}, {true, P, 3, SYSID}};

		classify(in, 3, &v);
		ok(v.fault == ROUTE_FAULT_TWO_PRIMARIES && v.fault_a == 1 && v.fault_b == 2 &&
		   v.role[0] == ROUTE_STALE_PRIMARY,
		   "timelines 1, 3, 3: instance 0 stale, 1 and 2 in fault");
	}

	/* a later primary is judged stale even after a fault was found */
	{
		inst		in[] = {{true, P, 3, SYSID}, {true, P, 3, SYSID}, {true, P, 1, SYSID}};

		classify(in, 3, &v);
		ok(v.role[2] == ROUTE_STALE_PRIMARY && v.role[0] == ROUTE_CONFLICT,
		   "timelines 3, 3, 1: instance 2 stale whatever the order");
	}

	/* different databases */
	{
		inst		in[] = {{true, P, 2, SYSID}, {true, S, 1, SYSID + 1}};

		classify(in, 2, &v);
		ok(v.fault == ROUTE_FAULT_SYSTEM_ID && v.fault_a == 0 && v.fault_b == 1,
		   "different system identifiers: fault naming both");
		ok(v.role[0] == ROUTE_CONFLICT && v.role[1] == ROUTE_STANDBY,
		   "the primary is in conflict, the standby a standby");
	}
	{
		inst		in[] = {{true, P, 1, SYSID}, {true, P, 2, SYSID + 1}};

		classify(in, 2, &v);
		ok(v.fault == ROUTE_FAULT_SYSTEM_ID && v.role[0] == ROUTE_CONFLICT &&
		   v.role[1] == ROUTE_CONFLICT,
		   "two databases: timelines are not compared, neither is the primary");
	}
	{
		inst		in[] = {{true, P, 1, SYSID}, {false, P, 2, SYSID + 1}};

		classify(in, 2, &v);
		ok(v.fault == ROUTE_FAULT_NONE && v.role[0] == ROUTE_PRIMARY,
		   "another database that is down is no fault");
	}

	/* protocol version 1 watchdogs: no timeline */
	{
		inst		in[] = {{true, P, 0, SYSID}, {true, S, 0, SYSID}};

		classify(in, 2, &v);
		ok(v.role[0] == ROUTE_PRIMARY && v.fault == ROUTE_FAULT_NONE,
		   "a primary without timeline, alone: the primary");
	}
	{
		inst		in[] = {{true, P, 0, SYSID}, {true, P, 2, SYSID}};

		classify(in, 2, &v);
		ok(v.fault == ROUTE_FAULT_TWO_PRIMARIES && v.role[0] == ROUTE_CONFLICT &&
		   v.role[1] == ROUTE_CONFLICT,
		   "a primary without timeline and one on timeline 2: a fault, not a guess");
	}
	{
		inst		in[] = {{true, P, 0, SYSID}, {true, S, 3, SYSID}};

		classify(in, 2, &v);
		ok(v.role[0] == ROUTE_PRIMARY,
		   "a primary without timeline is never judged stale");
	}

	/* nothing up */
	{
		inst		in[] = {{false, P, 1, SYSID}, {false, S, 1, SYSID}};

		classify(in, 2, &v);
		ok(v.role[0] == ROUTE_DOWN && v.role[1] == ROUTE_DOWN &&
		   v.fault == ROUTE_FAULT_NONE && v.max_timeline == 0,
		   "nothing up: every instance down, no fault");
	}
}

/*
 * The highest timeline seen stays the bar when its instances go down, and
 * is forgotten only for another database.
 */
static void
test_memory(void)
{
	route_memory mem = {0, 0};
	route_view	v;
	inst		both[] = {{true, P, 1, SYSID}, {true, P, 2, SYSID}};
	inst		old_alone[] = {{true, P, 1, SYSID}, {false, P, 2, SYSID}};
	inst		rewound[] = {{true, S, 2, SYSID}, {false, P, 2, SYSID}};
	inst		other_db[] = {{true, P, 1, SYSID + 1}, {false, P, 2, SYSID}};

	classify_with(old_alone, 2, &mem, &v);
	ok(v.role[0] == ROUTE_PRIMARY && mem.timeline == 1,
	   "nothing seen before: the old primary alone on timeline 1 is the primary");
	classify_with(both, 2, &mem, &v);
	ok(v.role[0] == ROUTE_STALE_PRIMARY && v.role[1] == ROUTE_PRIMARY &&
	   mem.system_identifier == SYSID && mem.timeline == 2,
	   "the new primary on timeline 2 up: the old one is stale, timeline 2 remembered");
	classify_with(old_alone, 2, &mem, &v);
	ok(v.role[0] == ROUTE_STALE_PRIMARY && v.max_timeline == 2 && v.up_timeline == 1,
	   "the new primary down: the old one on timeline 1 stays stale");
	classify_with(rewound, 2, &mem, &v);
	ok(v.role[0] == ROUTE_STANDBY && v.fault == ROUTE_FAULT_NONE,
	   "the old primary rewound into a standby on timeline 2: a standby");
	classify_with(other_db, 2, &mem, &v);
	ok(v.role[0] == ROUTE_PRIMARY && mem.system_identifier == SYSID + 1 && mem.timeline == 1,
	   "another database's primary on timeline 1: the memory of the first one is no bar");
}

/*
 * A promotion asked for: the primary on the promoting standby's timeline
 * (or below) is stale before the promotion is over; a standby behind the
 * primary's timeline, or one that reports no timeline, makes nothing
 * stale; a request withdrawn leaves nothing remembered.
 */
static void
test_promoting(void)
{
	route_memory mem = {0, 0};
	route_view	v;
	inst		asked[] = {{true, P, 1, SYSID}, {true, PR, 1, SYSID}, {true, S, 1, SYSID}};
	inst		withdrawn[] = {{true, P, 1, SYSID}, {true, S, 1, SYSID}, {true, S, 1, SYSID}};
	inst		behind[] = {{true, P, 3, SYSID}, {true, PR, 2, SYSID}};
	inst		no_timeline[] = {{true, P, 1, SYSID}, {true, PR, 0, SYSID}};
	inst		done[] = {{true, P, 1, SYSID}, {true, P, 2, SYSID}, {true, S, 1, SYSID}};
	inst		promoter_down[] = {{true, P, 1, SYSID}, {false, PR, 1, SYSID}};
	inst		other_db[] = {{true, P, 1, SYSID}, {true, PR, 1, SYSID + 1}};

	classify_with(asked, 3, &mem, &v);
	ok(v.role[0] == ROUTE_STALE_PRIMARY && v.role[1] == ROUTE_PROMOTING &&
	   v.role[2] == ROUTE_STANDBY && v.promoting == 1 && v.fault == ROUTE_FAULT_NONE,
	   "a standby on timeline 1 being promoted: the primary on timeline 1 is stale at once");
	ok(mem.timeline == 1 && v.max_timeline == 1,
	   "and the timeline it will reach is not remembered");
	classify_with(withdrawn, 3, &mem, &v);
	ok(v.role[0] == ROUTE_PRIMARY && v.promoting == -1,
	   "the request gone without a promotion: the primary is the primary again");
	classify_with(asked, 3, &mem, &v);
	classify_with(done, 3, &mem, &v);
	ok(v.role[0] == ROUTE_STALE_PRIMARY && v.role[1] == ROUTE_PRIMARY && mem.timeline == 2,
	   "the promotion over: the new primary on timeline 2, the old one stale, timeline 2 remembered");
	classify(behind, 2, &v);
	ok(v.role[0] == ROUTE_PRIMARY && v.role[1] == ROUTE_PROMOTING && v.promoting == -1,
	   "a standby on timeline 2 promoted while the primary is on 3: the primary stays");
	classify(no_timeline, 2, &v);
	ok(v.role[0] == ROUTE_PRIMARY && v.role[1] == ROUTE_STANDBY,
	   "a promoting standby without a timeline: nothing to compare, a standby");
	classify(promoter_down, 2, &v);
	ok(v.role[0] == ROUTE_PRIMARY && v.role[1] == ROUTE_DOWN,
	   "the standby being promoted is down: the primary stays the primary");
	classify(other_db, 2, &v);
	ok(v.fault == ROUTE_FAULT_SYSTEM_ID && v.promoting == -1 && v.role[0] == ROUTE_CONFLICT,
	   "a promoting standby of another database: the system identifier fault, no promotion");
	for (int t = 0; t <= CMPROTO_TARGET_LAST; t++)
		is_int(route_rank(t, ROUTE_PROMOTING, PR), route_rank(t, ROUTE_STANDBY, S),
			   "%s: a standby being promoted ranks as a standby", cmproto_target_name(t));
	ok(strcmp(route_role_key(ROUTE_PROMOTING), "promoting") == 0,
	   "its one-word role name is promoting");
}

static void
test_rank(void)
{
	static const int want[CMPROTO_TARGET_LAST + 1][3] = {
		/* primary, read-only primary, standby */
		[CMPROTO_TARGET_ANY] = {0, 0, 0},
		[CMPROTO_TARGET_READ_WRITE] = {0, -1, -1},
		[CMPROTO_TARGET_READ_ONLY] = {-1, 0, 0},
		[CMPROTO_TARGET_PRIMARY] = {0, 0, -1},
		[CMPROTO_TARGET_STANDBY] = {-1, -1, 0},
		[CMPROTO_TARGET_PREFER_STANDBY] = {1, 1, 0},
		[CMPROTO_TARGET_PREFER_PRIMARY] = {0, 0, 1},
	};

	for (int t = 0; t <= CMPROTO_TARGET_LAST; t++)
	{
		const char *name = cmproto_target_name(t);

		is_int(route_rank(t, ROUTE_PRIMARY, 0), want[t][0], "%s: primary ranks %d", name, want[t][0]);
		is_int(route_rank(t, ROUTE_PRIMARY, CMPROTO_ATTR_READ_ONLY), want[t][1],
			   "%s: read-only primary ranks %d", name, want[t][1]);
		is_int(route_rank(t, ROUTE_STANDBY, S), want[t][2], "%s: standby ranks %d", name, want[t][2]);
		is_int(route_rank(t, ROUTE_STALE_PRIMARY, 0), -1, "%s: a stale primary never matches", name);
		is_int(route_rank(t, ROUTE_STALE_PRIMARY, CMPROTO_ATTR_READ_ONLY), -1,
			   "%s: a read-only stale primary never matches", name);
		is_int(route_rank(t, ROUTE_CONFLICT, 0), -1, "%s: a primary in conflict never matches", name);
		is_int(route_rank(t, ROUTE_DOWN, 0), -1, "%s: an instance down never matches", name);
	}
	ok(route_fault_refuses(CMPROTO_TARGET_READ_WRITE) &&
	   route_fault_refuses(CMPROTO_TARGET_PRIMARY) &&
	   route_fault_refuses(CMPROTO_TARGET_PREFER_PRIMARY),
	   "a fault refuses read-write, primary, prefer-primary");
	ok(!route_fault_refuses(CMPROTO_TARGET_ANY) &&
	   !route_fault_refuses(CMPROTO_TARGET_READ_ONLY) &&
	   !route_fault_refuses(CMPROTO_TARGET_STANDBY) &&
	   !route_fault_refuses(CMPROTO_TARGET_PREFER_STANDBY),
	   "and leaves any, read-only, standby, prefer-standby to the standbys");
	ok(strcmp(route_role_key(ROUTE_STALE_PRIMARY), "stale-primary") == 0 &&
	   strcmp(route_role_key(ROUTE_CONFLICT), "conflict") == 0,
	   "the control socket's one-word role names");
	ok(strcmp(route_role_name(ROUTE_STALE_PRIMARY), "stale primary") == 0,
	   "the stale primary's name");
}

/*
 * The candidates of a target among these instances at time now (late
 * after 1.5 s), rotated by rot, as instance numbers in a string ("2 0 1").
 */
static const char *
choose(int target, const inst *in, const int64_t *heard_us, int n, unsigned rot)
{
	static char out[64];
	shm_slot	slots[CMCONF_MAX_INSTANCES];
	route_view	v;
	route_memory mem = {0, 0};
	route_candidate c[CMCONF_MAX_INSTANCES];
	bool		up[CMCONF_MAX_INSTANCES];
	int			nc;
	size_t		len = 0;

	memset(slots, 0, sizeof(slots));
	for (int i = 0; i < n; i++)
	{
		slots[i].state = in[i].up ? SHM_UP : SHM_DOWN;
		slots[i].attrs = in[i].attrs;
		slots[i].timeline = in[i].timeline;
		slots[i].system_identifier = in[i].sysid;
		slots[i].last_received_mono = heard_us[i];
		up[i] = in[i].up;
	}
	route_classify(slots, up, n, &mem, &v);
	nc = route_choose(target, slots, &v, n, 10000000, 1500000, rot, c);
	out[0] = '\0';
	for (int i = 0; i < nc; i++)
		len += snprintf(out + len, sizeof(out) - len, "%s%d", i ? " " : "", c[i].instno);
	if (nc > 0 && c[0].attrs != in[c[0].instno].attrs)
		return "attrs differ";
	return out;
}

static void
test_choose(void)
{
	/* 0 primary, 1-3 standbys, 4 down; all heard from at 9.9 s */
	inst		in[] = {{true, P, 2, SYSID}, {true, S, 2, SYSID}, {true, S, 2, SYSID},
	{true, S, 2, SYSID}, {false, S, 2, SYSID}};
	int64_t		on_time[] = {9900000, 9900000, 9900000, 9900000, 9900000};
	int64_t		one_late[] = {9900000, 8000000, 9900000, 9900000, 9900000};
	inst		stale[] = {{true, P, 1, SYSID}, {true, P, 2, SYSID}, {true, S, 2, SYSID}};
	inst		fault[] = {{true, P, 2, SYSID}, {true, P, 2, SYSID}, {true, S, 2, SYSID}};

	is_str(choose(CMPROTO_TARGET_ANY, in, on_time, 5, 0), "0 1 2 3",
		   "any: every instance up, none down");
	is_str(choose(CMPROTO_TARGET_READ_WRITE, in, on_time, 5, 7), "0", "read-write: the primary");
	is_str(choose(CMPROTO_TARGET_STANDBY, in, on_time, 5, 0), "1 2 3", "standby: the standbys");
	is_str(choose(CMPROTO_TARGET_STANDBY, in, on_time, 5, 1), "2 3 1",
		   "rotated by one: the next standby first");
	is_str(choose(CMPROTO_TARGET_STANDBY, in, on_time, 5, 5), "3 1 2",
		   "rotation wraps around the group");
	is_str(choose(CMPROTO_TARGET_PREFER_STANDBY, in, on_time, 5, 1), "2 3 1 0",
		   "prefer-standby: the standbys rotated, then the primary");
	is_str(choose(CMPROTO_TARGET_PREFER_PRIMARY, in, on_time, 5, 1), "0 2 3 1",
		   "prefer-primary: the primary, then the standbys rotated");
	is_str(choose(CMPROTO_TARGET_STANDBY, in, one_late, 5, 0), "2 3 1",
		   "a standby whose heartbeat is late comes after those on time");
	is_str(choose(CMPROTO_TARGET_PREFER_PRIMARY, in, one_late, 5, 0), "0 2 3 1",
		   "a late instance stays within its rank");
	is_str(choose(CMPROTO_TARGET_READ_WRITE, stale, on_time, 3, 0), "1",
		   "read-write after a promotion: the new primary, never the stale one");
	is_str(choose(CMPROTO_TARGET_ANY, stale, on_time, 3, 0), "1 2",
		   "any: the stale primary is not offered");
	is_str(choose(CMPROTO_TARGET_READ_WRITE, fault, on_time, 3, 0), "",
		   "two primaries on one timeline: no read-write candidate");
	is_str(choose(CMPROTO_TARGET_PREFER_STANDBY, fault, on_time, 3, 0), "2",
		   "in a fault, prefer-standby gets the standby");
}

static void
test_refuses(void)
{
	route_view	ok_view,
				fault_view;

	memset(&ok_view, 0, sizeof(ok_view));
	memset(&fault_view, 0, sizeof(fault_view));
	fault_view.fault = ROUTE_FAULT_TWO_PRIMARIES;
	ok(!route_refuses(&ok_view, CMPROTO_TARGET_READ_WRITE, 0),
	   "no fault: nothing is refused, even without candidates");
	ok(route_refuses(&fault_view, CMPROTO_TARGET_READ_WRITE, 1) &&
	   route_refuses(&fault_view, CMPROTO_TARGET_PRIMARY, 1) &&
	   route_refuses(&fault_view, CMPROTO_TARGET_PREFER_PRIMARY, 1),
	   "a fault refuses the targets that ask for the primary first");
	ok(!route_refuses(&fault_view, CMPROTO_TARGET_PREFER_STANDBY, 1) &&
	   !route_refuses(&fault_view, CMPROTO_TARGET_ANY, 1),
	   "and serves the others from the standbys");
	ok(route_refuses(&fault_view, CMPROTO_TARGET_ANY, 0),
	   "unless no standby is up");
}

int
main(void)
{
	test_classify();
	test_memory();
	test_promoting();
	test_rank();
	test_choose();
	test_refuses();
	return tap_done();
}
