# Test that libpq-cm, built on the host against libpq 15, serves libpq 17
# (docs/libpq-cm.md, "Which libpq it serves"), as root, with the PostgreSQL
# 17 chroot (tools/pg17-chroot, regress/lib/CmChroot.pm):
#  - regress/t/061_libpq_cm_api.t passes with libpq 17's headers required
#    (CM_LIBPQ17_REQUIRED): libpq-cm exports every PGconn function of
#    libpq 17's libpq-fe.h and compiles against it;
#  - under libpq 17 too, the accessors of a connection just started (or
#    failed) answer as plain libpq's (cmaccess built in the chroot, run with
#    and without libpq-cm by LD_PRELOAD);
#  - a libpq 17 program (cm17app.c, built in the chroot against libpq 17)
#    run with libpq-cm by LD_PRELOAD connects through conmgr (built on the
#    host, heartbeating a PostgreSQL 17 server with the watchdog) and uses
#    libpq 17's functions on that connection: PQcancelCreate() +
#    PQcancelBlocking() cancel a pg_sleep(), PQclosePrepared(),
#    PQclosePortal() and their PQsend forms, PQsendPipelineSync(),
#    PQsetChunkedRowsMode(), PQchangePassword(); psql 17 reaches the
#    instance through libpq-cm; a libpq 17 function called through
#    libpq-cm reaches libpq 17 (cmnewer).
# The watchdog extension must be installed in the chroot (make check's
# PostgreSQL 17 part, regress/pg17/run, does it).
use strict;
use warnings;
use Cwd ();
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmChroot;
use CmTest::Conmgr;
use IO::Socket::INET;
use IPC::Run;
use Test::More;
use Time::HiRes qw(time usleep);

plan skip_all => 'needs root (the PostgreSQL 17 chroot)' if $> != 0;
my $chroot = $ENV{CM_PG17_CHROOT} // '/var/cache/conmgr/trixie';
plan skip_all => "no PostgreSQL 17 chroot in $chroot (tools/pg17-chroot ensure)"
  if !-x "$chroot/usr/lib/postgresql/17/bin/postgres";

my $top = Cwd::realpath("$FindBin::RealBin/../..");
my $libpqcm = "$top/build/lib/libpq-cm.so.1";
ok(-f $libpqcm, 'libpq-cm was built on the host') or BAIL_OUT('make first');
ok(-f "$chroot/usr/lib/postgresql/17/lib/watchdog.so",
	'the watchdog extension is installed in the chroot')
  or BAIL_OUT('install pgext into the chroot (regress/pg17/run does)');

my $s = scratch();
my (undef, undef, $pg_uid, $pg_gid) = getpwnam('postgres');

# --- 061 with libpq 17's headers required --------------------------------
{
	my ($out, $err) = ('', '');
	local $ENV{CM_LIBPQ17_REQUIRED} = 1;
	local $ENV{CM_LIBPQ17_INCLUDEDIR} = "$chroot/usr/include/postgresql";
	local $ENV{CM_LIBPQ17_LIBDIR} = "$chroot/usr/lib/x86_64-linux-gnu";
	local $ENV{TESTDIR} = $s;
	# PostgreSQL::Test::Utils, which 061 uses, from the host's PostgreSQL
	chomp(my $pkglibdir = `pg_config --pkglibdir`);
	local $ENV{PERL5LIB} = join(':', "$pkglibdir/pgxs/src/test/perl", grep { !ref } @INC);
	IPC::Run::run([ $^X, "$top/regress/t/061_libpq_cm_api.t" ], '<', \undef,
		'>', \$out, '2>', \$err, IPC::Run::timeout(300));
	is($? >> 8, 0, '061_libpq_cm_api.t passes with libpq 17\'s headers required')
	  or diag("$out$err");
	like($out, qr/^ok \d+ - libpq 17: header libpq-fe.h found/m, '061 read libpq 17\'s libpq-fe.h');
	like($out, qr/^ok \d+ - libpq-cm compiles against libpq 17's libpq-fe.h/m,
		'061 compiled libpq-cm against it');
}

# --- the accessors under libpq 17 ----------------------------------------
my ($rc, $out, $err) = chroot_run({}, 'gcc', '-Wall', '-Werror', '-I/usr/include/postgresql',
	'-o', "$s/cmaccess", "$top/regress/tools/libpq-cm/cmaccess.c", '-lpq');
is($rc, 0, 'cmaccess built in the chroot against libpq 17') or diag("$out$err");
{
	my $silent = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
		Listen => 16, ReuseAddr => 1) or die "listener: $!";
	my $sport = $silent->sockport;
	open(my $f, '>', "$s/pgpass") or die $!;
	print $f "127.0.0.1:$sport:*:*:from-the-file\n";
	close $f;
	chown $pg_uid, $pg_gid, "$s/pgpass";
	chmod 0600, "$s/pgpass";
	for my $case (
		[ 'string, password given', 'string', 'host=127.0.0.1', "port=$sport", 'dbname=appdb',
			'password=the-pass-word' ],
		[ 'params, password file', 'params', 'host=127.0.0.1', "port=$sport", 'user=app' ])
	{
		my ($name, @args) = @$case;
		my %got;
		for my $with ('plain', 'libpq-cm')
		{
			my @env = ('env', "HOME=$s", "PGPASSFILE=$s/pgpass");
			push @env, "LD_PRELOAD=$libpqcm" if $with eq 'libpq-cm';
			my ($rc2, $out2, $err2) = chroot_run({}, @env, "$s/cmaccess", $args[0], 'now', @args[ 1 .. $#args ]);
			is($rc2, 0, "libpq 17, $name: cmaccess ($with) ran") or diag($err2);
			$out2 =~ s/^PQerrorMessage=.*$/PQerrorMessage=(not compared)/m;
			$got{$with} = $out2;
		}
		like($got{'libpq-cm'}, qr/^PQstatus=in progress$/m, "libpq 17, $name: in progress");
		like($got{'libpq-cm'}, qr/^load_balance_hosts=/m, "libpq 17, $name: PQconninfo() has 17's options");
		is($got{'libpq-cm'}, $got{plain}, "libpq 17, $name: every accessor of libpq-cm answers as libpq 17's");
	}
}

# --- a PostgreSQL 17 server behind conmgr ---------------------------------
my $node = CmChroot::Node->new('pg17', $s);
my $wdport = free_port();
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'watchdog'
watchdog.port = $wdport
watchdog.listen_addresses = '127.0.0.1'
watchdog.check_attr_interval = 200
password_encryption = 'scram-sha-256'
});
$node->start;
$node->safe_psql("CREATE ROLE cm17role LOGIN PASSWORD 'old-secret'");

my $cm = CmTest::Conmgr->new('cm', dir => "$s/cm", logfile => "$s/cm.log", owner => 'postgres',
	instances => [ { backend_hostaddr => "'127.0.0.1'", backend_port => $node->port, watchdog_port => $wdport } ],
	conf => { heartbeat_interval => 1, heartbeat_timeout => 5, log_min_messages => 'LOG' });
my $cmport = $cm->port;
$cm->start(wait => 0, prefix => [ 'setpriv', "--reuid=$pg_uid", "--regid=$pg_gid", '--clear-groups' ]);

my $conninfo = "host=127.0.0.1 port=$cmport dbname=postgres user=postgres "
  . 'target_session_attrs=read-write connect_timeout=5';

# psql 17 through libpq-cm, once conmgr has the instance up (at most 60 s).
my ($psql_rc, $psql_out, $psql_err);
my $deadline = time() + 60;
do
{
	($psql_rc, $psql_out, $psql_err) = chroot_run({}, 'env', "LD_PRELOAD=$libpqcm",
		pg17_bin('psql'), '-X', '-A', '-t', '-d', $conninfo,
		'-c', "SELECT current_setting('server_version_num')::int / 10000, inet_server_port()");
	usleep(500_000) if $psql_rc != 0;
} while ($psql_rc != 0 && time() < $deadline);
is($psql_rc, 0, 'psql 17 connects through conmgr with libpq-cm') or diag("$psql_out$psql_err" . $cm->log_content);
is($psql_out, "17|" . $node->port . "\n", 'psql 17 reached the PostgreSQL 17 instance');

($rc, $out, $err) = chroot_run({}, 'gcc', '-Wall', '-Wextra', '-Werror', '-I/usr/include/postgresql',
	'-o', "$s/cm17app", "$top/regress/pg17/cm17app.c", '-lpq');
is($rc, 0, 'cm17app built in the chroot against libpq 17') or diag("$out$err");
my $t0 = time();
($rc, $out, $err) = chroot_run({ timeout => 120 }, 'env', "LD_PRELOAD=$libpqcm", "$s/cm17app",
	$conninfo, 'cm17role');
note($out);
is($rc, 0, 'cm17app: every step passed') or diag("$out$err");
for my $step (qw(libpq libpq-cm connect server PQconnectionUsedGSSAPI cancel
	PQclosePrepared PQsendClosePrepared PQclosePortal PQsendClosePortal
	PQsendPipelineSync PQsetChunkedRowsMode PQchangePassword after))
{
	like($out, qr/^ok \Q$step\E( |$)/m, "cm17app: $step");
}
like($out, qr/^ok connect through conmgr to 127\.0\.0\.1:${\ $node->port}$/m,
	'cm17app: PQhost()/PQport() name the instance');
note(sprintf('cm17app took %.1f s', time() - $t0));
is($node->safe_psql("SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = 'cm17role'"),
	'SCRAM-SHA-256$', 'the server holds the password PQchangePassword() set');

# A libpq 17 function called through libpq-cm reaches libpq 17.
($rc, $out, $err) = chroot_run({}, "$top/build/regress/tools/cmnewer", 'PQcancelCreate');
is($rc, 0, 'cmnewer PQcancelCreate with libpq 17 behind libpq-cm returns') or diag("$out$err");
is($out, "returned\n", 'cmnewer: the call returned');

$cm->stop('smart');
$node->stop('fast');
done_testing();
