/*-------------------------------------------------------------------------
 *
 * cm_ctl.h
 *	  What cm_ctl's files share.
 *
 * cm_ctl.c: the command line, start, stop, reload, logrotate, the pid
 * file; status.c: status.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CM_CTL_H
#define CM_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "cmconf.h"

extern const char *progname;
extern const char *cmdata;
extern struct cmconf conf;		/* conmgr.conf, once load_conf() read it */

/* cm_ctl.c */
extern double now_s(void);
extern int	ms_left(double deadline);
extern pid_t running_pid(void);
extern void pidfile_line(int n, char *out, size_t len);
extern bool load_conf(void);

/* status.c */
extern int	do_status(const char *info, bool json, int timeout);

#endif							/* CM_CTL_H */
