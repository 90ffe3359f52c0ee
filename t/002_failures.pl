
# Failures, with lease_ttl = 2:
#  - etcd unreachable when PostgreSQL starts: the node starts, reports
#    'disconnected' with last_error, and joins as soon as etcd answers;
#  - the leader is stopped with -m immediate (no clean-up possible): the next
#    in line leads once the crashed leader's lease expired;
#  - etcd frozen (SIGSTOP): the leader stops claiming leadership by itself,
#    while etcd is still frozen; after SIGCONT one node leads.
# Waits are generous (4 x TTL + 10 s): how soon a crashed leader is replaced
# is measured by bench/handover.sh, and t/007_fence.pl checks that a leader
# cut off from etcd stops leading within the TTL.

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

my $prefix = '/leader_election/t002';
my $ttl    = 2;
# anything that waits for a lease to run out happens within this
my $bound  = 4 * $ttl + 10;

# ports are reserved, but etcd is not running yet
my $etcd = EtcdServer->new('etcd');

#
# etcd down at start
#
my $n1 = le_node('node1', $etcd, prefix => $prefix, lease_ttl => $ttl);
ok(1, 'node1 starts while etcd is unreachable');
ok( $n1->poll_query_until(
		'postgres',
		'SELECT role, last_error IS NOT NULL, queue_position IS NULL, '
		  . 'valid_until IS NULL, leader_is_primary() FROM leader_status()',
		'disconnected|t|t|t|f'),
	'node1 is disconnected, with last_error set, not queued, not leader');
like(le_status($n1)->{phase}, qr/^(no lease|observing)$/,
	'node1 is in phase "no lease" or "observing" (reading etcd) while etcd is down');
note 'last_error: '
  . $n1->safe_psql('postgres', 'SELECT last_error FROM leader_status()');
is($n1->safe_psql('postgres', 'SELECT leader_wait(0)'),
	'f', 'leader_wait(0) is false while disconnected');
is($n1->safe_psql('postgres', 'SELECT leader_wait(200)'),
	'f', 'leader_wait(200) times out while disconnected');
is($n1->safe_psql('postgres', 'SELECT leader_resign()'),
	'f', 'leader_resign() is false while disconnected');

$etcd->start;
ok(le_wait_leader($n1), 'node1 becomes leader once etcd is up');
ok( $n1->poll_query_until(
		'postgres',
		'SELECT role, queue_position, last_error IS NULL FROM leader_status()',
		'leader|0|t'),
	'node1: role leader, position 0, last_error cleared');

# node2's first endpoint is dead (a reserved, unused port): it must use the
# second one
my $dead_port = PostgreSQL::Test::Cluster::get_free_port();
my $n2        = le_node(
	'node2', $etcd,
	prefix    => $prefix,
	lease_ttl => $ttl,
	endpoints => "http://127.0.0.1:$dead_port," . $etcd->url);
ok( $n2->poll_query_until(
		'postgres',
		'SELECT role, queue_position, leader_name FROM leader_status()',
		'follower|1|node1'),
	'node2 (first endpoint dead) follows node1');
is(le_status($n2)->{endpoint}, $etcd->url, 'node2 uses the live endpoint');

#
# -m immediate stop of the leader: its lease must expire in etcd
#
my $token1 = le_status($n1)->{fencing_token};
my $bg     = $n2->background_psql('postgres', timeout => 180);
my $t0     = time();
$n1->stop('immediate');
my $res     = $bg->query('SELECT leader_wait(120000)');
my $elapsed = time() - $t0;
is($res, 't', 'node2 leads after node1 was stopped with -m immediate');
cmp_ok($elapsed, '<=', $bound,
	"... within 4 x lease_ttl + 10 s ($bound s)");
note sprintf('crash hand-over took %.3f s', $elapsed);
$bg->quit;

my $s2 = le_status($n2);
is($s2->{role},           'leader', 'node2 role leader');
is($s2->{queue_position}, '0',      'node2 position 0');
cmp_ok($s2->{fencing_token}, '>', $token1, 'fencing token grew');
is(le_candidate_names($n2), 'node2', 'the crashed leader\'s key is gone');

# the crashed node comes back and queues behind node2
$n1->start;
ok( $n1->poll_query_until(
		'postgres',
		'SELECT role, queue_position, leader_name FROM leader_status()',
		'follower|1|node2'),
	'restarted node1 follows node2');

#
# etcd frozen: nobody can renew; the leader must give up by itself (etcd
# stays frozen until it resumes below), at its validity deadline.
#
$t0 = time();
$etcd->pause;
ok($n2->poll_query_until('postgres', 'SELECT leader_is_primary()', 'f'),
	'leader stops claiming leadership while etcd is frozen');
$elapsed = time() - $t0;
cmp_ok($elapsed, '<=', $bound,
	"... within 4 x lease_ttl + 10 s ($bound s)");
note sprintf('leadership lapsed %.3f s after SIGSTOP', $elapsed);
is(scalar(le_leaders($n1, $n2)), 0, 'no node leads while etcd is frozen');

# reading shared memory never waits for etcd: measured in the server (psql's
# start is not part of it), both calls take far less than request_timeout
# (1 s), the least that waiting for the frozen etcd would take
my $took = $n2->safe_psql('postgres',
	'SELECT extract(epoch FROM clock_timestamp() - statement_timestamp()) '
	  . 'FROM (SELECT leader_is_primary(), * FROM leader_status() OFFSET 0) s');
cmp_ok($took, '<', 1,
	'leader_is_primary() and leader_status() answer at once while etcd is frozen');
note sprintf('leader_is_primary() and leader_status() with etcd frozen: %.6f s',
	$took);

# leader_candidates() asks etcd: it gives up (error or not) after its
# request_timeout (1 s) instead of hanging
$t0 = time();
my ($cret, $cout, $cerr) = $n2->psql('postgres',
	'SELECT count(*) FROM leader_candidates()', timeout => 30);
$elapsed = time() - $t0;
cmp_ok($elapsed, '<', 10,
	'leader_candidates() returns while etcd is frozen');
note sprintf('leader_candidates() with etcd frozen: rc %d after %.3f s: %s',
	$cret, $elapsed, $cerr);
ok( $n2->poll_query_until(
		'postgres',
		"SELECT role <> 'leader', last_error IS NOT NULL, "
		  . 'valid_until IS NULL FROM leader_status()',
		't|t|t'),
	'node2 reports the error and no valid_until');
is($n2->safe_psql('postgres', 'SELECT leader_wait(0)'),
	'f', 'leader_wait(0) is false on the former leader');

$etcd->resume;
my $deadline = time() + 30;
my @leaders;
while (time() < $deadline)
{
	@leaders = le_leaders($n1, $n2);
	last if @leaders;
	Time::HiRes::usleep(100_000);
}
is(scalar(@leaders), 1, 'exactly one node leads again after etcd resumes');
if (@leaders == 1)
{
	my $leader   = $leaders[0];
	my $follower = $leader == $n1 ? $n2 : $n1;
	ok( $follower->poll_query_until(
			'postgres',
			'SELECT role, queue_position, leader_name, last_error IS NULL '
			  . 'FROM leader_status()',
			'follower|1|' . $leader->name . '|t'),
		'the other node follows it');
	ok( $leader->poll_query_until(
			'postgres', 'SELECT last_error IS NULL FROM leader_status()', 't'),
		'the leader reports no error');
	is(scalar(le_leaders($n1, $n2)), 1, 'still exactly one leader');
}

$n1->stop;
$n2->stop;
$etcd->stop;

done_testing();
