# HAProxy in front of a streaming-replication cluster (issue 17): the HTTP
# endpoint (leader_election.http_listen) as HAProxy's health check, the way a
# Patroni user routes writes. Three nodes (n1 primary, n2, n3 standbys),
# lease_ttl = 2, synchronous_mode = on (so that a crash loses no
# acknowledged commit, and "every acknowledged row is on the new leader"
# holds for the crash too), each node with its own endpoint port. A real
# HAProxy, started by the test as the user the test runs as, checks
# GET /primary on every node every 100 ms (fall 2, rise 1,
# on-marked-down shutdown-sessions) and forwards one TCP port to the node
# that answers 200. A client (t/AckedWriter.pm: plain libpq through
# HAProxy's port, no target_session_attrs) commits single rows in a loop and
# reconnects after any error; every row records, by DEFAULTs evaluated on
# the node that ran the INSERT, the node's role and fencing token
# (leader_status()), its port (inet_server_port()) and the server's clock.
#  - before anything: HAProxy marks only n1 UP, and the client commits on
#    n1 through it;
#  - leader_resign() on the leader, a fast stop and a crash (-m immediate)
#    of the leader, in turn: another node leads, HAProxy marks exactly that
#    node UP, the client commits on it through HAProxy, and every
#    acknowledged row is on it; the old leader is rejoined as a standby
#    (scripts/rejoin-standby.sh) before the next event;
#  - at the end, on the last leader: every acknowledged row was inserted by
#    a node whose role was 'leader', on that node's port; in id order the
#    acknowledged rows come from n1, then from each new leader in turn, with
#    fencing tokens that only grow (no acknowledged write by a node outside
#    its leadership); no row of the table (acknowledged or not) was
#    inserted by a node that did not lead. Fence refusals (25006) seen by the
#    client while HAProxy still routed to the old leader are counted, not
#    failures.
# The write outage through HAProxy for each event (from the trigger to the
# first acknowledged commit on the new leader) is printed, not asserted
# beyond a generous 60 s; bench/haproxy.sh measures it properly. So are, from
# HAProxy's log, the client sessions HAProxy kept in its connection retries
# to a leader whose port had closed before it was marked DOWN (they cost the
# client up to its connect_timeout, 2 s, after a fast stop or a crash).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use IO::Socket::UNIX;
use IPC::Run;
use Socket qw(SOCK_STREAM);

# t/ holds the helper modules (PROVE_FLAGS in the Makefile is reset by PGXS)
use FindBin;
use lib $FindBin::RealBin;

use AckedWriter;
use EtcdServer;
use HttpEndpoint;
use LeaderElectionTest;

my $haproxy_bin = (grep { -x } ('/usr/sbin/haproxy', map { "$_/haproxy" } split /:/, $ENV{PATH}))[0];
plan skip_all => 'haproxy is not installed' unless $haproxy_bin;

my $prefix = '/leader_election/t062';
my $ttl    = 2;

my $etcd = EtcdServer->new('etcd');
$etcd->start;

# Each node listens on 127.0.0.1 (HAProxy forwards TCP) besides its unix
# socket, and answers health checks on its own endpoint port. These go to
# node_conf, which is appended after pg_basebackup's copy of postgresql.conf.
my %http = map { $_ => le_http_port() } qw(n1 n2 n3);
my @nodes = le_replicated_cluster(
	$etcd,
	n          => 3,
	prefix     => $prefix,
	lease_ttl  => $ttl,
	extra_conf => "leader_election.synchronous_mode = on\n"
	  # as in t/054: the synchronous set, not the lag rule, decides who stands
	  . "leader_election.max_lag_on_failover = '64MB'\n"
	  # pg_rewind copies all of pg_wal: keep it small
	  . "wal_keep_size = '64MB'\nmin_wal_size = '32MB'\nmax_wal_size = '32MB'",
	node_conf => {
		map {
			$_ => "listen_addresses = '127.0.0.1'\n"
			  . "leader_election.http_listen = '127.0.0.1:$http{$_}'"
		} keys %http
	});
my ($n1, $n2, $n3) = @nodes;
my %node = map { $_->name => $_ } @nodes;
my %down;    # node name => 1 while stopped or crashed

ok(le_http_wait($http{$_}, '/health', 200, 30), "$_: the endpoint answers /health")
  foreach qw(n1 n2 n3);

#
# HAProxy, with the configuration a Patroni user has (port of each node's
# endpoint as the check port).
#
my $hp_dir  = PostgreSQL::Test::Utils::tempdir_short();
my $hp_sock = "$hp_dir/haproxy.sock";
my $hp_port = PostgreSQL::Test::Cluster::get_free_port();
my $hp_cfg  = "$hp_dir/haproxy.cfg";
my $hp_log  = "$PostgreSQL::Test::Utils::log_path/062_haproxy.log";
my $servers = join('',
	map { sprintf("    server %s 127.0.0.1:%d check port %d\n", $_->name, $_->port, $http{ $_->name }) }
	  @nodes);
# Not part of the routing: the stats socket lets the test see which servers
# HAProxy marks UP; the log (every session with its timers and retries, and
# every server state change, with the time) goes to the test's log directory.
my $config = <<"EOF";
global
    maxconn 100
    stats socket $hp_sock mode 600 level admin
    log stderr format iso local0
defaults
    mode tcp
    log global
    option tcplog
    timeout connect 2s
    timeout client 30m
    timeout server 30m
    timeout check 1s
listen primary
    bind 127.0.0.1:$hp_port
    option httpchk GET /primary
    http-check expect status 200
    retries 0
    default-server inter 100ms fall 2 rise 1 on-marked-down shutdown-sessions
$servers
EOF
open(my $cfh, '>', $hp_cfg) or die "$hp_cfg: $!";
print $cfh $config;
close $cfh;
note "HAProxy configuration:\n$config";

my ($out, $err) = ('', '');
IPC::Run::run([ $haproxy_bin, '-c', '-f', $hp_cfg ], '<', \undef, '>', \$out, '2>', \$err);
is($? >> 8, 0, 'haproxy -c: the configuration is valid') or diag "$out$err";
unlike("$out$err", qr/WARNING|ALERT/, '... without warnings');

# -db: in the foreground, its messages ("Server primary/n1 is DOWN ...") to
# the log; killed in END if the test dies before its end
my $haproxy = IPC::Run::start([ $haproxy_bin, '-f', $hp_cfg, '-db' ],
	'<', \undef, '>>', $hp_log, '2>>', $hp_log);

END
{
	my $exit_code = $?;
	if ($haproxy)
	{
		eval { $haproxy->kill_kill(grace => 5) };
		undef $haproxy;
	}
	$? = $exit_code;
}

# One command on HAProxy's stats socket; undef if it does not answer.
sub haproxy_cmd
{
	my ($cmd) = @_;
	my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM, Peer => $hp_sock)
	  or return undef;
	print $s "$cmd\n";
	local $/;
	my $answer = <$s>;
	close $s;
	return $answer;
}

# The servers of "listen primary" that HAProxy marks UP, "n1,n3" ('' for
# none; undef if HAProxy does not answer). "UP 1/2" (one failed check of
# fall 2) still counts as UP: HAProxy still routes to it.
sub haproxy_up
{
	my $csv = haproxy_cmd('show stat') // return undef;
	my @lines = split /\n/, $csv;
	my $head = shift @lines // return undef;
	$head =~ s/^# //;
	my @cols = split /,/, $head;
	my @up;
	foreach my $line (@lines)
	{
		my %r;
		@r{@cols} = split /,/, $line, -1;
		next unless ($r{pxname} // '') eq 'primary';
		next if $r{svname} =~ /^(FRONTEND|BACKEND)$/;
		push @up, $r{svname} if ($r{status} // '') =~ /^UP/;
	}
	return join(',', sort @up);
}

# The client sessions HAProxy holds now (scur of the frontend); 0 if it does
# not answer.
sub haproxy_sessions
{
	my $csv = haproxy_cmd('show stat') // return 0;
	foreach (split /\n/, $csv)
	{
		my @f = split /,/;
		return $f[4] if $f[0] eq 'primary' && $f[1] eq 'FRONTEND';
	}
	return 0;
}

# Polls haproxy_up until it is $want; returns the last value seen.
sub haproxy_up_until
{
	my ($want, $timeout) = @_;
	my $deadline = time() + ($timeout // 30);
	my $got;
	while (1)
	{
		$got = haproxy_up() // '(no answer)';
		return $got if $got eq $want || time() > $deadline;
		usleep(50_000);
	}
}

is(haproxy_up_until('n1'), 'n1', 'HAProxy marks only n1 (the leader) UP');

#
# The table. DEFAULTs, evaluated on the node that runs the INSERT, record
# what that node was: its role and fencing token, its port, its clock.
#
$n1->safe_psql(
	'postgres', q{
	CREATE FUNCTION writer_term() RETURNS text LANGUAGE sql VOLATILE
	  AS $$SELECT role || ' ' || coalesce(fencing_token::text, '-') FROM leader_status()$$;
	CREATE TABLE t (id bigint PRIMARY KEY, node text NOT NULL,
	  term text NOT NULL DEFAULT writer_term(),
	  port integer NOT NULL DEFAULT inet_server_port(),
	  at double precision NOT NULL DEFAULT extract(epoch FROM clock_timestamp()))});

# plain libpq through HAProxy: whatever node HAProxy picks
my $writer = AckedWriter->start(
	connstr => "host=127.0.0.1 port=$hp_port dbname=postgres connect_timeout=2");

# Waits until every running node is settled: one leader, every other node
# queued behind it, a synchronous standby recorded (automatic_failover, so
# that a crash has a successor), HAProxy marks only the leader UP, and the
# client committed on the leader through HAProxy. Returns the leader; one
# test.
sub settle
{
	my ($what) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my @up = grep { !$down{ $_->name } } @nodes;
	my $leader = le_wait_one_leader(90, @up);
	my $ok = defined $leader;
	if ($ok)
	{
		my $lname = $leader->name;
		foreach my $s (grep { $_ != $leader } @up)
		{
			$ok &&= $s->poll_query_until('postgres',
				'SELECT queue_position IS NOT NULL, leader_name FROM leader_status()',
				"t|$lname");
		}
		$ok &&= $leader->poll_query_until('postgres',
			'SELECT coalesce(cardinality(synchronous_standbys), 0) > 0, automatic_failover '
			  . 'FROM leader_status()',
			't|t');
		my $hp = haproxy_up_until($lname);
		$ok &&= $hp eq $lname;
		diag "$what: HAProxy marks UP: '$hp'" unless $hp eq $lname;
		$ok &&= defined $writer->wait_acked_on($leader, 20);
	}
	ok($ok, "$what: settled" . ($ok ? ' (' . $leader->name . ' leads)' : ''));
	return $leader;
}

my $leader = settle('start');
is($leader && $leader->name, 'n1', 'n1 leads, and the client commits on it through HAProxy');

# The acknowledged ids and the node that acknowledged each, in id order
# (the ack file of AckedWriter, its {ackfile}: "<id> <node>[ warned]" per
# line; warned ones are left out).
sub acked_ids
{
	my @acked;
	open(my $fh, '<', $writer->{ackfile}) or return ();
	while (my $line = <$fh>)
	{
		push @acked, [ $1, $2 ] if $line =~ /^(\d+) (\S+)\n\z/;
	}
	close $fh;
	return @acked;
}

# The client's errors so far, by kind (first words of the message).
sub client_errors
{
	my %kinds;
	foreach (grep { /^(id \d+|connect): / } $writer->log_lines)
	{
		my $kind = $_;
		$kind =~ s/^id \d+: //;
		# libpq names the address (HAProxy's) before the reason
		$kind =~ s/connection to server at \S+, port \d+ failed: //;
		$kind = 'fence refusal (25006)' if $kind =~ /not the leader/;
		$kinds{ substr($kind, 0, 70) }++;
	}
	return %kinds;
}

my @events;    # [ what, old, new, outage s, gap s ]
my @leaders = ('n1');    # every node that led, in turn

# One event: $trigger makes the leader $old step down; another node must
# lead, HAProxy must route to it, the client must commit on it, and every
# acknowledged id must be on it. Then $old is rejoined (unless $rejoin is
# 0). Returns the new leader.
sub event
{
	my ($what, $old, $trigger, $rejoin) = @_;
	my $oname = $old->name;
	my @survivors = grep { $_ != $old && !$down{ $_->name } } @nodes;
	my ($last_id) = (acked_ids())[-1];
	my $t0 = time();
	$trigger->();
	my $new = le_wait_one_leader(90, @survivors);
	ok(defined $new, "$what: a new leader after $oname stepped down") or return undef;
	my $nname = $new->name;
	push @leaders, $nname;
	is(haproxy_up_until($nname), $nname, "$what: HAProxy marks only $nname UP");
	ok(defined $writer->wait_acked_on($new, 20, 60),
		"$what: the client commits on $nname through HAProxy");
	$new->poll_query_until('postgres', 'SELECT pg_is_in_recovery()', 'f');
	my ($nacked, @lost) = $writer->lost_on($new);
	is(scalar(@lost), 0, "$what: every acknowledged id ($nacked) is on $nname")
	  or diag 'lost ids (first 20): ' . join(',', @lost[ 0 .. ($#lost < 19 ? $#lost : 19) ]);

	# the outage, by the server's clock of the rows (the same clock as
	# time() here): from the trigger to the first acknowledged commit on
	# $new, and from the last one on $old to it
	my @after = grep { $_->[0] > ($last_id ? $last_id->[0] : 0) } acked_ids();
	my ($first_new) = grep { $_->[1] eq $nname } @after;
	my @on_old = grep { $_->[1] eq $oname } acked_ids();
	my ($outage, $gap);
	if ($first_new && @on_old)
	{
		my ($at_new, $at_old) = split /\|/,
		  $new->safe_psql('postgres',
			    "SELECT (SELECT at FROM t WHERE id = $first_new->[0]), "
			  . "(SELECT at FROM t WHERE id = $on_old[-1][0])");
		$outage = $at_new - $t0;
		$gap    = $at_new - $at_old;
	}
	ok(defined $outage && $outage < 60,
		"$what: writes resumed on $nname through HAProxy within 60 s");
	note sprintf(
		'%s: %s -> %s; write outage through HAProxy: %.3f s from the trigger to the '
		  . 'first acknowledged commit on %s, %.3f s from the last one on %s',
		$what, $oname, $nname, $outage // -1, $nname, $gap // -1, $oname);
	push @events, [ $what, $oname, $nname, $outage, $gap ];

	if ($rejoin)
	{
		my ($rc, $rout, $rerr) = le_rejoin($old, $new, start => 1);
		is($rc, 0, "$what: $oname rejoined as a standby of $nname")
		  or diag "stdout: $rout\nstderr: $rerr";
		delete $down{$oname};
	}
	return $new;
}

$leader = event(
	'leader_resign()', $leader,
	sub {
		is($leader->safe_psql('postgres', 'SELECT leader_resign()'),
			't', 'leader_resign() on ' . $leader->name . ' returns true');
	},
	1);
$leader = settle('after leader_resign()') if $leader;

if ($leader)
{
	my $old = $leader;
	$leader = event(
		'fast stop', $old,
		sub { $old->stop('fast'); $down{ $old->name } = 1; }, 1);
	$leader = settle('after the fast stop') if $leader;
}

if ($leader)
{
	my $old = $leader;
	$leader = event(
		'crash', $old,
		sub { $old->stop('immediate'); $down{ $old->name } = 1; }, 0);
}

#
# Every acknowledged write landed on the node that led at that moment.
#
SKIP:
{
	skip 'no leader after the events', 7 unless $leader;
	$writer->stop;
	my %row = map { my @f = split /\|/; ($f[0] => [ @f[ 1 .. 3 ] ]) } split /\n/,
	  $leader->safe_psql('postgres', 'SELECT id, node, term, port FROM t ORDER BY id');
	my @acked = acked_ids();
	my (@missing, @not_leader, @wrong_port, @wrong_node);
	my (@runs, $last_token, @token_down);
	foreach my $a (@acked)
	{
		my ($id, $name) = @$a;
		my $r = $row{$id};
		unless ($r)
		{
			push @missing, $id;
			next;
		}
		my ($node, $term, $port) = @$r;
		push @wrong_node, $id if $node ne $name;
		push @wrong_port, $id if $port != $node{$node}->port;
		unless ($term =~ /^leader (\d+)$/)
		{
			push @not_leader, "$id ($node: $term)";
			next;
		}
		push @token_down, $id if defined $last_token && $1 < $last_token;
		$last_token = $1;
		push @runs, $node unless @runs && $runs[-1] eq $node;
	}
	cmp_ok(scalar(@acked), '>', 100, 'the client had over 100 commits acknowledged: '
		  . scalar(@acked));
	is("@missing", '', 'every acknowledged row is on the last leader ' . $leader->name);
	is("@not_leader", '', 'every acknowledged row was inserted by a node whose role was leader');
	is("@wrong_node@wrong_port", '',
		"... the node that acknowledged it, on that node's port (HAProxy forwarded there)");
	is(join(',', @runs), join(',', @leaders),
		'in id order, the acknowledged rows come from each leader in turn: ' . join(',', @leaders));
	is("@token_down", '', '... with fencing tokens that only grow');
	my $others = $leader->safe_psql('postgres',
		"SELECT count(*) FROM t WHERE term NOT LIKE 'leader %'");
	is($others, '0', 'no row in the table was inserted by a node that did not lead');
	my $warned = $writer->read_acked->{warned};
	note "commits acknowledged with a warning (not counted as acknowledged): $warned";
}

my %errors = client_errors();
note 'errors seen by the client: '
  . (join('; ', map { "$errors{$_} x $_" } sort keys %errors) || 'none');
note 'write outage through HAProxy (check inter 100 ms, fall 2, rise 1), per event:';
note sprintf('  %-16s %s -> %s: %.3f s from the trigger, %.3f s from the last commit on %s',
	$_->[0], $_->[1], $_->[2], $_->[3] // -1, $_->[4] // -1, $_->[1])
  foreach @events;
is(scalar(@events), 3, 'three events measured');

# HAProxy's own log (option tcplog): a client session dispatched to a server
# whose port had just closed, before HAProxy marked it DOWN, waits in
# HAProxy's connection retries (retries 3, each after a turn-around of
# min(timeout connect, 1 s)); on-marked-down shutdown-sessions does not end
# it, and without option redispatch it is not moved to the new leader: the
# client waits until its connect_timeout (2 s) ends it. Noted, as it adds to
# the outage of a fast stop or a crash.
# Such a session is logged when it ends: the client has stopped, so wait
# until HAProxy holds no client session.
$writer->stop;
my $deadline = time() + 10;
usleep(100_000) while haproxy_sessions() && time() < $deadline;
my @retried;
foreach (split /\n/, slurp_file($hp_log))
{
	# ... primary primary/<server> Tw/Tc/Tt bytes state actconn/feconn/beconn/srv_conn/retries ...
	push @retried, "$1: $2 ms, $3, $4 retries"
	  if m{ primary primary/(\S+) -?\d+/-?\d+/(\d+) \d+ (\S\S) \d+/\d+/\d+/\d+/([1-9]\d*) };
}
note 'client sessions HAProxy retried on a stopped server (server: duration, termination state, '
  . 'retries): ' . (join('; ', @retried) || 'none');

$writer->stop;
$haproxy->kill_kill(grace => 5);
undef $haproxy;
$_->stop foreach grep { !$down{ $_->name } } @nodes;
$etcd->stop;

done_testing();
