# Faults of the whole etcd cluster (issue 15): a three-member etcd cluster,
# all members in leader_election.endpoints, two independent nodes (node1
# leads, node2 is queued), lease_ttl = 4.
#
#  a. Quorum lost: two of the three members are stopped (the one the
#     leader talks to keeps running, so its requests time out instead of
#     being refused). The leader is fenced (leader_is_primary() false)
#     within the TTL of the loss, before etcd could expire its lease, and
#     nobody leads while quorum is lost. Quorum restored (one member
#     started again): exactly one leader within 2 x TTL of etcd having a
#     raft leader again.
#  b. Every member frozen (SIGSTOP) for less than TTL/2: nothing changes
#     (the same leader, fencing token and role_since).
#  c. Every member frozen for longer than the TTL: the leader is fenced
#     within the TTL of the freeze, nobody leads while etcd is frozen, and
#     exactly one leader within 2 x TTL of the thaw.
#
# A monitor (t/TwoWriters.pm) polls both nodes every 20 ms through the
# whole test: never two leaders, never two nodes that accept a write. The
# times measured are printed ("a: ... s").

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

my $prefix = '/leader_election/t044';
my $ttl    = 4;

my $etcd = EtcdCluster->new(name => 'etcd', members => 3);
$etcd->start;

my ($n1, $n2) = le_leader_and_follower($etcd, prefix => $prefix, lease_ttl => $ttl);
my @nodes = ($n1, $n2);
le_bypass_psql($_, 'CREATE TABLE mon (node text, round int)') foreach @nodes;

my $mon = tw_monitor_start(nodes => \@nodes, table => 'mon');

# Exactly one leader, and the other node queued behind it; returns both.
sub settled
{
	my ($what) = @_;
	my ($leader, $other);
	my $t = le_time_until(
		60,
		sub {
			my @l = le_leaders(@nodes);
			return 0 unless @l == 1;
			($leader) = @l;
			($other) = grep { $_ != $leader } @nodes;
			return $other->safe_psql('postgres',
				'SELECT role, queue_position FROM leader_status()') eq 'follower|1';
		});
	ok(defined $t, "$what: one node leads, the other is queued behind it");
	die "$what: the nodes did not settle" unless defined $t;
	return ($leader, $other);
}

# Seconds from $t0 (Time::HiRes::time) until leader_is_primary() on $node
# turned false, by the server's clock, polled every 20 ms in one session (no
# connection set up per poll to blur it); undef if not within $timeout s.
sub fenced_after
{
	my ($node, $t0, $timeout) = @_;
	my $bg = le_session($node);
	my $fenced;
	while (time() < $t0 + $timeout)
	{
		my ($out) = le_bg_query($bg,
			'SELECT leader_is_primary(), extract(epoch FROM clock_timestamp())');
		my ($leads, $at) = split /\|/, $out;
		if (defined $leads && $leads eq 'f')
		{
			$fenced = $at - $t0;
			last;
		}
		usleep(20_000);
	}
	$bg->quit;
	return $fenced;
}

# Nobody leads for $seconds (sampled every 200 ms): '' or what went wrong.
sub nobody_leads
{
	my ($seconds) = @_;
	my $deadline = time() + $seconds;
	while (time() < $deadline)
	{
		my @l = le_leaders(@nodes);
		return 'leading: ' . join(',', map { $_->name } @l) if @l;
		usleep(200_000);
	}
	return '';
}

#
# a. Quorum lost, then restored.
#
{
	my $what = 'a (quorum lost)';
	my ($leader, $other) = settled($what);
	my $lname = $leader->name;
	my $m = $etcd->member_at_url(le_status($leader)->{endpoint});
	my @stop = grep { $_ != $m } 0 .. 2;
	note "$what: $lname leads through member $m; stopping members @stop";

	my $t0 = time();
	$etcd->kill9($_) foreach @stop;
	my $fenced = fenced_after($leader, $t0, 3 * $ttl);
	ok(defined $fenced && $fenced < $ttl,
		"$what: $lname is fenced within the TTL ($ttl s) of the loss");
	note sprintf('%s: %s fenced %.3f s after quorum was lost', $what, $lname,
		$fenced // -1);
	# etcd cannot expire a lease without quorum; the point is that nobody
	# leads, for longer than a lease
	is(nobody_leads($ttl + 1), '', "$what: nobody leads while quorum is lost");
	like(le_status($leader)->{last_error}, qr/\S/,
		"$what: $lname reports an error");

	# quorum restored: one member is back
	my $t_start = time();
	$etcd->start_member($stop[0]);
	$etcd->wait_raft_leader;
	my $t_quorum = time();
	my $one = le_time_until(4 * $ttl, sub { le_leaders(@nodes) == 1 });
	my $after = defined $one ? $t_quorum + $one - $t_start : undef;
	ok(defined $one && $one <= 2 * $ttl,
		"$what: exactly one leader within 2 x TTL of quorum being restored");
	note sprintf('%s: etcd had a raft leader %.2f s after the member was started; '
		  . 'one node (%s) led %.2f s after that (%.2f s after the start)',
		$what, $t_quorum - $t_start,
		join(',', map { $_->name } le_leaders(@nodes)), $one // -1, $after // -1);
	$etcd->start_member($stop[1]);
	settled("$what, after");
}

#
# b. Every member frozen for less than TTL/2: nothing changes.
#
{
	my $what = 'b (etcd frozen < TTL/2)';
	my ($leader, $other) = settled($what);
	my $lname  = $leader->name;
	my $before = le_status($leader);
	my $freeze = $ttl / 2 - 0.5;
	$etcd->pause_all;
	usleep($freeze * 1_000_000);
	$etcd->resume_all;
	note "$what: every member was frozen for $freeze s";
	# a renewal that was in flight is answered now; give it a lease's time
	usleep($ttl * 1_000_000);
	my $after = le_status($leader);
	is($after->{role}, 'leader', "$what: $lname still leads");
	is($after->{fencing_token}, $before->{fencing_token},
		"$what: ... with the same fencing token");
	is($after->{role_since}, $before->{role_since},
		"$what: ... and the same role_since: it never stopped leading");
	is(scalar(le_leaders(@nodes)), 1, "$what: exactly one leader");
}

#
# c. Every member frozen for longer than the TTL.
#
{
	my $what = 'c (etcd frozen > TTL)';
	my ($leader, $other) = settled($what);
	my $lname = $leader->name;
	my $t0 = time();
	$etcd->pause_all;
	my $fenced = fenced_after($leader, $t0, 3 * $ttl);
	ok(defined $fenced && $fenced < $ttl,
		"$what: $lname is fenced within the TTL ($ttl s) of the freeze");
	note sprintf('%s: %s fenced %.3f s after etcd froze', $what, $lname, $fenced // -1);
	my $left = $t0 + $ttl + 2 - time();
	is(nobody_leads($left > 0 ? $left : 0), '', "$what: nobody leads while etcd is frozen");
	my $t_thaw = time();
	$etcd->resume_all;
	my $one = le_time_until(4 * $ttl, sub { le_leaders(@nodes) == 1 });
	ok(defined $one && $one <= 2 * $ttl,
		"$what: exactly one leader within 2 x TTL of the thaw");
	note sprintf('%s: frozen for %.2f s; one node (%s) led %.2f s after the thaw',
		$what, $t_thaw - $t0, join(',', map { $_->name } le_leaders(@nodes)),
		$one // -1);
	settled("$what, after");
}

my $r = $mon->stop;
note 'monitor: ' . tw_monitor_summary($r);
is($r->{two_leader_rounds}, 0, 'never two leaders');
is($r->{two_write_rounds},  0, 'never two nodes that accepted a write');

done_testing();
