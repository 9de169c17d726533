/*-------------------------------------------------------------------------
 *
 * cmctl.h
 *	  The control socket's text protocol, declared once.
 *
 * The listener serves CMDATA/conmgr.ctl (roles/listener/control.c) and
 * cm_ctl reads it (cm_ctl/cm_ctl.c); docs/conmgr.md describes it.  A
 * client sends one request line; "status" is answered with one line per
 * configured instance, one per application session and an end line, then
 * end of file.  The listener writes the lines with the _FMT formats below
 * and cm_ctl reads them with the _SCAN ones, so that the two cannot drift
 * apart; a new field goes at the end of its line, where an older cm_ctl
 * ignores it.  Plain text, not the framed protocols of docs/protocol.md:
 * it is internal to one host and one user.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CMCTL_H
#define CMCTL_H

#define CMCTL_SOCKET		"conmgr.ctl"	/* in CMDATA */
#define CMCTL_REQUEST_MAX	63	/* bytes of a request line, newline excluded */
#define CMCTL_STATUS		"status"	/* the request */
#define CMCTL_UNKNOWN		"error unknown command\n"	/* any other */

/* id, state, attrs, since, last_received, downs, timeline, route */
#define CMCTL_INSTANCE_FMT \
	"instance %u state=%s attrs=%u since=%lld last_received=%lld downs=%llu timeline=%u route=%s\n"
/* The fields every conmgr has sent; the later ones are looked for by key. */
#define CMCTL_INSTANCE_SCAN \
	"instance %d state=%31s attrs=%u since=%lld last_received=%lld"
#define CMCTL_TIMELINE_KEY	" timeline="
#define CMCTL_TIMELINE_SCAN " timeline=%u"
#define CMCTL_ROUTE_KEY		" route="
#define CMCTL_ROUTE_SCAN	" route=%31s"
#define CMCTL_DOWNS_KEY		" downs="
#define CMCTL_DOWNS_SCAN	" downs=%llu"

/* peer, client pid, target, state, instance, since */
#define CMCTL_APP_FMT \
	"app peer=%s pid=%u target=%s state=%s instance=%d since=%lld\n"
#define CMCTL_APP_SCAN \
	"app peer=%63s pid=%u target=%31s state=%31s instance=%d since=%lld"

/* a forward port: its port, target and sessions per instance ("0:3,1:0") */
#define CMCTL_FORWARD_FMT	"forward port=%d target=%s sessions=%s\n"
#define CMCTL_FORWARD_SCAN	"forward port=%d target=%31s sessions=%1023s"

#define CMCTL_END_FMT		"end instances=%d apps=%d\n"
#define CMCTL_END			"end "	/* how the last line starts */

#endif							/* CMCTL_H */
