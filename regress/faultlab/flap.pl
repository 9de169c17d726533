# Scenario 5: a flapping link: nothing crashes, nothing leaks, routing
# stays right.
package FaultLab::Flap;

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time usleep);
use CmLab;
use FaultLab;

sub role_pids
{
	my $cm = $lab->conmgr_pid('c1');
	my @kids = split /\s+/, `ps -o pid= --ppid $cm`;
	my @wd = map { $lab->psql($_, q{SELECT string_agg(pid::text, ',' ORDER BY backend_type)
		FROM pg_stat_activity WHERE backend_type LIKE 'watchdog%'}) // '?' } $lab->servers;
	my @pm;
	for my $s ($lab->servers)
	{
		my $first = '?';
		if (open(my $h, '<', $lab->data($s) . '/postmaster.pid'))
		{
			$first = <$h>;
			chomp $first;
		}
		push @pm, $first;
	}
	return join(' ', "conmgr=$cm", 'roles=' . join(',', sort grep { /\d/ } @kids), "watchdogs=@wd", "postmasters=@pm");
}

# The flapping schedule: DOWN/UPxCOUNT, comma-separated (seconds). By
# default the issue's 2 s down / 2 s up, then cuts longer than
# heartbeat_timeout, so that the primary is also really lost and found
# again several times: 4 x (2/2) + 2 x (4/3) = 30 s.
sub flap_schedule
{
	my @phases;
	for my $part (split /,/, $ENV{CM_FAULT_FLAP} // '2/2x4,4/3x2')
	{
		die "CM_FAULT_FLAP: bad part $part" unless $part =~ m{^(\d+(?:\.\d+)?)/(\d+(?:\.\d+)?)(?:x(\d+))?$};
		push @phases, ([ $1, $2 ]) x ($3 // 1);
	}
	return @phases;
}

sub scenario_flap
{
	my ($i) = @_;
	my $p = $lab->primary;
	my ($link, $a1, $ap) = ("c1-$p", $lab->addr('c1', $p), $lab->addr($p, 'c1'));
	my @phases = flap_schedule();
	my $pids_before = role_pids();
	my $st0 = $lab->ctl_status('c1');
	my (@running, %outcome, @samples, @unanswered, @cuts);
	my ($next_app, $next_sample, $hung) = (0, 0, 0);
	my $classify = sub {
		my ($a) = @_;
		my $out = $a->all;
		if ($out =~ /^connected host=\S+ hostaddr=(\S+) port=\d+ cmsocket=\w+ recovery=(\S)/m)
		{
			my ($addr, $recovery) = ($1, $2);
			# recovery=? : the connection was lost before its first query
			# (a cut, or conmgr's down-notice, right after the connect)
			my $lost = $out =~ /^result .*connstatus=BAD/m;
			return 'wrong role' if $addr ne $ap || ($recovery ne 'f' && !($recovery eq '?' && $lost));
			return 'query ok' if $recovery eq 'f' && $out =~ /^result status=PGRES_TUPLES_OK/m;
			return 'connection lost' if $lost;
			return 'other: ' . $out;
		}
		return 'connect failed' if $out =~ /^failed message=/m;
		return 'other: ' . $out;
	};
	my $reap = sub {
		my ($force) = @_;
		for my $a (@running)
		{
			my $done = $a->done;
			next unless $done || $force || time() - $a->{t0} > 15;
			$hung++ unless $done;
			$outcome{ $classify->($a) }++ if $done;
			$a->kill;
			$a->{gone} = 1;
		}
		@running = grep { !$_->{gone} } @running;
	};
	# Applications (4 at a time, read-write, a 0.5 s query each) and
	# routing samples (every 0.25 s) while the link goes down and up.
	my $busy = sub {
		my ($until) = @_;
		while (time() < $until)
		{
			my $now = time();
			$reap->(0);
			if (@running < 4 && $now >= $next_app)
			{
				push @running, $lab->spawn('c1', [ $lab->cmapp, 'block',
						$lab->conninfo('c1', 'read-write', connect_timeout => 2, application_name => 'lab_flap'),
						'SELECT pg_sleep(0.5)' ]);
				$next_app = $now + 0.2;
			}
			if ($now >= $next_sample)
			{
				my $rw = $lab->resolve_answer('c1', 'read-write');
				my $ro = $lab->resolve_answer('c1', 'read-only');
				my $c = $cuts[-1];
				# the answer was made between t and t_end (the resolves
				# are processes of their own, slow on a loaded machine)
				my $smp = { t => $now, t_end => time(), down => ($c && !defined $c->[1]) ? 1 : 0,
					cut_at => $c ? $c->[0] : undef, up_at => $c ? $c->[1] : undef };
				if ($rw && $ro)
				{
					push @samples, { %$smp, rw => "@$rw", ro => scalar(@$ro) };
				}
				else
				{
					push @unanswered, $smp;
				}
				$next_sample = $now + 0.25;
			}
			usleep(10_000);
		}
	};
	my $t_start = time();
	for my $k (0 .. $#phases)
	{
		my ($dn, $up) = @{ $phases[$k] };
		push @cuts, [ $lab->cut($link), undef ];
		$busy->($cuts[-1][0] + $dn);
		$cuts[-1][1] = $lab->restore($link);
		# after the last cut, time the primary's return (below)
		$busy->($cuts[-1][1] + $up) if $k < $#phases;
	}
	my $t_end = $cuts[-1][1];
	my $t_back = $lab->wait_until(sub { join(',', $lab->resolve('c1', 'read-write')) eq $p }, 20);
	ok($t_back, 'after the flapping, conmgr routes read-write to the primary again');
	my $back_bound = $T + $lab->hb_connect_interval + $lab->hb_connect_timeout + 1;
	ok($t_back && $t_back - $t_end <= $back_bound, sprintf('within %d s of the last restore: %.2f s',
		$back_bound, $t_back ? $t_back - $t_end : -1));
	fig('5 flapping: primary routable again after the last restore (s)', $t_back ? $t_back - $t_end : undef);
	$lab->wait_until(sub { $reap->(0); !@running }, 20);
	$reap->(1);
	$lab->stop_procs;

	is($outcome{'wrong role'} // 0, 0, 'no read-write connection landed anywhere but on the primary');
	is($hung, 0, 'no application hung (each ended within 15 s)');
	my @other = grep { /^other/ } keys %outcome;
	is(scalar(@other), 0, 'every application connected and ran, lost its connection, or failed to connect')
	  or diag(join("\n", @other));
	note('5 flapping: ' . join(', ', map { "$_ $outcome{$_}" } sort grep { !/^other/ } keys %outcome)
		  . sprintf(' over %d cuts in %.0f s', scalar(@cuts), $t_end - $t_start));
	is(scalar(@unanswered), 0, sprintf('conmgr answered every routing sample (%d)', @samples + @unanswered))
	  or diag(join("\n", map { sprintf('no answer at +%.2f s', $_->{t} - $t_start) } @unanswered));
	is(scalar(grep { $_->{ro} != 2 } @samples), 0,
		sprintf('the standbys stayed routable in all %d samples (their links never moved)', scalar @samples));
	is(scalar(grep { $_->{rw} ne '' && $_->{rw} ne $p } @samples), 0, 'read-write never offered a standby');

	# Routing follows the truth: the primary is offered at most
	# heartbeat_timeout (+ 0.5 s) into a cut; it is withdrawn only for a
	# cut: not before heartbeat_timeout - heartbeat_interval into the first
	# one, and never after the link has been back longer than a heartbeat
	# timeout plus TCP's retransmission delay (a segment lost at the end of
	# a cut is resent up to ~1.5 s after it); and it is not kept withdrawn
	# longer than a reconnection takes once the link is back.
	my $reconnect = $T + $lab->hb_connect_interval + $lab->hb_connect_timeout + 0.5;
	my ($stale_up, $early_down, $spurious_down, $stale_down, $max_up_in_cut) = (0, 0, 0, 0, 0);
	my $first_cut = $cuts[0][0];
	my $prev_rw = $p;
	for my $s (@samples)
	{
		my $into = defined $s->{cut_at} ? $s->{t} - $s->{cut_at} : undef;
		if ($s->{rw} eq $p && $s->{down})
		{
			$max_up_in_cut = $into if $into > $max_up_in_cut;
			$stale_up++ if $into > $T + 0.5;
		}
		$early_down++ if $s->{rw} eq '' && $s->{t_end} < $first_cut + $T - $lab->hb_interval - 0.3;
		$spurious_down++ if $s->{rw} eq '' && $prev_rw eq $p && !$s->{down} && $s->{t} - $s->{up_at} > $T + 1.5;
		$stale_down++ if $s->{rw} eq '' && !$s->{down} && defined $s->{up_at} && $s->{t} - $s->{up_at} > $reconnect;
		$prev_rw = $s->{rw};
	}
	is($stale_up, 0, sprintf('the primary was never offered more than heartbeat_timeout + 0.5 s into a cut '
		  . '(at most %.2f s)', $max_up_in_cut));
	is($early_down, 0, 'nor withdrawn sooner than heartbeat_timeout - heartbeat_interval into the first cut');
	is($spurious_down, 0, 'nor withdrawn with its link back for longer than heartbeat_timeout + 1.5 s');
	is($stale_down, 0, sprintf('nor kept withdrawn more than %.1f s after the link came back', $reconnect));
	my $st1 = $lab->ctl_status('c1');
	my $new_downs = $st1->{instances}{$p}{downs} - $st0->{instances}{$p}{downs};
	my $long = grep { $_->[1] - $_->[0] > $T + 0.5 } @cuts;
	ok($new_downs >= $long && $new_downs <= @cuts,
		sprintf('conmgr declared the primary down %d times: at least once per cut longer than heartbeat_timeout (%d),'
			  . ' at most once per cut (%d)', $new_downs, $long, scalar @cuts));
	is($st1->{instances}{$_}{downs}, $st0->{instances}{$_}{downs}, "standby $_: never declared down")
	  for $lab->standbys;
	fig('5 flapping: primary declared down (count)', $new_downs);
	fig('5 flapping: primary offered at most, into a cut (s)', $max_up_in_cut);

	# nothing leaked, nothing crashed
	ok($lab->wait_until(sub { ($lab->sessions_from($p, $a1) // -1) == 0 }, $T + 5),
		'no session from c1 left on the primary')
	  or diag($lab->psql($p, "SELECT pid, application_name, state, backend_start FROM pg_stat_activity WHERE client_addr = '$a1'"));
	ok($lab->poll_query_until($p, "SELECT count(*) FROM pgx_stat_watchdog WHERE conmgr_addr = '$a1'", 1, $T + 5),
		'the watchdog holds exactly one heartbeat session from c1')
	  or diag($lab->psql($p, 'SELECT * FROM pgx_stat_watchdog'));
	ok($lab->wait_until(sub { my $st = $lab->ctl_status('c1'); $st->{ok} && !@{ $st->{apps} } }, 10),
		'conmgr holds no application session') or diag($lab->ctl_status('c1')->{raw});
	is(role_pids(), $pids_before, 'same conmgr roles, watchdogs and postmasters: nothing crashed or restarted');
	unlike($lab->conmgr_log('c1'), qr/exited with|terminated by signal|PANIC|FATAL/i, 'conmgr logged no role exit');
	return;
}

return { keys => [5], name => '5 flapping link', run => \&scenario_flap };
