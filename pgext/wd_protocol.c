/*-------------------------------------------------------------------------
 *
 * wd_protocol.c
 *	  What a conmgr sends the watchdog worker, and what it is answered.
 *
 * Per session (docs/protocol.md section 3): HB_HELLO, then HB_CHALLENGE /
 * HB_AUTH when watchdog.auth_key_file is set, then HB_WELCOME, which
 * registers the session; then HB_BEAT every interval each way, and HB_ATTRS
 * at once when the instance's attributes or (protocol version 2) its
 * timeline change (wd_attrs.c).  This file reads a session's socket,
 * decodes its frames and handles each in the session's state, and loads
 * the shared key at start.  Anything out of place closes that session and
 * is logged; nothing a peer sends can make the worker exit.
 *
 * Who may register (docs/watchdog.md, "Who may register"): a connection
 * from outside watchdog.allowed_addresses, when that is set, is refused as
 * soon as it is accepted (wd_accept.c); an HB_HELLO asking for an interval
 * or timeout over CMPROTO_HB_INTERVAL_MAX / CMPROTO_HB_TIMEOUT_MAX is
 * refused; and an address with watchdog.max_sessions_per_address
 * registered sessions gets no more (checked at HB_HELLO and again at
 * registration, since others may have registered during a key exchange).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/xlog.h"

#include "cmlog.h"
#include "cmproto.h"
#include "cmsha256.h"
#include "watchdog.h"
#include "wd_worker_int.h"

#define WD_KEY_MIN			16
#define WD_KEY_MAX			1024

static uint8 auth_key[WD_KEY_MAX];
size_t		wd_auth_key_len;	/* 0: no key, anyone may register */

/* ---- the shared key ---- */

/*
 * Read watchdog.auth_key_file, when it is set, at start.  A key file the
 * worker cannot use (missing, not a regular file, open to group or others,
 * of the wrong length) is an ERROR, so that the worker never runs without
 * the key it was told to require.
 */
void
wd_load_key(void)
{
	int			fd;
	struct stat st;
	ssize_t		n;

	wd_auth_key_len = 0;
	if (wd_auth_key_file == NULL || wd_auth_key_file[0] == '\0')
		return;

	fd = open(wd_auth_key_file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("watchdog: could not open key file \"%s\": %m",
						wd_auth_key_file)));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
	{
		close(fd);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("watchdog: key file \"%s\" is not a regular file",
						wd_auth_key_file)));
	}
	if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
	{
		close(fd);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("watchdog: key file \"%s\" is accessible to group or others",
						wd_auth_key_file),
				 errhint("chmod 0600 the file.")));
	}
	n = read(fd, auth_key, sizeof(auth_key));
	close(fd);
	if (n < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("watchdog: could not read key file \"%s\": %m",
						wd_auth_key_file)));
	while (n > 0 && (auth_key[n - 1] == '\n' || auth_key[n - 1] == '\r' ||
					 auth_key[n - 1] == ' ' || auth_key[n - 1] == '\t'))
		n--;
	if (n < WD_KEY_MIN || (size_t) n >= sizeof(auth_key))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("watchdog: key in \"%s\" must be %d to %d bytes long",
						wd_auth_key_file, WD_KEY_MIN, WD_KEY_MAX - 1)));
	wd_auth_key_len = n;
}

/* ---- the handshake ---- */

/* One kind for all failures: logged once a minute per source address. */
static void
wd_auth_failed(WdSession *s, const char *why)
{
	uint64		suppressed;

	if (wd_log_allowed(&wd_authlog, &s->peer, 0, wd_mono_now(), &suppressed))
		ereport(LOG,
				(errmsg("watchdog: authentication of conmgr at %s failed: %s",
						wd_peer_str(s), why),
				 suppressed > 0 ?
				 errdetail("%llu similar failures from this address were not logged.",
						   (unsigned long long) suppressed) : 0));
	wd_send_error(s, CMPROTO_ERR_AUTH, "authentication failed");
	wd_close(s);
}

/*
 * Refuse the session if its address has watchdog.max_sessions_per_address
 * registered already; true if it was refused (and closed).
 */
static bool
wd_refuse_over_host_cap(WdSession *s)
{
	if (wd_max_sessions_per_address == 0 ||
		wd_host_sessions(&s->peer, s) < wd_max_sessions_per_address)
		return false;
	wd_log_noise(&s->peer, "too many sessions from this address",
				 "watchdog: refusing conmgr at %s: %d heartbeat sessions from this address are registered (watchdog.max_sessions_per_address)",
				 wd_peer_str(s), wd_max_sessions_per_address);
	wd_send_error(s, CMPROTO_ERR_TOO_MANY,
				  "too many heartbeat sessions from this address");
	wd_close(s);
	return true;
}

/* Register the session and send HB_WELCOME. */
static void
wd_welcome(WdSession *s, bool authenticated)
{
	WdMono		now = wd_mono_now();
	cmproto_msg msg;

	/* Sessions from this address may have registered since its HB_HELLO. */
	if (wd_refuse_over_host_cap(s))
		return;
	s->slot = wd_register(s, authenticated);
	if (s->slot < 0)
	{
		/* Cannot happen: nregistered was checked against the slots. */
		wd_send_error(s, CMPROTO_ERR_TOO_MANY, "too many heartbeat sessions");
		wd_close(s);
		return;
	}
	wd_set_state(s, WD_SESS_UP);
	s->last_received = now;
	s->next_send = now + (WdMono) s->interval * USECS_PER_SEC;
	wd_timer_arm(s);

	memset(&msg, 0, sizeof(msg));
	msg.type = CMPROTO_HB_WELCOME;
	msg.u.hb_welcome.version = s->version;
	msg.u.hb_welcome.flags = authenticated ? CMPROTO_HB_AUTHENTICATED : 0;
	msg.u.hb_welcome.attrs = wd_session_attrs(s, wd_cur_attrs);
	msg.u.hb_welcome.server_version_num = PG_VERSION_NUM;
	msg.u.hb_welcome.system_identifier = GetSystemIdentifier();
	if (s->version >= 2)
		msg.u.hb_welcome.timeline = wd_cur_timeline;
	if (!wd_send(s, &msg) || !wd_log_registrations)
		return;
	wd_log_limited(&wd_sessionlog, &s->peer, "registered",
				   "watchdog: conmgr at %s registered (heartbeat_interval %d s, heartbeat_timeout %d s%s)",
				   wd_peer_str(s), s->interval, s->timeout,
				   authenticated ? ", authenticated" : "");
}

static void
wd_handle_hello(WdSession *s, const cmproto_msg *msg)
{
	int			version;

	version = cmproto_negotiate(msg->u.hb_hello.min_version,
								msg->u.hb_hello.max_version,
								CMPROTO_MIN_VERSION, CMPROTO_VERSION);
	if (version == 0)
	{
		wd_log_noise(&s->peer, "version",
					 "watchdog: conmgr at %s speaks protocol versions %u to %u, this watchdog %d to %d",
					 wd_peer_str(s), msg->u.hb_hello.min_version,
					 msg->u.hb_hello.max_version,
					 CMPROTO_MIN_VERSION, CMPROTO_VERSION);
		wd_send_error(s, CMPROTO_ERR_VERSION, "unsupported protocol version");
		wd_close(s);
		return;
	}
	if (msg->u.hb_hello.interval > CMPROTO_HB_INTERVAL_MAX ||
		msg->u.hb_hello.timeout > CMPROTO_HB_TIMEOUT_MAX)
	{
		char		why[128];

		if (msg->u.hb_hello.interval > CMPROTO_HB_INTERVAL_MAX)
			snprintf(why, sizeof(why),
					 "heartbeat_interval %u s is out of range (1 to %d s)",
					 msg->u.hb_hello.interval, CMPROTO_HB_INTERVAL_MAX);
		else
			snprintf(why, sizeof(why),
					 "heartbeat_timeout %u s is out of range (1 to %d s)",
					 msg->u.hb_hello.timeout, CMPROTO_HB_TIMEOUT_MAX);
		wd_send_error(s, CMPROTO_ERR_PROTOCOL, why);
		if (s->state != WD_SESS_FREE)
			wd_lose_kind(s, why, "heartbeat timings out of range");
		return;
	}
	if (wd_nregistered >= wd_shared->max_sessions)
	{
		/* Before authentication: anyone can cause this line. */
		wd_log_noise(&s->peer, "too many sessions",
					 "watchdog: refusing conmgr at %s: too many heartbeat sessions (watchdog.max_heartbeat_connections is %d)",
					 wd_peer_str(s), wd_shared->max_sessions);
		wd_send_error(s, CMPROTO_ERR_TOO_MANY, "too many heartbeat sessions");
		wd_close(s);
		return;
	}
	if (wd_refuse_over_host_cap(s))
		return;

	s->version = (uint16) version;
	s->interval = (int32) msg->u.hb_hello.interval;
	s->timeout = (int32) msg->u.hb_hello.timeout;

	if (wd_auth_key_len > 0)
	{
		cmproto_msg reply;

		/* Freed when the session leaves its handshake (wd_set_state()). */
		s->nonces = wd_session_alloc(s, sizeof(WdNonces));
		if (s->nonces == NULL)
			return;
		memcpy(s->nonces->conmgr, msg->u.hb_hello.nonce, CMPROTO_NONCE_LEN);
		if (!pg_strong_random(s->nonces->watchdog, CMPROTO_NONCE_LEN))
		{
			ereport(LOG,
					(errmsg("watchdog: could not generate a random nonce")));
			wd_send_error(s, CMPROTO_ERR_INTERNAL, "internal error");
			wd_close(s);
			return;
		}
		memset(&reply, 0, sizeof(reply));
		reply.type = CMPROTO_HB_CHALLENGE;
		reply.u.hb_challenge.version = s->version;
		memcpy(reply.u.hb_challenge.nonce, s->nonces->watchdog, CMPROTO_NONCE_LEN);
		cmproto_hb_proof(auth_key, wd_auth_key_len, CMPROTO_AUTH_LABEL_WATCHDOG,
						 s->nonces->conmgr, s->nonces->watchdog,
						 reply.u.hb_challenge.proof);
		wd_set_state(s, WD_SESS_AUTH);
		(void) wd_send(s, &reply);
		return;
	}
	wd_welcome(s, false);
}

static void
wd_handle_auth(WdSession *s, const cmproto_msg *msg)
{
	uint8		expected[CMPROTO_PROOF_LEN];

	cmproto_hb_proof(auth_key, wd_auth_key_len, CMPROTO_AUTH_LABEL_CONMGR,
					 s->nonces->conmgr, s->nonces->watchdog, expected);
	if (!cmsha256_equal(expected, msg->u.hb_auth.proof, CMPROTO_PROOF_LEN))
	{
		wd_auth_failed(s, "wrong key");
		return;
	}
	wd_welcome(s, true);
}

/* ---- frames ---- */

/* One decoded frame; returns false when the session was closed. */
static bool
wd_handle(WdSession *s, const cmproto_msg *msg)
{
	/* A peer's text goes into the log escaped: one record, one line. */
	char		peer_text[4 * CMPROTO_ERRMSG_MAX + 1];
	char		why[sizeof(peer_text) + 64];

	if (msg->type == CMPROTO_ERROR)
	{
		cmlog_escape(peer_text, sizeof(peer_text), msg->u.error.message);
		snprintf(why, sizeof(why), "conmgr reported: %s: %s",
				 cmproto_error_code_name(msg->u.error.code), peer_text);
		if (s->state == WD_SESS_AUTH && msg->u.error.code == CMPROTO_ERR_AUTH)
		{
			wd_auth_failed(s, "conmgr rejected the watchdog's proof or has no key");
			return false;
		}
		wd_lose_kind(s, why, "conmgr reported an error");
		return false;
	}

	switch (s->state)
	{
		case WD_SESS_HELLO:
			if (msg->type != CMPROTO_HB_HELLO)
				break;
			wd_handle_hello(s, msg);
			return s->state != WD_SESS_FREE;
		case WD_SESS_AUTH:
			if (msg->type != CMPROTO_HB_AUTH)
				break;
			wd_handle_auth(s, msg);
			return s->state != WD_SESS_FREE;
		case WD_SESS_UP:
			if (msg->type != CMPROTO_HB_BEAT)
				break;
			wd_update_stats(s, true, false);
			return true;
		case WD_SESS_FREE:
			elog(ERROR, "watchdog: frame for a free session");
	}
	snprintf(why, sizeof(why), "protocol violation: unexpected %s",
			 cmproto_type_name(msg->type));
	wd_send_error(s, CMPROTO_ERR_PROTOCOL, why);
	if (s->state != WD_SESS_FREE)
		wd_lose(s, why);
	return false;
}

/*
 * Where wd_read() reads a session: what it kept of a partial frame, then
 * what recv() brings, at most one frame's worth in all, as a buffer of its
 * own per session would hold.  One session is read at a time: nothing
 * called from wd_read() reads another.
 */
static uint8 wd_inbuf[CMPROTO_MAX_MSG];

/*
 * Decode and handle every complete frame of the "len" bytes in wd_inbuf;
 * returns the bytes left, the start of a frame moved to the buffer's
 * start, or 0 when the session was closed.
 */
static size_t
wd_process_input(WdSession *s, size_t len)
{
	size_t		off = 0;

	while (s->state != WD_SESS_FREE)
	{
		size_t		msglen;
		cmproto_msg msg;
		int			rc;
		char		why[128];

		rc = cmproto_frame(wd_inbuf + off, len - off, &msglen);
		if (rc == CMPROTO_INCOMPLETE)
		{
			memmove(wd_inbuf, wd_inbuf + off, len - off);
			return len - off;
		}
		if (rc == CMPROTO_OK)
			rc = cmproto_decode(wd_inbuf + off, msglen, CMPROTO_PEER_CONMGR, &msg);
		if (rc < 0)
		{
			snprintf(why, sizeof(why), "protocol violation: %s",
					 cmproto_strerror(rc));
			wd_send_error(s, CMPROTO_ERR_PROTOCOL, why);
			if (s->state != WD_SESS_FREE)
				wd_lose(s, why);
			return 0;
		}
		off += msglen;
		if (!wd_handle(s, &msg))
			return 0;
	}
	return 0;
}

/*
 * Read what the session's socket holds and handle its frames; "to_end":
 * its peer has closed or the socket has failed, so read on until that is
 * seen.  "now" is when this wake-up or timer pass began, taken as the time
 * the frames were received: they were there by then, or came while this
 * process was busy with others, a few milliseconds at most, which only
 * makes a deadline that much earlier.
 */
void
wd_read(WdSession *s, WdMono now, bool to_end)
{
	size_t		len = s->inlen;
	bool		drained = false;
	char		why[128];

	if (len > 0)
	{
		memcpy(wd_inbuf, s->partial, len);
		pfree(s->partial);
		s->partial = NULL;
		s->inlen = 0;
	}

	/*
	 * A few reads at most, so one busy peer cannot starve the others; a read
	 * that does not fill the buffer has taken all there was, and the next
	 * frame, or the peer's end, is a new edge of the socket
	 * (wd_session_wait()).
	 */
	for (int i = 0; i < 4 && s->state != WD_SESS_FREE; i++)
	{
		size_t		room = sizeof(wd_inbuf) - len;
		ssize_t		n = recv(s->fd, wd_inbuf + len, room, 0);

		if (n < 0)
		{
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
			{
				drained = true;
				break;
			}
			wd_lose(s, strerror(errno));
			return;
		}
		if (n == 0)
		{
			wd_lose(s, "connection closed by peer");
			return;
		}
		len += n;
		s->last_received = now;
		len = wd_process_input(s, len);
		if ((size_t) n < room && !to_end)
		{
			drained = true;
			break;
		}
	}
	if (s->state == WD_SESS_FREE)
		return;

	/* Stopped early: the socket is to be reported again while it has more. */
	if (!drained && !wd_session_wait(s, EPOLL_CTL_MOD, s->want_write))
	{
		snprintf(why, sizeof(why), "could not change its wait events: %m");
		wd_lose(s, why);
		return;
	}

	/* Keep the start of a frame until the rest comes. */
	if (len > 0)
	{
		s->partial = wd_session_alloc(s, len);
		if (s->partial == NULL)
			return;
		memcpy(s->partial, wd_inbuf, len);
		s->inlen = len;
	}
}
