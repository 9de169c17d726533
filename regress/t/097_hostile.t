# Hostile peers: a storm of 10,000 bad connections against watchdog.port
# and 10,000 against conmgr's application port at the same time, while a
# real conmgr (heartbeat_interval 1, heartbeat_timeout 3) and a heartbeat
# client keep their sessions with the same instance and applications
# resolve through conmgr.
#
# The storm (build/regress/tools/stormer) comes from 127.0.0.2 to 127.0.0.9,
# in waves, each connection in one of five ways: 64 bytes of garbage;
# connect and send nothing; half a first message, then nothing; a
# slow-loris (a message that never ends, a byte every 300 ms); a header
# announcing an oversized message.  The legitimate peers are on 127.0.0.1.
#
# Asserted: the postmaster never restarts (pg_postmaster_start_time(), no
# "terminated by signal", the watchdog's and the terminator's pids); no role
# of conmgr restarts (supervisor, listener, logger, heartbeat: same pids;
# none is restarted by design either); the legitimate heartbeat session
# sees no timeout and conmgr never marks the instance down; a heartbeat
# client can still register during the storm; every resolve during and
# after the storm succeeds and an attached application is not disturbed;
# the server closes every bad connection itself (at once, or at the end of
# the handshake time limit, or to make room); nothing of the storm
# registers or terminates a session; and the logs get a bounded number of
# lines.  Printed: connections per second, the watchdog's and the
# listener's CPU during the storm, the longest heartbeat gap, the
# registration and resolve latencies.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use CmTest::Conmgr;
use IPC::Run;
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $top = cm_top();
my $stormer = "$top/build/regress/tools/stormer";
my $resolve = "$top/build/regress/tools/cmresolve";
my $t_test = time();
my @storm_src = map { "127.0.0.$_" } 2 .. 9;

my ($node, $wdport) = watchdog_node('hostile');

my $cm = CmTest::Conmgr->new('cm', instances => [ [ $node, $wdport ] ], conf => qq{
listen_addresses = '127.0.0.1'
heartbeat_interval = 1
heartbeat_timeout = 3
log_min_messages = LOG
});
my ($cmport, $cmdata) = ($cm->port, $cm->cmdata);
# An open-files limit of 1024, soft and hard (conmgr raises a soft limit to
# the hard one): the storm must run the listener out of descriptors.  The
# first check below waits for conmgr to route.
$cm->start(wait => 0, ulimit_n => 1024);

# Whatever happens, nothing of the storm outlives the test (conmgr is
# stopped by CmTest::Conmgr).
my @storms;
END
{
	for my $h (@storms)
	{
		eval { $h->kill_kill if $h && $h->pumpable; };
	}
}

sub resolve_once
{
	my ($out, $err) = ('', '');
	IPC::Run::run([ $resolve, '-p', $cmport, '-t', 'primary' ], '>', \$out, '2>', \$err,
		IPC::Run::timeout(10));
	return $out =~ /candidate instance=0/;
}
ok(wait_until(\&resolve_once, 20), 'conmgr routes to the instance') or diag($cm->log_content);

sub role_pids
{
	my ($sup) = slurp_file("$cmdata/conmgr.pid") =~ /^(\d+)/;
	my %pid = (supervisor => $sup);
	for my $line (split /\n/, `ps -o pid=,args= --ppid $sup`)
	{
		$pid{$2} = $1 if $line =~ /^\s*(\d+)\s+conmgr: (listener|logger|heartbeat 0)\b/;
	}
	return \%pid;
}

sub cpu_ticks
{
	my ($pid) = @_;
	open my $fh, '<', "/proc/$pid/stat" or return undef;
	my @f = split ' ', (<$fh> =~ /\)\s+(.*)/)[0];
	return $f[11] + $f[12];    # utime + stime
}

sub q1 { return $node->safe_psql('postgres', $_[0]); }

my $start_time = q1('SELECT pg_postmaster_start_time()');
my $wd_pid = q1("SELECT pid FROM pg_stat_activity WHERE backend_type = 'watchdog'");
my $term_pid = q1("SELECT pid FROM pg_stat_activity WHERE backend_type = 'watchdog terminator'");
my $roles = role_pids();
is(scalar(grep { defined $roles->{$_} } qw(supervisor listener logger), 'heartbeat 0'), 4,
	'conmgr runs: supervisor, listener, logger, heartbeat 0');

# The legitimate peers: a heartbeat client like conmgr's, an application
# attached through conmgr, and an SQL session from a storm address (it must
# survive: nothing of the storm may register, so nothing may terminate).
my $legit = hb_start(port => $wdport, interval => 1, timeout => 3, verbose => 1, duration => 120);
ok(hb_wait($legit, qr/welcome/, 10), 'a legitimate heartbeat client registered');
my $att_out = '';
my $attached = IPC::Run::start([ $resolve, '-p', $cmport, '-t', 'primary', '-a', '-w', 100 ],
	'>', \$att_out, '2>', \$att_out);
ok(wait_until(sub { $attached->pump_nb; $att_out =~ /attached/ }, 10), 'an application is attached through conmgr');
my $victim = raw_pg_session('127.0.0.2', $node->port, 'storm-host');
is(q1("SELECT count(*) FROM pg_stat_activity WHERE client_addr = '127.0.0.2'"), '1',
	'an SQL session from 127.0.0.2, a storm address, is open');

######################################################################
# The storm.
######################################################################
my $log_offset = -s $node->logfile;
my $cm_offset = $cm->log_offset;
my %cpu0 = (watchdog => cpu_ticks($wd_pid), listener => cpu_ticks($roles->{listener}));
my $t0 = time();
my %sout = (wd => '', app => '');
for my $proto ('wd', 'app')
{
	push @storms, IPC::Run::start(
		[ $stormer, '-P', $proto, '-p', $proto eq 'wd' ? $wdport : $cmport,
			'-s', join(',', @storm_src), '-n', 10000, '-w', 50, '-i', 100,
			'-c', 4000, '-H', 11, '-d', 45 ],
		'<', \undef, '>', \$sout{$proto}, '2>', \$sout{$proto});
}

# Meanwhile: a resolve every 250 ms, a new heartbeat registration every
# 5 s, the listener and the watchdog sampled.
my (@resolve_ms, $resolve_fail, @register_ms, $register_fail);
$resolve_fail = $register_fail = 0;
my $next_reg = time() + 2;
my $running = sub { grep { $_->pumpable } @storms };
while ($running->() && time() - $t0 < 60)
{
	$_->pump_nb for grep { $_->pumpable } @storms;
	my $t = time();
	if (resolve_once()) { push @resolve_ms, (time() - $t) * 1000; }
	else { $resolve_fail++; }
	if (time() >= $next_reg)
	{
		$next_reg = time() + 5;
		my $t1 = time();
		my $c = hb_start(port => $wdport, interval => 1, timeout => 3, duration => 10);
		if (hb_wait($c, qr/welcome/, 10)) { push @register_ms, (time() - $t1) * 1000; }
		else { $register_fail++; diag(${ $c->{out} } . ${ $c->{err} }); }
		hb_stop($c);
	}
	usleep(250_000);
}
$_->finish for @storms;
my $elapsed = time() - $t0;
my %cpu = (
	watchdog => (cpu_ticks($wd_pid) - $cpu0{watchdog}) / POSIX::sysconf(POSIX::_SC_CLK_TCK()),
	listener => (cpu_ticks($roles->{listener}) - $cpu0{listener}) / POSIX::sysconf(POSIX::_SC_CLK_TCK()));

my %tot;
for my $proto ('wd', 'app')
{
	note("stormer -P $proto:\n$sout{$proto}");
	my ($line) = $sout{$proto} =~ /^(total .*)$/m;
	ok(defined $line, "the $proto storm ran to its end") or next;
	my %f = $line =~ /(\w+)=(\S+)/g;
	$tot{$proto} = \%f;
	is($f{opened}, 10000, "$proto: 10,000 connections opened");
	ok($f{connected} >= 9900, "$proto: $f{connected} of them connected");
	is($f{closed_by_us}, 0, "$proto: the server closed every one itself (none outlived the 11 s hold)");
	for my $m ($sout{$proto} =~ /^(mode=\S+ .*)$/mg)
	{
		my %g = $m =~ /(\w+)=(\S+)/g;
		if ($g{mode} eq 'garbage' || $g{mode} eq 'oversize')
		{
			ok($g{close_ms_max} < 2000,
				"$proto: $g{mode} connections were closed at once (longest $g{close_ms_max} ms)");
		}
		else
		{
			ok($g{close_ms_max} < 10_700,
				"$proto: $g{mode} connections were closed within the 10 s handshake limit (longest $g{close_ms_max} ms)");
		}
	}
}

######################################################################
# What the legitimate peers saw.
######################################################################
sub gaps
{
	my @t = map { $_->{T} } grep { $_->{what} eq 'welcome' || $_->{what} eq 'beat' } hb_events($legit);
	return map { $t[$_] - $t[ $_ - 1 ] } 1 .. $#t;
}
my @gaps = gaps();
my ($max_gap) = sort { $b <=> $a } @gaps;
my @closed = grep { $_->{what} eq 'closed' } hb_events($legit);
is(scalar(@closed), 0, 'the legitimate heartbeat session was never closed');
ok(defined $max_gap && $max_gap < 2, sprintf('its longest heartbeat gap was %.3f s (interval 1 s, timeout 3 s)', $max_gap // -1));
my $cm_storm = $cm->log_content($cm_offset);
unlike($cm_storm, qr/instance 0 .*is down|heartbeat.*(?:lost|timeout)/i, 'conmgr never lost its heartbeat with the instance');
is($resolve_fail, 0, sprintf('every resolve during the storm succeeded (%d)', scalar @resolve_ms));
is($register_fail, 0, sprintf('every heartbeat registration during the storm succeeded (%d)', scalar @register_ms));
$attached->pump_nb;
unlike($att_out, qr/down|eof|timeout/, 'the attached application got no down-notice');
ok(resolve_once(), 'an application resolves after the storm');
my $hb_rows = q1("SELECT string_agg(DISTINCT host(conmgr_addr), ',') FROM pgx_stat_watchdog");
is($hb_rows, '127.0.0.1', 'pgx_stat_watchdog shows only the legitimate peers');
is(q1("SELECT count(*) FROM pg_stat_activity WHERE client_addr = '127.0.0.2'"), '1',
	'the SQL session from 127.0.0.2 was not terminated');

######################################################################
# Nobody died.
######################################################################
is(q1('SELECT pg_postmaster_start_time()'), $start_time, 'the postmaster never restarted');
is(q1("SELECT pid FROM pg_stat_activity WHERE backend_type = 'watchdog'"), $wd_pid,
	'the watchdog worker is the same process');
is(q1("SELECT pid FROM pg_stat_activity WHERE backend_type = 'watchdog terminator'"), $term_pid,
	'the terminator is the same process');
my $log = slurp_file($node->logfile, $log_offset);
unlike($log, qr/terminated by signal|was terminated by exit code|server process .* exited/, 'no server process crashed');
is_deeply(role_pids(), $roles, 'no role of conmgr was restarted (same pids)');
unlike($cm_storm, qr/exited|restarting|FATAL|PANIC/, 'and conmgr logged no exit');

######################################################################
# Bounded logs.
######################################################################
my $wd_lines = () = $log =~ /^.*watchdog: .*$/mg;
my $cm_lines = () = $cm_storm =~ /^.*\bLOG:  .*$/mg;
ok($wd_lines <= 150, "the server log got $wd_lines watchdog lines for 10,000 bad connections");
ok($cm_lines <= 150, "conmgr's log got $cm_lines lines for 10,000 bad connections");
like($log, qr/connections in handshake, the most from this address: closed the oldest to make room/,
	'the watchdog made room for new handshakes by closing the oldest');
like($cm_storm, qr/closed in its handshake .* to make room for a new connection: out of descriptors/,
	'the listener, out of descriptors, made room by closing the oldest handshake');

######################################################################
# The figures.
######################################################################
my @r = sort { $a <=> $b } @resolve_ms;
my @g = sort { $a <=> $b } @register_ms;
my $figures = sprintf(
	"storm: %.1f s, %d + %d connections (watchdog + listener), %.0f + %.0f connections/s handled\n"
	  . "CPU during the storm: watchdog %.2f s (%.0f%% of a core), listener %.2f s (%.0f%%)\n"
	  . "legitimate heartbeat: longest gap %.3f s over %d beats (interval 1 s)\n"
	  . "resolve during the storm: %d, median %.1f ms, max %.1f ms; "
	  . "heartbeat registration: %d, max %.1f ms\n"
	  . "log lines: server %d (watchdog), conmgr %d; whole test %.1f s",
	$elapsed, $tot{wd}{connected} // 0, $tot{app}{connected} // 0,
	$tot{wd}{connected_per_s} // 0, $tot{app}{connected_per_s} // 0,
	$cpu{watchdog}, 100 * $cpu{watchdog} / $elapsed, $cpu{listener}, 100 * $cpu{listener} / $elapsed,
	$max_gap // -1, scalar @gaps,
	scalar @r, @r ? $r[ @r / 2 ] : -1, @r ? $r[-1] : -1,
	scalar @g, @g ? $g[-1] : -1,
	$wd_lines, $cm_lines, time() - $t_test);
diag($figures);

hb_stop($legit);
$attached->kill_kill;
close $victim;
$cm->stop;
$node->stop;
done_testing();
