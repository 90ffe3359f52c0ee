
# Without leader_election in shared_preload_libraries, CREATE EXTENSION still
# works, and every function fails with a hint about shared_preload_libraries.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Sys::Hostname qw(hostname);

# t/ holds the helper modules (PROVE_FLAGS in the Makefile is reset by PGXS)
use FindBin;
use lib $FindBin::RealBin;

use LeaderElectionTest;

my $node = le_node('plain', undef, preload => 0);
ok(1, 'CREATE EXTENSION works without the library preloaded');

is( $node->safe_psql(
		'postgres',
		"SELECT extversion FROM pg_extension WHERE extname = 'leader_election'"),
	'1.2',
	'extension 1.2 installed');

# 1.1 updated to 1.2: leader_status() gets the columns of synchronous mode
$node->safe_psql('postgres',
	"DROP EXTENSION leader_election; CREATE EXTENSION leader_election VERSION '1.1'");
is( $node->safe_psql('postgres',
		"SELECT array_length(proallargtypes, 1) FROM pg_proc WHERE proname = 'leader_status'"),
	'17', 'leader_status() of 1.1 has 17 columns');
$node->safe_psql('postgres', 'ALTER EXTENSION leader_election UPDATE');
is( $node->safe_psql('postgres',
		"SELECT extversion, array_length(proallargtypes, 1) FROM pg_extension, pg_proc "
		  . "WHERE extname = 'leader_election' AND proname = 'leader_status'"),
	'1.2|24', 'ALTER EXTENSION UPDATE: 1.2, leader_status() has 24 columns');

foreach my $call (
	'SELECT leader_is_primary()',
	'SELECT leader_wait(0)',
	'SELECT leader_wait()',
	'SELECT * FROM leader_status()',
	'SELECT * FROM leader_candidates()',
	'SELECT leader_resign()')
{
	my ($ret, $out, $err) = $node->psql('postgres', $call);
	isnt($ret, 0, "$call fails");
	like($err, qr/ERROR:  /, "$call raises an error");
	like($err, qr/HINT:  .*shared_preload_libraries/,
		"$call hints at shared_preload_libraries");
}

# the server itself is unaffected
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'server still works');
$node->stop;

# Preloaded, without node_name, and no etcd at all (a reserved, unused port):
# the node is named '<hostname>:<port>' and waits, disconnected.
my $dead_port = PostgreSQL::Test::Cluster::get_free_port();
my $lone = le_node(
	'lone', undef,
	endpoints => "http://127.0.0.1:$dead_port",
	node_name => undef);
ok( $lone->poll_query_until(
		'postgres',
		'SELECT role, last_error IS NOT NULL, leader_name IS NULL, '
		  . 'leader_is_primary() FROM leader_status()',
		'disconnected|t|t|f'),
	'without etcd: disconnected, last_error set, leader unknown');
is( $lone->safe_psql('postgres', 'SELECT node_name FROM leader_status()'),
	hostname() . ':' . $lone->port,
	"default node_name is '<hostname>:<port>'");
$lone->stop;

done_testing();
