/*-------------------------------------------------------------------------
 *
 * cmheap.c
 *	  A binary min-heap of timers (see cmheap.h).
 *
 * The array is the usual implicit tree: the children of i are 2i+1 and
 * 2i+2.  Every move of an entry writes its new index into its element's
 * node, so that cmheap_set() and cmheap_remove() start from where it is.
 *
 *-------------------------------------------------------------------------
 */
#include "cmheap.h"

static inline void
cmheap_place(cmheap *h, cmheap_entry e, int i)
{
	h->entries[i] = e;
	e.node->pos = i;
}

/* Move the entry at i towards the root while its parent is due later. */
static void
cmheap_sift_up(cmheap *h, int i)
{
	cmheap_entry e = h->entries[i];

	while (i > 0)
	{
		int			parent = (i - 1) / 2;

		if (h->entries[parent].key <= e.key)
			break;
		cmheap_place(h, h->entries[parent], i);
		i = parent;
	}
	cmheap_place(h, e, i);
}

/* Move the entry at i towards the leaves while a child is due earlier. */
static void
cmheap_sift_down(cmheap *h, int i)
{
	cmheap_entry e = h->entries[i];

	for (;;)
	{
		int			child = 2 * i + 1;

		if (child >= h->n)
			break;
		if (child + 1 < h->n && h->entries[child + 1].key < h->entries[child].key)
			child++;
		if (e.key <= h->entries[child].key)
			break;
		cmheap_place(h, h->entries[child], i);
		i = child;
	}
	cmheap_place(h, e, i);
}

/* An empty heap over the caller's array of "cap" entries. */
void
cmheap_init(cmheap *h, cmheap_entry *storage, int cap)
{
	h->entries = storage;
	h->n = 0;
	h->cap = cap;
}

/*
 * Make "x" due at "key": insert it, or move it if it is queued already.
 * False when it is not queued and the heap is full.
 */
bool
cmheap_set(cmheap *h, cmheap_node *x, int64_t key)
{
	int64_t		was;

	if (!cmheap_queued(x))
	{
		cmheap_entry entry = {key, x};

		if (h->n >= h->cap)
			return false;
		cmheap_place(h, entry, h->n++);
		cmheap_sift_up(h, x->pos);
		return true;
	}
	was = h->entries[x->pos].key;
	h->entries[x->pos].key = key;
	if (key < was)
		cmheap_sift_up(h, x->pos);
	else if (key > was)
		cmheap_sift_down(h, x->pos);
	return true;
}

/* Take "x" out of the heap; nothing happens if it is not in it. */
void
cmheap_remove(cmheap *h, cmheap_node *x)
{
	int			i = x->pos;
	cmheap_entry last;

	if (i < 0)
		return;
	x->pos = -1;
	last = h->entries[--h->n];
	if (last.node == x)
		return;
	/* The last entry fills the hole and goes up or down from there. */
	cmheap_place(h, last, i);
	if (i > 0 && h->entries[(i - 1) / 2].key > last.key)
		cmheap_sift_up(h, i);
	else
		cmheap_sift_down(h, i);
}

/* Take out and return the element due first, or NULL when empty. */
cmheap_node *
cmheap_pop(cmheap *h)
{
	cmheap_node *x = cmheap_top(h);

	if (x != NULL)
		cmheap_remove(h, x);
	return x;
}
