# regress/lib/CmStock.pm's report of which stock clients can run, which
# 087_forward_stock_clients.t and root/071_forward_blackhole.t print first:
#
#  - a client that cannot run is skipped with its reason, and fails with it
#    under CM_REQUIRE_STOCK=1 (a machine where tools/install-deps and
#    tools/npm-modules ran, as CI's, must not pass by skipping);
#  - node's line names the Node that runs the client and where it came
#    from (fwd_pg.js version), through CM_NODE when set, so that a log
#    shows which Node ran (Debian 12's nodejs on CI);
#  - CM_NODE replaces node in the clients' commands and in the check that
#    node runs;
#  - tools/npm-modules, when npm fails, writes npm's own error lines as the
#    reason the node client is skipped, from npm 10 ("npm error") and from
#    Debian 12's npm 9 ("npm ERR!") alike (a stand-in npm prints them);
#  - tools/install-deps test wants Debian's npm besides nodejs when no npm
#    is on PATH (Debian 12's nodejs does not bring one: without it the node
#    client is skipped on a fresh machine), and not when one is (Node's own
#    nodejs brings its npm and conflicts with Debian's).
#
# Each case runs CmStock in a perl of its own and reads its TAP.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmStock;
use IPC::Run ();
use PostgreSQL::Test::Utils ();
use Test::More;

my $lib = "$FindBin::RealBin/../lib";
my $tmp = PostgreSQL::Test::Utils::tempdir();

# Runs CmStock::can_run(WHY_NOT, [CLIENTS]) in a perl of its own with %env
# added to the environment; returns its TAP.
sub can_run_tap
{
	my ($why_not, $clients, %env) = @_;
	my $code = q{
		use CmStock; use Test::More;
		my ($why, @c) = @ARGV;
		CmStock::can_run({ map { $_ => ($why eq '-' ? undef : $why) } @c }, \@c);
		done_testing();
	};
	my ($out, $err) = ('', '');
	local @ENV{ keys %env } = values %env;
	IPC::Run::run([ $^X, "-I$lib", '-e', $code, $why_not // '-', @$clients ],
		'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(60));
	return "$out$err";
}

# A client that cannot run: skipped, or failed under CM_REQUIRE_STOCK=1.
{
	local $ENV{CM_REQUIRE_STOCK};
	delete $ENV{CM_REQUIRE_STOCK};
	my $tap = can_run_tap('no node here', ['node']);
	like($tap, qr/^ok 1 # skip node: no node here$/m, 'a client that cannot run is skipped with its reason');
	$tap = can_run_tap('no node here', ['node'], CM_REQUIRE_STOCK => 1);
	like($tap, qr/^not ok 1 - node: can run \(CM_REQUIRE_STOCK=1\): no node here$/m,
		'under CM_REQUIRE_STOCK=1 it fails with the reason');
	$tap = can_run_tap('no node here', ['node'], CM_REQUIRE_STOCK => 0);
	like($tap, qr/^ok 1 # skip /m, 'CM_REQUIRE_STOCK=0 skips');
}

# CM_NODE: a stand-in Node that prints what fwd_pg.js version prints.
my $fake = "$tmp/fakenode";
mkdir $fake or die "mkdir $fake: $!";
open my $f, '>', "$fake/node" or die "$fake/node: $!";
print $f "#!/bin/sh\n",
  "[ \"\$1\" = --version ] && { echo v0.0.1; exit 0; }\n",
  "[ \"\$3\" = version ] && echo 'Node v0.0.1 /fake/node, not from the Debian package nodejs'\n";
close $f;
chmod 0755, "$fake/node";
{
	# A CM_NODE of words: a program and its first argument.
	my $tap = can_run_tap(undef, ['node'], CM_NODE => "/bin/sh $fake/node");
	like($tap, qr{^ok 1 - node: can run: Node v0\.0\.1 /fake/node, not from the Debian package nodejs \(CM_NODE=/bin/sh \Q$fake\E/node\)$}m,
		"node's line names the Node that CM_NODE runs");
	local $ENV{CM_NODE} = "/bin/sh $fake/node";
	local @CmStock::NODE = ('/bin/sh', "$fake/node");
	my @cmd = CmStock::command('node', 'where', 5432);
	is("@cmd[0, 1]", "/bin/sh $fake/node", "CM_NODE's words start the client's command");
	@CmStock::NODE = ("$tmp/no such node");
	my %why = CmStock::why_not();
	is($why{node}, "no node ($tmp/no such node; Debian package nodejs)", "a CM_NODE that does not run: node's reason names it");
}

# The Node on PATH, when there is one: fwd_pg.js version names it.
SKIP:
{
	my %why = CmStock::why_not();
	skip "node: $why{node}", 1 if defined $why{node} && $why{node} =~ /^no node/;
	local $ENV{CM_NODE};
	delete $ENV{CM_NODE};
	my $line = CmStock::about('node');
	like($line, qr{^Node v\d+\.\d+\.\d+ /\S+, (package nodejs \S+|not from the Debian package nodejs.*)$},
		"fwd_pg.js version names the Node on PATH: $line");
}

# tools/npm-modules' reason when npm install fails.
for my $prefix ('npm error', 'npm ERR!')
{
	my $bin = "$tmp/npm-bin";
	mkdir $bin unless -d $bin;
	open my $n, '>', "$bin/npm" or die "$bin/npm: $!";
	print $n "#!/bin/sh\n",
	  "printf '%s\\n' 'npm WARN config x' '$prefix code E404' '$prefix 404 Not Found - GET pg'",
	  " '$prefix A complete log of this run can be found in: x.log'\n",
	  "exit 1\n";
	close $n;
	chmod 0755, "$bin/npm";
	my $dir = "$tmp/npm-cache";
	my ($out, $err) = ('', '');
	local $ENV{PATH} = "$bin:$ENV{PATH}";
	IPC::Run::run([ "$FindBin::RealBin/../../tools/npm-modules", $dir ],
		'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(60));
	my $reason = PostgreSQL::Test::Utils::slurp_file("$dir/pg.unavailable");
	chomp $reason;
	like($reason, qr/^npm install pg@\S+ failed: \Q$prefix\E code E404 \Q$prefix\E 404 Not Found - GET pg $/,
		"npm-modules: npm's \"$prefix\" lines are the reason: $reason");
}

# tools/install-deps' list, with and without an npm on PATH (the list needs
# no program but sh).
{
	my $list = sub {
		my ($path) = @_;
		my ($out, $err) = ('', '');
		local $ENV{PATH} = $path;
		IPC::Run::run([ '/bin/sh', "$FindBin::RealBin/../../tools/install-deps", 'test', '--list' ],
			'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(60));
		return join(' ', grep { /^(nodejs|npm)$/ } split /\n/, $out) . $err;
	};
	my $none = "$tmp/no-npm";
	mkdir $none;
	is($list->($none), 'nodejs npm', 'install-deps test: nodejs and npm when no npm is on PATH');
	is($list->("$tmp/npm-bin"), 'nodejs', 'install-deps test: nodejs alone when an npm is on PATH');
}

done_testing();
