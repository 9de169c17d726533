/*-------------------------------------------------------------------------
 *
 * errtext.c
 *	  Appending to a connection's error message; see errtext.h.
 *
 *-------------------------------------------------------------------------
 */
#include <stdarg.h>
#include <stdio.h>

#include "errtext.h"

void
cm_text_reset(cm_text *t)
{
	t->len = 0;
	t->buf[0] = '\0';
}

/*
 * Append a formatted message.  What does not fit is cut, and once the text
 * is full nothing more is added: the text is always the first
 * CM_ERRBUF_SIZE - 1 bytes of everything appended to it.
 */
void
cm_text_appendf(cm_text *t, const char *fmt,...)
{
	va_list		ap;
	int			n;

	if (t->len >= sizeof(t->buf) - 1)
		return;
	va_start(ap, fmt);
	n = vsnprintf(t->buf + t->len, sizeof(t->buf) - t->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		t->len += (size_t) n;
	if (t->len >= sizeof(t->buf))
		t->len = sizeof(t->buf) - 1;
}

/*
 * libpq's words for a destination it could not connect to, named by host,
 * or by hostaddr when host is empty (as the application gave them); addr
 * is the numeric address tried, or NULL to leave the address out.
 */
void
cm_text_failed(cm_text *t, const char *host, const char *hostaddr,
			   const char *addr, const char *port, const char *why)
{
	const char *name = host[0] ? host : hostaddr;

	if (addr != NULL)
		cm_text_appendf(t, "connection to server at \"%s\" (%s), port %s failed: %s\n",
						name, addr, port, why);
	else
		cm_text_appendf(t, "connection to server at \"%s\", port %s failed: %s\n",
						name, port, why);
}
