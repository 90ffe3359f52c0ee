
# Configuration reload (SIGHUP): changing leader_election.prefix, node_name
# or lease_ttl makes the node leave its election and rejoin with the new
# setting (at the tail of the queue). Leaving deletes the key and revokes the
# lease: the next in line is seen leading before the leaver's lease could have
# expired (by etcd's countdown, read just before the reload).

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

my $prefix_a = '/leader_election/t004a';
my $prefix_b = '/leader_election/t004b';

my $etcd = EtcdServer->new('etcd');
$etcd->start;

my $n1 = le_node('node1', $etcd, prefix => $prefix_a);
ok(le_wait_leader($n1), 'node1 leads election A');
my $n2 = le_node('node2', $etcd, prefix => $prefix_a);
ok( $n2->poll_query_until(
		'postgres', 'SELECT role, queue_position FROM leader_status()',
		'follower|1'),
	'node2 follows in election A');

sub set_and_reload
{
	my ($node, $guc, $value) = @_;
	# ALTER SYSTEM writes a file: on a follower only with the bypass
	le_bypass_psql($node,
		defined $value
		? "ALTER SYSTEM SET leader_election.$guc = '$value'"
		: "ALTER SYSTEM RESET leader_election.$guc");
	$node->reload;
	return;
}

#
# prefix: the leader moves to election B
#
my $expiry = le_lease_expiry($etcd, le_status($n1)->{lease_id});
set_and_reload($n1, 'prefix', $prefix_b);
ok($n1->poll_query_until('postgres', 'SHOW leader_election.prefix', $prefix_b),
	'new prefix is in effect on node1');
ok(le_wait_leader($n2), 'node2 leads A once node1 left it');
cmp_ok(time(), '<', $expiry, '... before node1\'s lease could have expired');
ok( $n1->poll_query_until(
		'postgres',
		'SELECT role, queue_position, leader_name FROM leader_status()',
		'leader|0|node1'),
	'node1 leads election B alone');
is(le_candidate_names($n1), 'node1', 'node1 sees only itself in B');
is(join(',', map { $_->{value} } $etcd->get_prefix($prefix_a)),
	'node2', 'election A holds only node2');
my @b = $etcd->get_prefix($prefix_b);
is(scalar(@b), 1, 'election B holds one key');
is($b[0]{key}, sprintf('%s/%x', $prefix_b, le_status($n1)->{lease_id}),
	'... node1\'s key under the new prefix');
my ($lkey, $lval) = $etcd->elect_leader($prefix_b);
is($lval, 'node1', 'etcdctl elect -l on B names node1');

#
# back to prefix A: node1 joins A at the tail
#
set_and_reload($n1, 'prefix', undef);
ok( $n1->poll_query_until(
		'postgres',
		'SELECT role, queue_position, leader_name FROM leader_status()',
		'follower|1|node2'),
	'node1 rejoins election A at the tail');
is(scalar($etcd->get_prefix($prefix_b)), 0, 'election B is empty');
is(le_candidate_names($n2), 'node2,node1', 'queue A: node2, node1');

#
# node_name of the leader: it leaves (node1 takes over) and rejoins renamed
#
my $old_lease = le_status($n2)->{lease_id};
$expiry = le_lease_expiry($etcd, $old_lease);
set_and_reload($n2, 'node_name', 'node2-renamed');
ok(le_wait_leader($n1), 'node1 leads once node2 left to rename');
cmp_ok(time(), '<', $expiry, '... before node2\'s lease could have expired');
ok( $n2->poll_query_until(
		'postgres',
		'SELECT role, node_name, queue_position, leader_name FROM leader_status()',
		'follower|node2-renamed|1|node1'),
	'node2 rejoined at the tail under its new name');
isnt(le_status($n2)->{lease_id}, $old_lease, 'with a new lease');
is(le_candidate_names($n1), 'node1,node2-renamed', 'queue A: node1, node2-renamed');
is(join(',', map { $_->{value} } $etcd->get_prefix($prefix_a)),
	'node1,node2-renamed', 'etcd values carry the new name');

#
# lease_ttl of the follower: new lease with the new TTL
#
$old_lease = le_status($n2)->{lease_id};
set_and_reload($n2, 'lease_ttl', '5');
ok( $n2->poll_query_until(
		'postgres',
		'SELECT role, queue_position, lease_ttl, lease_id <> '
		  . $old_lease
		  . ' FROM leader_status()',
		'follower|1|5|t'),
	'node2 rejoined with a new 5 s lease');
my $ttl_out = $etcd->etcdctl('lease', 'timetolive',
	sprintf('%x', le_status($n2)->{lease_id}));
like($ttl_out, qr/granted with TTL\(5s\)/, 'etcd granted the lease with TTL 5');
is(le_status($n1)->{role}, 'leader', 'node1 still leads');

#
# a reload that changes none of these settings keeps the place in the queue
#
my $lease1 = le_status($n1)->{lease_id};
set_and_reload($n1, 'request_timeout', '2000');
ok( $n1->poll_query_until(
		'postgres',
		"SELECT current_setting('leader_election.request_timeout') "
		  . "IN ('2000', '2000ms', '2s')"),
	'request_timeout changed');
my $s1 = le_status($n1);
is($s1->{role},     'leader', 'node1 still leads after an unrelated reload');
is($s1->{lease_id}, $lease1,  '... with the same lease');

$n1->stop;
$n2->stop;
$etcd->stop;

done_testing();
