# Attacks on the fence of a node that does not lead (fence_writes = on, no
# bypass), two nodes and a real etcd (node1 leads, node2 follows unless said
# otherwise; wal_level = logical, max_prepared_transactions = 5). The
# guarantee: on node2 nothing that changes what a client can observe
# persists. Each case asserts the guarantee, so a failing assertion is a
# hole:
#  A) a PARALLEL SAFE PL/pgSQL function that calls a "persisting" built-in
#     (pg_logical_emit_message non-transactional, pg_drop_replication_slot),
#     run in a parallel worker (debug_parallel_query / force_parallel_mode):
#     PostgreSQL's own workers are exempt from the fence, so its object
#     access hook never sees the built-in (pg_logical_emit_message is
#     executable by PUBLIC by default, so a plain role does it);
#  B) PREPARE TRANSACTION of a transaction that wrote nothing (holding a
#     ROW EXCLUSIVE lock on a permanent table): a prepared transaction is
#     visible in pg_prepared_xacts, keeps its locks and survives a restart;
#  C) CREATE TEMP TABLE ... INHERITS (permanent table), run read-write as
#     temporary DDL, sets the permanent parent's pg_class.relhassubclass,
#     which stays after the session ends;
#  D) a temporary table with contrib lo's lo_manage trigger, created in a
#     session while node2 led: after node2 follows, DELETE of its row (a
#     temporary write, allowed) makes the C trigger unlink the large object,
#     a permanent one, without any function-call hook;
#  E) a role with pg_write_server_files overwrites postgresql.auto.conf with
#     COPY ... TO (observed only: server-side file writes are a README
#     limit);
#  F) NOTIFY on a follower (observed only: transient, not persisted).
# Also: a plain parallel SELECT on a follower gives no WARNING (the parallel
# worker's statement hook tries to set default_transaction_read_only).

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

my $prefix = '/leader_election/t020';

my $etcd = EtcdServer->new('etcd');
$etcd->start;

my %conf = (
	prefix     => $prefix,
	extra_conf => "wal_level = logical\nmax_prepared_transactions = 5\n"
	  . "max_worker_processes = 12\nmax_parallel_workers = 8\n");
my ($n1, $n2) = le_leader_and_follower($etcd, %conf);
my @nodes = ($n1, $n2);

le_bypass_psql(
	$n2, q{
CREATE ROLE app LOGIN;
CREATE ROLE filewriter LOGIN IN ROLE pg_write_server_files;
CREATE TABLE perm (id int);
ALTER TABLE perm OWNER TO app;
CREATE EXTENSION lo;
SELECT pg_create_logical_replication_slot('watch', 'test_decoding');
SELECT pg_create_physical_replication_slot('victim');
CREATE FUNCTION emit_par(t text) RETURNS int LANGUAGE plpgsql PARALLEL SAFE AS
  $$BEGIN PERFORM pg_logical_emit_message(false, 'attack', t); RETURN 1; END$$;
CREATE FUNCTION drop_par(t text) RETURNS int LANGUAGE plpgsql PARALLEL SAFE AS
  $$BEGIN PERFORM pg_drop_replication_slot(t); RETURN 1; END$$;
});

sub q2 { return $n2->safe_psql('postgres', $_[0]); }
sub show { return $_[0] eq '' ? 'succeeded' : $_[0]; }

my $parallel = q{
SET max_parallel_workers_per_gather = 2;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET force_parallel_mode = on;
};

my ($state, $err);

#
# A) parallel workers
#
my $messages = sub {
	my ($tag) = @_;
	# non-transactional messages reach a slot once their WAL is flushed
	le_bypass_psql($n2, 'SELECT pg_switch_wal()');
	le_bypass_psql($n2,
		q{SELECT count(*) FROM pg_logical_slot_peek_changes('watch', NULL, NULL) WHERE data LIKE '%attack%'}
		  . ($tag ? " AND data LIKE '%$tag'" : ''));
};
is($messages->(), '0', 'A: sanity: no message in slot watch');
($state, $err) = le_sqlstate($n2, q{SELECT pg_logical_emit_message(false, 'attack', 'direct');});
is($state, '25006', 'A: sanity: pg_logical_emit_message called directly is refused');
note 'A: plan: '
  . $n2->safe_psql('postgres', $parallel . q{EXPLAIN (COSTS OFF) SELECT emit_par('x');});
($state, $err) = le_sqlstate($n2, $parallel . q{SELECT emit_par('superuser');});
note "A: emit_par in a parallel worker as the superuser: $state $err";
is($messages->('superuser'), '0',
	'A: no logical message emitted on the follower through a parallel worker (superuser)');
($state, $err) =
  le_sqlstate($n2, $parallel . q{SELECT emit_par('app');}, user => 'app');
note "A: emit_par in a parallel worker as app: $state $err";
is($messages->('app'), '0',
	'A: no logical message emitted on the follower through a parallel worker (plain role)');
($state, $err) = le_sqlstate($n2, $parallel . q{SELECT drop_par('victim');});
note "A: drop_par in a parallel worker as the superuser: $state $err";
is(q2(q{SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'victim'}),
	'1', 'A: slot victim is not dropped on the follower through a parallel worker');

# A plain parallel query on a follower (read scaling): no warning
($state, $err) = le_sqlstate($n2,
	$parallel . q{SELECT count(*) FROM perm;}, user => 'app');
is($state, '00000', 'A: a parallel SELECT on the follower works');
unlike($err, qr/WARNING/, 'A: ... without warnings') or diag $err;

#
# B) PREPARE TRANSACTION of a transaction without writes
#
($state, $err) = le_sqlstate($n2,
	q{BEGIN; LOCK TABLE perm IN ROW EXCLUSIVE MODE; PREPARE TRANSACTION 'attack_b';},
	user => 'app');
note "B: PREPARE TRANSACTION on the follower: $state $err";
is(q2(q{SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'attack_b'}),
	'0', 'B: no prepared transaction persists on the follower');
note 'B: locks held by it: '
  . q2(q{SELECT string_agg(mode || ' on ' || relation::regclass, ', ') FROM pg_locks l JOIN pg_prepared_xacts p ON l.virtualtransaction = '-1/' || p.transaction WHERE p.gid = 'attack_b'}
  );
$n2->restart;
note 'B: after a restart of node2: '
  . q2(q{SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'attack_b'})
  . ' prepared transaction(s) attack_b';
le_bypass_psql($n2, q{ROLLBACK PREPARED 'attack_b'})
  if q2(q{SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'attack_b'}) ne '0';
ok($n2->poll_query_until('postgres', 'SELECT role FROM leader_status()', 'follower'),
	'node2 follows again after its restart');

#
# C) temporary child of a permanent table
#
is(q2(q{SELECT relhassubclass FROM pg_class WHERE oid = 'perm'::regclass}),
	'f', 'C: sanity: perm has no children');
($state, $err) = le_sqlstate($n2, q{CREATE TEMP TABLE tc () INHERITS (perm);},
	user => 'app');
note "C: CREATE TEMP TABLE tc () INHERITS (perm) on the follower: $state $err";
is(q2(q{SELECT relhassubclass FROM pg_class WHERE oid = 'perm'::regclass}),
	'f', 'C: perm.relhassubclass unchanged after the session ended');

#
# E) pg_write_server_files overwrites postgresql.auto.conf
#
my $auto = $n2->data_dir . '/postgresql.auto.conf';
my $auto_before = slurp_file($auto);
($state, $err) = le_sqlstate($n2,
	qq{COPY (SELECT 'leader_election.fence_writes = off') TO '$auto';},
	user => 'filewriter');
note "E: COPY TO postgresql.auto.conf as a member of pg_write_server_files: $state $err";
# a README limit: server-side file writes are not fenced
note 'E: postgresql.auto.conf ' . (slurp_file($auto) eq $auto_before ? 'unchanged' : 'overwritten');
# put it back, whatever happened
open(my $fh, '>', $auto) or die;
print $fh $auto_before;
close $fh;

#
# F) NOTIFY (observed)
#
($state, $err) = le_sqlstate($n2, q{NOTIFY attack_f, 'from a follower';}, user => 'app');
note "F: NOTIFY on the follower: $state $err";

#
# D) lo_manage trigger on a temporary table made while node2 led
#
le_lead($n2, @nodes);
my $bg = $n2->background_psql('postgres', on_error_stop => 0, timeout => 60,
	extra_params => [ '-U', 'app' ]);
le_bg_query($bg, '\set VERBOSITY verbose');
my ($out);
($out, $err) = le_bg_query($bg, q{
CREATE TEMP TABLE lt (id int, l lo);
CREATE TRIGGER lt_lo BEFORE UPDATE OR DELETE ON lt FOR EACH ROW EXECUTE FUNCTION lo_manage(l);
INSERT INTO lt SELECT 1, lo_from_bytea(0, 'payload') RETURNING l;});
is($err, '', 'D: leader node2: temp table with lo_manage and a large object');
my $lo = $out;
$lo =~ s/\s+//g;
like($lo, qr/^\d+$/, 'D: the large object has an oid');
le_lead($n1, @nodes);
($out, $err) = le_bg_query($bg, 'DELETE FROM lt');
note 'D: DELETE FROM lt on follower node2: ' . show($err);
is(q2("SELECT count(*) FROM pg_largeobject_metadata WHERE oid = $lo"),
	'1', 'D: the large object still exists on follower node2');
$bg->quit;

$_->stop foreach @nodes;
$etcd->stop;

done_testing();
