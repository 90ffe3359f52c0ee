# Only caught-up standbys stand (issue 10, test 2), lease_ttl = 2,
# max_lag_on_failover = 64kB, primary n1 and standbys n2, n3:
#  - n3's WAL receiver is frozen (SIGSTOP) and 2 MB are written: it still
#    shows as streaming, but the leader's record of its flushed WAL shows
#    the lag: n3 leaves the queue ("lag ... > max_lag_on_failover 64 kB")
#    and rejoins at the tail once it runs again and has caught up;
#  - n3's WAL receiver is stopped (primary_conninfo = '' and a reload) and
#    more than max_lag_on_failover is written: n3 leaves the queue, is not
#    eligible and says why; n2 stays queued;
#  - crash of n1: the caught-up n2 promotes; n3 never does (it stays in
#    recovery, outside the queue);
#  - n3 streams again: it follows timeline 2 and rejoins the queue;
#  - its WAL receiver is stopped again and more is written: it leaves the
#    queue; crash of n2: no standby is caught up, so nobody promotes for
#    three grace periods, and n3's leader_status() says why.
# Every wait is a poll with a generous bound; nothing here asserts timing.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# t/ holds the helper modules (PROVE_FLAGS in the Makefile is reset by PGXS)
use FindBin;
use lib $FindBin::RealBin;

use EtcdServer;
use LeaderElectionTest;

my $prefix = '/leader_election/t023';
my $ttl    = 2;
my $grace  = le_grace($ttl);

my $etcd = EtcdServer->new('etcd');
$etcd->start;

my ($n1, $n2, $n3) = le_replicated_cluster(
	$etcd,
	n          => 3,
	prefix     => $prefix,
	lease_ttl  => $ttl,
	extra_conf => "leader_election.max_lag_on_failover = '64kB'");
my @nodes = ($n1, $n2, $n3);
my $rw    = le_rw_connstr(@nodes);
my $sysid = le_system_identifier($n1);

is(le_candidate_names($n1), 'n1,n2,n3', 'queue: n1, n2, n3');
ok( le_wait_cluster_record($etcd, $prefix,
		system_identifier => $sysid, timeline => 1, node => 'n1'),
	'the cluster record names n1 on timeline 1');
is($n2->safe_psql('postgres', 'SHOW leader_election.max_lag_on_failover'),
	'64kB', 'max_lag_on_failover is 64kB');

$n1->safe_psql('postgres',
	'CREATE TABLE t (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, pad text)');

# Writes about $mb MB of WAL on $node and returns its insert LSN.
sub write_mb
{
	my ($node, $mb) = @_;
	$node->safe_psql('postgres',
		"INSERT INTO t (pad) SELECT repeat('x', 1000) "
		  . "FROM generate_series(1, $mb * 1000)");
	return $node->lsn('insert');
}

# Stops (primary_conninfo = '') or restarts (ALTER SYSTEM RESET: the node's
# own line in postgresql.conf again) the WAL receiver of a standby.
sub set_receiver
{
	my ($node, $on) = @_;
	le_bypass_psql($node,
		$on
		? 'ALTER SYSTEM RESET primary_conninfo'
		: "ALTER SYSTEM SET primary_conninfo = ''");
	$node->reload;
	return;
}

#
# n3's stream stalls (its WAL receiver frozen with SIGSTOP: it still shows as
# streaming, as when the network drops packets unnoticed): the leader
# records how far it has flushed, so n3 sees its lag and leaves the queue;
# it rejoins at the tail once its receiver runs again and it has caught up.
#
my $walrcv = $n3->safe_psql('postgres', 'SELECT pid FROM pg_stat_wal_receiver');
like($walrcv, qr/^\d+$/, 'n3 has a WAL receiver');
kill 'STOP', $walrcv;
write_mb($n1, 2);
$n1->wait_for_catchup($n2, 'flush');
ok( $n3->poll_query_until(
		'postgres',
		"SELECT eligible, queue_position IS NULL, "
		  . "ineligible_reason ~ '^lag .+ > max_lag_on_failover 64 kB\$' "
		  . 'FROM leader_status()',
		'f|t|t'),
	'n3 (stream stalled, 2 MB behind) is not eligible, not queued: lag > 64 kB');
my $s3 = le_status($n3);
note "n3: ineligible_reason: " . ($s3->{ineligible_reason} // '(null)')
  . ", wal_lag_bytes: " . ($s3->{wal_lag_bytes} // '(null)');
cmp_ok($s3->{wal_lag_bytes} // 0, '>', 64 * 1024, 'n3: wal_lag_bytes > 64 kB');
is($n3->safe_psql('postgres', 'SELECT status FROM pg_stat_wal_receiver'),
	'streaming', "n3's frozen WAL receiver still shows as streaming");
is(le_candidate_names($n1), 'n1,n2', 'queue: n1, n2');
kill 'CONT', $walrcv;
$n1->wait_for_catchup($n3, 'flush');
ok( $n3->poll_query_until(
		'postgres',
		'SELECT queue_position, eligible FROM leader_status()', '2|t'),
	'n3 caught up: rejoins the queue at the tail (2)');
is(le_candidate_names($n1), 'n1,n2,n3', 'queue: n1, n2, n3');

#
# n3 stops receiving WAL and falls behind
#
set_receiver($n3, 0);
ok( $n3->poll_query_until(
		'postgres', 'SELECT count(*) FROM pg_stat_wal_receiver', '0'),
	'n3 has no WAL receiver');
write_mb($n1, 4);
$n1->wait_for_catchup($n2, 'flush');
ok( $n3->poll_query_until(
		'postgres',
		"SELECT eligible, queue_position IS NULL, "
		  . "ineligible_reason ~ 'lag|not streaming' FROM leader_status()",
		'f|t|t'),
	'n3 (not receiving, 4 MB behind) is not eligible, not queued, says why');
$s3 = le_status($n3);
note "n3: ineligible_reason: " . ($s3->{ineligible_reason} // '(null)');
is($s3->{role},        'follower', 'n3: role follower');
is($s3->{in_recovery}, 't',        'n3: in recovery');
is(le_candidate_names($n1), 'n1,n2', 'queue: n1, n2');
my $s2 = le_status($n2);
is($s2->{eligible},       't', 'n2 (streaming, caught up) is eligible');
is($s2->{queue_position}, '1', 'n2 is queued at 1');
cmp_ok($s2->{wal_lag_bytes}, '<=', 64 * 1024,
	'n2: wal_lag_bytes within max_lag_on_failover');

#
# Crash of n1: the caught-up n2 leads, the lagging n3 never promotes
#
my $rows_before = $n1->safe_psql('postgres', 'SELECT count(*) FROM t');
$n1->stop('immediate');
ok( le_rw_until(
		$n2, $rw,
		"INSERT INTO t (pad) VALUES (current_setting('leader_election.node_name')) "
		  . 'RETURNING pad',
		'n2'),
	'the caught-up n2 takes a write after the crash of n1');
is( $n2->safe_psql('postgres', 'SELECT in_recovery, timeline FROM leader_status()'),
	'f|2', 'n2 promoted to timeline 2');
is($n2->safe_psql('postgres', 'SELECT count(*) FROM t'),
	$rows_before + 1, "n2 has the $rows_before rows of n1 and the new one");
is( le_holds(
		$grace,
		sub {
			my $r = $n3->safe_psql('postgres',
				'SELECT pg_is_in_recovery(), leader_is_primary(), '
				  . 'coalesce(queue_position::text, \'-\') FROM leader_status()');
			return $r eq 't|f|-' ? '' : "n3: in recovery|leads|queue = $r";
		}),
	'',
	'n3 stays a standby outside the queue');
ok( le_wait_cluster_record($etcd, $prefix,
		system_identifier => $sysid, timeline => 2, node => 'n2'),
	'the cluster record names n2 on timeline 2');

#
# n3 streams again: it follows timeline 2 and stands again
#
set_receiver($n3, 1);
ok( $n3->poll_query_until(
		'postgres',
		"SELECT status, received_tli FROM pg_stat_wal_receiver",
		'streaming|2'),
	'n3 streams timeline 2 again');
ok( $n3->poll_query_until(
		'postgres',
		'SELECT role, leader_name, queue_position, eligible FROM leader_status()',
		'follower|n2|1|t'),
	'n3 caught up: eligible and queued at 1 behind n2');

#
# n3 stops receiving again; n2 crashes: nobody is caught up, nobody promotes
#
set_receiver($n3, 0);
ok( $n3->poll_query_until(
		'postgres', 'SELECT count(*) FROM pg_stat_wal_receiver', '0'),
	'n3 has no WAL receiver again');
write_mb($n2, 4);
ok( $n3->poll_query_until(
		'postgres',
		"SELECT eligible, queue_position IS NULL, "
		  . "ineligible_reason ~ 'lag|not streaming' FROM leader_status()",
		'f|t|t'),
	'n3 leaves the queue: not eligible, says why');
is(le_candidate_names($n2), 'n2', 'queue: n2 alone');
$n2->stop('immediate');

my $last = '';
is( le_holds(
		3 * $grace,
		sub {
			my $r = $n3->safe_psql('postgres',
				'SELECT pg_is_in_recovery(), leader_is_primary(), eligible, '
				  . 'ineligible_reason IS NOT NULL FROM leader_status()');
			$last = $r;
			return $r eq 't|f|f|t' ? '' : "n3: in recovery|leads|eligible|reason = $r";
		}),
	'',
	'with no caught-up standby nobody promotes for three grace periods');
$s3 = le_status($n3);
note "n3 after the crash of n2: role $s3->{role}, phase $s3->{phase}, reason "
  . ($s3->{ineligible_reason} // '(null)');
like($s3->{ineligible_reason} // '', qr/lag|not streaming|no leader/,
	'n3 says why it does not stand');
is($n3->safe_psql('postgres', 'SELECT pg_is_in_recovery()'),
	't', 'n3 is still in recovery');
my ($rc) = le_psql_connstr($n3, $rw, 'SELECT 1');
isnt($rc, 0, 'no node accepts a read-write connection');

$n3->stop;
$etcd->stop;

done_testing();
