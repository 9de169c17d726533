/*-------------------------------------------------------------------------
 *
 * probe.c
 *	  Is this destination conmgr or a postmaster?  And, if conmgr, which
 *	  instances does it offer?
 *
 * The probe is PostgreSQL's GSSENCRequest (docs/protocol.md, 2.1): a
 * postmaster answers one byte, G or N, and logs nothing when we hang up;
 * conmgr answers an ErrorResponse followed by its HELLO frame.  A server
 * too old to know the request answers an ErrorResponse and closes, which
 * we also take for a postmaster.  Postmasters are remembered for the life
 * of the process, so each is probed once.
 *
 * conmgrs are remembered too, in the same table, with the protocol version
 * agreed: the next connection through the same conmgr sends its RESOLVE
 * with the probe, in one packet, and saves a round trip (docs/protocol.md,
 * 2.3).  Never to an unknown destination: a postmaster would read the
 * RESOLVE as a startup packet and log it.  Should the conmgr have been
 * restarted meanwhile with a version range that excludes the one sent,
 * the destination is probed again without it.
 *
 * Every step here (enum cm_probe_op, cm_probe_step()) is non-blocking: it
 * does what the socket allows and returns a cm_result, what it needs next
 * (enum cm_step) and the messages the connection's error gets.  A step
 * works on the session (cm_session) alone, with the destination and the
 * request (cm_request) the connect state machine gives it, and never calls
 * back into connect.c: the state machine decides every change of phase.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "cm_int.h"

/*
 * ---- the per-process table of destinations met ----
 *
 * One entry a host:port: version 0 for a postmaster, the protocol version
 * agreed for a conmgr.  Round robin replacement when full.
 */

#define CM_DEST_CACHE	64

typedef struct known_dest
{
	char	   *key;			/* NULL: free */
	int			version;
	bool		remote;			/* version 0 because it is not on loopback
								 * (trust.c), not because it answered */
} known_dest;

static pthread_mutex_t known_lock = PTHREAD_MUTEX_INITIALIZER;
static known_dest known[CM_DEST_CACHE];
static int	known_next;			/* next slot to (re)use */

static void
dest_key(const cm_dest *d, char *buf, size_t len)
{
	snprintf(buf, len, "%s|%s|%s", d->host, d->hostaddr ? d->hostaddr : "",
			 d->port);
}

/* d's entry; caller holds known_lock */
static known_dest *
known_find(const char *key)
{
	for (int i = 0; i < CM_DEST_CACHE; i++)
		if (known[i].key && strcmp(known[i].key, key) == 0)
			return &known[i];
	return NULL;
}

/*
 * The version recorded for d: -1 unknown, 0 postmaster, > 0 conmgr.
 * *remote: recorded as a postmaster only for not being on loopback.
 */
static int
known_version(const cm_dest *d, bool *remote)
{
	char		key[600];
	known_dest *k;
	int			version;

	dest_key(d, key, sizeof(key));
	pthread_mutex_lock(&known_lock);
	k = known_find(key);
	version = k ? k->version : -1;
	if (remote)
		*remote = k ? k->remote : false;
	pthread_mutex_unlock(&known_lock);
	return version;
}

/*
 * Record d as a postmaster (0; remote: only for not being on loopback) or
 * a conmgr (version), or forget it (-1).
 */
static void
remember_as(const cm_dest *d, int version, bool remote)
{
	char		key[600];
	known_dest *k;

	dest_key(d, key, sizeof(key));
	pthread_mutex_lock(&known_lock);
	k = known_find(key);
	if (k && version < 0)
	{
		free(k->key);
		k->key = NULL;
	}
	else if (k)
	{
		k->version = version;
		k->remote = remote;
	}
	else if (version >= 0)
	{
		char	   *copy = strdup(key);

		if (copy != NULL)		/* else we will just probe again */
		{
			free(known[known_next].key);
			known[known_next].key = copy;
			known[known_next].version = version;
			known[known_next].remote = remote;
			known_next = (known_next + 1) % CM_DEST_CACHE;
		}
	}
	pthread_mutex_unlock(&known_lock);
}

static void
remember(const cm_dest *d, int version)
{
	remember_as(d, version, false);
}

/*
 * d goes to libpq without a probe: it answered as a server, or it is not
 * on loopback and PGCMADDRS (read anew each time) does not name it.
 */
bool
cm_known_postmaster(const cm_dest *d)
{
	bool		remote;
	char		why[300];

	if (known_version(d, &remote) != 0)
		return false;
	return !remote || (!cm_named_conmgr(d, why, sizeof(why)) && why[0] == '\0');
}

/* ---- sockets ---- */

/*
 * A session with conmgr ends with a reset, not a FIN (SO_LINGER 0): it has
 * nothing left to deliver either way, and a normal close would leave the
 * socket in TIME_WAIT for a minute on this host, one per connection made,
 * all towards the same conmgr port (docs/protocol.md, 2.3).  A probe that
 * found a postmaster is closed normally, so that the server logs nothing.
 * The candidates read stay: the attempts made from them outlive the
 * session's socket.
 */
void
cm_session_close(cm_session *s)
{
	if (s->fd >= 0)
	{
		if (s->conmgr_met)
		{
			struct linger abort_close = {1, 0};

			(void) setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &abort_close, sizeof(abort_close));
		}
		close(s->fd);
	}
	s->fd = -1;
	s->rlen = 0;
	s->got_error_response = false;
	s->conmgr_met = false;
}

/* Close the session and forget the destination's addresses. */
void
cm_session_free(cm_session *s)
{
	cm_session_close(s);
	if (s->ai)
		freeaddrinfo(s->ai);
	s->ai = s->ai_cur = NULL;
}

static void
note_addr(cm_session *s, const struct addrinfo *ai)
{
	s->cur_addr[0] = '\0';
	getnameinfo(ai->ai_addr, ai->ai_addrlen, s->cur_addr, sizeof(s->cur_addr),
				NULL, 0, NI_NUMERICHOST);
}

/* "connection to server at ... failed: <why>", in libpq's shape */
static cm_step
dest_failed(cm_session *s, const cm_dest *d, cm_text *err, const char *why)
{
	cm_text_failed(err, d->host, d->hostaddr, s->cur_addr[0] ? s->cur_addr : NULL,
				   d->port, why);
	cm_session_close(s);
	return CMS_FAILED;
}

static bool
send_all(int fd, const uint8_t *buf, size_t len)
{
	while (len > 0)
	{
		ssize_t		n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;		/* a fresh socket has room for a frame */
		buf += n;
		len -= (size_t) n;
	}
	return true;
}

/* The RESOLVE frame for this connection; its length, or -1. */
static int
encode_resolve(const cm_request *q, int version, uint8_t *buf, size_t len)
{
	return cmproto_encode_resolve(buf, len, version, q->target,
								  (uint32_t) getpid(), q->app);
}

/*
 * The probe, with a RESOLVE when the destination is a conmgr we know.
 * CMS_PROBE_SENT, or CMS_FAILED.
 */
static cm_step
send_probe(cm_session *s, const cm_dest *d, const cm_request *q, cm_text *err)
{
	uint8_t		buf[CMPROTO_PG_PROBE_LEN + CMPROTO_MAX_MSG];
	size_t		n = cmproto_pg_encode_probe(buf, sizeof(buf));
	int			version = q->classifying ? 0 : known_version(d, NULL);

	s->pipelined = 0;
	if (version > 0)
	{
		int			k = encode_resolve(q, version, buf + n, sizeof(buf) - n);

		if (k > 0)
		{
			n += (size_t) k;
			s->pipelined = version;
		}
	}
	if (!send_all(s->fd, buf, n))
		return dest_failed(s, d, err, strerror(errno));
	return CMS_PROBE_SENT;
}

/*
 * Connect to s->ai_cur or the addresses after it: CMS_MORE (connecting),
 * CMS_PROBE_SENT or CMS_FAILED.
 */
static cm_step
connect_next(cm_session *s, const cm_dest *d, const cm_request *q, cm_text *err)
{
	char		why[256] = "no address";

	for (; s->ai_cur; s->ai_cur = s->ai_cur->ai_next)
	{
		struct addrinfo *ai = s->ai_cur;
		int			one = 1;

		note_addr(s, ai);
		s->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (s->fd < 0)
		{
			snprintf(why, sizeof(why), "could not create socket: %s", strerror(errno));
			continue;
		}
		setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (connect(s->fd, ai->ai_addr, ai->ai_addrlen) == 0)
			return send_probe(s, d, q, err);
		if (errno == EINPROGRESS)
			return CMS_MORE;
		snprintf(why, sizeof(why), "%s\n\tIs the server running on that host and accepting TCP/IP connections?",
				 strerror(errno));
		close(s->fd);
		s->fd = -1;
		/* libpq reports each address it could not reach */
		if (s->ai_cur->ai_next)
			cm_text_failed(err, d->host, d->hostaddr, s->cur_addr, d->port, why);
	}
	return dest_failed(s, d, err, why);
}

/*
 * Start probing d: resolve it (blocking, as libpq does) and start a
 * non-blocking connect.  CMS_MORE: wait until the socket is writable, then
 * CMO_CONNECTED; CMS_PROBE_SENT: already connected and the probe is
 * sent, wait for reading, then CMO_PROBE_READ; CMS_POSTMASTER: not on
 * loopback and not named by PGCMADDRS, so not probed (trust.c): a server
 * for libpq, remembered as such; CMS_FAILED.
 */
static cm_step
probe_start(cm_session *s, const cm_dest *d, const cm_request *q, cm_text *err)
{
	struct addrinfo hints;
	char		why[300];
	int			rc;

	cm_session_free(s);
	s->cur_addr[0] = '\0';
	s->ncand = 0;
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_family = AF_UNSPEC;
	if (d->hostaddr)
		hints.ai_flags = AI_NUMERICHOST;
	rc = getaddrinfo(d->hostaddr ? d->hostaddr : d->host, d->port, &hints, &s->ai);
	if (rc != 0)
	{
		s->ai = NULL;
		if (d->hostaddr)
			snprintf(why, sizeof(why), "could not parse network address \"%s\": %s",
					 d->hostaddr, gai_strerror(rc));
		else
			snprintf(why, sizeof(why), "could not translate host name \"%s\" to address: %s",
					 d->host, gai_strerror(rc));
		cm_text_appendf(err, "%s\n", why);
		return CMS_FAILED;
	}
	s->ai_cur = s->ai;
	s->loopback = cm_all_loopback(s->ai);
	if (!s->loopback && !cm_named_conmgr(d, why, sizeof(why)))
	{
		if (why[0])
			return dest_failed(s, d, err, why);
		cm_session_free(s);
		remember_as(d, 0, true);
		return CMS_POSTMASTER;
	}
	return connect_next(s, d, q, err);
}

/*
 * The non-blocking connect finished (the socket became writable):
 * CMS_PROBE_SENT, or as CMO_START when it went on with the next
 * address.
 */
static cm_step
probe_connected(cm_session *s, const cm_dest *d, const cm_request *q, cm_text *err)
{
	int			e = 0;
	socklen_t	len = sizeof(e);
	char		why[256];

	if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
		e = errno;
	if (e == EINPROGRESS || e == EALREADY)
		return CMS_MORE;
	if (e == 0)
		return send_probe(s, d, q, err);
	close(s->fd);
	s->fd = -1;
	if (s->ai_cur->ai_next)
	{
		cm_text_failed(err, d->host, d->hostaddr, s->cur_addr, d->port, strerror(e));
		s->ai_cur = s->ai_cur->ai_next;
		return connect_next(s, d, q, err);
	}
	snprintf(why, sizeof(why), "%s\n\tIs the server running on that host and accepting TCP/IP connections?",
			 strerror(e));
	errno = e;
	return dest_failed(s, d, err, why);
}

/* Read what the socket has: 1 more may come, 0 end of file, -1 error (errno). */
static int
fill(cm_session *s)
{
	for (;;)
	{
		ssize_t		n;

		if (s->rlen == sizeof(s->rbuf))
			return 1;
		n = recv(s->fd, s->rbuf + s->rlen, sizeof(s->rbuf) - s->rlen, 0);
		if (n > 0)
		{
			s->rlen += (size_t) n;
			continue;
		}
		if (n == 0)
			return 0;			/* end of file */
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 1;
		return -1;
	}
}

static void
consume(cm_session *s, size_t n)
{
	memmove(s->rbuf, s->rbuf + n, s->rlen - n);
	s->rlen -= n;
}

static cm_step
send_resolve(cm_session *s, const cm_dest *d, const cm_request *q, cm_text *err,
			 int version)
{
	uint8_t		buf[CMPROTO_MAX_MSG];
	int			n = encode_resolve(q, version, buf, sizeof(buf));

	if (n < 0 || !send_all(s->fd, buf, (size_t) n))
		return dest_failed(s, d, err, "could not send the request to conmgr");
	return CMS_CONMGR;
}

/* The destination is a postmaster: hang up, remember it as one. */
static cm_step
postmaster_found(cm_session *s, const cm_dest *d)
{
	cm_session_close(s);
	remember(d, 0);
	return CMS_POSTMASTER;
}

/*
 * The ErrorResponse that opens a conmgr's answer to the probe, or a
 * postmaster's answer.  CMS_CONMGR: the ErrorResponse is read (or was),
 * go on to the HELLO; rc is fill()'s.
 */
static cm_step
read_probe_answer(cm_session *s, const cm_dest *d, cm_text *err, int rc)
{
	cmproto_pg_error e;
	size_t		elen;
	int			st;

	if (s->got_error_response)
		return CMS_CONMGR;
	if (s->rbuf[0] == 'G' || s->rbuf[0] == 'N')
		return postmaster_found(s, d);
	if (s->rbuf[0] != 'E')
		return dest_failed(s, d, err, "the server is neither PostgreSQL nor conmgr");
	st = cmproto_pg_decode_error(s->rbuf, s->rlen, &elen, &e);
	if (st == CMPROTO_INCOMPLETE && rc > 0)
		return CMS_MORE;
	if (st != CMPROTO_OK)
		return postmaster_found(s, d);	/* a server too old for the request */
	consume(s, elen);
	s->got_error_response = true;
	return CMS_CONMGR;
}

/*
 * Read the answer to the probe.  CMS_MORE: wait for reading, then call
 * again.  CMS_POSTMASTER: the socket is closed and the destination
 * remembered.  CMS_CONMGR: conmgr answered, RESOLVE is sent (now, or with
 * the probe), read the answer with CMO_RESOLVE_READ; some of it may be
 * read already (s->rlen > 0).  CMS_REPROBE: the RESOLVE sent with the
 * probe has a version this conmgr does not speak; the socket is closed.
 * CMS_FAILED.
 */
static cm_step
probe_read(cm_session *s, const cm_dest *d, const cm_request *q, cm_text *err)
{
	int			rc = fill(s);
	cm_step		step;
	size_t		flen;
	cmproto_msg m;
	int			st;
	int			version;

	if (rc < 0)
		return dest_failed(s, d, err, strerror(errno));
	if (s->rlen == 0)
		return rc == 0 ? dest_failed(s, d, err, "server closed the connection unexpectedly") : CMS_MORE;
	if ((step = read_probe_answer(s, d, err, rc)) != CMS_CONMGR)
		return step;
	st = cmproto_frame(s->rbuf, s->rlen, &flen);
	if (st == CMPROTO_INCOMPLETE)
	{
		if (rc > 0)
			return CMS_MORE;
		/* an ErrorResponse and nothing more: an old postmaster */
		return postmaster_found(s, d);
	}
	if (st == CMPROTO_OK)
		st = cmproto_decode(s->rbuf, flen, CMPROTO_PEER_LISTENER, &m);
	if (st != CMPROTO_OK || m.type != CMPROTO_HELLO)
		return dest_failed(s, d, err, "conmgr sent an invalid greeting");
	if (s->loopback)
	{
		char		why[1024];

		if (!cm_trusted_server(s->fd, why, sizeof(why)))
		{
			remember(d, -1);
			return dest_failed(s, d, err, why);
		}
	}
	consume(s, flen);
	s->conmgr_met = true;
	version = cmproto_negotiate(CMPROTO_MIN_VERSION, CMPROTO_VERSION,
								m.u.hello.min_version, m.u.hello.max_version);
	if (version < 0)
	{
		remember(d, -1);
		return dest_failed(s, d, err, "conmgr speaks no protocol version this library knows");
	}
	if (s->pipelined)
	{
		if (s->pipelined >= m.u.hello.min_version && s->pipelined <= m.u.hello.max_version)
			return CMS_CONMGR;
		/* restarted with other versions since we met it */
		remember(d, -1);
		cm_session_close(s);
		return CMS_REPROBE;
	}
	if (!q->classifying)
		remember(d, version);
	return send_resolve(s, d, q, err, version);
}

/* Keep one candidate (beyond the list's room, only count it). */
static void
add_candidate(cm_session *s, const cmproto_msg *m)
{
	cm_candidate *cand;

	if (s->ncand >= (int) (sizeof(s->cand) / sizeof(s->cand[0])))
		return;
	cand = &s->cand[s->ncand++];
	cand->instance = m->u.candidate.instance;
	cand->numeric = m->u.candidate.addr_kind == CMPROTO_ADDR_NUMERIC;
	snprintf(cand->host, sizeof(cand->host), "%s", m->u.candidate.host);
	snprintf(cand->port, sizeof(cand->port), "%u", m->u.candidate.port);
}

/* One message of the candidate list: CMS_MORE to read on, else the end. */
static cm_step
resolve_message(cm_session *s, const cm_dest *d, const cm_request *q,
				cm_text *err, const cmproto_msg *m)
{
	switch (m->type)
	{
		case CMPROTO_CANDIDATE:
			{
				char		why[400];

				if (!cm_candidate_valid(m, why, sizeof(why)))
					return dest_failed(s, d, err, why);
				add_candidate(s, m);
				return CMS_MORE;
			}
		case CMPROTO_CANDIDATES_END:
			if (m->u.candidates_end.count != s->ncand)
				return dest_failed(s, d, err, "conmgr sent an inconsistent candidate list");
			if (s->ncand == 0)
			{
				char		why[200];

				snprintf(why, sizeof(why), "conmgr knows no instance that is up with target_session_attrs=%s",
						 cmproto_target_name(q->target));
				return dest_failed(s, d, err, why);
			}
			return CMS_CANDIDATES;
		case CMPROTO_ERROR:
			{
				char		why[CMPROTO_ERRMSG_MAX + 32];

				snprintf(why, sizeof(why), "conmgr: %s", m->u.error.message);
				return dest_failed(s, d, err, why);
			}
		default:
			return dest_failed(s, d, err, "unexpected message from conmgr");
	}
}

/*
 * Read CANDIDATE frames up to CANDIDATES_END.  CMS_MORE: wait for reading,
 * then call again; CMS_CANDIDATES: the list is complete, in s->cand[] in
 * conmgr's order; CMS_FAILED.
 */
static cm_step
resolve_read(cm_session *s, const cm_dest *d, const cm_request *q, cm_text *err)
{
	int			rc = fill(s);

	if (rc < 0)
		return dest_failed(s, d, err, strerror(errno));
	for (;;)
	{
		size_t		flen;
		cmproto_msg m;
		int			st = cmproto_frame(s->rbuf, s->rlen, &flen);
		cm_step		step;

		if (st == CMPROTO_INCOMPLETE)
			return rc > 0 ? CMS_MORE : dest_failed(s, d, err, "conmgr closed the connection unexpectedly");
		if (st == CMPROTO_OK)
			st = cmproto_decode(s->rbuf, flen, CMPROTO_PEER_LISTENER, &m);
		if (st != CMPROTO_OK)
		{
			char		why[200];

			snprintf(why, sizeof(why), "invalid message from conmgr: %s", cmproto_strerror(st));
			return dest_failed(s, d, err, why);
		}
		consume(s, flen);
		if ((step = resolve_message(s, d, q, err, &m)) != CMS_MORE)
			return step;
	}
}

/* ---- the steps, as the connect state machine sees them ---- */

typedef cm_step (*step_fn) (cm_session *s, const cm_dest *d,
							const cm_request *q, cm_text *err);

static const step_fn steps[] = {
	[CMO_START] = probe_start,
	[CMO_CONNECTED] = probe_connected,
	[CMO_PROBE_READ] = probe_read,
	[CMO_RESOLVE_READ] = resolve_read,
};

/*
 * Take step op of destination d (enum cm_probe_op says which follows
 * which); its messages go into the result, for the caller to keep.
 */
cm_result
cm_probe_step(cm_probe_op op, cm_session *s, const cm_dest *d,
			  const cm_request *q)
{
	cm_result	r;

	cm_text_reset(&r.err);
	r.step = steps[op] (s, d, q, &r.err);
	return r;
}

/* Tell conmgr which instance the application reached. */
bool
cm_send_attached(cm_session *s, int instance, int backend_pid)
{
	cmproto_msg m;
	uint8_t		buf[CMPROTO_MAX_MSG];
	int			n;

	memset(&m, 0, sizeof(m));
	m.type = CMPROTO_ATTACHED;
	m.u.attached.instance = (uint16_t) instance;
	m.u.attached.backend_pid = (uint32_t) backend_pid;
	n = cmproto_encode(&m, buf, sizeof(buf));
	return n > 0 && send_all(s->fd, buf, (size_t) n);
}
