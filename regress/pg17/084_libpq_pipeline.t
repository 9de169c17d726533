# PostgreSQL 17's own libpq pipeline tests (src/test/modules/libpq_pipeline
# of Debian's postgresql-17 source, the version installed in the trixie
# chroot, fetched by tools/foreign-sources) through conmgr, with libpq-cm
# injected by LD_PRELOAD, against PostgreSQL 17 with the watchdog: as root,
# everything runs in the chroot (tools/pg17-chroot, CmChroot) as postgres:
# the program is built there against libpq 17, the server is 17's, conmgr
# and libpq-cm are this tree's, built on the host.  Upstream's test file
# t/001_libpq_pipeline.pl runs unchanged, with its server given the
# watchdog and its connection string naming conmgr (CmForeign's
# run_libpq_pipeline, run by regress/pg17/libpq_pipeline.pl in the chroot;
# its TAP output is this file's).  libpq 17's cases call libpq 17's
# functions on the connection (PQsendPipelineSync, PQclosePrepared,
# PQclosePortal, the cancel functions, PQsetChunkedRowsMode), which
# libpq-cm must forward to libpq 17.
use strict;
use warnings;
use Cwd ();
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmChroot;
use IPC::Run;

# This file's own TAP is the inner run's; it prints only a skip or a bail
# out of its own.
sub skip_all
{
	print "1..0 # SKIP $_[0]\n";
	exit 0;
}

skip_all('needs root (the PostgreSQL 17 chroot)') if $> != 0;
my $chroot = $ENV{CM_PG17_CHROOT} // '/var/cache/conmgr/trixie';
skip_all("no PostgreSQL 17 chroot in $chroot (tools/pg17-chroot ensure)")
  if !-x "$chroot/usr/lib/postgresql/17/bin/postgres";
my $src = $ENV{CM_FOREIGN_SRC} // '/var/cache/conmgr/src';
if (!-f "$src/postgresql-17/VERSION")
{
	# Why tools/foreign-sources could not have it, in its words.
	my $why = "no $src/postgresql-17 (tools/foreign-sources fetches it)";
	if (open(my $u, '<', "$src/postgresql-17.unavailable"))
	{
		$why = 'tools/foreign-sources could not have it: ' . do { local $/; <$u> };
		chomp $why;
		close $u;
	}
	skip_all("no libpq_pipeline source of PostgreSQL 17: $why");
}
if (!-f "$chroot/usr/lib/postgresql/17/lib/watchdog.so")
{
	print "Bail out! the watchdog extension is not installed in the chroot\n";
	exit 255;
}

my $top = Cwd::realpath("$FindBin::RealBin/../..");
my $pgxs = '/usr/lib/postgresql/17/lib/pgxs/src';
my $s = scratch();
$| = 1;
IPC::Run::run([ chroot_cmd({ bind => [$src] }, 'env',
	"PATH=/usr/lib/postgresql/17/bin:/usr/bin:/bin",
	"PERL5LIB=$pgxs/test/perl",
	"PG_REGRESS=$pgxs/test/regress/pg_regress",
	"TESTDIR=$s", "TESTDATADIR=$s/tmp_check", "TESTLOGDIR=$s/tmp_check/log",
	"CM_FOREIGN_SRC=$src",
	'perl', "$top/regress/pg17/libpq_pipeline.pl") ],
	'<', \undef, '>', sub { print STDOUT $_[0] }, '2>', sub { print STDERR $_[0] },
	IPC::Run::timeout(600));
exit($? >> 8);
