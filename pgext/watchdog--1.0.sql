/* pgext/watchdog--1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION watchdog" to load this file. \quit

CREATE FUNCTION pgx_stat_watchdog(
    OUT conmgr_addr inet,
    OUT conmgr_port integer,
    OUT heartbeat_interval integer,
    OUT heartbeat_timeout integer,
    OUT connected_since timestamptz,
    OUT last_heartbeat_received timestamptz,
    OUT last_heartbeat_sent timestamptz,
    OUT authenticated boolean,
    OUT frames_received bigint,
    OUT heartbeats_sent bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pgx_stat_watchdog'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

CREATE VIEW pgx_stat_watchdog AS
    SELECT * FROM pgx_stat_watchdog();

CREATE FUNCTION pgx_stat_watchdog_worker(
    OUT pid integer,
    OUT wakeups bigint,
    OUT timers_run bigint,
    OUT sessions_lost bigint,
    OUT backends_terminated bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'pgx_stat_watchdog_worker'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

CREATE VIEW pgx_stat_watchdog_worker AS
    SELECT * FROM pgx_stat_watchdog_worker();

-- Client host addresses are as sensitive as pg_stat_activity's client_addr;
-- the worker's counters go with them.
REVOKE ALL ON FUNCTION pgx_stat_watchdog() FROM PUBLIC;
REVOKE ALL ON pgx_stat_watchdog FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgx_stat_watchdog() TO pg_read_all_stats;
GRANT SELECT ON pgx_stat_watchdog TO pg_read_all_stats;
REVOKE ALL ON FUNCTION pgx_stat_watchdog_worker() FROM PUBLIC;
REVOKE ALL ON pgx_stat_watchdog_worker FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgx_stat_watchdog_worker() TO pg_read_all_stats;
GRANT SELECT ON pgx_stat_watchdog_worker TO pg_read_all_stats;
