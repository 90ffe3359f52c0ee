# Attack (issue 14 fix): nodes with different lease_ttl, and a term that is
# deleted or unreadable.
#
# node1 (lease_ttl = 20) leads, talking to etcd through a TCP proxy;
# node2 (lease_ttl = 4) is queued behind it. The term in etcd says
# "ttl":20, so after a plain key deletion node2 would wait 20 s. The proxy is
# frozen (node1 partitioned from etcd: it leads on until its last
# confirmation + 20 s - margin, by design), then:
#  a. the term and node1's key are deleted (etcdctl del);
#  b. the term is overwritten with garbage and node1's key deleted;
#  c. the same as a in a replicated cluster: n1 primary (lease_ttl = 20,
#     through its own proxy), n2 standby (lease_ttl = 4); a client commits
#     through a read-write string; lost commits on the leader at the end.
# (What this found: the successor waited only its own TTL when the term was
# missing or unreadable.) Expected: node2 never leads while node1 may write.

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

my $prefix = '/leader_election/t096';

my $etcd = EtcdServer->new('etcd');
$etcd->start;
my $proxy = TcpProxy->new(target_port => $etcd->client_port);
$proxy->start;

my @report;
my $n1 = le_node('node1', $etcd, prefix => $prefix, lease_ttl => 20, endpoints => $proxy->url);
ok(le_wait_leader($n1), 'node1 leads');
my $n2 = le_node('node2', $etcd, prefix => $prefix, lease_ttl => 4);
ok($n2->poll_query_until('postgres', 'SELECT queue_position FROM leader_status()', '1'),
	'node2 queued');
my @nodes = ($n1, $n2);
le_bypass_psql($_, 'CREATE TABLE mon (node text, round int)') foreach @nodes;

sub case
{
	my ($what, $act) = @_;
	# wait until node1 leads and node2 is queued
	$n2->poll_query_until('postgres', 'SELECT queue_position FROM leader_status()', '1');
	$n1->poll_query_until('postgres', 'SELECT leader_is_primary()');
	note "$what: term before: " . $etcd->etcdctl('get', "$prefix.term", '--print-value-only');
	my $mon = tw_monitor_start(nodes => \@nodes, table => 'mon');
	usleep(1_000_000);
	$proxy->freeze;
	my $t0 = time();
	$act->();
	usleep(22_000_000);
	my $r = $mon->stop;
	$proxy->thaw;
	note "$what: monitor: " . tw_monitor_summary($r);
	my $line = sprintf('%s: two leaders %d, two writers %d rounds; node1 last led %.2f s, node2 first led %s after the partition',
		$what, $r->{two_leader_rounds}, $r->{two_write_rounds}, ($r->{last_leader}{node1} // $t0) - $t0,
		defined $r->{first_leader}{node2} ? sprintf('%.2f s', $r->{first_leader}{node2} - $t0) : 'never');
	note $line;
	push @report, $line;
	is($r->{two_leader_rounds}, 0, "$what: never two leaders");
	is($r->{two_write_rounds}, 0, "$what: never two writers");
}

my ($k) = grep { $_->{is_self} eq 't' } le_candidates($n1);
case('a (term + key deleted)', sub {
	$etcd->etcdctl('del', "$prefix.term");
	$etcd->etcdctl('del', $k->{key});
});

# node1 rejoined behind node2: make node1 lead again
$n1->poll_query_until('postgres', 'SELECT queue_position FROM leader_status()', '1');
$n2->safe_psql('postgres', 'SELECT leader_resign()');
($k) = grep { $_->{is_self} eq 't' } le_candidates($n1);
case('b (term garbage + key deleted)', sub {
	$etcd->etcdctl('put', "$prefix.term", 'garbage');
	$etcd->etcdctl('del', $k->{key});
});

$_->stop('fast') foreach @nodes;

# c. replicated
{
	my $cp = '/leader_election/t096c';
	my $proxy2 = TcpProxy->new(target_port => $etcd->client_port, name => 'p2');
	$proxy2->start;
	my ($r1, $r2) = le_replicated_cluster($etcd, n => 2, prefix => $cp,
		node_conf => { n1 => "leader_election.lease_ttl = 20\nleader_election.endpoints = '" . $proxy2->url . "'",
			n2 => "leader_election.lease_ttl = 4\nleader_election.endpoints = '" . $etcd->url . "'" });
	my @rn = ($r1, $r2);
	$r1->safe_psql('postgres', 'CREATE TABLE mon (node text, round int); CREATE TABLE t (id int PRIMARY KEY, node text)');
	le_wait_cluster_record($etcd, $cp, node => 'n1');
	my ($rk) = grep { $_->{is_self} eq 't' } le_candidates($r1);
	my $mon = tw_monitor_start(nodes => \@rn, table => 'mon');
	my $w = tw_writer_start(connstr => le_rw_connstr(@rn), table => 't', pause_ms => 5);
	usleep(1_500_000);
	$proxy2->freeze;
	my $t0 = time();
	$etcd->etcdctl('del', "$cp.term");
	$etcd->etcdctl('del', $rk->{key});
	usleep(22_000_000);
	$proxy2->thaw;
	usleep(3_000_000);
	my $res = $w->stop;
	my $r = $mon->stop;
	note 'c: monitor: ' . tw_monitor_summary($r);
	my @l = le_leaders(@rn);
	my $lost = '-';
	if (@l == 1) { my @lo = tw_lost($res, $l[0], 't'); $lost = scalar(@lo) . (@lo ? " (ids $lo[0]..$lo[-1])" : ''); }
	my %per; $per{$res->{acked}{$_}}++ foreach keys %{ $res->{acked} };
	my $line = sprintf('c (replicated): two leaders %d, two writers %d rounds; n1 last led %.2f s, n2 first led %s after the partition; leader at the end %s; acked per node %s; lost on it %s',
		$r->{two_leader_rounds}, $r->{two_write_rounds}, ($r->{last_leader}{n1} // $t0) - $t0,
		defined $r->{first_leader}{n2} ? sprintf('%.2f s', $r->{first_leader}{n2} - $t0) : 'never',
		(join(',', map { $_->name } @l) || 'nobody'), join(' ', map { "$_=$per{$_}" } sort keys %per), $lost);
	note $line;
	push @report, $line;
	is($r->{two_write_rounds}, 0, 'c: never two writers');
	$_->stop('immediate') foreach @rn;
}

diag "REPORT: $_" foreach @report;
$etcd->stop;
done_testing();
