# Test cm_ctl reload (SIGHUP): log_min_messages takes effect in roles forked
# before the reload and in one restarted after it; log_destination too;
# port, heartbeat_interval and a new instance are named as needing a
# restart and keep their old values (the old port still answers, the new
# one does not, cm_ctl status shows the old one); a broken or missing
# conmgr.conf is refused by cm_ctl reload, and on a plain SIGHUP reported
# by conmgr, which keeps running with everything as it was; roles ignore
# SIGHUP; a burst of SIGHUPs is harmless.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use CmTest::Conmgr;
use IO::Socket::INET;
use IPC::Run qw(run);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $top = cm_top();
my $cm_ctl = "$top/build/bin/cm_ctl";
my $cmresolve = "$top/build/regress/tools/cmresolve";

my $dir = PostgreSQL::Test::Utils::tempdir();
chmod 0700, $dir;
my $log = "$dir/conmgr.log";
my $port = PostgreSQL::Test::Cluster::get_free_port();
my $port2 = PostgreSQL::Test::Cluster::get_free_port();
my $wd = PostgreSQL::Test::Cluster::get_free_port();

# No watchdog answers: instance 0 stays down, which is all this needs.
my %base = (
	port => $port,
	listen_addresses => "'127.0.0.1'",
	backend_hostaddr0 => "'127.0.0.1'",
	watchdog_port0 => $wd,
	heartbeat_interval => 10,
	heartbeat_timeout => 20,
	heartbeat_connect_interval => 1,
	log_min_messages => 'LOG');

sub write_conf
{
	my (%p) = (%base, @_);
	my $text = join('', map { defined $p{$_} ? "$_ = $p{$_}\n" : '' } sort keys %p);
	open(my $fh, '>', "$dir/conmgr.conf.new") or die $!;
	print $fh $text;
	close $fh;
	rename("$dir/conmgr.conf.new", "$dir/conmgr.conf") or die $!;
	return;
}

sub ctl
{
	my ($out, $err) = ('', '');
	run([ $cm_ctl, @_ ], '<', \undef, '>', \$out, '2>', \$err);
	return ($? >> 8, $out, $err);
}

sub resolve_once
{
	my ($p) = @_;
	my $pid = open(my $fh, '-|', $cmresolve, '-p', $p // $port, '-t', 'any') or die "cmresolve: $!";
	my $out = join('', <$fh>);
	close $fh;
	return wantarray ? ($pid, $out) : $pid;
}

sub resolve_logged
{
	my ($pid) = @_;
	return slurp_file($log) =~ /listener DEBUG1:  app \S+ pid $pid: any -> 0 candidates$/m;
}

# The listener handles one thing at a time: once it has answered cm_ctl
# status, it has finished (and logged, or not) every resolve before.
sub listener_sync
{
	my ($r) = ctl('status', '-D', $dir);
	return $r == 0;
}

sub reloaded
{
	my ($n) = @_;
	return wait_until(sub { my $k = () = slurp_file($log) =~ /configuration file reloaded: |contains errors; nothing was changed/g; $k >= $n }, 10);
}

sub pids
{
	my ($sup) = slurp_file("$dir/conmgr.pid") =~ /^(\d+)/;
	my %p = (supervisor => $sup);
	for (`ps -o pid=,ppid=,args= -u $<`)
	{
		$p{$2} = $1 if /^\s*(\d+)\s+$sup\s+conmgr: (listener|heartbeat 0|logger)\b/;
	}
	return %p;
}

write_conf();
my $cm = CmTest::Conmgr->new('cm', cmdata => $dir, port => $port, logfile => $log);
ok($cm->start(daemon => 1, wait => 'ready', fail_ok => 1), 'start with log_min_messages = LOG')
  or diag($cm->log_content);
my ($rc, $out, $err);
my %p0 = pids();
ok($p0{listener} && $p0{'heartbeat 0'} && $p0{logger}, 'the roles run');

my $a = resolve_once();
ok(listener_sync(), 'a resolve at LOG');

# 1. log_min_messages takes effect in the running roles.
write_conf(log_min_messages => 'DEBUG1');
($rc, $out, $err) = ctl('reload', '-D', $dir);
is($rc, 0, 'cm_ctl reload: exit 0') or diag($err);
like($out, qr/conmgr signaled/, 'and says conmgr was signaled');
ok(reloaded(1), 'conmgr reloaded');
my $t = slurp_file($log);
like($t, qr/supervisor LOG:  received SIGHUP, reloading configuration file "\Q$dir\E\/conmgr\.conf"/,
	'the reload is logged');
like($t, qr/supervisor LOG:  parameter "log_min_messages" changed from "LOG" to "DEBUG1"/,
	'with the change');
like($t, qr/configuration file reloaded: 1 parameters changed, 1 applied, 0 need a restart/, 'and a summary');
my $b = resolve_once();
ok(wait_until(sub { resolve_logged($b) }, 10), 'DEBUG1: the listener, forked before the reload, logs the resolve');
ok(!resolve_logged($a), 'the one before the reload, at LOG, was not');
ok(wait_until(sub { slurp_file($log) =~ /heartbeat 0 DEBUG1:  instance 0 at /m }, 10),
	'and the heartbeat role its DEBUG1 lines');
my %p1 = pids();
is_deeply(\%p1, \%p0, 'no process was restarted');

# A role restarted after the reload has the new level too.
kill 'KILL', $p0{'heartbeat 0'};
ok(wait_until(sub { my %p = pids(); $p{'heartbeat 0'} && $p{'heartbeat 0'} != $p0{'heartbeat 0'} }, 10),
	'heartbeat 0 killed and restarted');
my $hb = { pids() }->{'heartbeat 0'};
ok(wait_until(sub { slurp_file($log) =~ /\[$hb\] heartbeat 0 DEBUG1:  /m }, 10),
	'the restarted role logs at DEBUG1 as well');
%p0 = pids();

# 2. Parameters that need a restart keep their values.
write_conf(log_min_messages => 'DEBUG1', port => $port2, heartbeat_interval => 5,
	backend_hostaddr1 => "'127.0.0.1'");
($rc, $out) = ctl('reload', '-D', $dir);
is($rc, 0, 'reload with a new port, heartbeat_interval and instance 1');
ok(reloaded(2), 'conmgr reloaded');
$t = slurp_file($log);
like($t, qr/parameter "port" needs a restart to change; keeping "$port" \(conmgr\.conf now says "$port2"\)/,
	'port: needs a restart, the old value kept');
like($t, qr/parameter "heartbeat_interval" needs a restart to change; keeping "10" \(conmgr\.conf now says "5"\)/,
	'heartbeat_interval: likewise');
like($t, qr/parameter "backend_hostaddr1" needs a restart to change; keeping "\(not set\)" \(conmgr\.conf now says "127\.0\.0\.1"\)/,
	'a new instance: likewise');
like($t, qr/configuration file reloaded: 3 parameters changed, 0 applied, 3 need a restart/,
	'the summary counts them');
my ($c, $res) = resolve_once($port);
like($res, qr/^end count=0$/m, 'the old port still answers');
(undef, $res) = resolve_once($port2);
unlike($res, qr/^end count/m, 'the new one does not');
($rc, $out) = ctl('status', '-D', $dir);
like($out, qr/applications on "127\.0\.0\.1" port $port\n/, 'cm_ctl status shows the port in use');
unlike($out, qr/^1\s+127\.0\.0\.1/m, 'and no instance 1');
is_deeply({ pids() }, \%p0, 'no process was restarted');
my $d = resolve_once($port);
ok(wait_until(sub { resolve_logged($d) }, 10), 'and DEBUG1 is still in force');

# 3. A broken file: cm_ctl reload refuses it; a SIGHUP is reported and
# changes nothing.
write_conf(log_min_messages => 'LOG', bogus => 1, heartbeat_timeout => -3);
($rc, $out, $err) = ctl('reload', '-D', $dir);
is($rc, 1, 'cm_ctl reload of a broken file: exit 1');
like($err, qr/conmgr\.conf:\d+: unrecognized configuration parameter "bogus"/, 'it names the errors');
like($err, qr/conmgr was not signaled and keeps its settings/, 'and leaves conmgr alone');
kill 'HUP', $p0{supervisor};
ok(reloaded(3), 'a SIGHUP anyway: conmgr reads it');
$t = slurp_file($log);
like($t, qr/supervisor LOG:  \Q$dir\E\/conmgr\.conf:\d+: unrecognized configuration parameter "bogus"/,
	'and logs each error');
like($t, qr/invalid value "-3" for parameter "heartbeat_timeout"/, 'all of them');
like($t, qr/configuration file "\Q$dir\E\/conmgr\.conf" contains errors; nothing was changed/,
	'and that nothing changed');
unlike($t, qr/changed from "DEBUG1" to "LOG"/, 'log_min_messages was not taken from it');
my $e = resolve_once($port);
ok(wait_until(sub { resolve_logged($e) }, 10), 'DEBUG1 is still in force, on the old port');
($rc, $out, $err) = ctl('status', '-D', $dir);
is($rc, 0, 'cm_ctl status: conmgr runs');
like($err, qr/warning: the configuration file has errors/, 'with a warning about the file');
is_deeply({ pids() }, \%p0, 'no process was restarted');

unlink "$dir/conmgr.conf";
kill 'HUP', $p0{supervisor};
ok(reloaded(4), 'conmgr.conf removed, SIGHUP');
like(slurp_file($log), qr/conmgr\.conf: could not open configuration file: No such file or directory/,
	'reported');
is_deeply({ pids() }, \%p0, 'conmgr runs on, nothing restarted');

# 4. Back to a good file: LOG again, the old port, instance 1 gone.
write_conf();
($rc) = ctl('reload', '-D', $dir);
is($rc, 0, 'reload of the original file');
ok(reloaded(5), 'conmgr reloaded');
like(slurp_file($log), qr/parameter "log_min_messages" changed from "DEBUG1" to "LOG"\n.*configuration file reloaded: 1 parameters changed, 1 applied, 0 need a restart/s,
	'only log_min_messages changed');
my $f = resolve_once();
ok(listener_sync(), 'a resolve at LOG again');
my $size;

# 5. log_destination: to syslog only, then back.
$size = -s $log;
write_conf(log_min_messages => 'DEBUG1', log_destination => "'syslog'", syslog_ident => "'cmtest047'");
ctl('reload', '-D', $dir);
my $g = resolve_once();
ok(listener_sync(), 'reload to DEBUG1 and log_destination = syslog; a resolve');
sleep 1;						# for the logger to take the line off the pipe
unlike(substr(slurp_file($log), $size), qr/changed from "LOG" to "DEBUG1"/, 'the reload lines went to syslog only');
write_conf(log_min_messages => 'DEBUG1');
ctl('reload', '-D', $dir);
ok(wait_until(sub { slurp_file($log) =~ /parameter "log_destination" changed from "syslog" to "stderr"/ }, 10),
	'back to stderr: the change is in the file');
like(slurp_file($log), qr/parameter "syslog_ident" changed from "cmtest047" to "conmgr"/, 'with syslog_ident');
my $h = resolve_once();
ok(wait_until(sub { resolve_logged($h) }, 10), 'a resolve is in the file again');
ok(!resolve_logged($f), 'the one at LOG before was not logged');
ok(!resolve_logged($g), 'the one while logging to syslog is not in the file');

# 6. Roles ignore SIGHUP; a burst of SIGHUPs is harmless.
%p0 = pids();
$size = -s $log;
kill 'HUP', $p0{listener}, $p0{'heartbeat 0'}, $p0{logger};
kill 'HUP', $p0{supervisor} for 1 .. 20;
ok(wait_until(sub { substr(slurp_file($log), $size) =~ /configuration file reloaded: no parameter changed/ }, 10),
	'a burst of SIGHUPs: reloaded, nothing changed');
sleep 1;
is_deeply({ pids() }, \%p0, 'every process is still there');
unlike(substr(slurp_file($log), $size), qr/exited|terminated by signal/, 'none exited');
(undef, $res) = resolve_once($port);
like($res, qr/^end count=0$/m, 'conmgr answers');

($rc) = ctl('stop', '-D', $dir, '-m', 'fast');
is($rc, 0, 'stop');
($rc, $out, $err) = ctl('reload', '-D', $dir);
is($rc, 1, 'cm_ctl reload without a running conmgr: exit 1');
like($err, qr/no conmgr is running in "\Q$dir\E"/, 'and says so');

done_testing();
