# ODBC through conmgr: Debian's psqlODBC under unixODBC.  The driver named
# is contrib/odbc's cmodbcw.so: psqlODBC with libpq-cm among its
# dependencies (no LD_PRELOAD), answering SQLGetInfo(SQL_SERVER_NAME) with
# the instance reached (manual 3.4.1).  contrib/odbc's program connects
# with SQLDriverConnect (a connection string, and a DSN from an odbc.ini),
# Servername/Port pointing at conmgr and target_session_attrs passed
# through pqopt: every target lands where asked and SQL_SERVER_NAME names
# the instance (ANSI and wide, truncated as ODBC says).  Also: psqlodbcw.so
# itself with LD_PRELOAD=libpq-cm.so.1 (works; SQL_SERVER_NAME is then
# psqlODBC's copy of Servername), a postmaster named directly through
# cmodbcw.so (psqlODBC's answer is kept), conmgr's refusal without
# libpq-cm, and a lost instance under a blocked SQLExecDirect, which fails
# within heartbeat_timeout + 0.5 s.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib", "$FindBin::RealBin/../../contrib/testlib";
use CmDriverLab;
use CmTest;
use PostgreSQL::Test::Utils;
use Test::More;

my ($driver) = glob('/usr/lib/*/odbc/psqlodbcw.so');
plan skip_all => 'skipped: no psqlODBC (Debian package odbc-postgresql)' unless $driver;
plan skip_all => 'skipped: no unixODBC headers (Debian package unixodbc-dev)'
  unless -e '/usr/include/sql.h';

# The driver's defaults come from an odbcinst.ini of the test's own, not
# the machine's: Debian's turns psqlODBC's communication log on (CommLog=1
# in every driver's section), which leaves a /tmp/psqlodbc_*.log file
# behind for every connection.
my $t_start = time() - 1;
$ENV{ODBCSYSINI} = PostgreSQL::Test::Utils::tempdir();
PostgreSQL::Test::Utils::append_to_file("$ENV{ODBCSYSINI}/odbcinst.ini", '');
my $lab = lab_start();
my $dir = build_contrib('odbc');
my $bin = "$dir/cmodbc";
my $cmdriver = "$dir/cmodbcw.so";
my $cmlib = "$lab->{lib}/libpq-cm.so.1";
my $hb = $lab->{hb_timeout};

# conmgr names the instances by backend_hostaddr (CmDriverLab): 127.0.0.1,
# while the application names conmgr "localhost".
my $instance_host = '127.0.0.1';

sub connstr
{
	my ($target, $drv) = @_;
	return 'Driver=' . ($drv // $cmdriver) . ";Servername=localhost;Port=$lab->{cmport};Database=postgres;"
	  . "pqopt={target_session_attrs=$target}";
}

# Run cmodbc (with %env); returns (output, server_name, server_name_w,
# port, addr, recovery, short).
sub odbc
{
	my ($env, @args) = @_;
	my ($out, $err) = run_cmd(foreign_env(%$env), $bin, @args);
	return ("$out$err",
		$out =~ /^connected server_name=(\S*) server_name_w=(\S*) port=(\d+) addr=(\S+) recovery=(\w) short=(\S+)/m);
}

my ($dyn) = run_cmd('readelf', '-d', $cmdriver);
ok($dyn =~ /NEEDED.*\[libpq-cm\.so\.1\].*NEEDED.*\[psqlodbcw\.so\]/s,
	'cmodbcw.so depends on libpq-cm.so.1, then psqlodbcw.so');

my %expect = (
	'read-write' => 'p', 'primary' => 'p', 'prefer-primary' => 'p',
	'read-only' => 's', 'standby' => 's', 'prefer-standby' => 's');
for my $target (sort keys %expect)
{
	my ($out, $sn, $snw, $port, $addr, $rec, $short) = odbc({}, 'connect', connstr($target));
	my $where = $lab->name_of($port);
	is($where, $expect{$target}, "Driver=cmodbcw.so pqopt={target_session_attrs=$target}: lands on $where")
	  or diag($out);
	is($rec, ($where eq 'p' ? 'f' : 't'), "$target: pg_is_in_recovery() agrees");
	is($sn, $instance_host, "$target: SQLGetInfo(SQL_SERVER_NAME) is the instance reached, not conmgr's localhost");
	is($snw, $instance_host, "$target: SQLGetInfoW(SQL_SERVER_NAME) too");
	is($short, '127/1/' . length($instance_host),
		"$target: into a 4-byte buffer: truncated, SQL_SUCCESS_WITH_INFO, the whole length");
}

# psqlodbcw.so itself, libpq-cm preloaded: it works, but psqlODBC answers
# SQL_SERVER_NAME from its copy of Servername (docs/drivers.md).
{
	my ($plain) = glob('/usr/lib/*/odbc/psqlodbcw.so');
	# Loaded by unixODBC with dlopen(), psqlODBC's libpq is not in the
	# program's global scope: the preloaded libpq-cm.so.1 finds the real one
	# (RTLD_NEXT) only because it names libpq.so.5 among its dependencies.
	my ($ldyn) = run_cmd('readelf', '-d', $cmlib);
	ok($ldyn =~ /NEEDED.*\[libpq\.so\.5\]/, 'libpq-cm.so.1 depends on libpq.so.5 itself');
	my ($out, $sn, undef, $port) = odbc({ LD_PRELOAD => $cmlib }, 'connect', connstr('read-write', $plain));
	is($lab->name_of($port), 'p', 'psqlodbcw.so with LD_PRELOAD=libpq-cm.so.1 reaches the primary') or diag($out);
	is($sn, 'localhost', 'psqlodbcw.so alone: SQL_SERVER_NAME is the Servername given');

	($out) = odbc({}, 'connect', connstr('read-write', $plain));
	like($out, qr/^failed sqlstate=\S+ message=.*conmgr/m,
		'psqlodbcw.so without libpq-cm: conmgr refuses, and says what it is') or diag($out);
}

# A postmaster named directly through cmodbcw.so: psqlODBC's own answer.
{
	my ($out, $sn, undef, $port) = odbc({}, 'connect',
		"Driver=$cmdriver;Servername=localhost;Port=$lab->{port}{s};Database=postgres");
	is($lab->name_of($port // 0), 's', 'cmodbcw.so naming the standby itself reaches it') or diag($out);
	is($sn, 'localhost', 'not through conmgr: SQL_SERVER_NAME is the Servername given');
}

# A DSN in an odbc.ini (ODBCINI), as an application would have it.
{
	my $ini = PostgreSQL::Test::Utils::tempdir() . '/odbc.ini';
	PostgreSQL::Test::Utils::append_to_file($ini, "[cmapp]\nDriver = $cmdriver\nServername = localhost\n"
		  . "Port = $lab->{cmport}\nDatabase = postgres\npqopt = target_session_attrs=standby\n");
	my ($out, $sn, undef, $port) = odbc({ ODBCINI => $ini }, 'connect', 'DSN=cmapp');
	is($lab->name_of($port // 0), 's',
		'DSN=cmapp (odbc.ini: Driver = cmodbcw.so, pqopt = target_session_attrs=standby) reaches the standby')
	  or diag($out);
	is($sn, $instance_host, 'DSN=cmapp: SQL_SERVER_NAME is the instance');
}

# A lost standby under a blocked SQLExecDirect.
{
	my $bg = bg_start(foreign_env(), $bin, 'block', connstr('standby'), 'SELECT pg_sleep(60)');
	ok(bg_wait($bg, qr/^running/m), 'a blocking SQLExecDirect runs') or diag(bg_out($bg));
	ok($lab->wait_query('s', 'SELECT pg_sleep(60)'), 'the standby runs it');
	my ($took) = $lab->lose('s', $hb + 5, [ $bg, qr/^result /m ]);
	my $out = bg_out($bg);
	my ($rc, $dead, $state, $msg) = $out =~ /^result rc=(-?\d+) elapsed=\S+ dead=(\S+) sqlstate=(\S+) message=(.*)$/m;
	is($rc, -1, 'SQLExecDirect returned SQL_ERROR') or diag($out);
	like($state // '', qr/^(08|57P0)/, "a connection error: SQLSTATE " . ($state // 'none') . " (" . ($msg // '') . ')');
	is($dead, 'yes', 'SQL_ATTR_CONNECTION_DEAD is SQL_CD_TRUE');
	ok(defined $took && $took <= $hb + 0.5,
		sprintf('within heartbeat_timeout + 0.5 s: %.3f s after the standby stopped (timeout %d s)', $took // -1, $hb));
	note(sprintf('ODBC: blocked SQLExecDirect failed %.3f s after the instance stopped', $took // -1));
}

# psqlODBC's logs go to /tmp, named after the program and its pid.
my @left = grep { (stat $_)[9] >= $t_start } glob('/tmp/psqlodbc_cmodbc*_*.log');
is(scalar @left, 0, 'psqlODBC left no log file in /tmp') or diag(join(' ', @left));

$lab->stop;
done_testing();
