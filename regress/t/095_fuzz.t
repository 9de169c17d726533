# Test the parser and the codec with their libFuzzer targets for a few
# seconds each (make fuzz runs them for 10 million executions): the seed
# corpora and past findings (regress/fuzz/findings) must pass, and a short
# fuzzing run must find nothing.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use IPC::Run;
use Test::More;

my $run = cm_top() . '/regress/fuzz/run';
for my $mode ('--replay', '5')
{
	my ($out, $err) = ('', '');
	IPC::Run::run([ $run, $mode ], '<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(300));
	is($? >> 8, 0, "regress/fuzz/run $mode: no crash") or diag("$out$err");
	like($out, qr/^fuzz: 3 passed, 0 failed$/m, "$mode: the three targets passed");
	note($out);
}
done_testing();
