# ECPG through conmgr with libpq-cm LINKED into the program
# (contrib/ecpg: ecpg, then cc ... -lecpg -lpq-cm -lpq with an rpath to
# build/lib; no LD_PRELOAD).  Every target_session_attrs value lands where
# asked; ECPGget_PGconn() gives libpq-cm's accessors, which name the
# instance; an instance lost under a blocked EXEC SQL surfaces as ECPG's
# connection error within heartbeat_timeout + 0.5 s.  (The unmodified
# program under LD_PRELOAD is covered by 060_libpq_cm.t.)
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib", "$FindBin::RealBin/../../contrib/testlib";
use CmDriverLab;
use CmTest;
use Test::More;

my $lab = lab_start();
my $bin = build_contrib('ecpg') . '/cmecpg';
my $hb = $lab->{hb_timeout};

my ($dyn) = run_cmd('readelf', '-d', $bin);
like($dyn, qr/NEEDED.*libecpg\.so.*\n(?s:.*)NEEDED.*libpq-cm\.so\.1.*\n(?s:.*)NEEDED.*libpq\.so\.5/,
	'cmecpg needs libecpg, then libpq-cm, then libpq');

sub target_url
{
	my ($target) = @_;
	return "tcp:postgresql://localhost:$lab->{cmport}/postgres?target_session_attrs=$target";
}

my %expect = (
	'read-write' => 'p', 'primary' => 'p', 'prefer-primary' => 'p',
	'read-only' => 's', 'standby' => 's', 'prefer-standby' => 's',
	'any' => qr/^[ps]$/);
for my $target (sort keys %expect)
{
	my ($out, $err) = run_cmd(foreign_env(), $bin, 'connect', target_url($target));
	my ($port, $rec, $host, $pqport, $cmsock) =
	  $out =~ /^connected port=(\d+) recovery=(\w) host=(\S+) pqport=(\d+) cmsocket=(\w+)/m;
	my $where = $lab->name_of($port);
	my $want = $expect{$target};
	ref $want ? like($where, $want, "$target: lands on $where")
	  : is($where, $want, "$target: lands on $where") or diag("$out$err");
	is($rec, ($where eq 'p' ? 'f' : 't'), "$target: pg_is_in_recovery() agrees");
	is("$host $pqport", "127.0.0.1 " . ($port // ''), "$target: PQhost/PQport of ECPGget_PGconn() name the instance");
	is($cmsock, 'yes', "$target: PQcmSocket() >= 0");
}

# conmgr balances 'any' over both instances, connection after connection.
{
	my %seen;
	for (1 .. 4)
	{
		my ($out) = run_cmd(foreign_env(), $bin, 'connect', target_url('any'));
		$seen{ $lab->name_of($1) }++ if $out =~ /^connected port=(\d+)/m;
	}
	is_deeply([ sort keys %seen ], [qw(p s)], 'any: four connections reach both instances');
}

# A lost standby under a blocked EXEC SQL.
{
	my $bg = bg_start(foreign_env(), $bin, 'block', target_url('standby'), 'SELECT pg_sleep(60)');
	ok(bg_wait($bg, qr/^running/m), 'a blocking EXEC SQL runs on the standby') or diag(bg_out($bg));
	ok($lab->wait_query('s', 'SELECT pg_sleep(60)'), 'the standby runs it');
	my ($took) = $lab->lose('s', $hb + 5, [ $bg, qr/^result /m ]);
	my $out = bg_out($bg);
	ok(defined $took, 'the statement returned') or diag($out);
	my ($state, $code, $cs, $msg) = $out =~ /^result .*connstatus=(\w+)\s+sqlstate=(\w+) sqlcode=(-?\d+) message=(.*)$/m
	  ? ($2, $3, $1, $4) : ('', '', '', '');
	like($state, qr/^(08...|57P0[12])$/, "ECPG's connection error: SQLSTATE $state ($msg)");
	is($code, -400, 'sqlcode ECPG_PGSQL (-400)');
	is($cs, 'BAD', 'PQstatus() is CONNECTION_BAD afterwards');
	ok(defined $took && $took <= $hb + 0.5,
		sprintf('within heartbeat_timeout + 0.5 s: %.3f s after the standby stopped (timeout %d s)', $took // -1, $hb));
	note(sprintf('ECPG: blocked EXEC SQL failed %.3f s after the instance stopped', $took // -1));
}

$lab->stop;
done_testing();
