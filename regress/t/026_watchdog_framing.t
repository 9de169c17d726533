# Test that the watchdog worker reassembles a conmgr's frames however TCP
# cuts them: a stream of HB_HELLO and three HB_BEATs split in two at every
# byte offset, the same stream one byte a segment, and one segment of more
# frames than one read takes.  Each session must register and count every
# beat; a frame start kept wrongly between reads shows as a session closed
# for a protocol violation or a beat missing from frames_received.  And
# that what it sends arrives whole and in order when its socket takes one
# byte at a time (build/regress/short_send.so preloaded into the server):
# HB_WELCOME and the beats that follow it.
#
# The worker must have read the first part of a split before the rest is
# sent: the test waits until the kernel's receive queue of every watchdog
# socket is empty (ss), so each split is a real one.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use IO::Socket::INET;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Test::More;

skip_under_asan('the watchdog extension runs in the server, which is not built with the sanitizers');

my ($node, $wdport) = watchdog_node('framing',
	"watchdog.max_sessions_per_address = 0\nwatchdog.max_heartbeat_connections = 200\n");

# HB_HELLO (docs/protocol.md, section 3): version 1 to 1, interval 60 s
# and timeout 600 s unless given, so that no beat is due and no session
# times out while the test runs; HB_BEAT: a sequence number and no
# attributes.
sub hello
{
	my ($interval, $timeout) = @_;
	my $body = pack('NnnNNn', 0x434D4842, 1, 1, $interval // 60, $timeout // 600, 0)
	  . ("\x5a" x 32);
	return pack('aCn', 'h', 0, 4 + length $body) . $body;
}
sub beat { return pack('aCnNN', 'b', 0, 12, $_[0], 0); }

my $stream = hello() . join('', map { beat($_) } 1 .. 3);
my $len = length $stream;

sub connect_wd
{
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $wdport)
	  or die "connect to the watchdog: $!";
	setsockopt($s, IPPROTO_TCP, TCP_NODELAY, 1) or die "TCP_NODELAY: $!";
	$s->autoflush(1);
	return $s;
}

sub send_all
{
	my ($s, $bytes) = @_;
	my $n = syswrite($s, $bytes);
	die "send: $!" unless defined $n && $n == length $bytes;
	return;
}

# Whether every socket of the watchdog's port has nothing left unread.
sub all_read
{
	my $out = `ss -tnH state established '( sport = :$wdport )'`;
	return 0 if $?;
	for my $line (split /\n/, $out)
	{
		my ($recvq) = $line =~ /^\s*(\d+)/;
		return 0 if !defined $recvq || $recvq != 0;
	}
	return 1;
}

sub sessions
{
	return $node->safe_psql('postgres',
		'SELECT count(*), coalesce(min(frames_received), -1), coalesce(max(frames_received), -1) '
		  . 'FROM pgx_stat_watchdog');
}

sub expect_welcome
{
	my ($s, $what) = @_;
	my $got = read_whole_frame($s, 10) // '';
	is(substr($got, 0, 1), 'w', "$what: HB_WELCOME");
	return;
}

# Split in two at every offset: all first parts, then (once read) all the
# rests.  The splits after the whole HB_HELLO first (they register), then
# those inside it (they stay in their handshake, fewer than the
# WD_MAX_PENDING = 64 that would make the worker close the oldest).
my $hello_len = length hello();
my @socks;
for my $k (reverse(1 .. $len - 1))
{
	$socks[ $k - 1 ] = connect_wd();
	send_all($socks[ $k - 1 ], substr($stream, 0, $k));
	if ($k == $hello_len)
	{
		my $n = $len - $hello_len;
		ok(wait_until(sub { all_read() && sessions() =~ /^$n\|/ }, 20),
			"the $n sessions whose first part holds HB_HELLO registered");
	}
}
ok(wait_until(\&all_read, 20), 'the worker read every first part');
send_all($socks[ $_ - 1 ], substr($stream, $_)) for 1 .. $len - 1;
expect_welcome($socks[ $_ - 1 ], "split at byte $_ of $len") for 1 .. $len - 1;
my $want = ($len - 1) . '|3|3';
ok(wait_until(sub { sessions() eq $want }, 20),
	"every split session registered with its 3 beats (count|min|max: want $want)")
  or diag('got ' . sessions());
close $_ for @socks;
ok(wait_until(sub { sessions() eq '0|-1|-1' }, 20), 'the split sessions are gone');

# One byte a segment, each read by the worker before the next is sent.
my $s = connect_wd();
my $trickled = 1;
for my $i (0 .. $len - 1)
{
	send_all($s, substr($stream, $i, 1));
	$trickled = 0 unless wait_until(\&all_read, 10);
}
ok($trickled, 'the worker read each byte before the next came');
expect_welcome($s, 'one byte a segment');
ok(wait_until(sub { sessions() eq '1|3|3' }, 20), 'the trickled session counts its 3 beats')
  or diag('got ' . sessions());
close $s;
ok(wait_until(sub { sessions() eq '0|-1|-1' }, 20), 'the trickled session is gone');

# One segment of HB_HELLO and 300 beats (3,658 bytes): more than one read
# of the worker's takes, with a frame cut at the end of each read, and
# more reads than one wake-up makes for a session.
$s = connect_wd();
send_all($s, hello() . join('', map { beat($_) } 1 .. 300));
expect_welcome($s, 'one segment of 301 frames');
ok(wait_until(sub { sessions() eq '1|300|300' }, 20), 'all 300 beats of one segment are counted')
  or diag('got ' . sessions());
close $s;

my $log = slurp_file($node->logfile);
unlike($log, qr/protocol violation/, 'no session was closed for a protocol violation');

$node->stop;

# The worker's sends cut short: one byte a call, EAGAIN every other call.
# watchdog_node() picks a port of its own; the setting given after it is
# the one the server takes, and the one the library cuts.
my $cutport = PostgreSQL::Test::Cluster::get_free_port();
{
	local $ENV{LD_PRELOAD} = cm_top() . '/build/regress/short_send.so';
	local $ENV{CM_SHORT_SEND_PORT} = $cutport;
	($node) = watchdog_node('short_send', "watchdog.port = $cutport\n");
}
$wdport = $cutport;
$s = connect_wd();
send_all($s, hello(1, 20));

# The frames that arrive in $secs s, as [type, length, body].
my $in = '';
my @frames;
my $deadline = time() + 15;
while (@frames < 4 && time() < $deadline)
{
	my $rin = '';
	vec($rin, fileno($s), 1) = 1;
	next unless select(my $rout = $rin, undef, undef, 0.5);
	my $n = sysread($s, $in, 512, length $in);
	last unless $n;
	while (length($in) >= 4 && length($in) >= unpack('x2n', $in))
	{
		my ($type, $flags, $flen) = unpack('aCn', $in);
		push @frames, [ $type, $flen, substr($in, 4, $flen - 4) ];
		substr($in, 0, $flen) = '';
	}
}
like(slurp_file($node->logfile), qr/short_send: cutting sends on port $cutport/,
	'the worker\'s sends were cut short');
is(join(' ', map { $_->[0] } @frames), 'w b b b', 'HB_WELCOME then three beats, whole');
is(join(' ', map { $_->[0] eq 'b' ? (unpack('NN', $_->[2]))[0] : () } @frames), '1 2 3',
	'the beats in order, numbered 1, 2, 3');
is($in, '', 'nothing after the last whole frame');
close $s;
$node->stop;
done_testing();
