
# Interoperability with etcd's own election recipe, checked with etcdctl:
#  - key layout <prefix>/<lease id in hex>, value = node name, lease attached;
#  - `etcdctl elect -l <prefix>` names the PostgreSQL leader;
#  - an `etcdctl elect <prefix> ext` candidate queues behind the PostgreSQL
#    nodes, shows up in leader_candidates(), leads when they step aside, and
#    hands back when it resigns;
#  - an operator deleting the leader's key (`etcdctl del`): that node stops
#    leading, the next one leads, the old one rejoins at the tail.
# Hand-overs by a released key are seen before the old leader's lease could
# have expired (by etcd's countdown, read just before).

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

my $prefix = '/leader_election/t003';
# lease_ttl is left at its default
my $ttl    = 10;

my $etcd = EtcdServer->new('etcd');
$etcd->start;

my ($n1, $n2) = le_leader_and_follower($etcd, prefix => $prefix);

#
# key layout as etcd stores it
#
my $s1  = le_status($n1);
my $s2  = le_status($n2);
my @kvs = $etcd->get_prefix($prefix);
is(scalar(@kvs), 2, 'two keys under the prefix');
is($kvs[0]{key}, sprintf('%s/%x', $prefix, $s1->{lease_id}),
	'leader key is <prefix>/<lease id in lowercase hex>');
is($kvs[0]{value}, 'node1', 'leader key value is the node name');
is($kvs[0]{lease}, $s1->{lease_id}, 'leader key is attached to its lease');
is($kvs[0]{create_revision}, $s1->{fencing_token},
	'fencing_token is the create revision of the leader key');
is($kvs[1]{key}, sprintf('%s/%x', $prefix, $s2->{lease_id}),
	'follower key is <prefix>/<lease id in lowercase hex>');
is($kvs[1]{value}, 'node2', 'follower key value is the node name');
is($kvs[1]{lease}, $s2->{lease_id}, 'follower key is attached to its lease');

my $ttl_out = $etcd->etcdctl('lease', 'timetolive',
	sprintf('%x', $s1->{lease_id}));
like($ttl_out, qr/granted with TTL\(10s\)/, 'lease granted with lease_ttl');

my ($lkey, $lval) = $etcd->elect_leader($prefix);
is($lval, 'node1', 'etcdctl elect -l names node1');
is($lkey, $kvs[0]{key}, '... with node1\'s key');

#
# an etcdctl candidate joins the same queue
#
my $ext = $etcd->start_elect($prefix, 'ext');
ok( $n1->poll_query_until(
		'postgres',
		'SELECT string_agg(node_name, \',\' ORDER BY "position") '
		  . 'FROM leader_candidates()',
		'node1,node2,ext'),
	'etcdctl candidate queues behind the PostgreSQL nodes');
my @c = le_candidates($n2);
is($c[2]{node_name}, 'ext', 'ext at position 2');
is($c[2]{is_self},   'f',   'ext is not self');
like($c[2]{key}, qr{^\Q$prefix\E/[0-9a-f]+$}, 'ext key has the same layout');
ok(!$ext->is_leading, 'etcdctl candidate does not lead');
is(le_status($n1)->{role}, 'leader', 'node1 still leads');

my $expiry = le_lease_expiry($etcd, le_status($n1)->{lease_id});
is($n1->safe_psql('postgres', 'SELECT leader_resign()'), 't', 'node1 resigns');
ok(le_wait_leader($n2), 'node2 leads');
cmp_ok(time(), '<', $expiry, '... before node1\'s lease could have expired');
ok( $n1->poll_query_until(
		'postgres', 'SELECT queue_position FROM leader_status()', '2'),
	'node1 rejoins behind ext');
is(le_candidate_names($n2), 'node2,ext,node1', 'queue: node2, ext, node1');

$expiry = le_lease_expiry($etcd, le_status($n2)->{lease_id});
is($n2->safe_psql('postgres', 'SELECT leader_resign()'), 't', 'node2 resigns');
ok($ext->wait_leading($PostgreSQL::Test::Utils::timeout_default),
	'the etcdctl candidate leads');
cmp_ok(time(), '<', $expiry, '... before node2\'s lease could have expired');
ok( $n1->poll_query_until(
		'postgres',
		'SELECT role, queue_position, leader_name FROM leader_status()',
		'follower|1|ext'),
	'node1 follows ext at position 1');
ok( $n2->poll_query_until(
		'postgres',
		'SELECT role, queue_position, leader_name FROM leader_status()',
		'follower|2|ext'),
	'node2 follows at position 2');
is(scalar(le_leaders($n1, $n2)), 0, 'no PostgreSQL node leads');
($lkey, $lval) = $etcd->elect_leader($prefix);
is($lval, 'ext', 'etcdctl elect -l names ext');

# the lease of etcdctl's session (TTL 60 s)
my ($ext_row) = grep { $_->{node_name} eq 'ext' } le_candidates($n1);
$expiry = le_lease_expiry($etcd, $ext_row->{lease_id});
my $t0 = time();
$ext->stop;    # SIGINT: etcdctl resigns
ok(le_wait_leader($n1), 'node1 leads once the etcdctl leader resigns');
my $led = time();
cmp_ok($led, '<', $expiry, '... before the etcdctl lease could have expired');
note sprintf('took %.3f s', $led - $t0);
is(le_candidate_names($n2), 'node1,node2', 'queue: node1, node2');
($lkey, $lval) = $etcd->elect_leader($prefix);
is($lval, 'node1', 'etcdctl elect -l names node1 again');

#
# an operator deletes the leader's key
#
$s1 = le_status($n1);
my $key1 = sprintf('%s/%x', $prefix, $s1->{lease_id});
$t0 = time();
like($etcd->etcdctl('del', $key1), qr/^1$/m, "etcdctl del $key1");
ok($n1->poll_query_until('postgres', 'SELECT leader_is_primary()', 'f'),
	'node1 stops leading when its key is deleted');
my $stopped = time();
# node1's lease lives on: only its watch, or at the latest its next look
# (TTL/3), tells it
cmp_ok($stopped - $t0, '<', $ttl, "... within the lease TTL ($ttl s)");
ok(le_wait_leader($n2), 'node2 leads');
note sprintf('node1 stopped leading after %.3f s, node2 led after %.3f s',
	$stopped - $t0, time() - $t0);
ok( $n1->poll_query_until(
		'postgres',
		'SELECT role, queue_position, leader_name FROM leader_status()',
		'follower|1|node2'),
	'node1 rejoins at the tail');
my $s1b = le_status($n1);
isnt($s1b->{lease_id}, $s1->{lease_id}, 'node1 rejoined with a new lease');
is(scalar(le_leaders($n1, $n2)), 1, 'exactly one leader');
@kvs = $etcd->get_prefix($prefix);
is(join(',', map { "$_->{key}=$_->{value}" } @kvs),
	sprintf('%s/%x=node2,%s/%x=node1',
		$prefix, le_status($n2)->{lease_id}, $prefix, $s1b->{lease_id}),
	'etcd holds node2\'s key, then node1\'s new key');

$n1->stop;
$n2->stop;
$etcd->stop;

done_testing();
