# Reconfiguring the nodes of a replicated cluster one at a time must never
# make two writable nodes, nor lose an acknowledged commit.
#
# Contract (README: "two nodes never both accept writes"; Configuration:
# "Changing prefix ... makes the node leave the election (releasing
# leadership) and join again with the new value"; Streaming replication:
# "a deposed primary never leads again"). An operator moves a cluster to
# another election -- a new leader_election.prefix, or endpoints on another
# etcd -- node by node, with a reload each. Whatever order the nodes are
# reconfigured in, at no moment may two nodes accept writes, and once every
# node is moved exactly one leads, in the new election, with every commit
# that was acknowledged to a client.
#
# Three clusters of n1 (primary) and two standbys (le_replicated_cluster,
# lease_ttl = 3), each with:
#  - a client that commits one row per transaction through a
#    target_session_attrs=read-write string listing the standbys first
#    (TwoWriters.pm: tw_writer_start), connecting anew every 50 commits and
#    after any error, and records which ids were acknowledged;
#  - the two-writers monitor (leader_is_primary() and an INSERT on every
#    node every 20 ms) from before the first change to the end.
# Cases (a setting changed in postgresql.conf and reloaded, node by node,
# 8 s apart):
#  a. prefix changed on the primary first, then on the standbys;
#  b. prefix changed on the standbys first, then on the primary;
#  c. endpoints moved to a second, separate etcd server, primary first.
# Asserted: the monitor never saw two leaders or two writers; within 60 s of
# the last change exactly one node leads and its key is first in the new
# election; every acknowledged id is on that node. Which node leads at the
# end, and how fast, is not asserted.

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

my $ttl = 3;

my $etcd = EtcdServer->new('etcd');
$etcd->start;

# One case: a cluster named @$names on $prefix (etcd $etcd), the changes
# @$steps ([ node index, postgresql.conf line ]), and the new election
# ($new_etcd, $new_prefix) in which one node must lead at the end.
sub reconfigure_case
{
	my (%c) = @_;
	my $what = $c{what};
	my @nodes = le_replicated_cluster(
		$etcd,
		names     => $c{names},
		prefix    => $c{prefix},
		lease_ttl => $ttl);
	my $primary = $nodes[0];
	ok( le_wait_cluster_record($etcd, $c{prefix}, node => $primary->name, timeline => 1),
		"$what: the cluster record names " . $primary->name);
	$primary->safe_psql('postgres',
		'CREATE TABLE t (id bigint PRIMARY KEY, node text); '
		  . 'CREATE TABLE mon (node text, round int)');
	$primary->wait_for_catchup($_, 'replay') foreach @nodes[ 1 .. $#nodes ];

	my $mon = tw_monitor_start(nodes => \@nodes, table => 'mon');
	# standbys first in the string, and a new connection every 50 commits:
	# the client lands on whichever node takes writes
	my $writer = tw_writer_start(
		connstr         => le_rw_connstr(reverse @nodes),
		table           => 't',
		reconnect_every => 50);
	usleep(2_000_000);

	foreach my $step (@{ $c{steps} })
	{
		my ($i, $line) = @$step;
		my $node = $nodes[$i];
		note "$what: " . $node->name . ": $line (reload)";
		$node->append_conf('postgresql.conf', "$line\n");
		$node->reload;
		usleep(8_000_000);
	}

	# the final state: one node leads, first in the new election
	my $deadline = time() + 60;
	my ($leader, $queue) = (undef, '');
	while (time() < $deadline)
	{
		my @l = le_leaders(@nodes);
		$queue = join(',', map { $_->{value} } $c{new_etcd}->get_prefix($c{new_prefix}));
		if (@l == 1 && $queue =~ /^\Q${\ $l[0]->name }\E(,|$)/)
		{
			$leader = $l[0];
			last;
		}
		usleep(250_000);
	}
	usleep(1_000_000);    # the writer commits on the final leader too
	my $res = $writer->stop;
	my $r   = $mon->stop;
	note "$what: monitor: " . tw_monitor_summary($r);
	note "$what: writer: $res->{attempts} attempts, "
	  . scalar(keys %{ $res->{acked} })
	  . ' acknowledged; by node: '
	  . join(', ', map { my $n = $_; "$n " . scalar(grep { $_ eq $n } values %{ $res->{acked} }) }
		  map { $_->name } @nodes)
	  . '; errors: '
	  . join('; ', map { "$res->{errors}{$_} x $_" } sort keys %{ $res->{errors} });

	is($r->{two_leader_rounds}, 0, "$what: never two nodes with leader_is_primary() true");
	is($r->{two_write_rounds}, 0, "$what: never two nodes that accepted a write");
	ok($leader, "$what: within 60 s of the last change one node leads, first in the new election")
	  or diag "$what: leaders: "
	  . join(',', map { $_->name } le_leaders(@nodes))
	  . "; new election's queue: '$queue'; "
	  . join('; ',
		map { $_->name . ': '
			  . $_->safe_psql('postgres',
				'SELECT role, phase, queue_position, in_recovery, timeline, eligible, ineligible_reason FROM leader_status()') }
		  @nodes);
	cmp_ok(scalar(keys %{ $res->{acked} }), '>', 0, "$what: the client had commits acknowledged");
	if ($leader)
	{
		note "$what: " . $leader->name . ' leads at the end';
		my @lost = tw_lost($res, $leader, 't');
		is(scalar(@lost), 0,
			"$what: every acknowledged id is on the final leader " . $leader->name)
		  or diag "$what: "
		  . scalar(@lost)
		  . ' acknowledged ids missing, e.g. '
		  . join(',', map { "$_ (by $res->{acked}{$_})" } @lost[ 0 .. ($#lost < 9 ? $#lost : 9) ]);
	}
	$_->stop('immediate') foreach @nodes;
	return;
}

#
# a. The prefix changes on the primary first.
#
reconfigure_case(
	what       => 'a (prefix, primary first)',
	names      => [qw(a1 a2 a3)],
	prefix     => '/leader_election/t033a',
	new_etcd   => $etcd,
	new_prefix => '/leader_election/t033a_new',
	steps      => [
		map { [ $_, "leader_election.prefix = '/leader_election/t033a_new'" ] } 0, 1, 2
	]);

#
# b. The prefix changes on the standbys first.
#
reconfigure_case(
	what       => 'b (prefix, standbys first)',
	names      => [qw(b1 b2 b3)],
	prefix     => '/leader_election/t033b',
	new_etcd   => $etcd,
	new_prefix => '/leader_election/t033b_new',
	steps      => [
		map { [ $_, "leader_election.prefix = '/leader_election/t033b_new'" ] } 2, 1, 0
	]);

#
# c. The endpoints move to another etcd, on the primary first.
#
my $etcd2 = EtcdServer->new('etcd2');
$etcd2->start;
reconfigure_case(
	what       => 'c (endpoints, primary first)',
	names      => [qw(c1 c2 c3)],
	prefix     => '/leader_election/t033c',
	new_etcd   => $etcd2,
	new_prefix => '/leader_election/t033c',
	steps => [ map { [ $_, "leader_election.endpoints = '" . $etcd2->url . "'" ] } 0, 1, 2 ]);

$etcd2->stop;
$etcd->stop;
done_testing();
