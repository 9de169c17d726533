
=pod

=head1 NAME

CmTest::Conmgr - one conmgr under test, shaped like PostgreSQL::Test::Cluster

=head1 SYNOPSIS

  use CmTest::Conmgr;

  my ($node, $wd) = watchdog_cluster(p => 'primary', s => 'standby');
  my $cm = CmTest::Conmgr->new('cm',
	  instances => [ [ $node->{p}, $wd->{p} ], [ $node->{s}, $wd->{s} ] ],
	  conf => { heartbeat_interval => 1, log_min_messages => 'LOG' });
  $cm->start(wait => 'up');
  like($cm->resolve('primary'), qr/candidate instance=0 /, 'routes to the primary');
  my $off = $cm->log_offset;
  kill 'KILL', $cm->role_pid('heartbeat 0 ');
  ok($cm->wait_for_log(qr/heartbeat 0 .* was terminated/, $off), 'the death is logged');
  $cm->stop;

=head1 DESCRIPTION

A conmgr directory (CMDATA, mode 0700, in the test's scratch space) with
its conmgr.conf, and the conmgr run from it in the foreground, its
standard output and error appended to a log file beside the test's
other logs (tmp_check/log/TEST_conmgr_NAME.log), so that a test reads
the log at any time without pumping a harness, and a failed run leaves
it for the reader.  The status comes from C<cm_ctl status --json>, the
routing answers from build/regress/tools/cmresolve, as an operator and
an application see them.

Every conmgr started through this class and still running when the
process that started it exits is sent SIGINT (a fast stop), so that none
outlives a test that died halfway.

The class loads no PostgreSQL::Test module itself: it uses
PostgreSQL::Test::Utils and Cluster when the script has loaded them, as
every test of regress/t does (the scratch directory, the log directory,
timeout_default, a free port), and otherwise needs C<dir> or C<cmdata>
and C<logfile> from new.  So the tests that run as root (regress/root,
the fault lab's regress/lib/CmLab.pm, the benchmarks' fault labs), which
run without PostgreSQL's test modules, use it too.

=cut

package CmTest::Conmgr;

use strict;
use warnings;
use Carp;
use CmTest qw(wait_until);
use Cwd qw(abs_path);
use File::Basename qw(basename dirname);
use File::Temp ();
use IO::Socket::INET;
use IPC::Run;
use JSON::PP ();

# The repository's top directory (this file is regress/lib/CmTest/Conmgr.pm),
# whichever script uses it.
my $top = abs_path(dirname(__FILE__) . '/../../..');

# Every object started, for the cleanup at exit.
my @started;

# The names given to new, for unique log file names.
my %names;

END
{
	local ($?, $!, $@);
	for my $self (@started)
	{
		# a forked child's exit stops nothing of its parent's
		next unless $self->{owner} == $$;
		my $pid = $self->{pid};
		kill 'INT', $pid if $pid && $self->running;
	}
}

# What PostgreSQL::Test::Utils gives when the script has loaded it, else
# the same without it.
sub timeout_default
{
	no warnings 'once';
	return $PostgreSQL::Test::Utils::timeout_default // $ENV{PG_TEST_TIMEOUT_DEFAULT} // 180;
}

sub free_port
{
	return PostgreSQL::Test::Cluster::get_free_port()
	  if defined &PostgreSQL::Test::Cluster::get_free_port;
	my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp', Listen => 1)
	  or croak "free port: $!";
	my $port = $s->sockport;
	close $s;
	return $port;
}

sub append_file
{
	my ($file, $text) = @_;
	open(my $f, '>>', $file) or croak "could not open \"$file\": $!";
	print $f $text;
	close $f or croak "could not write \"$file\": $!";
	return;
}

sub slurp_from
{
	my ($file, $offset) = @_;
	open(my $f, '<', $file) or croak "could not read \"$file\": $!";
	seek($f, $offset, 0) if $offset;
	local $/;
	my $text = <$f> // '';
	close $f;
	return $text;
}

=pod

=head2 CmTest::Conmgr->new($name, %options)

A new conmgr directory; nothing runs yet.  Options:

=over

=item instances => [ INSTANCE, ... ]

Instance N of conmgr.conf, each as C<[ $node, $watchdog_port ]> (a
PostgreSQL::Test::Cluster node on 127.0.0.1) or as a hash of the
instance's parameters without the number (C<< { backend_hostaddr =>
"'127.0.0.1'", backend_port => 5432, watchdog_port => 27545 } >>).

=item conf => { param => value, ... } or TEXT

More of conmgr.conf: parameters written one a line as given (quote
strings yourself, as in the file), or text added as it is.

=item port => PORT

The port for applications; a free one by default.  C<port> in C<conf>
is left out, so that the object knows the port conmgr uses.

=item cmdata => DIR

An existing conmgr directory (whose conmgr.conf is complete) to run
instead of a new one; C<port> then names its port.

=item dir => DIR

The new conmgr directory's path (it must not exist), instead of one in
the test's scratch space.

=item logfile => FILE

The log file, instead of tmp_check/log/TEST_conmgr_NAME.log (for a
conmgr started with C<daemon>, CMDATA/conmgr.log is cm_ctl's own
default).

=item build => DIR

The build tree whose programs run (DIR/bin/conmgr, DIR/bin/cm_ctl,
DIR/regress/tools/cmresolve); the repository's build/ by default.

=item owner => USER

Gives the directory and its conmgr.conf to USER (a test that runs as
root and starts conmgr as USER, since conmgr refuses root).

=item wrap => [ ... ]

A prefix for every command the object runs (conmgr or cm_ctl start,
cm_ctl status, cmresolve, ss), such as C<ip netns exec NS>: the host the
conmgr runs on.  start's C<prefix> comes after it.

=back

$name names the log file; a name given again in the same test gets a
suffix (C<cm_1>, C<cm_2>), so that each object reads only its own log.

=cut

sub new
{
	my ($class, $name, %o) = @_;
	my $testname = basename($0);
	$testname =~ s/\.[^.]+$//;
	$name .= '_' . $names{$name} if $names{$name}++;
	my $self = bless {
		name => $name,
		port => $o{port} // free_port(),
		build => $o{build} // "$top/build",
		wrap => $o{wrap} // [],
		owner => $$,
	}, $class;
	$self->{logfile} = $o{logfile}
	  // (defined $PostgreSQL::Test::Utils::log_path
		? "$PostgreSQL::Test::Utils::log_path/${testname}_conmgr_$name.log"
		: croak('new: logfile => FILE (no PostgreSQL::Test::Utils)'));

	if (defined $o{cmdata})
	{
		$self->{cmdata} = $o{cmdata};
		return $self;
	}
	if (defined $o{dir})
	{
		mkdir $o{dir} or croak "mkdir $o{dir}: $!";
		$self->{cmdata} = $o{dir};
	}
	elsif (defined &PostgreSQL::Test::Utils::tempdir)
	{
		$self->{cmdata} = PostgreSQL::Test::Utils::tempdir("conmgr_$name");
	}
	else
	{
		$self->{cmdata} = File::Temp::tempdir("conmgr_${name}_XXXX", TMPDIR => 1, CLEANUP => 1);
	}
	chmod 0700, $self->{cmdata} or croak "chmod $self->{cmdata}: $!";
	my $conf = "port = $self->{port}\n";
	my $n = 0;
	for my $inst (@{ $o{instances} // [] })
	{
		my %p = ref $inst eq 'ARRAY'
		  ? (backend_hostaddr => "'127.0.0.1'", backend_port => $inst->[0]->port,
			watchdog_port => $inst->[1])
		  : %$inst;
		$conf .= join('', map { "$_$n = $p{$_}\n" } sort keys %p);
		$n++;
	}
	$self->{ninstances} = $n;
	if (ref $o{conf} eq 'HASH')
	{
		$conf .= join('', map { "$_ = $o{conf}{$_}\n" } sort keys %{ $o{conf} });
	}
	elsif (defined $o{conf})
	{
		$conf .= $o{conf};
	}
	$self->append_conf($conf);
	if (defined $o{owner})
	{
		my ($uid, $gid) = (getpwnam($o{owner}))[ 2, 3 ];
		croak "new: no user $o{owner}" unless defined $uid;
		chown $uid, $gid, $self->{cmdata}, "$self->{cmdata}/conmgr.conf"
		  or croak "chown $self->{cmdata}: $!";
	}
	return $self;
}

=pod

=head2 $cm->append_conf($text)

Adds $text to conmgr.conf (a newline is added if it has none).

=cut

sub append_conf
{
	my ($self, $text) = @_;
	$text .= "\n" unless $text =~ /\n\z/;
	append_file("$self->{cmdata}/conmgr.conf", $text);
	return;
}

=pod

=head2 $cm->start(%options)

Runs C<conmgr -D CMDATA> in the background and waits until it is
ready: its pid file names it and says C<ready>, and its port is
listening (ss(8); no connection is made, so the log holds no line of the
wait).  Options:

=over

=item wait => 'listening' (the default), 'ready', 'up' or 0

C<'ready'>: only until the pid file names this conmgr and says C<ready>,
whatever the port.  In every wait a pid file left by a conmgr killed
earlier does not count, under a prefix too.  C<'up'>: also until C<cm_ctl status --json> shows
every instance's heartbeat up.  0: not at all (the test waits in its own
way, or times what comes first).

=item daemon => 1

Starts it as an operator does, with C<cm_ctl start -D CMDATA -t SECS>
(and C<-l LOGFILE> unless the log file is cm_ctl's default,
CMDATA/conmgr.log): conmgr runs in a session of its own, not as a child
of the test, and cm_ctl's wait is the wait: C<'primary'> (the default:
until conmgr answers a primary resolve), C<'up'> (C<--complete>: until
every instance is reachable) or C<'ready'> (C<-W>).  cm_ctl's exit
status decides; the pid is then the pid file's.

=item timeout => SECS

How long to wait (default: PostgreSQL::Test::Utils' timeout_default).

=item args => [ ... ]

More arguments for conmgr (C<-l FILE>, say), or for cm_ctl start with
C<daemon>.

=item prefix => [ ... ]

A command prefix, such as C<env LD_PRELOAD=...>, C<strace -f ...> or
C<runuser -u postgres -->, after new's C<wrap>.

=item ulimit_n => 'N' or 'SOFT:HARD'

Runs conmgr with that open-files limit (sh's C<ulimit -n N>, both
limits, or the hard limit then the soft one).

=item fail_ok => 1

Returns 0 when conmgr exits or is not ready in time, instead of dying.

=back

Returns 1 once ready.

=cut

sub start
{
	my ($self, %o) = @_;
	my $secs = $o{timeout} // timeout_default();
	my $prog = $o{daemon} ? 'cm_ctl' : 'conmgr';
	my @cmd = ("$self->{build}/bin/$prog", $o{daemon} ? 'start' : (), '-D', $self->{cmdata},
		@{ $o{args} // [] });
	if (defined $o{ulimit_n})
	{
		my ($soft, $hard) = split /:/, $o{ulimit_n};
		my $limits = defined $hard ? "ulimit -Hn $hard && ulimit -Sn $soft" : "ulimit -n $soft";
		@cmd = ('sh', '-c', "$limits && exec \"\$@\"", 'sh', @cmd);
	}
	unshift @cmd, @{ $o{prefix} // [] };
	unshift @cmd, @{ $self->{wrap} };

	$self->{log_start} = $self->log_offset;
	$self->{owner} = $$;
	return $self->start_daemon(\@cmd, $secs, %o) if $o{daemon};

	my $wait = $o{wait} // 'listening';
	my $stale = $self->pidfile_line(0) // '';
	append_file($self->{logfile}, '');
	delete $self->{daemon};
	$self->{h} = IPC::Run::start(\@cmd, '<', '/dev/null', '>>', $self->{logfile}, '2>&1');
	$self->{pid} = $self->{h}{KIDS}[0]{PID};
	push @started, $self;
	return 1 unless $wait;

	# A pid file left by a conmgr killed earlier does not count: it must
	# name another pid than before the start, and this one's (under a
	# prefix such as strace, whose pid start does not know, any other).
	my $ours = sub {
		my $pid = $self->pidfile_line(0) // '';
		return $pid ne '' && $pid ne $stale
		  && (@{ $o{prefix} // [] } || $pid eq $self->{pid})
		  && ($self->pidfile_line(4) // '') eq 'ready';
	};
	my %ready = (
		ready => $ours,
		listening => sub { $ours->() && $self->listening },
		up => sub { $ours->() && $self->listening && $self->all_up });
	croak "start: unknown wait \"$wait\"" unless $ready{$wait};
	return 1 if wait_until(sub { !$self->running || $ready{$wait}->() }, $secs)
	  && $self->running;
	my $why = $self->running ? "not ready ($wait) within $secs s" : 'exited';
	return 0 if $o{fail_ok};
	croak "conmgr $self->{name} $why; its log:\n" . $self->log_content($self->{log_start});
}

# start(daemon => 1): cm_ctl start's own wait, then the pid file's pid.
sub start_daemon
{
	my ($self, $cmd, $secs, %o) = @_;
	my %flag = (primary => [], up => ['--complete'], ready => ['-W']);
	my $wait = $o{wait} // 'primary';
	my $flag = $flag{$wait} or croak "start: unknown wait \"$wait\" with daemon";
	my @log = $self->{logfile} eq "$self->{cmdata}/conmgr.log" ? () : ('-l', $self->{logfile});
	push @$cmd, @$flag, @log, '-t', int($secs);
	my ($out, $err) = ('', '');
	my $ok = eval {
		IPC::Run::run($cmd, '<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout($secs + 10));
		1;
	};
	my $rc = $ok ? $? >> 8 : -1;
	$self->{daemon} = 1;
	delete $self->{h};
	$self->{pid} = $self->pidfile_line(0);
	push @started, $self if $self->{pid};
	return 1 if $rc == 0 && $self->{pid};
	return 0 if $o{fail_ok};
	croak "conmgr $self->{name}: cm_ctl start failed ($rc): $out$err" . ($ok ? '' : $@)
	  . "\nits log:\n" . $self->log_content($self->{log_start});
}

=pod

=head2 $cm->stop($mode)

Stops conmgr with the signal of C<cm_ctl stop -m $mode>: C<smart>
(SIGTERM), C<fast> (SIGINT, the default) or C<immediate> (SIGQUIT),
and waits for it to exit (at most timeout_default seconds; then it is
killed and the stop croaks).  Returns its exit status as C<$?> has it;
0 for a conmgr started with C<daemon>, whose status goes to its own
parent.

=cut

sub stop
{
	my ($self, $mode) = @_;
	my %sig = (smart => 'TERM', fast => 'INT', immediate => 'QUIT');
	my $sig = $sig{ $mode // 'fast' } or croak "stop: unknown mode \"$mode\"";
	$self->signal($sig);
	return $self->wait_exit(timeout_default()) // do
	{
		$self->{daemon} ? kill('KILL', $self->{pid}) : $self->{h}->kill_kill;
		croak "conmgr $self->{name} did not stop";
	};
}

=pod

=head2 $cm->kill9

Kills the supervisor (SIGKILL) and reaps it; its roles exit by
themselves on the end of their pipe from it.  A conmgr started with
C<daemon> is killed with its whole process group (cm_ctl starts it in a
session of its own), as a crash of the host would; kill9 returns once
the supervisor is gone (or a zombie: it is not the test's child to reap).

=cut

sub kill9
{
	my ($self) = @_;
	if ($self->{daemon})
	{
		return unless $self->{pid};
		kill 'KILL', -$self->{pid};
		wait_until(sub { !$self->running }, timeout_default());
		return;
	}
	kill 'KILL', $self->{pid} if $self->running;
	$self->{h}->finish;
	return;
}

=pod

=head2 $cm->signal($sig)

Sends $sig (a name) to the supervisor, if it runs.

=cut

sub signal
{
	my ($self, $sig) = @_;
	kill $sig, $self->{pid} if $self->running;
	return;
}

=pod

=head2 $cm->wait_exit($secs)

Waits up to $secs for conmgr to exit; returns its exit status (as C<$?>
has it; 0 with C<daemon>), or undef if it still runs.

=cut

sub wait_exit
{
	my ($self, $secs) = @_;
	return undef unless wait_until(sub { !$self->running }, $secs);
	return 0 if $self->{daemon};
	$self->{h}->finish;
	return $self->{h}->full_result(0);
}

=pod

=head2 $cm->running

Whether the supervisor started last is still running (with C<daemon>:
its process exists and is not a zombie waiting for its parent).

=cut

sub running
{
	my ($self) = @_;
	if ($self->{daemon})
	{
		my $pid = $self->{pid} or return 0;
		open(my $f, '<', "/proc/$pid/stat") or return 0;
		my $stat = <$f> // '';
		close $f;
		return $stat =~ /\)\s+Z\s/ ? 0 : 1;
	}
	return 0 unless $self->{h};
	return $self->{h}->pumpable ? 1 : 0;
}

=pod

=head2 $cm->name, port, cmdata, pid, logfile, ninstances

The name given to new, the application port, the conmgr directory, the
pid of the last start's process (the supervisor, or the prefix's program
when that does not exec conmgr, as strace does not; with C<daemon>, the
pid file's), the log file, the number of instances new wrote.

=cut

sub name { return $_[0]{name} }
sub port { return $_[0]{port} }
sub cmdata { return $_[0]{cmdata} }
sub pid { return $_[0]{pid} }
sub logfile { return $_[0]{logfile} }
sub ninstances { return $_[0]{ninstances} }

=pod

=head2 $cm->connstr($target)

A libpq connection string to postgres through this conmgr, with
target_session_attrs $target (default any).

=cut

sub connstr
{
	my ($self, $target) = @_;
	return "host=localhost port=$self->{port} dbname=postgres target_session_attrs="
	  . ($target // 'any');
}

# Line $n (from 0) of conmgr.pid (docs/conmgr.md: pid, directory, start
# time, port, status), or undef.
sub pidfile_line
{
	my ($self, $n) = @_;
	open(my $f, '<', "$self->{cmdata}/conmgr.pid") or return undef;
	my @l = <$f>;
	close $f;
	return undef unless defined $l[$n];
	chomp $l[$n];
	return $l[$n];
}

# Whether a socket listens on the application port (ss, no connection).
sub listening
{
	my ($self) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ @{ $self->{wrap} }, 'ss', '-Htln', 'sport', '=', ":$self->{port}" ],
		'<', \undef, '>', \$out, '2>', \$err) or croak "ss failed: $err";
	return $out =~ /\S/ ? 1 : 0;
}

=pod

=head2 $cm->status

C<cm_ctl status --json>, decoded: C<< { running => 1, pid, port,
instances => [ { instance, address, backend_port, watchdog_port,
heartbeat, role, timeline, since } ], applications => [ ... ] } >>,
C<< { running => 0 } >> when none runs; undef (with a note) when cm_ctl
fails otherwise or prints what does not parse.

=cut

sub status
{
	my ($self, @opt) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ @{ $self->{wrap} }, "$self->{build}/bin/cm_ctl", 'status', '-D', $self->{cmdata}, '--json', @opt ],
		'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(30));
	my $rc = $? >> 8;
	my $j = ($rc == 0 || $rc == 3) ? eval { JSON::PP::decode_json($out) } : undef;
	Test::More::note("cm_ctl status --json: exit $rc: $out$err") unless $j || !defined &Test::More::note;
	return $j;
}

=pod

=head2 $cm->all_up

Whether the status shows every configured instance's heartbeat up.

=cut

sub all_up
{
	my ($self) = @_;
	my $s = $self->status or return 0;
	my @inst = @{ $s->{instances} // [] };
	return @inst && !grep { $_->{heartbeat} ne 'up' } @inst;
}

=pod

=head2 $cm->resolve($target, @options)

What build/regress/tools/cmresolve prints for one request for $target to
this conmgr (@options are cmresolve's: C<-a>, C<-w SECS>, C<-P>, ...).
In list context: its standard output and error.

=cut

sub resolve
{
	my ($self, $target, @opt) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ @{ $self->{wrap} }, "$self->{build}/regress/tools/cmresolve", '-p', $self->{port}, '-t', $target, @opt ],
		'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(120));
	return wantarray ? ($out, $err) : $out;
}

=pod

=head2 $cm->role_pid($title)

The pid of this conmgr's role whose ps title begins with $title
(C<'logger'>, C<'listener :PORT'>, C<'heartbeat 0 '>), or undef.

=cut

sub role_pid
{
	my ($self, $title) = @_;
	return CmTest::role_pid($self->{cmdata}, $title);
}

=head2 $cm->role_pids($title)

The pids of every role of this conmgr whose ps title begins with $title
(C<'forwarder '>: the forwarder_processes of them).

=cut

sub role_pids
{
	my ($self, $title) = @_;
	return CmTest::role_pids($self->{cmdata}, $title);
}

=pod

=head2 $cm->log_content($offset), log_offset, log_contains($re, $offset)

The log from byte $offset (default 0) on; its size now; whether the log
from $offset matches $re.

=cut

sub log_content
{
	my ($self, $offset) = @_;
	return '' unless -e $self->{logfile};
	return slurp_from($self->{logfile}, $offset // 0);
}

sub log_offset
{
	my ($self) = @_;
	return -s $self->{logfile} // 0;
}

sub log_contains
{
	my ($self, $re, $offset) = @_;
	return $self->log_content($offset) =~ $re ? 1 : 0;
}

=pod

=head2 $cm->wait_for_log($re, $offset, $secs)

Waits until the log from $offset (default 0) matches $re, for $secs
(default timeout_default).  Returns the offset just past the log read,
as Cluster's does, or, unlike it, undef on a timeout instead of dying,
so that a test writes C<ok($cm-E<gt>wait_for_log(...), 'what')>.

=cut

sub wait_for_log
{
	my ($self, $re, $offset, $secs) = @_;
	$offset //= 0;
	my $end;
	wait_until(
		sub {
			my $log = $self->log_content($offset);
			$end = $offset + length($log) if $log =~ $re;
			return defined $end;
		},
		$secs // timeout_default());
	return $end;
}

1;
