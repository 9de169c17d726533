/*-------------------------------------------------------------------------
 *
 * test_cmaddrcount.c
 *	  Test that common/cmaddrcount.c counts per address under any mix of
 *	  additions and removals.
 *
 * A seeded random sequence of additions and removals over a pool of IPv4
 * and IPv6 addresses (the IPv4 ones chosen to share probe runs in a small
 * table, and each IPv4 address also present as the IPv6 address with the
 * same leading bytes, which must not be taken for it) runs against the
 * table and against a plain array of counts; after each one every
 * address's count and the number of addresses held agree with the model.
 * Then a table refuses a new address past half full, and removing an
 * address that has no count changes nothing.
 *
 *-------------------------------------------------------------------------
 */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cmaddrcount.h"
#include "tap.h"

#define NADDR		96
#define NOPS		200000

typedef struct addr
{
	int			family;
	uint8_t		bytes[16];
} addr;

static addr pool[NADDR];
static int	model[NADDR];

static bool
table_agrees(const cmaddrcount *t)
{
	uint32_t	held = 0;

	for (int i = 0; i < NADDR; i++)
	{
		if (cmaddrcount_get(t, pool[i].family, pool[i].bytes) != model[i])
			return false;
		if (model[i] > 0)
			held++;
	}
	return held == t->used;
}

int
main(void)
{
	cmaddrcount t;
	cmaddrcount_entry *entries;
	uint32_t	size = cmaddrcount_size(NADDR);
	int			bad_count = 0;
	int			bad_state = 0;
	int			extra;

	srandom(18);
	for (int i = 0; i < NADDR; i++)
	{
		memset(&pool[i], 0, sizeof(pool[i]));
		if (i < NADDR / 2)
		{
			pool[i].family = AF_INET;
			pool[i].bytes[0] = 10;
			pool[i].bytes[3] = (uint8_t) i;
		}
		else
		{
			/* the same leading bytes as an IPv4 address of the pool */
			pool[i].family = AF_INET6;
			pool[i].bytes[0] = 10;
			pool[i].bytes[3] = (uint8_t) (i - NADDR / 2);
		}
	}
	ok(size >= 2 * NADDR && (size & (size - 1)) == 0,
	   "the size for %d addresses is a power of two of at least twice that (%u)",
	   NADDR, size);
	entries = calloc(size, sizeof(*entries));
	cmaddrcount_init(&t, entries, size);
	ok(cmaddrcount_get(&t, AF_INET, pool[0].bytes) == 0,
	   "an empty table counts nothing");

	for (int op = 0; op < NOPS; op++)
	{
		int			i = random() % NADDR;
		int			got;

		if (random() % 2 == 0)
		{
			got = cmaddrcount_add(&t, pool[i].family, pool[i].bytes);
			if (got != ++model[i])
				bad_count++;
		}
		else
		{
			got = cmaddrcount_remove(&t, pool[i].family, pool[i].bytes);
			if (got != (model[i] > 0 ? --model[i] : -1))
				bad_count++;
		}
		if (!table_agrees(&t))
			bad_state++;
	}
	is_int(bad_count, 0, "%d random additions and removals return the new counts", NOPS);
	is_int(bad_state, 0, "after each, every address's count and the addresses held agree");

	/* empty it, then fill a small table past half */
	for (int i = 0; i < NADDR; i++)
		while (model[i] > 0)
		{
			cmaddrcount_remove(&t, pool[i].family, pool[i].bytes);
			model[i]--;
		}
	ok(t.used == 0 && table_agrees(&t), "removing every count empties the table");
	cmaddrcount_init(&t, entries, 16);
	extra = 0;
	for (int i = 0; i < NADDR / 2; i++)
		if (cmaddrcount_add(&t, pool[i].family, pool[i].bytes) < 0)
			extra++;
	is_int(NADDR / 2 - extra, 8, "a table of 16 entries holds 8 addresses");
	is_int(cmaddrcount_add(&t, pool[0].family, pool[0].bytes), 2,
		   "an address it holds still counts up when it is full");
	is_int(cmaddrcount_remove(&t, AF_INET6, pool[0].bytes), -1,
		   "removing an address that has no count says so");
	ok(t.used == 8, "and changes nothing");
	free(entries);
	return tap_done();
}
