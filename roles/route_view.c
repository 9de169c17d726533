/*-------------------------------------------------------------------------
 *
 * route_view.c
 *	  Routing from the shared instance table: read it, classify, choose.
 *
 * route.c decides; this file feeds it.  route_read() copies every
 * configured instance's slot out of shared memory, classifies the
 * instances (route_classify()) and logs what changed since the caller's
 * last read, so that a configuration fault or a stale primary is logged
 * once per change, whichever request or wake-up sees it first.
 * route_resolve() is the choice a RESOLVE gets: route_choose() with the
 * time, the lateness bound of one and a half heartbeat_interval and the
 * reader's rotation for the target.  All the state lives in the caller's
 * route_reader, so any role can route exactly as the listener does.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <string.h>

#include "cmclock.h"
#include "cmproto.h"
#include "conmgr.h"

/*
 * An instance's slot, from the reader's copy of it.  A writer that stays
 * inside an update (it died or was stopped mid-write; the supervisor
 * repairs a dead one's slot) is not waited for past shm.h's bound: the
 * last consistent copy stands, as it does while a live writer is slow.
 */
static shm_slot
slot_read(route_reader *r, const cm_ctx *ctx, int i)
{
	bool		was_stuck = (r->slot_seen[i].changecount & 1) != 0;

	if (shm_read(&ctx->shm->slots[i], &r->slot_seen[i]))
	{
		if (was_stuck)
			cm_log(CMLOG_LOG, "instance %d: its shared slot is readable again", i);
	}
	else if (!was_stuck)
		cm_log(CMLOG_LOG, "instance %d: its shared slot stayed in mid-update for %d ms "
			   "(writer pid %d); using its last consistent state", i,
			   SHM_READ_WAIT_US / 1000, (int) ctx->shm->slots[i].writer_pid);
	return r->slot_seen[i];
}

static void
log_fault(const cm_ctx *ctx, const route_view *v, const shm_slot *slots)
{
	const struct cmconf_instance *a,
			   *b;

	if (v->fault == ROUTE_FAULT_NONE)
	{
		cm_log(CMLOG_LOG, "instances no longer in conflict: routing to the primary again");
		return;
	}
	a = &ctx->conf->inst[v->fault_a];
	b = &ctx->conf->inst[v->fault_b];
	if (v->fault == ROUTE_FAULT_TWO_PRIMARIES)
		cm_ereport(CMLOG_LOG, "No primary is routed until one of them is demoted or stopped.", NULL,
				   "configuration fault: instances %d (%s:%d) and %d (%s:%d) are both primaries on timeline %u",
				   v->fault_a, cmconf_connect_host(a), a->backend_port,
				   v->fault_b, cmconf_connect_host(b), b->backend_port,
				   slots[v->fault_a].timeline);
	else
		cm_ereport(CMLOG_LOG, "No primary is routed until conmgr.conf names instances of one database.", NULL,
				   "configuration fault: instances %d (%s:%d) and %d (%s:%d) have different database system identifiers "
				   "(%llu, %llu)",
				   v->fault_a, cmconf_connect_host(a), a->backend_port,
				   v->fault_b, cmconf_connect_host(b), b->backend_port,
				   (unsigned long long) slots[v->fault_a].system_identifier,
				   (unsigned long long) slots[v->fault_b].system_identifier);
}

#define STALE_DETAIL "It gets no new sessions, and its attached sessions are told it is lost."

/* Instance i has become a stale primary: say why, once. */
static void
log_stale(const route_view *v, const shm_slot *slots, int i)
{
	if (slots[i].timeline >= v->max_timeline && v->promoting >= 0)
		cm_ereport(CMLOG_LOG, STALE_DETAIL, NULL,
				   "instance %d is a stale primary: it is on timeline %u, and the promotion of "
				   "instance %d, a standby on timeline %u, has been asked for",
				   i, slots[i].timeline, v->promoting, slots[v->promoting].timeline);
	else
		cm_ereport(CMLOG_LOG, STALE_DETAIL, NULL,
				   "instance %d is a stale primary: it is on timeline %u, and %s timeline %u",
				   i, slots[i].timeline,
				   v->up_timeline == v->max_timeline ? "an instance up is on" :
				   "no instance up now, but one seen since conmgr started, was on",
				   v->max_timeline);
}

/* Log the fault and the stale primaries that changed since the last read. */
static void
log_changes(route_reader *r, const cm_ctx *ctx, const shm_slot *slots,
			const route_view *v, int n)
{
	const route_view *old = &r->logged;

	if (r->quiet)
		return;
	if (!r->logged_valid ? v->fault != ROUTE_FAULT_NONE :
		v->fault != old->fault || v->fault_a != old->fault_a ||
		v->fault_b != old->fault_b)
		log_fault(ctx, v, slots);
	for (int i = 0; i < n; i++)
	{
		if (v->role[i] == ROUTE_STALE_PRIMARY &&
			(!r->logged_valid || old->role[i] != ROUTE_STALE_PRIMARY))
			log_stale(v, slots, i);
		else if (r->logged_valid && old->role[i] == ROUTE_STALE_PRIMARY &&
				 v->role[i] != ROUTE_STALE_PRIMARY)
			cm_log(CMLOG_LOG, "instance %d is no longer a stale primary (%s)",
				   i, route_role_name(v->role[i]));
	}
	r->logged = *v;
	r->logged_valid = true;
}

/*
 * The instances a read covers: those below the highest configured one.
 * Above it every slot is unconfigured, so every instance there is down
 * and matches no target; a request walks the few configured instances,
 * not the whole table.
 */
static int
route_span(const cm_ctx *ctx)
{
	int			n = (int) ctx->shm->nslots;

	return ctx->conf->inst_end < n ? ctx->conf->inst_end : n;
}

/*
 * Read the slots of the instances up to the highest configured one into
 * slots[] (an unconfigured instance's is zeroes; the slots above are left
 * as they are, for no caller reads an instance that is not configured)
 * and classify every instance into *v; log what changed since the last
 * call.
 */
void
route_read(route_reader *r, const cm_ctx *ctx, shm_slot *slots, route_view *v)
{
	bool		up[CMCONF_MAX_INSTANCES] = {false};
	int			n = route_span(ctx);

	for (int i = 0; i < n; i++)
	{
		if (!ctx->conf->inst[i].configured)
		{
			memset(&slots[i], 0, sizeof(slots[i]));
			continue;
		}
		slots[i] = slot_read(r, ctx, i);
		up[i] = slots[i].state == SHM_UP;
	}
	/* route_classify() leaves the roles above n ROUTE_DOWN */
	route_classify(slots, up, n, &r->timelines_seen, v);
	log_changes(r, ctx, slots, v, n);
}

/*
 * The candidates a RESOLVE for the target gets now, from what route_read()
 * returned: route_choose() with one and a half heartbeat_interval as the
 * bound of a late heartbeat, and the next rotation of the target.
 */
int
route_resolve(route_reader *r, const cm_ctx *ctx, int target,
			  const shm_slot *slots, const route_view *v, route_candidate *out)
{
	unsigned	rot = r->rotation[target]++;

	return route_choose(target, slots, v, route_span(ctx), cmclock_us(),
						(int64_t) ctx->conf->heartbeat_interval * 1500000, rot, out);
}

/*
 * The refusal of a target that the view's configuration fault leaves
 * without a safe instance, naming both instances, into buf.
 */
void
route_fault_text(const cm_ctx *ctx, const route_view *v, const shm_slot *slots,
				 int target, char *buf, size_t len)
{
	const struct cmconf_instance *ia = &ctx->conf->inst[v->fault_a];
	const struct cmconf_instance *ib = &ctx->conf->inst[v->fault_b];

	if (v->fault == ROUTE_FAULT_TWO_PRIMARIES)
		snprintf(buf, len,
				 "refusing target_session_attrs=%s: instances %d (%s:%d) and %d (%s:%d) are both primaries on timeline %u",
				 cmproto_target_name(target), v->fault_a, cmconf_connect_host(ia), ia->backend_port,
				 v->fault_b, cmconf_connect_host(ib), ib->backend_port, slots[v->fault_a].timeline);
	else
		snprintf(buf, len,
				 "refusing target_session_attrs=%s: instances %d (%s:%d) and %d (%s:%d) belong to different databases (system identifiers differ)",
				 cmproto_target_name(target), v->fault_a, cmconf_connect_host(ia), ia->backend_port,
				 v->fault_b, cmconf_connect_host(ib), ib->backend_port);
}
