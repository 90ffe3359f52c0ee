# The crash-failover loss bound must hold when the primary's worker stalls.
#
# Contract (README, "Data loss"): a crash failover loses at most about
# max_lag_on_failover of acknowledged commits beyond the WAL position the
# primary last recorded (the cluster record's wal_end): a standby whose
# stream stalled stands only while it is within max_lag_on_failover of that
# position. So the primary must not acknowledge commits whose WAL lies more
# than max_lag_on_failover beyond the position it recorded: when its worker
# cannot record a newer position (frozen, swapped out, etcd slow), such
# commits wait (bounded) or fail.
#
# n1 primary, n2 standby (le_replicated_cluster, lease_ttl = 6,
# max_lag_on_failover = 1MB). n2 streams through a TCP proxy (TcpProxy.pm)
# that is frozen: n2 receives nothing more. n1's worker is frozen
# (SIGSTOP). One session on n1 then commits 64 kB rows, one per
# transaction, as fast as it can, until a commit fails (n1's leadership
# lapses at its validity deadline), 40 s pass, or 16 MB were acknowledged
# beyond the recorded position (the bound broken: no need to write more);
# after each acknowledged commit it reads pg_current_wal_insert_lsn().
# Asserted: the WAL position after the last acknowledged commit is at most
# max_lag_on_failover + 256 kB beyond the wal_end that n1's cluster record
# holds; and commits stop being acknowledged within 40 s.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use DBI;
use DBD::Pg;

use FindBin;
use lib $FindBin::RealBin;

use EtcdServer;
use LeaderElectionTest;
use TcpProxy;

my $prefix  = '/leader_election/t036';
my $max_lag = 1024 * 1024;
my $slack   = 256 * 1024;

# every process this test froze is thawed, whatever happens
my %frozen;
END { kill 'CONT', $_ foreach keys %frozen; }

sub lsn
{
	my ($text) = @_;
	die "not a WAL position: $text" unless $text =~ m{^([0-9A-Fa-f]+)/([0-9A-Fa-f]+)$};
	return hex($1) * 2**32 + hex($2);
}

my $etcd = EtcdServer->new('etcd');
$etcd->start;

my ($n1, $n2) = le_replicated_cluster(
	$etcd,
	n          => 2,
	prefix     => $prefix,
	lease_ttl  => 6,
	extra_conf => "listen_addresses = '127.0.0.1'\n"
	  . "leader_election.max_lag_on_failover = '1MB'");
ok(le_wait_cluster_record($etcd, $prefix, node => 'n1', timeline => 1),
	'the cluster record names n1 on timeline 1');

# n2 streams from n1 through a proxy (a reload restarts its WAL receiver)
my ($proxy, $streams) = le_stream_via_proxy($n1, $n2);
ok($streams, 'n2 streams from n1 through the proxy');
ok($n2->poll_query_until('postgres', 'SELECT queue_position FROM leader_status()', '1'),
	'n2 is queued at 1');

$n1->safe_psql('postgres',
	'CREATE TABLE big (id serial PRIMARY KEY, pad text); '
	  . 'ALTER TABLE big ALTER COLUMN pad SET STORAGE EXTERNAL');
$n1->wait_for_catchup($n2, 'flush');

# the record catches up with n1's flushed WAL (n1 records it at every
# refresh, every TTL/3); not asserted, it only makes the start tidy
my $deadline = time() + 20;
while (time() < $deadline)
{
	my $rec = le_cluster_record($etcd, $prefix);
	last
	  if $rec
	  && defined $rec->{wal_end}
	  && lsn($rec->{wal_end}) >=
	  lsn($n1->safe_psql('postgres', 'SELECT pg_current_wal_flush_lsn()'));
	usleep(200_000);
}

(my $dsn = 'dbi:Pg:host=' . $n1->host . ';port=' . $n1->port . ';dbname=postgres');
my $dbh = DBI->connect($dsn, '', '',
	{ AutoCommit => 1, RaiseError => 0, PrintError => 0, PrintWarn => 0 })
  or die "cannot connect to n1: $DBI::errstr";
$dbh->do("SET statement_timeout = '60s'");

# n2's network stalls, n1's worker freezes
$proxy->freeze;
my $worker = le_worker_pid($n1);
$frozen{$worker} = 1;
kill 'STOP', $worker;
my $t_frozen = time();
usleep(500_000);    # a record write already sent lands
my @records = (le_cluster_record($etcd, $prefix));

my ($start_lsn) = $dbh->selectrow_array('SELECT pg_current_wal_insert_lsn()');
# the furthest wal_end recorded so far (the bound is checked against the
# record read at the end too, below)
my ($rec_end) = sort { $b <=> $a }
  map { lsn($_->{wal_end}) }
  grep { $_ && ($_->{node} // '') eq 'n1' && defined $_->{wal_end} } @records;
$rec_end //= lsn($start_lsn);
# writing stops once 16 MB are acknowledged beyond the record: the bound is
# then broken 16 times over, and the test need not fill the disk
my $cap = 16 * $max_lag;
my ($acked, $last_lsn, $failure, $capped) = (0, undef, undef, 0);
while (time() < $t_frozen + 40)
{
	if (!defined $dbh->do("INSERT INTO big (pad) VALUES (repeat('x', 65536))"))
	{
		($failure) = split /\n/, ($dbh->errstr // 'error');
		last;
	}
	$acked++;
	($last_lsn) = $dbh->selectrow_array('SELECT pg_current_wal_insert_lsn()');
	if (lsn($last_lsn) - $rec_end > $cap)
	{
		$capped = 1;
		last;
	}
}
my $t_end = time();
$dbh->disconnect;
push @records, le_cluster_record($etcd, $prefix);

# n1's record: the furthest wal_end it wrote (the worker is frozen: it
# wrote none after the freeze)
my @mine = grep { $_ && ($_->{node} // '') eq 'n1' && defined $_->{wal_end} } @records;
note 'cluster records read: ' . join(' | ', map { $_ ? $_->{_raw} : '(none)' } @records);
ok(scalar(@mine), 'n1\'s cluster record has a wal_end');
my ($wal_end) = sort { $b <=> $a } map { lsn($_->{wal_end}) } @mine;

cmp_ok($acked, '>', 0, 'n1 acknowledged commits after its worker froze');
ok(defined $failure || $capped,
	'commits stop being acknowledged within 40 s of the freeze (or the test stopped '
	  . 'writing at 16 MB beyond the record)')
  or diag "n1 acknowledged $acked commits in 40 s";
note sprintf('%d commits acknowledged in %.1f s after the freeze; then: %s',
	$acked, $t_end - $t_frozen,
	$failure // ($capped ? 'the test stopped writing: 16 MB beyond the record' : '(none failed)'));
if (defined $last_lsn && defined $wal_end)
{
	my $beyond = lsn($last_lsn) - $wal_end;
	note sprintf('WAL: %s at the freeze, %s after the last acknowledged commit; '
		  . 'the record\'s wal_end %X/%X; beyond it: %d bytes (%.2f MB)',
		$start_lsn, $last_lsn, int($wal_end / 2**32), $wal_end % 2**32,
		$beyond, $beyond / 1048576);
	cmp_ok($beyond, '<=', $max_lag + $slack,
		'n1 acknowledged no commit more than max_lag_on_failover (+256 kB) '
		  . 'beyond the WAL position it recorded');
}

kill 'CONT', $worker;
delete $frozen{$worker};
$proxy->thaw;
$proxy->stop;
$_->stop('immediate') foreach ($n1, $n2);
$etcd->stop;
done_testing();
