=pod

=head1 NAME

CmBench - the settings of `make bench`, checked in one place

=head1 DESCRIPTION

bad_settings() returns one message per environment setting of the
benchmarks that means nothing (none: all are usable).  bench.pl calls it
before it starts anything; regress/bench/run calls it before the fault
lab of figures 5 and 10, which takes minutes:

    perl -I regress/lib -MCmBench -e 'CmBench::refuse_bad_settings()'

=cut

package CmBench;

use strict;
use warnings;

sub bad_settings
{
	my @bad;
	for my $flag (qw(BENCH_QUICK BENCH_NETNS CM_KEEP_TMP))
	{
		push @bad, "$flag=$ENV{$flag}: must be 0 or 1" if defined $ENV{$flag} && $ENV{$flag} !~ /\A[01]\z/;
	}
	push @bad, "BENCH_FIGURES=$ENV{BENCH_FIGURES}: not a comma-separated list of figures 1 to 10"
	  if defined $ENV{BENCH_FIGURES} && $ENV{BENCH_FIGURES} !~ /\A(?:10|[1-9])(?:,(?:10|[1-9]))*\z/;
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

1;
