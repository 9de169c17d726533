/*-------------------------------------------------------------------------
 *
 * shm.c
 *	  The instance table: creation and the seqlock protocol (see shm.h).
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

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

void
shm_write_begin(shm_slot *slot)
{
	slot->changecount++;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

void
shm_write_end(shm_slot *slot)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	slot->changecount++;
}

void
shm_read(const shm_slot *slot, shm_slot *copy)
{
	for (;;)
	{
		uint32_t	before = slot->changecount;

		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		memcpy(copy, (const void *) slot, sizeof(*copy));
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		if ((before & 1) == 0 && before == slot->changecount)
			return;
	}
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
