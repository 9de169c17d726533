# PostgreSQL's own libpq pipeline tests (src/test/modules/libpq_pipeline
# of Debian's postgresql-15 source, fetched by tools/foreign-sources)
# through conmgr, with libpq-cm injected by LD_PRELOAD, against PostgreSQL
# 15 with the watchdog: the program is built from that source against the
# host's libpq 15, and upstream's test file t/001_libpq_pipeline.pl runs
# unchanged, with its server given the watchdog and its connection string
# naming conmgr (CmForeign's run_libpq_pipeline says how).  Without
# libpq-cm, conmgr refuses the program: the suite can only pass through
# libpq-cm.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmForeign;

run_libpq_pipeline('postgresql-15');
