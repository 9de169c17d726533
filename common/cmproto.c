/*-------------------------------------------------------------------------
 *
 * cmproto.c
 *	  Encoder and strict decoder for conmgr's two wire protocols.
 *
 * docs/protocol.md is the specification.  Every message type is described
 * once, in msgtypes[] (who may send it, its length bounds, its name), and
 * once more in the pair encode_body()/decode_body(), which must mirror
 * each other; validate() holds the field ranges and is run by both, so
 * that conmgr never sends what it would refuse to receive.
 *
 * Both run at a protocol version (cmproto_decode_version(),
 * cmproto_encode_version()): what a version adds (HB_WELCOME's and
 * HB_ATTRS's timeline, INSTANCE_DOWN's reason 5, ERROR's code 7) is out
 * of range at an older one, so a session that agreed on version 1 neither
 * sends nor accepts it.  msgtypes[]'s length bounds cover the layouts of
 * every version, since framing happens before anyone looks at a version;
 * the decoder then holds a body to its version's exact layout.
 *
 * Reading goes through a bounds-checked cursor: every get_*() fails with
 * CMPROTO_ETRUNCATED instead of reading past the frame, and a length from
 * the wire is only ever compared with what was actually received.  Writing
 * goes through the cursor of cmproto_int.h, which notes an overflow
 * instead of writing past the buffer.
 *
 * The rest of the protocol's code sits beside this file:
 * cmproto_handshake.c (the version two peers agree on, the shared-key
 * proofs), cmproto_names.c (the text for statuses, error codes, reasons
 * and targets) and cmproto_pg.c (the PostgreSQL-compatible first packets
 * of conmgr's port).
 *
 * This file is compiled into the daemon, libpq-cm (-fPIC) and the watchdog
 * extension (PGXS), so it uses nothing but memcpy/memchr/strnlen-style
 * library calls: no allocation, no stdio, no exit.
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "cmproto.h"
#include "cmproto_int.h"

/* The body-length bounds of each message type, and who may send it. */
typedef struct msgtype
{
	uint8_t		type;
	uint8_t		senders;		/* mask of cmproto_peer */
	uint16_t	min_body;		/* fixed fields, strings empty */
	uint16_t	max_body;		/* fixed fields, strings at their maximum */
	const char *name;
} msgtype;

#define STR(max)	(2 + (max)) /* length prefix + bytes */

static const msgtype msgtypes[] = {
	{CMPROTO_HELLO, CMPROTO_PEER_LISTENER, 8, 8, "HELLO"},
	{CMPROTO_RESOLVE, CMPROTO_PEER_APP, 8 + 2, 8 + STR(CMPROTO_APPNAME_MAX), "RESOLVE"},
	{CMPROTO_CANDIDATE, CMPROTO_PEER_LISTENER, 6 + 2, 6 + STR(CMPROTO_HOST_MAX), "CANDIDATE"},
	{CMPROTO_CANDIDATES_END, CMPROTO_PEER_LISTENER, 2, 2, "CANDIDATES_END"},
	{CMPROTO_ATTACHED, CMPROTO_PEER_APP, 6, 6, "ATTACHED"},
	{CMPROTO_INSTANCE_DOWN, CMPROTO_PEER_LISTENER, 3, 3, "INSTANCE_DOWN"},
	{CMPROTO_HB_HELLO, CMPROTO_PEER_CONMGR, 18 + CMPROTO_NONCE_LEN, 18 + CMPROTO_NONCE_LEN, "HB_HELLO"},
	{CMPROTO_HB_CHALLENGE, CMPROTO_PEER_WATCHDOG, 2 + CMPROTO_NONCE_LEN + CMPROTO_PROOF_LEN,
	2 + CMPROTO_NONCE_LEN + CMPROTO_PROOF_LEN, "HB_CHALLENGE"},
	{CMPROTO_HB_AUTH, CMPROTO_PEER_CONMGR, CMPROTO_PROOF_LEN, CMPROTO_PROOF_LEN, "HB_AUTH"},
	{CMPROTO_HB_WELCOME, CMPROTO_PEER_WATCHDOG, 20, 24, "HB_WELCOME"},
	{CMPROTO_HB_BEAT, CMPROTO_PEER_CONMGR | CMPROTO_PEER_WATCHDOG, 8, 8, "HB_BEAT"},
	{CMPROTO_HB_ATTRS, CMPROTO_PEER_WATCHDOG, 4, 8, "HB_ATTRS"},
	{CMPROTO_ERROR, CMPROTO_PEER_APP | CMPROTO_PEER_LISTENER |
		CMPROTO_PEER_CONMGR | CMPROTO_PEER_WATCHDOG,
	2 + 2, 2 + STR(CMPROTO_ERRMSG_MAX), "ERROR"},
};

static const msgtype *
lookup_type(int type)
{
	for (size_t i = 0; i < sizeof(msgtypes) / sizeof(msgtypes[0]); i++)
	{
		if (msgtypes[i].type == type)
			return &msgtypes[i];
	}
	return NULL;
}

/* ---- bounds-checked reading ---- */

typedef struct rbuf
{
	const uint8_t *p;
	size_t		len;
	size_t		off;
} rbuf;

static int
get_u8(rbuf *b, uint8_t *v)
{
	if (b->len - b->off < 1)
		return CMPROTO_ETRUNCATED;
	*v = b->p[b->off];
	b->off += 1;
	return 0;
}

static int
get_u16(rbuf *b, uint16_t *v)
{
	if (b->len - b->off < 2)
		return CMPROTO_ETRUNCATED;
	*v = (uint16_t) ((b->p[b->off] << 8) | b->p[b->off + 1]);
	b->off += 2;
	return 0;
}

static int
get_u32(rbuf *b, uint32_t *v)
{
	const uint8_t *p;

	if (b->len - b->off < 4)
		return CMPROTO_ETRUNCATED;
	p = b->p + b->off;
	*v = ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16) |
		((uint32_t) p[2] << 8) | (uint32_t) p[3];
	b->off += 4;
	return 0;
}

static int
get_u64(rbuf *b, uint64_t *v)
{
	uint32_t	hi,
				lo;
	int			rc;

	if (b->len - b->off < 8)
		return CMPROTO_ETRUNCATED;
	if ((rc = get_u32(b, &hi)) < 0 || (rc = get_u32(b, &lo)) < 0)
		return rc;
	*v = ((uint64_t) hi << 32) | lo;
	return 0;
}

static int
get_bytes(rbuf *b, uint8_t *dst, size_t n)
{
	if (b->len - b->off < n)
		return CMPROTO_ETRUNCATED;
	memcpy(dst, b->p + b->off, n);
	b->off += n;
	return 0;
}

/* A length-prefixed string into dst[max + 1], NUL-terminated. */
static int
get_str(rbuf *b, char *dst, size_t max)
{
	uint16_t	n;
	int			rc;

	if ((rc = get_u16(b, &n)) < 0)
		return rc;
	if (n > max)
		return CMPROTO_ESTRTOOLONG;
	if (b->len - b->off < n)
		return CMPROTO_ETRUNCATED;
	if (memchr(b->p + b->off, '\0', n) != NULL)
		return CMPROTO_EBADSTRING;
	memcpy(dst, b->p + b->off, n);
	dst[n] = '\0';
	b->off += n;
	return 0;
}

/* ---- writing what only the codec writes ---- */

/* The caller checked the length with str_fits(). */
static void
put_str(wbuf *b, const char *s)
{
	size_t		n = strlen(s);

	put_u16(b, (uint16_t) n);
	put_bytes(b, s, n);
}

/* A string field of a struct to encode: terminated within its array? */
static int
str_fits(const char *s, size_t max)
{
	if (memchr(s, '\0', max + 1) == NULL)
		return CMPROTO_ESTRTOOLONG;
	return 0;
}

/* ---- field ranges, shared by encoding and decoding ---- */

static int
check_versions(uint16_t min_version, uint16_t max_version)
{
	if (min_version < 1 || max_version < min_version)
		return CMPROTO_ERANGE;
	return 0;
}

/*
 * A timeline field: absent (0) in version 1, a PostgreSQL timeline ID
 * (1 or more) from version 2 on.
 */
static int
check_timeline(uint32_t timeline, int version)
{
	if (version < 2 ? timeline != 0 : timeline < 1)
		return CMPROTO_ERANGE;
	return 0;
}

static int
validate(const cmproto_msg *m, int version)
{
	switch (m->type)
	{
		case CMPROTO_HELLO:
			return check_versions(m->u.hello.min_version,
								  m->u.hello.max_version);
		case CMPROTO_RESOLVE:
			if (m->u.resolve.version < 1 ||
				m->u.resolve.target > CMPROTO_TARGET_LAST)
				return CMPROTO_ERANGE;
			return 0;
		case CMPROTO_CANDIDATE:
			if (m->u.candidate.instance >= CMPROTO_MAX_INSTANCES ||
				m->u.candidate.port == 0 ||
				(m->u.candidate.attrs & ~CMPROTO_ATTR_ALL) != 0 ||
				m->u.candidate.addr_kind > CMPROTO_ADDR_NUMERIC ||
				m->u.candidate.host[0] == '\0')
				return CMPROTO_ERANGE;
			return 0;
		case CMPROTO_CANDIDATES_END:
			if (m->u.candidates_end.count > CMPROTO_MAX_INSTANCES)
				return CMPROTO_ERANGE;
			return 0;
		case CMPROTO_ATTACHED:
			if (m->u.attached.instance >= CMPROTO_MAX_INSTANCES)
				return CMPROTO_ERANGE;
			return 0;
		case CMPROTO_INSTANCE_DOWN:
			if (m->u.instance_down.instance >= CMPROTO_MAX_INSTANCES ||
				m->u.instance_down.reason < 1 ||
				m->u.instance_down.reason >
				(version < 2 ? CMPROTO_DOWN_LAST_V1 : CMPROTO_DOWN_LAST))
				return CMPROTO_ERANGE;
			return 0;
		case CMPROTO_ERROR:
			if (m->u.error.code < 1 ||
				m->u.error.code > (version < 2 ? CMPROTO_ERR_LAST_V1 : CMPROTO_ERR_LAST))
				return CMPROTO_ERANGE;
			return 0;
		case CMPROTO_HB_HELLO:
			if (check_versions(m->u.hb_hello.min_version,
							   m->u.hb_hello.max_version) < 0 ||
				m->u.hb_hello.interval < 1 ||
				m->u.hb_hello.interval > INT32_MAX ||
				m->u.hb_hello.timeout < 1 ||
				m->u.hb_hello.timeout > INT32_MAX ||
				(m->u.hb_hello.flags & ~CMPROTO_HB_HAS_KEY) != 0)
				return CMPROTO_ERANGE;
			return 0;
		case CMPROTO_HB_CHALLENGE:
			if (m->u.hb_challenge.version < 1)
				return CMPROTO_ERANGE;
			return 0;
		case CMPROTO_HB_AUTH:
			return 0;
		case CMPROTO_HB_WELCOME:
			/* Its layout is that of the version it names. */
			if (m->u.hb_welcome.version < 1 ||
				m->u.hb_welcome.version > version ||
				(m->u.hb_welcome.flags & ~CMPROTO_HB_AUTHENTICATED) != 0 ||
				(m->u.hb_welcome.attrs &
				 ~cmproto_hb_attrs_valid(m->u.hb_welcome.version)) != 0)
				return CMPROTO_ERANGE;
			return check_timeline(m->u.hb_welcome.timeline,
								  m->u.hb_welcome.version);
		case CMPROTO_HB_BEAT:
			if ((m->u.hb_beat.attrs & ~cmproto_hb_attrs_valid(version)) != 0)
				return CMPROTO_ERANGE;
			return 0;
		case CMPROTO_HB_ATTRS:
			if ((m->u.hb_attrs.attrs & ~cmproto_hb_attrs_valid(version)) != 0)
				return CMPROTO_ERANGE;
			return check_timeline(m->u.hb_attrs.timeline, version);
	}
	return CMPROTO_EUNKNOWNTYPE;
}

/* ---- framing ---- */

/*
 * Look at the start of a receive buffer.  Returns CMPROTO_OK with *msglen
 * set when a whole frame is there, CMPROTO_INCOMPLETE when more bytes are
 * needed (*msglen is set once the header is complete), or an error as soon
 * as the bytes received so far cannot start a valid frame: the type, the
 * flags and the length are checked before the body arrives.
 */
int
cmproto_frame(const uint8_t *buf, size_t avail, size_t *msglen)
{
	const msgtype *t;
	size_t		len;

	*msglen = 0;
	if (avail < 1)
		return CMPROTO_INCOMPLETE;
	if ((t = lookup_type(buf[0])) == NULL)
		return CMPROTO_EUNKNOWNTYPE;
	if (avail < 2)
		return CMPROTO_INCOMPLETE;
	if (buf[1] != 0)
		return CMPROTO_EBADFLAGS;
	if (avail < CMPROTO_HEADER_LEN)
		return CMPROTO_INCOMPLETE;
	len = ((size_t) buf[2] << 8) | buf[3];
	if (len < CMPROTO_HEADER_LEN)
		return CMPROTO_ESHORTLEN;
	if (len > CMPROTO_MAX_MSG)
		return CMPROTO_ETOOLONG;
	if (len - CMPROTO_HEADER_LEN < t->min_body)
		return CMPROTO_ETRUNCATED;
	if (len - CMPROTO_HEADER_LEN > t->max_body)
		return CMPROTO_ETRAILING;
	*msglen = len;
	if (avail < len)
		return CMPROTO_INCOMPLETE;
	return CMPROTO_OK;
}

static int
decode_body(rbuf *b, int version, cmproto_msg *m)
{
	int			rc = 0;
	uint32_t	magic;
	uint8_t		reserved;

	switch (m->type)
	{
		case CMPROTO_HELLO:
			if ((rc = get_u32(b, &magic)) < 0 ||
				(rc = get_u16(b, &m->u.hello.min_version)) < 0 ||
				(rc = get_u16(b, &m->u.hello.max_version)) < 0)
				return rc;
			if (magic != CMPROTO_HELLO_MAGIC)
				return CMPROTO_EBADMAGIC;
			break;
		case CMPROTO_RESOLVE:
			if ((rc = get_u16(b, &m->u.resolve.version)) < 0 ||
				(rc = get_u8(b, &m->u.resolve.target)) < 0 ||
				(rc = get_u8(b, &reserved)) < 0 ||
				(rc = get_u32(b, &m->u.resolve.client_pid)) < 0 ||
				(rc = get_str(b, m->u.resolve.application_name,
							  CMPROTO_APPNAME_MAX)) < 0)
				return rc;
			if (reserved != 0)
				return CMPROTO_ERANGE;
			break;
		case CMPROTO_CANDIDATE:
			if ((rc = get_u16(b, &m->u.candidate.instance)) < 0 ||
				(rc = get_u16(b, &m->u.candidate.port)) < 0 ||
				(rc = get_u8(b, &m->u.candidate.attrs)) < 0 ||
				(rc = get_u8(b, &m->u.candidate.addr_kind)) < 0 ||
				(rc = get_str(b, m->u.candidate.host, CMPROTO_HOST_MAX)) < 0)
				return rc;
			break;
		case CMPROTO_CANDIDATES_END:
			rc = get_u16(b, &m->u.candidates_end.count);
			break;
		case CMPROTO_ATTACHED:
			if ((rc = get_u16(b, &m->u.attached.instance)) < 0 ||
				(rc = get_u32(b, &m->u.attached.backend_pid)) < 0)
				return rc;
			break;
		case CMPROTO_INSTANCE_DOWN:
			if ((rc = get_u16(b, &m->u.instance_down.instance)) < 0 ||
				(rc = get_u8(b, &m->u.instance_down.reason)) < 0)
				return rc;
			break;
		case CMPROTO_ERROR:
			if ((rc = get_u16(b, &m->u.error.code)) < 0 ||
				(rc = get_str(b, m->u.error.message, CMPROTO_ERRMSG_MAX)) < 0)
				return rc;
			break;
		case CMPROTO_HB_HELLO:
			if ((rc = get_u32(b, &magic)) < 0 ||
				(rc = get_u16(b, &m->u.hb_hello.min_version)) < 0 ||
				(rc = get_u16(b, &m->u.hb_hello.max_version)) < 0 ||
				(rc = get_u32(b, &m->u.hb_hello.interval)) < 0 ||
				(rc = get_u32(b, &m->u.hb_hello.timeout)) < 0 ||
				(rc = get_u16(b, &m->u.hb_hello.flags)) < 0 ||
				(rc = get_bytes(b, m->u.hb_hello.nonce, CMPROTO_NONCE_LEN)) < 0)
				return rc;
			if (magic != CMPROTO_HB_MAGIC)
				return CMPROTO_EBADMAGIC;
			break;
		case CMPROTO_HB_CHALLENGE:
			if ((rc = get_u16(b, &m->u.hb_challenge.version)) < 0 ||
				(rc = get_bytes(b, m->u.hb_challenge.nonce,
								CMPROTO_NONCE_LEN)) < 0 ||
				(rc = get_bytes(b, m->u.hb_challenge.proof,
								CMPROTO_PROOF_LEN)) < 0)
				return rc;
			break;
		case CMPROTO_HB_AUTH:
			rc = get_bytes(b, m->u.hb_auth.proof, CMPROTO_PROOF_LEN);
			break;
		case CMPROTO_HB_WELCOME:
			if ((rc = get_u16(b, &m->u.hb_welcome.version)) < 0 ||
				(rc = get_u16(b, &m->u.hb_welcome.flags)) < 0 ||
				(rc = get_u32(b, &m->u.hb_welcome.attrs)) < 0 ||
				(rc = get_u32(b, &m->u.hb_welcome.server_version_num)) < 0 ||
				(rc = get_u64(b, &m->u.hb_welcome.system_identifier)) < 0)
				return rc;
			if (m->u.hb_welcome.version >= 2 && m->u.hb_welcome.version <= version)
				rc = get_u32(b, &m->u.hb_welcome.timeline);
			break;
		case CMPROTO_HB_BEAT:
			if ((rc = get_u32(b, &m->u.hb_beat.seq)) < 0 ||
				(rc = get_u32(b, &m->u.hb_beat.attrs)) < 0)
				return rc;
			break;
		case CMPROTO_HB_ATTRS:
			if ((rc = get_u32(b, &m->u.hb_attrs.attrs)) < 0)
				return rc;
			if (version >= 2)
				rc = get_u32(b, &m->u.hb_attrs.timeline);
			break;
		default:
			return CMPROTO_EUNKNOWNTYPE;
	}
	return rc;
}

/*
 * Decode exactly one frame of "len" bytes, sent by a peer of kind "from",
 * at this codec's version: what a receiver that has not agreed on an older
 * one uses.
 */
int
cmproto_decode(const uint8_t *buf, size_t len, cmproto_peer from,
			   cmproto_msg *msg)
{
	return cmproto_decode_version(buf, len, from, CMPROTO_VERSION, msg);
}

/*
 * Decode exactly one frame at the protocol version the session agreed on
 * (CMPROTO_MIN_VERSION..CMPROTO_VERSION; HB_WELCOME, which names the
 * version, is read at that one if it is not above "version").  On any
 * error *msg is left zeroed, but for its type once the header and the
 * sender were found valid.
 */
int
cmproto_decode_version(const uint8_t *buf, size_t len, cmproto_peer from,
					   int version, cmproto_msg *msg)
{
	const msgtype *t;
	size_t		msglen;
	rbuf		b;
	int			rc;

	memset(msg, 0, sizeof(*msg));
	rc = cmproto_frame(buf, len, &msglen);
	if (rc == CMPROTO_INCOMPLETE)
		return CMPROTO_ETRUNCATED;
	if (rc < 0)
		return rc;
	if (len != msglen)
		return CMPROTO_ETRAILING;

	t = lookup_type(buf[0]);
	if ((t->senders & from) == 0)
		return CMPROTO_EUNEXPECTED;
	msg->type = t->type;

	b.p = buf;
	b.len = msglen;
	b.off = CMPROTO_HEADER_LEN;
	if (version < CMPROTO_MIN_VERSION || version > CMPROTO_VERSION)
	{
		rc = CMPROTO_ERANGE;
		goto fail;
	}
	if ((rc = decode_body(&b, version, msg)) < 0 ||
		(rc = validate(msg, version)) < 0)
		goto fail;
	if (b.off != b.len)
	{
		rc = CMPROTO_ETRAILING;
		goto fail;
	}
	/* A conmgr heartbeat carries no attributes. */
	if (msg->type == CMPROTO_HB_BEAT && from == CMPROTO_PEER_CONMGR &&
		msg->u.hb_beat.attrs != 0)
	{
		rc = CMPROTO_ERANGE;
		goto fail;
	}
	return CMPROTO_OK;

fail:
	memset(&msg->u, 0, sizeof(msg->u));
	return rc;
}

static void
encode_body(wbuf *b, int version, const cmproto_msg *m)
{
	switch (m->type)
	{
		case CMPROTO_HELLO:
			put_u32(b, CMPROTO_HELLO_MAGIC);
			put_u16(b, m->u.hello.min_version);
			put_u16(b, m->u.hello.max_version);
			break;
		case CMPROTO_RESOLVE:
			put_u16(b, m->u.resolve.version);
			put_u8(b, m->u.resolve.target);
			put_u8(b, 0);
			put_u32(b, m->u.resolve.client_pid);
			put_str(b, m->u.resolve.application_name);
			break;
		case CMPROTO_CANDIDATE:
			put_u16(b, m->u.candidate.instance);
			put_u16(b, m->u.candidate.port);
			put_u8(b, m->u.candidate.attrs);
			put_u8(b, m->u.candidate.addr_kind);
			put_str(b, m->u.candidate.host);
			break;
		case CMPROTO_CANDIDATES_END:
			put_u16(b, m->u.candidates_end.count);
			break;
		case CMPROTO_ATTACHED:
			put_u16(b, m->u.attached.instance);
			put_u32(b, m->u.attached.backend_pid);
			break;
		case CMPROTO_INSTANCE_DOWN:
			put_u16(b, m->u.instance_down.instance);
			put_u8(b, m->u.instance_down.reason);
			break;
		case CMPROTO_ERROR:
			put_u16(b, m->u.error.code);
			put_str(b, m->u.error.message);
			break;
		case CMPROTO_HB_HELLO:
			put_u32(b, CMPROTO_HB_MAGIC);
			put_u16(b, m->u.hb_hello.min_version);
			put_u16(b, m->u.hb_hello.max_version);
			put_u32(b, m->u.hb_hello.interval);
			put_u32(b, m->u.hb_hello.timeout);
			put_u16(b, m->u.hb_hello.flags);
			put_bytes(b, m->u.hb_hello.nonce, CMPROTO_NONCE_LEN);
			break;
		case CMPROTO_HB_CHALLENGE:
			put_u16(b, m->u.hb_challenge.version);
			put_bytes(b, m->u.hb_challenge.nonce, CMPROTO_NONCE_LEN);
			put_bytes(b, m->u.hb_challenge.proof, CMPROTO_PROOF_LEN);
			break;
		case CMPROTO_HB_AUTH:
			put_bytes(b, m->u.hb_auth.proof, CMPROTO_PROOF_LEN);
			break;
		case CMPROTO_HB_WELCOME:
			put_u16(b, m->u.hb_welcome.version);
			put_u16(b, m->u.hb_welcome.flags);
			put_u32(b, m->u.hb_welcome.attrs);
			put_u32(b, m->u.hb_welcome.server_version_num);
			put_u64(b, m->u.hb_welcome.system_identifier);
			if (m->u.hb_welcome.version >= 2)
				put_u32(b, m->u.hb_welcome.timeline);
			break;
		case CMPROTO_HB_BEAT:
			put_u32(b, m->u.hb_beat.seq);
			put_u32(b, m->u.hb_beat.attrs);
			break;
		case CMPROTO_HB_ATTRS:
			put_u32(b, m->u.hb_attrs.attrs);
			if (version >= 2)
				put_u32(b, m->u.hb_attrs.timeline);
			break;
	}
}

/*
 * Encode *msg into buf.  Returns the frame's length (> 0), or a negative
 * status: the same range checks as decoding, and CMPROTO_ENOSPACE when the
 * buffer is too small (a buffer of CMPROTO_MAX_MSG bytes always suffices).
 * The encoder does not know who sends: the one sender-dependent rule (a
 * conmgr HB_BEAT carries attrs 0) is the heartbeat role's to keep.  This
 * encodes at the codec's version; cmproto_encode_version() at another.
 */
/*
 * The ERROR frame a peer sends before it closes (docs/protocol.md, 4):
 * code, and the message cut to CMPROTO_ERRMSG_MAX bytes, which every
 * sender's text fits in a frame.  Sent the sender's own way (the
 * listener's, the heartbeat's, the watchdog's).
 */
void
cmproto_error_msg(cmproto_msg *msg, int code, const char *message)
{
	size_t		n = strnlen(message, CMPROTO_ERRMSG_MAX);

	memset(msg, 0, sizeof(*msg));
	msg->type = CMPROTO_ERROR;
	msg->u.error.code = (uint16_t) code;
	memcpy(msg->u.error.message, message, n);
}

int
cmproto_encode(const cmproto_msg *msg, uint8_t *buf, size_t cap)
{
	return cmproto_encode_version(msg, CMPROTO_VERSION, buf, cap);
}

/* cmproto_encode() at the protocol version a session agreed on. */
int
cmproto_encode_version(const cmproto_msg *msg, int version,
					   uint8_t *buf, size_t cap)
{
	wbuf		b;
	int			rc;

	if (version < CMPROTO_MIN_VERSION || version > CMPROTO_VERSION)
		return CMPROTO_ERANGE;
	if (lookup_type(msg->type) == NULL)
		return CMPROTO_EUNKNOWNTYPE;
	switch (msg->type)
	{
		case CMPROTO_RESOLVE:
			rc = str_fits(msg->u.resolve.application_name, CMPROTO_APPNAME_MAX);
			break;
		case CMPROTO_CANDIDATE:
			rc = str_fits(msg->u.candidate.host, CMPROTO_HOST_MAX);
			break;
		case CMPROTO_ERROR:
			rc = str_fits(msg->u.error.message, CMPROTO_ERRMSG_MAX);
			break;
		default:
			rc = 0;
			break;
	}
	if (rc < 0 || (rc = validate(msg, version)) < 0)
		return rc;

	b.p = buf;
	b.cap = cap;
	b.off = 0;
	b.overflow = false;
	put_u8(&b, msg->type);
	put_u8(&b, 0);
	put_u16(&b, 0);				/* length, filled in below */
	encode_body(&b, version, msg);
	if (b.overflow)
		return CMPROTO_ENOSPACE;
	buf[2] = (uint8_t) (b.off >> 8);
	buf[3] = (uint8_t) b.off;
	return (int) b.off;
}

/*
 * A RESOLVE from an application: what libpq-cm and the test tools send.
 * An application name the codec would refuse (too long) is cut to fit.
 * The frame's length, or a negative CMPROTO_E* code.
 */
int
cmproto_encode_resolve(uint8_t *buf, size_t cap, int version, int target,
					   uint32_t client_pid, const char *application_name)
{
	cmproto_msg m;

	memset(&m, 0, sizeof(m));
	m.type = CMPROTO_RESOLVE;
	m.u.resolve.version = (uint16_t) version;
	m.u.resolve.target = (uint8_t) target;
	m.u.resolve.client_pid = client_pid;
	if (application_name)
		memcpy(m.u.resolve.application_name, application_name,
			   strnlen(application_name, CMPROTO_APPNAME_MAX));
	return cmproto_encode(&m, buf, cap);
}

/* The name of a message type, from msgtypes[]. */
const char *
cmproto_type_name(int type)
{
	const msgtype *t = lookup_type(type);

	return t ? t->name : "unknown";
}
