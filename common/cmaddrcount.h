/*-------------------------------------------------------------------------
 *
 * cmaddrcount.h
 *	  How many of something each network address holds, in O(1).
 *
 * A hash table from an address (IPv4 or IPv6, without port) to a count,
 * with open addressing: an entry exists while its count is above zero.
 * The watchdog counts the registered heartbeat sessions of each client
 * address with it, for watchdog.max_sessions_per_address and for knowing
 * whether a lost session was its host's last, which with thousands of
 * sessions must not cost a pass over all of them.  The caller owns the
 * array of entries; the table allocates nothing and calls nothing but
 * memcmp/memcpy/memset, so it is compiled into the extension as well.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CMADDRCOUNT_H
#define CMADDRCOUNT_H

#include <stdbool.h>
#include <stdint.h>

typedef struct cmaddrcount_entry
{
	uint8_t		family;			/* AF_INET or AF_INET6; 0: free */
	uint8_t		addr[16];		/* 4 or 16 bytes used, the rest zero */
	int32_t		count;
} cmaddrcount_entry;

typedef struct cmaddrcount
{
	cmaddrcount_entry *entries; /* the caller's array */
	uint32_t	mask;			/* its size minus one; a power of two */
	uint32_t	used;			/* addresses with a count */
} cmaddrcount;

/*
 * Size the caller's array for "max" addresses at most: a power of two of
 * at least twice that, so that probes stay short.
 */
extern uint32_t cmaddrcount_size(uint32_t max);
extern void cmaddrcount_init(cmaddrcount *t, cmaddrcount_entry *entries,
							 uint32_t size);

/*
 * The count of an address; adding returns the new count, or -1 when the
 * table has no room for a new address (more than half full); removing
 * returns the new count, or -1 for an address that has none.
 */
extern int	cmaddrcount_get(const cmaddrcount *t, int family,
							const uint8_t *addr);
extern int	cmaddrcount_add(cmaddrcount *t, int family, const uint8_t *addr);
extern int	cmaddrcount_remove(cmaddrcount *t, int family, const uint8_t *addr);

#endif							/* CMADDRCOUNT_H */
