# Scenario p2: the Patroni leader's host crashes (links cut, every
# process kill -9), while writers insert through conmgr.
package FaultLab::Crash;

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time usleep);
use CmLab;
use FaultLab;
use FaultLab::Patroni;

sub scenario_crash
{
	my ($i) = @_;
	patroni_run($i, 'p2 crash', 'the crash',
		fault => sub { return $lab->crash($_[0]) },
		# what landed on the dead one: its server started alone, offline
		rows => sub {
			my ($old, $new, $since) = @_;
			my @rows = rows_landed($since, $new);
			if (ok($lab->inspect_offline($old), "the crashed ${old}'s server starts alone, to be read"))
			{
				push @rows, grep { $_->{node} eq $old } rows_landed($since, $old);
				$lab->inspect_end($old);
			}
			$lab->rejoin($old);
			return @rows;
		});
	return;
}

return { keys => ['p2'], name => 'p2 crash failover', run => \&scenario_crash };
