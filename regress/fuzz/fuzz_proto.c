/*-------------------------------------------------------------------------
 *
 * fuzz_proto.c
 *	  libFuzzer target: the wire-protocol codec, for one protocol.
 *
 * Built twice: with FUZZ_APP for the application protocol (frames from the
 * client library and from conmgr's listener, and the PostgreSQL first
 * packets and ErrorResponses the two exchange) and with FUZZ_HB for the
 * heartbeat protocol (frames from conmgr's heartbeat role and from the
 * watchdog).  The input is a stream of frames.  Every frame the codec
 * accepts must encode back to exactly its bytes; nothing may read past the
 * input (AddressSanitizer) or misbehave (UndefinedBehaviorSanitizer).
 *
 *-------------------------------------------------------------------------
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cmproto.h"

#if defined(FUZZ_APP)
static const cmproto_peer peers[] = {CMPROTO_PEER_APP, CMPROTO_PEER_LISTENER};
#elif defined(FUZZ_HB)
static const cmproto_peer peers[] = {CMPROTO_PEER_CONMGR, CMPROTO_PEER_WATCHDOG};
#else
#error "define FUZZ_APP or FUZZ_HB"
#endif

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * Decode one frame as each peer, at each protocol version; a success must
 * round-trip at that version.
 */
static void
check_frame(const uint8_t *frame, size_t len)
{
	for (size_t p = 0; p < sizeof(peers) / sizeof(peers[0]); p++)
		for (int v = CMPROTO_MIN_VERSION; v <= CMPROTO_VERSION; v++)
		{
			cmproto_msg m;
			uint8_t		again[CMPROTO_MAX_MSG];
			int			n;

			if (cmproto_decode_version(frame, len, peers[p], v, &m) != CMPROTO_OK)
				continue;
			n = cmproto_encode_version(&m, v, again, sizeof(again));
			if (n < 0 || (size_t) n != len || memcmp(again, frame, len) != 0)
				abort();
			(void) cmproto_type_name(m.type);
		}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t		off = 0;

#ifdef FUZZ_APP
	{
		size_t		len;
		cmproto_pg_kind kind;
		cmproto_pg_error err;

		/* the first packet a client sends, and conmgr's ErrorResponse */
		if (cmproto_pg_classify(data, size, &len, &kind) == CMPROTO_OK && len > size)
			abort();
		if (cmproto_pg_decode_error(data, size, &len, &err) == CMPROTO_OK &&
			(len > size || err.severity == NULL || err.message == NULL))
			abort();
	}
#endif
	while (off < size)
	{
		size_t		flen;
		int			rc = cmproto_frame(data + off, size - off, &flen);
		uint8_t    *exact;

		if (rc != CMPROTO_OK)
			break;				/* incomplete or invalid: a peer is cut off */
		if (flen < CMPROTO_HEADER_LEN || flen > size - off)
			abort();
		/* a frame of its own, so that ASan sees any read past its end */
		exact = malloc(flen);
		memcpy(exact, data + off, flen);
		check_frame(exact, flen);
		free(exact);
		off += flen;
	}
	return 0;
}
