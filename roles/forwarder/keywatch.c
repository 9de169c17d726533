/*-------------------------------------------------------------------------
 *
 * keywatch.c
 *	  The BackendKeyData of a session in the clear, read as it passes.
 *
 * A CancelRequest names a backend by process ID and secret key, which the
 * server sent its client in BackendKeyData ('K') at the end of the
 * session's start-up.  When the session is in the clear, the forwarder
 * reads the server's messages as they pass until it has seen that key, so
 * that a CancelRequest for it goes to that session's instance alone
 * (cancel.c) rather than to every instance that is up, each of which
 * would log that it has no such process.  It stops at the key, at
 * ReadyForQuery or an ErrorResponse (no key follows them), when the
 * server agrees to TLS or GSSAPI encryption (the answer 'S' or 'G' to the
 * client's request: nothing after it can be read), on a length no message
 * has, or after FW_KEYWATCH_MAX bytes.  A client refused GSSAPI ('N') may
 * ask for TLS next, so after an 'N' come more answers ('N', 'S', 'G') or
 * the first message, which is never one of those types ('R', 'E' or
 * 'v').
 *
 * Plain data, no system calls: relay.c feeds it the bytes it relays, and
 * regress/unit/test_fwkeywatch.c tests it.
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "forwarder.h"

#define FW_KEYWATCH_MAX		65536

/*
 * Start watching a session's server bytes; answer_first when the client
 * asked for encryption, so that the server's first byte is its answer.
 */
void
fw_keywatch_start(fw_keywatch *w, bool answer_first)
{
	memset(w, 0, sizeof(*w));
	w->state = answer_first ? FW_KW_ANSWER : FW_KW_HEADER;
}

/* One message header complete: what follows it. */
static void
fw_keywatch_header(fw_keywatch *w)
{
	uint32_t	len = ((uint32_t) w->hdr[1] << 24) | ((uint32_t) w->hdr[2] << 16) |
		((uint32_t) w->hdr[3] << 8) | w->hdr[4];

	w->hdrlen = 0;
	if (len < 4 || w->hdr[0] == 'Z' || w->hdr[0] == 'E')
		w->state = FW_KW_DONE;
	else if (w->hdr[0] == 'K')
	{
		/* protocol 3.0's key: 4 bytes; any other length is not matched */
		w->state = len == 12 ? FW_KW_KEY : FW_KW_DONE;
		w->left = len - 4;
	}
	else
	{
		w->state = len == 4 ? FW_KW_HEADER : FW_KW_SKIP;
		w->left = len - 4;
	}
}

/*
 * The next n bytes the server sent; false once the watch is over (the key
 * found, in w->key, with w->found, or never to be).
 */
bool
fw_keywatch_feed(fw_keywatch *w, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n && w->state != FW_KW_DONE;)
	{
		size_t		take;

		if (w->seen >= FW_KEYWATCH_MAX)
		{
			w->state = FW_KW_DONE;
			break;
		}
		switch (w->state)
		{
			case FW_KW_ANSWER:
				w->state = p[i] == 'N' ? FW_KW_ANSWERED : FW_KW_DONE;
				take = 1;
				break;
			case FW_KW_ANSWERED:
				/* another 'N', to the SSLRequest after a GSSENCRequest */
				take = 1;
				if (p[i] == 'S' || p[i] == 'G')
					w->state = FW_KW_DONE;
				else if (p[i] != 'N')
				{
					w->hdr[w->hdrlen++] = p[i];
					w->state = FW_KW_HEADER;
				}
				break;
			case FW_KW_HEADER:
				w->hdr[w->hdrlen++] = p[i];
				take = 1;
				if (w->hdrlen == sizeof(w->hdr))
					fw_keywatch_header(w);
				break;
			case FW_KW_SKIP:
				take = n - i < w->left ? n - i : w->left;
				w->left -= take;
				if (w->left == 0)
					w->state = FW_KW_HEADER;
				break;
			case FW_KW_KEY:
				w->key[sizeof(w->key) - w->left] = p[i];
				take = 1;
				if (--w->left == 0)
				{
					w->found = true;
					w->state = FW_KW_DONE;
				}
				break;
			case FW_KW_DONE:
			default:
				take = n - i;
				break;
		}
		i += take;
		w->seen += take;
	}
	return w->state != FW_KW_DONE;
}
