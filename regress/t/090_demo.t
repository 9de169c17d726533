# Test that the README's main job, tools/demo (what `make demo` runs after
# installing packages and building), works from the built tree: both
# targets land where asked, the read-write connection after the failover
# lands on the promoted standby, and it cleans up after itself.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use IPC::Run;
use Test::More;

my ($out, $err) = ('', '');
my $ok = IPC::Run::run([ cm_top() . '/tools/demo' ], '<', \undef, '>', \$out, '2>', \$err,
	IPC::Run::timeout(120));
ok($ok, 'tools/demo exits 0') or diag("$out\n$err");
my @landed = $out =~ /landed on port (\d+), (the primary|a standby)/g;
is(scalar(@landed), 6, 'three psql connections through conmgr reported where they landed') or diag($out);
my ($p1, $r1, $p2, $r2, $p3, $r3) = @landed;
is($r1, 'the primary', 'read-write: the primary');
is($r2, 'a standby', 'read-only: the standby');
isnt($p1, $p2, 'on different servers');
is("$p3 $r3", "$p2 the primary", 'after the failover, read-write lands on the promoted standby');
like($out, qr/heartbeat\s.*\n.*\bdown\b.*\n.*\bup\s+primary/s, 'cm_ctl status shows the old primary down, the new one up');
my ($work) = $out =~ m{private prefix: (/tmp/conmgr-demo\.\w+)/prefix};
ok(defined $work && !-e $work, 'the scratch directory is gone');
done_testing();
