
# Copyright: part of the leader_election extension's test suite.

=pod

=head1 NAME

EtcdCluster - a throw-away etcd cluster of several members for TAP tests

=head1 SYNOPSIS

  use EtcdCluster;

  my $etcd = EtcdCluster->new(name => 'etcd', members => 3);
  $etcd->start;                       # waits until healthy, with a raft leader
  my $eps = $etcd->url;               # every member's client URL, comma-separated:
                                      # leader_election.endpoints (le_node's default)
  my $m   = $etcd->member_at_url(le_status($n1)->{endpoint});   # index or undef
  my $l   = $etcd->raft_leader;       # index of the member that leads raft
  $etcd->move_raft_leader(2);         # etcdctl move-leader
  $etcd->kill9(0);  $etcd->start_member(0);  $etcd->stop(0);
  $etcd->pause(1);  $etcd->resume(1);        # SIGSTOP / SIGCONT
  $etcd->wait_healthy;                # every running member healthy, one raft leader
  my $out = $etcd->etcdctl('get', '--prefix', '/x');  # through the members that answer
  my $rev = $etcd->revision;  $etcd->compact($rev);
  $etcd->lease_revoke($lease_id);     # decimal, as leader_status() shows it
  my $new = $etcd->replace_member(1); # member remove + member add of a fresh one

The members are EtcdServer objects (t/EtcdServer.pm), so every etcd started
here is killed in EtcdServer's END block, even when the test dies. Each
member logs to tmp_check/log/<test>_<cluster name>_m<i>.log and keeps its
data below the test's tmp directory. etcd's own timing defaults are kept
(--heartbeat-interval 100, --election-timeout 1000): on a loaded two-core
machine shorter ones make raft elect leaders when nothing failed.

An EtcdCluster can be passed wherever the helpers take an EtcdServer for
etcdctl, get_prefix, url (le_node, le_lease_expiry, le_cluster_record, ...).

=cut

package EtcdCluster;

use strict;
use warnings;

use Carp;
use IPC::Run;
use JSON::PP;
use Math::BigInt;
use Time::HiRes qw(usleep time);

use EtcdServer;
use PostgreSQL::Test::Utils;
use Test::More;

=pod

=head1 METHODS

=over

=item EtcdCluster->new(name => 'etcd', members => 3)

Reserves the ports and data directories of every member (EtcdServer->new);
does not start anything.

=cut

sub new
{
	my ($class, %p) = @_;
	my $name = $p{name} // 'etcd';
	my $n    = $p{members} // 3;
	my $self = bless {
		name    => $name,
		token   => "$name-" . $$,
		members => [],
		serial  => $n,
	}, $class;
	push @{ $self->{members} }, EtcdServer->new("${name}_m$_") foreach 0 .. $n - 1;
	my $spec = join(',', map { $_->name . '=' . $_->peer_url } @{ $self->{members} });
	$_->member_of(initial_cluster => $spec, state => 'new', token => $self->{token})
	  foreach @{ $self->{members} };
	return $self;
}

=pod

=item $etcd->members() / $etcd->member($i) / $etcd->count()

The EtcdServer objects of the current members (a removed member is gone from
the list; an added one is at the end), member $i of them, how many there are.

=cut

sub members { return @{ $_[0]->{members} }; }
sub member  { return $_[0]->{members}[ $_[1] ] // croak "no member $_[1]"; }
sub count   { return scalar @{ $_[0]->{members} }; }

=pod

=item $etcd->url() / $etcd->urls()

Every member's client URL, comma-separated (for leader_election.endpoints),
or as a list; members stopped or paused included.

=cut

sub urls { return map { $_->url } @{ $_[0]->{members} }; }
sub url  { return join(',', $_[0]->urls); }

=pod

=item $etcd->member_at_url($url) => index or undef

=cut

sub member_at_url
{
	my ($self, $url) = @_;
	return undef unless defined $url;
	my @m = @{ $self->{members} };
	foreach my $i (0 .. $#m)
	{
		return $i if $m[$i]->url eq $url;
	}
	return undef;
}

=pod

=item $etcd->start()

Starts every member (they find each other through their peer URLs) and waits
until the cluster is healthy (wait_healthy).

=cut

sub start
{
	my $self = shift;
	note "starting etcd cluster $self->{name}: " . $self->url;
	$_->start(wait => 0) foreach @{ $self->{members} };
	$self->wait_healthy;
	return;
}

=pod

=item $etcd->kill9($i) / stop($i) / start_member($i) / pause($i) / resume($i)

SIGKILL, a clean stop (SIGTERM), a start again (same data directory, so it
rejoins as the member it was; does not wait), SIGSTOP, SIGCONT of member $i.

=cut

sub kill9        { $_[0]->member($_[1])->kill9;              return; }
sub stop         { $_[0]->member($_[1])->stop;               return; }
sub start_member { $_[0]->member($_[1])->start(wait => 0);   return; }
sub pause        { $_[0]->member($_[1])->pause;              return; }
sub resume       { $_[0]->member($_[1])->resume;             return; }

=pod

=item $etcd->pause_all() / $etcd->resume_all()

SIGSTOP (SIGCONT) every running member, as close together as a loop of
kill() gets.

=cut

sub pause_all
{
	my $self = shift;
	my @pids = map { $_->pid } grep { $_->is_running } @{ $self->{members} };
	note "pausing every member of etcd cluster $self->{name} (SIGSTOP)";
	kill 'STOP', @pids;
	$_->{paused} = 1 foreach grep { $_->is_running } @{ $self->{members} };
	return;
}

sub resume_all
{
	my $self = shift;
	my @pids = map { $_->pid } grep { $_->is_running } @{ $self->{members} };
	note "resuming every member of etcd cluster $self->{name} (SIGCONT)";
	kill 'CONT', @pids;
	$_->{paused} = 0 foreach @{ $self->{members} };
	return;
}

=pod

=item $etcd->live_urls()

Client URLs of the members that run and are not paused: the ones etcdctl
talks to (a paused member would make it wait for its command timeout).

=cut

sub live_urls
{
	my $self = shift;
	return map { $_->url }
	  grep { $_->is_running && !$_->is_paused } @{ $self->{members} };
}

=pod

=item $etcd->etcdctl_result(@args) => ($rc, $stdout, $stderr)

=item $etcd->etcdctl(@args) => $stdout (dies unless it succeeds)

C<ETCDCTL_API=3 etcdctl --endpoints=<live members> @args>, bounded by 30 s.

=item $etcd->etcdctl_at($i, @args) => $stdout

The same against member $i only.

=cut

sub _run_etcdctl
{
	my ($endpoints, @args) = @_;
	my ($out, $err) = ('', '');
	local $ENV{ETCDCTL_API} = 3;
	my @cmd = (
		'etcdctl', "--endpoints=$endpoints",
		'--dial-timeout=2s', '--command-timeout=5s', @args);
	my $ok = eval {
		IPC::Run::run(\@cmd, '<', \undef, '>', \$out, '2>', \$err,
			IPC::Run::timeout(30));
		1;
	};
	return (-1, $out, "$err$@") unless $ok;
	return ($? >> 8, $out, $err);
}

sub etcdctl_result
{
	my ($self, @args) = @_;
	my @live = $self->live_urls;
	return (-1, '', 'no member of the cluster is running') unless @live;
	return _run_etcdctl(join(',', @live), @args);
}

sub etcdctl
{
	my ($self, @args) = @_;
	my ($rc, $out, $err) = $self->etcdctl_result(@args);
	croak "etcdctl @args failed (rc $rc): $err" if $rc != 0;
	return $out;
}

sub etcdctl_at
{
	my ($self, $i, @args) = @_;
	my ($rc, $out, $err) = _run_etcdctl($self->member($i)->url, @args);
	croak "etcdctl @args at member $i failed (rc $rc): $err" if $rc != 0;
	return $out;
}

=pod

=item $etcd->get_prefix($prefix) => list of hashes

As EtcdServer::get_prefix, through the live members.

=cut

sub get_prefix
{
	my ($self, $prefix) = @_;
	return EtcdServer::get_prefix($self, $prefix);
}

=pod

=item $etcd->status() => list (one per member, in member order) of hashes or undef

C<etcdctl endpoint status -w json> of each running, unpaused member (undef
for the others and for those that do not answer): { member_id, leader,
raft_term, revision } as lowercase hex (ids) and decimal strings.

=cut

sub _hex
{
	my ($n) = @_;
	return undef unless defined $n;
	my $h = Math::BigInt->new("$n")->as_hex;
	$h =~ s/^0x//;
	return $h;
}

sub status
{
	my $self = shift;
	my @res;
	foreach my $m (@{ $self->{members} })
	{
		if (!$m->is_running || $m->is_paused)
		{
			push @res, undef;
			next;
		}
		my ($rc, $out) =
		  _run_etcdctl($m->url, '--command-timeout=2s', 'endpoint', 'status', '-w', 'json');
		my $list = $rc == 0 ? eval { JSON::PP->new->allow_bignum->decode($out) } : undef;
		my $st = ref $list eq 'ARRAY' && @$list ? $list->[0]{Status} : undef;
		if (!$st)
		{
			push @res, undef;
			next;
		}
		push @res,
		  {
			member_id => _hex($st->{header}{member_id}),
			leader    => _hex($st->{leader}),
			raft_term => "" . ($st->{raftTerm} // 0),
			revision  => "" . ($st->{header}{revision} // 0),
		  };
	}
	return @res;
}

=pod

=item $etcd->raft_leader() => index or undef

The member that every answering member names as raft leader (undef if they
disagree, none answers, or the leader is not a member of this object).

=cut

sub raft_leader
{
	my $self = shift;
	my @st = $self->status;
	my %leader;
	my %index;
	foreach my $i (0 .. $#st)
	{
		next unless $st[$i];
		$index{ $st[$i]{member_id} } = $i;
		$leader{ $st[$i]{leader} } = 1
		  if defined $st[$i]{leader} && $st[$i]{leader} ne '0';
	}
	return undef unless keys %leader == 1;
	my ($id) = keys %leader;
	return $index{$id};
}

=pod

=item $etcd->member_id($i) => hex id of member $i (from its endpoint status)

=cut

sub member_id
{
	my ($self, $i) = @_;
	return $self->{ids}{ $self->member($i)->name } //= do {
		my ($rc, $out, $err) =
		  _run_etcdctl($self->member($i)->url, 'endpoint', 'status', '-w', 'json');
		croak "endpoint status of member $i failed: $err" if $rc != 0;
		_hex(JSON::PP->new->allow_bignum->decode($out)->[0]{Status}{header}{member_id});
	};
}

=pod

=item $etcd->wait_healthy($timeout_s = 60)

Waits until every running, unpaused member answers `etcdctl endpoint health`
(a write through raft: it needs quorum) and all of them name the same raft
leader. Dies with the tail of every member's log otherwise.

=cut

sub wait_healthy
{
	my ($self, $timeout) = @_;
	$timeout //= 60;
	my $deadline = time() + $timeout;
	while (1)
	{
		my @live = $self->live_urls;
		my ($rc, $out, $err) =
		  @live
		  ? _run_etcdctl(join(',', @live), '--command-timeout=2s', 'endpoint', 'health')
		  : (-1, '', 'no member runs');
		return 1 if $rc == 0 && defined $self->raft_leader;
		if (time() > $deadline)
		{
			my $logs = join('',
				map { "--- " . $_->logfile . "\n" . EtcdServer::_tail($_->logfile) }
				  @{ $self->{members} });
			croak "etcd cluster $self->{name} not healthy after ${timeout}s: $err\n$logs";
		}
		usleep(100_000);
	}
}

=pod

=item $etcd->wait_raft_leader($timeout_s = 60) => index

Waits until the running members agree on a raft leader; returns it (dies
after the timeout).

=cut

sub wait_raft_leader
{
	my ($self, $timeout) = @_;
	$timeout //= 60;
	my $deadline = time() + $timeout;
	while (1)
	{
		my $l = $self->raft_leader;
		return $l if defined $l;
		croak "etcd cluster $self->{name} has no raft leader after ${timeout}s"
		  if time() > $deadline;
		usleep(100_000);
	}
}

=pod

=item $etcd->move_raft_leader($i)

Makes member $i the raft leader (`etcdctl move-leader`, sent to the current
leader) and waits until every member says so.

=cut

sub move_raft_leader
{
	my ($self, $i) = @_;
	my $deadline = time() + 60;
	while (1)
	{
		my $l = $self->wait_raft_leader;
		return if $l == $i;
		my ($rc, $out, $err) = _run_etcdctl($self->member($l)->url,
			'move-leader', $self->member_id($i));
		note "move-leader to member $i: " . ($rc == 0 ? $out : $err);
		croak "could not make member $i the raft leader: $err" if time() > $deadline;
		usleep(500_000);
	}
}

=pod

=item $etcd->revision() => the cluster's current revision (decimal string)

=item $etcd->compact($revision)

C<etcdctl compaction $revision>.

=cut

sub revision
{
	my $self = shift;
	# the header of any read carries it
	my $out = $self->etcdctl('get', '/etcd_cluster_pm_no_such_key', '-w', 'json');
	my $r = JSON::PP->new->allow_bignum->decode($out);
	return "" . $r->{header}{revision};
}

sub compact
{
	my ($self, $rev) = @_;
	note "compacting etcd cluster $self->{name} at revision $rev";
	return $self->etcdctl('compaction', $rev);
}

=pod

=item $etcd->lease_revoke($lease_id)

C<etcdctl lease revoke> of a lease given in decimal (leader_status().lease_id).

=cut

sub lease_revoke
{
	my ($self, $lease_id) = @_;
	my $hex = Math::BigInt->new("$lease_id")->as_hex;
	$hex =~ s/^0x//;
	note "revoking lease $hex";
	return $self->etcdctl('lease', 'revoke', $hex);
}

=pod

=item $etcd->replace_member($i) => index of the new member

Removes member $i from the cluster (`etcdctl member remove`; a removed etcd
exits by itself, and is stopped if it did not), then adds a fresh member
(`etcdctl member add`, new ports, an empty data directory) and starts it with
--initial-cluster-state existing. The new member is appended to members();
the removed one leaves the list, so later indexes shift down. Waits until
the cluster is healthy. etcd refuses a remove while it deems the cluster
unhealthy (just after a raft election): that is retried for 30 s.

=cut

sub replace_member
{
	my ($self, $i) = @_;
	my $old = $self->member($i);
	my $id  = $self->member_id($i);
	my $deadline = time() + 30;
	while (1)
	{
		my ($rc, $out, $err) = $self->etcdctl_result('member', 'remove', $id);
		last if $rc == 0;
		croak "member remove $id failed: $err" if time() > $deadline;
		usleep(500_000);
	}
	note "removed member $i (" . $old->name . ", $id) from etcd cluster $self->{name}";
	splice(@{ $self->{members} }, $i, 1);
	$old->stop;

	my $new = EtcdServer->new("$self->{name}_m" . $self->{serial}++);
	my $spec = join(',',
		map { $_->name . '=' . $_->peer_url } @{ $self->{members} }, $new);
	# raft drops a configuration change proposed before a new raft leader
	# applied the last one (the remove may just have caused an election):
	# etcdctl then times out, and trying again is right
	$deadline = time() + 30;
	while (1)
	{
		my ($rc, $out, $err) = $self->etcdctl_result('member', 'add', $new->name,
			'--peer-urls=' . $new->peer_url);
		last if $rc == 0 || $err =~ /already exists/i;
		croak "member add " . $new->name . " failed: $err" if time() > $deadline;
		note "member add " . $new->name . " failed, trying again: $err";
		usleep(500_000);
	}
	$new->member_of(initial_cluster => $spec, state => 'existing', token => $self->{token});
	push @{ $self->{members} }, $new;
	$new->start(wait => 0);
	note "added member " . $new->name . " at " . $new->url;
	$self->wait_healthy;
	return $#{ $self->{members} };
}

=pod

=back

=cut

1;
