# Planned switchover (issue 10, test 5), lease_ttl = 2, primary n1 and
# standbys n2, n3: a client commits single rows one after the other through
# a target_session_attrs=read-write connection (DBD::Pg, reconnecting after
# any error) and records which commits were acknowledged; leader_resign()
# runs on n1 in the middle of that stream:
#  - leader_resign() returns true; n2 (next in line) promotes and the
#    client's writes resume there (polled, generous bound);
#  - every acknowledged row is on n2, none is acknowledged by n1 after n2
#    took over;
#  - n1 is then a deposed primary: fenced (25006), not eligible, not queued;
#    n3 follows timeline 2 and is queued behind n2;
#  - with n3's WAL receiver frozen (SIGSTOP) and switchover_timeout = 1s,
#    leader_resign() on n2 fails (55000) and n2 leads on.
# Every wait is a poll with a generous bound; nothing here asserts timing.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use DBI;
use DBD::Pg;

# t/ holds the helper modules (PROVE_FLAGS in the Makefile is reset by PGXS)
use FindBin;
use lib $FindBin::RealBin;

use EtcdServer;
use LeaderElectionTest;

my $prefix = '/leader_election/t025';

my $etcd = EtcdServer->new('etcd');
$etcd->start;

my ($n1, $n2, $n3) =
  le_replicated_cluster($etcd, n => 3, prefix => $prefix, lease_ttl => 2);
my @nodes = ($n1, $n2, $n3);
my $rw    = le_rw_connstr($n3, $n2, $n1);
my $sysid = le_system_identifier($n1);
ok( le_wait_cluster_record($etcd, $prefix,
		system_identifier => $sysid, timeline => 1, node => 'n1'),
	'the cluster record names n1 on timeline 1');
is(le_candidate_names($n1), 'n1,n2,n3', 'queue: n1, n2, n3');
is($n1->safe_psql('postgres', 'SHOW leader_election.switchover_timeout'),
	'5s', 'switchover_timeout is 5s (default)');

$n1->safe_psql('postgres', 'CREATE TABLE t (id int PRIMARY KEY, node text)');
$n1->wait_for_catchup($_, 'replay') foreach ($n2, $n3);

#
# The client: one INSERT per statement (autocommit), reconnecting through
# the read-write string after any error.
#
(my $dsn = "dbi:Pg:$rw") =~ s/ /;/g;
my $dbh;
my $next_id = 0;
my %acked;         # id => node that acknowledged the commit
my @acks;          # [ id, node, time ] in order
my %errors;        # error text (first line) => count
sub write_one
{
	$dbh ||= DBI->connect($dsn, '', '',
		{ AutoCommit => 1, RaiseError => 0, PrintError => 0 });
	if (!$dbh)
	{
		my ($first) = split /\n/, $DBI::errstr // 'no connection';
		$errors{"connect: $first"}++;
		usleep(20_000);
		return undef;
	}
	my $id = ++$next_id;
	my ($node) = $dbh->selectrow_array(
		"INSERT INTO t VALUES ($id, current_setting('leader_election.node_name')) "
		  . 'RETURNING node');
	if (defined $node)
	{
		$acked{$id} = $node;
		push @acks, [ $id, $node, time() ];
		return $node;
	}
	my ($first) = split /\n/, $dbh->errstr // 'error';
	$errors{$first}++;
	$dbh->disconnect;
	$dbh = undef;
	return undef;
}

# a steady stream on n1 first
my $on_n1 = 0;
for (1 .. 200)
{
	my $node = write_one();
	$on_n1++ if defined $node && $node eq 'n1';
}
is($on_n1, 200, 'the client committed 200 rows on n1');

# leader_resign() in a background session, while the client goes on
my $bg = $n1->background_psql('postgres', on_error_stop => 0, timeout => 120);
$bg->query_until(qr/resigning/, "\\echo resigning\nSELECT leader_resign();\n");
my $t_resign = time();

my $deadline = time() + 90;
my $after_on_n2 = 0;
while ($after_on_n2 < 200 && time() < $deadline)
{
	my $node = write_one();
	$after_on_n2++ if defined $node && $node eq 'n2';
}
my $resigned = $bg->query_until(qr/^[tf]$/m, '');
$bg->quit;
$dbh->disconnect if $dbh;

like($resigned, qr/^t$/m, 'leader_resign() on n1 returned true');
is($after_on_n2, 200, 'writes resumed on n2: 200 rows committed there');
note 'errors seen by the client: '
  . join('; ', map { "$errors{$_} x $_" } sort keys %errors);
my @on_n1 = grep { $_->[1] eq 'n1' } @acks;
my @on_n2 = grep { $_->[1] eq 'n2' } @acks;
is(scalar(@on_n1) + scalar(@on_n2), scalar(@acks),
	'every commit was acknowledged by n1 or n2');
if (@on_n1 && @on_n2)
{
	note sprintf(
		'%d commits acknowledged by n1 (%d after leader_resign() started), '
		  . '%d by n2; last on n1 to first on n2: %.3f s',
		scalar(@on_n1), scalar(grep { $_->[2] > $t_resign } @on_n1),
		scalar(@on_n2), $on_n2[0][2] - $on_n1[-1][2]);
	cmp_ok($on_n1[-1][0], '<', $on_n2[0][0],
		'no commit acknowledged by n1 after the first one on n2');
}

ok(le_wait_leader($n2), 'n2 leads');
my $s2 = le_status($n2);
is($s2->{in_recovery}, 'f', 'n2: promoted');
is($s2->{timeline},    '2', 'n2: timeline 2');
ok( le_wait_cluster_record($etcd, $prefix,
		system_identifier => $sysid, timeline => 2, node => 'n2'),
	'the cluster record names n2 on timeline 2');

# every acknowledged row is on the new primary
my %on_new = map { split /\|/ } split /\n/,
  $n2->safe_psql('postgres', 'SELECT id, node FROM t');
my @lost = grep { !defined $on_new{$_} || $on_new{$_} ne $acked{$_} }
  sort { $a <=> $b } keys %acked;
is(scalar(@lost), 0,
	'every one of the ' . scalar(keys %acked) . ' acknowledged rows is on n2')
  or diag 'missing on n2: ' . join(',', @lost[ 0 .. ($#lost < 20 ? $#lost : 19) ]);

# the old primary is deposed
ok( $n1->poll_query_until(
		'postgres',
		'SELECT leader_is_primary(), in_recovery, eligible, queue_position IS NULL '
		  . 'FROM leader_status()',
		'f|f|f|t'),
	'n1: does not lead, a primary, not eligible, not queued');
my $s1 = le_status($n1);
like($s1->{ineligible_reason} // '',
	qr/timeline 1 is behind the cluster's timeline 2.*pg_rewind/,
	'n1: ineligible_reason says rejoin with pg_rewind');
note 'n1: ineligible_reason: ' . ($s1->{ineligible_reason} // '(null)');
le_refused($n1, "INSERT INTO t VALUES (-1, 'n1')", 'INSERT on the deposed n1');

# the other standby follows the new primary
ok( $n3->poll_query_until(
		'postgres',
		"SELECT status, received_tli FROM pg_stat_wal_receiver",
		'streaming|2'),
	'n3 streams timeline 2');
ok( $n3->poll_query_until(
		'postgres',
		'SELECT role, leader_name, queue_position, eligible FROM leader_status()',
		'follower|n2|1|t'),
	'n3 is queued at 1 behind n2');
is(le_candidate_names($n2), 'n2,n3', 'queue: n2, n3');
is(scalar(le_leaders(@nodes)), 1, 'one leader');

#
# A successor that does not catch up in time: leader_resign() fails with an
# ERROR and the primary leads on. n3's WAL receiver is frozen (SIGSTOP), so
# it still shows as streaming but flushes nothing more.
#
$n2->append_conf('postgresql.conf', 'leader_election.switchover_timeout = 1s');
$n2->reload;
ok( $n2->poll_query_until(
		'postgres', 'SHOW leader_election.switchover_timeout', '1s'),
	'n2: switchover_timeout = 1s');
my $walrcv = $n3->safe_psql('postgres', 'SELECT pid FROM pg_stat_wal_receiver');
like($walrcv, qr/^\d+$/, 'n3 has a WAL receiver');
kill 'STOP', $walrcv;
$n2->safe_psql('postgres',
	"INSERT INTO t SELECT g, 'n2' FROM generate_series(100001, 101000) g");
my ($state, $err) = le_sqlstate($n2, 'SELECT leader_resign()');
kill 'CONT', $walrcv;
is($state, '55000', 'leader_resign() with a frozen successor fails (55000)')
  or diag $err;
like($err, qr/could not hand over leadership: this node leads on/,
	'... saying that this node leads on');
like($err, qr/next in line, "n3"/, '... naming the successor n3');
is($n2->safe_psql('postgres', 'SELECT leader_is_primary()'),
	't', 'n2 still leads');
is($n2->safe_psql('postgres', "INSERT INTO t VALUES (200001, 'n2') RETURNING id"),
	'200001', 'n2 takes writes again');
is($n3->safe_psql('postgres', 'SELECT pg_is_in_recovery()'),
	't', 'n3 did not promote');
$n2->wait_for_catchup($n3, 'replay');
is($n3->safe_psql('postgres', 'SELECT count(*) FROM t WHERE id > 100000'),
	'1001', 'n3 catches up once its WAL receiver runs again');
is(scalar(le_leaders(@nodes)), 1, 'one leader');

$_->stop foreach @nodes;
$etcd->stop;

done_testing();
