/*-------------------------------------------------------------------------
 *
 * relay.c
 *	  Bytes both ways between a forwarded session's two sockets.
 *
 * Data moves between the two sockets through a pipe per direction with
 * splice(), so it is not copied through this process.  A direction is
 * read only when its pipe is empty, and written as the other socket
 * allows; end of file in one direction is passed on with shutdown(), and
 * the session ends when both directions have ended.  An event on a
 * socket moves only the directions it concerns (fw_relay_event()), so a
 * query and its answer cost four splice() calls, none that says EAGAIN
 * (056_forward_syscalls.t counts them).  Nothing is changed:
 * TLS, GSSAPI, authentication, COPY and replication work as they do
 * directly.  The server's first bytes of a session in the clear are read
 * on their way, through the pipe all the same, until its BackendKeyData
 * has passed (keywatch.c).
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "forwarder.h"

/*
 * From the server into its pipe through the key watch (keywatch.c), while
 * it watches: read here, then written into the empty pipe (which holds
 * more than buf), so the relay goes on from the pipe as with splice().
 */
static ssize_t
fw_read_watched(fw_sess *s)
{
	uint8_t		buf[4096];
	ssize_t		n = recv(s->sfd, buf, sizeof(buf), 0);

	if (n > 0)
	{
		(void) fw_keywatch_feed(&s->kw, buf, (size_t) n);
		if (write(s->pipes[1][1], buf, (size_t) n) != n)
		{
			errno = EPIPE;
			return -1;
		}
	}
	return n;
}

/*
 * Move what direction d can move now: from its source into its pipe when
 * the pipe is empty, from the pipe into its destination.  False when the
 * session has ended (closed here).
 */
static bool
fw_move(fw_sess *s, int d)
{
	int			src = d == 0 ? s->cfd : s->sfd;
	int			dst = d == 0 ? s->sfd : s->cfd;

	if (s->inpipe[d] == 0 && !s->eof[d])
	{
		ssize_t		n = d == 1 && s->kw.state != FW_KW_DONE ? fw_read_watched(s) :
			splice(src, NULL, s->pipes[d][1], NULL, FW_PIPE_CHUNK,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);

		if (n > 0)
			s->inpipe[d] = (size_t) n;
		else if (n == 0)
			s->eof[d] = true;
		else if (errno != EAGAIN && errno != EINTR)
		{
			fw_end(s);
			return false;
		}
	}
	while (s->inpipe[d] > 0)
	{
		ssize_t		n = splice(s->pipes[d][0], NULL, dst, NULL, s->inpipe[d],
							   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);

		if (n > 0)
			s->inpipe[d] -= (size_t) n;
		else if (n < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		else
		{
			fw_end(s);
			return false;
		}
	}
	if (s->eof[d] && s->inpipe[d] == 0 && !s->shut[d])
	{
		(void) shutdown(dst, SHUT_WR);
		s->shut[d] = true;
	}
	return true;
}

/*
 * The directions that can move (d0: client to server, d1: server to
 * client) as far as they go, then what to wait for.  The waits are
 * level-triggered, so a direction left out here is reported again while
 * it still has something to move.
 */
static void
fw_relay_dirs(fw_sess *s, bool d0, bool d1)
{
	uint32_t	cmask = 0,
				smask = 0;

	if ((d0 && !fw_move(s, 0)) || (d1 && !fw_move(s, 1)))
		return;
	if (s->shut[0] && s->shut[1])
	{
		fw_end(s);
		return;
	}
	if (!s->eof[0] && s->inpipe[0] == 0)
		cmask |= EPOLLIN;
	if (s->inpipe[0] > 0)
		smask |= EPOLLOUT;
	if (!s->eof[1] && s->inpipe[1] == 0)
		smask |= EPOLLIN;
	if (s->inpipe[1] > 0)
		cmask |= EPOLLOUT;
	if (!fw_watch(s, cmask, smask))
		fw_end(s);
}

/* Both directions: a session that has just connected. */
void
fw_relay(fw_sess *s)
{
	fw_relay_dirs(s, true, true);
}

/*
 * The directions an event on one of a relayed session's sockets concerns:
 * readable is its own direction's source, writable the other's
 * destination; a hang-up or an error, both.  Trying a direction whose
 * source has nothing would cost a splice() (or, while the key watch
 * reads, a recv()) that only says EAGAIN, twice a transaction.
 */
void
fw_relay_event(fw_sess *s, int kind, uint32_t events)
{
	bool		in = (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0;
	bool		out = (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) != 0;

	if (kind == EV_CLIENT)
		fw_relay_dirs(s, in, out);
	else
		fw_relay_dirs(s, out, in);
}
