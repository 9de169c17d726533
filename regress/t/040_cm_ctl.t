# Test cm_ctl start/stop/status against real instances: start waits for the
# primary (or every instance with --complete, or nothing with -W) and gives
# up after -t while leaving conmgr running; stop in each mode; status as a
# table and as JSON; the pg_ctl-style exit codes and error messages.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use IO::Socket::INET;
use IPC::Run qw(run);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $cm_ctl = cm_top() . '/build/bin/cm_ctl';

my $wd_p = PostgreSQL::Test::Cluster::get_free_port();
my $wd_s = PostgreSQL::Test::Cluster::get_free_port();
my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf',
	"shared_preload_libraries = 'watchdog'\nwatchdog.port = $wd_p\nwatchdog.listen_addresses = '127.0.0.1'\n");
$primary->start;
$primary->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b', has_streaming => 1);
$standby->append_conf('postgresql.conf', "watchdog.port = $wd_s\n");
$standby->start;

sub cmdir
{
	my (@instances) = @_;
	my $dir = PostgreSQL::Test::Utils::tempdir();
	chmod 0700, $dir;
	my $conf = "port = " . PostgreSQL::Test::Cluster::get_free_port() . "\n"
	  . "heartbeat_interval = 1\nheartbeat_timeout = 3\nlog_min_messages = LOG\n";
	my $i = 0;
	for my $wd (@instances)
	{
		$conf .= "backend_hostaddr$i = '127.0.0.1'\nwatchdog_port$i = $wd\n";
		$i++;
	}
	PostgreSQL::Test::Utils::append_to_file("$dir/conmgr.conf", $conf);
	return $dir;
}

sub ctl
{
	my ($out, $err) = ('', '');
	run([ $cm_ctl, @_ ], '<', \undef, '>', \$out, '2>', \$err);
	return ($? >> 8, $out, $err);
}

my $dir = cmdir($wd_p, $wd_s);
my ($rc, $out, $err) = ctl('status', '-D', $dir);
is($rc, 3, 'status before start: exit 3');
like($out, qr/no conmgr running/, 'status says not running');

($rc, $out, $err) = ctl('start', '-D', $dir);
is($rc, 0, 'start: exit 0') or diag($err);
like($out, qr/conmgr started \(PID \d+\): primary connected/, 'start returns once the primary is connected');
($rc, $out, $err) = ctl('start', '-D', $dir);
is($rc, 1, 'a second start fails');
like($err, qr/another conmgr \(PID \d+\) is running/, 'and says why');

ok(wait_until(sub { (ctl('status', '-D', $dir))[1] =~ /^1 .* up /m }, 15), 'both instances up');
my ($cmport) = `grep '^port' $dir/conmgr.conf` =~ /(\d+)/;
my $c_out = '';
my $attached = IPC::Run::start([ cm_top() . '/build/regress/tools/cmresolve',
	'-p', $cmport, '-t', 'primary', '-a', '-w', 60 ], '>', \$c_out);
ok(wait_until(sub { $attached->pump_nb; $c_out =~ /attached/ }, 10), 'an application session attached');
($rc, $out) = ctl('status', '-D', $dir);
is($rc, 0, 'status: exit 0');
like($out, qr/conmgr is running \(PID: \d+\)/, 'status shows the pid');
like($out, qr/^0\s+127\.0\.0\.1\s+27500\s+$wd_p\s+up\s+primary\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/m,
	'status shows instance 0 as the primary, up since a time');
like($out, qr/^1\s+127\.0\.0\.1\s+27500\s+$wd_s\s+up\s+standby\s+\S+ \S+$/m, 'status shows instance 1 as a standby');
like($out, qr/^127\.0\.0\.1:\d+\s+\d+\s+primary\s+attached\s+0\s+\S+ \S+$/m,
	'status shows the application session: client, pid, target, instance, since');
($rc, $out) = ctl('status', '-D', $dir, '-i', 'application');
unlike($out, qr/^instance/m, '-i application leaves the instances out');
like($out, qr/primary\s+attached/, 'and shows the session');
($rc, $out) = ctl('status', '-D', $dir, '-i', 'instance', '--json');
like($out, qr/^\{"running": true, "pid": \d+, "port": \d+, "instances": \[\{"instance": 0, .*"heartbeat": "up", "role": "primary", "since": "[^"]+"\}, \{"instance": 1, .*"role": "standby".*\]\}$/,
	'status -i instance --json');
($rc, $out) = ctl('status', '-D', $dir, '--json');
like($out, qr/"applications": \[\{"client": "127\.0\.0\.1:\d+", "pid": \d+, "target": "primary", "state": "attached", "instance": 0, "since": "[^"]+"\}\]\}$/,
	'status --json includes the applications');
$attached->kill_kill;
($rc, $out, $err) = ctl('status', '-D', $dir, '-i', 'everything');
is($rc, 1, 'status -i with a bad value: exit 1');

($rc, $out, $err) = ctl('stop', '-D', $dir, '-m', 'sideways');
is($rc, 1, 'stop with a bad mode: exit 1');
like($err, qr/unrecognized shutdown mode "sideways"/, 'and names it');
$c_out = '';
$attached = IPC::Run::start([ cm_top() . '/build/regress/tools/cmresolve',
	'-p', $cmport, '-t', 'primary', '-a', '-w', 60 ], '>', \$c_out);
ok(wait_until(sub { $attached->pump_nb; $c_out =~ /attached/ }, 10), 'an application session attached again');
($rc, $out) = ctl('stop', '-D', $dir, '-m', 'fast');
is($rc, 0, 'stop -m fast: exit 0');
like($out, qr/conmgr stopped/, 'stop waits until conmgr is gone');
$attached->finish;
like($c_out, qr/down instance=0 reason=4/, 'fast stop told the session "conmgr shutting down"');
($rc, $out, $err) = ctl('stop', '-D', $dir);
is($rc, 1, 'stop when nothing runs: exit 1');
like($err, qr/no conmgr is running/, 'and says so');

# --complete waits for every instance; immediate stop.
($rc, $out) = ctl('start', '-D', $dir, '--complete');
is($rc, 0, 'start --complete: exit 0');
like($out, qr/every instance connected/, 'start --complete waits for all');
($rc, $out) = ctl('stop', '-D', $dir, '-m', 'immediate');
is($rc, 0, 'stop -m immediate');

# No primary among the instances: start gives up after -t, conmgr keeps running.
my $dir2 = cmdir($wd_s);
($rc, $out, $err) = ctl('start', '-D', $dir2, '-t', '2');
is($rc, 1, 'start without a primary: gives up after -t 2');
like($err, qr/conmgr \(PID \d+\) is running, but no primary was connected within 2 s/, 'and says conmgr is running');
($rc, $out) = ctl('status', '-D', $dir2);
is($rc, 0, 'conmgr still runs after the timeout');
($rc, $out) = ctl('stop', '-D', $dir2);
is($rc, 0, 'stop (smart)');

# -W: no wait.
($rc, $out) = ctl('start', '-D', $dir2, '-W');
is($rc, 0, 'start -W returns at once');
($rc, $out) = ctl('stop', '-D', $dir2, '-W');
is($rc, 0, 'stop -W');
ok(wait_until(sub { (ctl('status', '-D', $dir2))[0] == 3 }, 10), 'and conmgr goes');

# listen_addresses: conmgr answers there only, and cm_ctl finds it there.
{
	my $dir3 = cmdir($wd_p);
	PostgreSQL::Test::Utils::append_to_file("$dir3/conmgr.conf", "listen_addresses = '127.0.0.2'\n");
	my ($port3) = `grep '^port' $dir3/conmgr.conf` =~ /(\d+)/;
	($rc, $out, $err) = ctl('start', '-D', $dir3);
	is($rc, 0, 'start with listen_addresses = 127.0.0.2') or diag($err);
	my $res = cm_top() . '/build/regress/tools/cmresolve';
	like(`$res -h 127.0.0.2 -p $port3 -t primary`, qr/candidate instance=0/, 'conmgr answers on 127.0.0.2');
	like(`$res -h 127.0.0.1 -p $port3 -t primary`, qr/connect failed/, 'and not on 127.0.0.1');
	($rc, $out) = ctl('status', '-D', $dir3);
	like($out, qr/^0\s+127\.0\.0\.1\s+\d+\s+$wd_p\s+up\s+primary\s+\S+ \S+$/m, 'cm_ctl status reaches it');
	($rc) = ctl('stop', '-D', $dir3);
	is($rc, 0, 'and stops it');
}

# max_connections: a session over the limit is closed without an answer.
{
	my $dir4 = cmdir($wd_p);
	PostgreSQL::Test::Utils::append_to_file("$dir4/conmgr.conf", "max_connections = 2\n");
	my ($port4) = `grep '^port' $dir4/conmgr.conf` =~ /(\d+)/;
	($rc, $out, $err) = ctl('start', '-D', $dir4, '-l', "$dir4/log");
	is($rc, 0, 'start with max_connections = 2');
	my $res = cm_top() . '/build/regress/tools/cmresolve';
	my @outs = ('', '');
	my @h = map { my $i = $_; IPC::Run::start([ $res, '-p', $port4, '-t', 'primary', '-a', '-w', 30 ], '>', \$outs[$i]) } 0 .. 1;
	ok(wait_until(sub { $_->pump_nb for @h; $outs[0] =~ /attached/ && $outs[1] =~ /attached/ }, 10),
		'two sessions attached');
	like(`$res -p $port4 -t primary`, qr/no answer to the probe/, 'the third is closed without an answer');
	ok(wait_until(sub { slurp_file("$dir4/log") =~ /closed: max_connections \(2\) reached/ }, 5),
		'and conmgr logs it');
	$_->kill_kill for @h;
	ok(wait_until(sub { `$res -p $port4 -t primary` =~ /candidate instance=0/ }, 10),
		'once they are gone, a new session is served');
	($rc) = ctl('stop', '-D', $dir4, '-m', 'fast');
	is($rc, 0, 'stop');
}

# Start failures name their cause.
{
	my $busy = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 1, ReuseAddr => 1)
	  or die $!;
	my $bport = $busy->sockport;
	my $dir5 = PostgreSQL::Test::Utils::tempdir();
	chmod 0700, $dir5;
	PostgreSQL::Test::Utils::append_to_file("$dir5/conmgr.conf",
		"port = $bport\nlisten_addresses = '127.0.0.1'\nbackend_hostaddr0 = '127.0.0.1'\nwatchdog_port0 = $wd_p\n");
	($rc, $out, $err) = ctl('start', '-D', $dir5, '-t', '10');
	is($rc, 1, 'start on a port in use: exit 1');
	like($err, qr/could not listen on any address of "127\.0\.0\.1" port $bport/, 'and says the port is the problem');
	close $busy;
	my $dir6 = PostgreSQL::Test::Utils::tempdir();
	($rc, $out, $err) = ctl('start', '-D', $dir6);
	is($rc, 1, 'start without conmgr.conf: exit 1');
	like($err, qr{conmgr\.conf: could not open configuration file: No such file or directory}, 'and says so');
}

# Errors of the command line and the directory.
($rc, $out, $err) = ctl('status', '-D', '/nonexistent/cm');
is($rc, 4, 'status on a missing directory: exit 4');
($rc, $out, $err) = ctl('launch', '-D', $dir);
is($rc, 1, 'unknown operation: exit 1');
like($err, qr/unrecognized operation "launch"/, 'and named');
($rc, $out, $err) = ctl('start', '-D', $dir, '-t', 'soon');
like($err, qr/invalid timeout "soon"/, 'bad -t is named');
{
	local $ENV{CMDATA};
	delete $ENV{CMDATA};
	($rc, $out, $err) = ctl('status');
	like($err, qr/no conmgr directory specified/, 'no directory: says so');
}
my $bad = PostgreSQL::Test::Utils::tempdir();
chmod 0700, $bad;
PostgreSQL::Test::Utils::append_to_file("$bad/conmgr.conf", "port = 0\n");
($rc, $out, $err) = ctl('start', '-D', $bad);
is($rc, 1, 'start with a broken conmgr.conf: exit 1');
like($err, qr/conmgr\.conf:1: invalid value "0" for parameter "port"/, 'and the error names the line');

$standby->stop;
$primary->stop;
done_testing();
