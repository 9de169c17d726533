/*-------------------------------------------------------------------------
 *
 * cmproto_spec.h
 *	  The codec as docs/protocol.md specifies it, for the unit tests of the
 *	  frames (test_cmproto*.c): each message type's senders and bounds, a
 *	  reference encoder written from the document's tables, and the round
 *	  trips whose frames make the corpus that the malformed-input,
 *	  ENOSPACE and fuzz tests start from.
 *
 * Header-only, as tap.h is: each test program includes it once.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CM_CMPROTO_SPEC_H
#define CM_CMPROTO_SPEC_H

#include "cmproto_bytes.h"

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

static TAP_UNUSED const spec_type *
spec_lookup(int type)
{
	for (int i = 0; i < N_TYPES; i++)
		if (spec_types[i].type == type)
			return &spec_types[i];
	return NULL;
}

/* ---- the reference encoder: docs/protocol.md 2.2 and 3, table by table ---- */

static void TAP_UNUSED
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

static bool TAP_UNUSED
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

/* corpus_build(): the round trips record their frames and check nothing */
static bool corpus_quiet;

/*
 * 1. Round trip: encode == reference bytes, frame OK with that length,
 * decode OK with equal fields from every peer in "accept", refused from the
 * others.
 */
static void TAP_UNUSED
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
	if (!corpus_quiet && !ok(why[0] == '\0', "round trip %s", desc))
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

/*
 * The round trips of docs/protocol.md's messages, field by field: each
 * checks one (roundtrip()) and adds its frame to the corpus.
 */
static void TAP_UNUSED
spec_roundtrips(void)
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
}

/* The corpus alone, for the programs that start from it. */
static void TAP_UNUSED
corpus_build(void)
{
	corpus_quiet = true;
	spec_roundtrips();
	corpus_quiet = false;
}

#endif							/* CM_CMPROTO_SPEC_H */
