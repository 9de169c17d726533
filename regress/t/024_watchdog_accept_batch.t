# Test that the watchdog takes at most 32 new connections a wake-up: with
# the worker stopped, 100 connections wait in its listen queue; once it
# runs again, strace(1) shows no more than 32 successful accepts between
# two waits, and every one of the 100 is accepted in the end.  A burst of
# connections then cannot keep the worker from the sessions it already
# has for longer than 32 accepts take.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use IO::Socket::INET;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

skip_under_asan('the watchdog extension runs in the server, which is not built with the sanitizers');

plan skip_all => 'strace is not installed'
  unless system('sh', '-c', 'command -v strace >/dev/null') == 0;

my ($node, $wdport) = watchdog_node('wd_batch');
my $wd = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'watchdog'");
like($wd, qr/^\d+$/, 'the watchdog worker runs');

my $trace = "${PostgreSQL::Test::Utils::tmp_check}/watchdog.strace";
my $strace = IPC::Run::start(
	[ 'strace', '-q', '-p', $wd, '-e', 'trace=accept,accept4,epoll_wait,epoll_pwait', '-o', $trace ],
	'<', \undef, '>', \my $sout, '2>', \my $serr);
END { $strace->kill_kill if $strace; kill 'CONT', $wd if $wd; }
ok(wait_until(sub { -s $trace }, 10), 'strace is attached to the worker') or diag($serr);

# Stop the worker, queue 100 connections, let it go on.
kill 'STOP', $wd or die "SIGSTOP $wd: $!";
my @socks;
for (1 .. 100)
{
	push @socks, IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $wdport)
	  // die "connect $_: $!";
}
kill 'CONT', $wd or die "SIGCONT $wd: $!";

# Accepted: a successful accept4 in the trace (returns a descriptor).
sub accepts_so_far
{
	my $text = slurp_file($trace);
	return scalar(() = $text =~ /^accept4?\(.*\)\s+=\s+\d+/mg);
}
ok(wait_until(sub { accepts_so_far() >= 100 }, 20), 'all 100 queued connections were accepted')
  or diag('accepted: ' . accepts_so_far());
$strace->signal('INT');
$strace->finish;
undef $strace;

my ($run, $longest) = (0, 0);
for my $line (split /\n/, slurp_file($trace))
{
	if ($line =~ /^epoll_p?wait\(/)
	{
		$run = 0;
	}
	elsif ($line =~ /^accept4?\(.*\)\s+=\s+\d+/)
	{
		$run++;
		$longest = $run if $run > $longest;
	}
}
cmp_ok($longest, '<=', 32, 'at most 32 accepts between two waits') or diag("longest run: $longest");
cmp_ok($longest, '>=', 2, 'the worker took several connections a wake-up (the trace is read right)');

close $_ for @socks;
$node->stop;
done_testing();
