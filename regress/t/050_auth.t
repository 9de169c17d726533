# Test the shared key end to end, conmgr against the real watchdog: with
# the same key on both sides the heartbeat is up and authenticated; with a
# wrong key, or no key on one side, the instance is never routable and
# both sides say why.  Also the key file checks at conmgr start.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $top = cm_top();
my $keys = PostgreSQL::Test::Utils::tempdir();
for my $k ([ 'good', 'correct-horse-battery-staple' ], [ 'bad', 'incorrect-horse-battery-staple' ])
{
	PostgreSQL::Test::Utils::append_to_file("$keys/$k->[0].key", "$k->[1]\n");
	chmod 0600, "$keys/$k->[0].key";
}

my $wd = PostgreSQL::Test::Cluster::get_free_port();
my $node = PostgreSQL::Test::Cluster->new('keyed');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'watchdog'
watchdog.port = $wd
watchdog.listen_addresses = '127.0.0.1'
watchdog.auth_key_file = '$keys/good.key'
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION watchdog');

sub run_conmgr
{
	my ($key, $secs) = @_;
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $dir = PostgreSQL::Test::Utils::tempdir();
	chmod 0700, $dir;
	my $conf = "port = $port\nbackend_hostaddr0 = '127.0.0.1'\nwatchdog_port0 = $wd\n"
	  . "heartbeat_interval = 1\nheartbeat_timeout = 3\nlog_min_messages = LOG\n";
	$conf .= "heartbeat_key_file = '$key'\n" if defined $key;
	PostgreSQL::Test::Utils::append_to_file("$dir/conmgr.conf", $conf);
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start([ "$top/build/bin/conmgr", '-D', $dir ], '<', \undef, '>', \$out, '2>', \$err);
	return { h => $h, err => \$err, port => $port, dir => $dir };
}

sub routable
{
	my ($c) = @_;
	return `$top/build/regress/tools/cmresolve -p $c->{port} -t primary` =~ /candidate instance=0/;
}

my $good = run_conmgr("$keys/good.key");
ok(wait_until(sub { routable($good) }, 15), 'same key: the instance is routable')
  or diag(${ $good->{err} });
is($node->safe_psql('postgres', 'SELECT authenticated FROM pgx_stat_watchdog'), 't',
	'and the watchdog shows the session authenticated');
$good->{h}->signal('INT');
$good->{h}->finish;

my $bad = run_conmgr("$keys/bad.key");
ok(wait_until(sub { $bad->{h}->pump_nb; ${ $bad->{err} } =~ /authentication failed: the watchdog does not hold conmgr's key/ }, 15),
	'wrong key: conmgr refuses the watchdog');
ok(!routable($bad), 'and never routes to it');
$bad->{h}->signal('INT');
$bad->{h}->finish;

my $none = run_conmgr(undef);
ok(wait_until(sub { $none->{h}->pump_nb; ${ $none->{err} } =~ /the watchdog requires a shared key, and conmgr has no heartbeat_key_file/ }, 15),
	'no key in conmgr: says the watchdog requires one');
ok(!routable($none), 'and never routes to it');
$none->{h}->signal('INT');
$none->{h}->finish;
is($node->safe_psql('postgres', 'SELECT count(*) FROM pgx_stat_watchdog'), '0',
	'neither appeared in pgx_stat_watchdog');

# A keyed conmgr and a watchdog without a key.
$node->append_conf('postgresql.conf', "watchdog.auth_key_file = ''\n");
$node->restart;
my $nokey_wd = run_conmgr("$keys/good.key");
ok(wait_until(sub { $nokey_wd->{h}->pump_nb; ${ $nokey_wd->{err} } =~ /the watchdog has no key, and conmgr requires one/ }, 15),
	'watchdog without a key: a keyed conmgr refuses it');
ok(!routable($nokey_wd), 'and never routes to it');
$nokey_wd->{h}->signal('INT');
$nokey_wd->{h}->finish;

# Key file checks.
chmod 0644, "$keys/good.key";
my $open = run_conmgr("$keys/good.key");
$open->{h}->finish;
like(${ $open->{err} }, qr/heartbeat_key_file ".*good\.key" is accessible to group or others \(mode 0644\)\n.* HINT:  chmod 0600 it\./,
	'a key file others can read is refused');
PostgreSQL::Test::Utils::append_to_file("$keys/short.key", "tiny\n");
chmod 0600, "$keys/short.key";
my $short = run_conmgr("$keys/short.key");
$short->{h}->finish;
like(${ $short->{err} }, qr/must be 16 to 1023 bytes long/, 'a key that is too short is refused');

$node->stop;
done_testing();
