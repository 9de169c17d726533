# Test that a conmgr starting while another stops cannot end up running
# with a pid file nobody sees, beside a second conmgr.  The stopping conmgr
# removes CMDATA/conmgr.pid while it still holds the lock (the only safe
# order), so a start that opened the file just before, and gets the lock
# once the old conmgr has exited, holds the lock of a removed file: it must
# notice and take the file at the path instead.
#
# The race is made deterministic with strace: the starting conmgr's
# flock() is held 8 s before it runs, while the test stops the running
# conmgr.  Then: the new conmgr must run with a pid file at the path that
# names it, and a third start must be refused as "another conmgr".
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use CmProc;
use CmTest::Conmgr;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $first = conmgr_one();
my $dir = $first->cmdata;
my $pidfile = "$dir/conmgr.pid";
my $hold_s = 8;

# Three conmgrs started in the same directory, each with its own log.
my %run = (old => $first,
	map { $_ => CmTest::Conmgr->new($_, cmdata => $dir, port => $first->port) } qw(new third));
sub start_conmgr
{
	my ($name, @prefix) = @_;
	$run{$name}->start(wait => 0, prefix => \@prefix);
	return $run{$name};
}

sub log_of
{
	my ($name) = @_;
	return $run{$name}->log_content;
}

sub supervisors
{
	return grep { proc_cmdline($_) =~ /^conmgr: supervisor -D \Q$dir\E$/ }
	  map { m{/proc/(\d+)/} } glob('/proc/[0-9]*/stat');
}

sub pidfile_pid
{
	open(my $f, '<', $pidfile) or return 0;
	my ($pid) = (<$f> // '') =~ /^(\d+)/;
	return $pid // 0;
}

END
{
	# Nothing this test started outlives it, whatever happened.
	kill 'KILL', supervisors();
}

# 1. A conmgr runs.
start_conmgr('old');
ok(wait_until(sub { log_of('old') =~ /conmgr ready/ }, 30), 'a conmgr runs');
my $old = pidfile_pid();
ok($old, "its pid file names it ($old)");

# 2. A second start opens the pid file and is held before flock().
start_conmgr('new', strace_env(), 'strace', '-qq', '-o', '/dev/null', '-e', 'trace=flock',
	'-e', 'inject=flock:delay_enter=' . $hold_s * 1000000);
my ($new, $opened_at);
ok( wait_until(
		sub {
			$new = conmgr_traced($dir) or return 0;
			return grep { (readlink($_) // '') eq $pidfile } glob("/proc/$new/fd/*");
		},
		30),
	'a second conmgr has opened the pid file (its flock() is held)');
$opened_at = time();

# 3. The first one stops meanwhile, removing the file the second opened.
kill 'INT', $old;
ok(wait_until(sub { !proc_alive($old) }, 30), 'the first conmgr stops');
ok(!-e $pidfile, 'and removed its pid file');
my $held = time() - $opened_at;
ok($held < $hold_s, sprintf('all while the second was held before flock() (%.1f s of %d)', $held, $hold_s))
  or diag('the first conmgr took longer to stop than the window: raise $hold_s');
ok((grep { (readlink($_) // '') eq "$pidfile (deleted)" } glob("/proc/$new/fd/*")),
	'the second conmgr holds the removed file open: the race is set');

# 4. The second one gets its lock: it must run with the file at the path.
ok(wait_until(sub { log_of('new') =~ /conmgr ready|FATAL/ }, 4 * $hold_s + 30), 'the second conmgr starts')
  or diag(log_of('new'));
like(log_of('new'), qr/conmgr ready/, 'it is ready');
is(pidfile_pid(), $new, 'and CMDATA/conmgr.pid names it: cm_ctl can see and stop it');

# 5. A third start is refused.
my $third = start_conmgr('third');
ok(defined $third->wait_exit(20), 'a third start ends at once') or $third->kill9;
like(log_of('third'), qr/another conmgr \(pid $new\) is running/, 'refused: another conmgr runs');
my @sup = supervisors();
is(scalar @sup, 1, 'one supervisor runs in the directory') or diag("supervisors: @sup");

kill 'INT', $new;
ok(wait_until(sub { !proc_alive($new) }, 30), 'the second conmgr stops');
ok(!-e $pidfile, 'and removes its pid file');
$run{$_}->wait_exit(30) for qw(old new);
done_testing();
