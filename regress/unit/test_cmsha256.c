/*-------------------------------------------------------------------------
 *
 * test_cmsha256.c
 *	  Test that common/cmsha256.c computes SHA-256 and HMAC-SHA256 right.
 *
 * Vectors: FIPS 180 examples, padding boundaries (expected values computed
 * with an independent implementation when this test was written) and the
 * seven test cases of RFC 4231.
 *
 *-------------------------------------------------------------------------
 */
#include <stdlib.h>

#include "cmproto.h"
#include "cmsha256.h"
#include "tap.h"

static const char *
hex(const uint8_t *d, size_t n)
{
	static char buf[2 * 64 + 1];

	for (size_t i = 0; i < n; i++)
		snprintf(buf + 2 * i, 3, "%02x", d[i]);
	return buf;
}

static void
fill(uint8_t *p, int c, size_t n)
{
	memset(p, c, n);
}

int
main(void)
{
	uint8_t		out[32];
	uint8_t		out2[32];
	uint8_t		msg[256];
	struct cmsha256_ctx ctx;
	struct cmhmac_ctx hctx;

	/* FIPS 180 examples */
	cmsha256("", 0, out);
	is_str(hex(out, 32), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "empty string");
	cmsha256("abc", 3, out);
	is_str(hex(out, 32), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "abc");
	cmsha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56, out);
	is_str(hex(out, 32), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1", "448-bit message");

	/* One million 'a' in uneven chunks. */
	{
		char		chunk[997];
		size_t		left = 1000000;
		size_t		step = 1;

		memset(chunk, 'a', sizeof(chunk));
		cmsha256_init(&ctx);
		while (left > 0)
		{
			size_t		n = step < left ? step : left;

			cmsha256_update(&ctx, chunk, n);
			left -= n;
			step = (step + 7) % sizeof(chunk) + 1;	/* 1..997 */
		}
		cmsha256_final(&ctx, out);
		is_str(hex(out, 32), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0", "one million a");
	}

	/* Padding boundaries: bytes 0, 1, 2, ... */
	{
		static const struct
		{
			size_t		n;
			const char *want;
		}			pads[] = {
			{55, "463eb28e72f82e0a96c0a4cc53690c571281131f672aa229e0d45ae59b598b59"},
			{56, "da2ae4d6b36748f2a318f23e7ab1dfdf45acdc9d049bd80e59de82a60895f562"},
			{63, "29af2686fd53374a36b0846694cc342177e428d1647515f078784d69cdb9e488"},
			{64, "fdeab9acf3710362bd2658cdc9a29e8f9c757fcf9811603a8c447cd1d9151108"},
			{65, "4bfd2c8b6f1eec7a2afeb48b934ee4b2694182027e6d0fc075074f2fabb31781"},
		};

		for (int i = 0; i < 256; i++)
			msg[i] = (uint8_t) i;
		for (size_t i = 0; i < sizeof(pads) / sizeof(pads[0]); i++)
		{
			cmsha256(msg, pads[i].n, out);
			is_str(hex(out, 32), pads[i].want, "%zu bytes", pads[i].n);
		}
	}

	/* Incremental split at every offset equals one-shot. */
	{
		int			bad = 0;

		cmsha256(msg, 200, out);
		for (size_t cut = 0; cut <= 200; cut++)
		{
			cmsha256_init(&ctx);
			cmsha256_update(&ctx, msg, cut);
			cmsha256_update(&ctx, msg + cut, 200 - cut);
			cmsha256_final(&ctx, out2);
			if (memcmp(out, out2, 32) != 0)
				bad++;
		}
		is_int(bad, 0, "two-part updates at every offset match the one-shot digest");
	}

	/* RFC 4231 */
	{
		uint8_t		key[131];
		uint8_t		data[50];

		fill(key, 0x0b, 20);
		cmhmac_sha256(key, 20, "Hi There", 8, out);
		is_str(hex(out, 32), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7", "RFC 4231 case 1");
		cmhmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, out);
		is_str(hex(out, 32), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", "RFC 4231 case 2");
		fill(key, 0xaa, 20);
		fill(data, 0xdd, 50);
		cmhmac_sha256(key, 20, data, 50, out);
		is_str(hex(out, 32), "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe", "RFC 4231 case 3");
		for (int i = 0; i < 25; i++)
			key[i] = (uint8_t) (i + 1);
		fill(data, 0xcd, 50);
		cmhmac_sha256(key, 25, data, 50, out);
		is_str(hex(out, 32), "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b", "RFC 4231 case 4");
		fill(key, 0x0c, 20);
		cmhmac_sha256(key, 20, "Test With Truncation", 20, out);
		is_str(hex(out, 16), "a3b6167473100ee06e0c796c2955552b", "RFC 4231 case 5 (128 bits)");
		fill(key, 0xaa, 131);
		cmhmac_sha256(key, 131, "Test Using Larger Than Block-Size Key - Hash Key First", 54, out);
		is_str(hex(out, 32), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54", "RFC 4231 case 6 (long key)");
		{
			const char *d7 = "This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.";

			cmhmac_sha256(key, 131, d7, strlen(d7), out);
			is_str(hex(out, 32), "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2", "RFC 4231 case 7 (long key and data)");

			/* The same incrementally, as the handshake uses it. */
			cmhmac_init(&hctx, key, 131);
			cmhmac_update(&hctx, d7, 10);
			cmhmac_update(&hctx, d7 + 10, strlen(d7) - 10);
			cmhmac_final(&hctx, out2);
			ok(memcmp(out, out2, 32) == 0, "incremental HMAC equals one-shot");
		}
	}

	/* The heartbeat handshake's proofs (docs/protocol.md 3.2), by label. */
	{
		uint8_t		nc[CMPROTO_NONCE_LEN];
		uint8_t		nw[CMPROTO_NONCE_LEN];
		const char *k = "correct-horse-battery-staple";

		memset(nc, 1, sizeof(nc));
		memset(nw, 2, sizeof(nw));
		cmproto_hb_proof((const uint8_t *) k, strlen(k), CMPROTO_AUTH_LABEL_WATCHDOG, nc, nw, out);
		is_str(hex(out, 32), "36e0e9007ec9161a7ee5f77828ca74dba0c7886f73e63f89153b4aa973b47c91",
			   "watchdog proof = HMAC(key, label || nonce_c || nonce_w)");
		cmproto_hb_proof((const uint8_t *) k, strlen(k), CMPROTO_AUTH_LABEL_CONMGR, nc, nw, out);
		is_str(hex(out, 32), "4595ae485c7318576a03931e9c7a8424fe13f0f0858af7d9a0e7c2ef82454998",
			   "conmgr proof uses its own label");
	}

	/* Constant-time comparison */
	memset(out, 1, 32);
	memset(out2, 1, 32);
	ok(cmsha256_equal(out, out2, 32), "equal buffers compare equal");
	out2[31] ^= 0x80;
	ok(!cmsha256_equal(out, out2, 32), "last-byte difference detected");
	out2[31] ^= 0x80;
	out2[0] ^= 1;
	ok(!cmsha256_equal(out, out2, 32), "first-byte difference detected");
	ok(cmsha256_equal(out, out2, 0), "zero-length compare is equal");

	return tap_done();
}
