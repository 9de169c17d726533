# Scenario p1: patronictl switchover, while writers insert through
# conmgr.
package FaultLab::Switchover;

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time usleep);
use CmLab;
use FaultLab;
use FaultLab::Patroni;

sub scenario_switchover
{
	my ($i) = @_;
	my $t_ret;
	my $first = patroni_run($i, 'p1 switchover', 'the command',
		fault => sub {
			my ($old, $new) = @_;
			my $t_cmd = time();
			my ($rc, $out) = $lab->patronictl($new, 'switchover', '--leader', $old, '--candidate', $new, '--force');
			$t_ret = time();
			is($rc, 0, "patronictl switchover from $old to $new") or diag($out);
			return $t_cmd;
		},
		# the old leader is a replica of the new one: the new one has all
		rows => sub {
			my ($old, $new, $since) = @_;
			$lab->patroni_wait_replicas(60);
			return rows_landed($since, $new);
		});
	fig('p1 switchover: command returned to first read-write connect through conmgr (s)',
		$first ? $first->{e} - $t_ret : undef);
	return;
}

return { keys => ['p1'], name => 'p1 patronictl switchover', run => \&scenario_switchover };
