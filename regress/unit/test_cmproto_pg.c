/*-------------------------------------------------------------------------
 *
 * test_cmproto_pg.c
 *	  Unit test of the PostgreSQL-compatible packets of the codec
 *	  (common/cmproto_pg.c): the classification of a client's first packet
 *	  and the ErrorResponse, read and written, from docs/protocol.md.
 *
 * Every input handed to a reader by dup_exact ends right before an
 * inaccessible page (cmproto_bytes.h), so that any read past it faults.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmproto.h"
#include "cmproto_bytes.h"
#include "tap.h"

/* ---- 6. PostgreSQL-compatible packets ---- */

static void
check_classify(const bb *b, int want, size_t want_len, int want_kind, const char *desc)
{
	uint8_t    *buf = dup_exact(b->d, b->n);
	size_t		pl = 999;
	cmproto_pg_kind kind = (cmproto_pg_kind) 99;
	int			rc = cmproto_pg_classify(buf, b->n, &pl, &kind);
	bool		pass = rc == want && pl == want_len && (want_kind < 0 || (int) kind == want_kind);

	if (!ok(pass, "pg_classify %s: %s", desc, cmproto_strerror(want)))
		printf("#   got %d (%s), pktlen %zu, kind %d\n", rc, cmproto_strerror(rc), pl,
			   (int) kind);
	free_exact(buf);
}

/* Every strict prefix of a packet: INCOMPLETE, pktlen known from 4 bytes. */
static void
check_classify_prefixes(const bb *b, const char *desc)
{
	int			bad = 0;

	for (size_t k = 0; k < b->n; k++)
	{
		uint8_t    *buf = dup_exact(b->d, k);
		size_t		pl = 999;
		cmproto_pg_kind kind;

		if (cmproto_pg_classify(buf, k, &pl, &kind) != CMPROTO_INCOMPLETE ||
			pl != (k < 4 ? 0 : b->n))
			bad++;
		free_exact(buf);
	}
	ok(bad == 0, "pg_classify: every strict prefix of %s (%zu) is INCOMPLETE", desc, b->n);
}

static void
pg_packet(bb *b, uint32_t len, uint32_t code)
{
	bb_init(b);
	b_u32(b, len);
	b_u32(b, code);
}

static void
test_pg_classify(void)
{
	bb			b;
	uint8_t		probe[16];
	uint8_t    *exact;

	/* the probe: section 2.1 */
	memset(probe, 0xa5, sizeof(probe));
	is_int(cmproto_pg_encode_probe(probe, sizeof(probe)), 8, "pg_encode_probe returns 8");
	b_hex(&b, "00 00 00 08 04 d2 16 30");
	ok(memcmp(probe, b.d, 8) == 0 && probe[8] == 0xa5,
	   "pg_encode_probe writes 00 00 00 08 04 d2 16 30 and nothing more");
	exact = malloc(8);
	is_int(cmproto_pg_encode_probe(exact, 8), 8, "pg_encode_probe into exactly 8 bytes");
	free(exact);
	{
		int			bad = 0;

		for (size_t cap = 0; cap < 8; cap++)
		{
			memset(probe, 0xa5, sizeof(probe));
			if (cmproto_pg_encode_probe(probe, cap) != 0)
				bad++;
			for (size_t i = 0; i < sizeof(probe); i++)
				if (probe[i] != 0xa5)
					bad++;
		}
		ok(bad == 0, "pg_encode_probe with cap 0..7 returns 0 and writes nothing");
	}

	check_classify(&b, CMPROTO_OK, 8, CMPROTO_PG_GSSENC_REQUEST, "GSSENCRequest (the probe)");
	check_classify_prefixes(&b, "the GSSENCRequest");
	pg_packet(&b, 8, 80877103);
	check_classify(&b, CMPROTO_OK, 8, CMPROTO_PG_SSL_REQUEST, "SSLRequest");
	check_classify_prefixes(&b, "an SSLRequest");
	pg_packet(&b, 16, 80877102);
	b_u32(&b, 12345);
	b_u32(&b, 0xdeadbeef);
	check_classify(&b, CMPROTO_OK, 16, CMPROTO_PG_CANCEL_REQUEST, "CancelRequest (16 bytes)");
	check_classify_prefixes(&b, "a CancelRequest");

	/* a protocol 3.0 StartupMessage */
	pg_packet(&b, 0, 196608);
	b_bytes(&b, "user\0alice\0database\0db\0\0", 24);
	b.d[3] = (uint8_t) b.n;
	check_classify(&b, CMPROTO_OK, 32, CMPROTO_PG_STARTUP,
				   "StartupMessage 3.0 user=alice database=db (32 bytes)");
	check_classify_prefixes(&b, "a StartupMessage");
	/* ... followed by more bytes (the client pipelined): still the packet */
	b_u8(&b, 'Q');
	check_classify(&b, CMPROTO_OK, 32, CMPROTO_PG_STARTUP, "StartupMessage with a byte after it");
	/* the StartupMessage of protocol 3.2 (PostgreSQL 18) is still a startup */
	pg_packet(&b, 9, 0x00030002);
	b_u8(&b, 0);
	check_classify(&b, CMPROTO_OK, 9, CMPROTO_PG_STARTUP, "StartupMessage 3.2");

	/* well framed but unknown */
	pg_packet(&b, 9, 0x00020000);
	b_u8(&b, 0);
	check_classify(&b, CMPROTO_OK, 9, CMPROTO_PG_UNSUPPORTED, "protocol 2.0 startup");
	pg_packet(&b, 8, 80877105);
	check_classify(&b, CMPROTO_OK, 8, CMPROTO_PG_UNSUPPORTED, "code 80877105");
	pg_packet(&b, 8, 0);
	check_classify(&b, CMPROTO_OK, 8, CMPROTO_PG_UNSUPPORTED, "code 0");
	pg_packet(&b, 8, 0x00040000);
	check_classify(&b, CMPROTO_OK, 8, CMPROTO_PG_UNSUPPORTED, "protocol 4.0");

	/* lengths */
	{
		static const uint32_t shorts[] = {0, 1, 4, 7};

		for (int i = 0; i < 4; i++)
		{
			char		desc[64];

			pg_packet(&b, shorts[i], 196608);
			snprintf(desc, sizeof(desc), "length %u (< 8)", shorts[i]);
			check_classify(&b, CMPROTO_ESHORTLEN, 0, -1, desc);
			b.n = 4;
			snprintf(desc, sizeof(desc), "length %u (< 8), 4 bytes only", shorts[i]);
			check_classify(&b, CMPROTO_ESHORTLEN, 0, -1, desc);
		}
	}
	pg_packet(&b, 10005, 196608);
	check_classify(&b, CMPROTO_ETOOLONG, 0, -1, "length 10005 (> 4 + 10000)");
	b.n = 4;
	check_classify(&b, CMPROTO_ETOOLONG, 0, -1, "length 10005, 4 bytes only");
	pg_packet(&b, 0xFFFFFFFFu, 196608);
	check_classify(&b, CMPROTO_ETOOLONG, 0, -1, "length 0xffffffff");
	pg_packet(&b, 0x80000000u, 196608);
	check_classify(&b, CMPROTO_ETOOLONG, 0, -1, "length 0x80000000");
	pg_packet(&b, 10004, 196608);
	check_classify(&b, CMPROTO_INCOMPLETE, 10004, CMPROTO_PG_STARTUP,
				   "length 10004 with 8 bytes so far");
	{
		uint8_t    *buf;
		size_t		pl;
		cmproto_pg_kind kind;

		/* 10004 bytes do not fit a bb: build it directly */
		buf = calloc(1, 10004);
		buf[2] = 0x27;
		buf[3] = 0x14;
		buf[5] = 3;
		ok(cmproto_pg_classify(buf, 10004, &pl, &kind) == CMPROTO_OK && pl == 10004 &&
		   kind == CMPROTO_PG_STARTUP, "pg_classify a 10004-byte startup packet (PostgreSQL's maximum): OK");
		free(buf);
	}

	/* GSS / SSL with length != 8, cancel with a key under 4 or over 256 bytes */
	{
		static const uint32_t lens[] = {9, 12, 16, 100};

		for (int i = 0; i < 4; i++)
		{
			char		desc[64];

			pg_packet(&b, lens[i], 80877104);
			snprintf(desc, sizeof(desc), "GSSENCRequest of length %u", lens[i]);
			check_classify(&b, CMPROTO_ERANGE, lens[i], -1, desc);
			pg_packet(&b, lens[i], 80877103);
			snprintf(desc, sizeof(desc), "SSLRequest of length %u", lens[i]);
			check_classify(&b, CMPROTO_ERANGE, lens[i], -1, desc);
		}
	}
	{
		static const uint32_t lens[] = {8, 12, 15, 269, 1000};

		for (int i = 0; i < 5; i++)
		{
			char		desc[64];

			pg_packet(&b, lens[i], 80877102);
			while (b.n < lens[i])
				b_u8(&b, 0);
			snprintf(desc, sizeof(desc), "CancelRequest of length %u", lens[i]);
			check_classify(&b, CMPROTO_ERANGE, lens[i], -1, desc);
		}
	}
	/* protocol 3.2's longer keys: PostgreSQL 18 sends 32 bytes, 256 at most */
	{
		static const uint32_t lens[] = {17, 44, 268};

		for (int i = 0; i < 3; i++)
		{
			char		desc[64];

			pg_packet(&b, lens[i], 80877102);
			while (b.n < lens[i])
				b_u8(&b, 7);
			snprintf(desc, sizeof(desc), "CancelRequest of length %u (a key of %u bytes)",
					 lens[i], lens[i] - 12);
			check_classify(&b, CMPROTO_OK, lens[i], CMPROTO_PG_CANCEL_REQUEST, desc);
		}
	}
}

/* An ErrorResponse by hand: 'E', its length, then n bytes of fields. */
static void
pg_err_frame(bb *b, const char *fields, size_t n)
{
	bb_init(b);
	b_u8(b, 'E');
	b_u32(b, (uint32_t) (4 + n));
	b_bytes(b, fields, n);
}

static void
check_pgerr(const bb *b, int want, const char *desc)
{
	uint8_t    *p = dup_exact(b->d, b->n);
	size_t		ml = 999;
	cmproto_pg_error err;
	int			rc = cmproto_pg_decode_error(p, b->n, &ml, &err);

	if (!is_int(rc, want, "pg_decode_error %s: %s", desc, cmproto_strerror(want)))
		printf("#   got %s\n", cmproto_strerror(rc));
	free_exact(p);
}

/* A valid ErrorResponse with another first byte: not an ErrorResponse. */
static const struct
{
	uint8_t		byte;
	const char *desc;
}			first_bytes[] = {
	{'N', "first byte 'N'"},
	{'G', "first byte 'G'"},
	{'H', "first byte 'H' (a HELLO frame)"},
};

/* Length words alone: above the bound, or short of it. */
static const struct
{
	uint32_t	len;
	int			want;
	const char *desc;
}			pg_lengths[] = {
	{1024, CMPROTO_ETOOLONG, "length 1024 (1025 bytes)"},
	{0xFFFFFFFFu, CMPROTO_ETOOLONG, "length 0xffffffff"},
	{1023, CMPROTO_INCOMPLETE, "length 1023 with 5 bytes so far"},
};

/* The fields of an ErrorResponse, malformed and not (pg_err_frame()). */
static const struct
{
	const char *fields;
	size_t		n;
	int			want;
	const char *desc;
}			pg_fields[] = {
	{"SFATAL\0C08004\0Mhello", 20, CMPROTO_EBADSTRING, "unterminated last field"},
	{"SFATAL\0C08004\0M", 15, CMPROTO_EBADSTRING, "field code with no value at the end"},
	{"SFATAL\0C08004\0Mhello\0", 21, CMPROTO_ETRUNCATED, "missing final terminator"},
	{"SFATAL\0C08004\0Mhello\0\0x", 23, CMPROTO_ETRAILING, "a byte after the terminator"},
	{"SFATAL\0C08004\0Mhello\0\0\0", 23, CMPROTO_ETRAILING, "two terminators"},
	{"\0", 1, CMPROTO_ERANGE, "no field at all"},
	{"C08004\0Mhello\0\0", 15, CMPROTO_ERANGE, "missing severity"},
	{"SFATAL\0Mhello\0\0", 15, CMPROTO_ERANGE, "missing SQLSTATE"},
	{"SFATAL\0C08004\0\0", 15, CMPROTO_ERANGE, "missing message"},
	{"VERROR\0C08004\0Mhello\0\0", 22, CMPROTO_OK, "severity from 'V' alone"},
};

static void
test_pg_error(void)
{
	uint8_t		buf[CMPROTO_PG_MAX_ERROR + 64];
	uint8_t    *in;
	size_t		ml;
	cmproto_pg_error err;
	int			n;
	bb			want,
				b;
	const char *msg = "this port is conmgr, not a PostgreSQL server";
	const char *hint = "connect with libpq-cm";

	/* golden: 'E', length, S FATAL, V FATAL, C, M, H, terminator */
	n = cmproto_pg_encode_error(buf, sizeof(buf), "08004", "m", "h");
	b_hex(&want, "45 00 00 00 20 53 46 41 54 41 4c 00 56 46 41 54 41 4c 00"
		  " 43 30 38 30 30 34 00 4d 6d 00 48 68 00 00");
	if (!ok(n == (int) want.n && memcmp(buf, want.d, want.n) == 0,
			"pg_encode_error(08004, \"m\", \"h\") golden bytes (33)"))
	{
		printf("#   got %d:", n);
		for (int i = 0; i < n && i < 64; i++)
			printf(" %02x", buf[i]);
		printf("\n");
	}

	/* round trips */
	n = cmproto_pg_encode_error(buf, sizeof(buf), "08004", msg, hint);
	in = dup_exact(buf, (size_t) (n > 0 ? n : 0));
	ok(n > 0 && cmproto_pg_decode_error(in, (size_t) n, &ml, &err) == CMPROTO_OK &&
	   ml == (size_t) n &&
	   strcmp(err.severity, "FATAL") == 0 && strcmp(err.sqlstate, "08004") == 0 &&
	   strcmp(err.message, msg) == 0 && err.hint && strcmp(err.hint, hint) == 0 &&
	   err.detail == NULL,
	   "pg ErrorResponse round trip with a hint");
	ok(n > 0 && n <= CMPROTO_PG_MAX_ERROR && in[0] == 'E', "it is an 'E' of at most 1024 bytes");
	free_exact(in);

	n = cmproto_pg_encode_error(buf, sizeof(buf), "08P01", msg, NULL);
	in = dup_exact(buf, (size_t) (n > 0 ? n : 0));
	ok(n > 0 && cmproto_pg_decode_error(in, (size_t) n, &ml, &err) == CMPROTO_OK &&
	   ml == (size_t) n &&
	   strcmp(err.severity, "FATAL") == 0 && strcmp(err.sqlstate, "08P01") == 0 &&
	   strcmp(err.message, msg) == 0 && err.hint == NULL && err.detail == NULL,
	   "pg ErrorResponse round trip without a hint");
	free_exact(in);

	n = cmproto_pg_encode_error(buf, sizeof(buf), "XX000", "", "");
	in = dup_exact(buf, (size_t) (n > 0 ? n : 0));
	ok(n > 0 && cmproto_pg_decode_error(in, (size_t) n, &ml, &err) == CMPROTO_OK &&
	   strcmp(err.message, "") == 0 && err.hint && strcmp(err.hint, "") == 0,
	   "pg ErrorResponse round trip with empty message and hint");
	free_exact(in);

	/* the largest: 29 + 995 = 1024 bytes; one more is too long */
	{
		char		big[1100];

		fill_chars(big, 995, 'M');
		n = cmproto_pg_encode_error(buf, sizeof(buf), "08004", big, NULL);
		in = dup_exact(buf, (size_t) (n > 0 ? n : 0));
		ok(n == 1024 && cmproto_pg_decode_error(in, 1024, &ml, &err) == CMPROTO_OK &&
		   strlen(err.message) == 995, "pg ErrorResponse of exactly 1024 bytes round-trips");
		free_exact(in);
		fill_chars(big, 996, 'M');
		is_int(cmproto_pg_encode_error(buf, sizeof(buf), "08004", big, NULL), CMPROTO_ETOOLONG,
			   "pg ErrorResponse of 1025 bytes: ETOOLONG");
		fill_chars(big, 1099, 'M');
		is_int(cmproto_pg_encode_error(buf, sizeof(buf), "08004", big, NULL), CMPROTO_ETOOLONG,
			   "pg ErrorResponse with a 1099-byte message: ETOOLONG");
		/* 29 + 1 (message "m") + 1 + hint + 1 */
		fill_chars(big, 992, 'H');
		is_int(cmproto_pg_encode_error(buf, sizeof(buf), "08004", "m", big), 1024,
			   "pg ErrorResponse with a 992-byte hint is exactly 1024 bytes");
		fill_chars(big, 993, 'H');
		is_int(cmproto_pg_encode_error(buf, sizeof(buf), "08004", "m", big), CMPROTO_ETOOLONG,
			   "pg ErrorResponse with a 993-byte hint (1025 bytes): ETOOLONG");
	}

	/* bad SQLSTATEs */
	{
		static const char *const bad[] = {"", "0800", "080044", "08p01", "08 04", "08-04",
		"0800\n", "\303\251080"};

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		{
			memset(buf, 0xa5, sizeof(buf));
			is_int(cmproto_pg_encode_error(buf, sizeof(buf), bad[i], "m", NULL), CMPROTO_ERANGE,
				   "pg_encode_error rejects SQLSTATE #%zu (\"%s\")", i, bad[i]);
		}
	}

	/* too-small buffers */
	{
		int			need = cmproto_pg_encode_error(buf, sizeof(buf), "08004", msg, hint);
		int			bad = 0;

		for (int cap = 0; cap < need; cap++)
		{
			uint8_t    *p = malloc((size_t) cap + 16);

			memset(p, 0xa5, (size_t) cap + 16);
			if (cmproto_pg_encode_error(p, (size_t) cap, "08004", msg, hint) != CMPROTO_ENOSPACE)
				bad++;
			for (int i = cap; i < cap + 16; i++)
				if (p[i] != 0xa5)
					bad++;
			free(p);
		}
		ok(need > 0 && bad == 0,
		   "pg_encode_error: each cap 0..%d is ENOSPACE and nothing is written past it",
		   need - 1);
	}

	/* incomplete prefixes of a valid ErrorResponse */
	{
		int			bad = 0;

		n = cmproto_pg_encode_error(buf, sizeof(buf), "08004", msg, hint);
		for (int k = 0; k < n; k++)
		{
			in = dup_exact(buf, (size_t) k);
			ml = 999;
			if (cmproto_pg_decode_error(in, (size_t) k, &ml, &err) != CMPROTO_INCOMPLETE ||
				ml != (k < 5 ? 0 : (size_t) n))
				bad++;
			free_exact(in);
		}
		ok(bad == 0, "pg_decode_error: every strict prefix (%d) is INCOMPLETE", n);
	}

	/* section 2.1: the ErrorResponse and HELLO come in one write */
	{
		uint8_t		both[CMPROTO_PG_MAX_ERROR + CMPROTO_MAX_MSG];
		cmproto_msg hello = mk('H');
		int			ne,
					nh;
		size_t		fl = 0;
		cmproto_msg out;

		hello.u.hello.min_version = hello.u.hello.max_version = 1;
		ne = cmproto_pg_encode_error(both, sizeof(both), "08004", msg, hint);
		nh = cmproto_encode(&hello, both + ne, sizeof(both) - (size_t) ne);
		in = dup_exact(both, (size_t) (ne + nh));
		ok(cmproto_pg_decode_error(in, (size_t) (ne + nh), &ml, &err) == CMPROTO_OK &&
		   ml == (size_t) ne &&
		   cmproto_frame(in + ml, (size_t) nh, &fl) == CMPROTO_OK && fl == (size_t) nh &&
		   cmproto_decode(in + ml, fl, P_L, &out) == CMPROTO_OK,
		   "ErrorResponse then HELLO in one buffer: both delimited and decoded");
		free_exact(in);
	}

	/* malformed ErrorResponses, built by hand */
	pg_err_frame(&b, "SFATAL\0C08004\0Mhello\0\0", 22);
	check_pgerr(&b, CMPROTO_OK, "minimal S, C, M");
	for (size_t i = 0; i < sizeof(first_bytes) / sizeof(first_bytes[0]); i++)
	{
		b.d[0] = first_bytes[i].byte;
		check_pgerr(&b, CMPROTO_EUNKNOWNTYPE, first_bytes[i].desc);
	}
	{
		uint8_t		one[1] = {'S'};

		in = dup_exact(one, 1);
		is_int(cmproto_pg_decode_error(in, 1, &ml, &err), CMPROTO_EUNKNOWNTYPE,
			   "pg_decode_error: one byte 'S' is EUNKNOWNTYPE at once");
		free_exact(in);
	}

	for (uint32_t len = 0; len < 5; len++)
	{
		char		desc[64];

		bb_init(&b);
		b_u8(&b, 'E');
		b_u32(&b, len);
		b_u8(&b, 0);
		snprintf(desc, sizeof(desc), "length %u (< 5)", len);
		check_pgerr(&b, CMPROTO_ESHORTLEN, desc);
	}
	for (size_t i = 0; i < sizeof(pg_lengths) / sizeof(pg_lengths[0]); i++)
	{
		bb_init(&b);
		b_u8(&b, 'E');
		b_u32(&b, pg_lengths[i].len);
		check_pgerr(&b, pg_lengths[i].want, pg_lengths[i].desc);
	}
	for (size_t i = 0; i < sizeof(pg_fields) / sizeof(pg_fields[0]); i++)
	{
		pg_err_frame(&b, pg_fields[i].fields, pg_fields[i].n);
		check_pgerr(&b, pg_fields[i].want, pg_fields[i].desc);
	}

	pg_err_frame(&b, "SERREUR\0VERROR\0C08004\0Mhello\0Ddetail\0Hhint\0Fpostmaster.c\0L42\0\0", 62);
	{
		uint8_t    *p = dup_exact(b.d, b.n);

		ok(cmproto_pg_decode_error(p, b.n, &ml, &err) == CMPROTO_OK &&
		   strcmp(err.severity, "ERREUR") == 0 && strcmp(err.detail, "detail") == 0 &&
		   strcmp(err.hint, "hint") == 0 && strcmp(err.message, "hello") == 0,
		   "pg_decode_error: 'S' kept over 'V', detail and hint read, F and L skipped");
		free_exact(p);
	}
}

int
main(void)
{
	test_pg_classify();
	test_pg_error();
	return tap_done();
}
