
=pod

=head1 NAME

CmChroot - PostgreSQL 17 instances in the trixie chroot, for tests run as root

=head1 DESCRIPTION

The tests of regress/pg17/ run as root on the host (tools/pg17-chroot
needs root) and drive the Debian trixie chroot with PostgreSQL 17
(DEVELOPERS.md) through C<tools/pg17-chroot run>: every command runs in a
private mount namespace of its own, with the test's scratch directory and
the tree bound at their own paths, so that a path means the same inside
and out.  Servers and clients run as C<postgres> (the chroot's postgres
has the host's uid and gid); the instances listen on 127.0.0.1, which the
chroot shares with the host.

    my $s = CmChroot::scratch();
    my $node = CmChroot::Node->new('primary', $s);
    $node->init(allows_streaming => 1);
    $node->start;
    my $v = $node->safe_psql('SELECT version()');

Every instance a test started is stopped (immediate mode) when the test
process ends, however it ends; the scratch directory is removed then,
unless CM_KEEP_TMP=1.

=cut

package CmChroot;

use strict;
use warnings;
use Cwd ();
use Exporter 'import';
use File::Temp ();
use FindBin;
use IO::Socket::INET;
use IPC::Run;
use Time::HiRes qw(time usleep);

our @EXPORT = qw(chroot_cmd chroot_run pg17_bin free_port scratch);

our $PG17_BINDIR = '/usr/lib/postgresql/17/bin';

# The repository's top directory (regress/pg17/../..).
sub top
{
	return "$FindBin::RealBin/../..";
}

# Directories every chroot command gets: the tree and the scratch
# directories made by scratch().
my @binds;

=pod

=head2 scratch()

A new scratch directory under /tmp (mode 0755, owned by postgres), bound
into every later chroot command at the same path.

=cut

sub scratch
{
	my $dir = File::Temp::tempdir('/tmp/cm-pg17-XXXXXX',
		CLEANUP => ($ENV{CM_KEEP_TMP} // '') ne '1');
	my (undef, undef, $uid, $gid) = getpwnam('postgres')
	  or die "CmChroot: no user postgres on the host";
	chown $uid, $gid, $dir or die "chown $dir: $!";
	chmod 0755, $dir or die "chmod $dir: $!";
	push @binds, $dir;
	return $dir;
}

=pod

=head2 chroot_cmd({ user => U, bind => [DIR...] }, COMMAND...)

The command line that runs COMMAND in the chroot as U (default
C<postgres>; C<root> for root) with the tree, the scratch directories and
the given directories bound.

=cut

sub chroot_cmd
{
	my ($o, @cmd) = @_;
	my $top = Cwd::realpath(top());
	my %seen;
	my @b = grep { !$seen{$_}++ } ($top, @binds, @{ $o->{bind} // [] });
	return ("$top/tools/pg17-chroot", 'run', '--user', $o->{user} // 'postgres',
		(map { ('--bind', $_) } @b), '--', @cmd);
}

=pod

=head2 chroot_run({ user => U, timeout => S, ... }, COMMAND...)

Run COMMAND in the chroot (chroot_cmd) and wait, at most S seconds
(default 60); returns (exit status, stdout, stderr).

=cut

sub chroot_run
{
	my ($o, @cmd) = @_;
	my ($out, $err) = ('', '');
	my $rc = eval {
		IPC::Run::run([ chroot_cmd($o, @cmd) ], '<', \undef, '>', \$out, '2>', \$err,
			IPC::Run::timeout($o->{timeout} // 60));
		$? >> 8;
	};
	if (!defined $rc)
	{
		$err .= "CmChroot: @cmd: $@";
		$rc = 255;
	}
	return ($rc, $out, $err);
}

# A PostgreSQL 17 program's path in the chroot.
sub pg17_bin
{
	return "$PG17_BINDIR/$_[0]";
}

# A TCP port on 127.0.0.1 where nothing listens, that no other call of this
# process returned.
my %given;

sub free_port
{
	for (1 .. 1000)
	{
		my $port = 20000 + int(rand(20000));
		next if $given{$port};
		my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port,
			Proto => 'tcp', ReuseAddr => 0) or next;
		close $s;
		$given{$port} = 1;
		return $port;
	}
	die "CmChroot: no free port on 127.0.0.1";
}

# Every instance started, stopped when the test process ends.
my @started;

END
{
	local ($?, $!, $@);
	$_->stop('immediate') for grep { $_->{running} } @started;
}

package CmChroot::Node;

use strict;
use warnings;

=pod

=head2 CmChroot::Node->new($name, $scratch)

A PostgreSQL 17 instance in $scratch/$name (data directory C<data>, log
file C<log>, Unix socket in the directory itself), on a free port of
127.0.0.1.

=cut

sub new
{
	my ($class, $name, $scratch) = @_;
	my $dir = "$scratch/$name";
	mkdir $dir or die "mkdir $dir: $!";
	my (undef, undef, $uid, $gid) = getpwnam('postgres');
	chown $uid, $gid, $dir or die "chown $dir: $!";
	my $self = bless {
		name => $name, dir => $dir, data => "$dir/data", log => "$dir/log",
		port => CmChroot::free_port(), running => 0 }, $class;
	return $self;
}

sub port { return $_[0]->{port} }
sub name { return $_[0]->{name} }
sub data_dir { return $_[0]->{data} }
sub logfile { return $_[0]->{log} }

# Run a PostgreSQL 17 program as postgres; dies with its output on failure.
sub run_ok
{
	my ($self, @cmd) = @_;
	my ($rc, $out, $err) = CmChroot::chroot_run({}, @cmd);
	die "CmChroot: $self->{name}: @cmd: exit $rc\n$out$err" if $rc != 0;
	return $out;
}

=pod

=head2 $node->init(allows_streaming => 1)

initdb (trust authentication, as postgres), then a configuration that
listens on 127.0.0.1 and the Unix socket in the node's directory only, and
lets 127.0.0.1 in for SQL and (allows_streaming) replication.

=cut

sub init
{
	my ($self, %o) = @_;
	$self->run_ok(CmChroot::pg17_bin('initdb'), '-D', $self->{data}, '-A', 'trust',
		'-U', 'postgres', '--no-sync', '--no-instructions');
	$self->append_conf('postgresql.conf', $self->base_conf(%o));
	$self->append_conf('pg_hba.conf', "host all all 127.0.0.1/32 trust\n"
		  . ($o{allows_streaming} ? "host replication all 127.0.0.1/32 trust\n" : ''));
	return;
}

sub base_conf
{
	my ($self, %o) = @_;
	return "port = $self->{port}\n"
	  . "listen_addresses = '127.0.0.1'\n"
	  . "unix_socket_directories = '$self->{dir}'\n"
	  . "fsync = off\n"
	  . "log_line_prefix = '%m [%p] '\n"
	  . ($o{allows_streaming} ? "wal_level = replica\nmax_wal_senders = 5\n" : '');
}

# Append $text to the data directory's $file, as postgres would own it.
sub append_conf
{
	my ($self, $file, $text) = @_;
	my $path = "$self->{data}/$file";
	open(my $f, '>>', $path) or die "open $path: $!";
	print $f $text;
	close $f or die "close $path: $!";
	return;
}

=pod

=head2 $node->init_from_primary($primary)

A streaming standby of $primary: pg_basebackup -R from it, then this
node's own port and socket.

=cut

sub init_from_primary
{
	my ($self, $primary) = @_;
	$self->run_ok(CmChroot::pg17_bin('pg_basebackup'), '-h', '127.0.0.1',
		'-p', $primary->port, '-U', 'postgres', '-D', $self->{data}, '-R',
		'-X', 'stream', '--no-sync');
	$self->append_conf('postgresql.conf', $self->base_conf(allows_streaming => 1));
	return;
}

sub start
{
	my ($self) = @_;
	$self->run_ok(CmChroot::pg17_bin('pg_ctl'), '-D', $self->{data}, '-l', $self->{log},
		'-w', '-t', '60', 'start');
	$self->{running} = 1;
	push @started, $self unless grep { $_ == $self } @started;
	return;
}

sub stop
{
	my ($self, $mode) = @_;
	my ($rc, $out, $err) = CmChroot::chroot_run({}, CmChroot::pg17_bin('pg_ctl'),
		'-D', $self->{data}, '-m', $mode // 'fast', '-w', '-t', '60', 'stop');
	$self->{running} = 0;
	return $rc == 0;
}

=pod

=head2 $node->psql($sql, %o) / $node->safe_psql($sql, %o)

psql 17 (in the chroot, over the node's Unix socket, C<-X -A -t>): psql
returns (exit status, stdout, stderr); safe_psql the output without its
last newline, dying on failure.  Option C<dbname> (default postgres).

=cut

sub psql
{
	my ($self, $sql, %o) = @_;
	return CmChroot::chroot_run({ timeout => $o{timeout} // 60 }, CmChroot::pg17_bin('psql'),
		'-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', $self->{dir}, '-p', $self->{port},
		'-d', $o{dbname} // 'postgres', '-c', $sql);
}

sub safe_psql
{
	my ($self, $sql, %o) = @_;
	my ($rc, $out, $err) = $self->psql($sql, %o);
	die "CmChroot: $self->{name}: psql \"$sql\": exit $rc\n$out$err" if $rc != 0;
	chomp $out;
	return $out;
}

# The server log from byte $offset on.
sub log_content
{
	my ($self, $offset) = @_;
	open(my $f, '<', $self->{log}) or return '';
	seek($f, $offset // 0, 0);
	local $/;
	my $text = <$f> // '';
	close $f;
	return $text;
}

# Wait (at most $secs, default 30) until the log from $offset on matches $re.
sub wait_for_log
{
	my ($self, $re, $offset, $secs) = @_;
	my $deadline = Time::HiRes::time() + ($secs // 30);
	while (Time::HiRes::time() < $deadline)
	{
		return 1 if $self->log_content($offset) =~ $re;
		Time::HiRes::usleep(50_000);
	}
	return 0;
}

1;
