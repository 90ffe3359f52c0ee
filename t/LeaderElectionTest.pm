
# Copyright: part of the leader_election extension's test suite.

=pod

=head1 NAME

LeaderElectionTest - PostgreSQL nodes running leader_election, and checks

=head1 SYNOPSIS

  use EtcdServer;
  use LeaderElectionTest;

  my $etcd = EtcdServer->new; $etcd->start;
  my $n1 = le_node('node1', $etcd, prefix => '/leader_election/t1', lease_ttl => 2);
  ok(le_wait_leader($n1), 'node1 leads');
  my $n2 = le_node('node2', $etcd, prefix => '/leader_election/t1', lease_ttl => 2);
  my $st = le_status($n1);          # hash of leader_status() columns
  my @q  = le_candidates($n1);      # list of hashes of leader_candidates()
  # any other wait: PostgreSQL::Test::Cluster's own poll (up to 180 s)
  ok($n2->poll_query_until('postgres',
      'SELECT queue_position FROM leader_status()', '1'), 'node2 is next');

  # a hand-over that must not wait for the old leader's lease to expire
  my $expiry = le_lease_expiry($etcd, le_status($n1)->{lease_id});
  $n1->safe_psql('postgres', 'SELECT leader_resign()');
  ok(le_wait_leader($n2), 'node2 leads');
  cmp_ok(time(), '<', $expiry, '... before node1\'s lease could expire');

  # the write fence
  le_bypass_psql($n2, 'CREATE TABLE t (id int)');   # on a follower, too
  my ($state, $err) = le_sqlstate($n2, 'INSERT INTO t VALUES (1)');  # '25006'
  ($state, $err) = le_sqlstate($n2, 'SELECT 1', user => 'app');     # as a role
  le_refused($n2, 'INSERT INTO t VALUES (1)', 'INSERT');  # 2 tests: 25006, message
  my $leader = le_wait_one_leader(30, $n1, $n2);
  kill 'STOP', le_worker_pid($n1);

  # a streaming-replication cluster: n1 primary, n2 and n3 standbys
  # (pg_basebackup), queued in that order
  my ($p, $s2, $s3) = le_replicated_cluster($etcd, n => 3,
      prefix => '/leader_election/t2', lease_ttl => 2);
  my $rw = le_rw_connstr($p, $s2, $s3);  # target_session_attrs=read-write
  my $rec = le_wait_cluster_record($etcd, '/leader_election/t2',
      node => 'n1', timeline => 1);     # <prefix>.cluster, decoded
  $p->stop('immediate');
  ok(le_rw_until($s2, $rw, "INSERT ... RETURNING "
      . "current_setting('leader_election.node_name')", 'n2'), 'n2 writes');
  $p->start;                             # a deposed primary
  le_rejoin($p, $s2, start => 1);        # scripts/rejoin-standby.sh
  is(le_holds(3 * le_grace(2), sub { ... '' while all is well }), '');

=cut

package LeaderElectionTest;

use strict;
use warnings;

use Carp;
use Exporter 'import';
use File::Basename qw(dirname);
use File::Spec;
use IPC::Run;
use JSON::PP;
use Time::HiRes qw(usleep time);

use PostgreSQL::Test::Cluster;
use TcpProxy;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(
  le_node le_wait_leader le_lease_expiry le_status le_candidates le_leaders
  le_candidate_names le_wait_one_leader le_postmaster_pid le_worker_pid le_sqlstate
  le_bypass_psql le_bg_query le_make_leader le_lead le_session
  le_leader_and_follower le_refused
  le_replicated_cluster le_rw_connstr le_psql_connstr le_rw_until
  le_cluster_record le_wait_cluster_record le_system_identifier
  le_rejoin le_grace le_holds le_stream_via_proxy le_time_until le_signal_node
);

my @status_cols = qw(role node_name leader_name queue_position lease_id
  lease_ttl fencing_token valid_until endpoint last_error role_since phase);
# appended by issue 10 (streaming replication); read only where the installed
# leader_status() has them
my @status_cols_repl = qw(in_recovery timeline wal_lag_bytes eligible
  ineligible_reason);
my %status_has_repl;    # node name => 1 once seen to have them
my @cand_cols = qw(position node_name key create_revision lease_id is_self);

=pod

=head1 FUNCTIONS

=over

=item le_node($name, $etcd, %params) => PostgreSQL::Test::Cluster

Creates, configures and (unless start => 0) starts a node and creates the
extension in database postgres. Parameters:

  prefix     leader_election.prefix (default '/leader_election/tap')
  lease_ttl  leader_election.lease_ttl (default: not set, i.e. 10)
  node_name  leader_election.node_name (default: $name; undef: not set)
  endpoints  leader_election.endpoints (default: $etcd->url)
  preload    put leader_election in shared_preload_libraries (default 1)
  extra_conf more postgresql.conf lines
  start      start the node and CREATE EXTENSION (default 1)

=cut

sub le_node
{
	my ($name, $etcd, %p) = @_;
	$p{preload} = 1 unless defined $p{preload};
	$p{start}   = 1 unless defined $p{start};

	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;

	my $conf = "max_connections = 20\nshared_buffers = 16MB\n";
	if ($p{preload})
	{
		my $endpoints =
		  defined $p{endpoints} ? $p{endpoints} : $etcd->url;
		my $prefix = defined $p{prefix} ? $p{prefix} : '/leader_election/tap';
		# node_name => undef leaves it unset (default: '<hostname>:<port>')
		my $nn = exists $p{node_name} ? $p{node_name} : $name;
		$conf .= "shared_preload_libraries = 'leader_election'\n";
		$conf .= "leader_election.endpoints = '$endpoints'\n";
		$conf .= "leader_election.prefix = '$prefix'\n";
		$conf .= "leader_election.node_name = '$nn'\n" if defined $nn;
		$conf .= "leader_election.lease_ttl = $p{lease_ttl}\n"
		  if defined $p{lease_ttl};
	}
	$conf .= "$p{extra_conf}\n" if defined $p{extra_conf};
	$node->append_conf('postgresql.conf', $conf);

	if ($p{start})
	{
		$node->start;
		$node->safe_psql('postgres', 'CREATE EXTENSION leader_election');
	}
	return $node;
}

=pod

=item le_wait_leader($node) => bool

True as soon as leader_is_primary() is true on $node:
C<< $node->poll_query_until('postgres', 'SELECT leader_is_primary()') >>, which
polls every 100 ms and gives up (with a diagnostic) only after
$PostgreSQL::Test::Utils::timeout_default (180 s). To wait for any other
answer, call poll_query_until directly.

=cut

sub le_wait_leader
{
	my ($node, @rest) = @_;
	croak 'le_wait_leader takes no timeout: it waits as long as poll_query_until'
	  if @rest;
	return $node->poll_query_until('postgres', 'SELECT leader_is_primary()');
}

=pod

=item le_lease_expiry($etcd, $lease_id) => time

The earliest time (Time::HiRes::time) at which etcd could expire lease
$lease_id, by etcd's own countdown read now (C<etcdctl lease timetolive>; its
remaining seconds are rounded down, and renewals only push the expiry later).
A hand-over seen before this time did not wait for that lease to expire. Dies
if etcd does not know the lease.

=cut

sub le_lease_expiry
{
	my ($etcd, $lease_id) = @_;
	my $now = time();
	my $out = $etcd->etcdctl('lease', 'timetolive', sprintf('%x', $lease_id));
	croak "no remaining TTL for lease $lease_id in: $out"
	  unless $out =~ /remaining\((-?\d+)s\)/;
	croak "lease $lease_id has expired: $out" if $1 < 0;
	return $now + $1;
}

=pod

=item le_status($node) => hashref

leader_status() as a hash; NULL columns are undef. The columns of streaming
replication (in_recovery, timeline, wal_lag_bytes, eligible,
ineligible_reason) are read where the installed leader_status() has them;
booleans are 't'/'f'.

=cut

# Rows of "SELECT <cols> FROM $from" as hashrefs (NULL => undef).
sub _query_rows
{
	my ($node, $from, @cols) = @_;
	my $out = $node->safe_psql('postgres',
		"SELECT "
		  . join(", ", map { "coalesce(\"$_\"::text, '<NULL>')" } @cols)
		  . " FROM $from",
		extra_params => [ '-F', "\x1f" ]);
	my @rows;
	foreach my $line (split /\n/, $out)
	{
		my @vals = split /\x1f/, $line, -1;
		croak "unexpected output of $from: $line" unless @vals == @cols;
		my %h;
		@h{@cols} = map { $_ eq '<NULL>' ? undef : $_ } @vals;
		push @rows, \%h;
	}
	return @rows;
}

sub le_status
{
	my $node = shift;
	my @cols = @status_cols;
	my $name = $node->name;
	$status_has_repl{$name} ||= $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_proc WHERE proname = 'leader_status' "
		  . "AND 'eligible' = ANY (proargnames)") > 0 ? 1 : 0;
	push @cols, @status_cols_repl if $status_has_repl{$name};
	my @rows = _query_rows($node, 'leader_status()', @cols);
	croak 'leader_status() did not return one row' unless @rows == 1;
	# boolean::text is 'true'/'false'; psql shows 't'/'f'
	foreach my $b (qw(in_recovery eligible))
	{
		$rows[0]{$b} = $rows[0]{$b} eq 'true' ? 't' : 'f'
		  if defined $rows[0]{$b};
	}
	return $rows[0];
}

=pod

=item le_candidates($node) => list of hashrefs

leader_candidates() rows in position order (is_self as 't'/'f').

=cut

sub le_candidates
{
	my $node = shift;
	my @rows = _query_rows($node, 'leader_candidates() ORDER BY "position"',
		@cand_cols);
	# boolean::text is 'true'/'false'; psql shows 't'/'f'
	foreach my $h (@rows)
	{
		$h->{is_self} = $h->{is_self} eq 'true' ? 't' : 'f'
		  if defined $h->{is_self};
	}
	return @rows;
}

=pod

=item le_candidate_names($node) => "name0,name1,..."

node_name of leader_candidates() in queue order, comma-separated.

=cut

sub le_candidate_names
{
	my $node = shift;
	return join(',', map { $_->{node_name} } le_candidates($node));
}

=pod

=item le_leaders(@nodes) => list of nodes where leader_is_primary() is true

Nodes that are not running are skipped.

=cut

sub le_leaders
{
	my @nodes = @_;
	my @leaders;
	foreach my $n (@nodes)
	{
		my $out = '';
		# a node that is down: psql may exit before IPC::Run has written the
		# query, which croaks ("Broken pipe") instead of returning an error
		my $rc = eval {
			$n->psql('postgres', 'SELECT leader_is_primary()',
				stdout => \$out, timeout => 30);
		};
		push @leaders, $n if defined $rc && $rc == 0 && $out eq 't';
	}
	return @leaders;
}

=pod

=item le_wait_one_leader($timeout_s, @nodes) => node or undef

Polls le_leaders(@nodes) every 100 ms until exactly one node leads; returns
it, or undef (with a diagnostic) after $timeout_s seconds.

=cut

sub le_wait_one_leader
{
	my ($timeout, @nodes) = @_;
	my $deadline = time() + $timeout;
	my @leaders;
	while (1)
	{
		@leaders = le_leaders(@nodes);
		return $leaders[0] if @leaders == 1;
		last if time() > $deadline;
		usleep(100_000);
	}
	diag "le_wait_one_leader: "
	  . scalar(@leaders)
	  . " leaders after ${timeout}s: "
	  . join(',', map { $_->name } @leaders);
	return undef;
}

=pod

=item le_postmaster_pid($node) => pid

The pid of the node's postmaster: the first line of its postmaster.pid.

=cut

sub le_postmaster_pid
{
	my $node = shift;
	my $pidfile = $node->data_dir . '/postmaster.pid';
	open(my $fh, '<', $pidfile) or croak "cannot read $pidfile: $!";
	my $pid = <$fh>;
	close $fh;
	chomp $pid;
	return $pid;
}

=pod

=item le_worker_pid($node) => pid

The pid of the node's leader_election background worker (a child of its
postmaster titled "postgres: [cluster_name: ]leader_election worker"; it has no
database connection, so it is not in pg_stat_activity). Dies if there is none.

=cut

sub le_worker_pid
{
	my $node = shift;
	my $postmaster = le_postmaster_pid($node);
	foreach my $dir (glob('/proc/[0-9]*'))
	{
		my ($stat, $cmdline);
		next unless open(my $sf, '<', "$dir/stat");
		$stat = <$sf>;
		close $sf;
		# pid (comm) state ppid ...; comm may contain spaces and ')'
		next unless defined $stat && $stat =~ /^.*\)\s+\S+\s+(\d+)/s;
		next unless $1 == $postmaster;
		next unless open(my $cf, '<', "$dir/cmdline");
		$cmdline = <$cf> // '';
		close $cf;
		next unless $cmdline =~ /^postgres: (?:[^:]*: )?leader_election worker/;
		return (split m{/}, $dir)[-1];
	}
	croak "no leader_election worker below postmaster $postmaster of node "
	  . $node->name;
}

=pod

=item le_sqlstate($node, $sql, %params) => ($sqlstate, $stderr)

Runs $sql in database postgres with VERBOSITY verbose. Returns '00000' if it
succeeded, else the SQLSTATE of the first error, and psql's stderr (message,
DETAIL, HINT). With bypass => 1 the session sets
leader_election.fence_bypass first; replication => 'database' connects to a
walsender (which runs SQL in that mode); user => $role logs in as $role.

=cut

sub le_sqlstate
{
	my ($node, $sql, %p) = @_;
	my ($out, $err) = ('', '');
	my $script = "\\set VERBOSITY verbose\n";
	$script .= "SET leader_election.fence_bypass = on;\n" if $p{bypass};
	$script .= $sql;
	my $rc = $node->psql('postgres', $script,
		stdout => \$out, stderr => \$err, timeout => 60,
		on_error_stop => 1, replication => $p{replication},
		connstr => defined $p{user}
		? $node->connstr('postgres') . " user=$p{user}"
		: undef);
	return ('00000', $err) if $rc == 0;
	return ($1, $err) if $err =~ /ERROR:\s+([0-9A-Z]{5}):/;
	return ("rc $rc", $err);
}

=pod

=item le_refused($node, $sql, $what, %params) => ($sqlstate, $stderr)

le_sqlstate($node, $sql, %params), asserting (two tests, named after $what)
that it failed with SQLSTATE 25006 and the fence's message for $node:
C<cannot write on node "E<lt>nameE<gt>": it is not the leader>.

=cut

sub le_refused
{
	my ($node, $sql, $what, %p) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my ($state, $err) = le_sqlstate($node, $sql, %p);
	is($state, '25006', "$what: refused with SQLSTATE 25006") or diag $err;
	my $name = $node->name;
	like($err, qr/ERROR:  25006: cannot write on node "\Q$name\E": it is not the leader/,
		"$what: ... with the fence's message");
	return ($state, $err);
}

=pod

=item le_bypass_psql($node, $sql) => stdout

safe_psql in a session with leader_election.fence_bypass on: sets a node up
whether it leads or not.

=cut

sub le_bypass_psql
{
	my ($node, $sql) = @_;
	return $node->safe_psql('postgres',
		"SET leader_election.fence_bypass = on;\n$sql");
}

=pod

=item le_bg_query($bg, $sql) => ($stdout, $stderr)

Runs $sql in a BackgroundPsql session (started with on_error_stop => 0) and
returns its output and the stderr of this query only (BackgroundPsql keeps
stderr across queries). Quiet: BackgroundPsql's notes of every query and its
output are left out of the test log (tests that sample in a loop would fill
it).

=cut

sub le_bg_query
{
	my ($bg, $sql) = @_;
	$bg->{stderr} = '';
	no warnings 'redefine';
	local *PostgreSQL::Test::BackgroundPsql::note = sub { };
	my $out = $bg->query($sql);
	my $err = $bg->{stderr};
	$bg->{stderr} = '';
	return ($out, $err);
}

=pod

=item le_make_leader($want, @nodes) => bool

Makes $want the leader: the current leader among @nodes resigns (at most
four rounds) until $want leads and no other node does.

=cut

sub le_make_leader
{
	my ($want, @nodes) = @_;
	for my $round (1 .. 4)
	{
		my $current = le_wait_one_leader(30, @nodes);
		return 0 unless defined $current;
		last if $current == $want;
		$current->safe_psql('postgres', 'SELECT leader_resign()');
		$current->poll_query_until('postgres', 'SELECT leader_is_primary()', 'f');
	}
	return 0 unless le_wait_leader($want);
	foreach my $other (grep { $_ != $want } @nodes)
	{
		return 0
		  unless $other->safe_psql('postgres', 'SELECT leader_is_primary()') eq 'f';
	}
	return 1;
}

=pod

=item le_lead($want, @nodes)

le_make_leader as a test: ok() named "<node> leads".

=cut

sub le_lead
{
	my ($want, @nodes) = @_;
	ok(le_make_leader($want, @nodes), $want->name . ' leads');
	return;
}

=pod

=item le_session($node) => BackgroundPsql

A BackgroundPsql session (on_error_stop => 0) with VERBOSITY verbose, for
le_bg_query.

=cut

sub le_session
{
	my ($node) = @_;
	my $bg = $node->background_psql('postgres', on_error_stop => 0,
		timeout => 60);
	le_bg_query($bg, '\set VERBOSITY verbose');
	return $bg;
}

=pod

=item le_leader_and_follower($etcd, %params) => ($node1, $node2)

Starts node1 and waits until it leads, then node2 and waits until it
follows at position 1 (two assertions); %params go to le_node.

=cut

sub le_leader_and_follower
{
	my ($etcd, %p) = @_;
	my $n1 = le_node('node1', $etcd, %p);
	ok(le_wait_leader($n1), 'node1 leads');
	my $n2 = le_node('node2', $etcd, %p);
	ok( $n2->poll_query_until(
			'postgres', 'SELECT role, queue_position FROM leader_status()',
			'follower|1'),
		'node2 follows at position 1');
	return ($n1, $n2);
}

=pod

=item le_replicated_cluster($etcd, %params) => list of nodes

A streaming-replication cluster made as the README's recipe says
("Streaming replication"): the first node is initdb'ed as the primary, the
others are copied from it with pg_basebackup (-X stream) and started as
standbys (standby.signal). All nodes are allocated first, so every node's
primary_conninfo lists all nodes' hosts and ports, with
target_session_attrs=read-write and application_name=<its node name>. Every
node gets, besides the leader_election settings of le_node: wal_level =
replica, max_wal_senders = 10, wal_log_hints = on, wal_keep_size, hot_standby
= on, recovery_target_timeline = 'latest', wal_receiver_status_interval = 1s,
wal_retrieve_retry_interval = 1s. pg_basebackup copies postgresql.conf, so
the per-node settings (port, socket directory, node_name, primary_conninfo
and node_conf) are appended again after the copy: the last line of a setting
wins.

The primary is started, CREATE EXTENSION runs on it and it is waited for
until it leads; then each standby in turn is copied, started and waited for
until it streams (the primary's pg_stat_replication shows its
application_name streaming) and, with wait => 'queued', until it is queued at
the next position. Parameters:

  n          number of nodes (default 3), named n1..nN
  names      node names instead (array ref); the first is the primary
  prefix     leader_election.prefix (default '/leader_election/tap')
  lease_ttl  leader_election.lease_ttl (default: not set)
  endpoints  leader_election.endpoints (default: $etcd->url)
  extra_conf more postgresql.conf lines for every node
  node_conf  { name => more postgresql.conf lines for that node }
  observers  [ names ]: leader_election.candidate = off on these (never
             waited for in the queue)
  wait       'queued' (default), 'streaming' or 'none'

=cut

sub le_replicated_cluster
{
	my ($etcd, %p) = @_;
	my @names =
	  $p{names} ? @{ $p{names} } : map { "n$_" } 1 .. ($p{n} // 3);
	my $wait = $p{wait} // 'queued';
	croak "le_replicated_cluster: wait must be queued, streaming or none"
	  unless $wait =~ /^(queued|streaming|none)$/;
	my %observer = map { $_ => 1 } @{ $p{observers} || [] };
	my $endpoints = $p{endpoints} // $etcd->url;
	my $prefix    = $p{prefix}    // '/leader_election/tap';

	# all nodes first: every port is known before any primary_conninfo
	my @nodes = map { PostgreSQL::Test::Cluster->new($_) } @names;
	my $conninfo =
	    'host='
	  . join(',', map { $_->host } @nodes) . ' port='
	  . join(',', map { $_->port } @nodes)
	  . ' target_session_attrs=read-write connect_timeout=2';

	my $node_conf = sub {
		my ($node) = @_;
		my $name = $node->name;
		my $c = "\n# per-node settings (leader_election test: $name)\n";
		$c .= "port = " . $node->port . "\n";
		$c .= "leader_election.node_name = '$name'\n";
		$c .= "primary_conninfo = '$conninfo application_name=$name'\n";
		$c .= "leader_election.candidate = off\n" if $observer{$name};
		$c .= "$p{node_conf}{$name}\n"
		  if $p{node_conf} && defined $p{node_conf}{$name};
		return $c;
	};

	my $primary = $nodes[0];
	$primary->init(allows_streaming => 1);
	my $conf = "\n# leader_election: streaming replication recipe\n";
	$conf .= "max_connections = 20\nshared_buffers = 16MB\n";
	$conf .= "shared_preload_libraries = 'leader_election'\n";
	$conf .= "leader_election.endpoints = '$endpoints'\n";
	$conf .= "leader_election.prefix = '$prefix'\n";
	$conf .= "leader_election.lease_ttl = $p{lease_ttl}\n"
	  if defined $p{lease_ttl};
	$conf .= "wal_level = replica\n";
	$conf .= "max_wal_senders = 10\n";
	$conf .= "wal_log_hints = on\n";
	$conf .= "wal_keep_size = '256MB'\n";
	$conf .= "hot_standby = on\n";
	$conf .= "recovery_target_timeline = 'latest'\n";
	$conf .= "wal_receiver_status_interval = 1s\n";
	$conf .= "wal_retrieve_retry_interval = 1s\n";
	$conf .= "$p{extra_conf}\n" if defined $p{extra_conf};
	$primary->append_conf('postgresql.conf', $conf . $node_conf->($primary));
	$primary->start;
	$primary->safe_psql('postgres', 'CREATE EXTENSION leader_election');
	croak "le_replicated_cluster: " . $primary->name . " does not lead"
	  unless le_wait_leader($primary);
	$primary->backup('le_base');

	my $pos = 0;
	foreach my $standby (@nodes[ 1 .. $#nodes ])
	{
		my $name = $standby->name;
		# copies the backup, appends port and unix_socket_directories
		$standby->init_from_backup($primary, 'le_base');
		$standby->append_conf('postgresql.conf', $node_conf->($standby));
		$standby->set_standby_mode;
		$standby->start;
		next if $wait eq 'none';
		croak "le_replicated_cluster: $name does not stream from "
		  . $primary->name
		  unless $primary->poll_query_until('postgres',
			"SELECT count(*) FROM pg_stat_replication "
			  . "WHERE application_name = '$name' AND state = 'streaming'",
			'1');
		next if $wait ne 'queued' || $observer{$name};
		$pos++;
		croak "le_replicated_cluster: $name is not queued at position $pos"
		  unless $standby->poll_query_until('postgres',
			'SELECT queue_position FROM leader_status()', $pos);
	}
	return @nodes;
}

=pod

=item le_rw_connstr(@nodes) => connection string

A libpq connection string listing @nodes (in this order) that lands only on
a node that accepts writes: C<host=... port=... dbname=postgres
target_session_attrs=read-write connect_timeout=2>.

=cut

sub le_rw_connstr
{
	my @nodes = @_;
	return
	    'host='
	  . join(',', map { $_->host } @nodes) . ' port='
	  . join(',', map { $_->port } @nodes)
	  . ' dbname=postgres target_session_attrs=read-write connect_timeout=2';
}

=pod

=item le_psql_connstr($node, $connstr, $sql) => ($rc, $stdout, $stderr)

Runs $sql with $node's psql on connection string $connstr (ON_ERROR_STOP,
60 s bound); rc 0 if it succeeded, 2 if no connection was made.

=cut

sub le_psql_connstr
{
	my ($node, $connstr, $sql) = @_;
	my ($out, $err) = ('', '');
	my $rc = $node->psql('postgres', $sql,
		connstr => $connstr, stdout => \$out, stderr => \$err,
		on_error_stop => 1, timeout => 60);
	return ($rc, $out, $err);
}

=pod

=item le_rw_until($node, $connstr, $sql, $expected, $timeout_s = 120) => bool

Runs $sql through $connstr (le_psql_connstr, a new session each time) every
100 ms until it succeeds with output $expected; false (with a diagnostic of
the last try) after $timeout_s seconds. Give it a statement that may be
repeated (e.g. an INSERT with a generated key ... RETURNING
current_setting('leader_election.node_name')).

=cut

sub le_rw_until
{
	my ($node, $connstr, $sql, $expected, $timeout) = @_;
	$timeout //= 120;
	my $deadline = time() + $timeout;
	my ($rc, $out, $err);
	while (1)
	{
		($rc, $out, $err) = le_psql_connstr($node, $connstr, $sql);
		return 1 if $rc == 0 && $out eq $expected;
		last if time() > $deadline;
		usleep(100_000);
	}
	diag "le_rw_until: no '$expected' after ${timeout}s from: $sql\n"
	  . "last try: rc $rc, stdout '$out', stderr '$err'";
	return 0;
}

=pod

=item le_cluster_record($etcd, $prefix) => hashref or undef

The cluster record, key C<< <prefix>.cluster >>, decoded from JSON (keys
system_identifier, timeline, node; the raw value under _raw); undef if there
is no such key.

=cut

sub le_cluster_record
{
	my ($etcd, $prefix) = @_;
	my $out = $etcd->etcdctl('get', "$prefix.cluster", '--print-value-only');
	chomp $out;
	return undef if $out eq '';
	my $rec = eval { JSON::PP->new->decode($out) };
	croak "the cluster record $prefix.cluster is not JSON: $out"
	  unless ref $rec eq 'HASH';
	$rec->{_raw} = $out;
	return $rec;
}

=pod

=item le_wait_cluster_record($etcd, $prefix, %want) => hashref or undef

Polls le_cluster_record every 100 ms (up to 120 s) until it has every
key => value of %want (compared as strings); returns it, or undef with a
diagnostic of the last value seen.

=cut

sub le_wait_cluster_record
{
	my ($etcd, $prefix, %want) = @_;
	my $deadline = time() + 120;
	my $rec;
	while (1)
	{
		$rec = le_cluster_record($etcd, $prefix);
		return $rec
		  if $rec
		  && !grep { !defined $rec->{$_} || "$rec->{$_}" ne "$want{$_}" }
		  keys %want;
		last if time() > $deadline;
		usleep(100_000);
	}
	diag "le_wait_cluster_record: wanted "
	  . join(', ', map { "$_=$want{$_}" } sort keys %want)
	  . "; last value: "
	  . ($rec ? $rec->{_raw} : '(no key)');
	return undef;
}

=pod

=item le_system_identifier($node) => string

The node's database system identifier (pg_control_system()).

=cut

sub le_system_identifier
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		'SELECT system_identifier FROM pg_control_system()');
}

=pod

=item le_rejoin($node, $source, %params) => ($rc, $stdout, $stderr)

Rejoins $node as a standby of $source with scripts/rejoin-standby.sh
(DATA_DIR and $source's connection string to database postgres, or
connstr => a connection string of your choice): the script stops $node if it
runs, rewinds it, keeps its configuration files and creates standby.signal.
The script's output goes to the test's log. With start => 1 the node is
started afterwards ($node->start, so that the test framework knows it runs).

=cut

sub le_rejoin
{
	my ($node, $source, %p) = @_;
	my $script =
	  File::Spec->catfile(dirname(__FILE__), '..', 'scripts', 'rejoin-standby.sh');
	my $connstr = $p{connstr} // $source->connstr('postgres');
	my ($out, $err) = ('', '');
	my @cmd = ('bash', $script, $node->data_dir, $connstr);
	print "# running: @cmd\n";
	IPC::Run::run(\@cmd, '<', \undef, '>', \$out, '2>', \$err,
		IPC::Run::timeout(180));
	my $rc = $? >> 8;
	print "# rejoin-standby.sh exited with $rc\n--- stdout\n$out--- stderr\n$err---\n";
	# the script stopped it (if it ran): forget its pid
	$node->_update_pid(-1);
	$node->start if $p{start} && $rc == 0;
	return ($rc, $out, $err);
}

=pod

=item le_grace($lease_ttl) => seconds

How long a queued standby that lost its stream keeps its place:
lease_ttl + max(2 s, lease_ttl / 2).

=cut

sub le_grace
{
	my ($ttl) = @_;
	return $ttl + ($ttl / 2 > 2 ? $ttl / 2 : 2);
}

=pod

=item le_holds($seconds, $check) => '' or a failure

Calls $check->() every 500 ms for $seconds seconds; $check returns '' (or
undef) while all is well, else a text saying what went wrong, which le_holds
returns at once. For "this never happens for a while":
C<is(le_holds(12, sub { ... }), '', 'n3 never promotes')>.

=cut

sub le_holds
{
	my ($seconds, $check) = @_;
	my $deadline = time() + $seconds;
	while (1)
	{
		my $bad = $check->();
		return $bad if defined $bad && $bad ne '';
		last if time() >= $deadline;
		usleep(500_000);
	}
	return '';
}

=pod

=item le_stream_via_proxy($primary, $standby) => ($proxy, $streaming)

Starts a TcpProxy (t/TcpProxy.pm) in front of $primary's port and makes
$standby stream through it: its primary_conninfo names the proxy on
127.0.0.1 (with its node name as application_name), and a reload restarts
its WAL receiver. Returns the proxy, and whether the primary then showed the
standby streaming from 127.0.0.1 (poll_query_until's bound). $primary must
listen on 127.0.0.1 (listen_addresses).

=cut

sub le_stream_via_proxy
{
	my ($primary, $standby) = @_;
	my $name  = $standby->name;
	my $proxy = TcpProxy->new(
		target_port => $primary->port,
		name        => $name . '_to_' . $primary->name);
	$proxy->start;
	$standby->append_conf('postgresql.conf',
		    "primary_conninfo = 'host=127.0.0.1 port="
		  . $proxy->port
		  . " application_name=$name connect_timeout=2'\n");
	$standby->safe_psql('postgres', 'SELECT pg_reload_conf()');
	my $streaming = $primary->poll_query_until('postgres',
		"SELECT count(*) FROM pg_stat_replication WHERE application_name = '$name' "
		  . "AND state = 'streaming' AND client_addr = '127.0.0.1'", '1');
	return ($proxy, $streaming);
}

=pod

=item le_signal_node($node, $signal) => count

Sends $signal to $node's postmaster and every child of it: C<STOP> freezes
the whole node (the postmaster first), C<CONT> resumes it (the postmaster
last), C<KILL> is a power loss.  Returns how many processes were signalled.

=cut

sub le_signal_node
{
	my ($node, $signal) = @_;
	my $pm = le_postmaster_pid($node);
	my @kids;
	foreach my $dir (glob('/proc/[0-9]*'))
	{
		next unless open(my $sf, '<', "$dir/stat");
		my $stat = <$sf>;
		close $sf;
		next unless defined $stat && $stat =~ /^.*\)\s+\S+\s+(\d+)/s && $1 == $pm;
		push @kids, (split m{/}, $dir)[-1];
	}
	my @order = $signal eq 'CONT' ? (@kids, $pm) : ($pm, @kids);
	kill $signal, @order;
	return scalar(@order);
}

=pod

=item le_time_until($timeout_s, $cond)

Polls $cond every 20 ms for up to $timeout_s seconds; returns the seconds it
took to become true, or undef. For tests that measure how long a fault took
to heal.

=cut

sub le_time_until
{
	my ($timeout, $cond) = @_;
	my $t0 = time();
	while (time() - $t0 < $timeout)
	{
		return time() - $t0 if $cond->();
		usleep(20_000);
	}
	return undef;
}

=pod

=back

=cut

1;
