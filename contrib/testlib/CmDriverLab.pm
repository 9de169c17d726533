=pod

=head1 NAME

CmDriverLab - the lab the driver tests (regress/t/08x_*.t) share

=head1 DESCRIPTION

A primary and one streaming standby, each with the watchdog, and conmgr in
front of both (heartbeat_interval 1 s, heartbeat_timeout 2 s). Also: build
a contrib/ directory's test program into a temporary directory, run
commands, follow a background program's output, and "lose" an instance by
stopping all its processes (SIGSTOP): its heartbeat falls silent as behind
a dead link while its sockets stay open, so only conmgr's down-notice can
end a query that waits on it.

=cut

package CmDriverLab;

use strict;
use warnings;
use Cwd ();
use Exporter 'import';
use CmTest qw(cm_top watchdog_cluster wait_until);
use CmTest::Conmgr;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Time::HiRes qw(time usleep);

our @EXPORT = qw(lab_start build_contrib run_cmd bg_start bg_wait bg_out);

=pod

=head2 lab_start(%opt)

Start the instances and conmgr; wait until conmgr routes to both.
C<< conf => TEXT >> adds lines to conmgr.conf. Returns
the lab: C<< $lab->{port}{p|s} >>, C<< $lab->{cmport} >>,
C<< $lab->{hb_timeout} >>, C<< $lab->{node}{p|s} >>, C<< $lab->{top} >>
(the tree), C<< $lab->{lib} >> (build/lib), C<< $lab->{dropin} >>,
C<< $lab->{cmdir} >> (conmgr's data directory) and C<< $lab->{cm} >> (its
CmTest::Conmgr). C<< $lab->role_pid($title) >> is the pid of conmgr's
role whose ps title begins with $title.

=cut

sub lab_start
{
	my (%opt) = @_;
	my $top = Cwd::realpath(cm_top());
	my %lab = (top => $top, hb_interval => 1, hb_timeout => 2,
		lib => "$top/build/lib", dropin => "$top/build/lib/dropin");
	my ($node, $wdp) = watchdog_cluster(p => 'primary', s => 'standby');
	my %wd = %$wdp;
	$lab{node} = $node;
	$lab{port} = { map { $_ => $node->{$_}->port } keys %$node };
	$lab{wd} = \%wd;
	$lab{name_of} = { reverse %{ $lab{port} } };

	$lab{cm} = CmTest::Conmgr->new('lab',
		instances => [ map { [ $node->{$_}, $wd{$_} ] } qw(p s) ],
		conf => { heartbeat_interval => $lab{hb_interval}, heartbeat_timeout => $lab{hb_timeout} });
	$lab{cmport} = $lab{cm}->port;
	$lab{cmdir} = $lab{cm}->cmdata;
	$lab{cm}->append_conf($opt{conf}) if $opt{conf};
	# Routing to both is waited for below, 30 s from the start.
	$lab{cm}->start(wait => 0);
	my $self = bless \%lab, __PACKAGE__;
	die "conmgr does not route to both instances:\n" . $lab{cm}->log_content
	  unless wait_until(sub { $self->routable('any') == 2 }, 30);
	return $self;
}

# How many candidates conmgr offers for a libpq target_session_attrs.
sub routable
{
	my ($self, $target) = @_;
	return scalar(() = $self->{cm}->resolve($target) =~ /^candidate /mg);
}

# The pid of this lab's conmgr role whose ps title begins with $title.
sub role_pid
{
	my ($self, $title) = @_;
	return $self->{cm}->role_pid($title);
}

# 'p', 's' or "port N" for an instance's port.
sub name_of
{
	my ($self, $port) = @_;
	return $self->{name_of}{ $port // 0 } // ('port ' . ($port // 'none'));
}

# Every process of an instance (postmaster and children).
sub instance_pids
{
	my ($self, $n) = @_;
	my $pm = $self->{node}{$n}{_pid};
	return ($pm, split /\s+/, `pgrep -P $pm`);
}

# Wait until a query that starts with $like runs on instance $n.
sub wait_query
{
	my ($self, $n, $like, $count) = @_;
	$count //= 1;
	return wait_until(sub {
		$self->{node}{$n}->safe_psql('postgres',
			"SELECT count(*) FROM pg_stat_activity WHERE query LIKE '$like%' AND pid <> pg_backend_pid()")
		  >= $count;
	}, 30);
}

=pod

=head2 $lab->lose($n, $secs, @waits)

Stop every process of instance $n, then wait (up to $secs) until each
C<[$bg, $re]> of @waits matches. Returns the seconds from the stop to each
match (undef for none), after resuming the instance and waiting until
conmgr routes to it again.

=cut

sub lose
{
	my ($self, $n, $secs, @waits) = @_;
	my @pids = $self->instance_pids($n);
	my @took = (undef) x @waits;
	my $t0 = time();
	kill 'STOP', @pids;
	my $deadline = $t0 + $secs;
	while (time() < $deadline && grep { !defined } @took)
	{
		for my $i (0 .. $#waits)
		{
			next if defined $took[$i];
			my ($bg, $re) = @{ $waits[$i] };
			$took[$i] = time() - $t0 if bg_wait($bg, $re, 0);
		}
		usleep(5_000);
	}
	kill 'CONT', @pids;
	wait_until(sub { $self->routable('any') == 2 }, 30);
	return @took;
}

sub stop
{
	my ($self) = @_;
	$self->{cm}->stop('smart');
	return;
}

=pod

=head2 build_contrib($name)

Build contrib/$name's test programs (its Makefile) into a temporary
directory; returns that directory (dies with make's output on failure).

=cut

sub build_contrib
{
	my ($name, @vars) = @_;
	my $top = Cwd::realpath(cm_top());
	my $out = PostgreSQL::Test::Utils::tempdir();
	my ($so, $se, $rc) = run_cmd('make', '-s', '-C', "$top/contrib/$name", "O=$out", @vars);
	die "make -C contrib/$name failed:\n$so$se" if $rc;
	return $out;
}

# Run a command (60 s at most); returns (stdout, stderr, exit status).
sub run_cmd
{
	my (@cmd) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run(\@cmd, '<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(60));
	return ($out, $err, $? >> 8);
}

# A command in the background, stdout and stderr together.
sub bg_start
{
	my (@cmd) = @_;
	my $out = '';
	my $h = IPC::Run::start(\@cmd, '<', \undef, '>', \$out, '2>&1');
	return { h => $h, out => \$out };
}

# Wait up to $secs for the output to match $re (0: look once).
sub bg_wait
{
	my ($bg, $re, $secs) = @_;
	my $deadline = time() + ($secs // 30);
	while (1)
	{
		$bg->{h}->pump_nb if $bg->{h}->pumpable;
		return 1 if ${ $bg->{out} } =~ $re;
		return 0 if time() >= $deadline;
		usleep(10_000);
	}
}

sub bg_out
{
	my ($bg) = @_;
	eval { $bg->{h}->finish; };
	return ${ $bg->{out} };
}

1;
