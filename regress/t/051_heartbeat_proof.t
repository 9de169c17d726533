# Test that conmgr, holding a heartbeat key, trusts a watchdog only on the
# proof it checked itself: a fake watchdog that answers HB_HELLO with an
# HB_WELCOME claiming authentication (flag 0x0001) without any challenge
# is refused, and so is one that sends a second HB_CHALLENGE after a good
# one; neither ever makes the instance routable.  The same fake proving
# the key once does (the control).
use strict;
use warnings;
use Digest::SHA qw(hmac_sha256);
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use CmTest::Conmgr;
use IO::Select;
use IO::Socket::INET;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $key = 'correct-horse-battery-staple';
my $fake = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
	Listen => 16, ReuseAddr => 1) or die $!;
my $fport = $fake->sockport;
my $cm = CmTest::Conmgr->new('cm', instances => [ { backend_hostaddr => "'127.0.0.1'", watchdog_port => $fport } ],
	conf => qq{
heartbeat_interval = 1
heartbeat_timeout = 3
heartbeat_connect_interval = 1
heartbeat_connect_timeout = 2
heartbeat_key_file = 'hb.key'
log_min_messages = LOG
});
my $dir = $cm->cmdata;
PostgreSQL::Test::Utils::append_to_file("$dir/hb.key", "$key\n");
chmod 0600, "$dir/hb.key";
$cm->start(wait => 0);
my $sel = IO::Select->new($fake);

sub routable
{
	return $cm->resolve('primary') =~ /candidate instance=0/;
}

# The next heartbeat connection from conmgr, and the nonce of its HB_HELLO.
sub next_hello
{
	my $c;
	my $deadline = time() + 10;
	while (!$c && time() < $deadline)
	{
		$c = $fake->accept if $sel->can_read(0.2);
	}
	die 'conmgr did not connect' unless $c;
	$c->blocking(1);
	my $hello = '';
	while (length($hello) < 54)
	{
		sysread($c, $hello, 54 - length($hello), length $hello) or die 'no HB_HELLO';
	}
	my ($type, $flags, $len, $magic, $minv, $maxv, $ival, $tout, $hflags) =
	  unpack('aCnNnnNNn', $hello);
	die "expected HB_HELLO, got $type" unless $type eq 'h';
	return ($c, substr($hello, 22, 32), $hflags);
}

# A good HB_CHALLENGE for nonce_c: the fake knows the key.
sub challenge
{
	my ($c, $nonce_c) = @_;
	my $nonce_w = join('', map { chr(int(rand(256))) } 1 .. 32);
	my $proof = hmac_sha256('conmgr-heartbeat-v1 watchdog' . $nonce_c . $nonce_w, $key);
	print $c pack('aCnn', 'c', 0, 70, 1) . $nonce_w . $proof;
	$c->flush;
	return $nonce_w;
}

# HB_WELCOME: version 1, the flags given, attrs 0, server 150000, sysid 42.
sub welcome
{
	my ($c, $flags) = @_;
	print $c pack('aCnnnNNNN', 'w', 0, 24, 1, $flags, 0, 150000, 0, 42);
	$c->flush;
}

# Whether the instance stays unroutable for $secs.
sub never_routable
{
	my ($secs) = @_;
	my $until = time() + $secs;
	while (time() < $until)
	{
		return 0 if routable();
		select(undef, undef, undef, 0.1);
	}
	return 1;
}

# 1. HB_WELCOME with the "authenticated" flag and no challenge.
{
	my ($c, $nonce_c, $hflags) = next_hello();
	is($hflags, 1, 'conmgr announces that it holds a key');
	welcome($c, 1);
	ok(never_routable(1.5), 'the instance never became routable');
	like(read_whole_frame($c) // '', qr/^X\0.{6}authentication required/s,
		'a WELCOME claiming authentication without a proof is answered with ERROR');
	ok($cm->wait_for_log(qr/could not establish heartbeat with instance 0 at 127\.0\.0\.1:$fport: authentication failed: the watchdog claimed authentication without proving the key/, 0, 5),
		'and the refusal is logged') or diag($cm->log_content);
	close $c;
}

# 2. A good challenge, then a second one.
{
	my ($c, $nonce_c) = next_hello();
	challenge($c, $nonce_c);
	my $auth = read_whole_frame($c) // '';
	is(substr($auth, 0, 1), 'a', 'conmgr answers a good challenge with HB_AUTH');
	challenge($c, $nonce_c);
	my $second = read_whole_frame($c) // '';
	like($second, qr/^X\0.{6}unexpected second HB_CHALLENGE/s,
		'a second challenge is answered with ERROR, not signed')
	  or diag('got type ' . substr($second, 0, 1));
	welcome($c, 1);
	ok($cm->wait_for_log(qr/could not establish heartbeat with instance 0 at 127\.0\.0\.1:$fport: protocol violation: a second HB_CHALLENGE/, 0, 5),
		'the second challenge is logged') or diag($cm->log_content);
	ok(never_routable(1.5), 'the instance never became routable');
	close $c;
}

unlike($cm->log_content, qr/instance 0 at \S+ is up/, 'conmgr never logged the instance up');

# 3. The control: the same fake, proving the key once, is accepted.
{
	my ($c, $nonce_c) = next_hello();
	challenge($c, $nonce_c);
	is(substr(read_whole_frame($c) // '', 0, 1), 'a', 'conmgr answers the challenge');
	welcome($c, 1);
	ok(wait_until(\&routable, 5), 'after a proof and HB_WELCOME the instance is routable');
	close $c;
}

$cm->stop;
done_testing();
