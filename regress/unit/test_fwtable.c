/*-------------------------------------------------------------------------
 *
 * test_fwtable.c
 *	  Test roles/forwarder/table.c: the forwarder's session table.
 *
 * A new session takes the top of the free stack in constant time (the
 * lowest slots first in a grown table, then the slot freed last), the
 * table doubles when the stack is empty and keeps what its slots hold, a
 * slot's generation moves on with each session; the deadline queues keep
 * their sessions in the order they joined, a session that joins again
 * goes to the tail, one given back leaves its queue.  Then a random walk
 * of takes, gives and joins, checked after every step against a plain
 * model (which slots are in use, each queue as an array), and the links
 * of every queue walked both ways.
 *
 *-------------------------------------------------------------------------
 */
#include <stdlib.h>
#include <string.h>

#include "forwarder.h"
#include "tap.h"

#define WALK_SLOTS	1000
#define WALK_STEPS	50000

/* The queue q from head to tail into out; its length, -1 if the links break. */
static int
queue_walk(const fw_table *t, fw_queue_id q, int *out, int max)
{
	int			n = 0;
	int			prev = -1;

	for (int k = t->queues[q].head; k >= 0; k = t->s[k].q_next)
	{
		if (n == max || t->s[k].q_prev != prev || t->s[k].queue != q)
			return -1;
		out[n++] = k;
		prev = k;
	}
	return t->queues[q].tail == prev ? n : -1;
}

static void
test_take_give(void)
{
	fw_table	t = FW_TABLE_INIT;
	fw_sess    *s;
	int			k;

	s = fwtab_take(&t);
	is_int(s - t.s, 0, "the first session takes slot 0");
	is_int(t.nalloc, 64, "of a table of 64");
	is_int(t.nused, 1, "one session open");
	ok(s->gen == 1 && s->cfd == -1 && s->sfd == -1 && s->pipes[1][1] == -1 &&
	   s->instno == -1 && s->queue == FW_Q_NONE && s->state == FW_FREE,
	   "a new session: generation 1, no descriptors, no instance, in no queue");
	s->port = 0;
	for (k = 1; k < 64; k++)
	{
		s = fwtab_take(&t);
		if (s - t.s != k)
			break;
		s->port = k;
	}
	is_int(k, 64, "the next 63 take slots 1 to 63 in order");
	s = fwtab_take(&t);
	is_int(s - t.s, 64, "the 65th grows the table and takes slot 64");
	is_int(t.nalloc, 128, "the table doubled");
	for (k = 0; k < 64 && t.s[k].port == k; k++)
		;
	is_int(k, 64, "the slots kept what they held");

	fwtab_give(&t, &t.s[10]);
	fwtab_give(&t, &t.s[20]);
	is_int(t.nused, 63, "two given back: 63 open");
	ok(t.s[10].state == FW_FREE, "a slot given back is FW_FREE");
	s = fwtab_take(&t);
	is_int(s - t.s, 20, "the next session takes the slot given back last");
	is_int(s->gen, 2, "its generation moved on");
	is_int(fwtab_take(&t) - t.s, 10, "then the one before");
	is_int(fwtab_take(&t) - t.s, 65, "then the grown table's next free slot");
	t.s[65].gen = UINT32_MAX;
	fwtab_give(&t, &t.s[65]);
	is_int(fwtab_take(&t)->gen, 1, "a generation that wraps skips 0");
	free(t.s);
}

static void
test_queues(void)
{
	fw_table	t = FW_TABLE_INIT;
	int			order[8];
	int			a,
				b,
				c,
				d;

	a = fwtab_take(&t) - t.s;
	b = fwtab_take(&t) - t.s;
	c = fwtab_take(&t) - t.s;
	d = fwtab_take(&t) - t.s;
	ok(fwtab_head(&t, FW_Q_FIRST) == NULL, "an empty queue has no head");
	fwtab_join(&t, &t.s[a], FW_Q_FIRST);
	fwtab_join(&t, &t.s[b], FW_Q_FIRST);
	fwtab_join(&t, &t.s[c], FW_Q_FIRST);
	ok(queue_walk(&t, FW_Q_FIRST, order, 8) == 3 && order[0] == a && order[1] == b &&
	   order[2] == c, "three sessions in the order they joined");
	fwtab_join(&t, &t.s[b], FW_Q_CONNECT);
	ok(queue_walk(&t, FW_Q_FIRST, order, 8) == 2 && order[0] == a && order[1] == c,
	   "one moved to another queue leaves the first");
	ok(fwtab_head(&t, FW_Q_CONNECT) == &t.s[b], "and heads the other");
	fwtab_join(&t, &t.s[a], FW_Q_FIRST);
	ok(queue_walk(&t, FW_Q_FIRST, order, 8) == 2 && order[0] == c && order[1] == a,
	   "the head joining its queue again goes to the tail");
	fwtab_join(&t, &t.s[d], FW_Q_FIRST);
	fwtab_give(&t, &t.s[a]);
	ok(queue_walk(&t, FW_Q_FIRST, order, 8) == 2 && order[0] == c && order[1] == d,
	   "one given back leaves its queue from the middle");
	fwtab_join(&t, &t.s[c], FW_Q_NONE);
	ok(queue_walk(&t, FW_Q_FIRST, order, 8) == 1 && order[0] == d && t.s[c].queue == FW_Q_NONE,
	   "FW_Q_NONE: out of every queue");
	for (int k = 0; k < 200; k++)
		(void) fwtab_take(&t);
	ok(queue_walk(&t, FW_Q_FIRST, order, 8) == 1 && order[0] == d &&
	   fwtab_head(&t, FW_Q_CONNECT) == &t.s[b], "the queues survive the table's growth");
	free(t.s);
}

/* A random walk against a model of the table. */
static void
test_walk(void)
{
	fw_table	t = FW_TABLE_INIT;
	static bool used[WALK_SLOTS * 2];
	static int	model[FW_NQUEUES][WALK_SLOTS * 2];
	static int	got[WALK_SLOTS * 2];
	int			nmodel[FW_NQUEUES] = {0};
	int			nused = 0;
	int			bad = 0;

	srandom(20);
	for (int step = 0; step < WALK_STEPS && bad == 0; step++)
	{
		int			op = (int) (random() % 3);
		int			k = (int) (random() % (t.nalloc ? t.nalloc : 1));

		if (op == 0 && nused < WALK_SLOTS)
		{
			fw_sess    *s = fwtab_take(&t);

			k = (int) (s - t.s);
			if (k >= WALK_SLOTS * 2 || used[k])
				bad = step + 1;
			else
				used[k] = true, nused++;
		}
		else if (t.nalloc > 0 && used[k])
		{
			fw_queue_id to = op == 1 ? FW_Q_NONE + (int) (random() % (FW_NQUEUES + 1)) : FW_Q_NONE;

			for (int q = 0; q < FW_NQUEUES; q++)
				for (int i = 0; i < nmodel[q]; i++)
					if (model[q][i] == k)
					{
						memmove(&model[q][i], &model[q][i + 1], sizeof(int) * (nmodel[q] - i - 1));
						nmodel[q]--;
					}
			if (op == 1)
			{
				fwtab_join(&t, &t.s[k], to);
				if (to != FW_Q_NONE)
					model[to][nmodel[to]++] = k;
			}
			else
			{
				fwtab_give(&t, &t.s[k]);
				used[k] = false, nused--;
			}
		}
		if (t.nused != nused)
			bad = step + 1;
		for (int q = 0; q < FW_NQUEUES && bad == 0; q++)
			if (queue_walk(&t, q, got, WALK_SLOTS * 2) != nmodel[q] ||
				memcmp(got, model[q], sizeof(int) * nmodel[q]) != 0)
				bad = step + 1;
	}
	is_int(bad, 0, "%d random takes, gives and joins: the table as the model says "
		   "(0, or the first step that differs)", WALK_STEPS);
	free(t.s);
}

int
main(void)
{
	test_take_give();
	test_queues();
	test_walk();
	return tap_done();
}
