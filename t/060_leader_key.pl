# <prefix>.leader (issue 17): one etcd key that names the leader, for tools
# that follow one key (vip-manager's trigger-key, confd, `etcdctl watch`).
# A three-node streaming-replication cluster, lease_ttl = 2, with
# `etcdctl watch <prefix>.leader` running throughout and the key sampled
# (`etcdctl get -w json`) against who leads (leader_is_primary()):
#  - it names the leader, attached to the leader's lease, and is not taken
#    for a candidate (it lies outside <prefix>/);
#  - it is not written again at every confirmation;
#  - it follows the leader across leader_resign() (n1 -> n2), a fast stop
#    (n2 -> n3) and a crash (n3 -> n1, rejoined with pg_rewind);
#  - at no sample does it name a node that does not lead for longer than
#    the lease TTL (+ 2 s of sampling);
#  - deleted, rewritten (another name, the leader's name without its lease,
#    a large binary value) by hand, it is repaired while the leader leads;
#  - the watch shows the leaders in order, each change through a DELETE.
# Every wait is a poll with a generous bound; the times are reported.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use JSON::PP;
use MIME::Base64 qw(decode_base64 encode_base64);
use Time::HiRes qw(time usleep);

# t/ holds the helper modules (PROVE_FLAGS in the Makefile is reset by PGXS)
use FindBin;
use lib $FindBin::RealBin;

use EtcdServer;
use LeaderElectionTest;

my $prefix = '/leader_election/t060';
my $key    = "$prefix.leader";
my $ttl    = 2;
# how long the key may name a node that does not lead: its lease, and sampling
my $bound = $ttl + 2;

my $etcd = EtcdServer->new('etcd');
$etcd->start;

# The watch a shell loop or confd would run, writing its events to a file,
# each line stamped with the time it arrived (to measure how soon the key
# follows).  Started before the cluster, so that it sees the first write.
my $watch_file = "$PostgreSQL::Test::Utils::log_path/060_leader_key_watch.txt";
my $watch_err  = '';
my $watch;
{
	local $ENV{ETCDCTL_API} = 3;
	$watch = IPC::Run::start(
		[ 'etcdctl', '--endpoints=' . $etcd->url, 'watch', '--prefix=false', $key ],
		'<', \undef, '2>', \$watch_err, '|',
		[ 'perl', '-MTime::HiRes=time', '-ne', '$| = 1; printf "%.6f %s", time, $_' ],
		'>', $watch_file);
}

my ($n1, $n2, $n3) =
  le_replicated_cluster($etcd, n => 3, prefix => $prefix, lease_ttl => $ttl);
my @nodes = ($n1, $n2, $n3);
my %by_name = map { $_->name => $_ } @nodes;
my %down;    # nodes stopped or crashed: not asked who leads

# The key as etcd has it now: (value, lease as a decimal string), or () if
# absent.
sub leader_key
{
	my $out = $etcd->etcdctl('get', $key, '-w', 'json');
	my $kv = (JSON::PP->new->allow_bignum->decode($out)->{kvs} || [])->[0];
	return () unless $kv;
	return (decode_base64($kv->{value} // ''), '' . ($kv->{lease} // 0));
}

# The watch's events so far: [ type, value, arrival time ] each (etcdctl
# prints the type, the key and the value, one line each).
sub watch_events
{
	my @lines = split /\n/, slurp_file($watch_file), -1;
	pop @lines if @lines && $lines[-1] eq '';
	my @events;
	while (@lines >= 3)
	{
		my @f = map { /^(\d+\.\d+) (.*)\z/s or die "watch line: $_"; [ $1, $2 ] }
		  splice(@lines, 0, 3);
		my ($type, $k, $value) = map { $_->[1] } @f;
		die "watch of $key printed an event of $k" unless $k eq $key;
		push @events, [ $type, $value, $f[0][0] ];
	}
	return @events;
}

# The arrival time of the first watch event of $type (and $value) after $t0.
sub event_at
{
	my ($t0, $type, $value) = @_;
	foreach my $ev (watch_events())
	{
		return $ev->[2]
		  if $ev->[2] >= $t0 && $ev->[0] eq $type
		  && (!defined $value || $ev->[1] eq $value);
	}
	return undef;
}

# When $node's worker last changed its role (epoch seconds).
sub role_since
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		'SELECT extract(epoch FROM role_since) FROM leader_status()');
}

# The longest time a sample showed the key naming a node that did not lead.
my $worst = 0;
my $worst_what = 'never';
my ($wrong_name, $wrong_since);

# One sample: the key, then who leads.  Tracks how long the key names a
# node that does not lead.  Returns (value or undef, lease, leader names).
sub sample
{
	my ($value, $lease) = leader_key();
	my @leaders = map { $_->name } le_leaders(grep { !$down{ $_->name } } @nodes);
	my $now = time();
	if (defined $value && $by_name{$value} && !grep { $_ eq $value } @leaders)
	{
		($wrong_name, $wrong_since) = ($value, $now)
		  unless defined $wrong_name && $wrong_name eq $value;
		if ($now - $wrong_since > $worst)
		{
			$worst = $now - $wrong_since;
			# who leads is asked just after the key is read
			$worst_what = sprintf('"%s", then %s led', $value,
				@leaders ? join(',', @leaders) : 'nobody');
		}
	}
	else
	{
		$wrong_name = undef;
	}
	return ($value, $lease, @leaders);
}

# Samples until the key names $want, attached to its lease, and $want alone
# leads (60 s bound).  Returns the seconds from $t0 until then, or undef.
sub follow_until
{
	my ($want, $t0) = @_;
	my $deadline = time() + 60;
	my ($value, $lease, @leaders);
	while (time() < $deadline)
	{
		($value, $lease, @leaders) = sample();
		return time() - $t0
		  if defined $value && $value eq $want && "@leaders" eq $want
		  && $lease eq le_status($by_name{$want})->{lease_id};
		usleep(50_000);
	}
	diag "the key did not come to name $want on its lease: last value "
	  . ($value // '(none)') . ", lease " . ($lease // '-') . ", leaders @leaders";
	return undef;
}

# How the key followed a change of leader triggered at $t0, from the watch:
# when it was deleted and when it named $new, after the trigger, and the
# latter after $new's role became leader.
sub how_it_followed
{
	my ($what, $new, $t0) = @_;
	my $deleted = event_at($t0, 'DELETE');
	my $named   = event_at($t0, 'PUT', $new);
	# the old leader's name went with its release, or with its lease
	ok(defined $deleted && $deleted - $t0 < $bound,
		"$what: the watch saw the old leader's name deleted within $bound s");
	return unless defined $named;
	note sprintf('%s: the watch saw the key deleted %s and naming %s %.3f s after '
		  . 'the trigger, %.3f s after %s\'s role became leader',
		$what, defined $deleted ? sprintf('%.3f s', $deleted - $t0) : 'never',
		$new, $named - $t0, $named - role_since($by_name{$new}), $new);
	return;
}

#
# n1 leads: the key names it, on its lease, and disturbs nothing
#
ok(defined follow_until('n1', time()), 'the key names n1');
my ($value, $lease) = leader_key();
is($value, 'n1', "$key = n1 (the plain node name)");
is($lease, le_status($n1)->{lease_id}, '... attached to n1\'s lease');
is(le_candidate_names($n1), 'n1,n2,n3',
	'leader_candidates(): n1, n2, n3 (the key is no candidate)');
is(scalar($etcd->get_prefix($prefix)), 3, "three keys under $prefix/");
my ($elect_key, $elect_value) = $etcd->elect_leader($prefix);
is($elect_value, 'n1', 'etcdctl elect -l: n1 leads');

# it is not written again at every confirmation (one every TTL/3)
my $before = scalar(watch_events());
usleep(3_000_000);
is(scalar(watch_events()), $before,
	'no event in 3 s of steady leadership (about 4 confirmations)');

#
# leader_resign(): n1 -> n2
#
my $t0 = time();
is($n1->safe_psql('postgres', 'SELECT leader_resign()'), 't',
	'leader_resign() on n1');
ok(defined follow_until('n2', $t0), 'after leader_resign(): the key names n2');
how_it_followed('resign', 'n2', $t0);

# n1 is a deposed primary now: rejoin it, so that it can lead again later
my ($rc, $out, $err) = le_rejoin($n1, $n2, start => 1);
is($rc, 0, 'n1 rejoins as a standby of n2') or diag "$out\n$err";
ok( $n1->poll_query_until('postgres',
		'SELECT leader_name, queue_position FROM leader_status()', 'n2|2'),
	'n1 is queued behind n2 and n3');

#
# a fast stop of the leader: n2 -> n3
#
$t0 = time();
$n2->stop('fast');
$down{n2} = 1;
ok(defined follow_until('n3', $t0), 'after a fast stop of n2: the key names n3');
how_it_followed('fast stop', 'n3', $t0);
ok( $n1->poll_query_until('postgres',
		'SELECT leader_name, queue_position, eligible FROM leader_status()',
		'n3|1|t'),
	'n1 streams from n3 and is next in line');

#
# a crash of the leader: n3 -> n1, once n3's lease expired
#
$t0 = time();
$n3->stop('immediate');
$down{n3} = 1;
ok(defined follow_until('n1', $t0), 'after a crash of n3: the key names n1');
how_it_followed('crash', 'n1', $t0);

#
# changed by hand while n1 leads: repaired within about TTL/3
#
my @changes = (
	[ 'deleted', sub { $etcd->etcdctl('del', $key) } ],
	[ 'rewritten as "bogus"', sub { $etcd->etcdctl('put', $key, 'bogus') } ],
	[ 'rewritten as "n1" without a lease', sub { $etcd->etcdctl('put', $key, 'n1') } ],
	[
		'rewritten as 64 kB of binary starting "n1\0"',
		sub {
			# no newline: the watch file has one line per field
			my $bytes = "n1\0" . join('', map { chr(11 + int(rand(245))) } 1 .. 65536);
			my ($status, $body) = $etcd->http_request('/v3/kv/put',
				    '{"key":"' . encode_base64($key, '')
				  . '","value":"' . encode_base64($bytes, '') . '"}');
			die "put of a binary value failed: $status $body" unless $status == 200;
		}
	]);
my @changed_at;
foreach my $change (@changes)
{
	my ($what, $do) = @$change;
	$t0 = time();
	push @changed_at, $t0;
	$do->();
	my $repaired = follow_until('n1', $t0);
	# the bound is generous: a confirmation follows every renewal (TTL/3)
	ok(defined $repaired && $repaired < 10, "$what: repaired");
}
ok($n1->log_contains(qr/node "n1" writes "\Q$key\E" again: it was deleted/),
	'n1 logs that it writes the deleted key again');
ok( $n1->log_contains(
		qr/writes "\Q$key\E" again: it named someone else\n.*DETAIL:  It named "bogus"/),
	'... and the name it found instead');
ok($n1->log_contains(qr/again: it was not attached to this node's lease/),
	'... and a key not on its lease');

#
# what every sample and the watch saw
#
cmp_ok($worst, '<', $bound,
	"no sample showed the key naming a node that did not lead for $bound s or more")
  or diag "longest: $worst_what";
note sprintf('longest a sample showed the key naming a node that did not lead: %.3f s (%s)',
	$worst, $worst_what);

# the last repair reached etcdctl get: let it reach the watch too
usleep(500_000);
$watch->kill_kill(grace => 1);
my @events = watch_events();
note 'the watch saw: ' . join(', ',
	map {
		my $v = $_->[1] =~ s/[^\x20-\x7e]/?/gr;
		$v = substr($v, 0, 8) . '... (' . length($_->[1]) . ' bytes)' if length($v) > 20;
		$v eq '' ? $_->[0] : "$_->[0] $v"
	} @events);

# each change by hand: its own event, then one write of the leader's
for my $i (0 .. $#changes)
{
	my ($from, $to) = ($changed_at[$i], $changed_at[ $i + 1 ] // 9e9);
	my @in = grep { $_->[2] >= $from && $_->[2] < $to } @events;
	my $repair = $in[1];
	ok(@in == 2 && $repair->[0] eq 'PUT' && $repair->[1] eq 'n1',
		"$changes[$i][0]: one write of n1 repaired it")
	  or diag 'events: ' . join(', ', map { "$_->[0] " . length($_->[1]) } @in);
	note sprintf('%s: the watch saw it repaired %.3f s after the change',
		$changes[$i][0], $repair->[2] - $from)
	  if $repair;
}
my (@leaders_seen, $deleted_between);
my $ok_changes = 1;
foreach my $ev (@events)
{
	my ($type, $v) = @$ev;
	if ($type eq 'DELETE')
	{
		$deleted_between = 1;
		next;
	}
	next unless $by_name{$v};
	next if @leaders_seen && $leaders_seen[-1] eq $v;
	# the old leader's release or lease expiry deleted the key first
	$ok_changes = 0 if @leaders_seen && !$deleted_between;
	push @leaders_seen, $v;
	$deleted_between = 0;
}
is(join(',', @leaders_seen), 'n1,n2,n3,n1', 'the watch saw the leaders n1, n2, n3, n1');
ok($ok_changes, '... the key deleted before each new leader wrote it');

done_testing();
