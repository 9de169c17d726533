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
use lib "$FindBin::RealBin/../lib";
use CmTest::Conmgr;
use Test::More;

plan skip_all => 'needs root' if $> != 0;

my $top = "$FindBin::RealBin/../..";
my $base0 = tempdir(CLEANUP => 1);
my $conf = "backend_host0 = 'localhost'\n";
my $cm = CmTest::Conmgr->new('root', dir => "$base0/cm", logfile => "$base0/cm.log", conf => $conf);
my $dir = $cm->cmdata;

$cm->start(fail_ok => 1);
is(($cm->wait_exit(10) // 0) >> 8, 1, 'conmgr as root: exit 1');
like($cm->log_content, qr/conmgr: cannot be run as root/, 'and says why');
ok(!-e "$dir/conmgr.pid", 'before touching the directory');

my ($out, $err) = ('', '');
run([ "$top/build/bin/conmgr", '-D', $dir, '-n' ], '<', \undef, '>', \$out, '2>', \$err);
is($? >> 8, 0, 'checking a configuration (-n) is allowed as root');

# A directory owned by someone else is refused, whatever its mode.
SKIP:
{
	my ($uid, $gid) = (getpwnam('nobody'))[ 2, 3 ];
	skip 'needs the user "nobody"', 3 unless defined $uid;
	# conmgr copied where nobody may run it
	my $base = tempdir(CLEANUP => 1);
	chmod 0755, $base;
	mkdir "$base/bin" or die $!;
	copy("$top/build/bin/conmgr", "$base/bin/conmgr") or die $!;
	chmod 0755, "$base/bin", "$base/bin/conmgr";
	my $other = CmTest::Conmgr->new('other', dir => "$base/cm", logfile => "$base/cm.log", build => $base,
		conf => $conf);
	$other->start(fail_ok => 1, prefix => [ 'setpriv', "--reuid=$uid", "--regid=$gid", '--clear-groups' ]);
	is(($other->wait_exit(10) // 0) >> 8, 1, 'conmgr in a directory owned by another user: exit 1');
	like($other->log_content, qr/directory "\Q$base\E\/cm" is not owned by the user running conmgr \(uid $uid\)/,
		'and says why');
	ok(!-e "$base/cm/conmgr.pid", 'without touching it');
}
done_testing();
