/*-------------------------------------------------------------------------
 *
 * cmclient.c
 *	  A blocking client of conmgr's application protocol (cmclient.h).
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cmclient.h"

/*
 * Connect to the first address of the list that takes the connection,
 * each within timeout_ms.  The connect does not block (a full backlog
 * would hold it for minutes); the socket blocks once connected.  A
 * negative timeout_ms asks for a plain blocking connect, which costs no
 * more system calls than connect() itself (the benchmark's load tool).
 */
int
cmclient_connect_addr(cmclient *c, const struct addrinfo *ai, int timeout_ms)
{
	struct pollfd p;

	c->fd = -1;
	c->len = 0;
	c->proto_rc = 0;
	for (; ai != NULL; ai = ai->ai_next)
	{
		int			soerr = 0;
		socklen_t	errlen = sizeof(soerr);
		int			fd = socket(ai->ai_family,
								SOCK_STREAM | SOCK_CLOEXEC | (timeout_ms >= 0 ? SOCK_NONBLOCK : 0), 0);

		if (fd < 0)
			continue;
		if (timeout_ms < 0)
		{
			if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			{
				c->fd = fd;
				return CMCLIENT_OK;
			}
			close(fd);
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0)
		{
			p.fd = fd;
			p.events = POLLOUT;
			if (errno != EINPROGRESS || poll(&p, 1, timeout_ms) <= 0 ||
				getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &errlen) < 0 || soerr != 0)
			{
				close(fd);
				if (soerr != 0)
					errno = soerr;
				continue;
			}
		}
		(void) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
		c->fd = fd;
		return CMCLIENT_OK;
	}
	return CMCLIENT_IO;
}

int
cmclient_connect(cmclient *c, const char *host, const char *port, int timeout_ms)
{
	struct addrinfo hints,
			   *res;
	int			rc;

	c->fd = -1;
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(host, port, &hints, &res) != 0)
	{
		errno = EHOSTUNREACH;
		return CMCLIENT_IO;
	}
	rc = cmclient_connect_addr(c, res, timeout_ms);
	freeaddrinfo(res);
	return rc;
}

/* Read until at least "need" bytes are buffered. */
static int
fill(cmclient *c, size_t need, int timeout_ms)
{
	while (c->len < need)
	{
		struct pollfd p = {c->fd, POLLIN, 0};
		ssize_t		n;
		int			rc = poll(&p, 1, timeout_ms);

		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0)
			return CMCLIENT_IO;
		if (rc == 0)
			return CMCLIENT_TIMEOUT;
		n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
		if (n == 0)
			return CMCLIENT_EOF;
		if (n < 0)
			return CMCLIENT_IO;
		c->len += n;
	}
	return CMCLIENT_OK;
}

static void
consume(cmclient *c, size_t n)
{
	memmove(c->buf, c->buf + n, c->len - n);
	c->len -= n;
}

/* The next frame from the listener into *m. */
int
cmclient_next(cmclient *c, cmproto_msg *m, int timeout_ms)
{
	for (;;)
	{
		size_t		flen;
		int			rc = cmproto_frame(c->buf, c->len, &flen);

		if (rc == CMPROTO_OK)
		{
			rc = cmproto_decode(c->buf, flen, CMPROTO_PEER_LISTENER, m);
			consume(c, flen);
			c->proto_rc = rc;
			return rc < 0 ? CMCLIENT_BAD : CMCLIENT_OK;
		}
		if (rc < 0)
		{
			c->proto_rc = rc;
			return CMCLIENT_BAD;
		}
		if ((rc = fill(c, c->len + 1, timeout_ms)) != CMCLIENT_OK)
			return rc;
	}
}

int
cmclient_send(cmclient *c, const cmproto_msg *m)
{
	uint8_t		out[CMPROTO_MAX_MSG];
	int			n = cmproto_encode(m, out, sizeof(out));

	if (n < 0)
	{
		c->proto_rc = n;
		return CMCLIENT_BAD;
	}
	return send(c->fd, out, n, MSG_NOSIGNAL) == n ? CMCLIENT_OK : CMCLIENT_IO;
}

int
cmclient_send_resolve(cmclient *c, int target, const char *appname)
{
	uint8_t		out[CMPROTO_MAX_MSG];
	int			n = cmproto_encode_resolve(out, sizeof(out), CMPROTO_VERSION, target,
										   (uint32_t) getpid(), appname);

	if (n < 0)
	{
		c->proto_rc = n;
		return CMCLIENT_BAD;
	}
	return send(c->fd, out, n, MSG_NOSIGNAL) == n ? CMCLIENT_OK : CMCLIENT_IO;
}

/*
 * Send the probe, with a RESOLVE for pipelined_target in the same packet
 * unless it is negative, and read the answer: the ErrorResponse into *err
 * and the HELLO into *hello (CMCLIENT_UNEXPECTED if another message
 * comes).  CMCLIENT_POSTMASTER when the peer answered as a PostgreSQL
 * server ('G' or 'N'); timeout_ms bounds each read.  The steps are also
 * functions of their own, for a caller that reports each.
 */
int
cmclient_probe(cmclient *c, int pipelined_target, const char *appname,
			   cmproto_pg_error *err, cmproto_msg *hello, int timeout_ms)
{
	int			rc;

	if ((rc = cmclient_send_probe(c, pipelined_target, appname)) != CMCLIENT_OK ||
		(rc = cmclient_probe_answer(c, err, timeout_ms)) != CMCLIENT_OK ||
		(rc = cmclient_next(c, hello, timeout_ms)) != CMCLIENT_OK)
		return rc;
	return hello->type == CMPROTO_HELLO ? CMCLIENT_OK : CMCLIENT_UNEXPECTED;
}

/* The probe, and a RESOLVE for pipelined_target unless it is negative. */
int
cmclient_send_probe(cmclient *c, int pipelined_target, const char *appname)
{
	uint8_t		out[CMPROTO_PG_MAX_ERROR + CMPROTO_MAX_MSG];
	size_t		len = cmproto_pg_encode_probe(out, sizeof(out));
	int			rc;

	if (pipelined_target >= 0)
	{
		rc = cmproto_encode_resolve(out + len, sizeof(out) - len, CMPROTO_VERSION,
									pipelined_target, (uint32_t) getpid(), appname);
		if (rc < 0)
		{
			c->proto_rc = rc;
			return CMCLIENT_BAD;
		}
		len += (size_t) rc;
	}
	return send(c->fd, out, len, MSG_NOSIGNAL) == (ssize_t) len ? CMCLIENT_OK : CMCLIENT_IO;
}

/*
 * The ErrorResponse that answers the probe, into *err; CMCLIENT_POSTMASTER
 * for a PostgreSQL server's answer.  On a failure, c->len == 0 says that
 * nothing came at all.
 */
int
cmclient_probe_answer(cmclient *c, cmproto_pg_error *err, int timeout_ms)
{
	size_t		elen;
	int			rc;

	if ((rc = fill(c, 1, timeout_ms)) != CMCLIENT_OK)
		return rc;
	if (c->buf[0] == 'G' || c->buf[0] == 'N')
		return CMCLIENT_POSTMASTER;
	while ((rc = cmproto_pg_decode_error(c->buf, c->len, &elen, err)) == CMPROTO_INCOMPLETE)
		if ((rc = fill(c, c->len + 1, timeout_ms)) != CMCLIENT_OK)
			return rc;
	if (rc != CMPROTO_OK)
	{
		c->proto_rc = rc;
		return CMCLIENT_BAD;
	}
	consume(c, elen);
	return CMCLIENT_OK;
}

/*
 * Read the answer to a RESOLVE: the CANDIDATE messages, the first max of
 * them into cands[], their number into *n, up to CANDIDATES_END.  Any
 * other message (an ERROR, say) ends it with CMCLIENT_UNEXPECTED, the
 * message in *other.
 */
int
cmclient_candidates(cmclient *c, cmproto_msg *cands, int max, int *n,
					cmproto_msg *other, int timeout_ms)
{
	*n = 0;
	for (;;)
	{
		int			rc = cmclient_next(c, other, timeout_ms);

		if (rc != CMCLIENT_OK)
			return rc;
		if (other->type == CMPROTO_CANDIDATES_END)
			return CMCLIENT_OK;
		if (other->type != CMPROTO_CANDIDATE)
			return CMCLIENT_UNEXPECTED;
		if (*n < max)
			cands[*n] = *other;
		(*n)++;
	}
}

void
cmclient_close(cmclient *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->len = 0;
}
