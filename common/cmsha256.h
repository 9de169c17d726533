/*-------------------------------------------------------------------------
 *
 * cmsha256.h
 *	  SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104), self-contained.
 *
 * Used by the heartbeat protocol's shared-key handshake (docs/protocol.md,
 * 3.2) on both sides, so it is built into the daemon, libpq-cm and the
 * watchdog extension: no allocation, no stdio, no global state.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CMSHA256_H
#define CMSHA256_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CMSHA256_DIGEST_LEN 32
#define CMSHA256_BLOCK_LEN	64

struct cmsha256_ctx
{
	uint32_t	state[8];
	uint64_t	bytes;			/* message length so far */
	size_t		buflen;
	uint8_t		buf[CMSHA256_BLOCK_LEN];
};

struct cmhmac_ctx
{
	struct cmsha256_ctx inner;
	uint8_t		okey[CMSHA256_BLOCK_LEN];	/* key XOR opad */
};

extern void cmsha256_init(struct cmsha256_ctx *ctx);
extern void cmsha256_update(struct cmsha256_ctx *ctx, const void *data, size_t len);
extern void cmsha256_final(struct cmsha256_ctx *ctx, uint8_t out[CMSHA256_DIGEST_LEN]);
extern void cmsha256(const void *data, size_t len, uint8_t out[CMSHA256_DIGEST_LEN]);

extern void cmhmac_init(struct cmhmac_ctx *ctx, const void *key, size_t keylen);
extern void cmhmac_update(struct cmhmac_ctx *ctx, const void *data, size_t len);
extern void cmhmac_final(struct cmhmac_ctx *ctx, uint8_t out[CMSHA256_DIGEST_LEN]);
extern void cmhmac_sha256(const void *key, size_t keylen, const void *msg,
						  size_t msglen, uint8_t out[CMSHA256_DIGEST_LEN]);

extern bool cmsha256_equal(const uint8_t *a, const uint8_t *b, size_t len);
extern void cmsha256_wipe(void *p, size_t len);

#endif							/* CMSHA256_H */
