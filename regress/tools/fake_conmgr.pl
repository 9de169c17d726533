#!/usr/bin/perl
# fake_conmgr.pl ADDR PORT LOG [KIND,PORT,HOSTHEX]...
#
# Answers like conmgr, for tests of what libpq-cm trusts.  Listens on
# ADDR:PORT (PORT 0: any free port), prints "port N" on stdout, then serves
# one connection after another until killed.  A connection that opens with
# the probe (GSSENCRequest) gets conmgr's ErrorResponse and HELLO, then,
# after its RESOLVE, one CANDIDATE per argument (addr_kind KIND, the
# instance's PORT, its host given in hex so that any byte can be sent) and
# CANDIDATES_END; the connection is then held until the client closes it,
# as conmgr holds an attached session.  Each connection appends one line to
# LOG: "probe" when it opened with the probe, else "other CODE" with the
# code of its first packet (80877103 SSLRequest, 196608 a startup packet),
# and is then closed.  docs/protocol.md describes the frames.
use strict;
use warnings;
use IO::Socket::IP;

my ($addr, $port, $log, @cands) = @ARGV;
die "usage: fake_conmgr.pl ADDR PORT LOG [KIND,PORT,HOSTHEX]...\n" unless defined $log;
my $srv = IO::Socket::IP->new(LocalHost => $addr, LocalPort => $port, Listen => 16,
	ReuseAddr => 1, Proto => 'tcp') or die "fake_conmgr: listen on $addr:$port: $@\n";
$| = 1;
print 'port ', $srv->sockport, "\n";

my $msg = "SFATAL\0C08004\0Mthis is conmgr\0\0";
my $greeting = 'E' . pack('N', 4 + length $msg) . $msg . pack('aCnNnn', 'H', 0, 12, 0x434D4752, 1, 1);
my $answer = '';
for my $i (0 .. $#cands)
{
	my ($kind, $cport, $hex) = split /,/, $cands[$i];
	my $host = pack('H*', $hex);
	$answer .= pack('aCnnnCCn', 'C', 0, 4 + 8 + length($host), $i, $cport, 0, $kind, length $host) . $host;
}
$answer .= pack('aCnn', 'Z', 0, 6, scalar @cands);

# Read exactly $n bytes (less at end of file).
sub read_n
{
	my ($c, $n) = @_;
	my $buf = '';
	while (length($buf) < $n)
	{
		my $got = sysread($c, $buf, $n - length($buf), length($buf));
		last unless $got;
	}
	return $buf;
}

sub note
{
	open my $f, '>>', $log or die "fake_conmgr: $log: $!\n";
	print $f "@_\n";
	close $f;
}

while (my $c = $srv->accept)
{
	my $first = read_n($c, 8);
	my ($len, $code) = length($first) == 8 ? unpack('NN', $first) : (0, 0);
	if ($code != 80877104)
	{
		note("other $code");
		close $c;
		next;
	}
	note('probe');
	syswrite($c, $greeting);
	my $hdr = read_n($c, 4);
	if (length($hdr) == 4)
	{
		my (undef, undef, $flen) = unpack('aCn', $hdr);
		read_n($c, $flen - 4) if $flen > 4;
		syswrite($c, $answer);
		1 while sysread($c, my $rest, 1024);
	}
	close $c;
}
