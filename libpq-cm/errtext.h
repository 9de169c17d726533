/*-------------------------------------------------------------------------
 *
 * errtext.h
 *	  The text of a connection's error message, built as libpq builds its
 *	  own: messages appended in order, each ending in a newline, the whole
 *	  cut at a fixed size.
 *
 * The connection's message (PQerrorMessage()) and the error text of each
 * step of the probe and the resolve (probe.c) are cm_texts: a step returns
 * its text, and the connect state machine (connect.c) appends it to the
 * connection's.  Appending a text that was itself cut to the same size
 * gives the same bytes as appending its messages one by one, so the
 * message does not depend on who wrote which part.
 *
 * No libpq and no connection here: errtext.c is pure and has a unit test
 * (regress/unit/test_errtext.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CM_ERRTEXT_H
#define CM_ERRTEXT_H

#include <stddef.h>

#define CM_ERRBUF_SIZE		4096

typedef struct cm_text
{
	size_t		len;			/* strlen(buf), at most CM_ERRBUF_SIZE - 1 */
	char		buf[CM_ERRBUF_SIZE];
} cm_text;

/* errtext.c */
extern void cm_text_reset(cm_text *t);
extern void cm_text_appendf(cm_text *t, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));
extern void cm_text_failed(cm_text *t, const char *host,
						   const char *hostaddr, const char *addr,
						   const char *port, const char *why);

#endif							/* CM_ERRTEXT_H */
