# Test that a forward port holds thousands of concurrent sessions: N
# sessions (2000, or fewer when the open-files hard limit cannot hold
# the forwarder's 6 descriptors per session: the start-up check's
# formula, docs/conmgr.md) open at once through the read-write port,
# each relays bytes both ways unchanged, cm_ctl status --json counts N
# on the port and instance, the forwarder holds no more descriptors than
# the start-up check counts, and closing them frees every one (the count
# back to 0 in conmgr and at the backend); the forwarder's CPU time per
# session (its schedstat, counted by the kernel in ns) does not grow: a
# second round of N costs per session at most 1.5 times the first, and
# N/4 sessions opened one at a time beside the rest of N held open cost
# at most twice as much as with none open (the least of three rounds
# each, since other load on the machine only adds).
#
# The instance is a fake backend (regress/tools/fwload serve: it answers
# the startup packet as a server that trusts the client, up to
# ReadyForQuery, then sends back what it reads) registered as instance 0
# under the real watchdog of a primary, so the heartbeat sees a primary
# and the read-write port connects to the fake: N real backends would
# take N server processes (several GB on a small machine), and the
# forwarder reads nothing past the server's start-up, so an echo proves
# its relay as well as a server.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use CmTest::Conmgr;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $top = cm_top();
my $fwload = "$top/build/regress/tools/fwload";
my $t_start = time();

# As many sessions as the forwarder's descriptors allow under the hard
# limit, which conmgr raises its soft limit to: 12 + 3 x 1 forwarder
# process + 2 x 1 instance + 2 x 1 port x 1 listen address + 6 x
# max_connections (cmconf_nofile_needed).  One forwarder process holds
# them all, as any one may.
my $fixed = 12 + 3 * 1 + 2 * 1 + 2 * 1 * 1;
my $hard = `sh -c 'ulimit -Hn'`;
chomp $hard;
my $n = $hard eq 'unlimited' ? 2000 : int(($hard - $fixed) / 6);
$n = 2000 if $n > 2000;
cmp_ok($n, '>=', 1000, "open-files hard limit $hard: $n sessions (2000 at most)");
my $quarter = int($n / 4);
my $need = $fixed + 6 * $n;

my ($node, $wd) = watchdog_cluster(p => 'primary');

my ($srv_in, $srv_out) = ('', '');
my $srv = IPC::Run::start([ $fwload, 'serve' ], '<', \$srv_in, '>', \$srv_out, '2>', \my $srv_err);
my @harnesses = ($srv);
END { eval { $_->kill_kill } for @harnesses; }
$srv->pump until $srv_out =~ /^port (\d+)\n/m || !$srv->pumpable;
my ($fake_port) = $srv_out =~ /^port (\d+)$/m or BAIL_OUT("fwload serve: $srv_out $srv_err");

# The backend's count of open connections.
sub backend_open
{
	$srv_out = '';
	$srv_in .= "count\n";
	$srv->pump until $srv_out =~ /^open (\d+)\n/m;
	return $1;
}

my $fwd = PostgreSQL::Test::Cluster::get_free_port();
my $cm = CmTest::Conmgr->new('cm',
	instances => [ { backend_hostaddr => "'127.0.0.1'", backend_port => $fake_port,
			watchdog_port => $wd->{p} } ],
	conf => "heartbeat_interval = 1\nlog_min_messages = LOG\nmax_connections = $n\n"
	  . "listen_addresses = '127.0.0.1'\nforward_ports = 'read-write=$fwd'\nforwarder_processes = 1\n");
$cm->start(wait => 'up');
my $fw_pid;
ok(wait_until(sub { $fw_pid = $cm->role_pid('forwarder') }, 10), 'the forwarder runs')
  or BAIL_OUT('no forwarder');

# The forwarder's CPU time so far, in ns, as the scheduler counts it.
sub fw_cpu_ns
{
	open my $f, '<', "/proc/$fw_pid/schedstat" or die "/proc/$fw_pid/schedstat: $!";
	my ($ns) = split ' ', scalar <$f>;
	return $ns;
}

# The sessions the status shows on the port, per instance.
sub fw_sessions
{
	my $s = $cm->status // {};
	my ($port) = grep { $_->{port} == $fwd } @{ $s->{forward_ports} // [] };
	return join ',', map { "$_->{instance}:$_->{sessions}" } @{ $port->{sessions} // [] };
}

# Starts fwload clients for $k sessions ($wave at a time not yet
# relayed); returns the harness and references to its input and output
# once they are all relayed (or it failed).
sub clients
{
	my ($k, $wave) = @_;
	my ($in, $out, $err) = ('', '', '');
	my $h = IPC::Run::start([ $fwload, 'clients', '-p', $fwd, '-n', $k, '-w', $wave, '-t', 30 ],
		'<', \$in, '>', \$out, '2>', \$err);
	push @harnesses, $h;
	$h->pump until $out =~ /^(relayed \d+ in \S+ s|error: .*)$/m || !$h->pumpable;
	$out .= $err;
	return ($h, \$in, \$out);
}

# Closes the sessions of clients() and waits until conmgr counts $left
# on the port and the backend holds $left.
sub close_clients
{
	my ($h, $in, $left, $what) = @_;
	$$in .= "close\n";
	$h->finish;
	ok(wait_until(sub { fw_sessions() eq "0:$left" }, 20), "$what: closed, conmgr counts $left")
	  or diag(fw_sessions());
	ok(wait_until(sub { backend_open() == $left }, 20), "$what: and the backend holds $left");
}

# One round: $k sessions opened, $wave at a time, relayed, counted,
# closed, counted again, with $held sessions open meanwhile; the
# forwarder's CPU ns per session of the round.
sub round
{
	my ($k, $wave, $held, $what) = @_;
	my $cpu0 = fw_cpu_ns();
	my ($h, $in, $out) = clients($k, $wave);
	like($$out, qr/^relayed $k in /m, "$what: $k sessions, each relayed both ways unchanged")
	  or diag($$out);
	is(fw_sessions(), '0:' . ($k + $held), "$what: cm_ctl status --json counts @{[ $k + $held ]} on the port's instance");
	is(backend_open(), $k + $held, "$what: the backend holds @{[ $k + $held ]} connections");
	my $fds = () = glob("/proc/$fw_pid/fd/*");
	cmp_ok($fds, '<=', $need,
		"$what: the forwarder holds $fds descriptors, within the open-files check's $need");
	close_clients($h, $in, $held, $what);
	my $per = (fw_cpu_ns() - $cpu0) / $k;
	note(sprintf('%s: forwarder CPU %.1f us per session', $what, $per / 1000));
	return $per;
}

# The least CPU per session of $reps rounds: the machine's other load
# only ever adds to a round's time.
sub least
{
	my ($reps, @round) = @_;
	my @per = map { round(@round[0 .. 2], "$round[3] ($_ of $reps)") } 1 .. $reps;
	return (sort { $a <=> $b } @per)[0];
}

# All at once, twice: the table grown the first time serves the second,
# whose sessions must cost no more.
my $big = round($n, 200, 0, "$n at once");
my $again = round($n, 200, 0, "$n at once again");
cmp_ok($again, '<=', 1.5 * $big,
	sprintf('a second round of %d: %.1f us per session, at most 1.5 times the first (%.1f us)',
		$n, $again / 1000, $big / 1000));

# One session at a time, so that each turn of the forwarder's loop serves
# one session: with none other open, then with the rest of N held open.
# What a session costs must not grow with the number open.
my $alone = least(3, $quarter, 1, 0, "$quarter one at a time");
my ($hh, $hin, $hout) = clients($n - $quarter, 200);
like($$hout, qr/^relayed @{[ $n - $quarter ]} in /m, "@{[ $n - $quarter ]} sessions held open")
  or diag($$hout);
my $crowd = least(3, $quarter, 1, $n - $quarter, "$quarter one at a time beside them");
close_clients($hh, $hin, 0, "the held sessions");
cmp_ok($crowd, '<=', 2 * $alone,
	sprintf('CPU per session with %d others open (%.1f us) at most twice that with none (%.1f us)',
		$n - $quarter, $crowd / 1000, $alone / 1000));
ok($cm->log_contains(qr/forwarder: forwarding /), 'the forwarder logged its start');
ok(!$cm->log_contains(qr/could not accept|too many clients/), 'no connection refused or dropped')
  or diag($cm->log_content);

$cm->stop;
$srv->finish;
$node->{p}->stop;
note(sprintf('%.1f s in all', time() - $t_start));
done_testing();
