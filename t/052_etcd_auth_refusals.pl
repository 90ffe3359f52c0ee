
# etcd users: what keeps a node out, and TLS with users.
#
# - node1 leads as user pgnode. node2 goes through what must keep it out,
#   by reloading: a wrong password (a clear error, and it retries with a
#   backoff: etcd counts its failed Authenticate calls over 10 s), a
#   password file readable by others (holding the right password), one owned
#   by another user, one that does not exist, and a user without permission
#   on the election ("permission denied"). It never puts a key into the
#   election; with the right user and password it joins the queue.
# - No password and no token appears in a node's log, leader_status(),
#   pg_settings, pg_file_settings or SHOW ALL.
# - TLS with client certificates and users together: auth is enabled under
#   a leader, which logs in and leads on (its password file ends in a line
#   end, which is not part of the password). A client certificate with a
#   Common Name: etcd 3.4 refuses every request to its JSON gateway made
#   with one once auth is on (HTTP 400, "CommonName of client sending a
#   request against gateway will be ignored and not used as expected"); the
#   node must say why and stop leading.

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
my $ttl    = 3;

sub random_word
{
	my ($tag) = @_;
	return $tag . join('', map { ('a' .. 'z', 0 .. 9)[ int(rand(36)) ] } 1 .. 20);
}
my $pw        = random_word('pw-pgnode-');
my $wrong_pw  = random_word('pw-wrong-');
my $nobody_pw = random_word('pw-nobody-');

my $etcd = EtcdServer->new('etcd');
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

my $n1 = le_node('node1', $etcd,
	prefix     => $prefix,
	lease_ttl  => $ttl,
	extra_conf => auth_conf('pgnode', "$files/pgnode.pw"));
ok(le_wait_leader($n1), 'node1 leads as pgnode');

#
# node2: what keeps a node out
#
my $n2 = le_node('node2', $etcd,
	prefix     => $prefix,
	lease_ttl  => $ttl,
	extra_conf => auth_conf('pgnode', "$files/wrong.pw"));

# the node never has a key in the election, and never leads
sub node2_out
{
	return sub {
		return 'node2 has a key in the election' if queue_values() =~ /node2/;
		return 'node2 leads' if le_leaders($n2);
		return '';
	};
}

ok( status_wait(
		$n2, sub { ($_[0]{last_error} // '') =~ /authentication failed|password/i }),
	'a wrong password: last_error says so');
note 'last_error: ' . (le_status($n2)->{last_error} // 'NULL');
ok(log_wait($n2, qr/authentication failed|password/i, 0), '... and so does the log');

# No storm: count etcd's failed Authenticate calls over 10 s.
my $bad0 = $etcd->authenticate_count('InvalidArgument');
my $t0   = time();
is(le_holds(10, node2_out()), '', '... node2 stays out');
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
	my $offset = set_conf($n2, password_file => $path);
	my $deadline = time() + 30;
	my $seen = '';
	while (time() < $deadline && $seen eq '')
	{
		my $log = slurp_file($n2->logfile, $offset);
		$seen = 'the log'
		  if index($log, $path) >= 0 && $log =~ $why;
		my $err = le_status($n2)->{last_error} // '';
		$seen = 'last_error' if index($err, $path) >= 0 && $err =~ $why;
		usleep(100_000);
	}
	isnt($seen, '', "$what: refused with a clear error") and note "seen in $seen";
	is(le_holds($seconds, node2_out()), '', "$what: node2 stays out");
	return;
}

# This file holds the right password: if it were taken, node2 would log in
# at its next retry (at most 8 s after the one before) and join the queue.
refused("$files/loose.pw", qr/permission|mode|group|other|readable/i,
	'a password file readable by others', 10);

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
set_conf($n2, username => 'nobody', password_file => "$files/nobody.pw");
ok( status_wait($n2, sub { ($_[0]{last_error} // '') =~ /permission denied/i }),
	'a user without permission on the election: last_error says "permission denied"');
note 'last_error: ' . (le_status($n2)->{last_error} // 'NULL');
is(le_holds(4, node2_out()), '', '... node2 stays out');

# the right user and password
set_conf($n2, username => 'pgnode', password_file => "$files/pgnode.pw");
ok($n2->poll_query_until('postgres', 'SELECT queue_position FROM leader_status()', '1'),
	'with the right user and password node2 joins the queue');
is(queue_values(), 'node1,node2', 'queue: node1, node2');
is(le_candidate_names($n2), 'node1,node2', 'leader_candidates() on node2');

#
# No password, no token
#
my @tokens = (slurp_file($etcd->logfile) =~ /"token":"([^"]+)"/g);
foreach my $node ($n1, $n2)
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
# TLS with client certificates and auth together. node3 has a user set
# while etcd has no auth yet (etcd answers that auth is not enabled: the
# node goes on without a token); auth is enabled under the leader.
#
my $certs = EtcdServer::make_test_certs();
my $tls   = EtcdServer->new('etcd_tls', tls_dir => $certs);
$tls->start;
$tls->add_user('pgnode', $pw, prefix => $prefix);
my $n3 = le_node('node3', $tls,
	prefix     => $prefix,
	lease_ttl  => 2,
	extra_conf => tls_conf("$certs/ca.crt", "$certs/client.crt", "$certs/client.key")
	  . auth_conf('pgnode', "$files/pgnode-nl.pw"));
ok(le_wait_leader($n3), 'node3 leads over TLS, its user set, etcd without auth');
my $before3 = le_status($n3);
$tls->enable_auth;
is( le_holds(
		3 * 2,
		sub {
			my $st = le_status($n3);
			return "node3 is $st->{role} (last_error: " . ($st->{last_error} // 'none') . ')'
			  if $st->{role} ne 'leader';
			return "node3's fencing token is $st->{fencing_token}"
			  if $st->{fencing_token} ne $before3->{fencing_token};
			return '';
		}),
	'',
	'auth enabled under node3: it logs in (password file ending in a newline) and leads on');
ok(status_wait($n3, sub { !defined $_[0]{last_error} }), 'node3 has no error');
is(le_candidate_names($n3), 'node3', 'leader_candidates() on node3');

# etcd 3.4 refuses every gateway request made with a client certificate
# that has a Common Name once auth is enabled (HTTP 400, plain text): the
# node must say so and stop leading
set_conf($n3,
	cert_file => "$certs/client-cn.crt",
	key_file  => "$certs/client-cn.key");
ok( status_wait($n3, sub { ($_[0]{last_error} // '') =~ /CommonName/ }),
	'a client certificate with a Common Name: last_error passes on etcd\'s reason');
note 'last_error: ' . (le_status($n3)->{last_error} // 'NULL');
ok($n3->poll_query_until('postgres', 'SELECT leader_is_primary()', 'f'),
	'... and node3 stops leading');
set_conf($n3, cert_file => "$certs/client.crt", key_file => "$certs/client.key");
ok(le_wait_leader($n3), 'with a certificate without one node3 leads again');
is( secrets_in(slurp_file($n3->logfile), $pw, token_patterns()),
	'', 'node3: no password or token in its log');

$_->stop foreach ($n1, $n2, $n3);
$etcd->stop;
$tls->stop;
done_testing();
