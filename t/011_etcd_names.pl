# Names read from etcd are untrusted input: a candidate's name is whatever
# bytes its key holds (here `etcdctl elect` candidates with a name of invalid
# UTF-8 and a newline, a name in valid UTF-8, and a long name). Wherever the
# extension shows such a string -- leader_status(), leader_candidates(),
# the fence's error, the server log -- it is printable ASCII: every byte
# outside 0x20..0x7e is written as \xNN (a literal backslash and two
# lowercase hex digits), a backslash stays a backslash, and a shortened
# name is cut at an escape boundary. So the fence's error reaches a LATIN1
# client as 25006 (not as an encoding error, 22021), and nobody can inject
# lines into the server log.
#
# The SQL runs in a UTF8 database (u8), whatever encoding initdb chose for
# postgres, so that text is checked and converted for the client.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

# t/ holds the helper modules (PROVE_FLAGS in the Makefile is reset by PGXS)
use FindBin;
use lib $FindBin::RealBin;

use EtcdServer;
use LeaderElectionTest;

my $prefix = '/leader_election/t011';

# candidate names as raw bytes, and how the extension must show them
my $evil      = "\xff\xfe\nevil";
my $evil_esc  = '\xff\xfe\x0aevil';
my $noeud     = "n\xc5\x93ud";         # "n\x{153}ud" encoded as UTF-8
my $noeud_esc = 'n\xc5\x93ud';
my $long      = "\xff" x 200;
my $long_re   = qr/\A(?:\\xff)+\z/;    # whole escapes only
my $backslash = 'back\slash';            # printable: shown as it is

# a byte string as Perl would write it, for diagnostics
sub show
{
	my $s = shift;
	return '<undef>' unless defined $s;
	$s =~ s/([^\x20-\x7e]|\\)/$1 eq '\\' ? '\\\\' : sprintf('\\x%02x', ord($1))/ge;
	return "\"$s\"";
}

my $etcd = EtcdServer->new('etcd');
$etcd->start;

#
# Four etcdctl candidates queue first; etcd stores their names as given.
#
my @kvs;

# starts an etcdctl candidate and waits until etcd holds its key
sub start_candidate
{
	my ($name) = @_;
	my $before = scalar(@kvs);
	my $el = $etcd->start_elect($prefix, $name);
	for (1 .. 150)
	{
		@kvs = $etcd->get_prefix($prefix);
		last if @kvs > $before;
		usleep(100_000);
	}
	return $el;
}

my $el_evil = start_candidate($evil);
ok($el_evil->wait_leading(15), 'an etcdctl candidate named "\xff\xfe\nevil" leads');
my $el_noeud     = start_candidate($noeud);
my $el_long      = start_candidate($long);
my $el_backslash = start_candidate($backslash);
is(join(',', map { show($_->{value}) } @kvs),
	join(',', map { show($_) } ($evil, $noeud, $long, $backslash)),
	'etcd holds the four names as raw bytes, in queue order');

#
# node1 queues behind them.
#
my $n1 = le_node('node1', $etcd, prefix => $prefix);
ok( $n1->poll_query_until('postgres', 'SELECT role, queue_position FROM leader_status()', 'follower|4'),
	'node1 follows at position 4');
le_bypass_psql($n1,
	"CREATE DATABASE u8 ENCODING 'UTF8' LOCALE 'C' TEMPLATE template0");
$n1->safe_psql('u8', 'CREATE EXTENSION leader_election');
$n1->safe_psql('u8',
	"SET leader_election.fence_bypass = on;\nCREATE TABLE t (id int)");

# Rows of $sql (one text column) in database u8, as the raw bytes of each
# value (textsend), so that newlines or invalid bytes cannot garble them.
sub raw_rows
{
	my ($sql) = @_;
	my $out = $n1->safe_psql('u8',
		"SELECT encode(textsend(x), 'hex') FROM ($sql) AS q(x)");
	return map { pack('H*', $_) } split /\n/, $out;
}

sub leader_name
{
	my ($name) = raw_rows('SELECT leader_name FROM leader_status()');
	return $name;
}

# A fenced INSERT in u8 by a LATIN1 client: ($sqlstate, $stderr)
sub latin1_write
{
	my ($out, $err) = ('', '');
	local $ENV{PGCLIENTENCODING} = 'LATIN1';
	my $rc = $n1->psql('u8',
		"\\set VERBOSITY verbose\nINSERT INTO t VALUES (1);",
		stdout => \$out, stderr => \$err, timeout => 60, on_error_stop => 1);
	return ('00000', $err) if $rc == 0;
	return ($1, $err) if $err =~ /ERROR:\s+([0-9A-Z]{5}):/;
	return ("rc $rc", $err);
}

# checks the name shown for the current leader, and the fence's error
sub check_leader_shown
{
	my ($what, $expected) = @_;
	my $got = leader_name();
	my $ok =
	  ref $expected ? (defined $got && $got =~ $expected)
	  : (defined $got && $got eq $expected);
	ok($ok, "leader_status().leader_name shows $what escaped")
	  or diag 'got ' . show($got) . ', expected ' . (ref $expected ? $expected : show($expected));
	my ($state, $err) = latin1_write();
	is($state, '25006',
		"a fenced write by a LATIN1 client fails with 25006 ($what leads)")
	  or diag show($err);
	my ($detail) = $err =~ /^DETAIL:  (.*)$/m;
	my $in_detail =
	  ref $expected
	  ? (defined $detail && $detail =~ /The leader is "(?:\\xff)+"/)
	  : (defined $detail && index($detail, "\"$expected\"") >= 0);
	ok($in_detail, "... its DETAIL names $what escaped")
	  or diag 'stderr: ' . show($err);
	is($n1->safe_psql('u8', 'SELECT count(*) FROM t'), '0',
		'... and nothing was written');
	return;
}

#
# leader_status(), leader_candidates() and the fence's error
#
check_leader_shown('"\xff\xfe\nevil"', $evil_esc);

my @names = raw_rows(
	'SELECT node_name FROM leader_candidates() ORDER BY "position"');
is(scalar(@names), 5, 'leader_candidates() has five rows');
is(show($names[0]), show($evil_esc),
	'leader_candidates() shows "\xff\xfe\nevil" escaped');
is(show($names[1]), show($noeud_esc),
	'leader_candidates() shows "n\x{153}ud" (valid UTF-8) escaped byte by byte');
ok(defined $names[2] && $names[2] =~ $long_re,
	'leader_candidates() shows the long name as whole escapes')
  or diag 'got ' . show($names[2]);
is($names[3], $backslash, 'leader_candidates() shows "back\\slash" as it is');
is($names[4], 'node1', 'node1 is last');
my @keys = raw_rows(
	'SELECT key FROM leader_candidates() ORDER BY "position"');
ok(!(grep { /[^\x20-\x7e]/ } @names, @keys),
	'every node_name and key in leader_candidates() is printable ASCII')
  or diag join(', ', map { show($_) } @names, @keys);

#
# the valid UTF-8 name leads
#
$el_evil->stop;
ok($el_noeud->wait_leading(15), 'the candidate "n\x{153}ud" leads once the first one resigns');
ok( $n1->poll_query_until('postgres', 'SELECT queue_position FROM leader_status()', '3'),
	'node1 moves up to position 3');
check_leader_shown('"n\x{153}ud"', $noeud_esc);

#
# the long name leads
#
$el_noeud->stop;
ok($el_long->wait_leading(15), 'the candidate with the long name leads');
ok( $n1->poll_query_until('postgres', 'SELECT queue_position FROM leader_status()', '2'),
	'node1 moves up to position 2');
check_leader_shown('the long name', $long_re);

#
# the server log
#
my $log = slurp_file($n1->logfile);

# lines of the log that match $re, shown escaped
sub log_lines
{
	my ($re) = @_;
	return join("\n", map { show($_) } grep { $_ =~ $re } split /\n/, $log);
}
ok(index($log, $evil_esc) >= 0, 'the server log shows "\xff\xfe\nevil" escaped');
ok(index($log, $noeud_esc) >= 0, 'the server log shows "n\x{153}ud" escaped');
my $bad = log_lines(qr/\xff/);
is($bad, '', 'the server log holds no 0xff byte');
# (PostgreSQL indents the continuation lines of a message with a tab)
$bad = log_lines(qr/^[ \t]*evil/);
is($bad, '', 'no line of the server log begins with "evil"');
$bad = log_lines(qr/[^\x20-\x7e\t]/);
is($bad, '', 'every line of the server log is printable ASCII');

$el_long->stop;
$el_backslash->stop;
$n1->stop;
$etcd->stop;

done_testing();
