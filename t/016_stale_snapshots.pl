# Attacks on guarantee 2: "a transaction that took its snapshot while its
# node was fenced (not the leader) never becomes writable, even once the
# node leads, unless the user made it READ ONLY anyway".  Two nodes, one
# real etcd; leadership moves with leader_resign().  Each case takes a
# REPEATABLE READ snapshot on node1 while node2 leads, lets node1 lead, and
# then writes from that snapshot.  The guarantee says the write fails with
# 25006; each case asserts that, so a failing assertion is a hole:
#  A) the user's own READ ONLY, set in a savepoint taken while node1 led, is
#     undone by RELEASE SAVEPOINT after node1 leads again (PostgreSQL
#     restores the parent's read-write state): the fence had treated the
#     transaction as "read-only by the user's choice" and stopped fencing it;
#  B) the snapshot is taken by a statement that fails in parse analysis
#     (inside a savepoint opened while node1 led): no fence hook ran in the
#     fenced period, so nothing remembers it;
#  C) an autocommit statement whose snapshot is taken in parse analysis
#     while node1 follows, and which waits for a lock there until node1
#     leads: the fence decides at ExecutorStart, after the snapshot;
#  D) a transaction started on the leader imports (SET TRANSACTION
#     SNAPSHOT) a snapshot exported by a transaction on the follower.
# In B, C and D a row committed on node1 after it became leader is missing
# from what the stale transaction reads, which shows the snapshot is old.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use FindBin;
use lib $FindBin::RealBin;

use EtcdServer;
use LeaderElectionTest;

my $prefix = '/leader_election/t016';
my $fence_err = qr/ERROR:  25006: /;

my $etcd = EtcdServer->new('etcd');
$etcd->start;

my %conf = (prefix => $prefix);
my ($n1, $n2) = le_leader_and_follower($etcd, %conf);
my @nodes = ($n1, $n2);

le_bypass_psql($_,
	'CREATE TABLE t (id int PRIMARY KEY); CREATE TABLE u (id int); CREATE TABLE log (n bigint)'
) foreach @nodes;
le_bypass_psql($n1, 'INSERT INTO t VALUES (0)');

sub count_t
{
	my ($id) = @_;
	return $n1->safe_psql('postgres', "SELECT count(*) FROM t WHERE id = $id");
}

my ($out, $err);

#
# A) RELEASE SAVEPOINT undoes the user's READ ONLY
#
le_lead($n1, @nodes);
my $bg = le_session($n1);
(undef, $err) = le_bg_query($bg,
	'BEGIN ISOLATION LEVEL REPEATABLE READ; SAVEPOINT s; SET TRANSACTION READ ONLY;');
is($err, '', 'A: on leader node1: BEGIN; SAVEPOINT s; SET TRANSACTION READ ONLY');
le_lead($n2, @nodes);
($out, $err) = le_bg_query($bg, 'SELECT count(*) FROM t');
is($err, '', 'A: the transaction takes its snapshot while node1 follows');
le_lead($n1, @nodes);
(undef, $err) = le_bg_query($bg, 'RELEASE SAVEPOINT s');
note "A: RELEASE SAVEPOINT once node1 leads: " . ($err eq '' ? 'succeeded' : $err);
($out, $err) = le_bg_query($bg, 'SHOW transaction_read_only');
note "A: transaction_read_only after RELEASE: $out";
(undef, $err) = le_bg_query($bg, 'INSERT INTO t VALUES (101)');
note "A: INSERT: " . ($err eq '' ? 'succeeded' : $err);
like($err, $fence_err,
	'A: INSERT from a snapshot taken while fenced fails with 25006 (guarantee 2)');
(undef, $err) = le_bg_query($bg, 'COMMIT');
note "A: COMMIT: " . ($err eq '' ? 'succeeded' : $err);
is(count_t(101), '0', 'A: the row did not commit');
$bg->quit;

#
# B) a statement that fails in parse analysis takes the snapshot
#
le_lead($n1, @nodes);
$bg = le_session($n1);
(undef, $err) = le_bg_query($bg,
	'BEGIN ISOLATION LEVEL REPEATABLE READ; SAVEPOINT s;');
is($err, '', 'B: on leader node1: BEGIN ISOLATION LEVEL REPEATABLE READ; SAVEPOINT s');
le_lead($n2, @nodes);
(undef, $err) = le_bg_query($bg, 'SELECT * FROM no_such_table');
like($err, qr/42P01/, 'B: a failing SELECT while node1 follows (takes the snapshot)');
le_lead($n1, @nodes);
le_bypass_psql($n1, 'INSERT INTO u VALUES (1)');    # committed after the snapshot
(undef, $err) = le_bg_query($bg, 'ROLLBACK TO SAVEPOINT s');
is($err, '', 'B: ROLLBACK TO SAVEPOINT once node1 leads');
($out, $err) = le_bg_query($bg, 'SELECT count(*) FROM u');
note "B: rows of u seen by the transaction: $out (1 committed after node1 began leading)";
(undef, $err) = le_bg_query($bg,
	'INSERT INTO log SELECT count(*) FROM u; INSERT INTO t VALUES (102)');
note "B: INSERT: " . ($err eq '' ? 'succeeded' : $err);
like($err, $fence_err,
	'B: INSERT from a snapshot taken while fenced fails with 25006 (guarantee 2)');
(undef, $err) = le_bg_query($bg, 'COMMIT');
note "B: COMMIT: " . ($err eq '' ? 'succeeded' : $err);
is(count_t(102), '0', 'B: the row did not commit');
$bg->quit;
le_bypass_psql($n1, 'TRUNCATE u, log');

#
# C) autocommit: snapshot in parse analysis, lock wait, executor after leading
#
le_lead($n2, @nodes);
my $locker = le_session($n1);
(undef, $err) = le_bg_query($locker,
	'BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE;');
is($err, '', 'C: a session on follower node1 locks t');
$bg = le_session($n1);
le_bg_query($bg, "SET default_transaction_isolation = 'repeatable read'");
my ($pid) = le_bg_query($bg, 'SELECT pg_backend_pid()');
$bg->query_until(qr/sent/,
	"\\echo sent\nINSERT INTO log SELECT (SELECT count(*) FROM u) FROM t WHERE id = 0;\n");
ok( $n1->poll_query_until('postgres',
		"SELECT count(*) > 0 FROM pg_locks WHERE pid = $pid AND NOT granted"),
	'C: an autocommit INSERT on follower node1 waits for the lock (snapshot taken)');
le_lead($n1, @nodes);
le_bypass_psql($n1, 'INSERT INTO u VALUES (1)');    # committed after the snapshot
(undef, $err) = le_bg_query($locker, 'COMMIT');
is($err, '', 'C: the lock is released once node1 leads');
(undef, $err) = le_bg_query($bg, 'SELECT 1');
$err = $bg->{stderr} . $err;
note "C: the waiting INSERT: " . ($err eq '' ? 'succeeded' : $err);
my $logged = $n1->safe_psql('postgres',
	"SELECT coalesce(string_agg(n::text, ','), '') FROM log");
note "C: log holds '$logged' (u has 1 row, committed before the INSERT ran)";
is($logged, '',
	'C: the INSERT whose snapshot was taken while fenced did not commit (guarantee 2)');
$bg->quit;
$locker->quit;
le_bypass_psql($n1, 'TRUNCATE u, log');

#
# D) SET TRANSACTION SNAPSHOT imports a snapshot exported while fenced
#
le_lead($n2, @nodes);
my $exporter = le_session($n1);
($out, $err) = le_bg_query($exporter,
	'BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT pg_export_snapshot();');
my $snap = $out;
is($err, '', "D: follower node1 exports snapshot $snap");
le_lead($n1, @nodes);
le_bypass_psql($n1, 'INSERT INTO u VALUES (1)');    # committed after the snapshot
$bg = le_session($n1);
(undef, $err) = le_bg_query($bg,
	"BEGIN ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION SNAPSHOT '$snap';");
is($err, '', 'D: a transaction on leader node1 imports it');
($out, $err) = le_bg_query($bg, 'SELECT count(*) FROM u');
note "D: rows of u seen: $out (1 committed after node1 began leading)";
(undef, $err) = le_bg_query($bg, 'INSERT INTO t VALUES (104)');
note "D: INSERT: " . ($err eq '' ? 'succeeded' : $err);
like($err, $fence_err,
	'D: INSERT from an imported snapshot taken while fenced fails with 25006');
(undef, $err) = le_bg_query($bg, 'COMMIT');
note "D: COMMIT: " . ($err eq '' ? 'succeeded' : $err);
is(count_t(104), '0', 'D: the row did not commit');
$bg->quit;
le_bg_query($exporter, 'COMMIT');
$exporter->quit;

#
# E) (not a violation; over-fencing) BEGIN while fenced, first query after
#    the node leads: the snapshot is taken while leading, yet the
#    transaction stays read-only.  Observed, not asserted.
#
le_lead($n2, @nodes);
$bg = le_session($n1);
le_bg_query($bg, 'BEGIN ISOLATION LEVEL REPEATABLE READ');
le_lead($n1, @nodes);
(undef, $err) = le_bg_query($bg, 'SELECT count(*) FROM t; INSERT INTO t VALUES (105)');
note "E: BEGIN while fenced, SELECT + INSERT after node1 leads: "
  . ($err eq '' ? 'succeeded' : $err);
le_bg_query($bg, 'ROLLBACK');
$bg->quit;

$_->stop foreach @nodes;
$etcd->stop;

done_testing();
