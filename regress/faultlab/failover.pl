# Scenario 3: the primary crashes and a standby is promoted: conmgr
# against libpq multi-host.  The set is rebuilt after each run, so it
# runs last of the lab's scenarios.
package FaultLab::Failover;

use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time usleep);
use CmLab;
use FaultLab;

sub scenario_failover
{
	my ($i) = @_;
	my $old = $lab->primary;
	my ($new, $other) = $lab->standbys;
	my $d = $lab->dir;
	my ($f_cm, $f_mh, $stop) = ("$d/fo$i.conmgr", "$d/fo$i.multihost", "$d/fo$i.stop");
	my %name_of = map { $lab->addr($_, 'c1') => $_ } $lab->servers;
	# the application's host list names the primary of the time first
	my @order = ($old, $new, $other);
	my $mh = 'host=' . join(',', map { $lab->addr($_, 'c1') } @order) . ' port=5432,5432,5432 dbname=postgres'
	  . ' user=postgres target_session_attrs=read-write connect_timeout=2';
	my $until = time() + 60;
	connect_loop($f_cm, $stop, $until, $lab->cmapp, 'connect',
		$lab->conninfo('c1', 'read-write', connect_timeout => 2));
	connect_loop($f_mh, $stop, $until, $psql, '-X', '-At', '-d', $mh, '-c',
		'SELECT host(inet_server_addr()), pg_is_in_recovery()');
	my $before = $lab->wait_until(sub {
		(grep { $_->{ok} } read_loop($f_cm)) >= 2 && (grep { $_->{ok} } read_loop($f_mh)) >= 2 }, 20);
	ok($before, "both loops connect to the primary $old before the crash");
	my $t_crash = $lab->crash($old);
	usleep(1_000_000);    # a failover tool's reaction time
	my $t_prom = $lab->promote($new);
	my $first_ok = sub {
		my ($file) = @_;
		my ($r) = grep { $_->{ok} && $_->{e} > $t_prom && ($name_of{ $_->{addr} } // '') eq $new } read_loop($file);
		return $r;
	};
	my $both = $lab->wait_until(sub { $first_ok->($f_cm) && $first_ok->($f_mh) }, $hang + 20);
	# a few more attempts once things have settled, then stop the loops
	$lab->wait_until(sub { (grep { $_->{t} > $t_prom + 4 } read_loop($f_cm)) >= 3
		  && (grep { $_->{t} > $t_prom + 4 } read_loop($f_mh)) >= 3 }, 20);
	open my $s, '>', $stop or die $!;
	close $s;
	$lab->wait_until(sub { !$lab->reap }, 10);
	$lab->kill_pids;

	my @cm = read_loop($f_cm);
	my @mh = read_loop($f_mh);
	ok($both, "both reached the promoted $new");
	my $fc = $first_ok->($f_cm);
	my $fm = $first_ok->($f_mh);
	my ($cm_t, $mh_t) = (map { $_ ? $_->{e} - $t_prom : undef } $fc, $fm);
	for my $x ([ 'conmgr', \@cm ], [ 'libpq multi-host', \@mh ])
	{
		my ($what, $rs) = @$x;
		# (a success on the old primary was connected before it died: an
		# attempt may straddle the crash)
		my @wrong = grep { $_->{ok} && ($_->{rec} ne 'f' || ($name_of{ $_->{addr} } // '?') eq $other) } @$rs;
		is(scalar @wrong, 0, "$what: 0 of " . scalar(grep { $_->{ok} } @$rs) . ' successful connections on a wrong role')
		  or diag(join('', map { "$_->{addr} recovery=$_->{rec}\n" } @wrong));
	}
	my @after = grep { $fc && $_->{t} > $fc->{e} } @cm;
	is(scalar(grep { !$_->{ok} || ($name_of{ $_->{addr} } // '') ne $new } @after), 0,
		'conmgr: every connection after the first success reached the new primary (' . scalar(@after) . ')')
	  or diag(join('', map { "$_->{addr} $_->{msg}\n" } @after));
	my ($cm_hung, $mh_hung) = map { scalar(grep { $_->{hung} } @$_) } \@cm, \@mh;
	is($cm_hung, 0, "conmgr: no attempt hung (each ended within $hang s)");
	fig("3 conmgr: attempts hung past $hang s (count)", $cm_hung);
	fig("3 libpq multi-host: attempts hung past $hang s (count)", $mh_hung);
	fig('3 conmgr: promote to first read-write success (s)', $cm_t);
	fig('3 libpq multi-host: promote to first read-write success (s)', $mh_t);
	fig('3 conmgr: failed attempts between crash and first success (count)',
		scalar(grep { !$_->{ok} && $_->{t} > $t_crash && (!$fc || $_->{t} < $fc->{e}) } @cm));
	fig('3 libpq multi-host: failed attempts between crash and first success (count)',
		scalar(grep { !$_->{ok} && $_->{t} > $t_crash && (!$fm || $_->{t} < $fm->{e}) } @mh));
	my @cm_new = grep { $_->{ok} && $_->{t} > $t_prom + 4 } @cm;
	my @mh_new = grep { $_->{ok} && $_->{t} > $t_prom + 4 } @mh;
	fig('3 conmgr: connect time once settled, median (s)', median(map { $_->{e} - $_->{t} } @cm_new));
	fig('3 libpq multi-host: connect time once settled, median (s)', median(map { $_->{e} - $_->{t} } @mh_new));
	note(sprintf("%s attempts until 5 s after the promotion, from the crash (+s): %s", $_->[0], join(' ', map {
		sprintf('%.2f-%.2f:%s', $_->{t} - $t_crash, $_->{e} - $t_crash, $_->{ok} ? $name_of{ $_->{addr} } // $_->{addr} : 'fail')
	} grep { $_->{e} > $t_crash && $_->{t} < $t_prom + 5 } @{ $_->[1] }))) for [ 'conmgr', \@cm ], [ 'libpq multi-host', \@mh ];
	note(sprintf('promoted at +%.2f s', $t_prom - $t_crash));
	my $t_rb = time();
	$lab->rebuild;
	note(sprintf('set rebuilt in %.1f s: primary %s, standbys %s', time() - $t_rb, $lab->primary,
		join(',', $lab->standbys)));
	return;
}

return { keys => [3], name => '3 primary crash + promote', run => \&scenario_failover };
