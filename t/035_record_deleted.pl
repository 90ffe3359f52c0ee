# A deposed primary must never lead again, even once the cluster record
# has been deleted.
#
# Contract (README, "Streaming replication"): "a deposed primary never
# leads again"; the cluster record says who may write as the cluster's
# primary, and "the leader writes it ... as soon as a standby streams from
# it". If the record goes (an operator's `etcdctl del`, a restore of etcd
# from an older snapshot), the leader must write it again, and a deposed
# primary must not take the missing record for "no replicated cluster here"
# and stand.
#
# n1 primary, n2 standby (le_replicated_cluster, lease_ttl = 3). n1
# crashes, n2 promotes (timeline 2) and leads. n1 is started again: a
# deposed primary on timeline 1, not eligible. Then `etcdctl del
# <prefix>.cluster`. Asserted:
#  - within 15 s the record is back, naming n2 on timeline 2;
#  - from the delete until 3 TTL after the record is back (at most 25 s),
#    n1 never stands (eligible or queued) and never leads;
#  - n2 stops cleanly (-m fast): for 3 TTL n1 never leads.

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

my $prefix = '/leader_election/t035';
my $ttl    = 3;

my $etcd = EtcdServer->new('etcd');
$etcd->start;

my ($n1, $n2) =
  le_replicated_cluster($etcd, n => 2, prefix => $prefix, lease_ttl => $ttl);
my $sysid = le_system_identifier($n1);
ok( le_wait_cluster_record($etcd, $prefix,
		system_identifier => $sysid, timeline => 1, node => 'n1'),
	'the cluster record names n1 on timeline 1');
$n1->safe_psql('postgres', 'CREATE TABLE t (id int PRIMARY KEY)');
$n1->wait_for_catchup($n2, 'replay');

# n1 crashes; n2 takes over on timeline 2
$n1->stop('immediate');
ok(le_wait_leader($n2), 'n2 leads after n1 crashed');
ok( le_wait_cluster_record($etcd, $prefix,
		system_identifier => $sysid, timeline => 2, node => 'n2'),
	'the cluster record names n2 on timeline 2');

# n1 comes back: a deposed primary
$n1->start;
ok( $n1->poll_query_until(
		'postgres',
		'SELECT in_recovery, timeline, eligible, queue_position IS NULL, '
		  . 'leader_is_primary() FROM leader_status()',
		'f|1|f|t|f'),
	'n1 restarted: a primary on timeline 1, not eligible, not queued, not leading');
note 'n1: ineligible_reason: ' . (le_status($n1)->{ineligible_reason} // '(null)');

# the record is deleted
$etcd->etcdctl('del', "$prefix.cluster");
my $t_del = time();

# until the record is back (at most 15 s) and 3 TTL more (at most 25 s in
# all): n1 never stands, never leads
my ($back, $stood) = (undef, '');
my $deadline = $t_del + 25;
while (time() < $deadline)
{
	if (!defined $back)
	{
		my $rec = le_cluster_record($etcd, $prefix);
		$back = time()
		  if $rec
		  && ($rec->{node} // '') eq 'n2'
		  && ($rec->{timeline} // '') eq '2'
		  && ($rec->{system_identifier} // '') eq $sysid;
	}
	my $s = $n1->safe_psql('postgres',
		'SELECT eligible, queue_position, leader_is_primary(), role, phase FROM leader_status()');
	my ($eligible, $pos, $leads) = split /\|/, $s;
	$stood ||= sprintf('%.1f s after the delete: n1 %s (eligible|queue_position|'
		  . 'leader_is_primary|role|phase)', time() - $t_del, $s)
	  if $eligible eq 't' || $pos ne '' || $leads eq 't';
	last if defined $back && time() > $back + 3 * $ttl;
	usleep(100_000);
}
ok(defined $back && $back - $t_del <= 15,
	'the leader n2 writes the cluster record again within 15 s')
  or diag 'record now: '
  . (le_cluster_record($etcd, $prefix) // { _raw => '(none)' })->{_raw};
note sprintf('record back %.1f s after the delete', $back - $t_del) if defined $back;
is($stood, '', 'after the record was deleted, the deposed n1 never stands nor leads');

# the leader stops cleanly: the deposed n1 must not take over
$n2->stop('fast');
my $t_stop = time();
my $bad = le_holds(
	3 * $ttl,
	sub {
		my $leads = $n1->safe_psql('postgres', 'SELECT leader_is_primary()');
		return $leads eq 't'
		  ? sprintf('n1 leads %.1f s after n2 stopped', time() - $t_stop)
		  : '';
	});
is($bad, '', 'n2 stopped cleanly: the deposed n1 never leads (3 TTL)');
le_refused($n1, 'INSERT INTO t VALUES (1)', 'INSERT on the deposed n1');
note 'n1: '
  . $n1->safe_psql('postgres',
	'SELECT role, phase, queue_position, eligible, ineligible_reason FROM leader_status()');

$n1->stop('immediate');
$etcd->stop;
done_testing();
