# Test that text from peers cannot forge a log record: a fake watchdog
# answers conmgr's HB_HELLO with an ERROR, and an application sends an
# ERROR, each message holding a newline followed by a whole fake record, a
# carriage return and a terminal escape.  conmgr logs each as one record,
# its control characters written \n, \r and \x1B, and the log file holds
# no raw control character and no line that starts with the forged one.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use CmTest::Conmgr;
use IO::Select;
use IO::Socket::INET;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $fake = fake_listener();
my $fport = $fake->sockport;
my $cmport = PostgreSQL::Test::Cluster::get_free_port();
my $dir = cm_confdir(qq{
port = $cmport
listen_addresses = '127.0.0.1'
backend_hostaddr0 = '127.0.0.1'
watchdog_port0 = $fport
heartbeat_connect_interval = 3600
heartbeat_connect_timeout = 10
log_min_messages = DEBUG1
});
my $log = "$dir/conmgr.log";

# The forged record, as conmgr's roles send one to the logger: a level
# byte ('A' + 9, LOG), then the line as the log file shows it.
my $forged = "J2026-12-06 06:00:00.000 UTC [1] heartbeat 0 LOG:  instance 0 at 127.0.0.1:1 is up (forged)";

# An ERROR frame (common/cmproto.h): type 'X', flags, length, code, string.
sub error_frame
{
	my ($code, $msg) = @_;
	return pack('aCnnn/a*', 'X', 0, 4 + 2 + 2 + length($msg), $code, $msg);
}

my $cm = CmTest::Conmgr->new('cm', cmdata => $dir, port => $cmport, logfile => $log);
ok($cm->start(daemon => 1, wait => 'ready', fail_ok => 1), 'conmgr started') or diag($cm->log_content);
END { eval { $cm->stop('immediate') } if $cm; }

# 1. The watchdog's ERROR.
my $sel = IO::Select->new($fake);
my $c;
my $deadline = time() + 15;
$c = $fake->accept while !$c && time() < $deadline && $sel->can_read(0.5);
ok($c, 'conmgr connected to the fake watchdog');
my $hello = '';
$c->blocking(1);
sysread($c, $hello, 54);
is(substr($hello, 0, 1), 'h', 'conmgr sent HB_HELLO');
syswrite($c, error_frame(1, "bad peer\n$forged\r\e[2Jend of watchdog"));
ok(wait_until(sub { slurp_file($log) =~ /end of watchdog/ }, 10), 'the watchdog\'s ERROR is logged');
close $c;

# 2. An application's ERROR: the probe, conmgr's answer, then ERROR.
my $app = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $cmport) or die $!;
syswrite($app, pack('NN', 8, 80877104));
my $answer = '';
$deadline = time() + 10;
while ($answer !~ /H\0\0\x0cCMGR/ && time() < $deadline)
{
	last unless IO::Select->new($app)->can_read(1);
	sysread($app, $answer, 4096, length $answer) or last;
}
like($answer, qr/H\0\0\x0cCMGR/, 'conmgr answered the probe with HELLO');
syswrite($app, error_frame(1, "app text\n$forged\r\e]0;title\aend of app"));
ok(wait_until(sub { slurp_file($log) =~ /end of app/ }, 10), 'the application\'s ERROR is logged');
close $app;

my $text = slurp_file($log);
my @lines = split /\n/, $text;
my @carrying = grep { /\(forged\)/ } @lines;
is(scalar @carrying, 2, 'the forged text is in two records, one per peer') or diag($text);
like($carrying[0], qr/^\S+ \S+ UTC \[\d+\] heartbeat 0 LOG:  could not establish heartbeat with instance 0 at 127\.0\.0\.1:$fport: watchdog reported: [^:]+: bad peer\\n\Q$forged\E\\r\\x1B\[2Jend of watchdog$/,
	'the watchdog\'s text stays in its record, escaped');
like($carrying[1], qr/^\S+ \S+ UTC \[\d+\] listener DEBUG1:  app 127\.0\.0\.1:\d+ reported: app text\\n\Q$forged\E\\r\\x1B\]0;title\\x07end of app$/,
	'the application\'s text stays in its record, escaped');
is(scalar(grep { /^\Q@{[substr($forged, 1)]}\E/ } @lines), 0, 'no line starts with the forged record');
is(scalar(() = $text =~ /[\x00-\x09\x0b-\x1f\x7f]/g), 0, 'no raw control character in the log');
done_testing();
