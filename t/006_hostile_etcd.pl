
# Hostile input: a fake etcd (the only test that does not use a real one)
# answers with garbage, errors, oversized or inconsistent bodies, endless or
# cut-off streams, redirects, or not at all.  The node must stay up, never
# lead on an answer it cannot read, keep its memory bounded (every answer is
# capped at ETCD_MAX_ANSWER, 2 MiB), and say in last_error what was wrong.

use strict;
use warnings;

use IO::Socket::INET;
use MIME::Base64 qw(encode_base64);
use POSIX ();
use Time::HiRes qw(usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use FindBin;
use lib $FindBin::RealBin;
use LeaderElectionTest;

my $port = PostgreSQL::Test::Cluster::get_free_port();
my $tempdir = PostgreSQL::Test::Utils::tempdir();
my $mode_file = "$tempdir/mode";
# every request the fake server got, one path a line
my $request_log = "$tempdir/requests";

sub mode_now
{
	open my $fh, '<', $mode_file or die $!;
	my $mode = <$fh>;
	close $fh;
	return $mode;
}

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
# only reads (the queue, the cluster record, the leadership term and the
# leader key) is told from one that writes (a campaign, a claim of the term)
# by its body, so that a mode can spoil either.
my $empty_range = '{"response_range":{"header":{"revision":"10"}}}';
my %good = (
	'/v3/lease/grant'     => '{"header":{"revision":"5"},"ID":"4242","TTL":"5"}',
	'/v3/lease/keepalive' => '{"result":{"header":{"revision":"5"},"ID":"4242","TTL":"5"}}',
	'/v3/lease/revoke'    => '{"header":{"revision":"6"}}',
	'/v3/kv/txn'          => '{"header":{"revision":"10"},"succeeded":true}',
	'/v3/kv/txn:read' => '{"header":{"revision":"10"},"succeeded":true,"responses":['
	  . "$empty_range,$empty_range,$empty_range,$empty_range]}",
	'/v3/kv/range' => '{"header":{"revision":"10"}}',
	'/v3/watch'    => undef,    # stays open, silent
);

# A read of the election whose queue part is the range answer $range.
sub read_answer
{
	my ($range) = @_;
	return '{"header":{"revision":"10"},"succeeded":true,"responses":['
	  . "{\"response_range\":$range},$empty_range,$empty_range,$empty_range]}";
}

# mode => { path it spoils => [HTTP status, body, extra header line] }; body
# undef: never answer; a code ref instead of the list writes the whole answer
# itself (streams, see endless()).
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
		  . '"value":"bm90IGpzb24=","create_revision":"3","mod_revision":"3"}]}},' . $empty_range
		  . ",$empty_range]}" ] },
);
foreach my $mode (keys %range_modes)
{
	$modes{$mode} = {
		'/v3/kv/range'    => [ 200, $range_modes{$mode} ],
		'/v3/kv/txn:read' => [ 200, read_answer($range_modes{$mode}) ],
	};
}

# HTTP errors, as etcd's gateway sends them (its error body: error, message,
# gRPC code) and as a proxy in front of it might (no body at all).
my %http_errors = (
	401 => [ 16, 'etcdserver: invalid auth token' ],
	403 => [ 7,  'etcdserver: permission denied' ],
	404 => [ 5,  'etcdserver: requested lease not found' ],
	429 => [ 8,  'etcdserver: too many requests' ],
	500 => [ 13, 'etcdserver: corrupt cluster' ],
	503 => [ 14, 'etcdserver: leader changed' ],);
my @http_cases;
foreach my $status (sort keys %http_errors)
{
	my ($code, $message) = @{ $http_errors{$status} };
	$modes{"http_$status"} = { '/v3/lease/grant' =>
		  [ $status, "{\"error\":\"$message\",\"message\":\"$message\",\"code\":$code}" ] };
	$modes{"http_${status}_bare"} = { '/v3/lease/grant' => [ $status, '' ] };
	push @http_cases, [ "http_$status" => qr/answered HTTP $status: \Q$message\E/ ],
	  [ "http_${status}_bare" => qr/answered HTTP $status: \(no message\)/ ];
}

# Lease grants no lease can come of, and answers of the wrong shape.
$modes{grant_ttl_zero} = { '/v3/lease/grant' => [ 200, '{"header":{"revision":"5"},"ID":"4242","TTL":"0"}' ] };
$modes{grant_no_ttl} = { '/v3/lease/grant' => [ 200, '{"header":{"revision":"5"},"ID":"4242"}' ] };
$modes{grant_negative_id} = { '/v3/lease/grant' => [ 200, '{"header":{"revision":"5"},"ID":"-4242","TTL":"5"}' ] };
$modes{grant_array} = { '/v3/lease/grant' => [ 200, '[{"ID":"4242","TTL":"5"}]' ] };
$modes{grant_ttl_object} = { '/v3/lease/grant' => [ 200, '{"ID":"4242","TTL":{"seconds":5}}' ] };
# a good grant with something after it: not an answer etcd sent
$modes{grant_trailing_data} = { '/v3/lease/grant' =>
	  [ 200, '{"header":{"revision":"5"},"ID":"4242","TTL":"5"}<html>proxy error</html>' ] };
$modes{header_revision_object} = { '/v3/kv/txn:read' => [ 200,
	'{"header":{"revision":{"value":10}},"succeeded":true,"responses":[]}' ] };

# A redirect (to this same server, so that following it would show): never
# followed, since the node would send its lease and key to whoever the
# Location names.
$modes{redirect} = { map { $_ => [ 307, '', "Location: http://127.0.0.1:$port/redirected$_" ] }
	  qw(/v3/lease/grant /v3/kv/range) };

# A queue in which the node (lease 4242 = 0x1092, key created at revision
# 10) is second: it watches the key ahead of it, and the leadership term.
sub kv
{
	my ($key, $value, $revision, $lease) = @_;
	return sprintf('{"key":"%s","value":"%s","create_revision":"%d","mod_revision":"%d","lease":"%d"}',
		encode_base64($key, ''), encode_base64($value, ''), $revision, $revision, $lease);
}
my $queue_range = '{"header":{"revision":"10"},"kvs":['
  . kv('/leader_election/tap/3e7', 'elder', 5, 999) . ','
  . kv('/leader_election/tap/1092', 'hostile', 10, 4242) . ']}';
my %queued = (
	'/v3/kv/range'    => [ 200, $queue_range ],
	'/v3/kv/txn:read' => [ 200, read_answer($queue_range) ],);

# An answer whose headers go out at once and whose body ($head, then $block
# again and again) ends only when the client hangs up, the mode changes, or
# after 100000 blocks.  $length: the Content-Length it claims, if any.
sub endless
{
	my ($head, $block, $length) = @_;
	return sub {
		my ($client, $mode) = @_;
		my $headers = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
		  . (defined $length ? "Content-Length: $length\r\n" : '')
		  . "Connection: close\r\n\r\n";
		return unless write_all($client, $headers . $head);
		for my $i (1 .. 100_000)
		{
			return unless write_all($client, $block);
			return if $i % 16 == 0 && mode_now() ne $mode;
		}
	};
}

# An answer that ends after $part, short of the Content-Length it claims.
sub cut_off
{
	my ($part) = @_;
	return sub {
		my ($client) = @_;
		write_all($client, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
			  . "Content-Length: 4096\r\nConnection: close\r\n\r\n$part");
	};
}
my $created = '{"result":{"header":{"revision":"10"},"created":true}}' . "\n";

my $block = 64 * 1024;
# what etcd sends while nothing happens (a progress notification), 40 bytes
my $progress = '{"result":{"header":{"revision":"10"}}}' . "\n";
%modes = (
	%modes,
	queued => {%queued},
	reset  => { '/v3/lease/grant' => [ 418,
		'{"error":"between two cases","message":"between two cases","code":2}' ] },
	# renewals come once the node holds a key: in the queue
	keepalive_no_result => { %queued, '/v3/lease/keepalive' => [ 200, '{"result":[]}' ] },
	# a unary answer of 300 MB, to the worker's lease grant
	huge => { '/v3/lease/grant' =>
		  endless('{"header":{"revision":"5"},"x":"', 'a' x $block, 300 * 1024 * 1024) },
	# and to a backend's leader_candidates()
	huge_range => { '/v3/kv/range' =>
		  endless('{"header":{"revision":"10"},"kvs":[{"key":"', 'A' x $block, 300 * 1024 * 1024) },
	# watches that never end: one line without end; lines without end
	watch_endless_line => { %queued, '/v3/watch' =>
		  endless($created . '{"result":{"header":{"revision":"10"},"x":"', 'a' x $block) },
	watch_endless_lines => { %queued, '/v3/watch' =>
		  endless($created, $progress x 1600) },
	# a watch that confirms, then starts an event it never finishes
	watch_cut_off   => { %queued, '/v3/watch' => cut_off($created
		  . '{"result":{"header":{"revision":"11"},"events":[{"type":"DELETE","kv":{"key":"L2xl') },
	# a grant cut off after its ID
	grant_cut_off   => { '/v3/lease/grant' => cut_off('{"header":{"revision":"5"},"ID":"4242"') },
	watch_not_json  => { %queued, '/v3/watch' => [ 200, $created . "<html>proxy error</html>\n" ] },
	# the deletion of the key ahead, with something after it on its line
	watch_trailing_data => { %queued, '/v3/watch' => [ 200, $created
		  . '{"result":{"header":{"revision":"11"},"events":[{"type":"DELETE","kv":{"key":"'
		  . encode_base64('/leader_election/tap/3e7', '')
		  . '","mod_revision":"11"}}]}} <html>proxy error</html>' . "\n" ] },
	# the same with a NUL byte before the junk
	watch_nul_byte => { %queued, '/v3/watch' => [ 200, $created
		  . '{"result":{"header":{"revision":"11"},"events":[{"type":"DELETE","kv":{"key":"'
		  . encode_base64('/leader_election/tap/3e7', '')
		  . '","mod_revision":"11"}}]}}' . "\0<html>proxy error</html>\n" ] },
	watch_error     => { %queued, '/v3/watch' => [ 200, $created
		  . '{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader","http_status":"Service Unavailable"}}'
		  . "\n" ] },
	watch_http_503  => { %queued, '/v3/watch' => [ 503,
		'{"error":"etcdserver: no leader","message":"etcdserver: no leader","code":14}' ] },);

sub write_all
{
	my ($client, $data) = @_;
	my $at = 0;
	while ($at < length $data)
	{
		my $n = syswrite($client, $data, length($data) - $at, $at);
		return 0 unless $n;    # the client hung up
		$at += $n;
	}
	return 1;
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
	open my $log, '>>', $request_log or die $!;
	syswrite($log, "$path\n");
	close $log;

	my $mode = mode_now();
	my ($status, $body, $headers) = (200, $good{$path}, '');
	my $answer = $modes{$mode} && $modes{$mode}{$path};
	return $answer->($client, $mode) if ref $answer eq 'CODE';
	($status, $body, $headers) = @$answer if $answer;
	if (!defined $body)
	{
		# silent, until the client closes, the test's END or a new mode (so
		# that a watch made in one mode does not outlive it)
		usleep(100_000) while mode_now() eq $mode;
		return;
	}
	$headers = $headers ? "$headers\r\n" : '';
	write_all($client, "HTTP/1.1 $status X\r\nContent-Type: application/json\r\n$headers"
		  . "Content-Length: "
		  . length($body)
		  . "\r\nConnection: close\r\n\r\n$body");
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
			# a client that hangs up mid-answer fails a write, not the process
			$SIG{PIPE} = 'IGNORE';
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

# A process's memory, in kB: VmRSS now, or VmHWM, the most it ever had.
sub vm_kb
{
	my ($pid, $field) = @_;
	my $status = slurp_file("/proc/$pid/status");
	return $status =~ /^$field:\s+(\d+) kB/m ? $1 : die "no $field for pid $pid";
}

sub requested
{
	my ($path) = @_;
	return scalar grep { $_ eq $path } split /\n/, slurp_file($request_log);
}

my $worker = le_worker_pid($node);
my $worker_hwm = vm_kb($worker, 'VmHWM');
note "worker $worker: VmHWM $worker_hwm kB at the start";

# What leader_status() says is wrong, once it matches $expected (or after 30 s).
sub wait_for_error
{
	my ($expected) = @_;
	my $seen = '';
	my $deadline = time + 30;
	while (time < $deadline)
	{
		$seen = $node->safe_psql('postgres',
			"SELECT concat_ws(' / ', last_error, ineligible_reason) FROM leader_status()");
		last if $seen =~ $expected;
		usleep(50_000);
	}
	return $seen;
}

# Each mode: last_error (or, for the cluster record, ineligible_reason) names
# the problem, the node does not lead, and the server keeps serving queries.
# If what it shows already matches (several cases expect the same words), a
# mode of its own comes first, so that what is seen is not left over.
sub check_mode
{
	my ($mode, $expected) = @_;
	my $seen = $node->safe_psql('postgres',
		"SELECT concat_ws(' / ', last_error, ineligible_reason) FROM leader_status()");
	if ($seen =~ $expected)
	{
		set_mode('reset');
		$seen = wait_for_error(qr/answered HTTP 418: between two cases/);
		die "the reset between two cases did not show: $seen"
		  unless $seen =~ /HTTP 418/;
	}
	set_mode($mode);
	$seen = wait_for_error($expected);
	like($seen, $expected, "$mode: leader_status() says what was wrong");
	is($node->safe_psql('postgres', 'SELECT leader_is_primary()'),
		'f', "$mode: the node does not lead");
	isnt($node->safe_psql('postgres', 'SELECT role FROM leader_status()'),
		'leader', "$mode: role is not leader");
	return;
}

my @cases = (
	[ not_json    => qr/not a JSON object/ ],
	[ no_id       => qr/lease grant without a valid ID/ ],
	[ bad_int     => qr/lease grant without a valid ID/ ],
	[ grpc_error  => qr/answered HTTP 503: etcdserver: no leader/ ],
	[ oversized   => qr/exceeds 2097152 bytes/ ],
	[ silent      => qr/timed out/i ],
	[ txn_garbage => qr/failed txn without the existing key|malformed/ ],
	[ bad_base64  => qr/key or value is not base64/ ],
	[ foreign_key => qr/key outside the election prefix/ ],
	[ kvs_not_array => qr/kvs that are not an array/ ],
	[ record_garbage => qr/cluster record in etcd is unreadable \(it is not a JSON object\)/ ],
	# a grant of no use: TTL 0 or none (etcd itself never grants less than
	# its minimum TTL), a negative lease ID
	[ grant_ttl_zero    => qr/lease grant without a valid TTL/ ],
	[ grant_no_ttl      => qr/lease grant without a valid TTL/ ],
	[ grant_negative_id => qr/lease grant without a valid ID/ ],
	# valid JSON of the wrong shape or type
	[ grant_array      => qr/not a JSON object/ ],
	[ grant_ttl_object => qr/lease grant without a valid TTL/ ],
	[ grant_trailing_data => qr/sent an answer that is not a JSON object/ ],
	[ grant_cut_off => qr/answer from etcd at \S+ broke off: transfer closed with \d+ bytes remaining/ ],
	[ keepalive_no_result    => qr/keepalive without a result/ ],
	[ header_revision_object => qr/txn without a valid header revision/ ],
	@http_cases,
	[ redirect => qr/answered HTTP 307: \(no message\)/ ],
	# 300 MB announced and sent until the worker hangs up at the cap
	[ huge => qr/answer from etcd at \S+ exceeds 2097152 bytes/ ],);
check_mode(@$_) for @cases;

is(requested('/redirected/v3/lease/grant'), 0, 'redirect: the Location was not followed');
is(requested('/redirected/v3/kv/range'), 0, 'redirect: not even by a range read');
cmp_ok(requested('/v3/lease/grant'), '>', 0, 'the fake server logs requests');

# The watch: the node is queued second, behind a key that stays, so it
# watches that key (and the term) and never leads.  Each hostile stream
# breaks the watch; the node says why and watches again.
set_mode('queued');
ok( $node->poll_query_until(
		'postgres', "SELECT queue_position = 1 AND role = 'follower' FROM leader_status()"),
	'queued: the node is second in line');
my $watches = requested('/v3/watch');
cmp_ok($watches, '>', 0, 'queued: and watches');

my @watch_cases = (
	[ watch_not_json => qr/sent a watch message that is not JSON/ ],
	[ watch_trailing_data => qr/sent a watch message that is not JSON/ ],
	[ watch_error    => qr/ended the watch with an error: etcdserver: no leader/ ],
	[ watch_nul_byte => qr/sent a watch message that is not JSON/ ],
	[ watch_http_503 => qr/answered HTTP 503: etcdserver: no leader/ ],
	# short of its Content-Length, in the middle of a DELETE event
	[ watch_cut_off  => qr/answer from etcd at \S+ broke off: transfer closed with \d+ bytes remaining/ ],
	# one message that never ends: the cap ends the watch
	[ watch_endless_line => qr/answer from etcd at \S+ exceeds 2097152 bytes/ ],);
foreach my $case (@watch_cases)
{
	my $before = requested('/v3/watch');
	check_mode(@$case);
	cmp_ok(requested('/v3/watch'), '>', $before, "$case->[0]: the node watched");
}
is($node->safe_psql('postgres', 'SELECT count(*) FROM leader_candidates()'),
	'2', 'the cut-off DELETE did not count: the key ahead is still there');

# Messages without end: each one is read and dropped, so memory stays put
# and the node stays in line, with its lease renewed, for as long as they come.
set_mode('watch_endless_lines');
my $lines_from = requested('/v3/watch');
sleep 5;
my $lines_watches = requested('/v3/watch') - $lines_from;
cmp_ok($lines_watches, '>', 0, 'watch_endless_lines: the node watched');
my $rss = vm_kb($worker, 'VmRSS');
note "worker $worker: VmRSS $rss kB after 5 s of endless watch messages ($lines_watches watches)";
is($node->safe_psql('postgres',
		"SELECT queue_position = 1 AND coalesce(last_error, '') NOT LIKE '%lease%' FROM leader_status()"),
	't', 'watch_endless_lines: still second in line, its lease renewed');
is($node->safe_psql('postgres', 'SELECT leader_is_primary()'),
	'f', 'watch_endless_lines: the node does not lead');
# Over loopback the messages come faster than the worker reads them: then
# the unread ones reach the cap and end the watch, which is all it may say.
like($node->safe_psql('postgres', "SELECT coalesce(last_error, '') FROM leader_status()"),
	qr/^(|answer from etcd at \S+ exceeds 2097152 bytes)$/,
	'watch_endless_lines: last_error is empty or names the cap');

# Every answer is capped: 300 MB announced, or a stream without end, leave
# the worker's memory where it was (64 MB: generous; the cap is 2 MiB).
my $hwm = vm_kb($worker, 'VmHWM');
note "worker $worker: VmHWM $hwm kB after the huge and endless answers";
cmp_ok($hwm - $worker_hwm, '<', 64 * 1024,
	'the worker\'s peak memory grew by less than 64 MB');
is(le_worker_pid($node), $worker, 'the worker was never restarted');

# A query of the queue fails cleanly, with a SQLSTATE, on a hostile answer.
set_mode('bad_base64');
my ($rc, $out, $err) = $node->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT * FROM leader_candidates()");
isnt($rc, 0, 'leader_candidates() fails on a hostile answer');
like($err, qr/08006: could not read the election queue from etcd/,
	'with SQLSTATE 08006 and a clear message');
like($err, qr/not base64/, 'and etcd\'s problem in the detail');

# A backend's leader_candidates() is capped the same way: 300 MB announced
# cost it no more than the cap (its peak memory, read by itself).
set_mode('huge_range');
my $hwm_sql = "SELECT (regexp_match(pg_read_file('/proc/self/status'), 'VmHWM:\\s+(\\d+)'))[1]";
($rc, $out, $err) = $node->psql('postgres', qq{
	$hwm_sql;
	DO \$\$
	DECLARE
		detail text;
	BEGIN
		PERFORM * FROM leader_candidates();
	EXCEPTION WHEN OTHERS THEN
		GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
		RAISE NOTICE 'caught %: % (%)', SQLSTATE, SQLERRM, detail;
	END \$\$;
	$hwm_sql;});
is($rc, 0, 'huge_range: the session went on');
# (on a loaded machine the fake etcd may not send 2 MB within the 300 ms
# request_timeout: then the timeout ends it first, which is as bounded)
like($err, qr/caught 08006: could not read the election queue from etcd \(answer from etcd at \S+ (exceeds 2097152 bytes|broke off: Operation timed out after \d+ milliseconds)/,
	'huge_range: leader_candidates() fails with 08006, naming the cap (or the timeout)');
my ($backend_before, $backend_after) = split /\n/, $out;
note "backend: VmHWM $backend_before kB before, $backend_after kB after leader_candidates()";
cmp_ok($backend_after - $backend_before, '<', 64 * 1024,
	'huge_range: the backend\'s peak memory grew by less than 64 MB');

set_mode('redirect');
($rc, $out, $err) = $node->psql('postgres', 'SELECT * FROM leader_candidates()');
like($err, qr/could not read the election queue from etcd.*\n.*answered HTTP 307/,
	'redirect: leader_candidates() fails, saying HTTP 307');
is(requested('/redirected/v3/kv/range'), 0, 'redirect: and does not follow it');

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
# A watch that breaks each time it is made (the node queued behind a key
# that stays): retried with backoff and logged once, although the read
# before each new watch succeeds.
{
	set_mode('watch_not_json');
	my $message = qr/WARNING:  leader_election: etcd at \S+ sent a watch message that is not JSON/;
	$node->poll_query_until('postgres',
		"SELECT last_error LIKE '%watch message that is not JSON' FROM leader_status()");
	my $before = () = slurp_file($node->logfile) =~ /$message/g;
	my $watches = requested('/v3/watch');
	sleep 3;
	my $after = () = slurp_file($node->logfile) =~ /$message/g;
	$watches = requested('/v3/watch') - $watches;
	note "watch_not_json: $watches watches and " . ($after - $before) . ' warnings in 3 s';
	cmp_ok($after - $before, '<=', 1, 'watch_not_json: logged at most once over 3 s of retries');
	cmp_ok($watches, '<=', 10, 'watch_not_json: watched again with backoff (at most 10 times in 3 s)');
}

my $log = slurp_file($node->logfile);
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'the server is still up');
unlike($log, qr/terminated by signal|server process .* was terminated|PANIC/,
	'no process crashed');
unlike($log, qr/is now the leader/, 'the node never led');

$node->stop('fast');
done_testing();
