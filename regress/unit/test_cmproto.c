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
 * bytes.  Then every class of malformed input, each with its exact status,
 * and a bounded fuzz loop (fixed seed).  The helpers (negotiation, names)
 * are tested in test_cmproto_names.c, the PostgreSQL-compatible packets in
 * test_cmproto_pg.c.
 *
 * Every input handed to the decoder by dup_exact ends right before an
 * inaccessible page, so that any read past it faults in every run; the few
 * larger blocks are malloc'd at exactly their length, for valgrind:
 *		valgrind --error-exitcode=1 build/regress/test_cmproto
 *
 *-------------------------------------------------------------------------
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cmproto.h"
#include "cmproto_bytes.h"
#include "tap.h"

static const cmproto_peer all_peers[4] = {P_A, P_L, P_C, P_W};
static const char *const peer_names[4] = {"A", "L", "C", "W"};

/*
 * docs/protocol.md, 2.2 and 3: type byte, name, sender(s), and the body
 * bounds the tables imply (fixed fields, strings empty .. strings at their
 * maximum).
 */
typedef struct spec_type
{
	uint8_t		type;
	const char *name;
	unsigned	from;
	unsigned	min_body;
	unsigned	max_body;
} spec_type;

static const spec_type spec_types[] = {
	{'H', "HELLO", P_L, 8, 8},
	{'R', "RESOLVE", P_A, 2 + 1 + 1 + 4 + 2, 2 + 1 + 1 + 4 + 2 + 63},
	{'C', "CANDIDATE", P_L, 2 + 2 + 1 + 1 + 2, 2 + 2 + 1 + 1 + 2 + 255},
	{'Z', "CANDIDATES_END", P_L, 2, 2},
	{'A', "ATTACHED", P_A, 6, 6},
	{'D', "INSTANCE_DOWN", P_L, 3, 3},
	{'X', "ERROR", P_ALL, 2 + 2, 2 + 2 + 255},
	{'h', "HB_HELLO", P_C, 4 + 2 + 2 + 4 + 4 + 2 + 32, 4 + 2 + 2 + 4 + 4 + 2 + 32},
	{'c', "HB_CHALLENGE", P_W, 2 + 32 + 32, 2 + 32 + 32},
	{'a', "HB_AUTH", P_C, 32, 32},
	{'w', "HB_WELCOME", P_W, 2 + 2 + 4 + 4 + 8, 2 + 2 + 4 + 4 + 8 + 4},
	{'b', "HB_BEAT", P_C | P_W, 8, 8},
	{'t', "HB_ATTRS", P_W, 4, 4 + 4},
};
#define N_TYPES ((int) (sizeof(spec_types) / sizeof(spec_types[0])))

static const spec_type *
spec_lookup(int type)
{
	for (int i = 0; i < N_TYPES; i++)
		if (spec_types[i].type == type)
			return &spec_types[i];
	return NULL;
}

/* ---- the reference encoder: docs/protocol.md 2.2 and 3, table by table ---- */

static void
spec_encode(const cmproto_msg *m, bb *o)
{
	b_hdr(o, m->type);
	switch (m->type)
	{
		case 'H':
			b_u32(o, 0x434D4752);	/* "CMGR" */
			b_u16(o, m->u.hello.min_version);
			b_u16(o, m->u.hello.max_version);
			break;
		case 'R':
			b_u16(o, m->u.resolve.version);
			b_u8(o, m->u.resolve.target);
			b_u8(o, 0);			/* reserved */
			b_u32(o, m->u.resolve.client_pid);
			b_str(o, m->u.resolve.application_name);
			break;
		case 'C':
			b_u16(o, m->u.candidate.instance);
			b_u16(o, m->u.candidate.port);
			b_u8(o, m->u.candidate.attrs);
			b_u8(o, m->u.candidate.addr_kind);
			b_str(o, m->u.candidate.host);
			break;
		case 'Z':
			b_u16(o, m->u.candidates_end.count);
			break;
		case 'A':
			b_u16(o, m->u.attached.instance);
			b_u32(o, m->u.attached.backend_pid);
			break;
		case 'D':
			b_u16(o, m->u.instance_down.instance);
			b_u8(o, m->u.instance_down.reason);
			break;
		case 'X':
			b_u16(o, m->u.error.code);
			b_str(o, m->u.error.message);
			break;
		case 'h':
			b_u32(o, 0x434D4842);	/* "CMHB" */
			b_u16(o, m->u.hb_hello.min_version);
			b_u16(o, m->u.hb_hello.max_version);
			b_u32(o, m->u.hb_hello.interval);
			b_u32(o, m->u.hb_hello.timeout);
			b_u16(o, m->u.hb_hello.flags);
			b_bytes(o, m->u.hb_hello.nonce, 32);
			break;
		case 'c':
			b_u16(o, m->u.hb_challenge.version);
			b_bytes(o, m->u.hb_challenge.nonce, 32);
			b_bytes(o, m->u.hb_challenge.proof, 32);
			break;
		case 'a':
			b_bytes(o, m->u.hb_auth.proof, 32);
			break;
		case 'w':
			b_u16(o, m->u.hb_welcome.version);
			b_u16(o, m->u.hb_welcome.flags);
			b_u32(o, m->u.hb_welcome.attrs);
			b_u32(o, m->u.hb_welcome.server_version_num);
			b_u64(o, m->u.hb_welcome.system_identifier);
			if (m->u.hb_welcome.version >= 2)
				b_u32(o, m->u.hb_welcome.timeline);
			break;
		case 'b':
			b_u32(o, m->u.hb_beat.seq);
			b_u32(o, m->u.hb_beat.attrs);
			break;
		case 't':
			/* version 2's layout; test_versions() builds version 1's */
			b_u32(o, m->u.hb_attrs.attrs);
			b_u32(o, m->u.hb_attrs.timeline);
			break;
		default:
			abort();
	}
	b_fin(o);
}

static bool
msg_equal(const cmproto_msg *a, const cmproto_msg *b)
{
	if (a->type != b->type)
		return false;
	switch (a->type)
	{
		case 'H':
			return a->u.hello.min_version == b->u.hello.min_version &&
				a->u.hello.max_version == b->u.hello.max_version;
		case 'R':
			return a->u.resolve.version == b->u.resolve.version &&
				a->u.resolve.target == b->u.resolve.target &&
				a->u.resolve.client_pid == b->u.resolve.client_pid &&
				strcmp(a->u.resolve.application_name,
					   b->u.resolve.application_name) == 0;
		case 'C':
			return a->u.candidate.instance == b->u.candidate.instance &&
				a->u.candidate.port == b->u.candidate.port &&
				a->u.candidate.attrs == b->u.candidate.attrs &&
				a->u.candidate.addr_kind == b->u.candidate.addr_kind &&
				strcmp(a->u.candidate.host, b->u.candidate.host) == 0;
		case 'Z':
			return a->u.candidates_end.count == b->u.candidates_end.count;
		case 'A':
			return a->u.attached.instance == b->u.attached.instance &&
				a->u.attached.backend_pid == b->u.attached.backend_pid;
		case 'D':
			return a->u.instance_down.instance == b->u.instance_down.instance &&
				a->u.instance_down.reason == b->u.instance_down.reason;
		case 'X':
			return a->u.error.code == b->u.error.code &&
				strcmp(a->u.error.message, b->u.error.message) == 0;
		case 'h':
			return a->u.hb_hello.min_version == b->u.hb_hello.min_version &&
				a->u.hb_hello.max_version == b->u.hb_hello.max_version &&
				a->u.hb_hello.interval == b->u.hb_hello.interval &&
				a->u.hb_hello.timeout == b->u.hb_hello.timeout &&
				a->u.hb_hello.flags == b->u.hb_hello.flags &&
				memcmp(a->u.hb_hello.nonce, b->u.hb_hello.nonce, 32) == 0;
		case 'c':
			return a->u.hb_challenge.version == b->u.hb_challenge.version &&
				memcmp(a->u.hb_challenge.nonce, b->u.hb_challenge.nonce, 32) == 0 &&
				memcmp(a->u.hb_challenge.proof, b->u.hb_challenge.proof, 32) == 0;
		case 'a':
			return memcmp(a->u.hb_auth.proof, b->u.hb_auth.proof, 32) == 0;
		case 'w':
			return a->u.hb_welcome.version == b->u.hb_welcome.version &&
				a->u.hb_welcome.flags == b->u.hb_welcome.flags &&
				a->u.hb_welcome.attrs == b->u.hb_welcome.attrs &&
				a->u.hb_welcome.server_version_num ==
				b->u.hb_welcome.server_version_num &&
				a->u.hb_welcome.system_identifier ==
				b->u.hb_welcome.system_identifier &&
				a->u.hb_welcome.timeline == b->u.hb_welcome.timeline;
		case 'b':
			return a->u.hb_beat.seq == b->u.hb_beat.seq &&
				a->u.hb_beat.attrs == b->u.hb_beat.attrs;
		case 't':
			return a->u.hb_attrs.attrs == b->u.hb_attrs.attrs &&
				a->u.hb_attrs.timeline == b->u.hb_attrs.timeline;
	}
	return false;
}

/* ---- the corpus: every frame that went through a round trip ---- */

#define MAX_CORPUS 512
typedef struct corpus_ent
{
	cmproto_msg m;
	unsigned	accept;			/* peers that must accept it */
	size_t		n;
	uint8_t		bytes[CMPROTO_MAX_MSG];
} corpus_ent;

static corpus_ent corpus[MAX_CORPUS];
static int	n_corpus;

static char why[512];

/*
 * 1. Round trip: encode == reference bytes, frame OK with that length,
 * decode OK with equal fields from every peer in "accept", refused from the
 * others.
 */
static void
roundtrip(const cmproto_msg *m, unsigned accept, const char *desc)
{
	bb			ref;
	uint8_t    *buf;
	int			n;
	size_t		ml = 99;
	int			rc;

	why[0] = '\0';
	spec_encode(m, &ref);
	buf = malloc(ref.n);
	n = cmproto_encode(m, buf, ref.n);
	if (n != (int) ref.n)
		snprintf(why, sizeof(why), "encode returned %d (%s), spec says %zu bytes",
				 n, cmproto_strerror(n), ref.n);
	else if (memcmp(buf, ref.d, ref.n) != 0)
		snprintf(why, sizeof(why), "encoded bytes differ from the spec's layout");
	else if ((rc = cmproto_frame(buf, ref.n, &ml)) != CMPROTO_OK || ml != ref.n)
		snprintf(why, sizeof(why), "frame returned %d, msglen %zu", rc, ml);
	else
	{
		for (int p = 0; p < 4 && !why[0]; p++)
		{
			cmproto_msg out;

			memset(&out, 0x5a, sizeof(out));
			rc = cmproto_decode(buf, ref.n, all_peers[p], &out);
			if (accept & all_peers[p])
			{
				if (rc != CMPROTO_OK)
					snprintf(why, sizeof(why), "decode from %s: %s",
							 peer_names[p], cmproto_strerror(rc));
				else if (!msg_equal(m, &out))
					snprintf(why, sizeof(why), "decode from %s: fields differ",
							 peer_names[p]);
			}
			else if (rc == CMPROTO_OK)
				snprintf(why, sizeof(why), "decode from %s accepted it",
						 peer_names[p]);
		}
	}
	if (!ok(why[0] == '\0', "round trip %s", desc))
		printf("#   %s\n", why);
	if (n_corpus < MAX_CORPUS && ref.n <= CMPROTO_MAX_MSG)
	{
		corpus[n_corpus].m = *m;
		corpus[n_corpus].accept = accept;
		corpus[n_corpus].n = ref.n;
		memcpy(corpus[n_corpus].bytes, ref.d, ref.n);
		n_corpus++;
	}
	free(buf);
}

static void
test_roundtrips(void)
{
	cmproto_msg m;
	char		desc[512];
	static const char *const hosts[] = {"a", "db1.example.com", "127.0.0.1", "::1"};

	/* HELLO */
	{
		static const uint16_t v[][2] = {{1, 1}, {1, 2}, {1, 65535}, {65535, 65535}};

		for (size_t i = 0; i < 4; i++)
		{
			m = mk(CMPROTO_HELLO);
			m.u.hello.min_version = v[i][0];
			m.u.hello.max_version = v[i][1];
			snprintf(desc, sizeof(desc), "HELLO min %u max %u", v[i][0], v[i][1]);
			roundtrip(&m, P_L, desc);
		}
	}

	/* RESOLVE: every target, empty / short / maximal application names */
	for (int target = 0; target <= 6; target++)
	{
		for (int s = 0; s < 3; s++)
		{
			m = mk(CMPROTO_RESOLVE);
			m.u.resolve.version = (s == 2) ? 65535 : 1;
			m.u.resolve.target = (uint8_t) target;
			m.u.resolve.client_pid = (s == 0) ? 0 : (s == 1) ? 4242 : 0xFFFFFFFFu;
			if (s == 1)
				strcpy(m.u.resolve.application_name, "psql");
			else if (s == 2)
				fill_chars(m.u.resolve.application_name, 63, 'n');
			snprintf(desc, sizeof(desc), "RESOLVE target %d, application name of %zu bytes",
					 target, strlen(m.u.resolve.application_name));
			roundtrip(&m, P_A, desc);
		}
	}
	/* any byte but NUL is allowed in a string */
	m = mk(CMPROTO_RESOLVE);
	m.u.resolve.version = 1;
	for (int i = 0; i < 63; i++)
		m.u.resolve.application_name[i] = (char) (0x80 + i);
	roundtrip(&m, P_A, "RESOLVE with high-bit bytes in the application name");

	/* CANDIDATE: instance 0/63, port 1/65535, all attrs, both addr kinds */
	for (int inst = 0; inst < 2; inst++)
		for (int port = 0; port < 2; port++)
			for (int attrs = 0; attrs <= 3; attrs++)
				for (int kind = 0; kind <= 1; kind++)
				{
					m = mk(CMPROTO_CANDIDATE);
					m.u.candidate.instance = inst ? 63 : 0;
					m.u.candidate.port = port ? 65535 : 1;
					m.u.candidate.attrs = (uint8_t) attrs;
					m.u.candidate.addr_kind = (uint8_t) kind;
					strcpy(m.u.candidate.host, hosts[(inst * 2 + port + kind) % 4]);
					snprintf(desc, sizeof(desc),
							 "CANDIDATE instance %u port %u attrs %d addr_kind %d host %s",
							 m.u.candidate.instance, m.u.candidate.port, attrs, kind,
							 m.u.candidate.host);
					roundtrip(&m, P_L, desc);
				}
	m = mk(CMPROTO_CANDIDATE);
	m.u.candidate.instance = 17;
	m.u.candidate.port = 5432;
	m.u.candidate.attrs = 3;
	fill_chars(m.u.candidate.host, 255, 'h');
	roundtrip(&m, P_L, "CANDIDATE with a 255-byte host name");

	/* CANDIDATES_END */
	{
		static const uint16_t counts[] = {0, 1, 63, 64};

		for (size_t i = 0; i < 4; i++)
		{
			m = mk(CMPROTO_CANDIDATES_END);
			m.u.candidates_end.count = counts[i];
			snprintf(desc, sizeof(desc), "CANDIDATES_END count %u", counts[i]);
			roundtrip(&m, P_L, desc);
		}
	}

	/* ATTACHED */
	{
		static const uint32_t pids[] = {0, 1, 0x80000000u, 0xFFFFFFFFu};

		for (int inst = 0; inst < 2; inst++)
			for (size_t i = 0; i < 4; i++)
			{
				m = mk(CMPROTO_ATTACHED);
				m.u.attached.instance = inst ? 63 : 0;
				m.u.attached.backend_pid = pids[i];
				snprintf(desc, sizeof(desc), "ATTACHED instance %u backend_pid %u",
						 m.u.attached.instance, pids[i]);
				roundtrip(&m, P_A, desc);
			}
	}

	/* INSTANCE_DOWN: every reason */
	for (int inst = 0; inst < 2; inst++)
		for (int reason = 1; reason <= 4; reason++)
		{
			m = mk(CMPROTO_INSTANCE_DOWN);
			m.u.instance_down.instance = inst ? 63 : 0;
			m.u.instance_down.reason = (uint8_t) reason;
			snprintf(desc, sizeof(desc), "INSTANCE_DOWN instance %u reason %d",
					 m.u.instance_down.instance, reason);
			roundtrip(&m, P_L, desc);
		}

	/* ERROR: every code, empty and maximal message, from every peer */
	for (int code = 1; code <= 6; code++)
	{
		m = mk(CMPROTO_ERROR);
		m.u.error.code = (uint16_t) code;
		snprintf(desc, sizeof(desc), "ERROR code %d, empty message", code);
		roundtrip(&m, P_ALL, desc);
		strcpy(m.u.error.message, cmproto_error_code_name(code));
		snprintf(desc, sizeof(desc), "ERROR code %d, message '%s'", code,
				 m.u.error.message);
		roundtrip(&m, P_ALL, desc);
	}
	m = mk(CMPROTO_ERROR);
	m.u.error.code = CMPROTO_ERR_INTERNAL;
	fill_chars(m.u.error.message, 255, 'e');
	roundtrip(&m, P_ALL, "ERROR with a 255-byte message");

	/* HB_HELLO: interval/timeout at both ends, both flags */
	{
		static const uint32_t secs[] = {1, 2, 2147483647u};

		for (size_t i = 0; i < 3; i++)
			for (size_t j = 0; j < 3; j++)
				for (int flags = 0; flags <= 1; flags++)
				{
					m = mk(CMPROTO_HB_HELLO);
					m.u.hb_hello.min_version = 1;
					m.u.hb_hello.max_version = (uint16_t) (1 + i);
					m.u.hb_hello.interval = secs[i];
					m.u.hb_hello.timeout = secs[j];
					m.u.hb_hello.flags = (uint16_t) flags;
					fill_pattern(m.u.hb_hello.nonce, 32, (uint8_t) (i * 40 + j));
					snprintf(desc, sizeof(desc),
							 "HB_HELLO interval %u timeout %u flags %d",
							 secs[i], secs[j], flags);
					roundtrip(&m, P_C, desc);
				}
	}

	/* HB_CHALLENGE */
	for (int i = 0; i < 3; i++)
	{
		m = mk(CMPROTO_HB_CHALLENGE);
		m.u.hb_challenge.version = i == 2 ? 65535 : 1;
		if (i == 1)
		{
			memset(m.u.hb_challenge.nonce, 0xff, 32);
			memset(m.u.hb_challenge.proof, 0xff, 32);
		}
		else if (i == 2)
		{
			fill_pattern(m.u.hb_challenge.nonce, 32, 0x10);
			fill_pattern(m.u.hb_challenge.proof, 32, 0xe0);
		}
		snprintf(desc, sizeof(desc), "HB_CHALLENGE version %u, pattern %d",
				 m.u.hb_challenge.version, i);
		roundtrip(&m, P_W, desc);
	}

	/* HB_AUTH */
	for (int i = 0; i < 3; i++)
	{
		m = mk(CMPROTO_HB_AUTH);
		if (i == 1)
			memset(m.u.hb_auth.proof, 0xff, 32);
		else if (i == 2)
			fill_pattern(m.u.hb_auth.proof, 32, 0x80);
		snprintf(desc, sizeof(desc), "HB_AUTH proof pattern %d", i);
		roundtrip(&m, P_C, desc);
	}

	/*
	 * HB_WELCOME: every attrs, both flags, system identifier high bit set;
	 * version 1 (no timeline) and version 2 (timeline 1, 2, the largest).
	 */
	{
		static const uint64_t sysids[] = {
			0, UINT64_C(0x8000000000000000), UINT64_C(0xFFFFFFFFFFFFFFFF),
			UINT64_C(7263548765382976234)
		};
		static const uint32_t timelines[] = {0, 1, 2, 0xFFFFFFFFu};

		for (int attrs = 0; attrs <= 3; attrs++)
			for (int flags = 0; flags <= 1; flags++)
				for (int v = 1; v <= 2; v++)
				{
					m = mk(CMPROTO_HB_WELCOME);
					m.u.hb_welcome.version = (uint16_t) v;
					m.u.hb_welcome.flags = (uint16_t) flags;
					m.u.hb_welcome.attrs = (uint32_t) attrs;
					m.u.hb_welcome.server_version_num = attrs == 3 ? 0xFFFFFFFFu : 150004;
					m.u.hb_welcome.system_identifier = sysids[attrs];
					m.u.hb_welcome.timeline = v >= 2 ? timelines[attrs] + (attrs == 0) : 0;
					snprintf(desc, sizeof(desc),
							 "HB_WELCOME version %d attrs %d flags %d system_identifier %llu timeline %u",
							 v, attrs, flags, (unsigned long long) sysids[attrs],
							 m.u.hb_welcome.timeline);
					roundtrip(&m, P_W, desc);
				}
	}

	/* HB_BEAT: attrs 0 from both sides, other attrs from the watchdog only */
	{
		static const uint32_t seqs[] = {0, 1, 0xFFFFFFFFu};

		for (size_t i = 0; i < 3; i++)
			for (int attrs = 0; attrs <= 3; attrs++)
			{
				m = mk(CMPROTO_HB_BEAT);
				m.u.hb_beat.seq = seqs[i];
				m.u.hb_beat.attrs = (uint32_t) attrs;
				snprintf(desc, sizeof(desc), "HB_BEAT seq %u attrs %d (accepted from %s)",
						 seqs[i], attrs, attrs ? "W only" : "C and W");
				roundtrip(&m, attrs ? P_W : (P_C | P_W), desc);
			}
	}

	/* HB_ATTRS (version 2: with a timeline) */
	for (int attrs = 0; attrs <= 3; attrs++)
	{
		m = mk(CMPROTO_HB_ATTRS);
		m.u.hb_attrs.attrs = (uint32_t) attrs;
		m.u.hb_attrs.timeline = attrs == 3 ? 0xFFFFFFFFu : (uint32_t) attrs + 1;
		snprintf(desc, sizeof(desc), "HB_ATTRS attrs %d timeline %u", attrs,
				 m.u.hb_attrs.timeline);
		roundtrip(&m, P_W, desc);
	}

	/* the struct is large enough that the strings come back terminated */
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

static void
test_fields(void)
{
	cmproto_msg m;
	bb			b;

	/* HELLO */
	m = mk('H');
	m.u.hello.min_version = 0;
	m.u.hello.max_version = 1;
	check_range(&m, P_L, "HELLO min_version 0");
	m.u.hello.min_version = 2;
	m.u.hello.max_version = 1;
	check_range(&m, P_L, "HELLO max_version < min_version");
	m.u.hello.min_version = 0;
	m.u.hello.max_version = 0;
	check_range(&m, P_L, "HELLO versions 0..0");
	b_hex(&b, "48 00 00 0c 43 4d 47 53 00 01 00 01");
	check_bad(&b, P_L, CMPROTO_EBADMAGIC, NULL, 0, "HELLO magic 0x434D4753");
	b_hex(&b, "48 00 00 0c 43 4d 48 42 00 01 00 01");
	check_bad(&b, P_L, CMPROTO_EBADMAGIC, NULL, 0, "HELLO with the heartbeat magic \"CMHB\"");
	b_hex(&b, "48 00 00 0c 52 47 4d 43 00 01 00 01");
	check_bad(&b, P_L, CMPROTO_EBADMAGIC, NULL, 0, "HELLO magic byte-swapped");

	/* RESOLVE */
	m = mk('R');
	m.u.resolve.version = 0;
	check_range(&m, P_A, "RESOLVE version 0");
	m.u.resolve.version = 1;
	m.u.resolve.target = 7;
	check_range(&m, P_A, "RESOLVE target 7");
	m.u.resolve.target = 255;
	check_range(&m, P_A, "RESOLVE target 255");
	m.u.resolve.target = 0;
	strcpy(m.u.resolve.application_name, "app");
	spec_encode(&m, &b);
	b.d[4 + 3] = 1;
	check_bad(&b, P_A, CMPROTO_ERANGE, NULL, 0, "RESOLVE reserved byte 0x01");
	b.d[4 + 3] = 0x80;
	check_bad(&b, P_A, CMPROTO_ERANGE, NULL, 0, "RESOLVE reserved byte 0x80");
	/* strings */
	b_hdr(&b, 'R');
	b_u16(&b, 1);
	b_u8(&b, 0);
	b_u8(&b, 0);
	b_u32(&b, 1);
	b_u16(&b, 5);
	b_bytes(&b, "ab\0cd", 5);
	b_fin(&b);
	check_bad(&b, P_A, CMPROTO_EBADSTRING, NULL, 0, "RESOLVE application name with an embedded NUL");
	b.d[b.n - 5] = 'a';
	b.d[b.n - 3] = '\0';
	check_bad(&b, P_A, CMPROTO_EBADSTRING, NULL, 0, "RESOLVE application name with a NUL in the middle");
	b.d[b.n - 3] = 'c';
	b.d[b.n - 1] = '\0';
	check_bad(&b, P_A, CMPROTO_EBADSTRING, NULL, 0, "RESOLVE application name ending with a NUL");
	/* length prefix 64 > 63, within the type's maximum frame */
	b_hdr(&b, 'R');
	b_u16(&b, 1);
	b_u8(&b, 0);
	b_u8(&b, 0);
	b_u32(&b, 1);
	b_u16(&b, 64);
	for (int i = 0; i < 63; i++)
		b_u8(&b, 'x');
	b_fin(&b);
	check_bad(&b, P_A, CMPROTO_ESTRTOOLONG, NULL, 0,
			  "RESOLVE application name length 64 (above 63)");
	put16_at(&b, 12, 0xffff);
	check_bad(&b, P_A, CMPROTO_ESTRTOOLONG, NULL, 0,
			  "RESOLVE application name length 65535");
	/* a 64-byte name actually present: the frame exceeds RESOLVE's bound */
	put16_at(&b, 12, 64);
	b_u8(&b, 'x');
	b_fin(&b);
	check_bad(&b, P_A, CMPROTO_ETRAILING, NULL, 0,
			  "RESOLVE with a whole 64-byte application name (frame above RESOLVE's maximum)");
	/* prefix pointing past the end */
	b_hdr(&b, 'R');
	b_u16(&b, 1);
	b_u8(&b, 0);
	b_u8(&b, 0);
	b_u32(&b, 1);
	b_u16(&b, 10);
	b_bytes(&b, "abcd", 4);
	b_fin(&b);
	check_bad(&b, P_A, CMPROTO_ETRUNCATED, NULL, 0,
			  "RESOLVE application name length 10 with 4 bytes left");
	put16_at(&b, 12, 5);
	check_bad(&b, P_A, CMPROTO_ETRUNCATED, NULL, 0,
			  "RESOLVE application name length 5 with 4 bytes left");
	/* trailing bytes after the string */
	put16_at(&b, 12, 2);
	check_bad(&b, P_A, CMPROTO_ETRAILING, NULL, 0,
			  "RESOLVE application name length 2 with 4 bytes left (trailing)");
	put16_at(&b, 12, 0);
	check_bad(&b, P_A, CMPROTO_ETRAILING, NULL, 0,
			  "RESOLVE application name length 0 with 4 bytes left (trailing)");
	/* encoder: a name not terminated within its 63 bytes */
	m = mk('R');
	m.u.resolve.version = 1;
	memset(m.u.resolve.application_name, 'y', sizeof(m.u.resolve.application_name));
	{
		uint8_t		enc[CMPROTO_MAX_MSG];

		is_int(cmproto_encode(&m, enc, sizeof(enc)), CMPROTO_ESTRTOOLONG,
			   "encode RESOLVE with an unterminated 64-byte application name: ESTRTOOLONG");
	}

	/* CANDIDATE */
	m = mk('C');
	m.u.candidate.port = 5432;
	strcpy(m.u.candidate.host, "db");
	m.u.candidate.instance = 64;
	check_range(&m, P_L, "CANDIDATE instance 64");
	m.u.candidate.instance = 65535;
	check_range(&m, P_L, "CANDIDATE instance 65535");
	m.u.candidate.instance = 0;
	m.u.candidate.port = 0;
	check_range(&m, P_L, "CANDIDATE port 0");
	m.u.candidate.port = 1;
	m.u.candidate.attrs = 0x04;
	check_range(&m, P_L, "CANDIDATE attrs bit 0x04");
	m.u.candidate.attrs = 0x80;
	check_range(&m, P_L, "CANDIDATE attrs bit 0x80");
	m.u.candidate.attrs = 0xff;
	check_range(&m, P_L, "CANDIDATE attrs 0xff");
	m.u.candidate.attrs = 0;
	m.u.candidate.addr_kind = 2;
	check_range(&m, P_L, "CANDIDATE addr_kind 2");
	m.u.candidate.addr_kind = 255;
	check_range(&m, P_L, "CANDIDATE addr_kind 255");
	m.u.candidate.addr_kind = 0;
	m.u.candidate.host[0] = '\0';
	check_range(&m, P_L, "CANDIDATE empty host");
	b_hdr(&b, 'C');
	b_u16(&b, 0);
	b_u16(&b, 5432);
	b_u8(&b, 0);
	b_u8(&b, 0);
	b_u16(&b, 3);
	b_bytes(&b, "a\0b", 3);
	b_fin(&b);
	check_bad(&b, P_L, CMPROTO_EBADSTRING, NULL, 0, "CANDIDATE host with an embedded NUL");
	b.d[b.n - 3] = '\0';
	b.d[b.n - 2] = 'x';
	check_bad(&b, P_L, CMPROTO_EBADSTRING, NULL, 0, "CANDIDATE host starting with a NUL");
	b_hdr(&b, 'C');
	b_u16(&b, 0);
	b_u16(&b, 5432);
	b_u8(&b, 0);
	b_u8(&b, 0);
	b_u16(&b, 256);
	for (int i = 0; i < 255; i++)
		b_u8(&b, 'h');
	b_fin(&b);
	check_bad(&b, P_L, CMPROTO_ESTRTOOLONG, NULL, 0, "CANDIDATE host length 256 (above 255)");
	b_u8(&b, 'h');
	b_fin(&b);
	check_bad(&b, P_L, CMPROTO_ETRAILING, NULL, 0,
			  "CANDIDATE with a whole 256-byte host (frame above CANDIDATE's maximum)");
	b_hdr(&b, 'C');
	b_u16(&b, 0);
	b_u16(&b, 5432);
	b_u8(&b, 0);
	b_u8(&b, 0);
	b_u16(&b, 200);
	b_bytes(&b, "db1", 3);
	b_fin(&b);
	check_bad(&b, P_L, CMPROTO_ETRUNCATED, NULL, 0, "CANDIDATE host length 200 with 3 bytes left");
	put16_at(&b, 10, 1);
	check_bad(&b, P_L, CMPROTO_ETRAILING, NULL, 0, "CANDIDATE host length 1 with 3 bytes left");
	m = mk('C');
	m.u.candidate.port = 1;
	memset(m.u.candidate.host, 'z', sizeof(m.u.candidate.host));
	{
		uint8_t		enc[CMPROTO_MAX_MSG];

		is_int(cmproto_encode(&m, enc, sizeof(enc)), CMPROTO_ESTRTOOLONG,
			   "encode CANDIDATE with an unterminated 256-byte host: ESTRTOOLONG");
	}

	/* CANDIDATES_END */
	m = mk('Z');
	m.u.candidates_end.count = 65;
	check_range(&m, P_L, "CANDIDATES_END count 65");
	m.u.candidates_end.count = 65535;
	check_range(&m, P_L, "CANDIDATES_END count 65535");

	/* ATTACHED */
	m = mk('A');
	m.u.attached.instance = 64;
	check_range(&m, P_A, "ATTACHED instance 64");
	m.u.attached.instance = 0x8000;
	check_range(&m, P_A, "ATTACHED instance 0x8000");

	/* INSTANCE_DOWN */
	m = mk('D');
	m.u.instance_down.instance = 64;
	m.u.instance_down.reason = 1;
	check_range(&m, P_L, "INSTANCE_DOWN instance 64");
	m.u.instance_down.instance = 0;
	m.u.instance_down.reason = 0;
	check_range(&m, P_L, "INSTANCE_DOWN reason 0");
	m.u.instance_down.reason = 6;
	check_range(&m, P_L, "INSTANCE_DOWN reason 6");
	m.u.instance_down.reason = 255;
	check_range(&m, P_L, "INSTANCE_DOWN reason 255");

	/* ERROR */
	m = mk('X');
	m.u.error.code = 0;
	check_range(&m, P_A, "ERROR code 0");
	m.u.error.code = 8;
	check_range(&m, P_W, "ERROR code 8");
	m.u.error.code = 65535;
	check_range(&m, P_C, "ERROR code 65535");
	b_hdr(&b, 'X');
	b_u16(&b, 1);
	b_u16(&b, 4);
	b_bytes(&b, "ba\0d", 4);
	b_fin(&b);
	check_bad(&b, P_L, CMPROTO_EBADSTRING, NULL, 0, "ERROR message with an embedded NUL");
	b_hdr(&b, 'X');
	b_u16(&b, 1);
	b_u16(&b, 256);
	for (int i = 0; i < 255; i++)
		b_u8(&b, 'e');
	b_fin(&b);
	check_bad(&b, P_L, CMPROTO_ESTRTOOLONG, NULL, 0, "ERROR message length 256 (above 255)");
	b_u8(&b, 'e');
	b_fin(&b);
	check_bad(&b, P_L, CMPROTO_ETRAILING, NULL, 0,
			  "ERROR with a whole 256-byte message (frame above ERROR's maximum)");
	b_hdr(&b, 'X');
	b_u16(&b, 1);
	b_u16(&b, 9);
	b_bytes(&b, "oops", 4);
	b_fin(&b);
	check_bad(&b, P_L, CMPROTO_ETRUNCATED, NULL, 0, "ERROR message length 9 with 4 bytes left");
	put16_at(&b, 6, 3);
	check_bad(&b, P_L, CMPROTO_ETRAILING, NULL, 0, "ERROR message length 3 with 4 bytes left");
	m = mk('X');
	m.u.error.code = 1;
	memset(m.u.error.message, 'q', sizeof(m.u.error.message));
	{
		uint8_t		enc[CMPROTO_MAX_MSG];

		is_int(cmproto_encode(&m, enc, sizeof(enc)), CMPROTO_ESTRTOOLONG,
			   "encode ERROR with an unterminated 256-byte message: ESTRTOOLONG");
	}

	/* HB_HELLO */
	{
		cmproto_msg g = mk('h');

		g.u.hb_hello.min_version = 1;
		g.u.hb_hello.max_version = 1;
		g.u.hb_hello.interval = 2;
		g.u.hb_hello.timeout = 10;

		m = g;
		m.u.hb_hello.min_version = 0;
		check_range(&m, P_C, "HB_HELLO min_version 0");
		m = g;
		m.u.hb_hello.min_version = 3;
		m.u.hb_hello.max_version = 2;
		check_range(&m, P_C, "HB_HELLO max_version < min_version");
		m = g;
		m.u.hb_hello.interval = 0;
		check_range(&m, P_C, "HB_HELLO interval 0");
		m.u.hb_hello.interval = 0x80000000u;
		check_range(&m, P_C, "HB_HELLO interval 2^31");
		m.u.hb_hello.interval = 0xFFFFFFFFu;
		check_range(&m, P_C, "HB_HELLO interval 2^32-1");
		m = g;
		m.u.hb_hello.timeout = 0;
		check_range(&m, P_C, "HB_HELLO timeout 0");
		m.u.hb_hello.timeout = 0x80000000u;
		check_range(&m, P_C, "HB_HELLO timeout 2^31");
		m = g;
		m.u.hb_hello.flags = 0x0002;
		check_range(&m, P_C, "HB_HELLO flags bit 0x0002");
		m.u.hb_hello.flags = 0x8001;
		check_range(&m, P_C, "HB_HELLO flags 0x8001");
		m.u.hb_hello.flags = 0xffff;
		check_range(&m, P_C, "HB_HELLO flags 0xffff");
		spec_encode(&g, &b);
		b.d[7] = 0x47;			/* "CMHG" */
		check_bad(&b, P_C, CMPROTO_EBADMAGIC, NULL, 0, "HB_HELLO magic 0x434D4847");
		memcpy(b.d + 4, "CMGR", 4);
		check_bad(&b, P_C, CMPROTO_EBADMAGIC, NULL, 0,
				  "HB_HELLO with the application magic \"CMGR\"");
	}

	/* HB_CHALLENGE */
	m = mk('c');
	check_range(&m, P_W, "HB_CHALLENGE version 0");

	/* HB_WELCOME */
	{
		cmproto_msg g = mk('w');

		g.u.hb_welcome.version = 1;
		m = g;
		m.u.hb_welcome.version = 0;
		check_range(&m, P_W, "HB_WELCOME version 0");
		m = g;
		m.u.hb_welcome.flags = 0x0002;
		check_range(&m, P_W, "HB_WELCOME flags bit 0x0002");
		m.u.hb_welcome.flags = 0x8000;
		check_range(&m, P_W, "HB_WELCOME flags bit 0x8000");
		m = g;
		m.u.hb_welcome.attrs = 0x08;
		check_range(&m, P_W, "HB_WELCOME attrs bit 0x08");
		m.u.hb_welcome.attrs = 0x80000000u;
		check_range(&m, P_W, "HB_WELCOME attrs bit 0x80000000");
		m.u.hb_welcome.attrs = 0x100;
		check_range(&m, P_W, "HB_WELCOME attrs bit 0x100");
	}

	/* HB_BEAT */
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
	m = mk('b');
	m.u.hb_beat.attrs = 0x08;
	check_range(&m, P_W, "HB_BEAT attrs bit 0x08");
	m.u.hb_beat.attrs = 0xFFFFFFFFu;
	check_range(&m, P_W, "HB_BEAT attrs 0xffffffff");
	spec_encode(&m, &b);
	check_bad(&b, P_C, CMPROTO_ERANGE, NULL, 0, "HB_BEAT attrs 0xffffffff from CONMGR");

	/* HB_ATTRS */
	m = mk('t');
	m.u.hb_attrs.timeline = 1;
	m.u.hb_attrs.attrs = 0x08;
	check_range(&m, P_W, "HB_ATTRS attrs bit 0x08");
	m.u.hb_attrs.attrs = 0x80000000u;
	check_range(&m, P_W, "HB_ATTRS attrs bit 0x80000000");
	m.u.hb_attrs.attrs = 0;
	m.u.hb_attrs.timeline = 0;
	check_range(&m, P_W, "HB_ATTRS timeline 0 (version 2)");

	/* HB_WELCOME version 2: timeline 0 */
	m = mk('w');
	m.u.hb_welcome.version = 2;
	check_range(&m, P_W, "HB_WELCOME version 2 timeline 0");
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

/* ---- 4. fuzz ---- */

static uint64_t rng = UINT64_C(0x853c49e6748fea9b);

static uint32_t
rnd(void)
{
	/* xorshift64* */
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return (uint32_t) ((rng * UINT64_C(2685821657736338717)) >> 32);
}

static bool
known_status(int rc)
{
	return rc >= CMPROTO_ENOSPACE && rc <= CMPROTO_INCOMPLETE;
}

typedef struct fuzz_stats
{
	long		frame_bad;		/* inconsistent framer result */
	long		decode_bad;		/* decode OK but re-encodes differently, or
								 * odd status */
	long		pg_bad;			/* classify / decode_error inconsistency */
	long		decoded_ok;		/* decodes that succeeded (coverage) */
	long		pg_err_ok;
	long		pg_cls_ok;
} fuzz_stats;

static void
fuzz_one(const uint8_t *src, size_t n, fuzz_stats *st)
{
	uint8_t    *buf = dup_exact(src, n);
	size_t		ml = 12345;
	int			rf;

	rf = cmproto_frame(buf, n, &ml);
	if (rf == CMPROTO_OK)
	{
		if (ml < 4 || ml > n || ml > CMPROTO_MAX_MSG)
			st->frame_bad++;
	}
	else if (rf == CMPROTO_INCOMPLETE)
	{
		if (!(ml == 0 || (ml > n && ml <= CMPROTO_MAX_MSG)) || (n >= 4 && ml == 0))
			st->frame_bad++;
	}
	else if (!known_status(rf) || ml != 0)
		st->frame_bad++;

	for (int p = 0; p < 4; p++)
	{
		cmproto_msg out;
		int			rd = cmproto_decode(buf, n, all_peers[p], &out);

		if (rd == CMPROTO_OK)
		{
			uint8_t		enc[CMPROTO_MAX_MSG];
			int			ne;

			st->decoded_ok++;
			ne = cmproto_encode(&out, enc, sizeof(enc));
			if (rf != CMPROTO_OK || ml != n || ne != (int) n || memcmp(enc, buf, n) != 0)
				st->decode_bad++;
		}
		else if (rd > 0 || !known_status(rd))
			st->decode_bad++;
		/* the framed prefix, as a reader would decode it */
		if (rf == CMPROTO_OK && ml < n)
		{
			rd = cmproto_decode(buf, ml, all_peers[p], &out);
			if (rd == CMPROTO_OK)
			{
				uint8_t		enc[CMPROTO_MAX_MSG];

				st->decoded_ok++;
				if (cmproto_encode(&out, enc, sizeof(enc)) != (int) ml ||
					memcmp(enc, buf, ml) != 0)
					st->decode_bad++;
			}
			else if (rd > 0 || !known_status(rd))
				st->decode_bad++;
		}
	}

	/* the PostgreSQL-compatible readers see the same bytes */
	{
		size_t		pl = 777;
		cmproto_pg_kind kind;
		int			rc = cmproto_pg_classify(buf, n, &pl, &kind);

		if (rc == CMPROTO_OK)
		{
			st->pg_cls_ok++;
			if (pl < 8 || pl > n || pl > CMPROTO_PG_MAX_STARTUP + 4)
				st->pg_bad++;
		}
		else if (rc == CMPROTO_INCOMPLETE)
		{
			if (pl != 0 && pl <= n)
				st->pg_bad++;
		}
		else if (!known_status(rc))
			st->pg_bad++;
	}
	{
		size_t		el = 777;
		cmproto_pg_error err;
		int			rc = cmproto_pg_decode_error(buf, n, &el, &err);

		if (rc == CMPROTO_OK)
		{
			const char *f[5] = {err.severity, err.sqlstate, err.message, err.detail, err.hint};

			st->pg_err_ok++;
			if (el > n || el > CMPROTO_PG_MAX_ERROR || !err.severity || !err.sqlstate ||
				!err.message)
				st->pg_bad++;
			for (int i = 0; i < 5; i++)
			{
				const uint8_t *s = (const uint8_t *) f[i];

				if (s == NULL)
					continue;
				if (s < buf + 5 || s >= buf + el ||
					memchr(s, '\0', (size_t) (buf + el - s)) == NULL)
					st->pg_bad++;
			}
		}
		else if (rc == CMPROTO_INCOMPLETE)
		{
			if (el != 0 && el <= n)
				st->pg_bad++;
		}
		else if (!known_status(rc))
			st->pg_bad++;
	}
	free_exact(buf);
}

static void
test_fuzz(void)
{
	enum
	{
		ITERATIONS = 200000
	};
	fuzz_stats	st;
	uint8_t		in[1200];
	uint8_t		errs[4][CMPROTO_PG_MAX_ERROR];
	size_t		errlen[4];
	int			kinds[6] = {0};

	memset(&st, 0, sizeof(st));

	/* a few ErrorResponses for the pg decoder to chew on */
	for (int i = 0; i < 4; i++)
	{
		static const char *const msgs[] = {"", "x", "this port is conmgr", "yet another"};
		int			rc = cmproto_pg_encode_error(errs[i], sizeof(errs[i]), "08004", msgs[i],
												 i % 2 ? "use libpq-cm" : NULL);

		errlen[i] = rc > 0 ? (size_t) rc : 0;
	}

	for (long it = 0; it < ITERATIONS; it++)
	{
		size_t		n = 0;
		int			kind = (int) (rnd() % 6);

		kinds[kind]++;
		switch (kind)
		{
			case 0:				/* pure random bytes, length 0..600 */
				n = rnd() % 601;
				for (size_t i = 0; i < n; i++)
					in[i] = (uint8_t) rnd();
				break;
			case 1:				/* a valid header over random bytes */
				{
					const spec_type *t = &spec_types[rnd() % N_TYPES];

					n = 4 + t->min_body + rnd() % (t->max_body - t->min_body + 3);
					if (rnd() % 4 == 0)
						n = 4 + rnd() % 80;
					for (size_t i = 0; i < n; i++)
						in[i] = (uint8_t) (rnd() % 3 == 0 ? rnd() : rnd() % 4);
					in[0] = t->type;
					in[1] = 0;
					in[2] = (uint8_t) (n >> 8);
					in[3] = (uint8_t) n;
				}
				break;
			case 2:				/* a valid frame with 1..4 bytes changed */
			case 3:				/* a valid frame truncated or extended */
			case 4:				/* two valid frames, one mutated */
				{
					const corpus_ent *e = &corpus[rnd() % n_corpus];

					memcpy(in, e->bytes, e->n);
					n = e->n;
					if (kind == 2)
					{
						int			k = 1 + (int) (rnd() % 4);

						for (int j = 0; j < k; j++)
						{
							size_t		pos = rnd() % n;

							if (rnd() % 2)
								in[pos] ^= (uint8_t) (1u << (rnd() % 8));
							else
								in[pos] = (uint8_t) rnd();
						}
					}
					else if (kind == 3)
					{
						if (rnd() % 2)
							n = rnd() % n;
						else
						{
							size_t		extra = 1 + rnd() % 40;

							for (size_t i = 0; i < extra; i++)
								in[n + i] = (uint8_t) rnd();
							n += extra;
							if (rnd() % 2)
							{
								/* ... and let the header claim them */
								in[2] = (uint8_t) (n >> 8);
								in[3] = (uint8_t) n;
							}
						}
					}
					else
					{
						const corpus_ent *e2 = &corpus[rnd() % n_corpus];

						memcpy(in + n, e2->bytes, e2->n);
						in[n + rnd() % e2->n] ^= (uint8_t) (1u << (rnd() % 8));
						n += e2->n;
					}
				}
				break;
			case 5:				/* pg first packets and ErrorResponses,
								 * mutated */
				{
					int			which = (int) (rnd() % 3);

					if (which == 0)
					{
						int			e = (int) (rnd() % 4);

						memcpy(in, errs[e], errlen[e]);
						n = errlen[e];
					}
					else
					{
						n = which == 1 ? 8 : 16 + rnd() % 40;
						for (size_t i = 0; i < n; i++)
							in[i] = (uint8_t) rnd();
						in[0] = 0;
						in[1] = 0;
						in[2] = (uint8_t) (n >> 8);
						in[3] = (uint8_t) n;
						in[4] = which == 1 ? 0x04 : 0x00;
						in[5] = which == 1 ? 0xd2 : 0x03;
					}
					if (n > 0 && rnd() % 2)
						in[rnd() % n] ^= (uint8_t) (1u << (rnd() % 8));
					if (n > 0 && rnd() % 3 == 0)
						n = rnd() % n;
				}
				break;
		}
		fuzz_one(in, n, &st);
	}

	ok(st.frame_bad == 0,
	   "fuzz: %d inputs, cmproto_frame results consistent (%ld bad)", ITERATIONS, st.frame_bad);
	ok(st.decode_bad == 0,
	   "fuzz: every decode that says OK re-encodes to the same bytes, no odd status (%ld bad)",
	   st.decode_bad);
	ok(st.pg_bad == 0, "fuzz: pg_classify / pg_decode_error results consistent (%ld bad)",
	   st.pg_bad);
	ok(st.decoded_ok > 10000,
	   "fuzz: the generator reaches the acceptance paths (%ld decodes OK)", st.decoded_ok);
	ok(st.pg_err_ok > 100 && st.pg_cls_ok > 100,
	   "fuzz: pg readers accept some inputs too (%ld ErrorResponses, %ld packets)",
	   st.pg_err_ok, st.pg_cls_ok);
}


int
main(void)
{
	test_roundtrips();
	test_golden();
	test_error_msg();
	test_prefixes();
	test_header();
	test_type_bytes();
	test_peers();
	test_fields();
	test_versions();
	test_enospace();
	test_fuzz();
	return tap_done();
}
