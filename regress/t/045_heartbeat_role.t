# Test conmgr's heartbeat role against a fake watchdog written here, to see
# conmgr's own limits at work: a watchdog that accepts but never answers is
# given up after heartbeat_connect_timeout, and retried every
# heartbeat_connect_interval; one that answers the handshake and then falls
# silent is declared down after heartbeat_timeout, and the application
# attached to it gets INSTANCE_DOWN with reason "heartbeat timeout".  Also:
# a conmgr killed with -9 leaves a stale pid file that the next start takes
# over.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use IO::Select;
use IO::Socket::INET;
use CmTest::Conmgr;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $top = cm_top();
my $fake = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
	Listen => 16, ReuseAddr => 1) or die $!;
my $fport = $fake->sockport;
my $cm = CmTest::Conmgr->new('cm', instances => [ { backend_hostaddr => "'127.0.0.1'", watchdog_port => $fport } ],
	conf => qq{
heartbeat_interval = 1
heartbeat_timeout = 2
heartbeat_connect_interval = 1
heartbeat_connect_timeout = 1
log_min_messages = LOG
});
my ($dir, $cmport) = ($cm->cmdata, $cm->port);
# The timing of the first connections is measured from here: no wait.
$cm->start(wait => 0);
my $sel = IO::Select->new($fake);

# 1. Accept and never answer: given up after 1 s, retried.
my @accepted;
my $deadline = time() + 10;
while (@accepted < 2 && time() < $deadline)
{
	next unless $sel->can_read(0.2);
	my $c = $fake->accept;
	push @accepted, [ time(), $c ];
}
is(scalar @accepted, 2, 'conmgr connected, gave up, and connected again');
my $gap = $accepted[1][0] - $accepted[0][0];
note(sprintf('second attempt %.3f s after the first (connect_timeout 1 s + connect_interval 1 s)', $gap));
ok($gap >= 1.9 && $gap <= 2.6, sprintf('attempts are connect_timeout + connect_interval apart (%.3f s)', $gap));
ok($cm->wait_for_log(qr/no answer within heartbeat_connect_timeout \(1 s\)/, 0, 5),
	'the handshake timeout is logged');
close $_->[1] for @accepted;

# 2. Answer the handshake, then fall silent.
my $c;
$deadline = time() + 10;
while (!$c && time() < $deadline)
{
	$c = $fake->accept if $sel->can_read(0.2);
}
ok($c, 'conmgr connected again');
my $hello = '';
$c->blocking(1);
sysread($c, $hello, 54) == 54 or die 'no HB_HELLO';
my ($type, $flags, $len, $magic, $minv, $maxv, $ival, $tout) = unpack('aCnNnnNN', $hello);
is($type, 'h', 'conmgr sent HB_HELLO');
is($magic, 0x434D4842, 'with the magic');
is("$ival/$tout", '1/2', 'carrying heartbeat_interval and heartbeat_timeout');
# HB_WELCOME: version 1, flags 0, attrs 0 (primary), server 150000, sysid 42
print $c pack('aCnnnNNNN', 'w', 0, 24, 1, 0, 0, 150000, 0, 42);
my $silent_since = time();		# from now on the fake sends nothing
ok(wait_until(sub { $cm->resolve('primary') =~ /candidate instance=0/ }, 5),
	'after HB_WELCOME the instance is routable');
my $aout = '';
my $app = IPC::Run::start([ "$top/build/regress/tools/cmresolve", '-p', $cmport, '-t', 'primary', '-a', '-w', 20 ],
	'>', \$aout);
ok(wait_until(sub { $app->pump_nb; $aout =~ /attached/ }, 5), 'an application attached');
my $t_down = wait_until(sub { $app->pump_nb; $aout =~ /down instance=0 reason=1/ }, 10);
ok($t_down, 'the application got INSTANCE_DOWN, reason 1 (heartbeat timeout)');
my $delay = $t_down - $silent_since;
note(sprintf('down-notice %.3f s after the fake watchdog fell silent (heartbeat_timeout 2 s)', $delay));
ok($delay >= 1.9 && $delay <= 2.5, sprintf('within heartbeat_timeout + 0.5 s (%.3f s)', $delay));
ok($cm->wait_for_log(qr/instance 0 at 127\.0\.0\.1:$fport is down: nothing received for heartbeat_timeout \(2 s\)/, 0, 5),
	'the loss is logged with its cause');
my $beats = '';
$c->blocking(0);
sysread($c, $beats, 4096);
like($beats, qr/^b\0\0\x0c/, 'conmgr sent heartbeats meanwhile') or diag(length($beats) . ' bytes');
$app->finish;
close $c;

# 3. A watchdog that breaks the protocol is dropped at once.
{
	my $c3;
	my $dl = time() + 10;
	while (!$c3 && time() < $dl)
	{
		$c3 = $fake->accept if $sel->can_read(0.2);
	}
	ok($c3, 'conmgr reconnected');
	my $h3 = '';
	$c3->blocking(1);
	sysread($c3, $h3, 54);
	print $c3 pack('aCnnnNNNN', 'w', 0, 24, 1, 0, 0, 150000, 0, 42);
	ok(wait_until(sub { $cm->resolve('primary') =~ /candidate/ }, 5), 'up again');
	print $c3 "Q\0\0\x04";	# no such message type
	ok($cm->wait_for_log(qr/instance 0 at 127\.0\.0\.1:$fport is down: protocol violation: unknown message type/, 0, 5),
		'garbage from the watchdog: instance down at once, cause logged');
	ok(!($cm->resolve('primary') =~ /candidate/), 'and not routable');
	close $c3;
}

# 4. kill -9: the next conmgr takes the stale pid file over.
my ($sup) = `ps -u $< -o pid=,args=` =~ /^\s*(\d+)\s+conmgr: supervisor -D \Q$dir\E/m;
ok($sup, "supervisor pid $sup");
kill 'KILL', $sup;
ok(wait_until(sub { `ps -u $< -o args=` !~ /conmgr: (listener :$cmport|heartbeat 0 127\.0\.0\.1:$fport)/ }, 10),
	'its roles exit by themselves when the supervisor is gone');
ok(-e "$dir/conmgr.pid", 'the pid file is left behind');
my $cm2 = CmTest::Conmgr->new('cm2', cmdata => $dir, port => $cmport);
$cm2->start(wait => 0);
ok($cm2->wait_for_log(qr/conmgr ready/, 0, 10), 'a new conmgr starts over the stale pid file');
$cm2->stop;
$cm->wait_exit(10);
done_testing();
