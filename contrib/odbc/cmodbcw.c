/*-------------------------------------------------------------------------
 *
 * cmodbcw.c
 *	  An ODBC driver for unixODBC that is psqlODBC through conmgr.
 *
 * psqlODBC reaches conmgr well through libpq-cm, but it answers
 * SQLGetInfo(SQL_SERVER_NAME) from its own copy of the Servername it was
 * given, so an application would be told "localhost" (conmgr) instead of
 * the instance it reached.  This driver fixes that without a change to
 * psqlODBC.  It is a shared object whose dependencies are, in this order,
 * libpq-cm.so.1 and psqlodbcw.so:
 *
 *	 - unixODBC looks every driver function up with dlsym() on the handle
 *	   of the driver it loaded, and dlsym() on a handle searches the object
 *	   and then its dependencies.  The few functions defined here are found
 *	   first; every other one is psqlODBC's own, called directly.
 *	 - psqlODBC's calls to libpq bind to the first definition in the
 *	   program's global scope and then in this driver's dependencies, which
 *	   is libpq-cm.so.1: no LD_PRELOAD is needed (unless the program itself
 *	   links libpq, see docs/drivers.md).
 *
 * The functions defined here are the connect functions, which note where
 * libpq-cm says the connection landed (PQcmLastInstance()), SQLGetInfo(W),
 * which answers SQL_SERVER_NAME from that note, and SQLDisconnect and
 * SQLFreeHandle, which drop it.  Each calls psqlODBC's function of the same
 * name, found with dlsym(RTLD_NEXT): the next definition after this object
 * in its own dependency order.
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sql.h>
#include <sqlext.h>
#include <sqlucode.h>

#include "libpq-cm.h"

/* Where a connection handle's connection landed, for SQL_SERVER_NAME. */
typedef struct landing
{
	struct landing *next;
	SQLHDBC		dbc;
	char		host[256];
} landing;

static pthread_mutex_t landings_lock = PTHREAD_MUTEX_INITIALIZER;
static landing *landings;

/*
 * psqlODBC's definition of "name", or a message on stderr and abort():
 * without it this object is not the driver it claims to be (built against
 * another psqlODBC).
 */
#define NEXT(name) \
	({ \
		static void *next_slot_; \
		void	   *next_p_ = __atomic_load_n(&next_slot_, __ATOMIC_ACQUIRE); \
		if (next_p_ == NULL) \
			next_p_ = next_lookup(#name, &next_slot_); \
		(__typeof__(&name)) next_p_; \
	})

static void *
next_lookup(const char *name, void **slot)
{
	void	   *p = dlsym(RTLD_NEXT, name);

	if (p == NULL)
	{
		fprintf(stderr, "cmodbcw: psqlODBC's %s was not found: %s\n", name, dlerror());
		abort();
	}
	__atomic_store_n(slot, p, __ATOMIC_RELEASE);
	return p;
}

/* Forget what we noted of dbc. */
static void
landing_drop(SQLHDBC dbc)
{
	landing   **pp;

	pthread_mutex_lock(&landings_lock);
	for (pp = &landings; *pp; pp = &(*pp)->next)
	{
		if ((*pp)->dbc == dbc)
		{
			landing    *l = *pp;

			*pp = l->next;
			free(l);
			break;
		}
	}
	pthread_mutex_unlock(&landings_lock);
}

/*
 * After a connect function returned rc for dbc: if libpq-cm completed a
 * connection through conmgr in this thread since it said "before", note the
 * instance's host.  Out of memory leaves psqlODBC's own answer in place.
 */
static SQLRETURN
landing_note(SQLHDBC dbc, SQLRETURN rc, unsigned long before)
{
	const char *host;
	landing    *l;

	landing_drop(dbc);
	if (!SQL_SUCCEEDED(rc) || PQcmLastInstance(&host, NULL) == before || host == NULL)
		return rc;
	if ((l = calloc(1, sizeof(*l))) == NULL)
		return rc;
	l->dbc = dbc;
	snprintf(l->host, sizeof(l->host), "%s", host);
	pthread_mutex_lock(&landings_lock);
	l->next = landings;
	landings = l;
	pthread_mutex_unlock(&landings_lock);
	return rc;
}

/* Copy dbc's noted host into buf; false when nothing is noted. */
static bool
landing_host(SQLHDBC dbc, char *buf, size_t len)
{
	bool		found = false;

	pthread_mutex_lock(&landings_lock);
	for (landing *l = landings; l; l = l->next)
	{
		if (l->dbc == dbc)
		{
			snprintf(buf, len, "%s", l->host);
			found = true;
			break;
		}
	}
	pthread_mutex_unlock(&landings_lock);
	return found;
}

/*
 * A string answer of SQLGetInfo, as ODBC says: *len is the whole length in
 * bytes (without the terminator); truncated to the buffer, terminated, and
 * SQL_SUCCESS_WITH_INFO if it did not fit.  wide: SQLWCHAR units (the
 * host is plain ASCII, a name or an address).
 */
static SQLRETURN
info_string(const char *s, bool wide, SQLPOINTER value, SQLSMALLINT buflen, SQLSMALLINT *len)
{
	size_t		n = strlen(s);
	size_t		unit = wide ? sizeof(SQLWCHAR) : 1;
	size_t		room = buflen > 0 ? (size_t) buflen / unit : 0;
	size_t		copy = room > 0 ? (n < room ? n : room - 1) : 0;

	if (len)
		*len = (SQLSMALLINT) (n * unit);
	if (value && room > 0)
	{
		for (size_t i = 0; i < copy; i++)
		{
			if (wide)
				((SQLWCHAR *) value)[i] = (SQLWCHAR) (unsigned char) s[i];
			else
				((char *) value)[i] = s[i];
		}
		if (wide)
			((SQLWCHAR *) value)[copy] = 0;
		else
			((char *) value)[copy] = '\0';
	}
	return value && copy < n ? SQL_SUCCESS_WITH_INFO : SQL_SUCCESS;
}

SQLRETURN	SQL_API
SQLConnect(SQLHDBC dbc, SQLCHAR *dsn, SQLSMALLINT dsnlen, SQLCHAR *uid, SQLSMALLINT uidlen,
		   SQLCHAR *auth, SQLSMALLINT authlen)
{
	unsigned long before = PQcmLastInstance(NULL, NULL);

	return landing_note(dbc, NEXT(SQLConnect) (dbc, dsn, dsnlen, uid, uidlen, auth, authlen), before);
}

SQLRETURN	SQL_API
SQLConnectW(SQLHDBC dbc, SQLWCHAR *dsn, SQLSMALLINT dsnlen, SQLWCHAR *uid, SQLSMALLINT uidlen,
			SQLWCHAR *auth, SQLSMALLINT authlen)
{
	unsigned long before = PQcmLastInstance(NULL, NULL);

	return landing_note(dbc, NEXT(SQLConnectW) (dbc, dsn, dsnlen, uid, uidlen, auth, authlen), before);
}

SQLRETURN	SQL_API
SQLDriverConnect(SQLHDBC dbc, SQLHWND hwnd, SQLCHAR *in, SQLSMALLINT inlen, SQLCHAR *out,
				 SQLSMALLINT outmax, SQLSMALLINT *outlen, SQLUSMALLINT completion)
{
	unsigned long before = PQcmLastInstance(NULL, NULL);

	return landing_note(dbc, NEXT(SQLDriverConnect) (dbc, hwnd, in, inlen, out, outmax, outlen, completion),
						before);
}

SQLRETURN	SQL_API
SQLDriverConnectW(SQLHDBC dbc, SQLHWND hwnd, SQLWCHAR *in, SQLSMALLINT inlen, SQLWCHAR *out,
				  SQLSMALLINT outmax, SQLSMALLINT *outlen, SQLUSMALLINT completion)
{
	unsigned long before = PQcmLastInstance(NULL, NULL);

	return landing_note(dbc, NEXT(SQLDriverConnectW) (dbc, hwnd, in, inlen, out, outmax, outlen, completion),
						before);
}

SQLRETURN	SQL_API
SQLBrowseConnect(SQLHDBC dbc, SQLCHAR *in, SQLSMALLINT inlen, SQLCHAR *out, SQLSMALLINT outmax,
				 SQLSMALLINT *outlen)
{
	unsigned long before = PQcmLastInstance(NULL, NULL);

	return landing_note(dbc, NEXT(SQLBrowseConnect) (dbc, in, inlen, out, outmax, outlen), before);
}

SQLRETURN	SQL_API
SQLBrowseConnectW(SQLHDBC dbc, SQLWCHAR *in, SQLSMALLINT inlen, SQLWCHAR *out, SQLSMALLINT outmax,
				  SQLSMALLINT *outlen)
{
	unsigned long before = PQcmLastInstance(NULL, NULL);

	return landing_note(dbc, NEXT(SQLBrowseConnectW) (dbc, in, inlen, out, outmax, outlen), before);
}

SQLRETURN	SQL_API
SQLGetInfo(SQLHDBC dbc, SQLUSMALLINT type, SQLPOINTER value, SQLSMALLINT buflen, SQLSMALLINT *len)
{
	char		host[256];

	if (type == SQL_SERVER_NAME && landing_host(dbc, host, sizeof(host)))
		return info_string(host, false, value, buflen, len);
	return NEXT(SQLGetInfo) (dbc, type, value, buflen, len);
}

SQLRETURN	SQL_API
SQLGetInfoW(SQLHDBC dbc, SQLUSMALLINT type, SQLPOINTER value, SQLSMALLINT buflen, SQLSMALLINT *len)
{
	char		host[256];

	if (type == SQL_SERVER_NAME && landing_host(dbc, host, sizeof(host)))
		return info_string(host, true, value, buflen, len);
	return NEXT(SQLGetInfoW) (dbc, type, value, buflen, len);
}

SQLRETURN	SQL_API
SQLDisconnect(SQLHDBC dbc)
{
	SQLRETURN	rc = NEXT(SQLDisconnect) (dbc);

	if (SQL_SUCCEEDED(rc))
		landing_drop(dbc);
	return rc;
}

/*
 * Dropped once psqlODBC has freed it (it refuses a handle still connected,
 * which keeps its note).
 */
SQLRETURN	SQL_API
SQLFreeHandle(SQLSMALLINT type, SQLHANDLE handle)
{
	SQLRETURN	rc = NEXT(SQLFreeHandle) (type, handle);

	if (type == SQL_HANDLE_DBC && SQL_SUCCEEDED(rc))
		landing_drop(handle);
	return rc;
}
