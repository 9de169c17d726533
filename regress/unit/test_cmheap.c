/*-------------------------------------------------------------------------
 *
 * test_cmheap.c
 *	  Test that common/cmheap.c keeps its timers in order under any mix
 *	  of inserts, moves, removals and pops.
 *
 * A seeded random sequence of operations runs against the heap and
 * against a plain array of keys; after each one the heap property holds,
 * every queued element's position is where it sits, and the top is the
 * smallest key of the model.  Then popping empties the heap in key order,
 * a full heap refuses one more, and removing an element that is not
 * queued changes nothing.
 *
 *-------------------------------------------------------------------------
 */
#include <stdint.h>
#include <stdlib.h>

#include "cmheap.h"
#include "tap.h"

#define NELEM		500
#define NOPS		200000

typedef struct elem
{
	cmheap_node node;
	int			id;
} elem;

static elem elems[NELEM];
static cmheap_entry storage[NELEM];
static int64_t model[NELEM];	/* key of each element, or -1 if not queued */

/* Every queued element in place and no child due before its parent. */
static bool
heap_consistent(const cmheap *h)
{
	int			queued = 0;

	for (int i = 0; i < h->n; i++)
	{
		if (h->entries[i].node->pos != i)
			return false;
		if (i > 0 && h->entries[(i - 1) / 2].key > h->entries[i].key)
			return false;
	}
	for (int i = 0; i < NELEM; i++)
	{
		if (model[i] < 0)
		{
			if (cmheap_queued(&elems[i].node))
				return false;
			continue;
		}
		queued++;
		if (!cmheap_queued(&elems[i].node) ||
			cmheap_key(h, &elems[i].node) != model[i] ||
			h->entries[elems[i].node.pos].node != &elems[i].node)
			return false;
	}
	return queued == h->n;
}

static int64_t
model_min(void)
{
	int64_t		min = -1;

	for (int i = 0; i < NELEM; i++)
		if (model[i] >= 0 && (min < 0 || model[i] < min))
			min = model[i];
	return min;
}

int
main(void)
{
	cmheap		h;
	int			bad_state = 0;
	int			bad_top = 0;
	int64_t		last;
	bool		ordered = true;
	int			popped = 0;
	cmheap_node *x;
	elem		extra = {.node = {-1}};

	srandom(18);
	cmheap_init(&h, storage, NELEM);
	for (int i = 0; i < NELEM; i++)
	{
		cmheap_node_init(&elems[i].node);
		elems[i].id = i;
		model[i] = -1;
	}
	ok(cmheap_top(&h) == NULL && cmheap_pop(&h) == NULL,
	   "an empty heap has no top and pops nothing");

	for (int op = 0; op < NOPS; op++)
	{
		int			i = random() % NELEM;

		/* few distinct keys, so that equal keys are common */
		int64_t		key = random() % 1000;

		switch (random() % 4)
		{
			case 0:
			case 1:
				if (!cmheap_set(&h, &elems[i].node, key))
					bad_state++;
				model[i] = key;
				break;
			case 2:
				cmheap_remove(&h, &elems[i].node);
				model[i] = -1;
				break;
			case 3:
				x = cmheap_pop(&h);
				if (x != NULL)
				{
					elem	   *e = (elem *) ((char *) x - offsetof(elem, node));

					if (model[e->id] != model_min())
						bad_top++;
					model[e->id] = -1;
				}
				else if (model_min() >= 0)
					bad_top++;
				break;
		}
		if (!heap_consistent(&h))
			bad_state++;
		x = cmheap_top(&h);
		if ((x == NULL) != (model_min() < 0) ||
			(x != NULL && cmheap_top_key(&h) != model_min()))
			bad_top++;
	}
	is_int(bad_state, 0, "%d random operations keep every position and the heap order", NOPS);
	is_int(bad_top, 0, "the top and each pop are the smallest key queued");

	for (int i = 0; i < NELEM; i++)
	{
		model[i] = random() % 100000;
		(void) cmheap_set(&h, &elems[i].node, model[i]);
	}
	ok(!cmheap_set(&h, &extra.node, 1),
	   "a full heap refuses one more element");
	ok(cmheap_set(&h, &elems[7].node, 5), "a queued element can move in a full heap");
	model[7] = 5;
	ok(heap_consistent(&h), "the full heap is consistent");

	cmheap_remove(&h, &elems[3].node);
	model[3] = -1;
	cmheap_remove(&h, &elems[3].node);
	ok(heap_consistent(&h) && h.n == NELEM - 1,
	   "removing an element that is not queued changes nothing");

	last = INT64_MIN;
	while (h.n > 0)
	{
		int64_t		key = cmheap_top_key(&h);

		x = cmheap_pop(&h);
		if (key < last || cmheap_queued(x))
			ordered = false;
		last = key;
		popped++;
	}
	ok(ordered, "popping gives the keys in order and dequeues each element");
	is_int(popped, NELEM - 1, "every queued element is popped once");
	return tap_done();
}
