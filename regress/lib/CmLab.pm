=pod

=head1 NAME

CmLab - the fault lab: PostgreSQL servers in network namespaces, links that
can be cut, conmgr in front

=head1 SYNOPSIS

    use CmLab;
    my $why = CmLab::skip_reason();      # 'needs root', or undef
    my $lab = CmLab->new(hb_interval => 1, hb_timeout => 3);
    $lab->start;                         # n1 primary, n2 n3 standbys, conmgr on c1 and c2
    my $p = $lab->primary;
    $lab->cut("c1-$p");  ...  $lab->restore("c1-$p");
    $lab->crash($p); $lab->promote('n2'); $lab->rebuild;
    $lab->cleanup;                       # also done by END and on SIGINT/TERM/HUP

=head1 DESCRIPTION

Hosts. C<c1> is the root network namespace: the client host, where the
test, conmgr and the applications run. C<c2> is a second client host (a
namespace with its own conmgr), C<c3> a third one without conmgr, for
plain-libpq applications whose server sessions no watchdog terminates. C<n1>, C<n2>, C<n3> are server hosts
(namespaces), each running one PostgreSQL 15 instance with the watchdog, as
user postgres. Namespaces are named C<cmlab<PID>-HOST>, after the test's
process id, so parallel runs do not collide; leftovers of dead runs (same
pattern, dead pid) are removed first.

Links. Every client host has a point-to-point link (a veth pair) to every
server host, and every two server hosts have one (replication). A link is
named after its two ends, C<c1-n1>, C<c2-n3>, C<n1-n2>; link number L gets
the network 127.X.L.0/24 (X chosen per run), the first end .1, the second
.2; C<route_localnet> is set on both ends and a route for the /24 is put in
the C<local> table so that it wins over the loopback's 127.0.0.0/8. No
traffic leaves these links and the loopback devices: there is no forwarding
and no other address.

Cutting. Each end of each link has an nftables C<netdev> ingress chain
(table C<netdev cmlab<PID>> in each namespace). C<cut> adds a C<drop> rule
to both ends' chains: packets vanish in both directions after having been
sent, so the sender sees nothing (TCP retransmits, as behind a dead cable)
and the interfaces stay up. C<restore> flushes the chains.

Servers listen on port 5432 on all their addresses, the watchdog on 27545,
the Unix socket in the server's own directory (which the test uses to watch
C<pg_stat_activity> without going through any link). A crash is a cut of
every link of the host followed by kill -9 of every process in its
namespace.

=cut

package CmLab;

use strict;
use warnings;
use Carp;
use File::Temp ();
use IO::Socket::INET;
use IO::Socket::UNIX;
use JSON::PP ();
use IPC::Run ();
use POSIX ();
use Time::HiRes qw(time usleep);
use CmTest ();
use CmTest::Conmgr ();

our $VERBOSE = $ENV{CM_LAB_VERBOSE} // 0;
my %LIVE;    # labs to clean up, by address
my $USER = 'postgres';

# conmgr runs as $USER and the applications as root: libpq-cm follows a
# conmgr on loopback only when its user is trusted, so the applications
# name that user, as an operator would (docs/libpq-cm.md, PGCMOWNER).
$ENV{PGCMOWNER} = $USER;

# --- process-wide cleanup: END and signals -----------------------------

sub cleanup_all
{
	for my $lab (values %LIVE)
	{
		eval { $lab->cleanup; 1 } or warn "CmLab cleanup: $@";
	}
	return;
}

END
{
	my $status = $?;
	cleanup_all();
	$? = $status;
}

for my $sig (qw(INT TERM HUP))
{
	$SIG{$sig} = sub {
		# cleanup() does nothing in a process that did not build the lab
		cleanup_all();
		exit(128 + ($sig eq 'INT' ? 2 : $sig eq 'TERM' ? 15 : 1));
	};
}

# --- small helpers --------------------------------------------------------

sub pgbin
{
	my $dir = $ENV{CM_PGBIN};
	return $dir if $dir;
	my $pgc = $ENV{PG_CONFIG} // 'pg_config';
	$dir = `$pgc --bindir 2>/dev/null`;
	chomp $dir if defined $dir;
	return $dir if $dir && -x "$dir/initdb";
	return '/usr/lib/postgresql/15/bin';
}

# Why the lab cannot run here (undef: it can).
sub skip_reason
{
	return 'needs root' if $> != 0;
	return undef;
}

# A process that exists and is not a zombie (a killed run may wait a
# while for its parent to reap it).
sub pid_alive
{
	my ($pid) = @_;
	return 0 unless kill(0, $pid) || $!{EPERM};
	if (open my $f, '<', "/proc/$pid/stat")
	{
		my $stat = <$f> // '';
		return 0 if $stat =~ /\)\s+Z\s/;
	}
	return 1;
}

sub logv
{
	print STDERR "# [lab] @_\n" if $VERBOSE;
	return;
}

# Run a command, wait (bounded), return (exit status, stdout, stderr).
sub run_cmd
{
	my ($cmd, %o) = @_;
	my ($out, $err) = ('', '');
	my $in = $o{stdin};
	logv("run: @$cmd");
	my $ok = eval {
		IPC::Run::run($cmd, '<', (defined $in ? \$in : \undef), '>', \$out, '2>', \$err,
			IPC::Run::timeout($o{timeout} // 60));
		1;
	};
	return (-1, $out, "$err$@") unless $ok;
	return ($? >> 8 || ($? & 127 ? 128 + ($? & 127) : 0), $out, $err);
}

# The same, dying with the command's output when it fails.
sub must
{
	my ($cmd, %o) = @_;
	my ($rc, $out, $err) = run_cmd($cmd, %o);
	croak("failed ($rc): @$cmd\n$out$err") if $rc != 0;
	return $out;
}

# --- construction ------------------------------------------------------

=pod

=head2 CmLab->new(%options)

servers (3), hb_interval (1), hb_timeout (3), hb_connect_interval (1),
hb_connect_timeout (2), top (the repository), patroni (0), clients (the
client hosts, C<[qw(c1 c2 c3)]>; c1, the root namespace, always among
them), conmgr_conf (lines added to every conmgr.conf), cm_conf (a hash:
client host => lines added to its conmgr.conf only, such as
C<forward_ports>). Builds nothing yet. With patroni => 1 the lab is the
Patroni one (see "The Patroni lab"
below): servers n1 and n2 under Patroni, etcd on a host e1 of its own,
the client host c1 with conmgr.

=cut

sub new
{
	my ($class, %o) = @_;
	my $self = bless {
		owner => $$,
		tag => "cmlab$$",
		patroni => $o{patroni} // 0,
		nservers => $o{patroni} ? 2 : $o{servers} // 3,
		hb_interval => $o{hb_interval} // 1,
		hb_timeout => $o{hb_timeout} // 3,
		hb_connect_interval => $o{hb_connect_interval} // 1,
		hb_connect_timeout => $o{hb_connect_timeout} // 2,
		conmgr_conf => ($o{conmgr_conf} // '') =~ s/(?<=[^\n])\z/\n/r,
		top => $o{top} // die('top => the repository directory'),
		cm_conf => $o{cm_conf} // {},
		pgbin => pgbin(),
		procs => [],
		pids => {},
		links => {},
		cut => {},
		conmgr => {},
		mon => {},
		log => [],
	}, $class;
	$self->{servers} = [ map { "n$_" } 1 .. $self->{nservers} ];
	# c3 has no conmgr: the host of plain-libpq applications
	$self->{clients} = $o{clients} // [qw(c1 c2 c3)];
	croak('clients: c1 (the root namespace) must be one') unless grep { $_ eq 'c1' } @{ $self->{clients} };
	$self->{cm_clients} = [ grep { $_ ne 'c3' } @{ $self->{clients} } ];
	# the Patroni lab: one client host; etcd on e1, linked to every host
	$self->{clients} = $self->{cm_clients} = ['c1'] if $self->{patroni};
	$self->{etcd_hosts} = $self->{patroni} ? ['e1'] : [];
	$LIVE{"$self"} = $self;
	return $self;
}

sub servers { return @{ $_[0]{servers} } }
sub primary { return $_[0]{primary} }
sub standbys { my $s = shift; return grep { $_ ne $s->{primary} } @{ $s->{servers} } }
sub dir { return $_[0]{dir} }
sub hb_timeout { return $_[0]{hb_timeout} }
sub hb_interval { return $_[0]{hb_interval} }
sub hb_connect_interval { return $_[0]{hb_connect_interval} }
sub hb_connect_timeout { return $_[0]{hb_connect_timeout} }

# The namespace of a host (undef for c1, the root namespace).
sub ns
{
	my ($self, $host) = @_;
	return undef if $host eq 'c1';
	return "$self->{tag}-$host";
}

# A command wrapped to run on $host, optionally as the unprivileged user.
sub wrap
{
	my ($self, $host, $as_user, @cmd) = @_;
	unshift @cmd, 'runuser', '-u', $USER, '--' if $as_user;
	unshift @cmd, 'ip', 'netns', 'exec', $self->ns($host) if $host ne 'c1';
	return @cmd;
}

sub link_of
{
	my ($self, $a, $b) = @_;
	return $self->{links}{"$a-$b"} // $self->{links}{"$b-$a"}
	  // croak("no link between $a and $b");
}

=pod

=head2 addr($host, $peer)

The address of $host on its link to $peer.

=cut

sub addr
{
	my ($self, $host, $peer) = @_;
	return $self->link_of($host, $peer)->{addr}{$host};
}

sub links_of
{
	my ($self, $host) = @_;
	return grep { $_->{a} eq $host || $_->{b} eq $host } values %{ $self->{links} };
}

# --- leftovers of dead runs --------------------------------------------------

=pod

=head2 CmLab::sweep_leftovers()

Removes what runs that died (their pid is gone) left: processes in their
namespaces and under their directory, the namespaces, root-side devices,
nftables tables, SysV segments of their servers, directories.

=cut

sub sweep_leftovers
{
	my %dead;
	my $alive = sub { my ($pid) = @_; return $pid == $$ || pid_alive($pid) };
	for my $line (split /\n/, `ip netns list 2>/dev/null`)
	{
		next unless $line =~ /^(cmlab(\d+)-\w+)/;
		my ($ns, $pid) = ($1, $2);
		next if $alive->($pid);
		$dead{$pid} = 1;
		kill_ns($ns);
		system('ip', 'netns', 'del', $ns);
	}
	for my $line (split /\n/, `nft list tables netdev 2>/dev/null`)
	{
		next unless $line =~ /^table netdev (cmlab(\d+))$/;
		next if $alive->($2);
		system('nft', 'delete', 'table', 'netdev', $1);
	}
	for my $line (split /\n/, `ip -o link show 2>/dev/null`)
	{
		next unless $line =~ /^\d+: (cl(\d+)[ab]\d+)[\@:]/;
		next if $alive->($2);
		system('ip', 'link', 'del', $1);
	}
	for my $d (glob('/tmp/cmlab.*'))
	{
		next unless $d =~ m{^/tmp/cmlab\.(\d+)\.\w+$} && -d $d;
		next if $alive->($1);
		# conmgr runs in the root namespace, from a copy under this
		# directory; HAProxy there with its configuration in it
		for my $p (glob('/proc/[0-9]*'))
		{
			my $exe = readlink("$p/exe") // next;
			kill('KILL', ($p =~ m{(\d+)$})[0]) if index($exe, "$d/") == 0 || index(slurp("$p/cmdline"), "$d/") >= 0;
		}
		for my $pidfile (glob("$d/n*/data/postmaster.pid"))
		{
			remove_shm($pidfile);
		}
		system('rm', '-rf', '--one-file-system', $d);
	}
	return;
}

# kill -9 every process in a namespace; wait (bounded) until none is left.
sub kill_ns
{
	my ($ns) = @_;
	for (1 .. 50)
	{
		my @pids = grep { /^\d+$/ } split /\s+/, `ip netns pids $ns 2>/dev/null`;
		return 1 unless @pids;
		kill 'KILL', @pids;
		usleep(50_000);
	}
	return 0;
}

# The SysV segment of a PostgreSQL instance killed with -9 (line 7 of
# postmaster.pid: key and id): removed if ipcs shows that very key and id,
# owned by the test user, with nobody attached.
sub remove_shm
{
	my ($pidfile) = @_;
	open my $f, '<', $pidfile or return;
	my @l = <$f>;
	close $f;
	return unless defined $l[6] && $l[6] =~ /^\s*(\d+)\s+(\d+)/;
	my ($key, $id) = ($1, $2);
	# processes just killed may still be detaching: up to 2 s
	for (1 .. 40)
	{
		my ($seg) = grep { @$_ >= 6 && $_->[0] =~ /^0x[0-9a-f]+$/i && $_->[1] eq $id && hex($_->[0]) == $key
			  && $_->[2] eq $USER } map { [ split ' ' ] } split /\n/, `ipcs -m 2>/dev/null`;
		return unless $seg;
		if ($seg->[5] eq '0')
		{
			system('ipcrm', '-m', $id);
			return;
		}
		usleep(50_000);
	}
	return;
}

# --- building the lab --------------------------------------------------------

=pod

=head2 start()

Sweeps leftovers, makes the directory, copies the built programs, creates
the namespaces and links, the primary (n1) and standbys, and starts conmgr
on c1 and c2. Dies with the reason when something fails.

=cut

sub start
{
	my ($self) = @_;
	sweep_leftovers();
	# the built tree (CM_LAB_BUILD: another one, e.g. a clean build of a commit)
	my $build = $ENV{CM_LAB_BUILD} // "$self->{top}/build";
	if ($self->{patroni})
	{
		for my $prog (qw(patroni patronictl etcd))
		{
			croak("$prog is missing (tools/install-deps test installs it)") unless -x "/usr/bin/$prog";
		}
	}
	for my $f ("$build/bin/conmgr", "$build/bin/cm_ctl", "$build/regress/tools/cmapp",
		"$build/regress/tools/cmresolve", "$build/lib/libpq-cm.so.1")
	{
		croak("$f is missing: run make first") unless -e $f;
	}
	for my $tool (qw(ip nft runuser))
	{
		croak("$tool is missing (tools/install-deps test installs it)")
		  unless grep { -x "$_/$tool" } split /:/, "$ENV{PATH}:/usr/sbin:/sbin";
	}
	croak("no user $USER") unless defined getpwnam($USER);
	my ($uid, $gid) = (getpwnam($USER))[ 2, 3 ];

	$self->{dir} = File::Temp::tempdir("cmlab.$$.XXXX", DIR => '/tmp');
	chmod 0755, $self->{dir};
	must([ 'mkdir', '-p', "$self->{dir}/build/regress" ]);
	must([ 'cp', '-a', "$build/bin", "$build/lib", "$self->{dir}/build/" ]);
	must([ 'cp', '-a', "$build/regress/tools", "$self->{dir}/build/regress/" ]);
	must([ 'chown', '-R', "$uid:$gid", $self->{dir} ]);
	$self->{bin} = "$self->{dir}/build/bin";
	$self->{tools} = "$self->{dir}/build/regress/tools";
	$self->{preload} = "$self->{dir}/build/lib/libpq-cm.so.1";

	$self->setup_network;
	if ($self->{patroni})
	{
		$self->setup_patroni;
	}
	else
	{
		$self->setup_servers;
	}
	$self->{conmgr_port} = free_port();
	$self->start_conmgr($_, complete => 1) for @{ $self->{cm_clients} };
	return $self;
}

sub free_port { return CmTest::Conmgr::free_port() }

# 127.X: the first X from 100 up (starting from the pid) that no address of
# the root namespace uses.
sub pick_net
{
	my ($self) = @_;
	my $used = `ip -o -4 addr show 2>/dev/null`;
	for my $i (0 .. 127)
	{
		my $x = 100 + ($$ + $i) % 128;
		return $x unless $used =~ /inet 127\.$x\./;
	}
	croak('no free 127.X.0.0/16 network');
}

sub setup_network
{
	my ($self) = @_;
	my $tag = $self->{tag};
	my $x = $self->pick_net;
	$self->{net} = $x;
	my @hosts = (@{ $self->{clients} }, @{ $self->{servers} }, @{ $self->{etcd_hosts} });
	for my $h (@hosts)
	{
		next if $h eq 'c1';
		my ($rc, $out, $err) = run_cmd([ 'ip', 'netns', 'add', $self->ns($h) ]);
		if ($rc != 0)
		{
			$self->{no_netns} = 1 if $err =~ /Operation not permitted|Permission denied/;
			croak("ip netns add: $err");
		}
		push @{ $self->{made_ns} }, $self->ns($h);
	}
	my @pairs;
	push @pairs, map { my $c = $_; map { [ $c, $_ ] } @{ $self->{servers} } } @{ $self->{clients} };
	my @s = @{ $self->{servers} };
	for my $i (0 .. $#s)
	{
		push @pairs, map { [ $s[$i], $s[$_] ] } $i + 1 .. $#s;
	}
	for my $e (@{ $self->{etcd_hosts} })
	{
		# (a link's first end may be c1, the root namespace; its second not)
		push @pairs, (map { [ $_, $e ] } @{ $self->{clients} }), map { [ $e, $_ ] } @s;
	}
	my $idx = 0;
	my %script = map { $_ => "set -e\n" . ($_ eq 'c1' ? '' : "ip link set lo up\n") } @hosts;
	my %chains;
	for my $pair (@pairs)
	{
		my ($a, $b) = @$pair;
		$idx++;
		my $l = {
			name => "$a-$b", idx => $idx, a => $a, b => $b,
			dev => { $a => "cl$$" . "a$idx", $b => "cl$$" . "b$idx" },
			addr => { $a => "127.$x.$idx.1", $b => "127.$x.$idx.2" },
		};
		$self->{links}{ $l->{name} } = $l;
		my @cmd = ('ip', 'link', 'add', 'name', $l->{dev}{$a});
		push @cmd, 'netns', $self->ns($a) if $a ne 'c1';
		push @cmd, 'type', 'veth', 'peer', 'name', $l->{dev}{$b}, 'netns', $self->ns($b);
		must(\@cmd);
		push @{ $self->{root_devs} }, $l->{dev}{$a} if $a eq 'c1';
		for my $h ($a, $b)
		{
			my ($dev, $ip) = ($l->{dev}{$h}, $l->{addr}{$h});
			$script{$h} .= "ip addr add $ip/24 dev $dev\n"
			  . "sysctl -qw net.ipv4.conf.$dev.route_localnet=1\n"
			  . "ip link set $dev up\n"
			  . "ip route add table local 127.$x.$idx.0/24 dev $dev src $ip scope link\n";
			push @{ $chains{$h} }, $dev;
		}
	}
	for my $h (@hosts)
	{
		my $nft = "table netdev $tag {\n";
		$nft .= "  chain in_$_ { type filter hook ingress device \"$_\" priority -500; policy accept; }\n"
		  for @{ $chains{$h} };
		$nft .= "}\n";
		$self->{nft_made}{$h} = 1;
		must([ $self->wrap($h, 0, 'sh', '-c', $script{$h}) ]);
		must([ $self->wrap($h, 0, 'nft', '-f', '-') ], stdin => $nft);
	}
	logv("network 127.$x.0.0/16 up");
	return;
}

# --- cutting and restoring links -------------------------------------------

sub nft_links
{
	my ($self, $verb, @names) = @_;
	my %batch;
	for my $name (@names)
	{
		my $l = $self->{links}{$name} // croak("no link $name");
		for my $h ($l->{a}, $l->{b})
		{
			$batch{$h} .= $verb eq 'drop'
			  ? "add rule netdev $self->{tag} in_$l->{dev}{$h} drop\n"
			  : "flush chain netdev $self->{tag} in_$l->{dev}{$h}\n";
		}
	}
	# both ends at once
	my @h;
	for my $host (sort keys %batch)
	{
		my $in = $batch{$host};
		my ($out, $err) = ('', '');
		push @h, [ IPC::Run::start([ $self->wrap($host, 0, 'nft', '-f', '-') ], '<', \$in, '>', \$out,
			'2>', \$err, IPC::Run::timeout(20)), \$err, $host ];
	}
	for my $x (@h)
	{
		$x->[0]->finish or croak("nft on $x->[2]: ${ $x->[1] }");
	}
	return;
}

=pod

=head2 cut(@links), restore(@links)

Drop every packet on the links, both ways / let them through again.
Returns the time just before the rules were added (the fault's start).

=cut

sub cut
{
	my ($self, @names) = @_;
	@names = grep { !$self->{cut}{$_} } @names;
	my $t = time();
	return $t unless @names;
	$self->nft_links('drop', @names);
	$self->{cut}{$_} = 1 for @names;
	logv("cut @names");
	return $t;
}

sub restore
{
	my ($self, @names) = @_;
	@names = grep { $self->{cut}{$_} } @names;
	my $t = time();
	return $t unless @names;
	$self->nft_links('flush', @names);
	delete $self->{cut}{$_} for @names;
	logv("restored @names");
	return $t;
}

sub links_between
{
	my ($self, $a, $b) = @_;
	return $self->link_of($a, $b)->{name};
}

sub host_links
{
	my ($self, $host) = @_;
	return map { $_->{name} } $self->links_of($host);
}

# --- servers ---------------------------------------------------------------

sub sdir { my ($self, $s) = @_; return "$self->{dir}/$s" }
sub data { my ($self, $s) = @_; return "$self->{dir}/$s/data" }

sub pg
{
	my ($self, $prog) = @_;
	return "$self->{pgbin}/$prog";
}

sub setup_servers
{
	my ($self) = @_;
	my ($p, @s) = @{ $self->{servers} };
	for my $s ($p, @s)
	{
		my $d = $self->sdir($s);
		mkdir $d or die "$d: $!";
		# per-server settings, outside the data directory that base backups copy
		open my $f, '>', "$d/local.conf" or die $!;
		print $f "unix_socket_directories = '$d'\n";
		close $f;
		must([ 'chown', '-R', $USER, $d ]);
	}
	must([ 'runuser', '-u', $USER, '--', $self->pg('initdb'), '-D', $self->data($p), '-A', 'trust',
			'-U', $USER, '--no-sync' ]);
	my $conf = $self->data($p) . '/postgresql.conf';
	open my $f, '>>', $conf or die $!;
	print $f <<"EOF";
# --- fault lab ---
listen_addresses = '*'
port = 5432
include_if_exists = '../local.conf'
shared_preload_libraries = 'watchdog'
watchdog.port = 27545
watchdog.check_attr_interval = 200
max_connections = 300
max_wal_senders = 10
wal_level = replica
hot_standby = on
fsync = off
synchronous_commit = off
# A base backup's checkpoint recycles the WAL segments before it, also the
# one a standby made just before is about to ask for ("requested WAL
# segment ... has already been removed"); three are kept whatever the
# checkpoints say.
wal_keep_size = 48MB
shared_buffers = 32MB
dynamic_shared_memory_type = mmap
log_line_prefix = '%n [%p] %h %a '
log_disconnections = on
EOF
	close $f;
	open $f, '>', $self->data($p) . '/pg_hba.conf' or die $!;
	print $f "local all all trust\nhost all all 127.0.0.0/8 trust\nhost replication all 127.0.0.0/8 trust\n";
	close $f;
	$self->pg_start($p);
	$self->{primary} = $p;
	$self->psql($p, q{
CREATE EXTENSION watchdog;
CREATE TABLE sink (t text);
CREATE FUNCTION sink_discard() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END';
CREATE TRIGGER sink_discard BEFORE INSERT ON sink FOR EACH ROW EXECUTE FUNCTION sink_discard()});
	$self->make_standby($_) for @s;
	if (my @late = $self->wait_streaming)
	{
		croak(join("\n", "standbys not streaming from $p: @late", $self->streaming_report));
	}
	return;
}

sub pg_start
{
	my ($self, $s) = @_;
	must([ $self->wrap($s, 1, $self->pg('pg_ctl'), '-D', $self->data($s), '-l', $self->sdir($s) . '/log',
			'-w', '-t', '60', 'start') ], timeout => 90);
	return;
}

sub pg_stop
{
	my ($self, $s, $mode) = @_;
	run_cmd([ $self->wrap($s, 1, $self->pg('pg_ctl'), '-D', $self->data($s), '-m', $mode // 'fast',
			'-w', '-t', '30', 'stop') ], timeout => 40);
	return;
}

# A fresh standby of the current primary, over their link.  The base
# backup is the lab's set-up, not what is under test: a failed one is told
# on stderr with the primary's log since it started (and counted in
# {basebackup_retries}), then tried again, up to 3 times.
sub make_standby
{
	my ($self, $s) = @_;
	my $p = $self->{primary};
	for my $try (1 .. 3)
	{
		must([ 'rm', '-rf', $self->data($s) ]);
		my $plog = $self->sdir($p) . '/log';
		my $from = -s $plog // 0;
		my @cmd = ($self->wrap($s, 1, $self->pg('pg_basebackup'), '-h', $self->addr($p, $s), '-p', '5432',
				'-U', $USER, '-D', $self->data($s), '-R', '-c', 'fast', '-X', 'stream'));
		my ($rc, $out, $err) = run_cmd(\@cmd, timeout => 120);
		last if $rc == 0;
		my $why = "pg_basebackup of $s from $p failed ($rc), try $try of 3: $out$err";
		my $tail = '';
		if (open my $f, '<', $plog)
		{
			seek $f, $from, 0;
			local $/;
			$tail = <$f> // '';
			close $f;
		}
		$why .= "the primary's log meanwhile:\n" . substr($tail, -4000) if $tail ne '';
		lab_say($why);
		$self->{basebackup_retries}++;
		croak("failed ($rc): @cmd\n$out$err") if $try == 3;
		sleep 2;
	}
	# where this start's log lines begin, for streaming_report()
	$self->{log_from}{$s} = -s ($self->sdir($s) . '/log') // 0;
	$self->pg_start($s);
	return;
}

# Text on stderr, every line marked as the lab's.
sub lab_say
{
	my ($text) = @_;
	$text =~ s/^/# [lab] /mg;
	print STDERR $text, ($text =~ /\n\z/ ? '' : "\n");
	return;
}

# The standbys the primary is not streaming to (by their address on the
# link to it); all of them when the primary does not answer.
sub not_streaming
{
	my ($self) = @_;
	my $p = $self->{primary};
	my $r = $self->psql($p, "SELECT client_addr FROM pg_stat_replication WHERE state = 'streaming'", timeout => 10);
	return $self->standbys unless defined $r;
	my %on = map { $_ => 1 } split /\n/, $r;
	return grep { !$on{ $self->addr($_, $p) } } $self->standbys;
}

=pod

=head2 wait_streaming([$secs])

Waits (60 s unless told) until the primary streams to every standby.
Returns the standbys it does not stream to by then (none: all is well).

=cut

sub wait_streaming
{
	my ($self, $secs) = @_;
	my @late;
	return () if $self->wait_until(sub { @late = $self->not_streaming; !@late }, $secs // 60);
	return @late;
}

# Why replication is not what it should be, a line or so per server: the
# primary's pg_stat_replication, each standby's recovery state and WAL
# receiver, and the last errors in its log since its start.
sub streaming_report
{
	my ($self) = @_;
	my $p = $self->{primary};
	my %who = map { $self->addr($_, $p) => $_ } $self->standbys;
	my $first = sub { my ($t) = @_; $t //= ''; $t =~ s/\s+/ /g; $t =~ s/ \z//; return substr($t, 0, 200) };
	my @l;
	my $r = $self->psql($p, 'SELECT client_addr, state FROM pg_stat_replication ORDER BY 1', timeout => 5);
	push @l, "$p pg_stat_replication: " . (!defined $r ? 'no answer: ' . $first->($self->{psql_err})
		: $r eq '' ? 'empty'
		: join(', ', map { my ($a, $st) = split /\|/; ($who{$a} // $a) . " $st" } split /\n/, $r));
	for my $s ($self->standbys)
	{
		my $w = $self->psql($s, "SELECT CASE WHEN pg_is_in_recovery() THEN 'in recovery' ELSE 'not in recovery' END"
			  . " || ', WAL receiver ' || coalesce((SELECT status || ' from ' || coalesce(sender_host, '?')"
			  . " FROM pg_stat_wal_receiver), 'none')", timeout => 5);
		push @l, "$s: " . ($w // 'no answer: ' . $first->($self->{psql_err}));
		my @err;
		if (open my $f, '<', $self->sdir($s) . '/log')
		{
			seek $f, $self->{log_from}{$s} // 0, 0;
			while (my $line = <$f>)
			{
				push @err, $line if $line =~ /\b(?:ERROR|FATAL|PANIC):/;
			}
			close $f;
		}
		splice(@err, 0, -2);    # the last two
		push @l, map { "  $s log: " . $first->($_) } @err;
	}
	return @l;
}

=pod

=head2 psql($server, $sql)

Runs $sql on the server over its Unix socket, in a psql session kept open
per server (reopened when it died). Returns the output (rows as lines,
fields separated by "|"), or undef on error ($self->{psql_err} says why).

=cut

sub psql
{
	my ($self, $s, $sql, %o) = @_;
	for my $try (1, 2)
	{
		my $m = $self->{mon}{$s};
		if (!$m || !$m->{h}->pumpable)
		{
			$self->drop_session($s);
			my ($in, $out, $err) = ('', '', '');
			my $h = IPC::Run::start([ $self->pg('psql'), '-X', '-At', '-q', '-h', $self->sdir($s),
					'-p', '5432', '-U', $USER, '-d', 'postgres' ],
				'<', \$in, '>', \$out, '2>', \$err);
			$m = $self->{mon}{$s} = { h => $h, in => \$in, out => \$out, err => \$err };
		}
		${ $m->{out} } = '';
		${ $m->{err} } = '';
		${ $m->{in} } .= "$sql;\n\\echo __CMLAB__\n";
		my $deadline = time() + ($o{timeout} // 20);
		while (time() < $deadline && ${ $m->{out} } !~ /__CMLAB__\n/)
		{
			last unless $m->{h}->pumpable && eval { $m->{h}->pump_nb; 1 };
			usleep(1_000) if ${ $m->{out} } !~ /__CMLAB__\n/;
		}
		# (psql reading a script goes on after its server went away: the
		# query's answer is then nothing, with libpq's message on stderr)
		my $lost = ${ $m->{err} } =~ /server closed the connection|connection to server was lost|no connection to/;
		if (!$lost && ${ $m->{out} } =~ s/__CMLAB__\n$//)
		{
			if (${ $m->{err} } =~ /ERROR|FATAL/)
			{
				$self->{psql_err} = ${ $m->{err} };
				return undef;
			}
			my $r = ${ $m->{out} };
			chomp $r;
			return $r;
		}
		# the session died (server restarted, killed), lost its server or
		# hung: a new one, once
		$self->{psql_err} = "no answer from $s: " . ${ $m->{err} };
		$self->drop_session($s);
		last if time() >= $deadline;
	}
	return undef;
}

=pod

=head2 safe_psql($server, $sql)

As psql(), but a failed query croaks, naming the server and the error.

=cut

sub safe_psql
{
	my ($self, $s, $sql, %o) = @_;
	my $r = $self->psql($s, $sql, %o);
	croak("$s: $sql: $self->{psql_err}") unless defined $r;
	return $r;
}

=pod

=head2 poll_query_until($server, $sql, $expected, $secs)

Runs $sql on the server every 20 ms until its output is $expected ('t'
if undef), for up to $secs (30). Returns the time it was, or undef.

=cut

sub poll_query_until
{
	my ($self, $s, $sql, $expected, $secs) = @_;
	$expected //= 't';
	return $self->wait_until(sub { ($self->psql($s, $sql) // '') eq $expected }, $secs);
}

# psql()'s session on $s ended now (psql outlives its server: reading
# a script, it waits for more), if it has one.
sub drop_session
{
	my ($self, $s) = @_;
	my $m = delete $self->{mon}{$s} or return;
	eval { $m->{h}->kill_kill(grace => 1); 1 };
	return;
}

# Client backends connected from $addr (TCP), seen on server $s.
sub sessions_from
{
	my ($self, $s, $addr) = @_;
	return $self->psql($s, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
		  . " AND client_addr = '$addr'");
}

=pod

=head2 log_pos($server), disconnections($server, $pos)

The server log's size now; the sessions that ended since (log_disconnections
lines), each { t => epoch seconds, pid, host, app }.

=cut

sub log_pos
{
	my ($self, $s) = @_;
	return -s ($self->sdir($s) . '/log') // 0;
}

sub disconnections
{
	my ($self, $s, $pos) = @_;
	open my $f, '<', $self->sdir($s) . '/log' or return ();
	seek($f, $pos // 0, 0);
	my @r;
	while (my $l = <$f>)
	{
		next unless $l =~ /^(\d+\.\d+) \[(\d+)\] \S+ (\S*)\s*LOG:\s+disconnection: .* host=(\S+)/;
		push @r, { t => $1, pid => $2, app => $3, host => $4 };
	}
	close $f;
	return @r;
}

sub wait_until
{
	my ($self, $cond, $secs) = @_;
	my $deadline = time() + ($secs // 30);
	while (time() < $deadline)
	{
		return time() if $cond->();
		usleep(20_000);
	}
	return undef;
}

=pod

=head2 crash($server)

The host dies: every link of it is cut, then every process in its
namespace gets SIGKILL. Returns the time of the cut.

=cut

sub crash
{
	my ($self, $s) = @_;
	my $t = $self->cut($self->host_links($s));
	kill_ns($self->ns($s)) or croak("processes of $s survive kill -9");
	$self->drop_session($s);
	remove_shm($self->data($s) . '/postmaster.pid');
	$self->{crashed}{$s} = 1;
	return $t;
}

=pod

=head2 promote($server)

pg_ctl promote, not waiting. Returns the time just before it; the server
is the primary from then on (for addr(), rebuild()).

=cut

sub promote
{
	my ($self, $s) = @_;
	my $t = time();
	must([ $self->wrap($s, 1, $self->pg('pg_ctl'), '-D', $self->data($s), '-W', 'promote') ]);
	$self->{primary} = $s;
	return $t;
}

=pod

=head2 rebuild()

After a crash and a promotion: the crashed servers get their links back,
every server but the primary becomes a fresh standby of it, and the lab
waits until both conmgrs route to all of them again.

=cut

sub rebuild
{
	my ($self) = @_;
	for my $s ($self->standbys)
	{
		if ($self->{crashed}{$s})
		{
			$self->restore($self->host_links($s));
		}
		else
		{
			$self->pg_stop($s, 'immediate');
		}
		$self->restandby($s);
	}
	# Like a failed base backup, a standby the primary does not stream to
	# is set-up gone wrong, not a finding: told on stderr with the reasons
	# seen (counted in {restream_retries}) and made again, once.  (A
	# healthy one streams within a second; one that cannot connect tries
	# again every 5 s.)
	if (my @late = $self->wait_streaming(30))
	{
		lab_say(join("\n", "standbys not streaming from $self->{primary} after 30 s: @late; made again",
			$self->streaming_report));
		$self->{restream_retries}++;
		for my $s (@late)
		{
			$self->pg_stop($s, 'immediate');
			$self->restandby($s);
		}
		if (@late = $self->wait_streaming)
		{
			# (and rebuilt once more by the recovery after the failed run)
			$self->{broken}{$_} = 1 for @late;
			croak(join("\n", "standbys not streaming from $self->{primary}, made twice: @late",
				$self->streaming_report));
		}
	}
	$self->wait_routable($_) for @{ $self->{cm_clients} };
	return;
}

# A stopped or crashed server made a standby of the primary again.
sub restandby
{
	my ($self, $s) = @_;
	$self->drop_session($s);
	# the server stays marked until it is a standby again: after a failure
	# here, rebuild() is called again
	$self->{broken}{$s} = 1;
	$self->make_standby($s);
	delete $self->{broken}{$s};
	delete $self->{crashed}{$s};
	return;
}

# --- the Patroni lab -------------------------------------------------------

=pod

=head2 The Patroni lab

With C<< patroni => 1 >>: servers C<n1> and C<n2>, each running Patroni
(Debian's) as user postgres with the configuration rendered from
C<contrib/patroni/patroni.yml.in>, so that the example is what is tested;
PostgreSQL 15 with the watchdog, started and stopped by Patroni only. etcd
(Debian's, one member) runs on a host C<e1> of its own with a link to each
of the other hosts, so that a node can be cut off from etcd alone
(C<cut('e1-n1')>). conmgr on C<c1> runs with the configuration rendered
from C<contrib/patroni/conmgr.conf.in>. Each node's Patroni REST API
listens on port 8008 of all its addresses; Patroni's own watchdog (the
Linux device) is off: the lab has none to give.

The lab's only changes to the example: the DCS timings (C<patroni_timing>:
ttl 8 s, loop_wait 1 s, retry_timeout 3 s), and a few PostgreSQL
parameters of the lab's (the log where C<log_pos>/C<disconnections> read
it, no fsync).

C<leader()> asks the nodes' REST APIs; C<patronictl(@args)> runs patronictl
on a node; C<patroni_freeze($s)>/C<patroni_thaw($s)> stop and continue a
node's Patroni (SIGSTOP/SIGCONT); C<patroni_kill($s)> kills every process
of the node; C<rejoin($s)> makes a node a fresh replica of the leader
(data directory removed, Patroni started again, links restored).
C<promoted_at($s, $pos)> is when the server logged its new timeline.

=cut

# The lab's DCS timings: a leader lock that expires in 8 s, a loop every
# second, 3 s for a DCS operation (Patroni wants loop_wait + 2 x
# retry_timeout <= ttl).
my %PATRONI_TIMING = (ttl => 8, loop_wait => 1, retry_timeout => 3);

sub patroni_timing { return %PATRONI_TIMING }

sub write_file
{
	my ($path, $text) = @_;
	open my $f, '>', $path or croak("$path: $!");
	print $f $text;
	close $f or croak("$path: $!");
	return;
}

# A template with ${NAME} in it, every one replaced by its value; a name
# without a value is an error, naming it.
sub render_template
{
	my ($path, %v) = @_;
	open my $f, '<', $path or croak("$path: $!");
	local $/;
	my $t = <$f>;
	close $f;
	my %missing;
	$t =~ s/\$\{(\w+)\}/exists $v{$1} ? $v{$1} : do { $missing{$1} = 1; "\${$1}" }/ge;
	croak("$path: no value for " . join(', ', map { "\${$_}" } sort keys %missing)) if %missing;
	return $t;
}

# The text of a file ('' when it cannot be read).
sub slurp
{
	my ($path) = @_;
	open my $f, '<', $path or return '';
	local $/;
	my $t = <$f> // '';
	close $f;
	return $t;
}

# A long-running program on $host (as the test user when $as_user), its
# output to $log; its own process group. Returns the pid.
sub start_daemon
{
	my ($self, $name, $host, $as_user, $cmd, $log) = @_;
	my @cmd = $self->wrap($host, $as_user, @$cmd);
	my $pid = fork();
	croak("fork: $!") unless defined $pid;
	if ($pid == 0)
	{
		$SIG{$_} = 'DEFAULT' for qw(INT TERM HUP);
		POSIX::setsid();
		open(STDIN, '<', '/dev/null');
		open(STDOUT, '>>', $log) or POSIX::_exit(127);
		open(STDERR, '>&', \*STDOUT);
		exec(@cmd) or POSIX::_exit(127);
	}
	$self->{daemons}{$pid} = $name;
	logv("started $name (pid $pid) on $host");
	return $pid;
}

sub reap_daemons
{
	my ($self) = @_;
	for my $pid (keys %{ $self->{daemons} // {} })
	{
		delete $self->{daemons}{$pid} if waitpid($pid, POSIX::WNOHANG()) != 0;
	}
	return;
}

sub setup_patroni
{
	my ($self) = @_;
	my $e = $self->{etcd_hosts}[0];
	my $ed = "$self->{dir}/$e";
	mkdir $ed or die "$ed: $!";
	must([ 'chown', $USER, $ed ]);
	$self->start_daemon('etcd', $e, 1, [ '/usr/bin/etcd', '--name', $e, '--data-dir', "$ed/data",
			'--listen-client-urls', 'http://0.0.0.0:2379',
			'--advertise-client-urls', 'http://' . $self->addr($e, $self->{servers}[0]) . ':2379',
			'--listen-peer-urls', 'http://127.0.0.1:2380', '--initial-advertise-peer-urls', 'http://127.0.0.1:2380',
			'--initial-cluster', "$e=http://127.0.0.1:2380", '--initial-cluster-state', 'new' ], "$ed/log");
	$self->wait_until(sub { ((http_get($self->addr($e, 'c1'), 2379, '/health'))[0] // 0) == 200 }, 30)
	  or croak("etcd on $e does not answer:\n" . substr(slurp("$ed/log"), -3000));
	my ($first, @rest) = @{ $self->{servers} };
	for my $s ($first, @rest)
	{
		my $d = $self->sdir($s);
		mkdir $d or die "$d: $!";
		must([ 'chown', $USER, $d ]);
	}
	$self->patroni_start($first);
	$self->wait_until(sub { ($self->patroni_rest($first, '/primary') // 0) == 200 }, 90)
	  or croak("Patroni on $first did not bootstrap a primary:\n" . $self->patroni_report($first));
	$self->{primary} = $first;
	$self->safe_psql($first, q{CREATE TABLE lab_writes (writer text, seq int, t_client float8,
		t_server float8 DEFAULT extract(epoch FROM clock_timestamp()), addr inet DEFAULT inet_server_addr())});
	for my $s (@rest)
	{
		$self->patroni_start($s);
	}
	$self->patroni_wait_replicas(90);
	return;
}

# Patroni's configuration for $s: the example, rendered, with the lab's
# timings and parameters.
sub patroni_config
{
	my ($self, $s) = @_;
	my $d = $self->sdir($s);
	my $e = $self->{etcd_hosts}[0];
	my ($peer) = grep { $_ ne $s } @{ $self->{servers} };
	my $y = render_template("$self->{top}/contrib/patroni/patroni.yml.in",
		SCOPE => 'cmlab', NODE_NAME => $s,
		# the address the other node (replication) reaches it at
		NODE_ADDR => $self->addr($s, $peer),
		ETCD_HOSTS => $self->addr($e, $s) . ':2379',
		CLIENT_NET => '127.0.0.0/8', AUTH_METHOD => 'trust', LOCAL_AUTH => 'trust',
		REPLICATION_USER => 'replicator', REPLICATION_PASSWORD => 'lab', SUPERUSER => $USER,
		SUPERUSER_PASSWORD => 'lab', POST_INIT => "$self->{dir}/post-init.sh",
		DATA_DIR => $self->data($s), PGPASS => "$d/pgpass", SOCKET_DIR => $d,
		WATCHDOG_PORT => 27545, PATRONI_WATCHDOG_MODE => 'off');
	for my $k (sort keys %PATRONI_TIMING)
	{
		$y =~ s/^(    $k:) \d+$/$1 $PATRONI_TIMING{$k}/m or croak("patroni.yml.in: no \"$k:\" under bootstrap.dcs");
	}
	my $lab = join('', map { "    $_\n" } 'logging_collector: "on"', "log_directory: $d", 'log_filename: log',
		'log_line_prefix: "%n [%p] %h %a "', 'log_disconnections: "on"', 'fsync: "off"',
		'synchronous_commit: "off"', 'shared_buffers: 32MB', 'dynamic_shared_memory_type: mmap');
	$y =~ s/^(  parameters:\n)/$1    # the fault lab's\n$lab/m or croak('patroni.yml.in: no postgresql.parameters');
	return $y;
}

sub patroni_start
{
	my ($self, $s) = @_;
	my $d = $self->sdir($s);
	if (!-e "$self->{dir}/post-init.sh")
	{
		must([ 'cp', "$self->{top}/contrib/patroni/post-init.sh", "$self->{dir}/post-init.sh" ]);
		chmod 0755, "$self->{dir}/post-init.sh";
	}
	write_file("$d/patroni.yml", $self->patroni_config($s));
	must([ 'chown', $USER, "$d/patroni.yml" ]);
	# what Patroni checks of a configuration before it runs one
	must([ $self->wrap($s, 1, '/usr/bin/patroni', '--validate-config', "$d/patroni.yml") ]);
	$self->{log_from}{$s} = -s ("$d/log") // 0;
	$self->start_daemon("patroni $s", $s, 1, [ '/usr/bin/patroni', "$d/patroni.yml" ], "$d/patroni.log");
	return;
}

# (status code, body) of an HTTP GET from the client host, or () when
# nothing answered within 2 s.
sub http_get
{
	my ($addr, $port, $path) = @_;
	my $sock = IO::Socket::INET->new(PeerAddr => $addr, PeerPort => $port, Proto => 'tcp', Timeout => 2)
	  or return ();
	$sock->autoflush(1);
	print $sock "GET $path HTTP/1.0\r\nHost: $addr\r\n\r\n";
	my $ans = read_to_eof($sock, 2);
	return () unless $ans =~ m{^HTTP/\d\.\d (\d+)};
	my $code = $1;
	$ans =~ s/^.*?\r\n\r\n//s;
	return ($code, $ans);
}

# The status code of Patroni's REST API on $s for $path (from c1).
sub patroni_rest
{
	my ($self, $s, $path) = @_;
	return (http_get($self->addr($s, 'c1'), 8008, $path))[0];
}

# The node whose Patroni says it is the running primary holding the lock
# (undef: none).
sub leader
{
	my ($self) = @_;
	my @l = grep { ($self->patroni_rest($_, '/primary') // 0) == 200 } @{ $self->{servers} };
	return @l == 1 ? $l[0] : undef;
}

sub patroni_report
{
	my ($self, $s) = @_;
	return "--- $s patroni.log (end):\n" . substr(slurp($self->sdir($s) . '/patroni.log'), -3000)
	  . "--- $s postgres log (end):\n" . substr(slurp($self->sdir($s) . '/log'), -2000);
}

# Waits until Patroni says the other nodes are replicas and the leader
# streams to them; croaks with their logs otherwise.
sub patroni_wait_replicas
{
	my ($self, $secs) = @_;
	my @late;
	my $ok = $self->wait_until(sub {
		@late = grep { ($self->patroni_rest($_, '/replica') // 0) != 200 } $self->standbys;
		@late = $self->not_streaming unless @late;
		!@late;
	}, $secs // 60);
	croak(join("\n", "not replicas of $self->{primary}: @late", $self->streaming_report,
		map { $self->patroni_report($_) } @late)) unless $ok;
	return;
}

# Runs patronictl on $s (it reaches etcd and the nodes' REST APIs from
# there). Returns (exit status, output).
sub patronictl
{
	my ($self, $s, @args) = @_;
	my ($rc, $out, $err) = run_cmd([ $self->wrap($s, 0, '/usr/bin/patronictl', '-c', $self->sdir($s) . '/patroni.yml',
			@args) ], timeout => 60);
	return ($rc, "$out$err");
}

# The pids of Patroni on $s.
sub patroni_pids
{
	my ($self, $s) = @_;
	my $ns = $self->ns($s);
	return grep { slurp("/proc/$_/cmdline") =~ m{/usr/bin/patroni\0} } grep { /^\d+$/ }
	  split /\s+/, `ip netns pids $ns 2>/dev/null`;
}

sub patroni_freeze
{
	my ($self, $s) = @_;
	my @p = $self->patroni_pids($s) or croak("no Patroni on $s");
	kill 'STOP', @p;
	$self->{frozen}{$s} = \@p;
	return time();
}

sub patroni_thaw
{
	my ($self, $s) = @_;
	my $p = delete $self->{frozen}{$s} or return;
	kill 'CONT', @$p;
	return;
}

# kill -9 of every process on $s (Patroni, postgres); its links stay as
# they are.
sub patroni_kill
{
	my ($self, $s) = @_;
	delete $self->{frozen}{$s};
	my $t = time();
	kill_ns($self->ns($s)) or croak("processes of $s survive kill -9");
	$self->drop_session($s);
	remove_shm($self->data($s) . '/postmaster.pid');
	$self->remove_socket_lock($s);
	$self->reap_daemons;
	return $t;
}

# A killed server's Unix socket lock file, outside its data directory:
# the next postmaster would believe the pid in it (processes of every
# namespace share one pid space, and pids are reused) and refuse to start.
sub remove_socket_lock
{
	my ($self, $s) = @_;
	unlink glob($self->sdir($s) . '/.s.PGSQL.5432*');
	return;
}

# When $s logged its promotion (its new timeline) after log position
# $pos: epoch seconds, or undef.
sub promoted_at
{
	my ($self, $s, $pos) = @_;
	open my $f, '<', $self->sdir($s) . '/log' or return undef;
	seek($f, $pos // 0, 0);
	while (my $l = <$f>)
	{
		return $1 if $l =~ /^(\d+\.\d+) .*selected new timeline ID: \d+/;
	}
	return undef;
}

=pod

=head2 start_haproxy()

HAProxy (Debian's) on c1, in front of the Patroni nodes as Patroni's
documentation sets it up: TCP mode, each node checked on its REST API
(C<option httpchk GET /primary>, C<inter 1s fall 3 rise 1>), sessions
shut down when a node is marked down. Returns the port it listens on
(127.0.0.1).

=cut

sub start_haproxy
{
	my ($self) = @_;
	croak('haproxy is missing (tools/install-deps bench installs it)') unless -x '/usr/sbin/haproxy';
	my $port = free_port();
	my $cfg = "global\n  maxconn 200\n\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 30m\n"
	  . "  timeout server 30m\n  timeout check 1s\n\nlisten primary\n  bind 127.0.0.1:$port\n"
	  . "  option httpchk GET /primary\n  http-check expect status 200\n"
	  . "  default-server inter 1s fall 3 rise 1 on-marked-down shutdown-sessions\n";
	$cfg .= "  server $_ " . $self->addr($_, 'c1') . ":5432 check port 8008\n" for @{ $self->{servers} };
	write_file("$self->{dir}/haproxy.cfg", $cfg);
	$self->start_daemon('haproxy', 'c1', 0, [ '/usr/sbin/haproxy', '-db', '-f', "$self->{dir}/haproxy.cfg" ],
		"$self->{dir}/haproxy.log");
	$self->{haproxy_port} = $port;
	return $port;
}

# A dead node's server started on its own, with no Patroni, no network
# and no watchdog, so that the test can read what landed on it (psql()
# over its Unix socket); inspect_end() stops it again.
sub inspect_offline
{
	my ($self, $s) = @_;
	my $d = $self->sdir($s);
	$self->remove_socket_lock($s);
	my ($rc, $out, $err) = run_cmd([ $self->wrap($s, 1, $self->pg('pg_ctl'), '-D', $self->data($s), '-l', "$d/inspect.log",
			'-o', "-c listen_addresses='' -c unix_socket_directories='$d' -c shared_preload_libraries='' -c logging_collector=off",
			'-w', '-t', '60', 'start') ], timeout => 90);
	return $rc == 0;
}

sub inspect_end
{
	my ($self, $s) = @_;
	$self->drop_session($s);
	$self->pg_stop($s, 'immediate');
	return;
}

# $s, after a failover away from it: all its processes killed, its data
# directory removed, its links restored, Patroni started again, which
# clones it from the leader; back once the leader streams to it.
sub rejoin
{
	my ($self, $s) = @_;
	$self->{broken}{$s} = 1;
	$self->patroni_kill($s);
	must([ 'rm', '-rf', $self->data($s) ]);
	$self->restore($self->host_links($s));
	$self->patroni_start($s);
	$self->patroni_wait_replicas(90);
	delete $self->{broken}{$s};
	delete $self->{crashed}{$s};
	return;
}

# --- conmgr ----------------------------------------------------------------

sub cmdir { my ($self, $c) = @_; return "$self->{dir}/cm_$c" }

sub start_conmgr
{
	my ($self, $c, %o) = @_;
	my $cm = $self->{cm}{$c} //= $self->new_conmgr($c);
	# a killed conmgr's processes must be gone (reaped) first
	if (my $old = $self->{conmgr}{$c}{killed})
	{
		$self->wait_until(sub { !kill(0, -$old) }, 10);
	}
	$cm->start(daemon => 1, wait => $o{complete} ? 'up' : 'primary', timeout => 60,
		prefix => [ 'runuser', '-u', $USER, '--' ]);
	$self->{conmgr}{$c} = { port => $cm->port, pid => $cm->pid };
	return $cm->pid;
}

# The CmTest::Conmgr of client host $c: its directory and conmgr.conf,
# owned by $USER; its programs are the lab's copies, run on $c.
sub new_conmgr
{
	my ($self, $c) = @_;
	my $d = $self->cmdir($c);
	my $port = $c eq 'c1' ? $self->{conmgr_port} : 27546;
	my %o = (port => $port, logfile => "$d/conmgr.log", build => "$self->{dir}/build",
		wrap => [ $self->wrap($c, 0) ]);
	my $cm;
	if ($self->{patroni})
	{
		# the Patroni lab's conmgr.conf is the example's
		mkdir $d or die $!;
		my ($n1, $n2) = @{ $self->{servers} };
		write_file("$d/conmgr.conf", render_template("$self->{top}/contrib/patroni/conmgr.conf.in",
				CONMGR_PORT => $port, NODE1_NAME => $n1, NODE2_NAME => $n2,
				NODE1_ADDR => $self->addr($n1, $c), NODE2_ADDR => $self->addr($n2, $c),
				NODE1_WATCHDOG_PORT => 27545, NODE2_WATCHDOG_PORT => 27545));
		$cm = CmTest::Conmgr->new("cm_$c", cmdata => $d, %o);
	}
	else
	{
		$cm = CmTest::Conmgr->new("cm_$c", dir => $d, %o,
			instances => [
				map { { backend_hostaddr => "'" . $self->addr($_, $c) . "'", backend_port => 5432,
						watchdog_port => 27545 } } @{ $self->{servers} }
			],
			conf => "listen_addresses = 'localhost'\n"
			  . "heartbeat_interval = $self->{hb_interval}\nheartbeat_timeout = $self->{hb_timeout}\n"
			  . "heartbeat_connect_interval = $self->{hb_connect_interval}\n"
			  . "heartbeat_connect_timeout = $self->{hb_connect_timeout}\nlog_min_messages = LOG\n"
			  . $self->{conmgr_conf} . ($self->{cm_conf}{$c} // ''));
	}
	must([ 'chown', '-R', $USER, $d ]);
	chmod 0700, $d;
	return $cm;
}

sub conmgr_pid
{
	my ($self, $c) = @_;
	open my $f, '<', $self->cmdir($c) . '/conmgr.pid' or return undef;
	my $pid = <$f>;
	close $f;
	return undef unless defined $pid && $pid =~ /^(\d+)/;
	return $1;
}

sub conmgr_log
{
	my ($self, $c, $from) = @_;
	my $cm = $self->{cm}{$c} or return '';
	return $cm->log_content($from);
}

=pod

=head2 kill_conmgr($client)

kill -9 of conmgr's whole process group (supervisor and roles; cm_ctl
starts it in its own session). Returns the time just before the signal.

=cut

sub kill_conmgr
{
	my ($self, $c) = @_;
	my $pid = $self->{conmgr}{$c}{pid} // return undef;
	my $t = time();
	$self->{cm}{$c}->kill9;
	$self->{conmgr}{$c} = { killed => $pid };
	return $t;
}

=pod

=head2 resolve($client, $target)

The servers conmgr on $client offers for $target, in its order (cmresolve).

=cut

sub resolve
{
	my ($self, $c, $target) = @_;
	my $answer = $self->resolve_answer($c, $target);
	return $answer ? @$answer : ();
}

# The same, telling "no answer" (undef: cmresolve failed, timed out or got
# an ERROR) from an empty candidate list ([]).
sub resolve_answer
{
	my ($self, $c, $target) = @_;
	my $port = $self->{conmgr}{$c}{port} // return undef;
	my ($rc, $out) = run_cmd([ $self->wrap($c, 0, "$self->{tools}/cmresolve", '-h', 'localhost',
			'-p', $port, '-t', $target) ], timeout => 10);
	return undef unless $rc == 0 && $out =~ /^end count=\d+$/m;
	return [ map { $self->{servers}[$_] } $out =~ /^candidate instance=(\d+) /mg ];
}

# Wait until conmgr on $client routes to every server in its role.
sub wait_routable
{
	my ($self, $c, $secs) = @_;
	my $p = $self->{primary};
	my $ok = $self->wait_until(sub {
		my @rw = $self->resolve($c, 'read-write');
		my @ro = $self->resolve($c, 'read-only');
		return "@rw" eq $p && scalar(@ro) == scalar($self->standbys);
	}, $secs // 60);
	croak("conmgr on $c does not route to all servers:\n" . $self->ctl_status($c)->{raw}) unless $ok;
	return $ok;
}

=pod

=head2 ctl_status($client)

What C<cm_ctl status --json> shows of the conmgr of $client (run on
$client): { instances => { n1 => {state, role, downs, timeline, ...} },
apps => [ {client, pid, target, state, instance, since} ], ok => 1 when
conmgr answered, raw => the JSON as text }.

=cut

# What a socket sends until it closes, for at most $secs; then closed.
sub read_to_eof
{
	my ($s, $secs) = @_;
	my $ans = '';
	my $deadline = time() + $secs;
	$s->blocking(0);
	while (time() < $deadline)
	{
		my $n = sysread($s, $ans, 65536, length $ans);
		last if defined $n && $n == 0;
		usleep(5_000) unless $n;
	}
	close $s;
	return $ans;
}

sub ctl_status
{
	my ($self, $c) = @_;
	my $j = ($self->{cm}{$c} ? $self->{cm}{$c}->status : undef) // {};
	my %r = (instances => {}, apps => $j->{applications} // [], ok => $j->{instances} ? 1 : 0,
		raw => %$j ? JSON::PP->new->canonical->encode($j) : '(no answer from cm_ctl status)');
	for my $in (@{ $j->{instances} // [] })
	{
		$r{instances}{ $self->{servers}[ $in->{instance} ] } = { %$in, state => $in->{heartbeat} };
	}
	return \%r;
}

# --- applications ---------------------------------------------------------

=pod

=head2 conninfo($client, $target, %extra) / direct($client, $server, %extra)

A connection string through the conmgr of $client, or straight to a
server's address on the link from $client.

=cut

sub conninfo
{
	my ($self, $c, $target, %x) = @_;
	my $ci = "host=localhost port=$self->{conmgr}{$c}{port} dbname=postgres user=$USER"
	  . " target_session_attrs=$target";
	$ci .= " $_=$x{$_}" for sort keys %x;
	return $ci;
}

sub direct
{
	my ($self, $c, $s, %x) = @_;
	my $ci = 'host=' . $self->addr($s, $c) . " port=5432 dbname=postgres user=$USER";
	$ci .= " $_=" . ($x{$_} =~ /[\s']/ ? "'" . ($x{$_} =~ s/'/\\'/gr) . "'" : $x{$_}) for sort keys %x;
	return $ci;
}

sub cmapp { return "$_[0]{tools}/cmapp" }

=pod

=head2 spawn($host, \@cmd, preload => 0|1, feeder => \@cmd, stdin => \$scalar, stamp => 0|1, as_user => 0|1)

Starts a program on $host (as root: a client; with as_user, as the
servers' user, whose name is a role on them), output captured. preload
injects libpq-cm. feeder pipes another program into its standard input.
stamp merges standard error into standard output and passes both through
a process that prefixes each line with the time it arrived (and adds a
line "EOF" when the program has closed its output), so that when
something happened does not depend on how often the test looks.
Returns a CmLab::Proc; the lab kills what is left in cleanup.

=cut

my @STAMPER = ('perl', '-MTime::HiRes=time', '-e', q{
	$| = 1;
	while (defined(my $l = <STDIN>)) { $l .= "\n" unless $l =~ /\n\z/; printf '%.6f %s', time, $l }
	printf "%.6f EOF\n", time});

sub spawn
{
	my ($self, $host, $cmd, %o) = @_;
	my @cmd = @$cmd;
	# CmTest::foreign_env: under make check-asan the ASan runtime must come
	# first in LD_PRELOAD (docs/hardening.md).
	unshift @cmd, CmTest::foreign_env(LD_PRELOAD => $self->{preload}) if $o{preload};
	@cmd = $self->wrap($host, $o{as_user} ? 1 : 0, @cmd);
	my ($out, $err) = ('', '');
	my @io = $o{stamp} ? ('2>&1', '|', \@STAMPER, '>', \$out) : ('>', \$out, '2>', \$err);
	my @in = $o{feeder}
	  ? ([ $self->wrap($host, 0, @{ $o{feeder} }) ], '<', \undef, '2>', '/dev/null', '|')
	  : ();
	my $h = IPC::Run::start(@in, \@cmd, ($o{feeder} ? () : ('<', $o{stdin} // \undef)), @io);
	my $p = bless { h => $h, out => \$out, err => \$err, t0 => time(), cmd => "@cmd", stamped => $o{stamp},
		name => $o{name} // $cmd[0] }, 'CmLab::Proc';
	push @{ $self->{procs} }, $p;
	return $p;
}

=pod

=head2 cut_delays(\%apps, $server, $link, $secs)

The benchmarks' black-holed link: %apps are programs spawned on a client
host in a query on $server (C<pqtiming block>, application_name
C<bench_...>). Waits (30 s at most) until each has said C<running> and
$server shows them all active; cuts $link at a random point between two
heartbeats; waits ($secs at most) for each one's C<result> line. Returns
{ name => seconds from the cut to its error, undef when none came }, or
undef when the programs did not all start.

=cut

sub cut_delays
{
	my ($self, $apps, $server, $link, $secs) = @_;
	my $busy = $self->wait_until(sub {
		$_->pump for values %$apps;
		return 0 if grep { $_->out !~ /^running/m } values %$apps;
		return ($self->psql($server, q{SELECT count(*) FROM pg_stat_activity
			WHERE application_name LIKE 'bench\_%' AND state = 'active'}) // 0) == keys %$apps;
	}, 30);
	return undef unless $busy;
	usleep(int(rand(1_000_000 * $self->{hb_interval})));
	my $t0 = $self->cut($link);
	my %delay;
	$self->wait_until(sub {
		for my $k (keys %$apps)
		{
			$apps->{$k}->pump;
			$delay{$k} //= $1 / 1e6 - $t0 if $apps->{$k}->out =~ /^result at_us=(\d+)/m;
		}
		return keys(%delay) == keys %$apps;
	}, $secs);
	return \%delay;
}

=pod

=head2 spawn_file($host, \@cmd, $file)

A lighter child for many applications at once: fork and exec, output to
$file. Returns the pid; reap(), kill_pids() and cleanup handle it.

=cut

sub spawn_file
{
	my ($self, $host, $cmd, $file) = @_;
	my @cmd = $self->wrap($host, 0, @$cmd);
	my $pid = fork();
	croak("fork: $!") unless defined $pid;
	if ($pid == 0)
	{
		$SIG{$_} = 'DEFAULT' for qw(INT TERM HUP);
		open(STDIN, '<', '/dev/null');
		open(STDOUT, '>', $file) or POSIX::_exit(127);
		open(STDERR, '>&', \*STDOUT);
		exec(@cmd) or POSIX::_exit(127);
	}
	$self->{pids}{$pid} = 1;
	return $pid;
}

=pod

=head2 fork_loop($sub)

Runs $sub in a forked child (which never cleans the lab up and exits with
_exit). Returns the pid.

=cut

sub fork_loop
{
	my ($self, $sub) = @_;
	my $pid = fork();
	croak("fork: $!") unless defined $pid;
	if ($pid == 0)
	{
		$SIG{$_} = 'DEFAULT' for qw(INT TERM HUP);
		%LIVE = ();
		eval { $sub->(); 1 } or print STDERR "fork_loop: $@";
		POSIX::_exit(0);
	}
	$self->{pids}{$pid} = 1;
	return $pid;
}

sub reap
{
	my ($self) = @_;
	for my $pid (keys %{ $self->{pids} })
	{
		delete $self->{pids}{$pid} if waitpid($pid, POSIX::WNOHANG()) == $pid;
	}
	return scalar keys %{ $self->{pids} };
}

sub kill_pids
{
	my ($self, @pids) = @_;
	@pids = keys %{ $self->{pids} } unless @pids;
	kill 'KILL', @pids;
	for my $pid (@pids)
	{
		waitpid($pid, 0);
		delete $self->{pids}{$pid};
	}
	return;
}

sub stop_procs
{
	my ($self) = @_;
	for my $p (@{ $self->{procs} })
	{
		$p->kill;
	}
	$self->{procs} = [];
	return;
}

# --- cleanup ---------------------------------------------------------------

=pod

=head2 cleanup()

Kills the applications and helpers, conmgr, the servers (every process of
each namespace), deletes the namespaces (their devices go with them), the
root namespace's nftables table and devices, and the directory (kept when
CM_KEEP_TMP=1). Safe to call twice; called by END and on signals.

=cut

sub cleanup
{
	my ($self) = @_;
	return if $self->{cleaned} || $self->{owner} != $$;
	$self->{cleaned} = 1;
	delete $LIVE{"$self"};
	local $?;
	local $@;
	eval { $self->stop_procs };
	eval { $self->kill_pids };
	for my $m (values %{ $self->{mon} })
	{
		eval { $m->{h}->kill_kill(grace => 1) };
	}
	$self->{mon} = {};
	$self->{cm}{c1}->kill9 if $self->{cm}{c1};
	# daemons on c1 (HAProxy): their process groups
	kill 'KILL', map { -$_ } grep { $self->{daemons}{$_} eq 'haproxy' } keys %{ $self->{daemons} // {} };
	# Patroni would start a stopped server again: its namespace goes first
	kill 'CONT', map { @$_ } values %{ $self->{frozen} // {} };
	kill_ns($self->ns($_)) for $self->{patroni} ? @{ $self->{servers} } : ();
	if ($self->{dir})
	{
		for my $s (@{ $self->{servers} })
		{
			next if $self->{crashed}{$s} || $self->{patroni} || !-e $self->data($s) . '/postmaster.pid';
			$self->pg_stop($s, 'immediate');
		}
	}
	for my $ns (@{ $self->{made_ns} // [] })
	{
		kill_ns($ns);
	}
	if ($self->{dir})
	{
		remove_shm($_) for glob("$self->{dir}/n*/data/postmaster.pid");
	}
	for my $ns (@{ $self->{made_ns} // [] })
	{
		system('ip', 'netns', 'del', $ns);
	}
	# (etcd's data and Patroni's go with the directory)
	$self->reap_daemons;
	system("nft delete table netdev $self->{tag} 2>/dev/null") if $self->{nft_made}{c1};
	for my $dev (@{ $self->{root_devs} // [] })
	{
		system("ip link del $dev 2>/dev/null") if -e "/sys/class/net/$dev";
	}
	if ($self->{dir})
	{
		if ($ENV{CM_KEEP_TMP})
		{
			print STDERR "# CmLab: kept $self->{dir}\n";
		}
		else
		{
			system('rm', '-rf', '--one-file-system', $self->{dir});
		}
	}
	return;
}

# --- a running application --------------------------------------------------

package CmLab::Proc;

use Time::HiRes qw(time usleep);

# Output without the time stamps
sub out
{
	my ($self) = @_;
	return ${ $self->{out} } unless $self->{stamped};
	return join('', map { /^\d+\.\d+ (.*\n)/ && $1 ne "EOF\n" ? $1 : '' } split /^/m, ${ $self->{out} });
}
sub err { return ${ $_[0]{err} } }
sub all { return $_[0]->out . ${ $_[0]{err} } }

# With stamp: the time of the first line matching $re, or of the end of
# the output when $re is undef (undef when not seen yet).
sub stamp_of
{
	my ($self, $re) = @_;
	for my $line (split /\n/, ${ $self->{out} })
	{
		next unless $line =~ /^(\d+\.\d+) (.*)$/;
		my ($t, $text) = ($1, $2);
		return $t if defined $re ? $text =~ $re : $text eq 'EOF';
	}
	return undef;
}

sub pump
{
	my ($self) = @_;
	eval { $self->{h}->pump_nb if $self->{h}->pumpable; 1 };
	return $self;
}

# Finished: every output closed (the program exited).
sub done
{
	my ($self) = @_;
	$self->pump;
	return !$self->{h}->pumpable;
}

sub wait_for
{
	my ($self, $re, $secs) = @_;
	my $deadline = time() + ($secs // 30);
	while (time() < $deadline)
	{
		$self->pump;
		return 1 if $self->all =~ $re;
		return 0 if !$self->{h}->pumpable && $self->all !~ $re;
		usleep(5_000);
	}
	return 0;
}

sub kill
{
	my ($self) = @_;
	return if $self->{killed}++;
	eval { $self->{h}->signal('KILL') if $self->{h}->pumpable; 1 };
	eval { $self->{h}->finish; 1 };
	return;
}

1;
