-- Without the library preloaded (a server started without
-- shared_preload_libraries = 'watchdog'), the view must fail with a clear
-- error instead of returning rows from memory that does not exist.
CREATE EXTENSION watchdog;
SELECT * FROM pgx_stat_watchdog;
SELECT * FROM pgx_stat_watchdog_worker;
DROP EXTENSION watchdog;
