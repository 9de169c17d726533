/*-------------------------------------------------------------------------
 *
 * shm.h
 *	  The instance table shared by conmgr's processes.
 *
 * Made by the supervisor before it forks (an anonymous MAP_SHARED region,
 * inherited by every role), one slot per configured instance.  Each slot
 * has one writer, the heartbeat role of that instance, and any number of
 * readers (the listener).  Consistency is a per-slot change counter, as
 * PostgreSQL's st_changecount: the writer makes it odd, writes, makes it
 * even; a reader copies the slot and retries while the counter was odd or
 * moved.  No lock, no system call inside.  Every field but changecount is
 * written inside such an update, so a copy is always one consistent moment.
 *
 * A reader retries for SHM_READ_WAIT_US at most, not forever: a writer that
 * died or was stopped between the two increments leaves the counter odd
 * until the supervisor repairs the slot (or for good, if it is stopped),
 * and a reader spinning on it would freeze the listener with it.  A reader
 * that gives up keeps its last consistent copy, which is what a slow but
 * live writer's readers see too.
 *
 * The header also carries the logging settings that a reload can change
 * (shm_logconf): the supervisor is their one writer, under the same kind
 * of change counter; every process reads log_min_messages before it
 * formats a line, and the logger the rest before it writes one, so a
 * reload reaches roles that were forked before it without signalling them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CM_SHM_H
#define CM_SHM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define SHM_MAGIC			0x434d5348	/* "CMSH" */
#define SHM_LAYOUT_VERSION	6
#define SHM_IDENT_LEN		64	/* syslog_ident, with its NUL */
#define SHM_MAX_FORWARDS	7	/* forward_ports: a port per target at most */
#define SHM_MAX_INSTANCES	64	/* CMCONF_MAX_INSTANCES */
#define SHM_MAX_FORWARDERS	16	/* CMCONF_MAX_FORWARDERS */

/*
 * How long a reader waits for a writer to finish an update: far longer
 * than an update takes (a few stores, no system call) even when the writer
 * is preempted on a busy machine, short enough that a stuck slot costs the
 * listener little.
 */
#define SHM_READ_SPINS		1000
#define SHM_READ_WAIT_US	20000

/* Heartbeat state of an instance; changed only by hb_set_state(). */
typedef enum shm_state
{
	SHM_UNKNOWN = 0,			/* no heartbeat role has reported yet */
	SHM_CONNECTING,				/* connecting / handshaking */
	SHM_UP,						/* heartbeats flowing: routable */
	SHM_DOWN					/* lost; retrying after connect_interval */
} shm_state;

typedef struct shm_slot
{
	volatile uint32_t changecount;
	int			instno;
	int			state;			/* enum shm_state */
	uint32_t	attrs;			/* CMPROTO_ATTR_* while UP */
	uint32_t	down_reason;	/* CMPROTO_DOWN_* of the last loss */
	uint64_t	downs;			/* times it went from UP to DOWN */
	int64_t		state_since;	/* wall clock, microseconds */
	int64_t		last_received;
	int64_t		last_sent;
	int64_t		last_received_mono; /* cmclock_us(): the listener's "late" */
	uint64_t	system_identifier;
	uint32_t	server_version_num;
	uint32_t	timeline;		/* while UP; 0 = its watchdog does not say
								 * (protocol version 1) */
	pid_t		writer_pid;
} shm_slot;

#define SHM_FW_KEYS			2048	/* keys a forwarder publishes at most */

/*
 * A relayed session's BackendKeyData (process ID and secret key as sent,
 * in one word; 0 = none) and its instance, so that a CancelRequest that
 * reaches another forwarder goes to that instance alone.  The writer
 * clears key, sets instno, then key; a reader that matches key reads
 * instno and then key again.
 */
typedef struct shm_fwkey
{
	uint64_t	key;
	int32_t		instno;
	uint32_t	unused;
} shm_fwkey;

/*
 * One forwarder process's counts: written by that process alone (each
 * count one aligned word, so a reader never sees half of one), zeroed by
 * the supervisor when the process has exited, so that the sessions it
 * held stop being counted with it.
 */
typedef struct shm_forwarder
{
	pid_t		pid;			/* running; 0 = not */
	uint32_t	clients;		/* sessions with a client (max_connections,
								 * and where a new one is handed) */
	/* relayed sessions per forward port (conmgr.conf's order) and instance */
	uint32_t	sessions[SHM_MAX_FORWARDS][SHM_MAX_INSTANCES];
	/* by session slot; a session in a higher slot is not published */
	shm_fwkey	keys[SHM_FW_KEYS];
} shm_forwarder;

/* The reloadable logging settings; written by the supervisor only. */
typedef struct shm_logconf
{
	volatile uint32_t changecount;
	uint32_t	generation;		/* +1 per publication; 0 = never published */
	int			log_min_messages;	/* enum cmlog_level */
	int			log_destination;	/* CMCONF_LOG_* bits */
	int			syslog_facility;	/* n of LOCALn */
	char		syslog_ident[SHM_IDENT_LEN];
} shm_logconf;

typedef struct shm_header
{
	uint32_t	magic;
	uint32_t	layout_version;
	uint32_t	header_size;
	uint32_t	slot_size;
	uint32_t	nslots;
	pid_t		supervisor_pid;
	int64_t		started_at;
	shm_logconf logconf;

	/* per forwarder process; cm_ctl status shows their sums */
	shm_forwarder fw[SHM_MAX_FORWARDERS];
	shm_slot	slots[];
} shm_header;

/* shm.c */
extern shm_header *shm_create(int nslots);
extern void shm_write_begin(shm_slot *slot);
extern void shm_write_end(shm_slot *slot);
extern bool shm_read(const shm_slot *slot, shm_slot *copy);
extern void shm_set_last_sent(shm_slot *slot);
extern void shm_set_last_received(shm_slot *slot);
extern void shm_repair(shm_slot *slot);
extern int64_t shm_now(void);
extern void shm_logconf_publish(shm_logconf *dst, const shm_logconf *src);
extern bool shm_logconf_read(const shm_logconf *src, shm_logconf *copy);

#endif							/* CM_SHM_H */
