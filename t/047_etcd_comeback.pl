# Coming back after losing etcd (issue 15): a three-member etcd cluster, all
# members in leader_election.endpoints, a streaming-replication pair (n1 the
# primary and leader, n2 a standby queued behind it), lease_ttl = 4.
#
#  a. Every member frozen for longer than the TTL: at the thaw etcd expires
#     every lease (its clock ran on). A lease etcd no longer has sends the
#     node to the tail: n1 leads again with a new lease and a new fencing
#     token (n2, a standby, stands only behind a leader), within 2 x TTL of
#     the thaw; n2 queues behind it again.
#  b. Quorum lost for longer than the TTL (two members killed), then
#     restored. etcd cannot expire a lease without quorum, and a new raft
#     leader extends every lease, so etcd still holds n1's lease and key
#     when it answers again, although n1's validity lapsed locally. n1 takes
#     its place back: one leader again within one renewal interval (TTL/3)
#     of quorum being restored (asserted generously: within the TTL;
#     measured time printed), the same node, with the same lease and the
#     same fencing token (its key was never deleted), in a new term: a
#     transaction that wrote before the lapse does not commit after it.
#
# A client writes through a read-write connection string the whole time:
# every commit it saw acknowledged is on n1 at the end. A monitor
# (t/TwoWriters.pm) polls both nodes every 20 ms: never two leaders, never
# two nodes that accept a write.
#
# b describes behaviour added after the build this test was written
# against: there, n1 abandons its lease when its validity lapses, and the
# old key blocks the queue until etcd expires it.

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
use TwoWriters;

my $prefix = '/leader_election/t047';
my $ttl    = 4;

my $etcd = EtcdCluster->new(name => 'etcd', members => 3);
$etcd->start;

my ($n1, $n2) = le_replicated_cluster($etcd, n => 2, prefix => $prefix,
	lease_ttl => $ttl);
my @nodes = ($n1, $n2);
$n1->safe_psql('postgres',
	'CREATE TABLE w (id int PRIMARY KEY, node text); '
	  . 'CREATE TABLE mon (node text, round int)');

my $writer = tw_writer_start(connstr => le_rw_connstr(@nodes), table => 'w',
	pause_ms => 10);
my $mon = tw_monitor_start(nodes => \@nodes, table => 'mon');

sub leader_names { return join(',', map { $_->name } le_leaders(@nodes)); }

# n1 leads with no error, n2 is queued behind it; n1's status. Bounded by
# $bound s (default 60) rather than poll_query_until's 180 s: should n2 have
# taken over, n1 never leads again, and the test should fail without
# waiting minutes.
sub settled
{
	my ($what, $bound) = @_;
	$bound //= 60;
	$etcd->wait_healthy;
	ok( defined le_time_until(
			$bound,
			sub {
				$n1->safe_psql('postgres',
					'SELECT leader_is_primary(), last_error IS NULL FROM leader_status()')
				  eq 't|t';
			}),
		"$what: n1 leads, no error");
	ok( defined le_time_until(
			$bound,
			sub {
				$n2->safe_psql('postgres', 'SELECT role, queue_position FROM leader_status()')
				  eq 'follower|1';
			}),
		"$what: n2 is queued behind it");
	return le_status($n1);
}

#
# a. Every member frozen for longer than the TTL: the leases are gone.
#
{
	my $what = 'a (etcd frozen > TTL)';
	my $before = settled($what);
	my $t0 = time();
	$etcd->pause_all;
	ok( defined le_time_until(2 * $ttl,
			sub { $n1->safe_psql('postgres', 'SELECT leader_is_primary()') eq 'f' }),
		"$what: n1 is fenced while etcd is frozen");
	my $left = $t0 + $ttl + 2 - time();
	usleep($left * 1_000_000) if $left > 0;
	my $t_thaw = time();
	$etcd->resume_all;
	my $one = le_time_until(4 * $ttl, sub { leader_names() eq 'n1' });
	ok(defined $one && $one <= 2 * $ttl, "$what: n1 leads again within 2 x TTL of the thaw");
	note sprintf('%s: frozen %.2f s; n1 led again %.2f s after the thaw',
		$what, $t_thaw - $t0, $one // -1);
	my $after = settled("$what, after");
	isnt($after->{lease_id}, $before->{lease_id}, "$what: n1 has a new lease");
	cmp_ok($after->{fencing_token}, '>', $before->{fencing_token},
		"$what: ... and a new, larger fencing token: it went to the tail");
}

#
# b. Quorum lost for longer than the TTL, then restored: n1 comes back.
#
{
	my $what = 'b (quorum lost > TTL)';
	my $before = settled($what);
	my $m = $etcd->member_at_url($before->{endpoint});
	my @stop = grep { $_ != $m } 0 .. 2;

	# a transaction that writes before the lapse, to be committed after it
	my $bg = le_session($n1);
	my ($out, $err) = le_bg_query($bg,
		"BEGIN; INSERT INTO w VALUES (-1, 'written before the lapse'); SELECT 'wrote'");
	is($out, 'wrote', "$what: a transaction on n1 wrote before the lapse")
	  or diag $err;

	my $t0 = time();
	$etcd->kill9($_) foreach @stop;
	note "$what: n1 talks to member $m; members @stop killed";
	ok( defined le_time_until(2 * $ttl,
			sub { $n1->safe_psql('postgres', 'SELECT leader_is_primary()') eq 'f' }),
		"$what: n1 is fenced while quorum is lost");
	note sprintf('%s: n1 fenced %.3f s after quorum was lost', $what, time() - $t0);
	# longer than the TTL: n1's validity has lapsed locally for sure
	my $left = $t0 + $ttl + 2 - time();
	usleep($left * 1_000_000) if $left > 0;
	is(leader_names(), '', "$what: nobody leads while quorum is lost");

	my $t_start = time();
	$etcd->start_member($stop[0]);
	$etcd->wait_raft_leader;
	my $t_quorum = time();
	my $one = le_time_until(4 * $ttl, sub { le_leaders(@nodes) == 1 });
	my $who = leader_names();
	ok(defined $one && $one <= $ttl,
		"$what: one leader again within the TTL of quorum being restored");
	note sprintf('%s: quorum lost for %.2f s; etcd had a raft leader %.2f s after the '
		  . 'member was started; one node (%s) led %.2f s after that (renewal interval '
		  . '%.2f s)', $what, $t_quorum - $t0, $t_quorum - $t_start, $who || '-',
		$one // -1, $ttl / 3);
	is($who, 'n1', "$what: n1 leads again");
	my $after = le_status($n1);
	is($after->{lease_id}, $before->{lease_id}, "$what: ... with the same lease");
	is($after->{fencing_token}, $before->{fencing_token},
		"$what: ... and the same fencing token: its key was never deleted");

	# the transaction wrote in the term that lapsed
	($out, $err) = le_bg_query($bg, 'COMMIT');
	like($err, qr/25006/, "$what: the transaction that wrote before the lapse "
		  . 'does not commit after it (25006)');
	$bg->quit;
	ok( defined le_time_until(
			2 * $ttl, sub { $n1->safe_psql('postgres', 'SELECT leader_is_primary()') eq 't' }),
		"$what: n1 leads");
	is($n1->safe_psql('postgres', 'SELECT count(*) FROM w WHERE id = -1'), '0',
		"$what: ... and has no row of that transaction");

	$etcd->start_member($stop[1]);
	# n1 leads already, or (should n2 have taken over) never again
	settled("$what, after", 2 * $ttl);
}

my $r = $mon->stop;
note 'monitor: ' . tw_monitor_summary($r);
is($r->{two_leader_rounds}, 0, 'never two leaders');
is($r->{two_write_rounds},  0, 'never two nodes that accepted a write');

# the client's last commits went to the leader
usleep(1_000_000);
my $res = $writer->stop;
my @lost = tw_lost($res, $n1, 'w');
note sprintf('writer: %d acknowledged of %d attempts; errors: %s',
	scalar(keys %{ $res->{acked} }), $res->{attempts},
	join('; ', map { "$res->{errors}{$_} x $_" } sort keys %{ $res->{errors} }));
is(scalar(@lost), 0, 'every acknowledged commit is on the leader n1')
  or diag 'lost: ' . join(',', @lost[ 0 .. ($#lost < 20 ? $#lost : 19) ]);

done_testing();
