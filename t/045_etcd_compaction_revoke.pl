# etcd compaction under running watches, and a lease revoked by another
# client (issue 15): a three-member etcd cluster, each member behind a TCP
# proxy (t/TcpProxy.pm) so that the test can break every connection the
# nodes hold; two independent nodes (node1 leads, node2 is queued),
# lease_ttl = 4, every proxy in leader_election.endpoints.
#
#  a. Compaction past the revisions the watches started from: both nodes
#     run a while, other keys are written, etcd is compacted to its current
#     revision (`etcdctl compaction`), and every connection through the
#     proxies is dropped, so the watches are created again from the
#     revision they started at -- now compacted. Twice. Each node reads
#     and watches again without a wrong decision: never two leaders, node1
#     leads throughout (same fencing token and role_since), node2 stays
#     queued; and the log says so (a line matching /compact/i) at least once,
#     but not over and over.
#  b. The leader's lease revoked by another client (`etcdctl lease revoke`):
#     node1 steps down within a second (its watch on its own key sees the
#     key go; asserted < 2 s, measured time printed), rejoins at the tail,
#     and node2, next in line, leads (within 2 x TTL + 5 s: its leader did
#     not release the term, so it waits until node1's validity could have
#     lapsed).
#
# A monitor (t/TwoWriters.pm) polls both nodes every 20 ms: never two
# leaders, never two nodes that accept a write.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

use FindBin;
use lib $FindBin::RealBin;

use EtcdCluster;
use LeaderElectionTest;
use TcpProxy;
use TwoWriters;

my $prefix = '/leader_election/t045';
my $ttl    = 4;

my $etcd = EtcdCluster->new(name => 'etcd', members => 3);
$etcd->start;
my @proxies = map {
	TcpProxy->new(target_port => $etcd->member($_)->client_port, name => "m$_")
} 0 .. 2;
$_->start foreach @proxies;
my $endpoints = join(',', map { $_->url } @proxies);

my ($n1, $n2) = le_leader_and_follower($etcd, prefix => $prefix,
	lease_ttl => $ttl, endpoints => $endpoints);
my @nodes = ($n1, $n2);
le_bypass_psql($_, 'CREATE TABLE mon (node text, round int)') foreach @nodes;

# lines of a node's server log matching $re, from byte $offset on
sub log_lines
{
	my ($node, $offset, $re) = @_;
	my $log = slurp_file($node->logfile, $offset);
	return grep { /$re/ } split /\n/, $log;
}

#
# a. Compaction, and watches created again from a compacted revision.
#
{
	my $what = 'a (compaction)';
	my $before1 = le_status($n1);
	my $before2 = le_status($n2);
	my %offset = map { $_->name => -s $_->logfile } @nodes;
	my $mon = tw_monitor_start(nodes => \@nodes, table => 'mon');

	foreach my $round (1 .. 2)
	{
		# the nodes run a while: renewals, refreshes, confirmations of the
		# term, all at revisions after the ones the watches started from
		usleep(2 * $ttl * 1_000_000);
		$etcd->etcdctl('put', "/leader_election_t045_other/k$_", "v$_") foreach 1 .. 5;
		my $rev = $etcd->revision;
		$etcd->compact($rev);
		my $dropped = 0;
		$dropped += $_->drop_connections foreach @proxies;
		note "$what: round $round: compacted at revision $rev, dropped $dropped connections";
		cmp_ok($dropped, '>', 0, "$what: round $round: the nodes' connections were dropped");
	}
	usleep(2 * $ttl * 1_000_000);
	my $r = $mon->stop;
	note "$what: monitor: " . tw_monitor_summary($r);
	is($r->{two_leader_rounds}, 0, "$what: never two leaders");
	is($r->{leader_rounds}{node2}, 0, "$what: node2 never led");

	my $after1 = le_status($n1);
	is($after1->{role}, 'leader', "$what: node1 still leads");
	is($after1->{fencing_token}, $before1->{fencing_token},
		"$what: ... with the same fencing token");
	is($after1->{role_since}, $before1->{role_since},
		"$what: ... and the same role_since: it never stopped leading");
	my $after2 = le_status($n2);
	is("$after2->{role}|$after2->{queue_position}", 'follower|1',
		"$what: node2 is still queued behind node1");
	is($after2->{lease_id}, $before2->{lease_id},
		"$what: ... with the same lease: it never left the queue");

	# the log says so, once per watch that found its revision compacted
	my @said = map { log_lines($_, $offset{ $_->name }, qr/leader_election:.*compact/i) } @nodes;
	note "$what: log lines about compaction:\n" . join("\n", @said);
	cmp_ok(scalar(@said), '>=', 1, "$what: the log says a watch's revision was compacted");
	cmp_ok(scalar(@said), '<=', 8, "$what: ... but not over and over");
}

#
# b. The leader's lease is revoked by another client.
#
{
	my $what = 'b (lease revoked)';
	my $s1 = le_status($n1);
	my $mon = tw_monitor_start(nodes => \@nodes, table => 'mon');
	usleep(500_000);
	my $t0 = time();
	$etcd->lease_revoke($s1->{lease_id});
	my $t_revoked = time();
	ok($n1->poll_query_until('postgres', 'SELECT leader_is_primary()', 'f'),
		"$what: node1 steps down");
	my $down = time() - $t0;
	cmp_ok($down, '<', 2, "$what: ... within 2 s of the revoke");
	note sprintf('%s: node1 stopped leading %.3f s after etcdctl lease revoke started '
		  . '(etcdctl itself took %.3f s)', $what, $down, $t_revoked - $t0);

	ok(le_wait_leader($n2), "$what: node2, next in line, leads");
	my $led = time() - $t0;
	cmp_ok($led, '<=', 2 * $ttl + 5, "$what: ... within 2 x TTL + 5 s");
	note sprintf('%s: node2 leads %.3f s after the revoke', $what, $led);
	ok( $n1->poll_query_until('postgres',
			'SELECT role, queue_position, leader_name FROM leader_status()',
			'follower|1|node2'),
		"$what: node1 rejoined at the tail, behind node2");
	my $s1b = le_status($n1);
	isnt($s1b->{lease_id}, $s1->{lease_id}, "$what: ... with a new lease");
	cmp_ok(le_status($n2)->{fencing_token}, '>', $s1->{fencing_token},
		"$what: the fencing token grew");
	my $r = $mon->stop;
	note "$what: monitor: " . tw_monitor_summary($r);
	is($r->{two_leader_rounds}, 0, "$what: never two leaders");
	is($r->{two_write_rounds},  0, "$what: never two nodes that accepted a write");
	is(join(',', map { $_->name } le_leaders(@nodes)), 'node2',
		"$what: exactly one leader: node2");
}

done_testing();
