
# Work done before the fence acts, two nodes and a real etcd (node1 leads,
# node2 follows; fence_writes = on). On node2 nothing may call nextval on a
# permanent sequence s, even where PostgreSQL evaluates a function before
# (or outside) the statement the fence sees:
#  - the planner folds a mislabeled IMMUTABLE function with constant
#    arguments (SQL and PL/pgSQL): SELECT f(1) and CREATE TEMP TABLE ... AS
#    SELECT f(1) are refused with 25006 and the fence's message, s unchanged;
#  - an expression index on such a function is evaluated by ANALYZE (in the
#    statement's transaction, or in its own ones when it analyzes several
#    tables), VACUUM FULL and REINDEX CONCURRENTLY (their own transactions):
#    all refused, s unchanged;
#  - still working: VACUUM and ANALYZE of a table without such an index.
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

my $prefix = '/leader_election/t013';

my $etcd = EtcdServer->new('etcd');
$etcd->start;

my ($n1, $n2) = le_leader_and_follower($etcd, prefix => $prefix);

# The PL/pgSQL functions call nextval in an assignment: a "simple
# expression", which PL/pgSQL evaluates without the executor.
le_bypass_psql(
	$n2, q{
CREATE SEQUENCE s;
SELECT setval('s', 100);
CREATE FUNCTION f_sql(int) RETURNS bigint IMMUTABLE LANGUAGE sql
	AS $$ SELECT nextval('s') $$;
CREATE FUNCTION f_plpgsql(int) RETURNS bigint IMMUTABLE LANGUAGE plpgsql
	AS $$ BEGIN RETURN nextval('s'); END $$;
CREATE FUNCTION fi(int) RETURNS int IMMUTABLE LANGUAGE plpgsql
	AS $$ DECLARE x bigint; BEGIN x := nextval('s'); RETURN $1; END $$;
CREATE TABLE tab (a int);
INSERT INTO tab SELECT g FROM generate_series(1, 10) g;
CREATE INDEX tab_fi ON tab ((fi(a)));
CREATE TABLE plain (a int PRIMARY KEY);
INSERT INTO plain SELECT g FROM generate_series(1, 10) g;
SELECT setval('s', 100);
});

sub seq_state
{
	return $n2->safe_psql('postgres', 'SELECT last_value, is_called FROM s');
}

# le_refused on node2, and s is unchanged by the attempt
sub refused
{
	my ($sql, $what, %p) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $before = seq_state();
	le_refused($n2, $sql, $what, %p);
	is(seq_state(), $before, "$what: s is unchanged ($before)");
	return;
}

is(seq_state(), '100|t', 'sanity: s on node2 is at 100');

#
# Constant folding in the planner
#
foreach my $f ('f_sql', 'f_plpgsql')
{
	refused("SELECT $f(1);", "SELECT $f(1)");
	refused("CREATE TEMP TABLE tt AS SELECT $f(1);",
		"CREATE TEMP TABLE tt AS SELECT $f(1)");
}

#
# An expression index on a mislabeled IMMUTABLE function
#
refused('ANALYZE tab;', 'ANALYZE tab (expression index)');
refused('ANALYZE tab, plain;',
	'ANALYZE tab, plain (its own transaction per table)');
my $filenode = $n2->safe_psql('postgres', "SELECT pg_relation_filenode('tab')");
refused('VACUUM FULL tab;', 'VACUUM FULL tab (expression index)');
is($n2->safe_psql('postgres', "SELECT pg_relation_filenode('tab')"),
	$filenode, 'VACUUM FULL tab: tab was not rewritten');
$filenode = $n2->safe_psql('postgres', "SELECT pg_relation_filenode('tab_fi')");
refused('REINDEX TABLE CONCURRENTLY tab;',
	'REINDEX TABLE CONCURRENTLY tab (expression index)');
is( $n2->safe_psql(
		'postgres',
		"SELECT pg_relation_filenode('tab_fi') = $filenode, "
		  . "(SELECT count(*) FROM pg_class WHERE relname LIKE 'tab_fi_ccnew%'), "
		  . "(SELECT bool_and(indisvalid) FROM pg_index WHERE indrelid = 'tab'::regclass)"),
	't|0|t',
	'REINDEX TABLE CONCURRENTLY tab: the index is the same and valid, no new one was left behind'
);

#
# Still working: VACUUM and ANALYZE of a plain table
#
my $before = seq_state();
my ($state, $err) = le_sqlstate($n2, 'VACUUM plain;');
is($state, '00000', 'VACUUM of a plain table works') or diag $err;
($state, $err) = le_sqlstate($n2, 'ANALYZE plain;');
is($state, '00000', 'ANALYZE of a plain table works') or diag $err;
($state, $err) = le_sqlstate($n2, 'VACUUM (ANALYZE) plain;');
is($state, '00000', 'VACUUM (ANALYZE) of a plain table works') or diag $err;
is( $n2->safe_psql(
		'postgres', "SELECT count(*) > 0 FROM pg_stats WHERE tablename = 'plain'"),
	't', '... and its statistics are there');
is(seq_state(), $before, 's is unchanged by them');

$_->stop foreach ($n1, $n2);
$etcd->stop;

done_testing();
