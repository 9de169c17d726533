# JDBC through conmgr: contrib/jdbc's org.conmgr.jdbc.Driver (built with
# javac against Debian's pgJDBC) speaks conmgr's protocol itself, then
# connects with pgJDBC.  Every targetServerType spelling lands where asked;
# preferPrimary is refused with a clear SQLException; conmgr balances
# whatever loadBalanceHosts says; jdbc:postgresql:// URLs that name conmgr
# work through DriverManager whichever driver it asks first; host lists mix
# postmasters and conmgr; a statement blocked on a lost instance fails
# within heartbeat_timeout + 0.5 s (the connection is aborted), and at
# once when conmgr's listener or conmgr itself is killed; in a
# configuration fault (here: instances of two databases in one
# conmgr.conf) a primary is refused with SQLState 08001 and a message
# naming both instances.  Skipped with a clear line when no JDK is
# installed.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib", "$FindBin::RealBin/../../contrib/testlib";
use CmDriverLab;
use CmTest::Conmgr;
use CmTest qw(time_wait_ports new_time_wait watchdog_node wait_until);
use PostgreSQL::Test::Cluster;
use Test::More;
use Time::HiRes ();
use IO::Select;
use IO::Socket::INET;
use IPC::Run ();
use PostgreSQL::Test::Utils ();

my $pgjdbc = $ENV{PGJDBC} // '/usr/share/java/postgresql.jar';
my (undef, undef, $nojdk) = eval { run_cmd('javac', '-version') };
plan skip_all => 'skipped: no JDK (javac not found; Debian package openjdk-17-jdk-headless)'
  if !defined $nojdk || $nojdk;
plan skip_all => "skipped: no pgJDBC ($pgjdbc; Debian package libpostgresql-jdbc-java)" unless -r $pgjdbc;

my $lab = lab_start();
my $o = build_contrib('jdbc', "PGJDBC=$pgjdbc");
my $cp = "$o/conmgr-jdbc.jar:$pgjdbc:$o/test";
my $hb = $lab->{hb_timeout};
my $cm = "localhost:$lab->{cmport}";

sub url
{
	my ($hosts, $params) = @_;
	return "jdbc:conmgr://$hosts/postgres" . ($params ? "?$params" : '');
}

# Run CmJdbcCheck connect over @urls in one JVM; returns url => line.
sub connect_all
{
	my ($classpath, @urls) = @_;
	my ($out, $err) = run_cmd('java', '-cp', $classpath, 'CmJdbcCheck', 'connect', @urls);
	my %line = map { /^url=(\S+) (.*)$/ ? ($1 => $2) : () } split /\n/, $out;
	diag($err) if $err;
	return %line;
}

my %expect = (
	any => qr/^[ps]$/, primary => 'p', master => 'p',
	secondary => 's', slave => 's', standby => 's', preferSecondary => 's', preferSlave => 's');
my @tst = sort keys %expect;
my $dead = PostgreSQL::Test::Cluster::get_free_port();
my %u = (
	(map { ("tst $_" => url($cm, "targetServerType=$_")) } @tst),
	preferPrimary => url($cm, 'targetServerType=preferPrimary'),
	bogus => url($cm, 'targetServerType=readWrite'),
	pgurl => "jdbc:postgresql://$cm/postgres?targetServerType=primary",
	direct => url("127.0.0.1:$lab->{port}{p}"),
	mixed => url("127.0.0.1:$lab->{port}{s},$cm", 'targetServerType=primary'),
	deadfirst => url("localhost:$dead,$cm", 'targetServerType=standby'),
	lb => url($cm, 'targetServerType=any&loadBalanceHosts=false'));
my %line = connect_all($cp, values %u, ($u{lb}) x 3);

sub landed
{
	my ($key) = @_;
	my $l = $line{ $u{$key} } // 'no output';
	my ($port) = $l =~ /^port=(\d+)/;
	my ($rec) = $l =~ / recovery=(\w)/;
	my ($via) = $l =~ / cm=(\w+)/;
	return ($lab->name_of($port), $rec // '', $via // '', $l);
}

for my $t (@tst)
{
	my ($where, $rec, $via, $l) = landed("tst $t");
	my $want = $expect{$t};
	(ref $want ? like($where, $want, "targetServerType=$t: lands on $where")
	  : is($where, $want, "targetServerType=$t: lands on $where")) or diag($l);
	is("$rec $via", ($where eq 'p' ? 'f' : 't') . ' yes', "$t: pg_is_in_recovery() agrees, a ConmgrConnection");
	unlike($l, qr/MISMATCH/, "$t: ConmgrConnection names the instance reached");
}
like((landed('preferPrimary'))[3], qr/^error sqlstate=0A000 message=conmgr: targetServerType=preferPrimary cannot be used through conmgr/,
	'preferPrimary: refused with a clear SQLException (SQLState 0A000)');
like((landed('bogus'))[3], qr/^error sqlstate=08001 message=.*invalid targetServerType "readWrite"/,
	'an unknown targetServerType: refused');
is(join(' ', (landed('pgurl'))[0, 2]), 'p yes',
	'jdbc:postgresql:// naming conmgr, through DriverManager: conmgr is asked');
is(join(' ', (landed('direct'))[0, 2]), 'p no', 'a postmaster in the URL: pgJDBC connects to it directly');
is(join(' ', (landed('mixed'))[0, 2]), 'p yes',
	'a standby postmaster (not primary for pgJDBC), then conmgr: conmgr gives the primary');
is(join(' ', (landed('deadfirst'))[0, 2]), 's yes', 'a dead host first, then conmgr');

# conmgr's load balancing whatever loadBalanceHosts says: 4 connections, one
# JVM; each ends its session with conmgr with a reset, as libpq-cm does, so
# no socket towards conmgr is left in TIME_WAIT (docs/protocol.md, 2.3).
{
	my $before = time_wait_ports($lab->{cmport});
	my ($out) = run_cmd('java', '-cp', $cp, 'CmJdbcCheck', 'connect', ($u{lb}) x 4);
	my %seen = map { $lab->name_of($_) => 1 } $out =~ /^url=\S+ port=(\d+)/mg;
	is_deeply([ sort keys %seen ], [qw(p s)], 'loadBalanceHosts=false: conmgr still spreads any over both instances')
	  or diag($out);
	is(new_time_wait($lab->{cmport}, $before), 0, 'the driver left no socket in TIME_WAIT towards conmgr');
}

# pgJDBC registered (and so asked) first: it fails on conmgr, DriverManager asks us next.
{
	my $pgu = "jdbc:postgresql://$cm/postgres?targetServerType=standby";
	my %l = connect_all("$pgjdbc:$o/conmgr-jdbc.jar:$o/test", $pgu);
	like($l{$pgu} // '', qr/^port=$lab->{port}{s} recovery=t cm=yes/,
		'pgJDBC first on the class path: jdbc:postgresql:// still reaches the standby through conmgr');
}

# A lost standby under a blocked statement.
{
	my $bg = bg_start('java', '-cp', $cp, 'CmJdbcCheck', 'block',
		url($cm, 'targetServerType=standby'), 'SELECT pg_sleep(60)');
	ok(bg_wait($bg, qr/^running/m), 'a statement blocks on the standby') or diag(bg_out($bg));
	ok($lab->wait_query('s', 'SELECT pg_sleep(60)'), 'the standby runs it');
	my ($took) = $lab->lose('s', $hb + 5, [ $bg, qr/^result /m ]);
	my $out = bg_out($bg);
	like($out, qr/^result sqlstate=08006 elapsed=\S+ closed=true lost=instance_1_lost:_heartbeat_(timeout|connection_lost) /m,
		"pgJDBC's connection failure (08006), the connection closed, after conmgr's INSTANCE_DOWN") or diag($out);
	ok(defined $took && $took <= $hb + 0.5,
		sprintf('within heartbeat_timeout + 0.5 s: %.3f s after the standby stopped (timeout %d s)', $took // -1, $hb));
	note(sprintf('JDBC: blocked statement failed %.3f s after the instance stopped', $took // -1));
}

# conmgr's listener killed (-9): the kernel closes the application's socket
# to conmgr, and nothing else happens (the heartbeat roles go on, so no
# terminator): the driver alone fails the statement, at once, and names
# conmgr's end of file.  The supervisor restarts the listener.
{
	my $bg = bg_start('java', '-cp', $cp, 'CmJdbcCheck', 'block',
		url($cm, 'targetServerType=primary'), 'SELECT pg_sleep(60)');
	ok(bg_wait($bg, qr/^running/m), 'a statement blocks on the primary') or diag(bg_out($bg));
	ok($lab->wait_query('p', 'SELECT pg_sleep(60)'), 'the primary runs it');
	my $l_pid = $lab->role_pid('listener');
	ok($l_pid, "ps shows conmgr's listener");
	my $t0 = Time::HiRes::time();
	kill 'KILL', $l_pid if $l_pid;
	my $ok = bg_wait($bg, qr/^result /m, 10);
	my $took = Time::HiRes::time() - $t0;
	like(bg_out($bg), qr/^result sqlstate=08006 \S+ closed=true lost=conmgr_closed_the_connection /m,
		'listener killed: pgJDBC\'s connection failure (08006), the connection closed, end of file on conmgr\'s socket');
	ok($ok && $took < 0.5, sprintf('at once: %.3f s after kill -9 of the listener', $took));
	ok(CmTest::wait_until(sub { $lab->routable('primary') == 1 }, 15),
		'the supervisor restarted the listener: conmgr routes again');
}

# conmgr itself killed: its sockets close, the statement fails at once.
{
	my $bg = bg_start('java', '-cp', $cp, 'CmJdbcCheck', 'block',
		url($cm, 'targetServerType=primary'), 'SELECT pg_sleep(60)');
	ok(bg_wait($bg, qr/^running/m), 'a statement blocks on the primary') or diag(bg_out($bg));
	ok($lab->wait_query('p', 'SELECT pg_sleep(60)'), 'the primary runs it');
	my $t0 = Time::HiRes::time();
	$lab->{cm}->signal('KILL');
	my $ok = bg_wait($bg, qr/^result /m, 10);
	my $took = Time::HiRes::time() - $t0;
	# Whichever comes first: our abort (08006, conmgr's end of file named),
	# or the watchdog's terminator ending the session of a host whose
	# conmgr vanished (57P01).  The roles exit on their own once the
	# supervisor is gone, in no set order: when a heartbeat role goes
	# before the listener, the 57P01 can come before conmgr's socket has
	# closed, and nothing names the loss yet.  The end-of-file path is the
	# listener's test above.
	like(bg_out($bg), qr/^result sqlstate=(?:08006 \S+ closed=true lost=conmgr_closed_the_connection|57P01 \S+ closed=true lost=(?:conmgr_closed_the_connection)?) /m,
		'conmgr killed: the statement failed (08006 naming conmgr\'s end of file, or 57P01)');
	ok($ok && $took < 0.5, sprintf('at once: %.3f s after kill -9 of conmgr', $took));
	$lab->{cm}->wait_exit($PostgreSQL::Test::Utils::timeout_default);
}

# A candidate host that is not what its addr_kind says is refused: the
# driver puts it into pgJDBC's URL, where a host list, a path or
# parameters would take the connection elsewhere or change its options.
# A fake conmgr (regress/tools/fake_conmgr.pl) names each; a trap on the
# candidates' port must see no connection.
{
	my $trap = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 16,
		Proto => 'tcp', ReuseAddr => 1) or die "listen: $!";
	my $tport = $trap->sockport;
	my $fake = CmTest::cm_top() . '/regress/tools/fake_conmgr.pl';
	my $log = PostgreSQL::Test::Utils::tempdir() . '/fake.log';
	my @bad = ([ 0, '127.0.0.1,127.0.0.1' ], [ 0, "127.0.0.1:$tport/postgres?sslmode=disable#" ],
		[ 0, "localhost\n" ], [ 0, ('a' x 64) . '.localhost' ], [ 1, 'localhost' ]);
	my @fakes;
	for my $b (@bad)
	{
		my ($out, $err) = ('', '');
		my $h = IPC::Run::start([ 'perl', $fake, '127.0.0.1', 0, $log, join(',', $b->[0], $tport, unpack('H*', $b->[1])) ],
			'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(120));
		$h->pump until $out =~ /^port (\d+)$/m;
		push @fakes, { h => $h, port => $1, kind => $b->[0], host => $b->[1] };
	}
	my %l = connect_all($cp, map { url("127.0.0.1:$_->{port}") } @fakes);
	for my $f (@fakes)
	{
		(my $shown = $f->{host}) =~ s/\n/\\n/g;
		like($l{ url("127.0.0.1:$f->{port}") } // 'no output',
			qr/^error sqlstate=08001 message=.*conmgr named an invalid candidate host "[^"]*" for instance 0: not a/,
			"candidate \"$shown\" (addr_kind $f->{kind}): refused");
		$f->{h}->kill_kill;
	}
	is(scalar(() = IO::Select->new($trap)->can_read(0)), 0, 'no bad candidate was connected to');
}

# A configuration fault: a second conmgr whose conmgr.conf names the
# primary and an instance of another database (its own initdb).  conmgr
# refuses to pick a primary; the driver reports it as a connection that
# could not be made (08001), with conmgr's message naming both instances.
{
	my ($other, $owd) = watchdog_node('other');
	my $cm2 = CmTest::Conmgr->new('cm2',
		instances => [ [ $lab->{node}{p}, $lab->{wd}{p} ], [ $other, $owd ] ],
		conf => { heartbeat_interval => 1, heartbeat_timeout => 2 });
	my $port2 = $cm2->port;
	$cm2->start(wait => 0);
	ok($cm2->wait_for_log(qr/configuration fault: instances 0 \S+ and 1 \S+ have different database system identifiers/, 0, 30),
		'a conmgr naming instances of two databases logs a configuration fault') or diag($cm2->log_content);
	my %l = connect_all($cp, url("localhost:$port2", 'targetServerType=primary'));
	like($l{ url("localhost:$port2", 'targetServerType=primary') } // 'no output',
		qr/^error sqlstate=08001 message=.*refusing target_session_attrs=primary: instances 0 \(127\.0\.0\.1:$lab->{port}{p}\) and 1 \(127\.0\.0\.1:@{[ $other->port ]}\) belong to different databases/,
		'targetServerType=primary in the fault: SQLState 08001, the message names both instances');
	$cm2->stop('smart');
	$other->stop;
}

done_testing();
