# The fault lab: servers in network namespaces behind links that are cut
# by dropping packets, conmgr and the applications on the client host (the
# root namespace), a second client host with its own conmgr, a third with
# plain-libpq applications; then a lab of its own under Patroni (two
# nodes, etcd on a host of its own, conmgr on the client host;
# contrib/patroni is its configuration).  regress/lib/CmLab.pm builds the
# labs, regress/lib/FaultLab.pm (and FaultLab/Patroni.pm) holds what the
# scenarios share, and each scenario is a file of regress/faultlab/ whose
# first lines say what it tests, run here in this order:
#
#   cut.pl (1 and 2), kill_conmgr.pl (4), flap.pl (5), many.pl (6),
#   failover.pl (3, last: it rebuilds the set after each run);
#   p1_switchover.pl, p2_crash.pl, p3_isolated.pl under Patroni.
#
# Each scenario runs CM_FAULT_N times (default 3; `make check-faults`: 20;
# make check's ASan pass: 1), the Patroni ones CM_FAULT_PATRONI_N times
# (default: CM_FAULT_N when set, else once; make check's ASan pass: 0, not
# at all), each run a subtest that
# prints its figures (prove -v shows them; a summary table at the end).
# CM_FAULT_ONLY=1,4,p1 runs some scenarios only (2 goes with 1).
# docs/faultlab.md explains the set-up and gives the figures.
# Runs as root only (namespaces, nftables): otherwise skipped.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use Test::More;
use Time::HiRes qw(time);

BEGIN
{
	plan skip_all => 'needs root' if $> != 0;
}
use FaultLab;
use FaultLab::Patroni;

# A scenario's file: what it tests (its first lines), its subs, and last
# its description: the CM_FAULT_ONLY keys it answers to, its name, its
# run (one run, its number as argument) and what follows all runs.
sub load_scenario
{
	my ($file) = @_;
	my $path = "$FindBin::RealBin/../faultlab/$file";
	my $sc = do $path;
	die "$path: $@" if $@;
	die "$path: $!" unless ref $sc;
	return $sc;
}

# The lab's scenarios, in this order: the failover last, since it
# rebuilds the set after each run.
my @lab_scenarios = map { load_scenario($_) } qw(cut.pl kill_conmgr.pl flap.pl many.pl failover.pl);
my @patroni_scenarios = map { load_scenario($_) } qw(p1_switchover.pl p2_crash.pl p3_isolated.pl);

start_lab() if grep { $only{$_} } 1 .. 6;
for my $sc (grep { my $s = $_; grep { $only{$_} } @{ $s->{keys} } } @lab_scenarios)
{
	scenario($sc->{name}, $sc->{run});
	$sc->{after}->() if $sc->{after};
}

my @p = grep { $only{ $_->{keys}[0] } } @patroni_scenarios;
note('the Patroni scenarios: not run (CM_FAULT_PATRONI_N=0)') if @p && !$NP;
if (@p && $NP)
{
	patroni_lab_start();
	for my $sc (@p)
	{
		my $t = time();
		scenario($sc->{name}, $sc->{run}, n => $NP, recover => \&patroni_recover);
		note(sprintf('%s: %d run(s) in %.1f s', $sc->{keys}[0], $NP, time() - $t));
	}
}

report();
$lab->cleanup if $lab;
done_testing();
