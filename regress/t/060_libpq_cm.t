# Test libpq-cm, the client library, against real instances: a primary
# and two standbys with the watchdog, conmgr in front (and a second conmgr
# that only knows the primary, for host lists).  Linked (cmapp), injected
# into psql and pgbench (LD_PRELOAD) and as the drop-in libpq.so.5 under
# psycopg: every target lands where asked, sync and async; PQhost/PQport
# name the instance; PQcmSocket; host lists mixing conmgr and postmasters;
# connect_timeout over the conmgr phase; a postmaster is probed once per
# process and logs nothing; a stopped instance makes a blocked query fail
# within heartbeat_timeout + 0.5 s, a killed conmgr at once; the watcher
# never touches a descriptor number libpq closed and the application
# reused, and its duplicate of the SQL socket never keeps a connection
# open that libpq let go; PQreset after a failover lands on the new
# primary.  Prints the connect overhead.
use strict;
use warnings;
use Cwd ();
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use CmTest::Conmgr;
use IO::Socket::INET;
use IPC::Run;
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $top = cm_top();
my $cmapp = "$top/build/regress/tools/cmapp";
my $resolve = "$top/build/regress/tools/cmresolve";
my $preload = "$top/build/lib/libpq-cm.so.1";
my $dropin = Cwd::realpath("$top/build/lib/dropin");
my ($hb_interval, $hb_timeout) = (1, 2);

# --- the instance set ---
my ($nodes, $wds) = watchdog_cluster(p => 'primary', s1 => 's1', s2 => 's2');
my %node = %$nodes;
my %wd = %$wds;
my $primary = $node{p};
my %port = map { $_ => $node{$_}->port } keys %node;
my %name_of = reverse %port;

# --- two conmgrs: cm1 knows all three, cm2 only the primary ---
# The checks below wait for each to route.
sub start_conmgr
{
	my ($name, @which) = @_;
	my $cm = CmTest::Conmgr->new($name,
		instances => [ map { [ $node{$_}, $wd{$_} ] } @which ],
		conf => { heartbeat_interval => $hb_interval, heartbeat_timeout => $hb_timeout,
			log_min_messages => 'LOG' });
	$cm->start(wait => 0);
	return $cm;
}
my $cm1 = start_conmgr('cm1', qw(p s1 s2));
my $cm2 = start_conmgr('cm2', qw(p));
my ($cm1port, $cm2port) = ($cm1->port, $cm2->port);

sub routable
{
	my ($cm, $target) = @_;
	return scalar(() = $cm->resolve($target) =~ /^candidate /mg);
}
ok(wait_until(sub { routable($cm1, 'any') == 3 }, 30), 'cm1 routes to all three instances')
  or diag($cm1->log_content);
ok(wait_until(sub { routable($cm2, 'any') == 1 }, 30), 'cm2 routes to the primary')
  or diag($cm2->log_content);

sub cm_conninfo
{
	my ($cm, $target, $extra) = @_;
	return $cm->connstr($target) . ($extra ? " $extra" : '');
}

sub run_cmd
{
	my (@cmd) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run(\@cmd, '<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(60));
	return ($out, $err);
}

# The instance a "connected" line names ('p', 's1', 's2'), its recovery
# flag and whether conmgr's socket is open.
sub landed
{
	my ($out) = @_;
	return ('none', '', '') unless $out =~ /^connected host=(\S+) hostaddr=\S+ port=(\d+) cmsocket=(\w+) recovery=(\w)/m;
	return ($name_of{$2} // "port $2", $4, $3, $1);
}

# --- every target, sync and async, linked ---
my %expect = (
	'read-write' => qr/^p$/,
	'primary' => qr/^p$/,
	'read-only' => qr/^s[12]$/,
	'standby' => qr/^s[12]$/,
	'prefer-standby' => qr/^s[12]$/,
	'prefer-primary' => qr/^p$/,
	'any' => qr/^(p|s1|s2)$/);
for my $target (sort keys %expect)
{
	for my $mode (qw(connect async))
	{
		my ($out, $err) = run_cmd($cmapp, $mode, cm_conninfo($cm1, $target));
		my ($where, $rec, $cmsock, $host) = landed($out);
		like($where, $expect{$target}, "$mode $target: lands on $where")
		  or diag("$out$err");
		is($rec, ($where eq 'p' ? 'f' : 't'), "$mode $target: pg_is_in_recovery() agrees");
		is($cmsock, 'yes', "$mode $target: PQcmSocket() >= 0");
		is($host, '127.0.0.1', "$mode $target: PQhost() is the instance, not conmgr's localhost");
		if ($mode eq 'async')
		{
			like($out, qr/awaiting=yes/, "async $target: PQstatus() showed CONNECTION_AWAITING_CMRESPONSE");
			like($out, qr/sockets=([2-9])/, "async $target: PQsocket() changed from conmgr's to the server's");
		}
	}
}

# Load balancing reaches the application: read-only spreads over both standbys.
{
	my %seen;
	for (1 .. 6)
	{
		my ($out) = run_cmd($cmapp, 'connect', cm_conninfo($cm1, 'read-only'));
		my ($where) = landed($out);
		$seen{$where}++;
	}
	is_deeply([ sort keys %seen ], [qw(s1 s2)], 'read-only connections go to both standbys');
}

# --- the accessors while talking to conmgr answer as libpq's ---
# psycopg's test_conninfo::test_no_password: PQpass(), PQdb() and
# PQconninfo() of a connection just started, still talking to conmgr, are
# those of its options, as plain libpq's are for the same options (061
# compares every accessor); once connected, the instance's connection
# answers with the same options.
{
	my @args = ('host=localhost', "port=$cm1port", 'dbname=postgres',
		'password=the-pass-word', 'target_session_attrs=any');
	my ($mine) = run_cmd("$top/build/regress/tools/cmaccess", 'string', 'now', @args);
	my ($libpqs) = run_cmd("$top/build/regress/tools/cmaccess-plain", 'string', 'now', @args);
	like($mine, qr/^PQstatus=in progress$/m, 'cmaccess: just started, still with conmgr');
	like($mine, qr/^PQpass='the-pass-word'$/m, 'cmaccess: PQpass() is the password given');
	like($mine, qr/^PQdb='postgres'$/m, 'cmaccess: PQdb() is the database given');
	like($mine, qr/^PQprotocolVersion=3$/m, 'cmaccess: PQprotocolVersion() is 3');
	s/^PQerrorMessage=.*$//m for $mine, $libpqs;
	is($mine, $libpqs, 'cmaccess: every accessor answers as plain libpq\'s for the same options');
	($mine) = run_cmd("$top/build/regress/tools/cmaccess", 'string', 'end', @args);
	like($mine, qr/^PQstatus=OK$/m, 'cmaccess: connected through conmgr');
	like($mine, qr/^PQpass='the-pass-word'$/m, 'cmaccess: connected, PQpass() is the same');
	like($mine, qr/^dbname='postgres'$/m, 'cmaccess: connected, PQconninfo() has the same dbname');
}

# --- descriptors, threads, fork ---
{
	my ($out) = run_cmd($cmapp, 'fds', cm_conninfo($cm1, 'read-write'));
	my ($b, $c, $f, $g) = $out =~ /^fds before=(\d+) connected=(\d+) finished=(\d+) again=(\d+)/m;
	is($c - $b, 4, 'connected through conmgr: the SQL socket, the watcher\'s duplicate of it, '
		  . 'conmgr\'s socket and the watcher\'s epoll')
	  or diag($out);
	is($f - $b, 1, 'PQfinish() closes the sockets and the duplicate (the watcher\'s epoll stays for the process)');
	is($g, $f, '50 more connections leave nothing behind');

	($out) = run_cmd($cmapp, 'threads', 8, cm_conninfo($cm1, 'any'));
	like($out, qr/^threads ok=80 failed=0$/m, '8 threads x 10 connections through conmgr at once');

	($out) = run_cmd($cmapp, 'fork', cm_conninfo($cm1, 'read-write'));
	like($out, qr/^fork child=ok parent=ok$/m,
		'a forked child connects on its own; the parent\'s connection is unharmed') or diag($out);
}

# --- the session with conmgr ends with a reset: no TIME_WAIT left here ---
# (docs/protocol.md, 2.3); only sockets that appear in between count.
{
	my $before = time_wait_ports($cm1port);
	my ($out) = run_cmd($cmapp, 'timing', 10, cm_conninfo($cm1, 'any'));
	like($out, qr/^timing n=10 /m, 'ten connections in one process through conmgr');
	is(new_time_wait($cm1port, $before), 0,
		'libpq-cm left no socket in TIME_WAIT towards conmgr');
	# the check sees them where the client closes normally
	$before = time_wait_ports($cm1port);
	IPC::Run::run([ $resolve, '-p', $cm1port, '-t', 'any', '-r', 5 ], '>', \$out, '2>', \my $err);
	cmp_ok(new_time_wait($cm1port, $before), '>=', 5,
		'an orderly close (cmresolve) leaves its sockets in TIME_WAIT, as ss shows');
}

# --- a postmaster straight: no conmgr socket, probed once, nothing logged ---
{
	my ($out) = run_cmd($cmapp, 'connect', "host=127.0.0.1 port=$port{p} dbname=postgres");
	my ($where, $rec, $cmsock) = landed($out);
	is("$where $cmsock", 'p no', 'a postmaster named directly: connected, PQcmSocket() = -1');

	my $log = $node{s1}->logfile;
	$node{s1}->append_conf('postgresql.conf', "log_connections = on\n");
	$node{s1}->reload;
	usleep(300_000);
	my $before = -s $log;
	($out) = run_cmd($cmapp, 'timing', 5, "host=127.0.0.1 port=$port{s1} dbname=postgres");
	like($out, qr/^timing n=5 /m, 'five connections in one process to a postmaster');
	usleep(300_000);
	my $new = substr(slurp_file($log), $before);
	my $received = () = $new =~ /connection received: host=127\.0\.0\.1/g;
	is($received, 6, 'the postmaster saw one probe and five real connections')
	  or diag($new);
	unlike($new, qr/incomplete startup packet|could not accept|FATAL|ERROR/,
		'the probe made the postmaster log no error');
	$node{s1}->append_conf('postgresql.conf', "log_connections = off\n");
	$node{s1}->reload;
}

# --- host lists mixing conmgrs and postmasters, tried in order ---
{
	my ($out, $err) = run_cmd($cmapp, 'connect',
		"host=localhost,localhost port=$cm2port,$cm1port dbname=postgres target_session_attrs=standby");
	my ($where) = landed($out);
	like($where, qr/^s[12]$/, 'cm2 has no standby, cm1 is asked next') or diag("$out$err");

	($out, $err) = run_cmd($cmapp, 'connect',
		"host=127.0.0.1,localhost port=$port{s1},$cm1port dbname=postgres target_session_attrs=read-write");
	($where, undef, my $cmsock) = landed($out);
	is("$where $cmsock", 'p yes', 'a standby postmaster first, not read-write; then conmgr gives the primary')
	  or diag("$out$err");

	($out, $err) = run_cmd($cmapp, 'connect',
		"host=127.0.0.1,localhost port=$port{p},$cm1port dbname=postgres target_session_attrs=read-write");
	($where, undef, $cmsock) = landed($out);
	is("$where $cmsock", 'p no', 'the primary postmaster first: connected directly');

	# prefer-*: a strict pass over the whole list, then a lenient one
	($out, $err) = run_cmd($cmapp, 'async',
		"host=127.0.0.1,127.0.0.1 port=$port{s1},$port{p} dbname=postgres target_session_attrs=prefer-primary");
	($where) = landed($out);
	is($where, 'p', 'prefer-primary over standby,primary servers: the primary') or diag("$out$err");

	($out, $err) = run_cmd($cmapp, 'connect',
		"host=127.0.0.1,localhost port=$port{p},$cm1port dbname=postgres target_session_attrs=prefer-standby");
	($where, undef, $cmsock) = landed($out);
	like("$where $cmsock", qr/^s[12] yes$/, 'prefer-standby over primary server, conmgr: a standby through conmgr')
	  or diag("$out$err");

	($out, $err) = run_cmd($cmapp, 'connect',
		"host=localhost,127.0.0.1 port=$cm2port,$port{p} dbname=postgres target_session_attrs=prefer-standby");
	($where) = landed($out);
	is($where, 'p', 'prefer-standby with no standby anywhere: the primary, in the second pass') or diag("$out$err");

	($out, $err) = run_cmd($cmapp, 'connect', cm_conninfo($cm2, 'standby'));
	like($out, qr/^failed message=.*conmgr knows no instance that is up with target_session_attrs=standby/m,
		'no match anywhere: the error says so') or diag("$out$err");
}

# A listening TCP socket on 127.0.0.1, any port: the scripted peers below.
sub loopback_listener
{
	my $srv = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
		Listen => 5, Proto => 'tcp', ReuseAddr => 1) or die "listen: $!";
	return $srv;
}

# What a conmgr answers a probe with, and a candidate list naming one
# instance, as the library reads them.
sub conmgr_greeting
{
	my $msg = "SFATAL\0C08004\0Mthis is conmgr\0\0";
	return 'E' . pack('N', 4 + length $msg) . $msg . pack('aCnNnn', 'H', 0, 12, 0x434D4752, 1, 1);
}

sub conmgr_candidate
{
	my ($host, $port) = @_;
	return pack('aCnnnCCn', 'C', 0, 4 + 8 + length($host), 0, $port, 1, 1, length $host) . $host
	  . pack('aCnn', 'Z', 0, 6, 1);
}

# --- a broken or hostile "conmgr": clean errors, no crash, no hang ---
# A fake server answers the probe with canned bytes; the library must fail
# that destination with a message and go on.
sub fake_conmgr
{
	my ($reply) = @_;
	my $srv = loopback_listener();
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		# _exit: the child must not run the clusters' END blocks
		my $c = $srv->accept or POSIX::_exit(0);
		sysread($c, my $probe, 8);
		syswrite($c, $reply);
		sysread($c, my $rest, 1024);	# RESOLVE, if it comes
		POSIX::_exit(0);
	}
	my $port = $srv->sockport;
	close $srv;
	return ($port, $pid);
}

{
	# An ErrorResponse as conmgr sends it, then frames.
	my $msg = "SFATAL\0C08004\0Mthis is conmgr\0\0";
	my $err = 'E' . pack('N', 4 + length $msg) . $msg;
	my $hello = pack('aCnNnn', 'H', 0, 12, 0x434D4752, 1, 1);
	my %cases = (
		'garbage instead of an answer' => [ 'XYZ', qr/neither PostgreSQL nor conmgr/ ],
		'a frame with a wrong length' => [ $err . $hello . pack('aCn', 'C', 0, 3), qr/invalid message from conmgr/ ],
		'an unknown frame type' => [ $err . $hello . pack('aCn', '?', 0, 4), qr/invalid message from conmgr/ ],
		'a bad greeting' => [ $err . pack('aCnNnn', 'H', 0, 12, 0x12345678, 1, 1), qr/conmgr sent an invalid greeting/ ],
		'an error from conmgr' => [ $err . $hello . pack('aCnnn', 'X', 0, 4 + 2 + 2 + 4, 6, 4) . 'oops', qr/conmgr: oops/ ],
		'a hang-up after RESOLVE' => [ $err . $hello, qr/conmgr closed the connection unexpectedly/ ]);
	for my $name (sort keys %cases)
	{
		my ($reply, $re) = @{ $cases{$name} };
		my ($fport, $pid) = fake_conmgr($reply);
		my $t0 = time();
		my ($out, $err2) = run_cmd($cmapp, 'connect',
			"host=127.0.0.1,localhost port=$fport,$cm1port dbname=postgres target_session_attrs=read-write connect_timeout=5");
		waitpid($pid, 0);
		my ($where) = landed($out);
		is($where, 'p', "$name: that destination fails, the next one (cm1) is used") or diag("$out$err2");
		ok(time() - $t0 < 4, "$name: no hang");
		($fport, $pid) = fake_conmgr($reply);
		($out, $err2) = run_cmd($cmapp, 'connect', "host=127.0.0.1 port=$fport dbname=postgres connect_timeout=5");
		waitpid($pid, 0);
		like($out, $re, "$name: the error says what went wrong") or diag("$out$err2");
	}
}

# --- a conmgr met before gets its RESOLVE with the probe (one round trip less) ---
# A scripted conmgr serves two connections of one process: it answers the
# probe and RESOLVE with the primary as the one candidate, and notes how
# many bytes were waiting in its first read.  The first connection must
# send the probe alone (the destination is unknown: a postmaster would log
# a RESOLVE as a bad startup packet), the second the probe and RESOLVE.
{
	my $greeting = conmgr_greeting();
	my $answer = conmgr_candidate('127.0.0.1', $port{p});
	my $srv = loopback_listener();
	my $log = PostgreSQL::Test::Utils::tempdir() . "/pipelined.txt";
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		open my $f, '>', $log or POSIX::_exit(1);
		$f->autoflush(1);
		for my $k (1 .. 2)
		{
			my $c = $srv->accept or POSIX::_exit(1);
			usleep(100_000);    # whatever the client sends at once is here now
			my $first = '';
			sysread($c, $first, 1024);
			syswrite($c, $greeting);
			my $in = $first;
			while (length($in) <= 8 + 4)    # the probe and a RESOLVE frame's header, at least
			{
				sysread($c, my $more, 1024) or last;
				$in .= $more;
			}
			syswrite($c, $answer);
			print $f length($first), ' ', length($in), "\n";
			1 while sysread($c, my $rest, 1024);    # ATTACHED, then the hang-up
		}
		POSIX::_exit(0);
	}
	my $fport = $srv->sockport;
	close $srv;
	my ($out, $err) = run_cmd($cmapp, 'timing', 2, "host=127.0.0.1 port=$fport dbname=postgres target_session_attrs=read-write");
	waitpid($pid, 0);
	like($out, qr/^timing n=2 /m, 'two connections through the scripted conmgr, in one process') or diag("$out$err");
	my @seen = -e $log ? split /\n/, PostgreSQL::Test::Utils::slurp_file($log) : ();
	my ($first1, $all1) = split ' ', $seen[0] // '0 0';
	my ($first2, $all2) = split ' ', $seen[1] // '0 0';
	ok($first1 == 8 && $all1 > 8, "first connection: the probe alone (8 bytes), RESOLVE after the greeting ($all1 in all)")
	  or diag("@seen");
	ok($first2 > 8 && $first2 == $all2 && $all2 == $all1,
		"second connection: the probe and RESOLVE at once ($first2 bytes)") or diag("@seen");
}

# --- connect_timeout covers the conmgr phase: a port that accepts but never answers ---
{
	my $mute = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
		Listen => 5, Proto => 'tcp') or die "listen: $!";
	my $t0 = time();
	my ($out) = run_cmd($cmapp, 'connect',
		"host=127.0.0.1 port=@{[ $mute->sockport ]} dbname=postgres connect_timeout=2");
	my $took = time() - $t0;
	like($out, qr/^failed message=.*timeout expired/m, 'a silent destination: "timeout expired"');
	ok($took >= 1.9 && $took < 4, sprintf('after connect_timeout (%.2f s)', $took));
	close $mute;
}

# --- unmodified programs: psql and pgbench with LD_PRELOAD, psycopg with the drop-in ---
# pg_isready: libpq's PQpingParams() opens its connection through the PLT
# (our PQconnectStartParams) and reads it as a real PGconn.
for my $dest ("-p $port{p}", "-p $cm1port")
{
	my ($out, $err) = run_cmd(foreign_env(LD_PRELOAD => $preload), 'pg_isready', '-h', '127.0.0.1',
		split(/ /, $dest));
	like($out, qr/accepting connections/, "pg_isready (LD_PRELOAD) $dest: accepting connections")
	  or diag("$out$err");
}
for my $target (qw(read-write read-only))
{
	my ($out, $err) = run_cmd(foreign_env(LD_PRELOAD => $preload), 'psql', '-X', '-At',
		'-d', cm_conninfo($cm1, $target), '-c', '\conninfo', '-c', 'SELECT pg_is_in_recovery()');
	my ($p) = $out =~ /at port "(\d+)"/;
	my $where = $name_of{ $p // 0 } // 'none';
	like($where, $expect{$target}, "psql (LD_PRELOAD) $target: \\conninfo names $where") or diag("$out$err");
	like($out, ($target eq 'read-write' ? qr/^f$/m : qr/^t$/m), "psql $target: pg_is_in_recovery() agrees");
}
{
	$primary->command_ok([ 'pgbench', '-i', '-s', '1', '-q', '-h', '127.0.0.1', '-p', $port{p}, 'postgres' ],
		'pgbench -i on the primary');
	$primary->wait_for_catchup($node{s1});
	$primary->wait_for_catchup($node{s2});
	my ($out, $err) = run_cmd(foreign_env(LD_PRELOAD => $preload), 'pgbench', '-n', '-C', '-S', '-T', '2',
		cm_conninfo($cm1, 'read-only'));
	my ($n) = $out =~ /number of transactions actually processed: (\d+)/;
	ok(($n // 0) > 0, "pgbench -C -S through conmgr (LD_PRELOAD): $n transactions, each a new connection")
	  or diag("$out$err");
	unlike($out, qr/number of failed transactions: [1-9]/, 'pgbench: no failed transaction');
}
for my $target (qw(read-write standby))
{
	my ($out, $err) = run_cmd(foreign_env(LD_PRELOAD => $preload), "$top/build/regress/tools/ecpgapp",
		"tcp:postgresql://localhost:$cm1port/postgres?target_session_attrs=$target");
	my ($p, $r) = $out =~ /^ecpg port=(\d+) recovery=(\w)/m;
	my $where = $name_of{ $p // 0 } // 'none';
	like($where, $expect{$target}, "ECPG program (LD_PRELOAD) $target: lands on $where") or diag("$out$err");
}
{
	# tools/install-deps installs python3-psycopg for make check
	my $py = q{
import sys, psycopg
c = psycopg.connect(sys.argv[1])
r = c.execute("SELECT pg_is_in_recovery()").fetchone()[0]
print("psycopg host=%s port=%s recovery=%s" % (c.info.host, c.info.port, r))
};
	my ($out, $err) = run_cmd(foreign_env(LD_LIBRARY_PATH => $dropin), 'python3', '-c', $py,
		cm_conninfo($cm1, 'read-write'));
	like($out, qr/^psycopg host=127\.0\.0\.1 port=$port{p} recovery=False$/m,
		'psycopg (drop-in libpq.so.5): read-write reaches the primary, conn.info names it')
	  or diag("$out$err");
	($out, $err) = run_cmd(foreign_env(LD_LIBRARY_PATH => $dropin), 'python3', '-c', $py,
		cm_conninfo($cm1, 'standby'));
	like($out, qr/^psycopg host=127\.0\.0\.1 port=($port{s1}|$port{s2}) recovery=True$/m,
		'psycopg: standby reaches a standby') or diag("$out$err");
	my ($ldd) = run_cmd(foreign_env(LD_LIBRARY_PATH => $dropin), 'python3', '-c',
		'import psycopg, ctypes; psycopg.pq.version(); print(open("/proc/self/maps").read())');
	like($ldd, qr{\Q$dropin\E/libpq\.so\.5}, 'psycopg loaded the drop-in libpq.so.5');
}

# --- the price of the detour: connect + SELECT 1 + disconnect, conmgr vs direct ---
{
	my ($out) = run_cmd($cmapp, 'timing', 200, cm_conninfo($cm1, 'read-write'),
		"host=127.0.0.1 port=$port{p} dbname=postgres");
	my ($cm, $cm99) = $out =~ /^timing n=200 median_us=(\d+) p99_us=(\d+)/m;
	my ($dir, $dir99) = $out =~ /^timing2 n=200 median_us=(\d+) p99_us=(\d+)/m;
	ok($cm && $dir, '2 x 200 timed connections, alternating conmgr and direct') or diag($out);
	note(sprintf('connect + SELECT 1 + disconnect over 200 each: through conmgr median %d us (p99 %d), '
		  . 'direct %d us (p99 %d), ratio %.3f', $cm, $cm99, $dir, $dir99, $dir ? $cm / $dir : 0));
}

# --- a lost instance: blocked applications get libpq's connection-lost error ---
# An instance is "lost" by stopping all its processes (SIGSTOP): its
# heartbeat falls silent, exactly as behind a dead link, while its sockets
# stay open, so nothing but conmgr's down-notice can end the query.
sub instance_pids
{
	my ($n) = @_;
	my $pm = $n->{_pid};
	return ($pm, split /\s+/, `pgrep -P $pm`);
}

sub queries_running
{
	my ($like) = @_;
	my $n = 0;
	for my $s (qw(s1 s2))
	{
		$n += $node{$s}->safe_psql('postgres',
			"SELECT count(*) FROM pg_stat_activity WHERE query LIKE '$like' AND pid <> pg_backend_pid()");
	}
	return $n;
}

{
	my $blocked = cmapp_start('block', cm_conninfo($cm1, 'standby'), 'SELECT pg_sleep(60)');
	my $async = cmapp_start('pollcm', cm_conninfo($cm1, 'standby'), 'SELECT pg_sleep(60)');
	my ($psql_out, $bench_out) = ('', '');
	my $psql = IPC::Run::start([ foreign_env(LD_PRELOAD => $preload), 'psql', '-X', '-d',
		cm_conninfo($cm1, 'standby'), '-c', 'SELECT pg_sleep(60)' ],
		'<', \undef, '>&', \$psql_out);
	my $script = PostgreSQL::Test::Utils::tempdir() . '/sleep.sql';
	PostgreSQL::Test::Utils::append_to_file($script, "SELECT pg_sleep(0.2);\n");
	my $bench = IPC::Run::start([ foreign_env(LD_PRELOAD => $preload), 'pgbench', '-n', '-c', '2',
		'-T', '60', '-f', $script, cm_conninfo($cm1, 'standby') ], '<', \undef, '>&', \$bench_out);
	ok(cmapp_wait($blocked, qr/^running/m), 'a blocking PQexec is running on a standby');
	ok(cmapp_wait($async, qr/^running/m), 'an async query watching PQcmSocket() is running');
	ok(wait_until(sub { queries_running('SELECT pg_sleep(60)') == 3
		  && queries_running('SELECT pg_sleep(0.2)%') == 2 }, 30),
		'psql and pgbench (LD_PRELOAD) are waiting on standbys too');
	# Stop both standbys: every application above is on one of them.
	my @pids = map { instance_pids($node{$_}) } qw(s1 s2);
	my $t0 = time();
	kill 'STOP', @pids;
	my ($t_psql, $t_bench);
	my $ok1 = cmapp_wait($blocked, qr/^result /m, $hb_timeout + 5);
	my $t1 = time() - $t0;
	my $ok2 = cmapp_wait($async, qr/^result .*connstatus=BAD/m, 5);
	my $t2 = time() - $t0;
	my $deadline = time() + 5;
	while ((!defined $t_psql || !defined $t_bench) && time() < $deadline)
	{
		$t_psql //= time() - $t0 unless $psql->pumpable;
		$t_bench //= time() - $t0 unless $bench->pumpable;
		$_->pump_nb for grep { $_->pumpable } ($psql, $bench);
		usleep(10_000);
	}
	kill 'CONT', @pids;
	ok($ok1, 'the blocked PQexec returned') or diag(${ $blocked->{out} });
	like(${ $blocked->{out} }, qr/^result status=PGRES_FATAL_ERROR sqlstate=none connstatus=BAD .*server closed the connection unexpectedly/m,
		"with libpq's ordinary connection-lost error");
	ok($t1 <= $hb_timeout + 0.5,
		sprintf('within heartbeat_timeout + 0.5 s: %.3f s after the instance stopped (timeout %d s)', $t1, $hb_timeout));
	note(sprintf('blocked PQexec failed %.3f s after the instances stopped (heartbeat_timeout %d s)', $t1, $hb_timeout));
	ok($ok2, 'the async application saw conmgr\'s socket readable and then CONNECTION_BAD')
	  or diag(${ $async->{out} });
	like(${ $async->{out} }, qr/^cmsocket readable after/m, 'PQcmSocket() turned readable');
	note(sprintf('async application saw the loss %.3f s after the instances stopped', $t2));
	ok(defined $t_psql && $t_psql <= $hb_timeout + 0.5,
		sprintf('psql ended within heartbeat_timeout + 0.5 s (%.3f s)', $t_psql // -1));
	$psql->finish;
	like($psql_out, qr/server closed the connection unexpectedly/, 'psql: the connection-lost error')
	  or diag($psql_out);
	ok(defined $t_bench && $t_bench <= $hb_timeout + 0.5,
		sprintf('pgbench (waiting in select) ended within heartbeat_timeout + 0.5 s (%.3f s)', $t_bench // -1));
	$bench->finish;
	like($bench_out, qr/aborted|server closed the connection/, 'pgbench: its clients aborted on the lost connection')
	  or diag($bench_out);
	$_->{h}->finish for ($blocked, $async);
	ok(wait_until(sub { routable($cm1, 'standby') == 2 }, 30), 'the standbys are routable again');
}

# --- the watcher acts only on the connection's own socket ---
# libpq closes its socket when the server hangs up; the number may then be
# the application's next socket.  Each application's backend is ended
# (pg_terminate_backend), libpq reads the hang-up and closes its socket,
# and the application opens an unrelated loopback connection on the number
# libpq's socket had; then conmgr reports the connection lost, by the
# listener's restart (end of file on conmgr's socket) or by declaring the
# instance down (its processes stopped).  The unrelated connection must
# still carry data both ways, both when the watcher thread acts alone and
# when the application polls PQcmSocket() and calls PQconsumeInput().  The
# watcher's duplicate of the SQL socket must not keep it open once the
# server hung up.

# The TCP sockets process $pid holds towards port $port (ss), each as its
# state and how many descriptors of the process refer to it: "ESTAB/2".
sub app_sockets
{
	my ($pid, $port) = @_;
	my ($out) = run_cmd('ss', '-Htanp', 'dport', '=', ":$port");
	return map { /^(\S+)/ ? "$1/" . (() = /\bpid=$pid,/g) : () } grep { /\bpid=$pid,/ } split /\n/, $out;
}

sub say_go
{
	my ($app) = @_;
	${ $app->{in} } .= "go\n";
	$app->{h}->pump_nb;
}

sub listener_pid
{
	return $cm1->role_pid("listener :$cm1port");
}

for my $event ('the listener restarts', 'the instance is declared down')
{
	my %app;
	for my $how (qw(watch poll))
	{
		my ($in, $out) = ('', '');
		my $h = IPC::Run::start([ $cmapp, 'reuse', cm_conninfo($cm1, 'standby'), $how ],
			'<', \$in, '>', \$out, '2>&1');
		$app{$how} = { h => $h, in => \$in, out => \$out };
	}
	for my $how (sort keys %app)
	{
		my $ap = $app{$how};
		ok(cmapp_wait($ap, qr/^backend pid=\d+ sqlfd=\d+ app=\d+$/m), "$event, $how: connected to a standby")
		  or diag(${ $ap->{out} });
		my ($where) = landed(${ $ap->{out} });
		my ($bpid, $sqlfd, $apid) = ${ $ap->{out} } =~ /^backend pid=(\d+) sqlfd=(\d+) app=(\d+)$/m;
		$ap->{pid} = $apid // 0;
		$ap->{sqlfd} = $sqlfd // -1;
		$ap->{port} = $port{$where} // 0;
		is(join(',', app_sockets($ap->{pid}, $ap->{port})), 'ESTAB/2',
			"$event, $how: the SQL socket is libpq's descriptor and the watcher's duplicate");
		$node{$where}->safe_psql('postgres', "SELECT pg_terminate_backend($bpid, 10000)") if $node{$where};
		ok(wait_until(sub { join(',', app_sockets($ap->{pid}, $ap->{port})) eq 'CLOSE-WAIT/1' }, 5),
			"$event, $how: the server hung up; the watcher closed its duplicate, libpq's descriptor remains")
		  or diag(join(',', app_sockets($ap->{pid}, $ap->{port})));
		say_go($ap);
		ok(cmapp_wait($ap, qr/^reused fd=/m), "$event, $how: libpq saw the hang-up, an unrelated socket was opened")
		  or diag(${ $ap->{out} });
		like(${ $ap->{out} }, qr/^closed connstatus=BAD sqlfd=-1$/m, "$event, $how: libpq closed its socket");
		like(${ $ap->{out} }, qr/^reused fd=$ap->{sqlfd}$/m,
			"$event, $how: the unrelated socket has the number libpq's socket had ($ap->{sqlfd})");
		is(join(',', app_sockets($ap->{pid}, $ap->{port})), '', "$event, $how: no socket left towards the standby");
	}
	my @stopped;
	if ($event =~ /listener/)
	{
		my $old = listener_pid();
		kill 'KILL', $old;
		ok(wait_until(sub { my $new = listener_pid(); $new && $new != $old && routable($cm1, 'any') == 3 }, 30),
			"$event: the supervisor started a new listener");
	}
	else
	{
		@stopped = map { instance_pids($node{$_}) } qw(s1 s2);
		kill 'STOP', @stopped;
		ok(wait_until(sub { routable($cm1, 'standby') == 0 }, $hb_timeout + 10),
			"$event: conmgr declared both standbys down");
	}
	usleep(500_000);	# the watcher acts in microseconds: time for a wrong shutdown
	for my $how (sort keys %app)
	{
		my $ap = $app{$how};
		say_go($ap);
		ok(cmapp_wait($ap, qr/^unrelated /m, 40), "$event, $how: the unrelated connection was used")
		  or diag(${ $ap->{out} });
		like(${ $ap->{out} }, qr/^cmsocket readable$/m, "$event, poll: PQcmSocket() turned readable")
		  if $how eq 'poll';
		like(${ $ap->{out} }, qr/^unrelated ok$/m, "$event, $how: the unrelated connection still works both ways")
		  or diag(${ $ap->{out} });
		say_go($ap);
		$ap->{h}->finish;
	}
	kill 'CONT', @stopped if @stopped;
	ok(wait_until(sub { routable($cm1, 'standby') == 2 }, 30), "$event: the standbys are routable again");
}

# --- libpq closes its socket with the server still there: the duplicate goes too ---
# A scripted conmgr names a scripted server, which completes the startup
# and answers the first query with a message whose length is impossible:
# libpq gives up on the connection (lost synchronisation) and closes its
# socket, while conmgr's socket stays open.  The server must see the
# connection end (end of file) at once, not when the application exits.
{
	my $host = '127.0.0.1';
	my $greeting = conmgr_greeting();
	my $cm = loopback_listener();
	my $pg = loopback_listener();
	my $answer = conmgr_candidate($host, $pg->sockport);
	my $verdict = PostgreSQL::Test::Utils::tempdir() . "/eof.txt";
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		my $c = $cm->accept or POSIX::_exit(1);
		sysread($c, my $probe, 8);
		syswrite($c, $greeting);
		my $in = '';
		while (length($in) <= 4)    # a RESOLVE frame's header, at least
		{
			sysread($c, my $more, 1024) or POSIX::_exit(1);
			$in .= $more;
		}
		syswrite($c, $answer);
		my $s = $pg->accept or POSIX::_exit(1);
		for (;;)
		{
			sysread($s, my $len, 4) == 4 or POSIX::_exit(1);
			sysread($s, my $body, unpack('N', $len) - 4);
			last unless length($body) == 4 && unpack('N', $body) =~ /^8087710[34]$/;
			syswrite($s, 'N');    # no SSL, no GSS encryption
		}
		syswrite($s, 'R' . pack('NN', 8, 0) . 'K' . pack('NNN', 12, 4242, 1) . 'Z' . pack('N', 5) . 'I');
		sysread($s, my $query, 1024);    # the first query
		syswrite($s, 'Z' . pack('N', 2));
		my $t0 = time();
		my $rin = '';
		vec($rin, fileno($s), 1) = 1;
		my $eof = select(my $rout = $rin, undef, undef, 5) > 0 && !sysread($s, my $x, 1);
		open my $f, '>', "$verdict.tmp" or POSIX::_exit(1);
		print $f $eof ? sprintf("eof %.3f\n", time() - $t0) : "no eof\n";
		close $f;
		rename "$verdict.tmp", $verdict;
		1 while sysread($c, my $rest, 1024);    # conmgr's socket: open until the application ends
		POSIX::_exit(0);
	}
	my $cmport = $cm->sockport;
	close $cm;
	close $pg;
	my $app = cmapp_start('block-hold',
		"host=$host port=$cmport dbname=postgres sslmode=disable gssencmode=disable connect_timeout=5",
		'SELECT 1');
	ok(cmapp_wait($app, qr/^result /m, 10), 'the scripted server broke the protocol under the application')
	  or diag(${ $app->{out} });
	like(${ $app->{out} }, qr/^connected .*cmsocket=yes recovery=\?$/m, 'connected through the scripted conmgr, the query failed');
	ok(wait_until(sub { -e $verdict }, 10), 'the scripted server waited for the end of the connection');
	my $seen = -e $verdict ? PostgreSQL::Test::Utils::slurp_file($verdict) : '';
	chomp $seen;
	ok($seen =~ /^eof (\S+)$/ && $1 < 1,
		"libpq closed its socket and the server saw the connection end ($seen)");
	$app->{h}->signal('TERM');
	$app->{h}->finish;
	kill 'KILL', $pid;    # it waits in accept() if the application never came
	waitpid($pid, 0);
}

# --- PQfinish: the server sees the session end, nothing is left open ---
{
	my ($in, $out) = ('', '');
	my $h = IPC::Run::start([ $cmapp, 'finish', cm_conninfo($cm1, 'standby') ], '<', \$in, '>', \$out, '2>&1');
	my $ap = { h => $h, in => \$in, out => \$out };
	ok(cmapp_wait($ap, qr/^backend pid=\d+ /m), 'a connection to a standby, to be finished') or diag($out);
	my ($where) = landed($out);
	my ($bpid, $apid) = $out =~ /^backend pid=(\d+) sqlfd=\d+ app=(\d+)$/m;
	my $backend_gone = sub {
		$node{$where}->safe_psql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE pid = $bpid") == 0;
	};
	ok(!$backend_gone->(), 'its backend is in pg_stat_activity');
	my $t0 = time();
	say_go($ap);
	ok(cmapp_wait($ap, qr/^finished$/m), 'PQfinish() returned');
	ok(wait_until($backend_gone, 5), sprintf('the backend ended %.3f s after PQfinish()', time() - $t0));
	is(join(',', app_sockets($apid, $port{$where})), '', 'the application holds no socket towards the standby');
	is(join(',', app_sockets($apid, $cm1port)), '', 'nor towards conmgr');
	say_go($ap);
	$h->finish;
}

# --- PQreset after a failover lands on the new primary ---
{
	my $app = IPC::Run::start([ $cmapp, 'reset', cm_conninfo($cm1, 'read-write') ],
		'<', \my $in, '>', \my $out, '2>&1');
	$in = '';
	my $w = { h => $app, out => \$out };
	ok(cmapp_wait($w, qr/^connected .*port=$port{p} /m), 'a read-write connection on the primary');
	$primary->stop('immediate');
	$node{s1}->promote;
	ok(wait_until(sub { routable($cm1, 'read-write') == 1 }, 30), 'conmgr sees the promoted standby');
	$in .= "go\n";
	ok(cmapp_wait($w, qr/^reset\nconnected .*port=$port{s1} .*recovery=f\nbackend pid=\d+ sqlfd=\d+ app=\d+$/m, 30),
		'PQreset() went through conmgr again and reached the new primary') or diag($out);
	my ($apid) = $out =~ /^backend pid=\d+ sqlfd=\d+ app=(\d+)$/m;
	is(join(',', app_sockets($apid // 0, $port{s1})), 'ESTAB/2',
		'the watcher holds a duplicate of the new SQL socket, not of the old one');
	$in .= "go\n";
	$app->finish;
}

# --- a killed conmgr: a blocked query fails at once ---
{
	my $blocked = cmapp_start('block', cm_conninfo($cm1, 'read-write'), 'SELECT pg_sleep(60)');
	ok(cmapp_wait($blocked, qr/^running/m), 'a blocking PQexec runs on the new primary');
	usleep(200_000);
	my $t0 = time();
	$cm1->signal('KILL');
	my $ok = cmapp_wait($blocked, qr/^result /m, 10);
	my $t = time() - $t0;
	ok($ok && ${ $blocked->{out} } =~ /connstatus=BAD/, 'conmgr killed: the query failed, connection bad')
	  or diag(${ $blocked->{out} });
	ok($t < 0.5, sprintf('at once: %.3f s after kill -9 of conmgr', $t));
	$blocked->{h}->finish;
}

$cm2->stop('smart');
$cm1->wait_exit(10);
done_testing();
