=pod

=head1 NAME

CmBench - the settings of `make bench`, checked in one place

=head1 DESCRIPTION

bad_settings() returns one message per environment setting of the
benchmarks that means nothing (none: all are usable).  bench.pl calls it
before it starts anything; regress/bench/run calls it before the fault
labs of figures 5, 10 and 11c, which take minutes:

    perl -I regress/lib -MCmBench -e 'CmBench::refuse_bad_settings()'

=cut

package CmBench;

use strict;
use warnings;

# The median of a list of numbers.
sub median
{
	my @v = sort { $a <=> $b } @_;
	return @v % 2 ? $v[ @v / 2 ] : ($v[ @v / 2 - 1 ] + $v[ @v / 2 ]) / 2;
}

sub bad_settings
{
	my @bad;
	for my $flag (qw(BENCH_QUICK BENCH_NETNS CM_KEEP_TMP))
	{
		push @bad, "$flag=$ENV{$flag}: must be 0 or 1" if defined $ENV{$flag} && $ENV{$flag} !~ /\A[01]\z/;
	}
	push @bad, "BENCH_FIGURES=$ENV{BENCH_FIGURES}: not a comma-separated list of figures 1 to 11"
	  if defined $ENV{BENCH_FIGURES} && $ENV{BENCH_FIGURES} !~ /\A(?:1[01]|[1-9])(?:,(?:1[01]|[1-9]))*\z/;
	return @bad;
}

# Prints each message on $fh (STDERR unless told) and exits with status 2
# if there is any.
sub refuse_bad_settings
{
	my ($fh) = @_;
	my @bad = bad_settings() or return;
	print { $fh // \*STDERR } "bench: $_\n" for @bad;
	exit 2;
}

=pod

lab_results($script, $file) opens the result file of a script that
measures figures as root in the fault lab (regress/bench/fault.pl,
patroni.pl, fwfault.pl), flushed at each line; lab_give_up($script,
$res, $why, $lab) ends such a script when the lab cannot run: an "error"
line, which bench.pl reports as "not measured (why)", the same on
standard error, the lab cleaned up, exit status 0 (the other figures go
on).

=cut

sub lab_results
{
	my ($script, $file) = @_;
	open(my $res, '>', $file) or die "$script: $file: $!\n";
	$res->autoflush(1);
	return $res;
}

sub lab_give_up
{
	my ($script, $res, $why, $lab) = @_;
	$why =~ s/\s+/ /g;
	print $res "error $why\n";
	print STDERR "$script: $why\n";
	$lab->cleanup if $lab;
	exit 0;
}

1;
