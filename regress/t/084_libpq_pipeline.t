# PostgreSQL's own libpq pipeline tests (src/test/modules/libpq_pipeline
# of Debian's postgresql-15 source, fetched by tools/foreign-sources)
# through conmgr, with libpq-cm injected by LD_PRELOAD: the program is
# built from that source against the host's libpq 15, and upstream's test
# file t/001_libpq_pipeline.pl itself runs, unchanged, with two things
# around it:
#   - the server it starts (its node "main") gets the watchdog and
#     listens on 127.0.0.1 (PostgreSQL::Test::Cluster's start(), wrapped);
#   - the connection string it gives the program, $node->connstr(), names
#     conmgr (host=localhost, conmgr's port, target_session_attrs=
#     read-write), and "libpq_pipeline" in PATH is the program run with
#     LD_PRELOAD=build/lib/libpq-cm.so.1.
# So every case and every trace comparison of upstream's file runs, each
# case on a connection that libpq-cm made through conmgr.  The same
# program without libpq-cm is refused by conmgr (the connection string
# names conmgr's port): the suite can only pass through libpq-cm.
use strict;
use warnings;
use Cwd ();
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmForeign;
use CmTest;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my ($src, $version) = foreign_src('postgresql-15');
plan skip_all => "skipped: no libpq_pipeline source: $version" unless $src;
my $moddir = "$src/src/test/modules/libpq_pipeline";
my $upstream = "$moddir/t/001_libpq_pipeline.pl";
note("libpq_pipeline of postgresql-15: $version");

my $top = Cwd::realpath(cm_top());

# Build the program with upstream's Makefile (PGXS) in a copy of the
# source: the cache is not ours to write.  PGXS would link every library
# the server links; the program needs libpq, libpgcommon, libpgport and
# libm only.
my $build = PostgreSQL::Test::Utils::tempdir();
system('cp', '-R', "$moddir/.", $build) == 0 or die "cp $moddir: $?";
{
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'make', '-s', '-C', $build, 'USE_PGXS=1', 'LIBS=-lm', 'with_llvm=no' ],
		'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(300))
	  or BAIL_OUT("building libpq_pipeline failed:\n$out$err");
}

# "libpq_pipeline" as upstream's file runs it: the program with libpq-cm.
my $bin = PostgreSQL::Test::Utils::tempdir();
{
	my $preload = "$top/build/lib/libpq-cm.so.1";
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
{
	no warnings 'redefine';
	my $connstr = \&PostgreSQL::Test::Cluster::connstr;
	*PostgreSQL::Test::Cluster::connstr = sub {
		my ($node, $dbname) = @_;
		return $connstr->(@_) unless $node->name eq 'main' && defined $dbname;
		$cm //= start_conmgr($node);
		return "host=localhost port=$cm->{port} dbname=$dbname target_session_attrs=read-write";
	};
}

sub start_conmgr
{
	my ($node) = @_;
	my $c = foreign_conmgr(port => $node->port, watchdog_port => $wdport);
	my $conninfo = "host=localhost port=$c->{port} dbname=postgres target_session_attrs=read-write";
	my ($out, $err) = ('', '');
	IPC::Run::run([ "$build/libpq_pipeline", 'simple_pipeline', $conninfo ],
		'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(60));
	isnt($?, 0, 'without libpq-cm, libpq_pipeline fails on the connection string that names conmgr');
	like($err, qr/conmgr/, 'conmgr refused the plain libpq connection and said what it is')
	  or diag("$out$err");
	IPC::Run::run([ "$bin/libpq_pipeline", 'simple_pipeline', $conninfo ],
		'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(60));
	is($?, 0, 'with libpq-cm (LD_PRELOAD), the same case passes') or diag("$out$err");
	return $c;
}

# Upstream's file ends with done_testing(): the last check and conmgr's
# stop come just before it.
{
	no warnings 'redefine';
	my $done_testing = \&Test::More::done_testing;
	*Test::More::done_testing = sub {
		ok(defined $cm, 'upstream\'s cases ran with a connection string naming conmgr');
		stop_conmgr($cm) if $cm;
		goto &$done_testing;
	};
}

# Upstream's file, as it is, from its own directory (it reads its traces
# by relative path).
chdir $moddir or die "chdir $moddir: $!";
do $upstream;
die "$upstream: $@" if $@;
