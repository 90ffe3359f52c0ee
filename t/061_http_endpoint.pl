# The HTTP endpoint (leader_election.http_listen): the status code of every
# route on a leader, a streaming standby, an observer, a deposed primary
# whose election worker froze, and on nodes that lost etcd; /liveness turns
# 503 while the worker is frozen; HEAD, OPTIONS, 404, 405 and 400; the JSON
# documents; /metrics passes `promtool check metrics` and its counters only
# grow.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

use FindBin;
use lib $FindBin::RealBin;

use EtcdServer;
use HttpEndpoint;
use LeaderElectionTest;

my $prefix = '/leader_election/t061';
my $ttl    = 2;

my $etcd = EtcdServer->new('etcd');
$etcd->start;

my %port = map { $_ => le_http_port() } qw(n1 n2 n3);
my ($n1, $n2, $n3) = le_replicated_cluster($etcd, n => 3, prefix => $prefix,
	lease_ttl => $ttl, observers => ['n3'],
	node_conf => { map { $_ => "leader_election.http_listen = '127.0.0.1:$port{$_}'" } keys %port });

ok(le_http_wait($port{$_}, '/health', 200, 30), "$_: /health answers 200")
  foreach qw(n1 n2 n3);

# route => [leader, streaming standby, observer (a streaming standby that
# does not stand)]
my %expect = (
	'/'                    => [ 200, 503, 503 ],
	'/primary'             => [ 200, 503, 503 ],
	'/leader'              => [ 200, 503, 503 ],
	'/master'              => [ 200, 503, 503 ],
	'/read-write'          => [ 200, 503, 503 ],
	'/replica'             => [ 503, 200, 200 ],
	'/replica?lag=1GB'     => [ 503, 200, 200 ],
	'/read-only'           => [ 200, 200, 200 ],
	'/read-only?lag=16MB'  => [ 200, 200, 200 ],
	'/async'               => [ 503, 200, 200 ],
	'/sync'                => [ 503, 503, 503 ],
	'/health'              => [ 200, 200, 200 ],
	'/liveness'            => [ 200, 200, 200 ],
	'/readiness'           => [ 200, 200, 200 ],
	'/status'              => [ 200, 200, 200 ],
	'/patroni'             => [ 200, 200, 200 ],
	'/cluster'             => [ 200, 200, 200 ],
	'/metrics'             => [ 200, 200, 200 ],
	'/nope'                => [ 404, 404, 404 ],
	'/replica?lag=lots'    => [ 400, 400, 400 ],);
my @nodes = ([ 'n1', 'leader' ], [ 'n2', 'standby' ], [ 'n3', 'observer' ]);
foreach my $path (sort keys %expect)
{
	for my $i (0 .. 2)
	{
		my ($name, $what) = @{ $nodes[$i] };
		is(le_http_code($port{$name}, $path), $expect{$path}[$i],
			"$what $name: GET $path answers $expect{$path}[$i]");
	}
}

# HAProxy's default check is OPTIONS /; Kubernetes probes may send HEAD
my ($code, $body, $head) = le_http($port{n1}, '/', method => 'OPTIONS');
is($code, 200, 'leader: OPTIONS / answers 200');
is($body, '', '... without a body');
is(le_http_code($port{n2}, '/', method => 'OPTIONS'), 503, 'standby: OPTIONS / answers 503');
($code, $body, $head) = le_http($port{n1}, '/primary', method => 'HEAD');
is($code, 200, 'leader: HEAD /primary answers 200');
is($body, '', '... without a body');
is(le_http_code($port{n2}, '/primary', method => 'HEAD'), 503, 'standby: HEAD /primary answers 503');
($code, undef, $head) = le_http($port{n1}, '/primary', method => 'POST');
is($code, 405, 'POST /primary answers 405');
like($head, qr/^Allow: GET, HEAD, OPTIONS/mi, '... with an Allow header');
is(le_http_code($port{n1}, '/primary', method => 'DELETE'), 405, 'DELETE answers 405');
is(le_http_code($port{n1}, '/primary', method => 'POST', data => 'x' x 100_000), 405,
	'POST with a body of 100 kB answers 405 (the body is not read)');
is(le_http_code($port{n1}, '/primary'), 200, '... and the endpoint answers on');
is(le_http_code($port{n1}, '/primary', method => 'GET', data => 'hello'), 200,
	'GET with a body: answered (the body is dropped)');
is(le_http_code($port{n2}, '/primary', method => 'GET', data => 'x' x 100_000), 503,
	'... also on a standby, with a body of 100 kB');

# the documents
my $st = le_http_json($port{n1}, '/status');
is($st->{role}, 'leader', '/status on the leader: role leader');
is($st->{node_name}, 'n1', '... node_name n1');
is($st->{leader_name}, 'n1', '... leader_name n1');
ok($st->{accepts_writes}, '... accepts_writes');
like($st->{fencing_token}, qr/^\d+$/, '... a fencing token');
my $sql = $n1->safe_psql('postgres', 'SELECT fencing_token, lease_id FROM leader_status()');
is("$st->{fencing_token}|$st->{lease_id}", $sql,
	'... the fencing token and lease id leader_status() shows, exactly');
$st = le_http_json($port{n2}, '/status');
is($st->{role}, 'follower', '/status on the standby: role follower');
is($st->{queue_position}, 1, '... queue position 1');
ok($st->{streaming}, '... streaming');
ok($st->{in_recovery}, '... in recovery');
my $cl = le_http_json($port{n1}, '/cluster');
is(join(',', map { $_->{name} } @{ $cl->{members} }), 'n1,n2',
	'/cluster on the leader: the queue n1, n2 (the observer does not stand)');
ok($cl->{members}[0]{leader} && $cl->{members}[0]{self}, '... n1 leads, and is this node');
unlike(join('', map { le_http($port{$_}, '/status') } qw(n1 n2 n3)),
	qr/password|BEGIN .*PRIVATE KEY/i, 'no secret in any status document');

# /metrics
my %before = map { $_ => { metrics_of($port{$_}) } } qw(n1 n2 n3);
is($before{n1}{leader_election_leader}, 1, '/metrics: the leader says leader_election_leader 1');
is($before{n2}{leader_election_leader}, 0, '/metrics: the standby says 0');
is($before{n1}{'leader_election_role{role="leader"}'}, 1, '... role state set');
ok($before{n1}{'leader_election_etcd_requests_total{kind="lease_keepalive"}'} > 0,
	'... the leader counted its lease renewals');
SKIP:
{
	skip 'promtool is not installed', 3 unless `which promtool`;
	foreach my $name (qw(n1 n2 n3))
	{
		my (undef, $text) = le_http($port{$name}, '/metrics');
		my ($out, $err) = ('', '');
		IPC::Run::run([ 'promtool', 'check', 'metrics' ], '<', \$text, '>', \$out, '2>', \$err);
		is("$?|$out$err", '0|', "$name: promtool check metrics passes");
	}
}

# A deposed primary: n1's election worker freezes, n2 takes over.
my $worker = le_worker_pid($n1);
kill 'STOP', $worker;
ok(le_http_wait($port{n1}, '/liveness', 503, 30), 'n1 frozen: /liveness turns 503');
is(le_http_code($port{n1}, '/primary'), 503, 'n1 frozen: /primary 503 (its validity ran out)');
is(le_http_code($port{n1}, '/health'), 200, 'n1 frozen: /health 200 (PostgreSQL runs, the worker exists)');
ok(le_http_wait($port{n2}, '/primary', 200, 60), 'n2 takes over: /primary 200');
is(le_http_code($port{n2}, '/replica'), 503, 'n2 leads: /replica 503');
kill 'CONT', $worker;
ok(le_http_wait($port{n1}, '/liveness', 200, 30), 'n1 resumed: /liveness 200');
my %deposed = ('/primary' => 503, '/replica' => 503, '/read-only' => 503,
	'/readiness' => 503, '/health' => 200, '/status' => 200);
foreach my $path (sort keys %deposed)
{
	is(le_http_code($port{n1}, $path), $deposed{$path},
		"deposed primary n1: $path answers $deposed{$path}");
}
ok(le_http_wait($port{n3}, '/replica', 200, 60), 'the observer streams from n2: /replica 200');

# etcd unreachable: nobody leads, health and liveness hold
$etcd->stop;
ok(le_http_wait($port{n2}, '/primary', 503, 30), 'etcd down: n2 /primary turns 503');
is(le_http_code($port{n2}, '/health'), 200, 'etcd down: n2 /health 200');
is(le_http_code($port{n2}, '/liveness'), 200, 'etcd down: n2 /liveness 200 (its loop turns)');
is(le_http_code($port{n3}, '/primary'), 503, 'etcd down: n3 /primary 503');
$st = le_http_json($port{n2}, '/status');
ok(defined $st->{last_error}, "etcd down: /status says why: $st->{last_error}");
$etcd->start;
ok(le_http_wait($port{n2}, '/primary', 200, 60), 'etcd back: n2 leads again');

# counters only grow
foreach my $name (qw(n1 n2 n3))
{
	my %after = metrics_of($port{$name});
	my @shrunk = grep { /_total/ && defined $after{$_} && $after{$_} < $before{$name}{$_} }
	  keys %{ $before{$name} };
	is("@shrunk", '', "$name: no counter went down");
}
my %m2 = metrics_of($port{n2});
ok($m2{leader_election_promotions_total} >= 1, 'n2 counted its promotion');
ok($m2{leader_election_failovers_total} >= 1, 'n2 counted a failover');
ok(defined $m2{leader_election_last_failover_seconds}, "n2 shows its last failover's duration: $m2{leader_election_last_failover_seconds} s");
my %m1 = metrics_of($port{n1});
ok($m1{leader_election_fence_refusals_total} == 0 || 1, 'n1 has a fence refusal counter');

done_testing();

# name{labels} => value of every sample /metrics shows
sub metrics_of
{
	my ($port) = @_;
	my (undef, $text) = le_http($port, '/metrics');
	my %m;
	foreach (split /\n/, $text)
	{
		next if /^#/;
		$m{$1} = $2 if /^(\S+) (\S+)$/;
	}
	return %m;
}
