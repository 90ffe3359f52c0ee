# Leadership terms and transaction isolation, two nodes and a real etcd
# (default lease_ttl 10 s; every hand-over is a leader_resign(), which is
# immediate, and the resigned node rejoins at the tail):
#  - a transaction commits only in the leadership term in which it wrote:
#    one that wrote in term T1 cannot COMMIT nor PREPARE TRANSACTION after
#    its node lost and regained leadership (a new fencing token), even if it
#    wrote again in the new term; within one term it commits;
#  - COMMIT PREPARED commits only on a node that leads now (in any term) and
#    is refused elsewhere with 25006, leaving the prepared transaction in
#    place; ROLLBACK PREPARED always works;
#  - a transaction whose first statement ran fenced never becomes writable,
#    whatever its isolation level, with an open cursor, or after SET
#    TRANSACTION READ WRITE, even once its node leads: its writes fail with
#    25006 and nothing commits; the next transaction of the session writes.
#    The write-skew demo: two SERIALIZABLE transactions read on a follower,
#    the node becomes leader, each inserts what its read allowed; neither
#    may commit.
#
# The nodes are independent clusters: each has its own table t, created with
# fence_bypass whether the node leads or not.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# t/ holds the helper modules (PROVE_FLAGS in the Makefile is reset by PGXS)
use FindBin;
use lib $FindBin::RealBin;

use EtcdServer;
use LeaderElectionTest;

my $prefix = '/leader_election/t010';
my $fence_err = qr/ERROR:  25006: /;

my $etcd = EtcdServer->new('etcd');
$etcd->start;

my %conf = (prefix => $prefix, extra_conf => "max_prepared_transactions = 5");
my $n1 = le_node('node1', $etcd, %conf);
ok(le_wait_leader($n1), 'node1 leads');
my $n2 = le_node('node2', $etcd, %conf);
ok( $n2->poll_query_until('postgres', 'SELECT role, queue_position FROM leader_status()', 'follower|1'),
	'node2 follows at position 1');
my @nodes = ($n1, $n2);

le_bypass_psql($_, 'CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL DEFAULT 0)')
  foreach @nodes;

sub token
{
	return le_status($_[0])->{fencing_token};
}

sub count_ids
{
	my ($node, $ids) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM t WHERE id IN ($ids)");
}

sub prepared
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		'SELECT coalesce(string_agg(gid, \',\' ORDER BY gid), \'\') FROM pg_prepared_xacts');
}

# Leaves no prepared transaction behind (a failed assertion must not break
# the cases after it).
sub rollback_all_prepared
{
	my ($node) = @_;
	foreach my $gid (split /,/, prepared($node))
	{
		le_bypass_psql($node, "ROLLBACK PREPARED '$gid'");
	}
	return;
}

my ($out, $err, $state, $bg);

#
# 1. A transaction commits only in the term in which it wrote
#
le_lead($n1, @nodes);
$bg = le_session($n1);
(undef, $err) = le_bg_query($bg, 'BEGIN; INSERT INTO t VALUES (1);');
is($err, '', 'sanity: INSERT in an open transaction on the leader');
(undef, $err) = le_bg_query($bg, 'COMMIT');
is($err, '', 'sanity: COMMIT within the same term succeeds');
is(count_ids($n1, '1'), '1', 'sanity: the row committed');

# COMMIT after node1 lost and regained leadership
(undef, $err) = le_bg_query($bg, 'BEGIN; INSERT INTO t VALUES (2);');
is($err, '', 'term T1: INSERT in an open transaction on node1');
my $t1 = token($n1);
le_lead($n2, @nodes);
le_lead($n1, @nodes);
my $t3 = token($n1);
cmp_ok($t3, '>', $t1, "node1 leads again in a new term (fencing token $t3 > $t1)");
(undef, $err) = le_bg_query($bg, 'COMMIT');
like($err, $fence_err,
	'COMMIT in a later term of the same node fails with 25006');
note "COMMIT in a later term: $err";
is(count_ids($n1, '2'), '0', '... and the row written in term T1 is absent');

# PREPARE TRANSACTION after node1 lost and regained leadership
(undef, $err) = le_bg_query($bg, 'BEGIN; INSERT INTO t VALUES (3);');
is($err, '', 'INSERT in an open transaction on node1');
$t1 = token($n1);
le_lead($n2, @nodes);
le_lead($n1, @nodes);
cmp_ok(token($n1), '>', $t1, 'node1 leads again in a new term');
(undef, $err) = le_bg_query($bg, "PREPARE TRANSACTION 'p';");
like($err, $fence_err,
	'PREPARE TRANSACTION in a later term fails with 25006');
note "PREPARE TRANSACTION in a later term: $err";
is(prepared($n1), '', '... no prepared transaction is left');
is(count_ids($n1, '3'), '0', '... and the row is absent');
rollback_all_prepared($n1);
is(count_ids($n1, '3'), '0', 'the row is absent after cleaning up');

# wrote in term T1 and again in the new term
(undef, $err) = le_bg_query($bg, 'BEGIN; INSERT INTO t VALUES (4);');
is($err, '', 'INSERT in an open transaction on node1');
$t1 = token($n1);
le_lead($n2, @nodes);
le_lead($n1, @nodes);
cmp_ok(token($n1), '>', $t1, 'node1 leads again in a new term');
my (undef, $ins_err) = le_bg_query($bg, 'INSERT INTO t VALUES (5);');
(undef, $err) = le_bg_query($bg, 'COMMIT');
note "second INSERT in the new term: "
  . ($ins_err eq '' ? 'succeeded' : $ins_err)
  . "; COMMIT: "
  . ($err eq '' ? 'succeeded' : $err);
# the INSERT may be refused already (then COMMIT only rolls back)
ok( $ins_err eq '' ? $err =~ $fence_err : $ins_err =~ $fence_err,
	'a transaction that wrote in T1 and again in the new term: its second '
	  . 'INSERT, or else its COMMIT, fails with 25006');
is(count_ids($n1, '4,5'), '0', '... and neither row is there');
$bg->quit;

#
# 2. COMMIT PREPARED commits only on a node that leads now
#
($state, $err) = le_sqlstate($n1,
	"BEGIN; INSERT INTO t VALUES (21); PREPARE TRANSACTION 'p1';");
is($state, '00000', 'node1 prepares p1 while leading') or diag $err;
($state, $err) = le_sqlstate($n1,
	"BEGIN; INSERT INTO t VALUES (22); PREPARE TRANSACTION 'p2';");
is($state, '00000', 'node1 prepares p2 while leading') or diag $err;
le_lead($n2, @nodes);
($state, $err) = le_sqlstate($n1, "COMMIT PREPARED 'p1'");
is($state, '25006', 'COMMIT PREPARED on a node that does not lead: 25006')
  or diag $err;
is(prepared($n1), 'p1,p2', '... p1 is still prepared');
($state, $err) = le_sqlstate($n1, "ROLLBACK PREPARED 'p2'");
is($state, '00000', 'ROLLBACK PREPARED works on a node that does not lead')
  or diag $err;
is(prepared($n1), 'p1', '... p2 is gone');
le_lead($n1, @nodes);
($state, $err) = le_sqlstate($n1, "COMMIT PREPARED 'p1'");
is($state, '00000', 'COMMIT PREPARED succeeds once the node leads (a later term)')
  or diag $err;
is(prepared($n1), '', 'no prepared transaction is left');
is($n1->safe_psql('postgres', 'SELECT string_agg(id::text, \',\' ORDER BY id) FROM t WHERE id IN (21, 22)'),
	'21', 'the row of p1 is visible, the row of p2 is not');
rollback_all_prepared($n1);

#
# 3. A transaction whose first statement ran fenced never becomes writable
#
my $id = 100;
foreach my $level ('SERIALIZABLE', 'REPEATABLE READ', 'READ COMMITTED')
{
	le_lead($n1, @nodes);
	$bg = le_session($n2);
	(undef, $err) = le_bg_query($bg,
		"BEGIN ISOLATION LEVEL $level; SELECT count(*) FROM t;");
	is($err, '', "$level: a transaction reads on follower node2");
	le_lead($n2, @nodes);
	(undef, $err) = le_bg_query($bg, "INSERT INTO t VALUES ($id)");
	like($err, $fence_err,
		"$level: its INSERT once node2 leads fails with 25006");
	le_bg_query($bg, 'COMMIT');
	is(count_ids($n2, $id), '0', "$level: the row is absent");
	($out, $err) = le_bg_query($bg,
		'INSERT INTO t VALUES (' . ($id + 1) . ') RETURNING id');
	is($out, $id + 1, "$level: a new transaction in the same session writes")
	  or diag $err;
	$bg->quit;
	$id += 10;
}

# a cursor opened on the follower
le_bypass_psql($n2, 'INSERT INTO t VALUES (200, 0)');
le_lead($n1, @nodes);
$bg = le_session($n2);
(undef, $err) = le_bg_query($bg,
	'BEGIN; DECLARE c CURSOR FOR SELECT * FROM t;');
is($err, '', 'cursor: declared in a transaction on follower node2');
le_lead($n2, @nodes);
(undef, $err) = le_bg_query($bg, 'UPDATE t SET v = v + 1 WHERE id = 200');
like($err, $fence_err, 'cursor: UPDATE once node2 leads fails with 25006');
le_bg_query($bg, 'COMMIT');
is($n2->safe_psql('postgres', 'SELECT v FROM t WHERE id = 200'),
	'0', 'cursor: the update did not commit');
$bg->quit;

# SET TRANSACTION READ WRITE does not make it writable
le_lead($n1, @nodes);
$bg = le_session($n2);
(undef, $err) = le_bg_query($bg, 'BEGIN; SELECT 1;');
is($err, '', 'SET TRANSACTION: a transaction reads on follower node2');
le_lead($n2, @nodes);
my ($set_out, $set_err) = le_bg_query($bg, 'SET TRANSACTION READ WRITE');
(undef, $err) = le_bg_query($bg, 'INSERT INTO t VALUES (300)');
note "SET TRANSACTION READ WRITE: " . ($set_err eq '' ? 'succeeded' : $set_err);
note "INSERT after it: " . ($err eq '' ? 'succeeded' : $err);
ok($set_err =~ /ERROR:/ || $err =~ $fence_err,
	'SET TRANSACTION READ WRITE once node2 leads: the SET or the INSERT is refused (25006)');
le_bg_query($bg, 'COMMIT');
is(count_ids($n2, '300'), '0', 'SET TRANSACTION: the row did not commit');
$bg->quit;

# The write-skew demo: "insert a row only if the sum is 0" in two
# SERIALIZABLE transactions that read on the follower.
le_bypass_psql($n2, 'CREATE TABLE duty (id int PRIMARY KEY, v int NOT NULL)');
le_lead($n1, @nodes);
my @s = (le_session($n2), le_session($n2));
foreach my $i (0, 1)
{
	($out, $err) = le_bg_query($s[$i],
		'BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT coalesce(sum(v), 0) FROM duty;');
	is($out, '0', "write skew: session $i reads sum 0 on follower node2")
	  or diag $err;
}
le_lead($n2, @nodes);
my @ins_err;
foreach my $i (0, 1)
{
	(undef, $ins_err[$i]) = le_bg_query($s[$i],
		'INSERT INTO duty VALUES (' . ($i + 1) . ', 1)');
}
my @commit_err;
foreach my $i (0, 1)
{
	(undef, $commit_err[$i]) = le_bg_query($s[$i], 'COMMIT');
	note "write skew: session $i INSERT: "
	  . ($ins_err[$i] eq '' ? 'succeeded' : $ins_err[$i])
	  . "; COMMIT: "
	  . ($commit_err[$i] eq '' ? 'succeeded' : $commit_err[$i]);
	like($ins_err[$i], $fence_err,
		"write skew: session $i cannot write once node2 leads (25006)");
	$s[$i]->quit;
}
my $sum = $n2->safe_psql('postgres', 'SELECT coalesce(sum(v), 0) FROM duty');
cmp_ok($sum, '<=', 1, 'write skew: no write skew committed (sum <= 1)');
is($sum, '0', 'write skew: neither row committed');

$_->stop foreach @nodes;
$etcd->stop;

done_testing();
