# Stock clients through conmgr's forward ports (forward_ports, docs/conmgr.md
# "Forward ports") when the primary's link is black-holed under a blocked
# statement: the fault lab's network (regress/lib/CmLab.pm; root,
# namespaces, nftables), one client host c1 with conmgr (heartbeat_interval
# 1 s, heartbeat_timeout 3 s, forward_ports read-write and read-only), the
# primary n1 and a standby n2 on hosts of their own.
#
# The clients are regress/tools/stock's, none of them preloaded or
# relinked (regress/lib/CmStock.pm): psql, Debian's pgJDBC with a plain
# jdbc:postgresql: URL and with PGSimpleDataSource, python3-psycopg as
# installed, node-postgres from tools/npm-modules' cache; they run on c1 as
# the servers' user.  Each, through the forward ports:
#
#  - reaches the instance its port names (the address and recovery state
#    it sees);
#  - blocked in pg_sleep(60) on the primary through the read-write port
#    when the link between c1 and the primary is black-holed (both ends
#    drop every packet, as the lab's cut does), gets its "connection lost"
#    error within heartbeat_timeout + 0.5 s of the drop rules being in
#    place; conmgr's log says the forwarder cut the session;
#  - after the link is restored and conmgr routes to the primary again:
#    connecting again, it reaches the primary through the read-write port;
#    the primary's log says the watchdog's terminator ended the cut
#    session's backend (which runs no more);
#  - in a cut of its own, all clients at once: connecting anew through the
#    read-write port right after the drop rules is refused with conmgr's
#    ErrorResponse naming the target, which the client shows.  The
#    forwarder's connect into the black hole is given up when conmgr
#    declares the loss (psql's within heartbeat_timeout + 0.5 s of the
#    drop rules; heartbeat_connect_timeout is longer), and, the client's
#    first packet having been an SSLRequest (libpq's sslmode=prefer,
#    pgJDBC's), the forwarder answers 'N' before the refusal, as a server
#    without TLS does.
#
# Each delay is printed (prove -v), with the terminator's.
# regress/t/087_forward_stock_clients.t does the same without root, the
# loss made by stopping the primary's processes instead.  A client that is
# not installed is skipped with a line saying why (fails under
# CM_REQUIRE_STOCK=1); node's "can run" names the Node that runs it.  The
# clients are not built with the sanitizers and nothing is preloaded into
# them, so under make check-asan they run as they are, in front of the
# sanitized conmgr.
# Runs as root only (namespaces, nftables): otherwise skipped.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use Test::More;
use Time::HiRes qw(time);

BEGIN
{
	plan skip_all => 'needs root' if $> != 0;
}
use CmLab;
use CmStock;

# Nothing may slip libpq-cm or anything else under a client.
delete @ENV{qw(LD_PRELOAD LD_LIBRARY_PATH PGCMADDRS)};

my $t_begin = time();
my $top = "$FindBin::RealBin/../..";
my $psql = CmLab::pgbin() . '/psql';
my @all = qw(psql jdbc psycopg node);
my %why_not = CmStock::why_not($psql);
my @clients = grep { !defined $why_not{$_} } @all;
plan skip_all => 'no stock client can run: ' . join('; ', map { "$_: $why_not{$_}" } @all)
  unless @clients || $ENV{CM_REQUIRE_STOCK};

# heartbeat_timeout; heartbeat_interval is 1 s
my $T = 3;
my $bound = $T + 0.5;

my %fwd;
while (1)
{
	%fwd = map { $_ => CmLab::free_port() } qw(read-write read-only);
	last if $fwd{'read-write'} != $fwd{'read-only'};
}
# heartbeat_connect_timeout: longer than the bound, so that a client whose
# connect into the black hole were left to run out would be late.
my $lab = CmLab->new(top => $top, servers => 2, clients => ['c1'], hb_interval => 1, hb_timeout => $T,
	hb_connect_timeout => 4, conmgr_conf => "forward_ports = 'read-write=$fwd{'read-write'}, read-only=$fwd{'read-only'}'");

# The whole test is bounded: a hang fails it, and the lab is taken down.
$SIG{ALRM} = sub {
	fail('the test ran for 300 s: stopped');
	$lab->cleanup;
	done_testing();
	exit 1;
};
alarm 300;

{
	my $t = time();
	eval { $lab->start; 1 } or do {
		my $err = $@;
		plan skip_all => "needs root with CAP_SYS_ADMIN/CAP_NET_ADMIN: $err" if $lab->{no_netns};
		# a failure, not a bail-out: the other root tests still run
		fail("the lab did not start: $err");
		$lab->cleanup;
		done_testing();
		exit 1;
	};
	note(sprintf('lab up in %.1f s: %s; primary %s, standby %s; heartbeat_interval 1 s, heartbeat_timeout %d s',
		time() - $t, $lab->dir, $lab->primary, join(',', $lab->standbys), $T));
}

# The stock programs, where the servers' user can read them (the tree may
# sit where it cannot), FwdJdbc compiled beside them.
my $sdir = $lab->dir . '/stock';
CmLab::must([ 'cp', '-a', $CmStock::DIR, $sdir ]);
CmStock::compile_jdbc($sdir, $sdir) unless defined $why_not{jdbc};
CmLab::must([ 'chown', '-R', (getpwnam('postgres'))[2], $sdir ]);
my %copt = (dir => $sdir, jdir => $sdir, psql => $psql);
CmStock::can_run(\%why_not, \@all, %copt);

my $p = $lab->primary;
my ($s) = $lab->standbys;
my @servers = $lab->servers;
my ($pno) = grep { $servers[$_] eq $p } 0 .. $#servers;
my $a1 = $lab->addr('c1', $p);
my %name_of = map { $lab->addr($_, 'c1') => $_ } $lab->servers;
my %want = ('read-write' => "$p f", 'read-only' => "$s t");

# The primary's link back; conmgr routes to the primary again.
sub restore
{
	my ($what) = @_;
	$lab->restore("c1-$p");
	ok($lab->wait_until(sub { join(',', $lab->resolve('c1', 'read-write')) eq $p }, 30),
		"$what: conmgr routes to the primary again");
	return;
}

# Where client $c lands through the $target port, in $mode: "SERVER t|f"
# (its recovery state), or what it said.
sub where
{
	my ($c, $mode, $target) = @_;
	my ($rc, $out, $err) = CmLab::run_cmd([ $lab->wrap('c1', 1, CmStock::command($c, $mode, $fwd{$target}, %copt)) ],
		timeout => 60);
	return $out =~ /^where port=\d+ recovery=(\w) addr=(\S+)/m ? ($name_of{$2} // "address $2") . " $1"
	  : "nothing: $out$err";
}

for my $c (@clients)
{
	for my $mode (@{ $CmStock::WHERE_MODES{$c} })
	{
		for my $target (sort keys %fwd)
		{
			is(where($c, $mode, $target), $want{$target}, "$c ($mode): the $target port reaches "
				  . ($target eq 'read-write' ? "the primary ($p)" : "the standby ($s)"));
		}
	}
}

# A statement blocked on the primary through the read-write port; the
# primary's link black-holed; restored.
my @figures;
for my $c (@clients)
{
	for my $mode (@{ $CmStock::BLOCK_MODES{$c} })
	{
		my $name = "$c ($mode)";
		my $proc = $lab->spawn('c1', [ CmStock::command($c, $mode, $fwd{'read-write'}, %copt) ], as_user => 1,
			stamp => 1, name => $name);
		my $pid;
		ok($lab->wait_until(sub {
			$pid = $lab->psql($p, q{SELECT pid FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)'}
				  . " AND state = 'active' AND client_addr = '$a1'");
			($pid // '') =~ /^\d+$/;
		}, 30), "$name: its statement runs on the primary, from c1") or diag($proc->all);
		my $pos = $lab->log_pos($p);
		my $cmpos = length $lab->conmgr_log('c1');
		my $t_cut0 = $lab->cut("c1-$p");
		# both ends' rules in place
		my $t_cut = time();
		my $end;
		$lab->wait_until(sub {
			$proc->pump;
			$end = $proc->stamp_of($CmStock::RESULT{$c}) // $proc->stamp_of(undef);
			defined $end;
		}, $bound + 10);
		my $took = defined $end ? $end - $t_cut : undef;
		like($proc->out, $CmStock::CUT_ERROR{$c}, "$name: the statement fails, the connection lost")
		  or diag($proc->all);
		ok(defined $took && $took <= $bound,
			sprintf('%s: within heartbeat_timeout + 0.5 s of the black hole: %s', $name,
				defined $took ? sprintf('%.3f s', $took) : 'no error'));
		ok($lab->wait_until(sub {
			$lab->conmgr_log('c1', $cmpos) =~ /forwarder: cut 1 forwarded session to instance $pno \(lost\)/ }, 5),
			"$name: conmgr's log: the forwarder cut the session")
		  or diag($lab->conmgr_log('c1', $cmpos));

		# The primary's side of the loss before the link comes back: a
		# heartbeat session of conmgr's registered again from c1 before the
		# watchdog times out the old one would leave c1's SQL sessions alone
		# (docs/watchdog.md), as it should for a link that is back.
		my $t_term;
		$lab->wait_until(sub {
			($t_term) = substr(CmLab::slurp($lab->sdir($p) . '/log'), $pos)
			  =~ /^(\d+\.\d+) .*watchdog terminator: terminating backend process $pid connected from \Q$a1\E:/m;
			defined $t_term;
		}, 5) if defined $pid;
		ok(defined $t_term, "$name: the primary's log: the watchdog's terminator ended its backend ("
			  . ($pid // 'none') . ')');
		restore("$name: link restored");
		my $wmode = $mode eq 'dsblock' ? 'ds' : 'where';
		is(where($c, $wmode, 'read-write'), $want{'read-write'},
			"$c ($wmode): connecting again, the read-write port reaches the primary");
		is($lab->psql($p, 'SELECT count(*) FROM pg_stat_activity WHERE pid = ' . ($pid // 0)), 0,
			"$name: the backend runs no more");
		my $fig = sprintf('%s: error %s s after the drop rules were in place (%s s after the cut began),'
			  . ' the terminator %s s', $name, map { defined $_ ? sprintf('%.3f', $_) : '-' }
			  $took, defined $end ? $end - $t_cut0 : undef, defined $t_term ? $t_term - $t_cut : undef);
		note($fig);
		push @figures, $fig;
		$proc->kill;
	}
}

# New connections through the read-write port right after the drop rules,
# every client at once, apart from the measures above (Java's start is
# heavy).  A first packet that comes before conmgr declares the loss has
# the forwarder connect into the black hole until the loss; one that comes
# after finds no instance that fits.
{
	$lab->cut("c1-$p");
	my $t_cut = time();
	my %late;
	for my $c (@clients)
	{
		$late{"$c ($_)"} = $lab->spawn('c1', [ CmStock::command($c, $_, $fwd{'read-write'}, %copt) ], as_user => 1,
			stamp => 1, name => "$c $_") for @{ $CmStock::WHERE_MODES{$c} };
	}
	$lab->wait_until(sub { !grep { !$_->done } values %late }, 30);
	for my $name (sort keys %late)
	{
		my $l = $late{$name};
		like($l->out, qr/conmgr: (?:could not connect to any instance that fits|no instance fits) target_session_attrs=read-write \(forward port $fwd{'read-write'}\)/,
			"$name: connecting into the black hole, refused with conmgr's message naming the target")
		  or diag($l->out);
		my ($why) = $l->out =~ /conmgr: (could not connect|no instance fits)/;
		my $t = $l->stamp_of(undef);
		# psql's first packet comes at once, well before the loss
		ok(defined $t && $t - $t_cut <= $bound,
			sprintf('%s: refused within heartbeat_timeout + 0.5 s of the black hole: %s', $name,
				defined $t ? sprintf('%.3f s', $t - $t_cut) : 'no end')) if $name =~ /^psql /;
		my $fig = sprintf('%s: a new connection refused %s s after the drop rules were in place (%s)', $name,
			defined $t ? sprintf('%.3f', $t - $t_cut) : '-', $why // 'no message');
		note($fig);
		push @figures, $fig;
	}
	restore('new connections: link restored');
}

alarm 0;
note("heartbeat_timeout $T s, bound $bound s:");
note("  $_") for @figures;
note(sprintf('071 ran in %.1f s', time() - $t_begin));
$lab->cleanup;
done_testing();
