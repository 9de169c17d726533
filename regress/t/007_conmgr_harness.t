# Test the harness every TAP file starts conmgr with (CmTest::Conmgr):
# start waits until the heartbeat is up, the status and the routing come
# from cm_ctl and cmresolve, role_pid finds this conmgr's roles,
# wait_for_log reads from an offset and times out with undef, each stop
# mode ends conmgr with the documented exit, kill9 leaves no role behind,
# a start over a stale pid file waits for its own, a conmgr that cannot
# start is reported, one started as a daemon by cm_ctl under a wrap is
# driven the same way, and one left running by a test that dies is
# stopped when that test exits.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use CmTest::Conmgr;
use CmProc qw(proc_alive);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my ($node, $wdport) = watchdog_node('db');
my $cm = CmTest::Conmgr->new('cm', instances => [ [ $node, $wdport ] ],
	conf => { heartbeat_interval => 1, log_min_messages => 'LOG' });
like(slurp_file($cm->cmdata . '/conmgr.conf'),
	qr/^port = ${\ $cm->port }\nbackend_hostaddr0 = '127\.0\.0\.1'\nbackend_port0 = ${\ $node->port }\nwatchdog_port0 = $wdport\nheartbeat_interval = 1\nlog_min_messages = LOG\n\z/,
	'new writes the port, the instance and the parameters into conmgr.conf');
is((stat($cm->cmdata))[2] & 07777, 0700, 'its directory is the owner\'s only');

ok($cm->start(wait => 'up'), 'start returns once ready');
my $st = $cm->status;
is($st->{running}, JSON::PP::true, 'status: running') or diag(explain($st));
is($st->{port}, $cm->port, 'status: on the port of new');
is($st->{pid}, $cm->pid, 'status: the supervisor is the process start ran');
is($st->{instances}[0]{heartbeat}, 'up', 'status: the heartbeat is up when start(wait => up) returns');
like($cm->resolve('primary'), qr/^candidate instance=0 /m, 'resolve: the primary is routable');
my ($out, $err) = $cm->resolve('no-such-target');
isnt($err, '', 'resolve in list context also returns what cmresolve says on stderr');

my $hb = $cm->role_pid('heartbeat 0 ');
ok($hb, 'role_pid finds the heartbeat role');
is($cm->role_pid('no such role'), undef, 'and nothing for a title no role has');

my $off = $cm->log_offset;
ok($off > 0 && $cm->log_contains(qr/conmgr ready/), 'the log is read without pumping anything');
ok(!$cm->log_contains(qr/conmgr ready/, $off), 'log_contains reads from the offset');
kill 'KILL', $hb;
my $end = $cm->wait_for_log(qr/heartbeat 0 .*\(pid $hb\) was terminated by signal 9/, $off, 30);
ok($end && $end > $off, 'wait_for_log finds a new line past the offset');
is($cm->wait_for_log(qr/never logged/, $end, 1), undef, 'and returns undef when nothing matches in time');

is($cm->stop('smart'), 0, 'stop smart: conmgr exits with 0');
ok(!$cm->running, 'and runs no more');
is($cm->status->{running}, JSON::PP::false, 'status: not running');
like($cm->log_content($end), qr/conmgr stopped/, 'the stop is logged');

$cm->start;
is($cm->stop('fast'), 0, 'stop fast: exit 0');
$cm->start;
$cm->stop('immediate');
ok(!$cm->running, 'stop immediate: conmgr is gone');

$cm->start;
my $listener = $cm->role_pid('listener :' . $cm->port);
ok($listener, 'after a new start the listener runs');
$cm->kill9;
ok(!$cm->running, 'kill9: the supervisor is gone');
ok(wait_until(sub { !proc_alive($listener) }, 10), 'and its roles end by themselves');
like(slurp_file($cm->cmdata . '/conmgr.pid'), qr/\nready\n/, 'kill9 leaves a pid file that says ready');
# conmgr a second late (sh execs it: the same pid), so that the stale
# pid file is there to be taken for the new one
ok($cm->start(wait => 'ready', prefix => [ 'sh', '-c', 'sleep 1 && exec "$@"', 'sh' ]),
	'start(wait => ready) over it returns');
like(slurp_file($cm->cmdata . '/conmgr.pid'), qr/\A${\ $cm->pid }\n(?:.*\n){3}ready\n/,
	'once the pid file names the new conmgr and says ready, not when the stale one does');
$cm->stop;

my $bad = CmTest::Conmgr->new('bad', conf => "no_such_parameter = 1\n");
is($bad->start(fail_ok => 1), 0, 'start(fail_ok) returns 0 for a conmgr that exits');
like($bad->log_content, qr/no_such_parameter/, 'whose log says why');
ok(!eval { $bad->start; 1 }, 'without fail_ok start dies');
like($@, qr/conmgr bad exited; its log:\n.*no_such_parameter/s, 'with the log in the message');

# As an operator starts it: cm_ctl start, conmgr in a session of its own,
# every command under new's wrap.
my $trace = PostgreSQL::Test::Utils::tempdir() . '/commands';
my $d = CmTest::Conmgr->new('daemon', instances => [ [ $node, $wdport ] ],
	conf => { heartbeat_interval => 1, log_min_messages => 'LOG' },
	wrap => [ 'sh', '-c', 'echo "$*" >>"$0"; exec "$@"', $trace ]);
ok($d->start(daemon => 1, wait => 'up'), 'start(daemon, wait => up): cm_ctl start --complete succeeds');
like(slurp_file($trace), qr{^\S*/cm_ctl start -D \S+ --complete -l \Q${\ $d->logfile }\E -t \d+$}m,
	'through the wrap, with the log file');
isnt((split ' ', slurp_file("/proc/${\ $d->pid }/stat") =~ s/^.*\) //sr)[1], $$,
	'the supervisor is not the test\'s child');
is($d->status->{pid}, $d->pid, 'its pid is the pid file\'s');
like($d->resolve('primary'), qr/^candidate instance=0 /m, 'it routes');
like(slurp_file($trace), qr{^\S*/cm_ctl status -D \S+ --json$}m, 'status runs cm_ctl through the wrap');
like(slurp_file($trace), qr{^\S*/cmresolve -p ${\ $d->port } -t primary$}m, 'and so does resolve');
ok($d->log_contains(qr/conmgr ready/), 'the log is cm_ctl\'s -l file');
$listener = $d->role_pid('listener :' . $d->port);
$d->kill9;
ok(!$d->running, 'kill9: the supervisor is gone');
# The roles go with it: killed with the group, or on their own when the
# supervisor's death pipe closes (this cannot tell which; either way none
# is left behind), within 5 s on a busy machine.
ok(wait_until(sub { !proc_alive($listener) }, 5), 'and its roles are gone');
ok($d->start(daemon => 1), 'start(daemon) over the stale pid file: cm_ctl waits for a primary');
is($d->stop('fast'), 0, 'stop: 0 once it is gone');
ok(!$d->running, 'it runs no more');
my $bad_d = CmTest::Conmgr->new('bad_daemon', conf => "no_such_parameter = 1\n");
is($bad_d->start(daemon => 1, fail_ok => 1), 0, 'start(daemon, fail_ok) returns 0 when cm_ctl start fails');
ok(!eval { $bad_d->start(daemon => 1); 1 }, 'without fail_ok it dies');
like($@, qr/cm_ctl start failed \(1\): .*no_such_parameter/s, 'with what cm_ctl said');

# A test that dies with its conmgr running: the END block stops it.
my $orphan = CmTest::Conmgr->new('orphan', instances => [ [ $node, $wdport ] ]);
# The child's standard output goes to its own test log (PostgreSQL::Test::
# Utils), hence the pid in a file.
my $pidfile = $orphan->cmdata . '/started.pid';
my $script = q{
	use CmTest::Conmgr;
	use PostgreSQL::Test::Utils;
	my $cm = CmTest::Conmgr->new('x', cmdata => $ARGV[0], port => $ARGV[1]);
	$cm->start;
	PostgreSQL::Test::Utils::append_to_file($ARGV[2], $cm->pid);
	die "a test dies\n";
};
IPC::Run::run([ $^X, "-I$FindBin::RealBin/../lib", '-e', $script, $orphan->cmdata, $orphan->port, $pidfile ],
	'<', \undef, '>', \my $out2, '2>&1', IPC::Run::timeout(60));
my ($orphan_pid) = (-e $pidfile ? slurp_file($pidfile) : '') =~ /^(\d+)$/;
ok($orphan_pid, 'a test process started conmgr and died');
ok($orphan_pid && wait_until(sub { !proc_alive($orphan_pid) }, 30),
	'the conmgr it left is stopped at its exit');

done_testing();
