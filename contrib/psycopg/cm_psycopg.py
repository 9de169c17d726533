#!/usr/bin/python3
"""psycopg 3 (Debian's python3-psycopg, pure-Python libpq binding) through
conmgr, with libpq-cm's drop-in libpq.so.5 found first:

    LD_LIBRARY_PATH=/usr/local/lib/libpq-cm python3 cm_psycopg.py MODE ...

The example of docs/drivers.md and the test program of
regress/t/082_psycopg.t.

    cm_psycopg.py connect CONNINFO        psycopg.connect()
    cm_psycopg.py aconnect CONNINFO       psycopg.AsyncConnection.connect()
    cm_psycopg.py block CONNINFO SQL      connect, run SQL, say how it ended
    cm_psycopg.py ablock CONNINFO SQL     the same with AsyncConnection
    cm_psycopg.py info CONNINFO           ConnectionInfo of a connection just
                                          started (PGconn.connect_start())

Output lines:
    connected mode=M host=H hostaddr=A port=P recovery=t|f libpq=PATH
    running
    result error=CLASS elapsed=SECONDS closed=True|False message=M
    failed error=CLASS message=M
    info password=P dbname=D parameters_dbname=D parameters_password=yes|no
         dsn=DSN
"""
import asyncio
import sys
import time

import psycopg

QUERY = "SELECT pg_is_in_recovery()"


def libpq_path():
    """The libpq.so.5 this process loaded (the drop-in or the real one)."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            if line.rstrip().endswith("/libpq.so.5"):
                return line.split()[-1]
    return "none"


def flat(text):
    return " ".join(str(text).split())


def say_connected(mode, conn, recovery):
    info = conn.info
    print("connected mode=%s host=%s hostaddr=%s port=%s recovery=%s libpq=%s"
          % (mode, info.host, info.hostaddr, info.port, "t" if recovery else "f",
             libpq_path()), flush=True)


def say_result(conn, t0, exc):
    print("result error=%s elapsed=%.3f closed=%s message=%s"
          % (type(exc).__name__ if exc else "none", time.monotonic() - t0,
             conn.closed, flat(exc) if exc else ""), flush=True)


def run_sync(mode, conninfo, sql):
    conn = psycopg.connect(conninfo, autocommit=True)
    say_connected(mode, conn, conn.execute(QUERY).fetchone()[0])
    if sql is not None:
        print("running", flush=True)
        t0, exc = time.monotonic(), None
        try:
            conn.execute(sql)
        except psycopg.Error as e:
            exc = e
        say_result(conn, t0, exc)
    conn.close()


async def run_async(mode, conninfo, sql):
    conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
    cur = await conn.execute(QUERY)
    say_connected(mode, conn, (await cur.fetchone())[0])
    if sql is not None:
        print("running", flush=True)
        t0, exc = time.monotonic(), None
        try:
            await conn.execute(sql)
        except psycopg.Error as e:
            exc = e
        say_result(conn, t0, exc)
    await conn.close()


def run_info(conninfo):
    # What psycopg's own test_conninfo.py (test_no_password,
    # test_dsn_no_password) asks of a connection that is still connecting.
    pgconn = psycopg.pq.PGconn.connect_start(conninfo.encode())
    try:
        info = psycopg.ConnectionInfo(pgconn)
        params = info.get_parameters()
        print("info password=%s dbname=%s parameters_dbname=%s "
              "parameters_password=%s dsn=%s"
              % (info.password, info.dbname, params.get("dbname"),
                 "yes" if "password" in params else "no", flat(info.dsn)),
              flush=True)
    finally:
        pgconn.finish()


def main(argv):
    modes = {"connect": 3, "aconnect": 3, "block": 4, "ablock": 4, "info": 3}
    if len(argv) < 2 or modes.get(argv[1]) != len(argv):
        print(__doc__, file=sys.stderr)
        return 2
    mode, conninfo = argv[1], argv[2]
    sql = argv[3] if len(argv) > 3 else None
    try:
        if mode == "info":
            run_info(conninfo)
        elif mode.startswith("a"):
            asyncio.run(run_async(mode, conninfo, sql))
        else:
            run_sync(mode, conninfo, sql)
    except psycopg.Error as e:
        print("failed error=%s message=%s" % (type(e).__name__, flat(e)), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
