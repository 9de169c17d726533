# Test that a step of the wall clock changes nothing in conmgr and in the
# watchdog: conmgr and the server run under libfaketime
# (FAKETIME_TIMESTAMP_FILE, re-read on every call; CLOCK_MONOTONIC left
# alone), both from the one file whose offset the test rewrites: +10 min,
# back to 0 (-10 min), -10 min, back to 0 (+10 min).  Around each step,
# sessions in every phase: libpq-cm applications attached to the instance
# with a query running and raw attached sessions (all through the test),
# sessions stalled between HELLO and RESOLVE and between the candidates
# and ATTACHED (each across its step), and silent connections, which
# the listener must close 10 s after they connected, neither sooner nor
# later.  Each step is checked to have moved the listener's
# CLOCK_REALTIME (cm_ctl status's since= of a new session) and the
# server's (clock_timestamp()).  Asserted: no session is closed or told its
# instance is down, no application gets an error, new applications
# connect, the heartbeat never goes down on either side and the terminator
# ends nothing; then a
# real loss (the instance stopped with SIGSTOP) reaches every attached
# application within heartbeat_timeout.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use CmTest::Conmgr;
use IO::Socket::INET;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $top = cm_top();
my $cmapp = "$top/build/regress/tools/cmapp";
my $resolve = "$top/build/regress/tools/cmresolve";
my ($hb_interval, $hb_timeout) = (1, 3);
my $handshake_secs = 10;    # LSN_HANDSHAKE_SECS

# The fake clock's offset, one file for conmgr and the server.
my $rc = PostgreSQL::Test::Utils::tempdir() . '/faketime.rc';
sub set_offset { set_fake_offset($rc, @_) }
set_offset(0);
my @faketime = faketime_env($rc);

my ($nodes, $wd);
{
	local %ENV = (%ENV, map { split /=/, $_, 2 } @faketime);
	($nodes, $wd) = watchdog_cluster(p => 'clock');
}
my ($node, $wdport) = ($nodes->{p}, $wd->{p});
watchdog_workers_restart($node, $wdport);
$node->safe_psql('postgres', 'CREATE EXTENSION watchdog');
my $server_log_from = -s $node->logfile;

my $cm = CmTest::Conmgr->new('cm', instances => [ [ $node, $wdport ] ], conf => qq{
listen_addresses = '127.0.0.1'
heartbeat_interval = $hb_interval
heartbeat_timeout = $hb_timeout
attach_timeout = 30
log_min_messages = LOG
});
my ($cmport, $cmdata) = ($cm->port, $cm->cmdata);

my ($preload) = map { /^LD_PRELOAD=(.*)/ ? $1 : () } @faketime;
$preload = CmTest::asan_runtime() . ":$preload" if sanitized();
# The first check below waits for conmgr to route.
$cm->start(wait => 0, prefix => [ 'env', @faketime, "LD_PRELOAD=$preload" ]);
my @procs;
# CmTest's END stops conmgr; this one the test's other programs.
END
{
	eval { $_->kill_kill if $_->pumpable; } for @procs;
}

# The server's wall clock minus ours, in seconds.
sub server_offset
{
	my $t0 = time();
	my $now = $node->safe_psql('postgres', 'SELECT extract(epoch FROM clock_timestamp())');
	return $now - ($t0 + time()) / 2;
}

my $conninfo = "host=127.0.0.1 port=$cmport dbname=postgres target_session_attrs=any";

sub start_proc
{
	my (@cmd) = @_;
	my $out = '';
	my $h = IPC::Run::start(\@cmd, '<', \undef, '>', \$out, '2>&1');
	push @procs, $h;
	return { h => $h, out => \$out };
}

sub out_of
{
	my ($p) = @_;
	$p->{h}->pump_nb if $p->{h}->pumpable;
	return ${ $p->{out} };
}

sub wait_out
{
	my ($p, $re, $secs) = @_;
	return wait_until(sub { out_of($p) =~ $re }, $secs);
}

ok(wait_until(sub { app_connects($conninfo) }, 30), 'an application connects through conmgr') or diag($cm->log_content);

# How far the listener's wall clock is from ours: the since= (its
# CLOCK_REALTIME at ATTACHED) of a session attached now, the only one with
# target prefer-standby.
sub listener_offset
{
	my $p = start_proc($resolve, '-p', $cmport, '-t', 'prefer-standby', '-a', '-w', 5);
	my $t = time();
	return undef unless wait_out($p, qr/^attached/m, 10);
	my ($since) = (cm_status($cmdata) // '') =~
	  /^app .* target=prefer-standby state=attached .*since=(\d+)$/m;
	$p->{h}->kill_kill;
	return defined $since ? $since / 1e6 - $t : undef;
}

# For the whole test: libpq-cm applications blocked in a query on the
# instance, and raw attached sessions.
my @blocked = map { start_proc($cmapp, 'block', $conninfo, 'SELECT pg_sleep(3600)') } 1 .. 8;
my @attached = map { start_proc($resolve, '-p', $cmport, '-t', 'any', '-a', '-w', 600) } 1 .. 8;
ok(wait_until(sub {
	$node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(3600)'") == 8 }, 30),
	'8 libpq-cm applications are running a query on the instance');
ok(wait_until(sub { (grep { out_of($_) =~ /^attached/m } @attached) == 8 }, 30),
	'8 raw sessions are attached');

my $log_from = $cm->log_offset;
my $offset = 0;
for my $step (600, -600, -600, 600)
{
	my $to = $offset + $step;
	my $what = sprintf('step %+d s (offset %+d s)', $step, $to);

	# Sessions caught by the step in the middle of their handshake or of
	# their attachment, and silent ones.
	my @hello = map { start_proc($resolve, '-p', $cmport, '-t', 'any', '-s', 4) } 1 .. 4;
	my @resolved = map { start_proc($resolve, '-p', $cmport, '-t', 'any', '-a', '-S', 4, '-w', 2) } 1 .. 4;
	my @silent = map {
		+{ s => IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $cmport, Proto => 'tcp')
			  // die("connect: $!"), t => time() }
	} 1 .. 4;
	ok(wait_until(sub { (grep { out_of($_) =~ /^hello/m } @hello) == 4
			  && (grep { out_of($_) =~ /^resolved/m } @resolved) == 4 }, 10),
		"$what: sessions wait between HELLO and RESOLVE, and between the candidates and ATTACHED");
	usleep(1_000_000);
	set_offset($to);
	$offset = $to;

	# The silent ones: closed by conmgr 10 s after they connected.
	my @closed_after;
	my $deadline = time() + $handshake_secs + 5;
	while (time() < $deadline && grep { !defined $_->{closed} } @silent)
	{
		for my $c (grep { !defined $_->{closed} } @silent)
		{
			my $rin = '';
			vec($rin, fileno($c->{s}), 1) = 1;
			next unless select($rin, undef, undef, 0) > 0;
			my $n = sysread($c->{s}, my $buf, 1);
			$c->{closed} = time() - $c->{t} if !$n;
		}
		usleep(20_000);
	}
	my @t = map { $_->{closed} // -1 } @silent;
	ok(!(grep { $_ < $handshake_secs - 0.5 || $_ > $handshake_secs + 2 } @t),
		sprintf("$what: silent connections closed %s s after connecting (limit %d s)",
			join(', ', map { sprintf('%.1f', $_) } @t), $handshake_secs));
	close $_->{s} for @silent;

	for my $p (@hello, @resolved)
	{
		$p->{h}->finish;
	}
	is((grep { ${ $_->{out} } =~ /^end count=1$/m && $_->{h}->result == 0 } @hello), 4,
		"$what: the sessions stalled before RESOLVE got their candidates")
	  or diag(join("---\n", map { ${ $_->{out} } } @hello));
	is((grep { ${ $_->{out} } =~ /^attached instance=0\ntimeout$/m } @resolved), 4,
		"$what: the sessions stalled before ATTACHED attached, and were left alone")
	  or diag(join("---\n", map { ${ $_->{out} } } @resolved));

	my $off = listener_offset();
	ok(defined $off && abs($off - $to) < 5,
		sprintf("$what: the listener's wall clock moved (%+.1f s from ours)", $off // 0));
	$off = server_offset();
	ok(abs($off - $to) < 5, sprintf("$what: the server's wall clock moved (%+.1f s from ours)", $off));
	ok(app_connects($conninfo), "$what: a new application connects");
}

# Nothing was lost across the steps.
is((grep { out_of($_) =~ /^result / } @blocked), 0, 'no libpq-cm application got an error');
is((grep { out_of($_) =~ /^(?:down|eof|timeout)/m } @attached), 0,
	'no attached session was closed or told its instance is down');
my $st = cm_status($cmdata) // '';
like($st, qr/^instance 0 state=up .* downs=0(?: |$)/m, 'the instance is up, and never went down');
my $cm_log = $cm->log_content($log_from);
unlike($cm_log, qr/is down|lost|FATAL|PANIC|exited/, 'conmgr logged no loss and no exit')
  or diag($cm_log);
is($node->safe_psql('postgres', 'SELECT count(*) FROM pgx_stat_watchdog'), '1',
	'the watchdog still has conmgr\'s session');
my $server_log = substr(slurp_file($node->logfile), $server_log_from);
unlike($server_log, qr/lost heartbeat session|watchdog terminator: terminating/,
	'the watchdog lost no session and terminated nothing')
  or diag($server_log);

# A real loss is still seen within heartbeat_timeout.
my $pm = $node->{_pid};
my @pids = ($pm, split /\s+/, `pgrep -P $pm`);
my $t0 = time();
kill 'STOP', @pids;
my ($t_down, $t_err);
my $deadline = time() + $hb_timeout + 5;
while (time() < $deadline && (!defined $t_down || !defined $t_err))
{
	$t_down //= time() - $t0 if (grep { out_of($_) =~ /^down instance=0/m } @attached) == 8;
	$t_err //= time() - $t0 if (grep { out_of($_) =~ /^result .*server closed the connection/m } @blocked) == 8;
	usleep(10_000);
}
kill 'CONT', @pids;
ok(defined $t_down && $t_down <= $hb_timeout + 0.5,
	sprintf('every attached session got INSTANCE_DOWN %.3f s after the instance stopped (heartbeat_timeout %d s)',
		$t_down // -1, $hb_timeout));
ok(defined $t_err && $t_err <= $hb_timeout + 0.5,
	sprintf('every libpq-cm application got its connection-lost error %.3f s after it', $t_err // -1));

$_->{h}->kill_kill for grep { $_->{h}->pumpable } @blocked, @attached;
$cm->stop;
$node->stop;
done_testing();
