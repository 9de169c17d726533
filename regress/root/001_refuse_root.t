# Test, as root, that conmgr and the tests' own set-up refuse what must not
# run as root.  run-tests runs regress/root/*.t as root, before it hands
# everything else to the unprivileged test user.
use strict;
use warnings;
use File::Temp qw(tempdir);
use FindBin;
use IPC::Run qw(run);
use Test::More;

plan skip_all => 'needs root' if $> != 0;

my $top = "$FindBin::RealBin/../..";
my $dir = tempdir(CLEANUP => 1);
chmod 0700, $dir;
open my $f, '>', "$dir/conmgr.conf" or die $!;
print $f "backend_host0 = 'localhost'\n";
close $f;

my ($out, $err) = ('', '');
run([ "$top/build/bin/conmgr", '-D', $dir ], '<', \undef, '>', \$out, '2>', \$err);
is($? >> 8, 1, 'conmgr as root: exit 1');
like($err, qr/conmgr: cannot be run as root/, 'and says why');
ok(!-e "$dir/conmgr.pid", 'before touching the directory');

run([ "$top/build/bin/conmgr", '-D', $dir, '-n' ], '<', \undef, '>', \$out, '2>', \$err);
is($? >> 8, 0, 'checking a configuration (-n) is allowed as root');
done_testing();
