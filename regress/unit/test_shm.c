/*-------------------------------------------------------------------------
 *
 * test_shm.c
 *	  Test that shm/shm.c's readers give up on a writer stuck mid-update.
 *
 * A heartbeat role that dies or is stopped between the two increments of
 * its slot's change counter leaves the counter odd.  A reader must come
 * back within shm.h's bound, say so, and keep its last consistent copy;
 * a second read of the same stuck update must not wait the bound again;
 * the supervisor's repair makes the slot readable.  Also: the times of
 * the last frame sent and received are written as updates of their own,
 * and a reader racing a busy writer never gets a torn copy.
 *
 * Every read that could hang runs in a child process that the test kills
 * after READ_LIMIT_S, so a reader that spins forever fails the test
 * instead of hanging it.
 *
 *-------------------------------------------------------------------------
 */
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shm.h"
#include "tap.h"

#define READ_LIMIT_S	5

static int64_t
mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * Run read_fn in a child; its exit code (0 = gave up, 1 = read) is
 * returned, or -1 when it did not return within READ_LIMIT_S (it is
 * killed).  *copy gets the child's copy through the shared mapping.
 */
typedef bool (*read_fn) (const void *src, void *copy);

static int
read_in_child(read_fn fn, const void *src, void *copy, int64_t *took_us)
{
	int64_t		start = mono_us();
	pid_t		pid = fork();
	int			status;

	if (pid < 0)
		return -2;
	if (pid == 0)
		_exit(fn(src, copy) ? 1 : 0);
	while (waitpid(pid, &status, WNOHANG) == 0)
	{
		if (mono_us() - start > (int64_t) READ_LIMIT_S * 1000000)
		{
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			return -1;
		}
		usleep(1000);
	}
	*took_us = mono_us() - start;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -3;
}

static bool
read_slot(const void *src, void *copy)
{
	return shm_read(src, copy);
}

static bool
read_logconf(const void *src, void *copy)
{
	return shm_logconf_read(src, copy);
}

/* Writer for the race: every update keeps attrs == downs == last_sent. */
static void
busy_writer(shm_slot *s, int64_t until_us)
{
	uint32_t	n = 0;

	while (mono_us() < until_us)
	{
		shm_write_begin(s);
		s->attrs = ++n;
		s->downs = n;
		s->last_sent = n;
		shm_write_end(s);
	}
	_exit(0);
}

int
main(void)
{
	shm_header *h = shm_create(1);
	void	   *copies = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
							  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	shm_slot   *s;
	shm_slot   *copy;			/* shared too: the children write it */
	shm_logconf *lcopy;
	shm_logconf *lc;
	int64_t		took = 0;
	int64_t		fastest;
	int			rc;
	uint32_t	before;

	if (h == NULL || copies == MAP_FAILED)
	{
		printf("Bail out! could not create the shared table\n");
		return 1;
	}
	s = &h->slots[0];
	copy = copies;
	lc = &h->logconf;

	/* A consistent slot reads. */
	shm_write_begin(s);
	s->state = SHM_UP;
	s->downs = 3;
	s->writer_pid = 4242;
	shm_write_end(s);
	memset(copy, 0, sizeof(*copy));
	ok(shm_read(s, copy), "a slot at rest reads");
	ok(copy->state == SHM_UP && copy->downs == 3 && copy->writer_pid == 4242,
	   "with its values");

	/* last_sent and last_received are updates: the counter moves by two. */
	before = s->changecount;
	shm_set_last_sent(s);
	is_int(s->changecount, before + 2, "shm_set_last_sent() is an update of the slot");
	ok(s->last_sent > 0, "and sets last_sent");
	before = s->changecount;
	shm_set_last_received(s);
	is_int(s->changecount, before + 2, "shm_set_last_received() is an update of the slot");
	ok(s->last_received > 0, "and sets last_received");

	/* The writer dies mid-update: the counter stays odd. */
	ok(shm_read(s, copy), "a copy before the writer dies");
	shm_write_begin(s);
	s->state = SHM_DOWN;
	s->downs = 99;
	rc = read_in_child(read_slot, s, copy, &took);
	is_int(rc, 0, "a reader of a slot stuck mid-update gives up (0) instead of spinning (-1)");
	ok(rc == 0 && took >= SHM_READ_WAIT_US,
	   "after waiting the bound for the writer (%.1f ms; bound %d ms)",
	   took / 1000.0, SHM_READ_WAIT_US / 1000);
	ok(copy->state == SHM_UP && copy->downs == 3,
	   "the copy keeps the last consistent values, not the half-written ones");
	is_int(copy->changecount, s->changecount, "and marks the update it gave up on");
	if (rc != 0)
	{
		/* The reads below run in this process and would hang with it. */
		printf("Bail out! a reader spins on a slot stuck mid-update\n");
		return tap_done();
	}

	fastest = INT64_MAX;
	for (int i = 0; i < 5; i++)
	{
		int64_t		t0 = mono_us();
		bool		got = shm_read(s, copy);

		if (mono_us() - t0 < fastest)
			fastest = mono_us() - t0;
		if (got)
			fastest = INT64_MAX;
	}
	ok(fastest < SHM_READ_WAIT_US,
	   "reads of the same stuck update give up at once (fastest of 5: %lld us)",
	   (long long) fastest);

	/* The supervisor repairs the dead writer's slot. */
	shm_repair(s);
	ok(shm_read(s, copy), "after shm_repair() the slot reads again");
	ok(copy->state == SHM_UNKNOWN && copy->writer_pid == 0, "as unknown, with no writer");

	/* A writer stuck in a later update is waited for again. */
	shm_write_begin(s);
	rc = read_in_child(read_slot, s, copy, &took);
	is_int(rc, 0, "a new stuck update: the reader gives up again");
	ok(rc == 0 && took >= SHM_READ_WAIT_US, "after waiting the bound again (%.1f ms)",
	   took / 1000.0);
	shm_write_end(s);
	ok(shm_read(s, copy), "once the writer finishes, the slot reads");

	/* The logging settings: the supervisor stopped mid-publication. */
	{
		shm_logconf pub;

		memset(&pub, 0, sizeof(pub));
		pub.log_min_messages = 7;
		shm_logconf_publish(lc, &pub);
		lcopy = copies;
		memset(lcopy, 0, sizeof(*lcopy));
		ok(shm_logconf_read(lc, lcopy) && lcopy->log_min_messages == 7,
		   "published logging settings read");
		lc->changecount++;
		lc->log_min_messages = 1;
		rc = read_in_child(read_logconf, lc, lcopy, &took);
		is_int(rc, 0, "a reader of settings stuck mid-publication gives up (0) instead of spinning (-1)");
		is_int(lcopy->log_min_messages, 7, "and keeps the settings it had");
		lc->changecount++;
	}

	/* A busy writer: every successful copy is whole. */
	{
		int64_t		until = mono_us() + 500000;
		pid_t		pid;
		long		reads = 0,
					moved = 0,
					torn = 0,
					gaveup = 0;
		int			status;

		shm_write_begin(s);
		s->attrs = 0;
		s->downs = 0;
		s->last_sent = 0;
		shm_write_end(s);
		pid = fork();
		if (pid == 0)
			busy_writer(s, until);
		while (mono_us() < until && reads < 200000)
		{
			shm_slot	c;

			memset(&c, 0, sizeof(c));
			if (!shm_read(s, &c))
			{
				gaveup++;
				continue;
			}
			reads++;
			if (c.downs != 0)
				moved++;
			if (c.attrs != c.downs || (int64_t) c.downs != c.last_sent)
				torn++;
		}
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		printf("# %ld reads against a busy writer, %ld gave up\n", reads, gaveup);
		ok(moved > 0, "reads succeed against a busy writer (%ld saw its updates)", moved);
		is_int(torn, 0, "and none of them is torn");
	}
	return tap_done();
}
