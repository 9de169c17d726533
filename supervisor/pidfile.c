/*-------------------------------------------------------------------------
 *
 * pidfile.c
 *	  CMDATA/conmgr.pid: the supervisor's lock and its status for cm_ctl.
 *
 * The file holds, one per line, the supervisor's pid, CMDATA, its start
 * time (Unix seconds), the application port and a status (starting,
 * ready, stopping), as PostgreSQL's postmaster.pid; cm_ctl reads it.  An
 * exclusive flock() on it, held for the supervisor's life, says a conmgr
 * runs in CMDATA.  Roles close it after fork.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conmgr.h"
#include "supervisor.h"

static int	pidfile_fd = -1;
static char pidfile_path[4200];
static const char *pid_cmdata;
static int	pid_port;

void
sup_pidfile_status(const char *status)
{
	char		buf[256];
	int			n;

	n = snprintf(buf, sizeof(buf), "%d\n%s\n%lld\n%d\n%s\n", (int) getpid(),
				 pid_cmdata, (long long) (shm_now() / 1000000), pid_port, status);
	/* Overwrite, then cut: a reader never finds the file empty. */
	if (pwrite(pidfile_fd, buf, n, 0) == n && ftruncate(pidfile_fd, n) == 0)
		return;
	cm_log(CMLOG_WARNING, "could not write \"%s\": %m", pidfile_path);
}

/* Whether the file we hold open as the pid file is the one at its path. */
static bool
pidfile_at_path(void)
{
	struct stat held,
				atpath;

	return fstat(pidfile_fd, &held) == 0 && stat(pidfile_path, &atpath) == 0 &&
		held.st_dev == atpath.st_dev && held.st_ino == atpath.st_ino;
}

/*
 * Take CMDATA/conmgr.pid; a lock held by a live conmgr means "already
 * running".  A stopping conmgr removes the file while it still holds the
 * lock (removing it after would remove a file another conmgr may have
 * locked meanwhile), so a start that opened the file just before that
 * gets the lock of a file no longer in CMDATA: it must find the file it
 * locked still at the path, or start again with the one there now.
 * Without that check it would run with a pid file nobody can see, and
 * the next start would make a second conmgr beside it.
 */
void
sup_pidfile_take(const char *cmdata, int port)
{
	pid_cmdata = cmdata;
	pid_port = port;
	snprintf(pidfile_path, sizeof(pidfile_path), "%s/conmgr.pid", cmdata);
	for (int attempt = 1;; attempt++)
	{
		pidfile_fd = open(pidfile_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (pidfile_fd < 0)
			cm_fatal(1, "could not open lock file \"%s\": %m", pidfile_path);
		if (flock(pidfile_fd, LOCK_EX | LOCK_NB) < 0)
		{
			char		buf[32] = "";

			if (errno != EWOULDBLOCK)
				cm_fatal(1, "could not lock \"%s\": %m", pidfile_path);
			(void) !pread(pidfile_fd, buf, sizeof(buf) - 1, 0);
			cm_fatal(1, "another conmgr (pid %d) is running in \"%s\"", atoi(buf), cmdata);
		}
		if (pidfile_at_path())
			break;
		close(pidfile_fd);
		pidfile_fd = -1;
		if (attempt == 100)
			cm_fatal(1, "could not lock \"%s\": it was replaced 100 times while being locked",
					 pidfile_path);
	}
	/* The lock is free: any pid in the file is from a conmgr that crashed. */
	sup_pidfile_status("starting");
}

/*
 * Remove our pid file, while we still hold its lock (see sup_pidfile_take()),
 * and only if it is still ours: a file put at the path by someone else
 * (ours was removed by hand) is not ours to remove.
 */
void
sup_pidfile_remove(void)
{
	if (pidfile_at_path())
		unlink(pidfile_path);
}

/* In a role just forked: the lock is the supervisor's alone. */
void
sup_pidfile_close(void)
{
	if (pidfile_fd >= 0)
		close(pidfile_fd);
	pidfile_fd = -1;
}
