/*-------------------------------------------------------------------------
 *
 * test_cmproto_malformed.c
 *	  Unit test of the codec (common/cmproto.c) on malformed input, from
 *	  docs/protocol.md: every prefix of every corpus frame, bad headers,
 *	  type bytes and senders, every field out of its range, the version
 *	  gates and a buffer too small to encode into, each with its exact
 *	  status.  Inputs end right before an inaccessible page (dup_exact).
 *
 *-------------------------------------------------------------------------
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmproto.h"
#include "cmproto_spec.h"
#include "tap.h"

/* ---- 3. malformed input ---- */

/* A valid frame of each type, written by hand, for the header tests. */
static void
valid_frame(int type, bb *b)
{
	cmproto_msg m = mk((uint8_t) type);

	switch (type)
	{
		case 'H':
			m.u.hello.min_version = m.u.hello.max_version = 1;
			break;
		case 'R':
			m.u.resolve.version = 1;
			strcpy(m.u.resolve.application_name, "app");
			break;
		case 'C':
			m.u.candidate.port = 5432;
			strcpy(m.u.candidate.host, "h");
			break;
		case 'Z':
		case 'A':
			break;
		case 'D':
			m.u.instance_down.reason = 1;
			break;
		case 'X':
			m.u.error.code = 1;
			strcpy(m.u.error.message, "m");
			break;
		case 'h':
			m.u.hb_hello.min_version = m.u.hb_hello.max_version = 1;
			m.u.hb_hello.interval = m.u.hb_hello.timeout = 1;
			break;
		case 'c':
			m.u.hb_challenge.version = 1;
			break;
		case 'a':
			break;
		case 'w':
			m.u.hb_welcome.version = 1;
			break;
		case 'b':
			break;
		case 't':
			m.u.hb_attrs.timeline = 1;
			break;
	}
	spec_encode(&m, b);
}

static int
first_peer(unsigned mask)
{
	for (int p = 0; p < 4; p++)
		if (mask & all_peers[p])
			return (int) all_peers[p];
	return 0;
}

/* Every strict prefix: frame says INCOMPLETE, decode never says OK. */
static void
test_prefixes(void)
{
	for (int t = 0; t < N_TYPES; t++)
	{
		int			frames = 0,
					prefixes = 0,
					bad = 0;

		why[0] = '\0';
		for (int c = 0; c < n_corpus; c++)
		{
			const corpus_ent *e = &corpus[c];

			if (e->m.type != spec_types[t].type)
				continue;
			frames++;
			for (size_t k = 0; k < e->n; k++)
			{
				uint8_t    *buf = dup_exact(e->bytes, k);
				size_t		ml = 99;
				cmproto_msg out;
				int			rf,
							rd;

				prefixes++;
				rf = cmproto_frame(buf, k, &ml);
				rd = cmproto_decode(buf, k, (cmproto_peer) first_peer(e->accept), &out);
				if (rf != CMPROTO_INCOMPLETE || ml != (k < 4 ? 0 : e->n) ||
					rd != CMPROTO_ETRUNCATED)
				{
					if (!bad)
						snprintf(why, sizeof(why),
								 "frame %d prefix %zu/%zu: frame %d msglen %zu, decode %d",
								 c, k, e->n, rf, ml, rd);
					bad++;
				}
				free_exact(buf);
			}
		}
		if (!ok(bad == 0 && frames > 0,
				"truncated: every strict prefix of %d %s frames (%d prefixes) is "
				"INCOMPLETE to frame, ETRUNCATED to decode",
				frames, spec_types[t].name, prefixes))
			printf("#   %d bad; first: %s\n", bad, why);
	}
}

/* Header checks, each on the 4 header bytes alone and on a whole frame. */
static void
test_header(void)
{
	for (int t = 0; t < N_TYPES; t++)
	{
		const spec_type *st = &spec_types[t];
		cmproto_peer from = (cmproto_peer) first_peer(st->from);
		bb			b;
		uint8_t    *buf;
		size_t		ml;
		cmproto_msg out;
		int			bad;

		/* length field 0..3 */
		bad = 0;
		for (unsigned len = 0; len < 4; len++)
		{
			valid_frame(st->type, &b);
			put16_at(&b, 2, len);
			buf = dup_exact(b.d, 4);
			if (cmproto_frame(buf, 4, &ml) != CMPROTO_ESHORTLEN)
				bad++;
			free_exact(buf);
			buf = dup_exact(b.d, b.n);
			if (cmproto_decode(buf, b.n, from, &out) != CMPROTO_ESHORTLEN)
				bad++;
			free_exact(buf);
		}
		ok(bad == 0, "%s: length field 0..3 is ESHORTLEN from the header alone and from decode",
		   st->name);

		/* length field above CMPROTO_MAX_MSG */
		bad = 0;
		{
			static const unsigned lens[] = {513, 1024, 65535};

			for (int i = 0; i < 3; i++)
			{
				uint8_t    *big;

				valid_frame(st->type, &b);
				put16_at(&b, 2, lens[i]);
				buf = dup_exact(b.d, 4);
				if (cmproto_frame(buf, 4, &ml) != CMPROTO_ETOOLONG)
					bad++;
				free_exact(buf);
				big = calloc(1, lens[i]);
				memcpy(big, b.d, b.n);
				if (cmproto_frame(big, lens[i], &ml) != CMPROTO_ETOOLONG ||
					cmproto_decode(big, lens[i], from, &out) != CMPROTO_ETOOLONG)
					bad++;
				free(big);
			}
		}
		ok(bad == 0, "%s: length 513, 1024, 65535 is ETOOLONG", st->name);

		/* length outside the type's bounds */
		{
			unsigned	lo = 4 + st->min_body - 1,
						hi = 4 + st->max_body + 1;
			int			rf_lo,
						rd_lo,
						rf_hi,
						rd_hi;
			uint8_t    *full;

			valid_frame(st->type, &b);
			put16_at(&b, 2, lo);
			buf = dup_exact(b.d, 4);
			rf_lo = cmproto_frame(buf, 4, &ml);
			free_exact(buf);
			full = calloc(1, lo);
			memcpy(full, b.d, 4);
			rd_lo = cmproto_decode(full, lo, from, &out);
			free(full);

			put16_at(&b, 2, hi);
			buf = dup_exact(b.d, 4);
			rf_hi = cmproto_frame(buf, 4, &ml);
			free_exact(buf);
			full = calloc(1, hi);
			memcpy(full, b.d, 4);
			rd_hi = cmproto_decode(full, hi, from, &out);
			free(full);

			if (!is_int(rf_lo, CMPROTO_ETRUNCATED,
						"%s: length %u (body below its %u bytes of fields) is ETRUNCATED from the header",
						st->name, lo, st->min_body))
				printf("#   (%s)\n", cmproto_strerror(rf_lo));
			is_int(rd_lo, CMPROTO_ETRUNCATED, "%s: decode of a %u-byte frame is ETRUNCATED",
				   st->name, lo);
			is_int(rf_hi, CMPROTO_ETRAILING,
				   "%s: length %u (body above its maximum %u) is ETRAILING from the header",
				   st->name, hi, st->max_body);
			is_int(rd_hi, CMPROTO_ETRAILING, "%s: decode of a %u-byte frame is ETRAILING",
				   st->name, hi);
		}

		/* non-zero flags */
		bad = 0;
		for (unsigned f = 1; f < 256; f++)
		{
			valid_frame(st->type, &b);
			b.d[1] = (uint8_t) f;
			buf = dup_exact(b.d, b.n);
			if (cmproto_frame(buf, 4, &ml) != CMPROTO_EBADFLAGS ||
				cmproto_frame(buf, b.n, &ml) != CMPROTO_EBADFLAGS ||
				cmproto_decode(buf, b.n, from, &out) != CMPROTO_EBADFLAGS)
				bad++;
			free_exact(buf);
		}
		ok(bad == 0, "%s: each of the 255 non-zero flags values is EBADFLAGS", st->name);

		/* bytes after a complete frame handed to decode */
		valid_frame(st->type, &b);
		{
			size_t		n = b.n;

			b_u8(&b, 0);
			buf = dup_exact(b.d, b.n);
			ml = 0;
			ok(cmproto_frame(buf, b.n, &ml) == CMPROTO_OK && ml == n &&
			   cmproto_decode(buf, b.n, from, &out) == CMPROTO_ETRAILING &&
			   cmproto_decode(buf, n, from, &out) == CMPROTO_OK,
			   "%s: one byte past the frame: frame OK (msglen %zu), decode ETRAILING",
			   st->name, n);
			free_exact(buf);
		}
	}
}

/* All 256 type bytes: only the 13 documented ones are accepted. */
static void
test_type_bytes(void)
{
	int			known = 0;

	for (int v = 0; v < 256; v++)
	{
		const spec_type *st = spec_lookup(v);
		uint8_t		hdr[1] = {(uint8_t) v};
		uint8_t    *buf;
		size_t		ml;
		cmproto_msg out;
		const char *name = cmproto_type_name(v);

		if (st)
		{
			bb			b;
			int			pass = 1;

			known++;
			buf = dup_exact(hdr, 1);
			pass &= cmproto_frame(buf, 1, &ml) == CMPROTO_INCOMPLETE;
			free_exact(buf);
			valid_frame(v, &b);
			buf = dup_exact(b.d, b.n);
			pass &= cmproto_frame(buf, b.n, &ml) == CMPROTO_OK;
			free_exact(buf);
			pass &= name != NULL && strcmp(name, st->name) == 0;
			ok(pass, "type byte 0x%02x ('%c') is %s", v, v, st->name);
		}
		else
		{
			uint8_t		body[12] = {(uint8_t) v, 0, 0, 12};
			int			pass = 1;
			cmproto_msg m = mk((uint8_t) v);
			uint8_t		enc[CMPROTO_MAX_MSG];

			buf = dup_exact(hdr, 1);
			pass &= cmproto_frame(buf, 1, &ml) == CMPROTO_EUNKNOWNTYPE;
			free_exact(buf);
			buf = dup_exact(body, sizeof(body));
			pass &= cmproto_frame(buf, 4, &ml) == CMPROTO_EUNKNOWNTYPE;
			for (int p = 0; p < 4; p++)
				pass &= cmproto_decode(buf, sizeof(body), all_peers[p], &out) ==
					CMPROTO_EUNKNOWNTYPE;
			free_exact(buf);
			pass &= cmproto_encode(&m, enc, sizeof(enc)) == CMPROTO_EUNKNOWNTYPE;
			pass &= name != NULL;
			ok(pass, "type byte 0x%02x is EUNKNOWNTYPE (frame, decode from all peers, encode)", v);
		}
	}
	is_int(known, 13, "exactly 13 type bytes are documented");
}

/* Every type from every kind of peer, against the spec's "from" column. */
static void
test_peers(void)
{
	for (int t = 0; t < N_TYPES; t++)
	{
		const spec_type *st = &spec_types[t];
		bb			b;
		uint8_t    *buf;

		valid_frame(st->type, &b);
		buf = dup_exact(b.d, b.n);
		for (int p = 0; p < 4; p++)
		{
			cmproto_msg out;
			int			want = (st->from & all_peers[p]) ? CMPROTO_OK : CMPROTO_EUNEXPECTED;

			is_int(cmproto_decode(buf, b.n, all_peers[p], &out), want,
				   "%s from peer %s: %s", st->name, peer_names[p],
				   want == CMPROTO_OK ? "accepted" : "EUNEXPECTED");
		}
		free_exact(buf);
	}
	{
		bb			b;
		uint8_t    *buf;
		cmproto_msg out;

		valid_frame('X', &b);
		buf = dup_exact(b.d, b.n);
		is_int(cmproto_decode(buf, b.n, (cmproto_peer) 0, &out), CMPROTO_EUNEXPECTED,
			   "ERROR from no peer at all (from = 0) is EUNEXPECTED");
		free_exact(buf);
	}
}

/*
 * Decode a hand-built frame; expect "want" from decode and "want_enc" from
 * encoding the same struct (0: do not encode, e.g. for wire-only faults).
 */
static void
check_bad(const bb *b, cmproto_peer from, int want, const cmproto_msg *m, int want_enc,
		  const char *desc)
{
	uint8_t    *buf = dup_exact(b->d, b->n);
	cmproto_msg out;
	int			rc;

	memset(&out, 0x5a, sizeof(out));
	rc = cmproto_decode(buf, b->n, from, &out);
	if (!is_int(rc, want, "decode %s: %s", desc, cmproto_strerror(want)))
		printf("#   got '%s'\n", cmproto_strerror(rc));
	free_exact(buf);
	if (m != NULL && want_enc != 0)
	{
		uint8_t		enc[CMPROTO_MAX_MSG + 16];

		memset(enc, 0xa5, sizeof(enc));
		rc = cmproto_encode(m, enc, CMPROTO_MAX_MSG);
		if (!is_int(rc, want_enc, "encode %s: %s", desc, cmproto_strerror(want_enc)))
			printf("#   got '%s'\n", cmproto_strerror(rc));
	}
}

/* A message out of range in its fields: spec layout, then both directions. */
static void
check_range(const cmproto_msg *m, cmproto_peer from, const char *desc)
{
	bb			b;

	spec_encode(m, &b);
	check_bad(&b, from, CMPROTO_ERANGE, m, CMPROTO_ERANGE, desc);
}

/*
 * A field of a cmproto_msg set to a value: offsetof and size, so that one
 * table row names the field.  size 0 ends a row's list.
 */
typedef struct field_set
{
	size_t		off;
	size_t		size;
	uint64_t	val;
} field_set;

#define F(field, v) {offsetof(cmproto_msg, u.field), sizeof(((cmproto_msg *) 0)->u.field), (v)}
/* the first byte of a string field: 0 empties it */
#define F0(field) {offsetof(cmproto_msg, u.field), 1, 0}

static void
set_field(cmproto_msg *m, const field_set *f)
{
	uint8_t    *p = (uint8_t *) m + f->off;
	uint8_t		v1 = (uint8_t) f->val;
	uint16_t	v2 = (uint16_t) f->val;
	uint32_t	v4 = (uint32_t) f->val;
	uint64_t	v8 = f->val;

	switch (f->size)
	{
		case 1:
			memcpy(p, &v1, 1);
			break;
		case 2:
			memcpy(p, &v2, 2);
			break;
		case 4:
			memcpy(p, &v4, 4);
			break;
		case 8:
			memcpy(p, &v8, 8);
			break;
		default:
			abort();
	}
}

/* The valid message each range case changes: mk() and what it needs. */
static cmproto_msg
base_msg(uint8_t type)
{
	cmproto_msg m = mk(type);

	switch (type)
	{
		case 'R':
			m.u.resolve.version = 1;
			break;
		case 'C':
			m.u.candidate.port = 5432;
			strcpy(m.u.candidate.host, "db");
			break;
		case 'h':
			m.u.hb_hello.min_version = 1;
			m.u.hb_hello.max_version = 1;
			m.u.hb_hello.interval = 2;
			m.u.hb_hello.timeout = 10;
			break;
		case 'w':
			m.u.hb_welcome.version = 1;
			break;
		case 't':
			m.u.hb_attrs.timeline = 1;
			break;
	}
	return m;
}

/*
 * Fields out of their range (docs/protocol.md's tables): the message is
 * base_msg() with up to three fields set; refused with ERANGE by the
 * decoder from the sender and by the encoder (check_range()).
 */
static const struct
{
	uint8_t		type;
	cmproto_peer from;
	field_set	f[3];
	const char *desc;
}			range_cases[] = {
	{'H', P_L, {F(hello.min_version, 0), F(hello.max_version, 1)}, "HELLO min_version 0"},
	{'H', P_L, {F(hello.min_version, 2), F(hello.max_version, 1)}, "HELLO max_version < min_version"},
	{'H', P_L, {F(hello.min_version, 0), F(hello.max_version, 0)}, "HELLO versions 0..0"},
	{'R', P_A, {F(resolve.version, 0)}, "RESOLVE version 0"},
	{'R', P_A, {F(resolve.target, 7)}, "RESOLVE target 7"},
	{'R', P_A, {F(resolve.target, 255)}, "RESOLVE target 255"},
	{'C', P_L, {F(candidate.instance, 64)}, "CANDIDATE instance 64"},
	{'C', P_L, {F(candidate.instance, 65535)}, "CANDIDATE instance 65535"},
	{'C', P_L, {F(candidate.port, 0)}, "CANDIDATE port 0"},
	{'C', P_L, {F(candidate.port, 1), F(candidate.attrs, 0x04)}, "CANDIDATE attrs bit 0x04"},
	{'C', P_L, {F(candidate.port, 1), F(candidate.attrs, 0x80)}, "CANDIDATE attrs bit 0x80"},
	{'C', P_L, {F(candidate.port, 1), F(candidate.attrs, 0xff)}, "CANDIDATE attrs 0xff"},
	{'C', P_L, {F(candidate.port, 1), F(candidate.addr_kind, 2)}, "CANDIDATE addr_kind 2"},
	{'C', P_L, {F(candidate.port, 1), F(candidate.addr_kind, 255)}, "CANDIDATE addr_kind 255"},
	{'C', P_L, {F(candidate.port, 1), F0(candidate.host)}, "CANDIDATE empty host"},
	{'Z', P_L, {F(candidates_end.count, 65)}, "CANDIDATES_END count 65"},
	{'Z', P_L, {F(candidates_end.count, 65535)}, "CANDIDATES_END count 65535"},
	{'A', P_A, {F(attached.instance, 64)}, "ATTACHED instance 64"},
	{'A', P_A, {F(attached.instance, 0x8000)}, "ATTACHED instance 0x8000"},
	{'D', P_L, {F(instance_down.instance, 64), F(instance_down.reason, 1)}, "INSTANCE_DOWN instance 64"},
	{'D', P_L, {F(instance_down.reason, 0)}, "INSTANCE_DOWN reason 0"},
	{'D', P_L, {F(instance_down.reason, 6)}, "INSTANCE_DOWN reason 6"},
	{'D', P_L, {F(instance_down.reason, 255)}, "INSTANCE_DOWN reason 255"},
	{'X', P_A, {F(error.code, 0)}, "ERROR code 0"},
	{'X', P_W, {F(error.code, 8)}, "ERROR code 8"},
	{'X', P_C, {F(error.code, 65535)}, "ERROR code 65535"},
	{'h', P_C, {F(hb_hello.min_version, 0)}, "HB_HELLO min_version 0"},
	{'h', P_C, {F(hb_hello.min_version, 3), F(hb_hello.max_version, 2)}, "HB_HELLO max_version < min_version"},
	{'h', P_C, {F(hb_hello.interval, 0)}, "HB_HELLO interval 0"},
	{'h', P_C, {F(hb_hello.interval, 0x80000000u)}, "HB_HELLO interval 2^31"},
	{'h', P_C, {F(hb_hello.interval, 0xFFFFFFFFu)}, "HB_HELLO interval 2^32-1"},
	{'h', P_C, {F(hb_hello.timeout, 0)}, "HB_HELLO timeout 0"},
	{'h', P_C, {F(hb_hello.timeout, 0x80000000u)}, "HB_HELLO timeout 2^31"},
	{'h', P_C, {F(hb_hello.flags, 0x0002)}, "HB_HELLO flags bit 0x0002"},
	{'h', P_C, {F(hb_hello.flags, 0x8001)}, "HB_HELLO flags 0x8001"},
	{'h', P_C, {F(hb_hello.flags, 0xffff)}, "HB_HELLO flags 0xffff"},
	{'c', P_W, {{0}}, "HB_CHALLENGE version 0"},
	{'w', P_W, {F(hb_welcome.version, 0)}, "HB_WELCOME version 0"},
	{'w', P_W, {F(hb_welcome.flags, 0x0002)}, "HB_WELCOME flags bit 0x0002"},
	{'w', P_W, {F(hb_welcome.flags, 0x8000)}, "HB_WELCOME flags bit 0x8000"},
	{'w', P_W, {F(hb_welcome.attrs, 0x08)}, "HB_WELCOME attrs bit 0x08"},
	{'w', P_W, {F(hb_welcome.attrs, 0x80000000u)}, "HB_WELCOME attrs bit 0x80000000"},
	{'w', P_W, {F(hb_welcome.attrs, 0x100)}, "HB_WELCOME attrs bit 0x100"},
	{'w', P_W, {F(hb_welcome.version, 2)}, "HB_WELCOME version 2 timeline 0"},
	{'b', P_W, {F(hb_beat.attrs, 0x08)}, "HB_BEAT attrs bit 0x08"},
	{'b', P_W, {F(hb_beat.attrs, 0xFFFFFFFFu)}, "HB_BEAT attrs 0xffffffff"},
	{'t', P_W, {F(hb_attrs.attrs, 0x08)}, "HB_ATTRS attrs bit 0x08"},
	{'t', P_W, {F(hb_attrs.attrs, 0x80000000u)}, "HB_ATTRS attrs bit 0x80000000"},
	{'t', P_W, {F(hb_attrs.timeline, 0)}, "HB_ATTRS timeline 0 (version 2)"},
};

/*
 * Frames written by hand that the decoder refuses from the sender with
 * the given status: the type, then the body in hex ("78*63" is 63 bytes
 * 0x78), the header's length filled in.  Mostly strings: an embedded NUL,
 * a length prefix above the field's maximum, past the end, or short of it.
 */
static const struct
{
	uint8_t		type;
	cmproto_peer from;
	const char *body;
	int			want;
	const char *desc;
}			frame_cases[] = {

	/* HELLO: magic, min_version, max_version */
	{'H', P_L, "43 4d 47 53 00 01 00 01", CMPROTO_EBADMAGIC, "HELLO magic 0x434D4753"},
	{'H', P_L, "43 4d 48 42 00 01 00 01", CMPROTO_EBADMAGIC, "HELLO with the heartbeat magic \"CMHB\""},
	{'H', P_L, "52 47 4d 43 00 01 00 01", CMPROTO_EBADMAGIC, "HELLO magic byte-swapped"},
	/* RESOLVE: version 1, target 0, reserved, client_pid, application name */
	{'R', P_A, "00 01 00 01 00 00 00 00 00 03 61 70 70", CMPROTO_ERANGE, "RESOLVE reserved byte 0x01"},
	{'R', P_A, "00 01 00 80 00 00 00 00 00 03 61 70 70", CMPROTO_ERANGE, "RESOLVE reserved byte 0x80"},
	{'R', P_A, "00 01 00 00 00 00 00 01 00 05 61 62 00 63 64", CMPROTO_EBADSTRING,
	"RESOLVE application name with an embedded NUL"},
	{'R', P_A, "00 01 00 00 00 00 00 01 00 05 61 62 00 63 64", CMPROTO_EBADSTRING,
	"RESOLVE application name with a NUL in the middle"},
	{'R', P_A, "00 01 00 00 00 00 00 01 00 05 61 62 63 63 00", CMPROTO_EBADSTRING,
	"RESOLVE application name ending with a NUL"},
	/* length prefix 64 > 63, within the type's maximum frame */
	{'R', P_A, "00 01 00 00 00 00 00 01 00 40 78*63", CMPROTO_ESTRTOOLONG,
	"RESOLVE application name length 64 (above 63)"},
	{'R', P_A, "00 01 00 00 00 00 00 01 ff ff 78*63", CMPROTO_ESTRTOOLONG,
	"RESOLVE application name length 65535"},
	/* a 64-byte name actually present: the frame exceeds RESOLVE's bound */
	{'R', P_A, "00 01 00 00 00 00 00 01 00 40 78*64", CMPROTO_ETRAILING,
	"RESOLVE with a whole 64-byte application name (frame above RESOLVE's maximum)"},
	{'R', P_A, "00 01 00 00 00 00 00 01 00 0a 61 62 63 64", CMPROTO_ETRUNCATED,
	"RESOLVE application name length 10 with 4 bytes left"},
	{'R', P_A, "00 01 00 00 00 00 00 01 00 05 61 62 63 64", CMPROTO_ETRUNCATED,
	"RESOLVE application name length 5 with 4 bytes left"},
	{'R', P_A, "00 01 00 00 00 00 00 01 00 02 61 62 63 64", CMPROTO_ETRAILING,
	"RESOLVE application name length 2 with 4 bytes left (trailing)"},
	{'R', P_A, "00 01 00 00 00 00 00 01 00 00 61 62 63 64", CMPROTO_ETRAILING,
	"RESOLVE application name length 0 with 4 bytes left (trailing)"},
	/* CANDIDATE: instance 0, port 5432, attrs 0, addr_kind 0, host */
	{'C', P_L, "00 00 15 38 00 00 00 03 61 00 62", CMPROTO_EBADSTRING, "CANDIDATE host with an embedded NUL"},
	{'C', P_L, "00 00 15 38 00 00 00 03 00 78 62", CMPROTO_EBADSTRING, "CANDIDATE host starting with a NUL"},
	{'C', P_L, "00 00 15 38 00 00 01 00 68*255", CMPROTO_ESTRTOOLONG, "CANDIDATE host length 256 (above 255)"},
	{'C', P_L, "00 00 15 38 00 00 01 00 68*256", CMPROTO_ETRAILING,
	"CANDIDATE with a whole 256-byte host (frame above CANDIDATE's maximum)"},
	{'C', P_L, "00 00 15 38 00 00 00 c8 64 62 31", CMPROTO_ETRUNCATED,
	"CANDIDATE host length 200 with 3 bytes left"},
	{'C', P_L, "00 00 15 38 00 00 00 01 64 62 31", CMPROTO_ETRAILING, "CANDIDATE host length 1 with 3 bytes left"},
	/* ERROR: code 1, message */
	{'X', P_L, "00 01 00 04 62 61 00 64", CMPROTO_EBADSTRING, "ERROR message with an embedded NUL"},
	{'X', P_L, "00 01 01 00 65*255", CMPROTO_ESTRTOOLONG, "ERROR message length 256 (above 255)"},
	{'X', P_L, "00 01 01 00 65*256", CMPROTO_ETRAILING,
	"ERROR with a whole 256-byte message (frame above ERROR's maximum)"},
	{'X', P_L, "00 01 00 09 6f 6f 70 73", CMPROTO_ETRUNCATED, "ERROR message length 9 with 4 bytes left"},
	{'X', P_L, "00 01 00 03 6f 6f 70 73", CMPROTO_ETRAILING, "ERROR message length 3 with 4 bytes left"},
	/* HB_HELLO: magic, versions 1..1, interval 2, timeout 10, flags 0, nonce */
	{'h', P_C, "43 4d 48 47 00 01 00 01 00 00 00 02 00 00 00 0a 00 00 00*32", CMPROTO_EBADMAGIC,
	"HB_HELLO magic 0x434D4847"},
	{'h', P_C, "43 4d 47 52 00 01 00 01 00 00 00 02 00 00 00 0a 00 00 00*32", CMPROTO_EBADMAGIC,
	"HB_HELLO with the application magic \"CMGR\""},
	/* HB_BEAT: seq, attrs; a conmgr's beat carries no attributes */
	{'b', P_C, "00 00 00 00 ff ff ff ff", CMPROTO_ERANGE, "HB_BEAT attrs 0xffffffff from CONMGR"},
};

/* A frame of the type with the body in frame_cases' hex. */
static void
b_body(bb *b, uint8_t type, const char *hex)
{
	b_hdr(b, type);
	b_hex_append(b, hex);
	b_fin(b);
}

/*
 * The encoder refuses a string field not terminated within its bytes:
 * base_msg() with the string filled to its end.
 */
static const struct
{
	uint8_t		type;
	field_set	f;
	size_t		str_off;
	size_t		str_size;
	char		fill;
	const char *desc;
}			unterminated_cases[] = {

	{'R', F(resolve.version, 1), offsetof(cmproto_msg, u.resolve.application_name),
		sizeof(((cmproto_msg *) 0)->u.resolve.application_name), 'y',
	"encode RESOLVE with an unterminated 64-byte application name: ESTRTOOLONG"},
	{'C', F(candidate.port, 1), offsetof(cmproto_msg, u.candidate.host),
		sizeof(((cmproto_msg *) 0)->u.candidate.host), 'z',
	"encode CANDIDATE with an unterminated 256-byte host: ESTRTOOLONG"},
	{'X', F(error.code, 1), offsetof(cmproto_msg, u.error.message),
		sizeof(((cmproto_msg *) 0)->u.error.message), 'q',
	"encode ERROR with an unterminated 256-byte message: ESTRTOOLONG"},
};

static void
test_fields(void)
{
	cmproto_msg m;
	bb			b;

	for (size_t i = 0; i < sizeof(range_cases) / sizeof(range_cases[0]); i++)
	{
		m = base_msg(range_cases[i].type);
		for (int k = 0; k < 3 && range_cases[i].f[k].size != 0; k++)
			set_field(&m, &range_cases[i].f[k]);
		check_range(&m, range_cases[i].from, range_cases[i].desc);
	}
	for (size_t i = 0; i < sizeof(frame_cases) / sizeof(frame_cases[0]); i++)
	{
		b_body(&b, frame_cases[i].type, frame_cases[i].body);
		check_bad(&b, frame_cases[i].from, frame_cases[i].want, NULL, 0, frame_cases[i].desc);
	}
	for (size_t i = 0; i < sizeof(unterminated_cases) / sizeof(unterminated_cases[0]); i++)
	{
		uint8_t		enc[CMPROTO_MAX_MSG];

		m = mk(unterminated_cases[i].type);
		set_field(&m, &unterminated_cases[i].f);
		memset((uint8_t *) &m + unterminated_cases[i].str_off, unterminated_cases[i].fill,
			   unterminated_cases[i].str_size);
		is_int(cmproto_encode(&m, enc, sizeof(enc)), CMPROTO_ESTRTOOLONG, "%s",
			   unterminated_cases[i].desc);
	}

	/* HB_BEAT: attributes from the watchdog only */
	for (uint32_t attrs = 1; attrs <= 7; attrs++)
	{
		char		desc[128];

		m = mk('b');
		m.u.hb_beat.seq = 1;
		m.u.hb_beat.attrs = attrs;
		spec_encode(&m, &b);
		snprintf(desc, sizeof(desc), "HB_BEAT attrs %u from CONMGR (must be 0)", attrs);
		check_bad(&b, P_C, CMPROTO_ERANGE, NULL, 0, desc);
		snprintf(desc, sizeof(desc), "HB_BEAT attrs %u from WATCHDOG", attrs);
		check_bad(&b, P_W, CMPROTO_OK, NULL, 0, desc);
	}
}

/*
 * Decode at the given version: the status, and the message in *out.
 */
static int
decode_at(const bb *b, int version, cmproto_msg *out)
{
	uint8_t    *buf = dup_exact(b->d, b->n);
	int			rc = cmproto_decode_version(buf, b->n, P_W | P_L, version, out);

	free_exact(buf);
	return rc;
}

/*
 * A message valid from version "first" on: refused by the encoder and the
 * decoder at the version before, decoded at "first" (into *out).
 */
static void
version_gate(const cmproto_msg *m, int first, const char *desc, cmproto_msg *out)
{
	uint8_t		enc[CMPROTO_MAX_MSG];
	bb			b;

	is_int(cmproto_encode_version(m, first - 1, enc, sizeof(enc)), CMPROTO_ERANGE,
		   "encode %s at version %d: ERANGE", desc, first - 1);
	spec_encode(m, &b);
	is_int(decode_at(&b, first - 1, out), CMPROTO_ERANGE,
		   "decode %s at version %d: ERANGE", desc, first - 1);
	is_int(decode_at(&b, first, out), CMPROTO_OK, "decode %s at version %d: OK", desc, first);
}

/*
 * docs/protocol.md, section 5: what version 2 adds is out of range at
 * version 1, both ways, and each version's layouts are exact at it.
 */
static void
test_versions(void)
{
	bb			b;
	cmproto_msg m,
				out;
	uint8_t		enc[CMPROTO_MAX_MSG];
	int			rc;

	/* HB_ATTRS: 4 bytes at version 1, 8 at version 2, each exact */
	m = mk('t');
	m.u.hb_attrs.attrs = CMPROTO_ATTR_IN_RECOVERY;
	rc = cmproto_encode_version(&m, 1, enc, sizeof(enc));
	b_hex(&b, "74 00 00 08 00 00 00 01");
	ok(rc == 8 && memcmp(enc, b.d, 8) == 0, "HB_ATTRS at version 1: 8 bytes, no timeline");
	is_int(decode_at(&b, 1, &out), CMPROTO_OK, "HB_ATTRS without timeline decodes at version 1");
	is_int(out.u.hb_attrs.timeline, 0, "and its timeline is 0 (absent)");
	is_int(decode_at(&b, 2, &out), CMPROTO_ETRUNCATED, "HB_ATTRS without timeline at version 2: ETRUNCATED");
	b_hex(&b, "74 00 00 0c 00 00 00 01 00 00 00 02");
	is_int(decode_at(&b, 1, &out), CMPROTO_ETRAILING, "HB_ATTRS with timeline at version 1: ETRAILING");
	is_int(decode_at(&b, 2, &out), CMPROTO_OK, "HB_ATTRS with timeline at version 2: OK");
	is_int(out.u.hb_attrs.timeline, 2, "and its timeline is 2");
	m.u.hb_attrs.timeline = 2;
	is_int(cmproto_encode_version(&m, 1, enc, sizeof(enc)), CMPROTO_ERANGE,
		   "encode HB_ATTRS with a timeline at version 1: ERANGE");

	/* HB_WELCOME: its layout is its own version's, if not above the session's */
	m = mk('w');
	m.u.hb_welcome.version = 2;
	m.u.hb_welcome.timeline = 3;
	is_int(cmproto_encode_version(&m, 1, enc, sizeof(enc)), CMPROTO_ERANGE,
		   "encode HB_WELCOME version 2 at version 1: ERANGE");
	spec_encode(&m, &b);
	is_int(decode_at(&b, 1, &out), CMPROTO_ERANGE, "decode HB_WELCOME version 2 at version 1: ERANGE");
	is_int(decode_at(&b, 2, &out), CMPROTO_OK, "decode HB_WELCOME version 2 at version 2: OK");
	m.u.hb_welcome.version = 1;
	is_int(cmproto_encode_version(&m, 2, enc, sizeof(enc)), CMPROTO_ERANGE,
		   "encode HB_WELCOME version 1 with a timeline: ERANGE");
	m.u.hb_welcome.timeline = 0;
	spec_encode(&m, &b);
	is_int(decode_at(&b, 2, &out), CMPROTO_OK, "decode HB_WELCOME version 1 (20 bytes) at version 2: OK");

	/* INSTANCE_DOWN reason 5 and ERROR code 7 exist from version 2 on */
	m = mk('D');
	m.u.instance_down.reason = CMPROTO_DOWN_STALE;
	is_int(cmproto_encode_version(&m, 1, enc, sizeof(enc)), CMPROTO_ERANGE,
		   "encode INSTANCE_DOWN reason 5 at version 1: ERANGE");
	spec_encode(&m, &b);
	is_int(decode_at(&b, 1, &out), CMPROTO_ERANGE, "decode INSTANCE_DOWN reason 5 at version 1: ERANGE");
	is_int(decode_at(&b, 2, &out), CMPROTO_OK, "decode INSTANCE_DOWN reason 5 at version 2: OK");
	m = mk('X');
	m.u.error.code = CMPROTO_ERR_CONFLICT;
	strcpy(m.u.error.message, "m");
	is_int(cmproto_encode_version(&m, 1, enc, sizeof(enc)), CMPROTO_ERANGE,
		   "encode ERROR code 7 at version 1: ERANGE");
	spec_encode(&m, &b);
	is_int(decode_at(&b, 1, &out), CMPROTO_ERANGE, "decode ERROR code 7 at version 1: ERANGE");
	is_int(decode_at(&b, 2, &out), CMPROTO_OK, "decode ERROR code 7 at version 2: OK");

	/* attribute PROMOTING (0x04) exists from version 3 on */
	m = mk('b');
	m.u.hb_beat.attrs = CMPROTO_ATTR_IN_RECOVERY | CMPROTO_ATTR_PROMOTING;
	version_gate(&m, 3, "HB_BEAT attrs PROMOTING", &out);
	m = mk('t');
	m.u.hb_attrs.attrs = CMPROTO_ATTR_IN_RECOVERY | CMPROTO_ATTR_PROMOTING;
	m.u.hb_attrs.timeline = 4;
	version_gate(&m, 3, "HB_ATTRS attrs PROMOTING", &out);
	is_int((int) out.u.hb_attrs.attrs, CMPROTO_ATTR_IN_RECOVERY | CMPROTO_ATTR_PROMOTING,
		   "HB_ATTRS at version 3 keeps PROMOTING");
	m = mk('w');
	m.u.hb_welcome.version = 2;
	m.u.hb_welcome.timeline = 4;
	m.u.hb_welcome.attrs = CMPROTO_ATTR_IN_RECOVERY | CMPROTO_ATTR_PROMOTING;
	spec_encode(&m, &b);
	is_int(decode_at(&b, 3, &out), CMPROTO_ERANGE, "decode HB_WELCOME version 2 with PROMOTING: ERANGE");
	m.u.hb_welcome.version = 3;
	spec_encode(&m, &b);
	is_int(decode_at(&b, 3, &out), CMPROTO_OK, "decode HB_WELCOME version 3 with PROMOTING: OK");
	m = mk('C');
	m.u.candidate.attrs = CMPROTO_ATTR_IN_RECOVERY | CMPROTO_ATTR_PROMOTING;
	is_int(cmproto_encode_version(&m, 3, enc, sizeof(enc)), CMPROTO_ERANGE,
		   "encode CANDIDATE attrs PROMOTING at version 3: ERANGE (a heartbeat attribute)");

	/* versions the codec does not speak */
	is_int(decode_at(&b, 0, &out), CMPROTO_ERANGE, "decode at version 0: ERANGE");
	is_int(decode_at(&b, 4, &out), CMPROTO_ERANGE, "decode at version 4: ERANGE");
	is_int(cmproto_encode_version(&m, 4, enc, sizeof(enc)), CMPROTO_ERANGE,
		   "encode at version 4: ERANGE");
}

/* Encoding into a too-small buffer: ENOSPACE, and nothing past cap. */
static void
test_enospace(void)
{
	for (int t = 0; t < N_TYPES; t++)
	{
		int			frames = 0,
					caps = 0,
					bad = 0;

		why[0] = '\0';
		for (int c = 0; c < n_corpus; c++)
		{
			const corpus_ent *e = &corpus[c];
			uint8_t    *exact;

			if (e->m.type != spec_types[t].type)
				continue;
			frames++;
			for (size_t cap = 0; cap < e->n; cap++)
			{
				uint8_t    *buf = malloc(cap + 16);
				int			rc;
				bool		canary = true;

				caps++;
				memset(buf, 0xa5, cap + 16);
				rc = cmproto_encode(&e->m, buf, cap);
				for (size_t i = cap; i < cap + 16; i++)
					if (buf[i] != 0xa5)
						canary = false;
				if (rc != CMPROTO_ENOSPACE || !canary)
				{
					if (!bad)
						snprintf(why, sizeof(why), "frame %d cap %zu/%zu: rc %d, canary %s",
								 c, cap, e->n, rc, canary ? "intact" : "overwritten");
					bad++;
				}
				free(buf);
			}
			/* exactly enough room: a block of exactly n bytes */
			exact = malloc(e->n);
			if (cmproto_encode(&e->m, exact, e->n) != (int) e->n ||
				memcmp(exact, e->bytes, e->n) != 0)
			{
				if (!bad)
					snprintf(why, sizeof(why), "frame %d: cap == %zu fails", c, e->n);
				bad++;
			}
			free(exact);
		}
		if (!ok(bad == 0 && frames > 0,
				"encode %s (%d frames): each of %d too-small caps is ENOSPACE, canary intact; "
				"exact cap works", spec_types[t].name, frames, caps))
			printf("#   %d bad; first: %s\n", bad, why);
	}
	{
		cmproto_msg m = mk('H');
		uint8_t		big[CMPROTO_MAX_MSG];

		m.u.hello.min_version = m.u.hello.max_version = 1;
		is_int(cmproto_encode(&m, NULL, 0), CMPROTO_ENOSPACE,
			   "encode HELLO into a NULL buffer of capacity 0: ENOSPACE");
		is_int(cmproto_encode(&m, big, sizeof(big)), 12, "encode HELLO into 512 bytes: 12");
	}
}

int
main(void)
{
	corpus_build();
	test_prefixes();
	test_header();
	test_type_bytes();
	test_peers();
	test_fields();
	test_versions();
	test_enospace();
	return tap_done();
}
