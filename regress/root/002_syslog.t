# Test, as root, that conmgr's logger writes to syslog: log_destination
# syslog and both, syslog_facility, syslog_ident, and log_min_messages on
# that path too.  A datagram socket of the test's stands in for /dev/log:
# bound over the real one in a private mount namespace when there is one,
# else linked at /dev/log for the test's duration.  conmgr itself runs as
# "nobody", since it refuses root.
use strict;
use warnings;
use File::Copy qw(copy);
use File::Temp qw(tempdir);
use FindBin;
use IO::Select;
use IO::Socket::UNIX;
use IPC::Run;
use lib "$FindBin::RealBin/../lib";
use CmTest::Conmgr;
use Socket qw(SOCK_DGRAM);
use Test::More;
use Time::HiRes qw(time);

plan skip_all => 'needs root' if $> != 0;
my ($uid, $gid) = (getpwnam('nobody'))[ 2, 3 ];
plan skip_all => 'needs the user "nobody"' unless defined $uid;

my $top = "$FindBin::RealBin/../..";
my $base = tempdir(CLEANUP => 1);
chmod 0755, $base;
# conmgr copied where nobody may run it
mkdir "$base/bin" or die $!;
copy("$top/build/bin/conmgr", "$base/bin/conmgr") or die $!;
chmod 0755, "$base/bin", "$base/bin/conmgr";

my $sock = IO::Socket::UNIX->new(Type => SOCK_DGRAM, Local => "$base/log") or die "$base/log: $!";
chmod 0666, "$base/log";
my @wrap;
my $linked = 0;
if (-e '/dev/log')
{
	@wrap = ('unshare', '-m', 'sh', '-c', 'mount --bind "$0" /dev/log && exec "$@"', "$base/log");
}
else
{
	symlink("$base/log", '/dev/log') or plan skip_all => "cannot link /dev/log: $!";
	$linked = 1;
}
END { unlink '/dev/log' if $linked; }

# Run conmgr with these parameters until the syslog datagrams match every
# pattern of @$until (at most 15 s: a loaded machine may be slow to start
# the roles), or for 1.2 s when there is none; returns its output (its
# standard error: it writes nothing on its standard output) and the
# datagrams it sent.
sub run_conmgr
{
	my ($until, %p) = @_;
	my $dir = "$base/cm" . int(rand(1e9));
	my $cm = CmTest::Conmgr->new('cm', dir => $dir, logfile => "$dir.log", build => $base, owner => 'nobody',
		# a watchdog port that nothing answers on: the heartbeat role logs its failures
		instances => [ { backend_hostaddr => "'127.0.0.1'", watchdog_port => CmTest::Conmgr::free_port() } ],
		conf => \%p);
	$cm->start(wait => 0, prefix => [ @wrap, 'setpriv', "--reuid=$uid", "--regid=$gid", '--clear-groups' ]);
	my @msgs;
	my $sel = IO::Select->new($sock);
	my $deadline = time() + (@$until ? 15 : 1.2);
	my $seen = sub { my $all = join("\n", @msgs); !grep { $all !~ $_ } @$until };
	while ((my $left = $deadline - time()) > 0)
	{
		last if @$until && $seen->();
		next unless $sel->can_read($left);
		$sock->recv(my $d, 4096);
		push @msgs, $d;
	}
	$cm->stop('fast');
	while ($sel->can_read(0.3))
	{
		$sock->recv(my $d, 4096);
		push @msgs, $d;
	}
	return ($cm->log_content, join("\n", @msgs));
}

# LOCAL3 is facility 19: LOG goes out as notice (19 * 8 + 5 = 157),
# WARNING as warning (156).
my ($err, $sys) = run_conmgr(
	[ qr/cmtest\[\d+\]: listener LOG:  listening/, qr/cmtest\[\d+\]: heartbeat 0 LOG:  could not establish/ ],
	log_destination => "'stderr,syslog'", syslog_facility => 'LOCAL3',
	syslog_ident => 'cmtest', log_min_messages => 'LOG');
like($sys, qr/^<157>.*cmtest\[\d+\]: listener LOG:  listening for applications/m,
	'both: syslog gets LOG lines with the facility, ident and role');
like($sys, qr/^<157>.*cmtest\[\d+\]: heartbeat 0 LOG:  could not establish heartbeat/m,
	'from every role');
like($err, qr/UTC \[\d+\] listener LOG:  listening for applications/, 'and stderr gets them too');
like($sys, qr/^<157>.*cmtest\[\d+\]: supervisor LOG:  conmgr stopped$/m, 'down to the last line, after the logger, in the same form');

($err, $sys) = run_conmgr([ qr/cmtest2\[\d+\]: .*WARNING:  /, qr/cmtest2\[\d+\]: listener LOG:  listening/ ],
	log_destination => "'syslog'", syslog_ident => 'cmtest2',
	log_min_messages => 'WARNING', heartbeat_interval => 2, heartbeat_timeout => 2);
like($sys, qr/^<132>.*cmtest2\[\d+\]: .*WARNING:  .*heartbeat_timeout \(2\) is not greater than heartbeat_interval/m,
	'syslog only: a warning from before the logger starts, with the default facility LOCAL0');
like($sys, qr/^<133>.*cmtest2\[\d+\]: listener LOG:  listening/m, 'LOG lines (above WARNING)');
is($err, '', 'and nothing on stderr');

($err, $sys) = run_conmgr([], log_destination => "'syslog'", syslog_ident => 'cmtest3',
	log_min_messages => 'FATAL');
unlike($sys, qr/cmtest3/, 'log_min_messages = FATAL: nothing reaches syslog');
done_testing();
