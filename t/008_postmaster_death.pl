
# Postmaster death of the leader: its orphaned worker clears leadership in
# shared memory first (orphaned backends cannot write), then revokes the
# lease, so the next node leads at once instead of after the TTL.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

# t/ holds the helper modules (PROVE_FLAGS in the Makefile is reset by PGXS)
use FindBin;
use lib $FindBin::RealBin;

use EtcdServer;
use LeaderElectionTest;

my $prefix = '/leader_election/t008';
my $ttl    = 10;

my $etcd = EtcdServer->new('etcd');
$etcd->start;
my $n1 = le_node('node1', $etcd, prefix => $prefix, lease_ttl => $ttl);
ok(le_wait_leader($n1), 'node1 leads');
my $n2 = le_node('node2', $etcd, prefix => $prefix, lease_ttl => $ttl);
ok( $n2->poll_query_until(
		'postgres', 'SELECT role, queue_position FROM leader_status()',
		'follower|1'),
	'node2 follows');
le_bypass_psql($n1, 'CREATE TABLE t (id int)');

# A session on node1 that outlives its postmaster.
my $orphan = $n1->background_psql('postgres', on_error_stop => 0, timeout => 60);
is((le_bg_query($orphan, 'SELECT leader_is_primary()'))[0], 't',
	'the session on node1 sees it lead');
my $worker = le_worker_pid($n1);
ok($worker, "node1's worker runs (pid $worker)");

# A lease expiry could not hand over before this; the release must.
my $expiry = le_lease_expiry($etcd, le_status($n1)->{lease_id});
my $t0     = time();
$n1->kill9;
ok($n2->poll_query_until('postgres', 'SELECT leader_wait(100)'),
	'node2 leads after the postmaster of node1 died');
my $led = time();
cmp_ok($led, '<', $expiry,
	'... before node1\'s lease could expire: the orphaned worker released it');
note sprintf('postmaster death -> successor leads: %.3f s (the lease could '
	  . 'not expire before %.3f s)', $led - $t0, $expiry - $t0);
my @keys = $etcd->get_prefix($prefix);
is(join(',', map { $_->{value} } @keys), 'node2', 'only node2\'s key is left in etcd');

# The orphaned backend, if it still lives, neither leads nor writes; it may
# also have ended with its postmaster already.
my ($lead) = eval { le_bg_query($orphan, 'SELECT leader_is_primary()') };
ok(!defined $lead || $lead ne 't', 'the orphaned session does not lead');
my ($out, $err) = eval { le_bg_query($orphan, 'INSERT INTO t VALUES (1) RETURNING 1') };
ok(!defined $out || $out ne '1', 'the orphaned session cannot write')
  or diag "err: $err";
eval { $orphan->quit };

# The worker exits once it has released its lease.
my $deadline = time() + 10;
usleep(50_000) while kill(0, $worker) && time() < $deadline;
ok(!kill(0, $worker), 'the orphaned worker exited');

$n2->stop;
$etcd->stop;
done_testing();
