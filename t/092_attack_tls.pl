# Attack (issue 15): hostile TLS mid-run. One etcd serving https on
# 127.0.0.1 with a certificate of the test CA (leader_election.ca_file);
# n1 leads, n2 follows. Then etcd is restarted on the same port with the
# same data (so the election it serves still names n1 first, with its
# lease kept alive by the restart), but with a certificate that must not
# be trusted:
#
#   wrong name  signed by the CA, but for DNS:other.example only
#   expired     signed by the CA for IP:127.0.0.1, expired
#   other CA    for IP:127.0.0.1, signed by a CA the nodes do not trust
#
# Each time, within 2 x TTL neither node leads, and for 8 s after neither
# does; last_error gives curl's TLS reason; leader_candidates() refuses
# (08006). Between the faults the good certificate comes back and one node
# leads within 30 s. A monitor polls both nodes: never two leaders.

use strict;
use warnings;

use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

use FindBin;
use lib $FindBin::RealBin;

use LeaderElectionTest;

my $ttl = 4;

# ---- certificates ----
my $certs = PostgreSQL::Test::Utils::tempdir('certs');
sub ossl
{
	my @cmd = ('openssl', @_);
	my ($out, $err) = ('', '');
	IPC::Run::run(\@cmd, '<', \undef, '>', \$out, '2>', \$err)
	  or die "openssl @_ failed: $err";
}
open(my $fh, '>', "$certs/ext_ip") or die;
print $fh "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n";
close $fh;
open($fh, '>', "$certs/ext_name") or die;
print $fh "subjectAltName=DNS:other.example\nextendedKeyUsage=serverAuth,clientAuth\n";
close $fh;
foreach my $ca (qw(ca ca2))
{
	ossl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', "$certs/$ca.key",
		'-out', "$certs/$ca.pem", '-days', '30', '-subj', "/CN=$ca");
}
# name => [CA, extension file, days]
my %server = (
	good     => [ 'ca',  'ext_ip',   30 ],
	name     => [ 'ca',  'ext_name', 30 ],
	expired  => [ 'ca',  'ext_ip',   -1 ],
	otherca  => [ 'ca2', 'ext_ip',   30 ],
);
foreach my $s (sort keys %server)
{
	my ($ca, $ext, $days) = @{ $server{$s} };
	ossl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', "$certs/$s.key",
		'-out', "$certs/$s.csr", '-subj', '/CN=etcd');
	ossl('x509', '-req', '-in', "$certs/$s.csr", '-CA', "$certs/$ca.pem", '-CAkey',
		"$certs/$ca.key", '-CAcreateserial', '-days', $days, '-extfile', "$certs/$ext",
		'-out', "$certs/$s.pem");
}

# ---- an etcd serving https, restartable with another certificate ----
my $port  = PostgreSQL::Test::Cluster::get_free_port();
my $peer  = PostgreSQL::Test::Cluster::get_free_port();
my $data  = PostgreSQL::Test::Utils::tempdir('etcd_tls');
my $url   = "https://127.0.0.1:$port";
my $elog  = "$PostgreSQL::Test::Utils::log_path/092_attack_tls_etcd.log";
my $etcd_pid;

sub etcd_start
{
	my ($cert) = @_;
	note "starting etcd with certificate $cert";
	my @cmd = (
		'etcd', '--name', 'tls', '--data-dir', "$data/data",
		'--listen-client-urls', $url, '--advertise-client-urls', $url,
		'--listen-peer-urls', "http://127.0.0.1:$peer",
		'--initial-advertise-peer-urls', "http://127.0.0.1:$peer",
		'--initial-cluster', "tls=http://127.0.0.1:$peer",
		'--cert-file', "$certs/$cert.pem", '--key-file', "$certs/$cert.key",
		'--logger', 'zap', '--log-outputs', 'stderr');
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		open(STDIN, '<', '/dev/null');
		open(STDOUT, '>>', $elog);
		open(STDERR, '>&', \*STDOUT);
		exec(@cmd) or POSIX::_exit(127);
	}
	$etcd_pid = $pid;
	# up when it answers over TLS at all (its certificate is not checked here)
	for (1 .. 100)
	{
		return if system("curl -sk -o /dev/null -m 1 $url/health") == 0;
		usleep(100_000);
	}
	die "etcd with $cert did not come up";
}

sub etcd_stop
{
	return unless $etcd_pid;
	kill 'TERM', $etcd_pid;
	waitpid($etcd_pid, 0);
	$etcd_pid = undef;
}

END { kill 'KILL', $etcd_pid if $etcd_pid; }

etcd_start('good');

my $conf = "leader_election.ca_file = '$certs/ca.pem'";
my $fake = bless { url => $url }, 'FakeEtcd';
sub FakeEtcd::url { return $_[0]->{url}; }
my $n1 = le_node('n1', $fake, prefix => '/le/t092', lease_ttl => $ttl, extra_conf => $conf);
ok(le_wait_leader($n1), 'n1 leads over TLS');
my $n2 = le_node('n2', $fake, prefix => '/le/t092', lease_ttl => $ttl, extra_conf => $conf);
ok($n2->poll_query_until('postgres', "SELECT role = 'follower' FROM leader_status()"),
	'n2 follows over TLS');
my @nodes = ($n1, $n2);

my $two_leaders = 0;
sub leaders
{
	my @l = le_leaders(@nodes);
	$two_leaders++ if @l > 1;
	return @l;
}

foreach my $bad (qw(name expired otherca))
{
	ok(defined le_time_until(30, sub { leaders() == 1 }), "$bad: one leader before");
	etcd_stop();
	etcd_start($bad);
	my $t = le_time_until(2 * $ttl, sub { leaders() == 0 });
	ok(defined $t, "$bad: nobody leads within 2 x TTL");
	my $held = !defined le_time_until(8, sub { leaders() > 0 });
	ok($held, "$bad: ... nor during the next 8 s");
	foreach my $n (@nodes)
	{
		my $st = le_status($n);
		note "$bad: " . $n->name . " phase $st->{phase}, role $st->{role}, last_error: "
		  . ($st->{last_error} // '');
		like($st->{last_error} // '', qr/TLS|SSL|certificate/i,
			"$bad: " . $n->name . ' says why (TLS)');
	}
	my ($rc, $out, $err) = $n1->psql('postgres', 'SELECT count(*) FROM leader_candidates()',
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	like($err, qr/08006/, "$bad: leader_candidates() refuses (08006)") or diag $err;
	etcd_stop();
	etcd_start('good');
	my $back = le_time_until(30, sub { leaders() == 1 });
	ok(defined $back, "$bad: one leader again with the good certificate");
	note sprintf('%s: fenced %.2f s after the swap; one leader %.2f s after the good one is back',
		$bad, $t // -1, $back // -1);
}
is($two_leaders, 0, 'never two leaders');

# no secret, no key material in the server logs
my $leak = '';
foreach my $n (@nodes)
{
	my $text = slurp_file($n->logfile);
	$leak .= $n->name . ' ' if $text =~ /PRIVATE KEY/;
}
is($leak, '', 'no key material in the logs');

etcd_stop();
done_testing();
