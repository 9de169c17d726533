/*-------------------------------------------------------------------------
 *
 * cmconf_int.h
 *	  conmgr.conf's parameter table, shared by the parser (cmconf.c) and
 *	  the table with its value converters (cmconf_param.c).
 *
 * Not for the daemon's roles, which read struct cmconf (cmconf.h); the
 * unit tests include it to check every row.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CMCONF_INT_H
#define CMCONF_INT_H

#include "cmconf.h"

/* Rows the parser's bookkeeping has room for (a static assertion checks). */
#define CMCONF_MAX_PARAMS		32

typedef enum cmconf_param_type
{
	PT_INT,
	PT_STRING,
	PT_FACILITY,				/* LOCAL0..LOCAL7 */
	PT_LEVEL,					/* a cmlog level name */
	PT_LOGDEST,					/* 'stderr', 'syslog' or both */
	PT_HOST,					/* host name or numeric address */
	PT_HOSTADDR,				/* numeric address only */
	PT_LISTEN,					/* "*" or a list of host names/addresses */
	PT_FORWARD					/* "TARGET=PORT, ..." (struct cmconf_forwards) */
} cmconf_param_type;

/* When a new value takes effect, as PostgreSQL's GucContext. */
typedef enum cmconf_param_context
{
	PC_RESTART,					/* read at start; a reload keeps the old value */
	PC_RELOAD					/* a reload (SIGHUP) applies it */
} cmconf_param_context;

typedef struct cmconf_param
{
	const char *name;
	cmconf_param_type type;
	bool		per_instance;	/* name takes the instance number as suffix */
	size_t		offset;			/* in struct cmconf or cmconf_instance */
	long		min;			/* PT_INT range; PT_STRING length range */
	long		max;
	cmconf_param_context context;
	const char *boot_val;		/* default, as conmgr.conf spells it; "" = not
								 * set */
	const char *desc;			/* one line: what it is for */
} cmconf_param;

extern const cmconf_param cmconf_params[];
extern const int cmconf_nparams;

/* cmconf_show() shows at most CMCONF_SHOW_MAX bytes, each up to \xNN, then "..." */
#define CMCONF_SHOW_MAX		48
#define CMCONF_SHOW_BUF		(CMCONF_SHOW_MAX * 4 + 4)

/* cmconf_param.c */
extern const char *cmconf_show(const char *s, size_t len, char *buf);
extern void *cmconf_param_field(const cmconf_param *par, struct cmconf *conf,
								int instno);
extern bool cmconf_param_store(const cmconf_param *par, const char *name,
							   int instno, const char *value, void *field,
							   char *err, size_t errlen);
extern void cmconf_param_format(const cmconf_param *par, const struct cmconf *conf,
								int instno, char *buf, size_t cap);
extern bool cmconf_param_quoted(const cmconf_param *par);
extern bool cmconf_param_names_instance(const cmconf_param *par);

#endif							/* CMCONF_INT_H */
