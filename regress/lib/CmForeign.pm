
=pod

=head1 NAME

CmForeign - other projects' test suites run through conmgr

=head1 DESCRIPTION

The tests that run another project's own tests through conmgr
(regress/t/084_libpq_pipeline.t, 085_psycopg_suite.t; docs/drivers.md,
"Other projects' test suites") share this: where tools/foreign-sources
put those sources, and conmgr in front of one instance.

=cut

package CmForeign;

use strict;
use warnings;
use Exporter 'import';
use CmTest qw(cm_top wait_until);
use CmProc qw(conmgr_dir);
use IPC::Run;

our @EXPORT = qw(foreign_src foreign_conmgr stop_conmgr);

=pod

=head2 foreign_src($part)

The directory tools/foreign-sources unpacked $part into
(C<postgresql-15>, C<postgresql-17>, C<psycopg>) under
C<CM_FOREIGN_SRC> (default /var/cache/conmgr/src), and its VERSION
file's text; or (undef, why not) when it is not there: make check
fetches it as root before the tests, a test run by hand needs
C<tools/foreign-sources> run once (as root).

=cut

sub foreign_src
{
	my ($part) = @_;
	my $base = $ENV{CM_FOREIGN_SRC} // '/var/cache/conmgr/src';
	my $dir = "$base/$part";
	return (undef, "no $dir (tools/foreign-sources fetches it; it said why if it could not)")
	  unless -f "$dir/VERSION";
	open(my $f, '<', "$dir/VERSION") or return (undef, "$dir/VERSION: $!");
	my $version = do { local $/; <$f> };
	close $f;
	$version =~ s/\n(?=.)/, /g;
	chomp $version;
	return ($dir, $version);
}

=pod

=head2 foreign_conmgr(port => P, watchdog_port => W, ...)

conmgr (this tree's build/bin/conmgr) in front of one instance on
127.0.0.1:P whose watchdog listens on W (heartbeat_interval 1 s,
heartbeat_timeout 2 s; further pairs are more of conmgr.conf), started,
and routing read-write to it: returns C<< { port, dir, h, err } >>, or
dies with conmgr's output.  C<< stop_conmgr($cm) >> stops it.

=cut

sub foreign_conmgr
{
	my (%o) = @_;
	my $port = delete $o{port};
	my $wd = delete $o{watchdog_port};
	my ($dir, $cmport) = conmgr_dir(backend_port0 => $port, watchdog_port0 => $wd,
		heartbeat_interval => 1, heartbeat_timeout => 2, %o);
	my $err = '';
	my $h = IPC::Run::start([ cm_top() . '/build/bin/conmgr', '-D', $dir ],
		'<', \undef, '>', \my $out, '2>', \$err);
	my $cm = { port => $cmport, dir => $dir, h => $h, err => \$err };
	my $routes = sub {
		my $o = '';
		IPC::Run::run([ cm_top() . '/build/regress/tools/cmresolve', '-p', $cmport, '-t', 'read-write' ],
			'<', \undef, '>', \$o, '2>', \my $e, IPC::Run::timeout(20));
		return $o =~ /^candidate /m;
	};
	die "conmgr does not route read-write to 127.0.0.1:$port:\n$err"
	  unless wait_until($routes, 30);
	return $cm;
}

sub stop_conmgr
{
	my ($cm) = @_;
	$cm->{h}->signal('TERM');
	$cm->{h}->finish;
	return;
}

1;
