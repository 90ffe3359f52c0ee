
# etcd users: tokens that become invalid under a leader. Two nodes elect a
# leader as user pgnode (leader_election.username, a password read from
# leader_election.password_file), whose role has readwrite on the election's
# keys only; leader_candidates() reads the queue as that user. Then etcd
# invalidates their tokens, and each time the nodes log in again and go on:
# the leader keeps its fencing token and role_since, the follower its place,
# and last_error is clear again.
#
# - An etcd restart: etcd forgets its simple tokens ("invalid auth token").
# - JWTs that expire every 4 s ("invalid auth token" too), after a restart
#   into JWT mode.
# - An auth change: a JWT carries the auth revision it was issued at, so
#   etcd refuses it with "revision of auth store is old". (A simple token is
#   looked up at the current revision: an auth change does not touch it.)
# - A new password, without a reload: into the password file, then into
#   etcd (which drops the user's tokens).
# - leader_resign() hands over (the release and the revoke run as pgnode).
# - No password and no token (those etcd logged as refused, and anything
#   that looks like one) appears in a node's log, leader_status(),
#   pg_settings, pg_file_settings or SHOW ALL.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

use FindBin;
use lib $FindBin::RealBin;

use EtcdServer;
use LeaderElectionTest;
use SecureEtcdTest;

my $prefix = '/leader_election/t051';
# an etcd restart must fit well within one lease
my $ttl = 6;
# long enough that node1 must have renewed after whatever happened before
my $hold = $ttl + 3;

sub random_word
{
	my ($tag) = @_;
	return $tag . join('', map { ('a' .. 'z', 0 .. 9)[ int(rand(36)) ] } 1 .. 20);
}
my $pw = random_word('pw-pgnode-');

# the certificate directory holds the key pair for JWTs
my $certs = EtcdServer::make_test_certs();
my $etcd  = EtcdServer->new('etcd');
$etcd->start;
$etcd->add_user('pgnode', $pw, prefix => $prefix);
# another user, whose role the auth change below changes
$etcd->add_user('other', random_word('pw-other-'), prefix => '/leader_election/elsewhere');
$etcd->enable_auth;

my $files = PostgreSQL::Test::Utils::tempdir('passwords');
write_private_file("$files/pgnode.pw", $pw);

# the queue as etcd has it (read as root)
sub queue_values
{
	return join(',', map { $_->{value} } $etcd->get_prefix($prefix));
}

#
# Two nodes as user pgnode
#
my ($n1, $n2) = le_leader_and_follower($etcd,
	prefix     => $prefix,
	lease_ttl  => $ttl,
	extra_conf => auth_conf('pgnode', "$files/pgnode.pw"));
is(queue_values(), 'node1,node2', 'etcd holds both keys, written as pgnode');
is(le_candidate_names($n1), 'node1,node2', 'leader_candidates() on node1 as pgnode');
is(le_candidate_names($n2), 'node1,node2', 'leader_candidates() on node2 as pgnode');
is(le_status($n1)->{last_error}, undef, 'node1 has no error');
is(le_status($n2)->{last_error}, undef, 'node2 has no error');

# Checks that node1 leads with $token and node2 follows it at position 1,
# for le_holds.
sub steady
{
	my ($token) = @_;
	return sub {
		my $s1 = le_status($n1);
		return "node1 is $s1->{role} (last_error: " . ($s1->{last_error} // 'none') . ')'
		  if $s1->{role} ne 'leader';
		return "node1's fencing token is $s1->{fencing_token}"
		  if $s1->{fencing_token} ne $token;
		my $s2 = le_status($n2);
		return "node2 is $s2->{role} at "
		  . ($s2->{queue_position} // 'NULL')
		  . ' (last_error: ' . ($s2->{last_error} // 'none') . ')'
		  unless $s2->{role} eq 'follower' && ($s2->{queue_position} // '') eq '1';
		return '';
	};
}

#
# An etcd restart: etcd forgets every (simple) token, and answers "invalid
# auth token" to the nodes' next requests
#
my $before = le_status($n1);
my $etcd_offset = -s $etcd->logfile;
$etcd->stop;
$etcd->start;
is(le_holds($hold, steady($before->{fencing_token})),
	'', 'after an etcd restart node1 leads on with the same token, node2 follows');
like(slurp_file($etcd->logfile, $etcd_offset), qr/invalid auth token/,
	'... etcd refused the tokens from before the restart');
ok(status_wait($n1, sub { !defined $_[0]{last_error} }), 'node1 has no error');
ok(status_wait($n2, sub { !defined $_[0]{last_error} }), 'node2 has no error');
is(le_candidate_names($n2), 'node1,node2', 'leader_candidates() on node2 after the restart');

#
# JWT tokens that expire after 4 s: etcd restarts with them (the simple
# tokens are invalid again), then every token the nodes get expires while
# they lead and follow
#
$etcd->set_auth_token(EtcdServer::jwt_auth_token($certs, '4s'));
$etcd_offset = -s $etcd->logfile;
$etcd->stop;
$etcd->start;
is(le_holds($hold, steady($before->{fencing_token})),
	'', 'with JWTs that expire every 4 s node1 leads on with the same token, node2 follows');
like(slurp_file($etcd->logfile, $etcd_offset), qr/Token is expired/,
	'... etcd refused expired tokens');

#
# An auth change: a JWT carries the auth revision it was issued at, and etcd
# refuses it with "revision of auth store is old" at the next request that
# checks permissions
#
$etcd_offset = -s $etcd->logfile;
$etcd->etcdctl('role', 'grant-permission', 'other-role', 'read',
	'/leader_election/unrelated');
is(le_holds($hold, steady($before->{fencing_token})),
	'', 'after an auth change node1 leads on with the same token, node2 follows');
like(slurp_file($etcd->logfile, $etcd_offset),
	qr/auth revision is less than current|revision in header is old/,
	'... etcd refused tokens of the old auth revision');
is(le_status($n1)->{role_since}, $before->{role_since}, 'node1 leads since the same moment');
ok(status_wait($n1, sub { !defined $_[0]{last_error} }), 'node1 has no error');
ok(status_wait($n2, sub { !defined $_[0]{last_error} }), 'node2 has no error');
is(le_candidate_names($n1), 'node1,node2', 'leader_candidates() on node1 with JWTs');

#
# A new password, without a reload: first into the file (atomically), then
# into etcd, which drops pgnode's tokens (the auth revision moves); the nodes
# read the file again when they log in again
#
my $pw2 = random_word('pw-pgnode2-');
write_private_file("$files/pgnode.pw.new", $pw2);
rename("$files/pgnode.pw.new", "$files/pgnode.pw") or die "rename: $!";
$etcd->change_password('pgnode', $pw2);
is(le_holds($hold, steady($before->{fencing_token})),
	'', 'after a password change node1 leads on with the same token, node2 follows');
ok(status_wait($n1, sub { !defined $_[0]{last_error} }), 'node1 has no error');
ok(status_wait($n2, sub { !defined $_[0]{last_error} }), 'node2 has no error');
is(le_candidate_names($n2), 'node1,node2', 'leader_candidates() with the new password');

#
# Hand-over as pgnode
#
my $expiry = le_lease_expiry($etcd, $before->{lease_id});
is($n1->safe_psql('postgres', 'SELECT leader_resign()'), 't', 'node1 resigns');
ok(le_wait_leader($n2), 'node2 leads');
cmp_ok(time(), '<', $expiry, '... before node1\'s lease could have expired');
ok( $n1->poll_query_until(
		'postgres', 'SELECT role, queue_position FROM leader_status()', 'follower|1'),
	'node1 follows at position 1');

#
# No password, no token
#
# every token etcd refused (it logs them), besides what tokens look like
my @tokens = (slurp_file($etcd->logfile) =~ /"token":"([^"]+)"/g);
note scalar(@tokens) . ' tokens in the etcd log';
foreach my $node ($n1, $n2)
{
	my $sql_text = $node->safe_psql('postgres',
		"SELECT * FROM leader_status();\n"
		  . "SELECT name, setting, reset_val, boot_val FROM pg_settings "
		  . "WHERE name LIKE 'leader_election.%';\n"
		  . "SELECT name, setting FROM pg_file_settings;\nSHOW ALL;");
	is(secrets_in($sql_text, $pw, $pw2, @tokens, token_patterns()),
		'', $node->name . ': no password or token in leader_status(), pg_settings, SHOW');
	is(secrets_in(slurp_file($node->logfile), $pw, $pw2, @tokens, token_patterns()),
		'', $node->name . ': no password or token in its log');
}

$_->stop foreach ($n1, $n2);
$etcd->stop;
done_testing();
