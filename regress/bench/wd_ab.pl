#!/usr/bin/perl
# wd_ab.pl — figure 7's big case (row 7d: N heartbeat sessions at 1 s, the
# CPU of the watchdog worker) for two builds of the watchdog extension,
# side by side in one run: rounds alternate A B, B A, A B, ... so that the
# noise of a shared machine falls on both, and the floor (sysfloor, as in
# bench.pl) is measured in the same run.
#
#   regress/bench/wd_ab.pl [-n SESSIONS] [-r ROUNDS] [-s SECS] A.so B.so
#
# Each build runs in an instance of its own whose dynamic_library_path
# puts a directory holding that build's watchdog.so before $libdir, so
# that shared_preload_libraries = 'watchdog' and the background workers
# load it and not the installed one; the SQL functions are created from
# pgext/watchdog--1.0.sql naming the library "watchdog" (CREATE EXTENSION
# would name $libdir/watchdog, the installed build).  The script checks in
# /proc/PID/maps that each worker runs the build it is told to.
#
# Run as an unprivileged user (PostgreSQL refuses root), with PATH
# holding the server's bindir, PERL5LIB its PostgreSQL::Test modules
# (lib/pgxs/src/test/perl) and a hard open-files limit of at least
# SESSIONS + 1,100; on a built tree (make; make -C regress/bench).  It
# prints one line per round and then, per build, the median of the
# rounds' CPU (% of a core), and the median of B's CPU over A's in the
# rounds taken in pairs.  Each round also shows the worker's private
# memory with the sessions registered (after the first round it holds
# what the allocator kept from the earlier ones).  As it starts measuring,
# a round prints the worker's pid, for a profiler to attach to (perf
# record -e cpu-clock -p PID, as root).
use strict;
use warnings;

use Cwd ();
use File::Basename qw(dirname);
use File::Copy qw(copy);
use FindBin;
use Getopt::Std;
use lib "$FindBin::RealBin/../lib";
use CmBench ();
use CmTerminal qw(out $OUT);
use CmTest qw(wait_until);
use IPC::Run;
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Time::HiRes qw(time usleep);

my %opt;
getopts('n:r:s:', \%opt) && @ARGV == 2
  or die "usage: wd_ab.pl [-n SESSIONS] [-r ROUNDS] [-s SECS] A.so B.so\n";
my $n = $opt{n} // 10000;
my $rounds = $opt{r} // 5;
my $secs = $opt{s} // 30;
my $window = 10;
my $procs = 20;
die "wd_ab.pl: -n must be a multiple of $procs\n" if $n % $procs;
die "wd_ab.pl: -s must be a multiple of $window\n" if $secs % $window || $secs < $window;

my $top = Cwd::realpath(dirname(Cwd::realpath($0)) . '/../..');
my $hbclient = "$top/build/regress/tools/hbclient";
my $sysfloor = "$top/build/bench/sysfloor";
-x $_ or die "wd_ab.pl: $_ is missing; run make and make -C regress/bench\n" for $hbclient, $sysfloor;

# The soft open-files limit up to the hard one (as bench.pl does).
my ($soft, $hard) = slurp_file('/proc/self/limits') =~ /^Max open files\s+(\S+)\s+(\S+)/m;
system('prlimit', "--pid=$$", "--nofile=$hard:$hard") if $soft ne $hard;
die "wd_ab.pl: the hard open-files limit $hard is below " . ($n + 1100) . "\n"
  if $hard ne 'unlimited' && $hard < $n + 1100;

my $work = PostgreSQL::Test::Utils::tempdir('wd_ab');
my $sql = slurp_file("$top/pgext/watchdog--1.0.sql");
$sql =~ s/^\\echo.*$//m;
$sql =~ s/'MODULE_PATHNAME'/'watchdog'/g;

# An instance running the build $so.
sub build_node
{
	my ($name, $so) = @_;
	my $dir = "$work/lib_$name";
	mkdir $dir or die "mkdir $dir: $!";
	copy($so, "$dir/watchdog.so") or die "copy $so: $!";
	my $wport = PostgreSQL::Test::Cluster::get_free_port();
	my $node = PostgreSQL::Test::Cluster->new("wd_$name");
	$node->init;
	$node->append_conf('postgresql.conf', "shared_preload_libraries = 'watchdog'\n"
		  . "dynamic_library_path = '$dir:\$libdir'\n"
		  . "listen_addresses = '127.0.0.1'\nmax_connections = 200\n"
		  . "watchdog.port = $wport\nwatchdog.listen_addresses = '127.0.0.1'\n"
		  . "watchdog.check_attr_interval = 200\n"
		  . "watchdog.max_heartbeat_connections = $n\nwatchdog.max_sessions_per_address = 0\n");
	$node->start;
	$node->safe_psql('postgres', $sql);
	my $pid = $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'watchdog'");
	my ($mapped) = slurp_file("/proc/$pid/maps") =~ m{\s(/\S*/watchdog\.so)$}m;
	die "wd_ab.pl: the worker of $name runs " . ($mapped // 'no watchdog.so') . ", not $dir/watchdog.so\n"
	  unless defined $mapped && $mapped eq "$dir/watchdog.so";
	return { name => $name, so => $so, node => $node, wport => $wport, pid => $pid, cpu => [],
		idle_kb => private_kb($pid) };
}

sub registered
{
	my ($b) = @_;
	return $b->{node}->safe_psql('postgres', 'SELECT count(*) FROM pgx_stat_watchdog');
}

sub frames
{
	my ($b) = @_;
	return $b->{node}->safe_psql('postgres',
		'SELECT coalesce(sum(frames_received), 0) FROM pgx_stat_watchdog');
}

# The worker's private dirty memory in kB: its heap, where its session
# table lives (shared memory and the postmaster's pages are not counted).
sub private_kb
{
	my ($pid) = @_;
	my ($kb) = slurp_file("/proc/$pid/smaps_rollup") =~ /^Private_Dirty:\s+(\d+) kB/m;
	return $kb;
}

# The worker's CPU time in ns (the scheduler's, finer than the ticks).
sub cpu_ns
{
	my ($pid) = @_;
	return (split ' ', slurp_file("/proc/$pid/schedstat"))[0];
}

# One round of one build: $n sessions at 1 s from 20 hbclients (as figure
# 7), the worker's CPU over $secs s in windows of $window s.
sub run_round
{
	my ($b, $round) = @_;
	my @hb;
	my $log_start = -s $b->{node}->logfile;
	for my $k (1 .. $procs)
	{
		my $out = '';
		my $h = IPC::Run::start([ $hbclient, '-h', '127.0.0.1', '-p', $b->{wport},
				'-b', "127.0.2.$k", '-i', 1, '-t', 3, '-n', $n / $procs, '-c', 3,
				'-d', $secs + 120 ], '<', \undef, '>', \$out, '2>&1');
		push @hb, { h => $h, out => \$out };
		usleep(50_000);
	}
	wait_until(sub { registered($b) == $n }, 60 + $n / 100)
	  or die "wd_ab.pl: $b->{name}: only " . registered($b) . " of $n sessions registered\n";
	sleep 3;
	out("round $round $b->{name}: measuring worker pid $b->{pid} for $secs s");
	my $kb = private_kb($b->{pid});
	my @win;
	my ($t0, $c0, $f0) = (time(), cpu_ns($b->{pid}), frames($b));
	my ($t, $c) = ($t0, $c0);
	for my $w (1 .. $secs / $window)
	{
		my $until = $t0 + $w * $window;
		usleep(int(($until - time()) * 1e6)) if $until > time();
		my ($t1, $c1) = (time(), cpu_ns($b->{pid}));
		push @win, 100 * ($c1 - $c) / 1e9 / ($t1 - $t);
		($t, $c) = ($t1, $c1);
	}
	my $f1 = frames($b);
	my $cpu = 100 * ($c - $c0) / 1e9 / ($t - $t0);
	my $us_beat = ($c - $c0) / 1e3 / (($f1 - $f0) || 1);
	my $still = registered($b);
	$_->{h}->signal('TERM') for @hb;
	for my $h (@hb)
	{
		my $deadline = time() + 10;
		while ($h->{h}->pumpable && time() < $deadline) { $h->{h}->pump_nb; usleep(5_000); }
		$h->{h}->signal('KILL') if $h->{h}->pumpable;
		eval { $h->{h}->finish; };
	}
	my $log = substr(slurp_file($b->{node}->logfile), $log_start);
	my $lost = () = $log =~ /lost heartbeat session.*(?:heartbeat_timeout)/g;
	wait_until(sub { registered($b) == 0 }, 60) or die "wd_ab.pl: $b->{name}: sessions left\n";
	push @{ $b->{cpu} }, $cpu;
	out(sprintf('round %d %s: worker CPU %.2f %% of a core (windows %s), %.2f µs a beat, '
		  . '%.0f frames received/s, %d registered at the end, %d timed out; '
		  . 'private memory %d kB (%d kB idle at start: %.0f B a session)',
		$round, $b->{name}, $cpu, join(' ', map { sprintf('%.2f', $_) } @win), $us_beat,
		($f1 - $f0) / ($t - $t0), $still, $lost, $kb, $b->{idle_kb},
		($kb - $b->{idle_kb}) * 1024 / $n));
	return $cpu;
}

my @builds = (build_node('A', $ARGV[0]), build_node('B', $ARGV[1]));
out("A: $ARGV[0]\nB: $ARGV[1]\n$n sessions at 1 s, $rounds rounds each of $secs s, order A B, B A, ...");
my @ratio;
for my $r (1 .. $rounds)
{
	my @order = $r % 2 ? @builds : reverse @builds;
	my %cpu = map { $_->{name} => run_round($_, $r) } @order;
	push @ratio, $cpu{B} / $cpu{A};
}
$_->{node}->stop for @builds;

# The floor: one send and one recv of a beat over loopback with as many
# connections (bench.pl's figure 7), the best of 3 runs.
my $pair;
for (1 .. 3)
{
	my $o = `$sysfloor -c $n -n ${\ int(200_000 / $n)}`;
	my ($p) = $o =~ /^pair_us=(\S+)/m or die "wd_ab.pl: sysfloor said: $o";
	$pair = $p if !defined $pair || $p < $pair;
}
my $floor = 100 * $n * $pair / 1e6;
for my $bd (@builds)
{
	my @v = sort { $a <=> $b } @{ $bd->{cpu} };
	out(sprintf('%s: median %.2f %% of a core (min %.2f, max %.2f), %.2f × the floor',
		$bd->{name}, CmBench::median(@v), $v[0], $v[-1], CmBench::median(@v) / $floor));
}
out(sprintf('floor (send + recv, sysfloor -c %d): %.2f %% of a core (%.2f µs a beat)', $n, $floor, $pair));
out(sprintf('B / A, round by round: median %.3f (%s)', CmBench::median(@ratio),
	join(' ', map { sprintf('%.3f', $_) } @ratio)));
