# Proxy variables in the server's environment (issue 15): libcurl reads
# http_proxy, https_proxy, all_proxy (and their upper-case forms, but for
# HTTP_PROXY) from the environment, but the worker talks to etcd, which is
# never behind a web proxy meant for the server's other traffic. A node
# whose postmaster starts with every one of them pointing at a closed
# local port (and no_proxy unset) must still reach etcd and lead.

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

my $prefix = '/leader_election/t048';
my $ttl    = 2;

my $etcd = EtcdServer->new('etcd');
$etcd->start;

# a reserved port nothing listens on: a proxy that refuses every connection
my $closed = PostgreSQL::Test::Cluster::get_free_port();
my $proxy  = "http://127.0.0.1:$closed";
my @vars   = qw(http_proxy https_proxy all_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY);

my $n1 = le_node('node1', $etcd, prefix => $prefix, lease_ttl => $ttl, start => 0);
{
	local @ENV{@vars} = ($proxy) x @vars;
	delete local $ENV{no_proxy};
	delete local $ENV{NO_PROXY};
	$n1->start;
}
$n1->safe_psql('postgres', 'CREATE EXTENSION leader_election');

# the variables did reach the server (the postmaster's: its children
# write their process titles over theirs)
my $pid = le_postmaster_pid($n1);
my $environ = slurp_file("/proc/$pid/environ");
my %env = map { split /=/, $_, 2 } grep { /=/ } split /\0/, $environ;
is(join(',', map { $env{$_} // '(unset)' } @vars), join(',', ($proxy) x @vars),
	'the postmaster runs with every proxy variable set to a closed port');
ok(!defined $env{no_proxy} && !defined $env{NO_PROXY}, '... and no_proxy unset');

# bounded: the first leader of an election waits one TTL
my $deadline = time() + 30;
my $leads = 0;
while (!$leads && time() < $deadline)
{
	$leads = $n1->safe_psql('postgres', 'SELECT leader_is_primary()') eq 't';
	usleep(100_000) unless $leads;
}
ok($leads, 'the node reaches etcd and leads');
my $st = le_status($n1);
is($st->{last_error}, undef, 'no error')
  or diag "last_error: $st->{last_error}";
is(join(',', map { $_->{value} } $etcd->get_prefix($prefix)), 'node1',
	'its key is in etcd');

done_testing();
