# CmTerminal — the terminal kept for a measuring script's results.
#
# PostgreSQL::Test::Utils sends STDOUT and STDERR to its log file when it
# is loaded; a script that prints results (regress/bench/wd_ab.pl,
# fw_ab.pl, listener_instr.pl) loads this module first, and prints with
# out() or to $CmTerminal::OUT, which stay the terminal; a die's message
# goes to the terminal's standard error too.
package CmTerminal;
use strict;
use warnings;
use Exporter 'import';

our @EXPORT_OK = qw(out $OUT $ERR);
our ($OUT, $ERR);

BEGIN
{
	open($OUT, '>&', \*STDOUT) or die "dup stdout: $!";
	open($ERR, '>&', \*STDERR) or die "dup stderr: $!";
	$OUT->autoflush(1);
	$SIG{__DIE__} = sub { print $ERR $_[0] unless $^S; };
}

# Print a line to the terminal.
sub out
{
	print $OUT @_, "\n";
	return;
}

1;
