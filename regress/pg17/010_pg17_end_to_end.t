# Test conmgr end to end against PostgreSQL 17: conmgr built on the host
# keeps heartbeats with the watchdog of a PostgreSQL 17 primary and of its
# streaming standby (both in the trixie chroot, regress/lib/CmChroot.pm);
# psql 15 on the host and psql 17 in the chroot (libpq 17), each with the
# host-built libpq-cm by LD_PRELOAD, reach the primary for read-write and
# primary and the standby for read-only and standby, through conmgr;
# pgx_stat_watchdog on both lists conmgr; and when conmgr stops beating
# (SIGSTOP to all its processes), the terminator of the primary ends the
# SQL sessions of conmgr's host (127.0.0.1), a direct one from psql 17 and
# one that psql 15 opened through conmgr, within heartbeat_timeout + 1 s.
#
# Runs as root on the host (make check's PostgreSQL 17 part,
# regress/pg17/run), with the watchdog extension built with PostgreSQL
# 17's PGXS and installed in the chroot.  conmgr and every client run as
# postgres, as does the chroot's postgres (same uid).
use strict;
use warnings;
use Cwd ();
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmChroot;
use CmTest::Conmgr;
use IPC::Run;
use Test::More;
use Time::HiRes qw(time usleep);

plan skip_all => 'needs root (tools/pg17-chroot)' if $> != 0;

my $top = Cwd::realpath("$FindBin::RealBin/../..");
my $preload = "$top/build/lib/libpq-cm.so.1";
my $psql15 = '/usr/lib/postgresql/15/bin/psql';
my ($hb_interval, $hb_timeout) = (1, 2);
my (undef, undef, $pg_uid, $pg_gid) = getpwnam('postgres') or die 'no user postgres';

# Run a host program as postgres; returns (exit status, stdout, stderr).
sub host_run
{
	my (@cmd) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'setpriv', "--reuid=$pg_uid", "--regid=$pg_gid", '--init-groups', @cmd ],
		'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(60));
	return ($? >> 8, $out, $err);
}

sub wait_until
{
	my ($cond, $secs) = @_;
	my $deadline = time() + $secs;
	while (time() < $deadline)
	{
		return 1 if $cond->();
		usleep(100_000);
	}
	return 0;
}

# --- the extension in the chroot, built for 17 from this tree ---
my ($rc) = chroot_run({}, 'cmp', '-s', "$top/pgext/watchdog.so",
	'/usr/lib/postgresql/17/lib/watchdog.so');
is($rc, 0, 'the chroot\'s PostgreSQL 17 has the watchdog extension just built')
  or BAIL_OUT('build and install it with PostgreSQL 17\'s PGXS: regress/pg17/run does');
my (undef, $libpq) = chroot_run({}, 'dpkg-query', '-W', '-f', '${Version}', 'libpq5');
like($libpq, qr/^17\./, "the chroot's libpq is 17 ($libpq)");

# --- a PostgreSQL 17 primary and its streaming standby, with the watchdog ---
my $scratch = scratch();
my %wd = map { $_ => free_port() } qw(primary standby);
my $primary = CmChroot::Node->new('primary', $scratch);
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'watchdog'
watchdog.port = $wd{primary}
watchdog.listen_addresses = '127.0.0.1'
watchdog.check_attr_interval = 200
});
$primary->start;
$primary->safe_psql('CREATE EXTENSION watchdog');
my $standby = CmChroot::Node->new('standby', $scratch);
$standby->init_from_primary($primary);
$standby->append_conf('postgresql.conf', "watchdog.port = $wd{standby}\n");
$standby->start;
like($primary->safe_psql('SELECT version()'), qr/^PostgreSQL 17\./, 'the primary is PostgreSQL 17');
is($standby->safe_psql('SELECT pg_is_in_recovery()'), 't', 'the standby is in recovery');
ok(wait_until(sub { $primary->safe_psql('SELECT count(*) FROM pg_stat_replication') eq '1' }, 30),
	'the standby streams from the primary');
ok(wait_until(sub { $standby->safe_psql("SELECT count(*) FROM pg_extension WHERE extname = 'watchdog'") eq '1' }, 30),
	'CREATE EXTENSION reached the standby');

# --- conmgr on the host, as postgres ---
my $cm = CmTest::Conmgr->new('cm', dir => "$scratch/conmgr", logfile => "$scratch/conmgr.log",
	owner => 'postgres',
	instances => [
		map { { backend_hostaddr => "'127.0.0.1'", backend_port => $_->port, watchdog_port => $wd{ $_->name } } }
		  ($primary, $standby)
	],
	conf => { heartbeat_interval => $hb_interval, heartbeat_timeout => $hb_timeout, log_min_messages => 'LOG' });
my $cmport = $cm->port;
my $cm_pid;
END { kill 'KILL', conmgr_pids() if $cm_pid; }
ok($cm->start(prefix => [ 'setpriv', "--reuid=$pg_uid", "--regid=$pg_gid", '--init-groups' ],
		wait => 'ready', timeout => 30, fail_ok => 1), 'conmgr started') or diag($cm->log_content);
$cm_pid = $cm->pid;

# The supervisor and its roles.
sub conmgr_pids
{
	my @pids = ($cm_pid);
	for my $f (glob('/proc/[0-9]*/stat'))
	{
		open(my $fh, '<', $f) or next;
		my ($pid, $ppid) = (<$fh> // '') =~ /^(\d+) \(.*\) \S+ (\d+) /s or next;
		push @pids, $pid if $ppid == $cm_pid;
	}
	return @pids;
}

sub view_rows
{
	my ($node) = @_;
	return $node->safe_psql('SELECT conmgr_addr, heartbeat_interval, heartbeat_timeout FROM pgx_stat_watchdog');
}
for my $node ($primary, $standby)
{
	ok(wait_until(sub { view_rows($node) eq "127.0.0.1|$hb_interval|$hb_timeout" }, 30),
		'pgx_stat_watchdog on the ' . $node->name . ' lists conmgr (127.0.0.1, 1 s, 2 s)')
	  or diag('view: ' . view_rows($node) . "\nconmgr: " . $cm->log_content);
}

# Both instances routable: conmgr has each one's attributes.
ok(wait_until(sub {
	my (undef, $out) = host_run("$top/build/regress/tools/cmresolve", '-p', $cmport, '-t', 'any');
	(() = $out =~ /^candidate /mg) == 2 }, 30),
	'conmgr routes to both instances');

# --- psql 15 and psql 17 through conmgr ---
my %port_of = (primary => $primary->port, standby => $standby->port);
my %name_of = reverse %port_of;
my $probe = "SELECT current_setting('port') || ' ' || pg_is_in_recovery() || ' ' || current_setting('server_version_num')";

sub cm_conninfo
{
	return "host=localhost port=$cmport dbname=postgres target_session_attrs=$_[0]";
}

sub psql15
{
	my ($conninfo, $sql, @env) = @_;
	return host_run('env', "LD_PRELOAD=$preload", @env, $psql15, '-X', '-A', '-t', '-d', $conninfo, '-c', $sql);
}

sub psql17
{
	my ($conninfo, $sql, @env) = @_;
	return chroot_run({}, 'env', "LD_PRELOAD=$preload", @env, pg17_bin('psql'), '-X', '-A', '-t',
		'-d', $conninfo, '-c', $sql);
}

my %expect = (
	'read-write' => 'primary',
	'primary' => 'primary',
	'read-only' => 'standby',
	'standby' => 'standby');
for my $client ([ 'psql 15 (host)', \&psql15 ], [ 'psql 17 (chroot)', \&psql17 ])
{
	my ($label, $run) = @$client;
	for my $target (sort keys %expect)
	{
		my ($rc, $out, $err) = $run->(cm_conninfo($target), $probe);
		my ($port, $recovery, $version) = split ' ', ($out =~ s/\s+$//r);
		my $where = defined $port ? ($name_of{$port} // "port $port") : 'no instance';
		is($where, $expect{$target}, "$label, $target: lands on: $where")
		  or diag("exit $rc\n$out$err");
		is($recovery, $expect{$target} eq 'standby' ? 'true' : 'false',
			"$label, $target: pg_is_in_recovery() agrees");
		like($version // '', qr/^17\d{4}$/, "$label, $target: the server is PostgreSQL 17");
	}
}
# Without libpq-cm, conmgr's port is no PostgreSQL server: the detour is
# libpq-cm's doing.
{
	my ($rc, $out, $err) = chroot_run({}, pg17_bin('psql'), '-X', '-A', '-t',
		'-d', cm_conninfo('read-write'), '-c', $probe);
	isnt($rc, 0, 'psql 17 without libpq-cm does not get through conmgr\'s port');
}

# --- the terminator ends the sessions of a host whose conmgr fell silent ---
{
	my $log_offset = -s $primary->logfile;
	my ($d_out, $d_err, $c_out, $c_err) = ('', '', '', '');
	my $direct = IPC::Run::start([ chroot_cmd({}, pg17_bin('psql'), '-X', '-A', '-t',
		'-d', 'host=127.0.0.1 port=' . $primary->port . ' dbname=postgres application_name=direct17',
		'-c', 'SELECT pg_sleep(60)') ], '<', \undef, '>', \$d_out, '2>', \$d_err);
	my $via = IPC::Run::start([ 'setpriv', "--reuid=$pg_uid", "--regid=$pg_gid", '--init-groups',
		'env', "LD_PRELOAD=$preload", $psql15, '-X', '-A', '-t',
		'-d', cm_conninfo('read-write') . ' application_name=viacm15',
		'-c', 'SELECT pg_sleep(60)' ], '<', \undef, '>', \$c_out, '2>', \$c_err);
	my $sessions = "SELECT count(*) FROM pg_stat_activity WHERE application_name IN ('direct17', 'viacm15') "
	  . "AND client_addr = '127.0.0.1'";
	ok(wait_until(sub { $primary->safe_psql($sessions) eq '2' }, 30),
		'two SQL sessions from 127.0.0.1 on the primary: psql 17 directly, psql 15 through conmgr');

	my @stopped = conmgr_pids();
	kill 'STOP', @stopped;
	my $t0 = time();
	my $ended = wait_until(sub { $primary->safe_psql($sessions) eq '0' }, $hb_timeout + 10);
	my $took = time() - $t0;
	kill 'CONT', @stopped;
	ok($ended, 'the terminator ended both when conmgr stopped beating');
	ok($took <= $hb_timeout + 1,
		sprintf('within heartbeat_timeout + 1 s (%.3f s after SIGSTOP)', $took));
	ok($primary->wait_for_log(qr/terminating backend process \d+ connected from 127\.0\.0\.1/, $log_offset, 5),
		'the primary logged the termination');
	$direct->finish;
	$via->finish;
	like($d_err, qr/terminating connection due to administrator command|server closed the connection/,
		'psql 17 saw its connection terminated');
	like($c_err, qr/terminating connection due to administrator command|server closed the connection/,
		'psql 15 through conmgr saw its connection terminated');

	# conmgr resumes and registers again.
	ok(wait_until(sub { view_rows($primary) eq "127.0.0.1|$hb_interval|$hb_timeout" }, 30),
		'conmgr registers again once it runs');
}

$cm->stop('fast');
$cm_pid = undef;
done_testing();
