
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

=cut

package LeaderElectionTest;

use strict;
use warnings;

use Carp;
use Exporter 'import';
use Time::HiRes qw(usleep time);

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(
  le_node le_wait_leader le_lease_expiry le_status le_candidates le_leaders
  le_candidate_names le_wait_one_leader le_postmaster_pid le_worker_pid le_sqlstate
  le_bypass_psql le_bg_query le_make_leader le_lead le_session
  le_leader_and_follower le_refused
);

my @status_cols = qw(role node_name leader_name queue_position lease_id
  lease_ttl fencing_token valid_until endpoint last_error role_since phase);
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

leader_status() as a hash; NULL columns are undef.

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
	my @rows = _query_rows($node, 'leader_status()', @status_cols);
	croak 'leader_status() did not return one row' unless @rows == 1;
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
		my $rc = $n->psql('postgres', 'SELECT leader_is_primary()',
			stdout => \$out, timeout => 30);
		push @leaders, $n if $rc == 0 && $out eq 't';
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

=back

=cut

1;
