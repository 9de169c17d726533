/*-------------------------------------------------------------------------
 *
 * cmodbc.c
 *	  An ODBC program (unixODBC) that reaches an instance through conmgr.
 *	  It is an ordinary ODBC program: name the driver cmodbcw.so (psqlODBC
 *	  with libpq-cm under it, this directory) in the connection string or
 *	  the DSN.  The example of docs/drivers.md and the test program of
 *	  regress/t/081_odbc.t.
 *
 *	 cmodbc connect CONNSTR      SQLDriverConnect, say where it landed
 *	 cmodbc block CONNSTR SQL    connect, then run SQL and say how it ended
 *
 * CONNSTR, e.g.
 *	 Driver=/usr/local/lib/conmgr/cmodbcw.so;Servername=localhost;
 *	 Port=27546;Database=app;pqopt={target_session_attrs=read-write}
 *
 * Output lines:
 *	 connected server_name=N server_name_w=N port=P addr=A recovery=t|f
 *			   short=S/RC/LEN (SQL_SERVER_NAME into a 4-byte buffer)
 *	 running
 *	 result rc=N elapsed=SECONDS dead=yes|no|? sqlstate=S message=M
 *	 failed sqlstate=S message=M
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <sql.h>
#include <sqlext.h>
#include <sqlucode.h>

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The first diagnostic record of a handle: "sqlstate=S message=M". */
static void
print_diag(SQLSMALLINT type, SQLHANDLE handle)
{
	SQLCHAR		state[6] = "";
	SQLCHAR		msg[1024] = "";
	SQLINTEGER	native;
	SQLSMALLINT len;

	if (!SQL_SUCCEEDED(SQLGetDiagRec(type, handle, 1, state, &native, msg, sizeof(msg), &len)))
		strcpy((char *) state, "none");
	printf("sqlstate=%s message=", state);
	for (SQLCHAR *p = msg; *p; p++)
		putchar(*p == '\n' ? ' ' : *p);
	putchar('\n');
}

int
main(int argc, char **argv)
{
	SQLHENV		env;
	SQLHDBC		dbc;
	SQLHSTMT	stmt;
	SQLCHAR		server[256] = "";
	SQLWCHAR	wserver[256] = {0};
	char		server_w[256] = "";
	SQLCHAR		shortbuf[4] = "";
	char		shortinfo[32];
	SQLCHAR		out[1024];
	char		port[16] = "",
				addr[64] = "",
				recovery[8] = "";
	SQLSMALLINT len;
	SQLLEN		ind;
	SQLRETURN	rc;

	if (argc < 3 || (strcmp(argv[1], "connect") != 0 && strcmp(argv[1], "block") != 0) ||
		(strcmp(argv[1], "block") == 0 && argc != 4))
	{
		fprintf(stderr, "usage: cmodbc connect CONNSTR | cmodbc block CONNSTR SQL\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);

	SQLAllocHandle(SQL_HANDLE_ENV, SQL_NULL_HANDLE, &env);
	SQLSetEnvAttr(env, SQL_ATTR_ODBC_VERSION, (SQLPOINTER) SQL_OV_ODBC3, 0);
	SQLAllocHandle(SQL_HANDLE_DBC, env, &dbc);
	rc = SQLDriverConnect(dbc, NULL, (SQLCHAR *) argv[2], SQL_NTS,
						  out, sizeof(out), &len, SQL_DRIVER_NOPROMPT);
	if (!SQL_SUCCEEDED(rc))
	{
		printf("failed ");
		print_diag(SQL_HANDLE_DBC, dbc);
		return 1;
	}

	/*
	 * Manual 3.4.1: the instance reached (cmodbcw.so), or the Servername
	 * given (psqlodbcw.so alone).  Asked in both forms: a Unicode
	 * application's driver manager calls SQLGetInfoW.
	 */
	SQLGetInfo(dbc, SQL_SERVER_NAME, server, sizeof(server), &len);
	rc = SQLGetInfo(dbc, SQL_SERVER_NAME, shortbuf, sizeof(shortbuf), &len);
	snprintf(shortinfo, sizeof(shortinfo), "%s/%d/%d", shortbuf, (int) rc, (int) len);
	if (SQL_SUCCEEDED(SQLGetInfoW(dbc, SQL_SERVER_NAME, wserver, sizeof(wserver), &len)))
	{
		for (size_t i = 0; i < sizeof(server_w) - 1 && wserver[i]; i++)
			server_w[i] = wserver[i] < 128 ? (char) wserver[i] : '?';
	}

	SQLAllocHandle(SQL_HANDLE_STMT, dbc, &stmt);
	rc = SQLExecDirect(stmt, (SQLCHAR *)
					   "SELECT inet_server_port(), host(inet_server_addr()), pg_is_in_recovery()::text",
					   SQL_NTS);
	if (!SQL_SUCCEEDED(rc) || !SQL_SUCCEEDED(SQLFetch(stmt)))
	{
		printf("failed ");
		print_diag(SQL_HANDLE_STMT, stmt);
		return 1;
	}
	SQLGetData(stmt, 1, SQL_C_CHAR, port, sizeof(port), &ind);
	SQLGetData(stmt, 2, SQL_C_CHAR, addr, sizeof(addr), &ind);
	SQLGetData(stmt, 3, SQL_C_CHAR, recovery, sizeof(recovery), &ind);
	SQLCloseCursor(stmt);
	printf("connected server_name=%s server_name_w=%s port=%s addr=%s recovery=%c short=%s\n",
		   server, server_w, port, addr, recovery[0], shortinfo);

	if (strcmp(argv[1], "block") == 0)
	{
		double		t0;
		SQLUINTEGER dead = 0;
		const char *deadstr = "?";

		printf("running\n");
		t0 = now_s();
		rc = SQLExecDirect(stmt, (SQLCHAR *) argv[3], SQL_NTS);
		printf("result rc=%d elapsed=%.3f ", (int) rc, now_s() - t0);
		if (SQL_SUCCEEDED(SQLGetConnectAttr(dbc, SQL_ATTR_CONNECTION_DEAD, &dead, 0, NULL)))
			deadstr = dead == SQL_CD_TRUE ? "yes" : "no";
		printf("dead=%s ", deadstr);
		print_diag(SQL_HANDLE_STMT, stmt);
	}
	SQLFreeHandle(SQL_HANDLE_STMT, stmt);
	SQLDisconnect(dbc);
	SQLFreeHandle(SQL_HANDLE_DBC, dbc);
	SQLFreeHandle(SQL_HANDLE_ENV, env);
	return 0;
}
