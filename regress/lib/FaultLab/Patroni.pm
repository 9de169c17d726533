# The Patroni scenarios' common part: the lab's writers through conmgr,
# what landed where, and one run of a fault judged on them.  Each run
# checks that no write through conmgr lands on the old leader after the
# new leader's promotion (conmgr hears of it when it is asked for, before
# the new timeline is chosen), and that conmgr.conf and conmgr's pid
# never change.
package FaultLab::Patroni;

use strict;
use warnings;
use Digest::SHA ();
use Exporter 'import';
use Test::More;
use Time::HiRes qw(time usleep);
use Time::Local qw(timegm);
use CmLab;
use FaultLab;

our @EXPORT = qw(patroni_lab_start patroni_run patroni_recover rows_landed);

# Writers through conmgr (libpq-cm) on the client host while Patroni moves
# the primary: "loop" connects for each write (cmapp: a read-write connect,
# one INSERT of its client-side sequence number and start time, the
# server's address and clock by default), "session" is one psql session
# (libpq-cm injected) inserting every 50 ms. Afterwards each node is asked
# what landed on it: the row's address says which server took the write,
# its server time when. The promotion is the new leader's "selected new
# timeline ID" line; conmgr knows of it once its log says the new leader's
# attributes changed to primary (a standby's watchdog looks for its
# promotion every 20 ms, whatever watchdog.check_attr_interval says, so
# that and a heartbeat message later).

# watchdog.check_attr_interval of contrib/patroni (s)
our ($check_attr) = CmLab::slurp("$top/contrib/patroni/patroni.yml.in") =~ /^\s+watchdog\.check_attr_interval: (\d+)$/m;
$check_attr = defined $check_attr ? $check_attr / 1000 : die('contrib/patroni/patroni.yml.in: no watchdog.check_attr_interval');

# The loop writer: until $until or until $stop exists, one line per
# attempt in $file, as connect_loop() writes them: start, end,
# ok|fail|hung, the server's address and recovery flag (once connected,
# else -), then the sequence number.
sub writer_loop
{
	my ($file, $stop, $until) = @_;
	my $ci = $lab->conninfo('c1', 'read-write', connect_timeout => 2, application_name => 'lab_writer');
	return $lab->fork_loop(sub {
		open my $log, '>', $file or die $!;
		$log->autoflush(1);
		my $seq = 0;
		while (time() < $until && !-e $stop)
		{
			my $t = time();
			$seq++;
			my $sql = sprintf("INSERT INTO lab_writes (writer, seq, t_client) VALUES ('loop', %d, %.6f)", $seq, $t);
			my $out = `timeout -s KILL $hang '@{[ $lab->cmapp ]}' block '$ci' "$sql" 2>&1`;
			my $killed = ($? >> 8) == 137;
			my ($addr, $rec) = $out =~ /^connected host=\S+ hostaddr=(\S+) port=\d+ cmsocket=\w+ recovery=(\w)/m;
			my $res = $out =~ /^result status=PGRES_COMMAND_OK/m ? 'ok' : $killed ? 'hung' : 'fail';
			printf $log "%.6f %.6f %s %s %s %d\n", $t, time(), $res, $addr // '-', $rec // '-', $seq;
			usleep(20_000);
		}
	});
}

# The loop writer's attempts, as read_loop() reads them, with seq.
sub read_writer
{
	my ($file) = @_;
	return map { $_->{seq} = $_->{msg} + 0; $_ } read_loop($file);
}

# Every row of lab_writes on the nodes that answer, once (a replica holds
# its leader's rows too): { writer, seq, t_client, t_server, node }.
sub rows_landed
{
	my ($since, @nodes) = @_;
	my %name_of = map { $lab->addr($_, 'c1') => $_ } $lab->servers;
	my %seen;
	my @rows;
	for my $s (@nodes)
	{
		my $r = $lab->safe_psql($s, "SELECT writer, seq, t_client, t_server, host(addr) FROM lab_writes WHERE t_server > $since");
		for my $l (split /\n/, $r)
		{
			my ($w, $seq, $tc, $ts, $addr) = split /\|/, $l;
			next if $seen{"$w $seq $tc $ts"}++;
			push @rows, { writer => $w, seq => $seq, t_client => $tc, t_server => $ts, node => $name_of{$addr} // $addr };
		}
	}
	return @rows;
}

# When conmgr's log (from byte $cpos) first says $s is being promoted or
# has become a primary: epoch s.
sub conmgr_knows
{
	my ($s, $cpos) = @_;
	my $k = (grep { ($lab->servers)[$_] eq $s } 0 .. 1)[0];
	for my $l (split /\n/, $lab->conmgr_log('c1', $cpos))
	{
		next unless $l =~ /^(\d+)-(\d+)-(\d+) (\d+):(\d+):(\d+)\.(\d+) UTC .*instance $k at \S+ attributes changed: (?:primary|standby \(promotion requested\))/;
		return timegm($6, $5, $4, $3, $2 - 1, $1) + $7 / 1000;
	}
	return undef;
}

sub conf_sum
{
	return Digest::SHA::sha256_hex(CmLab::slurp($lab->cmdir('c1') . '/conmgr.conf'));
}
our ($p_conmgr_pid, $p_conf_sum);

# The writers of one run: the loop and the session, until $stop.
sub start_writers
{
	my ($i) = @_;
	my $d = $lab->dir;
	my %w = (file => "$d/p$i.$$.writes", stop => "$d/p$i.$$.stop", t0 => time());
	unlink $w{stop};
	$w{pid} = writer_loop($w{file}, $w{stop}, time() + 120);
	# one statement every 50 ms, for at most 2 minutes
	my @feed = ('perl', '-e', q{
		$| = 1;
		for my $n (1 .. 2400) {
			print "INSERT INTO lab_writes (writer, seq, t_client) VALUES ('session', $n, extract(epoch FROM clock_timestamp()));\n";
			select(undef, undef, undef, 0.05);
		}});
	$w{session} = $lab->spawn('c1', [ $psql, '-X', '-At', '-q', '-d',
			$lab->conninfo('c1', 'read-write', application_name => 'lab_session') ], preload => 1, feeder => \@feed,
		stamp => 1);
	my $old = $lab->primary;
	my %name_of = map { $lab->addr($_, 'c1') => $_ } $lab->servers;
	ok($lab->wait_until(sub {
		(grep { $_->{ok} && ($name_of{ $_->{addr} } // '') eq $old } read_writer($w{file})) >= 5
		  && ($lab->psql($old, "SELECT count(*) FROM lab_writes WHERE writer = 'session' AND t_server > $w{t0}") // 0) >= 5;
	}, 30), "both writers write on the leader $old through conmgr");
	return \%w;
}

sub stop_writers
{
	my ($w) = @_;
	open my $s, '>', $w->{stop} or die $!;
	close $s;
	$lab->wait_until(sub { !$lab->reap }, $hang + 5);
	$lab->kill_pids;
	$w->{session}->kill;
	return;
}

# Waits (up to $secs) until the loop has written on $new after $t_prom
# and for 2 s more, so that a write gone wrong after the switch has time
# to happen.
sub write_on
{
	my ($w, $new, $t_prom, $secs) = @_;
	my %name_of = map { $lab->addr($_, 'c1') => $_ } $lab->servers;
	my $first;
	$lab->wait_until(sub {
		($first) = grep { $_->{ok} && $_->{e} > $t_prom && ($name_of{ $_->{addr} } // '') eq $new } read_writer($w->{file});
		$first && time() > $first->{e} + 2;
	}, $secs);
	return $first;
}

# The checks and figures of one run: $w the writers, $old and $new the
# leaders, $t_prom the promotion, $t_cmd when the fault began (or the
# switchover command returned), @rows what landed where.
sub judge_writes
{
	my ($what, $w, $old, $new, $t_prom, $t_event, $event, $cpos, @rows) = @_;
	my %name_of = map { $lab->addr($_, 'c1') => $_ } $lab->servers;
	my @att = read_writer($w->{file});
	my $t_know = conmgr_knows($new, $cpos);
	ok(defined $t_know && $t_know - $t_prom <= 0.5,
		sprintf('conmgr learnt of the promotion within 0.5 s (from its request on, the watchdog watches for it): %s s',
			defined $t_know ? f3($t_know - $t_prom) : 'never'));
	my ($first) = grep { $_->{ok} && $_->{e} > $t_prom && ($name_of{ $_->{addr} } // '') eq $new } @att;
	ok($first, "a read-write connect through conmgr reached the new leader $new");
	my @wrong_conn = grep { $_->{addr} ne '-' && $_->{t} > ($t_know // $t_prom) && ($name_of{ $_->{addr} } // '') ne $new } @att;
	is(scalar @wrong_conn, 0, sprintf('0 of %d read-write connections made once conmgr knew reached another server than %s',
		scalar(grep { $_->{addr} ne '-' && $_->{t} > ($t_know // $t_prom) } @att), $new))
	  or diag(join('', map { sprintf("  +%.3f s seq %d on %s recovery=%s\n", $_->{t} - $t_prom, $_->{seq},
		$name_of{ $_->{addr} } // $_->{addr}, $_->{rec}) } @wrong_conn[0 .. ($#wrong_conn < 9 ? $#wrong_conn : 9)]));
	my @on_old = grep { $_->{node} eq $old && $_->{t_server} > $t_prom } @rows;
	is(scalar @on_old, 0, "0 writes through conmgr landed on the old leader $old after the promotion")
	  or diag(join('', map { sprintf("  %s %d on %s +%.3f s after the promotion\n", $_->{writer}, $_->{seq},
		$old, $_->{t_server} - $t_prom) } @on_old));
	my @loop_late = grep { $_->{writer} eq 'loop' && $_->{t_client} > ($t_know // $t_prom) } @on_old;
	is(scalar @loop_late, 0, "0 writes of connections made once conmgr knew landed on the old leader $old")
	  or diag(sprintf('%d of them, the last +%.3f s after the promotion', scalar @loop_late,
		$loop_late[-1]{t_server} - $t_prom));
	my @session_late = grep { $_->{writer} eq 'session' && $_->{t_server} > $t_prom + $check_attr + 1 } @on_old;
	is(scalar @session_late, 0, "0 writes of the attached session on the old leader $old later than "
		  . 'watchdog.check_attr_interval + 1 s after the promotion')
	  or diag(sprintf('%d of them, the last +%.3f s after the promotion', scalar @session_late,
		$session_late[-1]{t_server} - $t_prom));
	my ($old_last) = sort { $b <=> $a } map { $_->{t_server} } grep { $_->{node} eq $old } @rows;
	my $n_new = grep { $_->{node} eq $new && $_->{t_server} > $t_prom } @rows;
	note(sprintf('%s: writes landed: %d on %s (the last %s s from the promotion), %d on %s after the promotion; '
		  . 'the loop made %d attempts, %d failed', $what, scalar(grep { $_->{node} eq $old } @rows), $old,
		defined $old_last ? f3($old_last - $t_prom) : '-', $n_new, $new, scalar @att, scalar(grep { !$_->{ok} } @att)));
	is($lab->conmgr_pid('c1'), $p_conmgr_pid, 'conmgr never restarted (same pid)');
	ok(kill(0, $p_conmgr_pid), 'conmgr is running');
	is(conf_sum(), $p_conf_sum, 'conmgr.conf untouched (same SHA-256)');
	fig("$what: promotion after $event (s)", $t_prom - $t_event);
	fig("$what: conmgr knows of the promotion (s)", defined $t_know ? $t_know - $t_prom : undef);
	fig("$what: promotion to first read-write connect through conmgr (s)", $first ? $first->{e} - $t_prom : undef);
	fig("$what: writes on the old leader after the promotion (count)", scalar @on_old);
	fig("$what: failed write attempts (count)", scalar(grep { !$_->{ok} } @att));
	return;
}

# One run: the writers on the leader; the fault ($o{fault}->($old, $new),
# which returns when it began); the promotion; writes on the new leader
# for 2 s more ($o{during}->($old) then); the writers stopped; what landed
# where ($o{rows}->($old, $new, $since)), judged. Returns the first
# read-write connect on the new leader (an attempt of the loop writer).
sub patroni_run
{
	my ($i, $what, $event, %o) = @_;
	my $old = $lab->primary;
	my ($new) = $lab->standbys;
	my ($pos, $cpos) = ($lab->log_pos($new), length($lab->conmgr_log('c1')));
	my $w = start_writers($i);
	my $t_event = $o{fault}->($old, $new);
	my %tm = $lab->patroni_timing;
	my $t_prom;
	ok($lab->wait_until(sub { $t_prom = $lab->promoted_at($new, $pos) }, $tm{ttl} + 20), "$new promoted")
	  or diag($lab->patroni_report($new));
	$t_prom //= time();
	my $first = write_on($w, $new, $t_prom, 20);
	$o{during}->($old) if $o{during};
	stop_writers($w);
	$lab->{primary} = $new;
	judge_writes($what, $w, $old, $new, $t_prom, $t_event, $event, $cpos, $o{rows}->($old, $new, $w->{t0}));
	return $first;
}

# After a run that died: writers stopped, Patroni thawed, the node that is
# not the leader made a replica again.
sub patroni_recover
{
	my ($why) = @_;
	diag("recovering after: $why");
	eval {
		$lab->stop_procs;
		$lab->kill_pids;
		$lab->patroni_thaw($_) for $lab->servers;
		$lab->restore(keys %{ $lab->{links} });
		my $l;
		$lab->wait_until(sub { $l = $lab->leader }, 60) or die "no Patroni leader\n";
		$lab->{primary} = $l;
		$lab->rejoin($_) for $lab->standbys;
		die "conmgr is gone\n" unless kill(0, $lab->conmgr_pid('c1') // 0);
		$lab->wait_routable('c1');
		1;
	} or give_up("the Patroni lab could not recover: $@");
	return;
}

# The Patroni lab, started in place of the other: conmgr's pid and its
# conmgr.conf's checksum, which no run may change.
sub patroni_lab_start
{
	if ($lab)
	{
		lab_retries();
		$lab->cleanup;
	}
	start_lab(patroni => 1);
	($p_conmgr_pid, $p_conf_sum) = ($lab->conmgr_pid('c1'), conf_sum());
	return;
}

1;
