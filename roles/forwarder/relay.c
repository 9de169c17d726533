/*-------------------------------------------------------------------------
 *
 * relay.c
 *	  Bytes both ways between a forwarded session's two sockets.
 *
 * A direction whose source has something is read into a buffer on the
 * stack and sent on at once: a query and its answer cost a recv() and a
 * send() each way, fewer system calls and less of the kernel's work per
 * small message than two splice() calls through a pipe.  What the
 * destination does not take at once goes into the direction's pipe and
 * leaves from there as the destination allows; a direction is read only
 * when its pipe is empty.  A read of 8 kB or more (COPY, a large result)
 * switches the direction to splice(): from the source into the pipe and
 * on into the destination, so that bulk data is not copied through this
 * process; a splice() that brings less than 4 kB switches it back.  End of file in one direction is passed on
 * with shutdown(), and the session ends when both directions have ended.
 * An event on a socket moves only the directions it concerns
 * (fw_relay_event()), so no system call of a transaction says EAGAIN
 * (056_forward_syscalls.t counts them).  Nothing is changed: TLS, GSSAPI,
 * authentication, COPY and replication work as they do directly.  The
 * server's first bytes of a session in the clear are read through the
 * buffer until its BackendKeyData has passed (keywatch.c).
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
 * Read direction d's source into a buffer (through the key watch while it
 * watches) and send it on to the destination; what the destination does
 * not take now goes into the empty pipe, which holds more than the
 * buffer.  What recv() returned, or -1 with errno set.
 */
static ssize_t
fw_read_pass(fw_sess *s, int d, int src, int dst)
{
	uint8_t		buf[FW_COPY_CHUNK];
	ssize_t		n = recv(src, buf, sizeof(buf), 0);
	ssize_t		sent;

	if (n <= 0)
		return n;
	if (d == 1 && s->kw.state != FW_KW_DONE &&
		!fw_keywatch_feed(&s->kw, buf, (size_t) n) && s->kw.found)
		fw_key_share(s, true);
	s->bulk[d] = n >= FW_BULK_MIN;
	sent = send(dst, buf, (size_t) n, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (sent < 0)
	{
		if (errno != EAGAIN && errno != EINTR)
			return -1;
		sent = 0;
	}
	if (sent < n)
	{
		if (write(s->pipes[d][1], buf + sent, (size_t) (n - sent)) != n - sent)
		{
			errno = EPIPE;
			return -1;
		}
		s->inpipe[d] = (size_t) (n - sent);
	}
	return n;
}

/*
 * Direction d's source into its empty pipe with splice(), while the
 * direction moves bulk data; back to the buffer when a read brings less
 * than half of what made it bulk (the server sends in blocks of 8 kB, so
 * a COPY keeps to splice()).
 */
static ssize_t
fw_read_splice(fw_sess *s, int d, int src)
{
	ssize_t		n = splice(src, NULL, s->pipes[d][1], NULL, FW_PIPE_CHUNK,
						   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);

	if (n > 0)
	{
		s->inpipe[d] = (size_t) n;
		s->bulk[d] = n >= FW_BULK_MIN / 2;
	}
	return n;
}

/*
 * Move what direction d can move now: from its source when its pipe is
 * empty, then what the pipe holds into its destination.  False when the
 * session has ended (closed here).
 */
static bool
fw_move(fw_sess *s, int d)
{
	int			src = d == 0 ? s->cfd : s->sfd;
	int			dst = d == 0 ? s->sfd : s->cfd;

	if (s->inpipe[d] == 0 && !s->eof[d])
	{
		bool		watched = d == 1 && s->kw.state != FW_KW_DONE;
		ssize_t		n = s->bulk[d] && !watched ? fw_read_splice(s, d, src) :
			fw_read_pass(s, d, src, dst);

		if (n == 0)
			s->eof[d] = true;
		else if (n < 0 && errno != EAGAIN && errno != EINTR)
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
