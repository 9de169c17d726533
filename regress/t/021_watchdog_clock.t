# Test that steps of the server's wall clock (+10 min, back, -10 min, back)
# neither expire nor freeze any of the watchdog's deadlines: with heartbeat
# sessions in every phase (registered at two intervals, connected and
# silent, in the middle of the key exchange), no registered session is
# lost, no handshake is cut short, nothing is terminated; a handshake left
# idle across a backward step is still closed 10 s after its connect, and a
# client that goes silent across a backward step, or after all the steps,
# is still declared lost within its heartbeat_timeout.
#
# The server (postmaster, so every worker) runs under libfaketime with a
# timestamp file rewritten during the test; CLOCK_MONOTONIC is left alone
# (FAKETIME_DONT_FAKE_MONOTONIC=1).  Each step is checked from SQL: now()
# must differ from the test's own clock by the offset.
use strict;
use warnings;
use Digest::SHA qw(hmac_sha256);
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use IO::Socket::INET;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

skip_under_asan('the watchdog extension runs in the server, which is not built with the sanitizers');

my $dir = PostgreSQL::Test::Utils::tempdir();
my $stampfile = "$dir/faketime";
my $key = 'correct-horse-battery-staple';
my $keyfile = "$dir/wd.key";
PostgreSQL::Test::Utils::append_to_file($keyfile, "$key\n");
chmod 0600, $keyfile;

# The offset the server's wall clock has from the real one, in seconds.
sub set_offset { set_fake_offset($stampfile, @_) }
set_offset(0);

my ($node, $wdport);
{
	local %ENV = (%ENV, map { split /=/, $_, 2 } faketime_env($stampfile));
	($node, $wdport) = watchdog_node('clock', qq{
watchdog.auth_key_file = '$keyfile'
watchdog.max_heartbeat_connections = 200
});
}
my $pgport = $node->port;

# The workers as libfaketime can fake them (CmTest); the view shows below
# that the watchdog's wall clock does follow the file.
watchdog_workers_restart($node, $wdport);
sub worker_pid
{
	my ($type) = @_;
	return $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = '$type'");
}

# The server's wall clock minus the real one, in seconds.
sub server_offset
{
	my $t0 = time();
	my $now = $node->safe_psql('postgres', 'SELECT extract(epoch FROM clock_timestamp())');
	return $now - ($t0 + time()) / 2;
}

sub step
{
	my ($secs, $why) = @_;
	set_offset($secs);
	my $off = server_offset();
	ok(abs($off - $secs) < 5,
		sprintf('%s: the server\'s clock is %+.1f s off the real one', $why, $off));
}

sub registered
{
	return $node->safe_psql('postgres', 'SELECT count(*) FROM pgx_stat_watchdog');
}

# A heartbeat connection opened by hand from $src, to be taken through the
# key exchange step by step.
my $nonce_c = "\x5a" x 32;

sub raw_connect
{
	my ($src) = @_;
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $wdport,
		LocalAddr => $src) or die "connect to the watchdog from $src: $!";
	$s->autoflush(1);
	return $s;
}

# HB_HELLO ("has a key"; interval 5 s and timeout 60 s unless given).
sub send_hello
{
	my ($s, $interval, $timeout) = @_;
	my $body = pack('NnnNNn', 0x434D4842, 1, 1, $interval // 5, $timeout // 60, 1)
	  . $nonce_c;
	print $s pack('aCn', 'h', 0, 4 + length $body) . $body;
}

# HB_AUTH answering the HB_CHALLENGE $frame.
sub send_auth
{
	my ($s, $frame) = @_;
	my $nonce_w = substr($frame, 6, 32);
	my $proof = hmac_sha256("conmgr-heartbeat-v1 conmgr" . $nonce_c . $nonce_w, $key);
	print $s pack('aCn', 'a', 0, 36) . $proof;
}

sub frame_type
{
	my ($f) = @_;
	return defined $f ? substr($f, 0, 1) : 'end of file';
}

my $log_start = -s $node->logfile;

# Registered sessions: 12 from four addresses at two intervals.
my @reg;
for my $k (1 .. 4)
{
	my ($i, $t) = $k <= 2 ? (1, 3) : (2, 5);
	push @reg, hb_start(port => $wdport, bind => "127.0.3.$k", interval => $i,
		timeout => $t, sessions => 3, key => $keyfile, verbose => 1);
}
# X goes silent just before the backward step.
my $x = hb_start(port => $wdport, bind => '127.0.4.1', interval => 1, timeout => 3,
	key => $keyfile);
ok(wait_until(sub { registered() == 13 }, 30), '13 sessions registered')
  or diag(registered());
my $keep = raw_pg_session('127.0.3.1', $pgport, 'registered-host');
my $xsql = raw_pg_session('127.0.4.1', $pgport, 'silent-host');

# Forward: a connection that has sent nothing and one waiting to answer
# the challenge are made before the step and finish their handshake after.
my $h1 = raw_connect('127.0.5.1');
my $h2 = raw_connect('127.0.5.2');
send_hello($h2);
my $ch2 = read_whole_frame($h2);
is(frame_type($ch2), 'c', 'a handshake is waiting for its HB_AUTH');
usleep(200_000);
step(600, 'forward 10 min');
sleep 2;
is($node->safe_psql('postgres',
	"SELECT bool_and(last_heartbeat_sent > now() - interval '3 s') FROM pgx_stat_watchdog"),
	't', 'the watchdog\'s wall clock moved too (its last heartbeats sent are stamped after the step)');
send_auth($h2, $ch2);
is(frame_type(read_whole_frame($h2)), 'w', 'after the forward step it completes: HB_WELCOME');
send_hello($h1);
my $ch1 = read_whole_frame($h1);
is(frame_type($ch1), 'c', 'the connection that had sent nothing gets its challenge');
send_auth($h1, $ch1) if defined $ch1;
is(frame_type(read_whole_frame($h1)), 'w', 'and registers');
is(registered(), 15, 'no registered session was lost by the forward step');

# Backward: X goes silent and a new connection stays idle, both just
# before the step.
my $h3_at = time();
my $h3 = raw_connect('127.0.5.3');
$x->{h}->signal('USR1');
my $x_silent = hb_wait($x, qr/silent last_sent=(\S+)/, 5);
ok(defined $x_silent, 'X went silent');
step(0, 'back 10 min');
my $x_lost = wait_until(sub { $node->log_contains(
	qr/lost heartbeat session with conmgr at 127\.0\.4\.1/, $log_start) }, 15);
ok(defined $x_lost, 'X was declared lost after the backward step');
ok(defined $x_lost && defined $x_silent && $x_lost - $x_silent <= 3.7,
	'within its heartbeat_timeout of 3 s + 0.7 s ('
	  . (defined $x_lost && defined $x_silent
		? sprintf('%.3f s after its last beat', $x_lost - $x_silent) : 'not seen') . ')');
my $h3_closed = eval {
	local $SIG{ALRM} = sub { die "timeout\n" };
	alarm 15;
	my $n = sysread($h3, my $buf, 16);
	alarm 0;
	time();
};
ok(defined $h3_closed && $h3_closed - $h3_at < 11.5,
	'an idle handshake is still closed 10 s after its connect ('
	  . (defined $h3_closed ? sprintf('%.1f s', $h3_closed - $h3_at) : 'not within 15 s') . ')');

step(-600, 'back another 10 min');
sleep 2;
step(0, 'forward 10 min, to the real time');
sleep 3;

# Nothing from the 12 sessions lost, nothing of theirs terminated.
is(registered(), 14, 'the 12 sessions and the two late handshakes are registered');
my @closed = map { grep { $_->{what} eq 'closed' } hb_events($_) } @reg;
is(scalar @closed, 0, 'no client saw its session closed')
  or diag(join("\n", map { "$_->{W} s=$_->{s} $_->{rest}" } @closed));
my $log = substr(slurp_file($node->logfile), $log_start);
my @lost = $log =~ /(lost heartbeat session with conmgr at 127\.0\.[35]\.\S+)/g;
is(scalar @lost, 0, 'the watchdog lost none of them') or diag(join("\n", @lost));
unlike($log, qr/terminating backend process \d+ connected from 127\.0\.3\./,
	'no SQL session of their hosts was terminated');
like($log, qr/terminating backend process \d+ connected from 127\.0\.4\.1/,
	'the silent host\'s SQL session was terminated');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM pg_stat_activity WHERE client_addr = '127.0.3.1'"), '1',
	'the SQL session from a registered host is still there');

# A real loss after the steps: detected within heartbeat_timeout.
$reg[0]->{h}->signal('USR1');
my $silent = hb_wait($reg[0], qr/silent last_sent=(\S+)/, 5);
my $lost_at = wait_until(sub { $node->log_contains(
	qr/lost heartbeat session with conmgr at 127\.0\.3\.1/, $log_start) }, 15);
ok(defined $lost_at && defined $silent && $lost_at - $silent <= 3.7,
	'a client silent after the steps is lost within its timeout of 3 s + 0.7 s ('
	  . (defined $lost_at && defined $silent
		? sprintf('%.3f s', $lost_at - $silent) : 'not seen') . ')');

# A watchdog that was not running (stopped, or starved of the processor)
# for longer than the timeout reads what its sessions sent meanwhile
# before judging them: more sessions than it takes events at a time, each
# sending a beat every 0.5 s, are not lost when it runs again.
{
	my $n = 100;
	my (@raw, @refused);
	my $seq = 0;
	my $beat = sub {
		$seq++;
		for my $s (@raw)
		{
			syswrite($s, pack('aCnNN', 'b', 0, 12, $seq, 0));
			sysread($s, my $junk, 4096);
		}
	};
	# 50 at a time, each step for all 50 at once: one by one, the first
	# would time out before the last registered, and at most 64 may be in
	# their handshake
	for my $batch (0, 1)
	{
		my @new = map { raw_connect('127.0.6.' . (1 + $_ % 25)) } 1 .. $n / 2;
		send_hello($_, 1, 2) for @new;
		for my $s (@new)
		{
			my $ch = read_whole_frame($s);
			send_auth($s, $ch) if defined $ch;
		}
		my @up;
		for my $s (@new)
		{
			my $f = read_whole_frame($s);
			if (defined $f && frame_type($f) eq 'w') { push @up, $s; next; }
			push @refused, sprintf('%s: %s', $s->sockhost,
				defined $f ? 'got ' . join(' ', unpack('(H2)*', $f)) : 'no frame within 5 s');
		}
		@new = @up;
		$_->blocking(0) for @new;
		push @raw, @new;
		$beat->();
	}
	is(scalar @raw, $n, "$n more sessions registered (interval 1 s, timeout 2 s)")
	  or diag(join("\n", @refused, grep { /127\.0\.6\./ } split /\n/, substr(slurp_file($node->logfile), $log_start)));
	my $offset = -s $node->logfile;
	my $wd = worker_pid('watchdog');
	kill 'STOP', $wd;
	my $until = time() + 3;
	while (time() < $until) { $beat->(); usleep(500_000); }
	kill 'CONT', $wd;
	for (1 .. 4) { $beat->(); usleep(500_000); }
	my @gone = substr(slurp_file($node->logfile), $offset)
	  =~ /(lost heartbeat session with conmgr at 127\.0\.6\.\S+ .*)/g;
	is(scalar @gone, 0, 'after 3 s stopped, the watchdog lost none of them')
	  or diag(scalar(@gone) . " lost, the first: $gone[0]");
	close $_ for @raw;
}

hb_stop($_) for @reg, $x;
close $_ for $h1, $h2, $h3, $keep, $xsql;
$node->stop;
done_testing();
