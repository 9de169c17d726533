#!/bin/sh
# Patroni's bootstrap.post_init (patroni.yml.in): run once, on the first
# primary of a new cluster, with a connection string as its argument.
# Creates the watchdog extension's view (pgx_stat_watchdog); the heartbeat
# and the terminator need only shared_preload_libraries.
set -eu
exec psql -X -q -v ON_ERROR_STOP=1 -d "$1" -c 'CREATE EXTENSION IF NOT EXISTS watchdog'
