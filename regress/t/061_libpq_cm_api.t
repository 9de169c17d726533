# Test that libpq-cm covers libpq's whole connection API: every function of
# the installed libpq-fe.h and libpq-events.h that takes a PGconn (or
# returns one) must be exported by libpq-cm.so.1 and by the drop-in
# libpq.so.5, or an application calling it would reach the real libpq with
# our wrapper PGconn and crash.  A newer libpq that grows such a function
# makes this test fail until the function is added to libpq-cm/forward.h
# (plain forwarder) or given its own definition in connect.c/conn.c.
#
# Also checks the other direction: nothing but libpq's API (and PQcm*)
# leaves the libraries, and no exported name is missing from the real libpq
# (a typo in forward.h).  Needs no server; run after "make frontend".
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use PostgreSQL::Test::Utils ();
use Test::More;
use IPC::Run;

my $top = cm_top();

# --- 1 and 2: the PGconn functions of the headers -----------------------

chomp(my $incdir = `pg_config --includedir`);
is($?, 0, 'pg_config --includedir ran') or BAIL_OUT('no pg_config');

# libpq 17's headers: those of the PostgreSQL 17 chroot that make check
# builds (docs/libpq-cm.md), or another directory named by
# CM_LIBPQ17_INCLUDEDIR.  Without them this part says so and skips them,
# unless CM_LIBPQ17_REQUIRED is set (the PostgreSQL 17 part of make check,
# which has made the chroot).
my $inc17 = $ENV{CM_LIBPQ17_INCLUDEDIR}
  // '/var/cache/conmgr/trixie/usr/include/postgresql';
my $have17 = -f "$inc17/libpq-fe.h";
if (!$have17 && $ENV{CM_LIBPQ17_REQUIRED})
{
	fail("libpq 17's libpq-fe.h is in $inc17 (CM_LIBPQ17_REQUIRED is set)");
}
elsif (!$have17)
{
	note("libpq 17's headers are not available (no $inc17/libpq-fe.h; "
		  . 'set CM_LIBPQ17_INCLUDEDIR): checking against libpq 15 only');
}

# Parses one header: returns a list of [name, return type, parameters] for
# every "extern ... name(...);" prototype, and the number of "extern"
# declarations it saw (other than extern "C"), so that a prototype the
# parser cannot read shows as a count mismatch rather than vanishing.
sub parse_header
{
	my ($file) = @_;
	open(my $fh, '<', $file) or die "cannot open $file: $!";
	my $src = do { local $/; <$fh> };
	close($fh);

	$src =~ s{/\*.*?\*/}{ }gs;    # block comments
	$src =~ s{//[^\n]*}{}g;       # line comments
	$src =~ s{\\\n}{ }g;          # macro continuation lines
	$src =~ s{^[ \t]*#[^\n]*}{}mg;    # preprocessor lines

	my $externs = () = $src =~ /\bextern\b(?!\s*")/g;
	my @protos;
	while ($src =~ /\bextern\s+(?!")([^;{}()]*?)\b([A-Za-z_]\w*)\s*\(([^;{}]*)\)\s*;/gs)
	{
		my ($ret, $name, $params) = ($1, $2, $3);
		s/\s+/ /g for $ret, $params;
		push @protos, [ $name, $ret, $params ];
	}
	return (\@protos, $externs);
}

# The functions of one version's libpq-fe.h and libpq-events.h: those
# taking a PGconn, those returning one, and all of them.
sub header_functions
{
	my ($dir, $version) = @_;
	my (%takes, %returns, %all);
	for my $h ('libpq-fe.h', 'libpq-events.h')
	{
		my $file = "$dir/$h";
		ok(-f $file, "libpq $version: header $h found in $dir") or next;
		my ($protos, $externs) = parse_header($file);
		is(scalar(@$protos), $externs,
			"libpq $version: every extern declaration of $h parsed as a function prototype");
		for my $p (@$protos)
		{
			my ($name, $ret, $params) = @$p;
			$all{$name} = 1;
			$takes{$name} = $h if $params =~ /\bPGconn\b/;
			$returns{$name} = $h if $ret =~ /\bPGconn\s*\*/;
		}
	}
	return (\%takes, \%returns, \%all);
}

my %hdr;
$hdr{15} = [ header_functions($incdir, 15) ];
$hdr{17} = [ header_functions($inc17, 17) ] if $have17;

# Sanity checks, so that a broken parser cannot pass by finding nothing.
for my $v (sort keys %hdr)
{
	my ($takes, $returns, $all) = @{ $hdr{$v} };
	cmp_ok(scalar(keys %$takes), '>=', 90,
		"libpq $v: parser finds at least 90 header functions taking a PGconn");
	for my $fn (qw(PQexec PQconnectPoll PQfinish lo_open PQregisterEventProc
		PQdefaultSSLKeyPassHook_OpenSSL PQinstanceData PQsetNoticeReceiver))
	{
		ok($takes->{$fn}, "libpq $v: parser lists $fn among the PGconn functions");
	}
	# Function pointer typedefs (even those with a PGconn parameter) are no
	# functions of the library.
	for my $type (qw(PQnoticeReceiver PQnoticeProcessor
		PQsslKeyPassHook_OpenSSL_type PGEventProc pgthreadlock_t))
	{
		ok(!$all->{$type}, "libpq $v: parser skips function pointer type $type");
	}
	# PQsetdb is a macro for PQsetdbLogin; there are five.
	for my $fn (qw(PQconnectdb PQconnectdbParams PQconnectStart
		PQconnectStartParams PQsetdbLogin))
	{
		ok($returns->{$fn}, "libpq $v: parser lists $fn among the PGconn constructors");
	}
}
if ($have17)
{
	my $takes17 = $hdr{17}[0];
	ok($takes17->{$_}, "libpq 17: parser lists $_ among the PGconn functions")
	  for qw(PQcancelCreate PQclosePrepared PQsendPipelineSync
	  PQsetChunkedRowsMode PQchangePassword PQconnectionUsedGSSAPI);
}

# The PGconn functions of libpq 16 and 18 that 15's and 17's headers lack,
# read from their libpq-fe.h (REL_16_STABLE, REL_18_STABLE); this machine
# has neither version.  16's one is in 17 as well.
my @pgconn_16_18 = qw(PQconnectionUsedGSSAPI PQservice PQfullProtocolVersion
  PQdefaultAuthDataHook);

my (%takes_conn, %returns_conn);
for my $v (sort keys %hdr)
{
	$takes_conn{$_} = $v for keys %{ $hdr{$v}[0] };
	$returns_conn{$_} = $v for keys %{ $hdr{$v}[1] };
}
$takes_conn{$_} //= '16/18' for @pgconn_16_18;

my @takes = sort keys %takes_conn;
my @returns = sort keys %returns_conn;
note(scalar(@takes) . " header functions take a PGconn: @takes");
note(scalar(@returns) . " header functions return a PGconn: @returns");

# The newer functions libpq-cm declares itself (libpq-cm/pq_newer.h): each
# must be one of a newer libpq's PGconn functions.
my ($newer) = parse_header("$top/libpq-cm/pq_newer.h");
my %newer = map { $_->[0] => 1 } @$newer;
is(scalar(keys %newer), 12, 'libpq-cm/pq_newer.h declares the newer functions');
for my $fn (sort keys %newer)
{
	ok(($have17 && $hdr{17}[0]{$fn}) || grep({ $_ eq $fn } @pgconn_16_18),
		"pq_newer.h's $fn is a PGconn function of libpq "
		  . ($have17 ? '17' : '16 or 18'))
	  if $have17 || grep({ $_ eq $fn } @pgconn_16_18);
}

# One source for all versions: libpq-cm compiles against libpq 17's
# header too (its guards are libpq-fe.h's LIBPQ_HAS_* macros).
SKIP:
{
	skip "no libpq 17 headers in $inc17", 1 if !$have17;
	my @srcs = glob("$top/libpq-cm/*.c");
	my $out = `cc -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wmissing-prototypes -I$top/common -I$top/libpq-cm -I$inc17 -fsyntax-only @srcs 2>&1`;
	is($?, 0, "libpq-cm compiles against libpq 17's libpq-fe.h ($inc17)")
	  or diag($out);
}

# --- 3: both libraries export all of them -------------------------------

# The dynamic function symbols a shared object defines.  Returns a hash
# name => nm type letter for every defined symbol but version nodes (A).
sub exported
{
	my ($lib) = @_;
	my %sym;
	for (`nm -D --defined-only "$lib"`)
	{
		my ($type, $name) = (split ' ')[ -2, -1 ];
		next if !defined $name || $type eq 'A';
		$name =~ s/@.*//;
		$sym{$name} = $type;
	}
	is($?, 0, "nm -D ran on $lib");
	return \%sym;
}

sub is_function { return $_[0] =~ /^[TtWwi]$/; }

my %libs = (
	'libpq-cm.so.1' => "$top/build/lib/libpq-cm.so.1",
	'drop-in libpq.so.5' => "$top/build/lib/dropin/libpq.so.5",
);
my %exports;
for my $what (sort keys %libs)
{
	my $lib = $libs{$what};
	ok(-f $lib, "$what was built (make frontend)") or next;
	my $sym = $exports{$what} = exported($lib);

	my @missing = grep { !is_function($sym->{$_} // '') } @takes;
	is_deeply(\@missing, [],
		"$what exports every header function that takes a PGconn")
	  or diag("$what lacks: @missing "
		  . '(add plain forwarders to libpq-cm/forward.h)');

	@missing = grep { !is_function($sym->{$_} // '') } @returns;
	is_deeply(\@missing, [],
		"$what exports every header function that returns a PGconn")
	  or diag("$what lacks: @missing");

	# --- 4: nothing but libpq's API leaks out ---------------------------
	my @leaks = sort grep { !/^(PQ|lo_)/ } keys %$sym;
	is_deeply(\@leaks, [],
		"$what exports only PQ* and lo_* symbols (internals are hidden)")
	  or diag("$what leaks: @leaks");
	my @data = sort grep { !is_function($sym->{$_}) } keys %$sym;
	is_deeply(\@data, [], "$what exports no data symbols")
	  or diag("$what exports data: @data");
	ok(is_function($sym->{PQcmSocket} // ''), "$what exports PQcmSocket");
	ok(is_function($sym->{PQcmLastInstance} // ''), "$what exports PQcmLastInstance");
}

# Both are built from the same objects and must export the same set.
SKIP:
{
	skip 'a library is missing', 1 if keys %exports != 2;
	my @a = sort keys %{ $exports{'libpq-cm.so.1'} };
	my @b = sort keys %{ $exports{'drop-in libpq.so.5'} };
	is_deeply(\@b, \@a,
		'drop-in libpq.so.5 and libpq-cm.so.1 export the same symbols');
}

# --- 5: nothing the real libpq lacks ------------------------------------

# Every exported function is the host's real libpq's, or one of the newer
# functions of pq_newer.h (absent from libpq 15: see docs/libpq-cm.md).
chomp(my $libdir = `pg_config --libdir`);
my ($real) = grep { -f } ('/usr/lib/x86_64-linux-gnu/libpq.so.5',
	"$libdir/libpq.so.5");
SKIP:
{
	skip 'no libpq-cm.so.1', 3 if !$exports{'libpq-cm.so.1'};
	ok(defined $real, 'the real libpq.so.5 was found') or skip 'no libpq', 2;
	my $real_sym = exported($real);
	my @unknown = sort grep {
		!/^PQcm(Socket|LastInstance)$/ && !$newer{$_}
		  && is_function($exports{'libpq-cm.so.1'}{$_})
		  && !is_function($real_sym->{$_} // '')
	} keys %{ $exports{'libpq-cm.so.1'} };
	is_deeply(\@unknown, [],
		"libpq-cm.so.1 exports no function the real libpq ($real) lacks, "
		  . 'except PQcmSocket, PQcmLastInstance and those of pq_newer.h')
	  or diag("not in the real libpq: @unknown (typo in forward.h?)");
}

# And libpq 17's library has every one of them but PQcm* and 18's.
my $real17 = $ENV{CM_LIBPQ17_LIBDIR}
  // '/var/cache/conmgr/trixie/usr/lib/x86_64-linux-gnu';
SKIP:
{
	skip "no libpq 17 library in $real17", 1
	  if !$exports{'libpq-cm.so.1'} || !-f "$real17/libpq.so.5";
	my $sym17 = exported("$real17/libpq.so.5");
	my @unknown = sort grep {
		!/^PQcm(Socket|LastInstance)$/
		  && !/^(PQservice|PQfullProtocolVersion|PQdefaultAuthDataHook)$/
		  && is_function($exports{'libpq-cm.so.1'}{$_})
		  && !is_function($sym17->{$_} // '')
	} keys %{ $exports{'libpq-cm.so.1'} };
	is_deeply(\@unknown, [],
		"libpq-cm.so.1 exports no function libpq 17 ($real17/libpq.so.5) lacks, "
		  . "but PQcm* and 18's")
	  or diag("not in libpq 17: @unknown");
}

# --- 6: a newer function the loaded libpq lacks -------------------------

# Called through libpq-cm with a libpq that lacks it, a newer function ends
# the process as the dynamic linker would: a message naming it and the
# loaded version, exit status 127 (docs/libpq-cm.md).  With a libpq that
# has it, the call reaches the real function.
SKIP:
{
	my $tool = "$top/build/regress/tools/cmnewer";
	skip 'cmnewer not built', 3 if !-x $tool || !defined $real;
	my $real_has = is_function(exported($real)->{PQcancelCreate} // '');
	my ($out, $err);
	IPC::Run::run([ $tool, 'PQcancelCreate' ], '>', \$out, '2>', \$err);
	my $rc = $? >> 8;
	if ($real_has)
	{
		is($rc, 0, "PQcancelCreate reaches $real, which has it");
		like($out, qr/^returned$/m, 'the call returned');
		pass('no message');
	}
	else
	{
		is($rc, 127, "PQcancelCreate with $real (libpq 15) behind libpq-cm: exit status 127")
		  or diag("stdout: $out\nstderr: $err");
		like($err,
			qr/^libpq-cm: symbol lookup error: undefined symbol: PQcancelCreate \(the loaded libpq is version 15\.\d+\)$/m,
			'the message names the function and the loaded version');
		unlike($out, qr/returned/, 'the call did not return');
	}
}

# --- 7: the accessors while connecting answer as libpq's -----------------

# While libpq-cm talks to conmgr (or probes a destination) there is no real
# connection yet, and libpq answers PQdb(), PQuser(), PQpass(),
# PQoptions(), PQconninfo(), PQprotocolVersion()… from the options at once:
# so must libpq-cm.  cmaccess (libpq-cm) and cmaccess-plain (libpq alone)
# start the same connection to a listener that never answers (libpq-cm
# probes it, libpq waits for its answer) and print every accessor; then
# the same to a closed port, after the connection failed.  The lines must
# be the same but for what differs by design: while connecting,
# PQerrorMessage() is libpq's scratch text ("connection to server at …
# failed: " before any failure) and libpq-cm's empty string; after the
# failure libpq keeps its socket open until PQfinish() and libpq-cm does
# not.
SKIP:
{
	my ($cm, $plain) = map { "$top/build/regress/tools/$_" } qw(cmaccess cmaccess-plain);
	skip 'cmaccess not built', 1 if !-x $cm || !-x $plain;

	my $silent = fake_listener();
	my $sport = $silent->sockport;
	my $closed = fake_listener();
	my $cport = $closed->sockport;
	close($closed);

	my $tmp = PostgreSQL::Test::Utils::tempdir();
	my $passfile = "$tmp/pgpass";
	PostgreSQL::Test::Utils::append_to_file($passfile,
		"127.0.0.1:$sport:*:*:from-the-file\n127.0.0.1:$cport:*:*:from-the-file\n");
	chmod(0600, $passfile);

	# [test name, arguments of cmaccess, environment]
	my @cases = (
		[ 'string, password given', [ 'string', 'now', 'host=127.0.0.1', "port=$sport",
			'dbname=appdb', 'user=app', 'password=the-pass-word', 'options=-c work_mem=64kB' ], {} ],
		[ 'string, no password, defaults', [ 'string', 'now', 'host=127.0.0.1', "port=$sport" ], {} ],
		[ 'string, password from the environment', [ 'string', 'now', 'host=127.0.0.1', "port=$sport" ],
			{ PGPASSWORD => 'env-pass', PGUSER => 'envuser', PGDATABASE => 'envdb' } ],
		[ 'string, password from the password file', [ 'string', 'now', 'host=127.0.0.1', "port=$sport",
			'user=app' ], { PGPASSFILE => $passfile } ],
		[ 'string, hostaddr only, password file', [ 'string', 'now', 'hostaddr=127.0.0.1', "port=$sport" ],
			{ PGPASSFILE => $passfile, PGOPTIONS => '-c geqo=off' } ],
		[ 'URI', [ 'raw', 'now', "postgresql://u1:pw1\@127.0.0.1:$sport/uridb?application_name=a1" ], {} ],
		[ 'params, password given', [ 'params', 'now', 'host=127.0.0.1', "port=$sport",
			'user=app', 'password=the-pass-word' ], {} ],
		[ 'params, no password', [ 'params', 'now', 'host=127.0.0.1', "port=$sport", 'dbname=' ], {} ],
		[ 'params, dbname expanded, password file', [ 'params', 'now',
			"dbname=host=127.0.0.1 port=$sport user=u2 dbname=db2", 'application_name=a2' ],
			{ PGPASSFILE => $passfile } ],
		[ 'params, nonblocking', [ 'params', 'now', 'host=127.0.0.1', "port=$sport" ], { CMACCESS_NONBLOCKING => 1 } ],
		[ 'string, failed, password given', [ 'string', 'end', 'host=127.0.0.1', "port=$cport",
			'password=the-pass-word' ], {} ],
		[ 'params, failed, password file', [ 'params', 'end', 'host=127.0.0.1', "port=$cport" ],
			{ PGPASSFILE => $passfile } ],
	);
	for my $case (@cases)
	{
		my ($name, $args, $env) = @$case;
		my %out;
		for my $prog ($cm, $plain)
		{
			# only the case's own libpq settings
			local %ENV = %ENV;
			delete $ENV{$_} for grep { /^PG/ } keys %ENV;
			$ENV{HOME} = $tmp;
			$ENV{PGPASSFILE} = "$tmp/none";
			%ENV = (%ENV, %$env);
			my ($out, $err) = ('', '');
			IPC::Run::run([ $prog, @$args ], '<', \undef, '>', \$out, '2>', \$err,
				IPC::Run::timeout(30));
			is($? >> 8, 0, "$name: $prog ran") or diag($err);
			$out{$prog} = $out;
		}
		my ($mine, $libpqs) = ($out{$cm}, $out{$plain});
		my $failed = $args->[1] eq 'end';
		for ($mine, $libpqs)
		{
			s/^PQerrorMessage=.*$/PQerrorMessage=(not compared)/m if !$failed;
			s/^PQsocket=.*$/PQsocket=(not compared)/m if $failed;
		}
		like($mine, $failed ? qr/^PQstatus=BAD$/m : qr/^PQstatus=in progress$/m,
			"$name: libpq-cm's connection is " . ($failed ? 'failed' : 'in progress'));
		like($mine, qr/^PQdb='[^']+'$/m, "$name: libpq-cm's PQdb() names the database");
		is($mine, $libpqs, "$name: every accessor of libpq-cm answers as libpq's");
	}
}

done_testing();
