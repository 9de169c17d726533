# Scenarios 1 and 2: the link to the primary is black-holed while
# applications are blocked in pg_sleep(60) and pushing a COPY.  Through
# conmgr (libpq-cm) they fail within heartbeat_timeout + 0.5 s, the
# primary's terminator ends the host's sessions as fast, and the other
# client host's sessions live on; plain libpq with the best TCP settings
# for the same nominal time is measured on the same cut.
package FaultLab::Cut;

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time usleep);
use CmLab;
use FaultLab;

sub scenario_cut
{
	my ($i) = @_;
	my $p = $lab->primary;
	my ($a1, $a2, $a3) = map { $lab->addr($_, $p) } qw(c1 c2 c3);
	my $rw = sub { $lab->conninfo('c1', 'read-write', application_name => "$_[0]_$i") };
	my $plain = sub { $lab->direct('c3', $p, %best_tcp, options => $best_server, application_name => "$_[0]_$i") };
	# c1 through conmgr (libpq-cm linked, and injected into psql); c3 plain libpq
	my %app = (
		cm_block => [ $lab->spawn('c1', [ $lab->cmapp, 'block', $rw->('lab_cm_block'), 'SELECT pg_sleep(60)' ],
				stamp => 1), qr/^result / ],
		cm_psql => [ pg_app('c1', $rw->('lab_cm_psql'), 'SELECT pg_sleep(60)', preload => 1), $lost_re ],
		cm_copy => [ pg_app('c1', $rw->('lab_cm_copy'), 'COPY sink FROM STDIN', preload => 1, feeder => \@feeder),
			$lost_re ],
		tcp_psql => [ pg_app('c3', $plain->('lab_tcp_psql'), 'SELECT pg_sleep(60)'), $lost_re ],
		tcp_copy => [ pg_app('c3', $plain->('lab_tcp_copy'), 'COPY sink FROM STDIN', feeder => \@feeder), $lost_re ],
	);
	# the other client host: a plain interactive session, and one through its conmgr
	my $c2in = '';
	my $c2psql = $lab->spawn('c2', [ $psql, '-X', '-At', '-q', '-d',
			$lab->direct('c2', $p, application_name => "lab_c2_psql_$i") ], stdin => \$c2in);
	my $c2block = $lab->spawn('c2', [ $lab->cmapp, 'block',
			$lab->conninfo('c2', 'read-write', application_name => "lab_c2_block_$i"), 'SELECT pg_sleep(60)' ]);
	$c2in .= "SELECT 'before', pg_backend_pid();\n";
	ok($c2psql->wait_for(qr/^before\|\d+$/m, 20), 'c2: a plain session on the primary')
	  or diag($c2psql->all);
	my ($c2pid) = $c2psql->out =~ /^before\|(\d+)$/m;

	my $want = join(',', sort map { "lab_${_}_$i" } qw(c2_block cm_block cm_copy cm_psql tcp_copy tcp_psql));
	my $ready = $lab->wait_until(sub {
		my $r = $lab->psql($p, qq{SELECT string_agg(application_name, ',' ORDER BY application_name)
			FROM pg_stat_activity WHERE application_name LIKE 'lab\\_%\\_$i' AND state = 'active'});
		my $copying = $lab->psql($p, qq{SELECT count(*) FROM pg_stat_progress_copy c
			JOIN pg_stat_activity a USING (pid) WHERE a.application_name LIKE 'lab\\_%\\_$i' AND c.bytes_processed > 4000000});
		return ($r // '') eq $want && ($copying // 0) == 2;
	}, 30);
	ok($ready, 'busy on the primary: c1 3 applications through conmgr (1 copying), c3 2 plain (1 copying), c2 1')
	  or diag(join("\n", map { "$_: " . $app{$_}[0]->all } sort keys %app));

	# c1 and c3 lose the primary at the same instant
	my $pos = $lab->log_pos($p);
	my $t0 = $lab->cut("c1-$p", "c3-$p");
	my ($c1_gone, $c3_gone, $retrans);
	my $when = watch(\%app, $t0, $T + 12, also => sub {
		my ($now) = @_;
		$c1_gone ||= ($lab->sessions_from($p, $a1) // -1) == 0;
		$c3_gone ||= ($lab->sessions_from($p, $a3) // -1) == 0;
		# 1 s into the cut: which connections to the primary retransmit
		$retrans //= retransmitting(c1 => $lab->addr($p, 'c1'), c3 => $lab->addr($p, 'c3')) if $now - $t0 >= 1;
		return $c1_gone && $c3_gone;
	});
	# when the sessions ended: the server's log_disconnections lines
	my @c1_disc = ended($p, $pos, $a1, 3);
	my @disc = $lab->disconnections($p, $pos);
	my $t_term = $c1_gone && @c1_disc ? (sort { $b <=> $a } map { $_->{t} } @c1_disc)[0] - $t0 : undef;
	is(scalar(@c1_disc), 3, "the primary logged the end of c1's 3 sessions");
	my %gone;
	for my $k (qw(tcp_psql tcp_copy))
	{
		my ($d) = grep { $_->{app} eq "lab_${k}_$i" } @disc;
		$gone{$k} = $d->{t} - $t0 if $d;
	}
	# the other host, after the terminator has run
	usleep(300_000);
	$c2in .= "SELECT 'after', pg_backend_pid();\n";
	ok($c2psql->wait_for(qr/^after\|\Q$c2pid\E$/m, 10), 'c2: its plain session still answers, same backend')
	  or diag($c2psql->all);
	$c2block->pump;
	unlike($c2block->out, qr/^result/m, 'c2: its query through its own conmgr is still running')
	  or diag($c2block->all);
	is($lab->psql($p, "SELECT count(*) FROM pg_stat_activity WHERE client_addr = '$a2' AND application_name LIKE 'lab\\_c2%\\_$i'"),
		2, 'c2: both sessions are on the primary');
	is($lab->psql($p, "SELECT count(*) FROM pgx_stat_watchdog WHERE conmgr_addr = '$a2'"), 1,
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
	  or diag($lab->psql($p, "SELECT application_name, state FROM pg_stat_activity WHERE client_addr = '$a1'"));
	for my $k (qw(tcp_psql tcp_copy))
	{
		ok(defined $when->{$k}, "$k (plain libpq, keepalives + tcp_user_timeout) ended too")
		  or diag($app{$k}[0]->all);
		like($app{$k}[0]->all, $lost_re, "$k: with a connection-lost error") if defined $when->{$k};
		ok(defined $gone{$k}, "$k: its backend ended (server keepalives, tcp_user_timeout, client_connection_check_interval)");
	}
	ok(($retrans // 0) >= 2, 'during the cut, TCP retransmits unacknowledged data on '
		  . ($retrans // 0) . ' connections (the COPYs, at least)');
	fig('1 conmgr: cmapp in pg_sleep fails (s)', $when->{cm_block});
	fig('1 conmgr: psql in pg_sleep fails (s)', $when->{cm_psql});
	fig('1 conmgr: psql COPY fails (s)', $when->{cm_copy});
	fig('1 conmgr: terminator ends the host\'s sessions (s)', $t_term);
	fig('2 plain libpq: psql in pg_sleep fails (s)', $when->{tcp_psql});
	fig('2 plain libpq: psql COPY fails (s)', $when->{tcp_copy});
	fig('2 plain libpq: server ends the pg_sleep session (s)', $gone{tcp_psql});
	fig('2 plain libpq: server ends the COPY session (s)', $gone{tcp_copy});

	$lab->restore("c1-$p", "c3-$p");
	$_->[0]->kill for values %app;
	$_->kill for $c2psql, $c2block;
	$lab->stop_procs;
	# c2's pg_sleep backend would outlive its killed client by a minute
	$lab->psql($p, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'lab\\_%\\_$i'");
	ok($lab->wait_until(sub { join(',', $lab->resolve('c1', 'read-write')) eq $p }, 30),
		'link restored: conmgr routes to the primary again');
	return;
}

return { keys => [ 1, 2 ], name => '1+2 primary link black-holed', run => \&scenario_cut };
