# Attack (issue 14 fix): moving a replicated cluster between elections.
#
# n1 primary, n2, n3 standbys (le_replicated_cluster, lease_ttl = 3),
# prefix P1. In every case a client commits through a read-write string
# listing all nodes and the two-writers monitor polls all nodes.
#  a. baseline: standbys to P2 (one reload each), then the primary;
#  b. the leader flips P2 -> P3 -> P2 (two reloads 100 ms apart, the second
#     while the first move may be under way), standbys stay in P2;
#  c. lease_ttl changed on the leader (3 -> 4: a move within the election);
#  d. a failover inside P2 (n1 crashes, n2 promotes to timeline 2; n1 is
#     rejoined), then the whole cluster moves back to P1, the election it
#     came from (standbys first, then the leader): P1 still holds
#     "moved":true naming n1 on timeline 1.
# For each: never two writers, one leader again within 3 TTL + 10 s of the
# last reload, no acknowledged commit missing on it.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

use FindBin;
use lib $FindBin::RealBin;

use EtcdServer;
use LeaderElectionTest;
use TwoWriters;

my $P1  = '/leader_election/t094a';
my $P2  = '/leader_election/t094b';
my $P3  = '/leader_election/t094c';
my $ttl = 3;

my $etcd = EtcdServer->new('etcd');
$etcd->start;

my @nodes = le_replicated_cluster($etcd, n => 3, prefix => $P1, lease_ttl => $ttl);
my ($n1, $n2, $n3) = @nodes;
$n1->safe_psql('postgres', 'CREATE TABLE mon (node text, round int)');
ok(le_wait_cluster_record($etcd, $P1, node => 'n1'), 'record in P1 names n1');
my @report;

sub set_conf
{
	my ($node, $line) = @_;
	$node->append_conf('postgresql.conf', $line);
	$node->reload;
}

sub state_line
{
	my $s = '';
	foreach my $n (@nodes)
	{
		my $st = eval { le_status($n) };
		next unless $st;
		$s .= sprintf(' | %s %s/%s tl%s q=%s %s', $n->name, $st->{role}, $st->{phase},
			$st->{timeline}, $st->{queue_position} // '-', $st->{ineligible_reason} // '');
	}
	return $s;
}

sub one_leader_within
{
	my ($t0, $limit) = @_;
	while (time() < $t0 + $limit)
	{
		my @l = le_leaders(@nodes);
		return ($l[0], time() - $t0) if @l == 1;
		usleep(200_000);
	}
	return (undef, undef);
}

sub with_watch
{
	my ($case, $leader, $act) = @_;
	my $table = "t_$case";
	$leader->safe_psql('postgres', "CREATE TABLE $table (id int PRIMARY KEY, node text)");
	my $mon = tw_monitor_start(nodes => \@nodes, table => 'mon');
	my $w = tw_writer_start(connstr => le_rw_connstr(@nodes), table => $table, pause_ms => 5);
	usleep(1_500_000);
	my $t0 = $act->();
	my ($l, $secs) = one_leader_within($t0, 3 * $ttl + 10);
	usleep(1_500_000);
	my $res = $w->stop;
	my $r   = $mon->stop;
	note "$case: monitor: " . tw_monitor_summary($r);
	my $lost = '-';
	if ($l)
	{
		my @lost = tw_lost($res, $l, $table);
		$lost = scalar(@lost) . (@lost ? " (ids $lost[0]..$lost[-1])" : '');
		is(scalar(@lost), 0, "$case: no acknowledged commit missing on " . $l->name);
	}
	ok(defined $l, "$case: one leader within 3 TTL + 10 s");
	is($r->{two_leader_rounds}, 0, "$case: never two leaders");
	is($r->{two_write_rounds},  0, "$case: never two writers");
	my $line = sprintf('%s: two leaders %d, two writers %d; leader %s after %s; acked %d of %d; lost %s;%s',
		$case, $r->{two_leader_rounds}, $r->{two_write_rounds}, $l ? $l->name : 'NOBODY',
		defined $secs ? sprintf('%.1f s', $secs) : '-', scalar(keys %{ $res->{acked} }),
		$res->{attempts}, $lost, state_line());
	note $line;
	push @report, $line;
	return $l;
}

# a. baseline move P1 -> P2, standbys first
my $L = with_watch('a', $n1, sub {
	set_conf($n2, "leader_election.prefix = '$P2'");
	usleep(1_500_000);
	set_conf($n3, "leader_election.prefix = '$P2'");
	usleep(1_500_000);
	set_conf($n1, "leader_election.prefix = '$P2'");
	return time();
});
$n2->poll_query_until('postgres', 'SELECT queue_position IS NOT NULL FROM leader_status()');

# b. the leader flips P2 -> P3 -> P2
$L = with_watch('b', $L // $n1, sub {
	my $leader = (le_leaders(@nodes))[0];
	set_conf($leader, "leader_election.prefix = '$P3'");
	usleep(100_000);
	set_conf($leader, "leader_election.prefix = '$P2'");
	return time();
});
usleep(3_000_000);

# c. lease_ttl on the leader
$L = with_watch('c', $L // $n1, sub {
	my $leader = (le_leaders(@nodes))[0];
	set_conf($leader, "leader_election.lease_ttl = 4");
	return time();
});
usleep(3_000_000);

# d. failover inside P2, rejoin, then everyone back to P1
my $leader = (le_leaders(@nodes))[0];
note 'd: crashing ' . $leader->name;
$leader->stop('immediate');
my ($newl) = one_leader_within(time(), 30);
ok($newl, 'd: a standby took over after the crash');
my ($rc, $out, $err) = le_rejoin($leader, $newl, start => 1);
note 'd: rejoin rc ' . $rc;
usleep(4_000_000);
note 'd: before the move back:' . state_line();
note 'd: P1 record: ' . ((le_cluster_record($etcd, $P1) || {})->{_raw} // '-');
with_watch('d', $newl, sub {
	foreach my $n (grep { $_ != $newl } @nodes)
	{
		set_conf($n, "leader_election.prefix = '$P1'");
		usleep(1_500_000);
	}
	set_conf($newl, "leader_election.prefix = '$P1'");
	return time();
});
note 'd: P1 record after: ' . ((le_cluster_record($etcd, $P1) || {})->{_raw} // '-');

diag "REPORT: $_" foreach @report;
$_->stop('immediate') foreach @nodes;
$etcd->stop;
done_testing();
