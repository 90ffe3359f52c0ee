
# The HTTP endpoint's settings: TLS and the mistakes an operator can make.
#
# n1 serves HTTPS (leader_election.http_cert_file and http_key_file, a
# certificate from t/make-test-certs.sh): a client that trusts the test CA
# gets 200 on /primary and the other routes, plain HTTP and a client that
# trusts another CA get nothing; no line of the private key appears in any
# answer (/status, /cluster, /metrics, ...) or in the node's log; garbage
# and a stalled TLS handshake do not stop it.
#
# n2 goes through the TLS mistakes, a restart each: only the certificate
# set, only the key set, an unreadable certificate, a missing key, a key
# that does not match the certificate. Each time the HTTP worker logs a
# FATAL that says what is wrong (and retries every 5 s), the node itself
# runs and leads, and nothing answers on the endpoint's port.
#
# n3: an invalid leader_election.http_listen ('nonsense', '127.0.0.1:0',
# '127.0.0.1:99999', 'host.example:80') is refused with a WARNING that says
# why, and the server starts without an endpoint (as for the etcd settings:
# PostgreSQL starts anyway, and a health check of the node fails). Then a port another
# process listens on: the worker logs "could not listen on ..." and retries,
# the node leads, and once the port is free the endpoint answers.
use strict;
use warnings;

use File::Copy qw(copy);
use IO::Socket::INET;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

use FindBin;
use lib $FindBin::RealBin;

use EtcdServer;
use HttpEndpoint;
use LeaderElectionTest;

my $ttl = 2;

my $certs = EtcdServer::make_test_certs();
my $etcd  = EtcdServer->new('etcd');
$etcd->start;

$SIG{PIPE} = 'IGNORE';

#
# n1: HTTPS
#
my $p1 = le_http_port();
my $n1 = le_node('n1', $etcd, prefix => '/leader_election/t064a', lease_ttl => $ttl,
	extra_conf => "leader_election.http_listen = '127.0.0.1:$p1'\n"
	  . "leader_election.http_cert_file = '$certs/server.crt'\n"
	  . "leader_election.http_key_file = '$certs/server.key'\n");
ok(le_wait_leader($n1), 'n1 leads');
my %tls = (https => 1, cacert => "$certs/ca.crt");
ok(https_wait($p1, '/primary', 200, 30), 'n1 over HTTPS (trusting the test CA): /primary 200');
ok(log_wait($n1, qr/HTTP endpoint listens on 127\.0\.0\.1:$p1 \(HTTPS\)/, 0),
	'... its log says it listens with HTTPS');
my %answers;
foreach my $path (qw(/ /primary /health /liveness /readiness /status /patroni /cluster /metrics))
{
	my ($code, $body, $head) = le_http($p1, $path, %tls);
	is($code, 200, "HTTPS $path: 200");
	$answers{$path} = $head . $body;
}
is(le_http_code($p1, '/primary'), 0, 'plain HTTP to the HTTPS port: no answer');
is(le_http_code($p1, '/primary', https => 1, cacert => "$certs/ca2.crt"), 0,
	'a client that trusts another CA: no answer (the handshake fails)');
is(le_http_json($p1, '/status'), undef, 'plain HTTP /status: no document');

# The key's base64 lines: none of them in any answer or in the log.
my @key_lines = grep { length($_) >= 16 && !/-----/ } split /\n/, slurp_file("$certs/server.key");
ok(@key_lines > 0, 'the private key has base64 lines to look for');
my $everything = join("\n", values %answers);
is(join(',', grep { index($everything, $_) >= 0 } @key_lines), '',
	'no line of the private key in any answer');
unlike($everything, qr/PRIVATE KEY/, '... nor a PEM private key marker');
my $log1 = slurp_file($n1->logfile);
is(join(',', grep { index($log1, $_) >= 0 } @key_lines), '', '... nor in the node\'s log');

# garbage and a handshake that stops halfway: the endpoint goes on
my $http_pid = le_http_worker_pid($n1);
foreach my $junk ("GET /primary HTTP/1.1\r\nHost: x\r\n\r\n",
	join('', map { chr(int(rand(256))) } 1 .. 2048),
	"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" . ('A' x 32))
{
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $p1, Timeout => 5)
	  or next;
	syswrite($s, $junk);
	close $s;
}
my @stalled = map {
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $p1, Timeout => 5);
	syswrite($s, "\x16\x03\x01\x02\x00\x01\x00") if $s;
	$s ? ($s) : ()
} 1 .. 10;
ok(https_wait($p1, '/primary', 200, 10), 'garbage and 10 stalled handshakes: HTTPS /primary still 200');
close $_ foreach @stalled;
is(le_http_worker_pid($n1), $http_pid, '... from the same HTTP worker');
$n1->stop;

#
# n2: TLS mistakes; the node leads, the endpoint is not there
#
my $p2 = le_http_port();
my $n2 = le_node('n2', $etcd, prefix => '/leader_election/t064b', lease_ttl => $ttl,
	extra_conf => "leader_election.http_listen = '127.0.0.1:$p2'\n", start => 0);
my $unreadable = "$certs/unreadable.crt";
copy("$certs/server.crt", $unreadable) or die "copy: $!";
chmod 0000, $unreadable;
my @mistakes = (
	[ 'only http_cert_file', "$certs/server.crt", '',
		qr/FATAL:  leader_election: the HTTP endpoint needs both http_cert_file and http_key_file for TLS\n.*HINT:  Set both, or neither for plain HTTP\./ ],
	[ 'only http_key_file', '', "$certs/server.key",
		qr/FATAL:  leader_election: the HTTP endpoint needs both http_cert_file and http_key_file for TLS\n.*HINT:  Set both, or neither for plain HTTP\./ ],
	[ 'an unreadable certificate', $unreadable, "$certs/server.key",
		qr/FATAL:  leader_election: could not open leader_election\.http_cert_file "\Q$unreadable\E": Permission denied/ ],
	[ 'a missing key', "$certs/server.crt", "$certs/no-such.key",
		qr/FATAL:  leader_election: could not open leader_election\.http_key_file "\Q$certs\E\/no-such\.key": No such file or directory/ ],
	[ 'a key that does not match the certificate', "$certs/server.crt", "$certs/other.key",
		qr/FATAL:  leader_election: the HTTP endpoint could not listen on 127\.0\.0\.1:$p2\n.*DETAIL:  .*TLS.*\n(?s:.*)HINT:  .*the TLS files/ ],);
my $started = 0;
foreach my $m (@mistakes)
{
	my ($what, $cert, $key, $fatal) = @$m;
	$n2->stop if $started;
	my $offset = -s $n2->logfile // 0;
	$n2->append_conf('postgresql.conf',
		"leader_election.http_cert_file = '$cert'\nleader_election.http_key_file = '$key'\n");
	ok($n2->start(fail_ok => 1), "$what: the node starts");
	if (!$started)
	{
		$n2->safe_psql('postgres', 'CREATE EXTENSION leader_election');
		$started = 1;
	}
	ok(log_wait($n2, $fatal, $offset), "$what: the HTTP worker logs a FATAL that says so");
	ok(le_wait_leader($n2), "$what: the node leads");
	is(le_http_code($p2, '/primary') . ',' . le_http_code($p2, '/primary', %tls), '0,0',
		"$what: nothing answers on the endpoint's port");
}
# it retries (bgw_restart_time 5 s): the same FATAL again
my $offset2 = -s $n2->logfile;
ok(log_wait($n2, $mistakes[-1][3], $offset2), 'the HTTP worker tries again, and says it again');
is(le_status($n2)->{role}, 'leader', '... while the node leads on');
$n2->stop;

#
# n3: invalid http_listen values; a port in use
#
my $p3 = le_http_port();
my $n3 = le_node('n3', $etcd, prefix => '/leader_election/t064c', lease_ttl => $ttl,
	start => 0);
my %bad = (
	'nonsense'        => qr/Expected "host:port"/,
	'127.0.0.1:0'     => qr/The port must be a number from 1 to 65535/,
	'127.0.0.1:99999' => qr/The port must be a number from 1 to 65535/,
	'host.example:80' => qr/"host\.example" is not an IP address/,);
foreach my $value (sort keys %bad)
{
	my $offset = -s $n3->logfile // 0;
	$n3->append_conf('postgresql.conf', "leader_election.http_listen = '$value'\n");
	my $up = $n3->start(fail_ok => 1);
	my $log = slurp_file($n3->logfile, $offset);
	like($log, qr/invalid value for parameter "leader_election\.http_listen": "\Q$value\E"/,
		"http_listen = '$value': the log names the setting and the value");
	like($log, $bad{$value}, "... and says what is wrong with it");
	ok($up, "http_listen = '$value': the server starts anyway");
	if ($up)
	{
		is($n3->safe_psql('postgres', 'SHOW leader_election.http_listen'), '',
			'... with the default: no endpoint');
		$n3->stop;
	}
}

# a port another process listens on
my $squatter = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $p3,
	Listen => 5, ReuseAddr => 1) or die "cannot listen on $p3: $!";
my $offset3 = -s $n3->logfile;
$n3->append_conf('postgresql.conf', "leader_election.http_listen = '127.0.0.1:$p3'\n");
$n3->start;
$n3->safe_psql('postgres', 'CREATE EXTENSION leader_election');
my $busy = qr/FATAL:  leader_election: the HTTP endpoint could not listen on 127\.0\.0\.1:$p3\n.*DETAIL:  .*Address already in use/;
ok(log_wait($n3, $busy, $offset3), 'a port in use: the worker logs "could not listen on 127.0.0.1:<port>": Address already in use');
ok(le_wait_leader($n3), '... and the node leads');
$offset3 = -s $n3->logfile;
ok(log_wait($n3, $busy, $offset3), '... the worker tries again');
close $squatter;
ok(le_http_wait($p3, '/primary', 200, 20), 'the port is free again: the endpoint answers /primary 200');
is(le_status($n3)->{role}, 'leader', 'n3 led throughout');
$n3->stop;

done_testing();

# ---------------------------------------------------------------------------

# True once HTTPS $path answers $want (trusting the test CA), polled every
# 100 ms for at most $timeout s.
sub https_wait
{
	my ($port, $path, $want, $timeout) = @_;
	my $deadline = time() + $timeout;
	while (time() < $deadline)
	{
		return 1 if le_http_code($port, $path, %tls, timeout => 2) == $want;
		usleep(100_000);
	}
	return 0;
}

# True once the node's log, from byte $offset, matches $re (up to 30 s).
sub log_wait
{
	my ($node, $re, $offset) = @_;
	my $deadline = time() + 30;
	while (time() < $deadline)
	{
		return 1 if slurp_file($node->logfile, $offset) =~ $re;
		usleep(100_000);
	}
	diag 'log_wait: no ' . $re . ' in ' . $node->logfile . " from $offset";
	return 0;
}

