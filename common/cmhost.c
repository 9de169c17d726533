/*-------------------------------------------------------------------------
 *
 * cmhost.c
 *	  Host names and numeric addresses (see cmhost.h).
 *
 *-------------------------------------------------------------------------
 */
#include <arpa/inet.h>

#include "cmhost.h"

/* A numeric IPv4 or IPv6 address, as inet_pton() reads it (no zone). */
bool
cmhost_is_numeric(const char *s)
{
	unsigned char buf[16];

	return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/*
 * A DNS name: labels of letters, digits, hyphens and underscores, 1..63
 * long.  Nothing else: no comma (a host list), slash or at sign (a socket
 * directory or abstract socket to libpq), blank or control character.
 */
bool
cmhost_is_name(const char *s)
{
	int			label = 0;

	for (const char *p = s; *p; p++)
	{
		if (*p == '.')
		{
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			  (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
			return false;
		if (++label > 63)
			return false;
	}
	return s[0] != '\0';
}
