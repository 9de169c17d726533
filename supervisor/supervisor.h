/*-------------------------------------------------------------------------
 *
 * supervisor.h
 *	  What the supervisor's files share; roles include conmgr.h only.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SUPERVISOR_H
#define SUPERVISOR_H

#include "conmgr.h"

/* checks.c */
extern void sup_check_directory(const char *cmdata);
extern void sup_check_nofile(const struct cmconf *conf);
extern void sup_load_key(cm_ctx *ctx);

/* reload.c */
extern void sup_publish_log_settings(const struct cmconf *conf, shm_header *shm);
extern void sup_reload(const char *cmdata, struct cmconf *conf, shm_header *shm);

/* pidfile.c */
extern void sup_pidfile_take(const char *cmdata, int port);
extern void sup_pidfile_status(const char *status);
extern void sup_pidfile_remove(void);
extern void sup_pidfile_close(void);

#endif							/* SUPERVISOR_H */
