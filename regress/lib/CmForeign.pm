
=pod

=head1 NAME

CmForeign - other projects' test suites run through conmgr

=head1 DESCRIPTION

The tests that run another project's own tests through conmgr
(regress/t/084_libpq_pipeline.t, 085_psycopg_suite.t,
regress/pg17/084_libpq_pipeline.t; docs/drivers.md, "Other projects' test
suites") share this: where tools/foreign-sources put those sources,
conmgr in front of one instance, and PostgreSQL's libpq pipeline tests
run through both.

=cut

package CmForeign;

use strict;
use warnings;
use Exporter 'import';
use CmTest qw(cm_top wait_until foreign_env);
use Cwd ();
use CmProc qw(conmgr_one);
use IPC::Run;

our @EXPORT = qw(foreign_src foreign_conmgr run_libpq_pipeline);

=pod

=head2 foreign_src($part)

The directory tools/foreign-sources unpacked $part into
(C<postgresql-15>, C<postgresql-17>, C<psycopg>) under
C<CM_FOREIGN_SRC> (default /var/cache/conmgr/src), and its VERSION
file's text; or (undef, why not) when it is not there: make check
fetches it as root before the tests, a test run by hand needs
C<tools/foreign-sources> run once (as root).  Why not is what
tools/foreign-sources wrote in C<$part.unavailable> when it could not have
the part (e.g. the archive does not serve the source, and which variable
makes the test run), else that it has not run.

=cut

sub foreign_src
{
	my ($part) = @_;
	my $base = $ENV{CM_FOREIGN_SRC} // '/var/cache/conmgr/src';
	my $dir = "$base/$part";
	if (!-f "$dir/VERSION")
	{
		# Why tools/foreign-sources could not have it, in its words.
		if (open(my $u, '<', "$dir.unavailable"))
		{
			my $why = do { local $/; <$u> };
			close $u;
			chomp $why;
			return (undef, "tools/foreign-sources could not have it: $why");
		}
		return (undef, "no $dir (tools/foreign-sources fetches it, as root)");
	}
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
and routing read-write to it: returns the CmTest::Conmgr, or dies with
conmgr's log.  C<< $cm->stop('smart') >> stops it.

=cut

sub foreign_conmgr
{
	my (%o) = @_;
	my $port = delete $o{port};
	my $wd = delete $o{watchdog_port};
	my $cm = conmgr_one(backend_port0 => $port, watchdog_port0 => $wd,
		heartbeat_interval => 1, heartbeat_timeout => 2, %o);
	# Routing is waited for below, 30 s from the start.
	$cm->start(wait => 0);
	die "conmgr does not route read-write to 127.0.0.1:$port:\n" . $cm->log_content
	  unless wait_until(sub { $cm->resolve('read-write') =~ /^candidate /m }, 30);
	return $cm;
}

=pod

=head2 run_libpq_pipeline($part)

PostgreSQL's own libpq pipeline tests (src/test/modules/libpq_pipeline of
the source tools/foreign-sources unpacked as $part) through conmgr, with
libpq-cm injected by LD_PRELOAD, as a test file's whole plan: the program
is built from that source against the libpq of the pg_config first in
PATH, and upstream's test file t/001_libpq_pipeline.pl itself runs,
unchanged, with two things around it:

=over

=item * the server it starts (its node "main") gets the watchdog and
listens on 127.0.0.1 (PostgreSQL::Test::Cluster's start(), wrapped);

=item * the connection string it gives the program, $node->connstr(),
names conmgr (host=localhost, conmgr's port, target_session_attrs=
read-write), and "libpq_pipeline" in PATH is the program run with
LD_PRELOAD=build/lib/libpq-cm.so.1.

=back

So every case and every trace comparison of upstream's file runs, each
case on a connection that libpq-cm made through conmgr.  The same program
without libpq-cm is refused by conmgr (the connection string names
conmgr's port), which is checked first: the suite can only pass through
libpq-cm.  Skips the whole file when the source is not there.

=cut

sub run_libpq_pipeline
{
	my ($part) = @_;
	require PostgreSQL::Test::Cluster;
	require PostgreSQL::Test::Utils;
	require Test::More;
	my ($src, $version) = foreign_src($part);
	Test::More::plan(skip_all => "skipped: no libpq_pipeline source: $version") unless $src;
	my $moddir = "$src/src/test/modules/libpq_pipeline";
	my $upstream = "$moddir/t/001_libpq_pipeline.pl";
	Test::More::note("libpq_pipeline of $part: $version");

	# Build the program with upstream's Makefile (PGXS) in a copy of the
	# source: the cache is not ours to write.  PGXS would link every library
	# the server links (LIBS); the program needs libpq, libpgcommon,
	# libpgport and libm only, and from 16 on PGXS names only libpq, so the
	# other two are named here (Debian keeps them in pkglibdir).
	my $build = PostgreSQL::Test::Utils::tempdir();
	system('cp', '-R', "$moddir/.", $build) == 0 or die "cp $moddir: $?";
	{
		my ($out, $err) = ('', '');
		IPC::Run::run([ 'pg_config', '--pkglibdir' ], '<', \undef, '>', \$out, '2>', \$err)
		  or Test::More::BAIL_OUT("pg_config --pkglibdir failed: $err");
		chomp(my $pkglibdir = $out);
		IPC::Run::run([ 'make', '-s', '-C', $build, 'USE_PGXS=1', 'with_llvm=no',
			"LIBS=-L$pkglibdir -lpgcommon -lpgport -lm" ],
			'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(300))
		  or Test::More::BAIL_OUT("building libpq_pipeline failed:\n$out$err");
	}

	# "libpq_pipeline" as upstream's file runs it: the program with libpq-cm.
	my $bin = PostgreSQL::Test::Utils::tempdir();
	{
		my $preload = Cwd::realpath(cm_top()) . '/build/lib/libpq-cm.so.1';
		open(my $f, '>', "$bin/libpq_pipeline") or die "$bin/libpq_pipeline: $!";
		print $f "#!/bin/sh\nexec " . join(' ', map { "'$_'" } foreign_env(LD_PRELOAD => $preload),
			"$build/libpq_pipeline") . " \"\$@\"\n";
		close $f;
		chmod 0755, "$bin/libpq_pipeline" or die "chmod: $!";
	}
	$ENV{PATH} = "$bin:$ENV{PATH}";

	# The node upstream's file starts (its only one, "main") gets the
	# watchdog, and listens on 127.0.0.1 for conmgr's candidates, before it
	# first starts.
	my $wdport = PostgreSQL::Test::Cluster::get_free_port();
	{
		no warnings 'redefine';
		my $start = \&PostgreSQL::Test::Cluster::start;
		*PostgreSQL::Test::Cluster::start = sub {
			my ($node) = @_;
			$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'watchdog'
listen_addresses = '127.0.0.1'
watchdog.port = $wdport
watchdog.listen_addresses = '127.0.0.1'
}) if $node->name eq 'main' && !$node->{cm_watchdog}++;
			goto &$start;
		};
	}

	# conmgr is started for the node when upstream's file first asks for its
	# connection string (the node is running by then); the checks that the
	# suite really goes through conmgr run there too, before upstream's cases.
	my $cm;
	my $start_conmgr = sub {
		my ($node) = @_;
		my $c = foreign_conmgr(port => $node->port, watchdog_port => $wdport);
		my $conninfo = $c->connstr('read-write');
		my ($out, $err) = ('', '');
		IPC::Run::run([ "$build/libpq_pipeline", 'simple_pipeline', $conninfo ],
			'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(60));
		Test::More::isnt($?, 0, 'without libpq-cm, libpq_pipeline fails on the connection string that names conmgr');
		Test::More::like($err, qr/conmgr/, 'conmgr refused the plain libpq connection and said what it is')
		  or Test::More::diag("$out$err");
		IPC::Run::run([ "$bin/libpq_pipeline", 'simple_pipeline', $conninfo ],
			'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(60));
		Test::More::is($?, 0, 'with libpq-cm (LD_PRELOAD), the same case passes') or Test::More::diag("$out$err");
		return $c;
	};
	{
		no warnings 'redefine';
		my $connstr = \&PostgreSQL::Test::Cluster::connstr;
		*PostgreSQL::Test::Cluster::connstr = sub {
			my ($node, $dbname) = @_;
			return $connstr->(@_) unless $node->name eq 'main' && defined $dbname;
			$cm //= $start_conmgr->($node);
			return "host=localhost port=" . $cm->port . " dbname=$dbname target_session_attrs=read-write";
		};
	}

	# Upstream's file ends with done_testing(): the last check and conmgr's
	# stop come just before it.
	{
		no warnings 'redefine';
		my $done_testing = \&Test::More::done_testing;
		*Test::More::done_testing = sub {
			Test::More::ok(defined $cm, 'upstream\'s cases ran with a connection string naming conmgr');
			$cm->stop('smart') if $cm;
			goto &$done_testing;
		};
	}

	# Upstream's file, as it is, from its own directory (it reads its traces
	# by relative path).
	chdir $moddir or die "chdir $moddir: $!";
	do $upstream;
	die "$upstream: $@" if $@;
	return;
}

1;
