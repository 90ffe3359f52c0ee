# A planned switchover whose successor never takes over must not lose
# acknowledged commits.
#
# Contract (README, "Planned switchover" and "Data loss"): "Every commit
# acknowledged before leader_resign() returned is on the new primary";
# a planned switchover loses nothing. The primary waits until the next in
# line has flushed all its WAL, then releases its key. If that successor
# then cannot promote (README: "a promotion does not finish within
# max(lease_ttl, 5 s) ... the node gives up its key so that the next in line
# can try"), the next in line after it may lack the commits the primary
# acknowledged last: it must not lead without them.
#
# n1 primary, n2 next in line, n3 after it (le_replicated_cluster,
# lease_ttl = 3, max_lag_on_failover = 16MB so that a small lag alone does
# not keep n3 out). n3 streams from n1 through a TCP proxy (TcpProxy.pm),
# which is frozen: n3 receives nothing more but still believes it streams.
# n1 commits 20 rows, each acknowledged. n2's startup process is frozen
# (SIGSTOP): n2 receives and flushes WAL, so leader_resign() on n1 succeeds,
# but it cannot end recovery, and gives up after its promotion bound.
# Asserted, for 20 s after leader_resign() returned: no node that leads
# lacks an acknowledged row; and if nobody leads at the end, n3 says why it
# does not stand (eligible false, an ineligible_reason).
# The scenario runs twice: as is, and with the cluster record deleted right
# after leader_resign() returned (the record's "stopping" is what keeps n3
# out; without it n3 must not stand either).

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

# every process this test froze is thawed, whatever happens
my %frozen;
END { kill 'CONT', $_ foreach keys %frozen; }

my $etcd = EtcdServer->new('etcd');
$etcd->start;

# The pid of $node's startup process.
sub startup_pid
{
	my ($node) = @_;
	my $postmaster = le_postmaster_pid($node);
	foreach my $dir (glob('/proc/[0-9]*'))
	{
		open(my $sf, '<', "$dir/stat") or next;
		my $stat = <$sf> // '';
		close $sf;
		next unless $stat =~ /^.*\)\s+\S+\s+(\d+)/s && $1 == $postmaster;
		open(my $cf, '<', "$dir/cmdline") or next;
		my $cmd = <$cf> // '';
		close $cf;
		return (split m{/}, $dir)[-1] if $cmd =~ /^postgres: .*startup/;
	}
	die 'no startup process below ' . $node->name . "'s postmaster $postmaster";
}

# One run of the scenario on prefix t034<variant>; with $delete_record, the
# cluster record is deleted right after leader_resign() returned.
sub scenario
{
	my ($variant, $delete_record) = @_;
	my $prefix = "/leader_election/t034$variant";
	note "variant $variant: " . ($delete_record ? 'the record deleted after the resign' : 'as is');

	# every node also listens on TCP (the proxy connects there)
	my ($n1, $n2, $n3) = le_replicated_cluster(
		$etcd,
		n          => 3,
		prefix     => $prefix,
		lease_ttl  => 3,
		extra_conf => "listen_addresses = '127.0.0.1'\n"
		  . "leader_election.max_lag_on_failover = '16MB'");
	my @nodes = ($n1, $n2, $n3);
	ok( le_wait_cluster_record($etcd, $prefix, node => 'n1', timeline => 1),
		'the cluster record names n1 on timeline 1');

	# n3 streams from n1 through a proxy (a reload restarts its WAL receiver)
	my ($proxy, $streams) = le_stream_via_proxy($n1, $n3);
	ok($streams, 'n3 streams from n1 through the proxy');
	my $deadline = time() + 60;
	usleep(200_000) while le_candidate_names($n1) ne 'n1,n2,n3' && time() < $deadline;
	is(le_candidate_names($n1), 'n1,n2,n3', 'queue: n1, n2, n3');
	ok($n3->poll_query_until('postgres', 'SELECT eligible FROM leader_status()', 't'),
		'n3 is eligible');

	$n1->safe_psql('postgres',
		'CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100)');
	$n1->wait_for_catchup($_, 'flush') foreach ($n2, $n3);

	# n3's network stalls; n1 commits 20 rows, one per transaction
	$proxy->freeze;
	my @acked;
	foreach my $id (101 .. 120)
	{
		my $out = $n1->safe_psql('postgres', "INSERT INTO t VALUES ($id) RETURNING id");
		push @acked, $id if $out eq $id;
	}
	is(scalar(@acked), 20, 'n1 acknowledged 20 more commits (ids 101..120)');
	$n1->wait_for_catchup($n2, 'flush');
	note 'n1 sees: '
	  . $n1->safe_psql('postgres',
		'SELECT string_agg(application_name || \' flushed \' || flush_lsn, \', \' ORDER BY 1) '
		  . 'FROM pg_stat_replication')
	  . '; its WAL ends at '
	  . $n1->safe_psql('postgres', 'SELECT pg_current_wal_lsn()');

	# n2 cannot end recovery: its startup process is frozen
	my $startup = startup_pid($n2);
	$frozen{$startup} = 1;
	kill 'STOP', $startup;
	note "n2's startup process $startup frozen";

	my ($state, $err) = le_sqlstate($n1, 'SELECT leader_resign()');
	is($state, '00000', 'leader_resign() on n1 succeeds (n2 had flushed all its WAL)')
	  or diag $err;
	my $t_resigned = time();
	if ($delete_record)
	{
		$etcd->etcdctl('del', "$prefix.cluster");
		note 'cluster record deleted '
		  . sprintf('%.3f s', time() - $t_resigned)
		  . ' after leader_resign() returned';
	}

	# For 20 s: whoever leads must have every acknowledged row.
	my $want = scalar(@acked);
	my $id_list = join(',', @acked);
	my %led;
	my $bad = le_holds(
		20,
		sub {
			foreach my $n (le_leaders(@nodes))
			{
				my $name = $n->name;
				$led{$name} //= sprintf('%.1f s', time() - $t_resigned);
				my $has = $n->safe_psql('postgres',
					"SELECT count(*) FROM t WHERE id IN ($id_list)");
				return "$name leads with $has of the $want rows acknowledged by n1 "
				  . 'before leader_resign()'
				  if $has != $want;
			}
			return '';
		});
	is($bad, '', 'no node that lacks an acknowledged commit leads');
	note 'nodes seen leading after the resign (first seen): '
	  . (join(', ', map { "$_ at $led{$_}" } sort keys %led) || 'none');
	foreach my $n (@nodes)
	{
		note $n->name . ': '
		  . $n->safe_psql('postgres',
			'SELECT role, phase, queue_position, in_recovery, timeline, eligible, '
			  . 'ineligible_reason FROM leader_status()');
	}

	my @leaders = le_leaders(@nodes);
	if (@leaders == 0)
	{
		my $s3 = le_status($n3);
		ok($s3->{eligible} eq 'f' && ($s3->{ineligible_reason} // '') ne '',
			'nobody leads: n3 does not stand and says why')
		  or diag 'n3: eligible ' . $s3->{eligible} . ', reason ' . ($s3->{ineligible_reason} // '(null)');
	}
	else
	{
		is(scalar(@leaders), 1, 'one node leads at the end: ' . $leaders[0]->name);
	}

	kill 'CONT', $startup;
	delete $frozen{$startup};
	$proxy->thaw;
	$proxy->stop;
	$_->stop('immediate') foreach @nodes;
	# the next variant makes nodes of the same names
	$_->clean_node foreach @nodes;
	return;
}

scenario('a', 0);
scenario('b', 1);
$etcd->stop;
done_testing();
