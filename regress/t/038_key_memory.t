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
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $top = cm_top();
my ($dir, $cmport) = conmgr_dir(heartbeat_key_file => "'heartbeat.key'");
my $key = join('', map { sprintf('%02x', int(rand(256))) } 1 .. 24);
PostgreSQL::Test::Utils::append_to_file("$dir/heartbeat.key", "$key\n");
chmod 0600, "$dir/heartbeat.key";

my ($out, $err) = ('', '');
my $cm = IPC::Run::start([ "$top/build/bin/conmgr", '-D', $dir ], '<', \undef, '>', \$out, '2>', \$err);
ok(wait_until(sub { $cm->pump_nb; $err =~ /conmgr ready/ }, 30), 'conmgr runs with a key') or diag($err);
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

$cm->signal('INT');
$cm->finish;
like($err, qr/conmgr stopped/, 'conmgr stops');
done_testing();
