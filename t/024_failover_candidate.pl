# leader_election.candidate = off on a standby (issue 10, test 3), lease_ttl
# = 2, primary c1, standbys c2 (candidate = off, an observer) and c3:
#  - c2 streams, shows the election, but is never queued and says why;
#  - candidate turned off and on again by reload on the queued c3: it leaves
#    the queue at once and rejoins;
#  - crash of c1: c3 promotes; c2 follows timeline 2, still outside the queue;
#  - crash of c3: c2, the only survivor, never promotes (three grace
#    periods), and neither does it once candidate is back on (a standby with
#    no leader to stream from never joins an empty queue);
#  - promoted by hand (pg_ctl promote) to timeline 3, c2 still does not
#    campaign (the record names c3 on timeline 2) and stays fenced.
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

my $prefix = '/leader_election/t024';
my $ttl    = 2;
my $grace  = le_grace($ttl);

my $etcd = EtcdServer->new('etcd');
$etcd->start;

my ($c1, $c2, $c3) = le_replicated_cluster(
	$etcd,
	names     => [qw(c1 c2 c3)],
	prefix    => $prefix,
	lease_ttl => $ttl,
	observers => ['c2']);
my $rw    = le_rw_connstr($c1, $c2, $c3);
my $sysid = le_system_identifier($c1);

is($c2->safe_psql('postgres', 'SHOW leader_election.candidate'),
	'off', 'c2: candidate = off');
is($c3->safe_psql('postgres', 'SHOW leader_election.candidate'),
	'on', 'c3: candidate = on (default)');
is(le_candidate_names($c1), 'c1,c3', 'queue: c1, c3 (c2 does not campaign)');

# the observer's view
my $s = le_status($c2);
is($s->{role},           'follower', 'c2: role follower');
is($s->{leader_name},    'c1',       'c2: knows c1 leads');
is($s->{queue_position}, undef,      'c2: not queued');
is($s->{in_recovery},    't',        'c2: in recovery');
is($s->{eligible},       'f',        'c2: not eligible');
like($s->{ineligible_reason} // '', qr/candidate = off/,
	'c2: ineligible_reason says candidate = off');
note "c2: phase $s->{phase}, reason " . ($s->{ineligible_reason} // '(null)');

#
# candidate off/on by reload on a queued standby
#
$c3->append_conf('postgresql.conf', 'leader_election.candidate = off');
$c3->reload;
ok( $c3->poll_query_until(
		'postgres',
		"SELECT queue_position IS NULL, eligible, ineligible_reason ~ 'candidate = off' "
		  . 'FROM leader_status()',
		't|f|t'),
	'c3 set to candidate = off leaves the queue');
is(le_candidate_names($c1), 'c1', 'queue: c1 alone');
$c3->append_conf('postgresql.conf', 'leader_election.candidate = on');
$c3->reload;
ok( $c3->poll_query_until(
		'postgres',
		'SELECT queue_position, eligible FROM leader_status()', '1|t'),
	'c3 set to candidate = on rejoins the queue at 1');

#
# Crash of c1: c3 promotes, the observer follows
#
$c1->safe_psql('postgres', 'CREATE TABLE t (id int GENERATED ALWAYS AS IDENTITY, node text)');
$c1->safe_psql('postgres', "INSERT INTO t (node) SELECT 'c1' FROM generate_series(1, 100)");
$c1->wait_for_catchup($_, 'replay') foreach ($c2, $c3);
$c1->stop('immediate');
ok( le_rw_until(
		$c3, $rw,
		"INSERT INTO t (node) VALUES (current_setting('leader_election.node_name')) "
		  . 'RETURNING node',
		'c3'),
	'c3 takes a write after the crash of c1');
ok( le_wait_cluster_record($etcd, $prefix,
		system_identifier => $sysid, timeline => 2, node => 'c3'),
	'the cluster record names c3 on timeline 2');
is($c2->safe_psql('postgres', 'SELECT pg_is_in_recovery()'),
	't', 'the observer c2 did not promote');
ok( $c2->poll_query_until(
		'postgres',
		"SELECT status, received_tli FROM pg_stat_wal_receiver",
		'streaming|2'),
	'c2 follows timeline 2 (streams from c3)');
ok( $c2->poll_query_until(
		'postgres',
		'SELECT role, leader_name, queue_position IS NULL, eligible '
		  . 'FROM leader_status()',
		'follower|c3|t|f'),
	'c2 knows c3 leads and stays outside the queue');
$c3->wait_for_catchup($c2, 'replay');
is($c2->safe_psql('postgres', 'SELECT count(*) FROM t'),
	'101', 'c2 has every row');

#
# Crash of c3: the observer is the only survivor and never promotes
#
$c3->stop('immediate');
is( le_holds(
		3 * $grace,
		sub {
			my $r = $c2->safe_psql('postgres',
				'SELECT pg_is_in_recovery(), leader_is_primary(), '
				  . "role <> 'promoting', eligible, "
				  . "ineligible_reason ~ 'candidate = off' FROM leader_status()");
			return $r eq 't|f|t|f|t'
			  ? ''
			  : "c2: in recovery|leads|not promoting|eligible|reason = $r";
		}),
	'',
	'c2 (candidate = off), the only survivor, never promotes');
is(le_candidate_names($c2), '', 'the queue is empty');

# candidate back on: still a standby, with no leader to stream from
$c2->append_conf('postgresql.conf', 'leader_election.candidate = on');
$c2->reload;
ok( $c2->poll_query_until(
		'postgres',
		"SELECT ineligible_reason ~ 'no leader to stream from|not streaming' "
		  . 'FROM leader_status()',
		't'),
	'c2 set to candidate = on: not eligible, no leader to stream from');
note 'c2: ineligible_reason: ' . (le_status($c2)->{ineligible_reason} // '(null)');
is( le_holds(
		$grace,
		sub {
			my $r = $c2->safe_psql('postgres',
				'SELECT pg_is_in_recovery(), leader_is_primary(), '
				  . 'queue_position IS NULL FROM leader_status()');
			return $r eq 't|f|t' ? '' : "c2: in recovery|leads|not queued = $r";
		}),
	'',
	'... and it does not join the empty queue nor promote');

#
# An operator promotes the survivor by hand (pg_ctl promote): it is then a
# primary on timeline 3 while the record names c3 on timeline 2, so it still
# does not campaign and stays fenced.
#
$c2->promote;
ok($c2->poll_query_until('postgres', 'SELECT pg_is_in_recovery()', 'f'),
	'c2 promoted by hand');
ok( $c2->poll_query_until(
		'postgres',
		'SELECT in_recovery, timeline, eligible FROM leader_status()',
		'f|3|f'),
	'c2: a primary on timeline 3, not eligible');
note 'c2: ineligible_reason: ' . (le_status($c2)->{ineligible_reason} // '(null)');
like(le_status($c2)->{ineligible_reason} // '', qr/timeline/,
	'c2: ineligible_reason is about the timeline');
is( le_holds(
		$grace,
		sub {
			my $r = $c2->safe_psql('postgres',
				'SELECT leader_is_primary(), queue_position IS NULL FROM leader_status()');
			return $r eq 'f|t' ? '' : "c2: leads|not queued = $r";
		}),
	'',
	'c2 does not campaign');
le_refused($c2, "INSERT INTO t (node) VALUES ('c2')", 'INSERT on c2');
ok( le_wait_cluster_record($etcd, $prefix,
		system_identifier => $sysid, timeline => 2, node => 'c3'),
	'the cluster record still names c3 on timeline 2');

$c2->stop;
$etcd->stop;

done_testing();
