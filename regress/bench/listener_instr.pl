#!/usr/bin/perl
# listener_instr.pl — the listener's instructions per resolve, counted, for
# two builds of conmgr side by side: figure 8a's cost (docs/benchmarks.md)
# without the timing noise of a shared machine.
#
#	 regress/bench/listener_instr.pl OLD_TREE NEW_TREE
#
# Each TREE is a built source tree (build/bin/conmgr, and the load tools
# build/regress/tools/cmresolve and build/bench/cmload, which speak that
# tree's version of the application protocol).  Run as an unprivileged
# user (PostgreSQL refuses root), with an open-files limit above 1,100,
# where PostgreSQL::Test::Cluster may write (TESTDIR);
# regress/bench/listener-instr does all that for a git revision.
#
# It makes a primary and two standbys with the watchdog, as figure 8 does.
# A run starts one conmgr (the standbys listed first) under valgrind's
# callgrind, attaches 1,000 application sessions (cmload attach, as figure
# 8), makes N whole sessions one after another (cmresolve -r N -P: connect,
# probe and RESOLVE in one packet, candidates, close) and stops conmgr; the
# listener's callgrind total is what it executed in user space in its
# life.  Two runs with N = FEW and N = MANY give the instructions of
# MANY - FEW resolves as the difference of their totals, without the
# start-up, the attaching and the shutdown.  The kernel's part is not in
# that count: a last run of each conmgr, without valgrind, counts the
# listener's system calls per resolve by name (strace -c around MANY
# resolves), the part of a resolve's cost the kernel does for it.
#
# ROUNDS rounds (default 3) each run both trees, alternating which goes
# first; prints the median (min–max) per tree and the ratio new / old.
# Environment: ROUNDS, FEW (default 200), MANY (1200), SESSIONS (1000);
# CG_KEEP=DIR keeps each run's callgrind file of the listener in DIR (as
# TREENAME.N, the last round's), for callgrind_annotate.
use strict;
use warnings;

our ($OUT, $ERR);
BEGIN
{
	# PostgreSQL::Test::Utils sends STDOUT and STDERR to its log file; the
	# result and why a run stopped go to the terminal
	open($OUT, '>&', \*STDOUT) or die "dup stdout: $!";
	open($ERR, '>&', \*STDERR) or die "dup stderr: $!";
	$OUT->autoflush(1);
	$SIG{__DIE__} = sub { print $ERR $_[0] unless $^S; };
}
use Cwd ();
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest qw(wait_until);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;

die "usage: listener_instr.pl OLD_TREE NEW_TREE\n" unless @ARGV == 2;
my %tree;
@tree{qw(old new)} = map { Cwd::realpath($_) // die "listener_instr: no tree $_\n" } @ARGV;
my $rounds = $ENV{ROUNDS} // 3;
my ($few, $many) = ($ENV{FEW} // 200, $ENV{MANY} // 1200);
my $sessions = $ENV{SESSIONS} // 1000;
die "listener_instr: MANY must exceed FEW\n" unless $many > $few;
-x $_ or die "listener_instr: $_ is missing (make; make -C regress/bench)\n"
  for map { ("$_/build/bin/conmgr", "$_/build/bench/cmload", "$_/build/regress/tools/cmresolve") } values %tree;

# The instance set of figure 8: a primary and two standbys with the watchdog.
my (%node, %wd);
%wd = map { $_ => PostgreSQL::Test::Cluster::get_free_port() } qw(p s1 s2);
$node{p} = PostgreSQL::Test::Cluster->new('p');
$node{p}->init(allows_streaming => 1);
$node{p}->append_conf('postgresql.conf', "shared_preload_libraries = 'watchdog'\n"
	  . "watchdog.listen_addresses = '127.0.0.1'\nwatchdog.port = $wd{p}\n");
$node{p}->start;
$node{p}->backup('b');
for my $s (qw(s1 s2))
{
	$node{$s} = PostgreSQL::Test::Cluster->new($s);
	$node{$s}->init_from_backup($node{p}, 'b', has_streaming => 1);
	$node{$s}->append_conf('postgresql.conf', "watchdog.port = $wd{$s}\n");
	$node{$s}->start;
}

my @running;	# what END stops if a run dies half-way
END
{
	my $status = $?;
	eval { $_->kill_kill } for @running;
	$? = $status;
}

# Start a conmgr of $tree (under valgrind's callgrind when $cg) in front of
# the three instances, wait until it sees them up and attach the sessions.
sub start_conmgr
{
	my ($tree, $cg) = @_;
	my $c = { tree => $tree, dir => PostgreSQL::Test::Utils::tempdir(),
		port => PostgreSQL::Test::Cluster::get_free_port() };
	chmod 0700, $c->{dir};
	my $conf = "port = $c->{port}\nlog_min_messages = WARNING\n";
	my $i = 0;
	for my $name (qw(s1 s2 p))
	{
		$conf .= "backend_hostaddr$i = '127.0.0.1'\nbackend_port$i = " . $node{$name}->port
		  . "\nwatchdog_port$i = $wd{$name}\n";
		$i++;
	}
	PostgreSQL::Test::Utils::append_to_file("$c->{dir}/conmgr.conf", $conf);
	my $log = "$c->{dir}/conmgr.log";
	my @vg = $cg ? ('valgrind', '--tool=callgrind', "--callgrind-out-file=$c->{dir}/callgrind.out.%p") : ();
	$c->{h} = IPC::Run::start([ @vg, "$tree/build/bin/conmgr", '-D', $c->{dir} ], '<', \undef,
		'>', $log, '2>&1');
	push @running, $c->{h};
	$c->{cmresolve} = "$tree/build/regress/tools/cmresolve";
	wait_until(sub { `$c->{cmresolve} -p $c->{port} -t any` =~ /end count=3/ }, 120)
	  or die "listener_instr: conmgr of $tree does not see its three instances up:\n"
	  . PostgreSQL::Test::Utils::slurp_file($log);
	# under valgrind the ps title is valgrind's: the pid comes from the log
	($c->{pid}) = PostgreSQL::Test::Utils::slurp_file($log) =~ /\[(\d+)\] listener LOG/
	  or die "listener_instr: no listener in $log\n";
	my $aout = '';
	$c->{att} = IPC::Run::start([ "$tree/build/bench/cmload", 'attach', '-p', $c->{port},
			'-n', $sessions, '-i', 1, '-w', 3600 ], '<', \undef, '>', \$aout, '2>&1');
	push @running, $c->{att};
	wait_until(sub { $c->{att}->pump_nb; $aout =~ /^attached n=/m }, 300)
	  or die "listener_instr: cmload attach: $aout\n";
	return $c;
}

# $n resolves, one after another, to $c.
sub resolves
{
	my ($c, $n) = @_;
	my ($out) = run_command([ $c->{cmresolve}, '-p', $c->{port}, '-t', 'any', '-P', '-r', $n ]);
	$out =~ /^latency n=$n /m or die "listener_instr: cmresolve -r $n: $out\n";
	return;
}

sub stop_conmgr
{
	my ($c) = @_;
	$c->{att}->kill_kill;
	$c->{h}->signal('INT');
	$c->{h}->finish;
	@running = ();
	return;
}

# One conmgr of $tree under callgrind with $n resolves: the listener's
# instructions in its life.
sub run_once
{
	my ($tree, $n) = @_;
	my $c = start_conmgr($tree, 1);
	resolves($c, $n);
	stop_conmgr($c);
	my $file = "$c->{dir}/callgrind.out.$c->{pid}";
	my ($ir) = PostgreSQL::Test::Utils::slurp_file($file) =~ /^(?:summary|totals): (\d+)/m
	  or die "listener_instr: no total in $file\n";
	if ($ENV{CG_KEEP})
	{
		# for callgrind_annotate: CG_KEEP/<tree's name>.<resolves>
		my $name = $tree =~ s{.*/}{}r;
		PostgreSQL::Test::Utils::system_or_bail('cp', $file, "$ENV{CG_KEEP}/$name.$n");
	}
	return $ir;
}

# The listener's system calls per resolve, by name: strace -c on the
# listener of a conmgr run natively, around $many resolves.
sub syscalls
{
	my ($tree) = @_;
	my $c = start_conmgr($tree, 0);
	my $file = "$c->{dir}/strace.out";
	my $st = IPC::Run::start([ 'strace', '-c', '-o', $file, '-p', $c->{pid} ], '<', \undef,
		'>', \my $sout, '2>', \my $serr);
	# strace says when it is attached
	wait_until(sub { $st->pump_nb; $serr =~ /attached/ }, 30)
	  or die "listener_instr: strace -p $c->{pid}: $serr\n";
	resolves($c, $many);
	$st->signal('INT');
	$st->finish;
	stop_conmgr($c);
	my %calls;
	for (split /\n/, PostgreSQL::Test::Utils::slurp_file($file))
	{
		# % time, seconds, usecs/call, calls, [errors], syscall
		$calls{$2} = $1 / $many if /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$/;
	}
	return \%calls;
}

my %per;
for my $r (1 .. $rounds)
{
	for my $side ($r % 2 ? qw(old new) : qw(new old))
	{
		my $a = run_once($tree{$side}, $few);
		my $b = run_once($tree{$side}, $many);
		push @{ $per{$side} }, ($b - $a) / ($many - $few);
		printf $OUT "round %d %s: %.0f instructions per resolve\n", $r, $side, $per{$side}[-1];
	}
}
my %sys = map { $_ => syscalls($tree{$_}) } qw(old new);

sub med
{
	my @s = sort { $a <=> $b } @_;
	return (($s[ $#s / 2 ] + $s[ @s / 2 ]) / 2, $s[0], $s[-1]);
}

my %m = map { $_ => [ med(@{ $per{$_} }) ] } qw(old new);
printf $OUT "the listener's user-space instructions per resolve (callgrind; %d rounds of "
  . "%d - %d resolves, %d sessions attached), median (min-max):\n", $rounds, $many, $few, $sessions;
printf $OUT "  %-4s %8.0f (%.0f-%.0f)  %s\n", $_, @{ $m{$_} }, $tree{$_} for qw(old new);
printf $OUT "  new / old = %.3f\n", $m{new}[0] / $m{old}[0];
printf $OUT "the listener's system calls per resolve (strace -c, %d resolves, no valgrind):\n", $many;
my %names = map { %{ $sys{$_} } } qw(old new);
for my $call (sort { ($sys{new}{$b} // 0) <=> ($sys{new}{$a} // 0) } keys %names)
{
	printf $OUT "  %-16s old %6.2f  new %6.2f\n", $call, $sys{old}{$call} // 0, $sys{new}{$call} // 0;
}
