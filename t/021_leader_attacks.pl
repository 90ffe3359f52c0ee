# Attacks on the leader's side of the fence and on the reported
# default_transaction_read_only, two nodes and a real etcd; leadership moves
# with leader_resign(). Each case asserts what README promises (or what
# plain PostgreSQL does), so a failing assertion is a hole (cases marked
# "observed only" are documented limits):
#  H) BEGIN READ ONLY; ...; COMMIT AND CHAIN on the leader: the chained
#     transaction is read-only in PostgreSQL; an INSERT in it must fail;
#  I) a session opened on the leader keeps working across its node's
#     resign and re-lead: refused while node1 follows, an autocommit INSERT
#     right after node1 leads again succeeds;
#  J) a session opened on the leader, open while node1 follows, while
#     postgresql.conf changes default_transaction_read_only to on (reload):
#     a new session reports on once node1 leads again (the session opened
#     before keeps its earlier value: a README limit, observed only);
#  K) ALTER ROLE ... SET default_transaction_read_only = on is respected by
#     a session started on the leader, also after a resign and re-lead;
#  M) a procedure CALLed while node1 follows waits (advisory lock) until
#     node1 leads, COMMITs, then INSERTs in a transaction that began after
#     the leadership began: README says it writes;
#  G) a single statement that began while node1 led (setval's call site
#     announced then) waits on an advisory lock while node1 resigns, then
#     calls setval: observed only; the README limit "the statement window"
#     (the COMMIT is refused, the sequence, not transactional, has moved).

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

my $prefix = '/leader_election/t021';

my $etcd = EtcdServer->new('etcd');
$etcd->start;

my %conf = (prefix => $prefix);
my ($n1, $n2) = le_leader_and_follower($etcd, %conf);
my @nodes = ($n1, $n2);

le_bypass_psql(
	$n1, q{
CREATE ROLE app LOGIN;
CREATE ROLE ro LOGIN;
ALTER ROLE ro SET default_transaction_read_only = on;
CREATE TABLE t (id int);
GRANT ALL ON t TO app, ro;
CREATE SEQUENCE s;
SELECT setval('s', 100);
GRANT ALL ON SEQUENCE s TO app;
CREATE PROCEDURE waitwrite(i int) LANGUAGE plpgsql AS
  $$BEGIN PERFORM pg_advisory_lock(10); PERFORM pg_advisory_unlock(10); COMMIT;
    INSERT INTO t VALUES (i); COMMIT; END$$;
GRANT EXECUTE ON PROCEDURE waitwrite(int) TO app;
});

sub q1 { return $n1->safe_psql('postgres', $_[0]); }
sub show { return $_[0] eq '' ? 'succeeded' : $_[0]; }
sub count_id { return q1("SELECT count(*) FROM t WHERE id = $_[0]"); }

my ($out, $err, $bg);

#
# H) COMMIT AND CHAIN keeps READ ONLY
#
($out, $err) = ('', '');
$n1->psql('postgres',
	"BEGIN READ ONLY; SELECT 1; COMMIT AND CHAIN; SHOW transaction_read_only; INSERT INTO t VALUES (1); COMMIT;",
	stdout => \$out, stderr => \$err);
note "H: chained transaction: transaction_read_only = " . (split /\n/, $out)[-1] . "; " . show($err);
is(count_id(1), '0', 'H: INSERT in a chained READ ONLY transaction on the leader did not commit');

#
# I) a leader's session across resign and re-lead
#
$bg = le_session($n1);
(undef, $err) = le_bg_query($bg, 'INSERT INTO t VALUES (2)');
is($err, '', 'I: leader node1: INSERT');
le_lead($n2, @nodes);
(undef, $err) = le_bg_query($bg, 'INSERT INTO t VALUES (3)');
like($err, qr/25006/, 'I: follower node1: INSERT refused');
le_lead($n1, @nodes);
(undef, $err) = le_bg_query($bg, 'INSERT INTO t VALUES (4)');
is($err, '', 'I: node1 leads again: INSERT in the same session succeeds') or diag $err;
($out) = le_bg_query($bg, 'SHOW default_transaction_read_only');
is($out, 'off', 'I: ... and the session reports off');
$bg->quit;

#
# J) the configured value changes while the session is overridden
#
$bg = le_session($n1);
($out) = le_bg_query($bg, 'SHOW default_transaction_read_only');
is($out, 'off', 'J: a session on leader node1 reports off');
le_lead($n2, @nodes);
le_bg_query($bg, 'SELECT 1');
($out) = le_bg_query($bg, 'SHOW default_transaction_read_only');
is($out, 'on', 'J: node1 follows: the session reports on');
$n1->append_conf('postgresql.conf', "default_transaction_read_only = on\n");
$n1->reload;
le_lead($n1, @nodes);
is($n1->safe_psql('postgres', 'SHOW default_transaction_read_only'),
	'on', 'J: node1 leads with default_transaction_read_only = on: a new session reports on');
le_bg_query($bg, 'SELECT 1');
($out) = le_bg_query($bg, 'SHOW default_transaction_read_only');
# a README limit: an overridden session keeps the value it had before the reload
note "J: the session opened before the reload reports $out";
$bg->quit;
$n1->append_conf('postgresql.conf', "default_transaction_read_only = off\n");
$n1->reload;
$n1->poll_query_until('postgres', 'SHOW default_transaction_read_only', 'off');

#
# K) role setting on the leader
#
$bg = $n1->background_psql('postgres', on_error_stop => 0, timeout => 60,
	extra_params => [ '-U', 'ro' ]);
($out) = le_bg_query($bg, 'SHOW default_transaction_read_only');
is($out, 'on', 'K: role ro on leader node1 reports on (its role setting)');
le_lead($n2, @nodes);
le_lead($n1, @nodes);
le_bg_query($bg, 'SELECT 1');
($out) = le_bg_query($bg, 'SHOW default_transaction_read_only');
is($out, 'on', 'K: ... still on after a resign and re-lead');
$bg->quit;

#
# M) a procedure that waits for leadership, then commits and writes
#
le_lead($n2, @nodes);
my $holder = le_session($n1);
le_bg_query($holder, 'SELECT pg_advisory_lock(10)');
my $worker = $n1->background_psql('postgres', on_error_stop => 0, timeout => 120,
	extra_params => [ '-U', 'app' ]);
$worker->query_until(qr/started/, "\\echo started\nCALL waitwrite(5);\n");
ok( $n1->poll_query_until(
		'postgres',
		"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
		'1'),
	'M: the procedure waits for the lock on follower node1');
le_lead($n1, @nodes);
le_bg_query($holder, 'SELECT pg_advisory_unlock(10)');
(undef, $err) = le_bg_query($worker, 'SELECT 1');
note 'M: CALL after node1 leads: ' . show($err);
is(count_id(5), '1', 'M: the INSERT after the COMMIT (node1 leading) committed');
$worker->quit;

#
# G) a statement begun as leader calls setval after the lapse
#
is(q1('SELECT last_value FROM s'), '100', 'G: sanity: s is at 100');
le_bg_query($holder, 'SELECT pg_advisory_lock(9)');
$worker = le_session($n1);
$worker->query_until(qr/started/,
	"\\echo started\nSELECT pg_advisory_lock(9), setval('s', 900000);\n");
ok( $n1->poll_query_until(
		'postgres',
		"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
		'1'),
	'G: the statement waits for the lock on leader node1');
le_lead($n2, @nodes);
le_bg_query($holder, 'SELECT pg_advisory_unlock(9)');
(undef, $err) = le_bg_query($worker, 'SELECT 1');
note 'G: the statement after node1 stopped leading: ' . show($err);
# a README limit (the statement window): the COMMIT is refused, the sequence moved
note 'G: s on node1 after the statement: ' . q1('SELECT last_value FROM s');
$worker->quit;
$holder->quit;

$_->stop foreach @nodes;
$etcd->stop;

done_testing();
