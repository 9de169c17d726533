#!/usr/bin/perl
# fault.pl — figure 5 of `make bench`: the delay of the error after the
# link to the primary is black-holed in the middle of a query, through
# conmgr and with plain libpq's best TCP settings, on the same cut.
#
#   regress/bench/fault.pl RESULT_FILE
#
# Run as root by regress/bench/run, before bench.pl: it needs the fault lab
# (regress/lib/CmLab.pm: servers in network namespaces behind links that
# drop every packet when cut).  Each round starts two copies of the same
# plain libpq program (build/bench/pqtiming block, linked with -lpq only)
# in `SELECT pg_sleep(60)` on the primary: one through conmgr with
# LD_PRELOAD=libpq-cm.so.1, one straight to the primary with keepalives
# from 1 s of idleness every second and tcp_user_timeout =
# heartbeat_timeout (the same nominal detection time); then cuts the
# link and takes, for each, the time from the cut to PQexec's error.
#
# RESULT_FILE gets "round I cm=SECONDS tcp=SECONDS" lines, a "timeout T"
# line, or "error MESSAGE" when the lab could not run.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmBench;
use Time::HiRes qw(time usleep);

my $result = shift // die "usage: fault.pl RESULT_FILE\n";
my $top = "$FindBin::RealBin/../..";
my $pqtiming = "$top/build/bench/pqtiming";
my $rounds = $ENV{BENCH_QUICK} ? 2 : 5;
my ($hb_interval, $hb_timeout) = (1, 3);

my $res = CmBench::lab_results('fault.pl', $result);

sub give_up
{
	CmBench::lab_give_up('fault.pl', $res, $_[0]);
	return;
}

give_up('needs root') if $> != 0;
give_up("$pqtiming is missing") unless -x $pqtiming;
eval { require CmLab; 1 } or give_up("no fault lab (regress/lib/CmLab.pm): $@");

my $lab = CmLab->new(top => $top, hb_interval => $hb_interval, hb_timeout => $hb_timeout);
eval { $lab->start; 1 } or give_up("the fault lab did not start: $@");
print $res "timeout $hb_timeout\n";

my %best_tcp = (keepalives => 1, keepalives_idle => 1, keepalives_interval => 1,
	keepalives_count => $hb_timeout - 1, tcp_user_timeout => $hb_timeout * 1000);

for my $r (1 .. $rounds)
{
	my $p = $lab->primary;
	my %app = (
		cm => $lab->spawn('c1', [ $pqtiming, 'block',
				$lab->conninfo('c1', 'read-write', application_name => 'bench_cm'), 'SELECT pg_sleep(60)' ],
			preload => 1),
		tcp => $lab->spawn('c1', [ $pqtiming, 'block',
				$lab->direct('c1', $p, %best_tcp, application_name => 'bench_tcp'), 'SELECT pg_sleep(60)' ]));
	# the cut at a random point between two heartbeats
	my $delay = $lab->cut_delays(\%app, $p, "c1-$p", $hb_timeout + 30)
	  // give_up('the two applications did not start: ' . join(' | ', map { $_->all } values %app));
	my %delay = %$delay;
	printf $res "round %d cm=%s tcp=%s\n", $r, map { defined $_ ? sprintf('%.4f', $_) : 'none' } @delay{qw(cm tcp)};
	printf STDERR "fault.pl: round %d: conmgr %.3f s, tcp %.3f s after the cut\n", $r, $delay{cm} // -1,
	  $delay{tcp} // -1;
	$lab->restore("c1-$p");
	$_->kill for values %app;
	$lab->stop_procs;
	eval { $lab->wait_routable('c1', 60); 1 } or give_up("conmgr did not route again: $@");
}
$lab->cleanup;
close $res;
