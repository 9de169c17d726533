/*-------------------------------------------------------------------------
 *
 * cmheap.c
 *	  A binary min-heap of timers (see cmheap.h).
 *
 * The array is the usual implicit tree: the children of i are 2i+1 and
 * 2i+2.  Every move of an element writes its new index into its node, so
 * that cmheap_set() and cmheap_remove() start from where it is.
 *
 *-------------------------------------------------------------------------
 */
#include "cmheap.h"

static inline void
cmheap_place(cmheap *h, cmheap_node *x, int i)
{
	h->nodes[i] = x;
	x->pos = i;
}

/* Move the element at i towards the root while its parent is due later. */
static void
cmheap_sift_up(cmheap *h, int i)
{
	cmheap_node *x = h->nodes[i];

	while (i > 0)
	{
		int			parent = (i - 1) / 2;

		if (h->nodes[parent]->key <= x->key)
			break;
		cmheap_place(h, h->nodes[parent], i);
		i = parent;
	}
	cmheap_place(h, x, i);
}

/* Move the element at i towards the leaves while a child is due earlier. */
static void
cmheap_sift_down(cmheap *h, int i)
{
	cmheap_node *x = h->nodes[i];

	for (;;)
	{
		int			child = 2 * i + 1;

		if (child >= h->n)
			break;
		if (child + 1 < h->n && h->nodes[child + 1]->key < h->nodes[child]->key)
			child++;
		if (x->key <= h->nodes[child]->key)
			break;
		cmheap_place(h, h->nodes[child], i);
		i = child;
	}
	cmheap_place(h, x, i);
}

/* An empty heap over the caller's array of "cap" pointers. */
void
cmheap_init(cmheap *h, cmheap_node **storage, int cap)
{
	h->nodes = storage;
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
	if (!cmheap_queued(x))
	{
		if (h->n >= h->cap)
			return false;
		x->key = key;
		cmheap_place(h, x, h->n++);
		cmheap_sift_up(h, x->pos);
		return true;
	}
	if (key < x->key)
	{
		x->key = key;
		cmheap_sift_up(h, x->pos);
	}
	else if (key > x->key)
	{
		x->key = key;
		cmheap_sift_down(h, x->pos);
	}
	return true;
}

/* Take "x" out of the heap; nothing happens if it is not in it. */
void
cmheap_remove(cmheap *h, cmheap_node *x)
{
	int			i = x->pos;
	cmheap_node *last;

	if (i < 0)
		return;
	x->pos = -1;
	last = h->nodes[--h->n];
	if (last == x)
		return;
	/* The last element fills the hole and goes up or down from there. */
	cmheap_place(h, last, i);
	if (i > 0 && h->nodes[(i - 1) / 2]->key > last->key)
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
