# Test that the watchdog extension keeps heartbeat sessions with conmgr-like
# clients at each client's own interval, drops a silent, vanished, reset or
# misbehaving client and terminates exactly the SQL sessions of that
# client's host that predate the loss, pushes an attribute change at once,
# refuses sessions over its limit, authenticates with a shared key, survives
# garbage on its port, and serves a large session table in about 100 bytes
# of shared memory per session.  The figures the issue asks for are printed
# as notes (heartbeat gaps, drop and termination delays, attribute-push
# delay, shared memory per session).
#
# The client is build/regress/tools/hbclient, built from the shared codec.
# "Hosts" are loopback addresses: 127.0.0.1 and 127.0.0.2.
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

skip_under_asan('the watchdog extension runs in the server, which is not built with the sanitizers');

# A primary that can have a standby (section 7), its watchdog reached from
# 127.0.0.0/8 by the raw clients below.
my ($nodes, $wds) = watchdog_cluster(p => 'primary');
my ($node, $wdport) = ($nodes->{p}, $wds->{p});
$node->append_conf('pg_hba.conf', "host all all 127.0.0.0/8 trust\n");
$node->reload;
$node->safe_psql('postgres', 'CREATE EXTENSION watchdog');

my $pgport = $node->port;
my $start_time = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');
my $wd_pid = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'watchdog'");
like($wd_pid, qr/^\d+$/, 'the watchdog worker runs');
my $term_pid = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'watchdog terminator'");
like($term_pid, qr/^\d+$/, 'the terminator worker runs');

# ps shows "postgres: [cluster_name: ]watchdog" and "... watchdog terminator".
for my $w ([ $wd_pid, 'watchdog' ], [ $term_pid, 'watchdog terminator' ])
{
	my ($pid, $name) = @$w;
	my $title = `ps -o args= -p $pid`;
	chomp $title;
	like($title, qr/^postgres: (?:\S+: )?\Q$name\E\s*$/,
		"ps shows process $pid as \"$name\" ($title)");
}

sub sessions_from
{
	my ($addr) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE client_addr = '$addr' "
		  . "AND backend_type = 'client backend'");
}

sub view_rows
{
	return $node->safe_psql('postgres',
		'SELECT conmgr_addr, heartbeat_interval, heartbeat_timeout, authenticated '
		  . 'FROM pgx_stat_watchdog ORDER BY heartbeat_interval');
}

sub wait_view_empty
{
	ok(wait_until(sub { view_rows() eq '' }, 15), 'the session table is empty');
}

# Start a long SQL statement over TCP from 127.0.0.1 (psql's source address);
# wait until 127.0.0.1 has $n sessions (default 1).
sub start_sleeper
{
	my ($n) = @_;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'psql', '-X', '-h', '127.0.0.1', '-p', $pgport, '-d', 'postgres',
			'-c', 'SELECT pg_sleep(60)' ],
		'<', \undef, '>', \$out, '2>', \$err);
	wait_until(sub { sessions_from('127.0.0.1') >= ($n // 1) }, 10)
	  or die 'psql sleeper did not connect';
	return { h => $h, err => \$err };
}

# An HB_HELLO frame (docs/protocol.md, section 3), built by hand so that
# tests can spoil any field of it.
sub hb_hello_frame
{
	my (%o) = @_;
	my $body = pack('NnnNNn', $o{magic} // 0x434D4842, 1, 1,
		$o{interval} // 5, $o{timeout} // 20, 0) . ("\x5a" x 32);
	return pack('aCn', 'h', 0, 4 + length $body) . $body;
}

# Register by hand from $src; returns the socket once HB_WELCOME arrived.
sub raw_hb_register
{
	my ($src) = @_;
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $wdport,
		LocalAddr => $src) or die "connect to the watchdog: $!";
	print $s hb_hello_frame();
	$s->flush;
	my $got = '';
	local $SIG{ALRM} = sub { die "no HB_WELCOME\n" };
	alarm 10;
	while (length($got) < 4 || length($got) < unpack('n', substr($got, 2, 2)))
	{
		sysread($s, $got, 512, length $got) or die "watchdog closed: $!";
	}
	alarm 0;
	die "expected HB_WELCOME, got " . substr($got, 0, 1) unless $got =~ /^w/;
	return $s;
}

# The ERROR frame that $bytes starts with, as "code message"; or undef.
sub error_frame
{
	my ($bytes) = @_;
	return undef if length($bytes) < 8;
	my ($type, $flags, $len, $code, $slen) = unpack('aCnnn', $bytes);
	return undef
	  if $type ne 'X' || $flags != 0 || $len != 8 + $slen || length($bytes) < $len;
	return "$code " . substr($bytes, 8, $slen);
}

# Read until the watchdog closes; returns what it sent.
sub read_to_eof
{
	my ($s) = @_;
	my ($got, $buf) = ('', '');
	local $SIG{ALRM} = sub { die "timeout\n" };
	alarm 15;
	while (sysread($s, $buf, 512)) { $got .= $buf; }
	alarm 0;
	return $got;
}

# Whether a psql run is still going; reading its pipes first, so that a
# process that ended is seen as ended.
sub running
{
	my ($h) = @_;
	$h->pump_nb if $h->pumpable;
	return $h->pumpable;
}

# Wait for the sleeper to end; returns the wall-clock time it ended.
sub sleeper_end
{
	my ($s, $secs) = @_;
	my $t = wait_until(sub { !running($s->{h}) }, $secs);
	eval { $s->{h}->finish; };
	return $t;
}

######################################################################
# 1. Two clients with different intervals at the same time: 3 s and 5 s.
######################################################################

# The gaps between the heartbeats one client received, the HB_WELCOME
# counting as the start.
sub beat_gaps
{
	my ($c) = @_;
	my @t = map { $_->{T} }
	  grep { $_->{what} eq 'welcome' || $_->{what} eq 'beat' } hb_events($c);
	return map { $t[$_] - $t[ $_ - 1 ] } 1 .. $#t;
}

{
	my $a = hb_start(port => $wdport, interval => 3, timeout => 9, verbose => 1);
	my $b = hb_start(port => $wdport, interval => 5, timeout => 15, verbose => 1);
	ok(hb_wait($a, qr/welcome version=3 attrs=0 flags=0/), 'client A registered');
	ok(hb_wait($b, qr/welcome version=3 attrs=0 flags=0/), 'client B registered');
	is(view_rows(), "127.0.0.1|3|9|f\n127.0.0.1|5|15|f",
		'pgx_stat_watchdog shows both sessions with their own intervals');
	like($node->safe_psql('postgres',
		'SELECT min(conmgr_port) > 0 AND min(connected_since) <= now() FROM pgx_stat_watchdog'),
		qr/^t$/, 'ports and connect times are filled in');

	usleep(10_500_000);
	my @ga = beat_gaps($a);
	my @gb = beat_gaps($b);
	note(sprintf('in 10.5 s: heartbeat gaps %s s at interval 3 s, %s s at interval 5 s',
		join(' ', map { sprintf('%.3f', $_) } @ga),
		join(' ', map { sprintf('%.3f', $_) } @gb)));
	is(scalar(@ga), 3, 'the 3 s client got 3 heartbeats in 10.5 s');
	is(scalar(@gb), 2, 'the 5 s client got 2 heartbeats in 10.5 s');
	ok(!grep({ abs($_ - 3) > 0.15 } @ga), 'each 3 s apart (within 0.15 s)');
	ok(!grep({ abs($_ - 5) > 0.15 } @gb), 'each 5 s apart (within 0.15 s)');
	my $rx = $node->safe_psql('postgres',
		'SELECT string_agg(frames_received::text, \',\' ORDER BY heartbeat_interval) FROM pgx_stat_watchdog');
	like($rx, qr/^\d+,\d+$/, "frames received per session are counted ($rx)");

	hb_stop($a);
	hb_stop($b);
	wait_view_empty();
}

######################################################################
# 2. A client goes silent: dropped after its timeout; its host's SQL
#    sessions are terminated, other hosts' and Unix-socket ones are not.
######################################################################
{
	my $other = raw_pg_session('127.0.0.2', $pgport, 'other-host');
	my $unix_out = '';
	my $unix = IPC::Run::start(
		[ 'psql', '-X', '-h', $node->host, '-p', $pgport, '-d', 'postgres',
			'-c', 'SELECT pg_sleep(60)' ],
		'<', \undef, '>', \$unix_out, '2>', \$unix_out);
	my $sleeper = start_sleeper();

	my $c = hb_start(port => $wdport, interval => 1, timeout => 2, silent_after => 1.5);
	ok(hb_wait($c, qr/welcome/), 'silent-to-be client registered');
	my $last_sent = hb_wait($c, qr/silent last_sent=(\S+)/, 10);
	ok(defined $last_sent, 'client went silent');
	ok(hb_wait($c, qr/closed connection closed by peer/, 10), 'watchdog dropped the silent client');
	my ($closed) = grep { $_->{what} eq 'closed' && $_->{s} == 0 } hb_events($c);
	my $drop = $closed->{W} - $last_sent;
	note(sprintf('dropped %.3f s after the last heartbeat (timeout 2 s)', $drop));
	ok($drop >= 1.95 && $drop <= 2.5, sprintf('dropped within timeout + 0.5 s (%.3f s)', $drop));

	my $ended = sleeper_end($sleeper, 10);
	ok(defined $ended, 'the SQL session from the lost host was terminated');
	my $term = $ended - $last_sent;
	note(sprintf('SQL session ended %.3f s after the last heartbeat', $term));
	ok($term <= 2.5, sprintf('terminated within timeout + 0.5 s (%.3f s)', $term));
	like(${ $sleeper->{err} }, qr/terminating connection due to administrator command|server closed the connection/,
		'psql saw its connection terminated');

	is(sessions_from('127.0.0.2'), '1', 'the session from 127.0.0.2 survived');
	ok(running($unix), 'the Unix-socket session survived');
	$unix->kill_kill;
	close $other;
	hb_stop($c);
	$node->wait_for_log(qr/terminating backend process \d+ connected from 127\.0\.0\.1/);
	wait_view_empty();
}

######################################################################
# 3. A client that disconnects: its host's sessions end at once.
######################################################################
{
	my $sleeper = start_sleeper();
	my $c = hb_start(port => $wdport, interval => 5, timeout => 20);
	ok(hb_wait($c, qr/welcome/), 'client registered');
	my $t0 = time();
	hb_stop($c);
	my $ended = sleeper_end($sleeper, 10);
	ok(defined $ended, 'SQL session terminated after the client disconnected');
	my $delay = $ended - $t0;
	note(sprintf('terminated %.3f s after the disconnect', $delay));
	ok($delay < 0.5, sprintf('at once (%.3f s)', $delay));
	wait_view_empty();
}

######################################################################
# 3b. Only sessions that started before the loss are terminated.  The
#     terminator is stopped (SIGSTOP) while the loss is detected, so that
#     a session can connect between detection and termination.
######################################################################
{
	my $before = start_sleeper();
	my $c = hb_start(port => $wdport, interval => 5, timeout => 20);
	ok(hb_wait($c, qr/welcome/), 'client registered');
	my $log_offset = -s $node->logfile;
	kill 'STOP', $term_pid or die "could not stop the terminator: $!";
	hb_stop($c);
	# Whatever happens, the terminator must run again.
	my $seen = eval {
		$node->wait_for_log(
			qr/lost heartbeat session with conmgr at 127\.0\.0\.1/, $log_offset);
	};
	my $after = eval { start_sleeper(2) };
	kill 'CONT', $term_pid;
	defined $after or die "second psql sleeper did not connect: $@";
	ok($seen, 'the loss was detected while the terminator was stopped');
	ok(defined sleeper_end($before, 10),
		'the session older than the loss was terminated');
	usleep(300_000);
	ok(running($after->{h}), 'the session opened after the loss survived');
	is(sessions_from('127.0.0.1'), '1', 'one session from 127.0.0.1 is left');
	$after->{h}->kill_kill;
	# pg_sleep() outlives its killed psql: end the backend too.
	$node->safe_psql('postgres',
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE client_addr = '127.0.0.1'");
	ok(wait_until(sub { sessions_from('127.0.0.1') eq '0' }, 10),
		'no session from 127.0.0.1 is left');
	wait_view_empty();
}

######################################################################
# 3c. A registered client that breaks the protocol (a second HB_HELLO) or
#     resets its connection is lost too.
######################################################################
{
	my $sleeper = start_sleeper();
	my $log_offset = -s $node->logfile;
	my $s = raw_hb_register('127.0.0.1');
	print $s hb_hello_frame();
	$s->flush;
	is(error_frame(read_to_eof($s)), '1 protocol violation: unexpected HB_HELLO',
		'a second HB_HELLO is answered with ERROR protocol violation');
	close $s;
	ok(defined sleeper_end($sleeper, 10),
		'and its host\'s SQL session was terminated');
	ok($node->wait_for_log(
		qr/lost heartbeat session with conmgr at 127\.0\.0\.1:\d+: protocol violation: unexpected HB_HELLO/,
		$log_offset), 'the violation is logged');

	$sleeper = start_sleeper();
	$s = raw_hb_register('127.0.0.1');
	# SO_LINGER with a zero timeout: close() sends a reset.
	setsockopt($s, Socket::SOL_SOCKET(), Socket::SO_LINGER(), pack('ii', 1, 0))
	  or die "SO_LINGER: $!";
	close $s;
	ok(defined sleeper_end($sleeper, 10),
		'a reset connection terminates its host\'s SQL session');
	ok($node->wait_for_log(
		qr/lost heartbeat session with conmgr at 127\.0\.0\.1:\d+: Connection reset by peer/,
		$log_offset), 'the reset is logged');
	wait_view_empty();
}

######################################################################
# 4. A lost client on 127.0.0.2 ends 127.0.0.2's sessions only.
######################################################################
{
	my $sleeper = start_sleeper();
	my $other = raw_pg_session('127.0.0.2', $pgport, 'other-host');
	my $c = hb_start(port => $wdport, bind => '127.0.0.2', interval => 5, timeout => 20);
	ok(hb_wait($c, qr/welcome/), 'client on 127.0.0.2 registered');
	is(view_rows(), '127.0.0.2|5|20|f', 'the view shows 127.0.0.2');
	hb_stop($c);
	ok(wait_until(sub { sessions_from('127.0.0.2') eq '0' }, 5),
		'the session from 127.0.0.2 was terminated');
	is(sessions_from('127.0.0.1'), '1', 'the session from 127.0.0.1 survived');
	$sleeper->{h}->kill_kill;
	close $other;
	wait_view_empty();
}

######################################################################
# 5. Connections that never registered cause no termination.
######################################################################
{
	my $other = raw_pg_session('127.0.0.2', $pgport, 'other-host');
	for my $bytes ('', "garbage!", substr(hb_hello_frame(), 0, 20))
	{
		my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $wdport,
			LocalAddr => '127.0.0.2') or die $!;
		print $s $bytes;
		close $s;
	}
	sleep 1;
	is(sessions_from('127.0.0.2'), '1',
		'a connect-and-close, garbage or a half handshake terminates nothing');
	close $other;
	wait_until(sub { sessions_from('127.0.0.2') eq '0' }, 5);
}

######################################################################
# 6. Garbage on the watchdog port never takes the instance down.
######################################################################
{
	my @garbage = (
		[ 'random bytes', join('', map { chr(int(rand(256))) } 1 .. 300) ],
		[ 'unknown type', "Q\0\0\x08abcd" ],
		[ 'bad flags', "h\x01\0\x3a" . ("\0" x 54) ],
		[ 'length below header', "h\0\0\x02" ],
		[ 'oversized length', "h\0\xff\xff" . ("A" x 100) ],
		[ 'hello with bad magic', hb_hello_frame(magic => 0x434D4752) ],
		[ 'hello with interval 0', hb_hello_frame(interval => 0) ],
		[ 'hello with trailing bytes',
			pack('aCn', 'h', 0, 58) . substr(hb_hello_frame(), 4) . "\0\0\0\0" ],
		[ 'truncated hello', substr(hb_hello_frame(), 0, 20) ],
		[ 'beat before hello', "b\0\0\x0c" . ("\0" x 8) ],
		[ 'postgres startup packet', pack('NN', 8, 196608) ],
	);
	for my $g (@garbage)
	{
		my ($name, $bytes) = @$g;
		my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $wdport)
		  or die $!;
		print $s $bytes;
		if ($name eq 'truncated hello')
		{
			close $s;
			next;
		}
		my $got = read_to_eof($s);
		if ($name eq 'random bytes')
		{
			ok(1, "watchdog closed the connection after $name");
		}
		else
		{
			like(error_frame($got), qr/^1 protocol violation: /,
				"watchdog answered $name with ERROR protocol violation and closed");
		}
		close $s;
	}

	# Connections that never say hello: 64 at most wait in their handshake,
	# the others are closed at once, and a real client still gets in once
	# they are gone.
	usleep(300_000);
	my @idle = map {
		IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $wdport)
		  or die $!
	} 1 .. 70;
	usleep(500_000);
	my $refused = 0;
	for my $s (@idle)
	{
		$s->blocking(0);
		my $n = sysread($s, my $buf, 1);
		$refused++ if defined $n && $n == 0;
	}
	is($refused, 6, '64 idle connections are kept in handshake, 6 more are closed');
	close $_ for @idle;
	my $c = hb_start(port => $wdport, interval => 5, timeout => 20);
	ok(hb_wait($c, qr/welcome/, 10), 'then a client registers');
	hb_stop($c);
	ok(wait_until(sub { view_rows() eq '' }, 15), 'and its session ends');

	is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'),
		$start_time, 'the postmaster never restarted');
	is($node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'watchdog'"),
		$wd_pid, 'the watchdog worker is the same process');
	my $log = slurp_file($node->logfile);
	for my $why ('unknown message type', 'invalid header flags',
		'message length too short', 'message too long', 'bad magic number',
		'field out of range', 'trailing bytes after message',
		'unexpected HB_BEAT')
	{
		like($log, qr/watchdog: closing unregistered connection from 127\.0\.0\.1:\d+: protocol violation: \Q$why\E/,
			"logged: protocol violation: $why");
	}
	unlike($log, qr/terminated by signal|was terminated by exit code/, 'no process crashed');
}

######################################################################
# 7. Attribute changes are pushed: promotion and default_transaction_read_only.
######################################################################
{
	$node->backup('b1');
	my $sbport = PostgreSQL::Test::Cluster::get_free_port();
	my $standby = PostgreSQL::Test::Cluster->new('standby');
	$standby->init_from_backup($node, 'b1', has_streaming => 1);
	# Log times as Unix epochs, to compare with the client's clock.
	$standby->append_conf('postgresql.conf', qq{
watchdog.port = $sbport
watchdog.check_attr_interval = 1000
log_line_prefix = '%n [%p] %q%a '
});
	# Stream over TCP, so that the WAL sender's client address is 127.0.0.1.
	$standby->append_conf('postgresql.conf',
		"primary_conninfo = 'host=127.0.0.1 port=$pgport application_name=standby'\n");
	$standby->start;
	ok(wait_until(sub { $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_replication WHERE client_addr = '127.0.0.1'") eq '1' }, 30),
		'the standby streams over TCP from 127.0.0.1');
	my $log_offset = -s $node->logfile;
	my $lost = hb_start(port => $wdport, interval => 5, timeout => 20);
	ok(hb_wait($lost, qr/welcome/), 'a client on 127.0.0.1 registered with the primary');
	hb_stop($lost);
	ok($node->wait_for_log(qr/terminating WAL sender process \d+ connected from 127\.0\.0\.1/, $log_offset),
		'its loss terminated the WAL sender from 127.0.0.1');
	ok(wait_until(sub { $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_replication") eq '1' }, 30),
		'and the standby reconnected by itself');

	my $c = hb_start(port => $sbport, interval => 1, timeout => 5, verbose => 1);
	ok(hb_wait($c, qr/welcome version=3 attrs=1/), 'standby reports in_recovery in the handshake');
	ok(hb_wait($c, qr/beat seq=1 attrs=1/, 5), 'and in its heartbeats');
	my $t0 = time();
	$standby->safe_psql('postgres', 'SELECT pg_promote(wait => false)');
	ok(hb_wait($c, qr/attrs attrs=0/, 10), 'promotion pushed attrs=0');
	my ($ev) = grep { $_->{what} eq 'attrs' } hb_events($c);
	# The attributes change when recovery ends, a little after the
	# request; "archive recovery complete" is logged just before that.
	my ($ended) = slurp_file($standby->logfile)
	  =~ /^(\d+\.\d+) \[\d+\] LOG:  archive recovery complete/m;
	ok(defined $ended, 'the standby logged the end of recovery');
	my $delay = $ev->{W} - ($ended // $t0);
	note(sprintf('attribute change arrived %.3f s after recovery ended, '
		  . '%.3f s after pg_promote() (check_attr_interval 1 s)',
		$delay, $ev->{W} - $t0));
	ok($delay <= 1.1,
		sprintf('within check_attr_interval + 100 ms of the end of recovery (%.3f s)', $delay));

	$standby->safe_psql('postgres', 'ALTER SYSTEM SET default_transaction_read_only = on');
	$standby->safe_psql('postgres', 'SELECT pg_reload_conf()');
	ok(hb_wait($c, qr/attrs attrs=2/, 5), 'default_transaction_read_only = on pushed attrs=2');
	ok(hb_wait($c, qr/attrs attrs=2.*beat seq=\d+ attrs=2/s, 5),
		'and the heartbeats after it carry attrs=2');
	hb_stop($c);
	$standby->stop;
}

######################################################################
# 8. Over watchdog.max_heartbeat_connections: refused with an error.
######################################################################
# Restart the node and wait until its watchdog listens: the postmaster
# accepts SQL before the worker has set up its session table, which with
# 640000 slots can take longer than a client's first connect ("Connection
# refused").
sub restart_watchdog
{
	my $offset = -s $node->logfile;
	$node->restart;
	# (wait_for_log dies if the line does not come)
	$node->wait_for_log(qr/watchdog: listening on port $wdport /, $offset);
}

sub watchdog_shmem
{
	return $node->safe_psql('postgres',
		"SELECT size FROM pg_shmem_allocations WHERE name = 'watchdog'");
}

my ($shm_slots1, $shm_size1);
{
	$shm_slots1 = $node->safe_psql('postgres', 'SHOW max_connections');
	$shm_size1 = watchdog_shmem();
	$node->append_conf('postgresql.conf', "watchdog.max_heartbeat_connections = 2\n");
	restart_watchdog();
	my $c = hb_start(port => $wdport, interval => 5, timeout => 20, sessions => 3);
	ok(hb_wait($c, qr/error code=4 message=too many heartbeat sessions/),
		'the third session is refused with "too many heartbeat sessions"');
	my $welcomes = grep { $_->{what} eq 'welcome' } hb_events($c);
	is($welcomes, 2, 'two sessions were accepted');
	ok($node->wait_for_log(qr/refusing conmgr at 127\.0\.0\.1:\d+: too many heartbeat sessions/),
		'the refusal is logged');
	hb_stop($c);
}

######################################################################
# 9. Shared key: only a client that proves it registers.
######################################################################
my $keyfile;
{
	my $dir = PostgreSQL::Test::Utils::tempdir();
	$keyfile = "$dir/wd.key";
	my $badkey = "$dir/bad.key";
	PostgreSQL::Test::Utils::append_to_file($keyfile, "correct-horse-battery-staple\n");
	PostgreSQL::Test::Utils::append_to_file($badkey, "wrong-horse-battery-staple-x\n");
	chmod 0600, $keyfile, $badkey;
	$node->append_conf('postgresql.conf', "watchdog.auth_key_file = '$keyfile'\n");
	restart_watchdog();

	my $sleeper = start_sleeper();
	my $bad = hb_start(port => $wdport, interval => 5, timeout => 20, key => $badkey);
	ok(hb_wait($bad, qr/challenge bad-proof/), 'a client with the wrong key rejects the watchdog');
	my $none = hb_start(port => $wdport, interval => 5, timeout => 20);
	ok(hb_wait($none, qr/challenge without key/), 'a client without a key cannot answer');
	is(view_rows(), '', 'neither appears in pgx_stat_watchdog');
	ok(running($sleeper->{h}), 'and neither caused a termination');

	my $good = hb_start(port => $wdport, interval => 5, timeout => 20, key => $keyfile);
	ok(hb_wait($good, qr/welcome version=3 attrs=0 flags=1/), 'the client with the key registers, authenticated');
	is(view_rows(), '127.0.0.1|5|20|t', 'the view shows it authenticated');
	hb_stop($good);
	ok(defined sleeper_end($sleeper, 5), 'its loss terminates its host\'s sessions');
	hb_stop($bad);
	hb_stop($none);
	ok($node->wait_for_log(qr/authentication of conmgr at 127\.0\.0\.1:\d+ failed/),
		'the failed authentication is logged');
}

######################################################################
# 10. A large session table: the worker starts and serves, and the shared
#     memory per session is measured (pg_shmem_allocations).
######################################################################
{
	my $slots = 640000;
	# And an out-of-range value in postgresql.conf: PostgreSQL warns and
	# keeps the default, as for any extension's parameter.
	$node->append_conf('postgresql.conf', qq{
watchdog.max_heartbeat_connections = $slots
watchdog.check_attr_interval = 0
});
	restart_watchdog();
	# PostgreSQL 16 and later give the range with its unit.
	my $ms = $node->pg_version >= 16 ? ' ms' : '';
	like(slurp_file($node->logfile),
		qr/WARNING:  0 ms is outside the valid range for parameter "watchdog\.check_attr_interval" \(1$ms \.\. 2147483647$ms\)/,
		'check_attr_interval = 0 in postgresql.conf is reported');
	is($node->safe_psql('postgres', 'SHOW watchdog.check_attr_interval'), '1s',
		'and the default is used instead');
	my $c = hb_start(port => $wdport, interval => 5, timeout => 20,
		key => $keyfile);
	ok(hb_wait($c, qr/welcome version=3 attrs=0 flags=1/, 15),
		"with max_heartbeat_connections = $slots a client registers")
	  or diag("hbclient said: ${ $c->{out} }${ $c->{err} }");
	hb_stop($c);
	my $log = slurp_file($node->logfile);
	unlike($log, qr/invalid memory alloc request size/,
		'the watchdog allocated its session table');
	my $per = (watchdog_shmem() - $shm_size1) / ($slots - $shm_slots1);
	note(sprintf('shared memory per heartbeat session: %.1f bytes', $per));
	ok($per > 0 && $per <= 256,
		sprintf('about 200 bytes of shared memory per session at most (%.1f)', $per));
}

$node->stop;
done_testing();
