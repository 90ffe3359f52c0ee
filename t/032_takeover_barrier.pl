# A successor must not lead while the old leader may still believe it leads.
#
# Contract (README, "Validity" and "Self-fencing"): two nodes never both
# accept writes. A leader whose worker is frozen keeps leader_is_primary()
# true until its validity deadline (its last answered renewal + TTL -
# margin), whatever happens in etcd meanwhile. So when its key disappears
# without the leader releasing it -- someone deletes it (etcdctl del) or
# revokes its lease (etcdctl lease revoke) -- the next in line must not lead
# before that deadline could have passed (up to one TTL); it must still
# lead within about two TTLs.
#
# Two independent nodes (no replication), lease_ttl = 4, node1 leads and
# node2 is queued. A two-writers monitor (TwoWriters.pm) polls both nodes
# every 20 ms: leader_is_primary() and an INSERT, through one session per
# node, and counts the rounds in which both said true or both committed.
#  a. the leader's worker frozen (SIGSTOP), its key deleted with etcdctl:
#     never two leaders or writers; the other node leads within 2 TTL + 10 s;
#  b. the same with its lease revoked (etcdctl lease revoke);
#  c. a voluntary handover stays fast: with lease_ttl = 10 (another pair,
#     another prefix), the successor leads within 1.5 s of leader_resign();
#  d. and within 1.5 s of a clean stop (pg_ctl stop -m fast) of the leader.
# (c and d hold before and after the barrier: a barrier of one TTL would
# make them take 10 s.)

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

my $prefix = '/leader_election/t032';
my $ttl    = 4;

# every worker this test froze is thawed, whatever happens
my %frozen;
END { kill 'CONT', $_ foreach keys %frozen; }

my $etcd = EtcdServer->new('etcd');
$etcd->start;

my ($n1, $n2) = le_leader_and_follower($etcd, prefix => $prefix, lease_ttl => $ttl);
my @nodes = ($n1, $n2);
le_bypass_psql($_, 'CREATE TABLE mon (node text, round int)') foreach @nodes;

# the leader and the other node, once one leads and the other is queued at 1
sub settled
{
	my ($what) = @_;
	my $deadline = time() + 60;
	while (time() < $deadline)
	{
		my @l = le_leaders(@nodes);
		if (@l == 1)
		{
			my ($other) = grep { $_ != $l[0] } @nodes;
			return ($l[0], $other)
			  if $other->safe_psql('postgres',
				'SELECT queue_position FROM leader_status()') eq '1';
		}
		usleep(200_000);
	}
	fail("$what: one node leads and the other is queued at 1 within 60 s");
	die "$what: the pair did not settle";
}

# The leader's worker is frozen, then $remove->($leader) makes its key go
# without it knowing; the monitor runs for TTL + 3 s.
sub takeover
{
	my ($what, $remove) = @_;
	my ($leader, $other) = settled($what);
	my $lname = $leader->name;
	my $oname = $other->name;
	note "$what: $lname leads, $oname is next";

	my $mon = tw_monitor_start(nodes => \@nodes, table => 'mon');
	usleep(1_000_000);
	my $worker = le_worker_pid($leader);
	$frozen{$worker} = 1;
	kill 'STOP', $worker;
	my $t_removed = time();
	$remove->($leader);
	note sprintf('%s: %s\'s worker frozen, its key removed %.3f s later',
		$what, $lname, time() - $t_removed);
	usleep(($ttl + 3) * 1_000_000);
	my $r = $mon->stop;
	kill 'CONT', $worker;
	delete $frozen{$worker};
	note "$what: monitor: " . tw_monitor_summary($r);

	is($r->{two_leader_rounds}, 0,
		"$what: never two nodes with leader_is_primary() true");
	is($r->{two_write_rounds}, 0, "$what: never two nodes that accepted a write");
	cmp_ok($r->{leader_rounds}{$lname}, '>', 0,
		"$what: (the monitor saw $lname lead before its key went)");

	# the successor must still take over, within about two TTLs: as the
	# monitor saw it, or by polling after the monitor's window
	my $deadline = $t_removed + 2 * $ttl + 10;
	my $led_at = $r->{first_leader}{$oname};
	while (!defined $led_at && time() < $deadline)
	{
		$led_at = time()
		  if $other->safe_psql('postgres', 'SELECT leader_is_primary()') eq 't';
		usleep(100_000);
	}
	ok(defined $led_at && $led_at < $deadline,
		"$what: $oname leads within 2 TTL + 10 s of the removal of ${lname}'s key");
	note sprintf('%s: %s first seen leading %.2f s after the removal',
		$what, $oname, ($led_at // time()) - $t_removed);
	is(join(',', map { $_->name } le_leaders(@nodes)), $oname,
		"$what: then $oname is the only leader");
	return;
}

#
# a. The frozen leader's key deleted with etcdctl del.
#
takeover(
	'a (key deleted)',
	sub {
		my ($leader) = @_;
		my ($mine) = grep { $_->{is_self} eq 't' } le_candidates($leader);
		$etcd->etcdctl('del', $mine->{key});
	});

#
# b. The frozen leader's lease revoked with etcdctl lease revoke.
#
takeover(
	'b (lease revoked)',
	sub {
		my ($leader) = @_;
		my $lease = le_status($leader)->{lease_id};
		$etcd->etcdctl('lease', 'revoke', sprintf('%x', $lease));
	});

$_->stop('fast') foreach @nodes;

#
# c, d. Voluntary handovers stay fast with a long lease (lease_ttl = 10).
#
my $cprefix = '/leader_election/t032c';
my $n3 = le_node('node3', $etcd, prefix => $cprefix, lease_ttl => 10);
ok(le_wait_leader($n3), 'node3 leads');
my $n4 = le_node('node4', $etcd, prefix => $cprefix, lease_ttl => 10);
ok($n4->poll_query_until('postgres', 'SELECT queue_position FROM leader_status()', '1'),
	'node4 is queued at 1');

# A session on $waiter blocked in leader_wait(); returns a sub that gives
# the server's clock when it returned true (undef if it did not).
sub start_waiter
{
	my ($waiter) = @_;
	my $bg = $waiter->background_psql('postgres', on_error_stop => 0, timeout => 60);
	$bg->query_until(qr/waiting/,
		"\\echo waiting\nSELECT leader_wait(30000), extract(epoch FROM clock_timestamp());\n");
	$waiter->poll_query_until('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
		  . "AND query LIKE 'SELECT leader_wait(30000)%'", '1')
	  or die 'leader_wait() did not start on ' . $waiter->name;
	return sub {
		my $out = $bg->query_until(qr/^[tf]\|[0-9.]+$/m, '');
		$bg->quit;
		return $out =~ /^t\|([0-9.]+)$/m ? $1 : undef;
	};
}

my $wait = start_waiter($n4);
my $t0 = time();
is($n3->safe_psql('postgres', 'SELECT leader_resign()'), 't', 'c: leader_resign() on node3');
my $at = $wait->();
ok(defined $at, 'c: node4 leads after node3 resigned');
note sprintf('c: node4 led %.3f s after leader_resign() was sent', ($at // 0) - $t0);
cmp_ok(($at // 1e12) - $t0, '<', 1.5,
	'c: node4 leads within 1.5 s of leader_resign() (lease_ttl = 10)');

ok($n3->poll_query_until('postgres', 'SELECT queue_position FROM leader_status()', '1'),
	'node3 is queued at 1 behind node4');
$wait = start_waiter($n3);
$t0 = time();
$n4->stop('fast');
$at = $wait->();
ok(defined $at, 'd: node3 leads after node4 stopped');
note sprintf('d: node3 led %.3f s after pg_ctl stop -m fast of node4 began', ($at // 0) - $t0);
cmp_ok(($at // 1e12) - $t0, '<', 1.5,
	'd: node3 leads within 1.5 s of a clean stop of node4 (lease_ttl = 10)');

$n3->stop('fast');
$etcd->stop;
done_testing();
