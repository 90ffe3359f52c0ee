
# The write fence with several nodes and a real etcd, lease_ttl = 2:
#  - commit-time fence: a transaction that wrote while its node led cannot
#    COMMIT, nor PREPARE TRANSACTION, once the node resigned; COMMIT PREPARED
#    of a transaction prepared while leading is refused on the former leader;
#  - a frozen worker (SIGSTOP): the old leader's leader_is_primary() turns
#    false, and its writes fail, strictly before the next in line leads; after
#    SIGCONT it follows and exactly one node leads;
#  - etcd frozen for longer than the TTL: the leader fences itself within the
#    TTL; afterwards exactly one leader returns and it can write;
#  - a follower: SQL over a replication=database connection (a walsender) is
#    fenced too; a session that used temporary tables exits cleanly;
#  - fence_bypass on a follower is logged; fence_writes = off (reload) lets a
#    follower write, and on again refuses.
#
# The nodes are independent clusters: each has its own table t, created with
# fence_bypass whether the node leads or not.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

# t/ holds the helper modules (PROVE_FLAGS in the Makefile is reset by PGXS)
use FindBin;
use lib $FindBin::RealBin;

use EtcdServer;
use LeaderElectionTest;

my $prefix = '/leader_election/t007';
my $ttl    = 2;
my $fence_msg = qr/cannot write on node "[^"]+": it is not the leader/;

# A worker stopped by this test must be continued whatever happens, or the
# nodes cannot be shut down at the end.
my $frozen_pid;
END { kill 'CONT', $frozen_pid if defined $frozen_pid; }

my $etcd = EtcdServer->new('etcd');
$etcd->start;

my %conf = (
	prefix     => $prefix,
	lease_ttl  => $ttl,
	extra_conf => "max_prepared_transactions = 2\n"
	  # walsenders, which PostgreSQL::Test::Cluster disables by default
	  . "wal_level = replica\nmax_wal_senders = 2");
my ($n1, $n2) = le_leader_and_follower($etcd, %conf);
my $n3 = le_node('node3', $etcd, %conf);
ok( $n3->poll_query_until(
		'postgres', 'SELECT role, queue_position FROM leader_status()',
		'follower|2'),
	'node3 follows at position 2');
my @nodes = ($n1, $n2, $n3);

le_bypass_psql($_, 'CREATE TABLE t (id int PRIMARY KEY, what text)')
  foreach @nodes;
my ($state, $err) = le_sqlstate($n2, "INSERT INTO t VALUES (0, 'follower')");
is($state, '25006', 'a follower refuses an INSERT with SQLSTATE 25006');
like($err, $fence_msg, '... with the fence\'s message');
like($err, qr/DETAIL:  The leader is "node1" \(fencing token \d+\)\. Refused: /,
	'... naming the leader and its fencing token');
($state) = le_sqlstate($n1, "INSERT INTO t VALUES (0, 'leader')");
is($state, '00000', 'the leader accepts it');

# a walsender in database mode runs SQL: fenced like any backend
($state, $err) = le_sqlstate($n2, "INSERT INTO t VALUES (0, 'walsender')",
	replication => 'database');
is($state, '25006', 'a replication=database connection cannot write on a follower')
  or diag $err;
($state, $err) = le_sqlstate($n1, "INSERT INTO t VALUES (-1, 'walsender')",
	replication => 'database');
is($state, '00000', '... but can on the leader') or diag $err;

# a session that used temporary tables on a follower drops them at exit (its
# exit transaction is not refused)
my $log_offset = -s $n2->logfile;
($state, $err) = le_sqlstate($n2,
	'CREATE TEMP TABLE exit_tmp (a int); INSERT INTO exit_tmp VALUES (1);');
is($state, '00000', 'a follower session creates and fills a temporary table')
  or diag $err;
ok( $n2->poll_query_until(
		'postgres', "SELECT count(*) FROM pg_class WHERE relname = 'exit_tmp'",
		'0'),
	'... which is gone once the session has ended');
unlike(slurp_file($n2->logfile, $log_offset),
	qr/FATAL:  cannot write on node/, '... without an error at session exit');
is($n2->safe_psql('postgres', 'SELECT count(*) FROM t'),
	'0', 'nothing was written on the follower');

# A session on $node in which a transaction writes a row while $node leads;
# then $node resigns (the next in line leads) and $finish runs.
sub write_then_resign
{
	my ($node, $next, $id, $finish) = @_;
	my $bg = $node->background_psql('postgres', on_error_stop => 0,
		timeout => 60);
	le_bg_query($bg, '\set VERBOSITY verbose');
	my (undef, $e) = le_bg_query($bg,
		"BEGIN; INSERT INTO t VALUES ($id, 'written while leading');");
	is($e, '', $node->name . ': INSERT in an open transaction while leading');
	is($node->safe_psql('postgres', 'SELECT leader_resign()'),
		't', $node->name . ' resigns from another session');
	ok(le_wait_leader($next), $next->name . ' leads');
	is($node->safe_psql('postgres', 'SELECT leader_is_primary()'),
		'f', $node->name . ' no longer leads');
	# the fence's DETAIL names the leader once the node follows it again
	ok( $node->poll_query_until(
			'postgres', 'SELECT role, leader_name FROM leader_status()',
			'follower|' . $next->name),
		$node->name . ' follows ' . $next->name . ' again');
	my ($out, $ferr) = le_bg_query($bg, $finish);
	$bg->quit;
	return ($out, $ferr);
}

#
# Commit-time fence: COMMIT
#
($state, $err) = write_then_resign($n1, $n2, 1, 'COMMIT;');
like($err, qr/ERROR:  25006: cannot write on node "node1": it is not the leader/,
	'COMMIT fails with 25006 once the node resigned');
like($err, qr/DETAIL:  The leader is "node2" \(fencing token \d+\)\. Refused: this transaction wrote while the node led/,
	'... because the transaction wrote while the node led');
is($n1->safe_psql('postgres', 'SELECT count(*) FROM t WHERE id = 1'),
	'0', 'the row was rolled back');
# queue: node2, node3, node1

#
# Commit-time fence: PREPARE TRANSACTION
#
($state, $err) =
  write_then_resign($n2, $n3, 2, "PREPARE TRANSACTION 't007_prepare';");
like($err, qr/ERROR:  25006: cannot write on node "node2": it is not the leader/,
	'PREPARE TRANSACTION fails with 25006 once the node resigned');
like($err, qr/Refused: this transaction wrote while the node led.*cannot be prepared/,
	'... because the transaction wrote while the node led');
is( $n2->safe_psql('postgres',
		'SELECT (SELECT count(*) FROM pg_prepared_xacts), (SELECT count(*) FROM t WHERE id = 2)'),
	'0|0',
	'nothing was prepared, the row was rolled back');
# queue: node3, node1, node2

#
# COMMIT PREPARED on a former leader: prepared while leading, refused after
#
($state, $err) = le_sqlstate($n3,
	"BEGIN; INSERT INTO t VALUES (3, 'prepared'); PREPARE TRANSACTION 't007_prepared';");
is($state, '00000', 'node3 prepares a transaction while leading');
is($n3->safe_psql('postgres', 'SELECT leader_resign()'), 't', 'node3 resigns');
ok(le_wait_leader($n1), 'node1 leads');
($state, $err) = le_sqlstate($n3, "COMMIT PREPARED 't007_prepared'");
is($state, '25006', 'COMMIT PREPARED is refused on the former leader');
like($err, qr/Refused: COMMIT PREPARED would commit writes made elsewhere/,
	'... with its reason');
($state) = le_sqlstate($n3, "ROLLBACK PREPARED 't007_prepared'");
is($state, '00000', 'ROLLBACK PREPARED works there');
is($n3->safe_psql('postgres', 'SELECT count(*) FROM t WHERE id = 3'),
	'0', 'the prepared row never committed');
# queue: node1, node2, node3

#
# Frozen worker: the old leader fences itself strictly before the next in
# line leads.
#
my $old = $n1;
my $new = $n2;
# node2 sees node3 gone from ahead of it at its next look (within TTL/3)
ok( $new->poll_query_until(
		'postgres', 'SELECT queue_position FROM leader_status()', '1'),
	'node2 is next in line');
my $b_old = $old->background_psql('postgres', on_error_stop => 0, timeout => 60);
my $b_new = $new->background_psql('postgres', on_error_stop => 0, timeout => 60);
le_bg_query($b_old, '\set VERBOSITY verbose');
is((le_bg_query($b_old, 'SELECT leader_is_primary()'))[0], 't', 'node1 leads before the freeze');

my $pid = le_worker_pid($old);
note "freezing node1's worker, pid $pid";
$frozen_pid = $pid;
my $t0 = time();
kill 'STOP', $pid;

# Sample both nodes alternately (each query completes before the next
# starts). For the old leader keep the time after its last 't' answer; for
# the new one the time before its first 't' query.
my ($last_old_t, $first_new_t, $first_old_f, $old_flapped, $samples);
my $deadline = $t0 + 10;
while (time() < $deadline)
{
	my $b  = time();
	my ($o) = le_bg_query($b_old, 'SELECT leader_is_primary()');
	my $a  = time();
	if ($o eq 't')
	{
		$last_old_t = $a;
		$old_flapped = 1 if defined $first_old_f;
	}
	elsif ($o eq 'f') { $first_old_f //= $b; }

	$b = time();
	my ($n) = le_bg_query($b_new, 'SELECT leader_is_primary()');
	$samples++;
	if ($n eq 't') { $first_new_t = $b; last; }
	usleep(10_000);
}
ok(defined $first_new_t, 'node2 leads while node1\'s worker is frozen');
ok(defined $last_old_t, 'node1 was seen leading after the freeze');
ok(defined $first_old_f, 'node1 stopped leading');
ok(!$old_flapped, 'node1 did not lead again once it had stopped');
if (defined $first_new_t && defined $last_old_t)
{
	cmp_ok($last_old_t, '<', $first_new_t,
		"node1's last 't' precedes node2's first 't'");
	note sprintf(
		'after SIGSTOP: node1 last true %.3f s, node1 first false %.3f s, '
		  . 'node2 first true %.3f s (gap %.3f s, %d samples)',
		$last_old_t - $t0, ($first_old_f // $t0) - $t0, $first_new_t - $t0,
		$first_new_t - $last_old_t, $samples);
}
my ($out, $e) = le_bg_query($b_old, "INSERT INTO t VALUES (10, 'frozen worker')");
like($e, qr/ERROR:  25006: cannot write on node "node1": it is not the leader/,
	'an INSERT on node1 fails with 25006 while its worker is frozen');
unlike($e, qr/The leader is "node1"/,
	'... and the DETAIL does not name node1 as the leader');
note "error on the frozen node:\n$e";
($out) = le_bg_query($b_new, "INSERT INTO t VALUES (10, 'new leader') RETURNING id");
is($out, '10', 'node2 writes');
$b_old->quit;
$b_new->quit;

kill 'CONT', $pid;
$frozen_pid = undef;
ok( $old->poll_query_until(
		'postgres',
		'SELECT role, leader_name, leader_is_primary() FROM leader_status()',
		'follower|node2|f'),
	'after SIGCONT node1 follows node2');
my $one = le_wait_one_leader(15, @nodes);
ok(defined $one && $one == $new, 'exactly one node leads: node2');
($state) = le_sqlstate($old, "INSERT INTO t VALUES (11, 'x')");
is($state, '25006', 'node1 still refuses writes');
# queue: node2, node3, node1

#
# etcd frozen for longer than the TTL: the leader fences itself within it.
#
my $leader = $n2;
my $b_l = $leader->background_psql('postgres', on_error_stop => 0, timeout => 60);
le_bg_query($b_l, '\set VERBOSITY verbose');
is((le_bg_query($b_l, 'SELECT leader_is_primary()'))[0], 't', 'node2 leads');
$t0 = time();
$etcd->pause;
my $lapsed;
while (time() < $t0 + 10)
{
	my ($o) = le_bg_query($b_l, 'SELECT leader_is_primary()');
	if ($o eq 'f') { $lapsed = time() - $t0; last; }
	usleep(20_000);
}
ok(defined $lapsed, 'node2 stops leading while etcd is frozen');
cmp_ok($lapsed // 99, '<=', $ttl, "... within the TTL ($ttl s)");
($out, $e) = le_bg_query($b_l, "INSERT INTO t VALUES (20, 'etcd frozen')");
my $refused = time() - $t0;
like($e, qr/ERROR:  25006: cannot write on node "node2": it is not the leader/,
	'an INSERT on node2 fails with 25006');
cmp_ok($refused, '<=', $ttl + 1, "... within TTL + 1 s of the freeze");
note sprintf('etcd frozen: node2 lapsed after %.3f s, INSERT refused after %.3f s',
	$lapsed // -1, $refused);
# once its worker knows it is cut off (a request timed out), the DETAIL says
# that no leader is known
my $no_leader;
while (time() < $t0 + 10)
{
	($out, $e) = le_bg_query($b_l, "INSERT INTO t VALUES (21, 'etcd frozen')");
	last if $e !~ /ERROR:  25006:/;
	if ($e =~ /DETAIL:  No leader is known to this node\. Refused: cannot execute INSERT in a read-only transaction\./)
	{
		$no_leader = time() - $t0;
		last;
	}
	usleep(100_000);
}
ok(defined $no_leader, 'the DETAIL then says that no leader is known')
  or diag "last error: $e";
note sprintf('"No leader is known" %.3f s after the freeze', $no_leader // -1);
# stay frozen past the TTL: nobody may lead meanwhile
usleep(1_000_000 * ($t0 + $ttl + 1 - time())) if time() < $t0 + $ttl + 1;
is(scalar(le_leaders(@nodes)), 0, 'no node leads after etcd was frozen for TTL + 1 s');
$b_l->quit;

$etcd->resume;
$leader = le_wait_one_leader(30, @nodes);
ok(defined $leader, 'exactly one node leads after etcd resumes');
if (defined $leader)
{
	note 'leader after the etcd freeze: ' . $leader->name;
	($state, $err) = le_sqlstate($leader, "INSERT INTO t VALUES (22, 'after the freeze')");
	is($state, '00000', 'the new leader can write') or diag $err;
	foreach my $f (grep { $_ != $leader } @nodes)
	{
		ok( $f->poll_query_until(
				'postgres', 'SELECT role FROM leader_status()', 'follower'),
			$f->name . ' follows');
		($state) = le_sqlstate($f, "INSERT INTO t VALUES (23, 'x')");
		is($state, '25006', $f->name . ' refuses writes');
	}
}
is(scalar(le_leaders(@nodes)), 1, 'still exactly one leader');

#
# fence_bypass on a follower is logged; fence_writes = off lets it write
#
$leader //= $n2;
my ($follower) = grep { $_ != $leader } @nodes;
$log_offset = -s $follower->logfile;
($state, $err) = le_sqlstate($follower, "INSERT INTO t VALUES (30, 'bypass')",
	bypass => 1);
is($state, '00000', 'a superuser with fence_bypass writes on a follower')
  or diag $err;
# the server writes its log before it answers (no logging collector)
like(slurp_file($follower->logfile, $log_offset),
	qr/LOG:  leader_election: fence bypassed by role "[^"]+" on a node that is not the leader/,
	'... and the bypass is logged');

($state, $err) = le_sqlstate($follower,
	'ALTER SYSTEM SET leader_election.fence_writes = off');
is($state, '25006', 'ALTER SYSTEM is refused on a follower') or diag $err;
le_bypass_psql($follower, 'ALTER SYSTEM SET leader_election.fence_writes = off');
$follower->reload;
ok( $follower->poll_query_until(
		'postgres', 'SHOW leader_election.fence_writes', 'off'),
	'fence_writes is off after a reload (ALTER SYSTEM with the bypass on a follower)');
($state, $err) = le_sqlstate($follower, "INSERT INTO t VALUES (31, 'fence off')");
is($state, '00000', 'with fence_writes off a follower writes') or diag $err;
is($follower->safe_psql('postgres', 'SELECT leader_is_primary()'),
	'f', '... although it does not lead');
$follower->safe_psql('postgres',
	'ALTER SYSTEM RESET leader_election.fence_writes');  # the fence is off here
$follower->reload;
ok( $follower->poll_query_until(
		'postgres', 'SHOW leader_election.fence_writes', 'on'),
	'fence_writes is on again after a reload');
($state) = le_sqlstate($follower, "INSERT INTO t VALUES (32, 'fence on')");
is($state, '25006', 'the follower refuses writes again');
is( $follower->safe_psql('postgres',
		'SELECT string_agg(id::text, \',\' ORDER BY id) FROM t WHERE id >= 30'),
	'30,31', 'exactly the bypass and fence-off rows were written');

#
# COMMIT AND CHAIN on a follower: the chained transaction began before the
# node led, so it stays read-only once the node leads; the next one writes.
#
my $b_chain = $follower->background_psql('postgres', on_error_stop => 0, timeout => 60);
le_bg_query($b_chain, $_) foreach ('BEGIN', 'SELECT 1', 'COMMIT AND CHAIN');
for my $round (1 .. 3)
{
	my $current = le_wait_one_leader(15, @nodes);
	last if !defined $current || $current == $follower;
	$current->safe_psql('postgres', 'SELECT leader_resign()');
	$current->poll_query_until('postgres', 'SELECT leader_is_primary()', 'f');
}
ok(le_wait_leader($follower), $follower->name . ' leads after the others resigned');
is((le_bg_query($b_chain, 'SHOW transaction_read_only'))[0], 'on',
	'the transaction chained on the follower stays read-only');
($out, $e) = le_bg_query($b_chain, "INSERT INTO t VALUES (40, 'chained') RETURNING id");
like($e, qr/ERROR:  cannot write in this transaction on node "\w+": it began before the node became the leader/,
	'... and cannot write although its node leads now');
le_bg_query($b_chain, 'COMMIT');
($out, $e) = le_bg_query($b_chain, "INSERT INTO t VALUES (40, 'next') RETURNING id");
is($out, '40', 'the next transaction writes') or diag $e;
is($e, '', '... without an error');
$b_chain->quit;

$_->stop foreach @nodes;
$etcd->stop;

done_testing();
