# Test cm_ctl start/stop/status against real instances: start waits for the
# primary (or every instance with --complete, or nothing with -W) and gives
# up after -t while leaving conmgr running; stop in each mode, with -t, and
# with a conmgr nobody reaps; status as tables and as JSON (parsed); the
# pg_ctl-style exit codes and error messages; the log's line format and
# log_min_messages.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use Config;
use IO::Socket::INET;
use IPC::Run qw(run);
use JSON::PP qw(decode_json);
use POSIX qw(WNOHANG);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $cm_ctl = cm_top() . '/build/bin/cm_ctl';

my ($node, $wd) = watchdog_cluster(p => 'primary', s => 'standby');
my ($primary, $standby) = @$node{qw(p s)};
my ($wd_p, $wd_s) = @$wd{qw(p s)};

# A conmgr directory for the given watchdog ports; a hash first overrides
# parameters.
sub cmdir
{
	my %p = (heartbeat_interval => 1, heartbeat_timeout => 3, log_min_messages => 'LOG',
		ref $_[0] ? %{ shift() } : ());
	my (@instances) = @_;
	my $dir = PostgreSQL::Test::Utils::tempdir();
	chmod 0700, $dir;
	my $conf = "port = " . PostgreSQL::Test::Cluster::get_free_port() . "\n";
	$conf .= "$_ = $p{$_}\n" for sort keys %p;
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
like($out, qr/^0\s+127\.0\.0\.1\s+27500\s+$wd_p\s+up\s+primary\s+1\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/m,
	'status shows instance 0 as the primary, on timeline 1, up since a time');
like($out, qr/^1\s+127\.0\.0\.1\s+27500\s+$wd_s\s+up\s+standby\s+1\s+\S+ \S+$/m, 'status shows instance 1 as a standby');
like($out, qr/^127\.0\.0\.1:\d+\s+\d+\s+primary\s+attached\s+0\s+\S+ \S+$/m,
	'status shows the application session: client, pid, target, instance, since');
($rc, $out) = ctl('status', '-D', $dir, '-i', 'application');
unlike($out, qr/^instance/m, '-i application leaves the instances out');
like($out, qr/primary\s+attached/, 'and shows the session');
($rc, $out) = ctl('status', '-D', $dir, '-i', 'instance');
like($out, qr/^instance\s+address\s+backend_port\s+watchdog_port\s+heartbeat\s+role\s+timeline\s+since$/m,
	'-i instance shows the instances');
unlike($out, qr/^application|attached/m, 'and leaves the sessions out');
{
	local $ENV{CMDATA} = $dir;
	command_exit_is([ $cm_ctl, 'status' ], 0, 'status finds the directory in $CMDATA');
}

# The JSON, parsed.
my ($sup_pid) = slurp_file("$dir/conmgr.pid") =~ /^(\d+)/;
my $j = eval { decode_json((ctl('status', '-D', $dir, '--json'))[1]) };
ok($j && $j->{running} && $j->{pid} == $sup_pid && $j->{port} == $cmport,
	'status --json: valid JSON; running, pid and port');
is_deeply([ map { "$_->{instance} $_->{address} $_->{watchdog_port} $_->{heartbeat} $_->{role}" } @{ $j->{instances} } ],
	[ "0 127.0.0.1 $wd_p up primary", "1 127.0.0.1 $wd_s up standby" ], 'status --json: the instances');
ok((grep { $_->{since} =~ /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/ } @{ $j->{instances} }) == 2, 'with the time each came up');
is_deeply([ map { "$_->{target} $_->{state} $_->{instance}" } @{ $j->{applications} } ], [ 'primary attached 0' ],
	'status --json: the application session');
like($j->{applications}[0]{client} . ' ' . $j->{applications}[0]{pid}, qr/^127\.0\.0\.1:\d+ [1-9]\d*$/,
	'with its address and pid');
$j = eval { decode_json((ctl('status', '-D', $dir, '-i', 'instance', '--json'))[1]) };
ok($j && @{ $j->{instances} } == 2 && !exists $j->{applications}, 'status -i instance --json: instances only');
$j = eval { decode_json((ctl('status', '-D', $dir, '-i', 'application', '--json'))[1]) };
ok($j && @{ $j->{applications} } == 1 && !exists $j->{instances}, 'status -i application --json: sessions only');
like(slurp_file("$dir/conmgr.log"),
	qr/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC \[$sup_pid\] supervisor LOG:  conmgr ready/m,
	'log lines carry time, pid, role and level');
($rc, $out) = ctl('status', '-D', $dir, '-i', 'instance', '--json');
like($out, qr/^\{"running": true, "pid": \d+, "port": \d+, "instances": \[\{"instance": 0, .*"heartbeat": "up", "role": "primary", "timeline": 1, "since": "[^"]+", "since_us": \d+, "downs": 0\}, \{"instance": 1, .*"role": "standby".*\]\}$/,
	'status -i instance --json');
($rc, $out) = ctl('status', '-D', $dir, '--json');
like($out, qr/"applications": \[\{"client": "127\.0\.0\.1:\d+", "pid": \d+, "target": "primary", "state": "attached", "instance": 0, "since": "[^"]+"\}\]\}$/,
	'status --json includes the applications');
$attached->kill_kill;
command_exit_is([ $cm_ctl, 'status', '-D', $dir, '-i', 'everything' ], 1, 'status -i with a bad value: exit 1');

($rc, $out, $err) = ctl('stop', '-D', $dir, '-m', 'sideways');
is($rc, 1, 'stop with a bad mode: exit 1');
like($err, qr/unrecognized shutdown mode "sideways"/, 'and names it');
$c_out = '';
$attached = IPC::Run::start([ cm_top() . '/build/regress/tools/cmresolve',
	'-p', $cmport, '-t', 'primary', '-a', '-w', 60 ], '>', \$c_out);
ok(wait_until(sub { $attached->pump_nb; $c_out =~ /attached/ }, 10), 'an application session attached again');
($rc, $out, $err) = ctl('stop', '-D', $dir, '-t', '1');
is($rc, 1, 'smart stop with a session open and -t 1: exit 1');
like($err, qr/conmgr \(PID \d+\) does not shut down/, 'and says conmgr does not shut down');
command_exit_is([ $cm_ctl, 'status', '-D', $dir ], 0, 'conmgr still runs, waiting for the session');
command_like([ $cm_ctl, 'stop', '-D', $dir, '-m', 'fast' ], qr/conmgr stopped/,
	'stop -m fast waits until conmgr is gone');
ok(!-e "$dir/conmgr.pid" && `ps -u $< -o args=` !~ /conmgr: listener :$cmport\b/,
	'the pid file and the roles are gone');
$attached->finish;
like($c_out, qr/down instance=0 reason=4/, 'fast stop told the session "conmgr shutting down"');
($rc, $out, $err) = ctl('stop', '-D', $dir);
is($rc, 1, 'stop when nothing runs: exit 1');
like($err, qr/no conmgr is running/, 'and says so');

# --complete waits for every instance; immediate stop.
command_like([ $cm_ctl, 'start', '-D', $dir, '--complete' ], qr/every instance connected/,
	'start --complete waits for all');
command_exit_is([ $cm_ctl, 'stop', '-D', $dir, '-m', 'immediate' ], 0, 'stop -m immediate');
ok(wait_until(sub { `ps -u $< -o args=` !~ /conmgr: (listener :$cmport\b|heartbeat \d 127\.0\.0\.1:$wd_s\b)/ }, 5),
	'immediate: the roles are killed');
ok(!-e "$dir/conmgr.pid", 'and the pid file removed');

# No primary among the instances: start gives up after -t, conmgr keeps running.
my $dir2 = cmdir($wd_s);
($rc, $out, $err) = ctl('start', '-D', $dir2, '-t', '2');
is($rc, 1, 'start without a primary: gives up after -t 2');
like($err, qr/conmgr \(PID \d+\) is running, but no primary was connected within 2 s/, 'and says conmgr is running');
command_exit_is([ $cm_ctl, 'status', '-D', $dir2 ], 0, 'conmgr still runs after the timeout');
command_exit_is([ $cm_ctl, 'stop', '-D', $dir2 ], 0, 'stop (smart)');

# -W: no wait.
command_exit_is([ $cm_ctl, 'start', '-D', $dir2, '-W' ], 0, 'start -W returns at once');
command_exit_is([ $cm_ctl, 'stop', '-D', $dir2, '-W' ], 0, 'stop -W');
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
	like($out, qr/^0\s+127\.0\.0\.1\s+\d+\s+$wd_p\s+up\s+primary\s+1\s+\S+ \S+$/m, 'cm_ctl status reaches it');
	like(slurp_file("$dir3/conmgr.log"), qr/conmgr ready: 1 instances, applications on "127\.0\.0\.2" port $port3/,
		'the log names the address');
	($rc) = ctl('stop', '-D', $dir3);
	is($rc, 0, 'and stops it');
}

# cm_ctl start asks conmgr on the first listen address.  When something
# else holds that address with a full backlog, each question times out
# rather than hang in connect() for the minutes of TCP's retries.
{
	my $dir7 = cmdir($wd_p);
	my ($port7) = `grep '^port' $dir7/conmgr.conf` =~ /(\d+)/;
	PostgreSQL::Test::Utils::append_to_file("$dir7/conmgr.conf", "listen_addresses = '127.0.0.1, 127.0.0.2'\n");
	my $squat = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port7, Listen => 0, ReuseAddr => 1)
	  or die $!;
	my @queued;
	while (@queued < 8)
	{
		my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port7, Timeout => 0.3) or last;
		push @queued, $c;
	}
	my $t0 = time();
	($rc, $out, $err) = ctl('start', '-D', $dir7, '-t', '3');
	my $took = time() - $t0;
	is($rc, 1, 'start while the first listen address is squatted: exit 1');
	like($err, qr/is running, but no primary was connected within 3 s/, 'and says what it could not see');
	ok($took < 8, sprintf('after -t 3, not after connect() gave up (%.1f s)', $took));
	ctl('stop', '-D', $dir7, '-m', 'fast');
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

# The directory must be closed to group and others, and exist.
{
	my $open = cmdir($wd_p);
	chmod 0755, $open;
	($rc, $out, $err) = ctl('start', '-D', $open);
	is($rc, 1, 'start in a directory with mode 0755: exit 1');
	like($err, qr/directory "\Q$open\E" has group or world access \(mode 0755\)\n.* HINT:  chmod 0700 it\./,
		'and says why');
	run([ cm_top() . '/build/bin/conmgr', '-D', "$open/nonexistent" ], '<', \undef, '>', \$out, '2>', \$err);
	like($err, qr/could not access directory "\Q$open\E\/nonexistent": No such file or directory/,
		'conmgr on a missing directory says so');
}

# log_min_messages, in PostgreSQL's order (LOG ranks above ERROR): ERROR
# keeps a warning out but LOG lines in, FATAL keeps LOG lines out too,
# DEBUG1 lets debug lines in.
{
	my %log;
	for my $level (qw(ERROR FATAL DEBUG1))
	{
		my $d = cmdir({ log_min_messages => $level, heartbeat_interval => 2, heartbeat_timeout => 2 }, $wd_p);
		($rc) = ctl('start', '-D', $d);
		is($rc, 0, "start with log_min_messages = $level");
		ctl('stop', '-D', $d, '-m', 'fast');
		$log{$level} = slurp_file("$d/conmgr.log");
	}
	like($log{ERROR}, qr/supervisor LOG:  conmgr ready/, 'ERROR: LOG lines are written');
	unlike($log{ERROR}, qr/ WARNING:  /, 'but not the configuration warning');
	unlike($log{FATAL}, qr/ (LOG|WARNING|DEBUG\d):  /, 'FATAL: neither LOG lines nor warnings');
	like($log{DEBUG1}, qr/supervisor WARNING:  .*heartbeat_timeout \(2\) is not greater than heartbeat_interval/,
		'DEBUG1: the warning');
	like($log{DEBUG1}, qr/supervisor DEBUG1:  started listener :\d+ \(pid \d+\)/, 'and debug lines');
	unlike($log{DEBUG1}, qr/ DEBUG[2-5]:  /, 'but none below DEBUG1');
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

# A conmgr whose parent never reaps it (cm_ctl start leaves it to init;
# here, the test is made the subreaper and does not reap): stop must not
# wait for a zombie to vanish.
SKIP:
{
	my %sys_prctl = (x86_64 => 157, aarch64 => 167);
	my ($arch) = $Config{archname} =~ /^([^-]+)/;
	skip "no prctl number for $arch", 2 unless $sys_prctl{$arch};
	skip "PR_SET_CHILD_SUBREAPER: $!", 2 if syscall($sys_prctl{$arch}, 36, 1, 0, 0, 0) != 0;
	my $dz = cmdir($wd_p);
	($rc) = ctl('start', '-D', $dz);
	is($rc, 0, 'start a conmgr that will be our child, never reaped');
	($rc, $out, $err) = ctl('stop', '-D', $dz, '-m', 'fast', '-t', '5');
	is($rc, 0, 'stop returns once conmgr has exited, zombie or not') or diag($err);
	1 while waitpid(-1, WNOHANG) > 0;
}

$standby->stop;
$primary->stop;
done_testing();
