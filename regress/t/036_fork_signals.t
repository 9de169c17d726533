# Test that a stop signal sent to a role the supervisor has just forked is
# not lost: the role still ends, by its own handler.  Between fork() and
# the moment a role has installed its handlers it must not run the
# supervisor's (which would set a flag in the role's copy of the
# supervisor's memory and write to a pipe the role has closed).
#
# The window is widened deterministically: conmgr runs under strace, which
# holds every rt_sigaction() system call for a second before it runs, so a
# new role spends seconds between fork() and its own SIGTERM handler.  The
# test sends SIGTERM to the new heartbeat role while its ps title (set
# before the role installs its handlers) is not yet there, and checks that
# it exits at once and says so (exit code 0: not restarted).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use CmProc;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

# No watchdog listens there: the heartbeat role only retries.
my $wdport = PostgreSQL::Test::Cluster::get_free_port();
my $cm = conmgr_one(watchdog_port0 => $wdport, heartbeat_connect_interval => 1);
my $dir = $cm->cmdata;
$cm->start(
	wait => 0,
	prefix => [
		strace_env(), 'strace', '-f', '-qq', '-o', '/dev/null', '-e', 'trace=rt_sigaction',
		'-e', 'inject=rt_sigaction:delay_enter=1000000'
	]);

my $sup;
my @kids;
END
{
	# Whatever happened, nothing this test started outlives it.
	kill 'KILL', $sup, @kids if $sup;
}

ok(wait_until(sub { $sup = conmgr_traced($dir) }, 60), 'conmgr runs under strace');
ok(wait_until(sub { @kids = proc_children($sup); @kids >= 3 }, 90),
	'the supervisor forked its three roles')
  or diag("children: @kids\n" . $cm->log_content);
my $hb = $kids[-1];    # forked last: logger, listener, then heartbeat 0
my $title = proc_cmdline($hb);
unlike($title, qr/conmgr: heartbeat/,
	"pid $hb has no title yet: it has not installed its handlers (still in the window)");
note("status of $hb before SIGTERM:\n" . join('', grep { /^Sig(Blk|Cgt)/ } proc_status($hb)));
kill 'TERM', $hb;
my $sent = time();

my $gone = wait_until(sub { !proc_alive($hb) }, 40);
ok($gone, 'the new role ended on the SIGTERM sent in the window')
  or diag('still running as "' . proc_cmdline($hb) . '"');
note(sprintf('it ended %.1f s after the signal (each rt_sigaction held 1 s)', $gone - $sent)) if $gone;
ok($cm->wait_for_log(qr/heartbeat 0 127\.0\.0\.1:$wdport \(pid $hb\) exited$/m, 0, 30),
	'by its own handler: exit code 0, as for any SIGTERM')
  or diag($cm->log_content);
unlike($cm->log_content, qr/\(pid $hb\) (was terminated|exited with code)/, 'not killed by the signal, no error');

kill 'INT', $sup;
ok(defined $cm->wait_exit(60), 'conmgr stops') or $cm->kill9;
like($cm->log_content, qr/conmgr stopped/, 'cleanly');
done_testing();
