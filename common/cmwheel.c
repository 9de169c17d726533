/*-------------------------------------------------------------------------
 *
 * cmwheel.c
 *	  A timer wheel (see cmwheel.h).
 *
 * Where an element sits: the slot of its key's tick, or of the wheel's
 * current tick "cur" if its key is earlier.  "cur" moves only as far as
 * the tick of the latest limit cmwheel_take_due() was given, and every slot
 * from the old "cur" to the new one is walked then, so no element sits in
 * a slot whose tick has been passed without its key having been compared
 * with a limit it was over: an element due at or before a limit is found
 * when the wheel is asked for that limit.  Elements earlier than their
 * slot's tick are only ever in the slot of "cur", which is what lets
 * cmwheel_next() answer from the first slot that is not empty.
 *
 *-------------------------------------------------------------------------
 */
#include "cmwheel.h"

#define CMWHEEL_MASK	((uint64_t) CMWHEEL_SLOTS - 1)

/* The tick of "key", rounded down. */
static inline int64_t
cmwheel_tick_of(const cmwheel *w, int64_t key)
{
	if (key >= 0)
		return key / w->tick;
	return -((-key + w->tick - 1) / w->tick);
}

static inline uint32_t
cmwheel_slot_of(int64_t t)
{
	return (uint32_t) ((uint64_t) t & CMWHEEL_MASK);
}

/* An empty wheel of ticks "tick" wide, its current tick that of "now". */
void
cmwheel_init(cmwheel *w, int64_t tick, int64_t now)
{
	w->tick = tick > 0 ? tick : 1;
	w->cur = cmwheel_tick_of(w, now);
	w->n = 0;
	for (int i = 0; i < CMWHEEL_SLOTS / 64; i++)
		w->used[i] = 0;
	for (int i = 0; i < CMWHEEL_SLOTS; i++)
		w->slots[i] = NULL;
}

/*
 * Take "x" out of the wheel; nothing happens if it is not in it.  Its
 * slot is empty after if it was the slot's first and last element: its
 * "pprev" then points into the array of slots, which says which slot
 * (so a node needs no field of its own for that).
 */
void
cmwheel_remove(cmwheel *w, cmwheel_node *x)
{
	uintptr_t	at = (uintptr_t) x->pprev;

	if (!cmwheel_queued(x))
		return;
	*x->pprev = x->next;
	if (x->next != NULL)
		x->next->pprev = x->pprev;
	else if (at >= (uintptr_t) &w->slots[0] &&
			 at < (uintptr_t) &w->slots[CMWHEEL_SLOTS])
	{
		size_t		slot = (at - (uintptr_t) &w->slots[0]) / sizeof(w->slots[0]);

		w->used[slot / 64] &= ~((uint64_t) 1 << (slot % 64));
	}
	x->pprev = NULL;
	x->next = NULL;
	w->n--;
}

/* Make "x" due at "key": insert it, or move it if it is queued already. */
void
cmwheel_set(cmwheel *w, cmwheel_node *x, int64_t key)
{
	int64_t		t = cmwheel_tick_of(w, key);
	uint32_t	slot;

	cmwheel_remove(w, x);
	if (t < w->cur)
		t = w->cur;
	slot = cmwheel_slot_of(t);
	x->key = key;
	x->next = w->slots[slot];
	if (x->next != NULL)
		x->next->pprev = &x->next;
	x->pprev = &w->slots[slot];
	w->slots[slot] = x;
	w->used[slot / 64] |= (uint64_t) 1 << (slot % 64);
	w->n++;
}

/*
 * Take out every element due at or before "limit" and return them as a
 * list linked by "next" (NULL when none is due), in the order of their
 * slots.  The caller may set each again, or set or remove any other
 * element, as it goes down the list, once it has read the element's
 * "next".
 */
cmwheel_node *
cmwheel_take_due(cmwheel *w, int64_t limit)
{
	int64_t		last = cmwheel_tick_of(w, limit);
	int64_t		span;
	cmwheel_node *due = NULL;
	cmwheel_node **tail = &due;

	if (last < w->cur)
		last = w->cur;
	/* After a long sleep, every slot once. */
	span = last - w->cur;
	if (span >= CMWHEEL_SLOTS)
		span = CMWHEEL_SLOTS - 1;
	for (int64_t t = w->cur; t <= w->cur + span; t++)
	{
		uint32_t	slot = cmwheel_slot_of(t);
		cmwheel_node *x;

		if (!(w->used[slot / 64] & ((uint64_t) 1 << (slot % 64))))
			continue;
		x = w->slots[slot];
		while (x != NULL)
		{
			cmwheel_node *next = x->next;

			if (x->key <= limit)
			{
				cmwheel_remove(w, x);
				*tail = x;
				tail = &x->next;
			}
			x = next;
		}
	}
	/* The tick of "limit" stays: what is due later in it is still to come. */
	w->cur = last;
	return due;
}

/*
 * Set "next" to a time no later than when the wheel's first element is
 * due and return true, or return false when the wheel is empty.  The time
 * is that element's key, or the start of a tick whose slot holds only
 * elements of later turns: a wait until then wakes once a turn for them.
 * It is after the last limit given to cmwheel_take_due().
 */
bool
cmwheel_next(const cmwheel *w, int64_t *next)
{
	uint32_t	start = cmwheel_slot_of(w->cur);
	int			word = start / 64;
	uint64_t	bits;
	int64_t		dist;
	uint32_t	slot;
	int64_t		best;

	if (w->n == 0)
		return false;
	/* The first slot in use from "cur" on, going round once. */
	bits = w->used[word] & (~(uint64_t) 0 << (start % 64));
	for (int i = 0; bits == 0 && i < CMWHEEL_SLOTS / 64; i++)
	{
		word = (word + 1) % (CMWHEEL_SLOTS / 64);
		bits = w->used[word];
		/* back at the first word: only its bits before "start" are left */
		if (word == (int) (start / 64))
			bits &= ~(~(uint64_t) 0 << (start % 64));
	}
	slot = (uint32_t) word * 64 + (uint32_t) __builtin_ctzll(bits);
	dist = (int64_t) ((slot - start) & CMWHEEL_MASK);

	/*
	 * Elements of later turns may share the slot: the start of the next tick
	 * bounds the answer, since every other slot's elements are due after
	 * that.
	 */
	best = (w->cur + dist + 1) * w->tick;
	for (const cmwheel_node *x = w->slots[slot]; x != NULL; x = x->next)
	{
		if (x->key < best)
			best = x->key;
	}
	*next = best;
	return true;
}
