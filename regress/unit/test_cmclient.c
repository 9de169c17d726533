/*-------------------------------------------------------------------------
 *
 * test_cmclient.c
 *	  Test common/cmclient.c against a scripted listener on loopback.
 *
 * A child process listens on 127.0.0.1 and answers each connection as the
 * scenario says: as conmgr does (ErrorResponse, HELLO, then two candidates
 * after the RESOLVE, which comes with the probe or after the HELLO), as a
 * PostgreSQL server does ('N'), not at all, with a frame the codec
 * refuses, or with an ERROR instead of the candidates.  The client must
 * see the candidates, or say which of those happened, and a silent peer
 * must cost it no more than the time it gave.
 *
 *-------------------------------------------------------------------------
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cmclient.h"
#include "tap.h"

typedef enum scenario
{
	SC_CONMGR,
	SC_POSTMASTER,
	SC_SILENT,
	SC_GARBAGE,
	SC_REFUSE
} scenario;

static void
put(int fd, const cmproto_msg *m)
{
	uint8_t		buf[CMPROTO_MAX_MSG];
	int			n = cmproto_encode(m, buf, sizeof(buf));

	if (n < 0 || send(fd, buf, n, MSG_NOSIGNAL) != n)
		_exit(3);
}

/* Answer one connection as conmgr would, up to the candidates. */
static void
serve_conmgr(int fd, bool refuse)
{
	uint8_t		buf[2048];
	int			n = cmproto_pg_encode_error(buf, sizeof(buf), "08004", "this is conmgr", NULL);
	cmproto_msg m;

	memset(&m, 0, sizeof(m));
	m.type = CMPROTO_HELLO;
	m.u.hello.min_version = CMPROTO_MIN_VERSION;
	m.u.hello.max_version = CMPROTO_VERSION;
	n += cmproto_encode(&m, buf + n, sizeof(buf) - n);
	/* the probe (and perhaps the RESOLVE), then the RESOLVE if not yet */
	if (recv(fd, buf + n, sizeof(buf) - n, 0) <= 0 || send(fd, buf, n, MSG_NOSIGNAL) != n)
		_exit(3);
	usleep(50000);
	(void) recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
	memset(&m, 0, sizeof(m));
	if (refuse)
	{
		m.type = CMPROTO_ERROR;
		m.u.error.code = CMPROTO_ERR_CONFLICT;
		snprintf(m.u.error.message, sizeof(m.u.error.message), "refused");
		put(fd, &m);
		return;
	}
	for (int i = 0; i < 2; i++)
	{
		m.type = CMPROTO_CANDIDATE;
		m.u.candidate.instance = 3 + i;
		m.u.candidate.port = 5432 + i;
		m.u.candidate.attrs = (uint32_t) i;
		snprintf(m.u.candidate.host, sizeof(m.u.candidate.host), "db%d", i);
		put(fd, &m);
	}
	memset(&m, 0, sizeof(m));
	m.type = CMPROTO_CANDIDATES_END;
	m.u.candidates_end.count = 2;
	put(fd, &m);
}

/* A listener in a child that serves every connection as sc says. */
static pid_t
start_server(scenario sc, char *port, size_t portlen)
{
	struct sockaddr_in sin;
	socklen_t	sl = sizeof(sin);
	int			lfd = socket(AF_INET, SOCK_STREAM, 0);
	pid_t		pid;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (lfd < 0 || bind(lfd, (struct sockaddr *) &sin, sizeof(sin)) < 0 ||
		listen(lfd, 4) < 0 || getsockname(lfd, (struct sockaddr *) &sin, &sl) < 0)
		return -1;
	snprintf(port, portlen, "%d", ntohs(sin.sin_port));
	if ((pid = fork()) != 0)
	{
		close(lfd);
		return pid;
	}
	alarm(20);					/* never outlive the test */
	for (;;)
	{
		int			fd = accept(lfd, NULL, NULL);
		uint8_t		buf[64];

		if (fd < 0)
			_exit(3);
		if (sc == SC_CONMGR || sc == SC_REFUSE)
			serve_conmgr(fd, sc == SC_REFUSE);
		else if (sc == SC_POSTMASTER)
			(void) (recv(fd, buf, sizeof(buf), 0) > 0 && send(fd, "N", 1, 0));
		else if (sc == SC_GARBAGE)
		{
			/* a valid ErrorResponse, then a frame header with a bad type */
			int			n = cmproto_pg_encode_error(buf, sizeof(buf), "08004", "x", NULL);

			memcpy(buf + n, "\x7f\x00\x00\x08\x00\x00\x00\x00", 8);
			(void) (recv(fd, buf + n + 8, sizeof(buf) - n - 8, 0) > 0 &&
					send(fd, buf, n + 8, 0));
		}
		else
			sleep(1);			/* SC_SILENT: say nothing */
		close(fd);
	}
}

static void
stop_server(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

static double
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Probe, RESOLVE (with the probe or after the HELLO), candidates. */
static int
resolve(const char *port, bool pipelined, cmproto_msg *cands, int *n, cmproto_msg *other,
		cmclient *c)
{
	cmproto_pg_error err;
	cmproto_msg hello;
	int			rc;

	memset(cands, 0, sizeof(cmproto_msg) * 4);
	*n = 0;
	if ((rc = cmclient_connect(c, "127.0.0.1", port, 2000)) != CMCLIENT_OK)
		return rc;
	rc = cmclient_probe(c, pipelined ? CMPROTO_TARGET_ANY : -1, "test", &err, &hello, 300);
	if (rc == CMCLIENT_OK && !pipelined)
		rc = cmclient_send_resolve(c, CMPROTO_TARGET_ANY, "test");
	if (rc == CMCLIENT_OK)
		rc = cmclient_candidates(c, cands, 4, n, other, 300);
	cmclient_close(c);
	return rc;
}

int
main(void)
{
	char		port[16];
	cmproto_msg cands[4];
	cmproto_msg other;
	cmclient	c;
	int			n = 0;
	pid_t		srv;
	double		t0;
	int			rc;

	signal(SIGPIPE, SIG_IGN);
	srv = start_server(SC_CONMGR, port, sizeof(port));
	ok(srv > 0, "a scripted listener on 127.0.0.1:%s", port);
	for (int pipelined = 0; pipelined < 2; pipelined++)
	{
		rc = resolve(port, pipelined, cands, &n, &other, &c);
		is_int(rc, CMCLIENT_OK, "%s: the exchange goes through",
			   pipelined ? "RESOLVE with the probe" : "RESOLVE after the HELLO");
		ok(n == 2 && cands[0].u.candidate.instance == 3 && cands[1].u.candidate.instance == 4 &&
		   cands[1].u.candidate.port == 5433 && strcmp(cands[1].u.candidate.host, "db1") == 0,
		   "both candidates, in order, with their fields");
	}
	stop_server(srv);

	srv = start_server(SC_POSTMASTER, port, sizeof(port));
	is_int(resolve(port, false, cands, &n, &other, &c), CMCLIENT_POSTMASTER,
		   "a PostgreSQL server's 'N' is recognised");
	stop_server(srv);

	srv = start_server(SC_SILENT, port, sizeof(port));
	t0 = mono_ms();
	rc = resolve(port, false, cands, &n, &other, &c);
	is_int(rc, CMCLIENT_TIMEOUT, "a silent peer: timeout");
	ok(mono_ms() - t0 < 1000, "after the 300 ms given, not more (%.0f ms)", mono_ms() - t0);
	ok(c.len == 0, "and nothing was read");
	stop_server(srv);

	srv = start_server(SC_GARBAGE, port, sizeof(port));
	is_int(resolve(port, false, cands, &n, &other, &c), CMCLIENT_BAD,
		   "a frame the codec refuses: CMCLIENT_BAD");
	ok(c.proto_rc < 0, "with the codec's error (%s)", cmproto_strerror(c.proto_rc));
	stop_server(srv);

	srv = start_server(SC_REFUSE, port, sizeof(port));
	is_int(resolve(port, false, cands, &n, &other, &c), CMCLIENT_UNEXPECTED,
		   "an ERROR instead of candidates: CMCLIENT_UNEXPECTED");
	ok(other.type == CMPROTO_ERROR && strcmp(other.u.error.message, "refused") == 0,
	   "handed back: ERROR \"%s\"", other.u.error.message);
	stop_server(srv);

	is_int(cmclient_connect(&c, "127.0.0.1", port, 1000), CMCLIENT_IO,
		   "nothing listening: CMCLIENT_IO");
	return tap_done();
}
