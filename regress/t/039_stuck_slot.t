# Test that the listener does not freeze on an instance slot whose writer
# stopped in the middle of an update.  The heartbeat role of an up
# instance is stopped (SIGSTOP) and its slot's change counter made odd, as
# the role leaves it when it stops between the two increments; then
# cm_ctl status and a RESOLVE must be answered at once, from the last
# consistent copy of the slot (the instance still up and routable, as for
# any silent heartbeat role until heartbeat_timeout), with one warning in
# the log; once the writer finishes its update and goes on, the slot is
# read again and the log says so.
#
# The counter is set through /proc/PID/mem of the listener, which maps the
# shared table (the same user may write it).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use CmProc;
use IO::Select;
use IO::Socket::INET;
use IPC::Run qw(run timeout);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $top = cm_top();
my $fake = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
	Listen => 4, ReuseAddr => 1) or die $!;
my $cm = conmgr_one(watchdog_port0 => $fake->sockport, heartbeat_interval => 1,
	heartbeat_timeout => 300);
my ($dir, $cmport) = ($cm->cmdata, $cm->port);
$cm->start;
my $hb;
END
{
	kill 'CONT', $hb if $hb;
}

# The fake watchdog answers the handshake and then only reads.
my $c;
ok(wait_until(sub { IO::Select->new($fake)->can_read(0.2) and $c = $fake->accept }, 15),
	'the heartbeat role connected');
$c->blocking(1);
my $hello = '';
sysread($c, $hello, 54) == 54 or die 'no HB_HELLO';
print $c pack('aCnnnNNNN', 'w', 0, 24, 1, 0, 0, 150000, 0, 42);

# A status and a RESOLVE, each given 10 s; the answers and how long they took.
sub status
{
	my ($o, $e) = ('', '');
	my $t0 = time();
	my $ok = eval { run([ "$top/build/bin/cm_ctl", 'status', '-D', $dir ], '>', \$o, '2>', \$e, timeout(10)) };
	return ($ok ? $o : "failed: $e$@", time() - $t0);
}

sub resolve
{
	my ($o, $e) = ('', '');
	my $t0 = time();
	my $ok = eval {
		run([ "$top/build/regress/tools/cmresolve", '-p', $cmport, '-t', 'primary' ],
			'>', \$o, '2>', \$e, timeout(10));
	};
	return ($ok ? $o : "failed: $e$@", time() - $t0);
}

ok(wait_until(sub { (resolve())[0] =~ /candidate instance=0/ }, 10), 'the instance is up and routable');
$hb = role_pid($dir, 'heartbeat 0 ');
my $listener = role_pid($dir, "listener :$cmport");
ok($hb && $listener, "heartbeat role $hb, listener $listener");

# The shared table: magic, layout version, header size, slot size; slot 0's
# change counter is the first field after the header.
my $base = proc_shared_mapping($listener, pack('L', 0x434d5348));
ok(defined $base, 'the shared table is found in the listener\'s memory');
my (undef, undef, $header_size) = unpack('LLL', proc_mem_read($listener, $base, 12));
my $counter_at = $base + $header_size;

kill 'STOP', $hb;
my $count = unpack('L', proc_mem_read($listener, $counter_at, 4));
is($count % 2, 0, "slot 0 is at rest (change counter $count)");
ok(proc_mem_write($listener, $counter_at, pack('L', $count + 1)),
	'its writer is stopped, and the counter made odd: stopped mid-update');

my ($answer, $took) = status();
like($answer, qr/^0\s.*\bup\b/m, 'cm_ctl status answers, with the instance\'s last consistent state (up)')
  or diag($answer);
ok($took < 5, sprintf('at once (%.2f s)', $took));
($answer, $took) = resolve();
like($answer, qr/candidate instance=0/, 'a RESOLVE is answered, the instance still routable') or diag($answer);
ok($took < 5, sprintf('at once (%.2f s)', $took));
(undef, $took) = resolve() for 1 .. 5;
ok($took < 1, sprintf('and so are later ones (%.2f s)', $took));
my $warning = qr/LOG:  instance 0: its shared slot stayed in mid-update for \d+ ms \(writer pid $hb\); using its last consistent state/;
ok($cm->wait_for_log($warning, 0, 10), 'the log says so, naming the writer') or diag($cm->log_content);

# The writer finishes its update and goes on.
ok(proc_mem_write($listener, $counter_at, pack('L', $count + 2)), 'the writer finishes its update');
kill 'CONT', $hb;
($answer) = status();
like($answer, qr/^0\s.*\bup\b/m, 'cm_ctl status reads the slot again');
ok($cm->wait_for_log(qr/LOG:  instance 0: its shared slot is readable again/, 0, 10),
	'and the log says so');
my @warned = $cm->log_content =~ /$warning/g;
is(scalar @warned, 1, 'once for the seven requests that read the stuck slot') or diag($cm->log_content);

$cm->stop;
like($cm->log_content, qr/conmgr stopped/, 'conmgr stops');
done_testing();
