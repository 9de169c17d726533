
=pod

=head1 NAME

CmResolveCount - the listener's cost of one resolve, counted rather than timed

=head1 SYNOPSIS

  use CmResolveCount;

  # instances: [ backend port, watchdog port ] each, all up
  my $ir = CmResolveCount::instructions(tree => $top, instances => \@inst,
      sessions => 1000, few => 200, many => 1200);
  my $calls = CmResolveCount::syscalls(tree => $top, instances => \@inst,
      sessions => 1000, n => 1200);    # { epoll_pwait => 2, ... }

=head1 DESCRIPTION

instructions() starts a conmgr of the built tree (TREE/build/bin/conmgr)
in front of the instances on 127.0.0.1 under valgrind's callgrind,
attaches SESSIONS application sessions (TREE/build/bench/cmload attach),
makes N whole sessions one after another (TREE/build/regress/tools/cmresolve
-r N -P: connect, probe and RESOLVE in one packet, candidates, close) and
stops it; the listener's callgrind total is what it executed in user space
in its life.  Two such runs, N = FEW and N = MANY, give the instructions of
MANY - FEW resolves as the difference of their totals, without start-up,
attaching and shutdown; it returns that divided by MANY - FEW.  perf's
hardware counters are not used, since a virtual machine may have none, and
callgrind_control cannot reach a role forked by the supervisor.  keep =>
DIR copies each run's callgrind file of the listener to DIR/NAME.N (NAME:
the tree's last path component), for callgrind_annotate.

syscalls() runs the same conmgr without valgrind and counts the listener's
system calls by name around N resolves (strace -c), per resolve.

Each run's conmgr is a CmTest::Conmgr (its directory in the scratch space
of PostgreSQL::Test::Utils, its log in the test log directory);
the open-files limit must allow SESSIONS plus conmgr's own descriptors
under valgrind.  A run that dies leaves nothing running.

=cut

package CmResolveCount;

use strict;
use warnings;
use CmTest qw(wait_until);
use CmTest::Conmgr;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;

my @running;    # what END stops if a run dies half-way

END
{
	my $status = $?;
	eval { $_->isa('CmTest::Conmgr') ? $_->kill9 : $_->kill_kill } for @running;
	$? = $status;
}

# Start a conmgr of the tree (under callgrind when $cg) in front of the
# instances; wait until it sees them all up and attach the sessions.
sub start_conmgr
{
	my ($o, $cg) = @_;
	my $tree = $o->{tree};
	my @inst = @{ $o->{instances} };
	my $cm = CmTest::Conmgr->new('count', build => "$tree/build",
		instances => [
			map { { backend_hostaddr => "'127.0.0.1'", backend_port => $_->[0], watchdog_port => $_->[1] } } @inst
		],
		conf => { log_min_messages => 'WARNING' });
	my $c = { cm => $cm, dir => $cm->cmdata, port => $cm->port };
	my @vg = $cg ? ('valgrind', '--tool=callgrind', "--callgrind-out-file=$c->{dir}/callgrind.out.%p") : ();
	$cm->start(wait => 0, prefix => \@vg);
	push @running, $cm;
	$c->{cmresolve} = "$tree/build/regress/tools/cmresolve";
	my $n = scalar @inst;
	wait_until(sub { $cm->resolve('any') =~ /end count=$n/ }, 120)
	  or die "CmResolveCount: conmgr of $tree does not see its $n instances up:\n" . $cm->log_content;
	# under valgrind the ps title is valgrind's: the pid comes from the log
	($c->{pid}) = $cm->log_content =~ /\[(\d+)\] listener LOG/
	  or die "CmResolveCount: no listener in " . $cm->logfile . "\n";
	my $aout = '';
	$c->{att} = IPC::Run::start([ "$tree/build/bench/cmload", 'attach', '-p', $c->{port},
			'-n', $o->{sessions}, '-i', 1, '-w', 3600 ], '<', \undef, '>', \$aout, '2>&1');
	push @running, $c->{att};
	wait_until(sub { $c->{att}->pump_nb; $aout =~ /^attached n=/m }, 300)
	  or die "CmResolveCount: cmload attach: $aout\n";
	return $c;
}

# $n resolves, one after another.
sub resolves
{
	my ($c, $n) = @_;
	my ($out) = run_command([ $c->{cmresolve}, '-p', $c->{port}, '-t', 'any', '-P', '-r', $n ]);
	$out =~ /^latency n=$n /m or die "CmResolveCount: cmresolve -r $n: $out\n";
	return;
}

sub stop_conmgr
{
	my ($c) = @_;
	$c->{att}->kill_kill;
	$c->{cm}->stop('fast');
	@running = ();
	return;
}

# The listener's instructions in the life of a conmgr that served $n resolves.
sub lifetime
{
	my ($o, $n) = @_;
	my $c = start_conmgr($o, 1);
	resolves($c, $n);
	stop_conmgr($c);
	my $file = "$c->{dir}/callgrind.out.$c->{pid}";
	my ($ir) = PostgreSQL::Test::Utils::slurp_file($file) =~ /^(?:summary|totals): (\d+)/m
	  or die "CmResolveCount: no total in $file\n";
	if ($o->{keep})
	{
		my $name = $o->{tree} =~ s{.*/}{}r;
		PostgreSQL::Test::Utils::system_or_bail('cp', $file, "$o->{keep}/$name.$n");
	}
	return $ir;
}

sub instructions
{
	my (%o) = @_;
	die "CmResolveCount: many must exceed few\n" unless $o{many} > $o{few};
	my $few = lifetime(\%o, $o{few});
	my $many = lifetime(\%o, $o{many});
	return ($many - $few) / ($o{many} - $o{few});
}

sub syscalls
{
	my (%o) = @_;
	my $c = start_conmgr(\%o, 0);
	my $file = "$c->{dir}/strace.out";
	my $st = IPC::Run::start([ 'strace', '-c', '-o', $file, '-p', $c->{pid} ], '<', \undef,
		'>', \my $sout, '2>', \my $serr);
	# strace says when it is attached
	wait_until(sub { $st->pump_nb; $serr =~ /attached/ }, 30)
	  or die "CmResolveCount: strace -p $c->{pid}: $serr\n";
	resolves($c, $o{n});
	$st->signal('INT');
	$st->finish;
	stop_conmgr($c);
	my %calls;
	for (split /\n/, PostgreSQL::Test::Utils::slurp_file($file))
	{
		# % time, seconds, usecs/call, calls, [errors], syscall
		$calls{$2} = $1 / $o{n} if /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$/;
	}
	return \%calls;
}

1;
