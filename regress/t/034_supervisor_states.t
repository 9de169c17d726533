# Test that the supervisor's shutdown goes through its states in order and
# logs each change at DEBUG1: smart (SIGTERM) and fast (SIGINT) shutdown,
# each from "running" through "waiting for roles to exit" and "waiting for
# the logger to exit" to "exit", and nothing logged at the default level.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use CmProc;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my @started;
END
{
	# Whatever happened, no conmgr this test started outlives it.
	kill 'KILL', @started if @started;
}

# The state changes conmgr logged, as "from -> to", in the order logged.
sub transitions
{
	my ($log) = @_;
	my @t;
	push @t, "$1 -> $2"
	  while $log =~ /supervisor state changed from "([^"]+)" to "([^"]+)"/g;
	return @t;
}

# Start conmgr, wait until it is ready, send it $sig, wait for its exit
# (within 60 s of its start); returns its stderr.
sub run_and_stop
{
	my ($sig, %conf) = @_;
	# No watchdog listens: the heartbeat role only retries, slowly.
	my $cm = conmgr_one(heartbeat_connect_interval => 3600, %conf);
	my $dir = $cm->cmdata;
	# Ready here means the heartbeat role runs too: waited for below.
	$cm->start(wait => 0);
	my $started_at = time();
	my $sup;
	my $ready = wait_until(
		sub {
			my $pidfile = -e "$dir/conmgr.pid" ? slurp_file("$dir/conmgr.pid") : "";
			($sup) = ($pidfile // '') =~ /^(\d+)\n.*\nready$/ms;
			return $sup && role_pid($dir, 'heartbeat 0 ');
		},
		30);
	ok($ready, "conmgr is ready (then $sig)") or diag($cm->log_content);
	push @started, $sup if $sup;
	kill $sig, $sup if $sup;
	my $gone = defined $cm->wait_exit($started_at + 60 - time());
	ok($gone, "conmgr exited after $sig") or diag('still running 60 s after its start');
	$cm->kill9 unless $gone;
	@started = ();
	return $cm->log_content;
}

# The line that closes the log pipe is written by the supervisor itself, so
# it may come out before lines the logger has still to pass on; the
# others keep their order (the last is written after the logger exited).
my $to_logger = 'waiting for roles to exit -> waiting for the logger to exit';

sub check_order
{
	my ($log, $mode, @want) = @_;
	my @got = transitions($log);
	is(scalar(grep { $_ eq $to_logger } @got), 1,
		"$mode: \"$to_logger\" logged once");
	is_deeply([ grep { $_ ne $to_logger } @got ], \@want,
		"$mode: every other state change, in order")
	  or diag($log);
}

my $log = run_and_stop('TERM', log_min_messages => 'DEBUG1');
check_order($log, 'smart shutdown',
	'starting -> running',
	'running -> smart shutdown',
	'smart shutdown -> waiting for roles to exit',
	'waiting for the logger to exit -> exit');
like($log, qr/conmgr stopped/, 'smart shutdown: conmgr says it stopped');

$log = run_and_stop('INT', log_min_messages => 'DEBUG1');
check_order($log, 'fast shutdown',
	'starting -> running',
	'running -> fast shutdown',
	'fast shutdown -> waiting for roles to exit',
	'waiting for the logger to exit -> exit');

$log = run_and_stop('TERM', log_min_messages => 'LOG');
is_deeply([ transitions($log) ], [], 'at LOG, no state change is logged');
like($log, qr/received smart shutdown request/, 'at LOG, the shutdown itself is');

done_testing();
