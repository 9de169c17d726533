# psycopg's own test suite (the tests of the python3-psycopg version
# installed, fetched by tools/foreign-sources) through conmgr with
# libpq-cm's drop-in libpq.so.5, against the same suite run directly.
#
# Two instances with the watchdog, configured alike, conmgr in front of
# the second.  pytest runs the suite twice, the same way and side by side:
# once with PSYCOPG_TEST_DSN naming the first instance (host=127.0.0.1,
# its port), once naming conmgr (host=localhost, conmgr's port) with
# LD_LIBRARY_PATH=build/lib/dropin.  Each run's outcome per test comes from
# its JUnit XML.  Every test that passes directly must pass through
# conmgr, except the differences by design listed in %by_design below,
# each with its reason; those must differ as described (pass directly,
# fail through conmgr), so that the list cannot go stale.  Without the
# drop-in, conmgr refuses psycopg: the suite can only pass through
# libpq-cm.
#
# What is left out of both runs, and why (none of it is about connecting):
#   - tests/pool: psycopg_pool's tests; the pool is another Debian package
#     (python3-psycopg-pool), not python3-psycopg;
#   - the "mypy" marker: runs the mypy type checker over example files;
#   - the "proxy" marker: needs pproxy, which Debian does not package;
#   - @slow: the leak and big-copy tests, which repeat one cursor or COPY
#     operation thousands of times on one connection (they take most of
#     the suite's time) and test psycopg's objects and buffers, not how
#     the connection was made.
# In make check's ASan pass, both runs cover the part of the suite that
# calls libpq through its connection (@asan_part below: libpq's wrapper
# tests, connecting, pipelines, COPY, cursors, prepared statements,
# two-phase commit, waiting); the data types' adapters and the rest are
# Python over a connection libpq-cm has already handed over, and the
# plain pass runs them.
use strict;
use warnings;
use Cwd ();
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmForeign;
use CmTest;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $python = -x '/usr/bin/python3' ? '/usr/bin/python3' : 'python3';
my ($src, $version) = foreign_src('psycopg');
plan skip_all => "skipped: no psycopg test suite: $version" unless $src;
{
	my ($out, $err) = ('', '');
	IPC::Run::run([ $python, '-c', 'import psycopg, pytest, pytest_asyncio; print(psycopg.__version__)' ],
		'<', \undef, '>', \$out, '2>', \$err);
	plan skip_all => "skipped: psycopg, pytest or pytest-asyncio missing (tools/install-deps test): $err"
	  if $?;
	chomp $out;
	note("psycopg $out; its tests: $version");
}

my $top = Cwd::realpath(cm_top());
my $dropin = "$top/build/lib/dropin";

# Tests whose outcome differs through conmgr by design, with the reason.
# test_get_params asserts that every parameter of the DSN comes back from
# conn.info.get_parameters() (PQconninfo) unchanged; through conmgr the
# connection's host and port are the instance's, not conmgr's that the DSN
# named (docs/libpq-cm.md, "What the accessors say"; the manual's 3.6.4).
my %by_design = (
	'tests.test_conninfo.TestConnectionInfo::test_get_params' =>
	  'conn.info.get_parameters() has the instance\'s host (127.0.0.1) and port, the DSN conmgr\'s (localhost)',
);

# The slow tests left out (see the top of this file).
my @slow = qw(
  tests/test_cursor.py::test_leak
  tests/test_cursor_async.py::test_leak
  tests/test_client_cursor.py::test_leak
  tests/test_client_cursor_async.py::test_leak
  tests/test_copy.py::test_copy_to_leaks
  tests/test_copy.py::test_copy_from_leaks
  tests/test_copy_async.py::test_copy_to_leaks
  tests/test_copy_async.py::test_copy_from_leaks
  tests/test_copy.py::test_copy_big_size_block
  tests/test_copy.py::test_copy_big_size_record
  tests/test_copy_async.py::test_copy_big_size_block
  tests/test_copy_async.py::test_copy_big_size_record
);

# The tests the ASan pass runs (see the top of this file).
my @asan_part = qw(
  tests/pq
  tests/test_connection.py
  tests/test_connection_async.py
  tests/test_conninfo.py
  tests/test_pipeline.py
  tests/test_pipeline_async.py
  tests/test_copy.py
  tests/test_cursor.py
  tests/test_prepared.py
  tests/test_tpc.py
  tests/test_waiting.py
);
my $min_passed = sanitized() ? 600 : 1000;

# An instance for each run, so that the runs go side by side without
# meeting in one database (the two-phase commit tests roll back and count
# every prepared transaction of theirs; tables have fixed names): the
# watchdog, and prepared transactions for the two-phase commit tests.
# conmgr is in front of the second.
my %node;
my %wdport;
($node{$_}, $wdport{$_}) = watchdog_node("psycopg_$_", "max_prepared_transactions = 10\n")
  for qw(direct through);
my $cm = foreign_conmgr(port => $node{through}->port, watchdog_port => $wdport{through});

# One run of the suite, started in the background; @tests (pytest's node
# ids) runs those tests alone instead.
sub suite_start
{
	my ($dsn, $env, @tests) = @_;
	my @env = @{ $env // [] };
	my $run = { scratch => PostgreSQL::Test::Utils::tempdir(), out => '', err => '', t0 => time() };
	# The test framework's PGHOST and friends would be libpq's defaults in
	# the suite's own connection strings.
	delete local @ENV{ grep { /^PG/ } keys %ENV };
	my @cmd = (foreign_env(PSYCOPG_TEST_DSN => $dsn, PYTHONDONTWRITEBYTECODE => 1, @env),
		$python, '-m', 'pytest', '-q', '-p', 'no:randomly',
		'-o', "cache_dir=$run->{scratch}/cache", "--junitxml=$run->{scratch}/junit.xml",
		(@tests ? @tests
		  : ('-m', 'not mypy and not proxy', '--ignore=tests/pool',
			  map({ ('--deselect', $_) } @slow), sanitized() ? @asan_part : 'tests')));
	$run->{h} = IPC::Run::start(\@cmd, init => sub { chdir $src or die "chdir $src: $!" },
		'<', \undef, '>', \$run->{out}, '2>', \$run->{err}, IPC::Run::timeout(600));
	return $run;
}

# Wait for a run to end: outcome per test (passed, failed, error,
# skipped), pytest's output and the run's duration.
sub suite_finish
{
	my ($run) = @_;
	eval { $run->{h}->finish; };
	if ($@)
	{
		$run->{err} .= "\n$@";
		$run->{h}->kill_kill;
	}
	my $took = time() - $run->{t0};
	my %outcome;
	my $file = "$run->{scratch}/junit.xml";
	my $xml = -f $file ? slurp_file($file) : '';
	while ($xml =~ m{<testcase classname="([^"]*)" name="([^"]*)"[^>]*?(/>|>(.*?)</testcase>)}sg)
	{
		my ($class, $name, $body) = ($1, $2, $4 // '');
		for ($class, $name)
		{
			s/&quot;/"/g; s/&apos;/'/g; s/&lt;/</g; s/&gt;/>/g; s/&amp;/&/g;
		}
		$outcome{"${class}::$name"} =
		    $body =~ /<failure/ ? 'failed'
		  : $body =~ /<error/ ? 'error'
		  : $body =~ /<skipped/ ? 'skipped'
		  : 'passed';
	}
	return (\%outcome, "$run->{out}$run->{err}", $took);
}

# pytest's node id of a test as JUnit names it: "tests.types.test_json" and
# "test_dump[x]" are tests/types/test_json.py::test_dump[x], a class after
# the module ("tests.test_cursor.TestColumn") is one more "::" part.
sub node_id
{
	my ($key) = @_;
	my ($class, $name) = $key =~ /^([^:]+)::(.*)$/s or die "bad test name $key";
	my @part = split /\./, $class;
	my ($m) = grep { $part[$_] =~ /^test_/ } 0 .. $#part;
	die "no test module in $class" unless defined $m;
	return join('::', join('/', @part[ 0 .. $m ]) . '.py', @part[ $m + 1 .. $#part ], $name);
}

sub counts
{
	my ($o) = @_;
	my %n;
	$n{$_}++ for values %$o;
	return join(', ', map { "$n{$_} $_" } sort keys %n);
}

my $t0 = time();
my $through_dsn = "host=localhost port=" . $cm->port . " dbname=postgres";
my @runs = (suite_start('host=127.0.0.1 port=' . $node{direct}->port . ' dbname=postgres'),
	suite_start($through_dsn, [ LD_LIBRARY_PATH => $dropin ]));
my ($direct, $direct_out, $direct_took) = suite_finish($runs[0]);
my ($through, $through_out, $through_took) = suite_finish($runs[1]);
note(sprintf('both runs side by side: %.0f s', time() - $t0));
note(sprintf('psycopg suite directly: %s in %.0f s', counts($direct), $direct_took));
note(sprintf('psycopg suite through conmgr: %s in %.0f s', counts($through), $through_took));
for my $run ([ 'directly', $direct ], [ 'through conmgr', $through ])
{
	my ($how, $o) = @$run;
	note("$how: $o->{$_}: $_") for grep { $o->{$_} =~ /^(failed|error)$/ } sort keys %$o;
}

cmp_ok(scalar(grep { $_ eq 'passed' } values %$direct), '>', $min_passed,
	"the suite ran directly (over $min_passed tests passed)")
  or diag($direct_out);
is_deeply([ sort keys %$through ], [ sort keys %$direct ], 'both runs ran the same tests')
  or diag(substr($through_out, -3000));

# A test that passed directly but not through conmgr runs once more
# through conmgr, alone: the suite has timing tests (a notification
# awaited within a bound, connect_timeout), and on a loaded machine one
# may miss its bound once.  Those that pass then are named here; a
# difference that conmgr makes fails both times.
my @lost = grep { $direct->{$_} eq 'passed' && ($through->{$_} // 'missing') ne 'passed' && !$by_design{$_} }
  sort keys %$direct;
if (@lost)
{
	my ($again, $again_out) = suite_finish(suite_start($through_dsn, [ LD_LIBRARY_PATH => $dropin ],
		map { node_id($_) } @lost));
	note("through conmgr: $through->{$_}, then passed when run again alone: $_")
	  for grep { ($again->{$_} // '') eq 'passed' } @lost;
	@lost = grep { ($again->{$_} // 'missing') ne 'passed' } @lost;
	$through_out .= "\n--- run again:\n$again_out";
}
is(scalar(@lost), 0, 'every test that passes directly passes through conmgr, but for the differences by design')
  or diag(join("\n", map { "$_: $through->{$_}" } @lost), "\n", substr($through_out, -6000));
for my $t (sort keys %by_design)
{
	is(($direct->{$t} // 'missing') . ' ' . ($through->{$t} // 'missing'), 'passed failed',
		"by design: $t passes directly, not through conmgr: $by_design{$t}");
}

# Without the drop-in, conmgr refuses the suite's connections.
{
	my ($out, $err) = ('', '');
	IPC::Run::run([ $python, '-c', "import psycopg; psycopg.connect('host=localhost port=" . $cm->port . " dbname=postgres')" ],
		'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(60));
	like($err, qr/OperationalError:.*conmgr/s, 'without the drop-in, conmgr refuses psycopg') or diag($err);
}

$cm->stop('smart');
done_testing();
