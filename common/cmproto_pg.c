/*-------------------------------------------------------------------------
 *
 * cmproto_pg.c
 *	  The PostgreSQL-compatible first packets of conmgr's application port.
 *
 * conmgr's port speaks PostgreSQL's startup framing where a client may
 * (docs/protocol.md sections 2.1 and 2.4): libpq-cm sends a GSSENCRequest
 * to tell conmgr from a postmaster, the listener classifies what a client
 * sent first, and a plain PostgreSQL client that reached conmgr gets an
 * ErrorResponse it can show.  Compiled into the daemon and libpq-cm (not
 * the watchdog extension, which never sees these packets), without
 * allocation, stdio or exit, like the codec.
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "cmproto.h"
#include "cmproto_int.h"

static uint32_t
read_be32(const uint8_t *p)
{
	return ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16) |
		((uint32_t) p[2] << 8) | (uint32_t) p[3];
}

static void
write_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t) (v >> 24);
	p[1] = (uint8_t) (v >> 16);
	p[2] = (uint8_t) (v >> 8);
	p[3] = (uint8_t) v;
}

/* The detection probe: a GSSENCRequest.  Returns 8, or 0 if cap < 8. */
size_t
cmproto_pg_encode_probe(uint8_t *buf, size_t cap)
{
	if (cap < CMPROTO_PG_PROBE_LEN)
		return 0;
	write_be32(buf, CMPROTO_PG_PROBE_LEN);
	write_be32(buf + 4, CMPROTO_PG_GSSENC_CODE);
	return CMPROTO_PG_PROBE_LEN;
}

/*
 * Classify the first packet a client sent to conmgr's port, in PostgreSQL's
 * startup framing (a 4-byte length that counts itself, then a 4-byte code).
 * CMPROTO_INCOMPLETE until the whole packet is there (*pktlen is set once
 * the length is known); a length or code a postmaster would reject is an
 * error.  Like the postmaster, at most CMPROTO_PG_MAX_STARTUP bytes may
 * follow the length word.
 */
int
cmproto_pg_classify(const uint8_t *buf, size_t avail, size_t *pktlen,
					cmproto_pg_kind *kind)
{
	uint32_t	len,
				code;

	*pktlen = 0;
	*kind = CMPROTO_PG_UNSUPPORTED;
	if (avail < 4)
		return CMPROTO_INCOMPLETE;
	len = read_be32(buf);
	if (len < 8)
		return CMPROTO_ESHORTLEN;
	if (len - 4 > CMPROTO_PG_MAX_STARTUP)
		return CMPROTO_ETOOLONG;
	*pktlen = len;
	if (avail < 8)
		return CMPROTO_INCOMPLETE;
	code = read_be32(buf + 4);
	switch (code)
	{
		case CMPROTO_PG_GSSENC_CODE:
		case CMPROTO_PG_SSL_CODE:
			if (len != 8)
				return CMPROTO_ERANGE;
			*kind = code == CMPROTO_PG_GSSENC_CODE ?
				CMPROTO_PG_GSSENC_REQUEST : CMPROTO_PG_SSL_REQUEST;
			break;
		case CMPROTO_PG_CANCEL_CODE:
			if (len < CMPROTO_PG_CANCEL_MIN || len > CMPROTO_PG_CANCEL_MAX)
				return CMPROTO_ERANGE;
			*kind = CMPROTO_PG_CANCEL_REQUEST;
			break;
		default:
			if ((code >> 16) == 3)
				*kind = CMPROTO_PG_STARTUP;
			else
				*kind = CMPROTO_PG_UNSUPPORTED;
			break;
	}
	if (avail < len)
		return CMPROTO_INCOMPLETE;
	return CMPROTO_OK;
}

static int
put_pg_field(wbuf *b, char code, const char *value)
{
	size_t		n;

	n = strnlen(value, CMPROTO_PG_MAX_ERROR);
	if (n >= CMPROTO_PG_MAX_ERROR)
		return CMPROTO_ETOOLONG;
	put_u8(b, (uint8_t) code);
	put_bytes(b, value, n + 1);
	return 0;
}

/*
 * Build a PostgreSQL ErrorResponse of severity FATAL (hint may be NULL).
 * Returns its length, or a negative status: CMPROTO_ERANGE for a SQLSTATE
 * that is not five digits or capitals, CMPROTO_ETOOLONG past
 * CMPROTO_PG_MAX_ERROR bytes, CMPROTO_ENOSPACE when it does not fit in cap.
 */
int
cmproto_pg_encode_error(uint8_t *buf, size_t cap, const char *sqlstate,
						const char *message, const char *hint)
{
	wbuf		b;
	int			rc;

	if (strnlen(sqlstate, 6) != 5)
		return CMPROTO_ERANGE;
	for (int i = 0; i < 5; i++)
	{
		char		c = sqlstate[i];

		if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z')))
			return CMPROTO_ERANGE;
	}

	b.p = buf;
	b.cap = cap;
	b.off = 0;
	b.overflow = false;
	put_u8(&b, 'E');
	put_u32(&b, 0);				/* length, filled in below */
	if ((rc = put_pg_field(&b, 'S', "FATAL")) < 0 ||
		(rc = put_pg_field(&b, 'V', "FATAL")) < 0 ||
		(rc = put_pg_field(&b, 'C', sqlstate)) < 0 ||
		(rc = put_pg_field(&b, 'M', message)) < 0 ||
		(hint != NULL && (rc = put_pg_field(&b, 'H', hint)) < 0))
		return rc;
	put_u8(&b, 0);
	if (b.off > CMPROTO_PG_MAX_ERROR)
		return CMPROTO_ETOOLONG;
	if (b.overflow)
		return CMPROTO_ENOSPACE;
	write_be32(buf + 1, (uint32_t) (b.off - 1));
	return (int) b.off;
}

/*
 * Decode an ErrorResponse of at most CMPROTO_PG_MAX_ERROR bytes from the
 * start of buf.  CMPROTO_INCOMPLETE until it is all there (*msglen is set
 * once its length is known).  The severity, SQLSTATE and message fields are
 * required; unknown field codes are skipped, as libpq does.
 */
int
cmproto_pg_decode_error(const uint8_t *buf, size_t avail, size_t *msglen,
						cmproto_pg_error *err)
{
	uint32_t	len;
	size_t		pos;
	bool		terminated = false;

	memset(err, 0, sizeof(*err));
	*msglen = 0;
	if (avail < 1)
		return CMPROTO_INCOMPLETE;
	if (buf[0] != 'E')
		return CMPROTO_EUNKNOWNTYPE;
	if (avail < 5)
		return CMPROTO_INCOMPLETE;
	len = read_be32(buf + 1);
	if (len < 5)
		return CMPROTO_ESHORTLEN;
	if (len > CMPROTO_PG_MAX_ERROR - 1)
		return CMPROTO_ETOOLONG;
	*msglen = (size_t) len + 1;
	if (avail < *msglen)
		return CMPROTO_INCOMPLETE;

	pos = 5;
	while (pos < *msglen)
	{
		char		code = (char) buf[pos];
		const uint8_t *nul;
		const char *value;

		if (code == '\0')
		{
			if (pos != *msglen - 1)
				goto bad_trailing;
			terminated = true;
			break;
		}
		pos++;
		nul = memchr(buf + pos, '\0', *msglen - pos);
		if (nul == NULL)
			goto bad_string;
		value = (const char *) buf + pos;
		switch (code)
		{
			case 'S':
				err->severity = value;
				break;
			case 'V':
				if (err->severity == NULL)
					err->severity = value;
				break;
			case 'C':
				err->sqlstate = value;
				break;
			case 'M':
				err->message = value;
				break;
			case 'D':
				err->detail = value;
				break;
			case 'H':
				err->hint = value;
				break;
			default:
				break;
		}
		pos = (size_t) (nul - buf) + 1;
	}
	if (!terminated)
		goto bad_truncated;
	if (err->severity == NULL || err->sqlstate == NULL || err->message == NULL)
	{
		memset(err, 0, sizeof(*err));
		return CMPROTO_ERANGE;
	}
	return CMPROTO_OK;

bad_trailing:
	memset(err, 0, sizeof(*err));
	return CMPROTO_ETRAILING;
bad_string:
	memset(err, 0, sizeof(*err));
	return CMPROTO_EBADSTRING;
bad_truncated:
	memset(err, 0, sizeof(*err));
	return CMPROTO_ETRUNCATED;
}
