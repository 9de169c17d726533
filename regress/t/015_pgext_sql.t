# Test the watchdog extension's SQL surface with pg_regress: the view, the
# workers in pg_stat_activity, GUC ranges, privileges, DROP EXTENSION; and,
# in a server without the library preloaded, the view's clear error.
# Needs the extension installed (make check does that when run as root).
# make check runs it against PostgreSQL 15 and 17 (regress/pg17/run):
# pgext/expected/watchdog_1.out is the output of 16 and later, which word
# a parameter's range with its unit and refuse an unknown name under a
# reserved prefix as invalid.
use strict;
use warnings;
use File::Temp qw(tempdir);
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest qw(skip_under_asan);
use PostgreSQL::Test::Utils;
use Test::More;

skip_under_asan('the extension runs in the server, which is not built with the sanitizers');

my $top = "$FindBin::RealBin/../..";
my $pgext = "$top/pgext";
my $pkglibdir = `pg_config --pkglibdir`;
chomp $pkglibdir;
my $sharedir = `pg_config --sharedir`;
chomp $sharedir;

ok(-f "$pkglibdir/watchdog.so" && -f "$sharedir/extension/watchdog.control",
	'the watchdog extension is installed')
  or BAIL_OUT("install it first: make -C pgext install (as root)");
is(system('cmp', '-s', "$pgext/watchdog.so", "$pkglibdir/watchdog.so"), 0,
	'the installed module is the one just built')
  or BAIL_OUT("stale install: run make -C pgext install (as root)");

my $bindir = `pg_config --bindir`;
chomp $bindir;

sub run_regress
{
	my ($name, @extra) = @_;
	my $out = tempdir(CLEANUP => 1);
	my $rc = system($ENV{PG_REGRESS}, "--temp-instance=$out/instance",
		"--inputdir=$pgext", "--outputdir=$out", "--bindir=$bindir",
		'--dbname=contrib_regression', @extra, $name);
	ok($rc == 0, "pg_regress $name") or do
	{
		diag(slurp_file("$out/regression.diffs"))
		  if -f "$out/regression.diffs";
	};
}

run_regress('watchdog', "--temp-config=$pgext/regress.conf");
run_regress('watchdog_unloaded');

done_testing();
