# tools/foreign-sources uses a source it found in the archive's pool, which
# no signed index lists, only once verified (docs/drivers.md, "Where the
# sources come from"): the .dsc's OpenPGP signature by gpgv against the
# keyrings, then each listed file's size and SHA-256 from the signed text.
# Its verification step (--verify-dsc) is fed a .dsc signed by a throwaway
# key, with its keyring standing in for Debian's (CM_DSC_KEYRINGS), first
# as made, then altered each way an archive or a network could alter it:
# every altered one must be refused, with a message saying why.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use Digest::SHA ();
use File::Copy ();
use File::Temp ();
use IPC::Run;
use Test::More;

plan skip_all => 'make check-asan: the verification is a shell script and gpgv (make check runs this test)'
  if sanitized();

for my $prog (qw(gpg gpgv))
{
	plan skip_all => "$prog is not installed (tools/install-deps test)"
	  unless grep { -x "$_/$prog" } split /:/, $ENV{PATH};
}

my $tool = cm_top() . '/tools/foreign-sources';
# A short path: gpg-agent's socket lives in GNUPGHOME.
my $s = File::Temp::tempdir('/tmp/cm-dsc-XXXXXX', CLEANUP => 1);
mkdir "$s/$_", 0700 or die "mkdir $s/$_: $!" for qw(gnupg other);

sub run_cmd
{
	my ($in, @cmd) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run(\@cmd, '<', \$in, '>', \$out, '2>', \$err, IPC::Run::timeout(60));
	return ($? >> 8, $out, $err);
}

# Two keys, each in a home of its own: the trusted one, whose public key
# is the keyring given to the tool, and another one.
for my $home ("$s/gnupg", "$s/other")
{
	my ($rc, $out, $err) = run_cmd('', 'gpg', '--homedir', $home, '--batch',
		'--pinentry-mode', 'loopback', '--passphrase', '', '--quick-gen-key',
		'conmgr test <test@localhost>', 'ed25519', 'sign', '1d');
	die "gpg --quick-gen-key: $err" if $rc != 0;
}
END
{
	local ($?, $!, $@);
	for my $home ("$s/gnupg", "$s/other")
	{
		IPC::Run::run([ 'gpgconf', '--homedir', $home, '--kill', 'gpg-agent' ],
			'<', \undef, '>', \my $o, '2>', \my $e) if $home && -d $home;
	}
}
{
	my ($rc, $out, $err) = run_cmd('', 'gpg', '--homedir', "$s/gnupg", '--batch', '--export');
	die "gpg --export: $err" if $rc != 0 || $out eq '';
	open(my $f, '>:raw', "$s/keyring.gpg") or die "$s/keyring.gpg: $!";
	print $f $out;
	close $f;
}
$ENV{CM_DSC_KEYRINGS} = "$s/keyring.gpg";

# The package's files, and the text of its .dsc before signing.
my %content = (
	'pkg_1.2.orig.tar.xz' => "upstream tarball\n" x 100,
	'pkg_1.2-1.debian.tar.xz' => "debian tarball\n" x 10);
sub dsc_text
{
	my (%o) = @_;
	my $sums = $o{sums} // { map { ($_ => Digest::SHA::sha256_hex($content{$_})) } keys %content };
	return "Format: 3.0 (quilt)\n"
	  . 'Source: ' . ($o{source} // 'pkg') . "\n"
	  . 'Version: ' . ($o{version} // '1.2-1') . "\n"
	  . "Checksums-Sha256:\n"
	  . join('', map { " $sums->{$_} " . length($content{$_} // 'x') . " $_\n" } sort keys %$sums)
	  . "Files:\n"
	  . join('', map { " 00000000000000000000000000000000 0 $_\n" } sort keys %$sums);
}

# Sign $text with the key of $home, clear-signed, into a new directory
# holding the package's files too; returns the .dsc's path.
my $n = 0;
sub make_dsc
{
	my ($text, %o) = @_;
	my $d = "$s/case" . ++$n;
	mkdir $d or die "mkdir $d: $!";
	for my $name (keys %content)
	{
		open(my $f, '>:raw', "$d/$name") or die "$d/$name: $!";
		print $f $content{$name};
		close $f;
	}
	my ($rc, $out, $err) = run_cmd($text, 'gpg', '--homedir', $o{home} // "$s/gnupg",
		'--batch', '--pinentry-mode', 'loopback', '--passphrase', '', '--clearsign');
	die "gpg --clearsign: $err" if $rc != 0;
	$out = $o{edit}->($out) if $o{edit};
	open(my $f, '>', "$d/pkg_1.2-1.dsc") or die "$d/pkg_1.2-1.dsc: $!";
	print $f $out;
	close $f;
	return "$d/pkg_1.2-1.dsc";
}

sub verify
{
	my ($dsc, @args) = @_;
	return run_cmd('', $tool, '--verify-dsc', $dsc, @args ? @args : ('pkg', '1.2-1'));
}

sub refused
{
	my ($dsc, $why, $name, @args) = @_;
	my ($rc, $out, $err) = verify($dsc, @args);
	isnt($rc, 0, "refused: $name");
	like($err, $why, "and says why: $name");
	is($out, '', "and names no file as verified: $name");
	return;
}

# As made: verified, both files named.
{
	my $dsc = make_dsc(dsc_text());
	my ($rc, $out, $err) = verify($dsc);
	is($rc, 0, 'a .dsc signed by a key of the keyring, its files as it says: verified') or diag($err);
	is(join(',', sort split /\n/, $out), 'pkg_1.2-1.debian.tar.xz,pkg_1.2.orig.tar.xz',
		'the files verified are named');

	refused($dsc, qr/names source "pkg", not other/, 'another source package\'s .dsc', 'other', '1.2-1');
	refused($dsc, qr/is of version "1.2-1", not 1.3-1/, 'another version\'s .dsc', 'pkg', '1.3-1');
}

# A file altered, its size kept.
{
	my $dsc = make_dsc(dsc_text());
	(my $d = $dsc) =~ s{/[^/]+$}{};
	open(my $f, '+<', "$d/pkg_1.2.orig.tar.xz") or die $!;
	print $f 'X';
	close $f;
	refused($dsc, qr/pkg_1\.2\.orig\.tar\.xz has SHA-256 [0-9a-f]{64}, the signed \.dsc says/,
		'a file whose SHA-256 differs');
}

# A file of another size; a file missing.
{
	my $dsc = make_dsc(dsc_text());
	(my $d = $dsc) =~ s{/[^/]+$}{};
	open(my $f, '>>', "$d/pkg_1.2-1.debian.tar.xz") or die $!;
	print $f "more\n";
	close $f;
	refused($dsc, qr/pkg_1\.2-1\.debian\.tar\.xz has \d+ bytes, the signed \.dsc says \d+/,
		'a file of another size');
	unlink "$d/pkg_1.2-1.debian.tar.xz" or die $!;
	refused($dsc, qr/pkg_1\.2-1\.debian\.tar\.xz, which it lists, is missing/, 'a listed file missing');
}

# The signed text altered after signing: a checksum changed to the altered
# file's.
{
	my $bad = Digest::SHA::sha256_hex("X" . substr($content{'pkg_1.2.orig.tar.xz'}, 1));
	my $good = Digest::SHA::sha256_hex($content{'pkg_1.2.orig.tar.xz'});
	my $dsc = make_dsc(dsc_text(), edit => sub { (my $t = $_[0]) =~ s/$good/$bad/; return $t });
	(my $d = $dsc) =~ s{/[^/]+$}{};
	open(my $f, '+<', "$d/pkg_1.2.orig.tar.xz") or die $!;
	print $f 'X';
	close $f;
	refused($dsc, qr/has no good OpenPGP signature/, 'a checksum altered in the signed text');

	# The same checksum put before the signed message instead, where gpgv
	# ignores it: only what the signature covers is read.
	$dsc = make_dsc(dsc_text(), edit => sub {
		return "Checksums-Sha256:\n $bad " . length($content{'pkg_1.2.orig.tar.xz'})
		  . " pkg_1.2.orig.tar.xz\n\n" . $_[0] });
	($d = $dsc) =~ s{/[^/]+$}{};
	open($f, '+<', "$d/pkg_1.2.orig.tar.xz") or die $!;
	print $f 'X';
	close $f;
	refused($dsc, qr/pkg_1\.2\.orig\.tar\.xz has SHA-256 $bad, the signed \.dsc says $good/,
		'a checksum added outside the signed text');
}

# Signed by a key the keyring does not hold; not signed at all.
refused(make_dsc(dsc_text(), home => "$s/other"), qr/has no good OpenPGP signature/,
	'a .dsc signed by a key not in the keyring');
refused(make_dsc(dsc_text(), edit => sub { return dsc_text() }),
	qr/not one OpenPGP clear-signed message/, 'a .dsc not signed');

# A signed .dsc listing a path, not a plain file name.
refused(make_dsc(dsc_text(sums => { '../pkg_1.2.orig.tar.xz' => '0' x 64 })),
	qr/not SHA-256, size and plain file name/, 'a .dsc listing a path');

# No keyring: refused, saying which package holds Debian's.
{
	local $ENV{CM_DSC_KEYRINGS} = "$s/no-such-keyring.gpg";
	refused(make_dsc(dsc_text()), qr/keyring .* missing \(package debian-keyring/,
		'no keyring to verify with');
}

done_testing();
