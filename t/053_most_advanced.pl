# The most advanced standby takes over after a crash (issue 16, asynchronous
# replication: synchronous_mode off), lease_ttl = 2, primary n1, standbys
# n2 (first in line) and n3 (second):
#  - n2's WAL receiver is frozen (SIGSTOP) while n1 commits a few MB that
#    n3 receives; n1 crashes (-m immediate) and n2's receiver runs again:
#    n2 has less WAL than n3, so it yields its place ("yields its place to
#    node "n3"", leader_status().yielded) and n3 promotes;
#  - n2 follows n3's timeline without pg_rewind (the same postmaster, never
#    restarted, streams timeline 2 from n3) and stands again, queued;
#  - n3 has every row n1 ever acknowledged, hence every row any standby had;
#  - n2's position published in etcd (<prefix>.wal.<lease>) is withdrawn
#    once it streams again;
#  - the equal case: n1 rejoined as a standby, all standbys equally
#    advanced, n3 crashes: the first in line (n2) takes over, nobody yields.
# max_lag_on_failover is raised to 64MB so that n2's lag (a few MB) keeps it
# queued: here the most-advanced rule decides, not the lag rule of issue 10.
# Every wait is a poll with a generous bound; the failover times are noted,
# not asserted (bench/failover.sh measures them).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

# t/ holds the helper modules (PROVE_FLAGS in the Makefile is reset by PGXS)
use FindBin;
use lib $FindBin::RealBin;

use EtcdServer;
use LeaderElectionTest;

my $prefix = '/leader_election/t053';
my $ttl    = 2;

my $etcd = EtcdServer->new('etcd');
$etcd->start;

my ($n1, $n2, $n3) = le_replicated_cluster(
	$etcd,
	n          => 3,
	prefix     => $prefix,
	lease_ttl  => $ttl,
	extra_conf => "leader_election.max_lag_on_failover = '64MB'");
my @nodes = ($n1, $n2, $n3);
my $sysid = le_system_identifier($n1);

# The new columns of leader_status() (extension 1.2), '|'-separated.
sub sync_status
{
	my ($node, $cols) = @_;
	return $node->safe_psql('postgres', "SELECT $cols FROM leader_status()");
}

# The WAL positions standbys published: etcdctl's key and value lines.
sub published
{
	my $out = $etcd->etcdctl('get', '--prefix', "$prefix.wal.");
	chomp $out;
	return $out;
}

is(le_candidate_names($n1), 'n1,n2,n3', 'queue: n1, n2 (first in line), n3');
ok( le_wait_cluster_record($etcd, $prefix,
		system_identifier => $sysid, timeline => 1, node => 'n1'),
	'the cluster record names n1 on timeline 1');
is(sync_status($n1, 'synchronous_mode, automatic_failover'),
	'off|t', 'n1: synchronous_mode off, automatic failover');
is(sync_status($n2, 'published_lsn IS NULL, yielded IS NULL'),
	't|t', 'n2 streams: it published no position and yielded to nobody');
is(published(), '', 'no position is published while everyone streams');

$n1->safe_psql('postgres',
	'CREATE TABLE t (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, pad text);'
	  . "INSERT INTO t (pad) SELECT 'before' FROM generate_series(1, 100)");
$n1->wait_for_catchup($_, 'replay') foreach ($n2, $n3);

#
# n2's WAL receiver freezes while n1 commits about 3 MB; n3 receives it all.
# (The replication connection is a Unix socket: what n1 sent n2 before the
# freeze and the socket buffers, a few hundred kB, is all n2 can read later.)
#
my $n2_postmaster = le_postmaster_pid($n2);
my $walrcv = $n2->safe_psql('postgres', 'SELECT pid FROM pg_stat_wal_receiver');
like($walrcv, qr/^\d+$/, 'n2 has a WAL receiver');
kill 'STOP', $walrcv;
$n1->safe_psql('postgres',
	"INSERT INTO t (pad) SELECT repeat('x', 300) FROM generate_series(1, 2000)")
  foreach 1 .. 4;
$n1->wait_for_catchup($n3, 'replay');
my $rows = $n1->safe_psql('postgres', 'SELECT count(*) FROM t');
is($rows, 8100, 'n1 committed 8100 rows');
is($n3->safe_psql('postgres', 'SELECT count(*) FROM t'),
	$rows, 'n3 has them all');
my $n2_rows_before = $n2->safe_psql('postgres', 'SELECT count(*) FROM t');
note "n2 had replayed $n2_rows_before rows when its receiver froze";
cmp_ok($n2_rows_before, '<', $rows, 'n2 has fewer rows (its receiver is frozen)');
is(sync_status($n2, 'queue_position'), '1',
	'n2 is still first in line (its lag is within max_lag_on_failover)');

#
# Crash of n1; n2's receiver runs again, reads what its socket holds and
# finds the stream ended
#
my $t0 = time();
$n1->stop('immediate');
kill 'CONT', $walrcv;

ok(le_wait_leader($n3), 'n3 leads');
note sprintf('n3 led %.1f s after the crash of n1', time() - $t0);
ok($n3->poll_query_until('postgres', 'SELECT pg_is_in_recovery()', 'f'),
	'n3 promoted');
is(join(',', map { $_->name } le_leaders($n2, $n3)), 'n3', 'n3 is the only leader');
is(sync_status($n3, 'in_recovery, timeline'), 'f|2', 'n3: a primary on timeline 2');
ok( le_wait_cluster_record($etcd, $prefix,
		system_identifier => $sysid, timeline => 2, node => 'n3'),
	'the cluster record names n3 on timeline 2');

# why n2 did not take over
ok( $n2->log_contains(
		qr/node "n2" yields its place to node "n3": [0-9A-F]+\/[0-9A-F]+ > [0-9A-F]+\/[0-9A-F]+/
	),
	'n2 logs that it yields its place to n3, with both WAL positions');
my $yielded = sync_status($n2, 'yielded');
note "n2: yielded = '$yielded'";
like($yielded, qr{^yielded to n3: [0-9A-F]+/[0-9A-F]+ > [0-9A-F]+/[0-9A-F]+$},
	"n2's leader_status().yielded says it yielded to n3, with both positions");
my @yield_lines = (slurp_file($n2->logfile) =~ /yields its place/g);
is(scalar(@yield_lines), 1, 'n2 logs the yield once');

#
# n2 follows n3's timeline without pg_rewind and stands again
#
ok( $n2->poll_query_until(
		'postgres',
		'SELECT status, received_tli, sender_port FROM pg_stat_wal_receiver',
		'streaming|2|' . $n3->port),
	'n2 streams timeline 2 from n3');
is(le_postmaster_pid($n2), $n2_postmaster,
	'... with the same postmaster: n2 was neither restarted nor rewound');
ok( $n3->poll_query_until(
		'postgres',
		"SELECT count(*) FROM pg_stat_replication "
		  . "WHERE application_name = 'n2' AND state = 'streaming'",
		'1'),
	"n3's pg_stat_replication shows n2 streaming");
ok( $n2->poll_query_until(
		'postgres',
		'SELECT role, leader_name, queue_position, eligible, timeline '
		  . 'FROM leader_status()',
		'follower|n3|1|t|2'),
	'n2 stands again: follower of n3, queued at 1, eligible, timeline 2');
is(sync_status($n2, 'published_lsn IS NULL'), 't',
	'n2 streams again: no published position in leader_status()');
ok(!$n2->log_contains(qr/pg_rewind/), 'n2 never asks for pg_rewind');

# every row: n3 has all n1 acknowledged, n2 (now fed by n3) has as many
is($n3->safe_psql('postgres', 'SELECT count(*) FROM t'),
	$rows, "n3 has every row n1 committed ($rows)");
$n3->wait_for_catchup($n2, 'replay');
is($n2->safe_psql('postgres', 'SELECT count(*) FROM t'),
	$rows, 'n2, streaming from n3, has the same rows');
cmp_ok($n2_rows_before, '<=', $rows, "... n2's rows before the crash among them");
# n2 withdrew its position once it streamed again (n3, a primary now,
# streams from nobody; its position goes with its lease)
my $poll_deadline = time() + 30;
my $left = published();
while ($left =~ /"node":"n2"/ && time() < $poll_deadline)
{
	select(undef, undef, undef, 0.2);
	$left = published();
}
unlike($left, qr/"node":"n2"/, "n2's published position is withdrawn once it streams again");
note "positions left in etcd: '$left'; n3's published_lsn: "
  . sync_status($n3, "coalesce(published_lsn::text, 'NULL')");

#
# The equal case: n1 rejoins as a standby (pg_rewind: it crashed on
# timeline 1); all standbys have all of n3's WAL; n3 crashes: n2, first in
# line, takes over and nobody yields.
#
my ($rc, $out, $err) = le_rejoin($n1, $n3, start => 1);
is($rc, 0, 'n1 rejoined as a standby of n3') or diag "stdout: $out\nstderr: $err";
ok( $n1->poll_query_until(
		'postgres',
		'SELECT role, leader_name, queue_position FROM leader_status()',
		'follower|n3|2'),
	'n1 queued at 2 behind n2');
is(le_candidate_names($n3), 'n3,n2,n1', 'queue: n3, n2, n1');
$n3->safe_psql('postgres',
	"INSERT INTO t (pad) SELECT 'equal' FROM generate_series(1, 100)");
$rows += 100;
$n3->wait_for_catchup($_, 'flush') foreach ($n2, $n1);
# n3 may write a little WAL of its own meanwhile: poll until all agree
my ($end, $got) = ('', '');
$poll_deadline = time() + 30;
while (time() < $poll_deadline)
{
	$end = $n3->safe_psql('postgres', 'SELECT pg_current_wal_flush_lsn()');
	$got = join(',',
		map { $_->safe_psql('postgres', 'SELECT pg_last_wal_receive_lsn()') } ($n2, $n1));
	last if $got eq "$end,$end";
	select(undef, undef, undef, 0.2);
}
is($got, "$end,$end", "n2 and n1 received all of n3's WAL ($end)");
my %log_off = map { $_->name => -s $_->logfile } ($n1, $n2);

$t0 = time();
$n3->stop('immediate');
ok(le_wait_leader($n2), 'n2 (first in line) leads');
note sprintf('n2 led %.1f s after the crash of n3 (all standbys equally advanced)',
	time() - $t0);
ok($n2->poll_query_until('postgres', 'SELECT pg_is_in_recovery()', 'f'), 'n2 promoted');
is(join(',', map { $_->name } le_leaders($n1, $n2)), 'n2', 'n2 is the only leader');
is(sync_status($n2, 'yielded IS NULL, timeline'), 't|3',
	'n2 yielded to nobody and leads on timeline 3');
foreach my $n ($n1, $n2)
{
	unlike(slurp_file($n->logfile, $log_off{ $n->name }),
		qr/yields its place/, $n->name . ' did not yield this time');
}
ok( $n1->poll_query_until(
		'postgres',
		'SELECT status, received_tli, sender_port FROM pg_stat_wal_receiver',
		'streaming|3|' . $n2->port),
	'n1 streams timeline 3 from n2 (no pg_rewind)');
ok( $n1->poll_query_until(
		'postgres',
		'SELECT role, leader_name, queue_position FROM leader_status()',
		'follower|n2|1'),
	'n1 stands again, queued at 1');
is($n2->safe_psql('postgres', 'SELECT count(*) FROM t'),
	$rows, "n2 has every row ($rows)");

$_->stop foreach ($n1, $n2);
$etcd->stop;

done_testing();
