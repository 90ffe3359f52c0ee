# Attack (issue 10): a standby whose replication connection stalls (the
# network drops its packets; TCP does not notice until wal_receiver_timeout)
# while the primary goes on committing.
#
# Contract: a standby stands only while its WAL is within
# max_lag_on_failover (1MB) of what the leader has sent; a crash failover
# loses at most about max_lag_on_failover of acknowledged commits.
#
# n1 primary, n2 and n3 standbys, lease_ttl = 2.  n2 streams from n1
# through a TCP proxy (its own primary_conninfo); n2 is first in line.
# The proxy is frozen (SIGSTOP: connection open, nothing forwarded) and n1
# commits about 4 MB of rows.  n1's pg_stat_replication shows n2 far
# behind; the attack asserts that n2 stops standing (not eligible, not
# queued) and that after n1 crashes every acknowledged row is on the new
# primary.
#
# Further parts, each with its own cluster on its own prefix:
#  B. a planned switchover whose successor leaves the queue while the
#     primary waits for it: every commit acknowledged before
#     leader_resign() must be on the new leader;
#  C. a clean stop (-m fast) of a primary whose next in line lost its
#     stream a moment ago (still queued, grace period): the next in line
#     must not lead without the acknowledged commits;
#  D. independent primaries with a WAL archiver (pg_receivewal) attached
#     to the leader: no cluster record, the other primary takes over.
#
# Every wait is a poll with a generous bound.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use IPC::Run;

use FindBin;
use lib $FindBin::RealBin;

use EtcdServer;
use LeaderElectionTest;
use TcpProxy;

my $prefix = '/leader_election/t031';

# poll_query_until with a bound of our own
sub poll_for
{
	my ($node, $seconds, $sql, $want) = @_;
	my $deadline = time() + $seconds;
	while (1)
	{
		my $got = $node->safe_psql('postgres', $sql);
		return 1 if $got eq $want;
		return 0 if time() > $deadline;
		usleep(250_000);
	}
}

my $etcd = EtcdServer->new('etcd');
$etcd->start;

# every node also listens on TCP (the proxy connects there); initdb -A trust
# lets 127.0.0.1 in, for replication too
my ($n1, $n2, $n3) = le_replicated_cluster(
	$etcd,
	n          => 3,
	prefix     => $prefix,
	lease_ttl  => 2,
	extra_conf => "listen_addresses = '127.0.0.1'");
my $sysid = le_system_identifier($n1);
ok( le_wait_cluster_record($etcd, $prefix,
		system_identifier => $sysid, timeline => 1, node => 'n1'),
	'the cluster record names n1 on timeline 1');

# n2 streams from n1 through a proxy (a reload restarts its WAL receiver)
my ($proxy, $streams) = le_stream_via_proxy($n1, $n2);
ok($streams, 'n2 streams from n1 through the proxy');

# n2 must be first in line: if it lost its place while its receiver
# restarted, let n3 go to the tail
ok($n2->poll_query_until('postgres',
		'SELECT queue_position IS NOT NULL FROM leader_status()', 't'),
	'n2 is queued');
if (le_candidate_names($n1) ne 'n1,n2,n3')
{
	note 'queue is ' . le_candidate_names($n1) . ': n3 rejoins at the tail';
	$n3->append_conf('postgresql.conf', "leader_election.candidate = off\n");
	$n3->safe_psql('postgres', 'SELECT pg_reload_conf()');
	$n3->poll_query_until('postgres',
		'SELECT queue_position IS NULL FROM leader_status()', 't');
	$n3->append_conf('postgresql.conf', "leader_election.candidate = on\n");
	$n3->safe_psql('postgres', 'SELECT pg_reload_conf()');
}
my $deadline = time() + 60;
usleep(200_000) while le_candidate_names($n1) ne 'n1,n2,n3' && time() < $deadline;
is(le_candidate_names($n1), 'n1,n2,n3', 'queue: n1, n2 (through the proxy), n3');

$n1->safe_psql('postgres', 'CREATE TABLE t (id int PRIMARY KEY, pad text)');
$n1->wait_for_catchup($_, 'flush') foreach ($n2, $n3);

# the network between n2 and n1 stalls
$proxy->freeze;

# about 4 MB of WAL in 40 acknowledged commits (4 x max_lag_on_failover)
my $acked = 0;
for my $c (0 .. 39)
{
	my $from = $c * 100 + 1;
	my $to   = $from + 99;
	$n1->safe_psql('postgres',
		"INSERT INTO t SELECT g, repeat(md5(g::text), 30) FROM generate_series($from, $to) g");
	$acked = $to;
}
$n1->wait_for_catchup($n3, 'flush');
my $behind = $n1->safe_psql('postgres',
	"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), flush_lsn) FROM pg_stat_replication "
	  . "WHERE application_name = 'n2'");
note "n1: n2 has flushed $behind bytes less than n1 has written";
cmp_ok($behind, '>', 2 * 1024 * 1024,
	'n1 sees n2 more than 2 MB behind (max_lag_on_failover is 1 MB)');

# the contract: n2 no longer stands
# (bounded well below wal_receiver_timeout, 60 s, after which the WAL
# receiver gives up and the grace period would hide the bug)
my $stands = poll_for($n2, 15,
	'SELECT eligible AND queue_position IS NOT NULL FROM leader_status()', 'f');
my $n2_status = $n2->safe_psql('postgres',
	'SELECT role, queue_position, eligible, wal_lag_bytes, ineligible_reason, phase FROM leader_status()');
note "n2 leader_status: $n2_status";
note 'n2 pg_stat_wal_receiver: '
  . $n2->safe_psql('postgres',
	'SELECT status, flushed_lsn, latest_end_lsn, last_msg_receipt_time FROM pg_stat_wal_receiver');
ok($stands,
	'a standby more than max_lag_on_failover behind the primary does not stand (its stream stalled)');

# the primary crashes; the first in line takes over
$n1->stop('immediate');
my $leader = le_wait_one_leader(60, $n2, $n3);
ok($leader, 'a standby takes over');
if ($leader)
{
	note 'new leader: ' . $leader->name;
	my $rows = $leader->safe_psql('postgres', 'SELECT count(*) FROM t');
	note "rows on the new leader: $rows of $acked acknowledged";
	cmp_ok($acked - $rows, '<=', 100 * 10,
		'a crash failover loses at most about max_lag_on_failover of acknowledged commits');
	is($rows, $acked, 'every acknowledged row is on the new primary (n3 had them all)');
}

$proxy->thaw;
$proxy->stop;
$_->stop('immediate') foreach grep { $_->{_pid} } ($n2, $n3);

#
# B. Planned switchover to a successor that leaves the queue while the
# primary waits for it.  m1 primary, m2 and m3 standbys streaming through
# proxies p2, p3.  Both stall; m1 commits 300 rows (about 330 kB, less
# than max_lag_on_failover, so m3 may stand by any reading of the
# contract); leader_resign() on m1 (switchover_timeout 30s) waits for m2,
# the next in line.  m2 then leaves the queue (candidate = off) and its
# proxy thaws: m2 catches up.  The contract: every commit acknowledged
# before leader_resign() returned is on the new primary; m3 is now next in
# line and has not got them, so the handover must wait for m3 (and fail
# after the timeout) rather than hand over to whoever is next.
#
my $bprefix = '/leader_election/t031b';
my ($m1, $m2, $m3) = le_replicated_cluster(
	$etcd,
	names      => [qw(m1 m2 m3)],
	prefix     => $bprefix,
	lease_ttl  => 2,
	extra_conf => "listen_addresses = '127.0.0.1'");
my %p;
foreach my $m ($m2, $m3)
{
	my $px = TcpProxy->new(target_port => $m1->port, name => $m->name . '_to_m1');
	$px->start;
	$p{ $m->name } = $px;
	$m->append_conf('postgresql.conf',
		    "primary_conninfo = 'host=127.0.0.1 port="
		  . $px->port
		  . " application_name=" . $m->name . " connect_timeout=2'\n");
	$m->safe_psql('postgres', 'SELECT pg_reload_conf()');
}
ok( $m1->poll_query_until('postgres',
		"SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming' "
		  . "AND client_addr = '127.0.0.1'", '2'),
	'm2 and m3 stream from m1 through proxies');
$deadline = time() + 60;
while (le_candidate_names($m1) ne 'm1,m2,m3' && time() < $deadline)
{
	if (le_candidate_names($m1) eq 'm1,m3,m2')
	{
		# m3 goes to the tail
		$m3->append_conf('postgresql.conf', "leader_election.candidate = off\n");
		$m3->safe_psql('postgres', 'SELECT pg_reload_conf()');
		$m3->poll_query_until('postgres',
			'SELECT queue_position IS NULL FROM leader_status()', 't');
		$m3->append_conf('postgresql.conf', "leader_election.candidate = on\n");
		$m3->safe_psql('postgres', 'SELECT pg_reload_conf()');
	}
	usleep(300_000);
}
is(le_candidate_names($m1), 'm1,m2,m3', 'queue: m1, m2, m3');
$m1->safe_psql('postgres', 'CREATE TABLE t (id int PRIMARY KEY, pad text)');
$m1->wait_for_catchup($_, 'flush') foreach ($m2, $m3);
$m1->safe_psql('postgres',
	"ALTER SYSTEM SET leader_election.switchover_timeout = '30s'; SELECT pg_reload_conf()");
$m1->poll_query_until('postgres', 'SHOW leader_election.switchover_timeout', '30s');

$p{m2}->freeze;
$p{m3}->freeze;
my $backed = 0;
for my $c (0 .. 2)
{
	my $from = $c * 100 + 1;
	my $to   = $from + 99;
	$m1->safe_psql('postgres',
		"INSERT INTO t SELECT g, repeat(md5(g::text), 30) FROM generate_series($from, $to) g");
	$backed = $to;
}
note 'm1 sees: '
  . $m1->safe_psql('postgres',
	'SELECT application_name, pg_wal_lsn_diff(pg_current_wal_lsn(), flush_lsn) FROM pg_stat_replication ORDER BY 1');

my ($rout, $rerr) = ('', '');
my $resign = IPC::Run::start(
	[ 'psql', '-X', '-A', '-t', '-v', 'VERBOSITY=verbose', '-d', $m1->connstr('postgres'),
		'-c', 'SELECT leader_resign()' ],
	'<', \undef, '>', \$rout, '2>', \$rerr, IPC::Run::timeout(90));
ok(poll_for($m1, 20, 'SELECT phase FROM leader_status()', 'handing over'),
	'm1 hands over (waits for m2)');

$m2->append_conf('postgresql.conf', "leader_election.candidate = off\n");
$m2->safe_psql('postgres', 'SELECT pg_reload_conf()');
$deadline = time() + 20;
usleep(100_000) while le_candidate_names($m1) ne 'm1,m3' && time() < $deadline;
is(le_candidate_names($m1), 'm1,m3', 'm2 left the queue: m3 is next in line');
$p{m2}->thaw;

$resign->finish;
chomp $rout;
note "leader_resign() on m1: stdout '$rout', stderr '$rerr'";
my $bleader = le_wait_one_leader(60, $m1, $m2, $m3);
ok($bleader, 'one node leads after the switchover attempt');
if ($bleader)
{
	note 'leader after leader_resign(): ' . $bleader->name;
	my $rows = $bleader->safe_psql('postgres', 'SELECT count(*) FROM t');
	note "rows on it: $rows of $backed acknowledged before leader_resign()";
	is($rows, $backed,
		'every commit acknowledged before leader_resign() is on the leader after it');
}
$p{$_}->thaw foreach keys %p;
$p{$_}->stop foreach keys %p;
$_->stop('immediate') foreach grep { $_->{_pid} } ($m1, $m2, $m3);

#
# C. Clean stop of a primary whose next in line lost its stream a moment
# ago (still queued: the grace period).  k1 primary, k2 standby.  k2's WAL
# receiver stops (primary_conninfo = ''), k1 commits 10 rows, k1 stops
# cleanly (-m fast).  The contract (README, "Data loss"): a clean stop
# records the primary's final WAL position and that it stopped, and only a
# standby with all of it takes over, so k2 must not lead without those
# rows.  (A primary records the cluster once a queued standby has streamed
# from it at one of its refreshes: k2 streams until k1's record names k1.)
#
my ($k1, $k2) = le_replicated_cluster(
	$etcd,
	names     => [qw(k1 k2)],
	prefix    => '/leader_election/t031c',
	lease_ttl => 2);
$k1->safe_psql('postgres', 'CREATE TABLE t (id int PRIMARY KEY)');
$k1->wait_for_catchup($k2, 'flush');
ok(le_wait_cluster_record($etcd, '/leader_election/t031c', node => 'k1'),
	'the cluster record names k1');
$k2->append_conf('postgresql.conf', "primary_conninfo = ''\n");
$k2->safe_psql('postgres', 'SELECT pg_reload_conf()');
ok(poll_for($k1, 30,
	"SELECT count(*) FROM pg_stat_replication WHERE application_name = 'k2'", '0'),
	'k2 no longer streams');
$k1->safe_psql('postgres', "INSERT INTO t VALUES ($_)") foreach 1 .. 10;
my $kqueue = le_candidate_names($k1);
note "queue when k1 stops: $kqueue; k2: "
  . $k2->safe_psql('postgres',
	'SELECT role, queue_position, eligible, wal_lag_bytes, ineligible_reason FROM leader_status()');
$k1->stop('fast');
SKIP:
{
	skip "k2 left the queue before k1 stopped ($kqueue)", 1 unless $kqueue eq 'k1,k2';
	my $bad = le_holds(
		10,
		sub {
			return '' unless le_leaders($k2);
			my $rows = $k2->safe_psql('postgres', 'SELECT count(*) FROM t');
			return $rows == 10 ? '' : "k2 leads with $rows of 10 acknowledged rows";
		});
	is($bad, '', 'a clean stop of the primary loses no acknowledged commit');
}
$_->stop('immediate') foreach grep { $_->{_pid} } ($k1, $k2);

#
# D. Independent primaries (no replication between them; the case that
# must work as before): i1 leads, i2 queued.  A WAL archiver
# (pg_receivewal, as Barman's streaming archiver runs it) connects to i1:
# a physical walsender, which the leader takes for a standby.  The
# contract: independent primaries never write the cluster record, and i2
# takes over when i1 resigns.
#
# (a PostgreSQL::Test::Cluster without allows_streaming has wal_level minimal)
my $iconf = "wal_level = replica\nmax_wal_senders = 4\n";
my $i1 = le_node('i1', $etcd, prefix => '/leader_election/t031d', lease_ttl => 2,
	extra_conf => $iconf);
ok(le_wait_leader($i1), 'i1 leads');
my $i2 = le_node('i2', $etcd, prefix => '/leader_election/t031d', lease_ttl => 2,
	extra_conf => $iconf);
ok($i2->poll_query_until('postgres', 'SELECT queue_position FROM leader_status()', '1'),
	'i2 is queued behind i1');
my $waldir = PostgreSQL::Test::Utils::tempdir();
my ($wout, $werr) = ('', '');
my $archiver = IPC::Run::start(
	[ 'pg_receivewal', '-D', $waldir, '-d', $i1->connstr('postgres'), '--no-loop', '-n' ],
	'<', \undef, '>', \$wout, '2>', \$werr);
ok(poll_for($i1, 20,
	'SELECT count(*) FROM pg_stat_replication', '1'),
	'pg_receivewal streams from i1')
  or diag "pg_receivewal: $werr";
# i1 refreshes every TTL/3; give it a few
my $rec;
$deadline = time() + 6;
while (time() < $deadline && !($rec = le_cluster_record($etcd, '/leader_election/t031d')))
{
	usleep(200_000);
}
is($rec ? $rec->{_raw} : undef, undef,
	'an independent primary with a WAL archiver attached writes no cluster record');
$archiver->kill_kill;
$i1->safe_psql('postgres', 'SELECT leader_resign()');
my $ileader = le_wait_one_leader(20, $i1, $i2);
is($ileader && $ileader->name, 'i2', 'i1 resigned: the independent primary i2 takes over')
  or diag 'i2: '
  . $i2->safe_psql('postgres',
	'SELECT role, phase, eligible, ineligible_reason FROM leader_status()');
$_->stop('immediate') foreach ($i1, $i2);
$etcd->stop;
done_testing();
