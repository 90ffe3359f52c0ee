# Attack (issue 15): a transaction that wrote before a lapse must never
# commit after it, even though the node comes back with the same lease and
# the same fencing token.
#
# One node n1 (no replication: the fence alone is under attack), a
# three-member etcd, lease_ttl = 4. Quorum is lost for longer than the TTL
# (the two members n1 does not talk to are killed), so n1's lease lapses
# locally while etcd keeps it; then quorum comes back and n1 leads again with
# the same fencing token. Sessions opened before the lapse then try:
#
#   commit    BEGIN; INSERT            ... COMMIT            must fail (25006)
#   savepoint BEGIN; SAVEPOINT; INSERT; RELEASE ... COMMIT   must fail (25006)
#   prepare   BEGIN; INSERT            ... PREPARE TRANSACTION must fail
#   again     BEGIN; INSERT            ... INSERT            must fail (25006)
#   snapshot  BEGIN REPEATABLE READ; SELECT ... INSERT       must fail (25006)
#
# and none of their rows may be in the table afterwards. A new transaction
# after the comeback writes normally (the node does lead).
#
# Two rounds, so that a second lapse of the same lease is covered too.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

use FindBin;
use lib $FindBin::RealBin;

use EtcdCluster;
use LeaderElectionTest;

my $ttl = 4;

my $etcd = EtcdCluster->new(name => 'etcd', members => 3);
$etcd->start;

my $n1 = le_node('n1', $etcd, prefix => '/leader_election/t090', lease_ttl => $ttl,
	extra_conf => 'max_prepared_transactions = 5');
ok(le_wait_leader($n1), 'n1 leads');
$n1->safe_psql('postgres', 'CREATE TABLE w (id int PRIMARY KEY, what text)');

sub leads { return $n1->safe_psql('postgres', 'SELECT leader_is_primary()') eq 't'; }

for my $round (1, 2)
{
	my $base = $round * 100;
	ok(defined le_time_until(60, \&leads), "round $round: n1 leads before the lapse");
	$etcd->wait_healthy;
	my $before = le_status($n1);

	# the sessions, each with a transaction open before the lapse
	my %s;
	$s{$_} = le_session($n1) foreach qw(commit savepoint prepare again snapshot);
	my @setup = (
		[ commit    => "BEGIN; INSERT INTO w VALUES ($base + 1, 'commit')" ],
		[ savepoint => "BEGIN; SAVEPOINT a; INSERT INTO w VALUES ($base + 2, 'savepoint'); RELEASE a" ],
		[ prepare   => "BEGIN; INSERT INTO w VALUES ($base + 3, 'prepare')" ],
		[ again     => "BEGIN; INSERT INTO w VALUES ($base + 4, 'again')" ],
		[ snapshot  => 'BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM w' ],
	);
	foreach my $step (@setup)
	{
		my ($name, $sql) = @$step;
		my ($out, $err) = le_bg_query($s{$name}, "$sql; SELECT 'ok'");
		like($out, qr/ok$/, "round $round: $name: its transaction ran before the lapse")
		  or diag $err;
	}

	# quorum lost for longer than the TTL
	my $m = $etcd->member_at_url($before->{endpoint});
	my @stop = grep { $_ != $m } 0 .. 2;
	my $t0 = time();
	$etcd->kill9($_) foreach @stop;
	ok(defined le_time_until(2 * $ttl, sub { !leads() }),
		"round $round: n1 is fenced while quorum is lost");
	my $left = $t0 + $ttl + 2 - time();
	usleep($left * 1_000_000) if $left > 0;
	is(le_status($n1)->{phase}, 'lapsed', "round $round: n1 is in phase lapsed");

	# quorum back: n1 takes its place back with the same token
	$etcd->start_member($_) foreach @stop;
	$etcd->wait_healthy;
	ok(defined le_time_until(4 * $ttl, \&leads), "round $round: n1 leads again");
	my $after = le_status($n1);
	is($after->{fencing_token}, $before->{fencing_token},
		"round $round: ... with the same fencing token (the case under attack)");

	my ($out, $err);
	($out, $err) = le_bg_query($s{commit}, 'COMMIT');
	like($err, qr/25006/, "round $round: commit: COMMIT refused (25006)")
	  or diag "out: $out; err: $err";
	($out, $err) = le_bg_query($s{savepoint}, 'COMMIT');
	like($err, qr/25006/, "round $round: savepoint: COMMIT refused (25006)")
	  or diag "out: $out; err: $err";
	($out, $err) = le_bg_query($s{prepare}, "PREPARE TRANSACTION 'p$round'");
	like($err, qr/25006/, "round $round: prepare: PREPARE TRANSACTION refused (25006)")
	  or diag "out: $out; err: $err";
	($out, $err) = le_bg_query($s{again}, "INSERT INTO w VALUES ($base + 5, 'again')");
	like($err, qr/25006/, "round $round: again: a second write refused (25006)")
	  or diag "out: $out; err: $err";
	le_bg_query($s{again}, 'COMMIT');
	($out, $err) = le_bg_query($s{snapshot}, "INSERT INTO w VALUES ($base + 6, 'snapshot')");
	like($err, qr/25006/, "round $round: snapshot: a write with the old snapshot refused (25006)")
	  or diag "out: $out; err: $err";
	le_bg_query($s{snapshot}, 'COMMIT');
	$_->quit foreach values %s;

	# whatever a prepared transaction got, it must not be committable later
	my $prepared = $n1->safe_psql('postgres', 'SELECT gid FROM pg_prepared_xacts');
	is($prepared, '', "round $round: no prepared transaction is left");
	$n1->safe_psql('postgres', "ROLLBACK PREPARED '$_'") foreach grep { $_ ne '' } split /\n/, $prepared;

	is( $n1->safe_psql('postgres',
			"SELECT string_agg(id::text, ',' ORDER BY id) FROM w WHERE id BETWEEN $base AND $base + 99"),
		'', "round $round: no row written before the lapse was committed");
	ok(defined le_time_until(30, sub {
		$n1->psql('postgres', "INSERT INTO w VALUES ($base + 50, 'new')") == 0 }),
		"round $round: a new transaction writes");
}

done_testing();
