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
 * shuts the SQL socket down (shutdown(2), not close, so the descriptor
 * stays libpq's), and whatever libpq is blocked in returns its ordinary
 * "server closed the connection unexpectedly" error.  The thread only
 * peeks: the bytes stay in the socket, so an application that polls
 * PQcmSocket() itself still sees it readable.
 *
 * One lock guards the table of watched connections; PQfinish() takes a
 * connection out of it before its sockets are closed, so the thread never
 * touches a descriptor that was closed and reused.  Events carry a slot
 * number and a generation, never a pointer, so an event that raced with
 * PQfinish() is recognised as stale.
 *
 * fork(): the child has no watcher thread and inherits the parent's
 * connections, which it must not use (as with libpq); its table is
 * emptied, and a connection it makes itself starts its own thread.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cm_int.h"

typedef struct watch_slot
{
	cm_conn    *c;
	uint32_t	gen;
} watch_slot;

static pthread_mutex_t w_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t w_once = PTHREAD_ONCE_INIT;
static int	w_epfd = -1;		/* -1: no thread in this process */
static watch_slot *w_slots;
static int	w_nslots;
static uint32_t w_gen;

static void
lost_locked(cm_conn *c)
{
	if (!c->lost)
	{
		c->lost = 1;
		if (c->sql_fd >= 0)
			shutdown(c->sql_fd, SHUT_RDWR);
	}
	if (c->watch_slot >= 0)
	{
		epoll_ctl(w_epfd, EPOLL_CTL_DEL, c->fd, NULL);
		w_slots[c->watch_slot].c = NULL;
		c->watch_slot = -1;
	}
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
			uint32_t	slot = (uint32_t) (ev[i].data.u64 & 0xffffffff);
			uint32_t	gen = (uint32_t) (ev[i].data.u64 >> 32);

			if (epfd == w_epfd && (int) slot < w_nslots &&
				w_slots[slot].gen == gen && w_slots[slot].c != NULL)
				lost_locked(w_slots[slot].c);
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
			w_slots[i].c->watch_slot = -1;
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

/*
 * Watch c's conmgr socket.  If no thread can be had, c falls back to
 * checking the socket on each libpq call (cm_inner), which covers
 * everything but a call already blocked.
 */
void
cm_watch(cm_conn *c)
{
	struct epoll_event ev;
	int			slot = -1;

	pthread_once(&w_once, register_atfork);
	pthread_mutex_lock(&w_lock);
	if (!start_thread_locked())
		goto fallback;
	for (int i = 0; i < w_nslots && slot < 0; i++)
		if (w_slots[i].c == NULL)
			slot = i;
	if (slot < 0)
	{
		int			n = w_nslots ? w_nslots * 2 : 16;
		watch_slot *s = realloc(w_slots, n * sizeof(watch_slot));

		if (s == NULL)
			goto fallback;
		for (int i = w_nslots; i < n; i++)
			s[i].c = NULL;
		slot = w_nslots;
		w_slots = s;
		w_nslots = n;
	}
	w_slots[slot].c = c;
	w_slots[slot].gen = ++w_gen;
	ev.events = EPOLLIN | EPOLLRDHUP;
	ev.data.u64 = ((uint64_t) w_slots[slot].gen << 32) | (uint32_t) slot;
	if (epoll_ctl(w_epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0)
	{
		w_slots[slot].c = NULL;
		goto fallback;
	}
	c->watch_slot = slot;
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
	if (c->watch_slot >= 0)
	{
		epoll_ctl(w_epfd, EPOLL_CTL_DEL, c->fd, NULL);
		w_slots[c->watch_slot].c = NULL;
		c->watch_slot = -1;
	}
	pthread_mutex_unlock(&w_lock);
}

/* conmgr's socket is readable: the connection is lost (see above). */
void
cm_mark_lost(cm_conn *c)
{
	pthread_mutex_lock(&w_lock);
	lost_locked(c);
	pthread_mutex_unlock(&w_lock);
}
