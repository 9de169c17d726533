#!/usr/bin/perl
# bench.pl — the benchmark figures of conmgr (issue 7), side by side with
# plain libpq, measured on this machine.  Run by regress/bench/run (`make
# bench`), as an unprivileged user; it builds its own instances with
# PostgreSQL::Test::Cluster, prints the table and writes
# $BENCH_OUT/benchmarks.md plus PNG plots in $BENCH_OUT/benchmarks/.
#
# Every figure is the median over repeated rounds, with min and max; the
# two sides of a comparison alternate round by round (A B, B A, A B, ...)
# so that the noise of a shared machine falls on both; a ratio is taken
# within each round, then its median.
#
# Environment: BENCH_OUT (default docs/), BENCH_QUICK=1 (fewer and shorter
# rounds, for trying the harness), BENCH_FIGURES=1,2,... (a subset),
# BENCH_NETNS=1 (set by run: we are alone in a network namespace, so the
# kernel's TCP counters count our packets only); BENCH_FAULT,
# BENCH_PATRONI and BENCH_FWFAULT (set by run: the results of figures 5,
# 10 and 11c, measured as root before this script).
use strict;
use warnings;

our ($OUT, $ERR);
BEGIN
{
	# PostgreSQL::Test::Utils sends STDOUT and STDERR to its log file
	# (tmp_check/log/regress_log_bench, deleted with make bench's scratch
	# copy); keep the terminal for the table, for why a run stopped and for
	# its warnings.
	open($OUT, '>&', \*STDOUT) or die "dup stdout: $!";
	open($ERR, '>&', \*STDERR) or die "dup stderr: $!";
	$OUT->autoflush(1);
	$ERR->autoflush(1);
	$SIG{__DIE__} = sub { print $ERR $_[0] unless $^S; };
	# warnings too, and to the log as before
	$SIG{__WARN__} = sub { print $ERR $_[0]; print STDERR $_[0]; };
}
use Cwd ();
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmBench;
use CmResolveCount;
use CmTest qw(wait_until);
use CmTest::Conmgr;
use File::Basename qw(dirname);
use File::Path qw(make_path);
use IPC::Run;
use List::Util qw(sum);
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Time::HiRes qw(time usleep);

my $top = Cwd::realpath(dirname(Cwd::realpath($0)) . '/../..');
my $B = "$top/build";
my $pqtiming = "$B/bench/pqtiming";
my $cmload = "$B/bench/cmload";
my $kaload = "$B/bench/kaload";
my $sysfloor = "$B/bench/sysfloor";
my $hbclient = "$B/regress/tools/hbclient";
my $haproxy = '/usr/sbin/haproxy';
my $conmgr = "$B/bin/conmgr";
my $preload = "$B/lib/libpq-cm.so.1";
# settings that mean nothing stop the run before anything starts
CmBench::refuse_bad_settings($ERR);
my $outdir = $ENV{BENCH_OUT} // "$top/docs";
my $quick = $ENV{BENCH_QUICK} // 0;
my %only = map { $_ => 1 } split /,/, ($ENV{BENCH_FIGURES} // '1,2,3,4,5,6,7,8,9,10,11');
my $netns = $ENV{BENCH_NETNS} // 0;
my $t_start = time();
my $work = PostgreSQL::Test::Utils::tempdir('bench');

# Figures 7 and 8 hold 10,000 sockets in one process (the watchdog
# worker, conmgr's listener, cmload): take the hard open-files limit for
# this process and the servers and tools it starts.  regress/bench/run
# raises it before it changes user, but runuser opens a PAM session that
# sets the soft limit back (1,024 on Debian); an unprivileged process may
# raise its own soft limit up to the hard one (prlimit(1), util-linux).
sub nofile_limits
{
	my ($soft, $hard) = PostgreSQL::Test::Utils::slurp_file('/proc/self/limits')
	  =~ /^Max open files\s+(\S+)\s+(\S+)/m;
	return ($soft, $hard);
}
my ($nofile, $nofile_hard) = nofile_limits();
if ($nofile ne $nofile_hard)
{
	system('prlimit', "--pid=$$", "--nofile=$nofile_hard:$nofile_hard") == 0
	  or warn "bench: could not raise the open-files limit from $nofile to $nofile_hard\n";
	($nofile) = nofile_limits();
}

for ($pqtiming, $cmload, $kaload, $sysfloor, $hbclient, $conmgr, $preload)
{
	die "bench: $_ is missing; run `make` and `make -C regress/bench` first\n" unless -e $_;
}

# Rounds and their sizes.
my ($hb_interval, $hb_timeout) = (1, 2);
my $check_attr_ms = 200;
my %R = (
	conn_rounds => $quick ? 2 : 12, conn_n => 100,
	rw_rounds => $quick ? 2 : 10, rw_n => 100,
	pgb_rounds => $quick ? 2 : 10, pgb_secs => 3,
	pgbc_rounds => $quick ? 2 : 6, pgbc_secs => 4,
	promote_rounds => $quick ? 2 : 7,
	wd_sizes => [ 1000, 10000 ], wd_secs => $quick ? 20 : 60, wd_window => 10,
	notice_rounds => $quick ? 2 : 5, app_sessions => 1000, resolve_clients => 8, resolve_secs => 3,
	notice_rounds_big => $quick ? 1 : 3, app_sessions_big => 10000,
	pkt_rounds => $quick ? 1 : 3, pkt_window => $quick ? 8 : 12);

sub out { print $OUT @_, "\n"; return; }
sub progress { out(sprintf('[%4.0fs] ', time() - $t_start), @_); return; }

# ---------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------

sub stats
{
	my @v = sort { $a <=> $b } grep { defined } @_;
	return undef unless @v;
	my $n = @v;
	my $med = $n % 2 ? $v[ $n / 2 ] : ($v[ $n / 2 - 1 ] + $v[ $n / 2 ]) / 2;
	return { med => $med, min => $v[0], max => $v[-1], n => $n };
}

# "12.3 ms (11.9–13.0)" from a stats hash; $prec decimals.
sub fmt
{
	my ($s, $unit, $prec) = @_;
	return 'n/a' unless $s;
	$prec //= 2;
	return sprintf("%.*f%s (%.*f–%.*f)", $prec, $s->{med}, ($unit eq '' ? '' : " $unit"),
		$prec, $s->{min}, $prec, $s->{max});
}

# Run a command to completion; dies with its output when it fails.
# Returns its standard output, or (stdout, stderr) in list context.
sub run_ok
{
	my (@cmd) = @_;
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run(\@cmd, '<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(600));
	die "bench: failed: @cmd\n$out$err" unless $ok;
	return wantarray ? ($out, $err) : $out;
}

sub bg
{
	my (@cmd) = @_;
	my $out = '';
	my $h = IPC::Run::start(\@cmd, '<', \undef, '>', \$out, '2>&1');
	return { h => $h, out => \$out, cmd => "@cmd" };
}

sub bg_wait
{
	my ($b, $re, $secs) = @_;
	my $deadline = time() + ($secs // 30);
	while (time() < $deadline)
	{
		$b->{h}->pump_nb if $b->{h}->pumpable;
		return $1 // $& if ${ $b->{out} } =~ $re;
		usleep(5_000);
	}
	return undef;
}

sub bg_finish
{
	my ($b, $secs) = @_;
	my $deadline = time() + ($secs // 30);
	while ($b->{h}->pumpable && time() < $deadline)
	{
		$b->{h}->pump_nb;
		usleep(5_000);
	}
	if ($b->{h}->pumpable)
	{
		$b->{h}->signal('KILL');
	}
	eval { $b->{h}->finish; };
	return ${ $b->{out} };
}

# The postmaster and its children (to stop or kill an instance whole).
sub instance_pids
{
	my ($node) = @_;
	my $pm = $node->{_pid};
	return ($pm, grep { /^\d+$/ } split /\s+/, `pgrep -P $pm`);
}

sub watchdog_conf
{
	my ($wdport, $extra) = @_;
	return "shared_preload_libraries = 'watchdog'\n"
	  . "listen_addresses = '127.0.0.1'\n"
	  . "max_connections = 200\n"
	  . "watchdog.port = $wdport\n"
	  . "watchdog.listen_addresses = '127.0.0.1'\n"
	  . "watchdog.check_attr_interval = $check_attr_ms\n"
	  . ($extra // '');
}

# ---------------------------------------------------------------------
# conmgr daemons
# ---------------------------------------------------------------------

my @conmgrs;
# Programs that are not ours (HAProxy, strace), started with their output
# to a file; pid => name.  END stops what is left.
my %daemons;

sub start_conmgr
{
	my ($name, @inst) = @_;    # each [ port, watchdog port ]; then { conf => more lines }
	my $more = ref $inst[-1] eq 'HASH' ? pop(@inst)->{conf} : '';
	my $dir = "$work/$name";
	my $cm = CmTest::Conmgr->new($name, dir => $dir, logfile => "$dir/conmgr.log",
		instances => [
			map { { backend_hostaddr => "'127.0.0.1'", backend_port => $_->[0], watchdog_port => $_->[1] } } @inst
		],
		conf => "heartbeat_interval = $hb_interval\nheartbeat_timeout = $hb_timeout\n"
		  . "log_min_messages = WARNING\n" . $more);
	$cm->start(wait => 0);
	push @conmgrs, $cm;
	return $cm;
}

sub stop_conmgr
{
	my ($cm) = @_;
	$cm->stop('fast') if $cm->running;
	return;
}

END
{
	# kill9's reaping sets $? to the killed conmgr's status, which would
	# become the script's exit status (9): keep the script's own
	my $status = $?;
	for my $cm (@conmgrs)
	{
		eval { $cm->kill9 if $cm->running; };
	}
	stop_daemon($_) for keys %daemons;
	$? = $status;
}

sub start_daemon
{
	my ($name, $log, @cmd) = @_;
	my $pid = fork();
	die "bench: fork: $!\n" unless defined $pid;
	if ($pid == 0)
	{
		open(STDIN, '<', '/dev/null');
		open(STDOUT, '>', $log) or POSIX::_exit(127);
		open(STDERR, '>&', \*STDOUT);
		exec(@cmd) or POSIX::_exit(127);
	}
	$daemons{$pid} = $name;
	return $pid;
}

# SIGTERM (SIGINT for strace, whose summary comes then), then SIGKILL
# after 10 s; reaped.
sub stop_daemon
{
	my ($pid) = @_;
	return unless delete $daemons{$pid};
	kill($_[1] // 'TERM', $pid);
	my $deadline = time() + 10;
	while (waitpid($pid, POSIX::WNOHANG()) == 0)
	{
		if (time() > $deadline)
		{
			kill 'KILL', $pid;
			waitpid($pid, 0);
			last;
		}
		usleep(10_000);
	}
	return;
}

# What cm_ctl status --json shows of each instance of $cm: { N => { state
# => heartbeat state, role => primary, standby, ..., since => its last
# change in µs } }.
sub cm_status
{
	my ($cm) = @_;
	my $j = $cm->status // return {};
	return { map { $_->{instance} => { state => $_->{heartbeat}, role => $_->{role}, since => $_->{since_us} } }
		  @{ $j->{instances} // [] } };
}

# Wait until instance $i of $cm is up with the given in-recovery flag.
sub cm_wait_up
{
	my ($cm, $i, $recovery, $secs) = @_;
	return wait_until(
		sub {
			my $st = cm_status($cm)->{$i};
			return $st && $st->{state} eq 'up'
			  && (!defined $recovery || ($st->{role} =~ /^standby/ ? 1 : 0) == $recovery);
		},
		$secs // 30);
}

# ---------------------------------------------------------------------
# The machine
# ---------------------------------------------------------------------

sub machine
{
	my ($cpu) = `grep -m1 '^model name' /proc/cpuinfo` =~ /:\s*(.*)/;
	my $cores = `nproc`;
	chomp $cores;
	my $kernel = `uname -r`;
	chomp $kernel;
	my ($mem) = `grep MemTotal /proc/meminfo` =~ /(\d+)/;
	my $pgver = `pg_config --version`;
	chomp $pgver;
	my ($load) = `cat /proc/loadavg` =~ /^(\S+ \S+ \S+)/;
	# read by make bench before anything of its own ran (package install,
	# build, figure 5's lab), which the reading here comes after
	my ($load0) = ($ENV{BENCH_LOAD_START} // '') =~ /^(\S+ \S+ \S+)/;
	$load //= '?';
	my $os = `. /etc/os-release 2>/dev/null && echo "\$PRETTY_NAME"`;
	chomp $os;
	return {
		cpu => $cpu // 'unknown', cores => $cores, kernel => $kernel,
		mem => sprintf('%.0f GiB', ($mem // 0) / 1048576), pg => $pgver,
		os => $os || 'unknown',
		load => defined $load0 ? "$load0 (make bench), $load (bench.pl)" : $load,
		# a one-minute load average of half a core or more before any of
		# this run's processes: something else was running
		busy => (($load0 // $load) =~ /^([\d.]+)/ && $1 >= 0.5) };
}

my $mach = machine();
progress("machine: $mach->{cpu}, $mach->{cores} cores, Linux $mach->{kernel}, $mach->{pg}, "
	  . "load average $mach->{load}" . ($netns ? ', private network namespace' : ''));

# ---------------------------------------------------------------------
# The results
# ---------------------------------------------------------------------

my @rows;     # the table
my %detail;   # per-figure text for the markdown
my %data;     # raw values for the plots

sub row
{
	my (%r) = @_;
	push @rows, \%r;
	out(sprintf('  => %s: %s | comparator %s | ratio %s | target %s: %s',
		$r{name}, $r{value}, $r{comp}, $r{ratio}, $r{target}, $r{met}));
	return;
}

sub met { return $_[0] ? 'met' : 'MISSED'; }

# ---------------------------------------------------------------------
# The instance set: a primary and two standbys with the watchdog, and a
# conmgr that lists the two standbys before the primary.
# ---------------------------------------------------------------------

my (%node, %port, %wd, $cm1);
sub need_set { return grep { $only{$_} } 1, 2, 3, 4, 8; }
if (need_set())
{
	progress('setting up a primary and two standbys, conmgr in front');
	%wd = map { $_ => PostgreSQL::Test::Cluster::get_free_port() } qw(p s1 s2);
	my $primary = PostgreSQL::Test::Cluster->new('p');
	$primary->init(allows_streaming => 1);
	$primary->append_conf('postgresql.conf', watchdog_conf($wd{p}, "shared_buffers = 128MB\n"));
	$primary->start;
	$primary->backup('b');
	$node{p} = $primary;
	for my $s (qw(s1 s2))
	{
		$node{$s} = PostgreSQL::Test::Cluster->new($s);
		$node{$s}->init_from_backup($primary, 'b', has_streaming => 1);
		$node{$s}->append_conf('postgresql.conf', "watchdog.port = $wd{$s}\n");
		$node{$s}->start;
	}
	%port = map { $_ => $node{$_}->port } keys %node;
	run_ok('pgbench', '-i', '-s', '1', '-q', '-h', '127.0.0.1', '-p', $port{p}, 'postgres');
	$primary->wait_for_catchup($node{$_}) for qw(s1 s2);
	$cm1 = start_conmgr('cm1', map { [ $port{$_}, $wd{$_} ] } qw(s1 s2 p));
	for my $i (0 .. 2)
	{
		cm_wait_up($cm1, $i, undef, 30) or die "bench: conmgr does not see instance $i up\n"
		  . $cm1->log_content;
	}
}

my $ci_cm = sub { "host=127.0.0.1 port=${\ $cm1->port } dbname=postgres target_session_attrs=read-write" };
my $ci_p = sub { "host=127.0.0.1 port=$port{p} dbname=postgres" };

# Alternate the two sides: round r runs them in order (a, b) or (b, a).
sub sides { my ($r) = @_; return $r % 2 ? qw(cm direct) : qw(direct cm); }

# Figures 1 and 2: pqtiming MODE with N connections a side per round,
# through conmgr (LD_PRELOAD) and to $ci_direct (plain), alternating.
# Returns the stats of the per-round medians (ms) and of the ratios.
sub compare_connections
{
	my ($tag, $mode, $rounds, $n, $ci_direct) = @_;
	my (%med, @ratio);
	for my $r (1 .. $rounds)
	{
		for my $side (sides($r))
		{
			my $file = "$work/${tag}_${side}_$r.txt";
			my @cmd = $side eq 'cm'
			  ? ('env', "LD_PRELOAD=$preload", $pqtiming, $mode, $n, $ci_cm->(), $file)
			  : ($pqtiming, $mode, $n, $ci_direct, $file);
			my ($m) = run_ok(@cmd) =~ /median_us=([\d.]+)/;
			push @{ $med{$side} }, $m / 1000;
			push @{ $data{$tag}{$side} }, map { $_ / 1000 } split /\n/, PostgreSQL::Test::Utils::slurp_file($file);
		}
		push @ratio, $med{cm}[-1] / $med{direct}[-1];
	}
	return (stats(@{ $med{cm} }), stats(@{ $med{direct} }), stats(@ratio));
}

# ---------------------------------------------------------------------
# 1. connect + SELECT 1 + disconnect, through conmgr vs direct
# ---------------------------------------------------------------------
if ($only{1})
{
	progress("figure 1: connect + SELECT 1 + disconnect, $R{conn_rounds} rounds x $R{conn_n} connections a side");
	my ($c, $d, $q) = compare_connections('f1', 'conn', $R{conn_rounds}, $R{conn_n}, $ci_p->());
	# The conmgr part alone: a bare session (connect, probe, RESOLVE, close).
	# -P: the RESOLVE with the probe, as libpq-cm sends it to a conmgr it met
	my ($bare) = run_ok($cmload, 'resolve', '-p', $cm1->port, '-c', 1, '-d', 2, '-P') =~ /^latency .*?median_us=([\d.]+)/m;
	row(id => 1, name => 'connect + SELECT 1 + disconnect (median latency)',
		value => fmt($c, 'ms', 3), comp => 'direct libpq: ' . fmt($d, 'ms', 3),
		ratio => fmt($q, '', 3), target => 'ratio ≤ 1.10', met => met($q->{med} <= 1.10));
	$detail{1} = sprintf("%d rounds, each %d connections through conmgr (`pqtiming`, linked with -lpq only, "
		  . "with `LD_PRELOAD=libpq-cm.so.1`, `target_session_attrs=read-write`) and %d straight to the "
		  . "primary (the same binary without the preload), in alternating order; %d connections a side "
		  . "in all. Value: the median of the per-round medians. Over all connections, p99: conmgr %.3f ms, "
		  . "direct %.3f ms. The detour adds %.0f µs (difference of the medians); a bare conmgr session "
		  . "alone (`cmload resolve -c 1 -P`: connect, probe and RESOLVE in one packet as libpq-cm sends "
		  . "them to a conmgr it has met, candidates, reset) takes %.0f µs (median), the rest is the "
		  . "ATTACHED message, the watcher thread's epoll registration and the two extra processes "
		  . "(conmgr's listener, the watcher) to be scheduled on 2 busy cores.",
		$R{conn_rounds}, $R{conn_n}, $R{conn_n}, $R{conn_rounds} * $R{conn_n},
		pct($data{f1}{cm}, 0.99), pct($data{f1}{direct}, 0.99), ($c->{med} - $d->{med}) * 1000, $bare // -1);
}

sub pct
{
	my ($v, $p) = @_;
	my @s = sort { $a <=> $b } @$v;
	return $s[ int(@s * $p) < @s ? int(@s * $p) : $#s ];
}

# ---------------------------------------------------------------------
# 2. read-write connect, two standbys before the primary
# ---------------------------------------------------------------------
if ($only{2})
{
	progress("figure 2: read-write connect, standbys first, $R{rw_rounds} rounds x $R{rw_n} a side");
	my $ci_multi = "host=127.0.0.1,127.0.0.1,127.0.0.1 port=$port{s1},$port{s2},$port{p} "
	  . "dbname=postgres target_session_attrs=read-write";
	my ($c, $d, $q) = compare_connections('f2', 'connect', $R{rw_rounds}, $R{rw_n}, $ci_multi);
	row(id => 2, name => 'read-write connect, 2 standbys listed before the primary',
		value => fmt($c, 'ms', 3), comp => 'libpq host=s1,s2,p read-write: ' . fmt($d, 'ms', 3),
		ratio => fmt($q, '', 3), target => 'ratio ≤ 0.5', met => met($q->{med} <= 0.5));
	$detail{2} = sprintf("%d rounds of %d connects (connect + PQfinish) a side, alternating. conmgr lists "
		  . "the instances s1, s2, p in that order; through it, `target_session_attrs=read-write` "
		  . "(`LD_PRELOAD`). Comparator: plain libpq with `host=127.0.0.1,127.0.0.1,127.0.0.1 "
		  . "port=s1,s2,p target_session_attrs=read-write`, which completes a connection to each standby "
		  . "before it reaches the primary.", $R{rw_rounds}, $R{rw_n});
}

# ---------------------------------------------------------------------
# 3, 4. pgbench -S and pgbench -C -S
# ---------------------------------------------------------------------
#
# With $aa, each round also runs plain libpq a second time ("again"): the
# ratio of the two plain runs (the A/A control) shows how far two runs of
# the very same thing differ on this machine, which is the resolution of
# the conmgr / plain ratio.
sub pgbench_figure
{
	my ($id, $rounds, $secs, $aa, @extra) = @_;
	my (%tps, %cpu, @ratio, @aa);
	for my $r (1 .. $rounds)
	{
		my @order = sides($r);
		# the control takes each place in the round in turn
		splice(@order, ($r - 1) % 3, 0, 'again') if $aa;
		for my $side (@order)
		{
			my @pgb = ('pgbench', '-n', '-S', @extra, '-c', '8', '-j', '2', '-T', $secs);
			my @cmd = $side eq 'cm'
			  ? ('env', "LD_PRELOAD=$preload", @pgb, $ci_cm->())
			  : (@pgb, $ci_p->());
			my @c0 = times;
			my $out = run_ok(@cmd);
			my @c1 = times;
			my ($t) = $out =~ /^tps = ([\d.]+)/m or die "bench: no tps in pgbench output:\n$out";
			die "bench: pgbench had failures:\n$out" if $out =~ /number of failed transactions: [1-9]/;
			my ($n) = $out =~ /number of transactions actually processed: (\d+)/;
			push @{ $tps{$side} }, $t;
			# pgbench's own CPU time (user + system) per transaction, in us:
			# what the library costs the client, less sensitive to the noise.
			push @{ $cpu{$side} }, ($c1[2] + $c1[3] - $c0[2] - $c0[3]) * 1e6 / ($n || 1);
		}
		push @ratio, $tps{cm}[-1] / $tps{direct}[-1];
		push @aa, $tps{again}[-1] / $tps{direct}[-1] if $aa;
	}
	$data{"f$id"} = { cm => $tps{cm}, direct => $tps{direct}, ratio => \@ratio };
	$data{"f${id}aa"} = stats(@aa) if $aa;
	$detail{"${id}cpu"} = sprintf(' pgbench\'s own CPU time (user + system, from the kernel\'s child '
		  . 'accounting) per transaction: %s through libpq-cm, %s with plain libpq.',
		fmt(stats(@{ $cpu{cm} }), 'µs', 1), fmt(stats(@{ $cpu{direct} }), 'µs', 1));
	return (stats(@{ $tps{cm} }), stats(@{ $tps{direct} }), stats(@ratio));
}

# Callgrind's instruction count of a finished process, from its output file.
sub callgrind_total
{
	my ($file) = @_;
	my ($n) = PostgreSQL::Test::Utils::slurp_file($file) =~ /^(?:summary|totals): (\d+)/m
	  or die "bench: no total in $file\n";
	return $n;
}

# 3c: the server backend's instructions for one pgbench -S transaction, on a
# scratch instance run under callgrind (every process it forks writes its
# own file when it exits; the backend that served pgbench is the largest).
sub server_instructions
{
	my ($t1, $t2) = @_;
	my $vg = PostgreSQL::Test::Cluster->new('vg');
	$vg->init;
	$vg->append_conf('postgresql.conf', "autovacuum = off\n");
	$vg->start;
	run_ok('pgbench', '-i', '-s', '1', '-q', '-h', $vg->host, '-p', $vg->port, 'postgres');
	$vg->stop;
	my $dir = "$work/cg-server";
	make_path($dir);
	# its output to a file: a pipe nobody reads would stop the server
	my $log = "$dir/postgres.log";
	my $pm = IPC::Run::start([ 'valgrind', '--tool=callgrind', "--callgrind-out-file=$dir/cg.%p",
			'postgres', '-D', $vg->data_dir ], '<', \undef, '>', $log, '2>&1');
	my $e = sub { return eval { PostgreSQL::Test::Utils::slurp_file($log) } // '' };
	wait_until(sub { system('pg_isready', '-q', '-h', $vg->host, '-p', $vg->port) == 0 }, 180)
	  or die "bench: postgres under callgrind did not start:\n" . $e->();
	my %ir;
	for my $t ($t1, $t2)
	{
		my %before = map { $_ => 1 } glob("$dir/cg.*");
		run_ok('pgbench', '-n', '-S', '-c', '1', '-j', '1', '-t', $t, '-h', $vg->host, '-p', $vg->port,
			'postgres');
		my $largest = 0;
		# the backend writes its file as it exits, after pgbench has gone
		wait_until(sub {
			my @new = grep { !$before{$_} } glob("$dir/cg.*");
			$largest = 0;
			for my $f (@new)
			{
				my $n = eval { callgrind_total($f) } // 0;
				$largest = $n if $n > $largest;
			}
			return $largest > 0 && @new >= 2;	# pgbench's first connection, then the backend
		}, 120) or die "bench: no callgrind file from the backend:\n" . $e->();
		$ir{$t} = $largest;
	}
	$pm->signal('INT');
	$pm->finish;
	return ($ir{$t2} - $ir{$t1}) / ($t2 - $t1);
}

if ($only{3})
{
	progress("figure 3: pgbench -S, 8 clients, $R{pgb_rounds} rounds x $R{pgb_secs} s a side");
	my ($c, $d, $q) = pgbench_figure(3, $R{pgb_rounds}, $R{pgb_secs}, 1);
	my $aa = $data{f3aa};

	# 3b. The same transaction counted in instructions (callgrind), which
	# the machine's load does not change: pgbench -S with one client, T1
	# and T2 transactions; (I(T2) - I(T1)) / (T2 - T1) is the cost of one
	# more transaction, without the start-up (connect, the libraries'
	# loading).  Every thread of pgbench counts, the watcher included.
	progress('figure 3b: pgbench -S, instructions per transaction in the client (callgrind)');
	my ($t1, $t2) = $quick ? (500, 1000) : (2000, 4000);
	my %ipt;
	for my $side (qw(cm direct))
	{
		my %ir;
		for my $t ($t1, $t2)
		{
			my @pgb = ('valgrind', '--tool=callgrind', "--callgrind-out-file=$work/cg.$side.$t",
				'pgbench', '-n', '-S', '-c', '1', '-j', '1', '-t', $t);
			my @cmd = $side eq 'cm' ? ('env', "LD_PRELOAD=$preload", @pgb, $ci_cm->()) : (@pgb, $ci_p->());
			my (undef, $err) = run_ok(@cmd);
			($ir{$t}) = $err =~ /Collected : (\d+)/ or die "bench: no callgrind total:\n$err";
		}
		$ipt{$side} = ($ir{$t2} - $ir{$t1}) / ($t2 - $t1);
	}
	my $iq = $ipt{cm} / $ipt{direct};
	progress('figure 3c: the server backend\'s instructions per transaction (postgres under callgrind)');
	my $server = server_instructions($t1, $t2);
	my $whole = ($ipt{direct} + $server) / ($ipt{cm} + $server);

	# Figure 3's verdict: a ratio under 0.99 that the A/A control also
	# reaches is noise this machine cannot resolve; 3c then decides.
	my $verdict = $q->{med} >= 0.99 ? 'met'
	  : $q->{med} >= $aa->{min} ? sprintf('not resolved: inside the A/A range; 3c: %s', met($whole >= 0.99))
	  : 'MISSED';
	row(id => 3, name => 'pgbench -S TPS, 8 clients, through libpq-cm',
		value => fmt($c, 'tps', 0), comp => 'plain libpq: ' . fmt($d, 'tps', 0)
		  . '; A/A control, plain / plain in the same rounds: ratio ' . fmt($aa, '', 3),
		ratio => fmt($q, '', 3), target => 'ratio ≥ 0.99', met => $verdict);
	$detail{3} = sprintf("`pgbench -n -S -c 8 -j 2`, %d rounds of %d s a side (%d s a side in all), "
		  . "alternating; through conmgr with `LD_PRELOAD=libpq-cm.so.1` and "
		  . "`target_session_attrs=read-write`, against the same primary directly without it. Scale 1. "
		  . "Each round also runs plain libpq a second time, at a place in the round that rotates: the "
		  . "ratio of the two plain runs (the A/A control, %s) is what this machine makes of two runs of "
		  . "the same thing, so a conmgr / plain ratio inside its range does not tell a cost from "
		  . "noise; figures 3b and 3c measure the library's cost without the noise.",
		$R{pgb_rounds}, $R{pgb_secs}, $R{pgb_rounds} * $R{pgb_secs}, fmt($aa, '', 3)) . delete $detail{'3cpu'};
	row(id => '3b', name => 'pgbench -S, instructions per transaction in the client (callgrind)',
		value => sprintf('%.0f', $ipt{cm}), comp => sprintf('plain libpq: %.0f', $ipt{direct}),
		ratio => sprintf('%.3f', $iq), target => '—', met => '—');
	$detail{'3b'} = sprintf("`valgrind --tool=callgrind pgbench -n -S -c 1 -j 1 -t T`, T = %d and %d, "
		  . "through libpq-cm (`LD_PRELOAD`) and plain; the difference of the two totals over %d "
		  . "transactions is the client's instructions for one transaction, start-up left out, every "
		  . "thread counted. libpq-cm adds %.0f instructions a transaction (%.1f %% of the client's): "
		  . "the wrappers in front of each libpq call; after each call that may do I/O, the check "
		  . "that libpq still holds its socket, so that the watcher's duplicate of it is closed with "
		  . "libpq's (docs/libpq-cm.md, \"Whose socket the thread shuts down\"); and libc's "
		  . "multi-threaded paths (the watcher "
		  . "thread makes the process multi-threaded, so each send, recv and malloc takes the locked "
		  . "path). It adds no system call to a transaction: the SQL connection is libpq's own. "
		  . "The count varies a little from run to run, with how often pgbench finds the reply "
		  . "not there yet (each such turn is one more pass through the wrappers).",
		$t1, $t2, $t2 - $t1, $ipt{cm} - $ipt{direct}, 100 * ($iq - 1));
	row(id => '3c', name => 'pgbench -S, instructions per transaction, client + server backend',
		value => sprintf('%.0f', $ipt{cm} + $server), comp => sprintf('plain libpq: %.0f', $ipt{direct} + $server),
		ratio => sprintf('%.4f (plain / libpq-cm)', $whole), target => '≥ 0.99, as figure 3',
		met => met($whole >= 0.99));
	$detail{'3c'} = sprintf("The server's part of the same transaction: a scratch instance (scale 1, "
		  . "autovacuum off) started as `valgrind --tool=callgrind postgres`, `pgbench -n -S -c 1 -t T` "
		  . "with T = %d and %d; the backend that served it (the largest callgrind file of the run) "
		  . "executed %.0f instructions a transaction. The server cannot tell libpq-cm from libpq (the "
		  . "SQL connection is direct, the same protocol), and the system calls of a transaction are the "
		  . "same on both sides, so the kernel's share is the same too. Client + server: %.0f through "
		  . "libpq-cm, %.0f plain; where the CPU is the bottleneck, as in figure 3, the throughput ratio "
		  . "this work allows is plain / libpq-cm = %.4f (the kernel's equal share would bring it "
		  . "closer to 1).",
		$t1, $t2, $server, $ipt{cm} + $server, $ipt{direct} + $server, $whole);
}

if ($only{4})
{
	progress("figure 4: pgbench -C -S, 8 clients, $R{pgbc_rounds} rounds x $R{pgbc_secs} s a side");
	my ($c, $d, $q) = pgbench_figure(4, $R{pgbc_rounds}, $R{pgbc_secs}, 0, '-C');
	row(id => 4, name => 'pgbench -C -S TPS (a connection per transaction)',
		value => fmt($c, 'tps', 0), comp => 'plain libpq: ' . fmt($d, 'tps', 0),
		ratio => fmt($q, '', 3), target => 'ratio ≥ 0.90', met => met($q->{med} >= 0.90));
	$detail{4} = sprintf("`pgbench -n -S -C -c 8 -j 2`, %d rounds of %d s a side, alternating, as figure 3.",
		$R{pgbc_rounds}, $R{pgbc_secs}) . delete $detail{'4cpu'};
}

# The pid of a conmgr role ("listener", "heartbeat 0", ...).
sub role_pid
{
	my ($cm, $role) = @_;
	return $cm->role_pid($role) // die "bench: no conmgr $role in ${\ $cm->cmdata }\n";
}

# cmload resolve against $cm: (resolves per second, listener CPU us per resolve).
sub resolve_rate
{
	my ($cm, $listener, @extra) = @_;
	my $hz = POSIX::sysconf(POSIX::_SC_CLK_TCK());
	my $tk0 = proc_ticks($listener);
	# -P: probe and RESOLVE in one packet, as libpq-cm sends them to a
	# conmgr it has met (every connection of a process but its first)
	my $out = run_ok($cmload, 'resolve', '-p', $cm->port, '-c', $R{resolve_clients},
		'-d', $R{resolve_secs}, '-P', @extra);
	my $tk1 = proc_ticks($listener);
	my ($n, $rate, $gen) = $out =~ /n=(\d+) per_s=([\d.]+) failed=\d+ cpu_us_per=([\d.]+)/
	  or die "bench: cmload resolve:\n$out";
	return ($rate, ($tk1 - $tk0) / $hz * 1e6 / ($n || 1), $gen);
}

# ---------------------------------------------------------------------
# 8. conmgr with 1,000 application sessions (and 10,000 for 8c)
# ---------------------------------------------------------------------

# The instance that the sessions of cmload attach $att are attached to
# (s2) stops dead; adds the sessions, those missed and the first and last
# arrival in ms after conmgr's detection to %$acc (total, missed, first,
# last), and returns the sessions and those that got INSTANCE_DOWN.
sub notice_down
{
	my ($att, $acc) = @_;
	my @pids = instance_pids($node{s2});
	kill 'STOP', @pids;
	my $res = bg_finish($att, 60);
	my $st = cm_status($cm1)->{1};
	kill 'CONT', @pids;
	my ($n, $got, $first_us, $last_us) =
	  $res =~ /^down n=(\d+) got=(\d+) eof=\d+ missed=\d+ first_us=(\d+) last_us=(\d+)/m
	  or die "bench: cmload attach did not report:\n$res";
	die "bench: conmgr does not show s2 down\n" unless $st && $st->{state} ne 'up';
	$acc->{total} += $n;
	$acc->{missed} += $n - $got;
	push @{ $acc->{first} }, ($first_us - $st->{since}) / 1000;
	push @{ $acc->{last} }, ($last_us - $st->{since}) / 1000;
	return ($n, $got);
}

if ($only{8})
{
	progress("figure 8: conmgr with $R{app_sessions} application sessions, $R{notice_rounds} rounds");
	my (@rate, @rate0, @cpu, @cpu0, @gen, @bound, @last, @first, $missed, $total);
	my $ncpu = () = PostgreSQL::Test::Utils::slurp_file('/proc/cpuinfo') =~ /^processor\s*:/mg;
	$missed = 0;
	$total = 0;
	my $listener = role_pid($cm1, 'listener');
	for my $r (1 .. $R{notice_rounds})
	{
		cm_wait_up($cm1, 1, 1, 30) or die "bench: s2 is not up in conmgr";
		# Resolve throughput without, then with the 1,000 sessions attached.
		my ($rate0, $cpu0) = resolve_rate($cm1, $listener);
		push @rate0, $rate0;
		push @cpu0, $cpu0;
		my $att = bg($cmload, 'attach', '-p', $cm1->port, '-n', $R{app_sessions}, '-i', 1, '-w', 20);
		bg_wait($att, qr/^attached n=/m, 60) or die "bench: cmload attach: ${ $att->{out} }";
		my ($rate, $cpu, $gen) = resolve_rate($cm1, $listener);
		push @rate, $rate;
		push @cpu, $cpu;
		push @gen, $gen;
		# What the machine allows: every core busy with the listener and the
		# load generator, nothing else (the kernel's loopback work is
		# charged to them).
		push @bound, $ncpu * 1e6 / ($cpu + $gen);
		my %acc = (total => 0, missed => 0, first => \@first, last => \@last);
		my ($n, $got) = notice_down($att, \%acc);
		$total += $acc{total};
		$missed += $acc{missed};
		progress(sprintf('  round %d: %.0f resolves/s (%.0f with no session attached; listener %.0f µs, '
			  . 'generator %.0f µs of CPU a resolve); notices %.1f–%.1f ms after detection, %d of %d',
			$r, $rate, $rate0, $cpu, $gen, $first[-1], $last[-1], $got, $n));
	}
	cm_wait_up($cm1, 1, 1, 30);
	# The same load ending each session with a FIN instead of libpq-cm's
	# reset, after the rounds: the TIME_WAIT sockets it leaves behind (a
	# minute) would slow every round after it.
	my (@rate_fin, @cpu_fin, @gen_fin);
	for (1 .. ($quick ? 1 : 3))
	{
		my ($rate, $cpu, $gen) = resolve_rate($cm1, $listener, '-F');
		push @rate_fin, $rate;
		push @cpu_fin, $cpu;
		push @gen_fin, $gen;
	}
	progress(sprintf('  ending sessions with a FIN: %.0f resolves/s (listener %.0f µs, generator %.0f µs '
		  . 'a resolve)', stats(@rate_fin)->{med}, stats(@cpu_fin)->{med}, stats(@gen_fin)->{med}));
	# The listener's cost of a resolve counted, not timed: its user-space
	# instructions under callgrind, in a conmgr of its own in front of the
	# same instances with as many sessions attached
	progress('figure 8a counted: the listener\'s instructions per resolve (callgrind)');
	my ($few, $many) = $quick ? (100, 600) : (200, 1200);
	my $ipr = CmResolveCount::instructions(tree => $top, sessions => $R{app_sessions},
		instances => [ map { [ $port{$_}, $wd{$_} ] } qw(s1 s2 p) ], few => $few, many => $many);
	my ($rs, $ls, $fs) = (stats(@rate), stats(@last), stats(@first));
	my ($cs, $gs, $bs) = (stats(@cpu), stats(@gen), stats(@bound));
	row(id => '8a', name => "conmgr, $R{app_sessions} sessions attached: resolve throughput",
		value => fmt($rs, 'resolves/s', 0),
		comp => sprintf('listener CPU %s a resolve = %.0f resolves/s per core (%.0f instructions a '
			  . 'resolve, counted); this machine\'s bound with the generator on the same %d cores: %s',
			fmt($cs, 'µs', 1), 1e6 / $cs->{med}, $ipr, $ncpu, fmt($bs, 'resolves/s', 0)),
		ratio => '—', target => '≥ 20,000 resolves/s', met => met($rs->{med} >= 20000));
	row(id => '8b', name => "conmgr: detection → INSTANCE_DOWN at all $R{app_sessions} sessions",
		value => fmt($ls, 'ms', 1) . ", missed $missed of $total", comp => '—', ratio => '—',
		target => '≤ 100 ms, 0 missed', met => met($ls->{med} <= 100 && $missed == 0));

	# 8b at ten times the sessions.
	my $nbig = $R{app_sessions_big};
	progress("figure 8c: INSTANCE_DOWN at $nbig application sessions, $R{notice_rounds_big} rounds");
	my @attach_s;
	my %big = (total => 0, missed => 0, first => [], last => []);
	for my $r (1 .. $R{notice_rounds_big})
	{
		cm_wait_up($cm1, 1, 1, 30) or die "bench: s2 is not up in conmgr";
		my $t0 = time();
		my $att = bg($cmload, 'attach', '-p', $cm1->port, '-n', $nbig, '-i', 1, '-w', 30);
		bg_wait($att, qr/^attached n=/m, 120) or die "bench: cmload attach: ${ $att->{out} }";
		push @attach_s, time() - $t0;
		my ($n, $got) = notice_down($att, \%big);
		progress(sprintf('  round %d: %d sessions attached in %.1f s; notices %.1f–%.1f ms after '
			  . 'detection, %d of %d', $r, $n, $attach_s[-1], $big{first}[-1], $big{last}[-1], $got, $n));
	}
	cm_wait_up($cm1, 1, 1, 30);
	my $lb = stats(@{ $big{last} });
	row(id => '8c', name => "conmgr: detection → INSTANCE_DOWN at all $nbig sessions",
		value => fmt($lb, 'ms', 1) . ", missed $big{missed} of $big{total}",
		comp => sprintf('%s at %d sessions', fmt($ls, 'ms', 1), $R{app_sessions}),
		ratio => sprintf('%.2f', $lb->{med} / ($ls->{med} || 1)),
		target => '≤ 100 ms, 0 missed', met => met($lb->{med} <= 100 && $big{missed} == 0));
	$detail{8} = sprintf("Each round: `cmload attach` opens %d application sessions to conmgr (probe, "
		  . "RESOLVE, ATTACHED to standby s2) and keeps them; meanwhile `cmload resolve` runs %d "
		  . "client threads (enough to keep both cores busy; with 4, the clients' waits for their "
		  . "answers left the rate about a quarter under the bound below) doing whole sessions "
		  . "(connect, probe and RESOLVE in one packet as "
		  . "libpq-cm sends them to a conmgr it has met, candidates, reset) back to back for "
		  . "%d s; then every process of s2 is stopped (SIGSTOP), conmgr declares it down after "
		  . "heartbeat_timeout = %d s, and the time from that detection (the instance's `since_us` in "
		  . "`cm_ctl status --json`) to the arrival of INSTANCE_DOWN at each session is taken. First "
		  . "notice: %s after detection. %d rounds. Each round also measures the resolve throughput "
		  . "with no session attached, just before: %s; and the listener's CPU time (utime + stime of "
		  . "`conmgr: listener` in `/proc/PID/stat`) per resolve: %s with no session attached, %s with "
		  . "%d. The load generator (`cmload resolve`, its own `getrusage`) spends %s of CPU per "
		  . "resolve: each resolve is a whole TCP session on loopback (handshake, probe + RESOLVE, "
		  . "HELLO + candidates in one segment, reset), whose kernel work is charged to the two "
		  . "processes. On %d cores that share both, the throughput cannot exceed cores / (listener "
		  . "+ generator CPU per resolve) = %s; the listener alone would serve 1 / its CPU per "
		  . "resolve = %.0f resolves/s on one core. The generator ends each session as libpq-cm "
		  . "does, with a reset (docs/protocol.md, 2.3); after the rounds, %d runs of the same load "
		  . "ending each session with an orderly close (`-F`: FIN, the client's end then waits in "
		  . "TIME_WAIT for a minute and every later connect() searches past those for a free "
		  . "local port) measure why: %s, listener %s and generator %s of CPU a resolve. "
		  . "The listener's CPU per resolve is timed, so it moves with the machine's load; its "
		  . "instructions per resolve are counted: a conmgr of its own under valgrind's callgrind, "
		  . "in front of the same instances with %d sessions attached, serves %d and then %d "
		  . "resolves one after another (`cmresolve -r N -P`), each in a life of its own, and the "
		  . "difference of the listener's totals over the %d resolves between is %.0f instructions "
		  . "a resolve, in user space (regress/lib/CmResolveCount.pm; "
		  . "`regress/bench/listener-instr REV` compares it with another revision's, with the "
		  . "system calls a resolve makes).",
		$R{app_sessions}, $R{resolve_clients}, $R{resolve_secs}, $hb_timeout, fmt($fs, 'ms', 1),
		$R{notice_rounds}, fmt(stats(@rate0), 'resolves/s', 0), fmt(stats(@cpu0), 'µs', 0),
		fmt(stats(@cpu), 'µs', 0), $R{app_sessions}, fmt($gs, 'µs', 0), $ncpu, fmt($bs, 'resolves/s', 0),
		1e6 / $cs->{med}, scalar(@rate_fin), fmt(stats(@rate_fin), 'resolves/s', 0),
		fmt(stats(@cpu_fin), 'µs', 0), fmt(stats(@gen_fin), 'µs', 0), $R{app_sessions}, $few, $many,
		$many - $few, $ipr);
	$detail{8} .= sprintf(" 8c: the same notice at %d sessions, %d rounds of `cmload attach -n %d` "
		  . "(the open-files limit of conmgr and cmload is the hard limit, %s here, which "
		  . "conmgr's start-up check wants above 9 + 2 × instances + max_connections; "
		  . "max_connections = 0 sets no limit), without the resolve load: attaching took %s; first "
		  . "notice %s after detection.",
		$nbig, $R{notice_rounds_big}, $nbig, $nofile, fmt(stats(@attach_s), 's', 1),
		fmt(stats(@{ $big{first} }), 'ms', 1));
}

# ---------------------------------------------------------------------
# 6. promote -> first read-write connect
# ---------------------------------------------------------------------
if ($only{6})
{
	progress("figure 6: promote → first read-write connect, $R{promote_rounds} failovers");
	my %fp = map { $_ => PostgreSQL::Test::Cluster::get_free_port() } qw(a b);
	my %fw = map { $_ => PostgreSQL::Test::Cluster::get_free_port() } qw(a b);
	my %fnode;
	$fnode{a} = PostgreSQL::Test::Cluster->new('fa0', port => $fp{a});
	$fnode{a}->init(allows_streaming => 1);
	$fnode{a}->append_conf('postgresql.conf', watchdog_conf($fw{a}));
	$fnode{a}->start;
	$fnode{a}->backup('fb0');
	$fnode{b} = PostgreSQL::Test::Cluster->new('fb0', port => $fp{b});
	$fnode{b}->init_from_backup($fnode{a}, 'fb0', has_streaming => 1);
	$fnode{b}->append_conf('postgresql.conf', "watchdog.port = $fw{b}\n");
	$fnode{b}->start;
	my %idx = (a => 0, b => 1);
	my $cm6 = start_conmgr('cm6', [ $fp{a}, $fw{a} ], [ $fp{b}, $fw{b} ]);
	my ($prim, $stby) = qw(a b);
	my (%lat, @ratio);
	for my $r (1 .. $R{promote_rounds})
	{
		cm_wait_up($cm6, $idx{$prim}, 0, 30) && cm_wait_up($cm6, $idx{$stby}, 1, 30)
		  or die "bench: figure 6: conmgr does not see the pair up\n";
		# The primary's host dies: every process stops (its TCP port still
		# accepts connections that nobody answers, like a hung host).
		my @pids = instance_pids($fnode{$prim});
		kill 'STOP', @pids;
		wait_until(sub { (cm_status($cm6)->{ $idx{$prim} }{state} // '') ne 'up' }, 10)
		  or die "bench: figure 6: conmgr did not see the primary go\n";
		my $watch = bg($pqtiming, 'waitpromote', "host=127.0.0.1 port=$fp{$stby} dbname=postgres", 30);
		bg_wait($watch, qr/^watching/m, 10) or die "bench: waitpromote: ${ $watch->{out} }";
		my %loop;
		$loop{cm} = bg('env', "LD_PRELOAD=$preload", $pqtiming, 'firstok',
			"host=127.0.0.1 port=${\ $cm6->port } dbname=postgres target_session_attrs=read-write connect_timeout=2",
			5, 30);
		$loop{direct} = bg($pqtiming, 'firstok',
			"host=127.0.0.1,127.0.0.1 port=$fp{$prim},$fp{$stby} dbname=postgres "
			  . "target_session_attrs=read-write connect_timeout=2", 5, 30);
		bg_wait($loop{$_}, qr/^looping/m, 10) for qw(cm direct);
		# Promote at a random point of libpq's 2-second attempt on the hung host.
		usleep(300_000 + int(rand(2_000_000)));
		$fnode{$stby}->promote;
		my ($promoted) = bg_finish($watch, 15) =~ /^promoted at_us=(\d+)/m
		  or die "bench: figure 6: the promotion was not seen\n";
		for my $side (qw(cm direct))
		{
			my $o = bg_finish($loop{$side}, 30);
			my ($at) = $o =~ /^firstok at_us=(\d+)/m or die "bench: figure 6, $side: no connection\n$o";
			push @{ $lat{$side} }, ($at - $promoted) / 1000;
		}
		push @ratio, $lat{cm}[-1] / ($lat{direct}[-1] || 1e-9);
		progress(sprintf('  failover %d: conmgr %.0f ms, libpq multi-host %.0f ms', $r, $lat{cm}[-1],
			$lat{direct}[-1]));
		# The old primary is gone for good; a new standby of the new primary
		# takes its port and watchdog port.
		kill 'KILL', @pids;
		wait_until(sub { !grep { kill 0, $_ } @pids }, 10);
		unlink($fnode{$prim}->host . "/.s.PGSQL.$fp{$prim}.lock");
		$fnode{$prim}->{_pid} = undef;
		last if $r == $R{promote_rounds};
		$fnode{$stby}->backup("fb$r");
		my $new = PostgreSQL::Test::Cluster->new("f$prim$r", port => $fp{$prim});
		$new->init_from_backup($fnode{$stby}, "fb$r", has_streaming => 1);
		$new->append_conf('postgresql.conf', "watchdog.port = $fw{$prim}\n");
		$new->start;
		$fnode{$prim} = $new;
		($prim, $stby) = ($stby, $prim);
	}
	stop_conmgr($cm6);
	$_->stop('immediate') for grep { defined $_->{_pid} } values %fnode;
	$data{f6} = \%lat;
	my ($c, $d, $q) = (stats(@{ $lat{cm} }), stats(@{ $lat{direct} }), stats(@ratio));
	my $target = $check_attr_ms + 50;
	row(id => 6, name => 'promote → first read-write connect',
		value => fmt($c, 'ms', 0), comp => 'libpq host=old,new connect_timeout=2: ' . fmt($d, 'ms', 0),
		ratio => fmt($q, '', 3), target => "≤ check_attr_interval + 50 ms = $target ms",
		met => met($c->{med} <= $target));
	$detail{6} = sprintf("%d failovers of a primary/standby pair with the watchdog (check_attr_interval "
		  . "= %d ms) and a conmgr (heartbeat %d s / %d s). Each: every process of the primary is "
		  . "stopped (SIGSTOP: its port still accepts TCP connections nobody answers, as a hung host "
		  . "would); once conmgr has declared it down, two clients loop on read-write connects (5 ms "
		  . "between failures): through conmgr (`LD_PRELOAD`) and plain libpq with "
		  . "`host=old,new target_session_attrs=read-write connect_timeout=2`; then the standby is "
		  . "promoted. Time from the end of recovery (a third client polling `pg_is_in_recovery()` "
		  . "every 1 ms) to each client's first read-write connection. The old primary is then "
		  . "killed and rebuilt as the new primary's standby for the next round.",
		$R{promote_rounds}, $check_attr_ms, $hb_interval, $hb_timeout);
}

# ---------------------------------------------------------------------
# 11. forward ports, side by side with HAProxy and a direct connection
# ---------------------------------------------------------------------

# A process's CPU time in ns, every thread of it (the scheduler's
# accounting, /proc/PID/task/TID/schedstat), and its context switches
# (voluntary + involuntary, counted by the kernel).
sub proc_cpu_all
{
	my ($pids) = @_;
	my ($ns, $cs) = (0, 0);
	for my $t (map { glob("/proc/$_/task/*") } split /,/, $pids)
	{
		my ($n) = split ' ', (eval { PostgreSQL::Test::Utils::slurp_file("$t/schedstat") } // '0');
		$ns += $n;
		my $st = eval { PostgreSQL::Test::Utils::slurp_file("$t/status") } // '';
		$cs += $1 while $st =~ /^(?:non)?voluntary_ctxt_switches:\s+(\d+)/mg;
	}
	return ($ns, $cs);
}

# The system calls of process $pid (every thread; or of several, "PID,PID")
# during $run->(), counted by strace -c: (total, { name => calls }).
sub count_syscalls
{
	my ($pid, $run) = @_;
	my $file = "$work/strace.$pid." . time();
	my $st = start_daemon('strace', "$file.log", 'strace', '-c', '-f', '-q', '-o', $file, '-p', $pid);
	# attached once strace has stopped each process once
	wait_until(sub {
		for my $p (split /,/, $pid)
		{
			my $s = eval { PostgreSQL::Test::Utils::slurp_file("/proc/$p/status") } // '';
			return 0 unless $s =~ /^TracerPid:\s+[1-9]/m;
		}
		return 1;
	}, 10) or die "bench: strace did not attach to $pid:\n" . (eval { PostgreSQL::Test::Utils::slurp_file("$file.log") } // '');
	$run->();
	stop_daemon($st, 'INT');
	my $text = eval { PostgreSQL::Test::Utils::slurp_file($file) } // '';
	my %calls;
	for my $l (split /\n/, $text)
	{
		my @f = split ' ', $l;
		next unless @f >= 5 && $f[0] =~ /^[\d.]+$/ && $f[3] =~ /^\d+$/;
		$calls{ $f[-1] } = $f[3];
	}
	my $total = delete $calls{total} // die "bench: no strace summary for $pid:\n$text";
	return ($total, \%calls);
}

# The TCP segments the machine has sent (Tcp: OutSegs in /proc/net/snmp).
sub tcp_out_segs
{
	my @l = grep { /^Tcp:/ } split /\n/, PostgreSQL::Test::Utils::slurp_file('/proc/net/snmp');
	my @k = split ' ', $l[0];
	my @v = split ' ', $l[1];
	my ($i) = grep { $k[$_] eq 'OutSegs' } 0 .. $#k;
	defined $i or die "bench: no Tcp OutSegs in /proc/net/snmp\n";
	return $v[$i];
}

# The instructions process $pid executes during $run->(), counted by the
# processor (perf stat; as an unprivileged user, user space only):
# (count, event name), or (undef, why not).
sub count_instructions
{
	my ($pid, $run) = @_;
	return (undef, 'perf is missing') unless `sh -c 'command -v perf'`;
	my $file = "$work/perf.$pid." . time();
	my $pp = start_daemon('perf', "$file.log", 'perf', 'stat', '-x', ',', '-e', 'instructions', '-p', $pid,
		'-o', $file);
	# perf opens its counters at once, or exits saying why
	usleep(500_000);
	$run->();
	stop_daemon($pp, 'INT');
	my $text = (eval { PostgreSQL::Test::Utils::slurp_file($file) } // '')
	  . (eval { PostgreSQL::Test::Utils::slurp_file("$file.log") } // '');
	return ($1, $2) if $text =~ /^(\d+),[^,]*,(instructions[^,]*),/m;
	my ($why) = $text =~ /^(<[^>]+>),[^,]*,instructions/m;
	($why) = $text =~ /^(?:Error:\s*)?(\S.*)$/m unless $why;
	$why //= 'perf gave no count';
	return (undef, "perf stat -e instructions: $why");
}

if ($only{11})
{
	my $name_a = 'connect + SELECT 1 + disconnect through a forward port (median latency)';
	my $name_b = 'pgbench -S TPS, 8 clients, kept connections, through a forward port';
	my $name_c = 'pgbench -S: CPU per transaction of the forwarder processes';
	if (!-x $haproxy)
	{
		my $why = "$haproxy is missing: tools/install-deps bench installs it";
		row(id => $_->[0], name => $_->[1], value => "not measured ($why)", comp => 'HAProxy',
			ratio => '—', target => $_->[2], met => 'not measured')
		  for [ '11a', $name_a, '≤ HAProxy\'s' ], [ '11b', $name_b, '≥ HAProxy\'s and ≥ 0.80 × direct' ],
		  [ '11b-cpu', $name_c, '≤ HAProxy\'s process' ];
		$detail{'11a'} = "Not measured: $why.";
	}
	else
	{
		progress('figure 11: an instance, conmgr with a forward port and HAProxy in front of it');
		my $wdp = PostgreSQL::Test::Cluster::get_free_port();
		my $fwn = PostgreSQL::Test::Cluster->new('fw');
		$fwn->init;
		$fwn->append_conf('postgresql.conf', watchdog_conf($wdp, "shared_buffers = 128MB\n"));
		$fwn->start;
		run_ok('pgbench', '-i', '-s', '1', '-q', '-h', '127.0.0.1', '-p', $fwn->port, 'postgres');
		my $fwport = PostgreSQL::Test::Cluster::get_free_port();
		my $cm11 = start_conmgr('cm11', [ $fwn->port, $wdp ], { conf => "forward_ports = 'read-write=$fwport'\n" });
		cm_wait_up($cm11, 0, 0, 30) or die "bench: figure 11: conmgr does not see the instance up\n"
		  . $cm11->log_content;
		# HAProxy as one sets it up for PostgreSQL, TCP mode, its defaults
		# otherwise (as many threads as cores), in front of the same instance.
		my $haport = PostgreSQL::Test::Cluster::get_free_port();
		my $hacfg = "$work/haproxy.cfg";
		PostgreSQL::Test::Utils::append_to_file($hacfg, "global\n  maxconn 1000\n\ndefaults\n  mode tcp\n"
			  . "  timeout connect 2s\n  timeout client 1h\n  timeout server 1h\n\nlisten pg\n"
			  . "  bind 127.0.0.1:$haport\n  server p 127.0.0.1:" . $fwn->port . "\n");
		my $hapid = start_daemon('haproxy', "$work/haproxy.log", $haproxy, '-db', '-f', $hacfg);
		my %ci = (
			fw => "host=127.0.0.1 port=$fwport dbname=postgres",
			haproxy => "host=127.0.0.1 port=$haport dbname=postgres",
			direct => "host=127.0.0.1 port=" . $fwn->port . " dbname=postgres");
		for my $side (sort keys %ci)
		{
			wait_until(sub { system('pg_isready', '-q', '-d', $ci{$side}) == 0 }, 30)
			  or die "bench: figure 11: no connection through $side ($ci{$side})\n"
			  . (eval { PostgreSQL::Test::Utils::slurp_file("$work/haproxy.log") } // '');
		}
		# every forwarder process, as "PID,PID" (strace, perf and the CPU
		# time take them together)
		my $fwpid = join(',', $cm11->role_pids('forwarder'))
		  or die "bench: no conmgr forwarder in ${\ $cm11->cmdata }\n";
		my $nfw = () = split /,/, $fwpid;
		my ($haver) = `$haproxy -v` =~ /version (\S+)/;
		$haver //= '?';
		my $hathreads = () = glob("/proc/$hapid/task/*");
		# The three sides take each place in the round in turn.
		my @three = qw(fw haproxy direct);
		my $order = sub { my ($r) = @_; my $k = ($r - 1) % 3; return @three[ map { ($_ + $k) % 3 } 0 .. 2 ]; };

		# 11a.
		progress("figure 11a: connect + SELECT 1 + disconnect, $R{conn_rounds} rounds x $R{conn_n} connections a side");
		my (%med, @qa, @qd);
		for my $r (1 .. $R{conn_rounds})
		{
			for my $side ($order->($r))
			{
				my ($m) = run_ok($pqtiming, 'conn', $R{conn_n}, $ci{$side}) =~ /median_us=([\d.]+)/;
				push @{ $med{$side} }, $m / 1000;
			}
			push @qa, $med{fw}[-1] / $med{haproxy}[-1];
			push @qd, $med{fw}[-1] / $med{direct}[-1];
		}
		# The same connections, each proxy's system calls counted (strace).
		my %pid = (fw => $fwpid, haproxy => $hapid);
		my %sca;
		for my $side (qw(fw haproxy))
		{
			my ($total) = count_syscalls($pid{$side}, sub { run_ok($pqtiming, 'conn', $R{conn_n}, $ci{$side}); });
			$sca{$side} = $total / $R{conn_n};
		}
		my ($a_fw, $a_ha, $a_d, $a_q) = (stats(@{ $med{fw} }), stats(@{ $med{haproxy} }), stats(@{ $med{direct} }),
			stats(@qa));
		row(id => '11a', name => $name_a, value => fmt($a_fw, 'ms', 3),
			comp => 'HAProxy ' . $haver . ': ' . fmt($a_ha, 'ms', 3) . '; direct: ' . fmt($a_d, 'ms', 3)
			  . '; forward port / direct ' . fmt(stats(@qd), '', 3)
			  . sprintf('; system calls a connection, counted: forwarder %.1f, HAProxy %.1f', $sca{fw}, $sca{haproxy}),
			ratio => fmt($a_q, '', 3) . ' (forward port / HAProxy)', target => '≤ HAProxy\'s (ratio ≤ 1)',
			met => met($a_q->{med} <= 1));
		$detail{'11a'} = sprintf("%d rounds; in each, %d connections (connect, `SELECT 1`, PQfinish) with the "
			  . "same plain libpq program (`pqtiming conn`, no libpq-cm) through conmgr's forward port "
			  . "(`forward_ports = 'read-write=PORT'`), through HAProxy %s and straight to the instance, the "
			  . "three in an order that rotates round by round so that the machine's noise falls on all "
			  . "three alike. One instance (scale 1, the watchdog), one conmgr (heartbeat %d s / %d s) with "
			  . "the forward port, HAProxy in TCP mode with its defaults otherwise (%d threads here), its "
			  . "configuration written by the benchmark (`mode tcp`, `listen` with one `server`, no health "
			  . "check: it has one server to go to). Value: the median of the per-round medians; the ratio "
			  . "is taken within each round, then its median. Counted: after the rounds, %d more "
			  . "connections through each proxy under `strace -c -f -p PID`: %.1f system calls a connection "
			  . "in the forwarder, %.1f in HAProxy's process.",
			$R{conn_rounds}, $R{conn_n}, $haver, $hb_interval, $hb_timeout, $hathreads, $R{conn_n}, $sca{fw},
			$sca{haproxy});

		# 11b.
		progress("figure 11b: pgbench -S, 8 clients, kept connections, $R{pgb_rounds} rounds x $R{pgb_secs} s a side");
		my (%tps, %cpu, %csw, @qb_ha, @qb_d, @qc);
		for my $r (1 .. $R{pgb_rounds})
		{
			for my $side ($order->($r))
			{
				my @c0 = $pid{$side} ? proc_cpu_all($pid{$side}) : ();
				my $out = run_ok('pgbench', '-n', '-S', '-c', '8', '-j', '2', '-T', $R{pgb_secs}, $ci{$side});
				my @c1 = $pid{$side} ? proc_cpu_all($pid{$side}) : ();
				my ($t) = $out =~ /^tps = ([\d.]+)/m or die "bench: no tps in pgbench output:\n$out";
				die "bench: pgbench had failures:\n$out" if $out =~ /number of failed transactions: [1-9]/;
				my ($n) = $out =~ /number of transactions actually processed: (\d+)/;
				push @{ $tps{$side} }, $t;
				next unless $pid{$side};
				push @{ $cpu{$side} }, ($c1[0] - $c0[0]) / 1000 / ($n || 1);
				push @{ $csw{$side} }, ($c1[1] - $c0[1]) / ($n || 1);
			}
			push @qb_ha, $tps{fw}[-1] / $tps{haproxy}[-1];
			push @qb_d, $tps{fw}[-1] / $tps{direct}[-1];
			push @qc, $cpu{fw}[-1] / $cpu{haproxy}[-1];
		}
		# The same load with a fixed number of transactions, each proxy's
		# system calls counted (strace slows the traced process: no TPS here).
		my $ntx = $quick ? 1000 : 4000;
		progress("figure 11b: the same load, 8 x $ntx transactions a side, each proxy's system calls counted (strace)");
		my %sc;
		for my $side (qw(fw haproxy))
		{
			my ($total, $calls) = count_syscalls($pid{$side}, sub {
				run_ok('pgbench', '-n', '-S', '-c', '8', '-j', '2', '-t', $ntx, $ci{$side});
			});
			$sc{$side} = { per => $total / (8 * $ntx), calls => $calls };
		}
		# The TCP segments a transaction takes, from the kernel's counters
		# (machine-wide; the heartbeats add a few a second to thousands):
		# what the extra hop costs the network stack.
		my %segs;
		for my $side (qw(fw haproxy direct))
		{
			my $s0 = tcp_out_segs();
			run_ok('pgbench', '-n', '-S', '-c', '8', '-j', '2', '-t', $ntx, $ci{$side});
			$segs{$side} = (tcp_out_segs() - $s0) / (8 * $ntx);
		}
		# and counted by the processor, where it has counters perf can read
		my %ins;
		for my $side (qw(fw haproxy))
		{
			my ($n, $ev) = count_instructions($pid{$side}, sub {
				run_ok('pgbench', '-n', '-S', '-c', '8', '-j', '2', '-t', $ntx, $ci{$side});
			});
			$ins{$side} = defined $n ? sprintf('%.0f %s', $n / (8 * $ntx), $ev) : undef;
			$ins{why} = $ev unless defined $n;
		}
		my $ins_text = defined $ins{fw} && defined $ins{haproxy}
		  ? "Instructions per transaction, counted by the processor (`perf stat -e instructions -p PID` over "
		  . "the same load; as an unprivileged user, user space only, so the kernel's work is not in them): "
		  . "forwarder $ins{fw}, HAProxy $ins{haproxy}."
		  : 'The instructions could not be counted here (' . ($ins{why} // '?') . '; a virtual machine '
		  . 'often has no hardware counters), so what is counted is the system calls.';
		my $per_call = sub {
			my ($side) = @_;
			my $c = $sc{$side}{calls};
			return join(', ', map { sprintf('%s %.2f', $_, $c->{$_} / (8 * $ntx)) }
				  (sort { $c->{$b} <=> $c->{$a} } grep { $c->{$_} / (8 * $ntx) >= 0.01 } keys %$c));
		};
		my ($b_fw, $b_ha, $b_d) = (stats(@{ $tps{fw} }), stats(@{ $tps{haproxy} }), stats(@{ $tps{direct} }));
		my ($q_ha, $q_d) = (stats(@qb_ha), stats(@qb_d));
		row(id => '11b', name => $name_b, value => fmt($b_fw, 'tps', 0),
			comp => 'HAProxy: ' . fmt($b_ha, 'tps', 0) . '; direct: ' . fmt($b_d, 'tps', 0),
			ratio => 'forward port / HAProxy ' . fmt($q_ha, '', 3) . '; / direct ' . fmt($q_d, '', 3),
			target => '≥ HAProxy\'s (ratio ≥ 1) and ≥ 0.80 × direct', met => met($q_ha->{med} >= 1 && $q_d->{med} >= 0.80));
		my ($c_fw, $c_ha, $c_q) = (stats(@{ $cpu{fw} }), stats(@{ $cpu{haproxy} }), stats(@qc));
		row(id => '11b-cpu', name => $name_c, value => fmt($c_fw, 'µs', 2),
			comp => sprintf('HAProxy\'s process: %s; system calls a transaction, counted: forwarder %.2f, HAProxy %.2f',
				fmt($c_ha, 'µs', 2), $sc{fw}{per}, $sc{haproxy}{per}),
			ratio => fmt($c_q, '', 3) . ' (forwarder / HAProxy)', target => '≤ HAProxy\'s (ratio ≤ 1)',
			met => met($c_q->{med} <= 1));
		$detail{'11b'} = sprintf("`pgbench -n -S -c 8 -j 2 -T %d` (kept connections, scale 1), %d rounds, the "
			  . "three sides of figure 11a in the same rotating order, on the same instance, conmgr and "
			  . "HAProxy. TPS: the median of the rounds; the ratios within each round, then their medians. "
			  . "CPU per transaction (11b-cpu): the CPU time of conmgr's forwarder processes (%d of them, "
			  . "`forwarder_processes` at its default, one per processor, as HAProxy's threads) and of "
			  . "HAProxy's process (its %d threads together) over each pgbench run, from the scheduler's "
			  . "accounting (`/proc/PID/task/*/schedstat`, ns; user and kernel time, so the kernel's work of "
			  . "moving the bytes, which is most of a proxy's, counts), divided by the transactions of the run. "
			  . "%s System calls, counted: after the rounds, the same load with %d transactions a client "
			  . "through each proxy, under `strace -c -f -p PID`, per transaction: forwarder %.2f (%s), "
			  . "HAProxy %.2f (%s). Context switches per transaction (the kernel's counts, during the "
			  . "rounds): forwarder %s, HAProxy %s. TCP segments sent per transaction (the kernel's "
			  . "`Tcp: OutSegs`, /proc/net/snmp, machine-wide, so other traffic adds, over the same load of %d "
			  . "transactions a client): "
			  . "forward port %.2f, HAProxy %.2f, direct %.2f (a query and its answer: 2 direct, 4 "
			  . "through any proxy).",
			$R{pgb_secs}, $R{pgb_rounds}, $nfw, $hathreads, $ins_text, $ntx, $sc{fw}{per}, $per_call->('fw'),
			$sc{haproxy}{per}, $per_call->('haproxy'), fmt(stats(@{ $csw{fw} }), '', 2),
			fmt(stats(@{ $csw{haproxy} }), '', 2), $ntx, @segs{qw(fw haproxy direct)});
		stop_daemon($hapid);
		stop_conmgr($cm11);
		$fwn->stop('fast');
	}
}

# ---------------------------------------------------------------------
# 7. the watchdog with 1,000 and 10,000 heartbeat sessions; 9. packets at the server
# ---------------------------------------------------------------------
my $wnode;
my $wport;
if ($only{7} || $only{9})
{
	progress('setting up an instance for the watchdog figures');
	$wport = PostgreSQL::Test::Cluster::get_free_port();
	$wnode = PostgreSQL::Test::Cluster->new('wd');
	$wnode->init;
	$wnode->append_conf('postgresql.conf', watchdog_conf($wport,
		"watchdog.max_heartbeat_connections = $R{wd_sizes}[-1]\n"
		  . "watchdog.max_sessions_per_address = 0\n"));
	$wnode->start;
	$wnode->safe_psql('postgres', 'CREATE EXTENSION watchdog');
}

sub registered { return $wnode->safe_psql('postgres', 'SELECT count(*) FROM pgx_stat_watchdog'); }

# A process's CPU time in ns (the scheduler's, finer than the ticks).
sub proc_cpu_ns
{
	my ($pid) = @_;
	my ($ns) = split ' ', PostgreSQL::Test::Utils::slurp_file("/proc/$pid/schedstat");
	return $ns;
}

sub proc_ticks
{
	my ($pid) = @_;
	my $s = PostgreSQL::Test::Utils::slurp_file("/proc/$pid/stat");
	$s =~ s/^.*\)\s+//s;    # past the command name
	my @f = split /\s+/, $s;
	return $f[11] + $f[12];    # utime + stime (fields 14 and 15)
}

sub worker_counters
{
	my $row = $wnode->safe_psql('postgres',
		'SELECT w.wakeups, w.timers_run, (SELECT coalesce(sum(frames_received), 0) '
		  . 'FROM pgx_stat_watchdog), (SELECT coalesce(sum(heartbeats_sent), 0) FROM pgx_stat_watchdog) '
		  . 'FROM pgx_stat_watchdog_worker w');
	my %c;
	@c{qw(wakeups timers frames beats)} = split /\|/, $row;
	return \%c;
}

# One run of figure 7: $n sessions at 1 s for $R{wd_secs} s.
sub watchdog_run
{
	my ($n) = @_;
	my $procs = 20;
	my $per = $n / $procs;
	progress("figure 7: the watchdog with $n heartbeat sessions at 1 s for $R{wd_secs} s");
	my @hb;
	# At most 3 handshakes at a time from each client: 60 in all, under the
	# watchdog's limit of 64 connections in handshake.
	for my $k (1 .. $procs)
	{
		push @hb, bg($hbclient, '-h', '127.0.0.1', '-p', $wport, '-b', "127.0.2.$k", '-i', 1, '-t', 3,
			'-n', $per, '-c', 3, '-d', $R{wd_secs} + 120);
		usleep(50_000);
	}
	wait_until(sub { registered() == $n }, 60 + $n / 100)
	  or die "bench: figure 7: only " . registered() . " of $n sessions registered\n"
	  . join('', map { ${ $_->{out} } } @hb[0..1]);
	sleep 3;
	my $pid = $wnode->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'watchdog'");
	my $hz = POSIX::sysconf(POSIX::_SC_CLK_TCK());
	my $log_start = -s $wnode->logfile;
	my @cpu;
	my $c0 = worker_counters();
	my $t0 = time();
	my $tk0 = proc_ticks($pid);
	my ($t, $tk) = ($t0, $tk0);
	for my $w (1 .. int($R{wd_secs} / $R{wd_window}))
	{
		my $until = $t0 + $w * $R{wd_window};
		usleep(int(($until - time()) * 1e6)) if $until > time();
		my ($t1, $tk1) = (time(), proc_ticks($pid));
		push @cpu, 100 * ($tk1 - $tk) / $hz / ($t1 - $t);
		($t, $tk) = ($t1, $tk1);
	}
	my $c1 = worker_counters();
	my %r = (n => $n, cpu => \@cpu, secs => $t - $t0);
	$r{total_cpu} = 100 * ($tk - $tk0) / $hz / ($t - $t0);
	$r{$_} = ($c1->{$_} - $c0->{$_}) / ($t - $t0) for qw(wakeups timers frames beats);
	# µs of the worker's CPU per heartbeat exchanged (one received, one sent)
	$r{us_per_beat} = ($tk - $tk0) / $hz * 1e6 / (($c1->{frames} - $c0->{frames}) || 1);
	my $still = registered();
	my $log = substr(PostgreSQL::Test::Utils::slurp_file($wnode->logfile), $log_start);
	$r{lost_server} = () = $log =~ /lost heartbeat session/g;
	$r{lost_client} = 0;
	$_->{h}->pump_nb for grep { $_->{h}->pumpable } @hb;
	for my $h (@hb)
	{
		$r{lost_client} += () = ${ $h->{out} } =~ /^T=\S+ W=\S+ s=\d+ closed (?!client exiting)/mg;
	}
	# Every session lost at once (the clients exit): what the worker's CPU
	# time grows by until none is left, per session.
	my $drop0 = proc_cpu_ns($pid);
	$_->{h}->signal('TERM') for grep { $_->{h}->pumpable } @hb;
	bg_finish($_, 10) for @hb;
	$r{missing} = $n - $still;
	$r{false} = $r{lost_server} + $r{lost_client} + $r{missing};
	wait_until(sub { registered() == 0 }, 30) or die "bench: figure 7: sessions left after the run\n";
	$r{drop_us} = (proc_cpu_ns($pid) - $drop0) / 1e3 / $n;
	progress(sprintf('  %d sessions: worker CPU %.2f %% of a core (windows %s), %.2f µs a beat; '
		  . '%.0f wake-ups/s, %.0f timers/s, %.0f frames received/s, %.0f beats sent/s; false timeouts %d',
		$n, stats(@cpu)->{med}, join(' ', map { sprintf('%.2f', $_) } @cpu), $r{us_per_beat},
		@r{qw(wakeups timers frames beats)}, $r{false}));
	progress(sprintf('  all %d lost at once: %.1f µs of the worker\'s CPU a session', $n, $r{drop_us}));
	return \%r;
}

if ($only{7})
{
	# the worker's sockets, max_files_per_process and a margin
	my $need = $R{wd_sizes}[-1] + 1000 + 100;
	die "bench: figure 7 needs an open-files limit of at least $need, the hard limit is "
	  . "$nofile_hard (raise it: ulimit -Hn as root, or LimitNOFILE=)\n"
	  unless $nofile eq 'unlimited' || $nofile >= $need;
	my @runs = map { watchdog_run($_) } @{ $R{wd_sizes} };
	my ($small, $big) = @runs[0, -1];
	# What one send and one recv of a beat cost here with as many
	# connections: the floor under the worker's CPU per beat, whatever the
	# worker does around them.
	# The best of 3 runs: other load only adds.
	for my $r (@runs)
	{
		my $rounds = int(200_000 / $r->{n});
		for (1 .. 3)
		{
			my $out = `$sysfloor -c $r->{n} -n $rounds`;
			my ($pair, $epoll) = $out =~ /^pair_us=(\S+) conns=\d+ beats=\d+ epoll_us=(\S+)/m
			  or die "bench: sysfloor said: $out";
			$r->{pair_us} = $pair if !defined $r->{pair_us} || $pair < $r->{pair_us};
			$r->{epoll_us} = $epoll if !defined $r->{epoll_us} || $epoll < $r->{epoll_us};
		}
		$r->{floor} = 100 * $r->{n} * $r->{pair_us} / 1e6;
	}
	my $shm = $wnode->safe_psql('postgres',
		"SELECT coalesce(sum(size), 0) FROM pg_shmem_allocations WHERE name ILIKE '%watchdog%'");
	my $shm_names = $wnode->safe_psql('postgres',
		"SELECT string_agg(name || ' ' || size, ', ') FROM pg_shmem_allocations WHERE name ILIKE '%watchdog%'");
	my $slots = $R{wd_sizes}[-1];
	my $per_session = $shm / $slots;
	my $false = 0;
	$false += $_->{false} for @runs;
	my ($cs, $cb) = (stats(@{ $small->{cpu} }), stats(@{ $big->{cpu} }));
	my $per_small = $cs->{med} / $small->{n};
	my $per_big = $cb->{med} / $big->{n};
	my $linear = $per_big / $per_small;
	$data{f7} = $big->{cpu};
	row(id => 7, name => "watchdog, $small->{n} heartbeat sessions at 1 s, $R{wd_secs} s: CPU of its worker",
		value => fmt($cs, '% of a core', 2),
		comp => sprintf('send + recv floor %.2f %% (%.2f µs a beat)', $small->{floor}, $small->{pair_us}),
		ratio => sprintf('%.2f × floor', $cs->{med} / $small->{floor}),
		target => '≤ 2 % of a core', met => met($cs->{med} <= 2));
	row(id => '7d', name => "watchdog, $big->{n} heartbeat sessions at 1 s, $R{wd_secs} s: CPU of its worker",
		value => fmt($cb, '% of a core', 2),
		comp => sprintf('send + recv floor %.2f %% (%.2f µs a beat)', $big->{floor}, $big->{pair_us}),
		ratio => sprintf('%.2f × floor', $cb->{med} / $big->{floor}),
		target => '≤ 5 % of a core, or the floor where it is higher',
		met => met($cb->{med} <= List::Util::max(5, $big->{floor})));
	row(id => '7e', name => "watchdog: CPU per session at $big->{n} against $small->{n}",
		value => sprintf('%.2f', $linear),
		comp => sprintf('%.2f µs/s a session at %d, %.2f at %d', $per_big * 1e4, $big->{n},
			$per_small * 1e4, $small->{n}),
		ratio => '—', target => '≤ 1.2 (linear)', met => met($linear <= 1.2));
	my $drop_ratio = $big->{drop_us} / $small->{drop_us};
	row(id => '7f', name => "watchdog: CPU per session to lose all at once, $big->{n} against $small->{n}",
		value => sprintf('%.2f', $drop_ratio),
		comp => sprintf('%.1f µs a session at %d, %.1f at %d', $big->{drop_us}, $big->{n},
			$small->{drop_us}, $small->{n}),
		ratio => '—', target => '≤ 1.2 (linear)', met => met($drop_ratio <= 1.2));
	row(id => '7b', name => 'watchdog: shared memory per session',
		value => sprintf('%.1f B', $per_session), comp => '—', ratio => '—', target => '≤ 200 B',
		met => met($per_session <= 200));
	row(id => '7c', name => 'watchdog: false timeouts',
		value => "$false", comp => '—', ratio => '—', target => '0', met => met($false == 0));
	my $run_text = sub {
		my ($r) = @_;
		return sprintf('%d sessions: CPU %s (over the whole %.0f s %.2f %%), %.2f µs of the worker\'s CPU '
			  . 'per beat received and sent, %.0f wake-ups, %.0f session timers, %.0f beats received and '
			  . '%.0f sent a second; false timeouts: %d logged as lost by the worker, %d seen closed by an '
			  . 'hbclient, %d missing at the end',
			$r->{n}, fmt(stats(@{ $r->{cpu} }), '%', 2), $r->{secs}, $r->{total_cpu}, $r->{us_per_beat},
			@{$r}{qw(wakeups timers frames beats)}, @{$r}{qw(lost_server lost_client missing)});
	};
	$detail{7} = sprintf("Two runs on one instance (`watchdog.max_heartbeat_connections` = %d, "
		  . "`watchdog.max_sessions_per_address` = 0 since 20 source addresses carry them all): "
		  . "%s sessions from 20 `hbclient` processes (source addresses 127.0.2.1–20, started 50 ms "
		  . "apart, each with at most 3 sessions in their handshake at a time, so that the 60 in all stay "
		  . "under the watchdog's limit of 64), heartbeat_interval 1 s, heartbeat_timeout 3 s. The "
		  . "open-files limit of the instance, the hbclients and conmgr is the hard limit "
		  . "(%s here; `regress/bench/run` and bench.pl raise the soft limit to it), which the worker's "
		  . "sockets need (max_files_per_process does not count them). CPU: utime + stime of the "
		  . "watchdog worker "
		  . "(`/proc/PID/stat`) over %d windows of %d s (the median of the windows, min–max); the "
		  . "machine's cores are shared with the hbclients and anything else running, but the time "
		  . "counted is the worker's own. Counts from `pgx_stat_watchdog_worker` and "
		  . "`pgx_stat_watchdog`. %s. %s. CPU per session at %d against %d: %.2f. The floor: "
		  . "`build/bench/sysfloor -c N` holds N loopback TCP connections, sends a 12-byte HB_BEAT "
		  . "on each in turn and receives one from each in turn, which a child process sends back, "
		  . "200,000 beats after a round not counted, and divides its own CPU time by the beats "
		  . "(the best of 3 runs, since other load only adds): "
		  . "%.2f µs a send and recv with %d connections, %.2f µs with %d (an `epoll_wait` that finds "
		  . "a socket ready: %.2f µs); the kernel's data for 10,000 connections does not stay in "
		  . "the caches as that of 1,000 does. A beat each way per session a second puts %.2f %% "
		  . "of a core under %d sessions and %.2f %% under %d before the worker does anything "
		  . "else, so a target under the floor is judged against the floor. Shared memory: the "
		  . "`pg_shmem_allocations` rows of the extension (%s) divided by "
		  . "`watchdog.max_heartbeat_connections` = %d.",
		$slots, join(' and ', map { $_->{n} } @runs), $nofile,
		scalar(@{ $big->{cpu} }), $R{wd_window}, $run_text->($small), $run_text->($big),
		$big->{n}, $small->{n}, $linear, $small->{pair_us}, $small->{n}, $big->{pair_us}, $big->{n},
		$big->{epoll_us}, $small->{floor}, $small->{n}, $big->{floor}, $big->{n}, $shm_names, $slots);
}

# ---------------------------------------------------------------------
# 9. heartbeat packets vs per-socket keepalive, 20 hosts x 50 connections
# ---------------------------------------------------------------------
sub tcp_segments
{
	my @l = grep { /^Tcp:/ } split /\n/, PostgreSQL::Test::Utils::slurp_file('/proc/net/snmp');
	my @names = split /\s+/, $l[0];
	my @vals = split /\s+/, $l[1];
	my %h;
	@h{@names} = @vals;
	return $h{InSegs};
}

if ($only{9})
{
	# Detection within D = 4 s on both sides.  Heartbeat: interval 2 s,
	# timeout 4 s, so a beat may come up to 2 s late before a false
	# timeout.  Keepalive at the same D, two ways: idle 2 s, one probe
	# 2 s apart (the same 2 s margin for the probe's answer: like for
	# like, the headline ratio), and idle 3 s, one probe 1 s apart (fewer
	# packets, but a 1 s margin: an answer 1 s late is a false death).
	my ($hi, $ht) = (2, 4);
	my %ka = (ka => [ 2, 2, 1 ], ka1 => [ 3, 1, 1 ]);
	my ($hosts, $conns) = (20, 50);
	if (!$netns)
	{
		my $hb = $hosts * 4 / $hi;
		my $ka = $hosts * $conns * 2 * 2 / $ka{ka}[0];
		row(id => 9, name => "packets/s at a server, $hosts hosts x $conns connections (COMPUTED, not measured)",
			value => sprintf('%.1f pkt/s', $hb), comp => sprintf('keepalive: %.1f pkt/s', $ka),
			ratio => sprintf('%.4f (1/%.0f)', $hb / $ka, $ka / $hb), target => 'ratio ≤ 1/50',
			met => met($hb / $ka <= 1 / 50));
		$detail{9} = 'Computed, not measured: the harness did not run in a network namespace of its own '
		  . '(run `make bench` as root), so the TCP counters would count other programs\' packets too.';
	}
	else
	{
		progress("figure 9: packets at the server, $hosts hosts x $conns connections, $R{pkt_rounds} rounds"
			  . " of $R{pkt_window} s a side");
		# Nothing else may talk TCP now: the conmgrs go (the instances'
		# replication runs over Unix sockets).
		stop_conmgr($_) for @conmgrs;
		sleep 1;
		my $b0 = tcp_segments();
		sleep 3;
		my $baseline = (tcp_segments() - $b0) / 3;
		my (%rate, @ratio, @ratio1);
		for my $r (1 .. $R{pkt_rounds})
		{
			for my $side ($r % 2 ? qw(hb ka ka1) : qw(ka1 ka hb))
			{
				my @procs;
				if ($side eq 'hb')
				{
					for my $k (1 .. $hosts)
					{
						push @procs, bg($hbclient, '-h', '127.0.0.1', '-p', $wport, '-b', "127.0.3.$k",
							'-i', $hi, '-t', $ht, '-n', 1, '-d', 300);
						usleep(int($hi * 1e6 / $hosts));
					}
					wait_until(sub { registered() == $hosts }, 30) or die "bench: figure 9: hbclients\n";
				}
				else
				{
					my ($idle, $intvl, $cnt) = @{ $ka{$side} };
					push @procs, bg($kaload, '-n', $hosts * $conns, '-a', $hosts, '-i', $idle,
						'-v', $intvl, '-c', $cnt, '-e', 'both', '-d', 300);
					bg_wait($procs[0], qr/^ready/m, 30) or die "bench: kaload: ${ $procs[0]{out} }";
				}
				sleep 1;
				my ($t0, $s0) = (time(), tcp_segments());
				sleep $R{pkt_window};
				my ($t1, $s1) = (time(), tcp_segments());
				push @{ $rate{$side} }, ($s1 - $s0) / ($t1 - $t0);
				for my $p (@procs)
				{
					$p->{h}->signal('TERM') if $p->{h}->pumpable;
					bg_finish($p, 10);
				}
				wait_until(sub { registered() == 0 }, 30) if $side eq 'hb';
				sleep 1;
			}
			push @ratio, $rate{hb}[-1] / $rate{ka}[-1];
			push @ratio1, $rate{hb}[-1] / $rate{ka1}[-1];
			progress(sprintf('  round %d: heartbeat %.1f pkt/s, keepalive %s %.1f pkt/s, keepalive %s %.1f pkt/s',
				$r, $rate{hb}[-1], join('/', @{ $ka{ka} }), $rate{ka}[-1], join('/', @{ $ka{ka1} }),
				$rate{ka1}[-1]));
		}
		my ($h, $k, $k1, $q, $q1) =
		  (stats(@{ $rate{hb} }), stats(@{ $rate{ka} }), stats(@{ $rate{ka1} }), stats(@ratio), stats(@ratio1));
		row(id => 9, name => "packets/s at a server, $hosts hosts x $conns connections",
			value => fmt($h, 'pkt/s', 1),
			comp => sprintf('keepalive on each socket, idle/interval/count %s (same 2 s margin): %s; '
				  . '%s (1 s margin): %s, ratio %s = 1/%.0f',
				join('/', @{ $ka{ka} }), fmt($k, 'pkt/s', 1), join('/', @{ $ka{ka1} }), fmt($k1, 'pkt/s', 1),
				fmt($q1, '', 4), 1 / $q1->{med}),
			ratio => fmt($q, '', 4) . sprintf(' = 1/%.0f', 1 / $q->{med}), target => 'ratio ≤ 1/50',
			met => met($q->{med} <= 1 / 50));
		$detail{9} = sprintf("Measured: the harness runs alone in a network namespace, so the kernel's "
			  . "`Tcp: InSegs` counter (`/proc/net/snmp`) counts only our segments; on loopback every "
			  . "segment is received once, and each has the server at one end, so its growth is the "
			  . "packets sent plus received at the server (idle baseline %.2f/s). Same detection time, "
			  . "%d s: heartbeat: %d `hbclient`s (source 127.0.3.1–%d, one session each, as one conmgr per "
			  . "host), heartbeat_interval %d s, heartbeat_timeout %d s, against the watchdog, so a beat "
			  . "may be up to %d s late; keepalive: `kaload`, %d idle TCP connections (%d per source "
			  . "address 127.0.1.1–%d), SO_KEEPALIVE on both ends (libpq's keepalives_* and the server's "
			  . "tcp_keepalives_*, since the heartbeat detects in both directions), measured two ways: "
			  . "idle %d s, interval %d s, count %d (the probe's answer may be %d s late: the same margin, "
			  . "the headline ratio) and idle %d s, interval %d s, count %d (fewer packets, but an answer "
			  . "more than %d s late kills the connection: half the heartbeat's margin). %d rounds of %d s "
			  . "a side, in turn; the ratios per round, then their medians. Per unit: %.2f packets per "
			  . "heartbeat session per heartbeat_interval (each side's beat and its ACK, some ACKs riding "
			  . "on the other side's beat), %.2f and %.2f packets per keepalive connection per keepalive "
			  . "idle period (a probe and its ACK from each end). The second keepalive's ratio is in the "
			  . "comparator column, not the headline: it sends fewer packets only by allowing half the "
			  . "heartbeat's margin, so it is not the same detection.",
			$baseline, $ht, $hosts, $hosts, $hi, $ht, $ht - $hi, $hosts * $conns, $conns, $hosts,
			@{ $ka{ka} }, $ka{ka}[1], @{ $ka{ka1} }, $ka{ka1}[1], $R{pkt_rounds}, $R{pkt_window},
			$h->{med} / $hosts * $hi, $k->{med} / ($hosts * $conns) * $ka{ka}[0],
			$k1->{med} / ($hosts * $conns) * $ka{ka1}[0]);
		$data{f9} = \%rate;
	}
}

# ---------------------------------------------------------------------
# 5. error delay after a black-holed link (needs the fault lab)
# ---------------------------------------------------------------------
if ($only{5})
{
	# Measured before this script by fault.pl (as root, in the fault lab);
	# its results come in the file $BENCH_FAULT.
	my $file = $ENV{BENCH_FAULT};
	my $text = defined $file && -r $file ? PostgreSQL::Test::Utils::slurp_file($file) : '';
	my ($T) = $text =~ /^timeout (\d+)/m;
	my (@cm, @tcp, @ratio);
	while ($text =~ /^round \d+ cm=(\S+) tcp=(\S+)/mg)
	{
		my ($c, $t) = ($1, $2);
		push @cm, $c - $T if $c ne 'none';
		push @tcp, $t - $T if $t ne 'none';
	}
	my $missing = () = $text =~ /^round \d+ cm=none/mg;
	if (!@cm)
	{
		my ($why) = $text =~ /^error (.*)$/m;
		$why //= defined $file ? 'the fault lab gave no result' : 'the fault lab needs root';
		row(id => 5, name => 'error delay after a black-holed link, mid-query, minus heartbeat_timeout',
			value => "not measured: needs the fault lab ($why)", comp => 'tuned keepalive, tcp_user_timeout',
			ratio => '—', target => '≤ 0.1 s', met => 'not measured');
		$detail{5} = "Not measured: $why. It needs a link that can be cut (regress/lib/CmLab.pm: network "
		  . 'namespaces, veth pairs, nftables), hence root.';
	}
	else
	{
		my ($c, $t) = (stats(@cm), stats(@tcp));
		row(id => 5, name => "error delay after a black-holed link, mid-query, minus heartbeat_timeout ($T s)",
			value => fmt($c, 's', 3) . ($missing ? ", $missing rounds without an error" : ''),
			comp => 'keepalives 1/1/' . ($T - 1) . " + tcp_user_timeout ${T}000: " . fmt($t, 's', 3),
			ratio => '—', target => '≤ 0.1 s', met => met($c->{max} <= 0.1 && !$missing));
		$detail{5} = sprintf("Measured in the fault lab (regress/lib/CmLab.pm, by regress/bench/fault.pl, as "
			  . "root): the primary in a network namespace of its own, reached over a veth link; conmgr "
			  . "with heartbeat_interval 1 s, heartbeat_timeout %d s. Each of %d rounds runs the same plain "
			  . "libpq program (`pqtiming block`, `SELECT pg_sleep(60)`) twice on the primary: through "
			  . "conmgr (`LD_PRELOAD`), and directly with keepalives_idle 1, keepalives_interval 1, "
			  . "keepalives_count %d, tcp_user_timeout %d ms (the same nominal detection time); at a random "
			  . "point between two heartbeats the link is black-holed (nftables drops every packet both "
			  . "ways) and the time from the cut to PQexec's error is taken, minus %d s. Negative: the "
			  . "error came before heartbeat_timeout had passed since the cut, because the silence is "
			  . "counted from the last packet heard, up to one interval before the cut. Target met when "
			  . "the maximum, not only the median, is at most 0.1 s.",
			$T, scalar(@cm), $T - 1, $T * 1000, $T);
		$data{f5} = { cm => \@cm, tcp => \@tcp };
	}
}

# ---------------------------------------------------------------------
# 10. behind Patroni: promotion to the first read-write connection,
#     conmgr against HAProxy (needs the fault lab's Patroni lab)
# ---------------------------------------------------------------------
if ($only{10})
{
	# Measured before this script by patroni.pl (as root, in the fault
	# lab); its results come in the file $BENCH_PATRONI.
	my $file = $ENV{BENCH_PATRONI};
	my $text = defined $file && -r $file ? PostgreSQL::Test::Utils::slurp_file($file) : '';
	my ($settings) = $text =~ /^settings (.*)$/m;
	my %side;
	while ($text =~ /^round \d+ (\w+) cm=(\S+) haproxy=(\S+)/mg)
	{
		push @{ $side{$1}{cm} }, $2;
		push @{ $side{$1}{haproxy} }, $3;
	}
	my $name = 'behind Patroni, promotion → first read-write connect on the new primary';
	if (!%side)
	{
		my ($why) = $text =~ /^error (.*)$/m;
		$why //= defined $file ? 'the Patroni lab gave no result' : 'the Patroni lab needs root';
		row(id => 10, name => $name, value => "not measured ($why)", comp => 'HAProxy, /primary check',
			ratio => '—', target => '≤ HAProxy\'s', met => 'not measured');
		$detail{10} = "Not measured: $why. It needs the fault lab's Patroni lab (regress/lib/CmLab.pm: network "
		  . 'namespaces, Patroni, etcd, HAProxy from Debian), hence root.';
	}
	for my $kind (grep { $side{$_} } qw(switchover failover))
	{
		my @cm = grep { $_ ne 'none' } @{ $side{$kind}{cm} };
		my @ha = grep { $_ ne 'none' } @{ $side{$kind}{haproxy} };
		my $missing = grep { $_ eq 'none' } @{ $side{$kind}{cm} }, @{ $side{$kind}{haproxy} };
		my @ratio = map { $side{$kind}{cm}[$_] ne 'none' && $side{$kind}{haproxy}[$_] ne 'none'
			  && $side{$kind}{haproxy}[$_] > 0 ? $side{$kind}{cm}[$_] / $side{$kind}{haproxy}[$_] : () }
		  0 .. $#{ $side{$kind}{cm} };
		my ($c, $h, $q) = (stats(@cm), stats(@ha), stats(@ratio));
		row(id => $kind eq 'switchover' ? '10a' : '10b', name => "$name, $kind",
			value => 'conmgr: ' . fmt($c, 's', 3) . ($missing ? ", $missing not seen within 30 s" : ''),
			comp => 'HAProxy, /primary check: ' . fmt($h, 's', 3), ratio => fmt($q, '', 2),
			target => '≤ HAProxy\'s', met => met($c && $h && $c->{med} <= $h->{med} && !$missing));
	}
	$detail{10} //= sprintf('Measured in the fault lab\'s Patroni lab (regress/lib/CmLab.pm, by regress/bench/patroni.pl, '
		  . 'as root; %s): two PostgreSQL 15 nodes with the watchdog under Patroni 3.0 (Debian\'s; configuration '
		  . 'rendered from contrib/patroni), etcd 3.4 on a host of its own, conmgr on the client host. On the '
		  . 'client host HAProxy 2.6 (Debian\'s) in TCP mode checks each node\'s Patroni REST API (`option httpchk '
		  . 'GET /primary`, `inter 1s fall 3 rise 1`, `on-marked-down shutdown-sessions`). In each round two loops '
		  . 'connect again and again with the same program (psql, connect_timeout 2 s, 20 ms between attempts): '
		  . 'through conmgr (libpq-cm injected, target_session_attrs=read-write) and through HAProxy. Rounds '
		  . 'alternate a switchover (`patronictl switchover`) and a failover (the leader\'s host cut off and every '
		  . 'process on it killed; the replica promotes when the leader lock expires). The figure is the time from '
		  . 'the promotion (the new primary\'s "selected new timeline ID" log line) to the end of the first attempt '
		  . 'that reached the new primary and found it out of recovery; the ratio is conmgr\'s over HAProxy\'s, '
		  . 'per round. Patroni\'s own part (the ttl before a failover) is outside the figure: docs/patroni.md.',
		$settings // 'settings not reported');
}

# ---------------------------------------------------------------------
# 11c. a forward port's client after a black-holed link, HAProxy's
#      beside it (needs the fault lab)
# ---------------------------------------------------------------------
if ($only{11})
{
	# Measured before this script by fwfault.pl (as root, in the fault
	# lab); its results come in the file $BENCH_FWFAULT.
	my $file = $ENV{BENCH_FWFAULT};
	my $text = defined $file && -r $file ? PostgreSQL::Test::Utils::slurp_file($file) : '';
	my %set = ($text =~ /^settings (.*)$/m ? $1 : '') =~ /(\w+)=(\S+)/g;
	my (@fw, @ha);
	while ($text =~ /^round \d+ fw=(\S+) haproxy=(\S+)/mg)
	{
		push @fw, $1;
		push @ha, $2;
	}
	my $name = 'error delay after a black-holed link, mid-query, client of a forward port';
	if (!@fw)
	{
		my ($why) = $text =~ /^error (.*)$/m;
		$why //= defined $file ? 'the fault lab gave no result' : 'the fault lab needs root';
		row(id => '11c', name => $name, value => "not measured ($why)", comp => 'HAProxy, check inter 1s fall 3',
			ratio => '—', target => '≤ heartbeat_timeout + 0.1 s', met => 'not measured');
		$detail{'11c'} = "Not measured: $why. It needs a link that can be cut (regress/lib/CmLab.pm: network "
		  . 'namespaces, veth pairs, nftables), hence root.';
	}
	else
	{
		my $T = $set{heartbeat_timeout};
		my $missing = grep { $_ eq 'none' } @fw;
		my $ha_missing = grep { $_ eq 'none' } @ha;
		my ($f, $h) = (stats(grep { $_ ne 'none' } @fw), stats(grep { $_ ne 'none' } @ha));
		row(id => '11c', name => "$name (heartbeat_timeout $T s)",
			value => fmt($f, 's', 3) . ($missing ? ", $missing rounds without an error" : ''),
			comp => "HAProxy, check inter $set{haproxy_inter}s fall $set{haproxy_fall}, shutdown-sessions: "
			  . fmt($h, 's', 3) . ($ha_missing ? ", $ha_missing rounds without an error" : ''),
			ratio => '—', target => '≤ heartbeat_timeout + 0.1 s = ' . ($T + 0.1) . ' s',
			met => met($f && $f->{max} <= $T + 0.1 && !$missing));
		$detail{'11c'} = sprintf("Measured in the fault lab (regress/lib/CmLab.pm, by regress/bench/fwfault.pl, as "
			  . "root): the primary in a network namespace of its own, reached over a veth link from the "
			  . "client host, where conmgr (heartbeat_interval %d s, heartbeat_timeout %d s) has a forward "
			  . "port for read-write and HAProxy (Debian's) forwards a port of its own to the same primary in "
			  . "TCP mode with a TCP health check every %d s, `fall %d`, `rise 1`, `timeout check 1s` and "
			  . "`on-marked-down shutdown-sessions` (without which HAProxy leaves a session to a dead server "
			  . "to TCP's own timeouts). Each of %d rounds runs the same plain libpq program (`pqtiming "
			  . "block`, `SELECT pg_sleep(60)`, no libpq-cm) through each port; at a random point between two "
			  . "heartbeats the link is black-holed (nftables drops every packet both ways) and the time from "
			  . "the cut to PQexec's error is taken. Target met when the maximum, not only the median, is at "
			  . "most heartbeat_timeout + 0.1 s. The forward port's error comes before heartbeat_timeout has "
			  . "passed since the cut because the silence is counted from the last packet heard, up to one "
			  . "interval before the cut; HAProxy's comes after `fall` checks have failed, each waiting up to "
			  . "its timeout.",
			$set{heartbeat_interval}, $T, $set{haproxy_inter}, $set{haproxy_fall}, scalar(@fw));
	}
}

# ---------------------------------------------------------------------
# The table, the plots, docs/benchmarks.md
# ---------------------------------------------------------------------
my $elapsed = time() - $t_start;
@rows = sort { ($a->{id} =~ /^(\d+)/)[0] <=> ($b->{id} =~ /^(\d+)/)[0] || $a->{id} cmp $b->{id} } @rows;

out('');
out(sprintf('%-4s %-70s %-40s %-50s %-30s %-40s %s', '#', 'figure', 'value: median (min–max)',
	'comparator', 'ratio', 'target', ''));
for my $r (@rows)
{
	out(sprintf('%-4s %-70s %-40s %-50s %-30s %-40s %s', $r->{id}, $r->{name}, $r->{value}, $r->{comp},
		$r->{ratio}, $r->{target}, $r->{met}));
}
out(sprintf("\nbench.pl ran for %.0f s (%.1f min)", $elapsed, $elapsed / 60));

make_path("$outdir/benchmarks");
my @plots = plots();

my $date = POSIX::strftime('%Y-%m-%d %H:%M UTC', gmtime());
my $md = <<"EOF";
# Benchmarks

Written by `make bench` (regress/bench/run, regress/bench/bench.pl) on $date.
Every number below was measured by that run on the machine described here;
rerun `make bench` to measure again (it rewrites this file and the plots).
Each figure is the median over repeated rounds, with the minimum and maximum
in parentheses; where there is a comparator, the two sides ran in the same
run, alternating round by round (the machine is shared and noisy), and the
ratio is taken within each round, then its median.

## The machine

| | |
|---|---|
| CPU | $mach->{cpu} |
| cores | $mach->{cores} |
| memory | $mach->{mem} |
| OS, kernel | $mach->{os}, Linux $mach->{kernel} |
| PostgreSQL | $mach->{pg} |
| load average at the start | $mach->{load}@{[ $mach->{busy} ? '; others were using the machine' : '' ]} |
| network | @{[ $netns ? 'loopback, in a network namespace of the benchmark\'s own' : 'loopback (shared)' ]} |
| run time of bench.pl | @{[ sprintf('%.1f min', $elapsed / 60) ]} |

Unless said otherwise: conmgr with heartbeat_interval = $hb_interval s,
heartbeat_timeout = $hb_timeout s; the instances with the watchdog,
watchdog.check_attr_interval = $check_attr_ms ms, `fsync = off` (the test
cluster's default), everything on 127.0.0.1.

## The figures

| # | figure | value: median (min–max) | comparator | ratio | target | |
|---|---|---|---|---|---|---|
EOF
for my $r (@rows)
{
	$md .= "| $r->{id} | $r->{name} | $r->{value} | $r->{comp} | $r->{ratio} | $r->{target} | $r->{met} |\n";
}
$md .= "\n## How each figure was measured\n\n";
for my $id (sort { ($a =~ /^(\d+)/)[0] <=> ($b =~ /^(\d+)/)[0] || $a cmp $b } keys %detail)
{
	$md .= "**$id.** $detail{$id}\n\n";
}
if (@plots)
{
	$md .= "## Plots\n\n";
	$md .= "![$_->[1]](benchmarks/$_->[0])\n\n" for @plots;
}
$md .= <<'EOF';
## The tools

* `build/bench/pqtiming` (regress/bench/pqtiming.c) — a plain libpq program,
  linked with `-lpq` only: N × (connect, `SELECT 1`, finish), a connect
  loop until one succeeds, a promotion watcher. The conmgr side runs it
  with `LD_PRELOAD=build/lib/libpq-cm.so.1`.
* `build/bench/cmload` (regress/bench/cmload.c) — the application protocol
  with the shared client (common/cmclient.c): many attached sessions and the arrival of their
  INSTANCE_DOWN; resolve throughput with parallel clients.
* `build/bench/kaload` (regress/bench/kaload.c) — idle TCP connections kept
  alive by the kernel, the comparator of figure 9.
* `build/bench/sysfloor` (regress/bench/sysfloor.c) — the CPU time of a
  heartbeat's send and recv over loopback, the floor of figure 7.
* `build/regress/tools/hbclient` — heartbeat sessions, as conmgr's
  heartbeat role would hold them.
* HAProxy (Debian's `haproxy`), the comparator of figures 10 and 11,
  started by the benchmark with a configuration it writes; `strace -c`,
  which counts the system calls of figure 11b's two proxies.
EOF
open(my $f, '>', "$outdir/benchmarks.md") or die "bench: $outdir/benchmarks.md: $!";
print $f $md;
close $f;
out("wrote $outdir/benchmarks.md" . (@plots ? ' and ' . join(', ', map { "benchmarks/$_->[0]" } @plots) : ''));

sub gnuplot
{
	my ($script) = @_;
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run([ 'gnuplot' ], '<', \$script, '>', \$out, '2>', \$err);
	out("gnuplot failed: $err") unless $ok;
	return $ok;
}

sub write_lines
{
	my ($file, @lines) = @_;
	open(my $fh, '>', $file) or die "$file: $!";
	print $fh map { "$_\n" } @lines;
	close $fh;
	return;
}

# CDF file of a list of values.
sub cdf_file
{
	my ($file, $v) = @_;
	my @s = sort { $a <=> $b } @$v;
	write_lines($file, map { sprintf('%.4f %.5f', $s[$_], ($_ + 1) / @s) } 0 .. $#s);
	return $file;
}

sub plots
{
	return () unless `sh -c 'command -v gnuplot'`;
	my @made;
	my $term = "set terminal pngcairo size 900,420 font 'DejaVu Sans,10'";
	if ($data{f1} && $data{f2})
	{
		my $png = "$outdir/benchmarks/connect.png";
		gnuplot(<<"EOF") and push @made, [ 'connect.png', 'connection latency CDFs' ];
$term
set output '$png'
set multiplot layout 1,2
set grid
set key bottom right
set ylabel 'fraction of connections'
set xlabel 'ms'
set title 'connect + SELECT 1 + disconnect (figure 1)'
set xrange [0:@{[ pct([ @{ $data{f1}{cm} }, @{ $data{f1}{direct} } ], 0.995) ]}]
plot '@{[ cdf_file("$work/f1cm.cdf", $data{f1}{cm}) ]}' u 1:2 w l lw 2 t 'through conmgr (LD\\_PRELOAD libpq-cm)', \\
     '@{[ cdf_file("$work/f1d.cdf", $data{f1}{direct}) ]}' u 1:2 w l lw 2 t 'direct (plain libpq)'
set title 'read-write connect, standbys listed first (figure 2)'
set xrange [0:@{[ pct([ @{ $data{f2}{cm} }, @{ $data{f2}{direct} } ], 0.995) ]}]
plot '@{[ cdf_file("$work/f2cm.cdf", $data{f2}{cm}) ]}' u 1:2 w l lw 2 t 'through conmgr', \\
     '@{[ cdf_file("$work/f2d.cdf", $data{f2}{direct}) ]}' u 1:2 w l lw 2 t 'libpq host=s1,s2,p'
unset multiplot
EOF
	}
	if ($data{f3} && $data{f4})
	{
		my $png = "$outdir/benchmarks/pgbench.png";
		my @l;
		for my $id (3, 4)
		{
			my $d = $data{"f$id"};
			write_lines("$work/f$id.dat", map { "$_ $d->{cm}[$_-1] $d->{direct}[$_-1]" } 1 .. @{ $d->{cm} });
		}
		gnuplot(<<"EOF") and push @made, [ 'pgbench.png', 'pgbench TPS per round' ];
$term
set output '$png'
set multiplot layout 1,2
set grid
set key bottom right
set xlabel 'round'
set ylabel 'TPS'
set yrange [0:*]
set style data linespoints
set title 'pgbench -S, 8 clients (figure 3)'
plot '$work/f3.dat' u 1:2 lw 2 t 'through libpq-cm (LD\\_PRELOAD)', '' u 1:3 lw 2 t 'plain libpq'
set title 'pgbench -C -S, 8 clients (figure 4)'
plot '$work/f4.dat' u 1:2 lw 2 t 'through libpq-cm (LD\\_PRELOAD)', '' u 1:3 lw 2 t 'plain libpq'
unset multiplot
EOF
	}
	if ($data{f6})
	{
		my $png = "$outdir/benchmarks/failover.png";
		my $d = $data{f6};
		write_lines("$work/f6.dat", map { "$_ $d->{cm}[$_-1] $d->{direct}[$_-1]" } 1 .. @{ $d->{cm} });
		gnuplot(<<"EOF") and push @made, [ 'failover.png', 'promote to first read-write connect, per failover' ];
$term
set output '$png'
set grid
set key top left
set xlabel 'failover'
set ylabel 'ms after the end of recovery'
set yrange [0:*]
set xtics 1
set style data linespoints
set title 'promote → first read-write connect (figure 6)'
plot '$work/f6.dat' u 1:2 lw 2 t 'through conmgr', '' u 1:3 lw 2 t 'libpq host=old,new connect\\_timeout=2', \\
     $check_attr_ms + 50 w l dt 2 t 'target: check\\_attr\\_interval + 50 ms'
EOF
	}
	return @made;
}
