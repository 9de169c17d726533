#!/usr/bin/perl
# listener_instr.pl — the listener's instructions per resolve, counted, for
# two builds of conmgr side by side: figure 8a's cost (docs/benchmarks.md)
# without the timing noise of a shared machine.
#
#	 regress/bench/listener_instr.pl OLD_TREE NEW_TREE
#
# Each TREE is a built source tree (build/bin/conmgr, and the load tools
# build/regress/tools/cmresolve and build/bench/cmload, which speak that
# tree's version of the application protocol).  Run as an unprivileged
# user (PostgreSQL refuses root), with an open-files limit above 1,100,
# where PostgreSQL::Test::Cluster may write (TESTDIR);
# regress/bench/listener-instr does all that for a git revision.
#
# It makes a primary and two standbys with the watchdog, as figure 8 does,
# and counts, for each tree's conmgr in front of them (the standbys listed
# first) with 1,000 application sessions attached, the listener's
# user-space instructions per resolve under callgrind, and then its system
# calls per resolve by name (strace -c, without valgrind): how, in
# regress/lib/CmResolveCount.pm, which figure 8a of make bench uses too.
#
# ROUNDS rounds (default 3) each run both trees, alternating which goes
# first; prints the median (min–max) per tree and the ratio new / old.
# Environment: ROUNDS, FEW (default 200), MANY (1200), SESSIONS (1000);
# CG_KEEP=DIR keeps each run's callgrind file of the listener in DIR (as
# TREENAME.N, the last round's), for callgrind_annotate.
use strict;
use warnings;

use Cwd ();
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTerminal qw($OUT);
use CmResolveCount;
use CmTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;

die "usage: listener_instr.pl OLD_TREE NEW_TREE\n" unless @ARGV == 2;
my %tree;
@tree{qw(old new)} = map { Cwd::realpath($_) // die "listener_instr: no tree $_\n" } @ARGV;
my $rounds = $ENV{ROUNDS} // 3;
my ($few, $many) = ($ENV{FEW} // 200, $ENV{MANY} // 1200);
my $sessions = $ENV{SESSIONS} // 1000;
die "listener_instr: MANY must exceed FEW\n" unless $many > $few;
-x $_ or die "listener_instr: $_ is missing (make; make -C regress/bench)\n"
  for map { ("$_/build/bin/conmgr", "$_/build/bench/cmload", "$_/build/regress/tools/cmresolve") } values %tree;

# The instance set of figure 8: a primary and two standbys with the watchdog.
my ($node, $wd) = CmTest::watchdog_cluster(p => 'p', s1 => 's1', s2 => 's2');
my @inst = map { [ $node->{$_}->port, $wd->{$_} ] } qw(s1 s2 p);
my %count = (instances => \@inst, sessions => $sessions);
my %per;
for my $r (1 .. $rounds)
{
	for my $side ($r % 2 ? qw(old new) : qw(new old))
	{
		push @{ $per{$side} }, CmResolveCount::instructions(%count, tree => $tree{$side},
			few => $few, many => $many, keep => $ENV{CG_KEEP});
		printf $OUT "round %d %s: %.0f instructions per resolve\n", $r, $side, $per{$side}[-1];
	}
}
my %sys = map { $_ => CmResolveCount::syscalls(%count, tree => $tree{$_}, n => $many) } qw(old new);

sub med
{
	my @s = sort { $a <=> $b } @_;
	return (($s[ $#s / 2 ] + $s[ @s / 2 ]) / 2, $s[0], $s[-1]);
}

my %m = map { $_ => [ med(@{ $per{$_} }) ] } qw(old new);
printf $OUT "the listener's user-space instructions per resolve (callgrind; %d rounds of "
  . "%d - %d resolves, %d sessions attached), median (min-max):\n", $rounds, $many, $few, $sessions;
printf $OUT "  %-4s %8.0f (%.0f-%.0f)  %s\n", $_, @{ $m{$_} }, $tree{$_} for qw(old new);
printf $OUT "  new / old = %.3f\n", $m{new}[0] / $m{old}[0];
printf $OUT "the listener's system calls per resolve (strace -c, %d resolves, no valgrind):\n", $many;
my %names = map { %{ $sys{$_} } } qw(old new);
for my $call (sort { ($sys{new}{$b} // 0) <=> ($sys{new}{$a} // 0) } keys %names)
{
	printf $OUT "  %-16s old %6.2f  new %6.2f\n", $call, $sys{old}{$call} // 0, $sys{new}{$call} // 0;
}
