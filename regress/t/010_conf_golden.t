# Test conmgr's configuration check (conmgr -n -v) against golden files:
# each regress/conf/NNN-name.conf is copied into a scratch directory as
# conmgr.conf, checked, and the exit code, stdout and stderr compared with
# NNN-name.out.  Then: the printed configuration re-parses to itself, and
# the command line's own errors.
#
# CM_REGEN_GOLDEN=1 rewrites the .out files (review the diff before
# committing).
use strict;
use warnings;
use File::Copy;
use File::Temp qw(tempdir);
use FindBin;
use IPC::Run qw(run);
use Test::More;

my $top = "$FindBin::RealBin/../..";
my $conmgr = "$top/build/bin/conmgr";
my $confdir = "$top/regress/conf";

sub check_dir
{
	my ($dir, @extra) = @_;
	my ($out, $err) = ('', '');
	run([ $conmgr, '-D', '.', '-n', @extra ], '<', \undef, '>', \$out, '2>', \$err,
		init => sub { chdir $dir or die $! });
	return ($? >> 8, $out, $err);
}

my @cases = sort glob("$confdir/*.conf");
ok(@cases >= 8, scalar(@cases) . ' golden configurations');
for my $case (@cases)
{
	(my $name = $case) =~ s{.*/|\.conf$}{}g;
	my $dir = tempdir(CLEANUP => 1);
	copy($case, "$dir/conmgr.conf") or die $!;
	my ($rc, $out, $err) = check_dir($dir, '-v');
	my $got = "exit $rc\n--- stdout ---\n$out--- stderr ---\n$err";
	my $golden = "$confdir/$name.out";
	if ($ENV{CM_REGEN_GOLDEN})
	{
		open my $fh, '>', $golden or die $!;
		print $fh $got;
		close $fh;
	}
	open my $fh, '<', $golden or die "$golden: $!";
	my $want = do { local $/; <$fh> };
	close $fh;
	is($got, $want, "$name matches its golden output");

	# A valid configuration, printed, must print the same once re-read.
	next unless $rc == 0;
	my $dir2 = tempdir(CLEANUP => 1);
	open my $o, '>', "$dir2/conmgr.conf" or die $!;
	print $o $out;
	close $o;
	my ($rc2, $out2) = check_dir($dir2, '-v');
	is($rc2, 0, "$name: the printed configuration loads");
	is($out2, $out, "$name: and prints the same");
}

# The command line.
my ($out, $err) = ('', '');
run([ $conmgr, '-D', '/nonexistent/dir', '-n' ], '>', \$out, '2>', \$err);
is($? >> 8, 1, 'missing directory: exit 1');
like($err, qr{/nonexistent/dir/conmgr\.conf: could not open configuration file: No such file or directory},
	'missing directory: the message names the file and the cause');

my $dir = tempdir(CLEANUP => 1);
copy("$confdir/001-minimal.conf", "$dir/conmgr.conf") or die $!;
chmod 0755, $dir;
run([ $conmgr, '-D', $dir ], '>', \$out, '2>', \$err);
is($? >> 8, 1, 'daemon on a directory others can read: exit 1');
like($err, qr/FATAL:  directory "[^"]*" has group or world access \(mode 0755\)\n.* HINT:  chmod 0700 it\.\n/,
	'daemon on a directory others can read: says why, and what to do (HINT)');

{
	local $ENV{CMDATA};
	delete $ENV{CMDATA};
	run([ $conmgr, '-n' ], '>', \$out, '2>', \$err);
	is($? >> 8, 2, 'no directory: exit 2');
	like($err, qr/no conmgr directory specified/, 'no directory: says so');
}
{
	local $ENV{CMDATA} = $dir;
	run([ $conmgr, '-n' ], '>', \$out, '2>', \$err);
	is($? >> 8, 0, 'CMDATA is used when -D is absent');
}
run([ $conmgr, '--bogus' ], '>', \$out, '2>', \$err);
is($? >> 8, 2, 'unknown option: exit 2');
like($err, qr/Try "conmgr --help"/, 'unknown option: points to --help');
run([ $conmgr, '-D', $dir, '-n', 'extra' ], '>', \$out, '2>', \$err);
is($? >> 8, 2, 'extra argument: exit 2');
run([ $conmgr, '--help' ], '>', \$out, '2>', \$err);
is($? >> 8, 0, '--help: exit 0');
like($out, qr/Usage:/, '--help prints usage');

done_testing();
