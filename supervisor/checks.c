/*-------------------------------------------------------------------------
 *
 * checks.c
 *	  The supervisor's start-up checks: CMDATA, the open-files limit and
 *	  the heartbeat key.
 *
 * Each runs before anything is forked and stops conmgr with exit code 1
 * and a message naming the problem and its fix.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conmgr.h"
#include "supervisor.h"

void
sup_check_directory(const char *cmdata)
{
	struct stat st;

	if (stat(cmdata, &st) < 0)
		cm_fatal(1, "could not access directory \"%s\": %m", cmdata);
	if (!S_ISDIR(st.st_mode))
		cm_fatal(1, "\"%s\" is not a directory", cmdata);
	if (st.st_uid != geteuid())
		cm_fatal(1, "directory \"%s\" is not owned by the user running conmgr (uid %d)",
				 cmdata, (int) geteuid());
	if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
		cm_fatal_hint(1, "chmod 0700 it.", "directory \"%s\" has group or world access (mode %04o)",
					  cmdata, (unsigned) (st.st_mode & 07777));
}

/*
 * heartbeat_key_file (relative to CMDATA): a regular file only its owner
 * can read, 16 to 1023 bytes once trailing white space is cut.
 */
void
sup_load_key(cm_ctx *ctx)
{
	char		path[4200];
	const char *f = ctx->conf->heartbeat_key_file;
	struct stat st;
	ssize_t		n;
	int			fd;

	if (f[0] == '\0')
		return;
	if (f[0] == '/')
		snprintf(path, sizeof(path), "%s", f);
	else
		snprintf(path, sizeof(path), "%s/%s", ctx->cmdata, f);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		cm_fatal(1, "could not open heartbeat_key_file \"%s\": %m", path);
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		cm_fatal(1, "heartbeat_key_file \"%s\" is not a regular file", path);
	if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
		cm_fatal_hint(1, "chmod 0600 it.", "heartbeat_key_file \"%s\" is accessible to group or others (mode %04o)",
					  path, (unsigned) (st.st_mode & 07777));
	n = read(fd, ctx->key, sizeof(ctx->key));
	close(fd);
	while (n > 0 && (ctx->key[n - 1] == '\n' || ctx->key[n - 1] == '\r' ||
					 ctx->key[n - 1] == ' ' || ctx->key[n - 1] == '\t'))
		n--;
	if (n < 16 || (size_t) n >= sizeof(ctx->key))
		cm_fatal(1, "the key in heartbeat_key_file \"%s\" must be 16 to %zu bytes long",
				 path, sizeof(ctx->key) - 1);
	ctx->keylen = (size_t) n;
}

/*
 * The open-files limit: the soft one is raised to the hard one first.  A
 * soft limit of 1024 protects programs that use select(); conmgr waits with
 * epoll and poll, and holds a descriptor per application session, so it
 * takes what the hard limit allows (as systemd advises such daemons to),
 * then checks that this covers what the configuration needs.
 */
#define NOFILE_HINT "Raise the hard limit (\"ulimit -Hn\", or LimitNOFILE= under systemd)."

void
sup_check_nofile(const struct cmconf *conf)
{
	struct rlimit rl;
	int			need = cmconf_nofile_needed(conf);

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max)
	{
		rlim_t		was = rl.rlim_cur;

		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
			cm_log(CMLOG_DEBUG1, "open-files limit raised from %llu to the hard limit, %llu",
				   (unsigned long long) was, (unsigned long long) rl.rlim_max);
		else
			cm_log(CMLOG_DEBUG1, "could not raise the open-files limit from %llu to %llu: %m",
				   (unsigned long long) was, (unsigned long long) rl.rlim_max);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
		rl.rlim_cur < (rlim_t) need)
	{
		if (conf->forward_ports.n > 0)
			cm_fatal_hint(1, NOFILE_HINT,
						  "open-files limit %llu is too low: conmgr's forwarder needs %d "
						  "(%d + %d instances x 2 + 2 per forward port and listen address + max_connections %d x 6)",
						  (unsigned long long) rl.rlim_cur, need, CMCONF_FW_FIXED_FILES, conf->ninstances,
						  conf->max_connections);
		cm_fatal_hint(1, NOFILE_HINT,
					  "open-files limit %llu is too low: conmgr needs %d "
					  "(9 + %d instances x 2 + max_connections %d)",
					  (unsigned long long) rl.rlim_cur, need, conf->ninstances,
					  conf->max_connections);
	}
}
