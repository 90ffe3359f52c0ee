# Which primaries may campaign (issue 10, tests 6 and 7), lease_ttl = 2:
#  - independent primaries (separate initdb, no standbys, wal_level =
#    replica) on prefix t026i work as before: a leader, a follower, failover
#    on a crash of the leader, the crashed node rejoins as a follower; no
#    <prefix>.cluster key is ever written (only the term, <prefix>.term);
#  - two clusters on prefix t026: cluster A (primary a1, standbys a2, a3)
#    writes its record; then B's primary b1 (a separate initdb, so another
#    system identifier) never campaigns: not eligible, "system identifier
#    ... is not the cluster's", not in the queue, never leading, not while a1
#    is crashed and a2 took over, nor with all of cluster A stopped;
#  - a3 streams from a1 only (primary_conninfo without
#    target_session_attrs): once a1 is back as a deposed primary, a3 streams
#    timeline 1 from it and does not stand ("streaming timeline 1 is behind
#    the cluster's timeline 2"), nor promote when a2 stops.
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

my $ttl   = 2;
my $grace = le_grace($ttl);

my $etcd = EtcdServer->new('etcd');
$etcd->start;

# No key named <prefix>.cluster (nor anything else beside <prefix>/..., the
# leadership term <prefix>.term and the leader key <prefix>.leader).
sub no_record
{
	my ($prefix) = @_;
	my $out = $etcd->etcdctl('get', '--prefix', $prefix, '--keys-only');
	my @other = grep {
		$_ ne '' && !m{^\Q$prefix\E/} && $_ ne "$prefix.term" && $_ ne "$prefix.leader"
	} split /\n/, $out;
	return join(',', @other);
}

#
# Test 7: independent primaries, as before
#
my $iprefix = '/leader_election/t026i';
my %iconf = (
	prefix     => $iprefix,
	lease_ttl  => $ttl,
	extra_conf => "wal_level = replica\nmax_wal_senders = 4");
my ($i1, $i2) = map { le_node($_, $etcd, %iconf) } qw(i1 i2);
my $ilead = le_wait_one_leader(60, $i1, $i2);
ok($ilead, 'one of two independent primaries leads');
die 'no leader among independent primaries' unless $ilead;
my ($ifoll) = grep { $_ != $ilead } ($i1, $i2);
ok( $ifoll->poll_query_until(
		'postgres',
		'SELECT role, queue_position, eligible, in_recovery FROM leader_status()',
		'follower|1|t|f'),
	$ifoll->name . ' follows at 1, eligible, a primary');
my $s = le_status($ilead);
is($s->{role},              'leader', $ilead->name . ': role leader');
is($s->{in_recovery},       'f',      $ilead->name . ': not in recovery');
is($s->{timeline},          '1',      $ilead->name . ': timeline 1');
is($s->{wal_lag_bytes},     undef,    $ilead->name . ': wal_lag_bytes NULL');
is($s->{eligible},          't',      $ilead->name . ': eligible');
is($s->{ineligible_reason}, undef,    $ilead->name . ': no ineligible_reason');
isnt(le_system_identifier($i1), le_system_identifier($i2),
	'the two have different system identifiers');
le_bypass_psql($_, 'CREATE TABLE t (id int)') foreach ($i1, $i2);
is($ilead->safe_psql('postgres', 'INSERT INTO t VALUES (1) RETURNING id'),
	'1', 'the leader takes a write');
le_refused($ifoll, 'INSERT INTO t VALUES (1)', 'INSERT on the follower');
is(no_record($iprefix), '', 'no cluster record for independent primaries');

$ilead->stop('immediate');
ok(le_wait_leader($ifoll), $ifoll->name . ' leads after the crash of '
	  . $ilead->name);
is($ifoll->safe_psql('postgres', 'INSERT INTO t VALUES (2) RETURNING id'),
	'2', '... and takes a write');
$ilead->start;
ok( $ilead->poll_query_until(
		'postgres',
		'SELECT role, queue_position, eligible FROM leader_status()',
		'follower|1|t'),
	'the restarted ' . $ilead->name . ' follows at 1 and is eligible');
is(no_record($iprefix), '', 'still no cluster record');
$_->stop foreach ($i1, $i2);

#
# Test 6: two clusters on one prefix
#
my $prefix = '/leader_election/t026';
my ($a1, $a2, $a3) = le_replicated_cluster(
	$etcd,
	names     => [qw(a1 a2 a3)],
	prefix    => $prefix,
	lease_ttl => $ttl);
my $sysid_a = le_system_identifier($a1);
my $rec = le_wait_cluster_record($etcd, $prefix,
	system_identifier => $sysid_a, timeline => 1, node => 'a1');
ok($rec, 'cluster A recorded itself: a1, timeline 1');

# a3 streams from a1 only, whatever a1 is (no target_session_attrs)
le_bypass_psql($a3,
	    "ALTER SYSTEM SET primary_conninfo = 'host="
	  . $a1->host
	  . ' port='
	  . $a1->port
	  . " application_name=a3'");
$a3->reload;
ok( $a1->poll_query_until(
		'postgres',
		"SELECT count(*) FROM pg_stat_replication "
		  . "WHERE application_name = 'a3' AND state = 'streaming'",
		'1'),
	'a3 streams from a1 (primary_conninfo naming a1 only)');

my $b1 = le_node('b1', $etcd, prefix => $prefix, lease_ttl => $ttl,
	extra_conf => "wal_level = replica\nmax_wal_senders = 4");
my $sysid_b = le_system_identifier($b1);
isnt($sysid_b, $sysid_a, 'b1 has another system identifier');
ok( $b1->poll_query_until(
		'postgres',
		'SELECT eligible, queue_position IS NULL, in_recovery, '
		  . "ineligible_reason ~ 'system identifier $sysid_b is not the cluster''s $sysid_a' "
		  . 'FROM leader_status()',
		'f|t|f|t'),
	"b1: not eligible, not queued, reason: system identifier $sysid_b is not the cluster's");
note 'b1: ineligible_reason: ' . (le_status($b1)->{ineligible_reason} // '(null)');
ok($b1->log_contains(qr/system identifier $sysid_b is not the cluster's $sysid_a/),
	'b1 logs why it does not campaign');

# b1 is never in the queue and never leads
my $b1_never = sub {
	my $r = $b1->safe_psql('postgres',
		'SELECT leader_is_primary(), eligible FROM leader_status()');
	return "b1: leads|eligible = $r" if $r ne 'f|f';
	my @vals = map { $_->{value} } $etcd->get_prefix($prefix);
	return "b1 is in the queue: @vals" if grep { $_ eq 'b1' } @vals;
	return '';
};
le_bypass_psql($b1, 'CREATE TABLE t (id int)');
le_refused($b1, 'INSERT INTO t VALUES (1)', 'INSERT on b1');

$a1->stop('immediate');
ok(le_wait_leader($a2), 'a2 (cluster A) leads after the crash of a1');
ok( le_wait_cluster_record($etcd, $prefix,
		system_identifier => $sysid_a, timeline => 2, node => 'a2'),
	'the cluster record names a2 on timeline 2');
is(le_holds($grace, $b1_never), '', 'b1 never campaigns while a1 is down');
is($a3->safe_psql('postgres', 'SELECT pg_is_in_recovery()'),
	't', 'a3 (queued behind a2, but not streaming) did not promote');

# a1 comes back, deposed; a3 streams timeline 1 from it: a3 must not stand
$a1->start;
ok( $a1->poll_query_until(
		'postgres',
		"SELECT eligible, ineligible_reason ~ 'timeline 1 is behind' FROM leader_status()",
		'f|t'),
	'a1 restarted: deposed, not eligible');
ok( $a3->poll_query_until(
		'postgres',
		"SELECT status, received_tli FROM pg_stat_wal_receiver",
		'streaming|1'),
	'a3 streams timeline 1 from the deposed a1');
ok( $a3->poll_query_until(
		'postgres',
		'SELECT eligible, queue_position IS NULL, '
		  . "ineligible_reason ~ 'streaming timeline 1 is behind the cluster''s timeline 2' "
		  . 'FROM leader_status()',
		'f|t|t'),
	'a3: not eligible, not queued, reason: streaming timeline 1 is behind 2');
note 'a3: ineligible_reason: ' . (le_status($a3)->{ineligible_reason} // '(null)');
is(le_candidate_names($a2), 'a2', 'queue: a2 alone');

$a2->stop('fast');
is( le_holds(
		$grace,
		sub {
			my $r = $a3->safe_psql('postgres',
				'SELECT pg_is_in_recovery(), leader_is_primary()');
			return $r eq 't|f' ? '' : "a3: in recovery|leads = $r";
		}),
	'',
	'a2 stopped: a3, streaming the old timeline, does not promote');
$a3->stop('fast');
$a1->stop('fast');
is(le_holds(3 * $grace, $b1_never), '',
	'b1 never campaigns with all of cluster A stopped');
is(le_candidate_names($b1), '', 'the queue is empty');
$rec = le_cluster_record($etcd, $prefix);
is($rec && $rec->{system_identifier}, $sysid_a,
	"the record still holds cluster A's system identifier");

$b1->stop;
$etcd->stop;

done_testing();
