
# Hostile input: a fake etcd (the only test that does not use a real one)
# answers with garbage, errors, oversized or inconsistent bodies, or not at
# all.  The node must stay up, never lead on an answer it cannot read, and
# say in last_error what was wrong.

use strict;
use warnings;

use IO::Socket::INET;
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use FindBin;
use lib $FindBin::RealBin;
use LeaderElectionTest;

my $port = PostgreSQL::Test::Cluster::get_free_port();
my $mode_file = PostgreSQL::Test::Utils::tempdir() . '/mode';

sub set_mode
{
	my ($mode) = @_;
	open my $fh, '>', "$mode_file.new" or die $!;
	print $fh $mode;
	close $fh;
	rename "$mode_file.new", $mode_file or die $!;
	return;
}

# Plausible answers for every call but the one the mode spoils.  A txn that
# only reads (the queue, the cluster record and the leadership term) is told
# from one that writes (a campaign, a claim of the term) by its body, so that
# a mode can spoil either.
my $empty_range = '{"response_range":{"header":{"revision":"10"}}}';
my %good = (
	'/v3/lease/grant'     => '{"header":{"revision":"5"},"ID":"4242","TTL":"5"}',
	'/v3/lease/keepalive' => '{"result":{"header":{"revision":"5"},"ID":"4242","TTL":"5"}}',
	'/v3/lease/revoke'    => '{"header":{"revision":"6"}}',
	'/v3/kv/txn'          => '{"header":{"revision":"10"},"succeeded":true}',
	'/v3/kv/txn:read' => '{"header":{"revision":"10"},"succeeded":true,"responses":['
	  . "$empty_range,$empty_range,$empty_range]}",
	'/v3/kv/range' => '{"header":{"revision":"10"}}',
	'/v3/watch'    => undef,    # stays open, silent
);

# A read of the election whose queue part is the range answer $range.
sub read_answer
{
	my ($range) = @_;
	return '{"header":{"revision":"10"},"succeeded":true,"responses":['
	  . "{\"response_range\":$range},$empty_range,$empty_range]}";
}

# mode => { path it spoils => [HTTP status, body] }; body undef: never answer.
# A spoiled range answer spoils both the worker's read of the election and
# leader_candidates()'s plain range read.
my $big = '{"header":{"revision":"5"},"x":"' . ('a' x (3 * 1024 * 1024)) . '"}';
my %range_modes = (
	bad_base64 =>
	  '{"header":{"revision":"10"},"kvs":[{"key":"!!!notbase64","create_revision":"10"}]}',
	foreign_key =>
	  '{"header":{"revision":"10"},"kvs":[{"key":"L2Vsc2V3aGVyZS8xMDky","value":"eA==","create_revision":"10","lease":"4242"}]}',
	kvs_not_array => '{"header":{"revision":"10"},"kvs":{"a":1}}',
);
my %modes = (
	not_json    => { '/v3/lease/grant' => [ 200, '<html>proxy error</html>' ] },
	no_id       => { '/v3/lease/grant' => [ 200, '{"header":{},"TTL":"5"}' ] },
	bad_int     => { '/v3/lease/grant' => [ 200, '{"ID":"12abc","TTL":"5"}' ] },
	grpc_error  => { '/v3/lease/grant' => [ 503,
		'{"error":"etcdserver: no leader","message":"etcdserver: no leader","code":14}' ] },
	oversized   => { '/v3/lease/grant' => [ 200, $big ] },
	silent      => { '/v3/lease/grant' => [ 200, undef ] },
	txn_garbage => { '/v3/kv/txn' => [ 200, '{"header":{"revision":"10"},"succeeded":"yes"}' ] },
	# a cluster record that is no JSON: the node must not stand on it
	record_garbage => { '/v3/kv/txn:read' => [ 200,
		'{"header":{"revision":"10"},"succeeded":true,"responses":[' . $empty_range
		  . ',{"response_range":{"header":{"revision":"10"},"kvs":[{"key":"eA==",'
		  . '"value":"bm90IGpzb24=","create_revision":"3","mod_revision":"3"}]}},' . $empty_range . ']}' ] },
);
foreach my $mode (keys %range_modes)
{
	$modes{$mode} = {
		'/v3/kv/range'    => [ 200, $range_modes{$mode} ],
		'/v3/kv/txn:read' => [ 200, read_answer($range_modes{$mode}) ],
	};
}

sub respond
{
	my ($client) = @_;
	my $request = '';
	while ($request !~ /\r\n\r\n/)
	{
		my $n = sysread($client, $request, 65536, length $request);
		return unless $n;
	}
	my ($path) = $request =~ m{^POST (\S+) HTTP};
	my ($length) = $request =~ /^Content-Length:\s*(\d+)/mi;
	my $have = length($request) - index($request, "\r\n\r\n") - 4;
	while (defined $length && $have < $length)
	{
		my $n = sysread($client, $request, $length - $have, length $request);
		return unless $n;
		$have += $n;
	}
	$path //= '';
	$path .= ':read' if $path eq '/v3/kv/txn' && $request !~ /request_put|request_delete/;

	open my $fh, '<', $mode_file or die $!;
	my $mode = <$fh>;
	close $fh;
	my ($status, $body) = (200, $good{$path});
	($status, $body) = @{ $modes{$mode}{$path} }
	  if $modes{$mode} && $modes{$mode}{$path};
	if (!defined $body)
	{
		sleep 3600;    # ended by the client closing or by the test's END
		return;
	}
	print $client "HTTP/1.1 $status X\r\nContent-Type: application/json\r\n"
	  . "Content-Length: "
	  . length($body)
	  . "\r\nConnection: close\r\n\r\n$body";
	return;
}

set_mode('not_json');
my $listener = IO::Socket::INET->new(
	LocalAddr => '127.0.0.1',
	LocalPort => $port,
	Listen    => 16,
	ReuseAddr => 1) or die "cannot listen on $port: $!";
my $server_pid = fork();
die "fork: $!" unless defined $server_pid;
if ($server_pid == 0)
{
	# one process group, so that the test's END ends silent answers too
	setpgrp(0, 0);
	$SIG{CHLD} = 'IGNORE';
	while (my $client = $listener->accept)
	{
		my $pid = fork();
		if (defined $pid && $pid == 0)
		{
			respond($client);
			POSIX::_exit(0);
		}
		close $client;
	}
	POSIX::_exit(0);
}
close $listener;
END { kill 'KILL', -$server_pid if $server_pid; }

my $node = le_node(
	'hostile', undef,
	endpoints  => "http://127.0.0.1:$port",
	lease_ttl  => 5,
	extra_conf => "leader_election.request_timeout = 300\n");

# Each mode: last_error (or, for the cluster record, ineligible_reason) names
# the problem, the node does not lead, and the
# server keeps serving queries.
my @cases = (
	[ not_json    => qr/not a JSON object/ ],
	[ no_id       => qr/lease grant without a valid ID/ ],
	[ bad_int     => qr/lease grant without a valid ID/ ],
	[ grpc_error  => qr/answered HTTP 503: etcdserver: no leader/ ],
	[ oversized   => qr/exceeds \d+ bytes/ ],
	[ silent      => qr/timed out/i ],
	[ txn_garbage => qr/failed txn without the existing key|malformed/ ],
	[ bad_base64  => qr/key or value is not base64/ ],
	[ foreign_key => qr/key outside the election prefix/ ],
	[ kvs_not_array => qr/kvs that are not an array/ ],
	[ record_garbage => qr/cluster record in etcd is unreadable \(it is not a JSON object\)/ ],
);
for my $case (@cases)
{
	my ($mode, $expected) = @$case;
	set_mode($mode);
	my $seen = '';
	my $deadline = time + 30;
	while (time < $deadline)
	{
		$seen = $node->safe_psql('postgres',
			"SELECT concat_ws(' / ', last_error, ineligible_reason) FROM leader_status()");
		last if $seen =~ $expected;
		select(undef, undef, undef, 0.05);
	}
	like($seen, $expected, "$mode: leader_status() says what was wrong");
	is($node->safe_psql('postgres', 'SELECT leader_is_primary()'),
		'f', "$mode: the node does not lead");
	isnt($node->safe_psql('postgres', 'SELECT role FROM leader_status()'),
		'leader', "$mode: role is not leader");
}

# A query of the queue fails cleanly, with a SQLSTATE, on a hostile answer.
set_mode('bad_base64');
my ($rc, $out, $err) = $node->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT * FROM leader_candidates()");
isnt($rc, 0, 'leader_candidates() fails on a hostile answer');
like($err, qr/08006: could not read the election queue from etcd/,
	'with SQLSTATE 08006 and a clear message');
like($err, qr/not base64/, 'and etcd\'s problem in the detail');

# Errors are logged once per change, not once per retry, even when etcd
# fails only late in the cycle (grant works, the campaign does not).
for my $case ([ grpc_error => qr/answered HTTP 503: etcdserver: no leader/ ],
	[ txn_garbage => qr/failed txn without the existing key/ ])
{
	my ($mode, $message) = @$case;
	set_mode($mode);
	my $before = () = slurp_file($node->logfile) =~ /$message/g;
	sleep 3;
	my $after = () = slurp_file($node->logfile) =~ /$message/g;
	cmp_ok($after - $before, '<=', 1,
		"$mode: logged at most once over 3 s of retries");
}
my $log = slurp_file($node->logfile);
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'the server is still up');
unlike($log, qr/terminated by signal|server process .* was terminated/,
	'no process crashed');

$node->stop('fast');
done_testing();
