/*-------------------------------------------------------------------------
 *
 * cmclient.h
 *	  A blocking client of conmgr's application protocol, for tools.
 *
 * What cm_ctl, the test client cmresolve and the benchmark's cmload say
 * to a listener (docs/protocol.md, section 2): connect within a time
 * limit, send the probe (with the RESOLVE in the same packet, as libpq-cm
 * does with a conmgr it has met, or after the HELLO), read the
 * ErrorResponse and the HELLO, send RESOLVE, read the candidates, and any
 * frame after them.  Each read waits at most the time it is given.
 * libpq-cm does not use it: its connect path never blocks.
 *
 * No state but the caller's cmclient, so threads may each have their own.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CMCLIENT_H
#define CMCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cmproto.h"

struct addrinfo;

typedef struct cmclient
{
	int			fd;				/* -1 when not connected */
	size_t		len;			/* bytes in buf */
	int			proto_rc;		/* CMCLIENT_BAD: the codec's error */
	uint8_t		buf[CMPROTO_PG_MAX_ERROR + 2 * CMPROTO_MAX_MSG];
} cmclient;

typedef enum cmclient_rc
{
	CMCLIENT_OK = 0,
	CMCLIENT_POSTMASTER = 1,	/* the probe reached a PostgreSQL server */
	CMCLIENT_EOF = -1,			/* the peer closed */
	CMCLIENT_TIMEOUT = -2,		/* nothing within the time given */
	CMCLIENT_IO = -3,			/* a system call failed: errno */
	CMCLIENT_BAD = -4,			/* a frame that does not decode: proto_rc */
	CMCLIENT_UNEXPECTED = -5	/* a message out of turn, handed back */
} cmclient_rc;

/* cmclient.c */
extern int	cmclient_connect(cmclient *c, const char *host, const char *port, int timeout_ms);
extern int	cmclient_connect_addr(cmclient *c, const struct addrinfo *ai, int timeout_ms);
extern int	cmclient_probe(cmclient *c, int pipelined_target, const char *appname,
						   cmproto_pg_error *err, cmproto_msg *hello, int timeout_ms);
extern int	cmclient_send_probe(cmclient *c, int pipelined_target, const char *appname);
extern int	cmclient_probe_answer(cmclient *c, cmproto_pg_error *err, int timeout_ms);
extern int	cmclient_send(cmclient *c, const cmproto_msg *m);
extern int	cmclient_send_resolve(cmclient *c, int target, const char *appname);
extern int	cmclient_next(cmclient *c, cmproto_msg *m, int timeout_ms);
extern int	cmclient_candidates(cmclient *c, cmproto_msg *cands, int max, int *n,
								cmproto_msg *other, int timeout_ms);
extern void cmclient_close(cmclient *c);

#endif							/* CMCLIENT_H */
