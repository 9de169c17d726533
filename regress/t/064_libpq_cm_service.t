# Test that connections described by a service file (service=, PGSERVICE,
# PGSERVICEFILE, PGSYSCONFDIR) route through conmgr exactly as the same
# options written in the connection string do, with libpq's precedence
# (the connection string over the service, the service over the
# environment), and that a service libpq cannot read fails with libpq's
# own error text, byte for byte.
#
# A "conmgr" (regress/tools/fake_conmgr.pl, run by this user, so trusted
# on loopback) names one candidate: a trap port that counts the
# connections it takes.  Reaching the trap after a probe of the fake is
# what routing through conmgr looks like; a passed-through connection
# talks to the fake as if it were a server and never reaches the trap.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use File::Temp qw(tempdir);
use IO::Socket::INET;
use IPC::Run;
use Test::More;

my $top = cm_top();
my $cmapp = "$top/build/regress/tools/cmapp";
my $preload = "$top/build/lib/libpq-cm.so.1";
my $dir = tempdir(CLEANUP => 1);

my ($trap, $utrap, $sockdir) = tcp_unix_traps($dir);
my $tport = $trap->sockport;

# A port nothing listens on: the one a lower-precedence source names.
my $closed = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp')
  or die "bind: $!";
my $wrong = $closed->sockport;

my $flog = "$dir/fake.log";
my ($fh, $cmport) = fake_conmgr_start('127.0.0.1', $flog, [ 1, $tport, '127.0.0.1' ]);

# What the fake logged since the last call.
my $logpos = 0;
sub fake_saw
{
	open my $f, '<', $flog or return '';
	local $/;
	my $all = <$f> // '';
	my $new = substr($all, $logpos);
	$logpos = length $all;
	return $new;
}

sub write_file
{
	my ($path, $text) = @_;
	open my $f, '>', $path or die "$path: $!";
	print $f $text;
	close $f or die "$path: $!";
}

my $common = 'dbname=postgres sslmode=disable gssencmode=disable connect_timeout=2';
my $svcfile = "$dir/elsewhere/services.conf";
mkdir "$dir/elsewhere" or die $!;
write_file($svcfile, <<"EOF");
# conmgr's address, as an application's service file would name it
[cm]
host=127.0.0.1
port=$cmport
target_session_attrs=read-write
${\ join("\n", split / /, $common)}

[cm_wrong_port]
host=127.0.0.1
port=$wrong
${\ join("\n", split / /, $common)}

[direct]
host=$sockdir
port=$tport
${\ join("\n", split / /, $common)}

[nested]
host=127.0.0.1
service=cm

[noequals]
host=127.0.0.1
port
EOF
my $longfile = "$dir/elsewhere/long.conf";
write_file($longfile, "[toolong]\nhost=localhost\nport=$wrong\noptions=" . ('x' x 1000) . "\n");
my $sysdir = "$dir/sysconf";
mkdir $sysdir or die $!;
write_file("$sysdir/pg_service.conf", "[cm]\nhost=127.0.0.1\nport=$cmport\n"
	  . join("\n", split / /, $common) . "\n");

# cmapp's report of a connection with conninfo and environment %env.
sub cmapp_report
{
	my ($conninfo, %env) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'env', '-u', 'PGSERVICE', '-u', 'PGSERVICEFILE', '-u', 'PGPORT',
		(map { "$_=$env{$_}" } sort keys %env), $cmapp, 'connect', $conninfo ],
		'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(60));
	return "$out$err";
}

# The same options written in the connection string: the reference.
my $inline = cmapp_report("host=127.0.0.1 port=$cmport target_session_attrs=read-write $common");
like(fake_saw(), qr/^probe$/m, 'inline options: conmgr was probed');
is(trap_caught($trap), 1, 'inline options: the candidate conmgr named was reached');

my @cases = (
	[ 'service= in the connection string, PGSERVICEFILE elsewhere', 'service=cm', PGSERVICEFILE => $svcfile ],
	[ 'PGSERVICE and PGSERVICEFILE', '', PGSERVICE => 'cm', PGSERVICEFILE => $svcfile ],
	[ 'service= with PGSYSCONFDIR/pg_service.conf', 'service=cm', PGSYSCONFDIR => $sysdir ],
	[ 'the connection string wins over the service', "service=cm_wrong_port port=$cmport target_session_attrs=read-write",
		PGSERVICEFILE => $svcfile ],
	[ 'the service wins over the environment', 'service=cm', PGSERVICEFILE => $svcfile, PGPORT => $wrong ]);
for my $case (@cases)
{
	my ($what, $conninfo, %env) = @$case;
	my $report = cmapp_report($conninfo, %env);
	like(fake_saw(), qr/^probe$/m, "$what: conmgr was probed") or diag($report);
	is(trap_caught($trap), 1, "$what: the candidate conmgr named was reached");
	is($report, $inline, "$what: the same outcome as the options inline");
}

# A service whose host is not conmgr: connected there, as libpq would.
{
	my $report = cmapp_report('service=direct', PGSERVICEFILE => $svcfile);
	is(trap_caught($utrap), 1, 'a service naming a server: connected to it directly') or diag($report);
	is(fake_saw(), '', 'and conmgr was not asked');
	is($report, cmapp_report("host=$sockdir port=$tport $common"), 'as with the options inline');
	trap_caught($utrap);
}

# A service that names conmgr by hostaddr, and a candidate named by host
# alone: the candidate's address is looked up, not the service's hostaddr
# (127.0.0.2, where the second fake conmgr listens) used.
{
	my ($h, $port2) = fake_conmgr_start('127.0.0.2', "$dir/fake2.log", [ 0, $tport, 'localhost' ]);
	write_file("$dir/byaddr.conf", "[cm]\nhost=localhost\nhostaddr=127.0.0.2\nport=$port2\n"
		  . join("\n", split / /, $common) . "\n");
	my $report = cmapp_report('service=cm', PGSERVICEFILE => "$dir/byaddr.conf");
	is(trap_caught($trap), 1, 'a service with hostaddr, a candidate by name: the candidate was reached')
	  or diag($report);
	is($report, cmapp_report("host=localhost hostaddr=127.0.0.2 port=$port2 $common"),
		'as with the options inline');
	trap_caught($trap);
	$h->kill_kill;
	$h->finish;
}

# Services libpq cannot read: psql's error, with and without libpq-cm,
# byte for byte.
sub psql_err
{
	my ($conninfo, $with, %env) = @_;
	my ($out, $err) = ('', '');
	my @env = ('env', '-u', 'PGSERVICE', '-u', 'PGSERVICEFILE', (map { "$_=$env{$_}" } sort keys %env));
	if ($with)
	{
		my (undef, @pre) = foreign_env(LD_PRELOAD => $preload);
		push @env, @pre;
	}
	my $ok = IPC::Run::run([ @env, 'psql', '-X', '-w', '-At', '-c', 'SELECT 1', $conninfo ],
		'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(60));
	return ($ok ? 'exit 0' : 'failed') . ": $out$err";
}

for my $case ([ 'an unknown service', 'service=nosuch', PGSERVICEFILE => $svcfile ],
	[ 'an unknown service from PGSERVICE', '', PGSERVICE => 'nosuch', PGSERVICEFILE => $svcfile ],
	[ 'a missing PGSERVICEFILE', 'service=cm', PGSERVICEFILE => "$dir/missing.conf" ],
	[ 'a nested service=', 'service=nested', PGSERVICEFILE => $svcfile ],
	[ 'a line without =', 'service=noequals', PGSERVICEFILE => $svcfile ],
	[ 'a line too long', 'service=toolong', PGSERVICEFILE => $longfile ])
{
	my ($what, $conninfo, %env) = @$case;
	my $plain = psql_err($conninfo, 0, %env);
	# libpq 15.20 reads a line of any length; older ones refuse it
	my $expect = $conninfo eq 'service=toolong' ? qr/^failed: psql: error: .*(service|refused)/
	  : qr/^failed: psql: error: .*service/;
	like($plain, $expect, "$what: plain libpq fails, naming the service or its file")
	  or diag($plain);
	is(psql_err($conninfo, 1, %env), $plain, "$what: libpq-cm's error is libpq's, byte for byte");
	is(fake_saw(), '', "$what: conmgr was not asked");
	is(trap_caught($trap, $utrap), 0, "$what: nothing reached");
}

$fh->kill_kill;
$fh->finish;
done_testing();
