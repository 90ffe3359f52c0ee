# Automatic failover of a streaming-replication cluster (issue 10, tests 1
# and 4): primary n1 and standbys n2, n3 made with pg_basebackup as the
# README's recipe says, lease_ttl = 2.
#  - the cluster record <prefix>.cluster names n1 once a standby streams;
#  - leader_status() on a primary and on queued standbys (in_recovery,
#    timeline, wal_lag_bytes, eligible);
#  - crash of n1 (-m immediate): n2, first in line, promotes and takes a
#    write through a target_session_attrs=read-write connection; the record
#    moves to timeline 2, node n2; every row that had replicated before the
#    crash is on n2; n3 follows timeline 2 by itself and stands again;
#  - n1 restarted: a primary on timeline 1, fenced (25006), not eligible,
#    with the way back in ineligible_reason; rejoined with
#    scripts/rejoin-standby.sh it streams timeline 2 and stands again;
#  - n1 next in line and n2 stopped (-m fast): n1 promotes (timeline 3) and
#    takes writes;
#  - n3, stopped on timeline 2 and promoted by hand (a timeline 3 of its
#    own), does not campaign: the record names n1 on timeline 3;
#  - leader_wait() on n2 wakes only once n2 is out of recovery;
#  - scripts/rejoin-standby.sh: usage errors and exit codes.
# Every wait is a poll with a generous bound; nothing here asserts timing.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

# t/ holds the helper modules (PROVE_FLAGS in the Makefile is reset by PGXS)
use FindBin;
use lib $FindBin::RealBin;

use EtcdServer;
use LeaderElectionTest;

my $prefix = '/leader_election/t022';

my $etcd = EtcdServer->new('etcd');
$etcd->start;

my ($n1, $n2, $n3) =
  le_replicated_cluster($etcd, n => 3, prefix => $prefix, lease_ttl => 2);
my @nodes = ($n1, $n2, $n3);
my $rw = le_rw_connstr($n3, $n2, $n1);
my $sysid = le_system_identifier($n1);
is(le_system_identifier($_), $sysid, $_->name . ' is a copy of n1')
  foreach ($n2, $n3);

#
# Before the crash
#
ok(le_wait_leader($n1), 'n1 leads');
is(le_candidate_names($n1), 'n1,n2,n3', 'queue: n1, n2, n3');
my $rec = le_wait_cluster_record($etcd, $prefix,
	system_identifier => $sysid, timeline => 1, node => 'n1');
ok($rec, 'the cluster record names n1 on timeline 1 with the system identifier');
note "cluster record: " . ($rec ? $rec->{_raw} : '(none)');
is( join(',', grep { defined(($rec || {})->{$_}) } qw(node system_identifier timeline)),
	'node,system_identifier,timeline',
	'... with the keys node, system_identifier, timeline');
like($rec->{wal_end} // '0/0', qr{^[0-9A-F]+/[0-9A-F]+$},
	'... and wal_end, if there, is a WAL position');
is(join(',', map { $_->{value} } $etcd->get_prefix($prefix)),
	'n1,n2,n3', 'the record is not in the election queue <prefix>/');

my $s1 = le_status($n1);
is($s1->{role},              'leader', 'n1: role leader');
is($s1->{in_recovery},       'f',      'n1: not in recovery');
is($s1->{timeline},          '1',      'n1: timeline 1');
is($s1->{wal_lag_bytes},     undef,    'n1: wal_lag_bytes NULL on a primary');
is($s1->{eligible},          't',      'n1: eligible');
is($s1->{ineligible_reason}, undef,    'n1: no ineligible_reason');
foreach my $pair ([ $n2, 1 ], [ $n3, 2 ])
{
	my ($n, $pos) = @$pair;
	my $name = $n->name;
	my $s    = le_status($n);
	is($s->{role},              'follower', "$name: role follower");
	is($s->{queue_position},    $pos,       "$name: queued at $pos");
	is($s->{leader_name},       'n1',       "$name: knows n1 leads");
	is($s->{in_recovery},       't',        "$name: in recovery");
	is($s->{timeline},          '1',        "$name: timeline 1");
	like($s->{wal_lag_bytes} // '', qr/^\d+$/, "$name: wal_lag_bytes >= 0");
	is($s->{eligible},          't',        "$name: eligible");
	is($s->{ineligible_reason}, undef,      "$name: no ineligible_reason");
}

# rows written through the read-write string, replicated to both standbys
is( (le_psql_connstr($n1, $rw,
			'CREATE TABLE t (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, '
		  . "node text DEFAULT current_setting('leader_election.node_name'));"
		  . 'INSERT INTO t (node) SELECT NULL FROM generate_series(1, 1000);'
		  . 'SELECT count(*) FROM t'))[1],
	'1000',
	'1000 rows written on n1 through the read-write string');
$n1->wait_for_catchup($_, 'replay') foreach ($n2, $n3);
is($n2->safe_psql('postgres', 'SELECT count(*), max(id) FROM t'),
	'1000|1000', 'the rows replicated to n2');

# a session on n2 blocked in leader_wait(): it must wake only once n2
# accepts writes
my $bg = $n2->background_psql('postgres', on_error_stop => 0, timeout => 120);
$bg->query_until(qr/waiting/,
	"\\echo waiting\nSELECT leader_wait(120000), pg_is_in_recovery();\n");
ok( $n2->poll_query_until(
		'postgres',
		"SELECT count(*) FROM pg_stat_activity "
		  . "WHERE state = 'active' AND query LIKE 'SELECT leader_wait(120000)%'",
		'1'),
	'a session on n2 is blocked in leader_wait()');

#
# Crash of the primary
#
$n1->stop('immediate');

ok( le_rw_until(
		$n2, $rw,
		"INSERT INTO t (node) VALUES (current_setting('leader_election.node_name')) "
		  . 'RETURNING node',
		'n2'),
	'a write through the read-write string lands on n2 after the crash');
ok(le_wait_leader($n2), 'n2 leads');
my $woke = $bg->query_until(qr/^[tf]\|[tf]$/m, '');
$bg->quit;
like($woke, qr/^t\|f$/m,
	'leader_wait() on n2 returned true, and n2 was out of recovery then');
my $s2 = le_status($n2);
is($s2->{role},              'leader', 'n2: role leader');
is($s2->{phase},             'leading', 'n2: phase leading');
is($s2->{in_recovery},       'f',      'n2: promoted, not in recovery');
is($s2->{timeline},          '2',      'n2: timeline 2');
is($s2->{wal_lag_bytes},     undef,    'n2: wal_lag_bytes NULL');
is($s2->{eligible},          't',      'n2: eligible');
is($s2->{ineligible_reason}, undef,    'n2: no ineligible_reason');
is($n2->safe_psql('postgres', 'SELECT pg_is_in_recovery()'),
	'f', 'n2 is out of recovery');
is( $n2->safe_psql('postgres',
		'SELECT count(*) FROM t WHERE id <= 1000'),
	'1000',
	'every row replicated before the crash is on n2');
is(scalar(le_leaders($n2, $n3)), 1, 'one leader among the survivors');

$rec = le_wait_cluster_record($etcd, $prefix,
	system_identifier => $sysid, timeline => 2, node => 'n2');
ok($rec, 'the cluster record now names n2 on timeline 2');

# n3 follows timeline 2 by itself (recovery_target_timeline = 'latest' and
# a primary_conninfo listing every node) and stands again
ok( $n3->poll_query_until(
		'postgres',
		"SELECT status, received_tli FROM pg_stat_wal_receiver",
		'streaming|2'),
	'n3 streams timeline 2');
is( $n3->safe_psql('postgres',
		'SELECT sender_port FROM pg_stat_wal_receiver'),
	$n2->port,
	'... from n2');
ok( $n3->poll_query_until(
		'postgres',
		'SELECT role, leader_name, queue_position, eligible, timeline '
		  . 'FROM leader_status()',
		'follower|n2|1|t|2'),
	'n3 is queued at 1 behind n2, eligible, on timeline 2');
$n2->wait_for_catchup($n3, 'replay');
is( $n3->safe_psql('postgres', "SELECT count(*) FROM t WHERE node = 'n2'"),
	'1', 'n3 has the row written on n2');

#
# The old primary comes back: fenced, not eligible, and says why
#
$n1->start;
ok( $n1->poll_query_until(
		'postgres',
		'SELECT in_recovery, timeline, eligible, queue_position IS NULL, '
		  . "ineligible_reason ~ 'timeline 1 is behind the cluster''s timeline 2.*pg_rewind' "
		  . 'FROM leader_status()',
		'f|1|f|t|t'),
	'restarted n1: primary on timeline 1, not eligible, not queued, '
	  . 'reason: timeline 1 is behind 2, rejoin with pg_rewind');
note 'n1 ineligible_reason: ' . (le_status($n1)->{ineligible_reason} // '(null)');
is($n1->safe_psql('postgres', 'SELECT leader_is_primary()'),
	'f', 'n1 does not lead');
le_refused($n1, 'INSERT INTO t (node) VALUES (NULL)', 'INSERT on the deposed n1');
is(le_candidate_names($n2), 'n2,n3', 'queue: n2, n3 (n1 does not campaign)');
ok( $n1->log_contains(qr/timeline 1 is behind the cluster's timeline 2/),
	'n1 logs why it does not campaign');
is(scalar(le_leaders(@nodes)), 1, 'still one leader');

#
# Rejoin n1 with scripts/rejoin-standby.sh
#
# the source: the read-write multi-host string (it finds n2)
my ($rc, $out, $err) = le_rejoin($n1, $n2, start => 1, connstr => $rw);
is($rc, 0, 'rejoin-standby.sh succeeds') or diag "stdout: $out\nstderr: $err";
ok(-f $n1->data_dir . '/standby.signal', 'n1 has standby.signal');
like(slurp_file($n1->data_dir . '/postgresql.conf'),
	qr/application_name=n1'\n/,
	"n1 kept its own postgresql.conf (application_name=n1)");
ok( $n1->poll_query_until(
		'postgres',
		"SELECT status, received_tli FROM pg_stat_wal_receiver",
		'streaming|2'),
	'rejoined n1 streams timeline 2');
ok( $n1->poll_query_until(
		'postgres',
		'SELECT role, leader_name, queue_position, eligible, in_recovery '
		  . 'FROM leader_status()',
		'follower|n2|2|t|t'),
	'rejoined n1 stands again: follower at 2, eligible, in recovery');
$n2->wait_for_catchup($n1, 'replay');
is($n1->safe_psql('postgres', 'SELECT count(*) FROM t'),
	'1001', 'n1 has every row of n2');

#
# n1 next in line; the leader stops: n1 promotes and the cluster goes on
#
$n3->stop('fast');
ok( $n1->poll_query_until(
		'postgres', 'SELECT queue_position FROM leader_status()', '1'),
	'n1 is next in line once n3 stopped');
$n2->stop('fast');
ok( le_rw_until(
		$n1, $rw,
		"INSERT INTO t (node) VALUES (current_setting('leader_election.node_name')) "
		  . 'RETURNING node',
		'n1'),
	'a write through the read-write string lands on n1 after n2 stopped');
my $s = le_status($n1);
is($s->{role},        'leader', 'n1: role leader');
is($s->{in_recovery}, 'f',      'n1: promoted');
is($s->{timeline},    '3',      'n1: timeline 3');
ok( le_wait_cluster_record($etcd, $prefix,
		system_identifier => $sysid, timeline => 3, node => 'n1'),
	'the cluster record names n1 on timeline 3');
is($n1->safe_psql('postgres', 'SELECT count(*) FROM t'),
	'1002', 'n1 has all 1002 rows');

#
# n3, stopped while it streamed timeline 2, is started alone (no
# primary_conninfo) and promoted by hand: it knows nothing of timeline 3, so
# it takes a timeline 3 of its own, the number of the cluster's, and must
# not campaign either.
#
$n3->append_conf('postgresql.conf', "primary_conninfo = ''");
$n3->start;
ok($n3->poll_query_until('postgres', 'SELECT pg_is_in_recovery()', 't'),
	'n3 started as a standby that receives nothing');
$n3->promote;
ok($n3->poll_query_until('postgres', 'SELECT pg_is_in_recovery()', 'f'),
	'n3 promoted by hand');
ok( $n3->poll_query_until(
		'postgres',
		'SELECT in_recovery, timeline, eligible, queue_position IS NULL, '
		  . "ineligible_reason ~ 'timeline 3 of this cluster belongs to node \"n1\".*pg_rewind' "
		  . 'FROM leader_status()',
		'f|3|f|t|t'),
	'n3: a primary on timeline 3, not eligible, not queued, '
	  . 'reason: timeline 3 belongs to node "n1"');
note 'n3: ineligible_reason: ' . (le_status($n3)->{ineligible_reason} // '(null)');
le_refused($n3, 'INSERT INTO t (node) VALUES (NULL)', 'INSERT on n3');
is(le_candidate_names($n1), 'n1', 'queue: n1 alone');
is(join(',', map { $_->name } le_leaders($n1, $n3)), 'n1', 'n1 is the only leader');
$n3->stop;

$n1->stop;
$etcd->stop;

#
# The script's usage errors and exit codes
#
my $script = "$FindBin::RealBin/../scripts/rejoin-standby.sh";
sub script_run
{
	my ($o, $e) = ('', '');
	IPC::Run::run([ 'bash', $script, @_ ], '<', \undef, '>', \$o, '2>', \$e);
	return ($? >> 8, $o, $e);
}
($rc, $out, $err) = script_run();
is($rc, 2, 'rejoin-standby.sh without arguments: exit 2');
like($err, qr/usage: rejoin-standby\.sh/, '... with the usage text');
($rc, $out, $err) = script_run('--help');
is($rc, 0, 'rejoin-standby.sh --help: exit 0');
like($out, qr/usage: rejoin-standby\.sh/, '... with the usage text');
($rc, $out, $err) = script_run('--bogus', $n1->data_dir, 'host=x');
is($rc, 2, 'unknown option: exit 2');
($rc, $out, $err) =
  script_run($n1->data_dir . '/nonexistent', $n2->connstr('postgres'));
is($rc, 1, 'a data directory that does not exist: exit 1');
like($err, qr/ERROR: .*is not a directory/, '... and says so');
($rc, $out, $err) = script_run($n1->data_dir, $n2->connstr('postgres'), '-l', 'x');
is($rc, 2, 'pg_ctl options without --start: exit 2');
# the source is down: the node is left as it was, configuration included
my $conf_before = slurp_file($n1->data_dir . '/postgresql.conf');
($rc, $out, $err) = script_run($n1->data_dir, $n2->connstr('postgres'));
is($rc, 1, 'the source is down: exit 1');
like($err, qr/CHECKPOINT on the source failed/, '... at the CHECKPOINT on the source');
is(slurp_file($n1->data_dir . '/postgresql.conf'),
	$conf_before, '... and the node keeps its postgresql.conf');

done_testing();
