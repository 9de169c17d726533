# The inside of regress/pg17/084_libpq_pipeline.t: run in the PostgreSQL
# 17 chroot as postgres, with PostgreSQL 17's test modules in PERL5LIB.
# Not a test file of its own (no .t): 084 runs it there.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmForeign;

run_libpq_pipeline('postgresql-17');
