# Test that the watchdog extension keeps heartbeat sessions with conmgr-like
# clients at each client's own interval, drops a silent or vanished client
# and terminates exactly the SQL sessions of that client's host, pushes an
# attribute change at once, refuses sessions over its limit, authenticates
# with a shared key, and survives garbage on its port.
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

my $wdport = PostgreSQL::Test::Cluster::get_free_port();
my $node = PostgreSQL::Test::Cluster->new('primary');
$node->init(allows_streaming => 1);
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'watchdog'
listen_addresses = '127.0.0.1'
watchdog.port = $wdport
watchdog.listen_addresses = '127.0.0.1'
watchdog.check_attr_interval = 200
log_min_messages = log
});
$node->append_conf('pg_hba.conf', "host all all 127.0.0.0/8 trust\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION watchdog');

my $pgport = $node->port;
my $start_time = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');
my $wd_pid = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'watchdog'");
like($wd_pid, qr/^\d+$/, 'the watchdog worker runs');
like($node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'watchdog terminator'"),
	qr/^\d+$/, 'the terminator worker runs');

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

# Start a long SQL statement over TCP from 127.0.0.1 (psql's source address).
sub start_sleeper
{
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'psql', '-X', '-h', '127.0.0.1', '-p', $pgport, '-d', 'postgres',
			'-c', 'SELECT pg_sleep(60)' ],
		'<', \undef, '>', \$out, '2>', \$err);
	wait_until(sub { sessions_from('127.0.0.1') >= 1 }, 10)
	  or die 'psql sleeper did not connect';
	return { h => $h, err => \$err };
}

# Wait for the sleeper to end; returns the wall-clock time it ended.
sub sleeper_end
{
	my ($s, $secs) = @_;
	my $t = wait_until(sub { $s->{h}->pump_nb if $s->{h}->pumpable; !$s->{h}->pumpable }, $secs);
	eval { $s->{h}->finish; };
	return $t;
}

######################################################################
# 1. Two clients with different intervals at the same time.
######################################################################
{
	my $a = hb_start(port => $wdport, interval => 1, timeout => 3, verbose => 1);
	my $b = hb_start(port => $wdport, interval => 2, timeout => 5, verbose => 1);
	ok(hb_wait($a, qr/welcome version=1 attrs=0 flags=0/), 'client A registered');
	ok(hb_wait($b, qr/welcome version=1 attrs=0 flags=0/), 'client B registered');
	is(view_rows(), "127.0.0.1|1|3|f\n127.0.0.1|2|5|f",
		'pgx_stat_watchdog shows both sessions with their own intervals');
	like($node->safe_psql('postgres',
		'SELECT min(conmgr_port) > 0 AND min(connected_since) <= now() FROM pgx_stat_watchdog'),
		qr/^t$/, 'ports and connect times are filled in');

	usleep(6_300_000);
	my $na = grep { $_->{what} eq 'beat' } hb_events($a);
	my $nb = grep { $_->{what} eq 'beat' } hb_events($b);
	note("in 6.3 s: $na heartbeats at interval 1 s, $nb at interval 2 s");
	ok($na >= 5 && $na <= 7, "the 1 s client got a heartbeat per second ($na)");
	ok($nb >= 2 && $nb <= 4, "the 2 s client got one every 2 s ($nb)");
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
	ok($unix->pumpable, 'the Unix-socket session survived');
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
	for my $bytes ('', "garbage!", "h\0\0\x3aCMHB\0\x01")
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
		[ 'hello with bad magic', "h\0\0\x3a" . ("\0" x 54) ],
		[ 'truncated hello', "h\0\0\x3aCMHB\0\x01" ],
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
		my $buf = '';
		my $got = '';
		$s->blocking(1);
		local $SIG{ALRM} = sub { die "timeout\n" };
		alarm 15;
		while (sysread($s, $buf, 512)) { $got .= $buf; }
		alarm 0;
		ok(1, "watchdog closed the connection after $name");
		close $s;
	}
	is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'),
		$start_time, 'the postmaster never restarted');
	is($node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'watchdog'"),
		$wd_pid, 'the watchdog worker is the same process');
	my $log = slurp_file($node->logfile);
	like($log, qr/watchdog: closing unregistered connection from 127\.0\.0\.1:\d+: protocol violation: unknown message type/,
		'garbage is logged as a protocol violation');
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
	$standby->append_conf('postgresql.conf', qq{
watchdog.port = $sbport
watchdog.check_attr_interval = 1000
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

	my $c = hb_start(port => $sbport, interval => 1, timeout => 5);
	ok(hb_wait($c, qr/welcome version=1 attrs=1/), 'standby reports in_recovery in the handshake');
	my $t0 = time();
	$standby->safe_psql('postgres', 'SELECT pg_promote(wait => false)');
	ok(hb_wait($c, qr/attrs attrs=0/, 10), 'promotion pushed attrs=0');
	my ($ev) = grep { $_->{what} eq 'attrs' } hb_events($c);
	my $delay = $ev->{W} - $t0;
	note(sprintf('attribute change arrived %.3f s after pg_promote() (check_attr_interval 1 s)', $delay));
	ok($delay <= 1.1, sprintf('within check_attr_interval + 100 ms (%.3f s)', $delay));

	$standby->safe_psql('postgres', 'ALTER SYSTEM SET default_transaction_read_only = on');
	$standby->safe_psql('postgres', 'SELECT pg_reload_conf()');
	ok(hb_wait($c, qr/attrs attrs=2/, 5), 'default_transaction_read_only = on pushed attrs=2');
	hb_stop($c);
	$standby->stop;
}

######################################################################
# 8. Over watchdog.max_heartbeat_connections: refused with an error.
######################################################################
{
	$node->append_conf('postgresql.conf', "watchdog.max_heartbeat_connections = 2\n");
	$node->restart;
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
{
	my $dir = PostgreSQL::Test::Utils::tempdir();
	my $keyfile = "$dir/wd.key";
	my $badkey = "$dir/bad.key";
	PostgreSQL::Test::Utils::append_to_file($keyfile, "correct-horse-battery-staple\n");
	PostgreSQL::Test::Utils::append_to_file($badkey, "wrong-horse-battery-staple-x\n");
	chmod 0600, $keyfile, $badkey;
	$node->append_conf('postgresql.conf', "watchdog.auth_key_file = '$keyfile'\n");
	$node->restart;

	my $sleeper = start_sleeper();
	my $bad = hb_start(port => $wdport, interval => 5, timeout => 20, key => $badkey);
	ok(hb_wait($bad, qr/challenge bad-proof/), 'a client with the wrong key rejects the watchdog');
	my $none = hb_start(port => $wdport, interval => 5, timeout => 20);
	ok(hb_wait($none, qr/challenge without key/), 'a client without a key cannot answer');
	is(view_rows(), '', 'neither appears in pgx_stat_watchdog');
	ok($sleeper->{h}->pumpable, 'and neither caused a termination');

	my $good = hb_start(port => $wdport, interval => 5, timeout => 20, key => $keyfile);
	ok(hb_wait($good, qr/welcome version=1 attrs=0 flags=1/), 'the client with the key registers, authenticated');
	is(view_rows(), '127.0.0.1|5|20|t', 'the view shows it authenticated');
	hb_stop($good);
	ok(defined sleeper_end($sleeper, 5), 'its loss terminates its host\'s sessions');
	hb_stop($bad);
	hb_stop($none);
	ok($node->wait_for_log(qr/authentication of conmgr at 127\.0\.0\.1:\d+ failed/),
		'the failed authentication is logged');
}

$node->stop;
done_testing();
