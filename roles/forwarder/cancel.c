/*-------------------------------------------------------------------------
 *
 * cancel.c
 *	  A CancelRequest through a forward port.
 *
 * A CancelRequest (psql's Ctrl-C, JDBC's Statement.cancel()) comes on a
 * connection of its own to the port the session used.  It names a backend
 * by process ID and secret key, which only the instance that runs that
 * backend has, so it is sent on to every instance that is up and the
 * others ignore it: the forwarder needs no memory of which session went
 * where (it could not read the key of a TLS session anyway).  Each copy is
 * a session of its own in FW_CANCEL, which sends the sixteen bytes once
 * its connect is done and ends.
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "cmclock.h"
#include "forwarder.h"

/* A CancelRequest, to every instance that is up. */
void
fw_cancel(fw_sess *s)
{
	shm_slot	slot;
	uint8_t		request[16];
	int			si = fw_idx(s);

	/* fw_new() may move the table: s is found again by its index */
	memcpy(request, s->first, sizeof(request));

	for (uint32_t i = 0; i < fw_ctx->shm->nslots; i++)
	{
		fw_sess    *c;

		if (!fw_ctx->conf->inst[i].configured ||
			!shm_read(&fw_ctx->shm->slots[i], &slot) || slot.state != SHM_UP)
			continue;
		c = fw_new();
		if (c == NULL)
			break;
		fw_set_state(c, FW_CANCEL);
		memcpy(c->first, request, sizeof(request));
		c->firstlen = sizeof(request);
		c->sfd = fw_dial((int) i);
		c->instno = (int) i;
		c->deadline = cmclock_ms() + (int64_t) fw_ctx->conf->heartbeat_connect_timeout * 1000;
		if (c->sfd < 0 ||
			!fw_ep_set(EPOLL_CTL_ADD, c->sfd, EPOLLOUT, EV_MAKE(EV_SERVER, c->gen, fw_idx(c))))
			fw_end(c);
		else
			c->smask = EPOLLOUT;
	}
	fw_end(&fw_tab.s[si]);
}

/* A copy's connect is done: the request goes, and the copy ends. */
void
fw_cancel_send(fw_sess *s)
{
	(void) !send(s->sfd, s->first, s->firstlen, MSG_NOSIGNAL);
	fw_end(s);
}
