/*-------------------------------------------------------------------------
 *
 * cancel.c
 *	  A CancelRequest through a forward port.
 *
 * A CancelRequest (psql's Ctrl-C, JDBC's Statement.cancel()) comes on a
 * connection of its own to the port the session used, and may reach
 * another forwarder process than the session's.  It names a backend by
 * process ID and secret key.  When the session it names is in the clear,
 * its forwarder saw that key pass (keywatch.c) and published it with the
 * session's instance in shared memory (its first SHM_FW_KEYS sessions'),
 * and the request goes to that instance alone.  Otherwise (a session under
 * TLS or GSSAPI, whose key it cannot read, or one it does not hold) the
 * request goes to every instance that is up: only the one that runs that
 * backend has its key, and the others ignore it, logging that no process
 * matched.  Each copy is a session of its own in FW_CANCEL, which sends
 * the request once its connect is done and ends.  A request with a key
 * longer than protocol 3.0's 4 bytes (protocol 3.2, PostgreSQL 18's
 * clients) is passed on whole; the key watch reads only 3.0's keys, so
 * such a request goes to every instance up.
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "cmclock.h"
#include "forwarder.h"

/* The key seen, as one word of shared memory; never 0 (a process ID is not). */
static uint64_t
fw_key_word(const uint8_t *key)
{
	uint64_t	w;

	memcpy(&w, key, sizeof(w));
	return w;
}

/* Publish a relayed session's key for the other forwarders, or withdraw it. */
void
fw_key_share(fw_sess *s, bool on)
{
	int			i = fw_idx(s);
	shm_fwkey  *e;

	if (i >= SHM_FW_KEYS)
		return;
	e = &fw_shm->keys[i];
	__atomic_store_n(&e->key, 0, __ATOMIC_RELAXED);
	s->key_shared = on;
	if (!on)
		return;
	__atomic_thread_fence(__ATOMIC_RELEASE);
	__atomic_store_n(&e->instno, s->instno, __ATOMIC_RELAXED);
	__atomic_store_n(&e->key, fw_key_word(s->kw.key), __ATOMIC_RELEASE);
}

/*
 * The instance of the relayed session whose BackendKeyData the request
 * names (its process ID and key, bytes 8 to 15 of a 16-byte request), or
 * -1 when none is known: a session under TLS or GSSAPI, one that has
 * ended, one of another forwarder beyond its published keys, or a key
 * longer than 4 bytes.
 */
static int
fw_cancel_owner(const uint8_t *request, size_t len)
{
	uint64_t	want;

	if (len != CMPROTO_PG_CANCEL_MIN)
		return -1;
	for (int k = 0; k < fw_tab.nalloc; k++)
	{
		const fw_sess *s = &fw_tab.s[k];

		if (s->state == FW_RELAY && s->kw.found &&
			memcmp(s->kw.key, request + 8, sizeof(s->kw.key)) == 0)
			return s->instno;
	}
	want = fw_key_word(request + 8);
	for (int k = 0; k < fw_ctx->nforwarders; k++)
	{
		const shm_forwarder *f = &fw_ctx->shm->fw[k];

		if (k == fw_self || __atomic_load_n(&f->pid, __ATOMIC_RELAXED) == 0)
			continue;
		for (int e = 0; e < SHM_FW_KEYS; e++)
		{
			int			instno;

			if (__atomic_load_n(&f->keys[e].key, __ATOMIC_ACQUIRE) != want)
				continue;
			instno = __atomic_load_n(&f->keys[e].instno, __ATOMIC_RELAXED);
			__atomic_thread_fence(__ATOMIC_ACQUIRE);
			if (__atomic_load_n(&f->keys[e].key, __ATOMIC_RELAXED) == want &&
				instno >= 0 && instno < (int) fw_ctx->shm->nslots)
				return instno;
		}
	}
	return -1;
}

/*
 * A CancelRequest, to the instance of the session it names when the
 * forwarder saw that session's key, else to every instance that is up.
 */
void
fw_cancel(fw_sess *s)
{
	shm_slot	slot;
	uint8_t		request[CMPROTO_PG_CANCEL_MAX];
	size_t		len = s->firstlen;
	int			si = fw_idx(s);
	int			owner;

	/* fw_new() may move the table: s is found again by its index */
	memcpy(request, s->first, len);
	owner = fw_cancel_owner(request, len);

	for (uint32_t i = 0; i < fw_ctx->shm->nslots; i++)
	{
		fw_sess    *c;

		if (!fw_ctx->conf->inst[i].configured || (owner >= 0 && (int) i != owner) ||
			!shm_read(&fw_ctx->shm->slots[i], &slot) || slot.state != SHM_UP)
			continue;
		c = fw_new();
		if (c == NULL)
			break;
		fw_set_state(c, FW_CANCEL);
		memcpy(c->first, request, len);
		c->firstlen = len;
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
