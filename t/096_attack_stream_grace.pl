# Attack on issue 16, change (3) "a standby that yielded its place stands
# again at once" (commit 403825b).  README, Who stands: a standby stands
# only while its WAL receiver streams ("not streaming from the leader"),
# a queued one keeps its place for a grace period after its stream ends.
#
# n1 primary, n2 standby.  n2's primary_conninfo is pointed at a port where
# nothing listens (reload: its WAL receiver restarts and cannot connect).
# After the grace period n2 must leave the queue and stay out (observing,
# "not streaming from the leader") for as long as it does not stream.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

use FindBin;
use lib $FindBin::RealBin;

use EtcdServer;
use LeaderElectionTest;

my $prefix = '/leader_election/t096';
my $ttl    = 2;

my $etcd = EtcdServer->new('etcd');
$etcd->start;

my ($n1, $n2) = le_replicated_cluster($etcd, n => 2, prefix => $prefix,
	lease_ttl => $ttl);

# a port nobody listens on: n2's WAL receiver never connects again (port 1,
# not a free port: a TAP file running beside this one may take that later)
my $dead = 1;
$n2->append_conf('postgresql.conf',
	"primary_conninfo = 'host=127.0.0.1 port=$dead application_name=n2 connect_timeout=1'\n");
$n2->safe_psql('postgres', 'SELECT pg_reload_conf()');
ok($n1->poll_query_until('postgres',
	"SELECT count(*) FROM pg_stat_replication WHERE application_name = 'n2'", '0'),
	'n2 no longer streams from n1');

# past the grace period of a lost stream, with a margin
sleep(le_grace($ttl) + 2);
my $queued = le_holds(12, sub {
		my $s = $n2->safe_psql('postgres',
			'SELECT coalesce(queue_position::text, \'-\') || \'|\' || phase || \'|\' || '
			  . 'coalesce(ineligible_reason, \'\') FROM leader_status()');
		return $s =~ /^-\|/ ? '' : "n2 holds a place without a stream: $s";
	});
is($queued, '', 'n2, which does not stream, stays out of the queue after the grace period');
my $reason = $n2->safe_psql('postgres', 'SELECT ineligible_reason FROM leader_status()');
note "n2: ineligible_reason '$reason'";
my $log = slurp_file($n2->logfile);
my $joins = () = $log =~ /node "n2" is now a follower at queue position/g;
note "n2 joined the queue $joins times in all";
done_testing();
