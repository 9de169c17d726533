/*-------------------------------------------------------------------------
 *
 * cmheap.h
 *	  A binary min-heap of timers, for event loops with many deadlines.
 *
 * Each element embeds a cmheap_node that holds its position in the heap,
 * so that an element can be moved or removed in O(log n) without a
 * search; its key (when it is due, on the caller's clock) is kept in the
 * heap's array.  The caller owns the array (cap entries) and every
 * element; the
 * heap allocates nothing and calls nothing, so the same code serves the
 * daemon and the watchdog extension (the extension's worker keeps one
 * node per heartbeat session, and each wake-up looks only at the
 * sessions whose time has come).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CMHEAP_H
#define CMHEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct cmheap_node
{
	int			pos;			/* index in the heap; -1 when not in it */
} cmheap_node;

/*
 * An entry of the heap: the key sits beside the pointer, so that ordering
 * the heap reads the array alone and never the elements, which may be
 * anywhere in memory.
 */
typedef struct cmheap_entry
{
	int64_t		key;			/* when the element is due */
	cmheap_node *node;
} cmheap_entry;

typedef struct cmheap
{
	cmheap_entry *entries;		/* the caller's array of cap entries */
	int			n;				/* elements in the heap */
	int			cap;
} cmheap;

/* An element that is in no heap. */
static inline void
cmheap_node_init(cmheap_node *x)
{
	x->pos = -1;
}

static inline bool
cmheap_queued(const cmheap_node *x)
{
	return x->pos >= 0;
}

/* The element due first, or NULL when the heap is empty. */
static inline cmheap_node *
cmheap_top(const cmheap *h)
{
	return h->n > 0 ? h->entries[0].node : NULL;
}

/* When the element due first is due; only for a heap that is not empty. */
static inline int64_t
cmheap_top_key(const cmheap *h)
{
	return h->entries[0].key;
}

/* When a queued element is due. */
static inline int64_t
cmheap_key(const cmheap *h, const cmheap_node *x)
{
	return h->entries[x->pos].key;
}

/* cmheap.c */
extern void cmheap_init(cmheap *h, cmheap_entry *storage, int cap);
extern bool cmheap_set(cmheap *h, cmheap_node *x, int64_t key);
extern void cmheap_remove(cmheap *h, cmheap_node *x);
extern cmheap_node *cmheap_pop(cmheap *h);

#endif							/* CMHEAP_H */
