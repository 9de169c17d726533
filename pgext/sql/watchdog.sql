-- The SQL surface of the watchdog extension, with the library preloaded
-- (pgext/regress.conf).  Sessions themselves are tested by
-- regress/t/020_watchdog.t; here no conmgr is connected.

CREATE EXTENSION watchdog;

-- The view's columns, names, types and order.
SELECT attnum, attname, atttypid::regtype
  FROM pg_attribute
 WHERE attrelid = 'pgx_stat_watchdog'::regclass AND attnum > 0
 ORDER BY attnum;

SELECT count(*) AS sessions FROM pgx_stat_watchdog;

-- The worker's view: one row, its columns, the worker's pid.
SELECT attnum, attname, atttypid::regtype
  FROM pg_attribute
 WHERE attrelid = 'pgx_stat_watchdog_worker'::regclass AND attnum > 0
 ORDER BY attnum;
-- The worker wakes up at least once a check_attr_interval (1 s): wait for
-- its first wake-up, up to 10 s, as a fast server start may be queried first.
DO $$
BEGIN
  FOR i IN 1..100 LOOP
    EXIT WHEN (SELECT wakeups FROM pgx_stat_watchdog_worker) > 0;
    PERFORM pg_sleep(0.1);
  END LOOP;
END
$$;
SELECT w.pid = a.pid AS worker_pid, w.wakeups > 0 AS woke_up,
       w.sessions_lost, w.backends_terminated
  FROM pgx_stat_watchdog_worker w, pg_stat_activity a
 WHERE a.backend_type = 'watchdog';

-- The workers run, under their own names.
SELECT backend_type, count(*)
  FROM pg_stat_activity
 WHERE backend_type LIKE 'watchdog%'
 GROUP BY backend_type ORDER BY backend_type;

-- GUCs: their values and their limits.
SHOW watchdog.port;
SHOW watchdog.check_attr_interval;
SHOW watchdog.max_heartbeat_connections;
SELECT name, setting, unit, context, min_val, max_val
  FROM pg_settings WHERE name LIKE 'watchdog.%' ORDER BY name;
ALTER SYSTEM SET watchdog.check_attr_interval = 0;
ALTER SYSTEM SET watchdog.check_attr_interval = '-5';
ALTER SYSTEM SET watchdog.check_attr_interval = 'often';
ALTER SYSTEM SET watchdog.port = 0;
ALTER SYSTEM SET watchdog.port = 65536;
ALTER SYSTEM SET watchdog.max_heartbeat_connections = -2;
ALTER SYSTEM SET watchdog.max_heartbeat_connections = 1073741824;
ALTER SYSTEM SET watchdog.max_sessions_per_address = -1;
ALTER SYSTEM SET watchdog.no_such_setting = 1;

-- watchdog.allowed_addresses: IPv4 and IPv6 networks, each checked.
SHOW watchdog.max_sessions_per_address;
SHOW watchdog.allowed_addresses;
ALTER SYSTEM SET watchdog.allowed_addresses = '10.0.0.0/8, 192.168.1.7, fd00::/8, ::1';
ALTER SYSTEM SET watchdog.allowed_addresses = '';
ALTER SYSTEM SET watchdog.allowed_addresses = '10.0.0.0/33';
ALTER SYSTEM SET watchdog.allowed_addresses = '::1/129';
ALTER SYSTEM SET watchdog.allowed_addresses = '10.0.0.0/';
ALTER SYSTEM SET watchdog.allowed_addresses = '10.0.0.0/8x';
ALTER SYSTEM SET watchdog.allowed_addresses = '10.0.0.0/-1';
ALTER SYSTEM SET watchdog.allowed_addresses = '127.0.0.1, db.example.com';
ALTER SYSTEM SET watchdog.allowed_addresses = '10.0.0.0/8,,10.1.0.0/16';
ALTER SYSTEM SET watchdog.allowed_addresses = '"10.0.0.0/8';
SET watchdog.allowed_addresses = '127.0.0.1';
SET watchdog.check_attr_interval = 500;
SET watchdog.port = 1234;
ALTER SYSTEM RESET ALL;

-- Only privileged roles may read the client host addresses.
CREATE ROLE wd_nobody;
SET ROLE wd_nobody;
SELECT * FROM pgx_stat_watchdog;
SELECT * FROM pgx_stat_watchdog_worker;
RESET ROLE;
GRANT pg_read_all_stats TO wd_nobody;
SET ROLE wd_nobody;
SELECT count(*) FROM pgx_stat_watchdog;
SELECT count(*) FROM pgx_stat_watchdog_worker;
RESET ROLE;
DROP ROLE wd_nobody;

DROP EXTENSION watchdog;
SELECT count(*) FROM pg_class WHERE relname LIKE 'pgx_stat_watchdog%';
