# Scenario 4: conmgr is killed (-9) under applications: they fail, and
# their sessions on the servers end, at once.
package FaultLab::KillConmgr;

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time usleep);
use CmLab;
use FaultLab;

sub scenario_kill_conmgr
{
	my ($i) = @_;
	my %app;
	for my $k (qw(rw1 rw2 ro1 ro2))
	{
		my $target = $k =~ /^rw/ ? 'read-write' : 'read-only';
		$app{"cmapp_$k"} = [ $lab->spawn('c1', [ $lab->cmapp, 'block',
					$lab->conninfo('c1', $target, application_name => "lab_k_$k"), 'SELECT pg_sleep(60)' ], stamp => 1),
			qr/^result / ];
	}
	$app{psql_rw} = [ pg_app('c1', $lab->conninfo('c1', 'read-write', application_name => 'lab_k_psql'),
			'SELECT pg_sleep(60)', preload => 1), $lost_re ];
	my $active = sub {
		my $n = 0;
		$n += $lab->psql($_, q{SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'lab\_k\_%'
			AND state = 'active'}) // 0 for $lab->servers;
		return $n;
	};
	ok($lab->wait_until(sub { $active->() == 5 }, 30), '5 applications through conmgr: 3 on the primary, 2 on standbys')
	  or diag(join("\n", map { "$_: " . $app{$_}[0]->all } sort keys %app));
	# the instances holding c1's sessions (the two read-only ones may share a standby)
	my %held = map { $_ => $lab->sessions_from($_, $lab->addr('c1', $_)) // 0 } $lab->servers;
	my @held = grep { $held{$_} > 0 } $lab->servers;
	my %pos = map { $_ => $lab->log_pos($_) } @held;
	my (%term, %ended);
	my $t0 = $lab->kill_conmgr('c1');
	my $when = watch(\%app, $t0, 10, also => sub {
		$ended{$_} ||= ($lab->sessions_from($_, $lab->addr('c1', $_)) // -1) == 0 for @held;
		return @held == grep { $ended{$_} } @held;
	});
	for my $s (grep { $ended{$_} } @held)
	{
		my @d = ended($s, $pos{$s}, $lab->addr('c1', $s), $held{$s});
		$term{$s} = (sort { $b <=> $a } map { $_->{t} } @d)[0] - $t0 if @d == $held{$s};
	}
	my $apps_max = 0;
	for my $k (sort keys %app)
	{
		my $t = $when->{$k};
		ok(defined $t && $t < 0.5, sprintf('%s failed at once: %s', $k, defined $t ? sprintf('%.3f s', $t) : 'no'))
		  or diag($app{$k}[0]->all);
		$apps_max = $t if defined $t && $t > $apps_max;
	}
	like($app{$_}[0]->out, qr/^result status=PGRES_FATAL_ERROR .*connstatus=BAD/m, "$_: connection lost")
	  for grep { /^cmapp/ } sort keys %app;
	my $term_max = 0;
	ok(@held >= 2 && grep({ $_ eq $lab->primary } @held), 'sessions on the primary and on ' . (@held - 1) . ' standby(s)');
	for my $s (@held)
	{
		ok(defined $term{$s} && $term{$s} < 0.5, sprintf('%s %s: the terminator ended c1\'s sessions at once: %s',
			$s eq $lab->primary ? 'primary' : 'standby', $s, defined $term{$s} ? sprintf('%.3f s', $term{$s}) : 'no'));
		$term_max = $term{$s} if defined $term{$s} && $term{$s} > $term_max;
	}
	fig('4 conmgr kill -9: slowest of 5 applications fails (s)', $apps_max);
	fig('4 conmgr kill -9: slowest terminator of the instances (s)', $term_max);
	$lab->stop_procs;
	$lab->start_conmgr('c1', complete => 1);
	ok($lab->wait_routable('c1'), 'conmgr restarted and routes to every instance');
	return;
}

return { keys => [4], name => '4 conmgr kill -9', run => \&scenario_kill_conmgr };
