/*-------------------------------------------------------------------------
 *
 * reload.c
 *	  SIGHUP in the supervisor: conmgr.conf read again.
 *
 * A file with errors is reported and changes nothing.  Otherwise the
 * parameters that may change at run time (the logging ones, marked in
 * cmconf_param.c's table) are taken over and published in the shared table,
 * where every role reads them; each other parameter that differs is named
 * in the log as needing a restart and keeps its value.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include "conmgr.h"
#include "supervisor.h"

/* Put the reloadable logging settings where every process reads them. */
void
sup_publish_log_settings(const struct cmconf *conf, shm_header *shm)
{
	shm_logconf lc;

	memset(&lc, 0, sizeof(lc));
	lc.log_min_messages = conf->log_min_messages;
	lc.log_destination = conf->log_destination;
	lc.syslog_facility = conf->syslog_facility;
	snprintf(lc.syslog_ident, sizeof(lc.syslog_ident), "%s", conf->syslog_ident);
	shm_logconf_publish(&shm->logconf, &lc);
}

typedef struct reload_tally
{
	int			applied;
	int			kept;
} reload_tally;

static void
reload_change(void *arg, const char *name, const char *oldval,
			  const char *newval, bool reloadable)
{
	reload_tally *t = arg;

	if (oldval[0] == '\0')
		oldval = "(not set)";
	if (newval[0] == '\0')
		newval = "(not set)";
	if (reloadable)
	{
		cm_log(CMLOG_LOG, "parameter \"%s\" changed from \"%s\" to \"%s\"",
			   name, oldval, newval);
		t->applied++;
		return;
	}
	cm_log(CMLOG_LOG, "parameter \"%s\" needs a restart to change; keeping \"%s\" "
		   "(%s now says \"%s\")", name, oldval, CMCONF_FILENAME, newval);
	t->kept++;
}

/*
 * SIGHUP: read conmgr.conf again.  All or nothing for a file with errors;
 * otherwise the reloadable parameters are taken over, the others keep the
 * value conmgr started with and are named.  conf is the supervisor's own
 * struct: roles restarted later get the reloaded logging settings too.
 * The logging settings go to shm, where every role reads them.
 */
void
sup_reload(const char *cmdata, struct cmconf *conf, shm_header *shm)
{
	static struct cmconf newconf;
	static struct cmconf before;
	static struct cmconf_diags diags;
	reload_tally tally = {0, 0};
	char		path[4200];

	snprintf(path, sizeof(path), "%s/%s", cmdata, CMCONF_FILENAME);
	cm_log(CMLOG_LOG, "received SIGHUP, reloading configuration file \"%s\"", path);
	if (cmconf_load_file(path, &newconf, &diags) != 0)
	{
		/* at LOG, which no log_min_messages but FATAL and PANIC hides */
		for (int i = 0; i < diags.count; i++)
			cm_log(CMLOG_LOG, "%s", diags.d[i].msg);
		if (diags.dropped > 0)
			cm_log(CMLOG_LOG, "%d more problems not shown", diags.dropped);
		cm_log(CMLOG_LOG, "configuration file \"%s\" contains errors; nothing was changed", path);
		return;
	}
	for (int i = 0; i < diags.count; i++)
		cm_log(CMLOG_LOG, "%s", diags.d[i].msg);

	before = *conf;
	cmconf_apply_reloadable(conf, &newconf);
	if (strcmp(before.syslog_ident, conf->syslog_ident) != 0 ||
		before.syslog_facility != conf->syslog_facility ||
		before.log_destination != conf->log_destination)
	{
		/* our own direct lines; the logger re-opens syslog by itself */
		closelog();
		if (conf->log_destination & CMCONF_LOG_SYSLOG)
			cm_syslog_open(conf->syslog_ident, conf->syslog_facility);
	}
	sup_publish_log_settings(conf, shm);
	cmconf_compare(&before, &newconf, reload_change, &tally);
	if (tally.applied + tally.kept == 0)
		cm_log(CMLOG_LOG, "configuration file reloaded: no parameter changed");
	else
		cm_log(CMLOG_LOG, "configuration file reloaded: %d parameters changed, %d applied, "
			   "%d need a restart", tally.applied + tally.kept, tally.applied, tally.kept);
}
