/*-------------------------------------------------------------------------
 *
 * wd_terminator.c
 *	  The "watchdog terminator" background worker.
 *
 * Started with the watchdog worker, restarted 1 s after an error exit,
 * stopped with SIGTERM.  It sleeps on its latch.  When the watchdog loses
 * the heartbeat of a registered conmgr, it queues that conmgr's IP address
 * with the time of detection in shared memory and sets this worker's
 * latch; the terminator then sends SIGTERM (what pg_terminate_backend()
 * does) to every client backend and WAL sender whose client address is
 * that IP and that started before the detection.  Sessions from other
 * addresses, Unix-socket sessions and background workers (its own and the
 * watchdog among them) are never touched.  Each termination is logged,
 * for at most 10 losses of one address a minute (termlog).
 *
 * Matching by address and not by application is the design the manual
 * describes: the lost host's applications cannot be told apart from its
 * other clients, and all of them have lost their path to this server.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/procarray.h"
#include "tcop/tcopprot.h"
#include "utils/backend_status.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "watchdog.h"

#define WD_DRAIN_BATCH	64

/*
 * The lines of a lost host's terminations are logged for at most 10 of
 * its losses a minute, 100 over all hosts: without a key, anyone who can
 * register from an address can have it lost over and over.
 */
static WdLogLimit termlog = {"terminations", 10, 100};

/* A session of the lost host, between the snapshot and the signal. */
typedef struct WdTarget
{
	int			pid;
	uint16		port;
	bool		walsender;
	int			err;			/* kill()'s errno; 0: signalled; -1: gone */
} WdTarget;

/*
 * Terminate the lost host's sessions; returns how many were signalled.
 *
 * Three passes: the matching sessions are picked from the activity
 * snapshot, all of them are signalled in one tight loop, and only then is
 * each one logged.  A host can have hundreds of sessions, and every
 * backend signalled becomes runnable at once: a loop that logged between
 * the signals was preempted by the exiting backends it had just woken and
 * took seconds on a small machine to reach the last one.
 */
/*
 * The i-th (from 1) entry of this process's snapshot of backend states:
 * PostgreSQL 16.0 renamed the function that returns it
 * (pgstat_fetch_stat_local_beentry() became
 * pgstat_get_local_beentry_by_index(), same argument); 17 and 18 keep
 * the new name.
 */
static LocalPgBackendStatus *
wd_local_beentry(int i)
{
#if PG_VERSION_NUM >= 160000
	return pgstat_get_local_beentry_by_index(i);
#else
	return pgstat_fetch_stat_local_beentry(i);
#endif
}

static int
wd_terminate_host(const WdLoss *loss)
{
	char		host[INET6_ADDRSTRLEN];
	int			nbackends;
	int			ntargets = 0;
	int			killed = 0;
	WdTarget   *targets;
	bool		logged;
	uint64		suppressed;

	wd_addr_to_string(&loss->addr, host, sizeof(host));
	nbackends = pgstat_fetch_stat_numbackends();
	targets = palloc(sizeof(WdTarget) * Max(nbackends, 1));
	for (int i = 1; i <= nbackends; i++)
	{
		LocalPgBackendStatus *local = wd_local_beentry(i);
		PgBackendStatus *be;
		WdAddr		client;

		if (local == NULL)
			continue;
		be = &local->backendStatus;
		if (be->st_backendType != B_BACKEND &&
			be->st_backendType != B_WAL_SENDER)
			continue;
		if (be->st_procpid <= 0 || be->st_procpid == MyProcPid)
			continue;
		if (!wd_addr_from_sockaddr((struct sockaddr *) &be->st_clientaddr.addr,
								   &client))
			continue;			/* Unix socket, or no address */
		if (!wd_addr_same_host(&client, &loss->addr))
			continue;
		if (be->st_proc_start_timestamp >= loss->detected_at)
			continue;			/* connected after the loss: a new path */
		targets[ntargets].pid = be->st_procpid;
		targets[ntargets].port = client.port;
		targets[ntargets].walsender = be->st_backendType == B_WAL_SENDER;
		targets[ntargets].err = -1;
		ntargets++;
	}
	pgstat_clear_backend_activity_snapshot();

	/*
	 * The snapshot may be a little old: a process that has exited since is
	 * gone from the proc array, and its pid, which the system may already
	 * have given to an unrelated process, is not signalled.  Holding
	 * ProcArrayLock while signalling keeps a process that is still there from
	 * leaving the array (and freeing its pid) before its signal: an exiting
	 * backend needs the lock exclusively.
	 */
	LWLockAcquire(ProcArrayLock, LW_SHARED);
	for (int i = 0; i < ntargets; i++)
	{
		if (BackendPidGetProcWithLock(targets[i].pid) == NULL)
			continue;
		targets[i].err = kill(targets[i].pid, SIGTERM) == 0 ? 0 : errno;
	}
	LWLockRelease(ProcArrayLock);

	logged = ntargets > 0 &&
		wd_log_allowed(&termlog, &loss->addr, 0, wd_mono_now(), &suppressed);
	if (logged && suppressed > 0)
		ereport(LOG,
				(errmsg("watchdog terminator: the terminations after %llu earlier losses of the conmgr at %s were not logged",
						(unsigned long long) suppressed, host)));
	for (int i = 0; i < ntargets; i++)
	{
		if (targets[i].err == 0)
			killed++;
		if (!logged)
			continue;
		if (targets[i].err == 0)
		{
			ereport(LOG,
					(errmsg("watchdog terminator: terminating %s process %d connected from %s:%u",
							targets[i].walsender ? "WAL sender" : "backend",
							targets[i].pid, host, targets[i].port),
					 errdetail("The heartbeat with the conmgr on that host was lost.")));
		}
		else if (targets[i].err > 0 && targets[i].err != ESRCH)
		{
			errno = targets[i].err;
			ereport(LOG,
					(errmsg("watchdog terminator: could not signal process %d: %m",
							targets[i].pid)));
		}
	}
	pfree(targets);
	return killed;
}

static void
wd_drain_losses(void)
{
	for (;;)
	{
		WdLoss		batch[WD_DRAIN_BATCH];
		int			n = 0;
		int			killed = 0;

		LWLockAcquire(wd_shared->lock, LW_EXCLUSIVE);
		while (n < WD_DRAIN_BATCH && wd_shared->loss_head < wd_shared->loss_tail)
		{
			batch[n++] = WdLosses(wd_shared)[wd_shared->loss_head %
											 wd_shared->loss_capacity];
			wd_shared->loss_head++;
		}
		LWLockRelease(wd_shared->lock);
		if (n == 0)
			return;

		for (int i = 0; i < n; i++)
			killed += wd_terminate_host(&batch[i]);

		LWLockAcquire(wd_shared->lock, LW_EXCLUSIVE);
		wd_shared->backends_terminated += killed;
		LWLockRelease(wd_shared->lock);
	}
}

/* The latch is about to stop being ours: nobody may set it any more. */
static void
wd_terminator_exit(int code, Datum arg)
{
	LWLockAcquire(wd_shared->lock, LW_EXCLUSIVE);
	if (wd_shared->terminator_latch == MyLatch)
		wd_shared->terminator_latch = NULL;
	wd_shared->terminator_pid = 0;
	LWLockRelease(wd_shared->lock);
}

void
watchdog_terminator_main(Datum arg)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	wd_attach_shmem();
	LWLockAcquire(wd_shared->lock, LW_EXCLUSIVE);
	wd_shared->terminator_pid = MyProcPid;
	wd_shared->terminator_latch = MyLatch;
	LWLockRelease(wd_shared->lock);
	before_shmem_exit(wd_terminator_exit, (Datum) 0);

	for (;;)
	{
		/* Losses queued while we were not running are handled first. */
		wd_drain_losses();

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH, -1L,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
	}
}
