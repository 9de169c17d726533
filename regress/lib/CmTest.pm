
=pod

=head1 NAME

CmTest - helpers shared by conmgr's TAP tests

=head1 DESCRIPTION

Finds the build tree, runs the heartbeat test client (build/regress/tools/
hbclient) in the background and reads its event lines, and opens raw
PostgreSQL sessions from a chosen loopback source address, which libpq
cannot do, so that tests can tell apart the SQL sessions of two "hosts"
(127.0.0.1 and 127.0.0.2) on one machine.

=cut

package CmTest;

use strict;
use warnings;
use Errno ();
use Exporter 'import';
use File::Temp ();
use FindBin;
use IO::Select;
use IO::Socket::INET;
use IO::Socket::UNIX;
use IPC::Run;
use Time::HiRes qw(time usleep);

our @EXPORT = qw(cm_top hb_start hb_wait hb_events hb_stop raw_pg_session
  wait_until foreign_env sanitized skip_under_asan watchdog_cluster time_wait_ports new_time_wait role_pid
  cm_confdir fake_listener cm_status app_connects watchdog_node read_whole_frame
  faketime_env set_fake_offset watchdog_workers_restart cmapp_start cmapp_wait
  trap_caught fake_conmgr_start tcp_unix_traps);

# A test that dies leaves the conmgrs it started running (an IPC::Run
# harness is not stopped at exit, and a conmgr outlives its parent); stop
# every conmgr this test process started itself, so that none outlives it.
END
{
	local ($?, $!, $@);
	for my $f (glob('/proc/[0-9]*/stat'))
	{
		open(my $fh, '<', $f) or next;
		my $stat = <$fh> // '';
		close $fh;
		my ($pid, $ppid) = $stat =~ /^(\d+) \(.*\) \S+ (\d+) /s or next;
		next unless $ppid == $$;
		open($fh, '<', "/proc/$pid/cmdline") or next;
		my $cmd = do { local $/; <$fh> } // '';
		close $fh;
		kill 'INT', $pid if $cmd =~ /^conmgr: supervisor /;
	}
}

# The repository's top directory (regress/t/../..).
sub cm_top
{
	return "$FindBin::RealBin/../..";
}

=pod

=head2 foreign_env(VAR => value, ...)

The command prefix C<('env', 'VAR=value', ...)> that runs a program not
built by this tree (psql, pgbench, pg_isready, python3, contrib programs)
with libpq-cm loaded into it, by C<LD_PRELOAD> or by C<LD_LIBRARY_PATH>
(the drop-in libpq.so.5). Tests use it instead of writing C<env
LD_PRELOAD=...> themselves.

Under C<make check-asan> (C<CM_SANITIZE=1>, see docs/hardening.md)
libpq-cm is built with ASan, whose runtime must come first in a program's
initial library list: it is put at the head of C<LD_PRELOAD>, followed by
build/regress/asan-initfirst.so, which starts it before the program's
other libraries (regress/sanitizer/asan-initfirst.c says why), and leak
detection is turned off for that program (what psql or python3 leave
allocated at exit is not ours; libpq-cm's own leaks are looked for in
cmapp, which is built with ASan). Otherwise it is plain C<env>.

=cut

sub foreign_env
{
	my (%var) = @_;
	if (sanitized())
	{
		my $shim = cm_top() . '/build/regress/asan-initfirst.so';
		$var{LD_PRELOAD} = join(':', asan_runtime(), $shim, $var{LD_PRELOAD} // ());
		$var{ASAN_OPTIONS} = join(':', $ENV{ASAN_OPTIONS} // (), 'detect_leaks=0');
	}
	return ('env', map { "$_=$var{$_}" } sort keys %var);
}

# True under make check-asan: the tree is built with the sanitizers.
sub sanitized
{
	return ($ENV{CM_SANITIZE} // '') eq '1';
}

# A test that runs no code of this tree under make check-asan skips there,
# saying why: make check's plain pass runs it.
sub skip_under_asan
{
	my ($why) = @_;
	Test::More::plan(skip_all => "make check-asan: $why (make check runs this test)") if sanitized();
	return;
}

# The ASan runtime libpq-cm.so.1 is linked with (gcc: libasan.so.N, clang:
# libclang_rt.asan-ARCH.so), as the dynamic linker finds it.
my $asan_runtime;

sub asan_runtime
{
	return $asan_runtime if defined $asan_runtime;
	my $lib = cm_top() . '/build/lib/libpq-cm.so.1';
	my $ldd = `ldd $lib 2>&1`;
	($asan_runtime) = $ldd =~ m{^\s*lib(?:asan|clang_rt\.asan)[^\s]*\.so\S*\s+=>\s+(\S+)}m;
	die "CM_SANITIZE=1, but $lib is not linked with an ASan runtime:\n$ldd"
	  unless defined $asan_runtime;
	return $asan_runtime;
}

=pod

=head2 hb_start(port => P, interval => I, timeout => T, ...)

Start hbclient against 127.0.0.1:P. Options: bind (source address),
sessions, handshakes (at most that many sessions in their handshake at
once), key (key file), silent_after (seconds), duration (default 120),
verbose (print every beat), max_version (offer protocol versions up to it
only, as an older conmgr). Returns a handle for hb_wait/hb_events/hb_stop.

=cut

sub hb_start
{
	my (%o) = @_;
	my $out = '';
	my $err = '';
	my @cmd = (
		cm_top() . '/build/regress/tools/hbclient',
		'-h', $o{host} // '127.0.0.1',
		'-p', $o{port},
		'-i', $o{interval} // 10,
		'-t', $o{timeout} // 20,
		'-n', $o{sessions} // 1,
		'-d', $o{duration} // 120);
	push @cmd, '-b', $o{bind} if defined $o{bind};
	push @cmd, '-c', $o{handshakes} if defined $o{handshakes};
	push @cmd, '-k', $o{key} if defined $o{key};
	push @cmd, '-s', $o{silent_after} if defined $o{silent_after};
	push @cmd, '-V', $o{max_version} if defined $o{max_version};
	push @cmd, '-v' if $o{verbose};
	my $h = IPC::Run::start(\@cmd, '<', \undef, '>', \$out, '2>', \$err);
	return { h => $h, out => \$out, err => \$err, cmd => "@cmd" };
}

# Wait until the client's output matches $re; returns the match or undef.
sub hb_wait
{
	my ($c, $re, $secs) = @_;
	my $deadline = time() + ($secs // 30);
	while (time() < $deadline)
	{
		$c->{h}->pump_nb if $c->{h}->pumpable;
		return $1 // $& if ${ $c->{out} } =~ $re;
		usleep(10_000);
	}
	return undef;
}

# Every event line as a hash: T, W, s, what, rest.
sub hb_events
{
	my ($c) = @_;
	$c->{h}->pump_nb if $c->{h}->pumpable;
	my @ev;
	for my $line (split /\n/, ${ $c->{out} })
	{
		next unless $line =~ /^T=(\S+) W=(\S+) s=(-?\d+) (\S+)\s*(.*)$/;
		push @ev, { T => $1, W => $2, s => $3, what => $4, rest => $5 };
	}
	return @ev;
}

sub hb_stop
{
	my ($c) = @_;
	$c->{h}->signal('TERM') if $c->{h}->pumpable;
	eval { $c->{h}->finish; };
	return;
}

=pod

=head2 raw_pg_session($src, $port, $appname)

A PostgreSQL session to 127.0.0.1:$port from source address $src, opened by
hand (StartupMessage, trust authentication, until ReadyForQuery). Returns the
socket; the session stays idle until closed.

=cut

sub raw_pg_session
{
	my ($src, $port, $appname) = @_;
	my $s = IO::Socket::INET->new(
		PeerAddr  => '127.0.0.1',
		PeerPort  => $port,
		LocalAddr => $src,
		Proto     => 'tcp',
		Timeout   => 10) or die "raw_pg_session from $src: $!";
	my $user = getpwuid($<);
	my $params =
	  "user\0$user\0database\0postgres\0application_name\0$appname\0\0";
	print $s pack('NN', 8 + length($params), 196608) . $params;
	my $buf = '';
	my $deadline = time() + 10;
	while (time() < $deadline)
	{
		my $n = sysread($s, $buf, 8192, length $buf);
		die "raw_pg_session: connection closed during startup" unless $n;
		while (length($buf) >= 5)
		{
			my ($type, $len) = unpack('aN', $buf);
			last if length($buf) < $len + 1;
			die "raw_pg_session: server error: " . substr($buf, 5, $len - 4)
			  if $type eq 'E';
			return $s if $type eq 'Z';
			substr($buf, 0, $len + 1) = '';
		}
	}
	die "raw_pg_session: no ReadyForQuery";
}

=pod

=head2 watchdog_cluster([{ conf => TEXT },] key => name, ...)

A primary (the first pair) and streaming standbys (the others) on
127.0.0.1, each with the watchdog extension (watchdog.check_attr_interval
200 ms), started. Returns C<(\%node, \%wd)>: key => the
PostgreSQL::Test::Cluster node named name, key => its watchdog's port.
TEXT is added to the primary's postgresql.conf before its start (so the
standbys have it too), after the lines above, which it may override.

=cut

sub watchdog_cluster
{
	my (@pairs) = @_;
	my $opt = ref $pairs[0] eq 'HASH' ? shift @pairs : {};
	require PostgreSQL::Test::Cluster;
	my @keys = @pairs[ grep { $_ % 2 == 0 } 0 .. $#pairs ];
	my %name = @pairs;
	my %wd = map { $_ => PostgreSQL::Test::Cluster::get_free_port() } @keys;
	my ($pk, @sk) = @keys;
	my $p = PostgreSQL::Test::Cluster->new($name{$pk});
	$p->init(allows_streaming => 1);
	$p->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'watchdog'
listen_addresses = '127.0.0.1'
watchdog.port = $wd{$pk}
watchdog.listen_addresses = '127.0.0.1'
watchdog.check_attr_interval = 200
} . ($opt->{conf} // ''));
	$p->start;
	$p->backup('b');
	my %node = ($pk => $p);
	for my $k (@sk)
	{
		$node{$k} = PostgreSQL::Test::Cluster->new($name{$k});
		$node{$k}->init_from_backup($p, 'b', has_streaming => 1);
		$node{$k}->append_conf('postgresql.conf', "watchdog.port = $wd{$k}\n");
		$node{$k}->start;
	}
	return (\%node, \%wd);
}

=pod

=head2 watchdog_node($name, $conf)

A started server with the watchdog preloaded, PostgreSQL and the watchdog
listening on 127.0.0.1, trust for 127.0.0.0/8, CREATE EXTENSION done;
$conf is added to postgresql.conf before the start.  Returns the node and
its watchdog port.

=cut

sub watchdog_node
{
	my ($name, $conf) = @_;
	require PostgreSQL::Test::Cluster;
	my $wdport = PostgreSQL::Test::Cluster::get_free_port();
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'watchdog'
listen_addresses = '127.0.0.1'
watchdog.port = $wdport
watchdog.listen_addresses = '127.0.0.1'
} . ($conf // ''));
	$node->append_conf('pg_hba.conf', "host all all 127.0.0.0/8 trust\n");
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION watchdog');
	return ($node, $wdport);
}

=pod

=head2 faketime_env($file), set_fake_offset($file, $secs)

The environment that runs a program under libfaketime (Debian's
faketime) with its wall clock $secs off the real one, as set_fake_offset
last wrote into $file (re-read on every call; CLOCK_MONOTONIC is left
alone), as a list of NAME=VALUE for env(1); %ENV takes it as a hash.
set_fake_offset writes the file whole (rename), so that no read finds it
half written.

=cut

sub faketime_env
{
	my ($file) = @_;
	my ($lib) = glob('/usr/lib/*/faketime/libfaketime.so.1');
	die "libfaketime is not installed (tools/install-deps test)\n" unless defined $lib;
	return ("LD_PRELOAD=$lib", "FAKETIME_TIMESTAMP_FILE=$file",
		'FAKETIME_NO_CACHE=1', 'FAKETIME_DONT_FAKE_MONOTONIC=1');
}

sub set_fake_offset
{
	my ($file, $secs) = @_;
	open(my $f, '>', "$file.new") or die "$file.new: $!";
	printf $f "%+d\n", $secs;
	close $f or die "$file.new: $!";
	rename("$file.new", $file) or die "rename $file: $!";
}

=pod

=head2 watchdog_workers_restart($node, $wdport)

Ends the watchdog's two workers once and waits until the postmaster has
started them again and the watchdog listens on $wdport.  A server started
under libfaketime needs it: libfaketime does not fake the clock while a
process is inside select(), and a child forked from a signal handler at
that moment keeps that state for good, which is how the postmaster starts
the workers at first; it restarts them from its main loop.

=cut

sub watchdog_workers_restart
{
	my ($node, $wdport) = @_;
	my $pid = sub {
		$node->safe_psql('postgres',
			"SELECT pid FROM pg_stat_activity WHERE backend_type = '$_[0]'");
	};
	for my $type ('watchdog', 'watchdog terminator')
	{
		my $old = $pid->($type);
		kill('TERM', $old) or die "could not stop the $type worker: $!";
		wait_until(sub { my $p = $pid->($type); $p ne '' && $p ne $old }, 20)
		  or die "the $type worker was not restarted\n";
	}
	$node->wait_for_log(qr/watchdog: listening on port $wdport /);
}

=pod

=head2 read_whole_frame($sock, $secs)

One whole protocol frame (docs/protocol.md, section 1) read from $sock,
blocking: what arrived before end of file if the peer closed first ('' if
nothing did), undef if none came within $secs (default 5) or the read
failed (the error is reported with diag).  A read interrupted by a signal
is repeated.

=cut

sub read_whole_frame
{
	my ($s, $secs) = @_;
	my $got = '';
	my $ok = eval {
		local $SIG{ALRM} = sub { die "timeout\n" };
		alarm($secs // 5);
		while (length($got) < 4 || length($got) < unpack('n', substr($got, 2, 2)))
		{
			my $n = sysread($s, $got, 512, length $got);
			next if !defined $n && $!{EINTR};
			die "read: $!\n" unless defined $n;
			last if $n == 0;
		}
		alarm 0;
		1;
	};
	alarm 0;
	Test::More::diag('read_whole_frame: ' . $@) if !$ok && $@ ne "timeout\n";
	return $ok ? $got : undef;
}

# Poll $cond every 20 ms for up to $secs; returns the time it became true.
# The local ports of this host's TIME_WAIT sockets towards $port (ss), as
# a set; new_time_wait() counts those that were not in an earlier set.
sub time_wait_ports
{
	my ($port) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'ss', '-Htan', 'state', 'time-wait', 'dport', '=', ":$port" ],
		'<', \undef, '>', \$out, '2>', \$err) or die "ss failed: $err";
	# Recv-Q Send-Q Local:port Peer:port (no State column with a state filter)
	return { map { $_ => 1 } $out =~ /^\s*\d+\s+\d+\s+\S+:(\d+)\s+\S+:\Q$port\E\s*$/mg };
}

sub new_time_wait
{
	my ($port, $before) = @_;
	return scalar grep { !$before->{$_} } keys %{ time_wait_ports($port) };
}

# The pid of the conmgr role whose ps title begins with $title ('logger',
# 'listener :PORT', 'heartbeat 0 ', ...), for the conmgr of data directory
# $dir.  Other conmgrs may run under the same user, so the role is looked
# up among the children of this one's supervisor.
sub role_pid
{
	my ($dir, $title) = @_;
	open(my $f, '<', "$dir/conmgr.pid") or return undef;
	my ($sup) = (<$f> // '') =~ /^(\d+)/;
	close $f;
	return undef unless $sup;
	my ($pid) = `ps -o pid=,args= --ppid $sup` =~ /^\s*(\d+)\s+conmgr: \Q$title\E/m;
	return $pid;
}

# Every role of that conmgr whose title begins with $title ('forwarder '
# gives the forwarder processes), in the order ps lists them.
sub role_pids
{
	my ($dir, $title) = @_;
	open(my $f, '<', "$dir/conmgr.pid") or return ();
	my ($sup) = (<$f> // '') =~ /^(\d+)/;
	close $f;
	return () unless $sup;
	return `ps -o pid=,args= --ppid $sup` =~ /^\s*(\d+)\s+conmgr: \Q$title\E/mg;
}

# A conmgr directory (mode 0700, in the test's own scratch space) whose
# conmgr.conf holds $conf.
sub cm_confdir
{
	my ($conf) = @_;
	require PostgreSQL::Test::Utils;
	my $dir = PostgreSQL::Test::Utils::tempdir();
	chmod 0700, $dir or die "chmod $dir: $!";
	PostgreSQL::Test::Utils::append_to_file("$dir/conmgr.conf", $conf);
	return $dir;
}

# A listening TCP socket on 127.0.0.1, on a port the kernel picks: a fake
# watchdog or other peer for conmgr to connect to ($sock->sockport).
sub fake_listener
{
	my $sock = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
		Listen => 16, ReuseAddr => 1) or die "fake listener: $!";
	return $sock;
}

# Two traps for connections: a TCP socket listening on 127.0.0.1 (a port
# the kernel picks) and a Unix socket for that port in $dir/sock, as libpq
# would look for it with host=$dir/sock.  The TCP socket, the Unix socket,
# the directory.
sub tcp_unix_traps
{
	my ($dir) = @_;
	my $trap = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 16,
		Proto => 'tcp', ReuseAddr => 1) or die "listen: $!";
	my $sockdir = "$dir/sock";
	mkdir $sockdir or die "mkdir $sockdir: $!";
	my $utrap = IO::Socket::UNIX->new(Local => "$sockdir/.s.PGSQL." . $trap->sockport, Listen => 16)
	  or die "listen on $sockdir: $!";
	return ($trap, $utrap, $sockdir);
}

# How many connections the listening sockets (traps a test sets where no
# connection should go) took since the last call; each is closed at once.
sub trap_caught
{
	my (@socks) = @_;
	my $n = 0;
	for my $s (@socks)
	{
		while (IO::Select->new($s)->can_read(0))
		{
			my $c = $s->accept or last;
			close $c;
			$n++;
		}
	}
	return $n;
}

# Start regress/tools/fake_conmgr.pl on $addr (any free port), logging to
# $log, naming the candidates [addr_kind, port, host]; the IPC::Run handle
# and the port it listens on.  The caller kills it (kill_kill, finish).
sub fake_conmgr_start
{
	my ($addr, $log, @cands) = @_;
	my $out = '';
	my $h = IPC::Run::start(
		[ 'perl', cm_top() . '/regress/tools/fake_conmgr.pl', $addr, 0, $log,
			map { join(',', $_->[0], $_->[1], unpack('H*', $_->[2])) } @cands ],
		'<', \undef, '>', \$out, '2>', \my $err, IPC::Run::timeout(300));
	$h->pump until $out =~ /^port (\d+)$/m;
	return ($h, $1);
}

# Whether a libpq-cm application (cmapp connect) connects with $conninfo
# within 20 s.
sub app_connects
{
	my ($conninfo) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ cm_top() . '/build/regress/tools/cmapp', 'connect', $conninfo ],
		'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(20));
	return $out =~ /^connected /m ? 1 : 0;
}

# What conmgr's listener answers "status" on the control socket of the
# conmgr of data directory $dir (docs/conmgr.md), as text; undef when it
# does not answer within 10 s.
sub cm_status
{
	my ($dir) = @_;
	require IO::Socket::UNIX;
	my $s = IO::Socket::UNIX->new(Peer => "$dir/conmgr.ctl", Type => IO::Socket::UNIX::SOCK_STREAM())
	  or return undef;
	print $s "status\n";
	my ($text, $deadline) = ('', time() + 10);
	while (time() < $deadline)
	{
		my $n = sysread($s, $text, 65536, length $text);
		last unless $n;
	}
	close $s;
	return $text =~ /^end instances=\d+ apps=\d+$/m ? $text : undef;
}

# cmapp (regress/tools/libpq-cm/cmapp.c) run in the background with @args,
# its standard output and error in one buffer; cmapp_wait() follows it.
sub cmapp_start
{
	my (@args) = @_;
	my $out = '';
	my $h = IPC::Run::start([ cm_top() . '/build/regress/tools/cmapp', @args ], '<', \undef, '>', \$out, '2>&1');
	return { h => $h, out => \$out };
}

# Whether cmapp's output matches $re within $secs (30 by default).
sub cmapp_wait
{
	my ($app, $re, $secs) = @_;
	my $deadline = time() + ($secs // 30);
	while (time() < $deadline)
	{
		$app->{h}->pump_nb if $app->{h}->pumpable;
		return 1 if ${ $app->{out} } =~ $re;
		usleep(10_000);
	}
	return 0;
}

sub wait_until
{
	my ($cond, $secs) = @_;
	my $deadline = time() + ($secs // 30);
	while (time() < $deadline)
	{
		return time() if $cond->();
		usleep(20_000);
	}
	return undef;
}

1;
