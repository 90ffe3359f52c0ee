# Attack (issue 14 fix): no SIGSTOP of any PostgreSQL process -- a network
# partition between the leader and etcd, and etcd itself frozen or killed.
# No replication, lease_ttl = 6.
#
#  a. node1 leads alone, talking to etcd through a TCP proxy (TcpProxy.pm).
#     The proxy is frozen (node1 is partitioned from etcd; it leads on until
#     its validity ends, by design). An operator "resets" the election with
#     `etcdctl del --prefix <prefix>` (which also deletes <prefix>.term and
#     <prefix>.cluster). A new node, node2, is then started and joins.
#     Expected: node2 never leads while node1 still may write.
#  b. node1 and node2 up (one leads, the other queued); etcd SIGSTOPped for
#     1.5 TTL, then resumed: never two writers; one leader within 3 TTL + 10 s.
#  c. etcd killed (SIGKILL) and restarted 1.5 TTL later: the same.
#  d. a fresh election: how long from the start of a lone node to leading,
#     and from leader_resign() to the successor leading (lease_ttl = 6).

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
use TcpProxy;
use TwoWriters;

my $prefix = '/leader_election/t095';
my $ttl    = 6;

my $etcd = EtcdServer->new('etcd');
$etcd->start;
my $proxy = TcpProxy->new(target_port => $etcd->client_port);
$proxy->start;
END { $proxy->thaw if $proxy && $proxy->{frozen}; }

my @report;

my $n1 = le_node('node1', $etcd, prefix => $prefix, lease_ttl => $ttl,
	endpoints => $proxy->url);
ok(le_wait_leader($n1), 'node1 leads (through the proxy)');
le_bypass_psql($n1, 'CREATE TABLE mon (node text, round int)');
my $n2 = le_node('node2', $etcd, prefix => $prefix, lease_ttl => $ttl, start => 0);
my @nodes = ($n1, $n2);

# a.
{
	my $mon = tw_monitor_start(nodes => \@nodes, table => 'mon');
	usleep(1_000_000);
	$proxy->freeze;
	my $t0 = time();
	$etcd->etcdctl('del', '--prefix', $prefix);
	$n2->start;
	$n2->safe_psql('postgres', 'CREATE EXTENSION leader_election');
	le_bypass_psql($n2, 'CREATE TABLE mon (node text, round int)');
	my $t2 = time();
	usleep(($ttl + 2) * 1_000_000);
	my $r = $mon->stop;
	$proxy->thaw;
	note 'a: monitor: ' . tw_monitor_summary($r);
	my $line = sprintf('a: partition + del --prefix + new node: two leaders %d, two writers %d rounds; node1 last led %.2f s after the partition; node2 (started %.2f s after) first led %s after the partition',
		$r->{two_leader_rounds}, $r->{two_write_rounds}, ($r->{last_leader}{node1} // $t0) - $t0,
		$t2 - $t0, defined $r->{first_leader}{node2} ? sprintf('%.2f s', $r->{first_leader}{node2} - $t0) : 'never');
	note $line;
	push @report, $line;
	is($r->{two_leader_rounds}, 0, 'a: never two leaders');
	is($r->{two_write_rounds},  0, 'a: never two writers');
}

sub one_leader_after
{
	my ($t0, $limit) = @_;
	while (time() < $t0 + $limit)
	{
		my @l = le_leaders(@nodes);
		return time() - $t0 if @l == 1;
		usleep(200_000);
	}
	return undef;
}

ok(defined one_leader_after(time(), 40), 'one leader before b');
usleep(3_000_000);

# b. etcd frozen 1.5 TTL
{
	my $mon = tw_monitor_start(nodes => \@nodes, table => 'mon');
	usleep(1_000_000);
	$etcd->pause;
	usleep(1.5 * $ttl * 1_000_000);
	$etcd->resume;
	my $t0 = time();
	my $secs = one_leader_after($t0, 3 * $ttl + 10);
	usleep(1_000_000);
	my $r = $mon->stop;
	note 'b: monitor: ' . tw_monitor_summary($r);
	my $line = sprintf('b: etcd SIGSTOP 1.5 TTL: two leaders %d, two writers %d; one leader %s after the resume',
		$r->{two_leader_rounds}, $r->{two_write_rounds}, defined $secs ? sprintf('%.1f s', $secs) : 'NEVER');
	note $line;
	push @report, $line;
	is($r->{two_write_rounds}, 0, 'b: never two writers');
	ok(defined $secs, 'b: one leader within 3 TTL + 10 s');
}
usleep(3_000_000);

# c. etcd killed and restarted
{
	my $mon = tw_monitor_start(nodes => \@nodes, table => 'mon');
	usleep(1_000_000);
	$etcd->kill9;
	usleep(1.5 * $ttl * 1_000_000);
	$etcd->start;
	my $t0 = time();
	my $secs = one_leader_after($t0, 3 * $ttl + 10);
	usleep(1_000_000);
	my $r = $mon->stop;
	note 'c: monitor: ' . tw_monitor_summary($r);
	my $line = sprintf('c: etcd SIGKILL, restart after 1.5 TTL: two leaders %d, two writers %d; one leader %s after the restart',
		$r->{two_leader_rounds}, $r->{two_write_rounds}, defined $secs ? sprintf('%.1f s', $secs) : 'NEVER');
	note $line;
	push @report, $line;
	is($r->{two_write_rounds}, 0, 'c: never two writers');
	ok(defined $secs, 'c: one leader within 3 TTL + 10 s');
}

$_->stop('fast') foreach @nodes;

# d. fresh election and resign speed
{
	my $p = '/leader_election/t095d';
	my $t0 = time();
	my $n3 = le_node('node3', $etcd, prefix => $p, lease_ttl => $ttl);
	le_wait_leader($n3);
	my $first = time() - $t0;
	my $n4 = le_node('node4', $etcd, prefix => $p, lease_ttl => $ttl);
	$n4->poll_query_until('postgres', 'SELECT queue_position FROM leader_status()', '1');
	my $t1 = time();
	$n3->safe_psql('postgres', 'SELECT leader_resign()');
	my $led;
	while (time() < $t1 + 20)
	{
		if ($n4->safe_psql('postgres', 'SELECT leader_is_primary()') eq 't') { $led = time() - $t1; last; }
		usleep(10_000);
	}
	my $line = sprintf('d: fresh node led %.2f s after its start (incl. initdb-less start + CREATE EXTENSION); successor led %s after leader_resign() (TTL %d)',
		$first, defined $led ? sprintf('%.3f s', $led) : 'NEVER', $ttl);
	note $line;
	push @report, $line;
	ok(defined $led && $led < 1.5, 'd: successor leads within 1.5 s of leader_resign()');
	$_->stop('fast') foreach ($n3, $n4);
}

diag "REPORT: $_" foreach @report;
$etcd->stop;
done_testing();
