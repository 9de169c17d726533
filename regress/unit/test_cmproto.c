/*-------------------------------------------------------------------------
 *
 * test_cmproto.c
 *	  Unit test of the wire-protocol codec (common/cmproto.[ch]), written
 *	  from the specification, docs/protocol.md.
 *
 * The test carries its own reference encoder (spec_encode), written from
 * the message tables of docs/protocol.md with the constants spelled out as
 * the document spells them, and hand-computed golden frames; so every
 * round trip also checks that the codec and the document agree on the
 * bytes (cmproto_spec.h holds both).  The other parts of the codec's test:
 * test_cmproto_malformed.c (every class of malformed input, each with its
 * exact status; versions; ENOSPACE), test_cmproto_fuzz.c (a bounded fuzz
 * loop, fixed seed), test_cmproto_names.c (negotiation, names) and
 * test_cmproto_pg.c (the PostgreSQL-compatible packets).
 *
 * Every input handed to the decoder by dup_exact ends right before an
 * inaccessible page, so that any read past it faults in every run; the few
 * larger blocks are malloc'd at exactly their length, for valgrind:
 *		valgrind --error-exitcode=1 build/regress/test_cmproto
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmproto.h"
#include "cmproto_spec.h"
#include "tap.h"

static void
test_roundtrips(void)
{
	spec_roundtrips();
}

/* The strings of a decoded message come back terminated. */
static void
test_terminated(void)
{
	{
		bb			b;
		uint8_t    *buf;
		cmproto_msg out;

		b_hdr(&b, 'R');
		b_u16(&b, 1);
		b_u8(&b, 0);
		b_u8(&b, 0);
		b_u32(&b, 1);
		b_u16(&b, 63);
		for (int i = 0; i < 63; i++)
			b_u8(&b, 'x');
		b_fin(&b);
		buf = dup_exact(b.d, b.n);
		memset(&out, 0x5a, sizeof(out));
		ok(cmproto_decode(buf, b.n, P_A, &out) == CMPROTO_OK &&
		   out.u.resolve.application_name[63] == '\0' &&
		   strlen(out.u.resolve.application_name) == 63,
		   "decoded 63-byte application name is NUL-terminated");
		free_exact(buf);
	}
}

/* ---- 2. golden frames, computed by hand from the spec's tables ---- */

static void
golden(const cmproto_msg *m, cmproto_peer from, const bb *want, const char *name)
{
	uint8_t		out[CMPROTO_MAX_MSG];
	uint8_t    *in;
	cmproto_msg dec;
	int			n;

	n = cmproto_encode(m, out, sizeof(out));
	if (!ok(n == (int) want->n && memcmp(out, want->d, want->n) == 0,
			"golden bytes: encode %s", name))
	{
		printf("#   got %d bytes:", n);
		for (int i = 0; i < n; i++)
			printf(" %02x", out[i]);
		printf("\n");
	}
	in = dup_exact(want->d, want->n);
	ok(cmproto_decode(in, want->n, from, &dec) == CMPROTO_OK && msg_equal(m, &dec),
	   "golden bytes: decode %s", name);
	free_exact(in);
}

static void
test_golden(void)
{
	cmproto_msg m;
	bb			want;

	/* HELLO(1, 1): 'H', flags, length 12, "CMGR", 1, 1 */
	m = mk(CMPROTO_HELLO);
	m.u.hello.min_version = 1;
	m.u.hello.max_version = 1;
	b_hex(&want, "48 00 00 0c 43 4d 47 52 00 01 00 01");
	golden(&m, P_L, &want, "HELLO(min 1, max 1)");

	m.u.hello.min_version = 0x0102;
	m.u.hello.max_version = 0xfffe;
	b_hex(&want, "48 00 00 0c 43 4d 47 52 01 02 ff fe");
	golden(&m, P_L, &want, "HELLO(min 0x0102, max 0xfffe)");

	/* RESOLVE(1, read-write, pid 0x1234, "psql"): length 4+8+2+4 = 18 */
	m = mk(CMPROTO_RESOLVE);
	m.u.resolve.version = 1;
	m.u.resolve.target = CMPROTO_TARGET_READ_WRITE;
	m.u.resolve.client_pid = 0x1234;
	strcpy(m.u.resolve.application_name, "psql");
	b_hex(&want, "52 00 00 12 00 01 01 00 00 00 12 34 00 04 70 73 71 6c");
	golden(&m, P_A, &want, "RESOLVE(1, read-write, 0x1234, \"psql\")");

	m.u.resolve.target = CMPROTO_TARGET_PREFER_PRIMARY;
	m.u.resolve.client_pid = 0xdeadbeef;
	m.u.resolve.application_name[0] = '\0';
	b_hex(&want, "52 00 00 0e 00 01 06 00 de ad be ef 00 00");
	golden(&m, P_A, &want, "RESOLVE(1, prefer-primary, 0xdeadbeef, \"\")");

	/* cmproto_encode_resolve(): the same bytes; a long name is cut to 63 */
	{
		uint8_t		out[CMPROTO_MAX_MSG];
		char		longname[100];
		cmproto_msg got;
		int			n;

		b_hex(&want, "52 00 00 12 00 01 01 00 00 00 12 34 00 04 70 73 71 6c");
		n = cmproto_encode_resolve(out, sizeof(out), 1, CMPROTO_TARGET_READ_WRITE, 0x1234, "psql");
		ok(n == (int) want.n && memcmp(out, want.d, want.n) == 0,
		   "cmproto_encode_resolve(1, read-write, 0x1234, \"psql\"): the golden bytes");
		n = cmproto_encode_resolve(out, sizeof(out), 1, CMPROTO_TARGET_ANY, 7, NULL);
		is_int(n, 14, "cmproto_encode_resolve with no application name: an empty one");
		memset(longname, 'x', sizeof(longname) - 1);
		longname[sizeof(longname) - 1] = '\0';
		n = cmproto_encode_resolve(out, sizeof(out), 1, CMPROTO_TARGET_STANDBY, 7, longname);
		ok(n > 0 && cmproto_decode(out, (size_t) n, CMPROTO_PEER_APP, &got) == CMPROTO_OK &&
		   strlen(got.u.resolve.application_name) == CMPROTO_APPNAME_MAX &&
		   got.u.resolve.target == CMPROTO_TARGET_STANDBY,
		   "cmproto_encode_resolve cuts a 99-byte application name to 63 bytes");
		is_int(cmproto_encode_resolve(out, 10, 1, CMPROTO_TARGET_ANY, 7, "psql"), CMPROTO_ENOSPACE,
			   "cmproto_encode_resolve into a 10-byte buffer: no space");
	}

	/* CANDIDATE(3, 5432, in recovery, numeric, "10.0.0.7"): length 20 */
	m = mk(CMPROTO_CANDIDATE);
	m.u.candidate.instance = 3;
	m.u.candidate.port = 5432;
	m.u.candidate.attrs = CMPROTO_ATTR_IN_RECOVERY;
	m.u.candidate.addr_kind = CMPROTO_ADDR_NUMERIC;
	strcpy(m.u.candidate.host, "10.0.0.7");
	b_hex(&want, "43 00 00 14 00 03 15 38 01 01 00 08 31 30 2e 30 2e 30 2e 37");
	golden(&m, P_L, &want, "CANDIDATE(3, 5432, 0x01, 1, \"10.0.0.7\")");

	m = mk(CMPROTO_CANDIDATES_END);
	m.u.candidates_end.count = 2;
	b_hex(&want, "5a 00 00 06 00 02");
	golden(&m, P_L, &want, "CANDIDATES_END(2)");

	m = mk(CMPROTO_ATTACHED);
	m.u.attached.instance = 63;
	m.u.attached.backend_pid = 123456;
	b_hex(&want, "41 00 00 0a 00 3f 00 01 e2 40");
	golden(&m, P_A, &want, "ATTACHED(63, 123456)");

	m = mk(CMPROTO_INSTANCE_DOWN);
	m.u.instance_down.instance = 5;
	m.u.instance_down.reason = CMPROTO_DOWN_LOST;
	b_hex(&want, "44 00 00 07 00 05 02");
	golden(&m, P_L, &want, "INSTANCE_DOWN(5, lost)");

	m = mk(CMPROTO_ERROR);
	m.u.error.code = CMPROTO_ERR_VERSION;
	strcpy(m.u.error.message, "no");
	b_hex(&want, "58 00 00 0a 00 02 00 02 6e 6f");
	golden(&m, P_W, &want, "ERROR(2, \"no\")");

	/* HB_HELLO(1, 1, 2 s, 10 s, has key, nonce 00..1f): length 54 */
	m = mk(CMPROTO_HB_HELLO);
	m.u.hb_hello.min_version = 1;
	m.u.hb_hello.max_version = 1;
	m.u.hb_hello.interval = 2;
	m.u.hb_hello.timeout = 10;
	m.u.hb_hello.flags = CMPROTO_HB_HAS_KEY;
	fill_pattern(m.u.hb_hello.nonce, 32, 0);
	b_hex(&want, "68 00 00 36 43 4d 48 42 00 01 00 01 00 00 00 02 00 00 00 0a 00 01"
		  " 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f"
		  " 10 11 12 13 14 15 16 17 18 19 1a 1b 1c 1d 1e 1f");
	golden(&m, P_C, &want, "HB_HELLO(1, 1, 2, 10, 0x0001, nonce)");

	/* HB_CHALLENGE(1, nonce a0.., proof c0..): length 70 */
	m = mk(CMPROTO_HB_CHALLENGE);
	m.u.hb_challenge.version = 1;
	fill_pattern(m.u.hb_challenge.nonce, 32, 0xa0);
	fill_pattern(m.u.hb_challenge.proof, 32, 0xc0);
	b_hex(&want, "63 00 00 46 00 01"
		  " a0 a1 a2 a3 a4 a5 a6 a7 a8 a9 aa ab ac ad ae af"
		  " b0 b1 b2 b3 b4 b5 b6 b7 b8 b9 ba bb bc bd be bf"
		  " c0 c1 c2 c3 c4 c5 c6 c7 c8 c9 ca cb cc cd ce cf"
		  " d0 d1 d2 d3 d4 d5 d6 d7 d8 d9 da db dc dd de df");
	golden(&m, P_W, &want, "HB_CHALLENGE(1, nonce, proof)");

	m = mk(CMPROTO_HB_AUTH);
	fill_pattern(m.u.hb_auth.proof, 32, 0xe0);
	b_hex(&want, "61 00 00 24"
		  " e0 e1 e2 e3 e4 e5 e6 e7 e8 e9 ea eb ec ed ee ef"
		  " f0 f1 f2 f3 f4 f5 f6 f7 f8 f9 fa fb fc fd fe ff");
	golden(&m, P_C, &want, "HB_AUTH(proof)");

	/* HB_WELCOME(1, authenticated, 3, 150004, 0x8123456789abcdef): 24 */
	m = mk(CMPROTO_HB_WELCOME);
	m.u.hb_welcome.version = 1;
	m.u.hb_welcome.flags = CMPROTO_HB_AUTHENTICATED;
	m.u.hb_welcome.attrs = 3;
	m.u.hb_welcome.server_version_num = 150004;
	m.u.hb_welcome.system_identifier = UINT64_C(0x8123456789abcdef);
	b_hex(&want, "77 00 00 18 00 01 00 01 00 00 00 03 00 02 49 f4 81 23 45 67 89 ab cd ef");
	golden(&m, P_W, &want, "HB_WELCOME(1, 0x0001, 3, 150004, 0x8123456789abcdef)");

	/* HB_BEAT(7, 0) and HB_BEAT(0x01020304, read-only) */
	m = mk(CMPROTO_HB_BEAT);
	m.u.hb_beat.seq = 7;
	b_hex(&want, "62 00 00 0c 00 00 00 07 00 00 00 00");
	golden(&m, P_C, &want, "HB_BEAT(7, 0) from C");
	golden(&m, P_W, &want, "HB_BEAT(7, 0) from W");
	m.u.hb_beat.seq = 0x01020304;
	m.u.hb_beat.attrs = CMPROTO_ATTR_READ_ONLY;
	b_hex(&want, "62 00 00 0c 01 02 03 04 00 00 00 02");
	golden(&m, P_W, &want, "HB_BEAT(0x01020304, 0x02) from W");

	/* HB_WELCOME(2, 0, 0, 170002, 0x8123456789abcdef, timeline 0x0102): 28 */
	m = mk(CMPROTO_HB_WELCOME);
	m.u.hb_welcome.version = 2;
	m.u.hb_welcome.server_version_num = 170002;
	m.u.hb_welcome.system_identifier = UINT64_C(0x8123456789abcdef);
	m.u.hb_welcome.timeline = 0x0102;
	b_hex(&want, "77 00 00 1c 00 02 00 00 00 00 00 00 00 02 98 12 81 23 45 67 89 ab cd ef"
		  " 00 00 01 02");
	golden(&m, P_W, &want, "HB_WELCOME(2, 0, 0, 170002, 0x8123456789abcdef, 0x0102)");

	m = mk(CMPROTO_HB_ATTRS);
	m.u.hb_attrs.attrs = CMPROTO_ATTR_IN_RECOVERY | CMPROTO_ATTR_READ_ONLY;
	m.u.hb_attrs.timeline = 2;
	b_hex(&want, "74 00 00 0c 00 00 00 03 00 00 00 02");
	golden(&m, P_W, &want, "HB_ATTRS(3, timeline 2)");

	/* the header constants are the document's */
	ok(CMPROTO_HELLO_MAGIC == 0x434D4752 && memcmp("CMGR", "\x43\x4d\x47\x52", 4) == 0,
	   "HELLO magic is \"CMGR\" = 0x434D4752");
	ok(CMPROTO_HB_MAGIC == 0x434D4842 && memcmp("CMHB", "\x43\x4d\x48\x42", 4) == 0,
	   "HB_HELLO magic is \"CMHB\" = 0x434D4842");
	is_int(CMPROTO_MAX_MSG, 512, "CMPROTO_MAX_MSG is 512");
	is_int(CMPROTO_VERSION, 3, "CMPROTO_VERSION is 3");
	is_int(CMPROTO_MIN_VERSION, 1, "CMPROTO_MIN_VERSION is 1");
	ok(CMPROTO_APPNAME_MAX == 63 && CMPROTO_HOST_MAX == 255 && CMPROTO_ERRMSG_MAX == 255,
	   "string maxima are 63, 255, 255");
	ok(CMPROTO_ATTR_IN_RECOVERY == 0x01 && CMPROTO_ATTR_READ_ONLY == 0x02,
	   "attrs bits are 0x01 in recovery, 0x02 read only");
	ok(CMPROTO_TARGET_ANY == 0 && CMPROTO_TARGET_READ_WRITE == 1 &&
	   CMPROTO_TARGET_READ_ONLY == 2 && CMPROTO_TARGET_PRIMARY == 3 &&
	   CMPROTO_TARGET_STANDBY == 4 && CMPROTO_TARGET_PREFER_STANDBY == 5 &&
	   CMPROTO_TARGET_PREFER_PRIMARY == 6, "target values are the spec's 0..6");
	ok(CMPROTO_DOWN_TIMEOUT == 1 && CMPROTO_DOWN_LOST == 2 &&
	   CMPROTO_DOWN_PROTOCOL == 3 && CMPROTO_DOWN_SHUTDOWN == 4 && CMPROTO_DOWN_STALE == 5,
	   "INSTANCE_DOWN reasons are the spec's 1..5");
	ok(CMPROTO_ERR_PROTOCOL == 1 && CMPROTO_ERR_VERSION == 2 && CMPROTO_ERR_AUTH == 3 &&
	   CMPROTO_ERR_TOO_MANY == 4 && CMPROTO_ERR_SHUTDOWN == 5 && CMPROTO_ERR_INTERNAL == 6 &&
	   CMPROTO_ERR_CONFLICT == 7,
	   "ERROR codes are the spec's 1..7");
	ok(strcmp(CMPROTO_AUTH_LABEL_WATCHDOG, "conmgr-heartbeat-v1 watchdog") == 0 &&
	   strcmp(CMPROTO_AUTH_LABEL_CONMGR, "conmgr-heartbeat-v1 conmgr") == 0,
	   "HMAC labels are the spec's");
	is_int(CMPROTO_PG_GSSENC_CODE, 80877104, "GSSENCRequest code is 80877104");

	/* two frames back to back: the framer delimits the first one */
	{
		bb			two;
		uint8_t    *buf;
		size_t		ml = 0;

		b_hex(&two, "48 00 00 0c 43 4d 47 52 00 01 00 01 5a 00 00 06 00 00");
		buf = dup_exact(two.d, two.n);
		ok(cmproto_frame(buf, two.n, &ml) == CMPROTO_OK && ml == 12 &&
		   cmproto_frame(buf + 12, two.n - 12, &ml) == CMPROTO_OK && ml == 6,
		   "frame delimits two frames in one buffer (12 then 6 bytes)");
		free_exact(buf);
	}
}

/* ---- cmproto_error_msg(): the ERROR every sender builds ---- */

static void
test_error_msg(void)
{
	static const struct
	{
		int			code;
		size_t		len;		/* of the message given */
		size_t		want_len;	/* of the message in the frame */
	}			cases[] = {
		{CMPROTO_ERR_PROTOCOL, 0, 0},
		{CMPROTO_ERR_AUTH, 21, 21},
		{CMPROTO_ERR_INTERNAL, CMPROTO_ERRMSG_MAX, CMPROTO_ERRMSG_MAX},
		{CMPROTO_ERR_TOO_MANY, CMPROTO_ERRMSG_MAX + 1, CMPROTO_ERRMSG_MAX},
		{CMPROTO_ERR_VERSION, 1000, CMPROTO_ERRMSG_MAX},
	};
	cmproto_msg m;
	bb			want;
	uint8_t		out[CMPROTO_MAX_MSG];

	/* the golden frame of test_golden(), built by the helper */
	cmproto_error_msg(&m, CMPROTO_ERR_VERSION, "no");
	b_hex(&want, "58 00 00 0a 00 02 00 02 6e 6f");
	ok(cmproto_encode(&m, out, sizeof(out)) == (int) want.n && memcmp(out, want.d, want.n) == 0,
	   "error_msg(2, \"no\") encodes to the golden ERROR frame");

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		char		text[1001];
		cmproto_msg expect = mk(CMPROTO_ERROR);
		bb			ref;

		fill_chars(text, cases[i].len, 'm');
		memset(&m, 0x5a, sizeof(m));
		cmproto_error_msg(&m, cases[i].code, text);
		expect.u.error.code = cases[i].code;
		memcpy(expect.u.error.message, text, cases[i].want_len);
		spec_encode(&expect, &ref);
		ok(memcmp(&m, &expect, sizeof(m)) == 0 &&
		   cmproto_encode(&m, out, sizeof(out)) == (int) ref.n &&
		   memcmp(out, ref.d, ref.n) == 0,
		   "error_msg(%d, %zu bytes): every other field zero, message of %zu bytes, "
		   "the spec's frame", cases[i].code, cases[i].len, cases[i].want_len);
	}
}

int
main(void)
{
	test_roundtrips();
	test_terminated();
	test_golden();
	test_error_msg();
	return tap_done();
}
