# Test conmgr under valgrind's memcheck through a whole life against a real
# primary and standby with the watchdog: cm_ctl start (conmgr is exec'd by
# cm_ctl: --trace-children=yes; its roles are forked, which valgrind always
# follows), resolves and a libpq-cm connection, cm_ctl status, reload and
# logrotate, the standby's heartbeat lost (its processes stopped) and found
# again with an application attached to it, cm_ctl stop -m fast.  Every
# process (supervisor, logger, listener, heartbeat roles, cm_ctl) must end
# with 0 errors and 0 bytes definitely lost; the summary is printed.
# Under make check-asan the programs are built with ASan, which valgrind
# cannot run: skipped there (make check runs it).  docs/hardening.md.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

plan skip_all => 'make check-asan: the programs are built with ASan, which valgrind cannot run '
  . '(make check runs this test)' if sanitized();
my ($valgrind) = grep { -x } map { "$_/valgrind" } split /:/, $ENV{PATH};
plan skip_all => 'skipped: no valgrind (Debian package valgrind)' unless $valgrind;

my $top = cm_top();
my $bin = "$top/build/bin";
my $resolve = "$top/build/regress/tools/cmresolve";
my $cmapp = "$top/build/regress/tools/cmapp";
my ($hb_interval, $hb_timeout) = (1, 3);

# --- a primary and a standby with the watchdog ---
my ($node, $wdp) = watchdog_cluster(p => 'primary', s => 'standby');
my ($p, $s, %wd) = (@$node{qw(p s)}, %$wdp);

my $cmport = PostgreSQL::Test::Cluster::get_free_port();
my $dir = PostgreSQL::Test::Utils::tempdir();
chmod 0700, $dir;
my $conf = "port = $cmport\nlisten_addresses = '127.0.0.1'\n"
  . "heartbeat_interval = $hb_interval\nheartbeat_timeout = $hb_timeout\n"
  . "backend_hostaddr0 = '127.0.0.1'\nbackend_port0 = " . $p->port . "\nwatchdog_port0 = $wd{p}\n"
  . "backend_hostaddr1 = '127.0.0.1'\nbackend_port1 = " . $s->port . "\nwatchdog_port1 = $wd{s}\n";
PostgreSQL::Test::Utils::append_to_file("$dir/conmgr.conf", $conf);

# --- valgrind: one log per process ---
my $vgdir = PostgreSQL::Test::Utils::tempdir();
my @vg = ($valgrind, '--tool=memcheck', '--leak-check=full', '--show-leak-kinds=definite,indirect,possible',
	'--errors-for-leak-kinds=definite', '--error-exitcode=97', '--trace-children=yes',
	'--num-callers=30', "--log-file=$vgdir/vg.%p.log");

# A program under valgrind; returns (stdout, stderr, exit status).
sub vg_run
{
	my (@cmd) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ @vg, @cmd ], '<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(120));
	return ($out, $err, $? >> 8);
}

sub resolve
{
	my ($target) = @_;
	my $out = '';
	IPC::Run::run([ $resolve, '-p', $cmport, '-t', $target ], '<', \undef, '>&', \$out,
		IPC::Run::timeout(30));
	return $out;
}

my $t_start = time();
my ($out, $err, $rc) = vg_run("$bin/cm_ctl", 'start', '-D', $dir, '--complete', '-t', 60);
is($rc, 0, 'cm_ctl start --complete under valgrind: conmgr runs and reaches both instances')
  or diag("$out$err");
note(sprintf('start under valgrind took %.1f s', time() - $t_start));

# --- resolve, connect, status, reload, logrotate ---
like(resolve('primary'), qr/^candidate instance=0 /m, 'resolve primary: instance 0');
like(resolve('standby'), qr/^candidate instance=1 /m, 'resolve standby: instance 1');
{
	my $o = '';
	IPC::Run::run([ $cmapp, 'connect', "host=127.0.0.1 port=$cmport dbname=postgres target_session_attrs=read-write" ],
		'<', \undef, '>&', \$o, IPC::Run::timeout(30));
	like($o, qr/^connected .* port=${\ $p->port } .*recovery=f/m, 'a libpq-cm connection through conmgr lands on the primary')
	  or diag($o);
}
($out, $err, $rc) = vg_run("$bin/cm_ctl", 'status', '-D', $dir);
is($rc, 0, 'cm_ctl status') or diag("$out$err");
PostgreSQL::Test::Utils::append_to_file("$dir/conmgr.conf", "log_min_messages = DEBUG1\n");
($out, $err, $rc) = vg_run("$bin/cm_ctl", 'reload', '-D', $dir);
is($rc, 0, 'cm_ctl reload') or diag("$out$err");
rename("$dir/conmgr.log", "$dir/conmgr.log.1") or die $!;
($out, $err, $rc) = vg_run("$bin/cm_ctl", 'logrotate', '-D', $dir);
is($rc, 0, 'cm_ctl logrotate') or diag("$out$err");
ok(wait_until(sub { -s "$dir/conmgr.log" }, 10), 'conmgr writes a new conmgr.log');

# --- heartbeat loss: an application attached to the standby, which stops ---
my $a_out = '';
my $attached = IPC::Run::start([ $resolve, '-p', $cmport, '-t', 'standby', '-a', '-w', 60 ],
	'<', \undef, '>&', \$a_out);
ok(wait_until(sub { $attached->pump_nb; $a_out =~ /^attached instance=1/m }, 20), 'an application attached to the standby')
  or diag($a_out);
my $pm = $s->{_pid};
my @pids = ($pm, split /\s+/, `pgrep -P $pm`);
kill 'STOP', @pids;
my $t0 = time();
my $down = wait_until(sub { $attached->pump_nb if $attached->pumpable; $a_out =~ /^down instance=1/m },
	$hb_timeout + 15);
kill 'CONT', @pids;
ok($down, 'its heartbeat lost: the application is told the standby is down') or diag($a_out);
note(sprintf('down-notice %.1f s after the standby stopped (heartbeat_timeout %d s)', ($down // time()) - $t0,
	$hb_timeout));
$attached->finish;
ok(wait_until(sub { resolve('standby') =~ /^candidate instance=1 /m }, 30), 'the standby is routable again');

# A second application stays attached through the stop.
my $b_out = '';
my $held = IPC::Run::start([ $resolve, '-p', $cmport, '-t', 'primary', '-a', '-w', 60 ],
	'<', \undef, '>&', \$b_out);
ok(wait_until(sub { $held->pump_nb; $b_out =~ /^attached instance=0/m }, 20), 'an application attached to the primary');

# --- stop ---
($out, $err, $rc) = vg_run("$bin/cm_ctl", 'stop', '-D', $dir, '-m', 'fast', '-t', 60);
is($rc, 0, 'cm_ctl stop -m fast') or diag("$out$err");
$held->finish;
like($b_out, qr/^(down|eof|error)/m, 'the attached application learns that conmgr is gone');
my @logs;
ok(wait_until(sub {
	@logs = glob("$vgdir/vg.*.log");
	!grep { PostgreSQL::Test::Utils::slurp_file($_) !~ /ERROR SUMMARY/ } @logs;
}, 30), 'every process under valgrind has ended');

# --- the summary ---
my (%sum, @rows);
for my $log (sort @logs)
{
	my $text = PostgreSQL::Test::Utils::slurp_file($log);
	# The last summary of a file: a process exec'd under valgrind continues
	# the log of the one it replaced.
	my ($pid) = $log =~ /vg\.(\d+)\.log$/;
	my ($cmd) = ($text =~ /^==\d+== Command: (.*)$/mg)[-1] // '?';
	my ($errors) = ($text =~ /ERROR SUMMARY: (\d+) errors/g)[-1] // -1;
	my %lost = map { $_ => 0 } qw(definitely indirectly possibly);
	$lost{$1} = $2 =~ tr/,//dr while $text =~ /(definitely|indirectly|possibly) lost: ([\d,]+) bytes/g;
	my $what = $cmd =~ m{/cm_ctl (\w+)} ? "cm_ctl $1" : $cmd =~ m{/conmgr } ? 'conmgr' : $cmd;
	push @rows, sprintf('%-16s pid %-7d %d errors, definitely lost %d, indirectly %d, possibly %d bytes',
		$what, $pid, $errors, @lost{qw(definitely indirectly possibly)});
	$sum{processes}++;
	$sum{errors} += $errors < 0 ? 1 : $errors;
	$sum{$_} += $lost{$_} for keys %lost;
	ok($errors == 0 && $lost{definitely} == 0, "$what (pid $pid): 0 errors, 0 bytes definitely lost")
	  or diag($text);
}
my $conmgrs = grep { /^conmgr / } @rows;
ok($conmgrs >= 5, "valgrind saw $conmgrs conmgr processes (supervisor, logger, listener, 2 heartbeat roles)");
note($_) for @rows;
diag(sprintf('valgrind memcheck: %d processes (%d conmgr), %d errors, definitely lost %d bytes, '
	  . 'indirectly %d, possibly %d; %.0f s', $sum{processes}, $conmgrs, $sum{errors},
	@sum{qw(definitely indirectly possibly)}, time() - $t_start));

$s->stop;
$p->stop;
done_testing();
