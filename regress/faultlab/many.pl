# Scenario 6: 200 applications on the primary when its link drops: 200
# errors; over the runs, the storm no longer than twice a kill -9
# control's.
package FaultLab::Many;

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time usleep);
use Time::Local qw(timegm);
use CmLab;
use FaultLab;

# What conmgr and the watchdog do is read from their logs and judged on
# its own: the declarations within heartbeat_timeout + 0.5 s, the 200
# down-notices sent, the 200 sessions signalled.  How fast 200 processes,
# and 200 exiting backends on the server, then get through their error
# paths is the machine's business: where a process start or exit costs
# milliseconds, it takes seconds whatever tells them.  So each run first
# measures the same two storms with no heartbeat in them:
# conmgr on c1 is killed (-9), the kernel ends the 200 conmgr sockets (each
# application fails) and the watchdog sees its heartbeat session end (the
# terminator ends the 200 sessions), as in scenario 4.  The storms share
# the processors, and how one spreads depends on when the other starts, so
# only the whole is compared: the cut's last failure or session end, from
# the declarations, against the control's from the kill, the median of the
# runs within twice the controls' median + 0.5 s (storms_against_controls,
# after the runs): one run's storm against one control varies too much
# with the load around it to be judged alone.  A pg_terminate_backend()
# control would not do either: it makes the applications fail one by one
# behind their backends' exits.  See docs/faultlab.md.

# What application $d/$k has written so far ('' before it has begun).
sub app_out
{
	my ($d, $k) = @_;
	open(my $f, '<', "$d/$k") or return '';
	local $/;
	return scalar(<$f>) // '';
}

# $n applications on c1 through conmgr, blocked in pg_sleep(60), each its
# own process writing to $d/K ('block-hold': once it has printed its
# result the process waits to be killed, so the applications are not
# timed against each other's exits).  True once all run.
sub start_many
{
	my ($n, $d, $name) = @_;
	my $p = $lab->primary;
	my $a1 = $lab->addr('c1', $p);
	mkdir $d or die "$d: $!";
	my $ci = $lab->conninfo('c1', 'read-write', application_name => $name);
	for my $k (1 .. $n)
	{
		$lab->spawn_file('c1', [ $lab->cmapp, 'block-hold', $ci, 'SELECT pg_sleep(60)' ], "$d/$k");
		usleep(15_000);
	}
	my $ok = $lab->wait_until(sub {
		(grep { app_out($d, $_) =~ /^running/m } 1 .. $n) == $n
		  && ($lab->sessions_from($p, $a1) // 0) == $n;
	}, 90);
	diag('running: ' . scalar(grep { app_out($d, $_) =~ /^running/m } 1 .. $n)) unless $ok;
	return $ok;
}

# Waits (up to $wait s) for the $n applications' results and the end of
# their sessions; returns { t => [sorted result times], out => [outputs],
# disc => [sorted session end times] }, times from $t0.
sub collect_many
{
	my ($n, $d, $t0, $pos, $wait) = @_;
	my $p = $lab->primary;
	my $a1 = $lab->addr('c1', $p);
	my (%done, $ended);
	my $deadline = time() + $wait;
	while (time() < $deadline && (keys(%done) < $n || !$ended))
	{
		for my $k (grep { !$done{$_} } 1 .. $n)
		{
			my $out = app_out($d, $k);
			next unless $out =~ /^result /m;
			# when the line was written: the file's modification time
			$done{$k} = { t => (Time::HiRes::stat("$d/$k"))[9] - $t0, out => $out };
		}
		# from the server's log, not a query: a psql every 20 ms would be
		# one more process competing with the storm being timed
		$ended ||= (grep { $_->{host} eq $a1 } $lab->disconnections($p, $pos)) >= $n;
		usleep(20_000);
	}
	my @disc = $ended ? ended($p, $pos, $a1, $n) : ();
	return {
		t => [ sort { $a <=> $b } map { $_->{t} } values %done ],
		out => [ map { $_->{out} } values %done ],
		disc => [ sort { $a <=> $b } map { $_->{t} - $t0 } @disc ] };
}

# Where the time went after $t0, from the logs (times from $t0): conmgr's
# heartbeat child declaring the primary down (down) and the listener's
# line once it has sent its down-notices (notice, with their count
# notified), from conmgr.log from byte $cpos; the watchdog losing the
# heartbeat session (lost) and the terminator's lines, which it writes once
# it has signalled them all (term: their times), from the primary's log
# from byte $pos.  Also a line saying all that (text).
sub timeline
{
	my ($t0, $cpos, $pos) = @_;
	my $p = $lab->primary;
	my %r = (term => []);
	my $utc = qr/^(\d+)-(\d+)-(\d+) (\d+):(\d+):(\d+)\.(\d+) UTC /;
	for my $l (split /\n/, $lab->conmgr_log('c1', $cpos))
	{
		next unless $l =~ /$utc.*(?: at \S+ (is down):|down-notice for instance \d+ sent to (\d+) \S+ sessions? in ([\d.]+) ms)/;
		my $t = timegm($6, $5, $4, $3, $2 - 1, $1) + $7 / 1000 - $t0;
		if (defined $8) { $r{down} //= $t }
		else { $r{notice} //= $t; $r{notified} //= $9; $r{pass_ms} //= $10 }
	}
	if (open(my $f, '<', $lab->sdir($p) . '/log'))
	{
		seek($f, $pos, 0);
		while (my $l = <$f>)
		{
			$r{lost} //= $1 - $t0 if $l =~ /^(\d+\.\d+) .*watchdog: lost heartbeat session/;
			push @{ $r{term} }, $1 - $t0 if $l =~ /^(\d+\.\d+) .*watchdog terminator: terminating/;
		}
		close $f;
	}
	$r{text} = sprintf('conmgr declared down %s s, its notices sent %s s (%s, the pass %s ms); the watchdog lost the session %s s,'
		  . ' the terminator signalled %d by %s s (last line %s s)',
		f3($r{down}), f3($r{notice}), $r{notified} // 0, $r{pass_ms} // '-', f3($r{lost}),
		scalar @{ $r{term} }, f3($r{term}[0]), f3($r{term}[-1]));
	return \%r;
}

# How long both storms took from what started them to the last of the
# applications failing and the sessions ending: from $app0 for the
# applications, from $ses0 for the sessions; undef unless all $n of each.
my @many_storms;	# [ the cut's storm, the control's ] of each run of scenario 6

sub storm
{
	my ($r, $n, $app0, $ses0) = @_;
	return undef unless @{ $r->{t} } == $n && @{ $r->{disc} } == $n && defined $app0 && defined $ses0;
	my ($apps, $sessions) = ($r->{t}[-1] - $app0, $r->{disc}[-1] - $ses0);
	return $apps > $sessions ? $apps : $sessions;
}

sub scenario_many
{
	my ($i) = @_;
	my $n = $ENV{CM_FAULT_APPS} // 200;
	my $p = $lab->primary;
	my $d = $lab->dir . "/many$i";

	# the control: the same storms, with no heartbeat in them
	ok(start_many($n, "$d-control", 'lab_control'), "control: $n applications blocked in pg_sleep(60)");
	my $pos = $lab->log_pos($p);
	my $cpos = length($lab->conmgr_log('c1'));
	my $t0 = $lab->kill_conmgr('c1');
	my $c = collect_many($n, "$d-control", $t0, $pos, 30);
	my $ctl = timeline($t0, $cpos, $pos);
	$lab->kill_pids;
	diag("6 control: $ctl->{text}");
	diag(sprintf('6 control: applications failed from %s to %s s; sessions ended from %s to %s s',
		map { f3($_) } $c->{t}[0], $c->{t}[-1], $c->{disc}[0], $c->{disc}[-1]));
	# the kill is the instant both sides learn of it
	my $c_storm = storm($c, $n, 0, 0);
	my $c_sig = @{ $ctl->{term} } && defined $ctl->{lost} ? $ctl->{term}[0] - $ctl->{lost} : undef;
	ok(defined $c_storm && defined $c_sig,
		sprintf('control, conmgr killed: all %d failed (%d), their sessions ended (%d), the terminator signalled them (%d)'
			  . ' in %s s; all over %s s after the kill',
			$n, scalar @{ $c->{t} }, scalar @{ $c->{disc} }, scalar @{ $ctl->{term} }, f3($c_sig), f3($c_storm)));
	$lab->start_conmgr('c1', complete => 1);
	ok($lab->wait_routable('c1'), 'conmgr restarted and routes to every instance');

	ok(start_many($n, $d, 'lab_many'), "$n applications blocked in pg_sleep(60) on the primary, each its own process");
	$pos = $lab->log_pos($p);
	$cpos = length($lab->conmgr_log('c1'));
	$t0 = $lab->cut("c1-$p");
	my $r = collect_many($n, $d, $t0, $pos, $T + 10);
	my $tl = timeline($t0, $cpos, $pos);
	my @t = @{ $r->{t} };
	my @disc = @{ $r->{disc} };
	diag("6 cut: $tl->{text}");
	diag(sprintf('6 cut: applications failed from %s to %s s; sessions ended from %s to %s s',
		map { f3($_) } $t[0], $t[-1], $disc[0], $disc[-1]));
	my $bad = grep { !/^result status=PGRES_FATAL_ERROR .*connstatus=BAD .*server closed the connection unexpectedly/m }
	  @{ $r->{out} };
	is(scalar(@t), $n, "all $n applications got an error: 0 missed");
	is($bad, 0, 'each one libpq\'s connection-lost error');
	is(scalar(@disc), $n, "the primary logged the end of the $n sessions");

	# what conmgr and the watchdog own: detection, notices, signals
	ok(defined $tl->{down} && $tl->{down} <= $T + 0.5,
		sprintf('conmgr declared the primary down within heartbeat_timeout + 0.5 s: %s s', f3($tl->{down})));
	is($tl->{notified} // 0, $n, sprintf('its listener sent the %d down-notices in one pass (%s s)', $n, f3($tl->{notice})));
	ok(defined $tl->{lost} && $tl->{lost} <= $T + 0.5,
		sprintf('the watchdog lost the heartbeat session within heartbeat_timeout + 0.5 s: %s s', f3($tl->{lost})));
	my $sig = @{ $tl->{term} } && defined $tl->{lost} ? $tl->{term}[0] - $tl->{lost} : undef;
	ok(@{ $tl->{term} } == $n && defined $sig && defined $c_sig && $sig <= $c_sig + 0.5,
		sprintf('the terminator signalled the %d sessions (%d) %s s after the loss, within the control\'s %s s + 0.5 s',
			$n, scalar @{ $tl->{term} }, f3($sig), f3($c_sig)));

	# What is the machine's: getting 200 applications through their error
	# paths and 200 backends through their exits, on the same 2 processors,
	# is judged over the runs, after the last (below): one run's storm
	# against one control varies too much on a shared machine.
	my $storm = storm($r, $n, $tl->{down}, $tl->{lost});
	push @many_storms, [ $storm, $c_storm ];
	fig("6 $n applications: conmgr declares down (s)", $tl->{down});
	fig("6 $n applications: $n notices sent (s)", $tl->{notice});
	fig("6 $n applications: first fails (s)", $t[0]);
	fig("6 $n applications: last fails (s)", $t[-1]);
	fig("6 $n applications: missed (count)", $n - @t);
	fig("6 $n applications: terminator ends all sessions (s)", @disc ? $disc[-1] : undef);
	fig("6 $n applications: both storms over, from the declarations (s)", $storm);
	fig("6 control: both storms over, from the kill (s)", $c_storm);
	$lab->restore("c1-$p");
	$lab->kill_pids;	# block-hold: they wait for this, once timed
	ok($lab->wait_until(sub { join(',', $lab->resolve('c1', 'read-write')) eq $p }, 30),
		'link restored: conmgr routes to the primary again');
	return;
}


# Both storms, the applications failing and their sessions ending, from
# the declarations (from conmgr's for the applications, from the
# watchdog's for the sessions), against the control's from the kill: the
# median of the N runs within twice the controls' median + 0.5 s.  One
# run's pair is not enough: on a shared machine one storm of 400
# processes varies with the load around it by more than a second (figures
# in docs/faultlab.md).  A run whose storms were not all seen has failed
# already and counts here as not within.
sub storms_against_controls
{
	my @cut = map { $_->[0] } @many_storms;
	my @ctl = map { $_->[1] } @many_storms;
	my $all = @many_storms == $N && !grep { !defined } @cut, @ctl;
	my ($mcut, $mctl) = (median(grep { defined } @cut), median(grep { defined } @ctl));
	ok($all && $mcut <= 2 * $mctl + 0.5,
		sprintf('6: the last failure or session end after the declarations, median of %d runs %s s (%s),'
			  . ' within twice the controls\' median %s s (%s) + 0.5 s',
			$N, f3($mcut), join(' ', map { f3($_) } @cut), f3($mctl), join(' ', map { f3($_) } @ctl)));
	return;
}

return { keys => [6], name => '6 200 applications', run => \&scenario_many,
	after => \&storms_against_controls };
