# The benchmark harness of `make bench` (regress/bench/bench.pl) in a short
# run, so that a change that breaks it shows in make check and not only in
# the next make bench: figures 1 and 2 with BENCH_QUICK=1 (a primary and
# two standbys with the watchdog, a conmgr in front, the load tool with
# and without libpq-cm preloaded; about 30 s).  Checked: the table on
# standard output, benchmarks.md with the machine and exactly those two
# rows, each with a value, a comparator, a ratio and a verdict; that a
# setting that means nothing is refused, by name, before anything starts;
# and that figure 10, measured by root only, is reported not measured
# without its results.
# The figures' values are not judged here: that is make bench's table
# (docs/benchmarks.md).  Skipped under make check-asan: the load tools
# link the plain build (make check runs this test).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

plan skip_all => 'make check-asan: the load tools link the plain build (make check runs this test)'
  if sanitized();

my $top = cm_top();
my $bench = "$top/regress/bench/bench.pl";

# The load tools are not part of make all.
my ($mk_out, $mk_err) = ('', '');
ok(IPC::Run::run([ 'make', '--no-print-directory', '-C', "$top/regress/bench" ], '<', \undef,
		'>', \$mk_out, '2>', \$mk_err, IPC::Run::timeout(300)),
	'make -C regress/bench builds the load tools')
  or BAIL_OUT("the load tools do not build: $mk_out$mk_err");

# Runs bench.pl with these settings; returns (exit status, stdout, stderr,
# seconds).
sub bench
{
	my (%set) = @_;
	my ($out, $err) = ('', '');
	local %ENV = (%ENV, TESTDIR => PostgreSQL::Test::Utils::tempdir('bench_testdir'), %set);
	my $t = time();
	my $h = IPC::Run::start([ 'perl', $bench ], '<', \undef, '>', \$out, '2>', \$err,
		IPC::Run::timeout(600));
	eval { $h->finish; 1 } or do { $h->kill_kill; $err .= "\n(killed after 600 s: $@)" };
	return ($h->result(0) // -1, $out, $err, time() - $t);
}

# --- settings that mean nothing -----------------------------------------
for my $c (
	[ { BENCH_FIGURES => '1,12' }, qr/^bench: BENCH_FIGURES=1,12: not a comma-separated list of figures 1 to 11$/m ],
	[ { BENCH_FIGURES => '0' }, qr/^bench: BENCH_FIGURES=0: not a comma-separated list of figures 1 to 11$/m ],
	[ { BENCH_FIGURES => '' }, qr/^bench: BENCH_FIGURES=: not a comma-separated list/m ],
	[ { BENCH_FIGURES => '2,,3' }, qr/^bench: BENCH_FIGURES=2,,3: not a comma-separated list/m ],
	[ { BENCH_FIGURES => '1', BENCH_QUICK => 'yes' }, qr/^bench: BENCH_QUICK=yes: must be 0 or 1$/m ],
	[ { BENCH_FIGURES => '1', BENCH_NETNS => '2' }, qr/^bench: BENCH_NETNS=2: must be 0 or 1$/m ])
{
	my ($set, $want) = @$c;
	my $what = join(' ', map { "$_=$set->{$_}" } sort keys %$set);
	my ($rc, $out, $err, $secs) = bench(%$set, BENCH_OUT => PostgreSQL::Test::Utils::tempdir('bench_bad'));
	is($rc, 2, "$what: exit status 2");
	like($err, $want, "$what: the error names the setting and what is wrong");
	unlike($out, qr/setting up/, "$what: refused before anything started");
}

# --- a short run of figures 1 and 2 ---------------------------------------
my $outdir = PostgreSQL::Test::Utils::tempdir('bench_out');
my ($rc, $out, $err, $secs) = bench(BENCH_QUICK => 1, BENCH_FIGURES => '1,2', BENCH_OUT => $outdir,
	BENCH_NETNS => 0);
is($rc, 0, sprintf('bench.pl BENCH_QUICK=1 BENCH_FIGURES=1,2 ends with status 0 (%.0f s)', $secs))
  or diag("stdout:\n$out\nstderr:\n$err");
like($out, qr/^\[\s*\d+s\] machine: .*\d+ cores/m, 'it says which machine it measures');

# The printed table: "N  name  value  comparator  ratio  target  verdict".
my $num = qr/\d+(?:\.\d+)? ms \(\d+(?:\.\d+)?–\d+(?:\.\d+)?\)/;
my $ratio = qr/\d\.\d{3} \(\d\.\d{3}–\d\.\d{3}\)/;
like($out, qr/^1\s+connect \+ SELECT 1 \+ disconnect.*?\s$num\s+direct libpq: $num\s+$ratio\s+ratio ≤ 1\.10\s+(?:met|MISSED)\s*$/m,
	'the table has figure 1: value, comparator, ratio, target, verdict');
like($out, qr/^2\s+read-write connect.*?\s$num\s+libpq host=s1,s2,p read-write: $num\s+$ratio\s+ratio ≤ 0\.5\s+(?:met|MISSED)\s*$/m,
	'the table has figure 2: value, comparator, ratio, target, verdict');
unlike($out, qr/^[3-9]\s{2,}\S/m, 'and no other figure');

my $md = -f "$outdir/benchmarks.md" ? slurp_file("$outdir/benchmarks.md") : '';
ok($md ne '', 'benchmarks.md written into BENCH_OUT');
like($md, qr/^\| cores \| \d+ \|$/m, 'benchmarks.md describes the machine');
my @rows = $md =~ /^\| (\d) \| /mg;
is("@rows", '1 2', 'benchmarks.md has the rows of figures 1 and 2, in order, and no other');
like($md, qr/^\| 1 \| connect \+ SELECT 1 [^|]*\| $num \| direct libpq: $num \| $ratio \| ratio ≤ 1\.10 \| (?:met|MISSED) \|$/m,
	'its row of figure 1 is complete');
like($md, qr/^\*\*1\.\*\* \d+ rounds, each \d+ connections/m, 'it says how figure 1 was measured');
like($md, qr/^\*\*2\.\*\* \d+ rounds of \d+ connects/m, 'it says how figure 2 was measured');

# --- figure 10 without its results ------------------------------------------
# (measured as root by regress/bench/patroni.pl, which regress/bench/run
# starts first; bench.pl alone reports it not measured, and why)
my $outdir10 = PostgreSQL::Test::Utils::tempdir('bench_out10');
($rc, $out, $err, $secs) = bench(BENCH_QUICK => 1, BENCH_FIGURES => '10', BENCH_OUT => $outdir10, BENCH_NETNS => 0);
is($rc, 0, 'bench.pl BENCH_FIGURES=10 with no Patroni results ends with status 0')
  or diag("stdout:\n$out\nstderr:\n$err");
$md = -f "$outdir10/benchmarks.md" ? slurp_file("$outdir10/benchmarks.md") : '';
like($md, qr/^\| 10 \| behind Patroni, promotion → first read-write connect on the new primary \| not measured \(the Patroni lab needs root\) \|/m,
	'its row of figure 10 says it was not measured, and why');

done_testing();
