
# TLS to etcd with client certificates (etcd --client-cert-auth): two nodes
# elect one leader over https, leader_candidates() reads the queue with the
# same settings, and leader_resign() hands over. Then the leader's client
# certificate is rotated: new files at new paths, a reload, the old files
# deleted and every connection dropped, so that the worker must make new
# TLS connections with the new files; it must keep its leadership (same
# fencing token) throughout. A reload that names a missing or unreadable
# file is refused with a clear log line, SHOW keeps the old value, and the
# leader leads on; ALTER SYSTEM refuses such a value at once.
#
# Then the failures: a node that cannot trust etcd, or that etcd cannot
# trust, never leads, stays up, and says why in leader_status().last_error
# and in its log. node3 goes through every case by reloading its settings:
# unknown CA (a CA file that did not sign etcd's certificate, and the
# system's CAs), a server certificate for another host only (the hostile
# answer: a server that proves it is someone else), an expired server
# certificate, a key that does not match the client certificate, and no
# client certificate at all. Between two cases node3 points at a port where
# nothing listens, so each case's error is new, not left over. node3 starts
# with a key file that does not exist: it comes up (PostgreSQL sets an
# extension's invalid setting from postgresql.conf to its default with a
# WARNING at start) and does not lead. At the end, good settings make it
# lead without a restart, from the same worker process.
#
# No private key appears in any node's log or leader_status().

use strict;
use warnings;

use File::Copy qw(copy);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

# t/ holds the helper modules (PROVE_FLAGS in the Makefile is reset by PGXS)
use FindBin;
use lib $FindBin::RealBin;

use EtcdServer;
use LeaderElectionTest;
use SecureEtcdTest;
use TcpProxy;

my $prefix = '/leader_election/t050';
my $ttl    = 3;

my $certs = EtcdServer::make_test_certs();
my $etcd  = EtcdServer->new('etcd', tls_dir => $certs);
$etcd->start;

# node2 reaches etcd through a proxy, so that the test can cut its
# connections and make its worker connect (and handshake) again
my $proxy = TcpProxy->new(target_port => $etcd->client_port, name => 'node2');
$proxy->start;
my $proxy_url = 'https://127.0.0.1:' . $proxy->port;

# Each node gets its own copy of the client certificate and key, as a
# rotation deletes the old ones.
my $files = PostgreSQL::Test::Utils::tempdir('client_files');

sub place_key_pair
{
	my ($from, $dir) = @_;
	mkdir $dir or die "mkdir $dir: $!";
	copy("$certs/$from.crt", "$dir/client.crt") or die "copy: $!";
	copy("$certs/$from.key", "$dir/client.key") or die "copy: $!";
	chmod 0600, "$dir/client.key";
	return ("$dir/client.crt", "$dir/client.key");
}

my ($n1_crt, $n1_key) = place_key_pair('client', "$files/node1");
my ($n2_crt, $n2_key) = place_key_pair('client', "$files/node2-a");

#
# Two nodes over https with client certificates
#
my $n1 = le_node('node1', $etcd,
	prefix     => $prefix,
	lease_ttl  => $ttl,
	extra_conf => tls_conf("$certs/ca.crt", $n1_crt, $n1_key));
ok(le_wait_leader($n1), 'node1 leads over https');
my $n2 = le_node('node2', $etcd,
	prefix     => $prefix,
	lease_ttl  => $ttl,
	endpoints  => $proxy_url,
	extra_conf => tls_conf("$certs/ca.crt", $n2_crt, $n2_key));
ok( $n2->poll_query_until(
		'postgres', 'SELECT role, queue_position, leader_name FROM leader_status()',
		'follower|1|node1'),
	'node2 follows node1 at position 1');
is(le_status($n1)->{endpoint}, $etcd->url, 'node1 uses the https endpoint');
is(le_status($n1)->{last_error}, undef, 'node1 has no error');
is(le_status($n2)->{last_error}, undef, 'node2 has no error');

is(join(',', map { $_->{value} } $etcd->get_prefix($prefix)),
	'node1,node2', 'etcd holds both keys, node1 first');
is(le_candidate_names($n1), 'node1,node2', 'leader_candidates() on node1 over https');
is(le_candidate_names($n2), 'node1,node2',
	'leader_candidates() on node2 over https, through the proxy');
my @c = le_candidates($n2);
is($c[1]{is_self}, 't', '... and marks node2 itself');

#
# Hand-over with leader_resign(): node2 leads before node1's lease could
# have expired (the release went through over TLS)
#
my $expiry = le_lease_expiry($etcd, le_status($n1)->{lease_id});
is($n1->safe_psql('postgres', 'SELECT leader_resign()'), 't', 'node1 resigns');
ok(le_wait_leader($n2), 'node2 leads after the resign');
cmp_ok(time(), '<', $expiry, '... before node1\'s lease could have expired');
ok( $n1->poll_query_until(
		'postgres', 'SELECT role, queue_position, leader_name FROM leader_status()',
		'follower|1|node2'),
	'node1 follows node2 at position 1');
is(le_candidate_names($n1), 'node2,node1', 'queue: node2, node1');

#
# Rotation of the leader's client certificate: new files at new paths,
# a reload, then the old files go and every connection of node2 is cut
#
my $before = le_status($n2);
my ($n2b_crt, $n2b_key) = place_key_pair('client2', "$files/node2-b");
$n2->append_conf('postgresql.conf',
	"leader_election.cert_file = '$n2b_crt'\nleader_election.key_file = '$n2b_key'\n");
$n2->reload;
ok($n2->poll_query_until('postgres', 'SHOW leader_election.key_file', $n2b_key),
	'node2 took the new key file');
is($n2->safe_psql('postgres', 'SHOW leader_election.cert_file'),
	$n2b_crt, '... and the new certificate file');
unlink $n2_crt, $n2_key or die "unlink: $!";
rmdir "$files/node2-a";
$proxy->drop_connections;

# Three lease TTLs: without renewals over new connections (made with the
# new files, as the old ones are gone) node2's leadership would lapse.
is( le_holds(
		3 * $ttl,
		sub {
			my $st = le_status($n2);
			return "node2 is $st->{role} (last_error: "
			  . ($st->{last_error} // 'none') . ')'
			  if $st->{role} ne 'leader';
			return "node2's fencing token changed to $st->{fencing_token}"
			  if $st->{fencing_token} ne $before->{fencing_token};
			return 'node2 does not pass leader_is_primary()'
			  if $n2->safe_psql('postgres', 'SELECT leader_is_primary()') ne 't';
			return '';
		}),
	'',
	'node2 leads on with the same fencing token after the rotation');
my $after = le_status($n2);
is($after->{role_since}, $before->{role_since}, '... since the same moment');
is($after->{lease_id},   $before->{lease_id},   '... with the same lease');
is($after->{last_error}, undef, '... and no error');
like(slurp_file($proxy->{logfile}), qr/dropped every connection.*accepted from/s,
	'node2 connected again after its connections were cut');
cmp_ok(le_lease_expiry($etcd, $after->{lease_id}) - time(), '>=', $ttl - 2,
	'etcd sees node2\'s lease renewed');
is(le_candidate_names($n2), 'node2,node1',
	'leader_candidates() on node2 with the new files');
is(le_status($n1)->{role}, 'follower', 'node1 still follows');

#
# A reload naming a missing or unreadable file is refused; the old value
# stays and the leader leads on.
#
my $unreadable = "$files/unreadable.key";
copy("$certs/client2.key", $unreadable) or die "copy: $!";
chmod 0000, $unreadable;
my %bad = (
	ca_file   => "$files/no-such-ca.crt",
	cert_file => "$files/no-such-client.crt",
	key_file  => $unreadable,
);
my %good = (
	ca_file   => "$certs/ca.crt",
	cert_file => $n2b_crt,
	key_file  => $n2b_key,
);
foreach my $guc (sort keys %bad)
{
	my $offset = -s $n2->logfile;
	$n2->append_conf('postgresql.conf', "leader_election.$guc = '$bad{$guc}'\n");
	$n2->reload;
	ok( log_wait($n2,
			qr/invalid value for parameter "leader_election\.$guc": "\Q$bad{$guc}\E"/,
			$offset),
		"reload with $guc naming a bad file: refused in the log");
	my $log = slurp_file($n2->logfile, $offset);
	like($log,
		qr/(no such file|does not exist|permission denied|not readable|cannot be read|could not (open|read|access))/i,
		'... saying why');
	is($n2->safe_psql('postgres', "SHOW leader_election.$guc"),
		$good{$guc}, "... SHOW keeps the old $guc");

	# ALTER SYSTEM checks the value before it writes it
	my ($state, $err) = le_sqlstate($n2,
		"ALTER SYSTEM SET leader_election.$guc = '$bad{$guc}'");
	isnt($state, '00000', "ALTER SYSTEM SET $guc to a bad file is refused");
	like($err, qr/leader_election\.$guc/, '... naming the setting');

	# the good value again, last in the file
	$n2->append_conf('postgresql.conf', "leader_election.$guc = '$good{$guc}'\n");
	$n2->reload;
}
my $final = le_status($n2);
is($final->{role},          'leader', 'node2 leads after the refused reloads');
is($final->{fencing_token}, $before->{fencing_token}, '... with the same fencing token');
is($final->{last_error},    undef, '... and no error');
is($n2->safe_psql('postgres', 'SELECT count(*) FROM pg_file_settings WHERE error IS NOT NULL'),
	'0', 'postgresql.conf has no refused line left');

#
# TLS failures, on node3 in an election of its own
#
my $bad_prefix = '/leader_election/t050bad';
my $bad_ttl    = 2;

# etcds no client should trust; they ask for no client certificate
my $expired = EtcdServer->new('expired',
	tls_dir          => $certs,
	server_cert      => 'expired',
	client_cert_auth => 0);
my $wronghost = EtcdServer->new('wronghost',
	tls_dir          => $certs,
	server_cert      => 'wronghost',
	client_cert_auth => 0);
$_->start foreach ($expired, $wronghost);

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
my $n3 = le_node('node3', $etcd,
	prefix     => $bad_prefix,
	lease_ttl  => $bad_ttl,
	extra_conf => tls_conf($ok_files{ca_file}, $ok_files{cert_file}, $missing_key),
	start      => 0);
ok($n3->start(fail_ok => 1), 'node3 starts with a key file that does not exist');
$n3->safe_psql('postgres', 'CREATE EXTENSION leader_election');
ok(log_wait($n3, qr/\Q$missing_key\E/, 0),
	'... its log names the missing file');
ok(status_wait($n3, sub { defined $_[0]{last_error} }),
	'... leader_status() shows an error');
is( le_holds(
		2 * $bad_ttl,
		sub {
			return 'node3 leads' if le_leaders($n3);
			return '';
		}),
	'',
	'... and does not lead');
note 'last_error: ' . (le_status($n3)->{last_error} // 'NULL');
my $worker = le_worker_pid($n3);

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
	set_conf($n3, endpoints => $dead, %ok_files);
	ok( status_wait(
			$n3,
			sub {
				($_[0]{endpoint} // '') eq $dead
				  && ($_[0]{last_error} // '') ne ''
				  && $_[0]{last_error} !~ $case->{why};
			}),
		"$name: node3 first fails on a closed port");

	my $endpoint = $case->{endpoint} // $etcd->url;
	my $offset = set_conf($n3, endpoints => $endpoint, %ok_files,
		%{ $case->{settings} || {} });
	ok( status_wait(
			$n3,
			sub {
				($_[0]{endpoint} // '') eq $endpoint
				  && ($_[0]{last_error} // '') =~ $case->{why};
			}),
		"$name: last_error says why");
	note "$name: last_error: " . (le_status($n3)->{last_error} // 'NULL');
	ok(log_wait($n3, $case->{why}, $offset), "$name: so does the log");
	is( le_holds(
			$bad_ttl,
			sub {
				my $st = le_status($n3);
				return "role $st->{role}" if $st->{role} ne 'disconnected'
				  && $st->{role} ne 'follower';
				return 'leader_is_primary()' if le_leaders($n3);
				return '';
			}),
		'',
		"$name: node3 does not lead");
	my ($state, $err) = le_sqlstate($n3, 'SELECT * FROM leader_candidates()');
	is($state, '08006', "$name: leader_candidates() fails with 08006")
	  or diag $err;
}

my @mine = grep { $_->{value} eq 'node3' } $etcd->get_prefix($bad_prefix);
is(scalar(@mine), 0, 'node3 never put a key into the election');
ok(kill(0, le_postmaster_pid($n3)), 'the server is up');
is(le_worker_pid($n3), $worker, 'the same worker process ran every case');
unlike(slurp_file($n3->logfile),
	qr/terminated by signal|was terminated|PANIC|server process .* exited with exit code [^0]/,
	'no process crashed');

#
# Good settings: the node leads, without a restart
#
set_conf($n3, endpoints => $etcd->url, %ok_files);
ok(le_wait_leader($n3), 'with good settings node3 leads');
is(le_status($n3)->{last_error}, undef, '... with no error');
is(le_candidate_names($n3), 'node3', 'leader_candidates() on node3 works');

#
# No private key in any node's log or leader_status()
#
my @key_lines;
foreach my $k (glob("$certs/*.key"), glob("$files/*/*.key"))
{
	push @key_lines, grep { length($_) >= 40 && !/-----/ }
	  split /\n/, slurp_file($k);
}
foreach my $node ($n1, $n2, $n3)
{
	is( secrets_in(
			slurp_file($node->logfile)
			  . $node->safe_psql('postgres', 'SELECT * FROM leader_status()'),
			@key_lines),
		'',
		$node->name . ': no private key in its log or leader_status()');
}

$_->stop foreach ($n1, $n2, $n3);
$proxy->stop;
$_->stop foreach ($etcd, $expired, $wronghost);
done_testing();
