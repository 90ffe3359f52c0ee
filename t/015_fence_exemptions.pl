
# The fence's exemptions cannot be turned into a way around it, two nodes
# and a real etcd (node1 leads, node2 follows; fence_writes = on):
#  - CREATE/DROP EXTENSION leader_election run on a follower, but not the
#    writes they would carry along: with a DDL-audit event trigger
#    (ddl_command_end, INSERT INTO audit) both are refused with 25006, the
#    audit table stays empty and the extension stays as it was; without the
#    trigger both work;
#  - ALTER EXTENSION leader_election ADD TABLE is refused; once a table is a
#    member (added with bypass), DROP EXTENSION leader_election, which would
#    drop it, is refused and the table keeps its rows;
#  - leader_election.fence_bypass counts for superusers only: a plain role
#    with ALTER ROLE ... SET fence_bypass = on, or with GRANT SET ON
#    PARAMETER, still cannot write; SET by a plain role without the grant
#    fails with 42501;
#  - the supported way for a plain role to write on a follower: a
#    superuser-owned SECURITY DEFINER function with SET fence_bypass = on
#    writes and commits, and the bypass is logged.
#
# The nodes are independent clusters: node2's objects are created with
# fence_bypass.

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

my $prefix = '/leader_election/t015';

my $etcd = EtcdServer->new('etcd');
$etcd->start;

my ($n1, $n2) = le_leader_and_follower($etcd, prefix => $prefix);

le_bypass_psql(
	$n2, q{
CREATE TABLE t (id int PRIMARY KEY);
CREATE TABLE t2 (id int);
INSERT INTO t2 VALUES (1), (2), (3);
CREATE TABLE audit (tag text);
CREATE FUNCTION audit_ddl() RETURNS event_trigger LANGUAGE plpgsql
	AS $$ BEGIN INSERT INTO audit VALUES (tg_tag); END $$;
CREATE ROLE app LOGIN;
GRANT SELECT, INSERT ON t TO app;
CREATE FUNCTION ins_t(int) RETURNS void LANGUAGE plpgsql SECURITY DEFINER
	SET leader_election.fence_bypass = on
	AS $$ BEGIN INSERT INTO t VALUES ($1); END $$;
REVOKE EXECUTE ON FUNCTION ins_t(int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ins_t(int) TO app;
});

sub q2
{
	my ($sql) = @_;
	return $n2->safe_psql('postgres', $sql);
}

my $ext = "SELECT count(*) FROM pg_extension WHERE extname = 'leader_election'";

# Puts leader_election back on node2 (with bypass, the trigger disabled)
# and empties audit, whatever a failed case left.
sub restore_extension
{
	le_bypass_psql(
		$n2, q{
ALTER EVENT TRIGGER audit_ddl DISABLE;
CREATE EXTENSION IF NOT EXISTS leader_election;
ALTER EVENT TRIGGER audit_ddl ENABLE;
TRUNCATE audit;
});
	return;
}

#
# Without an event trigger: CREATE/DROP EXTENSION leader_election work on
# a follower
#
my ($state, $err) = le_sqlstate($n2, 'DROP EXTENSION leader_election;');
is($state, '00000', 'DROP EXTENSION leader_election works on node2') or diag $err;
is(q2($ext), '0', '... the extension is gone');
($state, $err) = le_sqlstate($n2, 'CREATE EXTENSION leader_election;');
is($state, '00000', 'CREATE EXTENSION leader_election works on node2') or diag $err;
is(q2($ext), '1', '... the extension is back');
le_bypass_psql($n2, 'CREATE EXTENSION IF NOT EXISTS leader_election');

#
# With a DDL-audit event trigger, whose INSERT is a write
#
le_bypass_psql($n2,
	"CREATE EVENT TRIGGER audit_ddl ON ddl_command_end EXECUTE FUNCTION audit_ddl();\nTRUNCATE audit;"
);
le_refused($n2, 'DROP EXTENSION leader_election;',
	'DROP EXTENSION leader_election with an audit event trigger');
is(q2('SELECT count(*) FROM audit'), '0', '... audit is empty');
is(q2($ext), '1', '... the extension still exists');
restore_extension();

le_bypass_psql(
	$n2, q{
ALTER EVENT TRIGGER audit_ddl DISABLE;
DROP EXTENSION leader_election;
ALTER EVENT TRIGGER audit_ddl ENABLE;
});
is(q2($ext), '0', 'leader_election dropped on node2 with bypass, the trigger disabled');
le_refused($n2, 'CREATE EXTENSION leader_election;',
	'CREATE EXTENSION leader_election with an audit event trigger');
is(q2('SELECT count(*) FROM audit'), '0', '... audit is empty');
is(q2($ext), '0', '... the extension still does not exist');
restore_extension();
is(q2($ext), '1', 'leader_election is back on node2 (with bypass)');
le_bypass_psql($n2, 'DROP EVENT TRIGGER audit_ddl');

#
# An extension's member table
#
my $member = q{SELECT count(*) FROM pg_depend
	WHERE classid = 'pg_class'::regclass AND objid = 't2'::regclass
	AND refclassid = 'pg_extension'::regclass AND deptype = 'e'};
le_refused($n2, 'ALTER EXTENSION leader_election ADD TABLE t2;',
	'ALTER EXTENSION leader_election ADD TABLE t2');
is(q2($member), '0', '... t2 is not a member of the extension');
le_bypass_psql($n2, 'ALTER EXTENSION leader_election ADD TABLE t2');
is(q2($member), '1', 't2 added to the extension with bypass');
le_refused($n2, 'DROP EXTENSION leader_election;',
	'DROP EXTENSION leader_election with a member table t2');
my $t2 =
  q2("SELECT to_regclass('t2') IS NOT NULL") eq 't'
  ? q2('SELECT count(*) FROM t2') . ' rows'
  : 'gone';
is($t2, '3 rows', '... t2 still exists with its 3 rows');
is(q2($ext), '1', '... the extension still exists');
le_bypass_psql($n2, 'CREATE EXTENSION IF NOT EXISTS leader_election');
le_bypass_psql($n2, 'ALTER EXTENSION leader_election DROP TABLE t2')
  if $t2 ne 'gone';

#
# fence_bypass is for superusers only
#
# rows of t with this id
my $rows = sub { q2("SELECT count(*) FROM t WHERE id = $_[0]") };
is(q2('SELECT count(*) FROM t'), '0', 'sanity: t on node2 is empty');

le_bypass_psql($n2, 'ALTER ROLE app SET leader_election.fence_bypass = on');
le_refused($n2, 'INSERT INTO t VALUES (1);',
	'INSERT as a plain role with ALTER ROLE ... SET fence_bypass = on',
	user => 'app');
is($rows->(1), '0', '... t has no row 1');
($state, $err) = le_sqlstate($n2, 'SET leader_election.fence_bypass = on;',
	user => 'app');
is($state, '42501', 'SET fence_bypass = on as a plain role fails with 42501')
  or diag $err;
le_bypass_psql($n2, 'ALTER ROLE app RESET leader_election.fence_bypass');

le_bypass_psql($n2,
	'GRANT SET ON PARAMETER leader_election.fence_bypass TO app');
($state, $err) = le_sqlstate($n2, 'SET leader_election.fence_bypass = on;',
	user => 'app');
is($state, '00000', 'with GRANT SET ON PARAMETER a plain role can SET fence_bypass')
  or diag $err;
le_refused($n2, "SET leader_election.fence_bypass = on;\nINSERT INTO t VALUES (2);",
	'INSERT as a plain role granted SET on fence_bypass, after SET fence_bypass = on',
	user => 'app');
is($rows->(2), '0', '... t has no row 2');
le_bypass_psql($n2,
	'REVOKE SET ON PARAMETER leader_election.fence_bypass FROM app');

#
# A superuser's SECURITY DEFINER function with SET fence_bypass = on
#
my $log_offset = -s $n2->logfile;
($state, $err) = le_sqlstate($n2, 'SELECT ins_t(3);', user => 'app');
is($state, '00000',
	'a plain role calls a superuser\'s SECURITY DEFINER function with SET fence_bypass = on'
) or diag $err;
is($rows->(3), '1', '... its INSERT committed (row 3)');
# the server writes its log before it answers (no logging collector)
like(slurp_file($n2->logfile, $log_offset),
	qr/LOG:  leader_election: fence bypassed by role "[^"]+" on a node that is not the leader/,
	'... and the bypass is logged');
le_refused($n2, 'INSERT INTO t VALUES (4);',
	'the same role without the function', user => 'app');
is($rows->(4), '0', '... t has no row 4');

$_->stop foreach ($n1, $n2);
$etcd->stop;

done_testing();
