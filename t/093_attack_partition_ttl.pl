# Attack (issue 15): the leader alone cut off from etcd for about its TTL.
# A streaming-replication pair, lease_ttl = 4: n1 (primary, leader) reaches
# etcd only through a proxy, n2 (standby, queued) directly. The proxy is
# frozen for 3.2, 3.6, 3.9, 4.2, 4.6 s in turn: from just past n1's local
# validity (TTL - 10 %) to past etcd's own expiry. Each time n1 either comes
# back with its lease (etcd still held it: same token, new term) or loses it
# and n2 takes over; whichever happens, a writer through a read-write
# connection string must lose no acknowledged commit, and a monitor polling
# both nodes every 20 ms must never see two leaders or two nodes that accept
# a write. Once n2 has taken over the sweep stops (n1 would need a rewind).
# Each time a transaction on n1 writes before the freeze and commits after
# it: if n1 was fenced in between (polled every 50 ms while frozen), the
# commit must fail, whether n1 went through "lapsed" or only missed a
# confirmation (its phase stays "leading").

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

my $ttl    = 4;
my $prefix = '/leader_election/t093';

my $etcd = EtcdServer->new('etcd');
$etcd->start;
my $proxy = TcpProxy->new(target_port => $etcd->client_port);
$proxy->start;

my ($n1, $n2) = le_replicated_cluster($etcd, n => 2, prefix => $prefix,
	lease_ttl => $ttl,
	# n2 is copied from n1 with its postgresql.conf: it gets its own endpoint back
	node_conf => {
		n1 => "leader_election.endpoints = '" . $proxy->url . "'",
		n2 => "leader_election.endpoints = '" . $etcd->url . "'"
	});
my @nodes = ($n1, $n2);
$n1->safe_psql('postgres',
	'CREATE TABLE w (id int PRIMARY KEY, node text); CREATE TABLE mon (node text, round int)');

my $writer = tw_writer_start(connstr => le_rw_connstr(@nodes), table => 'w', pause_ms => 10);
my $mon = tw_monitor_start(nodes => \@nodes, table => 'mon');

my $leader = $n1;
foreach my $d (3.2, 3.6, 3.9, 4.2, 4.6)
{
	ok( defined le_time_until(60, sub {
			$n1->safe_psql('postgres', 'SELECT leader_is_primary()') eq 't'
			  && $n2->safe_psql('postgres', 'SELECT role, queue_position FROM leader_status()') eq 'follower|1';
		}),
		"$d s: n1 leads, n2 queued");
	my $before = le_status($n1);
	# a transaction that writes before the freeze, committed after it
	my $id = -int($d * 10);
	my $bg = le_session($n1);
	my ($out, $err) = le_bg_query($bg, "BEGIN; INSERT INTO w VALUES ($id, 'n1'); SELECT 'ok'");
	is($out, 'ok', "$d s: a transaction on n1 wrote before the freeze");
	$proxy->freeze;
	# was n1 ever fenced while frozen?
	my $fenced = 0;
	my $t_freeze = time();
	while (time() - $t_freeze < $d)
	{
		$fenced = 1 if $n1->safe_psql('postgres', 'SELECT leader_is_primary()') eq 'f';
		usleep(50_000);
	}
	$proxy->thaw;
	my $t = le_time_until(4 * $ttl, sub { le_leaders(@nodes) == 1 });
	ok(defined $t, "$d s: one leader again");
	my @l = le_leaders(@nodes);
	$leader = $l[0] if @l == 1;
	my $after = le_status($leader);
	note sprintf('%s s frozen: %s leads %.2f s after the thaw, token %s (before: n1 with %s)',
		$d, $leader->name, $t // -1, $after->{fencing_token}, $before->{fencing_token});
	($out, $err) = le_bg_query($bg, 'COMMIT');
	$bg->quit;
	my $committed = $n1->safe_psql('postgres', "SELECT count(*) FROM w WHERE id = $id");
	note "$d s: n1 fenced during the freeze: $fenced; COMMIT: "
	  . ($err =~ /(\d{5}: .*)/ ? $1 : 'succeeded');
	# a leadership lost between the write and the commit: the commit must fail
	is($committed, '0', "$d s: n1 was fenced in between: the transaction did not commit")
	  if $fenced;
	last if $leader == $n2;
}

my $r = $mon->stop;
note 'monitor: ' . tw_monitor_summary($r);
is($r->{two_leader_rounds}, 0, 'never two leaders');
is($r->{two_write_rounds},  0, 'never two nodes that accepted a write');

usleep(1_000_000);
my $res = $writer->stop;
my @lost = tw_lost($res, $leader, 'w');
note sprintf('writer: %d acknowledged of %d attempts; errors: %s',
	scalar(keys %{ $res->{acked} }), $res->{attempts},
	join('; ', map { "$res->{errors}{$_} x $_" } sort keys %{ $res->{errors} }));
is(scalar(@lost), 0, 'every acknowledged commit is on the last leader ' . $leader->name)
  or diag 'lost: ' . join(',', @lost[ 0 .. ($#lost < 20 ? $#lost : 19) ]);

# what n1 did each time
note $_ foreach (grep { /lapsed|still holds|leaves the election|now the leader|takes over/ }
	split /\n/, slurp_file($n1->logfile) . slurp_file($n2->logfile));

done_testing();
