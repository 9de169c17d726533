# Test that the heartbeat key (heartbeat_key_file) is only in the memory of
# the processes that use it: the supervisor (which starts heartbeat roles
# again after a crash) and the heartbeat roles.  The listener, which
# applications and local users talk to, and the logger, which writes what
# peers send, are forked with the supervisor's memory and must wipe it,
# so that a leak of their memory does not leak the key.
#
# Memory is read as the same user may, through /proc/PID/mem; finding the
# key in the supervisor and the heartbeat role shows the search works.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use CmProc;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $cm = conmgr_one(heartbeat_key_file => "'heartbeat.key'");
my ($dir, $cmport) = ($cm->cmdata, $cm->port);
my $key = join('', map { sprintf('%02x', int(rand(256))) } 1 .. 24);
PostgreSQL::Test::Utils::append_to_file("$dir/heartbeat.key", "$key\n");
chmod 0600, "$dir/heartbeat.key";

$cm->start(wait => 0);
ok($cm->wait_for_log(qr/conmgr ready/, 0, 30), 'conmgr runs with a key') or diag($cm->log_content);
my %pid = (supervisor => (`cat $dir/conmgr.pid` =~ /^(\d+)/)[0]);
for my $role ('logger', "listener :$cmport", 'heartbeat 0 ')
{
	my ($name) = $role =~ /^(\w+)/;
	ok(wait_until(sub { $pid{$name} = role_pid($dir, $role) }, 10), "$name runs");
}

for my $name (qw(supervisor heartbeat))
{
	is(proc_memory_has($pid{$name}, $key), 1, "the key is in the $name\'s memory, which uses it");
}
for my $name (qw(listener logger))
{
	is(proc_memory_has($pid{$name}, $key), 0, "the key is not in the $name\'s memory");
}

$cm->stop;
like($cm->log_content, qr/conmgr stopped/, 'conmgr stops');
done_testing();
