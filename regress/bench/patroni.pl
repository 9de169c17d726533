#!/usr/bin/perl
# patroni.pl — figure 10 of `make bench`: from a promotion by Patroni to
# the first read-write connection that reaches the new primary, through
# conmgr and through HAProxy, side by side in the same rounds.
#
#   regress/bench/patroni.pl RESULT_FILE
#
# Run as root by regress/bench/run, before bench.pl: it needs the fault
# lab's Patroni lab (regress/lib/CmLab.pm: two PostgreSQL 15 nodes with
# the watchdog under Patroni, etcd on a host of its own, conmgr on the
# client host, configured from contrib/patroni).  On the client host
# HAProxy (Debian's) runs as Patroni's documentation sets it up: TCP mode,
# each node checked with Patroni's REST API (`option httpchk GET
# /primary`, `inter 1s fall 3 rise 1`).  During each round two loops
# connect again and again, with the same program (psql, `SELECT
# host(inet_server_addr()), pg_is_in_recovery()`, connect_timeout 2 s):
# one through conmgr (libpq-cm injected, target_session_attrs=read-write),
# one through HAProxy.  Rounds alternate a switchover (`patronictl
# switchover`) and a failover (every link of the leader's host cut, every
# process on it killed, the replica promoted when the leader lock
# expires, the dead node cloned again afterwards).  The promotion is the
# new primary's "selected new timeline ID" log line; for each loop the
# figure is the end of its first attempt, after it, that reached the new
# primary and found it out of recovery.
#
# RESULT_FILE gets "round I KIND cm=SECONDS haproxy=SECONDS" lines (none:
# not seen within 30 s), a "settings ..." line, or "error MESSAGE" when
# the lab could not run.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmBench;
use Time::HiRes qw(time usleep);

my $result = shift // die "usage: patroni.pl RESULT_FILE\n";
my $top = "$FindBin::RealBin/../..";
my $rounds = $ENV{BENCH_QUICK} ? 2 : 10;
my ($hb_interval, $hb_timeout) = (1, 3);

my $res = CmBench::lab_results('patroni.pl', $result);

my $lab;

sub give_up
{
	CmBench::lab_give_up('patroni.pl', $res, $_[0], $lab);
	return;
}

give_up('needs root') if $> != 0;
eval { require CmLab; 1 } or give_up("no fault lab (regress/lib/CmLab.pm): $@");
my $psql = CmLab::pgbin() . '/psql';

$lab = CmLab->new(top => $top, patroni => 1, hb_interval => $hb_interval, hb_timeout => $hb_timeout);
eval { $lab->start; 1 } or give_up("the Patroni lab did not start: $@");
my $haport = eval { $lab->start_haproxy } // give_up("HAProxy did not start: $@");
my %tm = $lab->patroni_timing;
print $res "settings ttl=$tm{ttl} loop_wait=$tm{loop_wait} retry_timeout=$tm{retry_timeout}"
  . " heartbeat_interval=$hb_interval heartbeat_timeout=$hb_timeout\n";

my $sql = 'SELECT host(inet_server_addr()), pg_is_in_recovery()';
my %conninfo = (
	cm => $lab->conninfo('c1', 'read-write', connect_timeout => 2, application_name => 'bench_cm'),
	haproxy => "host=127.0.0.1 port=$haport dbname=postgres user=postgres connect_timeout=2"
	  . ' application_name=bench_haproxy');

# One loop: until $stop exists (at most 120 s), one line per attempt in
# $file: start, end, the server's address and recovery flag or "fail".
sub loop
{
	my ($side, $file, $stop) = @_;
	my @cmd = ($side eq 'cm' ? (CmTest::foreign_env(LD_PRELOAD => $lab->{preload})) : (), $psql, '-X', '-At',
		'-d', $conninfo{$side}, '-c', $sql);
	my $cmd = join(' ', 'timeout', '-s', 'KILL', 10, map { "'$_'" } @cmd);
	return $lab->fork_loop(sub {
		open my $log, '>', $file or die $!;
		$log->autoflush(1);
		my $until = time() + 120;
		while (time() < $until && !-e $stop)
		{
			my $t = time();
			my $out = `$cmd 2>&1`;
			my $e = time();
			printf $log "%.6f %.6f %s\n", $t, $e, $out =~ /^(\d+\.\d+\.\d+\.\d+\|[tf])$/m ? $1 : 'fail';
			usleep(20_000);
		}
	});
}

# The end of the first attempt in $file after $t that reached $addr out
# of recovery.
sub first_on
{
	my ($file, $t, $addr) = @_;
	open my $f, '<', $file or return undef;
	while (<$f>)
	{
		my ($s, $e, $what) = split ' ';
		return $e if $e > $t && $what eq "$addr|f";
	}
	return undef;
}

for my $r (1 .. $rounds)
{
	my $kind = $r % 2 ? 'switchover' : 'failover';
	my $old = $lab->primary;
	my ($new) = $lab->standbys;
	my $d = $lab->dir;
	my $stop = "$d/bench$r.stop";
	my %file = map { $_ => "$d/bench$r.$_" } qw(cm haproxy);
	loop($_, $file{$_}, $stop) for sort keys %file;
	my $warm = $lab->wait_until(sub {
		!grep { !defined first_on($file{$_}, 0, $lab->addr($old, 'c1')) } keys %file }, 30);
	give_up("round $r: the loops do not reach the primary $old") unless $warm;
	my $pos = $lab->log_pos($new);
	if ($kind eq 'switchover')
	{
		my ($rc, $out) = $lab->patronictl($new, 'switchover', '--leader', $old, '--candidate', $new, '--force');
		give_up("round $r: patronictl switchover failed: $out") if $rc != 0;
	}
	else
	{
		$lab->crash($old);
	}
	my $t_prom;
	$lab->wait_until(sub { $t_prom = $lab->promoted_at($new, $pos) }, $tm{ttl} + 20)
	  or give_up("round $r: $new was not promoted\n" . $lab->patroni_report($new));
	my $addr = $lab->addr($new, 'c1');
	my %first;
	$lab->wait_until(sub {
		$first{$_} //= first_on($file{$_}, $t_prom, $addr) for keys %file;
		return keys(%first) == 2 && !grep { !defined } values %first;
	}, 30);
	open my $s, '>', $stop or die $!;
	close $s;
	$lab->wait_until(sub { !$lab->reap }, 15);
	$lab->kill_pids;
	my %delay = map { $_ => defined $first{$_} ? sprintf('%.4f', $first{$_} - $t_prom) : 'none' } keys %file;
	print $res "round $r $kind cm=$delay{cm} haproxy=$delay{haproxy}\n";
	print STDERR "patroni.pl: round $r, $kind: conmgr $delay{cm} s, HAProxy $delay{haproxy} s after the promotion\n";
	$lab->{primary} = $new;
	eval {
		if ($kind eq 'switchover')
		{
			$lab->patroni_wait_replicas(60);
		}
		else
		{
			$lab->rejoin($old);
		}
		$lab->wait_routable('c1', 60);
		1;
	} or give_up("round $r: the old leader did not come back as a replica: $@");
}
$lab->cleanup;
close $res;
