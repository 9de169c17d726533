# ODBC through conmgr: Debian's psqlODBC under unixODBC, with libpq-cm
# injected (LD_PRELOAD) under the driver, which calls libpq itself.
# contrib/odbc's program connects with SQLDriverConnect (a driver path, and
# a DSN from an odbc.ini), Servername/Port pointing at conmgr and
# target_session_attrs passed through pqopt: every target lands where
# asked.  SQLGetInfo(SQL_SERVER_NAME) is psqlODBC's copy of the Servername
# it was given (it never asks libpq), so it names conmgr, not the instance:
# checked as is; the manual's behaviour (3.4.1) is not reached (see
# docs/drivers.md and issue 8's note).  A lost
# instance under a blocked SQLExecDirect fails it within
# heartbeat_timeout + 0.5 s.
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

my $lab = lab_start();
my $bin = build_contrib('odbc') . '/cmodbc';
my $cmlib = "$lab->{lib}/libpq-cm.so.1";
my $hb = $lab->{hb_timeout};

# psqlODBC is loaded by unixODBC with dlopen(), so the real libpq is not in
# the program's global scope: libpq-cm.so.1 finds it (RTLD_NEXT) only
# because it names libpq.so.5 among its own dependencies.
my ($dyn) = run_cmd('readelf', '-d', $cmlib);
ok($dyn =~ /NEEDED.*\[libpq\.so\.5\]/, 'libpq-cm.so.1 depends on libpq.so.5 itself');
my $preload = $cmlib;

sub connstr
{
	my ($target) = @_;
	return "Driver=$driver;Servername=localhost;Port=$lab->{cmport};Database=postgres;"
	  . "pqopt={target_session_attrs=$target}";
}

sub odbc
{
	my (@args) = @_;
	my ($out, $err) = run_cmd(foreign_env(LD_PRELOAD => $preload), $bin, @args);
	return ("$out$err", $out =~ /^connected server_name=(\S*) port=(\d+) addr=(\S+) recovery=(\w)/m);
}

my %expect = (
	'read-write' => 'p', 'primary' => 'p', 'prefer-primary' => 'p',
	'read-only' => 's', 'standby' => 's', 'prefer-standby' => 's');
my %server_name;
for my $target (sort keys %expect)
{
	my ($out, $sn, $port, $addr, $rec) = odbc('connect', connstr($target));
	my $where = $lab->name_of($port);
	is($where, $expect{$target}, "pqopt={target_session_attrs=$target}: lands on $where") or diag($out);
	is($rec, ($where eq 'p' ? 'f' : 't'), "$target: pg_is_in_recovery() agrees");
	$server_name{ $sn // '' }++;
}
is_deeply([ keys %server_name ], ['localhost'],
	"SQLGetInfo(SQL_SERVER_NAME) is the connection string's Servername (psqlODBC copies it, docs/drivers.md)");

{
	my ($out, $err) = run_cmd(foreign_env(LD_PRELOAD => $cmlib), $bin, 'connect', connstr('read-write'));
	like($out, qr/^connected /m, 'LD_PRELOAD=libpq-cm.so.1 alone works under psqlODBC') or diag("$out$err");
}

# A DSN in an odbc.ini (ODBCINI), as an application would have it.
{
	my $ini = PostgreSQL::Test::Utils::tempdir() . '/odbc.ini';
	PostgreSQL::Test::Utils::append_to_file($ini, "[cmapp]\nDriver = $driver\nServername = localhost\n"
		  . "Port = $lab->{cmport}\nDatabase = postgres\npqopt = target_session_attrs=standby\n");
	my ($out, $err) = run_cmd(foreign_env(ODBCINI => $ini, LD_PRELOAD => $preload), $bin, 'connect', 'DSN=cmapp');
	my ($port) = $out =~ /^connected .* port=(\d+)/m;
	is($lab->name_of($port), 's', 'DSN=cmapp (odbc.ini: pqopt = target_session_attrs=standby) reaches the standby') or diag("$out$err");
}

# Without libpq-cm, psqlODBC meets conmgr as a plain client: a clear refusal.
{
	my ($out, $err) = run_cmd($bin, 'connect', connstr('read-write'));
	like($out, qr/^failed sqlstate=\S+ message=.*conmgr/m, 'without LD_PRELOAD: conmgr refuses, and says what it is')
	  or diag("$out$err");
}

# A lost standby under a blocked SQLExecDirect.
{
	my $bg = bg_start(foreign_env(LD_PRELOAD => $preload), $bin, 'block', connstr('standby'), 'SELECT pg_sleep(60)');
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

$lab->stop;
done_testing();
