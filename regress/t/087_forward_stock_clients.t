# Stock clients through conmgr's forward ports (conmgr.conf forward_ports,
# docs/conmgr.md "Forward ports"), none of them preloaded or relinked: no
# LD_PRELOAD, no libpq-cm, each with its own protocol code or the system's
# libpq.  psql is 055_forward_ports.t's; here:
#
#  - Debian's pgJDBC jar with a plain jdbc:postgresql: URL and with
#    PGSimpleDataSource (regress/tools/stock/FwdJdbc.java, compiled here);
#  - python3-psycopg as installed (regress/tools/stock/fwd_psycopg.py);
#  - node-postgres, npm's pg under Debian's Node (fwd_pg.js; the package
#    comes from tools/npm-modules into /var/cache/conmgr/npm).
#
# Each reaches the instance its port names (inet_server_port(),
# pg_is_in_recovery()), and a statement blocked on the primary through the
# read-write port fails when conmgr loses the primary: the forwarder cuts
# the session.  The loss is made here by stopping every process of the
# primary (SIGSTOP, CmDriverLab's lose): its heartbeat falls silent as
# behind a dead link while its sockets stay open, so only the forwarder's
# cut can end the client's wait.  A black-holed link itself needs root and
# network namespaces: regress/root/071_forward_blackhole.t drops the
# primary's link in the fault lab's network under the same clients and
# psql (regress/lib/CmStock.pm runs them for both).  The delay is measured
# from the stop and must be at most heartbeat_timeout + 0.5 s: conmgr
# declares an instance lost heartbeat_timeout after the last frame it
# received (roles/heartbeat.c), which came before the stop.  pgJDBC's Statement.cancel() sends its
# CancelRequest to the forward port, which the forwarder sends on to every
# instance that is up, and ends the statement.
#
# Each client is skipped with a clear line when it is not installed (no
# JDK or pgJDBC, no psycopg, no node or no pg in the npm cache), or fails
# then under CM_REQUIRE_STOCK=1; node's "can run" names the Node that runs
# it and its Debian package (regress/lib/CmStock.pm, CM_NODE).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib", "$FindBin::RealBin/../../contrib/testlib";
use CmDriverLab;
use CmStock;
use CmTest qw(wait_until);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils ();
use Test::More;

# Nothing may slip libpq-cm or anything else under a client.
delete @ENV{qw(LD_PRELOAD LD_LIBRARY_PATH PGCMADDRS)};

# Which clients can run here: name => undef, or why not.
my %why_not = CmStock::why_not();
plan skip_all => 'skipped: no stock client can run: ' . join('; ', map { "$_: $why_not{$_}" } sort keys %why_not)
  unless $ENV{CM_REQUIRE_STOCK} || grep { !defined } values %why_not;
CmStock::can_run(\%why_not, [ sort keys %why_not ]);

my %fwd = map { $_ => PostgreSQL::Test::Cluster::get_free_port() } qw(read-write read-only);
my $lab = lab_start(conf => "log_min_messages = LOG\nforward_ports = 'read-write=$fwd{'read-write'}, read-only=$fwd{'read-only'}'\n");
my $bound = $lab->{hb_timeout} + 0.5;
my %want = ('read-write' => [ 'p', 'f' ], 'read-only' => [ 's', 't' ]);

my $jdir = PostgreSQL::Test::Utils::tempdir();
CmStock::compile_jdbc($jdir) unless defined $why_not{jdbc};

# Each client's command for a mode and a forward port.
my %cmd = map { my $c = $_; $c => sub { CmStock::command($c, @_, jdir => $jdir) } } qw(jdbc psycopg node);
my %modes = %CmStock::WHERE_MODES;
my @clients = grep { !defined $why_not{$_} } qw(jdbc psycopg node);

# Where each client lands through each port.
for my $c (@clients)
{
	for my $mode (@{ $modes{$c} })
	{
		for my $target (sort keys %fwd)
		{
			my ($out, $err) = run_cmd($cmd{$c}->($mode, $fwd{$target}));
			my ($port) = $out =~ /^where port=(\d+) recovery=(\w)/m;
			my $got = defined $port ? join(' ', $lab->name_of($port), $2) : "nothing: $out$err";
			is($got, "@{ $want{$target} }", "$c ($mode): $target port reaches "
				  . ($target eq 'read-write' ? 'the primary' : 'the standby')) or diag($out, $err);
			note("$c: $1") if $out =~ / ((?:libpq|pg)=\S+)/;
		}
	}
}

# A statement blocked on the primary through the read-write port; conmgr
# loses the primary; the forwarder cuts the session.
my %error = %CmStock::CUT_ERROR;
for my $c (@clients)
{
	my $bg = bg_start($cmd{$c}->('block', $fwd{'read-write'}));
	ok(bg_wait($bg, qr/^running/m), "$c: connected through the read-write port") or diag(bg_out($bg));
	ok($lab->wait_query('p', 'SELECT pg_sleep(60)'), "$c: the primary runs its statement");
	my $cut_before = () = $lab->{cm}->log_content =~ /forwarder: cut 1 forwarded session to instance 0 \(lost\)/g;
	my ($took) = $lab->lose('p', $bound + 5, [ $bg, qr/^result /m ]);
	$bg->{h}->kill_kill unless defined $took;
	my $out = bg_out($bg);
	like($out, $error{$c}, "$c: the statement fails, the connection lost") or diag($out);
	ok(defined $took && $took <= $bound,
		sprintf('%s: within heartbeat_timeout + 0.5 s of the stop: %.3f s', $c, $took // -1));
	note(sprintf('%s: blocked statement failed %.3f s after the primary stopped (heartbeat_timeout %d s)',
		$c, $took // -1, $lab->{hb_timeout}));
	ok(wait_until(sub {
		(() = $lab->{cm}->log_content =~ /forwarder: cut 1 forwarded session to instance 0 \(lost\)/g) > $cut_before }, 5),
		"$c: the forwarder cut it") or diag($lab->{cm}->log_content);
}

# pgJDBC's Statement.cancel(): its CancelRequest goes to the forward port.
SKIP:
{
	skip "jdbc: $why_not{jdbc}", 3 if defined $why_not{jdbc};
	my $bg = bg_start($cmd{jdbc}->('cancel', $fwd{'read-write'}));
	ok(bg_wait($bg, qr/^result /m, 30), 'jdbc: Statement.cancel() through the read-write port ended the statement')
	  or $bg->{h}->kill_kill;
	my $out = bg_out($bg);
	like($out, qr/^cancel\n.*^result sqlstate=57014 \S+ message=ERROR: canceling statement due to user request/ms,
		'jdbc: SQLState 57014, canceled by the user') or diag($out);
	my ($took) = $out =~ /^result \S+ elapsed=(\S+)/m;
	cmp_ok($took // 60, '<', 5, sprintf('jdbc: at once (%.3f s after the statement began)', $took // -1));
}

$lab->stop;
$lab->{node}{$_}->stop for qw(p s);
done_testing();
