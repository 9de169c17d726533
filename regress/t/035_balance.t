# Test that conmgr spreads read-only connections over two standbys: the
# first candidate alternates between them, and each answer lists both; one
# whose heartbeat is late comes last.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use CmTest::Conmgr;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my ($node, $wd) = watchdog_cluster(p => 'primary', s1 => 'standby1', s2 => 'standby2');
my $primary = $node->{p};
my @standbys = @$node{qw(s1 s2)};
my $cm = CmTest::Conmgr->new('cm',
	instances => [ map { [ $node->{$_}, $wd->{$_} ] } qw(p s1 s2) ],
	conf => { heartbeat_interval => 1, heartbeat_timeout => 6 });
$cm->start;

sub order
{
	my ($target) = @_;
	return join(',', $cm->resolve($target) =~ /candidate instance=(\d+)/g);
}

ok(wait_until(sub { order('any') =~ /^\d,\d,\d$/ }, 30), 'three instances routable') or diag($cm->log_content);
my %first;
for (1 .. 20)
{
	my $o = order('read-only');
	like($o, qr/^(1,2|2,1)$/, "read-only offers both standbys ($o)") if $_ <= 2;
	my ($f) = split /,/, $o;
	$first{$f}++;
}
note("first read-only candidate over 20 requests: standby 1 x $first{1}, standby 2 x $first{2}");
ok($first{1} >= 8 && $first{2} >= 8, 'load spread over both standbys');
is(order('read-write'), '0', 'read-write stays on the primary');
like(order('prefer-standby'), qr/^(1,2|2,1),0$/, 'prefer-standby: both standbys, then the primary');

# A standby whose heartbeat is late (its watchdog stopped: a server or link
# dying, not yet past heartbeat_timeout) is still offered, but after the one
# heard from on time: from 1.5 heartbeat_interval of silence until the
# timeout (1.5 s to 6 s here; the last beat came up to 1 s before the stop,
# so the samples must be done within 5 s of it, which leaves room for a
# slow sanitizer build).
my $wdpid = $standbys[0]->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'watchdog'});
like($wdpid, qr/^\d+$/, "standby 1's watchdog process ($wdpid)");
# A busy machine can make the six samples too slow to judge: then the
# watchdog is resumed, both standbys are waited for, and it is tried again
# (3 tries at most; the timing check fails if none was quick enough).
my ($elapsed, @late);
for my $try (1 .. 3)
{
	kill 'STOP', $wdpid;
	my $t_stop = time();
	select(undef, undef, undef, 1.65);
	@late = map { order('read-only') } 1 .. 6;
	$elapsed = time() - $t_stop;
	kill 'CONT', $wdpid;
	last if $elapsed < 4.98;
	note("try $try: the samples took until $elapsed s after the stop; again");
	wait_until(sub { my %f = map { (split /,/, order('read-only'))[0] => 1 } 1 .. 4; keys %f == 2 }, 15);
}
cmp_ok($elapsed, "<", 4.98, 'the late-standby samples were taken before heartbeat_timeout')
  or diag("took until $elapsed s");
is(join(' ', @late), join(' ', ('2,1') x 6),
	'a standby with a missed heartbeat is offered last, six requests in a row');
# heard from again: shared again
ok(wait_until(sub { my %f = map { (split /,/, order('read-only'))[0] => 1 } 1 .. 4; keys %f == 2 }, 10),
	'once its heartbeat is back, both standbys come first in turn');

$cm->stop;
$_->stop for @standbys;
$primary->stop;
done_testing();
