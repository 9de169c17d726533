# Test several forwarder processes on the same forward ports
# (conmgr.conf forwarder_processes, docs/conmgr.md "Forward ports"):
# each is a role of its own ("conmgr: forwarder N"); kept connections
# made one after another spread evenly over them (a forwarder that holds
# more clients hands a new one to the one with the fewest); cm_ctl status
# sums their sessions; max_connections counts the clients of all of them
# together; psql's cancel of a session in the clear reaches it, and its
# instance alone, whichever forwarder the CancelRequest lands on; a
# forwarder killed takes its own sessions with it, and only those, stops
# being counted at once, and is restarted, and the next client goes to
# it; a smart stop closes the ports (a new client is refused at once, not
# queued) while the sessions open go on; a forward port another program
# holds stops conmgr at start, naming the port.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use CmTest::Conmgr;
use IO::Socket::INET;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $nfw = 3;
my $per = 2;					# kept sessions per forwarder
my $max_conn = $nfw * $per + 2;
my ($node, $wd) = watchdog_cluster(p => 'primary', s => 'standby');
my $fwport = PostgreSQL::Test::Cluster::get_free_port();
my $cm = CmTest::Conmgr->new('cm', instances => [ map { [ $node->{$_}, $wd->{$_} ] } qw(p s) ],
	conf => "heartbeat_interval = 1\nheartbeat_timeout = 2\nlog_min_messages = LOG\n"
	  . "listen_addresses = '127.0.0.1'\nmax_connections = $max_conn\n"
	  . "forward_ports = 'read-write=$fwport'\nforwarder_processes = $nfw\n");
$cm->start(wait => 0);
ok(wait_until(sub { $cm->all_up }, 30), 'conmgr has heartbeats with p and s') or diag($cm->log_content);

my @pids;
wait_until(sub { @pids = $cm->role_pids('forwarder '); @pids == $nfw }, 10);
is(scalar(@pids), $nfw, "forwarder_processes = $nfw: $nfw processes \"conmgr: forwarder N\"")
  or diag(`ps -o pid=,args= -u $>`);
my %pid_of = map { my $k = $_; ($k => $cm->role_pid("forwarder $k")) } 0 .. $nfw - 1;
ok(!grep({ !defined $pid_of{$_} } keys %pid_of), 'numbered 0 to ' . ($nfw - 1))
  or diag(`ps -o pid=,args= -u $>`);
ok($cm->wait_for_log(qr/forwarder: forwarding read-write=$fwport \(process $nfw of $nfw\)/, 0, 10),
	'each says which it is') or diag($cm->log_content);

# The sockets a process holds (its descriptors that are sockets).
sub sockets_of
{
	my ($pid) = @_;
	return scalar grep { (readlink($_) // '') =~ /^socket:/ } glob("/proc/$pid/fd/*");
}

# A psql kept open through the forward port, fed on its standard input.
my @held;
END { local $?; eval { $_->{h}->kill_kill } for @held; }

sub open_session
{
	my $s = { in => '', out => '', err => '' };
	$s->{h} = IPC::Run::start([ 'psql', '-X', '-At', '-v', 'ON_ERROR_STOP=0', '-d',
			"host=127.0.0.1 port=$fwport dbname=postgres" ],
		'<', \$s->{in}, '>', \$s->{out}, '2>', \$s->{err});
	push @held, $s;
	return $s;
}

# Send $sql to a kept psql; what it printed (out, err) once $re matches
# either, or the wait ends.
sub ask
{
	my ($s, $sql, $re, $secs) = @_;
	($s->{out}, $s->{err}) = ('', '');
	$s->{in} .= "$sql\n";
	wait_until(sub {
		$s->{h}->pump_nb if $s->{h}->pumpable;
		return "$s->{out}$s->{err}" =~ $re || !$s->{h}->pumpable;
	}, $secs // 10);
	return ($s->{out}, $s->{err});
}

my %base = map { ($_ => sockets_of($pid_of{$_})) } keys %pid_of;
my @sess;
for my $i (1 .. $nfw * $per)
{
	my $s = open_session();
	my ($o, $e) = ask($s, "SELECT $i, inet_server_port();", qr/^\Q$i\E\|/m);
	like($o, qr/^\Q$i\E\|@{[ $node->{p}->port ]}$/m, "kept session $i reaches the primary") or diag($e);
	push @sess, $s;
}
my %more = map { ($_ => sockets_of($pid_of{$_}) - $base{$_}) } keys %pid_of;
is_deeply(\%more, { map { ($_ => 2 * $per) } keys %pid_of },
	"$nfw x $per sessions made one after another: $per in each forwarder (2 sockets a session)")
  or diag(explain(\%more));

my $st = $cm->status;
my ($rw) = grep { $_->{port} == $fwport } @{ $st->{forward_ports} // [] };
my %n = map { ($_->{instance} => $_->{sessions}) } @{ $rw->{sessions} // [] };
is_deeply(\%n, { 0 => $nfw * $per, 1 => 0 }, 'cm_ctl status --json: the sum over the forwarders')
  or diag(explain($st));

# max_connections counts the clients of every forwarder: 2 more fit (no
# forwarder holds more than 3), the next is refused.
{
	my @extra = map { open_session() } 1 .. 2;
	like((ask($extra[$_], "SELECT 'extra $_';", qr/extra $_/))[0], qr/^extra $_$/m, "client " . ($nfw * $per + 1 + $_)
		  . " of max_connections $max_conn let in") for 0 .. 1;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'psql', '-X', '-At', '-d', "host=127.0.0.1 port=$fwport dbname=postgres connect_timeout=10",
			'-c', 'SELECT 1' ], '<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(30));
	like($err, qr/FATAL:  sorry, too many clients already/,
		'one more is refused: max_connections counts all the forwarders\' clients together') or diag("out=$out");
	for my $s (@extra)
	{
		$s->{in} .= "\\q\n";
		eval { $s->{h}->finish };
	}
	# once their forwarders have seen them go, the counts are even again
	ok(wait_until(sub {
		my $j = $cm->status;
		my ($p) = grep { $_->{port} == $fwport } @{ $j->{forward_ports} // [] };
		my ($c) = map { $_->{sessions} } grep { $_->{instance} == 0 } @{ $p->{sessions} // [] };
		return ($c // -1) == $nfw * $per;
	}, 10), 'the two extra sessions ended');
}

# psql's cancel, for two more sessions made one after the other: with
# the forwarders even, the second goes to another forwarder than the
# first, and the CancelRequests land on one of them, so at least one is
# for a session another forwarder holds; each reaches its session, and
# the primary alone (the standby logs no cancel that matched nothing).
# (psql reading a script exits once it has cancelled.)
{
	my $soff = -s $node->{s}->logfile;
	my @blocked;
	for my $i (1 .. 2)
	{
		my $b = { err => '' };
		$b->{h} = IPC::Run::start([ 'psql', '-X', '-At', '-d', "host=127.0.0.1 port=$fwport dbname=postgres",
				'-c', 'SELECT pg_sleep(60)' ], '<', \undef, '>', \my $out, '2>', \$b->{err});
		push @blocked, $b;
		ok(wait_until(sub { $node->{p}->safe_psql('postgres',
			"SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)'") eq $i }, 10),
			"session $i blocked in pg_sleep");
	}
	for my $b (@blocked)
	{
		$b->{h}->signal('INT');
		eval { $b->{h}->finish };
		like($b->{err}, qr/canceling statement due to user request/, 'psql\'s cancel ended its query');
	}
	ok(!wait_until(sub { slurp_file($node->{s}->logfile, $soff) =~ /in cancel request did not match any process/ }, 2),
		'the standby got no CancelRequest: each went to the session\'s instance alone')
	  or diag(slurp_file($node->{s}->logfile, $soff));
}

# A forwarder killed: its sessions end, the others' go on; it stops being
# counted at once and comes back; the next client goes to it.
{
	my $off = $cm->log_offset;
	my $victim = $pid_of{1};
	kill 'KILL', $victim;
	ok($cm->wait_for_log(qr/forwarder 1 \(pid $victim\) was terminated by signal 9/, $off, 10),
		'forwarder 1 killed') or diag($cm->log_content);
	my ($lost, @alive) = (0);
	for my $s (@sess)
	{
		my ($o, $e) = ask($s, "SELECT 'still';", qr/still|connection|closed/);
		$o =~ /^still$/m ? push(@alive, $s) : $lost++;
	}
	my $alive = @alive;
	is("$lost/$alive", "$per/" . ($nfw - 1) * $per, "its $per sessions ended, the others' " . ($nfw - 1) * $per . ' went on');
	my $j = $cm->status;
	my ($p) = grep { $_->{port} == $fwport } @{ $j->{forward_ports} // [] };
	my ($c) = map { $_->{sessions} } grep { $_->{instance} == 0 } @{ $p->{sessions} // [] };
	is($c, ($nfw - 1) * $per, 'cm_ctl status counts only the sessions left') or diag(explain($j));
	my $new;
	ok(wait_until(sub { $new = $cm->role_pid('forwarder 1'); $new && $new != $pid_of{1} }, 10),
		'forwarder 1 restarted') or diag($cm->log_content);
	ok($cm->wait_for_log(qr/forwarding .*\(process 2 of $nfw\)/, $off, 10), 'and serving');
	my $b = sockets_of($new);
	my $s = open_session();
	like((ask($s, "SELECT 'next';", qr/next/))[0], qr/^next$/m, 'a new client is served');
	is(sockets_of($new) - $b, 2, 'by the restarted forwarder, which had the fewest');
	# the lost sessions' psql may take a moment to exit: ask only the others
	@sess = (@alive, $s);
}

# Smart stop: the ports close (the supervisor's copy too): a new client is
# refused at once; the sessions open go on until they end.
{
	my $off = $cm->log_offset;
	$cm->signal('TERM');
	ok($cm->wait_for_log(qr/forwarder: smart shutdown: no new sessions/, $off, 10), 'smart shutdown begun')
	  or diag($cm->log_content);
	ok(wait_until(sub {
		!IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $fwport, Proto => 'tcp', Timeout => 5)
		  && $! =~ /refused/i }, 10), 'a new client of the forward port is refused');
	like((ask($sess[0], "SELECT 'open';", qr/open/))[0], qr/^open$/m, 'a session open goes on');
	for my $s (@held)
	{
		$s->{in} .= "\\q\n" if $s->{h}->pumpable;
		eval { $s->{h}->finish };
	}
	ok(defined $cm->wait_exit(20), 'conmgr stops once they have ended') or diag($cm->log_content);
}
# A forward port another program holds: conmgr does not start, and says
# which port (the supervisor opens the ports before any role starts).
{
	my $taken = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 1)
	  or die "listen: $!";
	my $busy = $taken->sockport;
	my $cm2 = CmTest::Conmgr->new('cm2', instances => [ [ $node->{p}, $wd->{p} ] ],
		conf => "listen_addresses = '127.0.0.1'\nforward_ports = 'read-only=$busy'\n");
	my ($out, $err) = ('', '');
	IPC::Run::run([ "$cm2->{build}/bin/conmgr", '-D', $cm2->cmdata ], '<', \undef, '>', \$out, '2>', \$err,
		IPC::Run::timeout(30));
	is($? >> 8, 1, 'a forward port in use: conmgr exits 1 at start');
	like($err, qr/could not listen on any address of "127\.0\.0\.1" forward port $busy/, 'naming the port')
	  or diag("out=$out err=$err");
	ok(!-e $cm2->cmdata . '/conmgr.pid', 'and leaves no pid file');
}
$node->{$_}->stop for qw(p s);
done_testing();
