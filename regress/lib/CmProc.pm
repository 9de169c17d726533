
=pod

=head1 NAME

CmProc - processes as /proc shows them, and conmgr under strace

=head1 DESCRIPTION

For the tests that look at conmgr's processes from outside: which
children a process has (in the order they were forked), whether one is
still running, its ps title and status, its memory; and the command
prefix that runs conmgr under strace(1), whose fault injection
(C<-e inject=SYSCALL:delay_enter=US>) holds chosen system calls so that a
race window stays open as long as a test needs; and the conmgr directory
these tests run in.

=cut

package CmProc;

use strict;
use warnings;
use Exporter 'import';
use CmTest qw(sanitized);
use CmTest::Conmgr;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;

=pod

=head2 conmgr_one(param => value, ...), conmgr_dir(param => value, ...)

A new conmgr (CmTest::Conmgr, named cm) whose conmgr.conf has one
instance at 127.0.0.1, a free port for applications,
C<log_min_messages = LOG> and the parameters given; C<watchdog_port0>
defaults to a free port where nothing listens (the heartbeat role only
retries).  conmgr_dir returns its directory and application port only,
for a test that runs conmgr its own way (its command line is what the
test is about).

=cut

sub conmgr_one
{
	my (%param) = @_;
	my $port = delete $param{port};
	return CmTest::Conmgr->new('cm',
		defined $port ? (port => $port) : (),
		conf => {
			backend_hostaddr0 => "'127.0.0.1'",
			watchdog_port0 => PostgreSQL::Test::Cluster::get_free_port(),
			log_min_messages => 'LOG',
			%param
		});
}

sub conmgr_dir
{
	my $cm = conmgr_one(@_);
	return ($cm->cmdata, $cm->port);
}

our @EXPORT = qw(conmgr_one conmgr_dir proc_children proc_alive proc_cmdline proc_status proc_memory_has
  proc_shared_mapping proc_mem_read proc_mem_write strace_env conmgr_traced);

# (state, ppid, start time in clock ticks) of a process, or () if gone.
sub proc_stat
{
	my ($pid) = @_;
	open(my $f, '<', "/proc/$pid/stat") or return ();
	my $stat = <$f> // '';
	close $f;
	return $stat =~ /\) (\S) (\d+)(?: \S+){17} (\d+) /s ? ($1, $2, $3) : ();
}

=pod

=head2 proc_children($pid)

The pids of $pid's children, oldest first (forked first).

=cut

sub proc_children
{
	my ($parent) = @_;
	my %start;
	for my $f (glob('/proc/[0-9]*/stat'))
	{
		my ($pid) = $f =~ m{/proc/(\d+)/};
		my (undef, $ppid, $start) = proc_stat($pid);
		$start{$pid} = $start if defined $ppid && $ppid == $parent;
	}
	return sort { $start{$a} <=> $start{$b} || $a <=> $b } keys %start;
}

# True while $pid runs (a zombie has ended).
sub proc_alive
{
	my ($state) = proc_stat($_[0]);
	return defined $state && $state ne 'Z';
}

# Its command line (ps title), arguments joined by spaces; '' if gone.
sub proc_cmdline
{
	my ($pid) = @_;
	open(my $f, '<', "/proc/$pid/cmdline") or return '';
	my $cmd = do { local $/; <$f> } // '';
	close $f;
	$cmd =~ s/\0+$//;
	$cmd =~ s/\0/ /g;
	return $cmd;
}

# The lines of /proc/PID/status.
sub proc_status
{
	my ($pid) = @_;
	open(my $f, '<', "/proc/$pid/status") or return ();
	my @lines = <$f>;
	close $f;
	return @lines;
}

=pod

=head2 proc_memory_has($pid, $bytes)

Whether $bytes occur in the writable memory of $pid (data, heap, stacks,
anonymous and shared mappings, as /proc/PID/maps lists them: where a
process keeps what it has read), read through /proc/PID/mem (the same user
may read it); undef if the memory could not be read at all.  Mappings over
64 MB are skipped: those are a sanitizer's shadow memory, terabytes of
reserved address space.

=cut

sub proc_memory_has
{
	my ($pid, $bytes) = @_;
	open(my $maps, '<', "/proc/$pid/maps") or return undef;
	open(my $mem, '<:raw', "/proc/$pid/mem") or return undef;
	my $read = 0;
	my $tail;
	while (my $line = <$maps>)
	{
		my ($lo, $hi, $perm, $name) = $line =~ /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/
		  or next;
		my ($start, $end) = (hex($lo), hex($hi));
		next if $perm !~ /^rw/ || $end - $start > 64 << 20;
		$tail = '';
		for (my $at = $start; $at < $end; $at += 1 << 20)
		{
			my $len = $end - $at < (1 << 20) ? $end - $at : 1 << 20;
			my $chunk;
			sysseek($mem, $at, 0) or last;
			defined(sysread($mem, $chunk, $len)) or last;
			$read += length $chunk;
			return 1 if index($tail . $chunk, $bytes) >= 0;
			$tail = substr($chunk, -length($bytes));
		}
	}
	return $read > 0 ? 0 : undef;
}

=pod

=head2 proc_shared_mapping($pid, $bytes)

The start address of the first shared writable mapping of $pid whose
memory begins with $bytes (conmgr's shared table begins with its magic
number), or undef.

=cut

sub proc_shared_mapping
{
	my ($pid, $bytes) = @_;
	open(my $maps, '<', "/proc/$pid/maps") or return undef;
	while (my $line = <$maps>)
	{
		my ($lo, $perm) = $line =~ /^([0-9a-f]+)-[0-9a-f]+ (\S+) / or next;
		next unless $perm =~ /^rw.s/;
		my $head = proc_mem_read($pid, hex($lo), length $bytes);
		return hex($lo) if defined $head && $head eq $bytes;
	}
	return undef;
}

# $len bytes of $pid's memory at $addr, or undef.
sub proc_mem_read
{
	my ($pid, $addr, $len) = @_;
	my $buf;
	open(my $mem, '<:raw', "/proc/$pid/mem") or return undef;
	sysseek($mem, $addr, 0) or return undef;
	return (sysread($mem, $buf, $len) // -1) == $len ? $buf : undef;
}

# Write $bytes into $pid's memory at $addr; true on success.
sub proc_mem_write
{
	my ($pid, $addr, $bytes) = @_;
	open(my $mem, '+<:raw', "/proc/$pid/mem") or return 0;
	sysseek($mem, $addr, 0) or return 0;
	return (syswrite($mem, $bytes) // -1) == length $bytes;
}

=pod

=head2 strace_env()

The command prefix (C<env ...>) for a conmgr run under strace: a
sanitizer build's leak check cannot run in a traced process (it traces
the process itself), so it is turned off there.

=cut

sub strace_env
{
	return ('env', sanitized() ? ('ASAN_OPTIONS=' . join(':', $ENV{ASAN_OPTIONS} // (), 'detect_leaks=0')) : ());
}

=pod

=head2 conmgr_traced($dir)

The pid of the conmgr supervisor for directory $dir that runs as a child
of strace, or undef.

=cut

sub conmgr_traced
{
	my ($dir) = @_;
	for my $f (glob('/proc/[0-9]*/stat'))
	{
		my ($pid) = $f =~ m{/proc/(\d+)/};
		my $cmd = proc_cmdline($pid);
		next unless $cmd =~ m{(?:^|/)conmgr -D \Q$dir\E$} || $cmd =~ /^conmgr: supervisor -D \Q$dir\E$/;
		my (undef, $ppid) = proc_stat($pid);
		return $pid if defined $ppid && proc_cmdline($ppid) =~ /^strace /;
	}
	return undef;
}

1;
