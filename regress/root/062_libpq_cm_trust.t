# Test, as root, which "conmgr" libpq-cm follows (docs/libpq-cm.md, "Which
# conmgr is trusted"):
#  - another local user ("nobody") serving a fake conmgr on a loopback port
#    (regress/tools/fake_conmgr.pl, over IPv4 and IPv6) cannot redirect an
#    application run by "postgres": it gets an error naming that user and
#    never connects to the candidate the fake names; PGCMOWNER naming that
#    user (by name, uid or a path it owns) makes it trusted;
#  - a destination that is not on loopback (an address on the loopback
#    device of a network namespace made here) is not probed, and goes to
#    libpq as a server, and so is a name with such an address among
#    loopback ones, unless PGCMADDRS names it (and then its owner is
#    not checked: it may be another host); loopback in that namespace is
#    probed and its owner checked, as the fault lab's client hosts need;
#  - contrib/jdbc's driver does the same (when a JDK and pgJDBC are there).
use strict;
use warnings;
use File::Copy qw(copy);
use File::Temp qw(tempdir);
use FindBin;
use IO::Select;
use IO::Socket::IP;
use IPC::Run;
use Test::More;

plan skip_all => 'needs root' if $> != 0;

my $top = "$FindBin::RealBin/../..";
my $cmapp = "$top/build/regress/tools/cmapp";
my $app_user = 'postgres';
my ($nobody, $nobody_gid) = (getpwnam('nobody'))[ 2, 3 ];
plan skip_all => 'needs the users "nobody" and "postgres"'
  unless defined $nobody && defined getpwnam($app_user);

# The fake and its logs where every user can reach them.
my $dir = tempdir(CLEANUP => 1);
chmod 0755, $dir;
copy("$top/regress/tools/fake_conmgr.pl", "$dir/fake_conmgr.pl") or die $!;
chmod 0755, "$dir/fake_conmgr.pl";
mkdir "$dir/nobody-owns" or die $!;
chown $nobody, $nobody_gid, "$dir/nobody-owns";

# contrib/jdbc's driver applies the same rules (Trust.java): built here
# when a JDK and pgJDBC are installed.
my $pgjdbc = $ENV{PGJDBC} // '/usr/share/java/postgresql.jar';
my $jdbc_cp;
if (-r $pgjdbc && system('sh', '-c', 'command -v javac >/dev/null') == 0)
{
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'make', '-s', '-C', "$top/contrib/jdbc", "O=$dir/jdbc", "PGJDBC=$pgjdbc" ],
		'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(300));
	die "make -C contrib/jdbc failed:\n$out$err" if $?;
	system('chmod', '-R', 'a+rX', "$dir/jdbc");
	$jdbc_cp = "$dir/jdbc/conmgr-jdbc.jar:$pgjdbc:$dir/jdbc/test";
}

my @running;
END { $_->kill_kill for grep { $_->pumpable } @running; }

# Start the fake as $uid (in namespace $ns, if given) on $addr; its port
# and log.  Its one candidate is instance 0 at $cand (numeric) port $cport.
sub start_fake
{
	my (%o) = @_;
	my $log = "$dir/fake." . scalar(@running) . '.log';
	open my $f, '>', $log or die $!;
	close $f;
	chmod 0666, $log;
	my @cmd = ('setpriv', "--reuid=$o{uid}", "--regid=" . ((getpwuid($o{uid}))[3]), '--clear-groups',
		'perl', "$dir/fake_conmgr.pl", $o{addr}, 0, $log, join(',', 1, $o{cport}, unpack('H*', $o{cand})));
	unshift @cmd, 'ip', 'netns', 'exec', $o{ns} if $o{ns};
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(\@cmd, '<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(120));
	push @running, $h;
	my $t = IPC::Run::timer(10);
	$t->start;
	$h->pump until $out =~ /^port (\d+)$/m || $t->is_expired || !$h->pumpable;
	die "the fake conmgr did not start: $err" unless $out =~ /^port (\d+)$/m;
	return ($1, $log);
}

# The application (cmapp connect) as $app_user with extra environment.
sub app
{
	my ($conninfo, %env) = @_;
	my @cmd = ('runuser', '-u', $app_user, '--', 'env', map({ "$_=$env{$_}" } sort keys %env),
		$cmapp, 'connect', "$conninfo dbname=postgres connect_timeout=3 sslmode=disable gssencmode=disable");
	unshift @cmd, 'ip', 'netns', 'exec', delete $env{NS} if $env{NS};
	@cmd = grep { !/^NS=/ } @cmd;
	my ($out, $err) = ('', '');
	IPC::Run::run(\@cmd, '<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(60));
	return "$out$err";
}

# The JDBC driver (CmJdbcCheck connect URL) as $app_user; its line.
sub jdbc
{
	my ($hostport, %env) = @_;
	my @cmd = ('runuser', '-u', $app_user, '--', 'env', map({ "$_=$env{$_}" } grep { $_ ne 'NS' } sort keys %env),
		'java', '-cp', $jdbc_cp, 'CmJdbcCheck', 'connect', "jdbc:conmgr://$hostport/postgres?connectTimeout=3");
	unshift @cmd, 'ip', 'netns', 'exec', $env{NS} if $env{NS};
	my ($out, $err) = ('', '');
	IPC::Run::run(\@cmd, '<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(60));
	return "$out$err";
}

sub lines
{
	my ($log) = @_;
	open my $f, '<', $log or return '';
	local $/;
	my $s = <$f>;
	$s =~ s/\n/ /g;
	$s =~ s/ $//;
	return $s;
}

# --- a local user other than conmgr's owner on a loopback port ---
for my $family ([ '127.0.0.1', 'IPv4' ], [ '::1', 'IPv6' ])
{
	my ($addr, $name) = @$family;
	my $trap = IO::Socket::IP->new(LocalHost => $addr, LocalPort => 0, Listen => 16, ReuseAddr => 1)
	  or die "listen on $addr: $@";
	my $tport = $trap->sockport;
	my $caught = sub {
		my $n = 0;
		while (IO::Select->new($trap)->can_read(0))
		{
			my $c = $trap->accept or last;
			close $c;
			$n++;
		}
		return $n;
	};
	my ($port, $log) = start_fake(uid => $nobody, addr => $addr, cand => $addr, cport => $tport);
	my $host = $addr =~ /:/ ? "hostaddr=$addr" : "host=$addr";

	my $r = app("$host port=$port");
	like($r, qr/^failed message=.*port $port failed: this port is served by user "nobody" \(uid $nobody\), who is not trusted to run conmgr \(trusted: root, this program's uid \d+.*\); set PGCMOWNER to the user that runs conmgr/m,
		"$name: a fake conmgr run by nobody is refused, and the error names the user and PGCMOWNER") or diag($r);
	is(lines($log), 'probe', "$name: the fake was reached (probed)");
	is($caught->(), 0, "$name: the application never connected to the fake's candidate");

	for my $owner ('nobody', $nobody, "$dir/nobody-owns")
	{
		$r = app("$host port=$port", PGCMOWNER => $owner);
		unlike($r, qr/not trusted|PGCMOWNER/, "$name: PGCMOWNER=$owner: nobody's conmgr is trusted") or diag($r);
		is($caught->(), 1, "$name: PGCMOWNER=$owner: the application goes to the candidate");
	}
	$r = app("$host port=$port", PGCMOWNER => 'no-such-user-here');
	like($r, qr/^failed message=.*PGCMOWNER names user "no-such-user-here", who does not exist/m,
		"$name: PGCMOWNER naming no user is an error") or diag($r);
	is($caught->(), 0, "$name: and the candidate is not followed");

	SKIP:
	{
		skip 'no JDK or no pgJDBC: the JDBC driver is not tested', 4 unless $jdbc_cp;
		my $hp = $addr =~ /:/ ? "[$addr]:$port" : "$addr:$port";
		$r = jdbc($hp);
		like($r, qr/^url=\S+ error sqlstate=08001 message=.*this port is served by user "nobody" \(uid $nobody\), who is not trusted to run conmgr .*set PGCMOWNER/m,
			"$name, JDBC: nobody's conmgr is refused") or diag($r);
		is($caught->(), 0, "$name, JDBC: the candidate is not followed");
		$r = jdbc($hp, PGCMOWNER => 'nobody');
		unlike($r, qr/not trusted/, "$name, JDBC: PGCMOWNER=nobody: trusted") or diag($r);
		is($caught->(), 1, "$name, JDBC: PGCMOWNER=nobody: the driver goes to the candidate");
	}
	$_->kill_kill for @running;
	@running = ();
}

# --- loopback only, unless PGCMADDRS names the destination ---
SKIP:
{
	my $ns = "cmtrust$$";
	my $remote = '198.51.100.7';	# TEST-NET-2, only inside the namespace
	skip 'needs network namespaces (ip netns)', 12
	  if system('ip', 'netns', 'add', $ns) != 0;
	# ip netns exec mounts /etc/netns/NAME/hosts on /etc/hosts: two names,
	# one on loopback only, one with a loopback and another address
	my $made_etc_netns = mkdir "/etc/netns";
	mkdir "/etc/netns/$ns" or die "/etc/netns/$ns: $!";
	my $cleanup = sub {
		system('ip', 'netns', 'del', $ns);
		system('rm', '-rf', "/etc/netns/$ns");
		rmdir '/etc/netns' if $made_etc_netns;
	};
	END { $cleanup->() if $cleanup; }
	open my $hosts, '>', "/etc/netns/$ns/hosts" or die $!;
	print $hosts "127.0.0.1 localhost\n127.0.0.1 cm-local\n127.0.0.1 cm-mixed\n$remote cm-mixed\n";
	close $hosts;
	system('ip', 'netns', 'exec', $ns, 'ip', 'link', 'set', 'lo', 'up') == 0 or die 'lo up';
	system('ip', 'netns', 'exec', $ns, 'ip', 'addr', 'add', "$remote/32", 'dev', 'lo') == 0 or die 'addr add';
	my ($port, $log) = start_fake(ns => $ns, uid => $nobody, addr => '0.0.0.0', cand => '127.0.0.1', cport => 1);
	my $seen = sub { my $s = lines($log); truncate $log, 0; return $s; };

	app("host=$remote port=$port", NS => $ns);
	is($seen->(), 'other 196608', "$remote (not loopback): no probe, libpq's startup packet");
	app("host=db.example hostaddr=$remote port=$port", NS => $ns);
	is($seen->(), 'other 196608', "hostaddr=$remote: no probe either");
	app("host=$remote port=$port", NS => $ns, PGCMADDRS => "127.0.0.1, $remote:" . ($port + 1));
	is($seen->(), 'other 196608', 'PGCMADDRS naming another port: no probe');
	my $r = app("host=$remote port=$port", NS => $ns, PGCMADDRS => "$remote:$port");
	is($seen->(), 'probe', "PGCMADDRS=$remote:$port: probed") or diag($r);
	unlike($r, qr/not trusted/, 'a conmgr PGCMADDRS names is not checked for its owner (it may be on another host)');
	app("host=$remote port=$port", NS => $ns, PGCMADDRS => $remote);
	is($seen->(), 'probe', "PGCMADDRS=$remote (any port): probed");
	$r = app("host=$remote port=$port", NS => $ns, PGCMADDRS => '[::1');
	like($r, qr/^failed message=.*invalid entry "\[::1" in PGCMADDRS/m, 'a malformed PGCMADDRS is an error') or diag($r);
	is($seen->(), '', 'and the destination is not tried');
	$r = app("host=cm-mixed port=$port", NS => $ns);
	like($seen->(), qr/^other 196608( other 196608)?$/, 'a name with a loopback and another address: no probe')
	  or diag($r);
	app("host=cm-local port=$port", NS => $ns);
	is($seen->(), 'probe', 'a name with loopback addresses only: probed');
	$r = app("host=127.0.0.1 port=$port", NS => $ns);
	is($seen->(), 'probe', 'loopback inside a network namespace: probed');
	like($r, qr/this port is served by user "nobody"/, 'and its owner checked there') or diag($r);

	SKIP:
	{
		skip 'no JDK or no pgJDBC: the JDBC driver is not tested', 4 unless $jdbc_cp;
		$r = jdbc("$remote:$port", NS => $ns);
		like($seen->(), qr/^other \d+$/, "JDBC, $remote (not loopback): no probe, pgJDBC's first packet") or diag($r);
		$r = jdbc("$remote:$port", NS => $ns, PGCMADDRS => "$remote:$port");
		is($seen->(), 'probe', "JDBC, PGCMADDRS=$remote:$port: probed") or diag($r);
		$r = jdbc("$remote:$port", NS => $ns, PGCMADDRS => '[::1');
		like($r, qr/invalid entry "\[::1" in PGCMADDRS/, 'JDBC: a malformed PGCMADDRS is an error') or diag($r);
		$r = jdbc("127.0.0.1:$port", NS => $ns);
		like($r, qr/this port is served by user "nobody"/, 'JDBC: loopback in the namespace: probed, its owner checked')
		  or diag($r);
		$seen->();
	}
	$_->kill_kill for @running;
	@running = ();
}

done_testing();
