# Test that libpq-cm's files call each other in one direction only, and
# that its functions and files stay within the size bounds of the tree
# (no function body over 100 lines, no file over 900).
#
# The connect state machine (connect.c) owns every change of a
# connection's phase; the probe and the resolve (probe.c) return their
# results to it and never call back.  So the graph of which file's object
# uses a symbol another file's object defines must have no cycle: a call
# back up, such as probe.c reporting through connect.c, closes one.  The
# graph comes from the built objects (nm), so inline functions from the
# headers count where they are expanded.  The includes among the library's
# own files must have no cycle either.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/../lib";
use CmTest;
use Test::More;

my $top = "$FindBin::RealBin/../..";
my $src = "$top/libpq-cm";
my $objdir = "$top/build/pic/libpq-cm";

# A cycle in a graph of name => { name => 1 }, as a list, or none.
sub find_cycle
{
	my ($g) = @_;
	my (%state, @path);
	my $visit;
	$visit = sub {
		my ($n) = @_;
		$state{$n} = 1;
		push @path, $n;
		for my $m (sort keys %{ $g->{$n} // {} })
		{
			if (($state{$m} // 0) == 1)
			{
				my @cycle = @path;
				shift @cycle while $cycle[0] ne $m;
				return [ @cycle, $m ];
			}
			next if $state{$m};
			my $c = $visit->($m);
			return $c if $c;
		}
		pop @path;
		$state{$n} = 2;
		return undef;
	};
	for my $n (sort keys %$g)
	{
		next if $state{$n};
		my $c = $visit->($n);
		return $c if $c;
	}
	return undef;
}

# --- calls: which object uses a symbol which other object defines ---
my @objs = sort glob("$objdir/*.o");
ok(@objs >= 8, 'the library\'s objects were built') or BAIL_OUT("no objects in $objdir");
my (%def, %uses);
for my $o (@objs)
{
	my ($f) = $o =~ m{([^/]+)\.o$};
	for (`nm --defined-only "$o"`)
	{
		my ($type, $sym) = (split ' ')[ 1, 2 ];
		$def{$sym} = "$f.c" if defined $sym && $type =~ /^[TDBR]$/;
	}
	$uses{"$f.c"} = [ map { (split ' ')[-1] } `nm --undefined-only "$o"` ];
}
my %calls;
for my $f (sort keys %uses)
{
	$calls{$f} //= {};
	for my $sym (@{ $uses{$f} })
	{
		my $t = $def{$sym};
		$calls{$f}{$t} = 1 if defined $t && $t ne $f;
	}
}
note('file-level calls: '
	  . join('; ', map { "$_ -> " . join(',', sort keys %{ $calls{$_} }) } grep { %{ $calls{$_} } } sort keys %calls));
my $cycle = find_cycle(\%calls);
ok(!$cycle, 'no call cycle between the files of libpq-cm')
  or diag('cycle: ' . join(' -> ', @$cycle));

# --- includes among the library's own files ---
my %includes;
for my $path (sort glob("$src/*.[ch]"))
{
	my ($f) = $path =~ m{([^/]+)$};
	$includes{$f} //= {};
	open my $fh, '<', $path or die "$path: $!";
	while (<$fh>)
	{
		$includes{$f}{$1} = 1 if /^#include "([^"]+)"/ && -f "$src/$1";
	}
}
$cycle = find_cycle(\%includes);
ok(!$cycle, 'no include cycle between the files of libpq-cm')
  or diag('cycle: ' . join(' -> ', @$cycle));

# --- size: function bodies and files ---
for my $path (sort glob("$src/*.[ch]"))
{
	my ($f) = $path =~ m{([^/]+)$};
	open my $fh, '<', $path or die "$path: $!";
	my @lines = <$fh>;
	ok(@lines <= 900, "$f: " . scalar(@lines) . ' lines, at most 900');
	# PostgreSQL layout: a function's body opens and closes in column 0.
	my ($name, $start, @long);
	for my $i (0 .. $#lines)
	{
		$name = $1 if $lines[$i] =~ /^([A-Za-z_]\w*)\(/;
		$start = $i if $lines[$i] =~ /^\{/ && defined $name;
		if ($lines[$i] =~ /^\}/ && defined $start)
		{
			my $body = $i - $start - 1;
			push @long, "$name ($body lines)" if $body > 100;
			undef $start;
			undef $name;
		}
	}
	is_deeply(\@long, [], "$f: no function body over 100 lines");
}

done_testing();
