# Test that the forwarder spends no system call on a direction that has
# nothing to move: a query and its answer through a forward port cost it
# four splice() calls (client to pipe, pipe to server, and back), not a
# try at reading the other socket, which only says EAGAIN, on each.
# Counted by strace -c on the `conmgr: forwarder` process over pgbench
# with one client, whose query takes 2 ms, so that the answer is never
# there yet when the query has been passed on (strace slows the traced
# process down enough for a fast answer to be); skipped where strace is
# missing or may not attach.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use CmTest::Conmgr;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

plan skip_all => 'strace is missing (tools/install-deps test installs it)'
  unless grep { -x "$_/strace" } split /:/, "$ENV{PATH}:/usr/bin";

my ($node, $wd) = watchdog_node('p');
my $fwport = PostgreSQL::Test::Cluster::get_free_port();
my $cm = CmTest::Conmgr->new('cm', instances => [ [ $node, $wd ] ],
	conf => "heartbeat_interval = 1\nheartbeat_timeout = 2\nlisten_addresses = '127.0.0.1'\n"
	  . "forward_ports = 'read-write=$fwport'\n");
$cm->start(wait => 0);
ok(wait_until(sub { $cm->all_up }, 30), 'conmgr has its heartbeat with p') or diag($cm->log_content);
my $fw_pid;
wait_until(sub { $fw_pid = role_pid($cm->cmdata, 'forwarder') }, 10);
ok($fw_pid, 'the forwarder runs') or BAIL_OUT('no forwarder');

my $script = PostgreSQL::Test::Utils::tempdir() . '/select1.sql';
PostgreSQL::Test::Utils::append_to_file($script, "SELECT pg_sleep(0.002);\n");
my $ci = "host=127.0.0.1 port=$fwport dbname=postgres";
my $ntx = 1000;

# strace attached to the forwarder (its TracerPid set), counting splice().
my $out = PostgreSQL::Test::Utils::tempdir() . '/strace.txt';
my ($so, $se) = ('', '');
my $st = IPC::Run::start([ 'strace', '-c', '-f', '-q', '-e', 'trace=splice', '-o', $out, '-p', $fw_pid ],
	'<', \undef, '>', \$so, '2>', \$se);
my $attached = wait_until(sub {
	return slurp_file("/proc/$fw_pid/status") =~ /^TracerPid:\s+[1-9]/m;
}, 10);
if (!$attached)
{
	$st->kill_kill;
	plan skip_all => "strace may not attach to the forwarder here: $se";
}

my ($po, $pe) = ('', '');
my $ok = IPC::Run::run([ 'pgbench', '-n', '-f', $script, '-c', '1', '-t', $ntx, $ci ],
	'<', \undef, '>', \$po, '2>', \$pe, IPC::Run::timeout(120));
$st->signal('INT');
eval { $st->finish; 1 } or $st->kill_kill;
ok($ok && $po =~ /number of transactions actually processed: $ntx\b/,
	"pgbench ran $ntx transactions through the forward port") or diag("$po$pe");

my ($calls) = slurp_file($out) =~ /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)(?:\s+\d+)?\s+splice$/m;
ok(defined $calls, 'strace counted the forwarder\'s splice() calls') or diag(slurp_file($out));
my $per = ($calls // 0) / $ntx;
# 4 a transaction, and the session's start (startup packet, authentication,
# parameters) spread over the transactions
cmp_ok($per, '<=', 4.5,
	sprintf('splice() calls a transaction: %.2f (4 to move a query and its answer)', $per));

$cm->stop;
done_testing();
