/*-------------------------------------------------------------------------
 *
 * cmsha256.c
 *	  SHA-256 and HMAC-SHA256, written from FIPS 180-4 and RFC 2104.
 *
 * Small and slow-enough-for-a-handshake: two MACs per heartbeat session,
 * never per heartbeat.  See cmsha256.h for why it is self-contained.
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "cmsha256.h"

static const uint32_t K[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1,
	0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
	0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
	0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
	0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
	0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
	0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
	0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
	0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
};

#define ROTR(x, n)	(((x) >> (n)) | ((x) << (32 - (n))))

static void
compress(uint32_t state[8], const uint8_t block[CMSHA256_BLOCK_LEN])
{
	uint32_t	w[64];
	uint32_t	a,
				b,
				c,
				d,
				e,
				f,
				g,
				h;

	for (int i = 0; i < 16; i++)
		w[i] = ((uint32_t) block[4 * i] << 24) |
			((uint32_t) block[4 * i + 1] << 16) |
			((uint32_t) block[4 * i + 2] << 8) |
			(uint32_t) block[4 * i + 3];
	for (int i = 16; i < 64; i++)
	{
		uint32_t	s0 = ROTR(w[i - 15], 7) ^ ROTR(w[i - 15], 18) ^ (w[i - 15] >> 3);
		uint32_t	s1 = ROTR(w[i - 2], 17) ^ ROTR(w[i - 2], 19) ^ (w[i - 2] >> 10);

		w[i] = w[i - 16] + s0 + w[i - 7] + s1;
	}

	a = state[0];
	b = state[1];
	c = state[2];
	d = state[3];
	e = state[4];
	f = state[5];
	g = state[6];
	h = state[7];
	for (int i = 0; i < 64; i++)
	{
		uint32_t	S1 = ROTR(e, 6) ^ ROTR(e, 11) ^ ROTR(e, 25);
		uint32_t	ch = (e & f) ^ (~e & g);
		uint32_t	t1 = h + S1 + ch + K[i] + w[i];
		uint32_t	S0 = ROTR(a, 2) ^ ROTR(a, 13) ^ ROTR(a, 22);
		uint32_t	maj = (a & b) ^ (a & c) ^ (b & c);
		uint32_t	t2 = S0 + maj;

		h = g;
		g = f;
		f = e;
		e = d + t1;
		d = c;
		c = b;
		b = a;
		a = t1 + t2;
	}
	state[0] += a;
	state[1] += b;
	state[2] += c;
	state[3] += d;
	state[4] += e;
	state[5] += f;
	state[6] += g;
	state[7] += h;
	cmsha256_wipe(w, sizeof(w));
}

void
cmsha256_init(struct cmsha256_ctx *ctx)
{
	static const uint32_t H0[8] = {
		0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
		0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19
	};

	memcpy(ctx->state, H0, sizeof(H0));
	ctx->bytes = 0;
	ctx->buflen = 0;
}

void
cmsha256_update(struct cmsha256_ctx *ctx, const void *data, size_t len)
{
	const uint8_t *p = data;

	ctx->bytes += len;
	if (ctx->buflen > 0)
	{
		size_t		n = CMSHA256_BLOCK_LEN - ctx->buflen;

		if (n > len)
			n = len;
		memcpy(ctx->buf + ctx->buflen, p, n);
		ctx->buflen += n;
		p += n;
		len -= n;
		if (ctx->buflen < CMSHA256_BLOCK_LEN)
			return;
		compress(ctx->state, ctx->buf);
		ctx->buflen = 0;
	}
	while (len >= CMSHA256_BLOCK_LEN)
	{
		compress(ctx->state, p);
		p += CMSHA256_BLOCK_LEN;
		len -= CMSHA256_BLOCK_LEN;
	}
	memcpy(ctx->buf, p, len);
	ctx->buflen = len;
}

void
cmsha256_final(struct cmsha256_ctx *ctx, uint8_t out[CMSHA256_DIGEST_LEN])
{
	uint64_t	bits = ctx->bytes * 8;
	uint8_t		pad = 0x80;
	uint8_t		zero = 0;
	uint8_t		lenbuf[8];

	/* 0x80, zeros up to 56 mod 64, then the bit length, big-endian. */
	cmsha256_update(ctx, &pad, 1);
	while (ctx->buflen != 56)
		cmsha256_update(ctx, &zero, 1);
	for (int i = 0; i < 8; i++)
		lenbuf[i] = (uint8_t) (bits >> (56 - 8 * i));
	cmsha256_update(ctx, lenbuf, 8);

	for (int i = 0; i < 8; i++)
	{
		out[4 * i] = (uint8_t) (ctx->state[i] >> 24);
		out[4 * i + 1] = (uint8_t) (ctx->state[i] >> 16);
		out[4 * i + 2] = (uint8_t) (ctx->state[i] >> 8);
		out[4 * i + 3] = (uint8_t) ctx->state[i];
	}
	cmsha256_wipe(ctx, sizeof(*ctx));
}

void
cmsha256(const void *data, size_t len, uint8_t out[CMSHA256_DIGEST_LEN])
{
	struct cmsha256_ctx ctx;

	cmsha256_init(&ctx);
	cmsha256_update(&ctx, data, len);
	cmsha256_final(&ctx, out);
}

void
cmhmac_init(struct cmhmac_ctx *ctx, const void *key, size_t keylen)
{
	uint8_t		k[CMSHA256_BLOCK_LEN];
	uint8_t		ikey[CMSHA256_BLOCK_LEN];

	/* A key longer than a block is replaced by its digest (RFC 2104). */
	memset(k, 0, sizeof(k));
	if (keylen > CMSHA256_BLOCK_LEN)
		cmsha256(key, keylen, k);
	else if (keylen > 0)
		memcpy(k, key, keylen);

	for (int i = 0; i < CMSHA256_BLOCK_LEN; i++)
	{
		ikey[i] = k[i] ^ 0x36;
		ctx->okey[i] = k[i] ^ 0x5c;
	}
	cmsha256_init(&ctx->inner);
	cmsha256_update(&ctx->inner, ikey, sizeof(ikey));
	cmsha256_wipe(k, sizeof(k));
	cmsha256_wipe(ikey, sizeof(ikey));
}

void
cmhmac_update(struct cmhmac_ctx *ctx, const void *data, size_t len)
{
	cmsha256_update(&ctx->inner, data, len);
}

void
cmhmac_final(struct cmhmac_ctx *ctx, uint8_t out[CMSHA256_DIGEST_LEN])
{
	uint8_t		inner[CMSHA256_DIGEST_LEN];
	struct cmsha256_ctx outer;

	cmsha256_final(&ctx->inner, inner);
	cmsha256_init(&outer);
	cmsha256_update(&outer, ctx->okey, sizeof(ctx->okey));
	cmsha256_update(&outer, inner, sizeof(inner));
	cmsha256_final(&outer, out);
	cmsha256_wipe(inner, sizeof(inner));
	cmsha256_wipe(ctx, sizeof(*ctx));
}

void
cmhmac_sha256(const void *key, size_t keylen, const void *msg, size_t msglen,
			  uint8_t out[CMSHA256_DIGEST_LEN])
{
	struct cmhmac_ctx ctx;

	cmhmac_init(&ctx, key, keylen);
	cmhmac_update(&ctx, msg, msglen);
	cmhmac_final(&ctx, out);
}

/* Constant time: every byte is looked at, whatever differs first. */
bool
cmsha256_equal(const uint8_t *a, const uint8_t *b, size_t len)
{
	uint8_t		diff = 0;

	for (size_t i = 0; i < len; i++)
		diff |= a[i] ^ b[i];
	return diff == 0;
}

/* Clear secrets in a way the compiler may not drop as a dead store. */
void
cmsha256_wipe(void *p, size_t len)
{
	volatile uint8_t *v = p;

	while (len-- > 0)
		*v++ = 0;
}
