/*-------------------------------------------------------------------------
 *
 * test_fwkeywatch.c
 *	  Test roles/forwarder/keywatch.c: a session's BackendKeyData read
 *	  from the server's bytes as they pass.
 *
 * A server's start-up messages (authentication, parameters, the key,
 * ReadyForQuery) yield the key, in one piece or a byte at a time, after a
 * startup packet sent directly, after 'N' to an SSLRequest, and after 'N'
 * to a GSSENCRequest and 'N' to the SSLRequest that follows it.  The
 * watch ends without a key when the server agrees to TLS or GSSAPI, at
 * ReadyForQuery or an ErrorResponse before any key, on a key of another
 * length than protocol 3.0's, on a length no message has, and after 64 kB
 * without a key.
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "forwarder.h"
#include "tap.h"

static const uint8_t key[8] = {0x00, 0x00, 0x30, 0x39, 0xde, 0xad, 0xbe, 0xef};

/* Append a message of type t with body b (n bytes) to buf at *len. */
static void
msg(uint8_t *buf, size_t *len, char t, const void *b, uint32_t n)
{
	buf[(*len)++] = (uint8_t) t;
	buf[(*len)++] = (uint8_t) ((n + 4) >> 24);
	buf[(*len)++] = (uint8_t) ((n + 4) >> 16);
	buf[(*len)++] = (uint8_t) ((n + 4) >> 8);
	buf[(*len)++] = (uint8_t) (n + 4);
	memcpy(buf + *len, b, n);
	*len += n;
}

/* A server's start-up: after the answer bytes, AuthenticationOk, two
 * ParameterStatus, BackendKeyData (klen bytes), ReadyForQuery. */
static size_t
startup(uint8_t *buf, const char *answers, uint32_t klen)
{
	size_t		len = strlen(answers);
	uint8_t		kbody[16] = {0};

	memcpy(buf, answers, len);
	msg(buf, &len, 'R', "\0\0\0\0", 4);
	msg(buf, &len, 'S', "server_version\00015.8", 20);
	msg(buf, &len, 'S', "TimeZone\000UTC", 13);
	memcpy(kbody, key, sizeof(key));
	msg(buf, &len, 'K', kbody, klen);
	msg(buf, &len, 'Z', "I", 1);
	return len;
}

/* Feed buf whole, or a byte at a time; whether the key was found. */
static bool
watch(const uint8_t *buf, size_t len, bool answer_first, bool bytewise, bool *still)
{
	fw_keywatch w;

	fw_keywatch_start(&w, answer_first);
	*still = true;
	if (bytewise)
		for (size_t i = 0; i < len; i++)
			*still = fw_keywatch_feed(&w, buf + i, 1);
	else
		*still = fw_keywatch_feed(&w, buf, len);
	return w.found && memcmp(w.key, key, sizeof(key)) == 0;
}

int
main(void)
{
	static const uint8_t zeros[996];
	uint8_t		buf[70000];
	size_t		len;
	bool		still;
	fw_keywatch w;

	len = startup(buf, "", 8);
	ok(watch(buf, len, false, false, &still) && !still,
	   "a startup packet sent directly: the key, and the watch is over");
	ok(watch(buf, len, false, true, &still) && !still, "the same a byte at a time");
	len = startup(buf, "N", 8);
	ok(watch(buf, len, true, false, &still), "'N' to an SSLRequest: the key");
	ok(watch(buf, len, true, true, &still), "the same a byte at a time");
	len = startup(buf, "NN", 8);
	ok(watch(buf, len, true, true, &still),
	   "'N' to a GSSENCRequest, then 'N' to an SSLRequest: the key");
	len = startup(buf, "S", 8);
	ok(!watch(buf, len, true, false, &still) && !still, "'S': TLS, no key, the watch is over");
	len = startup(buf, "G", 8);
	ok(!watch(buf, len, true, false, &still) && !still, "'G': GSSAPI, no key");
	len = startup(buf, "NS", 8);
	ok(!watch(buf, len, true, false, &still) && !still, "'N' to GSSAPI, then 'S': no key");
	len = startup(buf, "", 12);
	ok(!watch(buf, len, false, false, &still) && !still,
	   "a key of 12 bytes (not protocol 3.0's): not taken");

	len = 0;
	msg(buf, &len, 'E', "SFATAL\0\0", 8);
	len += startup(buf + len, "", 8);
	ok(!watch(buf, len, false, false, &still) && !still, "an ErrorResponse first: no key");
	len = 0;
	msg(buf, &len, 'Z', "I", 1);
	len += startup(buf + len, "", 8);
	ok(!watch(buf, len, false, false, &still) && !still, "ReadyForQuery first: no key");
	memcpy(buf, "R\0\0\0\3", 5);
	ok(!watch(buf, 5, false, false, &still) && !still, "a length under 4: over");

	len = 0;
	while (len < 66000)
		msg(buf, &len, 'N', zeros, sizeof(zeros));
	len += startup(buf + len, "", 8);
	ok(!watch(buf, len, false, false, &still) && !still, "64 kB without a key: over");

	fw_keywatch_start(&w, false);
	len = startup(buf, "", 8);
	ok(fw_keywatch_feed(&w, buf, 20), "the first 20 bytes: still watching");
	ok(!fw_keywatch_feed(&w, buf + 20, len - 20) && w.found, "the rest: the key");
	return tap_done();
}
