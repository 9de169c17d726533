# Test that conmgr spreads read-only connections over two standbys: the
# first candidate alternates between them, and each answer lists both.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $resolve = cm_top() . '/build/regress/tools/cmresolve';
my @wd = map { PostgreSQL::Test::Cluster::get_free_port() } 0 .. 2;
my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf',
	"shared_preload_libraries = 'watchdog'\nwatchdog.port = $wd[0]\nwatchdog.listen_addresses = '127.0.0.1'\n");
$primary->start;
$primary->backup('b');
my @standbys;
for my $i (1, 2)
{
	my $s = PostgreSQL::Test::Cluster->new("standby$i");
	$s->init_from_backup($primary, 'b', has_streaming => 1);
	$s->append_conf('postgresql.conf', "watchdog.port = $wd[$i]\n");
	$s->start;
	push @standbys, $s;
}

my $cmport = PostgreSQL::Test::Cluster::get_free_port();
my $dir = PostgreSQL::Test::Utils::tempdir();
chmod 0700, $dir;
my $conf = "port = $cmport\nheartbeat_interval = 1\nheartbeat_timeout = 3\n";
for my $i (0 .. 2)
{
	$conf .= "backend_hostaddr$i = '127.0.0.1'\nwatchdog_port$i = $wd[$i]\n";
}
PostgreSQL::Test::Utils::append_to_file("$dir/conmgr.conf", $conf);
my ($out, $err) = ('', '');
my $cm = IPC::Run::start([ cm_top() . '/build/bin/conmgr', '-D', $dir ], '<', \undef, '>', \$out, '2>', \$err);

sub order
{
	my ($target) = @_;
	my $o = `$resolve -p $cmport -t $target`;
	return join(',', $o =~ /candidate instance=(\d+)/g);
}

ok(wait_until(sub { order('any') =~ /^\d,\d,\d$/ }, 30), 'three instances routable') or diag($err);
my %first;
for (1 .. 20)
{
	my $o = order('read-only');
	like($o, qr/^(1,2|2,1)$/, "read-only offers both standbys ($o)") if $_ <= 2;
	my ($f) = split /,/, $o;
	$first{$f}++;
}
note("first read-only candidate over 20 requests: standby 1 x $first{1}, standby 2 x $first{2}");
ok($first{1} >= 8 && $first{2} >= 8, 'load spread over both standbys');
is(order('read-write'), '0', 'read-write stays on the primary');
like(order('prefer-standby'), qr/^(1,2|2,1),0$/, 'prefer-standby: both standbys, then the primary');

$cm->signal('INT');
$cm->finish;
$_->stop for @standbys;
$primary->stop;
done_testing();
