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
use Test::More;

my $top = cm_top();

# --- 1 and 2: the PGconn functions of the installed headers -------------

chomp(my $incdir = `pg_config --includedir`);
is($?, 0, 'pg_config --includedir ran') or BAIL_OUT('no pg_config');

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

my (%takes_conn, %returns_conn, %all_header_fns);
for my $h ('libpq-fe.h', 'libpq-events.h')
{
	my $file = "$incdir/$h";
	ok(-f $file, "header $h found in $incdir") or next;
	my ($protos, $externs) = parse_header($file);
	is(scalar(@$protos), $externs,
		"every extern declaration of $h parsed as a function prototype");
	for my $p (@$protos)
	{
		my ($name, $ret, $params) = @$p;
		$all_header_fns{$name} = 1;
		$takes_conn{$name} = $h if $params =~ /\bPGconn\b/;
		$returns_conn{$name} = $h if $ret =~ /\bPGconn\s*\*/;
	}
}

my @takes = sort keys %takes_conn;
my @returns = sort keys %returns_conn;
note(scalar(@takes) . " header functions take a PGconn: @takes");
note(scalar(@returns) . " header functions return a PGconn: @returns");

# Sanity checks, so that a broken parser cannot pass by finding nothing.
cmp_ok(scalar(@takes), '>=', 90,
	'parser finds at least 90 header functions taking a PGconn');
for my $fn (qw(PQexec PQconnectPoll PQfinish lo_open PQregisterEventProc
	PQdefaultSSLKeyPassHook_OpenSSL PQinstanceData PQsetNoticeReceiver))
{
	ok($takes_conn{$fn}, "parser lists $fn among the PGconn functions");
}
# Function pointer typedefs (even those with a PGconn parameter) are no
# functions of the library.
for my $type (qw(PQnoticeReceiver PQnoticeProcessor
	PQsslKeyPassHook_OpenSSL_type PGEventProc pgthreadlock_t))
{
	ok(!$all_header_fns{$type}, "parser skips function pointer type $type");
}
# PQsetdb is a macro for PQsetdbLogin; PG15 has five.
cmp_ok(scalar(@returns), '>=', 5,
	'parser finds at least 5 header functions returning a PGconn');
for my $fn (qw(PQconnectdb PQconnectdbParams PQconnectStart
	PQconnectStartParams PQsetdbLogin))
{
	ok($returns_conn{$fn}, "parser lists $fn among the PGconn constructors");
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

chomp(my $libdir = `pg_config --libdir`);
my ($real) = grep { -f } ('/usr/lib/x86_64-linux-gnu/libpq.so.5',
	"$libdir/libpq.so.5");
SKIP:
{
	skip 'no libpq-cm.so.1', 3 if !$exports{'libpq-cm.so.1'};
	ok(defined $real, 'the real libpq.so.5 was found') or skip 'no libpq', 2;
	my $real_sym = exported($real);
	my @unknown = sort grep {
		!/^PQcm(Socket|LastInstance)$/ && is_function($exports{'libpq-cm.so.1'}{$_})
		  && !is_function($real_sym->{$_} // '')
	} keys %{ $exports{'libpq-cm.so.1'} };
	is_deeply(\@unknown, [],
		"libpq-cm.so.1 exports no function the real libpq ($real) lacks, "
		  . 'except PQcmSocket and PQcmLastInstance')
	  or diag("not in the real libpq: @unknown (typo in forward.h?)");
}

done_testing();
