# Test that a wake-up of the watchdog does work for what is due, not for
# every session: with 900 registered sessions that exchange nothing for an
# hour (heartbeat_interval 3600 s) and watchdog.check_attr_interval = 1 ms,
# the worker wakes about 1,000 times a second and runs no session timer
# (pgx_stat_watchdog_worker.timers_run); each wake-up is one wait, not a
# blocking wait followed by a second one that does not block (strace);
# and 100 sessions beating every second have their timers run about once
# a beat each, none lost; 1,000 beating sessions wake the worker at most
# about 200 times a second (frames gather after a busy wake-up).  Also: watchdog.log_registrations = off leaves
# out the registration lines.  The worker's CPU time in the idle part is
# printed, not checked: on 2 cores a pass over 900 sessions at each
# wake-up costs about as much as the wake-up itself, too little to tell
# apart under other load (figure 7 of make bench measures it at scale).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use IPC::Run;
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

skip_under_asan('the watchdog extension runs in the server, which is not built with the sanitizers');

my ($node, $wdport) = watchdog_node('wd_timers', qq{
watchdog.max_heartbeat_connections = 1100
watchdog.max_sessions_per_address = 0
watchdog.check_attr_interval = 1
});
my $wd = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'watchdog'");
like($wd, qr/^\d+$/, 'the watchdog worker runs');

sub registered { return $node->safe_psql('postgres', 'SELECT count(*) FROM pgx_stat_watchdog'); }

sub worker_counters
{
	my ($w, $t) = split /\|/, $node->safe_psql('postgres',
		'SELECT wakeups, timers_run FROM pgx_stat_watchdog_worker');
	return ($w, $t);
}

sub cpu_ticks
{
	my $s = slurp_file("/proc/$wd/stat");
	$s =~ s/^.*\)\s+//s;
	my @f = split /\s+/, $s;
	return $f[11] + $f[12];
}

# watchdog.log_registrations = off quiets the registration lines, as
# log_connections does for connections; a reload applies it.
for my $log (qw(off on))
{
	my $src = $log eq 'off' ? '127.0.3.10' : '127.0.3.11';
	$node->safe_psql('postgres', "ALTER SYSTEM SET watchdog.log_registrations = $log");
	$node->reload;
	# the worker has read the file when it answers to the new value
	ok(wait_until(sub { $node->safe_psql('postgres', 'SHOW watchdog.log_registrations') eq $log }, 10),
		"watchdog.log_registrations is $log");
	my $offset = -s $node->logfile;
	my $c = hb_start(port => $wdport, bind => $src, sessions => 2, interval => 3600, timeout => 3600);
	ok(wait_until(sub { registered() == 2 }, 30), "2 sessions registered with log_registrations = $log");
	my $lines = () = slurp_file($node->logfile, $offset) =~ /conmgr at \Q$src\E:\d+ registered/g;
	is($lines, $log eq 'off' ? 0 : 2, "log_registrations = $log: $lines registration lines");
	hb_stop($c);
	ok(wait_until(sub { registered() == 0 }, 30), 'they are gone');
}

# 900 idle sessions from three clients (300 descriptors each, under the
# usual soft limit of 1,024).
my @idle;
push @idle, hb_start(port => $wdport, bind => "127.0.3.$_", sessions => 300,
	handshakes => 16, interval => 3600, timeout => 3600, duration => 120) for 1 .. 3;
END { hb_stop($_) for @idle; }
ok(wait_until(sub { registered() == 900 }, 60), '900 idle sessions registered')
  or diag('registered: ' . registered() . "\n" . ${ $idle[0]{err} });

# Registration runs each session's timer once (its handshake's); after
# that none is due for an hour.
sleep 1;
my $hz = POSIX::sysconf(POSIX::_SC_CLK_TCK());
my ($w0, $t0) = worker_counters();
my ($c0, $s0) = (cpu_ticks(), time());
sleep 4;
my ($w1, $t1) = worker_counters();
my ($c1, $s1) = (cpu_ticks(), time());
my $wakeups = $w1 - $w0;
my $cpu = 100 * ($c1 - $c0) / $hz / ($s1 - $s0);
cmp_ok($wakeups, '>=', 400, "the worker woke for its 1 ms attribute check ($wakeups times in 4 s)");
cmp_ok($t1 - $t0, '<=', 5, 'no session timer ran while none was due')
  or diag('timers run: ' . ($t1 - $t0) . " in $wakeups wake-ups");
note(sprintf('the worker used %.2f %% of a core', $cpu));

# One wait a wake-up: a wait that does not block (timeout 0) only when a
# timer was already due as the worker went to sleep, never as a second
# wait after each blocking one.
SKIP:
{
	skip 'strace is not installed', 2
	  unless system('sh', '-c', 'command -v strace >/dev/null') == 0;
	$node->safe_psql('postgres', 'ALTER SYSTEM SET watchdog.check_attr_interval = 10');
	$node->reload;
	sleep 1;
	my $trace = "${PostgreSQL::Test::Utils::tmp_check}/wd_timers.strace";
	my $strace = IPC::Run::start(
		[ 'strace', '-q', '-p', $wd, '-e', 'trace=epoll_wait,epoll_pwait', '-o', $trace ],
		'<', \undef, '>', \my $sout, '2>', \my $serr);
	sleep 3;
	$strace->signal('INT');
	$strace->finish;
	my ($waits, $nonblocking) = (0, 0);
	for my $line (split /\n/, slurp_file($trace))
	{
		# epoll_wait(fd, [events], maxevents, timeout...
		next unless $line =~ /^epoll_p?wait\(\d+, \[[^\]]*\], \d+, (-?\d+)/;
		$waits++;
		$nonblocking++ if $1 == 0;
	}
	cmp_ok($waits, '>=', 50, "strace saw the worker's waits ($waits)") or diag($serr);
	cmp_ok($nonblocking, '<=', $waits / 10,
		"at most one wait in ten does not block ($nonblocking of $waits)");
}

# 100 sessions beating every second: their timers run about once a beat
# each (a frame received lets a timer run early and find nothing due, at
# most once more a beat), not once per session at every wake-up.
my $beating = hb_start(port => $wdport, bind => '127.0.3.9', sessions => 100,
	handshakes => 16, interval => 1, timeout => 3, duration => 60);
my $lost0 = $node->safe_psql('postgres', 'SELECT sessions_lost FROM pgx_stat_watchdog_worker');
ok(wait_until(sub { registered() == 1000 }, 30), '100 beating sessions registered');
sleep 2;
($w0, $t0) = worker_counters();
my $b0 = $node->safe_psql('postgres',
	"SELECT sum(heartbeats_sent) FROM pgx_stat_watchdog WHERE conmgr_addr = '127.0.3.9'");
sleep 5;
($w1, $t1) = worker_counters();
my $b1 = $node->safe_psql('postgres',
	"SELECT sum(heartbeats_sent) FROM pgx_stat_watchdog WHERE conmgr_addr = '127.0.3.9'");
my $beats = $b1 - $b0;
cmp_ok($beats, '>=', 400, "the watchdog sent the beats ($beats in 5 s)");
cmp_ok($t1 - $t0, '<=', 2 * $beats + 20,
	sprintf('%d session timers ran for %d beats in %d wake-ups', $t1 - $t0, $beats, $w1 - $w0));
is($node->safe_psql('postgres', 'SELECT sessions_lost FROM pgx_stat_watchdog_worker') - $lost0,
	0, 'no session was lost');

hb_stop($beating);
hb_stop($_) for @idle;
@idle = ();
ok(wait_until(sub { registered() == 0 }, 30), 'the sessions are gone');

# 1,000 sessions beating every second, at phases of their own: a worker
# that waits again at once after each batch of events wakes for every few
# frames (four hundred times a second and more); frames gather for 10 ms
# after a busy wake-up (WD_GATHER_US), so the waits that end (the gather
# sleeps among them) stay near 2 per 10 ms, with a margin for wake-ups by
# a timer alone.  None lost, every beat sent.
my @busy;
push @busy, hb_start(port => $wdport, bind => "127.0.3.2$_", sessions => 250,
	handshakes => 16, interval => 1, timeout => 3, duration => 60) for 1 .. 4;
END { hb_stop($_) for @busy; }
ok(wait_until(sub { registered() == 1000 }, 60), '1000 beating sessions registered')
  or diag('registered: ' . registered() . "\n" . ${ $busy[0]{err} });
sleep 2;
$lost0 = $node->safe_psql('postgres', 'SELECT sessions_lost FROM pgx_stat_watchdog_worker');
($w0, $t0) = worker_counters();
$b0 = $node->safe_psql('postgres', 'SELECT sum(heartbeats_sent) FROM pgx_stat_watchdog');
$s0 = time();
sleep 5;
($w1, $t1) = worker_counters();
$b1 = $node->safe_psql('postgres', 'SELECT sum(heartbeats_sent) FROM pgx_stat_watchdog');
$s1 = time();
my $rate = ($w1 - $w0) / ($s1 - $s0);
$beats = $b1 - $b0;
cmp_ok($beats, '>=', 4500, "1000 sessions: the watchdog sent the beats ($beats in 5 s)");
cmp_ok($rate, '<=', 250,
	sprintf('1000 beating sessions: %.0f waits ended a second, for %d beats', $rate, $beats));
is($node->safe_psql('postgres', 'SELECT sessions_lost FROM pgx_stat_watchdog_worker') - $lost0,
	0, 'no session was lost');
hb_stop($_) for @busy;
@busy = ();
$node->stop;
done_testing();
