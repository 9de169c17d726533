# Test that the code shared with the extension (the protocol codec, its
# hash, the timer wheel, the counts per address, the log rate limit) needs
# nothing a PostgreSQL backend forbids: no allocation, no stdio, no exit.  The same
# objects are compiled into the watchdog extension, where exit() or
# printf() would be a bug; the codec's PostgreSQL-packet part
# (cmproto_pg.o), which the extension leaves out, is held to the same rule.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use Test::More;

my $top = "$FindBin::RealBin/../..";

# What the codec may call: memory and string primitives, and the stack
# protector's failure hook that the compiler inserts on its own.
my %allowed = map { $_ => 1 } qw(
  memchr memcmp memcpy memmove memset strcmp strlen strnlen
  explicit_bzero __stack_chk_fail __explicit_bzero_chk __memcpy_chk
  __memset_chk
);

my @objects = (
	(map { "$top/build/common/$_.o" }
	  qw(cmproto cmproto_handshake cmproto_names cmproto_pg cmsha256 cmwheel
	  cmaddrcount cmloglimit)),
	(map { "$top/pgext/$_.o" }
	  qw(cmproto cmproto_handshake cmproto_names cmsha256 cmwheel cmaddrcount cmloglimit)),
);

for my $obj (@objects)
{
	ok(-f $obj, "$obj was built") or next;
	my @undef = map { (split ' ')[-1] } grep { /\bU\b/ } `nm -u "$obj"`;
	is($?, 0, "nm ran on $obj");
	# Calls between the checked objects themselves are fine.
	my @bad = grep { !$allowed{$_} && !/^cm(hmac|sha256)_/ } @undef;
	# make check-asan: the tree's copies call the sanitizers' hooks (the
	# extension's, built by PGXS, never do).
	@bad = grep { !/^__(?:asan|ubsan)_/ } @bad if sanitized() && $obj =~ m{/build/};
	is_deeply(\@bad, [], "$obj calls only allowed library functions")
	  or diag("unexpected: @bad");
}

done_testing();
