# Test conmgr's forward ports (conmgr.conf forward_ports, docs/conmgr.md
# "Forward ports") with stock psql, neither preloaded nor relinked: each
# port's client reaches the instance a RESOLVE for its target would get;
# SSLRequest (sslmode=prefer) passes through, and TLS itself: with the
# primary's ssl = on, verify-full against the name the client used (the
# forwarder's), an encrypted session, and psql's cancel reaching it; a
# port whose target no instance fits answers an ErrorResponse with
# SQLSTATE 08001 naming the target, after 'N' to an SSLRequest; psql's cancel (a CancelRequest sent
# to the forward port) reaches its session, going to that session's
# instance alone when the session is in the clear (the standby logs no
# cancel request that matched nothing) and to every instance up when it
# is under TLS; a query blocked on an
# instance that conmgr declares lost fails within heartbeat_timeout + 0.5
# s of the loss (the forwarder cuts the session); a session on a primary
# that a promotion elsewhere makes stale is cut, and the read-write port
# then reaches the new primary; the forwarder is a role of its own.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use CmTest::Conmgr;
use IO::Socket::INET;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $top = cm_top();
my $hb_timeout = 2;
my ($node, $wd) = watchdog_cluster(p => 'primary', s => 'standby');
my %port_of = map { $_ => $node->{$_}->port } qw(p s);
my %name_of = reverse %port_of;

my %fwd = map { $_ => PostgreSQL::Test::Cluster::get_free_port() } qw(read-write read-only standby);
my $max_conn = 4;
my $cm = CmTest::Conmgr->new('cm', instances => [ map { [ $node->{$_}, $wd->{$_} ] } qw(p s) ],
	conf => "heartbeat_interval = 1\nheartbeat_timeout = $hb_timeout\nlog_min_messages = LOG\n"
	  . "max_connections = $max_conn\n"
	  . "listen_addresses = '127.0.0.1'\n"
	  . "forward_ports = '" . join(', ', map { "$_=$fwd{$_}" } sort keys %fwd) . "'\n");
my ($cmport, $dir) = ($cm->port, $cm->cmdata);
# The first check below waits for the heartbeats.
$cm->start(wait => 0);
ok(wait_until(sub { $cm->all_up }, 30),
	'conmgr has heartbeats with p and s') or diag($cm->log_content);
ok($cm->wait_for_log(qr/forwarder: forwarding /, 0, 10), 'the forwarder started')
  or diag($cm->log_content);
my $fw_pid;
wait_until(sub { $fw_pid = role_pid($dir, 'forwarder') }, 10);
ok($fw_pid, "a process of its own: conmgr: forwarder (pid @{[ $fw_pid // '-' ]})");

# psql as installed, through a forward port: what it reached.
sub psql_at
{
	my ($port, $sql, %o) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'psql', '-X', '-At', '-d',
			"host=127.0.0.1 port=$port dbname=postgres sslmode=" . ($o{sslmode} // 'prefer') . ' connect_timeout=10',
			'-c', $sql ], '<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(30));
	chomp $out;
	return ($out, $err);
}

# libpq's words for a connection cut under it, in the clear or (the
# primary has ssl = on from the TLS check on, and psql's sslmode=prefer
# takes it) under TLS.
my $lost_re = qr/server closed the connection unexpectedly|SSL SYSCALL error: EOF detected/;

# psql through the read-write port, blocked in pg_sleep on the primary:
# its harness and (a reference to) its stderr.
sub blocked_on_p
{
	my ($what) = @_;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start([ 'psql', '-X', '-At', '-d',
			"host=127.0.0.1 port=$fwd{'read-write'} dbname=postgres", '-c', 'SELECT pg_sleep(60)' ],
		'<', \undef, '>', \$out, '2>', \$err);
	ok(wait_until(sub { $node->{p}->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)'") eq '1' }, 10), $what);
	return ($h, \$err);
}

# Waits (up to $secs) for psql to print an error or end; when it did.
sub wait_error
{
	my ($h, $err, $secs) = @_;
	wait_until(sub { !$h->pumpable || do { $h->pump_nb; $$err ne '' } }, $secs);
	my $t = time();
	eval { $h->finish; };
	return $t;
}

my $where = 'SELECT inet_server_port(), pg_is_in_recovery()';
my ($o, $e) = psql_at($fwd{'read-write'}, $where);
is($o, "$port_of{p}|f", 'read-write port: psql reaches the primary') or diag($e);
($o, $e) = psql_at($fwd{'read-only'}, $where, sslmode => 'disable');
is($o, "$port_of{s}|t", 'read-only port, sslmode=disable: the standby') or diag($e);
($o, $e) = psql_at($fwd{standby}, $where);
is($o, "$port_of{s}|t", 'standby port (an SSLRequest first, answered by the server): the standby') or diag($e);

# COPY passes through untouched.
($o, $e) = psql_at($fwd{'read-write'}, 'COPY (SELECT g FROM generate_series(1, 50000) g) TO STDOUT');
is(scalar(split /\n/, $o), 50000, 'COPY TO STDOUT: 50000 rows through the forwarder') or diag($e);

# psql's cancel of a session in the clear (the primary has no TLS yet:
# sslmode=prefer gets 'N'): the forwarder saw the session's key pass, so
# the CancelRequest goes to the primary alone, and the standby, up, logs
# no cancel request that matched nothing.
{
	my $soff = -s $node->{s}->logfile;
	my ($h, $err) = blocked_on_p('a query in the clear on the primary through the read-write port');
	$h->signal('INT');
	eval { $h->finish; };
	like($$err, qr/canceling statement due to user request/, 'psql\'s cancel of a session in the clear ended it')
	  or diag($$err);
	ok(!wait_until(sub { slurp_file($node->{s}->logfile, $soff) =~ /in cancel request did not match any process/ }, 2),
		'the standby got no CancelRequest (sent to the session\'s instance alone)')
	  or diag(slurp_file($node->{s}->logfile, $soff));
}

# TLS passes through untouched: the primary with ssl = on and a
# self-signed certificate for "localhost"; the client, connecting to the
# forward port as localhost, verifies it against that name (verify-full),
# and the session is encrypted end to end with the server.  psql's cancel
# (a CancelRequest in the clear on a new connection) still reaches a TLS
# session.
{
	my $pgdata = $node->{p}->data_dir;
	my ($o1, $e1) = ('', '');
	IPC::Run::run([ 'openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1',
			'-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost',
			'-keyout', "$pgdata/server.key", '-out', "$pgdata/server.crt" ], '<', \undef, '>', \$o1, '2>', \$e1)
	  or die "openssl: $e1";
	chmod 0600, "$pgdata/server.key";
	$node->{p}->append_conf('postgresql.conf', "ssl = on\n");
	$node->{p}->reload;
	my $tls = "host=localhost port=$fwd{'read-write'} dbname=postgres sslmode=verify-full "
	  . "sslrootcert=$pgdata/server.crt connect_timeout=10";
	my ($out, $err) = ('', '');
	ok(wait_until(sub {
		IPC::Run::run([ 'psql', '-X', '-At', '-d', $tls, '-c',
				'SELECT inet_server_port(), ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()' ],
			'<', \undef, '>', \$out, '2>', \$err);
		$out =~ /^$port_of{p}\|t$/m }, 10),
		'TLS through the read-write port: verify-full against "localhost", the primary, encrypted') or diag("$out $err");
	($out, $err) = ('', '');
	IPC::Run::run([ 'psql', '-X', '-At', '-d', $tls =~ s/localhost/127.0.0.1/r, '-c', 'SELECT 1' ],
		'<', \undef, '>', \$out, '2>', \$err);
	like($err, qr/server certificate for "localhost"( \(and \d+ other names?\))? does not match host name "127\.0\.0\.1"/,
		'the certificate is checked against the name the client used (127.0.0.1: refused)') or diag("$out $err");
	my $h = IPC::Run::start([ 'psql', '-X', '-At', '-d', $tls, '-c', 'SELECT pg_sleep(60)' ],
		'<', \undef, '>', \$out, '2>', \$err);
	ok(wait_until(sub { $node->{p}->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.query = 'SELECT pg_sleep(60)' AND s.ssl") eq '1' }, 10),
		'a TLS session blocked in a query through the forward port');
	my $soff = -s $node->{s}->logfile;
	$h->signal('INT');
	eval { $h->finish; };
	like($err, qr/canceling statement due to user request/, 'psql\'s cancel reaches the TLS session') or diag($err);
	ok(wait_until(sub { slurp_file($node->{s}->logfile, $soff) =~ /in cancel request did not match any process/ }, 10),
		'a TLS session\'s key cannot be read: its cancel went to every instance up, the standby too');
}

# psql's cancel: SIGINT makes psql send a CancelRequest to the host and
# port it connected to, the forward port.
{
	my ($h, $err) = blocked_on_p('a query runs on the primary through the read-write port');
	my $t0 = time();
	$h->signal('INT');
	eval { $h->finish; };
	my $took = time() - $t0;
	like($$err, qr/canceling statement due to user request/, 'psql\'s cancel through the forward port ended it')
	  or diag($$err);
	cmp_ok($took, '<', 5, sprintf('at once (%.3f s)', $took));
}

# A CancelRequest with protocol 3.2's longer key (PostgreSQL 18's clients
# send 32 bytes) is passed on whole, to every instance up (the key watch
# reads only 3.0's keys): no conmgr refusal, and each instance reads it
# (before 18 a server logs the length as invalid; 18 would look for the
# process).
{
	my $pid = 4193999;
	my %off = map { $_ => -s $node->{$_}->logfile } qw(p s);
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $fwd{'read-write'}, Timeout => 10)
	  or die "connect: $!";
	print $s pack('NNN', 12 + 32, 80877102, $pid) . ('k' x 32);
	my $got = '';
	while (sysread($s, my $buf, 4096, 0)) { $got .= $buf; }
	is($got, '', 'a CancelRequest with a 32-byte key: no answer, as from a server');
	for my $n (qw(p s))
	{
		ok(wait_until(sub { slurp_file($node->{$n}->logfile, $off{$n})
				  =~ /invalid length of startup packet|PID $pid in cancel request did not match any process/ }, 10),
			"the 44-byte CancelRequest reached $n");
	}
}

# No instance fits: the standby stopped, the standby port answers an
# ErrorResponse (with sslmode=prefer, after 'N' to the SSLRequest).
$node->{s}->stop('fast');
ok(wait_until(sub { (($cm->status // {})->{instances}[1]{heartbeat} // 'up') ne 'up' }, 30), 's stopped: conmgr sees it down');
for my $mode (qw(prefer disable))
{
	($o, $e) = psql_at($fwd{standby}, 'SELECT 1', sslmode => $mode);
	like($e, qr/conmgr: no instance fits target_session_attrs=standby \(forward port $fwd{standby}\)/,
		"standby port with no standby up, sslmode=$mode: psql shows conmgr's error") or diag("out=$o err=$e");
}
{
	# the SQLSTATE, from the ErrorResponse itself (libpq does not show it)
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $fwd{standby}, Timeout => 10)
	  or die "connect: $!";
	my $params = "user\0postgres\0database\0postgres\0\0";
	print $s pack('NN', 8 + length($params), 196608) . $params;
	my $got = '';
	while (sysread($s, my $buf, 4096, 0)) { $got .= $buf; }
	my ($type, $len) = unpack('aN', $got);
	my %f = map { substr($_, 0, 1) => substr($_, 1) } split /\0/, substr($got, 5, $len - 4);
	is($type, 'E', 'a startup packet gets an ErrorResponse');
	is($f{C}, '08001', 'SQLSTATE 08001');
	is($f{S}, 'FATAL', 'severity FATAL');
}
{
	# GSSENCRequest, then SSLRequest (libpq with gssencmode=prefer and
	# sslmode=prefer): 'N' to each, the ErrorResponse to the startup packet
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $fwd{standby}, Timeout => 10)
	  or die "connect: $!";
	my $answer = sub {
		my ($packet) = @_;
		print $s $packet;
		my $got = '';
		my $n = sysread($s, $got, 1);
		return $n ? $got : '(closed)';
	};
	is($answer->(pack('NN', 8, 80877104)), 'N', 'no standby up: a GSSENCRequest gets N');
	is($answer->(pack('NN', 8, 80877103)), 'N', 'the SSLRequest after it gets N too');
	my $params = "user\0postgres\0database\0postgres\0\0";
	print $s pack('NN', 8 + length($params), 196608) . $params;
	my $got = '';
	while (sysread($s, my $buf, 4096, 0)) { $got .= $buf; }
	like($got, qr/^E.*C08001\0.*no instance fits target_session_attrs=standby/s,
		'and the startup packet gets the ErrorResponse');
}
$node->{s}->start;
ok(wait_until(sub { $cm->all_up }, 30), 's back up');

# A query blocked on the primary when conmgr loses it (its watchdog
# stopped, so the heartbeat times out): the forwarder cuts the session.
{
	my ($h, $err) = blocked_on_p('a query blocked on the primary through the read-write port');
	my ($jout, $jerr) = ('', '');
	IPC::Run::run([ "$top/build/bin/cm_ctl", '-D', $dir, 'status', '--json' ], '>', \$jout, '2>', \$jerr);
	my $j = eval { JSON::PP::decode_json($jout) } // {};
	my %sess = map { my $f = $_; map { ("$f->{target} $_->{instance}" => $_->{sessions}) } @{ $f->{sessions} } }
	  @{ $j->{forward_ports} // [] };
	is_deeply(\%sess, { 'read-write 0' => 1, 'read-write 1' => 0, 'read-only 0' => 0, 'read-only 1' => 0,
			'standby 0' => 0, 'standby 1' => 0 },
		'cm_ctl status --json: the session on the read-write port to instance 0, per port and instance')
	  or diag($jout . $jerr);
	my ($tout, $terr) = ('', '');
	IPC::Run::run([ "$top/build/bin/cm_ctl", '-D', $dir, 'status' ], '>', \$tout, '2>', \$terr);
	like($tout, qr/^$fwd{'read-write'}\s+read-write\s+0\s+1$/m, 'cm_ctl status: the table says so') or diag($tout);
	my $wdpid = $node->{p}->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'watchdog'");
	my $t_stop = time();
	kill 'STOP', $wdpid;
	my $took = wait_error($h, $err, 20) - $t_stop;
	kill 'CONT', $wdpid;
	like($$err, $lost_re, 'psql: the connection was lost') or diag($$err);
	cmp_ok($took, '<=', $hb_timeout + 1 + 0.5,
		sprintf('within heartbeat_timeout + 0.5 s of the loss (the last beat up to 1 s before the stop): %.3f s', $took));
	ok($cm->wait_for_log(qr/forwarder LOG:  forwarder: cut 1 forwarded session to instance 0 \(lost\)/, 0, 5),
		'the forwarder logged the cut') or diag($cm->log_content);
	ok(wait_until(sub { $cm->all_up }, 30), 'p back up');
}

# A promotion while p keeps running: p is stale, the session on it
# through the read-write port is cut, the port then reaches s.
{
	my ($h, $err) = blocked_on_p('a query blocked on p through the read-write port');
	my $t0 = time();
	$node->{s}->promote;
	my $took = wait_error($h, $err, 10) - $t0;
	like($$err, $lost_re, 's promoted: the session on p was cut') or diag($$err);
	note(sprintf('cut %.3f s after pg_ctl promote began', $took));
	ok(wait_until(sub { (psql_at($fwd{'read-write'}, $where))[0] eq "$port_of{s}|f" }, 10),
		'the read-write port now reaches s, the new primary');
	ok($cm->wait_for_log(qr/forwarder LOG:  forwarder: cut 1 forwarded session to instance 0 \(stale primary\)/, 0, 5),
		'logged as a stale primary') or diag($cm->log_content);
}

# max_connections bounds the forwarder's clients too: one more than the
# limit gets what a server over its own limit answers.  (A client that
# goes away mid-query holds its place until its server side ends, as it
# holds its backend: the forwarder passes the end of file on and waits.)
{
	my @held = map {
		my ($out, $err) = ('', '');
		IPC::Run::start([ 'psql', '-X', '-At', '-d', "host=127.0.0.1 port=$fwd{'read-write'} dbname=postgres",
				'-c', 'SELECT pg_sleep(4)' ], '<', \undef, '>', \$out, '2>', \$err);
	} 1 .. $max_conn;
	ok(wait_until(sub { $node->{s}->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(4)'") eq $max_conn }, 10),
		"$max_conn clients (max_connections) held on the read-write port (s, since the promotion)");
	($o, $e) = psql_at($fwd{'read-write'}, 'SELECT 1');
	like($e, qr/FATAL:  sorry, too many clients already/, 'one more: "sorry, too many clients already"')
	  or diag("out=$o err=$e");
	ok($cm->wait_for_log(qr/forwarder: refused a client on forward port $fwd{'read-write'}: max_connections \($max_conn\) reached/, 0, 5),
		'logged') or diag($cm->log_content);
	eval { $_->finish } for @held;
	ok(wait_until(sub { (psql_at($fwd{'read-write'}, 'SELECT 1'))[0] eq '1' }, 10), 'room again once they are done');
}

# Smart shutdown: conmgr stops; the forwarder with it.
$cm->signal('TERM');
ok(defined $cm->wait_exit(20), 'conmgr stopped') or diag($cm->log_content);
ok(!kill(0, $fw_pid), 'the forwarder is gone');
$node->{$_}->stop for qw(p s);
done_testing();
