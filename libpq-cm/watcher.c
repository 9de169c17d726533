/*-------------------------------------------------------------------------
 *
 * watcher.c
 *	  The thread that turns conmgr's down-notices into connection errors.
 *
 * An application blocked in PQexec() sits in libpq's poll() on the SQL
 * socket and would not notice the instance vanish until TCP gives up,
 * which on a dead link takes many minutes.  One thread per process waits
 * (epoll) on the conmgr socket of every connection made through conmgr.
 * After ATTACHED, conmgr only ever writes to that socket to say the
 * instance is lost (INSTANCE_DOWN) or closes it (conmgr stopped or died),
 * so any readable event means the connection is lost: the thread then
 * shuts the SQL socket down (shutdown(2), not close), and whatever libpq
 * is blocked in returns its ordinary "server closed the connection
 * unexpectedly" error.  The thread only peeks: the bytes stay in the
 * socket, so an application that polls PQcmSocket() itself still sees it
 * readable.
 *
 * The SQL socket is libpq's, and libpq closes it on its own whenever the
 * server hangs up (a terminated backend, a crash, idle_session_timeout)
 * or the protocol breaks; the application may then get the same number
 * for anything else.  So the watcher never acts on libpq's descriptor
 * number: when the connection is made it takes a private duplicate
 * (F_DUPFD_CLOEXEC), which refers to the connection's own socket for as
 * long as it is open whatever becomes of the number libpq held, and
 * shuts that down.  shutdown() acts on the socket, not the descriptor, so
 * it ends libpq's connection as before; it can never reach another
 * socket.
 *
 * A duplicate keeps the socket open: were it kept after libpq closed its
 * own descriptor, the server would never see the connection end (no FIN
 * is sent while a descriptor remains).  So it is closed as soon as libpq
 * may have closed its own: when the server hangs up or the socket fails
 * (the thread watches the duplicate for EPOLLRDHUP, EPOLLHUP and
 * EPOLLERR; libpq then closes on its next read), when a libpq call
 * returns with libpq's socket closed (cm_follow_sql(), after every call
 * that may do I/O, for libpq's own reasons such as a lost protocol
 * synchronisation), right after the watcher's own shutdown(), and before
 * PQfinish() or a reset lets libpq close its socket.  libpq closes its
 * socket only inside a call, so when a call returns, the socket is open
 * exactly while libpq's descriptor is.
 *
 * One lock guards the table of watched connections and every change to a
 * duplicate; PQfinish() takes a connection out of the table, and closes
 * the duplicate, before libpq closes the SQL socket, so the thread never
 * touches a descriptor that was closed and reused.  Events carry a slot
 * number, a generation and which socket they are about, never a pointer,
 * so an event that raced with PQfinish() is recognised as stale.  Every
 * connection that holds a duplicate is in the table, even when no thread
 * could be started.
 *
 * fork(): the child has no watcher thread and inherits the parent's
 * connections, which it must not use (as with libpq); its table is
 * emptied and its copies of the duplicates are closed (that touches only
 * the child's descriptors: the parent's connections are unharmed), and a
 * connection it makes itself starts its own thread.  exec() closes the
 * duplicates (close-on-exec).
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cm_int.h"

typedef struct watch_entry
{
	cm_conn    *c;
	uint32_t	gen;
} watch_entry;

/* An event's data: generation << 32 | EV_SQL if about the SQL socket | slot */
#define EV_SQL		UINT32_C(0x80000000)

static pthread_mutex_t w_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t w_once = PTHREAD_ONCE_INIT;
static int	w_epfd = -1;		/* -1: no thread in this process */
static watch_entry *w_slots;
static int	w_nslots;
static uint32_t w_gen;

/* With w_lock held: close c's duplicate of the SQL socket. */
static void
release_sql_locked(cm_conn *c)
{
	int			fd = c->sql_fd;

	if (fd < 0)
		return;

	/*
	 * Out of the epoll set first: libpq's descriptor may still hold the
	 * socket open, and epoll forgets a socket only when it is closed
	 * everywhere.
	 */
	if (w_epfd >= 0)
		epoll_ctl(w_epfd, EPOLL_CTL_DEL, fd, NULL);
	__atomic_store_n(&c->sql_fd, -1, __ATOMIC_RELAXED);
	close(fd);
}

/* With w_lock held: c leaves the table, and its duplicate is closed. */
static void
unwatch_locked(cm_conn *c)
{
	release_sql_locked(c);
	if (c->watch_slot >= 0)
	{
		if (w_epfd >= 0)
			epoll_ctl(w_epfd, EPOLL_CTL_DEL, c->sess.fd, NULL);
		w_slots[c->watch_slot].c = NULL;
		c->watch_slot = -1;
	}
}

static void
lost_locked(cm_conn *c)
{
	if (!c->lost)
	{
		c->lost = 1;
		if (c->sql_fd >= 0)
			shutdown(c->sql_fd, SHUT_RDWR);
	}
	unwatch_locked(c);
}

static void *
watcher_main(void *arg)
{
	int			epfd = (int) (intptr_t) arg;

	for (;;)
	{
		struct epoll_event ev[64];
		int			n = epoll_wait(epfd, ev, 64, -1);

		if (n < 0)
		{
			if (errno == EINTR)
				continue;
			return NULL;		/* the descriptor is gone: nothing to watch */
		}
		pthread_mutex_lock(&w_lock);
		for (int i = 0; i < n; i++)
		{
			uint32_t	slot = (uint32_t) (ev[i].data.u64 & 0xffffffff) & ~EV_SQL;
			uint32_t	gen = (uint32_t) (ev[i].data.u64 >> 32);
			bool		sql = (ev[i].data.u64 & EV_SQL) != 0;
			cm_conn    *c;

			if (epfd != w_epfd || (int) slot >= w_nslots ||
				w_slots[slot].gen != gen || (c = w_slots[slot].c) == NULL)
				continue;		/* stale: the connection left the table */
			if (sql)
				release_sql_locked(c);	/* the server hung up: see above */
			else
				lost_locked(c);
		}
		pthread_mutex_unlock(&w_lock);
	}
}

static void
atfork_prepare(void)
{
	pthread_mutex_lock(&w_lock);
}

static void
atfork_parent(void)
{
	pthread_mutex_unlock(&w_lock);
}

static void
atfork_child(void)
{
	for (int i = 0; i < w_nslots; i++)
		if (w_slots[i].c)
		{
			cm_conn    *c = w_slots[i].c;

			if (c->sql_fd >= 0)
				close(c->sql_fd);
			c->sql_fd = -1;
			c->watch_slot = -1;
			w_slots[i].c = NULL;
		}
	if (w_epfd >= 0)
		close(w_epfd);
	w_epfd = -1;
	pthread_mutex_unlock(&w_lock);
}

static void
register_atfork(void)
{
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/* With w_lock held: make sure this process has its watcher thread. */
static bool
start_thread_locked(void)
{
	pthread_attr_t attr;
	pthread_t	tid;
	sigset_t	all,
				old;
	int			epfd,
				rc;

	if (w_epfd >= 0)
		return true;
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0)
		return false;
	/* the application's signals are not ours to receive */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	rc = pthread_create(&tid, &attr, watcher_main, (void *) (intptr_t) epfd);
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
	{
		close(epfd);
		return false;
	}
	w_epfd = epfd;
	return true;
}

/* With w_lock held: a free slot of the table for c, or -1 (no memory). */
static int
take_slot_locked(cm_conn *c)
{
	int			slot = -1;

	for (int i = 0; i < w_nslots && slot < 0; i++)
		if (w_slots[i].c == NULL)
			slot = i;
	if (slot < 0)
	{
		int			n = w_nslots ? w_nslots * 2 : 16;
		watch_entry *s = realloc(w_slots, n * sizeof(watch_entry));

		if (s == NULL)
			return -1;
		for (int i = w_nslots; i < n; i++)
			s[i].c = NULL;
		slot = w_nslots;
		w_slots = s;
		w_nslots = n;
	}
	w_slots[slot].c = c;
	w_slots[slot].gen = ++w_gen;
	c->watch_slot = slot;
	return slot;
}

/*
 * c is connected through conmgr, and sql_sock is libpq's socket: watch
 * c's conmgr socket, and take the duplicate of the SQL socket that the
 * watcher will shut down.  If no thread can be had, c falls back to
 * checking conmgr's socket on each libpq call (cm_inner), which covers
 * everything but a call already blocked.  Without memory or a descriptor
 * for the duplicate, a loss is still reported (PQstatus()) but cannot
 * interrupt a call.
 */
void
cm_watch(cm_conn *c, int sql_sock)
{
	struct epoll_event ev;
	int			slot;

	pthread_once(&w_once, register_atfork);
	pthread_mutex_lock(&w_lock);
	if ((slot = take_slot_locked(c)) < 0)
		goto fallback;
	if (sql_sock >= 0)
		__atomic_store_n(&c->sql_fd, fcntl(sql_sock, F_DUPFD_CLOEXEC, 0),
						 __ATOMIC_RELAXED);
	if (!start_thread_locked())
		goto fallback;
	ev.events = EPOLLIN | EPOLLRDHUP;
	ev.data.u64 = ((uint64_t) w_slots[slot].gen << 32) | (uint32_t) slot;
	if (epoll_ctl(w_epfd, EPOLL_CTL_ADD, c->sess.fd, &ev) < 0)
		goto fallback;
	/* the server's hang-up, not its data: libpq reads that */
	ev.events = EPOLLRDHUP;
	ev.data.u64 |= EV_SQL;
	if (c->sql_fd >= 0 && epoll_ctl(w_epfd, EPOLL_CTL_ADD, c->sql_fd, &ev) < 0)
		release_sql_locked(c);
	pthread_mutex_unlock(&w_lock);
	return;

fallback:
	c->cm_polled = 1;
	pthread_mutex_unlock(&w_lock);
}

void
cm_unwatch(cm_conn *c)
{
	pthread_mutex_lock(&w_lock);
	unwatch_locked(c);
	pthread_mutex_unlock(&w_lock);
}

/*
 * libpq has closed c's SQL socket (cm_follow_sql() saw it after a call):
 * close the duplicate too.
 */
void
cm_sql_release(cm_conn *c)
{
	pthread_mutex_lock(&w_lock);
	release_sql_locked(c);
	pthread_mutex_unlock(&w_lock);
}

/*
 * An application that watches PQcmSocket() may call PQconsumeInput() the
 * moment conmgr's socket turns readable, before the watcher thread has
 * acted on it: look at the socket ourselves then (cm_inner()), so that the
 * call already sees the connection lost.  A connection that has no thread
 * to watch it relies on this alone.
 */
void
cm_check_lost(cm_conn *c)
{
	struct pollfd p = {c->sess.fd, POLLIN, 0};

	if (c->sess.fd >= 0 && poll(&p, 1, 0) > 0)
	{
		/* readable: the connection is lost (see above) */
		pthread_mutex_lock(&w_lock);
		lost_locked(c);
		pthread_mutex_unlock(&w_lock);
	}
}
