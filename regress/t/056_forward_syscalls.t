# Test what the forwarder's relay costs in system calls (relay.c): a query
# and its answer through a forward port cost a recv() and a send() each
# way and no splice(), with no try at reading the other socket, which
# only says EAGAIN; a COPY's bulk data moves with splice(), not through
# the forwarder's buffer.  Counted by strace -c on the `conmgr: forwarder`
# process over pgbench with one client, whose query takes 2 ms, so that
# the answer is never there yet when the query has been passed on (strace
# slows the traced process down enough for a fast answer to be), then
# over a COPY of about 14 MB; skipped where strace is missing or may not
# attach.
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
	  . "forward_ports = 'read-write=$fwport'\n"
	  # one process, the one strace follows
	  . "forwarder_processes = 1\n");
$cm->start(wait => 0);
ok(wait_until(sub { $cm->all_up }, 30), 'conmgr has its heartbeat with p') or diag($cm->log_content);
my $fw_pid;
wait_until(sub { $fw_pid = role_pid($cm->cmdata, 'forwarder') }, 10);
ok($fw_pid, 'the forwarder runs') or BAIL_OUT('no forwarder');

my $script = PostgreSQL::Test::Utils::tempdir() . '/select1.sql';
PostgreSQL::Test::Utils::append_to_file($script, "SELECT pg_sleep(0.002);\n");
my $ci = "host=127.0.0.1 port=$fwport dbname=postgres";
my $ntx = 1000;

# strace attached to the forwarder (its TracerPid set) while $run runs;
# the calls of each name counted.
sub count_calls
{
	my ($run) = @_;
	my $out = PostgreSQL::Test::Utils::tempdir() . '/strace.txt';
	my ($so, $se) = ('', '');
	my $st = IPC::Run::start(
		[ 'strace', '-c', '-f', '-q', '-e', 'trace=splice,recvfrom,sendto', '-o', $out, '-p', $fw_pid ],
		'<', \undef, '>', \$so, '2>', \$se);
	my $attached = wait_until(sub {
		return slurp_file("/proc/$fw_pid/status") =~ /^TracerPid:\s+[1-9]/m;
	}, 10);
	if (!$attached)
	{
		$st->kill_kill;
		plan skip_all => "strace may not attach to the forwarder here: $se";
	}
	my $ok = $run->();
	$st->signal('INT');
	eval { $st->finish; 1 } or $st->kill_kill;
	my %calls = map { $_ => 0 } qw(splice recvfrom sendto);
	my $text = slurp_file($out);
	$calls{$2} = $1
	  while $text =~ /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)(?:\s+\d+)?\s+(splice|recvfrom|sendto)$/mg;
	return ($ok, \%calls, $text);
}

my ($po, $pe) = ('', '');
my ($ok, $calls, $text) = count_calls(sub {
	IPC::Run::run([ 'pgbench', '-n', '-f', $script, '-c', '1', '-t', $ntx, $ci ],
		'<', \undef, '>', \$po, '2>', \$pe, IPC::Run::timeout(120));
});
ok($ok && $po =~ /number of transactions actually processed: $ntx\b/,
	"pgbench ran $ntx transactions through the forward port") or diag("$po$pe");
# 2 of each a transaction, and the session's start (startup packet,
# authentication, parameters) spread over the transactions
my %per = map { $_ => $calls->{$_} / $ntx } keys %$calls;
cmp_ok($per{recvfrom}, '<=', 2.5,
	sprintf('recv() calls a transaction: %.2f (2 to read a query and its answer)', $per{recvfrom}))
  or diag($text);
cmp_ok($per{sendto}, '<=', 2.5,
	sprintf('send() calls a transaction: %.2f (2 to pass them on)', $per{sendto}))
  or diag($text);
cmp_ok($calls->{splice}, '==', 0, 'no splice() for a transaction\'s small messages') or diag($text);

# A COPY's rows: the buffer fills, and the rest moves with splice().
my $rows = 1_000_000;
my ($co, $ce) = ('', '');
($ok, $calls, $text) = count_calls(sub {
	IPC::Run::run([ 'psql', '-X', '-At', '-d', $ci, '-c',
		"COPY (SELECT g FROM generate_series(1, $rows) g) TO STDOUT" ],
		'<', \undef, '>', \$co, '2>', \$ce, IPC::Run::timeout(120));
});
my $lines = () = $co =~ /\n/g;
ok($ok && $lines == $rows && $co =~ /^1\n2\n.*\n$rows\n\z/s,
	"COPY TO STDOUT: $rows rows through the forward port, in order") or diag($ce);
my $bytes = length($co);
cmp_ok($calls->{splice}, '>', 0,
	sprintf('the COPY\'s %d bytes moved with splice() (%d calls; %d recv(), %d send())',
		$bytes, @{$calls}{qw(splice recvfrom sendto)}))
  or diag($text);
# the buffer reads only until a read is large: most reads are splice()s
# (each splice() read has one splice() write after it)
cmp_ok($calls->{recvfrom}, '<', $calls->{splice} / 2 / 4,
	'most of it did not pass through the forwarder\'s buffer') or diag($text);

$cm->stop;
done_testing();
