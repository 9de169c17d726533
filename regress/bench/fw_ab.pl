#!/usr/bin/perl
# fw_ab.pl — figure 11b (pgbench -S, 8 clients, kept connections, through
# a forward port) for two builds of conmgr side by side in one run, with a
# direct connection beside them: one instance, two conmgrs (one per
# build), each with a read-write forward port to it; rounds run the three
# sides in an order that rotates round by round, so that the noise of a
# shared machine falls on all three.
#
#   regress/bench/fw_ab.pl [-p] [-r ROUNDS] [-s SECS] [-c CLIENTS]
#                          [-a CONF] [-b CONF] A/conmgr B/conmgr
#
# -a and -b add a line to A's or B's conmgr.conf, so that one build runs
# against itself with a setting changed (-a 'forwarder_processes = 1').
#
# -p places the processes as on two hosts: the instance on the last
# processor, pgbench and the conmgrs on the others (taskset), so that a
# proxy's work does not take the server's processor.
#
# Per round and side: pgbench's TPS; the forwarders' CPU time per
# transaction (the scheduler's, /proc/PID/schedstat, every forwarder
# process summed, so the time counted is theirs whatever else runs); the machine's CPU per
# transaction and idle share from /proc/stat (everything running counts
# there).  Then, per build, the forwarder's system calls per transaction
# counted by strace -c over a fixed number of transactions, and the
# medians: each build's TPS over direct, B over A, the forwarder's CPU.
#
# Run as an unprivileged user (PostgreSQL refuses root) on a built tree,
# with PATH holding the server's bindir and pgbench, PERL5LIB its
# PostgreSQL::Test modules (lib/pgxs/src/test/perl) and PG_REGRESS set as
# for the TAP tests; the installed watchdog extension serves the
# instance.  Each conmgr binary is started through CmTest::Conmgr with a
# prefix that runs it in place of the tree's own.
use strict;
use warnings;

use Cwd ();
use FindBin;
use Getopt::Std;
use lib "$FindBin::RealBin/../lib";
use CmBench ();
use CmTerminal qw(out $OUT);
use CmTest qw(wait_until);
use CmTest::Conmgr;
use IPC::Run;
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;

my %opt;
getopts('pr:s:c:a:b:', \%opt) && @ARGV == 2
  or die "usage: fw_ab.pl [-p] [-r ROUNDS] [-s SECS] [-c CLIENTS] [-a CONF] [-b CONF] A/conmgr B/conmgr\n";
my $rounds = $opt{r} // 6;
my $secs = $opt{s} // 8;
my $clients = $opt{c} // 8;
my %bin = (A => Cwd::realpath($ARGV[0]), B => Cwd::realpath($ARGV[1]));
-x $bin{$_} or die "fw_ab.pl: $ARGV[$_ eq 'A' ? 0 : 1] is not an executable\n" for qw(A B);
my $hz = POSIX::sysconf(POSIX::_SC_CLK_TCK());

# The machine's CPU time in ticks: busy (all but idle and iowait), idle.
sub machine_ticks
{
	my @v = split ' ', (split /\n/, slurp_file('/proc/stat'))[0];
	shift @v;
	my $busy = 0;
	$busy += $v[$_] for grep { $_ != 3 && $_ != 4 } 0 .. 7;
	return ($busy, $v[3] + $v[4]);
}

# Processes' CPU time in ns, summed (the scheduler's, finer than the ticks).
sub cpu_ns
{
	my ($pids) = @_;
	my $ns = 0;
	$ns += (split ' ', slurp_file("/proc/$_/schedstat"))[0] for @$pids;
	return $ns;
}

# -p: what this process starts from here on inherits its processors
chomp(my $ncpu = `nproc`);
my $pin = sub {
	my ($cpus) = @_;
	return unless $opt{p};
	system('taskset', '-p', '-c', $cpus, $$) == 0 or die "fw_ab.pl: taskset failed\n";
};
die "fw_ab.pl: -p needs at least 2 processors\n" if $opt{p} && $ncpu < 2;
$pin->($ncpu - 1);
my ($node, $wdport) = CmTest::watchdog_node('fwab', "shared_buffers = 128MB\nmax_connections = 50\n");
$pin->($ncpu == 2 ? '0' : '0-' . ($ncpu - 2));
PostgreSQL::Test::Utils::run_log(
	[ 'pgbench', '-i', '-s', '1', '-q', '-h', '127.0.0.1', '-p', $node->port, 'postgres' ])
  or die "fw_ab.pl: pgbench -i failed\n";
my (%ci, %fwpid);
for my $side (qw(A B))
{
	my $fwport = PostgreSQL::Test::Cluster::get_free_port();
	my $cm = CmTest::Conmgr->new("cm$side", instances => [ [ $node, $wdport ] ],
		conf => "forward_ports = 'read-write=$fwport'\n" . ($opt{ lc $side } // '') . "\n");
	# sh runs the build in place of the tree's conmgr, with its arguments
	$cm->start(wait => 'up', prefix => [ 'sh', '-c', 'shift; exec "$0" "$@"', $bin{$side} ]);
	$ci{$side} = "host=127.0.0.1 port=$fwport dbname=postgres";
	# every forwarder process: their CPU is summed, strace follows them all
	$fwpid{$side} = [ $cm->role_pids('forwarder') ];
	@{ $fwpid{$side} } or die "fw_ab.pl: $side: no forwarder\n";
}
$ci{direct} = "host=127.0.0.1 port=" . $node->port . " dbname=postgres";
out("A: $bin{A}" . ($opt{a} ? " with $opt{a}" : '') . "\nB: $bin{B}" . ($opt{b} ? " with $opt{b}" : '')
	  . "\nforwarder processes: A " . scalar(@{ $fwpid{A} }) . ', B ' . scalar(@{ $fwpid{B} }) . "\npgbench -n -S -c $clients -j 2 -T $secs, $rounds rounds, "
	  . 'the order of A, B and direct rotating'
	  . ($opt{p} ? "; the instance on processor " . ($ncpu - 1) . ', the rest on the others' : ''));

my @sides = qw(A B direct);
my (%tps, %fw_us, @b_a);
for my $r (1 .. $rounds)
{
	my $k = ($r - 1) % 3;
	for my $side (@sides[ map { ($_ + $k) % 3 } 0 .. 2 ])
	{
		my @m0 = machine_ticks();
		my $f0 = $fwpid{$side} ? cpu_ns($fwpid{$side}) : 0;
		my ($po, $pe) = ('', '');
		IPC::Run::run([ 'pgbench', '-n', '-S', '-c', $clients, '-j', 2, '-T', $secs, $ci{$side} ],
			'<', \undef, '>', \$po, '2>', \$pe, IPC::Run::timeout($secs + 60))
		  or die "fw_ab.pl: pgbench through $side failed:\n$po$pe";
		my $f1 = $fwpid{$side} ? cpu_ns($fwpid{$side}) : 0;
		my @m1 = machine_ticks();
		my ($t) = $po =~ /^tps = ([\d.]+)/m or die "fw_ab.pl: no tps from pgbench:\n$po$pe";
		my ($n) = $po =~ /actually processed: (\d+)/;
		my ($busy, $idle) = ($m1[0] - $m0[0], $m1[1] - $m0[1]);
		push @{ $tps{$side} }, $t;
		push @{ $fw_us{$side} }, ($f1 - $f0) / 1e3 / $n if $fwpid{$side};
		out(sprintf('round %d %-6s %7.0f tps; the machine: %.1f µs of CPU a transaction, %.1f %% idle%s',
			$r, $side, $t, $busy / $hz * 1e6 / $n, 100 * $idle / (($busy + $idle) || 1),
			$fwpid{$side} ? sprintf('; forwarder %.2f µs a transaction', $fw_us{$side}[-1]) : ''));
	}
	push @b_a, $tps{B}[-1] / $tps{A}[-1];
}

# The forwarder's system calls per transaction, counted.
my %calls;
for my $side (qw(A B))
{
	my $ntx = 2000;
	my $file = PostgreSQL::Test::Utils::tempdir() . '/strace.txt';
	my $st = IPC::Run::start([ 'strace', '-c', '-f', '-q', '-o', $file, map { ('-p', $_) } @{ $fwpid{$side} } ],
		'<', \undef, '>', \my $so, '2>', \my $se);
	wait_until(sub { !grep { slurp_file("/proc/$_/status") !~ /^TracerPid:\s+[1-9]/m } @{ $fwpid{$side} } }, 10)
	  or die "fw_ab.pl: strace could not attach: $se\n";
	PostgreSQL::Test::Utils::run_log(
		[ 'pgbench', '-n', '-S', '-c', $clients, '-j', 2, '-t', $ntx, $ci{$side} ])
	  or die "fw_ab.pl: pgbench -t through $side failed\n";
	$st->signal('INT');
	eval { $st->finish; 1 } or $st->kill_kill;
	my $text = slurp_file($file);
	my @per;
	while ($text =~ /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)(?:\s+\d+)?\s+(\w+)$/mg)
	{
		push @per, [ $2, $1 / ($clients * $ntx) ] unless $2 eq 'total';
	}
	my $total = 0;
	$total += $_->[1] for @per;
	$calls{$side} = sprintf('%.2f (%s)', $total,
		join(', ', map { sprintf('%s %.2f', @$_) } sort { $b->[1] <=> $a->[1] } grep { $_->[1] >= 0.01 } @per));
}
$node->stop;

for my $side (qw(A B))
{
	my @q = map { $tps{$side}[$_] / $tps{direct}[$_] } 0 .. $rounds - 1;
	out(sprintf('%s: median %.0f tps, %.3f × direct (rounds: %s); forwarder %.2f µs a transaction '
		  . '(median); system calls a transaction %s',
		$side, CmBench::median(@{ $tps{$side} }), CmBench::median(@q), join(' ', map { sprintf('%.3f', $_) } @q),
		CmBench::median(@{ $fw_us{$side} }), $calls{$side}));
}
out(sprintf('direct: median %.0f tps', CmBench::median(@{ $tps{direct} })));
out(sprintf('B / A, round by round: median %.3f (%s)', CmBench::median(@b_a),
	join(' ', map { sprintf('%.3f', $_) } @b_a)));
