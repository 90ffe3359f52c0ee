
# TLS failures: a node that cannot trust etcd, or that etcd cannot trust,
# never leads, stays up, and says why in leader_status().last_error and in
# its log. One node goes through every case by reloading its settings:
# unknown CA (a CA file that did not sign etcd's certificate, and the
# system's CAs), a server certificate for another host only (the hostile
# answer: a server that proves it is someone else), an expired server
# certificate, a key that does not match the client certificate, and no
# client certificate at all. Between two cases the node points at a port
# where nothing listens, so each case's error is new, not left over. The
# node starts with a key file that does not exist: it comes up (PostgreSQL
# sets an extension's invalid setting from postgresql.conf to its default
# with a WARNING at start) and does not lead. At the end, good settings make
# it lead without a restart, from the same worker process.

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
my $ttl    = 2;

my $certs = EtcdServer::make_test_certs();
# etcd with a good certificate, asking for client certificates
my $good = EtcdServer->new('etcd', tls_dir => $certs);
# etcds no client should trust; they ask for no client certificate
my $expired = EtcdServer->new('expired',
	tls_dir          => $certs,
	server_cert      => 'expired',
	client_cert_auth => 0);
my $wronghost = EtcdServer->new('wronghost',
	tls_dir          => $certs,
	server_cert      => 'wronghost',
	client_cert_auth => 0);
$_->start foreach ($good, $expired, $wronghost);

# nothing listens here
my $dead = 'http://127.0.0.1:' . PostgreSQL::Test::Cluster::get_free_port();

my %ok_files = (
	ca_file   => "$certs/ca.crt",
	cert_file => "$certs/client.crt",
	key_file  => "$certs/client.key");
my $missing_key = "$certs/no-such.key";

#
# Start with a key file that does not exist
#
my $node = le_node('node1', $good,
	prefix     => $prefix,
	lease_ttl  => $ttl,
	extra_conf => tls_conf($ok_files{ca_file}, $ok_files{cert_file}, $missing_key),
	start      => 0);
ok($node->start(fail_ok => 1), 'the node starts with a key file that does not exist');
$node->safe_psql('postgres', 'CREATE EXTENSION leader_election');
ok(log_wait($node, qr/\Q$missing_key\E/, 0),
	'... its log names the missing file');
ok(status_wait($node, sub { defined $_[0]{last_error} }),
	'... leader_status() shows an error');
is( le_holds(
		2 * $ttl,
		sub {
			return 'node1 leads' if le_leaders($node);
			return '';
		}),
	'',
	'... and the node does not lead');
note 'last_error: ' . (le_status($node)->{last_error} // 'NULL');
my $worker = le_worker_pid($node);

#
# Each failure
#
my @cases = (
	{
		name     => 'unknown CA (ca_file of another CA)',
		settings => { ca_file => "$certs/ca2.crt" },
		why      => qr/issuer|unknown|untrusted|not trusted/i,
	},
	{
		name     => 'unknown CA (empty ca_file: the system\'s CAs)',
		settings => { ca_file => '' },
		why      => qr/issuer|unknown|untrusted|not trusted/i,
	},
	{
		name     => 'a server certificate for another host',
		endpoint => $wronghost->url,
		why      => qr/host ?name|subject name/i,
	},
	{
		name     => 'an expired server certificate',
		endpoint => $expired->url,
		why      => qr/expired/i,
	},
	{
		name     => 'a key that does not match the client certificate',
		settings => { key_file => "$certs/other.key" },
		why      => qr/private key|key.*match/i,
	},
	{
		name     => 'no client certificate',
		settings => { cert_file => '', key_file => '' },
		why      => qr/certificate|alert|handshake/i,
	},
);

foreach my $case (@cases)
{
	my $name = $case->{name};

	# first an unrelated error, so that the case's own error is seen new
	set_conf($node, endpoints => $dead, %ok_files);
	ok( status_wait(
			$node,
			sub {
				($_[0]{endpoint} // '') eq $dead
				  && ($_[0]{last_error} // '') ne ''
				  && $_[0]{last_error} !~ $case->{why};
			}),
		"$name: the node first fails on a closed port");

	my $endpoint = $case->{endpoint} // $good->url;
	my $offset = set_conf($node, endpoints => $endpoint, %ok_files,
		%{ $case->{settings} || {} });
	ok( status_wait(
			$node,
			sub {
				($_[0]{endpoint} // '') eq $endpoint
				  && ($_[0]{last_error} // '') =~ $case->{why};
			}),
		"$name: last_error says why");
	note "$name: last_error: " . (le_status($node)->{last_error} // 'NULL');
	ok(log_wait($node, $case->{why}, $offset), "$name: so does the log");
	is( le_holds(
			$ttl,
			sub {
				my $st = le_status($node);
				return "role $st->{role}" if $st->{role} ne 'disconnected'
				  && $st->{role} ne 'follower';
				return 'leader_is_primary()' if le_leaders($node);
				return '';
			}),
		'',
		"$name: the node does not lead");
	my ($state, $err) = le_sqlstate($node, 'SELECT * FROM leader_candidates()');
	is($state, '08006', "$name: leader_candidates() fails with 08006")
	  or diag $err;
}

my @mine = grep { $_->{value} eq 'node1' } $good->get_prefix($prefix);
is(scalar(@mine), 0, 'the node never put a key into the election');
ok(kill(0, le_postmaster_pid($node)), 'the server is up');
is(le_worker_pid($node), $worker, 'the same worker process ran every case');
unlike(slurp_file($node->logfile),
	qr/terminated by signal|was terminated|PANIC|server process .* exited with exit code [^0]/,
	'no process crashed');

#
# Good settings: the node leads, without a restart
#
set_conf($node, endpoints => $good->url, %ok_files);
ok(le_wait_leader($node), 'with good settings the node leads');
is(le_status($node)->{last_error}, undef, '... with no error');
is(le_candidate_names($node), 'node1', 'leader_candidates() works');

#
# No private key in the log or leader_status()
#
my @key_lines;
foreach my $k (glob("$certs/*.key"))
{
	push @key_lines, grep { length($_) >= 40 && !/-----/ }
	  split /\n/, slurp_file($k);
}
is( secrets_in(
		slurp_file($node->logfile)
		  . $node->safe_psql('postgres', 'SELECT * FROM leader_status()'),
		@key_lines),
	'',
	'no private key in the log or leader_status()');

$node->stop;
$_->stop foreach ($good, $expired, $wronghost);
done_testing();
