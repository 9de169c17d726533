# psycopg 3.1 (Debian's python3-psycopg, its pure-Python ctypes binding)
# through conmgr with libpq-cm's drop-in libpq.so.5 (LD_LIBRARY_PATH):
# AsyncConnection reaches every target; conn.info.host, hostaddr and port
# name the instance (manual 3.6.4); a query blocked in pg_sleep() gets
# OperationalError within heartbeat_timeout + 0.5 s when its instance is
# lost, in a plain and in an asyncio application (the manual says psycopg
# cannot have the heartbeat error; through the drop-in it can); the
# ConnectionInfo of a connection still talking to conmgr is that of its
# options, as psycopg's own tests expect.
# 060_libpq_cm.t already covers psycopg.connect() for read-write and standby.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib", "$FindBin::RealBin/../../contrib/testlib";
use CmDriverLab;
use CmTest;
use Test::More;

# Debian's interpreter: python3-psycopg is installed for it.
my $python = -x '/usr/bin/python3' ? '/usr/bin/python3' : 'python3';
my (undef, undef, $rc) = run_cmd($python, '-c', 'import psycopg');
plan skip_all => 'skipped: no psycopg (Debian package python3-psycopg)' if $rc;

my $lab = lab_start();
my $script = "$lab->{top}/contrib/psycopg/cm_psycopg.py";
my $dropin = $lab->{dropin};
my $hb = $lab->{hb_timeout};

sub conninfo
{
	my ($target) = @_;
	return "host=localhost port=$lab->{cmport} dbname=postgres target_session_attrs=$target";
}

sub py
{
	my (@args) = @_;
	return run_cmd(foreign_env(LD_LIBRARY_PATH => $dropin), $python, $script, @args);
}

my %expect = (
	'read-write' => 'p', 'primary' => 'p', 'prefer-primary' => 'p',
	'read-only' => 's', 'standby' => 's', 'prefer-standby' => 's',
	'any' => qr/^[ps]$/);
my @sync_only = qw(read-only primary prefer-standby prefer-primary);
for my $case ((map { [ 'aconnect', $_ ] } sort keys %expect), (map { [ 'connect', $_ ] } @sync_only))
{
	my ($mode, $target) = @$case;
	my ($out, $err) = py($mode, conninfo($target));
	my ($host, $addr, $port, $rec, $lib) =
	  $out =~ /^connected mode=\w+ host=(\S+) hostaddr=(\S+) port=(\d+) recovery=(\w) libpq=(\S+)/m;
	my $where = $lab->name_of($port);
	my $want = $expect{$target};
	(ref $want ? like($where, $want, "$mode $target: lands on $where")
	  : is($where, $want, "$mode $target: lands on $where")) or diag("$out$err");
	is($rec, ($where eq 'p' ? 'f' : 't'), "$mode $target: pg_is_in_recovery() agrees");
	is("$host $addr", '127.0.0.1 127.0.0.1', "$mode $target: conn.info.host and hostaddr are the instance's, not localhost");
	is($lib, "$dropin/libpq.so.5", "$mode $target: the drop-in libpq.so.5 is loaded") if $target eq 'any';
}

# psycopg's test_conninfo::test_no_password and test_dsn_no_password: a
# connection just started, still talking to conmgr, tells its password,
# database and parameters (from the options, as libpq does), and its DSN
# leaves the password out.
{
	my ($out, $err) = py('info', conninfo('any') . ' password=the-pass-word');
	like($out, qr/^info password=the-pass-word dbname=postgres parameters_dbname=postgres parameters_password=no dsn=\S/m,
		'ConnectionInfo of a connection still talking to conmgr: password, dbname, parameters')
	  or diag("$out$err");
	unlike($out, qr/dsn=.*the-pass-word/, 'its DSN leaves the password out');
}

# Without the drop-in, psycopg's libpq meets conmgr as a plain client.
{
	my ($out, $err) = run_cmd($python, $script, 'connect', conninfo('read-write'));
	like($out, qr/^failed error=OperationalError message=.*conmgr/m,
		'without the drop-in: OperationalError, conmgr says what it is') or diag("$out$err");
}

# A lost standby under a blocked query, plain and asyncio.
{
	my @bg = map { bg_start(foreign_env(LD_LIBRARY_PATH => $dropin), $python, $script, $_,
		conninfo('standby'), 'SELECT pg_sleep(60)') } qw(block ablock);
	ok(bg_wait($_, qr/^running/m), 'a query blocks in pg_sleep(60)') or diag(bg_out($_)) for @bg;
	ok($lab->wait_query('s', 'SELECT pg_sleep(60)', 2), 'the standby runs both');
	my @took = $lab->lose('s', $hb + 5, map { [ $_, qr/^result /m ] } @bg);
	for my $i (0, 1)
	{
		my $what = $i ? 'AsyncConnection' : 'Connection';
		my $out = bg_out($bg[$i]);
		like($out, qr/^result error=OperationalError elapsed=\S+ closed=True message=.*(server closed the connection|consuming input failed)/m,
			"$what: OperationalError, the connection is closed") or diag($out);
		ok(defined $took[$i] && $took[$i] <= $hb + 0.5,
			sprintf('%s: within heartbeat_timeout + 0.5 s: %.3f s after the standby stopped (timeout %d s)',
				$what, $took[$i] // -1, $hb));
		note(sprintf('psycopg %s: blocked query failed %.3f s after the instance stopped', $what, $took[$i] // -1));
		note($1) if $out =~ /^(result .*)$/m;
	}
}

$lab->stop;
done_testing();
