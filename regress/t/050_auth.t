# Test the shared key end to end, conmgr against the real watchdog: with
# the same key on both sides the heartbeat is up and authenticated; with a
# wrong key, or no key on one side, the instance is never routable and
# both sides say why.  Also the key file checks at conmgr start.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use CmTest::Conmgr;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $keys = PostgreSQL::Test::Utils::tempdir();
for my $k ([ 'good', 'correct-horse-battery-staple' ], [ 'bad', 'incorrect-horse-battery-staple' ])
{
	PostgreSQL::Test::Utils::append_to_file("$keys/$k->[0].key", "$k->[1]\n");
	chmod 0600, "$keys/$k->[0].key";
}

my ($node, $wd) = watchdog_node('keyed', "watchdog.auth_key_file = '$keys/good.key'\n");

# A conmgr (its start not waited for: some are refused) with $key or none.
my $n_conmgr = 0;
sub run_conmgr
{
	my ($key) = @_;
	my $conf = "heartbeat_interval = 1\nheartbeat_timeout = 3\nlog_min_messages = LOG\n";
	$conf .= "heartbeat_key_file = '$key'\n" if defined $key;
	my $cm = CmTest::Conmgr->new('cm' . $n_conmgr++,
		instances => [ { backend_hostaddr => "'127.0.0.1'", watchdog_port => $wd } ],
		conf => $conf);
	$cm->start(wait => 0);
	return $cm;
}

sub routable
{
	my ($c) = @_;
	return $c->resolve('primary') =~ /candidate instance=0/;
}

my $good = run_conmgr("$keys/good.key");
ok(wait_until(sub { routable($good) }, 15), 'same key: the instance is routable')
  or diag($good->log_content);
is($node->safe_psql('postgres', 'SELECT authenticated FROM pgx_stat_watchdog'), 't',
	'and the watchdog shows the session authenticated');
$good->stop;

my $bad = run_conmgr("$keys/bad.key");
ok($bad->wait_for_log(qr/authentication failed: the watchdog does not hold conmgr's key/, 0, 15),
	'wrong key: conmgr refuses the watchdog');
ok(!routable($bad), 'and never routes to it');
$bad->stop;

my $none = run_conmgr(undef);
ok($none->wait_for_log(qr/the watchdog requires a shared key, and conmgr has no heartbeat_key_file/, 0, 15),
	'no key in conmgr: says the watchdog requires one');
ok(!routable($none), 'and never routes to it');
$none->stop;
is($node->safe_psql('postgres', 'SELECT count(*) FROM pgx_stat_watchdog'), '0',
	'neither appeared in pgx_stat_watchdog');

# A keyed conmgr and a watchdog without a key.
$node->append_conf('postgresql.conf', "watchdog.auth_key_file = ''\n");
$node->restart;
my $nokey_wd = run_conmgr("$keys/good.key");
ok($nokey_wd->wait_for_log(qr/the watchdog has no key, and conmgr requires one/, 0, 15),
	'watchdog without a key: a keyed conmgr refuses it');
ok(!routable($nokey_wd), 'and never routes to it');
$nokey_wd->stop;

# Key file checks.
chmod 0644, "$keys/good.key";
my $open = run_conmgr("$keys/good.key");
$open->wait_exit($PostgreSQL::Test::Utils::timeout_default);
like($open->log_content, qr/heartbeat_key_file ".*good\.key" is accessible to group or others \(mode 0644\)\n.* HINT:  chmod 0600 it\./,
	'a key file others can read is refused');
PostgreSQL::Test::Utils::append_to_file("$keys/short.key", "tiny\n");
chmod 0600, "$keys/short.key";
my $short = run_conmgr("$keys/short.key");
$short->wait_exit($PostgreSQL::Test::Utils::timeout_default);
like($short->log_content, qr/must be 16 to 1023 bytes long/, 'a key that is too short is refused');

$node->stop;
done_testing();
