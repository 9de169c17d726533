/*-------------------------------------------------------------------------
 *
 * cmaddrcount.c
 *	  Counts per network address (see cmaddrcount.h).
 *
 * Linear probing; a removal that frees an entry moves later entries of
 * the same probe run back into the hole (backward-shift deletion), so the
 * table needs no tombstones and a lookup stops at the first free entry.
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>
#include <sys/socket.h>

#include "cmaddrcount.h"

#define ADDR_LEN(family)	((family) == AF_INET ? 4 : 16)

/* FNV-1a over the family and the address bytes. */
static uint32_t
addr_hash(int family, const uint8_t *addr)
{
	uint32_t	h = 2166136261u;
	int			len = ADDR_LEN(family);

	h = (h ^ (uint8_t) family) * 16777619u;
	for (int i = 0; i < len; i++)
		h = (h ^ addr[i]) * 16777619u;
	return h;
}

static bool
entry_is(const cmaddrcount_entry *e, int family, const uint8_t *addr)
{
	return e->family == family && memcmp(e->addr, addr, ADDR_LEN(family)) == 0;
}

/* The entry of the address, or the free one where it would go. */
static uint32_t
probe(const cmaddrcount *t, int family, const uint8_t *addr)
{
	uint32_t	i = addr_hash(family, addr) & t->mask;

	while (t->entries[i].family != 0 && !entry_is(&t->entries[i], family, addr))
		i = (i + 1) & t->mask;
	return i;
}

uint32_t
cmaddrcount_size(uint32_t max)
{
	uint32_t	size = 4;

	while (size < 2 * max && size < (1u << 30))
		size <<= 1;
	return size;
}

void
cmaddrcount_init(cmaddrcount *t, cmaddrcount_entry *entries, uint32_t size)
{
	t->entries = entries;
	t->mask = size - 1;
	t->used = 0;
	memset(entries, 0, sizeof(*entries) * size);
}

int
cmaddrcount_get(const cmaddrcount *t, int family, const uint8_t *addr)
{
	return t->entries[probe(t, family, addr)].count;
}

int
cmaddrcount_add(cmaddrcount *t, int family, const uint8_t *addr)
{
	uint32_t	i = probe(t, family, addr);
	cmaddrcount_entry *e = &t->entries[i];

	if (e->family == 0)
	{
		/* at most half full: probes stay short and one entry stays free */
		if (t->used + 1 > (t->mask + 1) / 2)
			return -1;
		memset(e, 0, sizeof(*e));
		e->family = (uint8_t) family;
		memcpy(e->addr, addr, ADDR_LEN(family));
		t->used++;
	}
	return ++e->count;
}

int
cmaddrcount_remove(cmaddrcount *t, int family, const uint8_t *addr)
{
	uint32_t	hole = probe(t, family, addr);
	uint32_t	j = hole;

	if (t->entries[hole].family == 0)
		return -1;
	if (--t->entries[hole].count > 0)
		return t->entries[hole].count;

	/*
	 * Free the entry, then pull back every later entry of the run that its
	 * own probe would not find past the hole.
	 */
	t->used--;
	for (;;)
	{
		uint32_t	home;

		j = (j + 1) & t->mask;
		if (t->entries[j].family == 0)
			break;
		home = addr_hash(t->entries[j].family, t->entries[j].addr) & t->mask;
		/* j's home lies cyclically in (hole, j]: it stays */
		if (hole <= j ? (hole < home && home <= j) : (hole < home || home <= j))
			continue;
		t->entries[hole] = t->entries[j];
		hole = j;
	}
	memset(&t->entries[hole], 0, sizeof(t->entries[hole]));
	return 0;
}
