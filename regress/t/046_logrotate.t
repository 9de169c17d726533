# Test log rotation: cm_ctl start hands conmgr its log file (-l), and after
# "mv conmgr.log conmgr.log.1", the lines go on into conmgr.log.1 until
# "cm_ctl logrotate", then into a new conmgr.log, whose first line reports
# the reopening.  With applications resolving all along, every line ends up
# in one of the two files, once.  A logger restarted after a rotation
# writes to the new file; without a log file, the request is only noted;
# conmgr -l with a relative name; contrib/systemd/conmgr.logrotate, run by
# logrotate itself (when installed).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use File::Copy qw(move);
use CmTest::Conmgr;
use IPC::Run qw(run);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $top = cm_top();
my $cm_ctl = "$top/build/bin/cm_ctl";
my $cmresolve = "$top/build/regress/tools/cmresolve";

# No watchdog answers: the instance stays down, which is all the
# resolves need.  DEBUG1 gives one line per resolve, with the client's pid.
sub cmdir
{
	my $dir = PostgreSQL::Test::Utils::tempdir();
	chmod 0700, $dir;
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $wd = PostgreSQL::Test::Cluster::get_free_port();
	PostgreSQL::Test::Utils::append_to_file("$dir/conmgr.conf", qq{
port = $port
listen_addresses = '127.0.0.1'
backend_hostaddr0 = '127.0.0.1'
watchdog_port0 = $wd
heartbeat_connect_interval = 3600
log_min_messages = DEBUG1
});
	return ($dir, $port);
}

sub ctl
{
	my ($out, $err) = ('', '');
	run([ $cm_ctl, @_ ], '<', \undef, '>', \$out, '2>', \$err);
	return ($? >> 8, $out, $err);
}

sub slurp_or_empty
{
	my ($f) = @_;
	return -e $f ? slurp_file($f) : '';
}

# One resolve by a process of its own; returns its pid.
sub resolve_once
{
	my ($port) = @_;
	my $pid = open(my $fh, '-|', $cmresolve, '-p', $port, '-t', 'any') or die "cmresolve: $!";
	my @out = <$fh>;
	close $fh;
	return $pid;
}

sub count_pid
{
	my ($text, $pid) = @_;
	my @hits = $text =~ /listener DEBUG1:  app \S+ pid $pid: any -> 0 candidates$/mg;
	return scalar @hits;
}

my ($dir, $port) = cmdir();
my ($rc, $out, $err) = ctl('start', '-D', $dir, '-W');
is($rc, 0, 'cm_ctl start -W') or diag($err);
my $log = "$dir/conmgr.log";

# Before: lines go to conmgr.log.
my @before = map { resolve_once($port) } 1 .. 5;
ok(wait_until(sub { my $t = slurp_file($log); !grep { count_pid($t, $_) != 1 } @before }, 10),
	'before the rotation: each resolve is in conmgr.log');

# Renamed, not yet told: conmgr still writes to the renamed file.
move($log, "$log.1") or die "mv: $!";
my @between = map { resolve_once($port) } 1 .. 5;
ok(wait_until(sub { my $t = slurp_file("$log.1"); !grep { count_pid($t, $_) != 1 } @between }, 10),
	'after mv, before logrotate: the lines go on into conmgr.log.1');
ok(!-e $log, 'and no conmgr.log is made yet');

($rc, $out, $err) = ctl('logrotate', '-D', $dir);
is($rc, 0, 'cm_ctl logrotate: exit 0') or diag($err);
like($out, qr/conmgr signaled to reopen its log file/, 'and says so');
ok(wait_until(sub { slurp_or_empty($log) =~ /supervisor LOG:  received SIGUSR1, reopened log file "\Q$log\E"/ }, 10),
	'a new conmgr.log, reporting the reopening');
like(slurp_file($log), qr/\A[^\n]*reopened log file[^\n]*\n/, 'as its first line');
unlike(slurp_file("$log.1"), qr/reopened log file/, 'which is not in the old file');
is((stat $log)[2] & 07777, 0600, 'the new file has mode 0600');
my @after = map { resolve_once($port) } 1 .. 5;
ok(wait_until(sub { my $t = slurp_file($log); !grep { count_pid($t, $_) != 1 } @after }, 10),
	'after logrotate: the lines go to the new conmgr.log');
my $old = slurp_file("$log.1");
ok(!grep({ count_pid($old, $_) } @after), 'and none of them to conmgr.log.1');

# Under a steady stream of resolves: rotate in the middle, lose nothing.
{
	my $pidfile = "$dir/resolver.pids";
	my $child = fork() // die "fork: $!";
	if ($child == 0)
	{
		open(my $pf, '>>', $pidfile) or die $!;
		$pf->autoflush(1);
		print $pf resolve_once($port), "\n" for 1 .. 150;
		close $pf;
		exit 0;
	}
	ok(wait_until(sub { my @l = split /\n/, slurp_or_empty($pidfile); @l >= 50 }, 30),
		'a stream of resolves is running');
	move($log, "$log.2") or die "mv: $!";
	($rc) = ctl('logrotate', '-D', $dir);
	is($rc, 0, 'rotated in the middle of it');
	waitpid($child, 0);
	my @pids = split /\n/, slurp_file($pidfile);
	is(scalar @pids, 150, 'all 150 resolves done');
	my ($wrong, $in_old, $in_new) = (0, 0, 0);
	ok(wait_until(sub {
		my ($o, $n) = (slurp_file("$log.2"), slurp_or_empty($log));
		($wrong, $in_old, $in_new) = (0, 0, 0);
		for my $p (@pids)
		{
			my ($a, $b) = (count_pid($o, $p), count_pid($n, $p));
			$in_old++ if $a;
			$in_new++ if $b;
			$wrong++ if $a + $b != 1;
		}
		$wrong == 0;
	}, 10), 'every resolve is logged exactly once across the two files');
	note("$in_old lines in the renamed file, $in_new in the new one");
	ok($in_old > 0 && $in_new > 0, 'some before the rotation, some after');
	unlike(slurp_file("$log.2") . slurp_file($log), qr/log lines were dropped/, 'and no line was dropped');
}

# A logger restarted after a rotation writes to the current file.
{
	move($log, "$log.3") or die "mv: $!";
	ctl('logrotate', '-D', $dir);
	ok(wait_until(sub { slurp_or_empty($log) =~ /reopened log file/ }, 10), 'rotated once more');
	my ($sup) = slurp_file("$dir/conmgr.pid") =~ /^(\d+)/;
	my ($logger) = map { /^\s*(\d+)\s+$sup\s+conmgr: logger/ ? $1 : () } `ps -o pid=,ppid=,args= -u $<`;
	ok($logger, "found this conmgr's logger (pid $logger)");
	kill 'KILL', $logger;
	ok(wait_until(sub { slurp_or_empty($log) =~ /logger \(pid $logger\) was terminated by signal 9/ }, 10),
		'the killed logger is reported in the new file');
	my $p = resolve_once($port);
	ok(wait_until(sub { count_pid(slurp_file($log), $p) == 1 }, 10),
		'and the restarted logger writes there too');
	is(count_pid(slurp_file("$log.3"), $p), 0, 'not to the renamed file');
}

($rc) = ctl('stop', '-D', $dir, '-m', 'fast');
is($rc, 0, 'stop');
like(slurp_file($log), qr/supervisor LOG:  conmgr stopped\n\z/, "the supervisor's last line is in the new file");
($rc, $out, $err) = ctl('logrotate', '-D', $dir);
is($rc, 1, 'cm_ctl logrotate without a running conmgr: exit 1');
like($err, qr/no conmgr is running in "\Q$dir\E"/, 'and says so');

# conmgr in the foreground: without -l, SIGUSR1 is only noted; with a
# relative -l, the file is opened again by its absolute name.
{
	my ($d2, $p2) = cmdir();
	my ($o, $e) = ('', '');
	my $cm = CmTest::Conmgr->new('fg', cmdata => $d2, port => $p2);
	$cm->start(wait => 0);
	ok($cm->wait_for_log(qr/conmgr ready/, 0, 10), 'conmgr in the foreground, on stderr');
	my ($sup) = slurp_file("$d2/conmgr.pid") =~ /^(\d+)/;
	kill 'USR1', $sup;
	ok($cm->wait_for_log(qr/received SIGUSR1, but conmgr has no log file to reopen/, 0, 10),
		'without -l, SIGUSR1 is noted, nothing else');
	kill 'INT', $sup;
	is($cm->wait_exit($PostgreSQL::Test::Utils::timeout_default), 0, 'and conmgr stops normally');

	chdir $d2 or die;
	$cm->start(wait => 0, args => [ '-l', 'fg.log' ]);
	ok(wait_until(sub { slurp_or_empty("$d2/fg.log") =~ /conmgr ready/ }, 10), 'conmgr -l fg.log writes there');
	move("$d2/fg.log", "$d2/fg.log.1") or die;
	($sup) = slurp_file("$d2/conmgr.pid") =~ /^(\d+)/;
	kill 'USR1', $sup;
	ok(wait_until(sub { slurp_or_empty("$d2/fg.log") =~ /reopened log file "\Q$d2\E\/fg\.log"/ }, 10),
		'and reopens it by its absolute name');
	kill 'INT', $sup;
	$cm->wait_exit($PostgreSQL::Test::Utils::timeout_default);
	chdir '/';
	($rc, $o, $e) = (0, '', '');
	run([ "$top/build/bin/conmgr", '-D', $d2, '-l', "$d2/no/such/dir/x.log" ], '<', \undef, '>', \$o, '2>', \$e);
	is($? >> 8, 1, 'conmgr -l into a missing directory: exit 1');
	like($e, qr/could not open log file "\Q$d2\E\/no\/such\/dir\/x\.log": No such file or directory/, 'and says why');
}

# contrib/systemd/conmgr.logrotate, run by logrotate as this user: the
# paths point here, "su" and the owner of "create" are dropped (only root
# may use them).
{
	# tools/install-deps installs logrotate for make check
	my ($lr) = grep { -x $_ } qw(/usr/sbin/logrotate /sbin/logrotate /usr/bin/logrotate);
	ok($lr, 'logrotate is installed');
	$lr //= 'logrotate';
	my ($d3, $p3) = cmdir();
	($rc, $out, $err) = ctl('start', '-D', $d3, '-W');
	is($rc, 0, 'a conmgr for logrotate');
	my $conf = slurp_file("$top/contrib/systemd/conmgr.logrotate");
	like($conf, qr{^/var/lib/conmgr/\*/conmgr\.log \{$}m, 'the example covers /var/lib/conmgr/*/conmgr.log');
	$conf =~ s{^/var/lib/conmgr/\*/conmgr\.log}{$d3/conmgr.log}m;
	$conf =~ s{^\s*su .*\n}{}m;
	$conf =~ s{^(\s*create 0600).*$}{$1}m;
	$conf =~ s{/usr/local/bin/cm_ctl}{$cm_ctl}g;
	PostgreSQL::Test::Utils::append_to_file("$d3/lr.conf", $conf);
	my $p = resolve_once($p3);
	ok(wait_until(sub { count_pid(slurp_file("$d3/conmgr.log"), $p) == 1 }, 10), 'a line before');
	my ($lo, $le) = ('', '');
	run([ $lr, '-f', '-s', "$d3/lr.state", "$d3/lr.conf" ], '<', \undef, '>', \$lo, '2>', \$le);
	is($?, 0, 'logrotate -f with the example: exit 0') or diag($le);
	ok(wait_until(sub { slurp_or_empty("$d3/conmgr.log") =~ /reopened log file/ }, 10),
		'its postrotate made conmgr reopen conmgr.log');
	my $q = resolve_once($p3);
	ok(wait_until(sub { count_pid(slurp_file("$d3/conmgr.log"), $q) == 1 }, 10)
		  && count_pid(slurp_file("$d3/conmgr.log.1"), $p) == 1,
		'the old line is in conmgr.log.1 (not compressed yet: delaycompress), the new in conmgr.log');
	ctl('stop', '-D', $d3, '-m', 'fast');
}

done_testing();
