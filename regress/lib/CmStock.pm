=pod

=head1 NAME

CmStock - the stock clients that reach conmgr through its forward ports

=head1 DESCRIPTION

The programs of regress/tools/stock, each a driver as installed, none of
them preloaded or relinked: Debian's pgJDBC (FwdJdbc.java, compiled by
C<compile_jdbc>), python3-psycopg (fwd_psycopg.py), node-postgres from
tools/npm-modules' cache (fwd_pg.js); and psql. Each has a mode that
prints where it landed (C<where port=N recovery=t|f addr=A>) and one that
blocks in C<SELECT pg_sleep(60)> and prints how that ended. Used by
regress/t/087_forward_stock_clients.t and
regress/root/071_forward_blackhole.t.

Node is C<node> from PATH, or the command in CM_NODE (words split at
blanks), e.g. Debian 12's in a chroot: C<CM_NODE="tools/bookworm-node run
node"> (DEVELOPERS.md, "Debian 12's Node: the bookworm chroot").  With
CM_REQUIRE_STOCK=1 a client that cannot run fails its test instead of
being skipped (C<can_run>).

=cut

package CmStock;

use strict;
use warnings;
use File::Basename ();
use IPC::Run ();

# The stock programs' directory in the tree.
our $DIR = File::Basename::dirname(__FILE__) . '/../tools/stock';
our $PGJDBC = $ENV{PGJDBC} // '/usr/share/java/postgresql.jar';
our $PYTHON = -x '/usr/bin/python3' ? '/usr/bin/python3' : 'python3';
our $NPMDIR = $ENV{CM_NPM_DIR} // '/var/cache/conmgr/npm';
our @NODE = split ' ', ($ENV{CM_NODE} // 'node');

# The modes that print where a client landed, per client.
our %WHERE_MODES = (jdbc => [ 'where', 'ds' ], psycopg => ['where'], node => ['where'], psql => ['where']);

# The modes that block, per client.
our %BLOCK_MODES = (jdbc => [ 'block', 'dsblock' ], psycopg => ['block'], node => ['block'], psql => ['block']);

# What each client prints when its connection is cut under the blocked
# statement (docs/drivers.md, "Stock clients through a forward port").
our %CUT_ERROR = (
	jdbc => qr/^result sqlstate=08006 \S+ message=An I\/O error occurred while sending to the backend/m,
	psycopg => qr/^result sqlstate=none \S+ class=OperationalError closed=True message=.*server closed the connection unexpectedly/m,
	node => qr/^result sqlstate=none \S+ message=Connection terminated unexpectedly/m,
	psql => qr/server closed the connection unexpectedly/);

# The line each client's blocking mode ends with (psql: its error).
our %RESULT = (jdbc => qr/^result /m, psycopg => qr/^result /m, node => qr/^result /m,
	psql => qr/^psql: |server closed the connection|connection to server was lost/m);

# Run a command (60 s at most); returns (stdout, stderr, exit status), the
# status undef when it could not run.
sub run
{
	my (@cmd) = @_;
	my ($out, $err) = ('', '');
	my $ok = eval {
		IPC::Run::run(\@cmd, '<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(60));
		1;
	};
	return ($out, "$err$@", undef) unless $ok;
	return ($out, $err, $? >> 8);
}

=pod

=head2 why_not($psql)

Which clients can run here: a hash, client name => undef, or why not
(a sentence naming the Debian package). psql is $psql's program.

=cut

sub why_not
{
	my ($psql) = @_;
	my %why;
	my $runs = sub { my (undef, undef, $rc) = run(@_); return defined $rc && $rc == 0 };
	$why{jdbc} = !$runs->('javac', '-version') ? 'no JDK (javac not found; Debian package openjdk-17-jdk-headless)'
	  : !-r $PGJDBC ? "no pgJDBC ($PGJDBC; Debian package libpostgresql-jdbc-java)" : undef;
	$why{psycopg} = !$runs->($PYTHON, '-c', 'import psycopg') ? 'no psycopg (Debian package python3-psycopg)' : undef;
	my $unavail = '';
	if (open my $f, '<', "$NPMDIR/pg.unavailable")
	{
		local $/;
		$unavail = <$f> // '';
		chomp $unavail;
	}
	$why{node} = !$runs->(@NODE, '--version') ? "no node (@NODE; Debian package nodejs)"
	  : !-r "$NPMDIR/node_modules/pg/package.json"
	  ? "no node-postgres in $NPMDIR (run tools/npm-modules as root" . ($unavail ? "; it said: $unavail" : '') . ')'
	  : undef;
	$why{psql} = !-x $psql ? "no psql ($psql; Debian package postgresql-client-15)" : undef if defined $psql;
	return %why;
}

=pod

=head2 about($client, %o)

What runs as $client, for the test's log: for node, the Node that ran
(its version, program and the Debian package it came from: fwd_pg.js
C<version>, through the same command as the tests, CM_NODE included),
e.g. C<Node v18.20.4 /usr/bin/nodejs, package nodejs 18.20.4+dfsg-1~deb12u3>.
An empty string for the other clients.  %o as for C<command>.

=cut

sub about
{
	my ($client, %o) = @_;
	return '' unless $client eq 'node';
	my ($out, $err, $rc) = run(command($client, 'version', 0, %o));
	my ($line) = $out =~ /^(Node .*)$/m;
	$line //= 'Node: fwd_pg.js version printed nothing: ' . ($out . $err) =~ s/\s+/ /gr;
	return $line . (defined $ENV{CM_NODE} ? " (CM_NODE=$ENV{CM_NODE})" : '');
}

=pod

=head2 can_run(\%why_not, \@clients, %o)

One test per client: passes naming what runs (C<about>), or, when the
client cannot run (%why_not from C<why_not>), is skipped with the
reason, or fails with it under CM_REQUIRE_STOCK=1, where every stock
client must run (a machine after tools/install-deps test and
tools/npm-modules as root).  %o as for C<command>.

=cut

sub can_run
{
	my ($why_not, $clients, %o) = @_;
	for my $c (@$clients)
	{
		if (!defined $why_not->{$c})
		{
			my $about = about($c, %o);
			Test::More::pass("$c: can run" . ($about ne '' ? ": $about" : ''));
		}
		elsif ($ENV{CM_REQUIRE_STOCK})
		{
			Test::More::fail("$c: can run (CM_REQUIRE_STOCK=1): $why_not->{$c}");
		}
		else
		{
		  SKIP:
			{
				Test::More::skip("$c: $why_not->{$c}", 1);
			}
		}
	}
	return;
}

=pod

=head2 compile_jdbc($dir, $src)

Compiles FwdJdbc.java (from $src, the stock programs' directory unless
told) into $dir; dies with javac's output when it fails.

=cut

sub compile_jdbc
{
	my ($dir, $src) = @_;
	my ($out, $err, $rc) = run('javac', '-d', $dir, '-cp', $PGJDBC, ($src // $DIR) . '/FwdJdbc.java');
	die "javac FwdJdbc.java failed:\n$out$err" if !defined $rc || $rc;
	return;
}

=pod

=head2 command($client, $mode, $port, %o)

The command that runs $client in $mode against 127.0.0.1:$port. Options:
jdir (FwdJdbc's class directory), dir (the stock programs' directory),
psql (psql's program).

=cut

sub command
{
	my ($client, $mode, $port, %o) = @_;
	my $dir = $o{dir} // $DIR;
	if ($client eq 'jdbc')
	{
		my @j = ('java', '-cp', "$PGJDBC:$o{jdir}", 'FwdJdbc');
		return $mode =~ /^ds/ ? (@j, $mode, '127.0.0.1', $port)
		  : (@j, $mode, "jdbc:postgresql://127.0.0.1:$port/postgres");
	}
	return ($PYTHON, "$dir/fwd_psycopg.py", $mode, $port) if $client eq 'psycopg';
	return (@NODE, "$dir/fwd_pg.js", "$NPMDIR/node_modules/pg", $mode, $port) if $client eq 'node';
	if ($client eq 'psql')
	{
		my $sql = $mode eq 'where'
		  ? q{SELECT 'where port=' || inet_server_port() || ' recovery='
			|| CASE WHEN pg_is_in_recovery() THEN 't' ELSE 'f' END || ' addr=' || host(inet_server_addr())}
		  : 'SELECT pg_sleep(60)';
		return ($o{psql} // 'psql', '-X', '-At', '-h', '127.0.0.1', '-p', $port, '-d', 'postgres', '-c', $sql);
	}
	die "CmStock::command: no client $client";
}

1;
