# Test that conmgr routes writes to one primary at a time (docs/conmgr.md,
# "One primary at a time"): after a standby is promoted while the old
# primary keeps running, every read-write connection goes to the new
# primary and none to the old one, which matches no target at all; an
# application blocked on the old primary gets an error within
# check_attr_interval + 1 s of the promotion; cm_ctl status shows the stale
# primary, and stays so when the instances on the new timeline go down.
# The watchdog reports the timeline in HB_WELCOME and, when it
# changes (also on a standby that follows the new primary), in HB_ATTRS,
# to conmgrs of protocol version 2 on.  A promotion asked for (pg_ctl
# promote) is reported at once to conmgrs of version 3, and conmgr treats
# the primary as stale from then on, before the standby has finished its
# promotion: here the standby's startup process is held (SIGSTOP) between
# the request and the promotion, so what conmgr does in that window is
# checked while it lasts.  Two primaries on one timeline (a
# restored base backup started as a primary) and instances of two
# databases are a configuration fault: read-write is refused with a
# message naming both instances, and the fault is logged once.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use CmTest::Conmgr;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $top = cm_top();
my $cmapp = "$top/build/regress/tools/cmapp";
my $resolve = "$top/build/regress/tools/cmresolve";
my $cm_ctl = "$top/build/bin/cm_ctl";
my $check_ms = 1000;			# watchdog.check_attr_interval
my $n_after = 10;				# read-write connections after the promotion

# --- p: primary; s1: its standby; s2: a standby of s1 (cascading) ---
my $wdconf = { conf => "watchdog.check_attr_interval = $check_ms\n" };
my ($nodes, $wds) = watchdog_cluster($wdconf, p => 'p', s1 => 's1');
my %node = %$nodes;
my %wd = (%$wds, map { $_ => PostgreSQL::Test::Cluster::get_free_port() } qw(s2 r));
$node{p}->safe_psql('postgres', 'CREATE TABLE t (i int)');
$node{p}->wait_for_catchup('s1');
$node{s1}->backup('b1');
$node{s2} = PostgreSQL::Test::Cluster->new('s2');
$node{s2}->init_from_backup($node{s1}, 'b1', has_streaming => 1);
$node{s2}->append_conf('postgresql.conf', "watchdog.port = $wd{s2}\n");
$node{s2}->start;
my %name_of = map { $node{$_}->port => $_ } qw(p s1 s2);

# A conmgr in front of the instances named; each test waits for its heartbeats.
sub start_conmgr
{
	my (@which) = @_;
	my $cm = CmTest::Conmgr->new('cm',
		instances => [ map { [ $node{$_}, $wd{$_} ] } @which ],
		conf => { heartbeat_interval => 1, heartbeat_timeout => 5, log_min_messages => 'LOG' });
	$cm->start(wait => 0);
	return $cm;
}

sub conninfo
{
	my ($cm, $target) = @_;
	return $cm->connstr($target) . ' connect_timeout=10';
}

# cmresolve's answer: the candidates' instance numbers, or "error: MESSAGE".
sub resolve_answer
{
	my ($cm, $target) = @_;
	my $o = $cm->resolve($target);
	return "error: $1" if $o =~ /^error code=\d+ message=(.*)$/m;
	return join(',', $o =~ /^candidate instance=(\d+)/mg);
}

# Every instance of $cm's status up (cm_ctl status --json).
sub all_up
{
	my ($cm) = @_;
	return $cm->all_up;
}

sub status_json
{
	my ($cm) = @_;
	my $j = $cm->status;
	diag('cm_ctl status --json did not answer') unless $j;
	return $j;
}

sub status_table
{
	my ($cm) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ $cm_ctl, 'status', '-D', $cm->cmdata ], '<', \undef, '>', \$out, '2>', \$err,
		IPC::Run::timeout(30));
	return $out;
}

# The instance a cmapp connect landed on ('p', 's1', ...), or its error.
sub connect_lands
{
	my ($cm, $target) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ $cmapp, 'connect', conninfo($cm, $target) ], '<', \undef, '>', \$out, '2>', \$err,
		IPC::Run::timeout(30));
	return $name_of{$1} // "port $1" if $out =~ /^connected host=\S+ hostaddr=\S+ port=(\d+)/m;
	return "failed: $1" if $out =~ /^failed message=(.*)$/m;
	return "?: $out$err";
}

# How many lines of $cm's log match $re, once at least one does (10 s at
# most) and what else is on its way has arrived.
sub log_count
{
	my ($cm, $re) = @_;
	my $n = sub { scalar(() = $cm->log_content =~ /$re/mg) };
	wait_until(sub { $n->() > 0 }, 10);
	usleep(200_000);
	return $n->();
}

my $cm = start_conmgr(qw(p s1 s2));
ok(wait_until(sub { all_up($cm) }, 60), 'conmgr has heartbeats with p, s1 and s2') or diag($cm->log_content);
is(resolve_answer($cm, 'read-write'), '0', 'before the promotion, read-write goes to p');

# --- the watchdog reports the timeline, to version 2 conmgrs on ---
my %hb;
for my $n (qw(s1 s2))
{
	$hb{$n}{3} = hb_start(port => $wd{$n}, interval => 1, timeout => 10);
	$hb{$n}{2} = hb_start(port => $wd{$n}, interval => 1, timeout => 10, max_version => 2);
	$hb{$n}{1} = hb_start(port => $wd{$n}, interval => 1, timeout => 10, max_version => 1);
}
for my $n (qw(s1 s2))
{
	ok(hb_wait($hb{$n}{3}, qr/welcome version=3 attrs=1 flags=0 timeline=1\n/, 20),
		"$n: a version 3 client's HB_WELCOME says standby, timeline 1") or diag(${ $hb{$n}{3}{out} });
	ok(hb_wait($hb{$n}{2}, qr/welcome version=2 attrs=1 flags=0 timeline=1\n/, 20),
		"$n: a version 2 client's HB_WELCOME says standby, timeline 1") or diag(${ $hb{$n}{2}{out} });
	ok(hb_wait($hb{$n}{1}, qr/welcome version=1 attrs=1 flags=0 timeline=0\n/, 20),
		"$n: a version 1 client's HB_WELCOME has no timeline") or diag(${ $hb{$n}{1}{out} });
}
is(status_json($cm)->{instances}[0]{timeline}, 1, 'cm_ctl status --json: p is on timeline 1');

# --- an application blocked on p, then s1 promoted while p keeps running ---
my $blocked = cmapp_start('block', conninfo($cm, 'read-write'), 'SELECT pg_sleep(60)');
ok(cmapp_wait($blocked, qr/^running/m), 'a read-write application is blocked in pg_sleep')
  or diag(${ $blocked->{out} });
is($node{p}->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)'"), 1,
	'on p');

# Two protocol sessions (cmresolve) on p as well: one attached now, one
# resolved now that reports ATTACHED only 6 s later, when p is stale.
my ($att_out, $late_out) = ('', '');
my $att = IPC::Run::start([ $resolve, '-p', $cm->port, '-t', 'read-write', '-a', '-w', 30 ], '>', \$att_out);
my $late = IPC::Run::start([ $resolve, '-p', $cm->port, '-t', 'read-write', '-a', '-S', 6, '-w', 30 ],
	'>', \$late_out);
ok(wait_until(sub { $_->pump_nb for grep { $_->pumpable } $att, $late; $att_out =~ /^attached instance=0$/m && $late_out =~ /^resolved$/m }, 10),
	'a protocol session attached to p, another offered p and not yet attached')
  or diag("$att_out\n$late_out");

# The promotion asked for, its execution held: s1's startup process,
# which promotes, is stopped before pg_ctl signals it.
my $startup = $node{s1}->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'startup'");
ok($startup =~ /^\d+$/ && kill('STOP', $startup), "s1's startup process ($startup) held");
my $t_before = time();
PostgreSQL::Test::Utils::system_or_bail('pg_ctl', '-D', $node{s1}->data_dir, '-W', 'promote');
my $t_promoted = time();
my $got = cmapp_wait($blocked, qr/^result /m, $check_ms / 1000 + 10);
my $t_err = time();
ok($got, 'the application blocked on the old primary got an error') or diag(${ $blocked->{out} });
like(${ $blocked->{out} }, qr/^result status=PGRES_FATAL_ERROR sqlstate=none connstatus=BAD .*server closed the connection unexpectedly/m,
	"libpq's connection-lost error");
note(sprintf('the blocked application failed %.3f s after pg_ctl promote began, %.3f s after it returned '
	  . '(check_attr_interval %.1f s)', $t_err - $t_before, $t_err - $t_promoted, $check_ms / 1000));
ok($t_err - $t_before <= 0.5,
	sprintf('within 0.5 s of the request, the promotion still held (%.3f s from the start of pg_ctl promote)',
		$t_err - $t_before));
$blocked->{h}->kill_kill;
ok(wait_until(sub { $att->pump_nb if $att->pumpable; $att_out =~ /^down instance=0 reason=5 /m }, 10),
	'the attached protocol session got INSTANCE_DOWN reason 5 (stale primary)') or diag($att_out);
ok(wait_until(sub { $late->pump_nb if $late->pumpable; $late_out =~ /^down instance=0 reason=5 /m }, 15),
	'the one that attached to p after it became stale got it at once') or diag($late_out);
$_->kill_kill for $att, $late;

# What conmgr shows and routes while the promotion is asked for, not done.
is($node{s1}->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 's1 is still in recovery (held)');
ok(hb_wait($hb{s1}{3}, qr/attrs attrs=5 timeline=1\n/, 5),
	's1 to a version 3 client: HB_ATTRS in recovery, promotion requested, timeline 1') or diag(${ $hb{s1}{3}{out} });
my $jp = status_json($cm);
is($jp->{instances}[0]{role}, 'stale primary', 'cm_ctl status --json: p is a stale primary');
is($jp->{instances}[1]{role}, 'standby (promoting)', 's1 a standby being promoted');
like(status_table($cm), qr/^1\s+127\.0\.0\.1\s.*\bup\s+standby \(promoting\)\s+1\s/m,
	'cm_ctl status: the table says "standby (promoting)"');
is(resolve_answer($cm, 'read-write'), '', 'read-write: no candidate, no primary to offer yet');
is(resolve_answer($cm, 'read-only'), '1,2', 'read-only: s1 and s2');
is(log_count($cm, qr/instance 0 is a stale primary: it is on timeline 1, and the promotion of instance 1, a standby on timeline 1, has been asked for/), 1,
	'conmgr logged why p is stale, once') or diag($cm->log_content);
ok(kill('CONT', $startup), 's1\'s startup process let go');
ok(wait_until(sub { $node{s1}->safe_psql('postgres', 'SELECT pg_is_in_recovery()') eq 'f' }, 30), 's1 promoted');
is($node{p}->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 'f', 'p is still running, still a primary');

# Past check_attr_interval, every read-write connection goes to s1.
usleep($check_ms * 1000);
my %landed;
$landed{ connect_lands($cm, 'read-write') }++ for 1 .. $n_after;
is_deeply(\%landed, { s1 => $n_after },
	"all $n_after read-write connections after the promotion land on s1, none on p")
  or diag(explain(\%landed));
my %resolved;
$resolved{ resolve_answer($cm, 'read-write') }++ for 1 .. $n_after;
is_deeply(\%resolved, { 1 => $n_after }, "$n_after read-write resolves: only instance 1 (s1) offered");
is(resolve_answer($cm, 'primary'), '1', 'primary: s1 only');
is(resolve_answer($cm, 'prefer-primary'), '1,2', 'prefer-primary: s1, then s2, never p');

# --- the timeline change reaches conmgrs of version 2, also from a standby ---
ok(hb_wait($hb{s1}{3}, qr/attrs attrs=0 timeline=2\n/, 10),
	's1 promoted: HB_ATTRS to a version 3 client: not in recovery, timeline 2') or diag(${ $hb{s1}{3}{out} });
ok(hb_wait($hb{s1}{2}, qr/attrs attrs=0 timeline=2\n/, 10),
	's1 promoted: HB_ATTRS not in recovery, timeline 2') or diag(${ $hb{s1}{2}{out} });
is(scalar(grep { $_->{what} eq 'attrs' && $_->{rest} =~ /attrs=5/ } hb_events($hb{s1}{2})), 0,
	'a version 2 client never heard of the promotion request');
ok(hb_wait($hb{s1}{1}, qr/attrs attrs=0 timeline=0\n/, 10),
	'to a version 1 client: HB_ATTRS without timeline') or diag(${ $hb{s1}{1}{out} });
ok(hb_wait($hb{s2}{2}, qr/attrs attrs=1 timeline=2\n/, 60),
	's2 follows s1 to timeline 2: HB_ATTRS in recovery, timeline 2') or diag(${ $hb{s2}{2}{out} });
# Two more attribute checks for a version 1 client to hear of anything.
usleep(2 * $check_ms * 1000);
is(scalar(grep { $_->{what} eq 'attrs' } hb_events($hb{s2}{1})), 0,
	'to a version 1 client s2 sends nothing: its attributes did not change');
hb_stop($_) for map { values %$_ } values %hb;

# Read targets: the stale primary is offered for none (docs/conmgr.md).
is(resolve_answer($cm, 'read-only'), '2', 'read-only: s2, not p');
is(resolve_answer($cm, 'standby'), '2', 'standby: s2');
my %any;
$any{$_}++ for map { split /,/, resolve_answer($cm, 'any') } 1 .. 4;
ok(!$any{0} && $any{1} && $any{2}, 'any: s1 and s2, never p') or diag(explain(\%any));
is(resolve_answer($cm, 'prefer-standby'), '2,1', 'prefer-standby: s2, then s1');

my $j = status_json($cm);
is($j->{instances}[0]{role}, 'stale primary', 'cm_ctl status --json: p is a stale primary');
is($j->{instances}[0]{timeline}, 1, 'on timeline 1');
is($j->{instances}[1]{role}, 'primary', 's1 is the primary');
is($j->{instances}[1]{timeline}, 2, 'on timeline 2');
is($j->{instances}[2]{role}, 'standby', 's2 a standby');
like(status_table($cm), qr/^0\s+127\.0\.0\.1\s.*\bup\s+stale primary\s+1\s/m,
	'cm_ctl status: the table says "stale primary", timeline 1');
is(log_count($cm, qr/instance 0 is a stale primary/), 1,
	'conmgr logged the stale primary once, for all those requests')
  or diag($cm->log_content);

# --- the new primary and its standby down: the old primary stays stale ---
# conmgr remembers the highest timeline it has seen of this database, so
# the old primary does not get writes back when the instances on timeline
# 2 go away (a rewind would still cut what it holds).
$node{s2}->stop('fast');
$node{s1}->stop('fast');
ok(wait_until(sub { my $st = $cm->status // {}; my @i = @{ $st->{instances} // [] };
			@i == 3 && $i[1]{heartbeat} ne 'up' && $i[2]{heartbeat} ne 'up' }, 30),
	's1 and s2 stopped: conmgr sees them down') or diag(explain($cm->status));
is(resolve_answer($cm, 'read-write'), '', 'read-write: no candidate, p is still stale');
is(resolve_answer($cm, 'any'), '', 'any: none either');
like(connect_lands($cm, 'read-write'), qr/^failed: /, 'a read-write application gets an error, not p');
$j = status_json($cm);
is($j->{instances}[0]{role}, 'stale primary', 'cm_ctl status --json: p is still a stale primary');
unlike($cm->log_content, qr/instance 0 is no longer a stale primary/, 'conmgr did not log p as routable again');
$node{s1}->start;
$node{s2}->start;
ok(wait_until(sub { all_up($cm) }, 60), 's1 and s2 back up') or diag(explain($cm->status));
is(resolve_answer($cm, 'read-write'), '1', 'read-write: s1 again');

# --- two primaries on one timeline: a base backup of q started as a primary ---
($nodes, $wds) = watchdog_cluster($wdconf, q => 'q');
($node{q}, $wd{q}) = ($nodes->{q}, $wds->{q});
$node{r} = PostgreSQL::Test::Cluster->new('r');
$node{r}->init_from_backup($node{q}, 'b');
$node{r}->append_conf('postgresql.conf', "watchdog.port = $wd{r}\n");
$node{r}->start;
is($node{r}->safe_psql('postgres', 'SELECT pg_is_in_recovery(), timeline_id FROM pg_control_checkpoint()'),
	'f|1', 'r, restored from a base backup of q without a recovery signal, is a primary on timeline 1');
is($node{r}->safe_psql('postgres', 'SELECT system_identifier FROM pg_control_system()'),
	$node{q}->safe_psql('postgres', 'SELECT system_identifier FROM pg_control_system()'),
	'with the system identifier of q');
%name_of = (%name_of, $node{q}->port => 'q', $node{r}->port => 'r');

my $cm2 = start_conmgr(qw(q r));
ok(wait_until(sub { all_up($cm2) }, 60), 'conmgr 2 has heartbeats with q and r') or diag($cm2->log_content);
my ($qp, $rp) = ($node{q}->port, $node{r}->port);
my $both = qr/instances 0 \(127\.0\.0\.1:$qp\) and 1 \(127\.0\.0\.1:$rp\) are both primaries on timeline 1/;
for my $target (qw(read-write primary prefer-primary))
{
	my $a = connect_lands($cm2, $target);
	like($a, qr/^failed: .*conmgr: refusing target_session_attrs=$target: $both/,
		"$target: refused, naming both instances") or diag($a);
}
like(resolve_answer($cm2, 'read-write'), qr/^error: refusing target_session_attrs=read-write: $both/,
	'the refusal is an ERROR frame (cmresolve)');
like(connect_lands($cm2, 'any'), qr/^failed: .*$both/, 'any: no standby to offer, refused as well');
$j = status_json($cm2);
is(join(',', map { $_->{role} } @{ $j->{instances} }), 'primary (conflict),primary (conflict)',
	'cm_ctl status --json: both primaries in conflict');
is(log_count($cm2, qr/configuration fault: instances 0 .* and 1 .* are both primaries on timeline 1/), 1,
	'the fault was logged once, over 6 refusals') or diag($cm2->log_content);

# The fault ends when r stops: q is the primary again.
$node{r}->stop;
ok(wait_until(sub { resolve_answer($cm2, 'read-write') eq '0' }, 30), 'r stopped: read-write goes to q again');
is(log_count($cm2, qr/instances no longer in conflict/), 1, 'and conmgr says so');

# --- two databases: s1 (timeline 2) and q (timeline 1, another initdb) ---
my $cm3 = start_conmgr(qw(s1 q));
ok(wait_until(sub { all_up($cm3) }, 60), 'conmgr 3 has heartbeats with s1 and q') or diag($cm3->log_content);
my $s1p = $node{s1}->port;
my $a = connect_lands($cm3, 'read-write');
like($a, qr/^failed: .*conmgr: refusing target_session_attrs=read-write: instances 0 \(127\.0\.0\.1:$s1p\) and 1 \(127\.0\.0\.1:$qp\) belong to different databases/,
	'different system identifiers: read-write refused, naming both') or diag($a);
is(log_count($cm3, qr/configuration fault: instances 0 .* and 1 .* have different database system identifiers/), 1,
	'the fault is logged, once');
unlike($cm3->log_content, qr/stale primary/, 'timelines of two databases are not compared: q is not called stale');

for my $c ($cm, $cm2, $cm3)
{
	$c->stop;
}
$node{$_}->stop for qw(s2 s1 p q);
done_testing();
