
# Three nodes, one etcd: a single leader, FIFO queue in start order,
# resign (hand-over and rejoin at the tail), leader_wait() in a blocked
# session, graceful stop hand-over, and EXECUTE privilege on leader_resign().
#
# lease_ttl is left at its default (10 s): every hand-over checked here must
# happen through the key being deleted, so the successor is seen leading
# before the old leader's lease could have expired by etcd's own countdown
# (read just before; at least 2/3 of the TTL away). How fast a hand-over is
# belongs to bench/handover.sh, not here.

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

my $prefix = '/leader_election/t001';

my $etcd = EtcdServer->new('etcd');
$etcd->start;

#
# Start three nodes one after the other; each joins the tail of the queue.
#
my $n1 = le_node('node1', $etcd, prefix => $prefix);
ok(le_wait_leader($n1), 'node1 (started first) becomes leader');

my $n2 = le_node('node2', $etcd, prefix => $prefix);
ok( $n2->poll_query_until(
		'postgres',
		'SELECT role, queue_position, leader_name FROM leader_status()',
		'follower|1|node1'),
	'node2 queues at position 1 behind node1');

my $n3 = le_node('node3', $etcd, prefix => $prefix);
ok( $n3->poll_query_until(
		'postgres',
		'SELECT role, queue_position, leader_name FROM leader_status()',
		'follower|2|node1'),
	'node3 queues at position 2 behind node1');

my @leaders = le_leaders($n1, $n2, $n3);
is(scalar(@leaders), 1, 'exactly one of three nodes leads');
is($leaders[0]->name, 'node1', '... and it is node1');

my %st;
$st{$_->name} = le_status($_) foreach ($n1, $n2, $n3);

is($st{node1}{role},           'leader', 'node1 role leader');
is($st{node1}{phase},          'leading', 'node1 phase leading');
is($st{node1}{node_name},      'node1',  'node1 node_name');
is($st{node1}{leader_name},    'node1',  'node1 sees itself as leader');
is($st{node1}{queue_position}, '0',      'node1 queue_position 0');
is($st{node1}{lease_ttl},      '10',     'node1 lease_ttl is the default 10');
is($st{node1}{endpoint},       $etcd->url, 'node1 endpoint');
is($st{node1}{last_error},     undef,    'node1 last_error NULL');
ok(defined $st{node1}{valid_until}, 'leader has valid_until');
ok(defined $st{node1}{role_since},  'leader has role_since');
cmp_ok($st{node1}{fencing_token}, '>', 0, 'leader fencing_token > 0');
foreach my $n (qw(node2 node3))
{
	is($st{$n}{role},        'follower', "$n role follower");
	is($st{$n}{phase},       'queued',   "$n phase queued");
	is($st{$n}{node_name},   $n,         "$n node_name");
	is($st{$n}{leader_name}, 'node1',    "$n knows node1 leads");
	is($st{$n}{valid_until}, undef,      "$n valid_until NULL");
	is($st{$n}{last_error},  undef,      "$n last_error NULL");
}
isnt($st{node1}{lease_id}, $st{node2}{lease_id}, 'nodes hold distinct leases');
isnt($st{node2}{lease_id}, $st{node3}{lease_id}, 'nodes hold distinct leases');

# leader_candidates() reads the same queue, in start order, from every node
foreach my $node ($n1, $n2, $n3)
{
	my $me = $node->name;
	my @c  = le_candidates($node);
	is(join(',', map { "$_->{position}:$_->{node_name}" } @c),
		'0:node1,1:node2,2:node3', "candidates seen from $me in start order");
	foreach my $row (@c)
	{
		my $who = $row->{node_name};
		is($row->{is_self}, ($who eq $me ? 't' : 'f'),
			"is_self of $who seen from $me");
		is($row->{lease_id}, $st{$who}{lease_id},
			"lease_id of $who seen from $me");
		is($row->{key}, sprintf('%s/%x', $prefix, $st{$who}{lease_id}),
			"key of $who seen from $me is <prefix>/<hex lease id>");
	}
	cmp_ok($c[0]{create_revision}, '<', $c[1]{create_revision},
		"create revisions ascend ($me)");
	cmp_ok($c[1]{create_revision}, '<', $c[2]{create_revision},
		"create revisions ascend ($me)");
	is($c[0]{create_revision}, $st{node1}{fencing_token},
		"leader's fencing_token is its key's create revision ($me)");
}

# the same queue straight from etcd
my @kvs = $etcd->get_prefix($prefix);
is(join(',', map { $_->{value} } @kvs),
	'node1,node2,node3', 'etcd holds the three keys in start order');

#
# leader_resign(): a follower cannot resign; the leader hands over to the
# next in line and rejoins at the tail with a new lease.
#
is($n2->safe_psql('postgres', 'SELECT leader_resign()'),
	'f', 'leader_resign() on a follower returns false');
is(le_candidate_names($n1), 'node1,node2,node3',
	'queue unchanged by a follower resign');

my $token1 = $st{node1}{fencing_token};
my $expiry = le_lease_expiry($etcd, $st{node1}{lease_id});
my $t0     = time();
is($n1->safe_psql('postgres', 'SELECT leader_resign()'),
	't', 'leader_resign() on the leader returns true');
ok(le_wait_leader($n2), 'node2 (next in line) leads after node1 resigns');
my $led = time();
cmp_ok($led, '<', $expiry,
	'... before node1\'s lease could have expired: it was released');
note sprintf('resign hand-over took %.3f s (the lease could not expire '
	  . 'before %.3f s)', $led - $t0, $expiry - $t0);

ok( $n1->poll_query_until(
		'postgres',
		'SELECT role, queue_position, leader_name FROM leader_status()',
		'follower|2|node2'),
	'resigned node1 rejoins at the tail (position 2)');
is(le_candidate_names($n3), 'node2,node3,node1',
	'queue after resign: node2, node3, node1');
@leaders = le_leaders($n1, $n2, $n3);
is(join(',', map { $_->name } @leaders), 'node2', 'node2 is the only leader');

my $s1 = le_status($n1);
my $s2 = le_status($n2);
isnt($s1->{lease_id}, $st{node1}{lease_id}, 'node1 rejoined with a new lease');
cmp_ok($s2->{fencing_token}, '>', $token1, 'fencing token grew with the new leader');
# followers learn about changes ahead of their predecessor at the latest
# with their next renewal (TTL/3)
ok( $n3->poll_query_until(
		'postgres',
		'SELECT role, queue_position, leader_name FROM leader_status()',
		'follower|1|node2'),
	'node3 moved up to position 1 and knows node2 leads');

#
# leader_wait() on a follower
#
is($n3->safe_psql('postgres', 'SELECT leader_wait(0)'),
	'f', 'leader_wait(0) on a follower returns false at once');
$t0 = time();
is($n3->safe_psql('postgres', 'SELECT leader_wait(300)'),
	'f', 'leader_wait(300) on a follower times out with false');
cmp_ok(time() - $t0, '>=', 0.29, 'leader_wait(300) waited ~300 ms');

my ($ret, $out, $err) = $n3->psql('postgres',
	"SET statement_timeout = '300ms'; SELECT leader_wait();");
isnt($ret, 0, 'leader_wait() without limit is cancelled by statement_timeout');
like($err, qr/canceling statement due to statement timeout/,
	'... with the statement timeout error');

# A session blocked in leader_wait() wakes up when its node becomes leader.
my $bg = $n3->background_psql('postgres', timeout => 120);
$bg->query_until(qr/waiting/,
	"\\echo waiting\nSELECT leader_wait(60000) AS woke;\n");
ok( $n3->poll_query_until(
		'postgres',
		"SELECT count(*) FROM pg_stat_activity "
		  . "WHERE state = 'active' AND query LIKE 'SELECT leader_wait(60000)%'",
		'1'),
	'a session on node3 is blocked in leader_wait(60000)');
is($n3->safe_psql('postgres', 'SELECT leader_is_primary()'),
	'f', 'node3 does not lead while the session waits');

$expiry = le_lease_expiry($etcd, le_status($n2)->{lease_id});
$t0     = time();
is($n2->safe_psql('postgres', 'SELECT leader_resign()'),
	't', 'node2 resigns');
my $woke = $bg->query_until(qr/^[tf]$/m, '');
$led = time();
like($woke, qr/^t$/m, 'blocked leader_wait() on node3 returned true');
cmp_ok($led, '<', $expiry,
	'and woke promptly, before node2\'s lease could have expired');
note sprintf('leader_wait woke %.3f s after resign', $led - $t0);
$bg->quit;
is(le_candidate_names($n1), 'node3,node1,node2',
	'queue after second resign: node3, node1, node2');

#
# EXECUTE on leader_resign() is revoked from PUBLIC
#
$n3->safe_psql('postgres', 'CREATE ROLE regress_le_user LOGIN');
my $user_conn = $n3->connstr('postgres') . ' user=regress_le_user';
($ret, $out, $err) = ('', '', '');
$ret = $n3->psql('postgres', 'SELECT leader_resign()',
	connstr => $user_conn, stdout => \$out, stderr => \$err);
isnt($ret, 0, 'non-superuser cannot call leader_resign()');
like($err, qr/permission denied for function leader_resign/,
	'... permission denied');
is( $n3->safe_psql(
		'postgres', 'SELECT leader_is_primary()',
		connstr => $user_conn),
	't',
	'non-superuser can call leader_is_primary()');
is( $n3->safe_psql(
		'postgres', 'SELECT role FROM leader_status()',
		connstr => $user_conn),
	'leader',
	'non-superuser can call leader_status()');
is(scalar(le_leaders($n1, $n2, $n3)), 1, 'still exactly one leader after the refused resign');
is(le_status($n3)->{role}, 'leader', 'node3 still leads after the refused resign');

#
# Graceful stop (-m fast) of the leader: it deletes its key and revokes its
# lease, so the next in line leads without waiting for the lease TTL.
#
my $s3     = le_status($n3);
my $token3 = $s3->{fencing_token};
$expiry = le_lease_expiry($etcd, $s3->{lease_id});
$t0     = time();
$n3->stop('fast');
ok(le_wait_leader($n1), 'node1 (next in line) leads after node3 stops');
$led = time();
cmp_ok($led, '<', $expiry,
	'graceful stop hands over without waiting for the lease (TTL 10 s)');
note sprintf('graceful stop hand-over took %.3f s (the lease could not '
	  . 'expire before %.3f s)', $led - $t0, $expiry - $t0);
ok( $n2->poll_query_until(
		'postgres',
		'SELECT role, queue_position, leader_name FROM leader_status()',
		'follower|1|node1'),
	'node2 follows node1 at position 1');
cmp_ok(le_status($n1)->{fencing_token}, '>', $token3, 'fencing token grew');
is(join(',', map { $_->{value} } $etcd->get_prefix($prefix)),
	'node1,node2', 'the stopped node\'s key is gone from etcd');

# A restarted node joins at the tail.
$n3->start;
ok( $n3->poll_query_until(
		'postgres',
		'SELECT role, queue_position, leader_name FROM leader_status()',
		'follower|2|node1'),
	'restarted node3 joins at the tail');
is(le_candidate_names($n2), 'node1,node2,node3', 'queue: node1, node2, node3');

$n1->stop;
$n2->stop;
$n3->stop;
$etcd->stop;

done_testing();
