# The fault lab's common part: the lab of the run, the run's settings,
# the figures, and the helpers that more than one scenario uses.
# regress/root/070_faultlab.t runs the scenarios, one file each in
# regress/faultlab/; docs/faultlab.md describes them.
package FaultLab;

use strict;
use warnings;
use Exporter 'import';
use FindBin;
use Test::More;
use Time::HiRes qw(time usleep);
use CmLab;

our @EXPORT = qw($lab $T $N $NP %only $top $psql $lost_re %best_tcp $best_server @feeder $hang
  give_up start_lab fig f3 num watch pg_app retransmitting ended recover scenario
  connect_loop read_loop median lab_retries report);

# The lab in use (a new one for the Patroni scenarios).
our $lab;

our $N = $ENV{CM_FAULT_N} // 3;
our $NP = $ENV{CM_FAULT_PATRONI_N} // $ENV{CM_FAULT_N} // 1;
our %only = map { $_ => 1 } split /[ ,]+/, ($ENV{CM_FAULT_ONLY} // '1,3,4,5,6,p1,p2,p3');
our $t_begin = time();
our $top = "$FindBin::RealBin/../..";
our $psql = CmLab::pgbin() . '/psql';


# Stop here with a failure (not a bail-out: other root tests still run).
sub give_up
{
	my ($why) = @_;
	fail($why);
	$lab->cleanup if $lab;
	done_testing();
	exit 1;
}

# heartbeat_timeout of conmgr in both labs (heartbeat_interval: 1 s)
our $T = 3;

# Starts a lab, or skips (no namespaces here) or gives up.
sub start_lab
{
	my (%o) = @_;
	my $t = time();
	$lab = CmLab->new(top => $top, hb_interval => 1, hb_timeout => $T, %o);
	eval { $lab->start; 1 } or do {
		my $err = $@;
		plan skip_all => "needs root with CAP_SYS_ADMIN/CAP_NET_ADMIN: $err" if $lab->{no_netns};
		give_up("the lab did not start: $err");
	};
	note(sprintf('lab up in %.1f s: %s; primary %s, standbys %s; heartbeat_interval %d s, heartbeat_timeout %d s',
		time() - $t, $lab->dir, $lab->primary, join(',', $lab->standbys), $lab->hb_interval, $lab->hb_timeout));
	return;
}

# --- figures ---------------------------------------------------------------
my (%fig, @fig_order);

sub fig
{
	my ($name, $v) = @_;
	push @fig_order, $name unless $fig{$name};
	push @{ $fig{$name} }, $v;
	note(defined $v ? sprintf('%s: %s', $name, num($v)) : "$name: not seen");
	return $v;
}

sub stats
{
	my (@v) = @_;
	my @d = sort { $a <=> $b } grep { defined } @v;
	my $miss = @v - @d;
	return 'not seen' unless @d;
	my $med = @d % 2 ? $d[ $#d / 2 ] : ($d[ @d / 2 - 1 ] + $d[ @d / 2 ]) / 2;
	return sprintf('%s / %s / %s%s', num($d[0]), num($med), num($d[-1]), $miss ? " ($miss not seen)" : '');
}

# Seconds to the millisecond, or '-' for not seen.
sub f3
{
	my ($v) = @_;
	return defined $v ? sprintf('%.3f', $v) : '-';
}

sub num
{
	my ($v) = @_;
	return $v == int($v) ? sprintf('%d', $v) : sprintf('%.3f', $v);
}

# When each process printed a line matching its pattern, or ended, from
# $t0: the time stamp of that line (processes started with stamp => 1),
# else when this loop saw it.
sub watch
{
	my ($procs, $t0, $secs, %o) = @_;
	my %when;
	my $deadline = time() + $secs;
	my $extra = $o{also} // sub { 1 };
	while (time() < $deadline)
	{
		my $now = time();
		for my $k (keys %$procs)
		{
			next if exists $when{$k};
			my ($p, $re) = @{ $procs->{$k} };
			$p->pump;
			if ($p->{stamped})
			{
				my $t = $p->stamp_of($re) // $p->stamp_of(undef);
				$when{$k} = $t - $t0 if defined $t;
			}
			elsif ($p->all =~ $re || !$p->{h}->pumpable)
			{
				$when{$k} = $now - $t0;
			}
		}
		my $more = $extra->($now);
		last if keys(%when) == keys(%$procs) && $more;
		usleep(5_000);
	}
	return \%when;
}

our $lost_re = qr/server closed the connection unexpectedly|connection to server .* lost|could not (?:send|receive) data|terminating connection|Connection timed out|no connection to the server/;

# Best plain-libpq TCP settings with the same nominal detection time as
# conmgr's heartbeat_timeout: keepalive probes from 1 s of idleness, every
# second, and TCP_USER_TIMEOUT for unacknowledged data (it also bounds the
# keepalive probing: with it set, Linux gives up when nothing came back
# for that long).
our %best_tcp = (keepalives => 1, keepalives_idle => 1, keepalives_interval => 1,
	keepalives_count => $T - 1, tcp_user_timeout => $T * 1000);
# The same on the server's end of these sessions, and the check that lets
# a backend busy in a query notice that its client's socket died.
our $best_server = join(' ', '-c tcp_keepalives_idle=1', '-c tcp_keepalives_interval=1',
	'-c tcp_keepalives_count=' . ($T - 1), '-c tcp_user_timeout=' . ($T * 1000),
	'-c client_connection_check_interval=1000');

# A COPY data source: 1000-byte rows at 8 MB/s for at most 60 s (the
# server's per-row trigger that discards them stays cheap; a faster or
# finer stream would keep both processors of a small machine busy and
# skew every timing).
our @feeder = ('perl', '-MTime::HiRes=time', '-e', q{
	$| = 1; my ($rate, $secs) = @ARGV; my $chunk = (('x' x 999) . "\n") x 64;
	my ($t0, $n) = (time, 0);
	while (time - $t0 < $secs) {
		print $chunk or exit 0; $n += length $chunk;
		my $ahead = $n / $rate - (time - $t0);
		select(undef, undef, undef, $ahead) if $ahead > 0;
	}}, 8_000_000, 60);

sub pg_app
{
	my ($host, $conninfo, $sql, %o) = @_;
	return $lab->spawn($host, [ $psql, '-X', '-At', '-d', $conninfo, '-c', $sql ], stamp => 1, %o);
}

# How many established TCP connections from $host to $addr, port 5432,
# have unacknowledged data that the kernel is retransmitting.
sub retransmitting
{
	my (%to) = @_;
	my $n = 0;
	for my $host (sort keys %to)
	{
		my ($rc, $out) = CmLab::run_cmd([ $lab->wrap($host, 0, 'ss', '-tinH', 'state', 'established', 'dst', $to{$host}) ]);
		for my $conn (split /\n(?=\S)/, $out)
		{
			$n++ if $conn =~ /:5432\b/ && $conn =~ /\bunacked:\d+/ && $conn =~ /\bretrans:\d+\/[1-9]/;
		}
	}
	return $n;
}

# The log_disconnections lines of sessions from $host on server $s since
# log position $pos, once there are $n (a backend leaves pg_stat_activity
# just before it writes that line) or after 5 s.
sub ended
{
	my ($s, $pos, $host, $n) = @_;
	my @d;
	$lab->wait_until(sub { @d = grep { $_->{host} eq $host } $lab->disconnections($s, $pos); @d >= $n }, 5);
	return @d;
}

sub recover
{
	my ($why) = @_;
	diag("recovering after: $why");
	eval {
		$lab->stop_procs;
		$lab->kill_pids;
		$lab->restore(grep { !$lab->{crashed}{ (split /-/)[0] } && !$lab->{crashed}{ (split /-/)[1] } }
			keys %{ $lab->{links} });
		# a crash without its promotion, or without the rebuild
		$lab->promote(($lab->standbys)[0]) if $lab->{crashed}{ $lab->primary };
		# (or a rebuild that failed half way)
		$lab->rebuild if %{ $lab->{crashed} // {} } || %{ $lab->{broken} // {} };
		$lab->start_conmgr('c1') unless $lab->conmgr_pid('c1') && kill(0, $lab->conmgr_pid('c1'));
		$lab->wait_routable('c1');
		1;
	} or give_up("the lab could not recover: $@");
	return;
}

# Runs a scenario $o{n} times (N unless told), each run a subtest; after a
# run that died, $o{recover} (recover() unless told) puts the lab back.
sub scenario
{
	my ($name, $sub, %o) = @_;
	my $n = $o{n} // $N;
	for my $i (1 .. $n)
	{
		my $ok = eval { subtest("$name, run $i/$n" => sub { $sub->($i) }); 1 };
		if (!$ok)
		{
			fail("$name, run $i: $@");
			($o{recover} // \&recover)->($@);
		}
	}
	return;
}

# A child that connects again and again until $until or until $stop
# exists, one line per attempt in $file: start, end, ok|fail|hung, the
# server's address and recovery flag. An attempt still running after
# $hang s is killed and recorded as hung (a query in flight on the primary
# when it died waits for an answer that never comes, unless something
# declares the connection lost).
our $hang = 15;

sub connect_loop
{
	my ($file, $stop, $until, @cmd) = @_;
	return $lab->fork_loop(sub {
		open my $log, '>', $file or die $!;
		$log->autoflush(1);
		while (time() < $until && !-e $stop)
		{
			my $t = time();
			my $out = `timeout -s KILL $hang @{[ join ' ', map { "'$_'" } @cmd ]} 2>&1`;
			my $killed = ($? >> 8) == 137;
			my $e = time();
			if ($out =~ /^connected host=\S+ hostaddr=(\S+) port=\d+ cmsocket=\w+ recovery=(\w)/m
				|| $out =~ /^(\d+\.\d+\.\d+\.\d+)\|(\w)$/m)
			{
				printf $log "%.6f %.6f ok %s %s\n", $t, $e, $1, $2;
			}
			else
			{
				$out =~ s/\s+/ /g;
				printf $log "%.6f %.6f %s - - %s\n", $t, $e, $killed ? 'hung' : 'fail', substr($out, 0, 300);
			}
			usleep(50_000);
		}
	});
}

sub read_loop
{
	my ($file) = @_;
	open my $f, '<', $file or return ();
	my @r;
	while (<$f>)
	{
		my ($t, $e, $res, $addr, $rec, $msg) = split ' ', $_, 6;
		push @r, { t => $t, e => $e, ok => $res eq 'ok', hung => $res eq 'hung', addr => $addr, rec => $rec,
			msg => $msg };
	}
	return @r;
}


sub median
{
	my @d = sort { $a <=> $b } @_;
	return undef unless @d;
	return @d % 2 ? $d[ $#d / 2 ] : ($d[ @d / 2 - 1 ] + $d[ @d / 2 ]) / 2;
}

# The set-up retries of the labs, for the end.
my %retries;

sub lab_retries
{
	$retries{$_} += $lab ? $lab->{$_} // 0 : 0 for qw(basebackup_retries restream_retries);
	return;
}

# The figures' summary (min / median / max of each over the runs), as
# a note, or a diag with CM_FAULT_SUMMARY, and into the file
# CM_FAULT_REPORT names; and what the labs retried.
sub report
{
	my $took = time() - $t_begin;
	my @ran = grep { $only{$_} } 1 .. 6;
	my @ran_p = $NP ? grep { $only{$_} } qw(p1 p2 p3) : ();
	my $summary = sprintf("fault lab, %s, %.0f s; figures min / median / max:\n",
		join(', ', (@ran ? "N=$N" : ()), (@ran_p ? "Patroni scenarios N=$NP" : ())), $took);
	$summary .= sprintf("  %-60s %s\n", $_, stats(@{ $fig{$_} })) for @fig_order;
	if ($ENV{CM_FAULT_SUMMARY})
	{
		diag($summary);
	}
	else
	{
		note($summary);
	}
	lab_retries();
	diag("the lab retried $retries{basebackup_retries} base backup(s) (the errors are above, '# [lab]')")
	  if $retries{basebackup_retries};
	diag("the lab made standbys again $retries{restream_retries} time(s): the primary was not streaming to them"
		  . " (the reasons are above, '# [lab]')")
	  if $retries{restream_retries};
	if (my $f = $ENV{CM_FAULT_REPORT})
	{
		open my $fh, '>', $f or die "$f: $!";
		print $fh $summary;
		close $fh;
	}
	return;
}

1;
