/*-------------------------------------------------------------------------
 *
 * cmproto_int.h
 *	  The writing cursor shared by the codec (cmproto.c) and the
 *	  PostgreSQL-compatible packets (cmproto_pg.c).
 *
 * Big-endian and bounds-checked: a write that does not fit sets
 * "overflow" instead of going past the end of the buffer, so the caller
 * checks once, when the message is complete.  Not for users of the
 * protocol, who include cmproto.h.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CMPROTO_INT_H
#define CMPROTO_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct wbuf
{
	uint8_t    *p;
	size_t		cap;
	size_t		off;
	bool		overflow;
} wbuf;

static inline void
put_u8(wbuf *b, uint8_t v)
{
	if (b->cap - b->off < 1)
	{
		b->overflow = true;
		return;
	}
	b->p[b->off++] = v;
}

static inline void
put_u16(wbuf *b, uint16_t v)
{
	put_u8(b, (uint8_t) (v >> 8));
	put_u8(b, (uint8_t) v);
}

static inline void
put_u32(wbuf *b, uint32_t v)
{
	put_u16(b, (uint16_t) (v >> 16));
	put_u16(b, (uint16_t) v);
}

static inline void
put_u64(wbuf *b, uint64_t v)
{
	put_u32(b, (uint32_t) (v >> 32));
	put_u32(b, (uint32_t) v);
}

static inline void
put_bytes(wbuf *b, const void *src, size_t n)
{
	if (b->cap - b->off < n)
	{
		b->overflow = true;
		return;
	}
	memcpy(b->p + b->off, src, n);
	b->off += n;
}

#endif							/* CMPROTO_INT_H */
