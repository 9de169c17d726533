# Test that a conmgr's ERROR text reaches the server's log escaped: a
# registered peer sends an ERROR whose message holds a newline followed by
# a whole fake log line, a carriage return and a terminal escape; the
# watchdog's loss line carries it on one line, written \n, \r and \x1B,
# no line of the log starts with the forged one (PostgreSQL indents the
# lines after a message's newline, which the escape makes moot) and no raw
# control character reaches whoever reads the log on a terminal.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use IO::Socket::INET;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

skip_under_asan('the watchdog extension runs in the server, which is not built with the sanitizers');

my ($node, $wdport) = watchdog_node('wd_escape');

my $forged = '2026-12-06 06:00:00.000 UTC [1] LOG:  forged record';

# HB_HELLO without a key (docs/protocol.md, 3.1): interval 1 s, timeout 5 s.
my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $wdport)
  or die "connect: $!";
my $body = pack('NnnNNn', 0x434D4842, 1, 1, 1, 5, 0) . ("\x5a" x 32);
print $s pack('aCn', 'h', 0, 4 + length $body) . $body;
$s->flush;
my $got = read_whole_frame($s, 10);
is(defined $got ? substr($got, 0, 1) : 'nothing', 'w', 'the watchdog welcomed the peer');

# ERROR (type 'X'): flags, length, code, then the message as a string.
my $msg = "peer text\n$forged\r\e[2Jend of peer";
print $s pack('aCnnn/a*', 'X', 0, 4 + 2 + 2 + length($msg), 1, $msg);
$s->flush;

my $log = $node->logfile;
ok(wait_until(sub { slurp_file($log) =~ /end of peer/ }, 15), 'the peer\'s ERROR is logged')
  or diag(slurp_file($log));
my @lines = split /\n/, slurp_file($log);
my @carrying = grep { /forged record/ } @lines;
is(scalar @carrying, 1, 'the forged text is in one line') or diag(join "\n", @carrying);
like($carrying[0] // '', qr/conmgr reported: [^:]+: peer text\\n\Q$forged\E\\r\\x1B\[2Jend of peer/,
	'the peer\'s text stays in the loss line, escaped');
is(scalar(grep { /^\Q$forged\E/ } @lines), 0, 'no line starts with the forged record');
is(scalar(grep { /\r|\e/ } @lines), 0, 'no raw carriage return or escape in the log');

close $s;
$node->stop;
done_testing();
