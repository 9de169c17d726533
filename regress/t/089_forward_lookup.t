# Test that the forwarder never waits on a host name lookup in its loop:
# with instance 0 named by backend_host, whose every lookup takes 3 s
# (build/regress/slow_lookup.so preloaded into conmgr: a slow name
# server), the forwarder looks the name up in its own thread at start-up
# and logs the address; a session through the read-write port to that
# instance then connects at once, and so does one while the name is
# being looked up again after a change of the instances (the standby
# stopped), which keeps the address it had.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use CmTest::Conmgr;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $top = cm_top();
my $slow = 'slow.conmgr.test';
my $secs = 3;
my ($node, $wd) = watchdog_cluster(p => 'primary', s => 'standby');
my %fwd = map { $_ => PostgreSQL::Test::Cluster::get_free_port() } qw(read-write read-only);
my $cm = CmTest::Conmgr->new('cm',
	instances => [
		{ backend_host => "'$slow'", backend_port => $node->{p}->port, watchdog_port => $wd->{p} },
		[ $node->{s}, $wd->{s} ] ],
	conf => "heartbeat_interval = 1\nlog_min_messages = LOG\nlisten_addresses = '127.0.0.1'\n"
	  . "forward_ports = 'read-write=$fwd{'read-write'}, read-only=$fwd{'read-only'}'\n");
$cm->start(wait => 'up',
	prefix => [ foreign_env(LD_PRELOAD => "$top/build/regress/slow_lookup.so",
			CM_SLOW_HOST => $slow, CM_SLOW_SECS => $secs) ]);
ok($cm->wait_for_log(qr/forwarder LOG:  forwarder: instance 0's host "\Q$slow\E" is at 127\.0\.0\.1/, 0, 10),
	'the forwarder looked the name up and logged its address') or diag($cm->log_content);

# psql through a forward port: what it printed, and how long it took.
sub timed_psql
{
	my ($port) = @_;
	my ($out, $err) = ('', '');
	my $t0 = time();
	IPC::Run::run([ 'psql', '-X', '-At', '-d', "host=127.0.0.1 port=$port dbname=postgres connect_timeout=20",
			'-c', 'SELECT inet_server_port()' ], '<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(30));
	chomp $out;
	return ($out . $err, time() - $t0);
}

my ($o, $took) = timed_psql($fwd{'read-write'});
is($o, $node->{p}->port, 'read-write port: the primary, named by a host name');
cmp_ok($took, '<', $secs / 2,
	sprintf('at once (%.3f s), without a lookup (%d s each)', $took, $secs));
($o, $took) = timed_psql($fwd{'read-only'});
is($o, $node->{s}->port, 'read-only port: the standby');

# A change of the instances has the forwarder look the name up again, in
# its thread; meanwhile the address it has serves.
my $off = $cm->log_offset;
$node->{s}->stop('fast');
ok(wait_until(sub { (($cm->status // {})->{instances}[1]{heartbeat} // 'up') ne 'up' }, 20),
	'the standby stopped: conmgr sees it down (the forwarder is woken)');
($o, $took) = timed_psql($fwd{'read-write'});
is($o, $node->{p}->port, 'read-write port while the name is looked up again: the primary');
cmp_ok($took, '<', $secs / 2, sprintf('at once (%.3f s)', $took));
ok(!$cm->log_contains(qr/could not (connect to|look up) instance/, $off), 'no connect failed meanwhile')
  or diag($cm->log_content($off));

$cm->stop;
$node->{p}->stop;
done_testing();
