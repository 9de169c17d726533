# Test what a peer without a key may ask of the watchdog: heartbeat timings
# within the documented limits (1 to 3600 s, what conmgr.conf allows),
# at most watchdog.max_sessions_per_address registered sessions from one
# address, and registration only from watchdog.allowed_addresses when it
# is set; that the start-up line says when anyone may register; that a
# register-and-close loop writes a bounded number of register, loss and
# terminator lines; and that the loss of one of an address's sessions
# terminates nothing while another from that address is registered.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use IO::Socket::IP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

skip_under_asan('the watchdog extension runs in the server, which is not built with the sanitizers');

my ($node, $wdport) = watchdog_node('limits',
	"watchdog.listen_addresses = '127.0.0.1, ::1'\n");
my $pgport = $node->port;

like(slurp_file($node->logfile),
	qr/watchdog: listening on port $wdport for conmgr heartbeats \(\d+ sessions at most, 4 per address; no key and no watchdog\.allowed_addresses: any host that reaches this port may register\)/,
	'the start-up line says that any host that reaches the port may register');

sub view_rows
{
	return $node->safe_psql('postgres',
		'SELECT conmgr_addr, heartbeat_interval, heartbeat_timeout FROM pgx_stat_watchdog '
		  . 'ORDER BY conmgr_addr, conmgr_port');
}

sub reload
{
	my ($conf) = @_;
	my $offset = -s $node->logfile;
	$node->append_conf('postgresql.conf', $conf);
	$node->reload;
	# the watchdog says what is in force once it has the new settings
	$node->wait_for_log(qr/watchdog: listening on port $wdport /, $offset);
	return $offset;
}

# HB_HELLO without a key from $src (to ::1 from ::1); returns the first
# frame of the answer (or '' on end of file) and the socket.
sub hello
{
	my ($src, $interval, $timeout) = @_;
	my $s = IO::Socket::IP->new(PeerHost => $src eq '::1' ? '::1' : '127.0.0.1',
		PeerPort => $wdport, LocalHost => $src) or die "connect from $src: $@";
	my $body = pack('NnnNNn', 0x434D4842, 1, 1, $interval, $timeout, 0) . ("\x5a" x 32);
	print $s pack('aCn', 'h', 0, 4 + length $body) . $body;
	$s->flush;
	my $got = read_whole_frame($s, 10);
	die "no answer from the watchdog\n" unless defined $got;
	return ($got, $s);
}

# An answer as "welcome" or "code message".
sub answer
{
	my ($got) = @_;
	return 'end of file' if $got eq '';
	return 'welcome' if substr($got, 0, 1) eq 'w';
	my ($type, $flags, $len, $code, $slen) = unpack('aCnnn', $got);
	return "$code " . substr($got, 8, $slen) if $type eq 'X';
	return "unexpected $type";
}

######################################################################
# 1. Heartbeat timings: 1 to 3600 s each, refused with an error naming
#    the limit otherwise.
######################################################################
{
	my $offset = -s $node->logfile;
	my ($got, $s) = hello('127.0.0.2', 5, 3601);
	is(answer($got), '1 heartbeat_timeout 3601 s is out of range (1 to 3600 s)',
		'a timeout of 3601 s is refused, the error names the limit');
	close $s;
	($got, $s) = hello('127.0.0.2', 2147483647, 2147483647);
	is(answer($got), '1 heartbeat_interval 2147483647 s is out of range (1 to 3600 s)',
		'an interval of 2^31-1 s is refused');
	close $s;
	is(view_rows(), '', 'neither registered');
	ok($node->wait_for_log(
		qr/watchdog: closing unregistered connection from 127\.0\.0\.2:\d+: heartbeat_timeout 3601 s is out of range/,
		$offset), 'the refusal is logged');

	($got, my $max) = hello('127.0.0.2', 3600, 3600);
	is(answer($got), 'welcome', 'interval and timeout of 3600 s register');
	is(view_rows(), '127.0.0.2|3600|3600', 'the view shows them');
	close $max;
	ok(wait_until(sub { view_rows() eq '' }, 10), 'and the session ends');
}

######################################################################
# 2. watchdog.max_sessions_per_address.
######################################################################
{
	is($node->safe_psql('postgres', 'SHOW watchdog.max_sessions_per_address'), '4',
		'max_sessions_per_address is 4 by default');
	my @s;
	for my $i (1 .. 5)
	{
		my ($got, $s) = hello('127.0.0.2', 5, 60);
		push @s, [ answer($got), $s ];
	}
	is(join(', ', map { $_->[0] } @s),
		'welcome, welcome, welcome, welcome, 4 too many heartbeat sessions from this address',
		'four sessions from 127.0.0.2 register, the fifth is refused');
	my ($got, $other) = hello('127.0.0.3', 5, 60);
	is(answer($got), 'welcome', 'another address still registers');
	ok($node->wait_for_log(
		qr/watchdog: refusing conmgr at 127\.0\.0\.2:\d+: 4 heartbeat sessions from this address are registered \(watchdog\.max_sessions_per_address\)/),
		'the refusal is logged');
	close $_->[1] for @s;
	close $other;
	ok(wait_until(sub { view_rows() eq '' }, 10), 'the sessions end');

	my $offset = reload("watchdog.max_sessions_per_address = 1\n");
	like(substr(slurp_file($node->logfile), $offset), qr/\(\d+ sessions at most, 1 per address;/,
		'a reload applies a new cap and says so');
	my ($a1, $s1) = hello('127.0.0.2', 5, 60);
	my ($a2, $s2) = hello('127.0.0.2', 5, 60);
	is(answer($a1) . ', ' . answer($a2), 'welcome, 4 too many heartbeat sessions from this address',
		'with 1, the second session from an address is refused');
	close $s1;
	close $s2;
	ok(wait_until(sub { view_rows() eq '' }, 10), 'the session ends');
	reload("watchdog.max_sessions_per_address = 0\n");
	my @many = map { [ hello('127.0.0.2', 5, 60) ] } 1 .. 6;
	is(scalar(grep { answer($_->[0]) eq 'welcome' } @many), 6, 'with 0, there is no limit');
	close $_->[1] for @many;
	ok(wait_until(sub { view_rows() eq '' }, 10), 'the sessions end');
}

######################################################################
# 3. watchdog.allowed_addresses: a peer elsewhere cannot register, and so
#    cannot have its address's SQL sessions (a local pooler's, say)
#    terminated by a register-and-close.
######################################################################
{
	my $offset = reload("watchdog.allowed_addresses = '127.0.0.2/32, 10.0.0.0/8, fd00::/8'\n");
	like(substr(slurp_file($node->logfile), $offset),
		qr/no key, from watchdog\.allowed_addresses only\)/,
		'the watchdog says it takes registrations from watchdog.allowed_addresses only');
	my $sql = raw_pg_session('127.0.0.1', $pgport, 'local-pooler');
	my ($got, $s) = hello('127.0.0.1', 5, 60);
	like(answer($got), qr/^(?:3 address not allowed by watchdog\.allowed_addresses|end of file)$/,
		'127.0.0.1 is refused (' . answer($got) . ')');
	close $s;
	ok($node->wait_for_log(
		qr/watchdog: refusing connection from 127\.0\.0\.1: not in watchdog\.allowed_addresses/, $offset),
		'the refusal is logged');
	($got, $s) = hello('127.0.0.2', 5, 60);
	is(answer($got), 'welcome', '127.0.0.2 registers');
	is(view_rows(), '127.0.0.2|5|60', 'only 127.0.0.2 is in the view');
	close $s;
	usleep(500_000);
	is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'local-pooler'"), '1',
		'the SQL session from 127.0.0.1 was not terminated');
	close $sql;

	$offset = reload("watchdog.allowed_addresses = '127.0.0.0/30'\n");
	($got, $s) = hello('127.0.0.3', 5, 60);
	is(answer($got), 'welcome', 'a prefix covers the addresses in it (127.0.0.3 in 127.0.0.0/30)');
	close $s;
	($got, $s) = hello('127.0.0.4', 5, 60);
	isnt(answer($got), 'welcome', 'and no other (127.0.0.4)');
	close $s;
	($got, $s) = hello('::1', 5, 60);
	isnt(answer($got), 'welcome', 'nor ::1');
	close $s;

	reload("watchdog.allowed_addresses = '::1'\n");
	($got, $s) = hello('::1', 5, 60);
	is(answer($got), 'welcome', 'an IPv6 address: ::1 registers');
	close $s;
	($got, $s) = hello('127.0.0.1', 5, 60);
	isnt(answer($got), 'welcome', 'and 127.0.0.1 not');
	close $s;

	$offset = reload("watchdog.allowed_addresses = ''\n");
	like(substr(slurp_file($node->logfile), $offset),
		qr/any host that reaches this port may register\)/,
		'emptied, the watchdog says that any host may register again');
	($got, $s) = hello('127.0.0.1', 5, 60);
	is(answer($got), 'welcome', 'and 127.0.0.1 registers');
	close $s;

	# A bad list in postgresql.conf is refused by the reload, which says why.
	$offset = reload("watchdog.allowed_addresses = '127.0.0.2, db.example.com'\n"
		  . "watchdog.max_sessions_per_address = 3\n");
	like(substr(slurp_file($node->logfile), $offset),
		qr/invalid value for parameter "watchdog\.allowed_addresses": "127\.0\.0\.2, db\.example\.com".*\n.*DETAIL:  "db\.example\.com" is not an IPv4 or IPv6 address with an optional prefix length/,
		'a host name in allowed_addresses is reported with the item');
	is($node->safe_psql('postgres', 'SHOW watchdog.allowed_addresses'), '',
		'and the value in force is kept');
}

######################################################################
# 4. A register-and-close loop: 100 registrations, losses and
#    terminations from one address, a bounded number of lines.
######################################################################
{
	my $offset = reload("watchdog.allowed_addresses = ''\n"
		  . "watchdog.max_sessions_per_address = 0\n");
	my $n = 100;
	my $welcomes = 0;
	my @sql;
	for my $i (1 .. $n)
	{
		# a session for the terminator to end each time, like a local
		# pooler reconnecting
		push @sql, raw_pg_session('127.0.0.5', $pgport, 'loop');
		my ($got, $s) = hello('127.0.0.5', 5, 60);
		$welcomes++ if answer($got) eq 'welcome';
		close $s;
	}
	is($welcomes, $n, "$n registrations from 127.0.0.5, each closed at once");
	ok(wait_until(sub { view_rows() eq '' && $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'loop'") eq '0' }, 15),
		'all lost, and every SQL session from 127.0.0.5 terminated');
	usleep(300_000);
	my $log = substr(slurp_file($node->logfile), $offset);
	my $reg = () = $log =~ /conmgr at 127\.0\.0\.5:\d+ registered/g;
	my $lost = () = $log =~ /lost heartbeat session with conmgr at 127\.0\.0\.5:/g;
	my $term = () = $log =~ /terminating backend process \d+ connected from 127\.0\.0\.5:/g;
	note("$n registrations: $reg register lines, $lost loss lines, $term termination lines");
	ok($reg >= 1 && $reg <= 10, "at most 10 register lines ($reg)");
	ok($lost >= 1 && $lost <= 10, "at most 10 loss lines ($lost)");
	ok($term >= 1 && $term <= 30, "the terminations of at most 10 losses logged ($term lines)");
	close $_ for @sql;
}

######################################################################
# 5. Two registered sessions from one address: losing one terminates
#    nothing (the address still has a live conmgr); losing the last does.
######################################################################
{
	my $offset = -s $node->logfile;
	my $sql = raw_pg_session('127.0.0.6', $pgport, 'shared');
	my ($a1, $s1) = hello('127.0.0.6', 5, 60);
	my ($a2, $s2) = hello('127.0.0.6', 5, 60);
	is(answer($a1) . ', ' . answer($a2), 'welcome, welcome', 'two sessions from 127.0.0.6');
	close $s1;
	ok($node->wait_for_log(
		qr/lost heartbeat session with conmgr at 127\.0\.0\.6:\d+: connection closed by peer\n.*DETAIL:  SQL sessions from this host are not terminated: 1 other heartbeat sessions from this address are registered/,
		$offset), 'the first loss says why it terminates nothing');
	usleep(500_000);
	is($node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'shared'"), '1',
		'the SQL session from 127.0.0.6 survived the first loss');
	close $s2;
	ok(wait_until(sub { $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'shared'") eq '0' }, 5),
		'the loss of the last one terminates it');
	close $sql;
}

$node->stop;
done_testing();
