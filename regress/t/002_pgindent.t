# Test that the tree's C is as PostgreSQL's pgindent leaves it (make
# indent-check, tools/pgindent --check), that the check fails and shows
# the diff for a file that is not, and that make indent (tools/pgindent)
# formats such a file back.  pgindent and pg_bsd_indent come from
# postgresql-17's source, which tools/foreign-sources fetches as root
# (part "pgindent"); without it the test skips and says why.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmForeign qw(foreign_src);
use File::Temp qw(tempdir);
use IPC::Run;
use Test::More;

my $top = "$FindBin::RealBin/../..";
plan skip_all => 'make check-asan: formatting runs no conmgr code (make check runs this test)'
  if ($ENV{CM_SANITIZE} // '') eq '1';
my ($src, $version) = foreign_src('pgindent');
plan skip_all => "no pgindent to run: $version" unless $src;
note("pgindent from $version");

# tools/pgindent with the arguments given: (exit status, stdout, stderr).
sub pgindent
{
	my ($out, $err) = ('', '');
	IPC::Run::run([ "$top/tools/pgindent", @_ ], '<', \undef, '>', \$out, '2>', \$err);
	return ($? >> 8, $out, $err);
}

my ($status, $out, $err) = pgindent('--check');
is($status, 0, 'every C file of the tree is as pgindent leaves it')
  or diag("tools/pgindent --check said:\n$err\nthe diff:\n$out");

# A file of the tree with its indentation spoilt: spaces for the leading
# tabs and a brace moved onto the line of its if.
my $good = "$top/common/cmwheel.c";
open(my $f, '<', $good) or die "$good: $!";
my $text = do { local $/; <$f> };
close $f;
(my $bad = $text) =~ s/^(\t+)/'    ' x length($1)/mge;
$bad =~ s/^(\s*if \(.*\))\n\s*\{$/$1 {/m;
isnt($bad, $text, 'the spoilt copy differs from the file');
my $dir = tempdir(CLEANUP => 1);
my $copy = "$dir/cmwheel.c";
open($f, '>', $copy) or die "$copy: $!";
print $f $bad;
close $f;

($status, $out, $err) = pgindent('--check', $copy);
is($status, 1, 'the check fails on a file pgindent would change');
like($out, qr/^--- \Q$copy\E/m, 'it prints the diff of that file');
like($out, qr/^-    if \(/m, 'the diff shows the spoilt lines');
like($err, qr/1 file\(s\) not as pgindent leaves them/, 'it says how many files differ');
open($f, '<', $copy) or die "$copy: $!";
is(do { local $/; <$f> }, $bad, 'the check changes nothing');
close $f;

($status, $out, $err) = pgindent($copy);
is($status, 0, 'tools/pgindent formats the file') or diag($err);
open($f, '<', $copy) or die "$copy: $!";
is(do { local $/; <$f> }, $text, 'and it is the file of the tree again');
close $f;

done_testing();
