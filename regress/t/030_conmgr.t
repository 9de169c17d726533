# Test the conmgr daemon against real instances with the watchdog: a
# primary and a standby, conmgr in front.  Resolve answers for every target
# before and after promotion, load balancing between equal instances,
# down-notices to the sessions of a stopped instance only, a killed role
# restarted, the lock file, the open-files check, plain clients told what
# they reached, garbage on the port, and a smart stop.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $top = cm_top();
my $conmgr = "$top/build/bin/conmgr";
my $resolve = "$top/build/regress/tools/cmresolve";

my $wd_p = PostgreSQL::Test::Cluster::get_free_port();
my $wd_s = PostgreSQL::Test::Cluster::get_free_port();
my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'watchdog'
listen_addresses = '127.0.0.1'
watchdog.port = $wd_p
watchdog.listen_addresses = '127.0.0.1'
watchdog.check_attr_interval = 200
});
$primary->start;
$primary->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b', has_streaming => 1);
$standby->append_conf('postgresql.conf', "watchdog.port = $wd_s\n");
$standby->start;

my $cmport = PostgreSQL::Test::Cluster::get_free_port();
my $cmdata = PostgreSQL::Test::Utils::tempdir();
chmod 0700, $cmdata;
PostgreSQL::Test::Utils::append_to_file("$cmdata/conmgr.conf", qq{
port = $cmport
backend_hostaddr0 = '127.0.0.1'
backend_port0 = @{[ $primary->port ]}
watchdog_port0 = $wd_p
backend_hostaddr1 = '127.0.0.1'
backend_port1 = @{[ $standby->port ]}
watchdog_port1 = $wd_s
heartbeat_interval = 1
heartbeat_timeout = 3
log_min_messages = LOG
});

my ($cm_out, $cm_err) = ('', '');
my $cm = IPC::Run::start([ $conmgr, '-D', $cmdata ], '<', \undef, '>', \$cm_out, '2>', \$cm_err);

sub resolve
{
	my ($target, @extra) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ $resolve, '-p', $cmport, '-t', $target, @extra ], '>', \$out, '2>', \$err);
	return $out;
}

sub instances_for
{
	my ($target) = @_;
	my $out = resolve($target);
	return join(',', $out =~ /candidate instance=(\d+)/g);
}

ok(wait_until(sub { instances_for('any') =~ /^(0,1|1,0)$/ }, 30),
	'both instances become routable') or diag($cm_err);

my $out = resolve('any');
like($out, qr/probe-error sqlstate=08004 message=this is conmgr/, 'the probe is answered with an ErrorResponse');
like($out, qr/hello versions=1-1/, 'then HELLO');

is(instances_for('read-write'), '0', 'read-write: the primary');
is(instances_for('primary'), '0', 'primary: the primary');
is(instances_for('read-only'), '1', 'read-only: the standby');
is(instances_for('standby'), '1', 'standby: the standby');
is(instances_for('prefer-standby'), '1,0', 'prefer-standby: standby first, then primary');
is(instances_for('prefer-primary'), '0,1', 'prefer-primary: primary first, then standby');
my %first;
for (1 .. 10)
{
	my ($f) = resolve('any') =~ /candidate instance=(\d+)/;
	$first{$f}++;
}
is_deeply([ sort keys %first ], [ 0, 1 ], 'any: load balanced, both instances come first in turn');
note("first candidate for 10 'any' requests: instance 0 x $first{0}, instance 1 x $first{1}");

# Resolve latency: 1000 whole sessions (connect, probe, resolve, close).
{
	my $lat = resolve('read-write', '-r', 1000);
	like($lat, qr/^latency n=1000 median_us=\d+ p99_us=\d+/, '1000 resolves in a row succeed');
	my ($med, $p99) = $lat =~ /median_us=(\d+) p99_us=(\d+)/;
	note("resolve session latency over 1000: median $med us, p99 $p99 us");
}

# ps shows the roles.
my $ps = `ps -u $< -o args=`;
like($ps, qr/conmgr: supervisor -D /, 'ps shows the supervisor');
like($ps, qr/conmgr: listener :$cmport/, 'ps shows the listener');
like($ps, qr/conmgr: logger/, 'ps shows the logger');
like($ps, qr/conmgr: heartbeat 0 127\.0\.0\.1:$wd_p/, 'ps shows heartbeat 0');
like($ps, qr/conmgr: heartbeat 1 127\.0\.0\.1:$wd_s/, 'ps shows heartbeat 1');

# A plain PostgreSQL client is told what it reached.
my ($rc, $psql_out, $psql_err) = $primary->psql('postgres', 'SELECT 1',
	connstr => "host=127.0.0.1 port=$cmport dbname=postgres");
isnt($rc, 0, 'psql straight to conmgr fails');
like($psql_err, qr/this is conmgr, a PostgreSQL connection manager, not a PostgreSQL server/,
	'and says it reached conmgr');

# Garbage on the port: the session is closed, conmgr lives on.
for my $bytes ("\0\0\0\x04", "\0\0\xff\xff\0\x03\0\0", "\0\0\0\x08\x04\xd2\x16\x30R\0\0\x05xyz")
{
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $cmport) or die $!;
	print $s $bytes;
	my $buf;
	local $SIG{ALRM} = sub { die "timeout\n" };
	alarm 10;
	1 while sysread($s, $buf, 4096);
	alarm 0;
	close $s;
}
is(instances_for('read-write'), '0', 'after garbage, conmgr still answers');

# Down-notices: sessions on the standby are told when it stops, others not.
my ($a_out, $b_out) = ('', '');
my $on_standby = IPC::Run::start([ $resolve, '-p', $cmport, '-t', 'standby', '-a', '-w', 60 ], '>', \$a_out);
my $on_primary = IPC::Run::start([ $resolve, '-p', $cmport, '-t', 'primary', '-a', '-w', 60 ], '>', \$b_out);
ok(wait_until(sub { $on_standby->pump_nb; $on_primary->pump_nb;
	$a_out =~ /attached/ && $b_out =~ /attached/ }, 10), 'two sessions attached');
my $t0 = time();
$standby->stop('immediate');
ok(wait_until(sub { $on_standby->pump_nb; $a_out =~ /down instance=1 reason=\d/ }, 10),
	'the standby session got INSTANCE_DOWN');
note(sprintf('down-notice %.3f s after the standby stopped', time() - $t0));
$on_primary->pump_nb;
unlike($b_out, qr/down|eof/, 'the primary session did not');
is(instances_for('standby'), '', 'standby: no candidate while it is down');
is(instances_for('prefer-standby'), '0', 'prefer-standby falls back to the primary');
$on_standby->finish;

# 100 sessions on the standby: all are told when it stops, and how fast.
$standby->start;
ok(wait_until(sub { instances_for('standby') eq '1' }, 30), 'the standby is back');
{
	my $dir = PostgreSQL::Test::Utils::tempdir();
	my @h;
	for my $i (1 .. 100)
	{
		push @h, IPC::Run::start([ $resolve, '-p', $cmport, '-t', 'standby', '-a', '-w', 60 ],
			'>', "$dir/s$i");
	}
	my $count = sub
	{
		my ($re) = @_;
		my $n = 0;
		for my $i (1 .. 100)
		{
			open my $f, '<', "$dir/s$i" or next;
			local $/;
			my $c = <$f>;
			$n++ if defined $c && $c =~ $re;
			close $f;
		}
		return $n;
	};
	ok(wait_until(sub { $count->(qr/attached instance=1/) == 100 }, 30), '100 sessions attached to the standby');
	my $t0 = time();
	$standby->stop('immediate');
	my $t1 = wait_until(sub { $count->(qr/down instance=1/) == 100 }, 15);
	ok(defined $t1, 'all 100 sessions got INSTANCE_DOWN');
	note(sprintf('100 down-notices delivered %.3f s after the standby was stopped (pg_ctl stop included)', $t1 - $t0))
	  if defined $t1;
	$_->finish for @h;
}

# Promotion of the (restarted) standby is followed.
$standby->start;
ok(wait_until(sub { instances_for('standby') eq '1' }, 30), 'the standby is back again');
$standby->promote;
ok(wait_until(sub { instances_for('read-write') =~ /^(0,1|1,0)$/ }, 10),
	'after promotion, read-write offers both primaries');
is(instances_for('standby'), '', 'and no standby is left');

# A killed heartbeat role is restarted.
my ($hb_pid) = `ps -u $< -o pid=,args=` =~ /^\s*(\d+)\s+conmgr: heartbeat 0 /m;
ok($hb_pid, "heartbeat 0 runs as pid $hb_pid");
kill 'KILL', $hb_pid;
ok(wait_until(sub { $cm->pump_nb; $cm_err =~ /heartbeat 0 .*was terminated by signal 9 \(SIGKILL\)/ }, 10),
	'the supervisor logs the crash');
ok(wait_until(sub { my ($p) = `ps -u $< -o pid=,args=` =~ /^\s*(\d+)\s+conmgr: heartbeat 0 /m;
	$p && $p != $hb_pid }, 10), 'and restarts heartbeat 0');
ok(wait_until(sub { instances_for('read-write') =~ /0/ }, 10), 'instance 0 is routable again');

# A killed listener is restarted too, and serves again.
my ($l_pid) = `ps -u $< -o pid=,args=` =~ /^\s*(\d+)\s+conmgr: listener /m;
ok($l_pid, "the listener runs as pid $l_pid");
kill 'KILL', $l_pid;
ok(wait_until(sub { $cm->pump_nb; $cm_err =~ /listener :$cmport \(pid $l_pid\) was terminated by signal 9/ }, 10),
	'the supervisor logs the listener crash');
ok(wait_until(sub { instances_for('read-write') =~ /0/ }, 10), 'the restarted listener answers');

# A killed logger is restarted, and lines written after that still arrive.
my ($g_pid) = `ps -u $< -o pid=,args=` =~ /^\s*(\d+)\s+conmgr: logger/m;
ok($g_pid, "the logger runs as pid $g_pid");
kill 'KILL', $g_pid;
ok(wait_until(sub { $cm->pump_nb; $cm_err =~ /logger \(pid $g_pid\) was terminated by signal 9/ }, 10),
	'the logger crash is logged (by the restarted logger)');
my ($hb1) = `ps -u $< -o pid=,args=` =~ /^\s*(\d+)\s+conmgr: heartbeat 1 /m;
kill 'KILL', $hb1;
ok(wait_until(sub { $cm->pump_nb; $cm_err =~ /heartbeat 1 .*\(pid $hb1\) was terminated by signal 9/ }, 10),
	'later lines still reach the log');

# One conmgr per directory.
my ($o2, $e2) = ('', '');
IPC::Run::run([ $conmgr, '-D', $cmdata ], '<', \undef, '>', \$o2, '2>', \$e2);
is($? >> 8, 1, 'a second conmgr on the same directory exits 1');
like($e2, qr/another conmgr \(pid \d+\) is running in/, 'and says why');

# The open-files check.
{
	my $dir2 = PostgreSQL::Test::Utils::tempdir();
	chmod 0700, $dir2;
	PostgreSQL::Test::Utils::append_to_file("$dir2/conmgr.conf",
		"backend_host0 = 'localhost'\nmax_connections = 1000\nport = " . PostgreSQL::Test::Cluster::get_free_port() . "\n");
	IPC::Run::run([ 'sh', '-c', "ulimit -n 100; exec $conmgr -D $dir2" ], '<', \undef, '>', \$o2, '2>', \$e2);
	is($? >> 8, 1, 'conmgr refuses to start under a low open-files limit');
	like($e2, qr/open-files limit 100 is too low: conmgr needs 1011 \(9 \+ 1 instances x 2 \+ max_connections 1000\)/,
		'naming the numbers');
}

# Smart stop: no new sessions, the attached one is left alone; conmgr ends
# when it closes.
my $c_out = '';
my $attached = IPC::Run::start([ $resolve, '-p', $cmport, '-t', 'any', '-a', '-w', 60 ], '>', \$c_out);
ok(wait_until(sub { $attached->pump_nb; $c_out =~ /attached/ }, 10), 'a session attached');
$cm->signal('TERM');
ok(wait_until(sub { resolve('any') =~ /connect failed/ }, 10), 'smart stop: new connections are refused');
sleep 1;
$attached->pump_nb;
ok($cm->pumpable && $c_out !~ /down|eof/, 'smart stop: conmgr waits, the attached session is not disturbed');
$attached->kill_kill;
ok(wait_until(sub { $cm->pump_nb if $cm->pumpable; !$cm->pumpable }, 15),
	'smart stop: conmgr exits once the session has ended');
$cm->finish;
is($? >> 8, 0, 'with code 0');
ok(!-e "$cmdata/conmgr.pid", 'and removes its pid file');
like($cm_err, qr/smart shutdown/, 'the smart shutdown is logged');

$primary->stop;
$standby->stop;
done_testing();
