# Synchronous mode (issue 16): no acknowledged commit is lost on a crash.
# Three nodes (n1 primary, n2, n3 standbys), lease_ttl = 2,
# leader_election.synchronous_mode = on and synchronous_node_count = 1 on
# every node. A client commits single-row INSERTs as fast as it can through
# one target_session_attrs=read-write string (le_rw_connstr) and appends
# every acknowledged id to a file; after every crash, every id in that file
# must be on the new primary.
#  A. the leader names its synchronous standby in synchronous_standby_names
#     and in the cluster record; leader_status() shows it on every node;
#  B. crashes (-m immediate) of the primary, each followed by the new
#     leader, the rejoin of the old primary (scripts/rejoin-standby.sh,
#     pg_rewind) and a synchronous standby recorded again: the new primary
#     was in the set the old one recorded, and no acknowledged id is lost
#     (the other standby, if it had received more WAL than the new primary,
#     cannot follow it and is rejoined with pg_rewind too);
#  C. a standby outside the synchronous set never promotes: the set's
#     member (first in line) is frozen (SIGSTOP, postmaster and children)
#     and the primary crashes at once; the other standby, first in line
#     once the frozen node's lease expired, stays a standby and says why
#     (leader_status().succession); the member, resumed, takes over;
#  C2. the set decides, not the WAL: a standby outside the set that received
#     more WAL than the member (the primary's walsender to the member is
#     frozen) does not take over; the member does, with every acknowledged
#     id; the outsider is rejoined with pg_rewind;
#  D. on, all standbys stopped: the leader records an empty set
#     (automatic_failover false) and goes on committing; after its crash
#     the standbys come back and nobody promotes (the first in line says
#     why); the old primary comes back and leads again;
#  E. strict, all standbys stopped: synchronous_standby_names = '*' and a
#     commit waits until a standby is back;
#  F. runtime changes while the client writes (ALTER SYSTEM + reload on
#     every node): strict, on, off, on, synchronous_node_count 2, 1; after
#     each, once the record settled, a crash: 0 acknowledged ids lost in
#     on and strict (the loss in off is noted, not asserted).
# max_lag_on_failover is 64MB, so that the lag rule of issue 10 never is
# the reason a standby does not stand: the synchronous set decides.
# Every wait is a poll with a generous bound.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

# t/ holds the helper modules (PROVE_FLAGS in the Makefile is reset by PGXS)
use FindBin;
use lib $FindBin::RealBin;

use AckedWriter;
use EtcdServer;
use LeaderElectionTest;

my $prefix  = '/leader_election/t054';
my $ttl     = 2;
# part B; C, C2 and F crash the primary 8 more times, 7 of them (in on and
# strict) with the same checks: 12 crashes in all with a zero-loss check and
# a rejoin, plus one in off and one with no standby (D)
my $crashes = 5;

my $etcd = EtcdServer->new('etcd');
$etcd->start;

my @nodes = le_replicated_cluster(
	$etcd,
	n          => 3,
	prefix     => $prefix,
	lease_ttl  => $ttl,
	extra_conf => "leader_election.synchronous_mode = on\n"
	  . "leader_election.max_lag_on_failover = '64MB'\n"
	  # pg_rewind copies all of pg_wal: keep it small (the recipe's 256MB
	  # made every rejoin copy ~350MB), but above the distance between
	  # checkpoints (max_wal_size): a rewound node replays from the redo
	  # point of the last common checkpoint, with the source's WAL
	  . "wal_keep_size = '64MB'\nmin_wal_size = '32MB'\nmax_wal_size = '32MB'");
my ($n1, $n2, $n3) = @nodes;
my %down;    # node name => 1 while stopped or crashed

sub status
{
	my ($node, $cols) = @_;
	return $node->safe_psql('postgres', "SELECT $cols FROM leader_status()");
}

sub names { return join(',', map { $_->name } @_); }

# The recorded synchronous set: (mode, "a,b") from the cluster record.
sub record_set
{
	my $rec = le_cluster_record($etcd, $prefix) || {};
	return ($rec->{synchronous_mode} // 'off',
		join(',', @{ $rec->{synchronous} || [] }));
}

# record_set() as "mode|a,b", once it is $want (or after 30 s).
sub record_set_until
{
	my ($want) = @_;
	my $deadline = time() + 30;
	my $got = join('|', record_set());
	while ($got ne $want && time() < $deadline)
	{
		usleep(100_000);
		$got = join('|', record_set());
	}
	return $got;
}

# ALTER SYSTEM SET on every node, and a reload.
sub set_all
{
	my ($setting) = @_;
	le_bypass_psql($_, "ALTER SYSTEM SET $setting;\nSELECT pg_reload_conf();")
	  foreach @nodes;
	note "set on every node: $setting";
	return;
}

# The client (t/AckedWriter.pm): commits single-row INSERTs into t through
# the read-write string and writes down every acknowledged id; a commit
# acknowledged with the WARNING that its wait for the synchronous standby
# was cancelled is "warned": no acknowledgement of a replicated commit, left
# out of the checks, and must not happen (asserted at the end). Ids lost
# after a crash in synchronous_mode off are exempted from later checks.
my $writer;

# Waits until every running node is settled: one leader, every other node
# streams from it and is queued, the leader and the cluster record say
# synchronous_mode $mode, and with $count > 0 the leader's recorded
# synchronous set has $count members, exactly the standbys in 'sync' state in
# pg_stat_replication and named in synchronous_standby_names, the same set
# the cluster record in etcd holds; then until the client committed on the
# leader. Returns (leader, [ names in the set ]); one test.
sub settle
{
	my ($mode, $count, $what) = @_;
	local $Test::Builder::Level = $Test::Builder::Level + 1;
	my @up = grep { !$down{ $_->name } } @nodes;
	my $leader = le_wait_one_leader(90, @up);
	my $ok = defined $leader;
	my @set;
	if ($ok)
	{
		my $lname = $leader->name;
		my @standbys = grep { $_ != $leader } @up;
		$ok &&= $leader->poll_query_until('postgres',
			"SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming' "
			  . "AND application_name IN ('n1', 'n2', 'n3')",
			scalar(@standbys));
		foreach my $s (@standbys)
		{
			$ok &&= $s->poll_query_until('postgres',
				"SELECT queue_position IS NOT NULL, leader_name FROM leader_status()",
				"t|$lname");
		}
		$ok &&= $leader->poll_query_until('postgres',
			'SELECT synchronous_mode FROM leader_status()', $mode);
		my $deadline = time() + 30;
		usleep(100_000) while (record_set())[0] ne $mode && time() < $deadline;
		$ok &&= (record_set())[0] eq $mode;
		if ($count > 0)
		{
			$ok &&= $leader->poll_query_until(
				'postgres', q{
				SELECT coalesce(cardinality(s.synchronous_standbys), 0),
				  (SELECT count(*) FROM pg_stat_replication r
				    WHERE r.sync_state = 'sync'
				      AND r.application_name = ANY (s.synchronous_standbys)),
				  s.automatic_failover
				FROM leader_status() s},
				"$count|$count|t");
			@set = split /,/,
			  status($leader, "array_to_string(synchronous_standbys, ',')");
			# the setting names exactly the set (when a member leaves, the
			# record changes first and the setting after: poll)
			my $want_ssn = sub {
				my ($ssn) = @_;
				my @named = ($ssn =~ /"([^"]*)"/g);
				return $ssn =~ /^FIRST $count \(/
				  && join(',', sort @named) eq join(',', sort @set);
			};
			my $ssn;
			$deadline = time() + 30;
			while (1)
			{
				$ssn = $leader->safe_psql('postgres', 'SHOW synchronous_standby_names');
				last if $want_ssn->($ssn) || time() > $deadline;
				usleep(100_000);
			}
			$ok &&= $want_ssn->($ssn);
			my $want = join(',', sort @set);
			$deadline = time() + 30;
			my ($mode, $rset) = record_set();
			while (join(',', sort split /,/, $rset) ne $want && time() < $deadline)
			{
				usleep(100_000);
				($mode, $rset) = record_set();
			}
			$ok &&= join(',', sort split /,/, $rset) eq $want;
			note "settled: $lname leads, synchronous set {@set} "
			  . "(record: $mode {$rset}), synchronous_standby_names = $ssn";
		}
		else
		{
			note "settled: $lname leads (no synchronous set expected)";
		}
		$ok &&= defined $writer->wait_acked_on($leader, 20);
	}
	ok($ok, "$what: settled" . ($ok ? ' (' . $leader->name . " leads, set {@set})" : ''))
	  or diag 'record: ' . (le_cluster_record($etcd, $prefix) || {})->{_raw};
	return ($leader, \@set);
}

# A standby that survived a crash follows the new leader, or, if it had
# received more WAL than the new leader (a standby outside the synchronous
# set gets the WAL of commits that still wait for the set's members), it
# cannot follow the new timeline ("new timeline N forked off current
# database system timeline M before current recovery point"): then, as the
# README says for such a standby, it is rejoined with pg_rewind. Waits for
# one or the other (settle() waits for the rest); returns whether it was
# rejoined. $since: the offset in its log at the crash.
my $nrewound = 0;

sub follow_or_rejoin
{
	my ($standby, $new, $since, $what) = @_;
	my $deadline = time() + 90;
	my $lname    = $new->name;
	while (time() < $deadline)
	{
		return 0
		  if status($standby,
			"queue_position IS NOT NULL AND leader_name = '$lname'") eq 't';
		if (slurp_file($standby->logfile, $since) =~
			/new timeline \d+ forked off current database system timeline \d+ before current recovery point/
		  )
		{
			note "$what: " . $standby->name . ' had more WAL than ' . $lname
			  . ' (' . status($standby, "coalesce(ineligible_reason, 'NULL')")
			  . '): rejoined with pg_rewind';
			$nrewound++;
			my ($rc, $out, $err) = le_rejoin($standby, $new, start => 1);
			is($rc, 0, "$what: " . $standby->name . ' rejoined as well')
			  or diag "stdout: $out\nstderr: $err";
			return 1;
		}
		usleep(200_000);
	}
	return 0;
}

my $ncrash   = 0;    # crashes of the primary
my $nchecked = 0;    # ... followed by a zero-loss check and a rejoin

# Crashes the leader (-m immediate) and checks the successor: a member of
# $set (unless undef), every acknowledged id on it (with lossy => 1 the lost
# ids are noted and exempted from later checks); then rejoins the old leader
# as its standby. Returns the new leader.
sub crash_and_check
{
	my ($leader, $set, $what, %p) = @_;
	my @survivors = grep { $_ != $leader && !$down{ $_->name } } @nodes;
	my %since = map { $_->name => -s $_->logfile } @survivors;
	my $t0 = time();
	$leader->stop('immediate');
	$ncrash++;
	my $new = le_wait_one_leader(90, @survivors);
	ok(defined $new, "$what: a new leader after the crash of " . $leader->name)
	  or return undef;
	my $took = time() - $t0;
	if (defined $set)
	{
		ok((grep { $_ eq $new->name } @$set),
			"$what: the new leader " . $new->name . " was in the set {@$set}");
	}
	$new->poll_query_until('postgres', 'SELECT pg_is_in_recovery()', 'f');
	my ($nacked, @lost) = $writer->lost_on($new);
	note sprintf('%s: crash %d of %s, %s led %.1f s later; %d acknowledged ids, %d lost',
		$what, $ncrash, $leader->name, $new->name, $took, $nacked, scalar(@lost));
	if ($p{lossy})
	{
		$writer->exempt(@lost);
	}
	else
	{
		$nchecked++;
		is(scalar(@lost), 0,
			"$what: every acknowledged id ($nacked) is on " . $new->name)
		  or diag 'lost ids (first 20): ' . join(',', @lost[ 0 .. ($#lost < 19 ? $#lost : 19) ]);
	}
	my ($rc, $out, $err) = le_rejoin($leader, $new, start => 1);
	is($rc, 0, "$what: " . $leader->name . ' rejoined as a standby')
	  or diag "stdout: $out\nstderr: $err";
	follow_or_rejoin($_, $new, $since{ $_->name }, $what)
	  foreach grep { $_ != $new } @survivors;
	return $new;
}

#
# A. The synchronous standby
#
$n1->safe_psql('postgres',
	'CREATE TABLE t (id bigint PRIMARY KEY, node text NOT NULL)');
is(le_candidate_names($n1), 'n1,n2,n3', 'queue: n1, n2, n3');
ok( $n1->poll_query_until(
		'postgres',
		"SELECT synchronous_mode, array_to_string(synchronous_standbys, ','), "
		  . 'automatic_failover FROM leader_status()',
		'on|n2|t'),
	'n1 records n2 (first in line) as its synchronous standby');
like($n1->safe_psql('postgres', 'SHOW synchronous_standby_names'),
	qr/^FIRST 1 \("n2"\)$/, 'synchronous_standby_names on n1 names n2');
ok( $n1->poll_query_until(
		'postgres',
		"SELECT sync_state FROM pg_stat_replication WHERE application_name = 'n2'",
		'sync'),
	"n1's pg_stat_replication: n2 is synchronous");
is(record_set_until('on|n2'), 'on|n2', 'the cluster record: synchronous_mode on, set {n2}');
ok( $n2->poll_query_until(
		'postgres',
		"SELECT synchronous_mode, synchronous_standby, "
		  . "array_to_string(synchronous_standbys, ','), automatic_failover "
		  . 'FROM leader_status()',
		'on|t|n2|t'),
	'n2: a synchronous standby, and knows the set');
ok( $n3->poll_query_until(
		'postgres',
		'SELECT synchronous_mode, synchronous_standby FROM leader_status()',
		'on|f'),
	'n3: not a synchronous standby');

$writer = AckedWriter->start(connstr => le_rw_connstr(@nodes));
ok(defined $writer->wait_acked_on($n1, 50), 'the client commits on n1');

#
# B. Crashes of the primary, each followed by the rejoin of the old one
#
for my $i (1 .. $crashes)
{
	my ($leader, $set) = settle('on', 1, "B$i");
	crash_and_check($leader, $set, "B$i");
}

#
# C. A standby outside the synchronous set never promotes
#
my ($leader, $set) = settle('on', 1, 'C');
my ($member) = grep { $_->name eq $set->[0] } @nodes;
my ($outsider) = grep { $_ != $leader && $_ != $member } @nodes;
note 'C: leader ' . $leader->name . ', member ' . $member->name
  . ', outsider ' . $outsider->name . '; queue ' . le_candidate_names($leader);
my $outsider_since = -s $outsider->logfile;
le_signal_node($member, 'STOP');
$leader->stop('immediate');
$ncrash++;
$down{ $member->name } = 1;    # frozen: not to be asked anything
is(join('|', record_set()), 'on|' . $member->name,
	'C: after the crash the record still names only the frozen ' . $member->name);
my $t0 = time();
is( le_holds(
		3 * $ttl,
		sub {
			my $r = $outsider->safe_psql('postgres',
				'SELECT pg_is_in_recovery(), leader_is_primary()');
			return $r eq 't|f' ? '' : "in recovery|leads = $r";
		}),
	'',
	'C: the outsider ' . $outsider->name . ' stays a standby for ' . (3 * $ttl) . ' s');
# (polled: between two reads of who should take over it may look again)
my $why = 'NULL';
my $why_deadline = time() + 10;
while (time() < $why_deadline)
{
	$why = status($outsider, "coalesce(succession, 'NULL')");
	last if $why ne 'NULL';
	usleep(100_000);
}
my $os = le_status($outsider);
note 'C: outsider: role ' . $os->{role} . ', phase ' . $os->{phase}
  . ', queue_position ' . ($os->{queue_position} // 'NULL')
  . ", succession '$why'";
like(
	$why,
	qr/not in the synchronous set primary "\Q${\ $leader->name }\E" recorded, and no member of it is queued: no standby takes over automatically/,
	'C: the outsider says why it does not take over (leader_status().succession)')
  or diag 'C: outsider: role ' . $os->{role} . ', phase ' . $os->{phase}
  . ', queue_position ' . ($os->{queue_position} // 'NULL')
  . ', ineligible_reason ' . ($os->{ineligible_reason} // 'NULL')
  . ', yielded ' . ($os->{yielded} // 'NULL');
le_signal_node($member, 'CONT');
delete $down{ $member->name };
my $new = le_wait_one_leader(90, $member, $outsider);
is(defined $new ? $new->name : 'none', $member->name,
	'C: the member ' . $member->name . ', resumed, takes over');
note sprintf('C: %s led %.1f s after the crash', ($new ? $new->name : 'none'), time() - $t0);
$member->poll_query_until('postgres', 'SELECT pg_is_in_recovery()', 'f');
my ($nacked, @lost) = $writer->lost_on($member);
$nchecked++;
is(scalar(@lost), 0, "C: every acknowledged id ($nacked) is on " . $member->name);
my ($rc, $out, $err) = le_rejoin($leader, $member, start => 1);
is($rc, 0, 'C: ' . $leader->name . ' rejoined') or diag "stdout: $out\nstderr: $err";
follow_or_rejoin($outsider, $member, $outsider_since, 'C');

#
# C2. The set decides, not the amount of WAL: the primary's walsender to
# the member freezes, so commits wait for the member (the client's pending
# one does), and WAL written meanwhile (a CHECKPOINT here) reaches the
# outsider only; the primary dies (SIGKILL of every process, so the frozen
# walsender sends nothing more). The outsider has more WAL,
# yet the member takes over, with every acknowledged id; the outsider cannot
# follow the new timeline and is rejoined with pg_rewind.
#
($leader, $set) = settle('on', 1, 'C2');
($member) = grep { $_->name eq $set->[0] } @nodes;
($outsider) = grep { $_ != $leader && $_ != $member } @nodes;
my $walsender = $leader->safe_psql('postgres',
	"SELECT pid FROM pg_stat_replication WHERE application_name = '"
	  . $member->name . "'");
kill 'STOP', $walsender;
$leader->safe_psql('postgres', 'CHECKPOINT');
my $ahead = 'f';
my $deadline = time() + 30;
while ($ahead ne 't' && time() < $deadline)
{
	my ($m, $o) =
	  map { $_->safe_psql('postgres', 'SELECT pg_last_wal_receive_lsn()') }
	  ($member, $outsider);
	$ahead = $leader->safe_psql('postgres', "SELECT '$o'::pg_lsn > '$m'::pg_lsn");
	note "C2: received: member $m, outsider $o" if $ahead eq 't';
	usleep(100_000) if $ahead ne 't';
}
is($ahead, 't', 'C2: the outsider ' . $outsider->name
	  . ' received more WAL than the member ' . $member->name);
$outsider_since = -s $outsider->logfile;
le_signal_node($leader, 'KILL');
$ncrash++;
$new = le_wait_one_leader(90, $member, $outsider);
is(defined $new ? $new->name : 'none', $member->name,
	'C2: the member ' . $member->name . ' takes over, not the outsider with more WAL');
$member->poll_query_until('postgres', 'SELECT pg_is_in_recovery()', 'f');
($nacked, @lost) = $writer->lost_on($member);
$nchecked++;
is(scalar(@lost), 0, "C2: every acknowledged id ($nacked) is on " . $member->name);
($rc, $out, $err) = le_rejoin($leader, $member, start => 1);
is($rc, 0, 'C2: ' . $leader->name . ' rejoined') or diag "stdout: $out\nstderr: $err";
is(follow_or_rejoin($outsider, $member, $outsider_since, 'C2'),
	1, 'C2: the outsider could not follow the new timeline: rejoined with pg_rewind');

#
# D. on, every standby stopped: the leader goes on committing, records that
# no standby may take over, and after its crash nobody does
#
($leader, $set) = settle('on', 1, 'D');
my @standbys = grep { $_ != $leader } @nodes;
$_->stop('fast') foreach @standbys;
$down{ $_->name } = 1 foreach @standbys;
ok( $leader->poll_query_until(
		'postgres',
		"SELECT coalesce(cardinality(synchronous_standbys), 0), automatic_failover "
		  . 'FROM leader_status()',
		'0|f'),
	'D: no standby: the leader records an empty set, automatic_failover false');
# the record first, the setting after: poll
ok($leader->poll_query_until('postgres', 'SHOW synchronous_standby_names', ''),
	'D: then synchronous_standby_names is empty');
is(record_set_until('on|'), 'on|', 'D: the cluster record: on, empty set');
ok(defined $writer->wait_acked_on($leader, 50),
	'D: the client still commits on ' . $leader->name);
$leader->stop('immediate');
$ncrash++;
$down{ $leader->name } = 1;
foreach my $s (@standbys)
{
	$s->start;
	delete $down{ $s->name };
}
ok( $_->poll_query_until(
		'postgres', 'SELECT automatic_failover FROM leader_status()', 'f'),
	'D: ' . $_->name . ' says no standby takes over automatically')
  foreach @standbys;
is( le_holds(
		3 * $ttl,
		sub {
			foreach my $s (@standbys)
			{
				my $r = $s->safe_psql('postgres',
					'SELECT pg_is_in_recovery(), leader_is_primary()');
				return $s->name . ": in recovery|leads = $r" if $r ne 't|f';
			}
			return '';
		}),
	'',
	'D: after the crash neither standby promotes for ' . (3 * $ttl) . ' s');
my @whys = map { status($_, "coalesce(succession, 'NULL')") } @standbys;
note 'D: ' . $standbys[$_]->name . ': phase ' . le_status($standbys[$_])->{phase}
  . ", succession '$whys[$_]'"
  foreach 0 .. 1;
# A standby restarted after the crash never streamed again, so it does not
# stand (not streaming from the leader) unless it queued before the lease
# ran out; whichever standby is first in line says why it does not take over.
my @queued = grep { defined le_status($_)->{queue_position} } @standbys;
if (@queued)
{
	ok( (grep { /recorded no synchronous standby: no standby takes over automatically/ } @whys),
		'D: the first in line says why it does not take over (leader_status().succession)');
}
else
{
	is( join(',', map { le_status($_)->{ineligible_reason} // 'NULL' } @standbys),
		'not streaming from the leader,not streaming from the leader',
		'D: no standby is in line: each says why it does not stand (ineligible_reason)');
}
$leader->start;
delete $down{ $leader->name };
ok(le_wait_leader($leader), 'D: the old primary ' . $leader->name . ' is back and leads');
($nacked, @lost) = $writer->lost_on($leader);
is(scalar(@lost), 0, "D: every acknowledged id ($nacked) is on " . $leader->name);

#
# E. strict, every standby stopped: a commit waits until a standby is back
#
set_all("leader_election.synchronous_mode = 'strict'");
($leader, $set) = settle('strict', 1, 'E');
is(join('|', (record_set())[0], status($leader, 'synchronous_mode')),
	'strict|strict', 'E: the record and the leader say strict');
@standbys = grep { $_ != $leader } @nodes;
$_->stop('fast') foreach @standbys;
$down{ $_->name } = 1 foreach @standbys;
ok( $leader->poll_query_until(
		'postgres', 'SHOW synchronous_standby_names', '*'),
	"E: no standby: synchronous_standby_names = '*'");
my $bg = $leader->background_psql('postgres', on_error_stop => 0, timeout => 120);
$bg->query_until(qr/sent/,
	"\\echo sent\nINSERT INTO t (id, node) VALUES (-1, 'strict') RETURNING id;\n");
ok( $leader->poll_query_until(
		'postgres',
		"SELECT count(*) FROM pg_stat_activity "
		  . "WHERE wait_event = 'SyncRep' AND query LIKE '%VALUES (-1%'",
		'1'),
	'E: the commit waits for a synchronous standby (SyncRep)');
is( le_holds(
		2,
		sub {
			my $r = $leader->safe_psql('postgres',
				"SELECT count(*) FROM pg_stat_activity "
				  . "WHERE wait_event = 'SyncRep' AND query LIKE '%VALUES (-1%'");
			return $r eq '1' ? '' : "sessions waiting: $r";
		}),
	'',
	'E: ... and still waits 2 s later');
$standbys[0]->start;
delete $down{ $standbys[0]->name };
like($bg->query_until(qr/^-1$/m, ''), qr/^-1$/m,
	'E: the commit completes once ' . $standbys[0]->name . ' is back');
$bg->quit;
is($standbys[0]->safe_psql('postgres', 'SELECT count(*) FROM t WHERE id = -1'),
	'1', 'E: ... and ' . $standbys[0]->name . ' has the row');
$standbys[1]->start;
delete $down{ $standbys[1]->name };

#
# F. Runtime changes while the client writes; a crash after each
#
foreach my $change (
	[ 'strict', 1, undef ],
	[ 'on',     1, "leader_election.synchronous_mode = 'on'" ],
	[ 'off',    0, "leader_election.synchronous_mode = 'off'" ],
	[ 'on',     1, "leader_election.synchronous_mode = 'on'" ],
	[ 'on',     2, 'leader_election.synchronous_node_count = 2' ],
	[ 'on',     1, 'leader_election.synchronous_node_count = 1' ])
{
	my ($mode, $count, $setting) = @$change;
	my $what = "F ($mode, $count)";
	# every node runs (settled after the last rejoin): the change reaches all
	set_all($setting) if defined $setting;
	($leader, $set) = settle($mode, $count, $what);
	is(status($leader, 'synchronous_mode'), $mode, "$what: the leader says $mode");
	if ($mode eq 'off')
	{
		# the record says off first, the setting goes after: poll
		ok($leader->poll_query_until('postgres', 'SHOW synchronous_standby_names', ''),
			"$what: then synchronous_standby_names is empty");
	}
	crash_and_check($leader, $mode eq 'off' ? undef : $set, $what,
		lossy => $mode eq 'off');
}

#
# The end: every acknowledged id is on the last leader
#
($leader, $set) = settle('on', 1, 'end');
$writer->stop;
($nacked, @lost) = $writer->lost_on($leader);
is(scalar(@lost), 0, "end: every acknowledged id ($nacked) is on " . $leader->name);
is($writer->read_acked->{warned}, 0,
	'no commit was acknowledged with a warning that its synchronous wait was cancelled');
cmp_ok($nchecked, '>=', 10,
	"$ncrash crashes of the primary, $nchecked of them in on or strict, "
	  . 'each followed by a zero-loss check and a rejoin');
my @errors = $writer->log_lines;
note scalar(@errors) . ' client errors; ids lost in off: ' . $writer->exempted
  . "; standbys that had more WAL than the new leader and were rewound: $nrewound";
note "client: $_" foreach @errors[ 0 .. ($#errors < 9 ? $#errors : 9) ];

$_->stop foreach @nodes;
$etcd->stop;

done_testing();
