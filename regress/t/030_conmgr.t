# Test the conmgr daemon against real instances with the watchdog: a
# primary and a standby, conmgr in front.  Resolve answers for every target
# before and after promotion and with a read-only primary, load balancing
# between equal instances, down-notices to the sessions of a stopped
# instance only (and how fast they reach 100 sessions, every notice sent
# before any of those sessions is closed), every role killed
# and restarted with a back-off, the lock file, the open-files check and a
# listener out of descriptors, plain clients told what they reached,
# malformed input on the port, the handshake time limit, and a smart stop.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use CmTest::Conmgr;
use IO::Select;
use IO::Socket::INET;
use IPC::Run;
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use Time::Local qw(timegm);

my $top = cm_top();
my $conmgr = "$top/build/bin/conmgr";
my $resolve = "$top/build/regress/tools/cmresolve";

my ($node, $wd) = watchdog_cluster(p => 'primary', s => 'standby');
my ($primary, $standby) = @$node{qw(p s)};
my ($wd_p, $wd_s) = @$wd{qw(p s)};

my $cm = CmTest::Conmgr->new('cm', instances => [ [ $primary, $wd_p ], [ $standby, $wd_s ] ],
	conf => { heartbeat_interval => 1, heartbeat_timeout => 3, log_min_messages => 'LOG' });
my ($cmport, $cmdata) = ($cm->port, $cm->cmdata);
# The first check below waits for conmgr to route.
$cm->start(wait => 0);

# cmresolve's output for one request to the conmgr on $port.
sub resolve_on
{
	my ($port, $target, @extra) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ $resolve, '-p', $port, '-t', $target, @extra ], '>', \$out, '2>', \$err);
	return $out;
}

sub resolve
{
	return resolve_on($cmport, @_);
}

sub instances_for
{
	my ($target) = @_;
	my $out = resolve($target);
	return join(',', $out =~ /candidate instance=(\d+)/g);
}

ok(wait_until(sub { instances_for('any') =~ /^(0,1|1,0)$/ }, 30),
	'both instances become routable') or diag($cm->log_content);

my $out = resolve('any');
like($out, qr/probe-error sqlstate=08004 message=this is conmgr/, 'the probe is answered with an ErrorResponse');
like($out, qr/hello versions=1-3/, 'then HELLO');

# RESOLVE sent with the probe: the ErrorResponse, HELLO and both candidates
# come back in one write, hence one TCP segment (docs/protocol.md, 2.3).
$out = resolve('any', '-P');
like($out, qr/hello versions=1-3\n(candidate instance=\d+ .*\n){2}end count=2\n/,
	'a RESOLVE sent with the probe is answered');
like($out, qr/^segments data_in=1$/m, 'the whole answer arrives in one segment') or diag($out);

is(instances_for('read-write'), '0', 'read-write: the primary');
is(instances_for('primary'), '0', 'primary: the primary');
is(instances_for('read-only'), '1', 'read-only: the standby');
is(instances_for('standby'), '1', 'standby: the standby');
is(instances_for('prefer-standby'), '1,0', 'prefer-standby: standby first, then primary');
is(instances_for('prefer-primary'), '0,1', 'prefer-primary: primary first, then standby');

# read-write and primary part ways when the primary is read-only by default.
{
	local $ENV{PGOPTIONS} = '-c default_transaction_read_only=off';
	$primary->safe_psql('postgres', 'ALTER SYSTEM SET default_transaction_read_only = on');
	$primary->reload;
	ok(wait_until(sub { instances_for('read-write') eq '' }, 10),
		'default_transaction_read_only = on: read-write finds no instance');
	is(instances_for('primary'), '0', 'primary still offers the primary');
	like(instances_for('read-only'), qr/^(0,1|1,0)$/, 'read-only offers it as well as the standby');
	$primary->safe_psql('postgres', 'ALTER SYSTEM RESET default_transaction_read_only');
	$primary->reload;
	ok(wait_until(sub { instances_for('read-write') eq '0' }, 10),
		'default_transaction_read_only reset: read-write offers the primary again');
	is(instances_for('read-only'), '1', 'and read-only only the standby');
}
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

# ps shows the roles (CmTest's role_pid looks among this conmgr's).
my ($sup_pid) = slurp_file("$cmdata/conmgr.pid") =~ /^(\d+)/;
like(`ps -o args= -p $sup_pid`, qr/^conmgr: supervisor -D \Q$cmdata\E/, 'ps shows the supervisor');
ok(role_pid($cmdata, "listener :$cmport"), 'ps shows the listener');
ok(role_pid($cmdata, 'logger'), 'ps shows the logger');
ok(role_pid($cmdata, "heartbeat 0 127.0.0.1:$wd_p"), 'ps shows heartbeat 0');
ok(role_pid($cmdata, "heartbeat 1 127.0.0.1:$wd_s"), 'ps shows heartbeat 1');

# A plain PostgreSQL client is told what it reached.
my ($rc, $psql_out, $psql_err) = $primary->psql('postgres', 'SELECT 1',
	connstr => "host=127.0.0.1 port=$cmport dbname=postgres");
isnt($rc, 0, 'psql straight to conmgr fails');
like($psql_err, qr/this is conmgr, a PostgreSQL connection manager, not a PostgreSQL server/,
	'and says it reached conmgr');

# Malformed input on the port: each session gets the answer the protocol
# gives (docs/protocol.md 2.3, 2.4) and is closed; the listener neither
# crashes nor waits on a session that stalls.
sub listener_pid
{
	my ($dir, $port) = @_;
	return role_pid($dir, "listener :$port");
}

# Send the chunks (50 ms apart) on a new session; returns what came back
# and whether conmgr closed the session within 5 s.
sub exchange
{
	my (@chunks) = @_;
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $cmport) or die $!;
	for my $i (0 .. $#chunks)
	{
		usleep(50_000) if $i > 0;
		syswrite($s, $chunks[$i]);
	}
	my $sel = IO::Select->new($s);
	my ($all, $eof) = ('', 0);
	my $deadline = time() + 5;
	while (!$eof && $sel->can_read($deadline - time() > 0 ? $deadline - time() : 0))
	{
		my $n = sysread($s, my $buf, 4096);
		$eof = 1 if !$n;
		$all .= $buf if $n;
	}
	close $s;
	return ($all, $eof);
}

# conmgr's frames after the probe's ErrorResponse, as "TYPE" or "X:message".
sub frames_of
{
	my ($bytes) = @_;
	my @f;
	if ($bytes =~ /^E/)
	{
		my $len = unpack('N', substr($bytes, 1, 4));
		substr($bytes, 0, 1 + $len) = '';
	}
	while (length($bytes) >= 4)
	{
		my ($type, $flags, $len) = unpack('aCn', $bytes);
		last if $len < 4 || length($bytes) < $len;
		if ($type eq 'X')
		{
			my (undef, $msg) = unpack('nn/a*', substr($bytes, 4, $len - 4));
			push @f, "X:$msg";
		}
		else
		{
			push @f, $type;
		}
		substr($bytes, 0, $len) = '';
	}
	return join(' ', @f);
}

my $probe = pack('NN', 8, 80877104);
sub resolve_frame
{
	my ($target, $version) = @_;
	return pack('aCnnCCNn/a*', 'R', 0, 4 + 10 + 4, $version // 1, $target, 0, $$, 'test');
}
my $rw = resolve_frame(1);
my $startup_params = "user\0x\0\0";
my $lpid0 = listener_pid($cmdata, $cmport);
my @malformed = (
	[ 'garbage instead of a first packet', [ "hello world\r\n" ], qr/^E.*08P01.*invalid startup packet/s, '' ],
	[ 'a first packet too short', [ "\0\0\0\x04" ], qr/^E.*08P01/s, '' ],
	[ 'a first packet too long', [ "\0\0\xff\xff\0\x03\0\0" ], qr/^E.*08P01/s, '' ],
	[ 'an unsupported protocol', [ pack('NN', 8, 0x00020000) ], qr/^E.*08P01.*unsupported frontend protocol/s, '' ],
	[ 'a CancelRequest', [ pack('NNNN', 16, 80877102, 1, 2) ], qr/^$/, '' ],
	[ 'an SSLRequest, then a startup packet in the same write',
	  [ pack('NN', 8, 80877103) . pack('NN', 8 + length($startup_params), 196608) . $startup_params ],
	  qr/^NE.*08004.*this is conmgr/s, '' ],
	[ 'a frame length over the maximum', [ $probe . "R\0\xff\xff" ], qr/^E/,
	  'H X:protocol violation: message too long' ],
	[ 'a frame length under the header', [ $probe . "R\0\0\x02" ], qr/^E/,
	  'H X:protocol violation: message length too short' ],
	[ 'header flags set', [ $probe . "R\x01" . substr($rw, 2) ], qr/^E/,
	  'H X:protocol violation: invalid header flags' ],
	[ 'an unknown message type', [ $probe . "Q\0\0\x04" ], qr/^E/,
	  'H X:protocol violation: unknown message type' ],
	[ 'a type only conmgr sends', [ $probe . pack('aCnnC', 'D', 0, 7, 0, 1) ], qr/^E/,
	  'H X:protocol violation: message type not expected from this peer' ],
	[ 'a RESOLVE with an unknown target', [ $probe . resolve_frame(9) ], qr/^E/,
	  'H X:protocol violation: field out of range' ],
	[ 'a RESOLVE with trailing bytes', [ $probe . pack('aCnnCCNn/a*a', 'R', 0, 19, 1, 1, 0, 1, 'test', 'x') ], qr/^E/,
	  'H X:protocol violation: trailing bytes after message' ],
	[ 'a RESOLVE of an unsupported version', [ $probe . resolve_frame(1, 7) ], qr/^E/,
	  'H X:unsupported protocol version' ],
	[ 'ATTACHED before RESOLVE', [ $probe . pack('aCnnN', 'A', 0, 10, 0, 1) ], qr/^E/,
	  'H X:protocol violation: unexpected ATTACHED' ],
	[ 'a second RESOLVE', [ $probe . $rw . $rw ], qr/^E/,
	  'H C Z X:protocol violation: unexpected RESOLVE' ],
	[ 'ATTACHED to an instance that was not a candidate', [ $probe . $rw . pack('aCnnN', 'A', 0, 10, 1, 1) ], qr/^E/,
	  'H C Z X:protocol violation: attached to an instance that was not offered' ],
	[ 'a second ATTACHED', [ $probe . $rw . pack('aCnnN', 'A', 0, 10, 0, 1) x 2 ], qr/^E/,
	  'H C Z X:protocol violation: unexpected ATTACHED' ]);
for my $case (@malformed)
{
	my ($what, $chunks, $raw_re, $frames) = @$case;
	my ($got, $eof) = exchange(@$chunks);
	ok($eof && $got =~ $raw_re && frames_of($got) eq $frames,
		"malformed input, $what: answered and closed") or diag(frames_of($got) . ' / eof=' . $eof);
}
{
	# A RESOLVE that arrives a byte at a time is answered once whole.
	my ($got, $eof) = exchange($probe, split //, $rw);
	is(frames_of($got) . ($eof ? ' eof' : ''), 'H C Z', 'a RESOLVE sent a byte at a time is answered, the session kept');
}
{
	# A session that stalls mid-frame, and one that hangs up mid-frame, hold
	# up nobody.
	my $stalled = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $cmport) or die $!;
	syswrite($stalled, $probe . substr($rw, 0, 9));
	my $gone = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $cmport) or die $!;
	syswrite($gone, $probe . substr($rw, 0, 9));
	close $gone;
	is(instances_for('read-write'), '0', 'with sessions stalled or gone mid-frame, others are served');
	close $stalled;
}
is(listener_pid($cmdata, $cmport), $lpid0, 'the listener survived all of it (same pid)');
is(instances_for('read-write'), '0', 'after malformed input, conmgr still answers');

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
	# The listener's sends and closes, to see their order.
	my $trace = "$dir/listener.strace";
	my $strace;
	if (system('sh', '-c', 'command -v strace >/dev/null') == 0)
	{
		$strace = IPC::Run::start(
			[ 'strace', '-q', '-p', listener_pid($cmdata, $cmport), '-e', 'trace=sendto,close', '-o', $trace ],
			'<', \undef, '>', \my $sout, '2>', \my $serr);
		wait_until(sub { -e $trace }, 10);
		usleep(200_000);
	}
	my $logged = $cm->log_offset;
	my $t0 = time();
	$standby->stop('immediate');
	my $t1 = wait_until(sub { $count->(qr/down instance=1/) == 100 }, 15);
	ok(defined $t1, 'all 100 sessions got INSTANCE_DOWN');
	note(sprintf('100 down-notices delivered %.3f s after the standby was stopped (pg_ctl stop included)', $t1 - $t0))
	  if defined $t1;
	$_->finish for @h;
	SKIP:
	{
		skip 'strace is not installed', 1 unless $strace;
		$strace->signal('INT');
		$strace->finish;
		# From the first notice (a sendto to an application session) to
		# the 100th, how many of the listener's closes came in between.
		my ($sends, $closes_between) = (0, 0);
		for my $line (split /\n/, slurp_file($trace))
		{
			if ($line =~ /^sendto\(\d+, .*MSG_DONTWAIT/)
			{
				$sends++;
				last if $sends == 100;
			}
			$closes_between++ if $sends > 0 && $line =~ /^close\(/;
		}
		is($closes_between, 0, "every notice was sent before any session was closed ($sends sends seen)");
	}

	# From the heartbeat role's "is down" (its log time) to the last notice
	# received (cmresolve's at_us), on the same wall clock.
	ok($cm->wait_for_log(qr/instance 1 at \S+ is down/, $logged, 5),
		'the heartbeat role logged the loss');
	my ($Y, $M, $D, $h, $m, $sec, $ms) = $cm->log_content($logged) =~
	  /^(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{3}) UTC \[\d+\] heartbeat 1 LOG:  instance 1 at \S+ is down/m;
	my $lost_us = (timegm($sec, $m, $h, $D, $M - 1, $Y) * 1000 + $ms) * 1000;
	my $last_us = 0;
	for my $i (1 .. 100)
	{
		my ($at) = slurp_file("$dir/s$i") =~ /down instance=1 reason=\d+ at_us=(\d+)/;
		$last_us = $at if defined $at && $at > $last_us;
	}
	my $spread = ($last_us - $lost_us) / 1000;
	note(sprintf('heartbeat loss to the down-notice reaching all 100 sessions: %.1f ms', $spread));
	ok($spread > -1 && $spread < 1000, sprintf('the last of 100 notices within 1 s of the loss (%.1f ms)', $spread));
	like($cm->log_content($logged), qr/listener LOG:  down-notice for instance 1 sent to 100 application sessions in \d+\.\d ms$/m,
		'the listener logged the pass: 100 sessions notified');
}

# Promotion of the (restarted) standby is followed; the old primary, still
# running on the older timeline, is a stale primary and offered for nothing
# (052_one_primary.t tests that rule in depth).
$standby->start;
ok(wait_until(sub { instances_for('standby') eq '1' }, 30), 'the standby is back again');
$standby->promote;
ok(wait_until(sub { instances_for('read-write') eq '1' }, 10),
	'after promotion, read-write offers the new primary only');
for my $t (qw(any primary prefer-standby prefer-primary))
{
	is(instances_for($t), '1', "after promotion, $t offers the new primary only");
}
for my $t (qw(read-only standby))
{
	is(instances_for($t), '', "after promotion, $t offers none");
}

# The old primary rejoins as a standby of the new one (a base backup of it
# on the old primary's ports), so that both instances are routable again.
$primary->stop;
$standby->backup('b2');
my $rejoined = PostgreSQL::Test::Cluster->new('rejoined', port => $primary->port);
$rejoined->init_from_backup($standby, 'b2', has_streaming => 1);
$rejoined->append_conf('postgresql.conf', "watchdog.port = $wd_p\n");
$rejoined->start;
ok(wait_until(sub { instances_for('standby') eq '0' }, 30),
	'the old primary, rebuilt as a standby of the new one, is routable');

# A killed heartbeat role is restarted after a back-off, logged.
my $hb_pid = role_pid($cmdata, 'heartbeat 0 ');
ok($hb_pid, "heartbeat 0 runs as pid $hb_pid");
kill 'KILL', $hb_pid;
ok($cm->wait_for_log(qr/heartbeat 0 .*was terminated by signal 9 \(SIGKILL\)/, 0, 10),
	'the supervisor logs the crash');
# The two lines are separate writes to the log: wait for the second too.
ok($cm->wait_for_log(qr/restarting heartbeat 0 \S+ in 1000 ms/, 0, 10),
	'and the restart after 1 s')
  or diag(substr($cm->log_content, -2000));
my $hb_pid2;
ok(wait_until(sub { $hb_pid2 = role_pid($cmdata, 'heartbeat 0 ');
	$hb_pid2 && $hb_pid2 != $hb_pid }, 10), 'and restarts heartbeat 0');
ok(wait_until(sub { instances_for('any') =~ /^(0,1|1,0)$/ }, 10), 'instance 0 is routable again');

# Killed again within 10 s of its start: the back-off doubles.  Its
# heartbeat connection died with it, so the watchdog will end that
# instance's sessions: they, and only they, are told at once.  (Two 'any'
# requests in a row start with different instances.)
{
	my @k_out = ('', '');
	my @k = map { my $i = $_; IPC::Run::start([ $resolve, '-p', $cmport, '-t', 'any', '-a', '-w', 20 ], '>', \$k_out[$i]) } 0 .. 1;
	ok(wait_until(sub { $_->pump_nb for @k; "@k_out" =~ /attached instance=0/ && "@k_out" =~ /attached instance=1/ }, 10),
		'a session on each instance');
	kill 'KILL', $hb_pid2;
	ok($cm->wait_for_log(qr/restarting heartbeat 0 \S+ in 2000 ms/, 0, 10),
		'killed again at once: restarted after 2 s');
	my ($on0, $on1) = $k_out[0] =~ /attached instance=0/ ? (0, 1) : (1, 0);
	ok(wait_until(sub { $k[$on0]->pump_nb; $k_out[$on0] =~ /down instance=0 reason=2/ }, 10),
		'the session on instance 0 got INSTANCE_DOWN');
	$k[$on1]->pump_nb;
	unlike($k_out[$on1], qr/down|eof/, 'the one on instance 1 did not');
	$_->kill_kill for @k;
}
ok(wait_until(sub { instances_for('any') =~ /0/ }, 10), 'instance 0 is routable again');

# A killed listener is restarted too, and serves again.
my $l_pid = listener_pid($cmdata, $cmport);
ok($l_pid, "the listener runs as pid $l_pid");
kill 'KILL', $l_pid;
ok($cm->wait_for_log(qr/listener :$cmport \(pid $l_pid\) was terminated by signal 9/, 0, 10),
	'the supervisor logs the listener crash');
ok(wait_until(sub { instances_for('any') =~ /0/ }, 10), 'the restarted listener answers');

# A killed logger is restarted, and lines written after that still arrive.
my $g_pid = role_pid($cmdata, 'logger');
ok($g_pid, "the logger runs as pid $g_pid");
kill 'KILL', $g_pid;
ok($cm->wait_for_log(qr/logger \(pid $g_pid\) was terminated by signal 9/, 0, 10),
	'the logger crash is logged (by the restarted logger)');
my $hb1 = role_pid($cmdata, 'heartbeat 1 ');
kill 'KILL', $hb1;
ok($cm->wait_for_log(qr/heartbeat 1 .*\(pid $hb1\) was terminated by signal 9/, 0, 10),
	'later lines still reach the log');
ok(wait_until(sub { my $p = role_pid($cmdata, 'heartbeat 1 ');
	$p && $p != $hb1 }, 10), 'heartbeat 1 is restarted too');

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

	# A soft limit below the hard one is raised to it (epoll, no select()).
	my $cm4 = CmTest::Conmgr->new('cm4',
		conf => "backend_host0 = 'localhost'\nmax_connections = 1000\nlisten_addresses = '127.0.0.1'\n");
	my ($dir4, $port4) = ($cm4->cmdata, $cm4->port);
	$cm4->start(wait => 0, ulimit_n => '100:2000');
	ok($cm4->wait_for_log(qr/listening for applications/, 0, 10),
		'with a soft limit of 100 and a hard one of 2000, conmgr starts') or diag($cm4->log_content);
	my $lpid4 = eval { listener_pid($dir4, $port4) } // 0;
	my $limits = eval { slurp_file("/proc/$lpid4/limits") } // '';
	like($limits, qr/^Max open files\s+2000\s+2000\s/m, 'its roles run with the soft limit raised to 2000')
	  or diag($limits);
	$cm4->stop;
}

# A test that dies does not leave its conmgr running (CmTest's END block).
{
	my $dir5 = PostgreSQL::Test::Utils::tempdir();
	chmod 0700, $dir5;
	PostgreSQL::Test::Utils::append_to_file("$dir5/conmgr.conf",
		"backend_host0 = 'localhost'\nport = " . PostgreSQL::Test::Cluster::get_free_port()
		  . "\nlisten_addresses = '127.0.0.1'\n");
	my $child = <<'PERL';
use strict;
use warnings;
use CmTest;
use IPC::Run;
my ($conmgr, $dir) = @ARGV;
my $out = '';
my $h = IPC::Run::start([ $conmgr, '-D', $dir ], '<', \undef, '>&', \$out);
wait_until(sub { $h->pump_nb; $out =~ /listening for applications/ }, 10) or die "conmgr did not start:\n$out";
open(my $pf, '<', "$dir/conmgr.pid") or die "no pid file: $!\n";
my ($pid) = <$pf> =~ /^(\d+)/;
print "started pid=$pid\n";
die "a test dies here\n";
PERL
	my ($o5, $e5) = ('', '');
	IPC::Run::run([ 'perl', "-I$FindBin::RealBin/../lib", '-e', $child, $conmgr, $dir5 ],
		'<', \undef, '>', \$o5, '2>', \$e5, IPC::Run::timeout(30));
	my ($pid5) = $o5 =~ /^started pid=(\d+)$/m;
	ok(defined $pid5 && $e5 =~ /a test dies here/,
		'a test script starts conmgr, then dies') or diag("$o5$e5");
	ok(defined $pid5 && wait_until(sub { !kill(0, $pid5) }, 10), 'its conmgr stops with it');
	kill 'KILL', $pid5 if defined $pid5 && kill(0, $pid5);
}

# Out of descriptors (max_connections = 0, a low ulimit -n): a connection
# the listener cannot take is closed without an answer and logged, as one
# over max_connections is, instead of being left pending while the
# listener spins on its readable listen socket.
{
	my $cm3 = CmTest::Conmgr->new('cm3',
		conf => "listen_addresses = '127.0.0.1'\nbackend_hostaddr0 = '127.0.0.1'\n"
		  . "watchdog_port0 = $wd_p\nlog_min_messages = LOG\n");
	my ($dir3, $port3) = ($cm3->cmdata, $cm3->port);
	$cm3->start(wait => 0, ulimit_n => 16);
	ok($cm3->wait_for_log(qr/listening for applications/, 0, 10),
		'conmgr runs under ulimit -n 16') or diag($cm3->log_content);
	my $lpid = listener_pid($dir3, $port3);
	my (@held, $refused);
	for my $i (1 .. 20)
	{
		my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port3) or last;
		syswrite($s, $probe);
		last unless IO::Select->new($s)->can_read(3);
		if (sysread($s, my $buf, 4096))
		{
			push @held, $s;
			next;
		}
		$refused = $i;
		last;
	}
	ok(@held >= 3 && defined $refused,
		sprintf('%d sessions fit; the next one is closed without an answer', scalar @held))
	  or diag($cm3->log_content);
	ok($cm3->wait_for_log(qr/LOG:  connection from 127\.0\.0\.1:\d+ closed: Too many open files \(open-files limit 16\)/, 0, 5),
		'and logged at LOG, naming the limit');
	my $cpu = sub
	{
		open my $st, '<', "/proc/" . ($lpid // 0) . "/stat" or return 0;
		my @f = split ' ', (<$st> =~ /\)\s+(.*)/)[0];
		return $f[11] + $f[12];		# utime + stime, in clock ticks
	};
	my $c0 = $cpu->();
	sleep 1;
	my $used = ($cpu->() - $c0) / POSIX::sysconf(POSIX::_SC_CLK_TCK());
	ok(defined $lpid && -e "/proc/$lpid" && $used < 0.3,
		sprintf('the listener does not spin (%.2f s of CPU in 1 s)', $used));
	close $_ for @held;
	ok(wait_until(sub { resolve_on($port3, 'any') =~ /hello versions/ }, 5), 'once sessions close, new ones are served');
	is(listener_pid($dir3, $port3), $lpid, 'by the same listener: it never crashed (poll over the limit)');
	$cm3->stop;
}

# A session that never sends its request is closed 10 s after it connected
# (LSN_HANDSHAKE_SECS), with a LOG line: one silent, one that stops after
# HELLO, one that trickles half a startup packet.
{
	my @s;
	for my $what ('silent', 'after HELLO', 'half a packet')
	{
		my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $cmport) or die $!;
		syswrite($s, $probe) if $what eq 'after HELLO';
		syswrite($s, substr($probe, 0, 5)) if $what eq 'half a packet';
		push @s, [ $what, $s ];
	}
	my $t0 = time();
	for my $e (@s)
	{
		my ($what, $s) = @$e;
		my $eof;
		my $sel = IO::Select->new($s);
		while (!defined $eof && time() - $t0 < 15)
		{
			next unless $sel->can_read(15 - (time() - $t0));
			my $n = sysread($s, my $buf, 4096);
			$eof = time() - $t0 unless $n;
		}
		ok(defined $eof && $eof > 9 && $eof < 12.5,
			sprintf('a session %s is closed after the 10 s handshake limit (%.1f s)', $what, $eof // -1));
		close $s;
	}
	# The lines pass through the logger: wait for them (make check-asan is slower).
	for my $state ('startup', 'hello')
	{
		ok($cm->wait_for_log(qr/closed: no request within 10 s of connecting \(state $state\)/, 0, 5),
			"logged, state $state") or diag($cm->log_content);
	}
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
ok($cm->running && $c_out !~ /down|eof/, 'smart stop: conmgr waits, the attached session is not disturbed');
$attached->kill_kill;
my $status = $cm->wait_exit(15);
ok(defined $status, 'smart stop: conmgr exits once the session has ended');
$status //= $cm->stop('immediate');
is($status >> 8, 0, 'with code 0');
ok(!-e "$cmdata/conmgr.pid", 'and removes its pid file');
like($cm->log_content, qr/smart shutdown/, 'the smart shutdown is logged');

$rejoined->stop;
$standby->stop;
done_testing();
