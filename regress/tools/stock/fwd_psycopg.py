"""fwd_psycopg: python3-psycopg as installed (Debian's, on the system's
libpq), through a conmgr forward port (regress/t/087_forward_stock_clients.t,
regress/root/071_forward_blackhole.t).

    python3 fwd_psycopg.py where PORT    prints "where port=N recovery=t|f
                                         addr=A"
    python3 fwd_psycopg.py block PORT    prints "running", then how a
                                         statement blocked in pg_sleep(60)
                                         ended: "result sqlstate=S
                                         elapsed=SECONDS message=..."
"""
import sys
import time

import psycopg


def connect(port):
    return psycopg.connect(f"host=127.0.0.1 port={port} dbname=postgres connect_timeout=10")


def main(mode, port):
    conn = connect(port)
    if mode == "where":
        port_, rec, addr = conn.execute(
            "SELECT inet_server_port(), pg_is_in_recovery(), host(inet_server_addr())").fetchone()
        print(f"where port={port_} recovery={'t' if rec else 'f'} addr={addr} "
              f"libpq={psycopg.pq.__impl__}:{psycopg.pq.version()}")
        conn.close()
        return
    print("running", flush=True)
    t0 = time.monotonic()
    state, cls, msg = "none", "none", ""
    try:
        conn.execute("SELECT pg_sleep(60)")
    except psycopg.Error as e:
        state, cls, msg = e.sqlstate or "none", type(e).__name__, str(e)
    line = (f"result sqlstate={state} elapsed={time.monotonic() - t0:.3f} class={cls} "
            f"closed={conn.closed} message={msg}")
    print(line.replace("\n", " "), flush=True)


main(sys.argv[1], sys.argv[2])
