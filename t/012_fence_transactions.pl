
# Every transaction on a fenced node is read-only for function calls, two
# nodes and a real etcd (node1 leads, node2 follows; fence_writes = on):
#  - a DO block or a procedure (also CALLed by a plain role) that COMMITs
#    and then calls nextval/setval on a permanent sequence in the new
#    transaction is refused with 25006 and the fence's message, and the
#    sequence is unchanged (sequence changes survive a rollback, so a
#    refusal at commit is too late);
#  - the fast path (protocol FunctionCall 'F', libpq's PQfn) of nextval in
#    autocommit, and of setval in a transaction chained with COMMIT AND
#    CHAIN, is refused and leaves the sequence unchanged (t/FastPath.pm);
#  - DDL of a temporary table that evaluates expressions on a permanent
#    sequence (DEFAULT nextval, USING setval, CHECK nextval) is refused;
#  - still working on the follower: temporary sequences and tables, reads,
#    SET/SHOW, LISTEN, EXPLAIN without ANALYZE;
#  - on the leader, a DO block whose transaction (begun after a COMMIT in
#    it) outlives the node's leadership cannot call setval afterwards. It
#    waits on an advisory lock while the node resigns, so no timing matters.
#
# The nodes are independent clusters: each has its own sequence s, created
# with fence_bypass whether the node leads or not.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# t/ holds the helper modules (PROVE_FLAGS in the Makefile is reset by PGXS)
use FindBin;
use lib $FindBin::RealBin;

use EtcdServer;
use FastPath;
use LeaderElectionTest;

my $prefix = '/leader_election/t012';
my $fence_msg = 'cannot write on node "node2": it is not the leader';

my $etcd = EtcdServer->new('etcd');
$etcd->start;

my ($n1, $n2) = le_leader_and_follower($etcd, prefix => $prefix);

foreach my $n ($n1, $n2)
{
	le_bypass_psql(
		$n, q{
CREATE SEQUENCE s;
SELECT setval('s', 100);
CREATE TABLE t (id int PRIMARY KEY);
CREATE ROLE app LOGIN;
GRANT USAGE ON SEQUENCE s TO app;
CREATE PROCEDURE p() LANGUAGE plpgsql AS $$
DECLARE x bigint;
BEGIN
	COMMIT;
	PERFORM 1;
	x := nextval('s');
END $$;
CREATE PROCEDURE p_assign() LANGUAGE plpgsql AS $$
DECLARE x bigint;
BEGIN
	COMMIT;
	x := nextval('s');
END $$;
});
}

sub seq_state
{
	my ($node) = @_;
	return $node->safe_psql('postgres', 'SELECT last_value, is_called FROM s');
}

# le_refused on node2, and s is unchanged by the attempt
sub refused
{
	my ($sql, $what, %p) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $before = seq_state($n2);
	le_refused($n2, $sql, $what, %p);
	is(seq_state($n2), $before, "$what: s is unchanged ($before)");
	return;
}

is(seq_state($n2), '100|t', 'sanity: s on node2 is at 100');

#
# DO blocks and procedures that COMMIT, then use the sequence
#
refused(q{DO $$ DECLARE id bigint; BEGIN COMMIT; id := nextval('s'); COMMIT; END $$;},
	'DO: COMMIT, then nextval');
refused(q{DO $$ DECLARE id bigint; BEGIN COMMIT; id := setval('s', 7000000); COMMIT; END $$;},
	'DO: COMMIT, then setval');
refused('CALL p();', 'CALL p() (COMMIT; PERFORM 1; nextval)');
refused('CALL p();', 'CALL p() as a plain role', user => 'app');
refused('CALL p_assign();', 'CALL p_assign() (COMMIT; nextval)');
refused('CALL p_assign();', 'CALL p_assign() as a plain role', user => 'app');

#
# The fast path: a FunctionCall message runs a function by OID, without
# parser, planner or executor.
#
my $c = FastPath->connect($n2);
my $r = $c->query(
	q{SELECT 'nextval(regclass)'::regprocedure::oid, 'setval(regclass, bigint)'::regprocedure::oid, 's'::regclass::oid}
);
is($r->{error}, undef, 'FastPath: a simple query over the protocol');
my ($f_nextval, $f_setval, $s_oid) = @{ $r->{rows}[0] };

my $before = seq_state($n2);
$r = $c->call($f_nextval, [ FastPath::oid($s_oid) ]);
is($r->{error}{C} // 'none', '25006',
	'fast path: nextval(regclass) in autocommit is refused with SQLSTATE 25006')
  or diag 'returned ' . ($r->{value} // 'NULL');
is($r->{error}{M} // '', $fence_msg, '... with the fence\'s message');
is(seq_state($n2), $before, '... s is unchanged');
is($r->{status}, 'I', '... and the session is idle, outside a transaction');

$r = $c->query('BEGIN');
is($r->{error}, undef, 'fast-path session: BEGIN');
$r = $c->query('SELECT 1');
is_deeply($r->{rows}, [ ['1'] ], '... SELECT 1');
$r = $c->query('COMMIT AND CHAIN');
is($r->{error}, undef, '... COMMIT AND CHAIN');
is($r->{status}, 'T', '... a chained transaction is open');
$before = seq_state($n2);
$r = $c->call($f_setval, [ FastPath::oid($s_oid), FastPath::int8(7000000) ]);
is($r->{error}{C} // 'none', '25006',
	'fast path: setval(regclass, bigint) in the chained transaction is refused with SQLSTATE 25006'
) or diag 'returned ' . ($r->{value} // 'NULL');
is($r->{error}{M} // '', $fence_msg, '... with the fence\'s message');
$c->query('ROLLBACK');
is(seq_state($n2), $before, '... s is unchanged');
$c->close;

#
# DDL of a temporary table that evaluates expressions on a permanent sequence
#
my $tmp = "CREATE TEMP TABLE tmp (a int);\nINSERT INTO tmp VALUES (1);\n";
refused($tmp . q{ALTER TABLE tmp ADD COLUMN b bigint DEFAULT nextval('s');},
	'temporary table: ADD COLUMN ... DEFAULT nextval(s)');
refused($tmp . q{ALTER TABLE tmp ALTER COLUMN a TYPE bigint USING setval('s', 7000000);},
	'temporary table: ALTER COLUMN ... USING setval(s)');
refused($tmp . q{ALTER TABLE tmp ADD CONSTRAINT c CHECK (nextval('s') > 0);},
	'temporary table: ADD CONSTRAINT ... CHECK (nextval(s) > 0)');

#
# Still working on the follower
#
$before = seq_state($n2);
# $sql's output on node2, or its error
sub output
{
	my ($sql) = @_;
	my ($out, $err) = ('', '');
	my $rc = $n2->psql('postgres', $sql, stdout => \$out, stderr => \$err,
		on_error_stop => 1, timeout => 60);
	return $rc == 0 ? $out : "error: $err";
}

is( output(
		q{
CREATE TEMP SEQUENCE ts;
SELECT nextval('ts'), setval('ts', 5), nextval('ts');
DROP SEQUENCE ts;
}),
	'1|5|6',
	'a temporary sequence: create, nextval, setval, drop');

# a temporary table with a temporary sequence as its default
is( output(
		q{
CREATE TEMP SEQUENCE tts;
CREATE TEMP TABLE tt (a int, b bigint DEFAULT nextval('tts'));
INSERT INTO tt (a) VALUES (1), (2);
UPDATE tt SET a = a + 10;
DELETE FROM tt WHERE a = 11;
SELECT a, b FROM tt;
DROP TABLE tt;
DROP SEQUENCE tts;
}),
	'12|2',
	'a temporary table: create, insert, update, delete, drop');

is(output('SELECT count(*) FROM t'), '0', 'reads work');
is(output("SET work_mem = '5MB';\nSHOW work_mem;"), '5MB', 'SET and SHOW work');
my ($state, $err) = le_sqlstate($n2, 'LISTEN t012; UNLISTEN t012;');
is($state, '00000', 'LISTEN works') or diag $err;
($state, $err) = le_sqlstate($n2,
	"EXPLAIN (COSTS OFF) INSERT INTO t VALUES (1);\nEXPLAIN (COSTS OFF) SELECT nextval('s');"
);
is($state, '00000', 'EXPLAIN without ANALYZE works') or diag $err;
is(seq_state($n2), $before, 'after all that, s on node2 is unchanged');
is($n2->safe_psql('postgres', 'SELECT count(*) FROM t'),
	'0', '... and t is empty');

#
# On the leader: a transaction begun (after a COMMIT in a DO block) while
# node1 led, which calls setval after node1 resigned.
#
# $set is the setval call, run after the DO block has acquired advisory
# lock 8, which $holder holds until node1 no longer leads.
sub resign_during_do
{
	my ($set, $value) = @_;
	my $holder = $n1->background_psql('postgres', on_error_stop => 0,
		timeout => 120);
	my $worker = $n1->background_psql('postgres', on_error_stop => 0,
		timeout => 120);
	le_bg_query($worker, '\set VERBOSITY verbose');
	my ($out, $e) = le_bg_query($holder, 'SELECT pg_advisory_lock(8)');
	is($e, '', 'node1: a session holds advisory lock 8');
	$worker->query_until(qr/started/,
		    "\\echo started\n"
		  . "DO \$\$ DECLARE v bigint; BEGIN COMMIT; PERFORM pg_advisory_lock(8); $set; COMMIT; END \$\$;\n"
	);
	ok( $n1->poll_query_until(
			'postgres',
			"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
			'1'),
		'node1: the DO block (after its COMMIT) waits for the lock');
	is($n1->safe_psql('postgres', 'SELECT leader_resign()'),
		't', 'node1 resigns meanwhile');
	ok(le_wait_leader($n2), 'node2 leads');
	is($n1->safe_psql('postgres', 'SELECT leader_is_primary()'),
		'f', 'node1 no longer leads');
	le_bg_query($holder, 'SELECT pg_advisory_unlock(8)');
	(undef, $e) = le_bg_query($worker, 'SELECT 1');
	like($e,
		qr/ERROR:  25006: cannot write on node "node1": it is not the leader/,
		"node1: the DO block's $set fails with 25006 and the fence's message");
	isnt(seq_state($n1), "$value|t", "... and s on node1 is not $value");
	$holder->quit;
	$worker->quit;
	return;
}

is(seq_state($n1), '100|t', 'sanity: s on node1 is at 100');
resign_during_do(q{PERFORM setval('s', 900000)}, 900000);

# node1 leads again for the second round
is($n2->safe_psql('postgres', 'SELECT leader_resign()'),
	't', 'node2 resigns');
ok(le_wait_leader($n1), 'node1 leads again');
resign_during_do(q{v := setval('s', 900001)}, 900001);

$_->stop foreach ($n1, $n2);
$etcd->stop;

done_testing();
