# Test contrib/systemd/conmgr@.service without systemd running: its keys
# parse and say what docs/reference/conmgr.8.md promises (forking through
# cm_ctl, the pid file, one directory per instance name, fast stop,
# reload, an open-files limit above what conmgr asks for 64 instances);
# its programs are where "make install" puts them; systemd-analyze verify
# accepts it (when installed); and its own command lines, pointed at a
# scratch directory and the build tree, start, reload and stop a conmgr.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use IPC::Run qw(run);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $top = cm_top();
my $unit_path = "$top/contrib/systemd/conmgr\@.service";
my $text = slurp_file($unit_path);

# [Section] and Key=Value lines; comments and blank lines skipped.
my (%unit, $section);
my $bad = 0;
for my $line (split /\n/, $text)
{
	next if $line =~ /^\s*(#|;|$)/;
	if ($line =~ /^\[(\w+)\]$/)
	{
		$section = $1;
		next;
	}
	if (defined $section && $line =~ /^([A-Za-z]+)=(.*)$/)
	{
		push @{ $unit{$section}{$1} }, $2;
		next;
	}
	diag("unparsed line: $line");
	$bad++;
}
is($bad, 0, 'every line is a section, a key=value, a comment or blank');
is_deeply([ sort keys %unit ], [qw(Install Service Unit)], 'sections Unit, Service, Install');
my %s = map { $_ => $unit{Service}{$_}[-1] } keys %{ $unit{Service} };

is($s{Type}, 'forking', 'Type=forking');
is($s{PIDFile}, '/var/lib/conmgr/%i/conmgr.pid', 'PIDFile is CMDATA/conmgr.pid, CMDATA from the instance name');
is($s{User}, 'conmgr', 'runs as the user conmgr');
is($s{KillSignal}, 'SIGINT', 'KillSignal=SIGINT (fast stop) should ExecStop fail');
is($s{StateDirectoryMode}, '0700', 'systemd makes CMDATA with mode 0700, as conmgr requires');

# Installed paths: what "make install" (default PREFIX) would do.
my ($mk_out, $mk_err) = ('', '');
run([ 'make', '-n', '-s', '-C', $top, 'install-frontend', 'DESTDIR=/DESTDIR' ], '<', \undef, '>', \$mk_out, '2>', \$mk_err);
my ($bindir) = $mk_out =~ m{install -m 0755 \S*build/bin/cm_ctl /DESTDIR(\S+)/cm_ctl};
ok($bindir, "make install puts cm_ctl in $bindir") or diag($mk_out . $mk_err);
like($mk_out, qr{\S*build/bin/conmgr /DESTDIR\Q$bindir\E/conmgr}, 'and conmgr beside it (cm_ctl runs it from there)');
for my $key (qw(ExecStart ExecStop ExecReload))
{
	like($s{$key}, qr{^\Q$bindir\E/cm_ctl }, "$key runs the installed cm_ctl");
}
like($s{ExecStart}, qr{ start -D /var/lib/conmgr/%i -l /var/lib/conmgr/%i/conmgr\.log -W -t \d+$},
	'ExecStart: cm_ctl start -D CMDATA -l CMDATA/conmgr.log -W -t');
like($s{ExecStop}, qr{ stop -D /var/lib/conmgr/%i -m fast -t (\d+)$}, 'ExecStop: cm_ctl stop -m fast');
my ($stop_t) = $s{ExecStop} =~ / -t (\d+)$/;
my ($start_t) = $s{ExecStart} =~ / -t (\d+)$/;
ok($stop_t < $s{TimeoutStopSec} && $start_t < $s{TimeoutStartSec},
	'cm_ctl gives up before systemd does (TimeoutStartSec, TimeoutStopSec)');
like($s{ExecReload}, qr{ reload -D /var/lib/conmgr/%i$}, 'ExecReload: cm_ctl reload');

# The open-files limit: conmgr needs 9 + 2 x instances + max_connections.
my ($maxinst) = slurp_file("$top/common/cmconf.h") =~ /#define CMCONF_MAX_INSTANCES\s+(\d+)/;
ok($s{LimitNOFILE} =~ /^\d+$/ && $s{LimitNOFILE} >= 9 + 2 * $maxinst + 1000,
	"LimitNOFILE=$s{LimitNOFILE}: room for $maxinst instances and 1000 sessions at least");
like($text, qr/9 \+ 2 x \(number of instances\) \+ max_connections/, 'and the unit says how it is sized');

# systemd-analyze verify, on an instance of it whose programs exist.
SKIP:
{
	my ($sa) = grep { -x $_ } qw(/usr/bin/systemd-analyze /bin/systemd-analyze);
	skip 'systemd-analyze is not installed', 2 unless $sa;
	my $d = PostgreSQL::Test::Utils::tempdir();
	(my $copy = $text) =~ s{\Q$bindir\E/cm_ctl}{$top/build/bin/cm_ctl}g;
	my $inst = "$d/conmgr\@t048.service";
	PostgreSQL::Test::Utils::append_to_file($inst, $copy);
	my ($o, $e) = ('', '');
	run([ $sa, 'verify', '--man=no', $inst ], '<', \undef, '>', \$o, '2>', \$e);
	is($?, 0, 'systemd-analyze verify: exit 0') or diag($o . $e);
	my @complaints = grep { !/^\s*$/ } split /\n/, $e;
	is_deeply(\@complaints, [], 'and no complaint (unknown key, bad value, missing program)');
}

# The unit's command lines, as systemd would run them for instance "t048",
# with CMDATA a scratch directory and the programs of the build tree.
{
	my $cmdata = PostgreSQL::Test::Utils::tempdir();
	chmod 0700, $cmdata;
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $wd = PostgreSQL::Test::Cluster::get_free_port();
	PostgreSQL::Test::Utils::append_to_file("$cmdata/conmgr.conf",
		"port = $port\nlisten_addresses = '127.0.0.1'\nbackend_hostaddr0 = '127.0.0.1'\nwatchdog_port0 = $wd\nlog_min_messages = LOG\n");
	my $cmd = sub {
		my ($line) = @_;
		$line =~ s{/var/lib/conmgr/%i}{$cmdata}g;
		$line =~ s{^\Q$bindir\E/}{$top/build/bin/};
		my ($o, $e) = ('', '');
		run([ split / /, $line ], '<', \undef, '>', \$o, '2>', \$e);
		return ($? >> 8, $o, $e);
	};
	my ($rc, $o, $e) = $cmd->($s{ExecStart});
	is($rc, 0, 'ExecStart starts conmgr') or diag($e);
	(my $pidfile = $s{PIDFile}) =~ s{/var/lib/conmgr/%i}{$cmdata};
	my ($pid) = slurp_file($pidfile) =~ /^(\d+)\n/;
	ok($pid && kill(0, $pid), "PIDFile's first line is the running supervisor ($pid)");
	like(slurp_file("/proc/$pid/cmdline"), qr/^conmgr: supervisor -D \Q$cmdata\E/, 'which is conmgr');
	ok(wait_until(sub { -s "$cmdata/conmgr.log" && slurp_file("$cmdata/conmgr.log") =~ /conmgr ready/ }, 10),
		'logging to CMDATA/conmgr.log');
	($rc, $o, $e) = $cmd->($s{ExecReload});
	is($rc, 0, 'ExecReload reloads it') or diag($e);
	ok(wait_until(sub { slurp_file("$cmdata/conmgr.log") =~ /configuration file reloaded: no parameter changed/ }, 10),
		'as the log says');
	($rc, $o, $e) = $cmd->($s{ExecStop});
	is($rc, 0, 'ExecStop stops it') or diag($e);
	# gone, or a zombie for whoever adopted it (cm_ctl start does not wait)
	my $stat = -e "/proc/$pid/stat" ? slurp_file("/proc/$pid/stat") : '';
	ok(($stat eq '' || $stat =~ /^\d+ \(.*\) Z /) && !-e $pidfile, 'the supervisor and the pid file are gone');
}

done_testing();
