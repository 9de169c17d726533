/*-------------------------------------------------------------------------
 *
 * trust.c
 *	  Which destinations may be conmgr, whether the conmgr reached is the
 *	  one the operator runs, and whether a candidate it names is a host.
 *
 * What conmgr answers decides where the application's password and TLS
 * settings go next, so the library follows only a conmgr it has reason to
 * trust (docs/libpq-cm.md, "Which conmgr is trusted"):
 *
 *   - Only loopback destinations (127.0.0.0/8, ::1, names whose every
 *     address is one of those) are probed, plus the addresses the
 *     environment variable PGCMADDRS names.  Anything else is a server and
 *     goes to libpq as it would without this library.
 *
 *   - On loopback, any local user can listen on conmgr's port while conmgr
 *     is down.  The server end of the connection we made is in this
 *     host's (this network namespace's) socket table, with the user that
 *     created it: the kernel reports it through NETLINK_SOCK_DIAG.  We
 *     follow the conmgr only when that user is root, this process's own
 *     user, or conmgr's owner (PGCMOWNER: a user name, a uid or a path
 *     whose owner is meant; by default the user "conmgr", who runs the
 *     systemd unit).
 *
 *   - A candidate is a host name or, for addr_kind "numeric", an address;
 *     nothing libpq would read as a host list or a socket directory.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/tcp.h>

#include "cm_int.h"
#include "cmhost.h"

#define CM_ADDRS_ENV	"PGCMADDRS"
#define CM_OWNER_ENV	"PGCMOWNER"
#define CM_OWNER_DEFAULT "conmgr"	/* User= of
									 * contrib/systemd/conmgr@.service */

/* ---- loopback, and the addresses the application names ---- */

static bool
is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
	{
		const struct sockaddr_in *in = (const struct sockaddr_in *) sa;

		return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	}
	if (sa->sa_family == AF_INET6)
	{
		const struct in6_addr *a = &((const struct sockaddr_in6 *) sa)->sin6_addr;

		return IN6_IS_ADDR_LOOPBACK(a) ||
			(IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return false;
}

/* Every address of the list is a loopback address (and there is one). */
bool
cm_all_loopback(const struct addrinfo *ai)
{
	if (ai == NULL)
		return false;
	for (; ai; ai = ai->ai_next)
		if (!is_loopback(ai->ai_addr))
			return false;
	return true;
}

/*
 * Does PGCMADDRS name destination d?  Its entries, separated by commas,
 * are HOST, HOST:PORT, [IPV6] or [IPV6]:PORT; HOST is compared with the
 * host or hostaddr the application gave, without case, PORT with its
 * port.  A malformed entry is an error (false, why set): the destination
 * is then neither probed nor handed to libpq.
 */
bool
cm_named_conmgr(const cm_dest *d, char *why, size_t whylen)
{
	const char *list = getenv(CM_ADDRS_ENV);
	const char *p = list;

	if (why)
		why[0] = '\0';
	if (list == NULL)
		return false;
	while (*p)
	{
		const char *e = strchr(p, ',');
		size_t		len = e ? (size_t) (e - p) : strlen(p);
		char		entry[CMPROTO_HOST_MAX + 16];
		char	   *host = entry,
				   *port = NULL,
				   *colon;

		while (len > 0 && (*p == ' ' || *p == '\t'))
			p++, len--;
		while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
			len--;
		if (len == 0 || len >= sizeof(entry))
			goto bad;
		memcpy(entry, p, len);
		entry[len] = '\0';
		if (entry[0] == '[')
		{
			char	   *close = strchr(entry, ']');

			if (close == NULL || (close[1] != '\0' && close[1] != ':'))
				goto bad;
			host = entry + 1;
			*close = '\0';
			if (close[1] == ':')
				port = close + 2;
		}
		else if ((colon = strchr(entry, ':')) != NULL && strchr(colon + 1, ':') == NULL)
		{
			*colon = '\0';
			port = colon + 1;
		}
		if (!cmhost_is_name(host) && !cmhost_is_numeric(host))
			goto bad;
		if (port != NULL)
		{
			char	   *end;
			long		n = strtol(port, &end, 10);

			if (port[0] < '0' || port[0] > '9' || *end != '\0' || n < 1 || n > 65535)
				goto bad;
			if (n != strtol(d->port, NULL, 10))
				goto next;
		}
		if (strcasecmp(host, d->host) == 0 ||
			(d->hostaddr != NULL && strcasecmp(host, d->hostaddr) == 0))
			return true;
next:
		if (e == NULL)
			break;
		p = e + 1;
		continue;
bad:
		if (why)
			snprintf(why, whylen, "invalid entry \"%.*s\" in %s: HOST, HOST:PORT, [IPV6] or [IPV6]:PORT expected",
					 (int) (len > 100 ? 100 : len), p, CM_ADDRS_ENV);
		return false;
	}
	return false;
}

/* ---- who serves the socket we reached ---- */

/* The inet_diag request for the socket that req's id names. */
typedef struct diag_request
{
	struct nlmsghdr nlh;
	struct inet_diag_req_v2 r;
} diag_request;

/*
 * Send req to the kernel (NETLINK_SOCK_DIAG) and read the owner, state and
 * inode of the one socket it names from the answer.
 */
static bool
diag_exchange(const diag_request *req, uid_t *uid, int *state, unsigned *inode,
			  char *why, size_t whylen)
{
	struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
	union
	{
		struct nlmsghdr nlh;
		char		buf[8192];
	}			resp;
	ssize_t		n;
	int			nl;

	nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (nl < 0)
	{
		snprintf(why, whylen, "could not open a NETLINK_SOCK_DIAG socket: %s", strerror(errno));
		return false;
	}
	if (sendto(nl, req, sizeof(*req), 0, (struct sockaddr *) &kernel, sizeof(kernel)) < 0)
	{
		snprintf(why, whylen, "could not ask the kernel about the socket: %s", strerror(errno));
		close(nl);
		return false;
	}
	do
		n = recv(nl, &resp, sizeof(resp), 0);
	while (n < 0 && errno == EINTR);
	close(nl);
	if (n < 0)
	{
		snprintf(why, whylen, "could not read the kernel's answer about the socket: %s", strerror(errno));
		return false;
	}
	if (!NLMSG_OK(&resp.nlh, (size_t) n))
	{
		snprintf(why, whylen, "the kernel's answer about the socket is truncated");
		return false;
	}
	if (resp.nlh.nlmsg_type == NLMSG_ERROR)
	{
		const struct nlmsgerr *e = NLMSG_DATA(&resp.nlh);

		snprintf(why, whylen, "the kernel did not find the server's socket: %s",
				 strerror(e->error < 0 ? -e->error : e->error));
		return false;
	}
	if (resp.nlh.nlmsg_type != SOCK_DIAG_BY_FAMILY ||
		resp.nlh.nlmsg_len < NLMSG_LENGTH(sizeof(struct inet_diag_msg)))
	{
		snprintf(why, whylen, "unexpected answer from the kernel about the socket");
		return false;
	}
	{
		const struct inet_diag_msg *m = NLMSG_DATA(&resp.nlh);

		*uid = m->idiag_uid;
		*state = m->idiag_state;
		*inode = m->idiag_inode;
	}
	return true;
}

/*
 * The kernel's view of the server end of connected TCP socket fd: its
 * owner and state.  An exact lookup (NETLINK_SOCK_DIAG, inet_diag) of the
 * socket whose local end is our peer and whose remote end is us.
 */
static bool
server_end(int fd, uid_t *uid, int *state, unsigned *inode, char *why, size_t whylen)
{
	struct sockaddr_storage local,
				peer;
	socklen_t	llen = sizeof(local),
				plen = sizeof(peer);
	diag_request req;

	if (getsockname(fd, (struct sockaddr *) &local, &llen) < 0 ||
		getpeername(fd, (struct sockaddr *) &peer, &plen) < 0)
	{
		snprintf(why, whylen, "could not read the connection's addresses: %s", strerror(errno));
		return false;
	}
	memset(&req, 0, sizeof(req));
	req.nlh.nlmsg_len = sizeof(req);
	req.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	req.nlh.nlmsg_flags = NLM_F_REQUEST;
	req.r.sdiag_family = peer.ss_family;
	req.r.sdiag_protocol = IPPROTO_TCP;
	req.r.idiag_states = ~0U;
	req.r.id.idiag_cookie[0] = req.r.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
	if (peer.ss_family == AF_INET)
	{
		const struct sockaddr_in *p = (const struct sockaddr_in *) &peer;
		const struct sockaddr_in *l = (const struct sockaddr_in *) &local;

		req.r.id.idiag_sport = p->sin_port;
		req.r.id.idiag_dport = l->sin_port;
		memcpy(req.r.id.idiag_src, &p->sin_addr, 4);
		memcpy(req.r.id.idiag_dst, &l->sin_addr, 4);
	}
	else
	{
		const struct sockaddr_in6 *p = (const struct sockaddr_in6 *) &peer;
		const struct sockaddr_in6 *l = (const struct sockaddr_in6 *) &local;

		req.r.id.idiag_sport = p->sin6_port;
		req.r.id.idiag_dport = l->sin6_port;
		memcpy(req.r.id.idiag_src, &p->sin6_addr, 16);
		memcpy(req.r.id.idiag_dst, &l->sin6_addr, 16);
	}
	return diag_exchange(&req, uid, state, inode, why, whylen);
}

/* "user "name" (uid N)", or "uid N" for a uid without a name. */
static void
describe_uid(uid_t uid, char *buf, size_t len)
{
	struct passwd pw,
			   *res = NULL;
	char		pwbuf[4096];

	if (getpwuid_r(uid, &pw, pwbuf, sizeof(pwbuf), &res) == 0 && res != NULL)
		snprintf(buf, len, "user \"%s\" (uid %u)", pw.pw_name, (unsigned) uid);
	else
		snprintf(buf, len, "uid %u", (unsigned) uid);
}

/*
 * The uid of the user last looked up by name, for the process: where
 * conmgr runs as its own user, each connection of every other user would
 * otherwise read the user database (tens of microseconds).  Only users
 * found are kept, so one created later is found then.
 */
static pthread_mutex_t owner_lock = PTHREAD_MUTEX_INITIALIZER;
static char owner_name[64];
static uid_t owner_uid;

static bool
owner_cached(const char *name, uid_t *uid)
{
	bool		hit;

	pthread_mutex_lock(&owner_lock);
	hit = owner_name[0] != '\0' && strcmp(owner_name, name) == 0;
	if (hit)
		*uid = owner_uid;
	pthread_mutex_unlock(&owner_lock);
	return hit;
}

static void
owner_cache(const char *name, uid_t uid)
{
	if (strlen(name) >= sizeof(owner_name))
		return;
	pthread_mutex_lock(&owner_lock);
	strcpy(owner_name, name);
	owner_uid = uid;
	pthread_mutex_unlock(&owner_lock);
}

/*
 * conmgr's owner as PGCMOWNER names it (a uid, an absolute path whose
 * owner is meant, or a user name), or by default the user "conmgr".
 * *found false: the default user does not exist.  False with why set
 * when PGCMOWNER names nothing that exists.
 */
static bool
expected_owner(uid_t *uid, bool *found, char *what, size_t whatlen,
			   char *why, size_t whylen)
{
	const char *v = getenv(CM_OWNER_ENV);
	bool		dflt = v == NULL || v[0] == '\0';
	const char *name = dflt ? CM_OWNER_DEFAULT : v;
	struct passwd pw,
			   *res = NULL;
	char		pwbuf[4096];
	char	   *end;
	unsigned long n;

	*found = false;
	if (!dflt && v[0] >= '0' && v[0] <= '9')
	{
		errno = 0;
		n = strtoul(v, &end, 10);
		if (*end != '\0' || errno != 0 || n != (uid_t) n)
		{
			snprintf(why, whylen, "invalid %s \"%.100s\": a user name, a uid or an absolute path expected",
					 CM_OWNER_ENV, v);
			return false;
		}
		*uid = (uid_t) n;
		*found = true;
		snprintf(what, whatlen, "uid %lu (%s)", n, CM_OWNER_ENV);
		return true;
	}
	if (!dflt && v[0] == '/')
	{
		struct stat st;

		if (stat(v, &st) < 0)
		{
			snprintf(why, whylen, "%s names \"%.200s\": %s", CM_OWNER_ENV, v, strerror(errno));
			return false;
		}
		*uid = st.st_uid;
		*found = true;
		snprintf(what, whatlen, "uid %u, the owner of %.200s (%s)", (unsigned) st.st_uid, v, CM_OWNER_ENV);
		return true;
	}
	if (!owner_cached(name, uid))
	{
		if (getpwnam_r(name, &pw, pwbuf, sizeof(pwbuf), &res) != 0 || res == NULL)
		{
			if (dflt)
				return true;
			snprintf(why, whylen, "%s names user \"%.100s\", who does not exist", CM_OWNER_ENV, v);
			return false;
		}
		*uid = pw.pw_uid;
		owner_cache(name, pw.pw_uid);
	}
	*found = true;
	snprintf(what, whatlen, "user \"%.100s\" (uid %u, %s)", name, (unsigned) *uid,
			 dflt ? "the default of " CM_OWNER_ENV : CM_OWNER_ENV);
	return true;
}

/*
 * Is the conmgr on connected socket fd (a loopback destination) run by
 * someone we trust?  False with why set otherwise.  Called once the peer
 * has sent its greeting, so its end is a full socket: a server that
 * closed its end since is refused, as the kernel no longer says whose it
 * was.
 */
bool
cm_trusted_server(int fd, char *why, size_t whylen)
{
	uid_t		uid = 0,
				owner = 0;
	int			state = 0;
	unsigned	inode = 0;
	bool		have_owner;
	char		expected[400];
	char		found[200];
	char		diag[300];

	if (!server_end(fd, &uid, &state, &inode, diag, sizeof(diag)))
	{
		snprintf(why, whylen, "could not check who runs the conmgr on this port: %s", diag);
		return false;
	}
	if (state != TCP_ESTABLISHED || inode == 0)
	{
		snprintf(why, whylen, "could not check who runs the conmgr on this port: it closed the connection");
		return false;
	}
	/* the usual cases first: the user database is not read for them */
	if (uid == 0 || uid == geteuid())
		return true;
	if (!expected_owner(&owner, &have_owner, expected, sizeof(expected), why, whylen))
		return false;
	if (have_owner && uid == owner)
		return true;
	describe_uid(uid, found, sizeof(found));
	snprintf(why, whylen,
			 "this port is served by %s, who is not trusted to run conmgr (trusted: root, this program's uid %u%s%s); "
			 "set %s to the user that runs conmgr",
			 found, (unsigned) geteuid(), have_owner ? ", " : "", have_owner ? expected : "",
			 CM_OWNER_ENV);
	return false;
}

/* ---- candidates ---- */

/*
 * Is the host of CANDIDATE m what its addr_kind says (a host name or
 * numeric address; a numeric address)?  False with why set otherwise,
 * the host shown with everything but printable ASCII escaped.
 */
bool
cm_candidate_valid(const cmproto_msg *m, char *why, size_t whylen)
{
	const char *h = m->u.candidate.host;
	char		shown[4 * 64 + 1];
	size_t		o = 0,
				i;

	if (m->u.candidate.addr_kind == CMPROTO_ADDR_NUMERIC ? cmhost_is_numeric(h)
		: (cmhost_is_name(h) || cmhost_is_numeric(h)))
		return true;
	for (i = 0; h[i] && o + 4 < sizeof(shown); i++)
	{
		unsigned char ch = (unsigned char) h[i];

		if (ch >= 0x20 && ch < 0x7f && ch != '\\' && ch != '"')
			shown[o++] = (char) ch;
		else
			o += (size_t) snprintf(shown + o, sizeof(shown) - o, "\\x%02x", ch);
	}
	shown[o] = '\0';
	snprintf(why, whylen, "conmgr named an invalid candidate host \"%s%s\" for instance %u: not a %s",
			 shown, h[i] ? "..." : "", m->u.candidate.instance,
			 m->u.candidate.addr_kind == CMPROTO_ADDR_NUMERIC ? "numeric address" : "host name or address");
	return false;
}
