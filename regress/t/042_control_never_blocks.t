# Test that the control socket never holds up the listener: with 4,000
# attached sessions the status answer is larger than a Unix socket's send
# buffer, and a cm_ctl that asks for it and does not read must not delay
# a RESOLVE on another connection by more than 100 ms; the stalled client
# still gets the whole answer when it reads within a second, and one that
# never reads is dropped: what it finds later is cut short.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use CmTest::Conmgr;
use IO::Socket::UNIX;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Socket qw(SOCK_STREAM);
use Test::More;
use Time::HiRes qw(time usleep);

my $top = cm_top();
my $stormer = "$top/build/regress/tools/stormer";
my $cmresolve = "$top/build/regress/tools/cmresolve";
my $nsessions = 4000;

my ($nodes, $wd) = watchdog_cluster(p => 'ctlblock');
my ($node, $wdport) = ($nodes->{p}, $wd->{p});

my $cm = CmTest::Conmgr->new('cm', instances => [ [ $node, $wdport ] ], conf => qq{
listen_addresses = '127.0.0.1'
heartbeat_interval = 1
heartbeat_timeout = 3
log_min_messages = LOG
});
my ($cmport, $cmdata) = ($cm->port, $cm->cmdata);
# 8,192 descriptors: room for the 4,000 sessions and the test's own.  The
# first check below waits for conmgr to route.
$cm->start(wait => 0, ulimit_n => 8192);
my $storm_out = '';
my $storm;
# CmTest's END stops conmgr; this one the stormer.
END
{
	eval { $storm->kill_kill if $storm && $storm->pumpable; };
}

my $conninfo = "host=127.0.0.1 port=$cmport dbname=postgres target_session_attrs=any";
ok(wait_until(sub { app_connects($conninfo) }, 30), 'an application connects through conmgr') or diag($cm->log_content);

sub count_attached
{
	my $st = cm_status($cmdata) // '';
	return scalar(() = $st =~ /^app .* state=attached /mg);
}

# 4,000 idle attached sessions, held for 60 s at most.
$storm = IPC::Run::start(
	[ $stormer, '-P', 'app', '-p', $cmport, '-m', 'attached', '-n', $nsessions, '-w', 200,
		'-i', 20, '-c', $nsessions + 100, '-H', 60, '-d', 80 ],
	'<', \undef, '>', \$storm_out, '2>', \$storm_out);
ok(wait_until(sub { count_attached() >= $nsessions }, 60), "$nsessions sessions are attached")
  or diag(count_attached() . ' attached');

# A control client that asks for the status and does not read.
sub ask_status
{
	my $s = IO::Socket::UNIX->new(Peer => "$cmdata/conmgr.ctl", Type => SOCK_STREAM)
	  or die "control socket: $!";
	print $s "status\n";
	$s->flush;
	return $s;
}

sub read_all
{
	my ($s, $secs) = @_;
	my ($text, $deadline) = ('', time() + $secs);
	while (time() < $deadline)
	{
		my $n = sysread($s, $text, 65536, length $text);
		last unless $n;
	}
	close $s;
	return $text;
}

# One resolve (probe and RESOLVE in one packet, its candidates back), timed
# by cmresolve itself: microseconds.
sub resolve_us
{
	my ($out, $err) = ('', '');
	IPC::Run::run([ $cmresolve, '-p', $cmport, '-t', 'any', '-r', 1 ],
		'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(20));
	my ($us) = $out =~ /max_us=(\d+)/;
	diag("cmresolve: $out$err") unless defined $us;
	return $us;
}

my $wmem = PostgreSQL::Test::Utils::slurp_file('/proc/sys/net/core/wmem_default') + 0;
my $full = cm_status($cmdata) // '';
ok(length($full) > $wmem,
	sprintf('the status answer (%d bytes) is larger than a Unix socket\'s send buffer (%d bytes)',
		length $full, $wmem));
my $quiet_us = resolve_us();
note("a RESOLVE with no control client: $quiet_us us");

my $stalled = ask_status();
# Let the listener take the request and fill the socket's buffer.
usleep(200_000);
my $t0 = time();
my $us = resolve_us();
ok(defined $us && $us < 100_000,
	sprintf('a RESOLVE is answered in %.1f ms (at most 100) while a control client does not read',
		($us // 0) / 1000));
my $answer = read_all($stalled, 10);
like($answer, qr/^end instances=1 apps=\d+\n\z/m, 'the stalled client gets the whole answer once it reads');
is(scalar(() = $answer =~ /^app .* state=attached /mg) >= $nsessions, 1, 'listing every attached session');

# One that does not read for 2 s: dropped after its second.
my $never = ask_status();
sleep 2;
my $cut = read_all($never, 10);
ok(length($cut) > 0 && $cut !~ /^end instances=/m,
	sprintf('a control client that waits 2 s to read finds its answer cut short (%d bytes)', length $cut));
ok(defined(cm_status($cmdata)), 'the control socket answers the next client');

$storm->kill_kill;
$cm->stop;
$node->stop;
done_testing();
