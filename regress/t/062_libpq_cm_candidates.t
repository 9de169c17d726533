# Test that libpq-cm follows only a candidate whose host is what its
# addr_kind says: a host name or address (kind 0), a numeric address
# (kind 1).  A "conmgr" (regress/tools/fake_conmgr.pl, run by this user, so
# trusted on loopback) names each bad host in turn; the application must
# fail with an error naming it, and never reach the places the host would
# make libpq go: a TCP port (through a host list, or a name given as an
# address), a Unix socket directory, an abstract socket.  A good numeric
# candidate is followed (the control that the traps catch what comes).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use File::Temp qw(tempdir);
use IO::Socket::UNIX;
use IPC::Run;
use Test::More;

my $top = cm_top();
my $cmapp = "$top/build/regress/tools/cmapp";
my $dir = tempdir(CLEANUP => 1);

# The traps: a TCP port, a socket directory for that port, an abstract
# socket of the same name as libpq would look for.
my ($trap, $utrap, $sockdir) = tcp_unix_traps($dir);
my $tport = $trap->sockport;
my $atrap = IO::Socket::UNIX->new(Local => "\0cmtrap$$/.s.PGSQL.$tport", Listen => 16)
  or die "listen on an abstract socket: $!";

# How many connections the traps took since the last call.
sub caught
{
	return trap_caught($trap, $utrap, $atrap);
}

# Serve one candidate with the fake conmgr, connect through it; the
# application's report.
sub through_fake
{
	my ($kind, $host) = @_;
	my $log = "$dir/fake.log";
	my ($h, $port) = fake_conmgr_start('127.0.0.1', $log, [ $kind, $tport, $host ]);
	my ($aout, $aerr) = ('', '');
	IPC::Run::run([ $cmapp, 'connect', "host=127.0.0.1 port=$port dbname=postgres connect_timeout=3 sslmode=disable gssencmode=disable" ],
		'<', \undef, '>', \$aout, '2>', \$aerr, IPC::Run::timeout(60));
	$h->kill_kill;
	$h->finish;
	return "$aout$aerr";
}

my @bad = (
	[ 0, "127.0.0.1,127.0.0.1", 'a host list' ],
	[ 0, $sockdir, 'a socket directory' ],
	[ 0, "\@cmtrap$$", 'an abstract socket' ],
	[ 0, "localhost\n", 'a newline' ],
	[ 0, "local\x01host", 'a control character' ],
	[ 0, "app\@localhost", 'an at sign' ],
	[ 0, "127.0.0.1 ", 'a blank' ],
	[ 0, ('a' x 64) . '.localhost', 'a label over 63 characters' ],
	[ 1, 'localhost', 'a host name as a numeric address' ],
	[ 1, '127.0.0.1,127.0.0.1', 'a host list as a numeric address' ]);
caught();
for my $case (@bad)
{
	my ($kind, $host, $what) = @$case;
	my $report = through_fake($kind, $host);
	like($report, qr/^failed message=.*conmgr named an invalid candidate host "[^"]*" for instance 0: not a (host name or address|numeric address)/m,
		"$what (addr_kind $kind): refused, and the error says so") or diag($report);
	is(caught(), 0, "$what: nothing reached");
}

# The control: a numeric candidate on the trap's port is followed.
my $report = through_fake(1, '127.0.0.1');
unlike($report, qr/invalid candidate host/, 'a numeric address (addr_kind 1) is a valid candidate') or diag($report);
is(caught(), 1, 'and the application went there');
$report = through_fake(0, 'localhost');
unlike($report, qr/invalid candidate host/, 'a host name (addr_kind 0) is a valid candidate') or diag($report);
ok(caught() >= 1, 'and the application went there');

done_testing();
