/*-------------------------------------------------------------------------
 *
 * cmhost.h
 *	  What counts as a host name or a numeric address, for conmgr.conf's
 *	  backend_host* and libpq-cm's check of the candidates conmgr names.
 *
 * One definition for both ends: conmgr hands applications only what its
 * configuration accepted, and libpq-cm refuses anything else, so a peer
 * that answers like conmgr cannot smuggle a host list, a socket directory
 * or a connection string into the application's options.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CMHOST_H
#define CMHOST_H

#include <stdbool.h>

extern bool cmhost_is_numeric(const char *s);
extern bool cmhost_is_name(const char *s);

#endif							/* CMHOST_H */
