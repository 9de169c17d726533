# Test that application sessions that are not attached cannot hold
# conmgr's port: 2,000 sessions that resolved and then went idle (a local
# client that never reports ATTACHED) are closed by the listener
# attach_timeout after their candidates, while a real application
# connects meanwhile; 2,000 idle attached sessions are not touched, and
# cost the listener less than 2 kB each (the 10 kB startup buffer is
# given back once the startup is over).
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
use Time::HiRes qw(time usleep);

my $top = cm_top();
my $stormer = "$top/build/regress/tools/stormer";
my $attach_timeout = 4;

my ($nodes, $wd) = watchdog_cluster(p => 'idle');
my ($node, $wdport) = ($nodes->{p}, $wd->{p});

my $cm = CmTest::Conmgr->new('cm', instances => [ [ $node, $wdport ] ], conf => qq{
listen_addresses = '127.0.0.1'
heartbeat_interval = 1
heartbeat_timeout = 3
attach_timeout = $attach_timeout
log_min_messages = LOG
});
my ($cmport, $cmdata) = ($cm->port, $cm->cmdata);
# 4,096 descriptors: room for the 2,000 sessions and the real application.
# The first check below waits for conmgr to route.
$cm->start(wait => 0, ulimit_n => 4096);
my @storms;
# CmTest's END stops conmgr; this one the test's other programs.
END
{
	eval { $_->kill_kill if $_->pumpable; } for @storms;
}

my $conninfo = "host=127.0.0.1 port=$cmport dbname=postgres target_session_attrs=any";

ok(wait_until(sub { app_connects($conninfo) }, 30), 'an application connects through conmgr') or diag($cm->log_content);
my $listener = role_pid($cmdata, "listener :$cmport");
ok($listener, "the listener's pid: " . ($listener // 'none'));

sub rss_kb
{
	open my $f, '<', "/proc/$listener/status" or return undef;
	my ($kb) = join('', <$f>) =~ /^VmRSS:\s+(\d+) kB/m;
	return $kb;
}

# How many application sessions cm_ctl status --json shows in $state.
sub count_state
{
	my ($state) = @_;
	my $st = $cm->status // {};
	return scalar(grep { $_->{state} eq $state } @{ $st->{applications} // [] });
}

sub storm
{
	my ($mode, $hold) = @_;
	my $out = '';
	my $h = IPC::Run::start(
		[ $stormer, '-P', 'app', '-p', $cmport, '-m', $mode, '-n', 2000, '-w', 100,
			'-i', 20, '-c', 2500, '-H', $hold, '-d', $hold + 20 ],
		'<', \undef, '>', \$out, '2>', \$out);
	push @storms, $h;
	return { h => $h, out => \$out };
}

sub storm_result
{
	my ($s, $mode) = @_;
	$s->{h}->finish;
	note("stormer -m $mode:\n${ $s->{out} }");
	my ($line) = ${ $s->{out} } =~ /^(mode=\Q$mode\E .*)$/m;
	return { $line ? ($line =~ /(\w+)=(\S+)/g) : () };
}

######################################################################
# 2,000 idle attached sessions: kept, and small.
######################################################################
my $rss0 = rss_kb();
my $att = storm('attached', 3 * $attach_timeout);
ok(wait_until(sub { count_state('attached') >= 2000 }, 30), '2,000 sessions are attached')
  or diag(count_state('attached') . ' attached');
my $rss1 = rss_kb();
my $per = ($rss1 - $rss0) * 1024 / 2000;
note(sprintf('listener RSS: %d kB before, %d kB with 2,000 idle attached sessions (%.0f bytes each)',
	$rss0, $rss1, $per));
SKIP:
{
	# ASan's redzones and its quarantine of freed blocks (the startup
	# buffers) make the RSS say nothing about the listener's own use.
	skip 'the RSS of an ASan build is not the program\'s', 1 if sanitized();
	ok($per < 2048, sprintf('an idle attached session costs the listener %.0f bytes (less than 2 kB)', $per));
}
my $r = storm_result($att, 'attached');
is($r->{answered}, 2000, 'every one of them got its candidates and reported ATTACHED');
is($r->{closed_by_server}, 0, "none was closed by conmgr, though they idled for 3 x attach_timeout");

######################################################################
# 2,000 sessions that resolved and went idle: closed after attach_timeout,
# while a real application connects.
######################################################################
my $t0 = time();
my $res = storm('resolved', 5 * $attach_timeout);
ok(wait_until(sub { count_state('resolved') >= 1000 }, 30), 'the resolved sessions pile up');
my ($tries, $ok_apps) = (0, 0);
while (time() - $t0 < 3 * $attach_timeout)
{
	$tries++;
	$ok_apps += app_connects($conninfo);
	usleep(200_000);
}
is($ok_apps, $tries, "a real application connected every time meanwhile ($ok_apps of $tries)");
$r = storm_result($res, 'resolved');
is($r->{answered}, 2000, '2,000 sessions got their candidates');
is($r->{closed_by_server}, 2000, 'conmgr closed every one of them');
ok($r->{close_ms_median} >= $attach_timeout * 1000 - 100,
	"not before attach_timeout (median $r->{close_ms_median} ms after connecting)");
ok($r->{close_ms_max} <= $attach_timeout * 1000 + 3000,
	"within 3 s after it (longest $r->{close_ms_max} ms; attach_timeout $attach_timeout s)");
is(count_state('resolved'), 0, 'no resolved session is left');
like($cm->log_content, qr/closed: no ATTACHED within attach_timeout \($attach_timeout s\) of its candidates/,
	'the listener logged why');
ok(app_connects($conninfo), 'an application connects afterwards');

$cm->stop;
$node->stop;
done_testing();
