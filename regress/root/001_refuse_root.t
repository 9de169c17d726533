# Test, as root, that conmgr and the tests' own set-up refuse what must not
# run as root, and that conmgr refuses a directory another user owns.
# run-tests runs regress/root/*.t as root, before it hands everything else
# to the unprivileged test user.
use strict;
use warnings;
use File::Copy qw(copy);
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

# A directory owned by someone else is refused, whatever its mode.
SKIP:
{
	my ($uid, $gid) = (getpwnam('nobody'))[ 2, 3 ];
	skip 'needs the user "nobody"', 3 unless defined $uid;
	my $base = tempdir(CLEANUP => 1);
	chmod 0755, $base;
	copy("$top/build/bin/conmgr", "$base/conmgr") or die $!;
	chmod 0755, "$base/conmgr";
	mkdir "$base/cm", 0700 or die $!;
	copy("$dir/conmgr.conf", "$base/cm/conmgr.conf") or die $!;
	run([ 'setpriv', "--reuid=$uid", "--regid=$gid", '--clear-groups', "$base/conmgr", '-D', "$base/cm" ],
		'<', \undef, '>', \$out, '2>', \$err);
	is($? >> 8, 1, 'conmgr in a directory owned by another user: exit 1');
	like($err, qr/directory "\Q$base\E\/cm" is not owned by the user running conmgr \(uid $uid\)/,
		'and says why');
	ok(!-e "$base/cm/conmgr.pid", 'without touching it');
}
done_testing();
