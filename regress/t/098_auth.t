# The shared key against peers that do not hold it (docs/watchdog.md,
# "Authentication"; docs/protocol.md 3.2).  With the key on both sides:
#
# 1. a raw client that holds the key registers (the control), and a real
#    conmgr registers authenticated;
# 2. peers from 127.0.0.2 that do not hold it — no key, a wrong key, an
#    HB_HELLO and then a disconnect, an HB_HELLO and then a stall past the
#    handshake limit, a forged proof followed by heartbeats — never appear
#    in pgx_stat_watchdog and never make the terminator end the SQL
#    session open from 127.0.0.2;
# 3. wrong keys are logged once per source address: 20 attempts from one
#    address give one line, one attempt from each of 60 addresses gives at
#    most 50 lines (the budget for all sources);
# 4. the key lives in files only: the watchdog refuses a key file group or
#    others can read and starts once it is fixed, without a server
#    restart; conmgr refuses one too; no process's command line, no
#    setting, no configuration dump shows the key;
# 5. without a key, what the manual says: any host registers
#    (authenticated = false) and its loss ends its host's sessions; the
#    server says so at start and the manual warns about it.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use CmTest::Conmgr;
use Digest::SHA qw(hmac_sha256);
use IO::Select;
use IO::Socket::INET;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $top = cm_top();
my $keys = PostgreSQL::Test::Utils::tempdir();
chmod 0700, $keys;
my $KEY = 'a-shared-key-' . join('', map { ('a' .. 'z')[ int(rand(26)) ] } 1 .. 20);
my $BADKEY = 'not-the-key-' . join('', map { ('a' .. 'z')[ int(rand(26)) ] } 1 .. 20);
PostgreSQL::Test::Utils::append_to_file("$keys/wd.key", "$KEY\n");
PostgreSQL::Test::Utils::append_to_file("$keys/bad.key", "$BADKEY\n");
chmod 0600, "$keys/wd.key", "$keys/bad.key";

my ($node, $wdport) = watchdog_node('auth', "watchdog.auth_key_file = '$keys/wd.key'\n");

sub q1 { return $node->safe_psql('postgres', $_[0]); }

sub view_hosts
{
	return q1("SELECT coalesce(string_agg(host(conmgr_addr) || ':' || CASE WHEN authenticated THEN 't' ELSE 'f' END, ',' "
		  . "ORDER BY conmgr_addr), '') FROM pgx_stat_watchdog");
}

# ---- a raw heartbeat client, to misbehave in every way ----

sub hb_connect
{
	my ($src) = @_;
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $wdport,
		LocalAddr => $src, Timeout => 5) or die "connect from $src: $!";
	return $s;
}

sub hello_frame
{
	my ($nonce, $flags) = @_;
	my $body = pack('NnnNNn', 0x434D4842, 1, 1, 1, 3, $flags) . $nonce;
	return pack('aCn', 'h', 0, 4 + length $body) . $body;
}

# The next frame as (type, body); () on end of file or after $secs.
sub read_frame
{
	my ($s, $secs) = @_;
	my $buf = '';
	my $sel = IO::Select->new($s);
	my $deadline = time() + ($secs // 5);
	while (length($buf) < 4 || length($buf) < unpack('n', substr($buf, 2, 2)))
	{
		my $left = $deadline - time();
		return () if $left <= 0 || !$sel->can_read($left);
		return () unless sysread($s, $buf, 1024, length $buf);
	}
	return (substr($buf, 0, 1), substr($buf, 4, unpack('n', substr($buf, 2, 2)) - 4));
}

# HB_HELLO with the has-key flag, then HB_AUTH computed with $key; returns
# (what happened, socket): "welcome", "error CODE MESSAGE" or "eof".
sub auth_attempt
{
	my ($src, $key) = @_;
	my $s = hb_connect($src);
	my $nc = join('', map { chr(int(rand(256))) } 1 .. 32);
	syswrite($s, hello_frame($nc, 1));
	my ($t, $b) = read_frame($s);
	return ('no challenge', $s) unless defined $t && $t eq 'c';
	my (undef, $nw) = unpack('n a32 a32', $b);
	syswrite($s, pack('aCn', 'a', 0, 36) . hmac_sha256("conmgr-heartbeat-v1 conmgr$nc$nw", $key));
	($t, $b) = read_frame($s);
	return ('eof', $s) unless defined $t;
	return ('welcome', $s) if $t eq 'w';
	if ($t eq 'X')
	{
		my ($code, $len) = unpack('nn', $b);
		return ("error $code " . substr($b, 4, $len), $s);
	}
	return ("unexpected $t", $s);
}

sub log_count
{
	my ($re, $offset) = @_;
	my $n = () = slurp_file($node->logfile, $offset) =~ /$re/g;
	return $n;
}

######################################################################
# 1. Who holds the key registers.
######################################################################
{
	my ($what, $s) = auth_attempt('127.0.0.1', $KEY);
	is($what, 'welcome', 'a raw client with the key registers (the control for what follows)');
	is(view_hosts(), '127.0.0.1:t', 'pgx_stat_watchdog shows it authenticated');
	close $s;
	ok(wait_until(sub { view_hosts() eq '' }, 5), 'and forgets it once it is gone');
}

my $cm = CmTest::Conmgr->new('cm', instances => [ [ $node, $wdport ] ], conf => qq{
listen_addresses = '127.0.0.1'
heartbeat_interval = 1
heartbeat_timeout = 3
heartbeat_key_file = '$keys/wd.key'
log_min_messages = LOG
});
my ($cmport, $cmdata) = ($cm->port, $cm->cmdata);
# The check below waits for conmgr's registration.
$cm->start(wait => 0);
ok(wait_until(sub { view_hosts() eq '127.0.0.1:t' }, 15), 'conmgr registers, authenticated')
  or diag($cm->log_content);

######################################################################
# 2. Peers without the key, from 127.0.0.2, where an SQL session is open.
######################################################################
{
	my $victim = raw_pg_session('127.0.0.2', $node->port, 'bystander');
	my $offset = -s $node->logfile;
	my $seen_in_view = 0;
	my $watch = sub { $seen_in_view++ if view_hosts() =~ /127\.0\.0\.2/; };

	my $nokey = hb_start(port => $wdport, bind => '127.0.0.2', interval => 1, timeout => 3);
	ok(hb_wait($nokey, qr/challenge without key/, 10), 'a client without the key cannot answer the challenge');
	$watch->();
	my $badkey = hb_start(port => $wdport, bind => '127.0.0.2', interval => 1, timeout => 3,
		key => "$keys/bad.key");
	ok(hb_wait($badkey, qr/challenge bad-proof/, 10), 'a client with a wrong key finds the watchdog\'s proof wrong');
	$watch->();

	my ($what, $s) = auth_attempt('127.0.0.2', $BADKEY);
	is($what, 'error 3 authentication failed', 'a wrong proof gets ERROR authentication failed');
	close $s;
	$watch->();

	# A forged proof, then heartbeats as if registered.
	($what, $s) = auth_attempt('127.0.0.2', $BADKEY);
	syswrite($s, pack('aCnNN', 'b', 0, 12, 1, 0)) for 1 .. 3;
	close $s;

	# HB_HELLO, then gone before HB_AUTH; and HB_HELLO, then silence.
	$s = hb_connect('127.0.0.2');
	syswrite($s, hello_frame('x' x 32, 1));
	my ($t) = read_frame($s);
	is($t, 'c', 'HB_HELLO is answered with HB_CHALLENGE');
	close $s;
	my $staller = hb_connect('127.0.0.2');
	syswrite($staller, hello_frame('y' x 32, 1));
	my $t0 = time();
	read_frame($staller);
	$watch->();
	# Connect and close, and garbage.
	close hb_connect('127.0.0.2');
	my $g = hb_connect('127.0.0.2');
	syswrite($g, "garbage!" x 8);
	close $g;

	# The staller is closed by the handshake limit.
	my @rest = read_frame($staller, 15);
	my $stalled = time() - $t0;
	ok(!@rest && $stalled > 9 && $stalled < 11,
		sprintf('a peer that stalls after HB_HELLO is closed after the 10 s handshake limit (%.1f s)', $stalled));
	close $staller;
	$watch->();
	hb_stop($nokey);
	hb_stop($badkey);
	usleep(300_000);

	is($seen_in_view, 0, 'no unauthenticated peer ever appeared in pgx_stat_watchdog');
	is(q1("SELECT count(*) FROM pg_stat_activity WHERE client_addr = '127.0.0.2'"), '1',
		'the SQL session from 127.0.0.2 was never terminated');
	my $log = slurp_file($node->logfile, $offset);
	unlike($log, qr/terminating backend process \d+ connected from 127\.0\.0\.2|lost heartbeat session with conmgr at 127\.0\.0\.2|conmgr at 127\.0\.0\.2:\d+ registered/,
		'nothing from 127.0.0.2 registered, was lost or caused a termination');
	is(view_hosts(), '127.0.0.1:t', 'the real conmgr is still registered');
	like(`$top/build/regress/tools/cmresolve -p $cmport -t primary`, qr/candidate instance=0/,
		'and still routes to the instance');
	close $victim;
}

######################################################################
# 3. Wrong keys are logged once per source address, within a budget.
######################################################################
{
	my $offset = -s $node->logfile;
	for (1 .. 20)
	{
		my ($what, $s) = auth_attempt('127.0.0.3', $BADKEY);
		close $s;
	}
	for my $i (1 .. 60)
	{
		my ($what, $s) = auth_attempt("127.0.1.$i", $BADKEY);
		close $s;
	}
	my ($what, $s) = auth_attempt('127.0.0.1', $KEY);
	is($what, 'welcome', 'after 80 wrong keys, the right one still registers');
	close $s;
	usleep(200_000);
	is(log_count(qr/authentication of conmgr at 127\.0\.0\.3:\d+ failed: wrong key/, $offset), 1,
		'20 wrong keys from one address: one log line');
	my $many = log_count(qr/authentication of conmgr at 127\.0\.1\.\d+:\d+ failed/, $offset);
	ok($many >= 40 && $many <= 49,
		"one wrong key from each of 60 addresses: $many lines (at most 50 a minute from all addresses)");
}

######################################################################
# 4. Key files, and where the key never shows.
######################################################################
{
	my @cmdlines;
	for my $f (glob '/proc/[0-9]*/cmdline')
	{
		open my $fh, '<', $f or next;
		local $/;
		my $c = <$fh> // '';
		$c =~ s/\0/ /g;
		push @cmdlines, $c;
	}
	my $cmdlines = join("\n", @cmdlines);
	my $ours = grep { /^(?:postgres: auth|conmgr: )|bin\/postgres / } @cmdlines;
	ok($ours >= 6, "$ours postgres and conmgr processes among those looked at");
	unlike($cmdlines, qr/\Q$KEY\E/, 'no command line holds the key');
	unlike(`ps -eo args`, qr/\Q$KEY\E/, 'ps shows it nowhere');
	is(q1('SHOW watchdog.auth_key_file'), "$keys/wd.key", 'the setting is the file\'s name');
	is(q1("SELECT count(*) FROM pg_settings WHERE setting LIKE '%$KEY%' OR reset_val LIKE '%$KEY%'"), '0',
		'and no setting holds the key');
	my $dump = `$top/build/bin/conmgr -D $cmdata -n -v 2>&1`;
	like($dump, qr/heartbeat_key_file = '\Q$keys\E\/wd\.key'/, 'conmgr\'s configuration dump names the key file');
	unlike($dump, qr/\Q$KEY\E/, 'but not the key');
	unlike(`$top/build/bin/conmgr --help 2>&1`, qr/key/i, 'conmgr takes no key on its command line');

	# conmgr refuses a key file its group can read.
	chmod 0640, "$keys/bad.key";
	my $d2 = PostgreSQL::Test::Utils::tempdir();
	chmod 0700, $d2;
	PostgreSQL::Test::Utils::append_to_file("$d2/conmgr.conf",
		"port = " . PostgreSQL::Test::Cluster::get_free_port()
		  . "\nbackend_hostaddr0 = '127.0.0.1'\nwatchdog_port0 = $wdport\nheartbeat_key_file = '$keys/bad.key'\n");
	my ($o, $e) = ('', '');
	IPC::Run::run([ "$top/build/bin/conmgr", '-D', $d2 ], '<', \undef, '>', \$o, '2>', \$e,
		IPC::Run::timeout(10));
	like($e, qr/heartbeat_key_file ".*bad\.key" is accessible to group or others \(mode 0640\)/,
		'conmgr refuses a key file its group can read (0640)');

	# The watchdog refuses one too, and starts once it is fixed, with no
	# server restart (the worker retries every 5 s).
	$cm->stop;
	chmod 0640, "$keys/wd.key";
	my $offset = -s $node->logfile;
	$node->restart;
	ok($node->wait_for_log(qr/watchdog: key file ".*wd\.key" is accessible to group or others/, $offset),
		'the watchdog refuses a key file its group can read (0640)');
	my $nowd = hb_start(port => $wdport, interval => 1, timeout => 3, key => "$keys/wd.key");
	ok(!hb_wait($nowd, qr/welcome/, 1), 'and does not listen meanwhile');
	hb_stop($nowd);
	my $start_time = q1('SELECT pg_postmaster_start_time()');
	chmod 0600, "$keys/wd.key";
	my $c;
	ok(wait_until(sub {
		hb_stop($c) if $c;
		$c = hb_start(port => $wdport, interval => 1, timeout => 3, key => "$keys/wd.key");
		hb_wait($c, qr/welcome version=3 attrs=0 flags=1/, 1) }, 15),
		'once the file is 0600, the worker starts by itself and a keyed client registers');
	hb_stop($c);
	is(q1('SELECT pg_postmaster_start_time()'), $start_time, 'without a server restart');
}

######################################################################
# 5. No key: what the manual says.
######################################################################
{
	$node->append_conf('postgresql.conf', "watchdog.auth_key_file = ''\n");
	my $offset = -s $node->logfile;
	$node->restart;
	ok($node->wait_for_log(qr/watchdog: listening on port $wdport for conmgr heartbeats \(\d+ sessions at most, \d+ per address; no key and no watchdog\.allowed_addresses: any host that reaches this port may register\)/, $offset),
		'without a key the server log says any host may register');
	my $victim = raw_pg_session('127.0.0.2', $node->port, 'bystander');
	my $c = hb_start(port => $wdport, bind => '127.0.0.2', interval => 1, timeout => 3);
	ok(hb_wait($c, qr/welcome version=3 attrs=0 flags=0/, 10), 'any client registers, unauthenticated');
	is(view_hosts(), '127.0.0.2:f', 'pgx_stat_watchdog shows it with authenticated = false');
	hb_stop($c);
	ok(wait_until(sub { q1("SELECT count(*) FROM pg_stat_activity WHERE client_addr = '127.0.0.2'") eq '0' }, 5),
		'and its loss terminates its host\'s SQL sessions, as the manual says');
	close $victim;
	my $doc = slurp_file("$top/docs/watchdog.md");
	like($doc, qr/Without a key, any host that can reach `watchdog\.port` can register/,
		'docs/watchdog.md warns about running without a key');
}

$node->stop;
done_testing();
