# Test cm_ctl's command line and status against a fake conmgr (a pid file
# whose lock this test holds, and a control socket served here): --help
# prints the usage; an option the operation does not take is an error;
# status -t bounds the wait for the control socket's answer, both ways;
# --json stays valid JSON whatever strings the answer holds (quotes,
# backslashes, control characters, bytes that are not UTF-8).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use Fcntl qw(:flock);
use IO::Socket::UNIX;
use IPC::Run qw(run);
use JSON::PP qw(decode_json);
use POSIX ();
use PostgreSQL::Test::Utils;
use Socket qw(SOCK_STREAM);
use Test::More;
use Time::HiRes qw(time);

my $cm_ctl = cm_top() . '/build/bin/cm_ctl';

sub ctl
{
	my ($out, $err) = ('', '');
	my $t0 = time();
	run([ $cm_ctl, @_ ], '<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(30));
	return ($? >> 8, $out, $err, time() - $t0);
}

# 0. --help: exit 0, the usage on standard output, nothing on error.
program_help_ok($cm_ctl);

# 1. Options an operation does not take: nothing is done, exit 1.  The
# directory holds no conmgr, so a cm_ctl that went ahead could not signal
# anything either.
# Its conmgr.conf has no instance, so that not even a start would run one.
my $empty = cm_confdir("# no instance\n");
my %spelling = ('-m' => '-m/--mode', '-W' => '-W/--no-wait', '-l' => '-l/--log',
	'-i' => '-i/--info', '-t' => '-t/--timeout', '--json' => '--json', '--complete' => '--complete');
for my $case ([ 'status', '-m', 'fast' ], [ 'status', '-W' ], [ 'status', '-l', '/dev/null' ],
	[ 'status', '--complete' ], [ 'stop', '--json' ], [ 'stop', '-i', 'all' ],
	[ 'stop', '--complete' ], [ 'stop', '-l', '/dev/null' ], [ 'start', '-m', 'fast' ],
	[ 'start', '--json' ], [ 'reload', '-t', '5' ], [ 'reload', '-W' ], [ 'logrotate', '-m', 'i' ],
	[ 'logrotate', '--json' ])
{
	my ($op, $opt, @arg) = @$case;
	my ($rc, $out, $err) = ctl($op, '-D', $empty, $opt, @arg);
	is($rc, 1, "$op $opt: exit 1");
	like($err, qr/^cm_ctl: option \Q$spelling{$opt}\E is not valid for "$op"\nTry "cm_ctl --help"/,
		"$op $opt: says the option is not valid for $op");
	is($out, '', "$op $opt: prints nothing else");
}
{
	my ($rc, $out, $err) = ctl('status', '-D', $empty, '-t', '1', '-i', 'instance', '--json');
	is($rc, 3, 'status with -t, -i and --json, no conmgr: exit 3');
	is($out, qq({"running": false}\n), 'and says so as JSON');
	($rc, $out, $err) = ctl('status', '-D', $empty, '-t', 'x');
	is($rc, 1, 'status -t x: exit 1');
	like($err, qr/invalid timeout "x"/, 'status -t x: says why');
}

# 2. A fake conmgr: this process holds the pid file's lock.
my $dir = cm_confdir("port = 27999\nbackend_hostaddr0 = '127.0.0.1'\nbackend_host1 = 'db1.example'\n");
open(my $pidfh, '>', "$dir/conmgr.pid") or die $!;
flock($pidfh, LOCK_EX) or die $!;
print $pidfh "$$\n$dir\n" . time() . "\n27999\nready\n";
$pidfh->flush;

# Serve the control socket in a child: accept each connection, read the
# request, wait $delay seconds, answer.  $delay undef: never accept.
my @servers;
sub serve_control
{
	my ($delay, $answer, $backlog) = @_;
	unlink "$dir/conmgr.ctl";
	my $srv = IO::Socket::UNIX->new(Type => SOCK_STREAM, Local => "$dir/conmgr.ctl",
		Listen => $backlog // 4)
	  or die "control socket: $!";
	my $pid = fork() // die "fork: $!";
	if ($pid == 0)
	{
		$SIG{PIPE} = 'IGNORE';
		alarm 60;
		if (defined $delay)
		{
			while (my $c = $srv->accept)
			{
				my $req = <$c>;
				select(undef, undef, undef, $delay);
				print $c $answer;
				close $c;
			}
		}
		else
		{
			sleep 60;
		}
		POSIX::_exit(0);
	}
	close $srv;
	push @servers, $pid;
	return $pid;
}
sub stop_control
{
	my ($pid) = @_;
	kill 'KILL', $pid;
	waitpid($pid, 0);
	@servers = grep { $_ != $pid } @servers;
}
END { kill 'KILL', @servers if @servers; }

my $now_us = int(time()) * 1_000_000;
my $plain = "instance 0 state=up attrs=0 since=$now_us last_received=$now_us downs=0\n"
  . "instance 1 state=down attrs=0 since=$now_us last_received=0 downs=17\n"
  . "app peer=127.0.0.1:50312 pid=1234 target=read-write state=attached instance=0 since=$now_us\n"
  . "end instances=2 apps=1\n";

# 3. status -t: the answer comes after 3 s.
my $srv = serve_control(3, $plain);
my ($rc, $out, $err, $took) = ctl('status', '-D', $dir, '-t', '1');
is($rc, 1, 'status -t 1, answer after 3 s: exit 1');
like($err, qr/did not answer on its control socket "\Q$dir\E\/conmgr\.ctl" within 1 s/,
	'and says it waited 1 s');
note(sprintf('status -t 1 took %.2f s', $took));
ok($took >= 0.9 && $took < 2.9, sprintf('it gave up after about 1 s, before the answer (%.2f s)', $took));
($rc, $out, $err, $took) = ctl('status', '-D', $dir, '-t', '8', '--json');
is($rc, 0, 'status -t 8, answer after 3 s: exit 0') or diag($err);
my $j = eval { decode_json($out) };
is($j && $j->{instances}[0]{heartbeat}, 'up', 'and prints the answer') or diag($out);
is($j && $j->{instances}[1]{downs}, 17, 'with the times each instance was declared down') or diag($out);
is($j && $j->{instances}[1]{since_us}, $now_us, 'and since when, in microseconds') or diag($out);
ok($took >= 2.9, sprintf('after waiting for it (%.2f s)', $took));
stop_control($srv);

# 4. A listener that never accepts: -t 6 waits longer than the default.
$srv = serve_control(undef);
($rc, $out, $err, $took) = ctl('status', '-D', $dir, '-t', '6');
is($rc, 1, 'status -t 6, never answered: exit 1');
ok($took >= 5.9, sprintf('it waited the 6 s asked (%.2f s)', $took));
($rc, $out, $err, $took) = ctl('status', '-D', $dir);
like($err, qr/within 5 s/, 'without -t, status waits 5 s');
ok($took >= 4.9, sprintf('and does (%.2f s)', $took));
stop_control($srv);

# A full backlog: connect() itself would wait, and must not outlast -t.
$srv = serve_control(undef, undef, 1);
my @filler;
for (1 .. 8)
{
	my $f = IO::Socket::UNIX->new(Type => SOCK_STREAM, Peer => "$dir/conmgr.ctl", Blocking => 0)
	  or last;
	push @filler, $f;
}
note(scalar(@filler) . ' connections fill the backlog');
($rc, $out, $err, $took) = eval { ctl('status', '-D', $dir, '-t', '2') };
is($rc, 1, 'status -t 2, backlog full: exit 1') or diag($@);
ok(defined $took && $took < 4.5, sprintf('after about 2 s (%.2f s)', $took // -1));
close $_ for @filler;
stop_control($srv);

# 5. --json with hostile strings.  sscanf takes space-free words, so each
# field may hold anything but blanks and newlines.
my %raw = (
	client => qq{[fe80::1%eth"0\\x]:5432},
	target => qq{read"write\\},
	state => "att\x01ach\x7fed",
	heartbeat => qq{u"p\e[2J},
);
my $hostile = "instance 0 state=$raw{heartbeat} attrs=0 since=0 last_received=0 downs=0\n"
  . "app peer=$raw{client} pid=7 target=$raw{target} state=$raw{state} instance=-1 since=0\n"
  . "app peer=caf\xc3\xa9\xff\xe0\x80\x80:1 pid=8 target=any state=hello instance=-1 since=0\n"
  . "end instances=1 apps=2\n";
$srv = serve_control(0, $hostile);
($rc, $out, $err) = ctl('status', '-D', $dir, '--json');
is($rc, 0, 'status --json, hostile strings: exit 0') or diag($err);
$j = eval { decode_json($out) };
ok($j, 'the output parses as JSON') or diag("$@\n$out");
is($j && $j->{instances}[0]{heartbeat}, $raw{heartbeat}, 'a quote and ESC in the heartbeat state come back as sent');
is($j && $j->{applications}[0]{client}, $raw{client}, 'a quote and a backslash in the client address too');
is($j && $j->{applications}[0]{target}, $raw{target}, 'and in the target');
is($j && $j->{applications}[0]{state}, $raw{state}, 'control characters in the state too');
is($j && $j->{applications}[1]{client}, "caf\x{e9}\x{fffd}\x{fffd}\x{fffd}\x{fffd}:1",
	'UTF-8 is kept; bytes that are not UTF-8 become U+FFFD');
is($j && $j->{instances}[0]{address}, '127.0.0.1', 'the address from conmgr.conf');
my $body = $out;
chomp $body;
unlike($body, qr/[\x00-\x1f\x7f]/, 'no raw control character in the output but its final newline');
stop_control($srv);

close $pidfh;
done_testing();
