# A slow etcd (issue 15): node1 reaches etcd only through a TCP proxy
# (t/TcpProxy.pm) that can delay every chunk it forwards; node2 talks to
# etcd directly. lease_ttl = 3, request_timeout = 500 ms on node1. With a
# delay of 1.5 s each way (above request_timeout), every request of node1
# times out:
#
#  a. node1 leads when the delay starts; its worker gets SIGTERM: it
#     releases (the release itself times out) and exits promptly. node2
#     takes over.
#  b. The restarted worker's requests time out and are retried:
#     last_error says "timed out", and node1 does not lead.
#  c. SIGHUP (a changed node_name and pg_reload_conf()) is applied
#     promptly: leader_status() shows the new name.
#  d. With the delay gone, node1 (under its new name) queues behind node2:
#     it kept retrying.
#  e. The delay is back and node1, which holds a key, is stopped with
#     pg_ctl stop -m fast: promptly, whatever etcd does.
#
# "Promptly" is asserted as < 2 s (the goal is 100 ms; a release waits at
# most request_timeout for etcd), and the times are printed.

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

my $prefix = '/leader_election/t046';
my $ttl    = 3;
my $delay  = 1500;

my $etcd = EtcdServer->new('etcd');
$etcd->start;
my $proxy = TcpProxy->new(target_port => $etcd->client_port, name => 'slow');
$proxy->start;

my $n1 = le_node('node1', $etcd, prefix => $prefix, lease_ttl => $ttl,
	endpoints  => $proxy->url,
	extra_conf => "leader_election.request_timeout = 500");
ok(le_wait_leader($n1), 'node1 leads');
my $n2 = le_node('node2', $etcd, prefix => $prefix, lease_ttl => $ttl);
ok($n2->poll_query_until('postgres', 'SELECT role, queue_position FROM leader_status()',
		'follower|1'), 'node2 is queued behind node1');

#
# a. SIGTERM to the worker of a leader whose etcd became slow.
#
$proxy->set_delay($delay);
{
	my $what = 'a (SIGTERM, leading)';
	my $pid = le_worker_pid($n1);
	is($n1->safe_psql('postgres', 'SELECT leader_is_primary()'), 't',
		"$what: node1 still leads when etcd is slow");
	# the renewal in flight is now slow too
	usleep(300_000);
	my $t0 = time();
	kill 'TERM', $pid;
	my $gone = le_time_until(30, sub { !kill(0, $pid) || _zombie($pid) });
	ok(defined $gone && $gone < 2, "$what: the worker exits within 2 s of SIGTERM");
	note sprintf('%s: the worker exited %.0f ms after SIGTERM', $what, 1000 * ($gone // -1));
	ok(le_wait_leader($n2), "$what: node2 leads");
}

# A process that exited but was not reaped yet by its parent.
sub _zombie
{
	my ($pid) = @_;
	open(my $fh, '<', "/proc/$pid/stat") or return 1;
	my $stat = <$fh>;
	close $fh;
	return $stat =~ /^\d+ \(.*\) Z /s ? 1 : 0;
}

#
# b. The restarted worker's requests time out, and are retried.
#
{
	my $what = 'b (requests time out)';
	ok( $n1->poll_query_until('postgres',
			"SELECT last_error ~* 'timed out' FROM leader_status()"),
		"$what: node1's last_error says its request timed out");
	note "$what: last_error: "
	  . $n1->safe_psql('postgres', 'SELECT last_error FROM leader_status()');
	is($n1->safe_psql('postgres', 'SELECT leader_is_primary()'), 'f',
		"$what: node1 does not lead");
}

#
# c. SIGHUP while etcd is slow.
#
{
	my $what = 'c (SIGHUP)';
	$n1->append_conf('postgresql.conf', "leader_election.node_name = 'node1b'\n");
	my $t0 = time();
	$n1->safe_psql('postgres', 'SELECT pg_reload_conf()');
	my $seen = le_time_until(30,
		sub { $n1->safe_psql('postgres', 'SELECT node_name FROM leader_status()') eq 'node1b' });
	ok(defined $seen && $seen < 2, "$what: leader_status() shows the new node_name within 2 s");
	note sprintf('%s: the new node_name was shown %.0f ms after pg_reload_conf()',
		$what, 1000 * ($seen // -1));
}

#
# d. The delay goes: node1 joins behind node2.
#
$proxy->set_delay(0);
ok( $n1->poll_query_until('postgres',
		'SELECT role, queue_position, leader_name FROM leader_status()',
		'follower|1|node2'),
	'd (etcd fast again): node1b queues behind node2');
is(le_candidate_names($n2), 'node2,node1b', 'd (etcd fast again): the queue is node2, node1b');

#
# e. pg_ctl stop -m fast of a node that holds a key, with etcd slow.
#
{
	my $what = 'e (pg_ctl stop -m fast)';
	$proxy->set_delay($delay);
	usleep(300_000);
	my $t0 = time();
	$n1->stop('fast');
	my $took = time() - $t0;
	cmp_ok($took, '<', 2, "$what: node1 stops within 2 s");
	note sprintf('%s: pg_ctl stop -m fast took %.0f ms', $what, 1000 * $took);
	is(join(',', map { $_->name } le_leaders($n2)), 'node2', "$what: node2 still leads");
}

done_testing();
