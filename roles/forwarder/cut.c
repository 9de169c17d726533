/*-------------------------------------------------------------------------
 *
 * cut.c
 *	  Forwarded sessions cut when their instance changes.
 *
 * When the heartbeat roles publish a change (the eventfd fw_wake_fd), the
 * forwarder looks at every relayed session: one whose instance was
 * declared lost (down, or down and up again since the session began) is
 * cut at once, both sockets closed, so a client blocked in a query gets
 * an error; so is one whose instance no longer fits its port's target (a
 * primary demoted behind a read-write port, a stale primary).  The
 * watchdog's terminator ends the server side of a lost host's sessions.
 * A connect under way to a lost instance (into a dead link, say) is given
 * up at once for the next candidate or the refusal, rather than waiting
 * out heartbeat_connect_timeout.
 *
 *-------------------------------------------------------------------------
 */
#include <sys/epoll.h>

#include "forwarder.h"

/*
 * Cut every relayed session whose instance was lost since it connected,
 * or no longer fits its port's target; a connect under way to a lost
 * instance goes on to the next candidate, or to the refusal.
 */
void
fw_check_instances(void)
{
	shm_slot	slots[CMCONF_MAX_INSTANCES];
	route_view	v;
	int			cut[CMCONF_MAX_INSTANCES] = {0};

	route_read(&fw_routes, fw_ctx, slots, &v);
	for (int k = 0; k < fw_tab.nalloc; k++)
	{
		fw_sess    *s = &fw_tab.s[k];
		const shm_slot *sl;

		if (s->state == FW_CONNECTING)
		{
			/* no waiting out heartbeat_connect_timeout on a lost instance */
			if (slots[s->instno].state != SHM_UP)
			{
				(void) epoll_ctl(fw_ep_fd, EPOLL_CTL_DEL, s->sfd, NULL);
				fw_connect_next(s);
			}
			continue;
		}
		if (s->state != FW_RELAY)
			continue;
		sl = &slots[s->instno];
		if (sl->state == SHM_UP && sl->downs == s->downs &&
			route_rank(s->target, v.role[s->instno], sl->attrs) >= 0)
			continue;
		cut[s->instno]++;
		fw_end(s);
	}
	for (uint32_t i = 0; i < fw_ctx->shm->nslots; i++)
		if (cut[i] > 0)
			cm_log(CMLOG_LOG, "forwarder: cut %d forwarded session%s to instance %u (%s)",
				   cut[i], cut[i] == 1 ? "" : "s", i,
				   slots[i].state != SHM_UP ? "lost" : route_role_name(v.role[i]));
}
