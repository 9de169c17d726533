/*-------------------------------------------------------------------------
 *
 * test_cmwheel.c
 *	  Test that common/cmwheel.c hands out each timer when it is due, not
 *	  before and not later, under any mix of sets, moves and removals, with
 *	  keys in the past, in the current turn and several turns ahead.
 *
 * A seeded random sequence of operations runs against the wheel and
 * against a plain array of keys, with a clock that moves on by small steps
 * and now and then by more than a turn.  After each one the wheel's count
 * and its slots agree with the model; each cmwheel_take_due() returns
 * exactly the elements the model has due by its limit, once each; and
 * cmwheel_next() is never later than the earliest key, and after a take
 * never at or before its limit (a wait until then would not loop).
 *
 *-------------------------------------------------------------------------
 */
#include <stdint.h>
#include <stdlib.h>

#include "cmwheel.h"
#include "tap.h"

#define NELEM		500
#define NOPS		50000
#define TICK		1000

typedef struct elem
{
	cmwheel_node node;
	int			id;
} elem;

static elem elems[NELEM];
static cmwheel wheel;
static int64_t model[NELEM];	/* key of each element */
static bool queued[NELEM];

/* The wheel's lists and bits agree with the model. */
static bool
wheel_consistent(const cmwheel *w)
{
	int			n = 0;

	for (int s = 0; s < CMWHEEL_SLOTS; s++)
	{
		bool		used = (w->used[s / 64] >> (s % 64)) & 1;

		if (used != (w->slots[s] != NULL))
			return false;
		for (cmwheel_node **p = (cmwheel_node **) &w->slots[s]; *p != NULL; p = &(*p)->next)
		{
			elem	   *e = (elem *) ((char *) *p - offsetof(elem, node));

			if ((*p)->pprev != p || !queued[e->id] || (*p)->key != model[e->id])
				return false;
			n++;
		}
	}
	for (int i = 0; i < NELEM; i++)
		if (queued[i] != cmwheel_queued(&elems[i].node))
			return false;
	return n == w->n;
}

static bool
model_min(int64_t *min)
{
	bool		any = false;

	for (int i = 0; i < NELEM; i++)
		if (queued[i] && (!any || model[i] < *min))
		{
			*min = model[i];
			any = true;
		}
	return any;
}

int
main(void)
{
	int64_t		now = 123456789;
	int64_t		min = 0;
	int64_t		next = 0;
	int			bad_state = 0;
	int			bad_take = 0;
	int			bad_next = 0;
	int			takes = 0;
	int			taken = 0;
	cmwheel_node *x;

	srandom(18);
	cmwheel_init(&wheel, TICK, now);
	for (int i = 0; i < NELEM; i++)
	{
		cmwheel_node_init(&elems[i].node);
		elems[i].id = i;
	}
	ok(!cmwheel_next(&wheel, &next) && cmwheel_take_due(&wheel, now) == NULL,
	   "an empty wheel has no next time and nothing due");

	for (int op = 0; op < NOPS; op++)
	{
		int			i = random() % NELEM;
		int64_t		key;

		switch (random() % 8)
		{
			case 0:
			case 1:
			case 2:
				/* from a little in the past to three turns ahead */
				key = now - 5 * TICK + random() % (3LL * CMWHEEL_SLOTS * TICK);
				if (random() % 4 == 0)
					key = now + random() % (20 * TICK);
				cmwheel_set(&wheel, &elems[i].node, key);
				model[i] = key;
				queued[i] = true;
				break;
			case 3:
				cmwheel_remove(&wheel, &elems[i].node);
				queued[i] = false;
				break;
			default:
				{
					int64_t		limit;
					bool		seen[NELEM] = {false};

					/* mostly a few ticks on, now and then more than a turn */
					now += random() % (random() % 50 == 0 ?
									   2LL * CMWHEEL_SLOTS * TICK : 8 * TICK);
					limit = now + random() % (5 * TICK);
					for (x = cmwheel_take_due(&wheel, limit); x != NULL; x = x->next)
					{
						elem	   *e = (elem *) ((char *) x - offsetof(elem, node));

						if (!queued[e->id] || model[e->id] > limit ||
							seen[e->id] || cmwheel_queued(x))
							bad_take++;
						seen[e->id] = true;
						queued[e->id] = false;
						taken++;
					}
					for (int j = 0; j < NELEM; j++)
						if (queued[j] && model[j] <= limit)
							bad_take++;
					takes++;
					if (cmwheel_next(&wheel, &next) && next <= limit)
						bad_next++;
					break;
				}
		}
		if (!wheel_consistent(&wheel))
			bad_state++;
		if (model_min(&min) != cmwheel_next(&wheel, &next) ||
			(wheel.n > 0 && next > min))
			bad_next++;
	}
	is_int(bad_state, 0, "%d random operations keep every list, bit and count", NOPS);
	is_int(bad_take, 0, "%d takes return exactly what is due by their limit, once (%d in all)",
		   takes, taken);
	ok(taken > NOPS / 10, "many elements were due");
	is_int(bad_next, 0, "the next time is never after the earliest key, nor at or before the last limit");

	/* An element many turns ahead waits for its turn. */
	cmwheel_init(&wheel, TICK, 0);
	cmwheel_node_init(&elems[0].node);
	cmwheel_set(&wheel, &elems[0].node, 10LL * CMWHEEL_SLOTS * TICK + 7);
	ok(cmwheel_take_due(&wheel, 9LL * CMWHEEL_SLOTS * TICK) == NULL,
	   "an element ten turns ahead is not due nine turns on");
	ok(cmwheel_take_due(&wheel, 10LL * CMWHEEL_SLOTS * TICK + 6) == NULL,
	   "nor a microsecond before its key");
	ok(cmwheel_take_due(&wheel, 10LL * CMWHEEL_SLOTS * TICK + 7) == &elems[0].node,
	   "it is due at its key");
	cmwheel_remove(&wheel, &elems[0].node);
	ok(wheel.n == 0 && wheel_consistent(&wheel),
	   "removing an element that is not queued changes nothing");
	return tap_done();
}
