/*-------------------------------------------------------------------------
 *
 * shm.c
 *	  The instance table: creation and the seqlock protocol (see shm.h).
 *
 *-------------------------------------------------------------------------
 */
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "cmclock.h"
#include "shm.h"

int64_t
shm_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* NULL when mmap fails (errno set). */
shm_header *
shm_create(int nslots)
{
	size_t		size = sizeof(shm_header) + sizeof(shm_slot) * (size_t) nslots;
	shm_header *h;

	h = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
			 -1, 0);
	if (h == MAP_FAILED)
		return NULL;
	memset(h, 0, size);
	h->magic = SHM_MAGIC;
	h->layout_version = SHM_LAYOUT_VERSION;
	h->header_size = sizeof(shm_header);
	h->slot_size = sizeof(shm_slot);
	h->nslots = nslots;
	h->supervisor_pid = getpid();
	h->started_at = shm_now();
	return h;
}

/*
 * The change-counter protocol, for any record that starts with its counter:
 * odd while being written; a reader copies the record and retries while the
 * counter was odd or moved.
 */
static void
seq_write_begin(volatile uint32_t *changecount)
{
	(*changecount)++;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

static void
seq_write_end(volatile uint32_t *changecount)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	(*changecount)++;
}

/*
 * Copy a record (src and copy both start with the counter) if a consistent
 * copy can be had within the bound of shm.h; false otherwise, and then
 * *copy keeps the last consistent copy it held.  Its counter field then
 * holds the odd count the writer was stuck at, so that the next read of a
 * record still stuck in that same update gives up at once instead of
 * waiting the bound again; a successful copy's counter is even.
 */
static bool
seq_read(const void *src, void *copy, size_t len)
{
	const volatile uint32_t *changecount = src;
	uint32_t   *copy_count = copy;
	union
	{
		shm_slot	slot;
		shm_logconf logconf;
	}			tmp;
	int64_t		deadline = 0;

	if (len > sizeof(tmp))
		abort();
	if ((*changecount & 1) != 0 && *changecount == *copy_count)
		return false;
	for (int tries = 1;; tries++)
	{
		uint32_t	before = *changecount;

		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		memcpy(&tmp, src, len);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		if ((before & 1) == 0 && before == *changecount)
		{
			memcpy(copy, &tmp, len);
			return true;
		}
		if (tries < SHM_READ_SPINS)
			continue;
		/* Past the spins the writer is not running: let it have the CPU. */
		if (deadline == 0)
			deadline = cmclock_us() + SHM_READ_WAIT_US;
		else if (cmclock_us() >= deadline)
		{
			if (before & 1)
				*copy_count = before;
			return false;
		}
		sched_yield();
	}
}

void
shm_write_begin(shm_slot *slot)
{
	seq_write_begin(&slot->changecount);
}

void
shm_write_end(shm_slot *slot)
{
	seq_write_end(&slot->changecount);
}

/*
 * A consistent copy of the slot, or false when its writer stayed inside an
 * update for the whole bound; *copy must then be the caller's last copy of
 * the same slot (or zeroes: state unknown), and is left as it was.
 */
bool
shm_read(const shm_slot *slot, shm_slot *copy)
{
	return seq_read(slot, copy, sizeof(*copy));
}

/*
 * The times of the last frame sent and received, each one update: the wall
 * time for people to read, and (received) the monotonic time the listener
 * judges lateness by.
 */
void
shm_set_last_sent(shm_slot *slot)
{
	int64_t		now = shm_now();

	shm_write_begin(slot);
	slot->last_sent = now;
	shm_write_end(slot);
}

void
shm_set_last_received(shm_slot *slot)
{
	int64_t		now = shm_now();
	int64_t		mono = cmclock_us();

	shm_write_begin(slot);
	slot->last_received = now;
	slot->last_received_mono = mono;
	shm_write_end(slot);
}

/*
 * The writer died: make the counter even again (it may have died between
 * begin and end) and mark the instance unknown until a new writer reports.
 */
void
shm_repair(shm_slot *slot)
{
	if (slot->changecount & 1)
		slot->changecount++;
	shm_write_begin(slot);
	slot->state = SHM_UNKNOWN;
	slot->attrs = 0;
	slot->writer_pid = 0;
	slot->state_since = shm_now();
	shm_write_end(slot);
}

/*
 * The supervisor's copy of the logging settings goes out as a whole, with
 * a new generation, so the logger knows to look again.  The three ints
 * that processes also read alone (log.c, logger.c) are stored atomically.
 */
void
shm_logconf_publish(shm_logconf *dst, const shm_logconf *src)
{
	seq_write_begin(&dst->changecount);
	__atomic_store_n(&dst->log_min_messages, src->log_min_messages, __ATOMIC_RELAXED);
	__atomic_store_n(&dst->log_destination, src->log_destination, __ATOMIC_RELAXED);
	dst->syslog_facility = src->syslog_facility;
	memcpy(dst->syslog_ident, src->syslog_ident, sizeof(dst->syslog_ident));
	dst->syslog_ident[sizeof(dst->syslog_ident) - 1] = '\0';
	__atomic_store_n(&dst->generation, dst->generation + 1, __ATOMIC_RELEASE);
	seq_write_end(&dst->changecount);
}

/* As shm_read(): false leaves *copy as the caller's last copy. */
bool
shm_logconf_read(const shm_logconf *src, shm_logconf *copy)
{
	return seq_read(src, copy, sizeof(*copy));
}
