# Attack on issue 16's invariant (synchronous_mode = on): "every standby the
# record names has every commit acknowledged to a client".
#
# PostgreSQL decides whether a commit waits for a synchronous standby by
# WalSndCtl->sync_standbys_defined, a flag in shared memory that ONLY the
# checkpointer updates, when it processes a reload.  The walsenders take the
# new synchronous_standby_names at once (their sync priority is what
# sync_standbys.c looks at before it records a joiner).  So when the set goes
# from empty ('' : commits do not wait) to one standby while the checkpointer
# does not reload (busy in an immediate checkpoint, a long fsync phase, or
# here: stopped with SIGSTOP to make the window certain), the worker sees the
# joiner's walsender with a priority, waits for its flush, records it ...
# and commits still do not wait for it.
#
# Scenario, n1 primary, n2 standby, lease_ttl 2:
#  1. control: mode on, the record names n2; n2's walsender on n1 stopped
#     (SIGSTOP): a commit does NOT return within 4 s (synchronous works);
#  2. mode off (the record says off, the setting is removed), then n1's
#     checkpointer stopped, mode on again: the record names n2 again;
#  3. n2's walsender on n1 stopped: a commit that returns OK now is an
#     acknowledged commit n2 has not received;
#  4. n1 dies at once (SIGKILL to all its processes: a power loss);
#  5. n2, the recorded synchronous standby, promotes: the acknowledged row
#     must be there.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);

use FindBin;
use lib $FindBin::RealBin;

use EtcdServer;
use LeaderElectionTest;

my $prefix = '/leader_election/t095';

my $etcd = EtcdServer->new('etcd');
$etcd->start;

my ($n1, $n2) = le_replicated_cluster($etcd, n => 2, prefix => $prefix,
	lease_ttl => 2);
$n1->safe_psql('postgres', 'CREATE TABLE acked (id int PRIMARY KEY)');

# children of a postmaster, by /proc
sub children
{
	my ($ppid) = @_;
	my @pids;
	foreach my $dir (glob('/proc/[0-9]*'))
	{
		next unless open(my $sf, '<', "$dir/stat");
		my $stat = <$sf>;
		close $sf;
		next unless defined $stat && $stat =~ /^.*\)\s+\S+\s+(\d+)/s;
		push @pids, (split m{/}, $dir)[-1] if $1 == $ppid;
	}
	return @pids;
}

sub set_mode
{
	my ($mode) = @_;
	$n1->safe_psql('postgres',
		"ALTER SYSTEM SET leader_election.synchronous_mode = '$mode'; SELECT pg_reload_conf()");
}

# One INSERT in its own session; 1 if COMMIT returned OK within $secs.
sub insert_within
{
	my ($id, $secs) = @_;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'psql', '-X', '-v', 'ON_ERROR_STOP=1', '-d', $n1->connstr('postgres'),
		  '-c', "INSERT INTO acked VALUES ($id)" ],
		'<', \undef, '>', \$out, '2>', \$err);
	my $deadline = time() + $secs;
	while (time() < $deadline && $h->pumpable)
	{
		usleep(100_000);
		$h->pump_nb;
	}
	if ($h->pumpable)
	{
		$h->kill_kill;
		note "insert $id: no answer within ${secs}s";
		return 0;
	}
	$h->finish;
	note "insert $id: rc " . ($? >> 8) . " out '$out' err '$err'";
	return ($? >> 8) == 0 && $out =~ /INSERT 0 1/ ? 1 : 0;
}

sub walsender_pid
{
	return $n1->safe_psql('postgres',
		"SELECT pid FROM pg_stat_replication WHERE application_name = 'n2'");
}

#
# 1. control: synchronous replication works when the checkpointer reloads
#
set_mode('on');
ok(le_wait_cluster_record($etcd, "$prefix", node => 'n1'), 'record names n1');
ok($n1->poll_query_until('postgres',
	"SELECT synchronous_standbys::text FROM leader_status()", '{n2}'),
	'control: n2 recorded as synchronous');
my $ws = walsender_pid();
kill 'STOP', $ws;
is(insert_within(1, 4), 0, 'control: with n2\'s walsender stopped, a commit waits');
kill 'CONT', $ws;
ok($n1->poll_query_until('postgres', 'SELECT count(*) FROM acked', '1'),
	'control: the commit returns once the walsender resumes');

#
# 2. off, checkpointer stopped, on again
#
set_mode('off');
ok($n1->poll_query_until('postgres',
	"SELECT synchronous_mode FROM leader_status()", 'off'), 'mode off recorded');
ok($n1->poll_query_until('postgres',
	"SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'async'", '1'),
	'n2 async again');
my $ckpt = $n1->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'");
note "checkpointer pid $ckpt";
kill 'STOP', $ckpt;
set_mode('on');
# (fixed in ab911f4: the joiner is recorded only once the checkpointer's flag says so)
is(le_holds(5, sub {
	$n1->safe_psql('postgres', 'SELECT synchronous_standbys::text FROM leader_status()')
	  eq '{n2}' ? 'n2 recorded while the checkpointer has not taken the setting' : '' }),
	'', 'with the checkpointer stopped: n2 is not recorded as synchronous (5 s)');
my $rec = le_cluster_record($etcd, $prefix);
note "record: $rec->{_raw}";
note "n1 synchronous_standby_names: "
  . $n1->safe_psql('postgres', 'SHOW synchronous_standby_names');
note "pg_stat_replication: " . $n1->safe_psql('postgres',
	'SELECT application_name, state, sync_priority, sync_state FROM pg_stat_replication');

#
# 3. n2's walsender stopped: does a commit return?
#
$ws = walsender_pid();
kill 'STOP', $ws;
my $acked = insert_within(2, 4);
note "commit 2 acknowledged: $acked";

#
# 4. n1 dies at once: SIGKILL to the postmaster and every child
#
my $pm = le_postmaster_pid($n1);
my @kids = children($pm);
kill 'KILL', $pm, @kids;
# the framework must not try to stop it at the end
unlink($n1->data_dir . '/postmaster.pid');
$n1->_update_pid(-1);
note "n1 killed (postmaster $pm, children @kids)";

#
# 5. n2 promotes: every acknowledged row must be there
#
my $recorded = (le_cluster_record($etcd, $prefix) || {})->{synchronous} || [];
note "record at the crash names {@$recorded}";
if (!@$recorded)
{
	# nobody recorded: no automatic failover, and so no loss
	is(le_holds(8, sub {
		$n2->safe_psql('postgres', 'SELECT pg_is_in_recovery()') eq 'f' ? 'n2 promoted' : '' }),
		'', 'n2 (not recorded) does not take over (8 s)');
	note 'n2: ' . $n2->safe_psql('postgres', 'SELECT succession FROM leader_status()');
	done_testing();
	exit 0;
}
ok(le_wait_leader($n2), 'n2 (the recorded synchronous standby) takes over');
my $have = $n2->safe_psql('postgres', 'SELECT string_agg(id::text, \',\' ORDER BY id) FROM acked');
note "rows on n2: $have";
my @missing = grep { my $i = $_; !grep { $_ eq $i } split /,/, $have }
  (1, $acked ? (2) : ());
is("@missing", '', 'every acknowledged commit is on the new primary n2');

done_testing();
