# Test that a standby's watchdog tells conmgr of its promotion within
# tens of milliseconds, whatever watchdog.check_attr_interval says: the
# standby looks for its promotion every 20 ms (WD_PROMOTION_POLL_US), a
# read of shared memory, while the other attributes wait for the
# interval (here 30 s, so that a promotion seen only at that check would
# be 30 s late).  Until conmgr hears of it, an old primary that still runs
# is the only primary it knows, and new writes go there.  The cost: about
# fifty wake-ups a second on a standby, and none on the primary.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my ($nodes, $wds) = watchdog_cluster({ conf => "watchdog.check_attr_interval = 30000\n" }, p => 'p', s => 's');
my %node = %$nodes;
my %wd = %$wds;
$node{p}->safe_psql('postgres', 'CREATE EXTENSION watchdog');
$node{p}->wait_for_catchup('s');

sub wakeups
{
	my ($n) = @_;
	return $node{$n}->safe_psql('postgres', 'SELECT wakeups FROM pgx_stat_watchdog_worker');
}

# A heartbeat session with the standby, as conmgr's would be.
my $hb = hb_start(port => $wd{s}, interval => 1, timeout => 10);
ok(hb_wait($hb, qr/welcome version=3 attrs=1 flags=0 timeline=1\n/, 20),
	'the standby welcomes the session: in recovery, timeline 1') or diag(${ $hb->{out} });

# The standby's worker wakes for its poll; the primary's, with no session
# and a 30 s interval, hardly at all.
my %w0 = map { $_ => wakeups($_) } qw(p s);
my $t0 = time();
sleep 3;
my %w1 = map { $_ => wakeups($_) } qw(p s);
my $secs = time() - $t0;
my $s_rate = ($w1{s} - $w0{s}) / $secs;
my $p_rate = ($w1{p} - $w0{p}) / $secs;
cmp_ok($s_rate, '>=', 20, sprintf('the standby looks for its promotion: %.0f wake-ups a second', $s_rate));
cmp_ok($s_rate, '<=', 100, 'not much more than fifty a second');
cmp_ok($p_rate, '<=', 2, sprintf('the primary does not: %.1f wake-ups a second', $p_rate));

# Promote; the session hears of it well before check_attr_interval.
my $t_before = time();
$node{s}->promote;
my $t_promoted = time();
my $got = hb_wait($hb, qr/attrs attrs=0 timeline=2\n/, 5);
my $t_heard = time();
ok($got, 'HB_ATTRS: not in recovery, timeline 2') or diag(${ $hb->{out} });
note(sprintf('heard %.3f s after pg_ctl promote began, %.3f s after it returned',
	$t_heard - $t_before, $t_heard - $t_promoted));
cmp_ok($t_heard - $t_promoted, '<=', 0.5,
	'within 0.5 s of pg_ctl promote returning (check_attr_interval is 30 s)');
like(slurp_file($node{s}->logfile), qr/watchdog: instance attributes changed: not in recovery, read-write by default, timeline 2/,
	'the watchdog logged the change');

# Promoted, it polls no more.
%w0 = map { $_ => wakeups($_) } qw(s);
$t0 = time();
sleep 2;
my $after = (wakeups('s') - $w0{s}) / (time() - $t0);
cmp_ok($after, '<=', 5, sprintf('promoted, the worker stops polling: %.1f wake-ups a second', $after));

hb_stop($hb);
$node{s}->stop;
$node{p}->stop;
done_testing();
