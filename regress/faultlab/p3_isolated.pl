# Scenario p3: the split-brain window: the leader is cut off from etcd
# and the replica and its Patroni frozen (SIGSTOP), its server reachable
# from the client host and still a primary, while writers insert through
# conmgr.
package FaultLab::Isolated;

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time usleep);
use CmLab;
use FaultLab;
use FaultLab::Patroni;

# Patroni on the old leader frozen: its server stays a primary, as when
# Patroni hangs (docs/patroni.md: Patroni's watchdog device would reset
# the host); its host cut off from etcd and from the other node, not from
# the client host.
sub scenario_isolated
{
	my ($i) = @_;
	my $primary = sub {
		my ($old, $when) = @_;
		is($lab->psql($old, 'SELECT pg_is_in_recovery()'), 'f', "the old leader $old is still a primary $when");
	};
	patroni_run($i, 'p3 isolated leader', 'the isolation',
		fault => sub {
			my ($old, $new) = @_;
			my $t = $lab->patroni_freeze($old);
			$lab->cut("e1-$old", $lab->links_between($old, $new));
			return $t;
		},
		during => sub { $primary->($_[0], 'at the end of the writes: two primaries') },
		rows => sub {
			my ($old, $new, $since) = @_;
			my @rows = rows_landed($since, $old, $new);
			$lab->rejoin($old);
			return @rows;
		});
	return;
}

return { keys => ['p3'], name => 'p3 isolated leader, Patroni frozen', run => \&scenario_isolated };
