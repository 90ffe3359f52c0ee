
# Clients and standbys find the leader (issue 9), with three nodes, a real
# etcd and two libpq clients (psql and DBD::Pg):
#  - a multi-host connection string with target_session_attrs=read-write
#    reaches the leader and writes, whatever the order of the hosts; a NEW
#    connection with the same string reaches the new leader after
#    leader_resign(), after a graceful stop and after a crash of the leader;
#  - target_session_attrs=read-only lands on a follower (prefer-standby looks
#    only at in_hot_standby, which the fence does not change: a README limit);
#  - SHOW transaction_read_only / default_transaction_read_only on a new
#    connection: on on each follower, off on the leader;
#  - an open session follows its node: a session opened on a follower writes
#    once its node leads, without reconnecting, and its
#    default_transaction_read_only turns off; on the resigned leader it turns
#    on; the server reports both changes (ParameterStatus, seen in DBD::Pg's
#    libpq protocol trace);
#  - SET default_transaction_read_only = off on a follower is accepted but
#    writes stay refused (25006) and other sessions still say on;
#  - physical replication: pg_basebackup with a multi-host string and
#    target_session_attrs=read-write copies the leader (same system
#    identifier), not a follower.
#
# lease_ttl = 2 on all nodes, so the crashed leader's lease expires quickly.
# Every wait is a poll with a generous bound; nothing here asserts timing.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use IPC::Run;
use DBI;
use DBD::Pg;

# t/ holds the helper modules (PROVE_FLAGS in the Makefile is reset by PGXS)
use FindBin;
use lib $FindBin::RealBin;

use EtcdServer;
use LeaderElectionTest;

my $prefix = '/leader_election/t019';

my $etcd = EtcdServer->new('etcd');
$etcd->start;

my %conf = (
	prefix     => $prefix,
	lease_ttl  => 2,
	# walsenders for pg_basebackup (initdb's pg_hba.conf already lets local
	# replication connections in)
	extra_conf => "wal_level = replica\nmax_wal_senders = 4");
my $n1 = le_node('node1', $etcd, %conf);
ok(le_wait_leader($n1), 'node1 leads');
my $n2 = le_node('node2', $etcd, %conf);
ok( $n2->poll_query_until(
		'postgres', 'SELECT role, queue_position FROM leader_status()',
		'follower|1'),
	'node2 follows at position 1');
my $n3 = le_node('node3', $etcd, %conf);
ok( $n3->poll_query_until(
		'postgres', 'SELECT role, queue_position FROM leader_status()',
		'follower|2'),
	'node3 follows at position 2');
my @nodes = ($n1, $n2, $n3);
my %by_name = map { $_->name => $_ } @nodes;

# each node is its own cluster: create the table everywhere
le_bypass_psql($_, 'CREATE TABLE t (id int, node text)') foreach @nodes;

# Multi-host connection strings, built from each node's socket directory and
# port, in two orders: whichever node leads, one of them lists it after a
# follower, so a client that cannot tell the leader would land elsewhere.
sub multi
{
	my @n = @_;
	return
	    'host='
	  . join(',', map { $_->host } @n) . ' port='
	  . join(',', map { $_->port } @n)
	  . ' dbname=postgres';
}
my %strings = (
	'node3,node2,node1' => multi($n3, $n2, $n1),
	'node1,node2,node3' => multi($n1, $n2, $n3));

# psql on a connection string: ($rc, $stdout, $stderr); rc 2 if no connection
sub via
{
	my ($connstr, $sql) = @_;
	my ($out, $err) = ('', '');
	my $rc = $n1->psql('postgres', $sql,
		connstr => $connstr, stdout => \$out, stderr => \$err,
		on_error_stop => 1, timeout => 60);
	return ($rc, $out, $err);
}

# the node a new session with $connstr lands on, or "error: ..."
sub lands_on
{
	my ($connstr) = @_;
	my ($rc, $out, $err) =
	  via($connstr, "SELECT current_setting('leader_election.node_name')");
	return $rc == 0 ? $out : "error: $err";
}

# A new read-write session per try with $connstr until one lands on $want
# and its INSERT commits there (up to 60 s). Returns the node_name of the
# successful INSERT, or what the last try saw.
my $next_id = 0;
sub rw_write_until
{
	my ($connstr, $want) = @_;
	my $deadline = time() + 60;
	my $last;
	while (1)
	{
		my $id = ++$next_id;
		my ($rc, $out, $err) = via(
			"$connstr target_session_attrs=read-write",
			"INSERT INTO t VALUES ($id, current_setting('leader_election.node_name')) RETURNING node"
		);
		$last = $rc == 0 ? $out : "error: $err";
		if ($rc == 0 && $out eq $want)
		{
			# the row is in the leader's own table
			my $there = $by_name{$want}
			  ->safe_psql('postgres', "SELECT node FROM t WHERE id = $id");
			return $there eq $want ? $want : "row $id not found on $want";
		}
		last if time() > $deadline;
		usleep(200_000);
	}
	return $last;
}

# DBD::Pg on a connection string (undef and a diagnostic if no connection)
sub dbd_connect
{
	my ($connstr) = @_;
	(my $dsn = $connstr) =~ s/ /;/g;
	my $dbh = DBI->connect("dbi:Pg:$dsn", '', '',
		{ AutoCommit => 1, RaiseError => 0, PrintError => 0 });
	diag "DBD::Pg cannot connect with $connstr: $DBI::errstr" unless $dbh;
	return $dbh;
}

# A new DBD::Pg read-write session with $connstr: its node (by the port
# libpq chose and by node_name) and whether an INSERT there commits.
sub dbd_rw_check
{
	my ($connstr, $want, $what) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my $dbh = dbd_connect("$connstr target_session_attrs=read-write");
	ok($dbh, "DBD::Pg: $what: read-write connection made");
	SKIP:
	{
		skip 'no DBD::Pg connection', 3 unless $dbh;
		is($dbh->{pg_port}, $by_name{$want}->port,
			"DBD::Pg: $what: libpq chose the port of $want");
		my ($name) = $dbh->selectrow_array(
			"SELECT current_setting('leader_election.node_name')");
		is($name, $want, "DBD::Pg: $what: the session runs on $want");
		my $id = ++$next_id;
		my $rows = $dbh->do(
			"INSERT INTO t VALUES ($id, current_setting('leader_election.node_name'))");
		is($rows, 1, "DBD::Pg: $what: INSERT commits")
		  or diag $dbh->errstr;
		$dbh->disconnect;
	}
}

# SHOW $guc on a new session on each running node: on on followers, off on
# the leader
sub show_per_node
{
	my ($leader, @running) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	foreach my $n (@running)
	{
		my $want = $n == $leader ? 'off' : 'on';
		my $role = $n == $leader ? 'the leader' : 'a follower';
		foreach my $guc (qw(transaction_read_only default_transaction_read_only))
		{
			is($n->safe_psql('postgres', "SHOW $guc"),
				$want, "new session on " . $n->name . " ($role): $guc = $want");
		}
	}
}

#
# 1. read-write through a multi-host string reaches the leader (node1)
#
foreach my $order (sort keys %strings)
{
	is(lands_on("$strings{$order} target_session_attrs=read-write"),
		'node1', "psql read-write ($order) lands on the leader node1");
	is(rw_write_until($strings{$order}, 'node1'),
		'node1', "psql read-write ($order) writes on node1");
	dbd_rw_check($strings{$order}, 'node1', "read-write ($order)");
}

#
# 3. read-only lands on a follower; prefer-standby cannot see the fence
#
foreach my $order (sort keys %strings)
{
	my $got = lands_on("$strings{$order} target_session_attrs=read-only");
	like($got, qr/^node[23]$/,
		"read-only ($order) lands on a follower, not the leader node1")
	  or diag $got;
}
{
	# libpq decides prefer-standby (and primary, standby) by in_hot_standby
	# only; with no hot standby listed it takes the first host that answers.
	# The leader is listed first here.
	my $got = lands_on(
		"$strings{'node1,node2,node3'} target_session_attrs=prefer-standby");
	# (README, "Connecting to the leader", limits: use read-only instead)
	is($got, 'node1',
		'prefer-standby with no hot standby listed takes the first host');
}

#
# 4. what a new session sees (the way pgjdbc asks)
#
show_per_node($n1, @nodes);

#
# 8. physical replication: pg_basebackup with read-write copies the leader
#
my %sysid =
  map { $_->name => $_->safe_psql('postgres',
		'SELECT system_identifier FROM pg_control_system()') } @nodes;
is(scalar(keys %{ { reverse %sysid } }), 3,
	'the three nodes have distinct system identifiers');
{
	my $tmp = PostgreSQL::Test::Utils::tempdir;
	my $i   = 0;
	foreach my $order (sort keys %strings)
	{
		my $dir = "$tmp/base" . ++$i;
		my ($out, $err) = ('', '');
		my $ok = IPC::Run::run(
			[
				'pg_basebackup', '-D', $dir, '-X', 'none', '-c', 'fast',
				'--no-sync', '--no-manifest', '-d',
				"$strings{$order} target_session_attrs=read-write"
			],
			'>', \$out, '2>', \$err,
			IPC::Run::timeout(120));
		ok($ok, "pg_basebackup read-write ($order) succeeds") or diag $err;
		my ($cd) = run_command([ 'pg_controldata', $dir ]);
		my ($id) = $cd =~ /^Database system identifier:\s+(\d+)/m;
		my %from = reverse %sysid;
		is($from{ $id // '' } // "unknown ($cd)", 'node1',
			"pg_basebackup read-write ($order) copied the leader node1");
	}
}

#
# 6. SET default_transaction_read_only = off on a follower opens no way in
#
{
	my $bg = $n3->background_psql('postgres', on_error_stop => 0, timeout => 60);
	le_bg_query($bg, '\set VERBOSITY verbose');
	my ($out, $err) = le_bg_query($bg, 'SET default_transaction_read_only = off');
	is($err, '', 'follower node3: SET default_transaction_read_only = off is accepted');
	($out, $err) = le_bg_query($bg, "INSERT INTO t VALUES (0, 'set off')");
	like($err, qr/ERROR:  25006:/, '... but an INSERT still fails with 25006');
	($out, $err) = le_bg_query($bg, "BEGIN READ WRITE;\nINSERT INTO t VALUES (0, 'begin rw');\nCOMMIT;");
	like($err, qr/ERROR:  25006:/, '... and in BEGIN READ WRITE too');
	is($n3->safe_psql('postgres', 'SHOW default_transaction_read_only'),
		'on', '... another session on node3 still says on');
	$bg->quit;
}

#
# 5 and 7. open sessions follow their node. node2 (next in line) becomes the
# leader when node1 resigns.
#
my $bg_f = $n2->background_psql('postgres', on_error_stop => 0, timeout => 60);
my $bg_l = $n1->background_psql('postgres', on_error_stop => 0, timeout => 60);
le_bg_query($_, '\set VERBOSITY verbose') foreach ($bg_f, $bg_l);
is((le_bg_query($bg_f, 'SHOW default_transaction_read_only'))[0],
	'on', 'session on follower node2: default_transaction_read_only = on');
is((le_bg_query($bg_l, 'SHOW default_transaction_read_only'))[0],
	'off', 'session on leader node1: default_transaction_read_only = off');
like((le_bg_query($bg_f, "INSERT INTO t VALUES (0, 'early')"))[1],
	qr/ERROR:  25006:/, 'session on node2 cannot write while node2 follows');

# DBD::Pg sessions on both nodes, tracing libpq's protocol messages from now
my $tmp = PostgreSQL::Test::Utils::tempdir;
my %trace;
foreach my $n ($n1, $n2)
{
	my $dbh = dbd_connect(multi($n));
	my $file = "$tmp/trace_" . $n->name;
	open(my $fh, '>', $file) or die "cannot write $file: $!";
	$dbh->pg_server_trace($fh) if $dbh;
	$trace{ $n->name } = { dbh => $dbh, fh => $fh, file => $file };
}

is($n1->safe_psql('postgres', 'SELECT leader_resign()'), 't', 'node1 resigns');
ok(le_wait_leader($n2), 'node2 leads');

# 5: the session opened on node2 while it followed
my ($out, $err) = le_bg_query($bg_f,
	"INSERT INTO t VALUES (1000, current_setting('leader_election.node_name')) RETURNING node");
is($out, 'node2', 'the session opened on node2 as a follower writes now, without reconnecting')
  or diag $err;
is((le_bg_query($bg_f, 'SHOW default_transaction_read_only'))[0],
	'off', '... and its default_transaction_read_only is off');
is((le_bg_query($bg_l, 'SHOW default_transaction_read_only'))[0],
	'on', 'the session on the resigned node1: default_transaction_read_only = on');
like((le_bg_query($bg_l, "INSERT INTO t VALUES (0, 'resigned')"))[1],
	qr/ERROR:  25006:/, '... and it cannot write');
$bg_f->quit;
$bg_l->quit;

# 7: the server reported the changes to the open DBD::Pg sessions
foreach my $name (qw(node1 node2))
{
	my $t    = $trace{$name};
	my $want = $name eq 'node2' ? 'off' : 'on';
	my $dbh  = $t->{dbh};
  SKIP:
	{
		skip "no DBD::Pg session on $name", 2 unless $dbh;
		my ($v) = $dbh->selectrow_array('SHOW default_transaction_read_only');
		is($v, $want, "DBD::Pg session on $name: default_transaction_read_only = $want");
		$dbh->pg_server_untrace;
		close $t->{fh};
		my $log = slurp_file($t->{file});
		my @reported = $log =~
		  /\bParameterStatus\s+"default_transaction_read_only"\s+"(\w+)"/g;
		is($reported[-1] // 'nothing', $want,
			"the server reported default_transaction_read_only = $want to the open session on $name"
		) or diag "trace:\n$log";
		$dbh->disconnect;
	}
}

#
# 2. a new connection follows the leadership: resign (node1 -> node2)
#
foreach my $order (sort keys %strings)
{
	is(rw_write_until($strings{$order}, 'node2'),
		'node2', "after resign: read-write ($order) writes on the new leader node2");
}
dbd_rw_check($strings{'node3,node2,node1'}, 'node2', 'after resign');
show_per_node($n2, @nodes);

# queue: node2, node3, node1

#
# 2. graceful stop of the leader (node2 -> node3)
#
$n2->stop('fast');
ok(le_wait_leader($n3), 'node3 leads after node2 stopped (fast)');
foreach my $order (sort keys %strings)
{
	is(rw_write_until($strings{$order}, 'node3'),
		'node3', "after stop fast: read-write ($order) writes on the new leader node3");
}
dbd_rw_check($strings{'node1,node2,node3'}, 'node3', 'after stop fast');
$n2->start;
ok( $n2->poll_query_until(
		'postgres', 'SELECT role, leader_name FROM leader_status()',
		'follower|node3'),
	'restarted node2 follows node3');

# queue: node3, node1, node2

#
# 2. crash of the leader (node3): its lease expires after 2 s
#
$n3->stop('immediate');
my $new = le_wait_one_leader(120, $n1, $n2);
ok(defined $new, 'one of node1, node2 leads after node3 crashed');
$new //= $n1;
my $nn = $new->name;
foreach my $order (sort keys %strings)
{
	is(rw_write_until($strings{$order}, $nn),
		$nn, "after crash: read-write ($order) writes on the new leader $nn");
}
dbd_rw_check($strings{'node3,node2,node1'}, $nn, 'after crash');
$n3->start;
ok( $n3->poll_query_until(
		'postgres', 'SELECT role, leader_name FROM leader_status()',
		"follower|$nn"),
	"restarted node3 follows $nn");

# three up again: the routing matches the leadership
my $one = le_wait_one_leader(60, @nodes);
is(defined $one ? $one->name : 'none', $nn, "$nn is the only leader");
show_per_node($new, @nodes);
foreach my $order (sort keys %strings)
{
	my $got = lands_on("$strings{$order} target_session_attrs=read-only");
	ok($got =~ /^node\d$/ && $got ne $nn,
		"read-only ($order) lands on a follower, not $nn") or diag $got;
}

$_->stop foreach @nodes;
$etcd->stop;

done_testing();
