# Attack on issue 16 (synchronous_mode = on), claim "a cluster whose primary
# crashed and whose recorded member is alive gets a leader again" (README,
# Synchronous mode: "A recorded synchronous standby stands even without a
# stream, as long as the record names it (it has every acknowledged commit
# however long ago its stream ended").
#
# The member has every *acknowledged* commit, but not necessarily all WAL
# the primary recorded as flushed: a long transaction (a bulk load, an index
# build) writes WAL that no commit waits for, and the leader records that
# WAL's end (wal_end) as it goes.  n1 primary, n2 its synchronous standby
# streaming through a TcpProxy; some rows committed (acknowledged, so on
# n2); then n2's link stalls (less than wal_sender_timeout: n2 stays in the
# set, commits would wait for it) while an uncommitted transaction on n1
# writes ~8 MB of WAL; n1 crashes (-m immediate).  n2 has every acknowledged
# commit, so it should take over.  It does not if the lag rule
# (max_lag_on_failover against the record's wal_end) still applies to a
# recorded member: then the cluster has no leader until n1 comes back.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep time);

use FindBin;
use lib $FindBin::RealBin;

use EtcdServer;
use TcpProxy;
use LeaderElectionTest;

my $prefix = '/leader_election/t094';
# a longer TTL: a standby reads the record every TTL/3, the window below
my $ttl    = 6;

my $etcd = EtcdServer->new('etcd');
$etcd->start;

my ($n1, $n2) = le_replicated_cluster($etcd, n => 2, prefix => $prefix,
	lease_ttl => $ttl,
	extra_conf => "leader_election.synchronous_mode = on\n"
	  . "listen_addresses = '127.0.0.1'\n"
	  . "wal_sender_timeout = 120s\n");

$n1->safe_psql('postgres',
	'CREATE TABLE t (id bigint PRIMARY KEY, pad text)');
my ($proxy, $streams) = le_stream_via_proxy($n1, $n2);
ok($streams, 'n2 streams from n1 through the proxy');
ok($n1->poll_query_until('postgres',
	"SELECT array_to_string(synchronous_standbys, ',') FROM leader_status()", 'n2'),
	'n1 records n2 as its synchronous standby');

# 100 acknowledged single-row commits (each waited for n2)
my $acked = 0;
for my $id (1 .. 100)
{
	my ($rc) = le_psql_connstr($n1, le_rw_connstr($n1),
		"INSERT INTO t VALUES ($id, 'acked')");
	$acked++ if $rc == 0;
}
is($acked, 100, '100 commits acknowledged on n1');

# n2's link stalls; a transaction that never commits writes WAL, which the
# leader records as flushed (wal_end) as it moves
$proxy->freeze;
my $bulk = IPC::Run::start(
	[ 'psql', '-X', '-d', $n1->connstr('postgres'), '-c',
		"BEGIN; INSERT INTO t SELECT g, repeat('x', 500) FROM generate_series(1000, 40000) g; "
		  . "SELECT pg_sleep(600);" ],
	'>', \my $bulk_out, '2>', \my $bulk_err);
# what n2 has flushed: its link is stalled, it gets no more
usleep(500_000);
my $n2_flush = $n1->safe_psql('postgres',
	"SELECT flush_lsn FROM pg_stat_replication WHERE application_name = 'n2'");
# crash n1 as soon as the record shows > 1.1 MB that n2 lacks while it still
# names n2 (n2 leaves the queue at its next read, and the leader then drops
# it from the set: the window is a read interval)
my ($rec, $lag) = (undef, 0);
my $deadline = time() + 60;
while (time() < $deadline)
{
	$rec = le_cluster_record($etcd, $prefix);
	$lag = $n1->safe_psql('postgres',
		"SELECT pg_wal_lsn_diff('$rec->{wal_end}', '$n2_flush')");
	last if $lag > 1.1 * 1024 * 1024 && join(',', @{ $rec->{synchronous} || [] }) eq 'n2';
	usleep(20_000);
}
$n1->stop('immediate');
my $rec_after = le_cluster_record($etcd, $prefix);
note "record just before the crash: $rec->{_raw}; n2 flushed $n2_flush, $lag bytes behind its wal_end";
note "record after the crash: $rec_after->{_raw}";
ok($lag > 1.1 * 1024 * 1024, 'the record shows WAL n2 lacks (no commit waited for it)');
is(join(',', @{ $rec_after->{synchronous} || [] }), 'n2',
	'n2 is the recorded member when n1 crashed');

$proxy->stop;
$bulk->kill_kill;

# n2 has every acknowledged commit: it should take over
my $took = le_time_until(30, sub {
		$n2->safe_psql('postgres', 'SELECT pg_is_in_recovery()') eq 'f' });
note 'n2 after the crash: ' . $n2->safe_psql('postgres',
	'SELECT phase, eligible, ineligible_reason, succession, automatic_failover FROM leader_status()');
ok(defined $took,
	'n2, the recorded synchronous standby, takes over after the crash (it has every acknowledged commit)')
  or diag 'HOLE: the only recorded member does not stand: the cluster has no leader until n1 is back';
if (defined $took)
{
	note sprintf('n2 promoted %.1f s after the crash', $took);
	is($n2->safe_psql('postgres', "SELECT count(*) FROM t WHERE pad = 'acked'"),
		'100', 'n2 has every acknowledged row');
}
done_testing();
