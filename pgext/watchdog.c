/*-------------------------------------------------------------------------
 *
 * watchdog.c
 *	  The watchdog extension: conmgr's peer inside a PostgreSQL instance.
 *
 * Loaded through shared_preload_libraries, the module defines the
 * watchdog.* GUCs, requests its shared memory (WdShared, see watchdog.h)
 * and registers two background workers:
 *
 *	watchdog			 keeps one heartbeat session per conmgr process
 *						 (wd_worker.c and its parts, docs/protocol.md
 *						 section 3)
 *	watchdog terminator  terminates the SQL sessions coming from the host
 *						 of a conmgr whose heartbeat was lost
 *						 (wd_terminator.c)
 *
 * CREATE EXTENSION adds the pgx_stat_watchdog view over the function
 * pgx_stat_watchdog() below, which reads the session table.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inet.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "cmproto.h"
#include "watchdog.h"

PG_MODULE_MAGIC;

/* GUC variables */
int			wd_port = WD_DEFAULT_PORT;
char	   *wd_listen_addresses = NULL;
int			wd_check_attr_interval = 1000;
int			wd_max_heartbeat_connections = -1;
char	   *wd_auth_key_file = NULL;
int			wd_max_sessions_per_address = 4;
bool		wd_log_registrations = true;
char	   *wd_allowed_addresses = NULL;

/* watchdog.allowed_addresses parsed by its check hook; NULL: anyone */
typedef struct WdCidrList
{
	int			n;
	WdCidr		cidrs[FLEXIBLE_ARRAY_MEMBER];
} WdCidrList;

static WdCidrList *wd_allowed = NULL;

WdShared   *wd_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

void		_PG_init(void);
static bool wd_check_allowed_addresses(char **newval, void **extra, GucSource source);
static void wd_assign_allowed_addresses(const char *newval, void *extra);

PG_FUNCTION_INFO_V1(pgx_stat_watchdog);
PG_FUNCTION_INFO_V1(pgx_stat_watchdog_worker);

/* The number of session slots: the GUC, or max_connections when -1. */
static int
wd_session_slots(void)
{
	if (wd_max_heartbeat_connections >= 0)
		return wd_max_heartbeat_connections;
	return MaxConnections;
}

static Size
wd_shmem_size(void)
{
	int			n = wd_session_slots();
	Size		size;

	size = add_size(offsetof(WdShared, sessions),
					mul_size(sizeof(WdSessionStat), n));
	size = add_size(size, mul_size(sizeof(WdLoss), n + 1));
	return size;
}

static void
wd_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(wd_shmem_size());
	RequestNamedLWLockTranche("watchdog", 1);
}

static void
wd_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	wd_shared = ShmemInitStruct("watchdog", wd_shmem_size(), &found);
	if (!found)
	{
		memset(wd_shared, 0, wd_shmem_size());
		wd_shared->lock = &(GetNamedLWLockTranche("watchdog"))->lock;
		wd_shared->max_sessions = wd_session_slots();
		wd_shared->loss_capacity = wd_session_slots() + 1;
		pg_atomic_init_u64(&wd_shared->wakeups, 0);
		pg_atomic_init_u64(&wd_shared->timers_run, 0);
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Find the shared memory from a process that did not run the startup hook
 * (EXEC_BACKEND builds); a no-op on Linux, where it is inherited.
 */
void
wd_attach_shmem(void)
{
	bool		found;

	if (wd_shared != NULL)
		return;
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	wd_shared = ShmemInitStruct("watchdog", wd_shmem_size(), &found);
	LWLockRelease(AddinShmemInitLock);
	if (!found)
		elog(ERROR, "watchdog shared memory was not initialized");
}

static void
wd_register_worker(const char *name, const char *function, int restart_secs)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));

	/*
	 * A connection to no database, like the logical replication launcher: it
	 * gives the worker a row in pg_stat_activity and costs a worker slot, not
	 * a client connection slot.
	 */
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
	/* On a hot standby, start once it accepts read-only connections. */
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = restart_secs;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "watchdog");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(worker.bgw_name, BGW_MAXLEN, "%s", name);
	snprintf(worker.bgw_type, BGW_MAXLEN, "%s", name);
	RegisterBackgroundWorker(&worker);
}

void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;

	DefineCustomIntVariable("watchdog.port",
							"TCP port on which the watchdog accepts conmgr heartbeat sessions.",
							NULL,
							&wd_port,
							WD_DEFAULT_PORT, 1, 65535,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
	DefineCustomStringVariable("watchdog.listen_addresses",
							   "Addresses on which the watchdog listens, like listen_addresses.",
							   "A comma-separated list of host names or numeric addresses; "
							   "\"*\" means all interfaces.",
							   &wd_listen_addresses,
							   "*",
							   PGC_POSTMASTER, GUC_LIST_INPUT,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("watchdog.check_attr_interval",
							"Interval between checks of the instance's attributes.",
							"A change is sent to every conmgr at once.",
							&wd_check_attr_interval,
							1000, 1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("watchdog.max_heartbeat_connections",
							"Maximum number of conmgr heartbeat sessions.",
							"-1 means the value of max_connections.",
							&wd_max_heartbeat_connections,
							-1, -1, INT_MAX / 2,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
	DefineCustomStringVariable("watchdog.auth_key_file",
							   "File holding the key shared with conmgr for authentication.",
							   "Empty means no authentication: any host that reaches "
							   "watchdog.port can register.",
							   &wd_auth_key_file,
							   "",
							   PGC_POSTMASTER, 0,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("watchdog.max_sessions_per_address",
							"Maximum number of registered heartbeat sessions from one client address.",
							"0 means no limit.  A client host runs one conmgr per instance set.",
							&wd_max_sessions_per_address,
							4, 0, INT_MAX / 2,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomStringVariable("watchdog.allowed_addresses",
							   "Client networks from which conmgr may register, as a list of CIDRs.",
							   "A comma-separated list of IPv4 or IPv6 addresses with an optional "
							   "prefix length, like pg_hba.conf's; empty means any address.",
							   &wd_allowed_addresses,
							   "",
							   PGC_SIGHUP, GUC_LIST_INPUT,
							   wd_check_allowed_addresses,
							   wd_assign_allowed_addresses,
							   NULL);
	DefineCustomBoolVariable("watchdog.log_registrations",
							 "Logs each registration of a conmgr heartbeat session.",
							 "Like log_connections; losses are logged whatever it says.",
							 &wd_log_registrations,
							 true,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	MarkGUCPrefixReserved("watchdog");

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = wd_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = wd_shmem_startup;

	wd_register_worker("watchdog", "watchdog_main", 5);
	wd_register_worker("watchdog terminator", "watchdog_terminator_main", 1);
}

/* ---- addresses ---- */

/* Fill *out from a socket address; false for anything but IPv4/IPv6. */
bool
wd_addr_from_sockaddr(const struct sockaddr *sa, WdAddr *out)
{
	memset(out, 0, sizeof(*out));
	if (sa->sa_family == AF_INET)
	{
		const struct sockaddr_in *sin = (const struct sockaddr_in *) sa;

		out->family = AF_INET;
		out->port = ntohs(sin->sin_port);
		memcpy(out->addr, &sin->sin_addr, 4);
		return true;
	}
	if (sa->sa_family == AF_INET6)
	{
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *) sa;

		out->port = ntohs(sin6->sin6_port);
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
		{
			out->family = AF_INET;
			memcpy(out->addr, &sin6->sin6_addr.s6_addr[12], 4);
		}
		else
		{
			out->family = AF_INET6;
			memcpy(out->addr, &sin6->sin6_addr, 16);
		}
		return true;
	}
	return false;
}

/* Same IP address, whatever the ports. */
bool
wd_addr_same_host(const WdAddr *a, const WdAddr *b)
{
	if (a->family != b->family)
		return false;
	return memcmp(a->addr, b->addr, a->family == AF_INET ? 4 : 16) == 0;
}

const char *
wd_addr_to_string(const WdAddr *addr, char *buf, size_t len)
{
	if (inet_ntop(addr->family, addr->addr, buf, len) == NULL)
		strlcpy(buf, "?", len);
	return buf;
}

/* ---- watchdog.allowed_addresses ---- */

/*
 * Parse one "address[/bits]" into *out, host bits cleared as pg_hba.conf
 * does; false if it is not an IPv4 or IPv6 network.
 */
static bool
wd_parse_cidr(const char *text, WdCidr *out)
{
	char		buf[INET6_ADDRSTRLEN + 8];
	char	   *slash;
	int			maxbits;

	if (strlen(text) >= sizeof(buf))
		return false;
	strcpy(buf, text);
	memset(out, 0, sizeof(*out));
	slash = strchr(buf, '/');
	if (slash != NULL)
		*slash = '\0';
	if (inet_pton(AF_INET, buf, out->addr) == 1)
	{
		out->family = AF_INET;
		maxbits = 32;
	}
	else if (inet_pton(AF_INET6, buf, out->addr) == 1)
	{
		out->family = AF_INET6;
		maxbits = 128;
	}
	else
		return false;
	if (slash == NULL)
		out->bits = maxbits;
	else
	{
		char	   *end;
		long		bits;

		errno = 0;
		bits = strtol(slash + 1, &end, 10);
		if (slash[1] == '\0' || *end != '\0' || errno != 0 ||
			bits < 0 || bits > maxbits)
			return false;
		out->bits = (uint8) bits;
	}
	for (int i = 0; i < maxbits / 8; i++)
	{
		int			keep = out->bits - i * 8;

		if (keep <= 0)
			out->addr[i] = 0;
		else if (keep < 8)
			out->addr[i] &= (uint8) (0xff << (8 - keep));
	}
	return true;
}

/*
 * The GUC machinery frees a check hook's "extra" itself: with free() up to
 * PostgreSQL 15, with guc_free() since 16, which keeps GUC data in a memory
 * context of its own (postgres commit 407b50f2d) and so needs it allocated
 * there by guc_malloc(); free() memory given to 16 or later makes every
 * change of the parameter fail with "pfree called with invalid pointer".
 */
#if PG_VERSION_NUM >= 160000
#define wd_guc_malloc(size)		guc_malloc(LOG, (size))
#define wd_guc_free(ptr)		guc_free(ptr)
#else
#define wd_guc_malloc(size)		malloc(size)
#define wd_guc_free(ptr)		free(ptr)
#endif

static bool
wd_check_allowed_addresses(char **newval, void **extra, GucSource source)
{
	char	   *raw = pstrdup(*newval);
	List	   *items;
	ListCell   *lc;
	WdCidrList *list;
	int			n = 0;

	if (!SplitGUCList(raw, ',', &items))
	{
		GUC_check_errdetail("List syntax is invalid.");
		pfree(raw);
		list_free(items);
		return false;
	}
	list = wd_guc_malloc(offsetof(WdCidrList, cidrs) +
						 sizeof(WdCidr) * Max(list_length(items), 1));
	if (list == NULL)
	{
		GUC_check_errcode(ERRCODE_OUT_OF_MEMORY);
		GUC_check_errmsg("out of memory");
		pfree(raw);
		list_free(items);
		return false;
	}
	foreach(lc, items)
	{
		char	   *item = (char *) lfirst(lc);

		if (!wd_parse_cidr(item, &list->cidrs[n]))
		{
			GUC_check_errdetail("\"%s\" is not an IPv4 or IPv6 address with an optional prefix length, like 10.1.0.0/16 or fd00::/8.",
								item);
			wd_guc_free(list);
			pfree(raw);
			list_free(items);
			return false;
		}
		n++;
	}
	list->n = n;
	pfree(raw);
	list_free(items);
	*extra = list;
	return true;
}

static void
wd_assign_allowed_addresses(const char *newval, void *extra)
{
	WdCidrList *list = (WdCidrList *) extra;

	wd_allowed = (list != NULL && list->n > 0) ? list : NULL;
}

/* Whether watchdog.allowed_addresses is empty. */
bool
wd_anyone_allowed(void)
{
	return wd_allowed == NULL;
}

/* Whether a client at this address may register. */
bool
wd_address_allowed(const WdAddr *addr)
{
	if (wd_allowed == NULL)
		return true;
	for (int i = 0; i < wd_allowed->n; i++)
	{
		const WdCidr *c = &wd_allowed->cidrs[i];
		int			whole = c->bits / 8;
		int			rest = c->bits % 8;

		if (c->family != addr->family)
			continue;
		if (memcmp(c->addr, addr->addr, whole) != 0)
			continue;
		if (rest != 0 &&
			((addr->addr[whole] ^ c->addr[whole]) & (uint8) (0xff << (8 - rest))) != 0)
			continue;
		return true;
	}
	return false;
}

/* ---- the view ---- */

static Datum
wd_inet_datum(const WdAddr *addr)
{
	inet	   *res = (inet *) palloc0(sizeof(inet));

	if (addr->family == AF_INET)
	{
		ip_family(res) = PGSQL_AF_INET;
		ip_bits(res) = 32;
		memcpy(ip_addr(res), addr->addr, 4);
	}
	else
	{
		ip_family(res) = PGSQL_AF_INET6;
		ip_bits(res) = 128;
		memcpy(ip_addr(res), addr->addr, 16);
	}
	SET_INET_VARSIZE(res);
	return InetPGetDatum(res);
}

#define PGX_STAT_WATCHDOG_COLS 10
#define PGX_STAT_WATCHDOG_WORKER_COLS 5

/* The views have something to show only when the library is preloaded. */
static void
wd_require_loaded(void)
{
	if (wd_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("watchdog is not loaded"),
				 errdetail("The heartbeat session table exists only when the library is preloaded."),
				 errhint("Add \"watchdog\" to shared_preload_libraries and restart the server.")));
}

/*
 * pgx_stat_watchdog(): one row per registered heartbeat session.  The
 * table is copied under the lock, each slot whole (see WdSessionStat),
 * then turned into tuples without it.
 */
Datum
pgx_stat_watchdog(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	WdSessionStat *copy;
	int			n;

	wd_require_loaded();
	InitMaterializedSRF(fcinfo, 0);

	n = wd_shared->max_sessions;
	copy = palloc(sizeof(WdSessionStat) * Max(n, 1));
	LWLockAcquire(wd_shared->lock, LW_SHARED);
	for (int i = 0; i < n; i++)
	{
		volatile WdSessionStat *shared = &wd_shared->sessions[i];

		for (;;)
		{
			uint32		before = shared->changecount;

			pg_read_barrier();
			memcpy(&copy[i], (const void *) shared, sizeof(WdSessionStat));
			pg_read_barrier();
			if (before == shared->changecount && (before & 1) == 0)
				break;
			CHECK_FOR_INTERRUPTS();
		}
	}
	LWLockRelease(wd_shared->lock);

	for (int i = 0; i < n; i++)
	{
		WdSessionStat *s = &copy[i];
		Datum		values[PGX_STAT_WATCHDOG_COLS];
		bool		nulls[PGX_STAT_WATCHDOG_COLS];

		if (!s->in_use)
			continue;
		memset(nulls, 0, sizeof(nulls));
		values[0] = wd_inet_datum(&s->peer);
		values[1] = Int32GetDatum(s->peer.port);
		values[2] = Int32GetDatum(s->interval);
		values[3] = Int32GetDatum(s->timeout);
		values[4] = TimestampTzGetDatum(s->connected_since);
		values[5] = TimestampTzGetDatum(s->last_received);
		if (s->last_sent != 0)
			values[6] = TimestampTzGetDatum(s->last_sent);
		else
			nulls[6] = true;
		values[7] = BoolGetDatum(s->authenticated);
		values[8] = Int64GetDatum((int64) s->frames_received);
		values[9] = Int64GetDatum((int64) s->beats_sent);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc,
							 values, nulls);
	}
	pfree(copy);
	return (Datum) 0;
}

/*
 * pgx_stat_watchdog_worker(): one row about the watchdog worker: its
 * process, its wake-ups and the session timers they ran (a wake-up runs
 * only the timers that are due, docs/watchdog.md), the sessions lost and
 * the backends the terminator ended.
 */
Datum
pgx_stat_watchdog_worker(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[PGX_STAT_WATCHDOG_WORKER_COLS];
	bool		nulls[PGX_STAT_WATCHDOG_WORKER_COLS];
	pid_t		pid;
	uint64		lost;
	uint64		terminated;

	wd_require_loaded();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	LWLockAcquire(wd_shared->lock, LW_SHARED);
	pid = wd_shared->watchdog_pid;
	lost = wd_shared->sessions_lost;
	terminated = wd_shared->backends_terminated;
	LWLockRelease(wd_shared->lock);

	memset(nulls, 0, sizeof(nulls));
	if (pid != 0)
		values[0] = Int32GetDatum(pid);
	else
		nulls[0] = true;
	values[1] = Int64GetDatum((int64) pg_atomic_read_u64(&wd_shared->wakeups));
	values[2] = Int64GetDatum((int64) pg_atomic_read_u64(&wd_shared->timers_run));
	values[3] = Int64GetDatum((int64) lost);
	values[4] = Int64GetDatum((int64) terminated);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
