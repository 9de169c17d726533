# The fault lab (issue 6): servers in network namespaces behind links that
# are cut by dropping packets, conmgr and the applications on the client
# host (the root namespace), a second client host with its own conmgr.
# Each scenario runs CM_FAULT_N times (default 3; `make check-faults`: 20)
# and prints every measured figure (prove -v shows them; a summary table
# at the end). docs/faultlab.md explains the set-up and gives the figures.
#
#  1+2  the link to the primary is black-holed while applications are
#       blocked in pg_sleep(60) and pushing a COPY: through conmgr
#       (libpq-cm) they fail within heartbeat_timeout + 0.5 s, the
#       primary's terminator ends the host's sessions as fast, the other
#       host's sessions live on; plain libpq with the best TCP settings
#       for the same nominal time, measured on the same cut
#  4    conmgr kill -9: applications fail and sessions end at once
#  5    a flapping link: nothing crashes, nothing leaks, routing is right
#  6    200 applications on the primary when its link drops: 200 errors
#  3    primary crash + promote: conmgr vs libpq multi-host (last: the set
#       is rebuilt after each run)
#
# CM_FAULT_ONLY=1,4 runs some scenarios only (2 goes with 1).
# Runs as root only (namespaces, nftables): otherwise skipped.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use Test::More;
use Time::HiRes qw(time usleep);

BEGIN
{
	plan skip_all => 'needs root' if $> != 0;
}
use CmLab;

my $N = $ENV{CM_FAULT_N} // 3;
my %only = map { $_ => 1 } split /[ ,]+/, ($ENV{CM_FAULT_ONLY} // '1,3,4,5,6');
my $t_begin = time();
my $top = "$FindBin::RealBin/../..";
my $psql = CmLab::pgbin() . '/psql';

my $lab = CmLab->new(top => $top, hb_interval => 1, hb_timeout => 3);
eval { $lab->start; 1 } or do {
	my $err = $@;
	plan skip_all => "needs root with CAP_SYS_ADMIN/CAP_NET_ADMIN: $err" if $lab->{no_netns};
	BAIL_OUT("the lab did not start: $err");
};
my $T = $lab->hb_timeout;
note(sprintf('lab up in %.1f s: %s; primary %s, standbys %s; heartbeat_interval %d s, heartbeat_timeout %d s',
	time() - $t_begin, $lab->dir, $lab->primary, join(',', $lab->standbys), $lab->hb_interval, $T));

# --- figures ---------------------------------------------------------------
my (%fig, @fig_order);

sub fig
{
	my ($name, $v) = @_;
	push @fig_order, $name unless $fig{$name};
	push @{ $fig{$name} }, $v;
	note(defined $v ? sprintf('%s: %.3f', $name, $v) : "$name: not seen");
	return $v;
}

sub stats
{
	my (@v) = @_;
	my @d = sort { $a <=> $b } grep { defined } @v;
	my $miss = @v - @d;
	return 'not seen' unless @d;
	my $med = @d % 2 ? $d[ $#d / 2 ] : ($d[ @d / 2 - 1 ] + $d[ @d / 2 ]) / 2;
	return sprintf('%.3f / %.3f / %.3f%s', $d[0], $med, $d[-1], $miss ? " ($miss not seen)" : '');
}

# The first time a process matched (or ended), from $t0.
sub watch
{
	my ($procs, $t0, $secs, %o) = @_;
	my %when;
	my $deadline = time() + $secs;
	my $extra = $o{also} // sub { 1 };
	while (time() < $deadline)
	{
		my $now = time();
		for my $k (keys %$procs)
		{
			next if exists $when{$k};
			my ($p, $re) = @{ $procs->{$k} };
			$p->pump;
			$when{$k} = $now - $t0 if $p->all =~ $re || !$p->{h}->pumpable;
		}
		my $more = $extra->($now);
		last if keys(%when) == keys(%$procs) && $more;
		usleep(5_000);
	}
	return \%when;
}

my $lost_re = qr/server closed the connection unexpectedly|connection to server .* lost|could not (?:send|receive) data|terminating connection|Connection timed out|no connection to the server/;

# Best plain-libpq TCP settings with the same nominal detection time as
# conmgr's heartbeat_timeout: keepalive probes from 1 s of idleness, every
# second, and TCP_USER_TIMEOUT for unacknowledged data (it also bounds the
# keepalive probing: with it set, Linux gives up when nothing came back
# for that long).
my %best_tcp = (keepalives => 1, keepalives_idle => 1, keepalives_interval => 1,
	keepalives_count => $T - 1, tcp_user_timeout => $T * 1000);

# A COPY data source: 100-byte rows at 20 MB/s for at most 60 s.
my @feeder = ('perl', '-MTime::HiRes=time', '-e', q{
	$| = 1; my ($rate, $secs) = @ARGV; my $chunk = (('x' x 99) . "\n") x 655;
	my ($t0, $n) = (time, 0);
	while (time - $t0 < $secs) {
		print $chunk or exit 0; $n += length $chunk;
		my $ahead = $n / $rate - (time - $t0);
		select(undef, undef, undef, $ahead) if $ahead > 0;
	}}, 20_000_000, 60);

sub pg_app
{
	my ($host, $conninfo, $sql, %o) = @_;
	return $lab->spawn($host, [ $psql, '-X', '-At', '-d', $conninfo, '-c', $sql ], %o);
}

sub recover
{
	my ($why) = @_;
	diag("recovering after: $why");
	eval {
		$lab->stop_procs;
		$lab->restore(keys %{ $lab->{links} });
		$lab->start_conmgr('c1') unless $lab->conmgr_pid('c1') && kill(0, $lab->conmgr_pid('c1'));
		$lab->wait_routable('c1');
		1;
	} or BAIL_OUT("the lab could not recover: $@");
	return;
}

sub scenario
{
	my ($name, $sub) = @_;
	for my $i (1 .. $N)
	{
		my $ok = eval { subtest("$name, run $i/$N" => sub { $sub->($i) }); 1 };
		if (!$ok)
		{
			fail("$name, run $i: $@");
			recover($@);
		}
	}
	return;
}

# --- 1 + 2: the primary's link black-holed -------------------------------
sub scenario_cut
{
	my ($i) = @_;
	my $p = $lab->primary;
	my ($a1, $a2) = ($lab->addr('c1', $p), $lab->addr('c2', $p));
	my $rw = sub { $lab->conninfo('c1', 'read-write', application_name => $_[0]) };
	my %app = (
		cm_block => [ $lab->spawn('c1', [ $lab->cmapp, 'block', $rw->('lab_cm_block'), 'SELECT pg_sleep(60)' ]),
			qr/^result /m ],
		cm_psql => [ pg_app('c1', $rw->('lab_cm_psql'), 'SELECT pg_sleep(60)', preload => 1), $lost_re ],
		cm_copy => [ pg_app('c1', $rw->('lab_cm_copy'), 'COPY sink FROM STDIN', preload => 1, feeder => \@feeder),
			$lost_re ],
		tcp_psql => [ pg_app('c1', $lab->direct('c1', $p, %best_tcp, application_name => 'lab_tcp_psql'),
				'SELECT pg_sleep(60)'), $lost_re ],
		tcp_copy => [ pg_app('c1', $lab->direct('c1', $p, %best_tcp, application_name => 'lab_tcp_copy'),
				'COPY sink FROM STDIN', feeder => \@feeder), $lost_re ],
	);
	# the other client host: a plain interactive session, and one through its conmgr
	my $c2in = '';
	my $c2psql = $lab->spawn('c2', [ $psql, '-X', '-At', '-q', '-d',
			$lab->direct('c2', $p, application_name => 'lab_c2_psql') ], stdin => \$c2in);
	my $c2block = $lab->spawn('c2', [ $lab->cmapp, 'block',
			$lab->conninfo('c2', 'read-write', application_name => 'lab_c2_block'), 'SELECT pg_sleep(60)' ]);
	$c2in .= "SELECT 'before', pg_backend_pid();\n";
	ok($c2psql->wait_for(qr/^before\|\d+$/m, 20), 'c2: a plain session on the primary')
	  or diag($c2psql->all);
	my ($c2pid) = $c2psql->out =~ /^before\|(\d+)$/m;

	my $ready = $lab->wait_until(sub {
		my $r = $lab->sql($p, q{SELECT string_agg(application_name, ',' ORDER BY application_name)
			FROM pg_stat_activity WHERE application_name LIKE 'lab\_%' AND state = 'active'});
		my $copying = $lab->sql($p, q{SELECT count(*) FROM pg_stat_progress_copy c
			JOIN pg_stat_activity a USING (pid) WHERE a.application_name LIKE 'lab\_%' AND c.bytes_processed > 1000000});
		return ($r // '') eq 'lab_c2_block,lab_cm_block,lab_cm_copy,lab_cm_psql,lab_tcp_copy,lab_tcp_psql'
		  && ($copying // 0) == 2;
	}, 30);
	ok($ready, 'c1: 5 applications busy on the primary (2 of them copying), c2: 1 more')
	  or diag(join("\n", map { "$_: " . $app{$_}[0]->all } sort keys %app));
	my $copy_bytes = $lab->sql($p, 'SELECT sum(bytes_processed) FROM pg_stat_progress_copy');

	my $t0 = $lab->cut("c1-$p");
	my $t_term;
	my $when = watch(\%app, $t0, $T + 12, also => sub {
		my ($now) = @_;
		$t_term //= $now - $t0 if ($lab->sessions_from($p, $a1) // -1) == 0;
		return defined $t_term;
	});
	# the other host, after the terminator has run
	usleep(300_000);
	$c2in .= "SELECT 'after', pg_backend_pid();\n";
	ok($c2psql->wait_for(qr/^after\|\Q$c2pid\E$/m, 10), 'c2: its plain session still answers, same backend')
	  or diag($c2psql->all);
	$c2block->pump;
	unlike($c2block->out, qr/^result/m, 'c2: its query through its own conmgr is still running')
	  or diag($c2block->all);
	is($lab->sql($p, "SELECT count(*) FROM pg_stat_activity WHERE client_addr = '$a2' AND application_name LIKE 'lab\\_c2%'"),
		2, 'c2: both sessions are on the primary');
	is($lab->sql($p, "SELECT count(*) FROM pgx_stat_watchdog WHERE conmgr_addr = '$a2'"), 1,
		"c2: its conmgr's heartbeat session is untouched");

	like($app{cm_block}[0]->out, qr/^result status=PGRES_FATAL_ERROR .*connstatus=BAD .*server closed the connection unexpectedly/m,
		'cmapp (linked): libpq\'s connection-lost error') or diag($app{cm_block}[0]->all);
	for my $k (qw(cm_block cm_psql cm_copy))
	{
		my $t = $when->{$k};
		ok(defined $t && $t <= $T + 0.5,
			sprintf('%s failed within heartbeat_timeout + 0.5 s: %s', $k, defined $t ? sprintf('%.3f s', $t) : 'no'))
		  or diag($app{$k}[0]->all);
	}
	like($app{$_}[0]->all, $lost_re, "$_: the error says the connection is lost") for qw(cm_psql cm_copy);
	ok(defined $t_term && $t_term <= $T + 0.5,
		sprintf("the primary's terminator ended c1's sessions within heartbeat_timeout + 0.5 s: %s",
			defined $t_term ? sprintf('%.3f s', $t_term) : 'no'))
	  or diag($lab->sql($p, "SELECT application_name, state FROM pg_stat_activity WHERE client_addr = '$a1'"));
	for my $k (qw(tcp_psql tcp_copy))
	{
		ok(defined $when->{$k}, "$k (plain libpq, keepalives + tcp_user_timeout) ended too")
		  or diag($app{$k}[0]->all);
		like($app{$k}[0]->all, $lost_re, "$k: with a connection-lost error") if defined $when->{$k};
	}
	fig('1 conmgr: cmapp in pg_sleep fails (s)', $when->{cm_block});
	fig('1 conmgr: psql in pg_sleep fails (s)', $when->{cm_psql});
	fig('1 conmgr: psql COPY fails (s)', $when->{cm_copy});
	fig('1 conmgr: terminator ends the host\'s sessions (s)', $t_term);
	fig('2 plain libpq: psql in pg_sleep fails (s)', $when->{tcp_psql});
	fig('2 plain libpq: psql COPY fails (s)', $when->{tcp_copy});
	note("COPY bytes processed before the cut: $copy_bytes");

	$lab->restore("c1-$p");
	$_->[0]->kill for values %app;
	$_->kill for $c2psql, $c2block;
	$lab->stop_procs;
	ok($lab->wait_until(sub { join(',', $lab->resolve('c1', 'read-write')) eq $p }, 30),
		'link restored: conmgr routes to the primary again');
	return;
}
scenario('1+2 primary link black-holed', \&scenario_cut) if $only{1} || $only{2};

# --- summary ---------------------------------------------------------------
my $took = time() - $t_begin;
my $summary = sprintf("fault lab, N=%d, %.0f s; figures min / median / max:\n", $N, $took);
$summary .= sprintf("  %-60s %s\n", $_, stats(@{ $fig{$_} })) for @fig_order;
if ($ENV{CM_FAULT_SUMMARY})
{
	diag($summary);
}
else
{
	note($summary);
}
if (my $f = $ENV{CM_FAULT_REPORT})
{
	open my $fh, '>', $f or die "$f: $!";
	print $fh $summary;
	close $fh;
}
$lab->cleanup;
done_testing();
