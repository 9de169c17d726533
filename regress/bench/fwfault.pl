#!/usr/bin/perl
# fwfault.pl — figure 11c of `make bench`: the delay of the error after the
# link to the primary is black-holed in the middle of a query, for a
# client of conmgr's forward port and a client of HAProxy, on the same cut.
#
#   regress/bench/fwfault.pl RESULT_FILE
#
# Run as root by regress/bench/run, before bench.pl: it needs the fault lab
# (regress/lib/CmLab.pm: servers in network namespaces behind links that
# drop every packet when cut).  conmgr on the client host c1 has a forward
# port for read-write; HAProxy (Debian's) on c1 forwards a port of its own
# to the primary in TCP mode, with the health check that HAProxy set-ups
# for PostgreSQL use (a TCP connect every second, `fall 3`) and
# `on-marked-down shutdown-sessions`, so that a session is cut when its
# server is marked down.  Each round starts the same plain libpq program
# (build/bench/pqtiming block, no libpq-cm) twice in `SELECT pg_sleep(60)`
# on the primary, once through each port; then cuts the link from c1 to
# the primary and takes, for each, the time from the cut to PQexec's
# error.
#
# RESULT_FILE gets "round I fw=SECONDS haproxy=SECONDS" lines (none: no
# error within heartbeat_timeout + 30 s), a "settings ..." line, or "error
# MESSAGE" when the lab could not run.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmBench;
use Time::HiRes qw(time usleep);

my $result = shift // die "usage: fwfault.pl RESULT_FILE\n";
my $top = "$FindBin::RealBin/../..";
my $pqtiming = "$top/build/bench/pqtiming";
my $haproxy = '/usr/sbin/haproxy';
my $rounds = $ENV{BENCH_QUICK} ? 2 : 5;
my ($hb_interval, $hb_timeout) = (1, 3);
my ($inter, $fall) = (1, 3);

my $res = CmBench::lab_results('fwfault.pl', $result);

my $lab;

sub give_up
{
	CmBench::lab_give_up('fwfault.pl', $res, $_[0], $lab);
	return;
}

give_up('needs root') if $> != 0;
give_up("$pqtiming is missing") unless -x $pqtiming;
give_up("$haproxy is missing (tools/install-deps bench installs it)") unless -x $haproxy;
eval { require CmLab; 1 } or give_up("no fault lab (regress/lib/CmLab.pm): $@");

my $fwport = CmLab::free_port();
$lab = CmLab->new(top => $top, hb_interval => $hb_interval, hb_timeout => $hb_timeout,
	cm_conf => { c1 => "forward_ports = 'read-write=$fwport'\n" });
eval { $lab->start; 1 } or give_up("the fault lab did not start: $@");

# HAProxy on c1, in front of the primary only: the same instance as the
# forward port's.
my $p = $lab->primary;
my $haport = CmLab::free_port();
my $cfg = "$lab->{dir}/haproxy-fw.cfg";
CmLab::write_file($cfg, "global\n  maxconn 200\n\ndefaults\n  mode tcp\n  timeout connect 2s\n"
	  . "  timeout client 30m\n  timeout server 30m\n  timeout check 1s\n\nlisten pg\n"
	  . "  bind 127.0.0.1:$haport\n"
	  . "  default-server inter ${inter}s fall $fall rise 1 on-marked-down shutdown-sessions\n"
	  . "  server $p " . $lab->addr($p, 'c1') . ":5432 check\n");
$lab->start_daemon('haproxy', 'c1', 0, [ $haproxy, '-db', '-f', $cfg ], "$lab->{dir}/haproxy-fw.log");

my %ci = (
	fw => "host=127.0.0.1 port=$fwport dbname=postgres user=postgres application_name=bench_fw",
	haproxy => "host=127.0.0.1 port=$haport dbname=postgres user=postgres application_name=bench_haproxy");

# Both ports lead to the primary (HAProxy: once its check has passed).
sub wait_ports
{
	my ($secs) = @_;
	for my $k (sort keys %ci)
	{
		$lab->wait_until(sub {
			(CmLab::run_cmd([ $pqtiming, 'conn', 1, "$ci{$k} connect_timeout=2" ], timeout => 10))[0] == 0 }, $secs)
		  or give_up("no connection through the $k port:\n" . CmLab::slurp("$lab->{dir}/haproxy-fw.log")
			  . $lab->conmgr_log('c1'));
	}
	return;
}
wait_ports(60);
print $res "settings heartbeat_interval=$hb_interval heartbeat_timeout=$hb_timeout haproxy_inter=$inter"
  . " haproxy_fall=$fall\n";

for my $r (1 .. $rounds)
{
	my %app = map { $_ => $lab->spawn('c1', [ $pqtiming, 'block', $ci{$_}, 'SELECT pg_sleep(60)' ]) } keys %ci;
	# the cut at a random point between two heartbeats (and two health checks)
	my $delay = $lab->cut_delays(\%app, $p, "c1-$p", $hb_timeout + 30)
	  // give_up('the two applications did not start: ' . join(' | ', map { $_->all } values %app));
	my %delay = %$delay;
	printf $res "round %d fw=%s haproxy=%s\n", $r,
	  map { defined $_ ? sprintf('%.4f', $_) : 'none' } @delay{qw(fw haproxy)};
	printf STDERR "fwfault.pl: round %d: forward port %.3f s, HAProxy %.3f s after the cut\n", $r,
	  $delay{fw} // -1, $delay{haproxy} // -1;
	$lab->restore("c1-$p");
	$_->kill for values %app;
	$lab->stop_procs;
	eval { $lab->wait_routable('c1', 60); 1 } or give_up("conmgr did not route again: $@");
	wait_ports(60);
}
$lab->cleanup;
close $res;
