/*-------------------------------------------------------------------------
 *
 * cmproto_handshake.c
 *	  What the two ends of a session agree on before any other message:
 *	  the protocol version, and on a heartbeat session with a shared key,
 *	  the proofs that each side holds it.
 *
 * docs/protocol.md sections 5 (versions) and 3.2 (authentication).
 * Compiled into the daemon, libpq-cm and the watchdog extension, like the
 * codec (cmproto.c), and held to the same rule: no allocation, no stdio,
 * no exit.
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "cmproto.h"
#include "cmsha256.h"

/*
 * The version two peers speak: the highest in both [min, max] ranges, or 0
 * when the ranges do not meet.
 */
int
cmproto_negotiate(uint16_t min_a, uint16_t max_a,
				  uint16_t min_b, uint16_t max_b)
{
	uint16_t	hi = max_a < max_b ? max_a : max_b;
	uint16_t	lo = min_a > min_b ? min_a : min_b;

	if (min_a > max_a || min_b > max_b || hi < lo || hi < 1)
		return 0;
	return hi;
}

/*
 * HMAC-SHA256(key, label || nonce_c || nonce_w): the proof one side of a
 * heartbeat session sends to show it holds the shared key.  The label is
 * CMPROTO_AUTH_LABEL_WATCHDOG or CMPROTO_AUTH_LABEL_CONMGR.
 */
void
cmproto_hb_proof(const uint8_t *key, size_t keylen, const char *label,
				 const uint8_t nonce_c[CMPROTO_NONCE_LEN],
				 const uint8_t nonce_w[CMPROTO_NONCE_LEN],
				 uint8_t proof[CMPROTO_PROOF_LEN])
{
	struct cmhmac_ctx ctx;

	cmhmac_init(&ctx, key, keylen);
	cmhmac_update(&ctx, label, strlen(label));
	cmhmac_update(&ctx, nonce_c, CMPROTO_NONCE_LEN);
	cmhmac_update(&ctx, nonce_w, CMPROTO_NONCE_LEN);
	cmhmac_final(&ctx, proof);
}
