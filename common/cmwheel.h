/*-------------------------------------------------------------------------
 *
 * cmwheel.h
 *	  A timer wheel, for event loops with many deadlines that come round
 *	  again and again.
 *
 * Time is cut into ticks of a width the caller chooses, and the wheel has
 * CMWHEEL_SLOTS slots, one list each: an element due in tick t sits in
 * slot t mod CMWHEEL_SLOTS.  Setting, moving and removing an element costs
 * the same whatever the number of elements (a binary heap costs log n
 * steps, each a write to an element that may be anywhere in memory), and
 * taking what is due walks only the slots of the ticks that have passed.
 * An element due a whole turn or more ahead shares a slot with nearer ones
 * and is passed over until its turn comes; each element keeps its exact
 * key, so nothing is taken before it is due.
 *
 * The elements embed a cmwheel_node; the wheel allocates nothing and calls
 * nothing, so the same code serves the daemon and the watchdog extension.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CMWHEEL_H
#define CMWHEEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CMWHEEL_SLOTS	4096	/* a power of two */

typedef struct cmwheel_node
{
	int64_t		key;			/* when the element is due */
	struct cmwheel_node *next;	/* in its slot, or in a list of due ones */
	struct cmwheel_node **pprev;	/* what points to it; NULL if not queued */
} cmwheel_node;

typedef struct cmwheel
{
	int64_t		tick;			/* width of a slot, in the keys' unit */
	int64_t		cur;			/* first tick whose slot may hold one due */
	int			n;				/* elements queued */
	uint64_t	used[CMWHEEL_SLOTS / 64];	/* which slots are not empty */
	cmwheel_node *slots[CMWHEEL_SLOTS];
} cmwheel;

/* An element that is in no wheel. */
static inline void
cmwheel_node_init(cmwheel_node *x)
{
	x->pprev = NULL;
	x->next = NULL;
}

static inline bool
cmwheel_queued(const cmwheel_node *x)
{
	return x->pprev != NULL;
}

/* cmwheel.c */
extern void cmwheel_init(cmwheel *w, int64_t tick, int64_t now);
extern void cmwheel_set(cmwheel *w, cmwheel_node *x, int64_t key);
extern void cmwheel_remove(cmwheel *w, cmwheel_node *x);
extern cmwheel_node *cmwheel_take_due(cmwheel *w, int64_t limit);
extern bool cmwheel_next(const cmwheel *w, int64_t *next);

#endif							/* CMWHEEL_H */
