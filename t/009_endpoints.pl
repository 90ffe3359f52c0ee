
# Endpoints that hang or break, through a TCP proxy (t/TcpProxy.pm) in front
# of a real etcd:
#  a) a hung endpoint (the proxy frozen) listed before a healthy one: the
#     leader moves to the healthy endpoint in time and never loses
#     leadership, also with a request_timeout larger than the lease allows;
#  b) the connection of the leader's watch on its own key breaks: the
#     watch is re-created, so deleting the key is still noticed at once (not
#     at the next periodic look, TTL/3 later), also when the endpoint hangs
#     for a while after the break;
#  c) the postmaster dies while the only endpoint hangs: the orphaned
#     worker waits for its release without spinning on the CPU, and exits.

use strict;
use warnings;

use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

# t/ holds the helper modules (PROVE_FLAGS in the Makefile is reset by PGXS)
use FindBin;
use lib $FindBin::RealBin;

use EtcdServer;
use LeaderElectionTest;
use TcpProxy;

my $ttl = 2;

my $etcd = EtcdServer->new('etcd');
$etcd->start;

#
# a) A hung endpoint before a healthy one.
#
# The leader's renewals go through the proxy (its first endpoint) until the
# proxy freezes; then each renewal must give up on it and reach etcd through
# the second endpoint before the lease's validity (TTL - margin) runs out.
#
sub hung_endpoint_case
{
	my ($tag, $request_timeout) = @_;
	my $prefix = "/leader_election/t009$tag";
	my $proxy = TcpProxy->new(target_port => $etcd->client_port, name => $tag);
	$proxy->start;

	note "case a$tag: hung first endpoint, request_timeout $request_timeout";
	my $n1 = le_node(
		"a${tag}_node1", $etcd,
		prefix     => $prefix,
		node_name  => 'node1',
		lease_ttl  => $ttl,
		endpoints  => $proxy->url . ',' . $etcd->url,
		extra_conf => "leader_election.request_timeout = '$request_timeout'");
	ok(le_wait_leader($n1), "a$tag: node1 leads");
	my $n2 = le_node(
		"a${tag}_node2", $etcd,
		prefix     => $prefix,
		node_name  => 'node2',
		lease_ttl  => $ttl,
		endpoints  => $etcd->url,
		extra_conf => "leader_election.request_timeout = '1s'");
	ok( $n2->poll_query_until('postgres', 'SELECT role, queue_position FROM leader_status()', 'follower|1'),
		"a$tag: node2 follows");

	my $s1 = le_status($n1);
	my $s2 = le_status($n2);
	is($s1->{endpoint}, $proxy->url, "a$tag: node1 talks to etcd through the proxy");

	my $bg = $n1->background_psql('postgres', on_error_stop => 0, timeout => 60);
	$proxy->freeze;
	my $t0 = time();
	my ($samples, $lost, $first_lost) = (0, 0, undef);
	while (time() < $t0 + 5 * $ttl)
	{
		my ($out) = le_bg_query($bg, 'SELECT leader_is_primary()');
		$samples++;
		if ($out eq 'f')
		{
			$lost++;
			$first_lost = time() - $t0 unless defined $first_lost;
		}
		usleep(200_000);
	}
	$bg->quit;
	cmp_ok($samples, '>=', 10, "a$tag: sampled leader_is_primary() on node1 ($samples samples)");
	is($lost, 0, "a$tag: node1 never stopped leading while its first endpoint hung")
	  or diag sprintf('first false answer %.2f s after the freeze', $first_lost);

	my $e1 = le_status($n1);
	my $e2 = le_status($n2);
	is($e1->{role}, 'leader', "a$tag: node1 is still the leader");
	is($e1->{fencing_token}, $s1->{fencing_token}, "a$tag: ... with the same fencing token");
	is($e1->{role_since}, $s1->{role_since}, "a$tag: ... since the same time");
	is($e2->{role}, 'follower', "a$tag: node2 still follows");
	is($e2->{role_since}, $s2->{role_since}, "a$tag: ... since the same time");
	ok($n1->poll_query_until('postgres', 'SELECT endpoint FROM leader_status()', $etcd->url),
		"a$tag: node1 moved to the healthy endpoint");

	$proxy->thaw;
	$n1->stop;
	$n2->stop;
	$proxy->stop;
	return;
}

hung_endpoint_case('1', '1s');
# larger than the lease allows (TTL/3 between renewals): it must be capped
hung_endpoint_case('2', '5s');

#
# b) The connection of the leader's watch on its own key breaks.
#
# lease_ttl = 60: the periodic look after each renewal (every TTL/3 = 20 s)
# cannot be what notices the deletion within the bound; only the watch can.
# The node restarts between the variants, so each starts with a fresh lease
# (and a node that missed the first deletion still leads with its old key).
#
{
	my $prefix = '/leader_election/t009b';
	my $bound  = 10;
	my $proxy  = TcpProxy->new(target_port => $etcd->client_port, name => 'b');
	$proxy->start;
	my $n = le_node(
		'b_node', $etcd,
		prefix     => $prefix,
		lease_ttl  => 60,
		endpoints  => $proxy->url,
		extra_conf => "leader_election.request_timeout = '1s'");

	foreach my $variant ('drop', 'drop+freeze')
	{
		note "case b: $variant";
		ok(le_wait_leader($n), "b $variant: the node leads");
		cmp_ok($proxy->drop_connections, '>', 0,
			"b $variant: the proxy closed the node's connections");
		if ($variant eq 'drop+freeze')
		{
			# the watch cannot be re-created at once
			$proxy->freeze;
			sleep 2;
			$proxy->thaw;
		}
		sleep 1;
		my $st  = le_status($n);
		my $key = sprintf('%s/%x', $prefix, $st->{lease_id});
		my $t0  = time();
		like($etcd->etcdctl('del', $key), qr/^1$/m, "b $variant: etcdctl del $key");
		# Alone in the queue, the node rejoins and leads again at once, with
		# a new lease (and key): what must end is leading with the old key.
		ok( $n->poll_query_until(
				'postgres',
				'SELECT leader_is_primary() AND lease_id IS NOT DISTINCT FROM '
				  . "$st->{lease_id} FROM leader_status()",
				'f'),
			"b $variant: the node stops leading with its deleted key");
		# The periodic re-check (TTL/3) comes far later: only the watch
		# notices this soon.
		my $noticed = time() - $t0;
		cmp_ok($noticed, '<', $bound,
			"b $variant: ... noticed through the watch, within ${bound} s");
		note sprintf('b %s: noticed after %.3f s', $variant, $noticed);
		$n->restart if $variant eq 'drop';
	}
	$n->stop;
	$proxy->stop;
}

#
# c) Postmaster death while the only endpoint hangs.
#
# The orphaned worker tries to release its lease for up to request_timeout;
# it must sleep while it waits, not spin on the postmaster-death event.
#
{
	my $prefix = '/leader_election/t009c';
	my $request_timeout_s = 8;
	my $proxy = TcpProxy->new(target_port => $etcd->client_port, name => 'c');
	$proxy->start;
	my $n = le_node(
		'c_node', $etcd,
		prefix     => $prefix,
		lease_ttl  => $ttl,
		endpoints  => $proxy->url,
		extra_conf => "leader_election.request_timeout = '${request_timeout_s}s'");
	ok(le_wait_leader($n), 'c: the node leads');

	my $postmaster = le_postmaster_pid($n);
	my $worker     = le_worker_pid($n);
	my @children   = children_of($postmaster);
	$proxy->freeze;
	my $t0 = time();
	$n->kill9;

	usleep(500_000);
	my $cpu0 = cpu_seconds($worker);
	my $cpu1 = $cpu0;
	my $window_end = time() + 3;
	while (time() < $window_end)
	{
		my $c = cpu_seconds($worker);
		$cpu1 = $c if defined $c;
		usleep(100_000);
	}
	ok(defined $cpu0, "c: the orphaned worker (pid $worker) runs after the postmaster died");
	my $used = (defined $cpu0 && defined $cpu1) ? $cpu1 - $cpu0 : -1;
	note sprintf('c: the orphaned worker used %.2f s of CPU in 3 s', $used);
	cmp_ok($used, '<', 0.5,
		'c: the orphaned worker does not spin while its release waits');

	my $deadline = $t0 + $request_timeout_s + 10;
	usleep(100_000) while alive($worker) && time() < $deadline;
	ok(!alive($worker), 'c: the orphaned worker exited')
	  or diag sprintf('still alive %.1f s after the postmaster died', time() - $t0);
	note sprintf('c: the worker exited %.1f s after the postmaster died', time() - $t0);

	# the node's other processes are orphans: no postmaster to stop them
	foreach my $pid (@children)
	{
		kill 'KILL', $pid if alive($pid);
	}
	$proxy->thaw;
	$proxy->stop;
}

$etcd->stop;
done_testing();

# Fields of /proc/<pid>/stat from field 3 (state) on; () if there is none.
sub proc_stat
{
	my $pid = shift;
	open(my $fh, '<', "/proc/$pid/stat") or return ();
	my $line = <$fh>;
	close $fh;
	return () unless defined $line && $line =~ /\)\s+(.*)$/s;
	return split /\s+/, $1;
}

sub children_of
{
	my $parent = shift;
	my @pids;
	foreach my $dir (glob('/proc/[0-9]*'))
	{
		my $pid = (split m{/}, $dir)[-1];
		my @f = proc_stat($pid);
		push @pids, $pid if @f && $f[1] == $parent;
	}
	return @pids;
}

# Running: not gone, not a zombie (an orphan may not be reaped here).
sub alive
{
	my $pid = shift;
	my @f = proc_stat($pid);
	return @f && $f[0] ne 'Z' && $f[0] ne 'X';
}

# utime + stime (fields 14 and 15) in seconds; undef if the process is gone.
sub cpu_seconds
{
	my $pid = shift;
	my @f = proc_stat($pid);
	return undef unless @f;
	return ($f[11] + $f[12]) / POSIX::sysconf(POSIX::_SC_CLK_TCK);
}
