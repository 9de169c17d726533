/*-------------------------------------------------------------------------
 *
 * table.c
 *	  The forwarder's session table as data: slots, a free stack, and
 *	  the queues of sessions waiting on a deadline.
 *
 * Thousands of sessions may be open at once, so nothing a session does
 * may cost a walk over the table.  A new session takes the slot on top of
 * the free stack and an ended one is pushed back (the table doubles when
 * the stack is empty, so its slots move: callers keep indices, not
 * pointers, across fwtab_take()).  The sessions whose state ends at a
 * deadline are kept in one queue per time limit, in the order they
 * joined it; every session of a queue got the same limit from the moment
 * it joined, so only the head of a queue can be due, and expiring costs
 * what expires.
 *
 * No system calls and no globals: sessions.c wraps it for the role, and
 * regress/unit/test_fwtable.c tests it as it is.
 *
 *-------------------------------------------------------------------------
 */
#include <stdlib.h>
#include <string.h>

#include "forwarder.h"

#define FWTAB_FIRST_ALLOC	64

/*
 * A free slot made a new session's, the table grown when none is left;
 * NULL when out of memory.  The slot's generation moves on, so that an
 * event of the session that had it before is told apart.
 */
fw_sess *
fwtab_take(fw_table *t)
{
	fw_sess    *s;
	uint32_t	gen;

	if (t->free_head < 0)
	{
		int			n = t->nalloc ? t->nalloc * 2 : FWTAB_FIRST_ALLOC;
		fw_sess    *grown = realloc(t->s, sizeof(fw_sess) * n);

		if (grown == NULL)
			return NULL;
		memset(grown + t->nalloc, 0, sizeof(fw_sess) * (n - t->nalloc));
		/* pushed from the top, so that the lowest index is taken first */
		for (int k = n - 1; k >= t->nalloc; k--)
		{
			grown[k].free_next = t->free_head;
			t->free_head = k;
		}
		t->s = grown;
		t->nalloc = n;
	}
	s = &t->s[t->free_head];
	t->free_head = s->free_next;
	gen = s->gen + 1;
	memset(s, 0, sizeof(*s));
	s->gen = gen ? gen : 1;
	s->cfd = s->sfd = -1;
	s->pipes[0][0] = s->pipes[0][1] = s->pipes[1][0] = s->pipes[1][1] = -1;
	s->instno = -1;
	s->queue = FW_Q_NONE;
	s->q_prev = s->q_next = s->free_next = -1;
	t->nused++;
	return s;
}

/* The session's slot back on the free stack (its state FW_FREE). */
void
fwtab_give(fw_table *t, fw_sess *s)
{
	int			k = (int) (s - t->s);

	fwtab_join(t, s, FW_Q_NONE);
	s->state = FW_FREE;
	s->free_next = t->free_head;
	t->free_head = k;
	t->nused--;
}

/*
 * The session leaves its queue, if any, and joins queue q at its tail
 * (FW_Q_NONE: no queue), behind every session that joined q before.
 */
void
fwtab_join(fw_table *t, fw_sess *s, fw_queue_id q)
{
	int			k = (int) (s - t->s);

	if (s->queue != FW_Q_NONE)
	{
		fw_queue   *from = &t->queues[s->queue];

		if (s->q_prev >= 0)
			t->s[s->q_prev].q_next = s->q_next;
		else
			from->head = s->q_next;
		if (s->q_next >= 0)
			t->s[s->q_next].q_prev = s->q_prev;
		else
			from->tail = s->q_prev;
		s->q_prev = s->q_next = -1;
	}
	s->queue = q;
	if (q == FW_Q_NONE)
		return;
	s->q_prev = t->queues[q].tail;
	s->q_next = -1;
	if (t->queues[q].tail >= 0)
		t->s[t->queues[q].tail].q_next = k;
	else
		t->queues[q].head = k;
	t->queues[q].tail = k;
}

/* The session that joined queue q first, of those in it; NULL if none. */
fw_sess *
fwtab_head(const fw_table *t, fw_queue_id q)
{
	return t->queues[q].head >= 0 ? &t->s[t->queues[q].head] : NULL;
}
