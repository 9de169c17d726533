/*-------------------------------------------------------------------------
 *
 * cmproto_bytes.h
 *	  Frames written by hand, and guarded copies of them, for the unit
 *	  tests of the wire-protocol codec (test_cmproto*.c).
 *
 * Header-only, as tap.h is: each test program includes it once, in its one
 * source file, and uses what it needs of it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CM_CMPROTO_BYTES_H
#define CM_CMPROTO_BYTES_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cmproto.h"
#include "tap.h"

/* Peers, as the spec's "from" columns name them. */
#define P_A		CMPROTO_PEER_APP
#define P_L		CMPROTO_PEER_LISTENER
#define P_C		CMPROTO_PEER_CONMGR
#define P_W		CMPROTO_PEER_WATCHDOG
#define P_ALL	(P_A | P_L | P_C | P_W)

/* ---- a byte builder, for frames written by hand from the spec ---- */

typedef struct bb
{
	uint8_t		d[2048];
	size_t		n;
} bb;

static void TAP_UNUSED
bb_init(bb *b)
{
	b->n = 0;
}

static void TAP_UNUSED
b_u8(bb *b, unsigned v)
{
	b->d[b->n++] = (uint8_t) v;
}

static void TAP_UNUSED
b_u16(bb *b, unsigned v)
{
	b_u8(b, (v >> 8) & 0xff);
	b_u8(b, v & 0xff);
}

static void TAP_UNUSED
b_u32(bb *b, uint32_t v)
{
	b_u16(b, (v >> 16) & 0xffff);
	b_u16(b, v & 0xffff);
}

static void TAP_UNUSED
b_u64(bb *b, uint64_t v)
{
	b_u32(b, (uint32_t) (v >> 32));
	b_u32(b, (uint32_t) v);
}

static void TAP_UNUSED
b_bytes(bb *b, const void *p, size_t n)
{
	memcpy(b->d + b->n, p, n);
	b->n += n;
}

/* A spec string: u16 length, then the bytes (no terminator). */
static void TAP_UNUSED
b_str(bb *b, const char *s)
{
	size_t		n = strlen(s);

	b_u16(b, (unsigned) n);
	b_bytes(b, s, n);
}

/* Header: type, flags 0, length to be filled by b_fin(). */
static void TAP_UNUSED
b_hdr(bb *b, unsigned type)
{
	bb_init(b);
	b_u8(b, type);
	b_u8(b, 0);
	b_u16(b, 0);
}

static void TAP_UNUSED
b_fin(bb *b)
{
	b->d[2] = (uint8_t) (b->n >> 8);
	b->d[3] = (uint8_t) b->n;
}

static void TAP_UNUSED
put16_at(bb *b, size_t off, unsigned v)
{
	b->d[off] = (uint8_t) (v >> 8);
	b->d[off + 1] = (uint8_t) v;
}

/* Append the bytes of "48 00 0c ..." to b; "78*63" is 63 bytes 0x78. */
static void TAP_UNUSED
b_hex_append(bb *b, const char *hex)
{
	while (*hex)
	{
		unsigned	v;
		unsigned	count = 1;
		int			used;

		if (*hex == ' ')
		{
			hex++;
			continue;
		}
		if (sscanf(hex, "%2x%n", &v, &used) != 1)
			abort();
		hex += used;
		if (*hex == '*')
		{
			if (sscanf(hex + 1, "%u%n", &count, &used) != 1)
				abort();
			hex += 1 + used;
		}
		while (count-- > 0)
			b_u8(b, v);
	}
}

/* Parse "48 00 0c ..." into b. */
static void TAP_UNUSED
b_hex(bb *b, const char *hex)
{
	bb_init(b);
	b_hex_append(b, hex);
}

/*
 * A copy of exactly n bytes that ends where an inaccessible page begins, so
 * that a decoder reading even one byte past its input faults, in every run
 * and not only under valgrind.  One copy is live at a time (free_exact
 * before the next dup_exact); a fault is reported as a failed test.
 */
#define GUARD_ARENA		(64 * 1024)

static uint8_t *guard_arena;	/* GUARD_ARENA bytes, then the guard page */
static bool guard_live;

static void TAP_UNUSED
guard_fault(int sig)
{
	static const char msg[] =
		"not ok - a decoder read past the end of its input (guard page hit)\n";

	(void) sig;
	if (write(STDOUT_FILENO, msg, sizeof(msg) - 1) < 0)
		_exit(3);
	_exit(2);
}

static uint8_t *TAP_UNUSED
dup_exact(const void *p, size_t n)
{
	if (guard_arena == NULL)
	{
		long		page = sysconf(_SC_PAGESIZE);
		struct sigaction sa;
		uint8_t    *m = mmap(NULL, GUARD_ARENA + page, PROT_READ | PROT_WRITE,
							 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (m == MAP_FAILED || GUARD_ARENA % page != 0 ||
			mprotect(m + GUARD_ARENA, page, PROT_NONE) != 0)
			abort();
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = guard_fault;
		sigaction(SIGSEGV, &sa, NULL);
		sigaction(SIGBUS, &sa, NULL);
		guard_arena = m;
	}
	if (guard_live || n > GUARD_ARENA)
		abort();
	guard_live = true;
	if (n)
		memcpy(guard_arena + GUARD_ARENA - n, p, n);
	return guard_arena + GUARD_ARENA - n;
}

static void TAP_UNUSED
free_exact(uint8_t *p)
{
	if (!guard_live || p < guard_arena || p > guard_arena + GUARD_ARENA)
		abort();
	guard_live = false;
}

static cmproto_msg TAP_UNUSED
mk(uint8_t type)
{
	cmproto_msg m;

	memset(&m, 0, sizeof(m));
	m.type = type;
	return m;
}

static void TAP_UNUSED
fill_pattern(uint8_t *p, size_t n, uint8_t start)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t) (start + i);
}

static void TAP_UNUSED
fill_chars(char *s, size_t n, char c)
{
	memset(s, c, n);
	s[n] = '\0';
}

#endif							/* CM_CMPROTO_BYTES_H */
