
# Statements PostgreSQL allows in a read-only transaction that persist
# state, two nodes and a real etcd (node1 leads, node2 follows;
# fence_writes = on; wal_level = logical). On node2 each is refused with
# 25006 and the fence's message, and leaves nothing behind:
#  - EXPLAIN ANALYZE of CREATE TABLE AS, SELECT INTO and CREATE MATERIALIZED
#    VIEW (as the superuser and as a plain role with CREATE on public): no
#    relation is created;
#  - CLUSTER, REINDEX, REINDEX (TABLESPACE ...), VACUUM FULL: the table and
#    its index keep their files, indisclustered is unchanged;
#  - pg_logical_emit_message (nothing reaches a logical slot),
#    pg_import_system_collations (no collation added),
#    pg_replication_origin_create, pg_create_physical_replication_slot and
#    pg_create_logical_replication_slot (no origin, no slot, pg_replslot/
#    empty), ALTER SYSTEM (postgresql.auto.conf unchanged), also of
#    leader_election.fence_writes;
#  - large-object writers and nextval reached through another name: a
#    LANGUAGE internal function on be_lo_put, one on nextval_oid called in a
#    DO block after COMMIT;
#  - still working: EXPLAIN ANALYZE SELECT, EXPLAIN ANALYZE CREATE TEMP
#    TABLE AS, plain VACUUM, ANALYZE.
# Not tested (a documented limit): CREATE_REPLICATION_SLOT over a
# replication connection.
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

my $prefix = '/leader_election/t014';

my $etcd = EtcdServer->new('etcd');
$etcd->start;

my %conf = (prefix => $prefix, extra_conf => "wal_level = logical");
my ($n1, $n2) = le_leader_and_follower($etcd, %conf);

le_bypass_psql(
	$n2, q{
CREATE TABLE t (id int PRIMARY KEY, v text);
INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g;
CREATE SEQUENCE s;
SELECT setval('s', 100);
CREATE ROLE app LOGIN;
GRANT CREATE ON SCHEMA public TO app;
GRANT SELECT ON t TO app;
CREATE SCHEMA coll;
CREATE FUNCTION my_put(oid, bigint, bytea) RETURNS void LANGUAGE internal
	STRICT AS 'be_lo_put';
CREATE FUNCTION my_nextval(regclass) RETURNS bigint LANGUAGE internal
	STRICT AS 'nextval_oid';
});

sub q2
{
	my ($sql) = @_;
	return $n2->safe_psql('postgres', $sql);
}

# le_refused on node2, and $check's answer is unchanged by the attempt (and
# equal to $expect, if given). $cleanup (with bypass) then undoes whatever
# the attempt left, so that one failure does not spoil the next case.
sub refused
{
	my (%a) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $before = $a{check}->();
	le_refused($n2, $a{sql}, $a{what}, %{ $a{params} // {} });
	my $after = $a{check}->();
	is($after, $a{expect} // $before, "$a{what}: $a{state}");
	le_bypass_psql($n2, $a{cleanup}) if defined $a{cleanup};
	return;
}

#
# EXPLAIN ANALYZE runs CREATE TABLE AS (or its kin) without the read-only
# check of the statement itself
#
my %explain = (
	x  => 'EXPLAIN (ANALYZE) CREATE TABLE x AS SELECT 1;',
	y  => 'EXPLAIN ANALYZE SELECT 1 INTO y;',
	mv => 'EXPLAIN ANALYZE CREATE MATERIALIZED VIEW mv AS SELECT 1;');
foreach my $as ([ 'the superuser', {} ], [ 'a plain role', { user => 'app' } ])
{
	foreach my $rel ('x', 'y', 'mv')
	{
		refused(
			sql     => $explain{$rel},
			what    => "$explain{$rel} as $as->[0]",
			params  => $as->[1],
			check   => sub { q2("SELECT to_regclass('$rel') IS NULL") },
			expect  => 't',
			state   => "no relation $rel",
			cleanup => $rel eq 'mv'
			? 'DROP MATERIALIZED VIEW IF EXISTS mv'
			: "DROP TABLE IF EXISTS $rel");
	}
}

#
# Maintenance commands that rewrite a table or its indexes
#
my $files = sub {
	q2( "SELECT pg_relation_filenode('t'), pg_relation_filenode('t_pkey'), "
		  . "(SELECT indisclustered FROM pg_index WHERE indexrelid = 't_pkey'::regclass)"
	);
};
my $files0 = $files->();
like($files0, qr/^\d+\|\d+\|f$/, 'sanity: t and t_pkey have files, t is not clustered');
refused(
	sql    => 'CLUSTER t USING t_pkey;',
	what   => 'CLUSTER t USING t_pkey',
	check  => $files,
	expect => $files0,
	state  => 't and t_pkey keep their files, indisclustered is unchanged',
	# with the fence off, a later case should not find t clustered
	cleanup => 'ALTER TABLE t SET WITHOUT CLUSTER');
$files0 = $files->();
refused(
	sql    => 'REINDEX (TABLESPACE pg_default) TABLE t;',
	what   => 'REINDEX (TABLESPACE pg_default) TABLE t',
	check  => $files,
	expect => $files0,
	state  => 't and t_pkey keep their files');

# VACUUM FULL and a plain REINDEX change files and statistics, not what a
# client sees: they keep working on a follower (what they evaluate runs
# read-only: t/013)
foreach my $maintenance ('REINDEX TABLE t', 'VACUUM FULL t')
{
	my $rows0 = q2('SELECT count(*) FROM t');
	my ($state, $err) = le_sqlstate($n2, "$maintenance;");
	is($state, '00000', "$maintenance works on a follower") or diag $err;
	is(q2('SELECT count(*) FROM t'), $rows0, "$maintenance: t keeps its rows");
	like($files->(), qr/^\d+\|\d+\|f$/, "$maintenance: t is still not clustered");
}

#
# Functions that persist state without a read-only check
#
# a logical slot watches for the message (created and read with bypass)
le_bypass_psql($n2,
	"SELECT pg_create_logical_replication_slot('watch', 'test_decoding')");
refused(
	sql   => q{SELECT pg_logical_emit_message(true, 'p', 'x');},
	what  => 'pg_logical_emit_message(true, ...)',
	check => sub {
		le_bypass_psql($n2,
			q{SELECT count(*) FROM pg_logical_slot_peek_changes('watch', NULL, NULL) WHERE data LIKE 'message:%'}
		);
	},
	expect => '0',
	state  => 'no message reaches a logical slot');
le_bypass_psql($n2, "SELECT pg_drop_replication_slot('watch')");

refused(
	sql    => q{SELECT pg_import_system_collations('pg_catalog');},
	what   => q{pg_import_system_collations('pg_catalog')},
	check  => sub { q2('SELECT count(*) FROM pg_collation') },
	state  => 'pg_collation has as many rows as before');
refused(
	sql   => q{SELECT pg_import_system_collations('coll');},
	what  => q{pg_import_system_collations('coll') (an empty schema)},
	check => sub {
		q2("SELECT count(*) FROM pg_collation WHERE collnamespace = 'coll'::regnamespace");
	},
	expect  => '0',
	state   => 'no collation in schema coll',
	cleanup => 'DROP SCHEMA coll CASCADE; CREATE SCHEMA coll;');

refused(
	sql     => q{SELECT pg_replication_origin_create('o');},
	what    => q{pg_replication_origin_create('o')},
	check   => sub { q2('SELECT count(*) FROM pg_replication_origin') },
	expect  => '0',
	state   => 'pg_replication_origin is empty',
	cleanup => q{SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin});

my $replslot = $n2->data_dir . '/pg_replslot';
my $slots = sub {
	opendir(my $dh, $replslot) or die "cannot read $replslot: $!";
	my @files = grep { !/^\.\.?$/ } readdir($dh);
	closedir $dh;
	return q2('SELECT count(*) FROM pg_replication_slots')
	  . ' slots, files in pg_replslot/: '
	  . join(',', sort @files);
};
refused(
	sql     => q{SELECT pg_create_physical_replication_slot('s1');},
	what    => q{pg_create_physical_replication_slot('s1')},
	check   => $slots,
	expect  => '0 slots, files in pg_replslot/: ',
	state   => 'no slot, pg_replslot/ is empty',
	cleanup => q{SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots});
refused(
	sql     => q{SELECT pg_create_logical_replication_slot('s2', 'test_decoding');},
	what    => q{pg_create_logical_replication_slot('s2', 'test_decoding')},
	check   => $slots,
	expect  => '0 slots, files in pg_replslot/: ',
	state   => 'no slot, pg_replslot/ is empty',
	cleanup => q{SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots});

my $auto_conf = $n2->data_dir . '/postgresql.auto.conf';
my $auto = sub { slurp_file($auto_conf) };
refused(
	sql     => q{ALTER SYSTEM SET work_mem = '7MB';},
	what    => q{ALTER SYSTEM SET work_mem = '7MB'},
	check   => $auto,
	state   => 'postgresql.auto.conf is unchanged',
	cleanup => 'ALTER SYSTEM RESET work_mem');
refused(
	sql     => q{ALTER SYSTEM SET leader_election.fence_writes = off;},
	what    => q{ALTER SYSTEM SET leader_election.fence_writes = off},
	check   => $auto,
	state   => 'postgresql.auto.conf is unchanged',
	cleanup => 'ALTER SYSTEM RESET leader_election.fence_writes');

#
# Writers reached through another function name
#
my $lo = le_bypass_psql($n2, q{SELECT lo_from_bytea(0, 'abc')});
refused(
	sql   => qq{SELECT my_put($lo, 0, 'zz');},
	what  => q{my_put(), a LANGUAGE internal function on be_lo_put},
	check => sub { q2("SELECT encode(lo_get($lo), 'escape')") },
	expect => 'abc',
	state  => 'the large object is unchanged');
refused(
	sql =>
	  q{DO $$ DECLARE id bigint; BEGIN COMMIT; id := my_nextval('s'); COMMIT; END $$;},
	what  => q{my_nextval(), a LANGUAGE internal function on nextval_oid, after COMMIT in a DO block},
	check => sub { q2('SELECT last_value, is_called FROM s') },
	expect => '100|t',
	state  => 's is unchanged');

#
# Still working on the follower
#
my ($state, $err) = le_sqlstate($n2, 'EXPLAIN (ANALYZE) SELECT 1;');
is($state, '00000', 'EXPLAIN (ANALYZE) SELECT 1 works') or diag $err;
($state, $err) = le_sqlstate($n2,
	"EXPLAIN ANALYZE CREATE TEMP TABLE tx AS SELECT 1;\nSELECT count(*) FROM tx;");
is($state, '00000', 'EXPLAIN ANALYZE CREATE TEMP TABLE tx AS SELECT 1 works')
  or diag $err;
($state, $err) = le_sqlstate($n2, 'VACUUM t;');
is($state, '00000', 'VACUUM t works') or diag $err;
($state, $err) = le_sqlstate($n2, 'ANALYZE t;');
is($state, '00000', 'ANALYZE t works') or diag $err;
is(q2('SELECT count(*) FROM t'), '100', 't still has its 100 rows');

$_->stop foreach ($n1, $n2);
$etcd->stop;

done_testing();
