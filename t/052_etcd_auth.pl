
# etcd users (etcd auth enabled): nodes log in with leader_election.username
# and a password read from leader_election.password_file.
#
# - Two nodes elect a leader as user pgnode, whose role has readwrite on the
#   election's keys only; leader_candidates() reads the queue as that user.
# - Tokens become invalid under a leader: an etcd restart (etcd forgets its
#   simple tokens: "invalid auth token"), JWTs that expire ("invalid auth
#   token" too) and an auth change (a JWT carries the auth revision it was
#   issued at: "revision of auth store is old"; a simple token is looked up
#   at the current revision and stays valid). The nodes log in again and go
#   on: the leader keeps its fencing token, the follower its place.
# - leader_resign() hands over (the release and the revoke run as pgnode).
# - A third node goes through what must keep it out, by reloading: a wrong
#   password (a clear error, and it retries with a backoff: etcd counts its
#   Authenticate calls), a password file readable by others, one owned by
#   another user, one that does not exist, and a user without permission on
#   the election ("permission denied"). It never puts a key into the
#   election; with the right user and password it joins the queue.
# - No password and no token appears in any node's log, leader_status() or
#   pg_settings.
# - TLS with client certificates and auth together: a node leads (its
#   password file ends in a line end, which is not part of the password).

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

my $prefix = '/leader_election/t052';
# an etcd restart must fit well within one lease
my $ttl = 6;
# long enough that node1 must have renewed after whatever happened before
my $hold = $ttl + 3;

sub random_word
{
	my ($tag) = @_;
	return $tag . join('', map { ('a' .. 'z', 0 .. 9)[ int(rand(36)) ] } 1 .. 20);
}
my $pw        = random_word('pw-pgnode-');
my $wrong_pw  = random_word('pw-wrong-');
my $nobody_pw = random_word('pw-nobody-');

my $certs = EtcdServer::make_test_certs();
my $etcd  = EtcdServer->new('etcd');
$etcd->start;
$etcd->add_user('pgnode', $pw, prefix => $prefix);
# nobody may use another election only
$etcd->add_user('nobody', $nobody_pw, prefix => '/leader_election/elsewhere');
$etcd->enable_auth;

my $files = PostgreSQL::Test::Utils::tempdir('passwords');
write_private_file("$files/pgnode.pw", $pw);
write_private_file("$files/wrong.pw",  $wrong_pw);
write_private_file("$files/loose.pw",  $pw, 0644);
write_private_file("$files/nobody.pw", $nobody_pw);
# as `echo $pw > file` writes it: the line end is not part of the password
write_private_file("$files/pgnode-nl.pw", "$pw\n");

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
$etcd->etcdctl('role', 'grant-permission', 'nobody-role', 'read',
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
# node3: what keeps a node out
#
my $n3 = le_node('node3', $etcd,
	prefix     => $prefix,
	lease_ttl  => $ttl,
	extra_conf => auth_conf('pgnode', "$files/wrong.pw"));

# the node never has a key in the election, and never leads
sub node3_out
{
	return sub {
		return 'node3 has a key in the election' if queue_values() =~ /node3/;
		return 'node3 leads' if le_leaders($n3);
		return '';
	};
}

ok( status_wait(
		$n3, sub { ($_[0]{last_error} // '') =~ /authentication failed|password/i }),
	'a wrong password: last_error says so');
note 'last_error: ' . (le_status($n3)->{last_error} // 'NULL');
ok(log_wait($n3, qr/authentication failed|password/i, 0), '... and so does the log');

# No storm: count etcd's failed Authenticate calls over 10 s.
my $bad0 = $etcd->authenticate_count('InvalidArgument');
my $t0   = time();
is(le_holds(10, node3_out()), '', '... node3 stays out');
my $bad = $etcd->authenticate_count('InvalidArgument') - $bad0;
my $secs = time() - $t0;
note sprintf('%d failed logins in %.1f s', $bad, $secs);
cmp_ok($bad, '>=', 1, '... it retries');
cmp_ok($bad, '<', 30, '... with a backoff (fewer than 30 failed logins in 10 s)');

# A password file that is not the server user's alone, or that is missing:
# refused with an error that names it, whether at the reload (the old value
# stays) or by the worker (last_error).
sub refused
{
	my ($path, $why, $what, $seconds) = @_;
	my $offset = set_conf($n3, password_file => $path);
	my $deadline = time() + 30;
	my $seen = '';
	while (time() < $deadline && $seen eq '')
	{
		my $log = slurp_file($n3->logfile, $offset);
		$seen = 'the log'
		  if index($log, $path) >= 0 && $log =~ $why;
		my $err = le_status($n3)->{last_error} // '';
		$seen = 'last_error' if index($err, $path) >= 0 && $err =~ $why;
		usleep(100_000);
	}
	isnt($seen, '', "$what: refused with a clear error") and note "seen in $seen";
	is(le_holds($seconds, node3_out()), '', "$what: node3 stays out");
	return;
}

# This file holds the right password: if it were taken, node3 would log in
# at its next retry and join the queue, so wait two leases.
refused("$files/loose.pw", qr/permission|mode|group|other|readable/i,
	'a password file readable by others', 2 * $ttl);

# a file owned by another user, mode 0600 (unreadable to us, but it exists)
my ($other) = grep {
	my @st = stat($_);
	@st && $st[4] != $< && ($st[2] & 077) == 0 && -f _
} ('/etc/security/opasswd', '/etc/gshadow-', '/etc/shadow-');
SKIP:
{
	skip 'no file owned by another user with mode 0600 here', 2
	  unless defined $other;
	refused($other, qr/own|permission/i,
		"a password file owned by another user ($other)", 2);
}

refused("$files/no-such.pw", qr/no such file|does not exist|could not|cannot/i,
	'a password file that does not exist', 2);

# a user without permission on the election
set_conf($n3, username => 'nobody', password_file => "$files/nobody.pw");
ok( status_wait($n3, sub { ($_[0]{last_error} // '') =~ /permission denied/i }),
	'a user without permission on the election: last_error says "permission denied"');
note 'last_error: ' . (le_status($n3)->{last_error} // 'NULL');
is(le_holds(4, node3_out()), '', '... node3 stays out');

# the right user and password
set_conf($n3, username => 'pgnode', password_file => "$files/pgnode.pw");
ok($n3->poll_query_until('postgres', 'SELECT queue_position FROM leader_status()', '2'),
	'with the right user and password node3 joins the queue');
is(queue_values(), 'node2,node1,node3', 'queue: node2, node1, node3');
is(le_candidate_names($n3), 'node2,node1,node3', 'leader_candidates() on node3');

#
# No password, no token
#
# every token etcd refused (it logs them), besides what tokens look like
my @tokens = (slurp_file($etcd->logfile) =~ /"token":"([^"]+)"/g);
note scalar(@tokens) . ' tokens in the etcd log';
foreach my $node ($n1, $n2, $n3)
{
	my $sql_text = $node->safe_psql('postgres',
		"SELECT * FROM leader_status();\n"
		  . "SELECT name, setting, reset_val, boot_val FROM pg_settings "
		  . "WHERE name LIKE 'leader_election.%';\n"
		  . "SELECT name, setting FROM pg_file_settings;\nSHOW ALL;");
	is(secrets_in($sql_text, $pw, $wrong_pw, $nobody_pw, @tokens, token_patterns()),
		'', $node->name . ': no password or token in leader_status(), pg_settings, SHOW');
	is( secrets_in(slurp_file($node->logfile), $pw, $wrong_pw, $nobody_pw,
			@tokens, token_patterns()),
		'',
		$node->name . ': no password or token in its log');
}

#
# TLS with client certificates and auth together
#
my $tls   = EtcdServer->new('etcd_tls', tls_dir => $certs);
$tls->start;
$tls->add_user('pgnode', $pw, prefix => $prefix);
$tls->enable_auth;
my $n4 = le_node('node4', $tls,
	prefix     => $prefix,
	lease_ttl  => 2,
	extra_conf => tls_conf("$certs/ca.crt", "$certs/client.crt", "$certs/client.key")
	  . auth_conf('pgnode', "$files/pgnode-nl.pw"));
ok(le_wait_leader($n4),
	'over TLS with a client certificate, as pgnode (password file ending in a newline): node4 leads');
is(le_candidate_names($n4), 'node4', 'leader_candidates() on node4');
is( secrets_in(slurp_file($n4->logfile), $pw, token_patterns()),
	'', 'node4: no password or token in its log');

$_->stop foreach ($n1, $n2, $n3, $n4);
$etcd->stop;
$tls->stop;
done_testing();
