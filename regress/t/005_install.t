# Test that make install honours PREFIX and DESTDIR: the programs go to
# DESTDIR/PREFIX/bin, libpq-cm to DESTDIR/PREFIX/lib and include, the
# extension under DESTDIR at pg_config's places.
use strict;
use warnings;
use File::Temp qw(tempdir);
use FindBin;
use IPC::Run qw(run);
use Test::More;

my $top = "$FindBin::RealBin/../..";
plan skip_all => 'make check-asan: installing runs no conmgr code (make check runs this test)'
  if ($ENV{CM_SANITIZE} // '') eq '1';
my $dest = tempdir(CLEANUP => 1);
my ($out, $err) = ('', '');
run([ 'make', '-C', $top, 'install', "DESTDIR=$dest", 'PREFIX=/opt/conmgr' ],
	'<', \undef, '>', \$out, '2>', \$err);
is($? >> 8, 0, 'make install DESTDIR=... PREFIX=/opt/conmgr') or diag($err);

my $pkglibdir = `pg_config --pkglibdir`;
chomp $pkglibdir;
my $sharedir = `pg_config --sharedir`;
chomp $sharedir;
for my $f ('/opt/conmgr/bin/conmgr', '/opt/conmgr/bin/cm_ctl',
	"$pkglibdir/watchdog.so", "$sharedir/extension/watchdog.control",
	"$sharedir/extension/watchdog--1.0.sql")
{
	ok(-f "$dest$f", "installed $f");
}
ok(-x "$dest/opt/conmgr/bin/conmgr", 'conmgr is executable');
for my $f ('/opt/conmgr/lib/libpq-cm.so.1', '/opt/conmgr/include/libpq-cm.h',
	'/opt/conmgr/lib/libpq-cm/libpq.so.5')
{
	ok(-f "$dest$f", "installed $f");
}
is(readlink("$dest/opt/conmgr/lib/libpq-cm.so"), 'libpq-cm.so.1', 'libpq-cm.so links to libpq-cm.so.1');
my $real = readlink("$dest/opt/conmgr/lib/libpq-cm/libpq-real.so.5") // '';
ok(-f $real && $real =~ m{^/.*/libpq\.so\.5$},
	"the drop-in's libpq-real.so.5 points at the real libpq ($real)");
done_testing();
