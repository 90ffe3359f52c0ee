# Attack on issue 16 (synchronous_mode = on): the cluster record is what
# tells a standby whether it may take over after a crash.  What if it is
# missing (an operator's `etcdctl del`, README: the leader writes it again at
# once -- but not when the leader is the one that crashed), or is an older
# copy from before synchronous mode (etcd restored from an older snapshot)?
#
# n1 primary, n2 its synchronous standby, n3 (outside the set) streaming
# through a TcpProxy; a client commits single-row INSERTs.  n3's link is
# stalled so that n3 lacks acknowledged commits; then n2 is frozen (SIGSTOP,
# all processes), n1 crashed (-m immediate), the proxy stopped (n3 never gets
# the stalled WAL), and
#  1. the record replaced by an older copy without synchronous mode
#     (synchronous_mode off): n3 must not promote (12 s);
#  2. the record deleted: n3 must not promote (12 s);
#  3. n2 resumed and the record restored: n3 never promotes, n2 takes over
#     with every acknowledged id.
# If n3 promotes, the acknowledged ids it lacks are counted and reported.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use Time::HiRes qw(usleep time);

use FindBin;
use lib $FindBin::RealBin;

use AckedWriter;
use EtcdServer;
use TcpProxy;
use LeaderElectionTest;

my $prefix = '/leader_election/t099';
my $ttl    = 2;

my $etcd = EtcdServer->new('etcd');
$etcd->start;

my @nodes = le_replicated_cluster($etcd, n => 3, prefix => $prefix,
	lease_ttl => $ttl, extra_conf => "leader_election.synchronous_mode = on\nlisten_addresses = '127.0.0.1'\n");
my ($n1, $n2, $n3) = @nodes;
my %byname = map { $_->name => $_ } @nodes;

sub record_set
{
	my $rec = le_cluster_record($etcd, $prefix) || {};
	return ($rec->{synchronous_mode} // 'off',
		join(',', @{ $rec->{synchronous} || [] }));
}

sub lease_of
{
	my ($name) = @_;
	foreach my $kv ($etcd->get_prefix($prefix))
	{
		return $kv->{lease} if $kv->{value} eq $name;
	}
	return undef;
}

sub primary_nodes
{
	return join(',', map { $_->name } grep {
			my $n = $_;
			my ($rc, $out) = ('', '');
			$rc = $n->psql('postgres', 'SELECT pg_is_in_recovery()',
				stdout => \$out, timeout => 10);
			$rc == 0 && $out eq 'f'
	} @_);
}


$n1->safe_psql('postgres',
	'CREATE TABLE t (id bigint PRIMARY KEY, node text NOT NULL)');
my ($proxy, $streams) = le_stream_via_proxy($n1, $n3);
ok($streams, 'n3 streams from n1 through the proxy');
ok($n1->poll_query_until('postgres',
	"SELECT array_to_string(synchronous_standbys, ',') FROM leader_status()", 'n2'),
	'n1 records n2 as its synchronous standby');
# the client (t/AckedWriter.pm, as in t/054): commits INSERTs into t and
# writes down every acknowledged id. Here a commit answered with any warning
# at all is no acknowledgement (left out of the checks), not only one whose
# wait for the synchronous standby was cancelled.
my $writer =
  AckedWriter->start(connstr => le_rw_connstr(@nodes), warned => qr/./s);
ok(defined $writer->wait_acked_on('n1', 200, 60), 'the client commits on n1');

$proxy->freeze;
ok(defined $writer->wait_acked_on('n1', 300, 60), 'commits go on with n3 stalled');
my $rec = le_cluster_record($etcd, $prefix);
note "record before the crash: $rec->{_raw}";
le_signal_node($n2, 'STOP');
$n1->stop('immediate');
$proxy->stop;
my $t_crash = time();

# the standby n3 must not promote: 12 s of watching, and if it did, what it lacks
sub n3_never_promotes
{
	my ($what) = @_;
	my $bad = le_holds(12, sub {
			return primary_nodes($n3) ne '' ? 'n3 (outside the set) promoted' : '';
		});
	is($bad, '', "$what: n3 never promotes");
	note "$what: n3: " . $n3->safe_psql('postgres',
		'SELECT phase, queue_position, yielded, succession, synchronous_mode, '
		  . 'automatic_failover FROM leader_status()');
	if ($bad ne '')
	{
		$n3->poll_query_until('postgres', 'SELECT pg_is_in_recovery()', 'f');
		my ($nacked, @lost) = $writer->lost_on($n3);
		is("@lost", '', "$what: every acknowledged id ($nacked) is on n3")
		  or diag "$what: n3 lacks " . scalar(@lost) . " of $nacked acknowledged ids";
		return 0;
	}
	return 1;
}

my $fine;
#
# 1. an older copy of the record, from before synchronous mode (n3 still queued)
#
{
	my $old = JSON::PP->new->decode($rec->{_raw});
	delete $old->{synchronous};
	delete $old->{synchronous_mode};
	$etcd->etcdctl('put', "$prefix.cluster", JSON::PP->new->canonical->encode($old));
	$fine = n3_never_promotes('1 (older record, no synchronous mode)');
}

#
# 2. the record deleted
#
$etcd->etcdctl('del', "$prefix.cluster");
$fine = n3_never_promotes('2 (record deleted)') if $fine;

#
# 3. n2 resumed, the record as it was at the crash.  The deletion in step 2
# made n3 leave the queue (a replicated standby does not stand without a
# record), and n2 lost its lease while frozen: the queue is empty.  A
# recorded synchronous standby stands even so (it has every acknowledged
# commit, however long ago its stream ended), so n2 takes over.
#
le_signal_node($n2, 'CONT');
if ($fine)
{
	$etcd->etcdctl('put', "$prefix.cluster", $rec->{_raw});
	my $took = le_time_until(30, sub { primary_nodes($n2, $n3) ne '' });
	note '3: after n2 resumed and the record was restored: '
	  . (defined $took ? sprintf('%s promoted after %.1f s', primary_nodes($n2, $n3), $took)
		: 'no node promoted in 30 s (stuck: an operator must act)');
	note '3: n2: ' . $n2->safe_psql('postgres',
		'SELECT phase, queue_position, ineligible_reason FROM leader_status()');
	is(primary_nodes($n3), '', '3: n3 (outside the set) never promoted');
	ok(defined $took, '3: n2, the recorded synchronous standby, takes over');
	if (defined $took)
	{
		my ($nacked, @lost) = $writer->lost_on($n2);
		is("@lost", '', "3: every acknowledged id ($nacked) is on n2");
	}
}
$writer->stop;
done_testing();
