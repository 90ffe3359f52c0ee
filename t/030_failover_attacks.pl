# Attacks on issue 10 (failover for streaming replication), lease_ttl = 2,
# primary n1, standbys n2 and n3 (le_replicated_cluster):
#  1. a successor that cannot catch up (its WAL receiver stopped):
#     leader_resign() fails with SQLSTATE 55000, n1 leads on, accepts
#     writes and keeps streaming to n3;
#  2. hostile cluster records written with etcdctl while n1 leads (not
#     JSON, wrong types, a huge value, another system identifier): n1
#     steps down, nobody promotes, ineligible_reason explains, no crash;
#     rewriting the record as the README says lets n1 lead again; deleting
#     it does not (n1 has been part of a replicated cluster: issue 14);
#  3. with the primary gone and the queue empty, standbys never promote;
#  4. a primary restarted under another node name on the record's timeline
#     does not stand;
#  5. the primary's worker frozen (SIGSTOP): n1 is fenced at its deadline
#     (never two writable nodes) and the next in line takes over; n1 still
#     writes WAL of its own (a CHECKPOINT, as checkpoint_timeout would) and
#     its walsender, which only the frozen worker would end, ships it to the
#     other standby: that standby must still follow the new leader's
#     timeline (fails today: "new timeline 2 forked off current database
#     system timeline 1 before current recovery point").
# Every wait is a poll with a generous bound; nothing asserts timing.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use IPC::Run;

use FindBin;
use lib $FindBin::RealBin;

use EtcdServer;
use LeaderElectionTest;

my $prefix = '/leader_election/t030';
my $record_key = "$prefix.cluster";

# poll $sql on $node until it returns $want, at most $seconds
sub poll_for
{
	my ($node, $seconds, $sql, $want) = @_;
	my $deadline = time() + $seconds;
	my $got;
	while (1)
	{
		my ($out, $err) = ('', '');
		$node->psql('postgres', $sql, stdout => \$out, stderr => \$err,
			timeout => 30);
		$got = $out;
		return 1 if $got eq $want;
		last if time() > $deadline;
		usleep(200_000);
	}
	diag $node->name . ": '$sql' gave '$got', not '$want', for ${seconds}s";
	return 0;
}

# polls until $node's ineligible_reason matches $re
sub poll_reason
{
	my ($node, $seconds, $re) = @_;
	my $deadline = time() + $seconds;
	while (1)
	{
		my $r = $node->safe_psql('postgres',
			"SELECT coalesce(ineligible_reason, '') FROM leader_status()");
		return 1 if $r =~ $re;
		return 0 if time() > $deadline;
		usleep(200_000);
	}
}

sub status_line
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		'SELECT role, phase, queue_position, in_recovery, timeline, eligible, '
		  . 'ineligible_reason, last_error FROM leader_status()');
}

my $etcd = EtcdServer->new('etcd');
$etcd->start;

my ($n1, $n2, $n3) =
  le_replicated_cluster($etcd, n => 3, prefix => $prefix, lease_ttl => 2);
my @nodes = ($n1, $n2, $n3);
my $sysid = le_system_identifier($n1);
ok( le_wait_cluster_record($etcd, $prefix,
		system_identifier => $sysid, timeline => 1, node => 'n1'),
	'the cluster record names n1 on timeline 1');
is(le_candidate_names($n1), 'n1,n2,n3', 'queue: n1, n2, n3');
$n1->safe_psql('postgres', 'CREATE TABLE t (id int PRIMARY KEY)');
$n1->safe_psql('postgres', 'INSERT INTO t VALUES (1)');
$n1->wait_for_catchup($_, 'replay') foreach ($n2, $n3);

# waits until n1 leads and n2, n3 are queued behind it
sub wait_healthy
{
	my ($what) = @_;
	my $deadline = time() + 60;
	my $names;
	while (1)
	{
		$names = le_candidate_names($n1);
		last if $names eq 'n1,n2,n3' || $names eq 'n1,n3,n2';
		last if time() > $deadline;
		usleep(200_000);
	}
	like($names, qr/^n1,n(2,n3|3,n2)$/, "$what: n1 leads, n2 and n3 queued");
	return;
}

#
# 1. The successor cannot catch up.
#
my $conninfo2 = $n2->safe_psql('postgres', 'SHOW primary_conninfo');
$n1->safe_psql('postgres',
	"ALTER SYSTEM SET leader_election.switchover_timeout = '1s'; SELECT pg_reload_conf()");
$n2->append_conf('postgresql.conf', "primary_conninfo = ''\n");
$n2->safe_psql('postgres', 'SELECT pg_reload_conf()');
ok(poll_for($n1, 30,
	"SELECT count(*) FROM pg_stat_replication WHERE application_name = 'n2'", '0'),
	'n2 no longer streams');
$n1->safe_psql('postgres', 'INSERT INTO t VALUES (2)');
# n2 keeps its place for the grace period: it is the next in line
my $queue = le_candidate_names($n1);
my ($state, $err) = le_sqlstate($n1, 'SELECT leader_resign()');
SKIP:
{
	skip "n2 left the queue before the resign ($queue)", 5
	  unless $queue eq 'n1,n2,n3';
	is($state, '55000', 'leader_resign() with a successor that cannot catch up: 55000')
	  or diag $err;
	like($err, qr/could not hand over leadership: this node leads on.*"n2"/s,
		'... and the error names the successor');
	ok(poll_for($n1, 10, 'SELECT role, phase FROM leader_status()', "leader|leading"),
		'n1 leads on');
	is((le_sqlstate($n1, 'INSERT INTO t VALUES (3)'))[0], '00000', 'n1 accepts writes');
	ok(poll_for($n1, 10,
		"SELECT count(*) FROM pg_stat_replication WHERE application_name = 'n3' AND state = 'streaming'",
		'1'), 'n3 still streams from n1 (its walsender was not dropped)');
}
$n2->append_conf('postgresql.conf', "primary_conninfo = '$conninfo2'\n");
$n2->safe_psql('postgres', 'SELECT pg_reload_conf()');
$n1->safe_psql('postgres',
	"ALTER SYSTEM RESET leader_election.switchover_timeout; SELECT pg_reload_conf()");
wait_healthy('after the failed handover');

#
# 2. Hostile cluster records.
#
sub put_record
{
	my ($value) = @_;
	# from standard input: a huge value does not fit in one argument
	my ($out, $errout) = ('', '');
	local $ENV{ETCDCTL_API} = 3;
	IPC::Run::run([ 'etcdctl', '--endpoints=' . $etcd->url, 'put', $record_key ],
		'<', \$value, '>', \$out, '2>', \$errout, IPC::Run::timeout(30))
	  or die "etcdctl put $record_key failed: $errout";
	return;
}

my $good_record = qq({"system_identifier":"$sysid","timeline":1,"node":"n1"});
my @hostile = (
	[ 'not JSON', 'this is not json {', qr/unreadable \(it is not a JSON object\)/ ],
	[ 'wrong types', '{"system_identifier":7312,"timeline":"1","node":1}',
		qr/unreadable \(system_identifier is not a decimal string\)/ ],
	[ 'a fractional timeline',
		qq({"system_identifier":"$sysid","timeline":1.5,"node":"n1"}),
		qr/unreadable \(timeline is not a timeline ID\)/ ],
	[ 'a huge value (900 kB node name)',
		qq({"system_identifier":"$sysid","timeline":1,"node":") . ('x' x 900_000) . '"}',
		qr/unreadable \(node is not a node name\)/ ],
	[ 'another system identifier',
		'{"system_identifier":"123","timeline":1,"node":"n1"}',
		qr/system identifier $sysid is not the cluster's 123: another cluster uses this election prefix/ ],
	[ 'a system identifier that overflows',
		'{"system_identifier":"99999999999999999999999","timeline":1,"node":"n1"}',
		qr/unreadable \(system_identifier is not a decimal string\)/ ],
);
foreach my $h (@hostile)
{
	my ($what, $value, $reason) = @$h;
	put_record($value);
	ok(poll_reason($n1, 20, $reason), "record with $what: n1 steps down and says why")
	  or diag 'n1: ' . status_line($n1);
	my @leaders = le_leaders(@nodes);
	is(scalar(@leaders), 0, "record with $what: nobody leads")
	  or diag 'leaders: ' . join(',', map { $_->name } @leaders);
	is($n2->safe_psql('postgres', 'SELECT pg_is_in_recovery()') . $n3->safe_psql('postgres', 'SELECT pg_is_in_recovery()'),
		'tt', "record with $what: no standby promoted");
	put_record($good_record);
	is(le_wait_one_leader(60, @nodes), $n1, "record with $what rewritten: n1 leads again");
}

# Deleted instead: n1 remembers that it had a record, so it does not stand.
put_record('garbage');
ok(poll_reason($n1, 20, qr/unreadable/), 'garbage record: n1 steps down');
$etcd->etcdctl('del', $record_key);
ok(poll_reason($n1, 20, qr/the cluster record is missing, and this primary \(timeline 1\) has been part of a replicated cluster/),
	'record deleted: n1 does not stand, and says why')
  or diag 'n1: ' . status_line($n1);
is( le_holds(
		3 * 2,
		sub {
			my @l = le_leaders(@nodes);
			return @l ? 'leads: ' . join(',', map { $_->name } @l) : '';
		}),
	'',
	'record deleted: nobody leads');
put_record($good_record);
is(le_wait_one_leader(60, @nodes), $n1, 'record rewritten: n1 leads again');
wait_healthy('after the hostile records');
ok( le_wait_cluster_record($etcd, $prefix,
		system_identifier => $sysid, timeline => 1, node => 'n1'),
	'n1 records itself again');
is(join('|', map { $_->safe_psql('postgres', 'SELECT pg_is_in_recovery()') } @nodes),
	'f|t|t', 'n1 is still the only primary');

#
# 3. The primary gone and the queue empty: standbys never promote.
#
put_record('garbage');
ok(poll_for($n1, 20, 'SELECT eligible FROM leader_status()', 'f'),
	'garbage record: n1 steps down');
ok(poll_for($n2, 20, 'SELECT queue_position IS NULL FROM leader_status()', 't')
	  && poll_for($n3, 20, 'SELECT queue_position IS NULL FROM leader_status()', 't'),
	'garbage record: n2 and n3 leave the queue');
$n1->stop('immediate');
$etcd->etcdctl('del', $record_key);
is( le_holds(
		6,
		sub {
			foreach my $n ($n2, $n3)
			{
				my $s = status_line($n);
				return $n->name . " does not wait: $s"
				  unless $s =~ /^(follower|disconnected)\|(observing|no lease)\|\|t\|1\|f\|/;
			}
			return '';
		}),
	'',
	'primary gone, queue empty, no record: n2 and n3 stay standbys and observe');
like(status_line($n2), qr/no leader to stream from|not streaming|the cluster record is missing/,
	'n2 says why it does not stand');
$n1->start;
ok(poll_reason($n1, 20, qr/the cluster record is missing/),
	'n1 restarted without a record: it does not stand')
  or diag 'n1: ' . status_line($n1);
put_record($good_record);
is(le_wait_one_leader(60, @nodes), $n1, 'n1 restarted, record rewritten: it leads again');
wait_healthy('after n1 restarted');

#
# 4. A primary restarted under another name on the record's timeline.
#
ok( le_wait_cluster_record($etcd, $prefix,
		system_identifier => $sysid, timeline => 1, node => 'n1'),
	'the record names n1 on timeline 1');
# the standbys must not take over while n1 restarts
foreach my $n ($n2, $n3)
{
	$n->append_conf('postgresql.conf', "leader_election.candidate = off\n");
	$n->safe_psql('postgres', 'SELECT pg_reload_conf()');
}
ok(poll_for($n2, 20, 'SELECT queue_position IS NULL FROM leader_status()', 't')
	  && poll_for($n3, 20, 'SELECT queue_position IS NULL FROM leader_status()', 't'),
	'n2 and n3 are observers');
$n1->stop('fast');
$n1->append_conf('postgresql.conf', "leader_election.node_name = 'n1b'\n");
$n1->start;
ok(poll_for($n1, 20,
	q{SELECT ineligible_reason ~ 'timeline 1 of this cluster belongs to node "n1"' FROM leader_status()}, 't'),
	'n1 restarted as n1b: it does not stand, the timeline belongs to n1')
  or diag 'n1: ' . status_line($n1);
is(scalar(le_leaders(@nodes)), 0, 'nobody leads');
$n1->append_conf('postgresql.conf', "leader_election.node_name = 'n1'\n");
$n1->safe_psql('postgres', 'SELECT pg_reload_conf()');
is(le_wait_one_leader(60, @nodes), $n1, 'renamed back to n1 (reload): n1 leads');
foreach my $n ($n2, $n3)
{
	$n->append_conf('postgresql.conf', "leader_election.candidate = on\n");
	$n->safe_psql('postgres', 'SELECT pg_reload_conf()');
}
wait_healthy('observers stand again');

#
# 5. The primary's worker frozen.
#
$n1->safe_psql('postgres', 'INSERT INTO t VALUES (100)');
$n1->wait_for_catchup($_, 'flush') foreach ($n2, $n3);
my $first = (split /,/, le_candidate_names($n1))[1];
my ($next, $other) = $first eq 'n2' ? ($n2, $n3) : ($n3, $n2);
my $worker = le_worker_pid($n1);
kill 'STOP', $worker;
my $took = le_wait_one_leader(60, $next, $other);
is($took && $took->name, $next->name, 'n1\'s worker frozen: the next in line takes over');
# n1 still writes WAL of its own while fenced (checkpoints, the bgwriter's
# running-xacts records, autovacuum); a CHECKPOINT is the one that comes
# anyway within checkpoint_timeout.  Its walsender ships it to
# the other standby, which still streams from n1.
my ($cst, $cerr) = le_sqlstate($n1, 'CHECKPOINT');
note "CHECKPOINT on the fenced n1: $cst";
note $other->name . ' receiver after the CHECKPOINT: '
  . $other->safe_psql('postgres',
	'SELECT status, received_tli, flushed_lsn FROM pg_stat_wal_receiver')
  . '; ' . $next->name . ' forked at '
  . $next->safe_psql('postgres',
	"SELECT pg_walfile_name_offset(pg_current_wal_lsn()), timeline_id FROM pg_control_checkpoint()");
my $deadline = time() + 6;
my $two = '';
while (time() < $deadline)
{
	my @l = le_leaders(@nodes);
	$two = join(',', map { $_->name } @l) if @l > 1;
	my ($st) = le_sqlstate($n1, 'INSERT INTO t VALUES (101)');
	$two = "n1 accepted a write ($st)" if $st eq '00000';
	last if $two;
	usleep(300_000);
}
is($two, '', 'never two writable nodes while n1\'s worker is frozen');
ok(poll_for($other, 15,
	q{SELECT status = 'streaming' AND received_tli = 2 FROM pg_stat_wal_receiver}, 't'),
	$other->name . ' follows the new leader (timeline 2) while n1\'s worker is frozen')
  or diag $other->name . ' wal receiver: '
  . $other->safe_psql('postgres',
	'SELECT status, received_tli, sender_port, last_msg_receipt_time FROM pg_stat_wal_receiver')
  . "\n" . $other->name . ' status: ' . status_line($other)
  . "\nn1 pg_stat_replication: "
  . $n1->safe_psql('postgres', 'SELECT application_name, state, sent_lsn FROM pg_stat_replication');
kill 'CONT', $worker;
ok(poll_for($other, 15,
	q{SELECT status = 'streaming' AND received_tli = 2 FROM pg_stat_wal_receiver}, 't'),
	$other->name . ' follows the new leader once n1\'s worker runs again');
ok(poll_for($n1, 20, 'SELECT eligible FROM leader_status()', 'f'),
	'n1 is a deposed primary');
note 'n1: ' . status_line($n1);

$_->stop('immediate') foreach @nodes;
$etcd->stop;
done_testing();
