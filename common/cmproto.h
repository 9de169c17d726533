/*-------------------------------------------------------------------------
 *
 * cmproto.h
 *	  The wire protocols of conmgr: message types, limits and the codec.
 *
 * One header for both protocols (application <-> conmgr listener, conmgr
 * heartbeat role <-> watchdog worker), shared by the daemon, libpq-cm and
 * the PostgreSQL extension.  docs/protocol.md is the specification; this
 * file and the codec (cmproto.c and cmproto_*.c) must say the same thing.
 *
 * The codec allocates nothing, prints nothing and never exits, so that it
 * can run inside a PostgreSQL backend: it encodes into a caller's buffer,
 * decodes into a caller's struct, and reports every problem as a negative
 * enum cmproto_status.  It includes nothing but the C library's type and
 * string headers.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CMPROTO_H
#define CMPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CMPROTO_VERSION			3	/* the version this codec speaks */
#define CMPROTO_MIN_VERSION		1	/* the oldest it still speaks */

#define CMPROTO_HEADER_LEN		4	/* type, flags, length (u16) */
#define CMPROTO_MAX_MSG			512 /* largest frame, header included */

#define CMPROTO_HELLO_MAGIC		0x434D4752	/* "CMGR" */
#define CMPROTO_HB_MAGIC		0x434D4842	/* "CMHB" */

#define CMPROTO_MAX_INSTANCES	64	/* instance numbers are 0..63 */
#define CMPROTO_APPNAME_MAX		63
#define CMPROTO_HOST_MAX		255
#define CMPROTO_ERRMSG_MAX		255
#define CMPROTO_NONCE_LEN		32
#define CMPROTO_PROOF_LEN		32

/* PostgreSQL's first-packet codes (pqcomm.h), for detection. */
#define CMPROTO_PG_GSSENC_CODE	80877104
#define CMPROTO_PG_SSL_CODE		80877103
#define CMPROTO_PG_CANCEL_CODE	80877102
#define CMPROTO_PG_CANCEL_MIN	16	/* a CancelRequest: length, code and
									 * process ID, then a key of 4 bytes
									 * (protocol 3.0) ... */
#define CMPROTO_PG_CANCEL_MAX	268 /* ... up to 256 (protocol 3.2) */
#define CMPROTO_PG_PROTO_3_0	196608
#define CMPROTO_PG_MAX_STARTUP	10000	/* bytes after the length word, as the
										 * postmaster's limit */
#define CMPROTO_PG_PROBE_LEN	8
#define CMPROTO_PG_MAX_ERROR	1024	/* an ErrorResponse conmgr sends */

/* Codec results: 0 is success, INCOMPLETE asks for more bytes. */
typedef enum cmproto_status
{
	CMPROTO_OK = 0,
	CMPROTO_INCOMPLETE = 1,		/* not an error: read more */
	CMPROTO_ETRUNCATED = -1,	/* body shorter than its fields */
	CMPROTO_ETOOLONG = -2,		/* length above the maximum */
	CMPROTO_ESHORTLEN = -3,		/* length below the header size */
	CMPROTO_EBADFLAGS = -4,		/* reserved header flags set */
	CMPROTO_EUNKNOWNTYPE = -5,	/* no such message type */
	CMPROTO_EUNEXPECTED = -6,	/* type never sent by that peer */
	CMPROTO_ERANGE = -7,		/* a field outside its range */
	CMPROTO_EBADSTRING = -8,	/* NUL byte inside a string */
	CMPROTO_ESTRTOOLONG = -9,	/* string above its field's maximum */
	CMPROTO_ETRAILING = -10,	/* bytes after the last field */
	CMPROTO_EBADMAGIC = -11,	/* magic number mismatch */
	CMPROTO_ENOSPACE = -12		/* encoding: buffer too small */
} cmproto_status;

/* Who sent the bytes being decoded: each type lists the kinds that send it. */
typedef enum cmproto_peer
{
	CMPROTO_PEER_APP = 0x01,	/* client library, to the listener */
	CMPROTO_PEER_LISTENER = 0x02,	/* conmgr listener, to the client */
	CMPROTO_PEER_CONMGR = 0x04, /* conmgr heartbeat role, to the watchdog */
	CMPROTO_PEER_WATCHDOG = 0x08	/* watchdog worker, to conmgr */
} cmproto_peer;

/* Message types: the first byte of every frame. */
typedef enum cmproto_type
{
	/* application protocol */
	CMPROTO_HELLO = 'H',
	CMPROTO_RESOLVE = 'R',
	CMPROTO_CANDIDATE = 'C',
	CMPROTO_CANDIDATES_END = 'Z',
	CMPROTO_ATTACHED = 'A',
	CMPROTO_INSTANCE_DOWN = 'D',
	/* heartbeat protocol */
	CMPROTO_HB_HELLO = 'h',
	CMPROTO_HB_CHALLENGE = 'c',
	CMPROTO_HB_AUTH = 'a',
	CMPROTO_HB_WELCOME = 'w',
	CMPROTO_HB_BEAT = 'b',
	CMPROTO_HB_ATTRS = 't',
	/* both */
	CMPROTO_ERROR = 'X'
} cmproto_type;

/* target_session_attrs, as the application names it. */
typedef enum cmproto_target
{
	CMPROTO_TARGET_ANY = 0,
	CMPROTO_TARGET_READ_WRITE = 1,
	CMPROTO_TARGET_READ_ONLY = 2,
	CMPROTO_TARGET_PRIMARY = 3,
	CMPROTO_TARGET_STANDBY = 4,
	CMPROTO_TARGET_PREFER_STANDBY = 5,
	CMPROTO_TARGET_PREFER_PRIMARY = 6
} cmproto_target;
#define CMPROTO_TARGET_LAST		CMPROTO_TARGET_PREFER_PRIMARY

/*
 * Instance attributes, carried by CANDIDATE, HB_WELCOME, HB_BEAT, HB_ATTRS.
 * PROMOTING is a heartbeat attribute of version 3 on: a standby whose
 * promotion has been asked for and is not over.
 */
#define CMPROTO_ATTR_IN_RECOVERY	0x01
#define CMPROTO_ATTR_READ_ONLY		0x02
#define CMPROTO_ATTR_PROMOTING		0x04
#define CMPROTO_ATTR_ALL			0x03	/* CANDIDATE; heartbeat before 3 */
#define CMPROTO_ATTR_ALL_V3			0x07	/* heartbeat from version 3 */
#define cmproto_hb_attrs_valid(version) \
	((version) >= 3 ? CMPROTO_ATTR_ALL_V3 : CMPROTO_ATTR_ALL)

/* CANDIDATE.addr_kind */
#define CMPROTO_ADDR_HOSTNAME	0
#define CMPROTO_ADDR_NUMERIC	1

/* INSTANCE_DOWN.reason */
typedef enum cmproto_down_reason
{
	CMPROTO_DOWN_TIMEOUT = 1,	/* nothing received for heartbeat_timeout */
	CMPROTO_DOWN_LOST = 2,		/* heartbeat connection closed or reset */
	CMPROTO_DOWN_PROTOCOL = 3,	/* the watchdog broke the protocol */
	CMPROTO_DOWN_SHUTDOWN = 4,	/* conmgr is stopping (fast mode) */
	CMPROTO_DOWN_STALE = 5		/* version 2: a primary on an older timeline */
} cmproto_down_reason;
#define CMPROTO_DOWN_LAST		CMPROTO_DOWN_STALE
#define CMPROTO_DOWN_LAST_V1	CMPROTO_DOWN_SHUTDOWN

/* ERROR.code */
typedef enum cmproto_error_code
{
	CMPROTO_ERR_PROTOCOL = 1,
	CMPROTO_ERR_VERSION = 2,
	CMPROTO_ERR_AUTH = 3,
	CMPROTO_ERR_TOO_MANY = 4,
	CMPROTO_ERR_SHUTDOWN = 5,
	CMPROTO_ERR_INTERNAL = 6,
	CMPROTO_ERR_CONFLICT = 7	/* version 2: instances in conflict */
} cmproto_error_code;
#define CMPROTO_ERR_LAST		CMPROTO_ERR_CONFLICT
#define CMPROTO_ERR_LAST_V1		CMPROTO_ERR_INTERNAL

/*
 * The HB_HELLO interval and timeout (seconds) a watchdog accepts, and so
 * the ranges of conmgr.conf's heartbeat_interval and heartbeat_timeout: a
 * peer cannot hold a registered session for days by announcing a huge
 * timeout and going silent.
 */
#define CMPROTO_HB_INTERVAL_MAX		3600
#define CMPROTO_HB_TIMEOUT_MAX		3600

/* HB_HELLO.flags and HB_WELCOME.flags */
#define CMPROTO_HB_HAS_KEY			0x0001	/* HB_HELLO: conmgr holds a key */
#define CMPROTO_HB_AUTHENTICATED	0x0001	/* HB_WELCOME: keys were proved */

/* Labels of the HMAC proofs (docs/protocol.md, 3.2). */
#define CMPROTO_AUTH_LABEL_WATCHDOG	"conmgr-heartbeat-v1 watchdog"
#define CMPROTO_AUTH_LABEL_CONMGR	"conmgr-heartbeat-v1 conmgr"

/* One decoded (or to-be-encoded) message. */
typedef struct cmproto_msg
{
	uint8_t		type;			/* enum cmproto_type */
	union
	{
		struct
		{
			uint16_t	min_version;
			uint16_t	max_version;
		}			hello;		/* HELLO */
		struct
		{
			uint16_t	version;
			uint8_t		target; /* enum cmproto_target */
			uint32_t	client_pid;
			char		application_name[CMPROTO_APPNAME_MAX + 1];
		}			resolve;	/* RESOLVE */
		struct
		{
			uint16_t	instance;
			uint16_t	port;
			uint8_t		attrs;
			uint8_t		addr_kind;
			char		host[CMPROTO_HOST_MAX + 1];
		}			candidate;	/* CANDIDATE */
		struct
		{
			uint16_t	count;
		}			candidates_end; /* CANDIDATES_END */
		struct
		{
			uint16_t	instance;
			uint32_t	backend_pid;
		}			attached;	/* ATTACHED */
		struct
		{
			uint16_t	instance;
			uint8_t		reason; /* enum cmproto_down_reason */
		}			instance_down;	/* INSTANCE_DOWN */
		struct
		{
			uint16_t	code;	/* enum cmproto_error_code */
			char		message[CMPROTO_ERRMSG_MAX + 1];
		}			error;		/* ERROR */
		struct
		{
			uint16_t	min_version;
			uint16_t	max_version;
			uint32_t	interval;	/* seconds */
			uint32_t	timeout;	/* seconds */
			uint16_t	flags;
			uint8_t		nonce[CMPROTO_NONCE_LEN];
		}			hb_hello;	/* HB_HELLO */
		struct
		{
			uint16_t	version;
			uint8_t		nonce[CMPROTO_NONCE_LEN];
			uint8_t		proof[CMPROTO_PROOF_LEN];
		}			hb_challenge;	/* HB_CHALLENGE */
		struct
		{
			uint8_t		proof[CMPROTO_PROOF_LEN];
		}			hb_auth;	/* HB_AUTH */
		struct
		{
			uint16_t	version;
			uint16_t	flags;
			uint32_t	attrs;
			uint32_t	server_version_num;
			uint64_t	system_identifier;
			uint32_t	timeline;	/* version 2; 0 (absent) in version 1 */
		}			hb_welcome; /* HB_WELCOME */
		struct
		{
			uint32_t	seq;
			uint32_t	attrs;
		}			hb_beat;	/* HB_BEAT */
		struct
		{
			uint32_t	attrs;
			uint32_t	timeline;	/* version 2; 0 (absent) in version 1 */
		}			hb_attrs;	/* HB_ATTRS */
	}			u;
} cmproto_msg;

/* What the first packet of a connection to conmgr's port turned out to be. */
typedef enum cmproto_pg_kind
{
	CMPROTO_PG_GSSENC_REQUEST,	/* the client library's probe (or GSS) */
	CMPROTO_PG_SSL_REQUEST,
	CMPROTO_PG_CANCEL_REQUEST,
	CMPROTO_PG_STARTUP,			/* protocol 3.x startup message */
	CMPROTO_PG_UNSUPPORTED		/* well-framed, but nothing we know */
} cmproto_pg_kind;

/*
 * Fields of an ErrorResponse.  They point into the decoder's input, where
 * the decoder checked that each one is NUL-terminated.
 */
typedef struct cmproto_pg_error
{
	const char *severity;		/* 'S' (or 'V') */
	const char *sqlstate;		/* 'C' */
	const char *message;		/* 'M' */
	const char *detail;			/* 'D', or NULL */
	const char *hint;			/* 'H', or NULL */
} cmproto_pg_error;

/* cmproto.c: framing and messages */
extern int	cmproto_frame(const uint8_t *buf, size_t avail, size_t *msglen);
extern int	cmproto_decode(const uint8_t *buf, size_t len, cmproto_peer from,
						   cmproto_msg *msg);
extern int	cmproto_encode(const cmproto_msg *msg, uint8_t *buf, size_t cap);
extern int	cmproto_decode_version(const uint8_t *buf, size_t len, cmproto_peer from,
								   int version, cmproto_msg *msg);
extern int	cmproto_encode_version(const cmproto_msg *msg, int version,
								   uint8_t *buf, size_t cap);
extern int	cmproto_encode_resolve(uint8_t *buf, size_t cap, int version, int target,
								   uint32_t client_pid, const char *application_name);
extern void cmproto_error_msg(cmproto_msg *msg, int code, const char *message);
extern const char *cmproto_type_name(int type);

/* cmproto_handshake.c: the version two peers agree on (5) */
extern int	cmproto_negotiate(uint16_t min_a, uint16_t max_a,
							  uint16_t min_b, uint16_t max_b);

/* cmproto_handshake.c: the shared-key proofs of the heartbeat handshake (3.2) */
extern void cmproto_hb_proof(const uint8_t *key, size_t keylen,
							 const char *label,
							 const uint8_t nonce_c[CMPROTO_NONCE_LEN],
							 const uint8_t nonce_w[CMPROTO_NONCE_LEN],
							 uint8_t proof[CMPROTO_PROOF_LEN]);

/* cmproto_names.c */
extern const char *cmproto_strerror(int status);
extern const char *cmproto_error_code_name(int code);
extern const char *cmproto_down_reason_name(int reason);
extern const char *cmproto_target_name(int target); /* NULL if unknown */
extern int	cmproto_target_from_name(const char *name);

/* cmproto_pg.c: the PostgreSQL-compatible first packets (2.1, 2.4) */
extern size_t cmproto_pg_encode_probe(uint8_t *buf, size_t cap);
extern int	cmproto_pg_classify(const uint8_t *buf, size_t avail,
								size_t *pktlen, cmproto_pg_kind *kind);
extern int	cmproto_pg_encode_error(uint8_t *buf, size_t cap,
									const char *sqlstate, const char *message,
									const char *hint);
extern int	cmproto_pg_decode_error(const uint8_t *buf, size_t avail,
									size_t *msglen, cmproto_pg_error *err);

#endif							/* CMPROTO_H */
