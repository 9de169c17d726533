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
 * 2.3).  Never to
 * an unknown destination: a postmaster would read the RESOLVE as a
 * startup packet and log it.  Should the conmgr have been restarted
 * meanwhile with a version range that excludes the one sent, the
 * destination is probed again without it.
 *
 * Every function here is non-blocking: it does what the socket allows and
 * says what it needs next (enum cm_step).
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

void
cm_remember_postmaster(const cm_dest *d)
{
	remember(d, 0);
}

/* ---- sockets ---- */

/*
 * A session with conmgr ends with a reset, not a FIN (SO_LINGER 0): it has
 * nothing left to deliver either way, and a normal close would leave the
 * socket in TIME_WAIT for a minute on this host, one per connection made,
 * all towards the same conmgr port (docs/protocol.md, 2.3).  A probe that
 * found a postmaster is closed normally, so that the server logs nothing.
 */
void
cm_close_fd(cm_conn *c)
{
	if (c->fd >= 0)
	{
		if (c->conmgr_met)
		{
			struct linger abort_close = {1, 0};

			(void) setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &abort_close, sizeof(abort_close));
		}
		close(c->fd);
	}
	c->fd = -1;
	c->rlen = 0;
	c->got_error_response = false;
	c->conmgr_met = false;
}

const char *
cm_dest_addr(const cm_conn *c)
{
	return c->cur_addr;
}

static void
note_addr(cm_conn *c, const struct addrinfo *ai)
{
	c->cur_addr[0] = '\0';
	getnameinfo(ai->ai_addr, ai->ai_addrlen, c->cur_addr, sizeof(c->cur_addr),
				NULL, 0, NI_NUMERICHOST);
}

/* "connection to conmgr ... failed: <why>", in libpq's shape */
static cm_step
dest_failed(cm_conn *c, const char *why)
{
	const cm_dest *d = &c->dests[c->di];

	if (c->cur_addr[0])
		cm_errorf(c, "connection to server at \"%s\" (%s), port %s failed: %s\n",
				  d->host[0] ? d->host : d->hostaddr, c->cur_addr, d->port, why);
	else
		cm_errorf(c, "connection to server at \"%s\", port %s failed: %s\n",
				  d->host[0] ? d->host : d->hostaddr, d->port, why);
	cm_close_fd(c);
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

static int	encode_resolve(cm_conn *c, int version, uint8_t *buf, size_t len);

/* The probe, with a RESOLVE when the destination is a conmgr we know. */
static cm_step
send_probe(cm_conn *c)
{
	uint8_t		buf[CMPROTO_PG_PROBE_LEN + CMPROTO_MAX_MSG];
	size_t		n = cmproto_pg_encode_probe(buf, sizeof(buf));
	int			version = c->classifying ? 0 : known_version(&c->dests[c->di], NULL);

	c->pipelined = 0;
	if (version > 0)
	{
		int			k = encode_resolve(c, version, buf + n, sizeof(buf) - n);

		if (k > 0)
		{
			n += (size_t) k;
			c->pipelined = version;
		}
	}
	if (!send_all(c->fd, buf, n))
		return dest_failed(c, strerror(errno));
	return CMS_MORE;
}

/* Connect to c->ai_cur or the addresses after it; CMS_MORE or FAILED. */
static cm_step
connect_next(cm_conn *c)
{
	char		why[256] = "no address";

	for (; c->ai_cur; c->ai_cur = c->ai_cur->ai_next)
	{
		struct addrinfo *ai = c->ai_cur;
		int			one = 1;

		note_addr(c, ai);
		c->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (c->fd < 0)
		{
			snprintf(why, sizeof(why), "could not create socket: %s", strerror(errno));
			continue;
		}
		setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) == 0)
			return send_probe(c) == CMS_MORE ? CMS_PROBE_SENT : CMS_FAILED;
		if (errno == EINPROGRESS)
			return CMS_MORE;
		snprintf(why, sizeof(why), "%s\n\tIs the server running on that host and accepting TCP/IP connections?",
				 strerror(errno));
		close(c->fd);
		c->fd = -1;
		if (c->ai_cur->ai_next)
		{
			/* libpq reports each address it could not reach */
			const cm_dest *d = &c->dests[c->di];

			cm_errorf(c, "connection to server at \"%s\" (%s), port %s failed: %s\n",
					  d->host[0] ? d->host : d->hostaddr, c->cur_addr, d->port, why);
		}
	}
	return dest_failed(c, why);
}

/*
 * Start probing c->dests[c->di]: resolve it (blocking, as libpq does) and
 * start a non-blocking connect.  CMS_MORE: wait until the socket is
 * writable, then cm_probe_connected(); CMS_PROBE_SENT (internal): already
 * connected and the probe is sent, wait for reading; CMS_POSTMASTER: not
 * on loopback and not named by PGCMADDRS, so not probed (trust.c): a
 * server for libpq, remembered as such.
 */
cm_step
cm_probe_start(cm_conn *c)
{
	const cm_dest *d = &c->dests[c->di];
	struct addrinfo hints;
	int			rc;

	if (c->ai)
		freeaddrinfo(c->ai);
	c->ai = c->ai_cur = NULL;
	c->cur_addr[0] = '\0';
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_family = AF_UNSPEC;
	if (d->hostaddr)
		hints.ai_flags = AI_NUMERICHOST;
	rc = getaddrinfo(d->hostaddr ? d->hostaddr : d->host, d->port, &hints, &c->ai);
	if (rc != 0)
	{
		char		why[300];

		c->ai = NULL;
		if (d->hostaddr)
			snprintf(why, sizeof(why), "could not parse network address \"%s\": %s",
					 d->hostaddr, gai_strerror(rc));
		else
			snprintf(why, sizeof(why), "could not translate host name \"%s\" to address: %s",
					 d->host, gai_strerror(rc));
		cm_errorf(c, "%s\n", why);
		return CMS_FAILED;
	}
	c->ai_cur = c->ai;
	c->loopback = cm_all_loopback(c->ai);
	if (!c->loopback)
	{
		char		why[300];

		if (!cm_named_conmgr(d, why, sizeof(why)))
		{
			if (why[0])
				return dest_failed(c, why);
			freeaddrinfo(c->ai);
			c->ai = c->ai_cur = NULL;
			remember_as(d, 0, true);
			return CMS_POSTMASTER;
		}
	}
	return connect_next(c);
}

/* The non-blocking connect finished (the socket became writable). */
cm_step
cm_probe_connected(cm_conn *c)
{
	int			err = 0;
	socklen_t	len = sizeof(err);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err == EINPROGRESS || err == EALREADY)
		return CMS_MORE;
	if (err != 0)
	{
		close(c->fd);
		c->fd = -1;
		if (c->ai_cur->ai_next)
		{
			const cm_dest *d = &c->dests[c->di];

			cm_errorf(c, "connection to server at \"%s\" (%s), port %s failed: %s\n",
					  d->host[0] ? d->host : d->hostaddr, c->cur_addr, d->port,
					  strerror(err));
			c->ai_cur = c->ai_cur->ai_next;
			return connect_next(c);
		}
		errno = err;
		{
			char		why[256];

			snprintf(why, sizeof(why), "%s\n\tIs the server running on that host and accepting TCP/IP connections?",
					 strerror(err));
			return dest_failed(c, why);
		}
	}
	return send_probe(c) == CMS_MORE ? CMS_PROBE_SENT : CMS_FAILED;
}

/* Read what the socket has; false on end of file or error (errno). */
static int
fill(cm_conn *c)
{
	for (;;)
	{
		ssize_t		n;

		if (c->rlen == sizeof(c->rbuf))
			return 1;
		n = recv(c->fd, c->rbuf + c->rlen, sizeof(c->rbuf) - c->rlen, 0);
		if (n > 0)
		{
			c->rlen += (size_t) n;
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
consume(cm_conn *c, size_t n)
{
	memmove(c->rbuf, c->rbuf + n, c->rlen - n);
	c->rlen -= n;
}

/* The RESOLVE frame for this connection; its length, or -1. */
static int
encode_resolve(cm_conn *c, int version, uint8_t *buf, size_t len)
{
	const char *app = cm_opt(c, "application_name");

	if (app == NULL)
		app = cm_opt(c, "fallback_application_name");
	if (app == NULL)
		app = getenv("PGAPPNAME");
	return cmproto_encode_resolve(buf, len, version, cm_pass_target(c), (uint32_t) getpid(), app);
}

static cm_step
send_resolve(cm_conn *c, int version)
{
	uint8_t		buf[CMPROTO_MAX_MSG];
	int			n = encode_resolve(c, version, buf, sizeof(buf));

	if (n < 0 || !send_all(c->fd, buf, (size_t) n))
		return dest_failed(c, "could not send the request to conmgr");
	return CMS_CONMGR;
}

/* The destination is a postmaster: hang up, remember it as one. */
static cm_step
postmaster_found(cm_conn *c)
{
	cm_close_fd(c);
	remember(&c->dests[c->di], 0);
	return CMS_POSTMASTER;
}

/*
 * Read the answer to the probe.  CMS_POSTMASTER: the socket is closed and
 * the destination remembered.  CMS_CONMGR: conmgr answered, RESOLVE is
 * sent (now, or with the probe).  CMS_REPROBE: the RESOLVE sent with the
 * probe has a version this conmgr does not speak; the socket is closed.
 */
cm_step
cm_probe_read(cm_conn *c)
{
	int			rc = fill(c);

	if (rc < 0)
		return dest_failed(c, strerror(errno));
	if (c->rlen == 0)
		return rc == 0 ? dest_failed(c, "server closed the connection unexpectedly") : CMS_MORE;
	if (!c->got_error_response)
	{
		cmproto_pg_error err;
		size_t		elen;
		int			st;

		if (c->rbuf[0] == 'G' || c->rbuf[0] == 'N')
			return postmaster_found(c);
		if (c->rbuf[0] != 'E')
			return dest_failed(c, "the server is neither PostgreSQL nor conmgr");
		st = cmproto_pg_decode_error(c->rbuf, c->rlen, &elen, &err);
		if (st == CMPROTO_INCOMPLETE && rc > 0)
			return CMS_MORE;
		if (st != CMPROTO_OK)
			return postmaster_found(c); /* a server too old for the request */
		consume(c, elen);
		c->got_error_response = true;
	}
	{
		size_t		flen;
		cmproto_msg m;
		int			st = cmproto_frame(c->rbuf, c->rlen, &flen);
		int			version;

		if (st == CMPROTO_INCOMPLETE)
		{
			if (rc > 0)
				return CMS_MORE;
			/* an ErrorResponse and nothing more: an old postmaster */
			return postmaster_found(c);
		}
		if (st == CMPROTO_OK)
			st = cmproto_decode(c->rbuf, flen, CMPROTO_PEER_LISTENER, &m);
		if (st != CMPROTO_OK || m.type != CMPROTO_HELLO)
			return dest_failed(c, "conmgr sent an invalid greeting");
		if (c->loopback)
		{
			char		why[1024];

			if (!cm_trusted_server(c->fd, why, sizeof(why)))
			{
				remember(&c->dests[c->di], -1);
				return dest_failed(c, why);
			}
		}
		consume(c, flen);
		c->conmgr_met = true;
		version = cmproto_negotiate(CMPROTO_MIN_VERSION, CMPROTO_VERSION,
									m.u.hello.min_version, m.u.hello.max_version);
		if (version < 0)
		{
			remember(&c->dests[c->di], -1);
			return dest_failed(c, "conmgr speaks no protocol version this library knows");
		}
		if (c->pipelined)
		{
			if (c->pipelined >= m.u.hello.min_version && c->pipelined <= m.u.hello.max_version)
				return CMS_CONMGR;
			/* restarted with other versions since we met it */
			remember(&c->dests[c->di], -1);
			cm_close_fd(c);
			return CMS_REPROBE;
		}
		if (!c->classifying)
			remember(&c->dests[c->di], version);
		return send_resolve(c, version);
	}
}

/* Queue one candidate as a real connection attempt. */
static void
queue_candidate(cm_conn *c, const cmproto_msg *m)
{
	cm_attempt *a;

	if (c->nattempts >= (int) (sizeof(c->attempts) / sizeof(c->attempts[0])))
		return;
	a = &c->attempts[c->nattempts++];
	memset(a, 0, sizeof(*a));
	a->first_dest = a->last_dest = c->di;
	a->instance = m->u.candidate.instance;
	a->numeric = m->u.candidate.addr_kind == CMPROTO_ADDR_NUMERIC;
	snprintf(a->host, sizeof(a->host), "%s", m->u.candidate.host);
	snprintf(a->port, sizeof(a->port), "%u", m->u.candidate.port);

	/*
	 * libpq checks the attributes it can check from the server's startup
	 * reports (in_hot_standby, default_transaction_read_only) at no cost,
	 * which catches a role that changed since conmgr last heard; the
	 * "prefer" orders are conmgr's to decide.
	 */
	switch (cm_pass_target(c))
	{
		case CMPROTO_TARGET_PREFER_STANDBY:
		case CMPROTO_TARGET_PREFER_PRIMARY:
			a->tsa = "any";
			break;
		default:
			a->tsa = cmproto_target_name(cm_pass_target(c));
	}
}

/* Read CANDIDATE frames up to CANDIDATES_END. */
cm_step
cm_resolve_read(cm_conn *c)
{
	int			rc = fill(c);

	if (rc < 0)
		return dest_failed(c, strerror(errno));
	for (;;)
	{
		size_t		flen;
		cmproto_msg m;
		int			st = cmproto_frame(c->rbuf, c->rlen, &flen);

		if (st == CMPROTO_INCOMPLETE)
			return rc > 0 ? CMS_MORE : dest_failed(c, "conmgr closed the connection unexpectedly");
		if (st == CMPROTO_OK)
			st = cmproto_decode(c->rbuf, flen, CMPROTO_PEER_LISTENER, &m);
		if (st != CMPROTO_OK)
		{
			char		why[200];

			snprintf(why, sizeof(why), "invalid message from conmgr: %s", cmproto_strerror(st));
			return dest_failed(c, why);
		}
		consume(c, flen);
		switch (m.type)
		{
			case CMPROTO_CANDIDATE:
				{
					char		why[400];

					if (!cm_candidate_valid(&m, why, sizeof(why)))
						return dest_failed(c, why);
					queue_candidate(c, &m);
					break;
				}
			case CMPROTO_CANDIDATES_END:
				if (m.u.candidates_end.count != c->nattempts)
					return dest_failed(c, "conmgr sent an inconsistent candidate list");
				if (c->nattempts == 0)
				{
					char		why[200];

					snprintf(why, sizeof(why), "conmgr knows no instance that is up with target_session_attrs=%s",
							 cmproto_target_name(cm_pass_target(c)));
					return dest_failed(c, why);
				}
				return CMS_CANDIDATES;
			case CMPROTO_ERROR:
				{
					char		why[CMPROTO_ERRMSG_MAX + 32];

					snprintf(why, sizeof(why), "conmgr: %s", m.u.error.message);
					return dest_failed(c, why);
				}
			default:
				return dest_failed(c, "unexpected message from conmgr");
		}
	}
}

/* Tell conmgr which instance the application reached. */
bool
cm_send_attached(cm_conn *c, int instance, int backend_pid)
{
	cmproto_msg m;
	uint8_t		buf[CMPROTO_MAX_MSG];
	int			n;

	memset(&m, 0, sizeof(m));
	m.type = CMPROTO_ATTACHED;
	m.u.attached.instance = (uint16_t) instance;
	m.u.attached.backend_pid = (uint32_t) backend_pid;
	n = cmproto_encode(&m, buf, sizeof(buf));
	return n > 0 && send_all(c->fd, buf, (size_t) n);
}
