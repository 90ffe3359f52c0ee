
# Copyright: part of the leader_election extension's test suite.

=pod

=head1 NAME

EtcdServer - a throw-away etcd for TAP tests: a single-member cluster, or one member of a cluster (t/EtcdCluster.pm)

=head1 SYNOPSIS

  use EtcdServer;

  my $etcd = EtcdServer->new('etcd');    # picks free loopback ports
  $etcd->start;                          # waits until it is healthy
  my $out = $etcd->etcdctl('get', '--prefix', '/leader_election/x');
  $etcd->pause;  $etcd->resume;          # SIGSTOP / SIGCONT
  $etcd->stop;                           # SIGTERM, wait

  # a member of a cluster (t/EtcdCluster.pm builds whole clusters)
  my $m = EtcdServer->new('m0');
  $m->member_of(initial_cluster => "m0=" . $m->peer_url . ",m1=...",
      state => 'new', token => 'tap-cluster');
  $m->start(wait => 0);

  # an `etcdctl elect` candidate in the background
  my $cand = $etcd->start_elect('/leader_election/x', 'ext');
  $cand->wait_leading(30);
  $cand->stop;                           # SIGINT: etcdctl resigns

Every etcd started here is killed in an END block, even when the test dies.

=cut

package EtcdServer;

use strict;
use warnings;

use Carp;
use File::Basename qw(basename);
use IPC::Run;
use JSON::PP;
use MIME::Base64 qw(decode_base64);
use POSIX qw(WNOHANG);
use Time::HiRes qw(usleep time);

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my @all_servers;
my @all_elects;

=pod

=head1 METHODS

=over

=item EtcdServer->new($name)

Reserves a client and a peer port on 127.0.0.1 and a data directory below
the test's tmp_check directory. Does not start anything.

=cut

sub new
{
	my ($class, $name) = @_;
	$name = 'etcd' unless defined $name;

	my $test = basename($0);
	$test =~ s/\.[^.]+$//;

	my $self = bless {
		name        => $name,
		client_port => PostgreSQL::Test::Cluster::get_free_port(),
		peer_port   => PostgreSQL::Test::Cluster::get_free_port(),
		dir         => PostgreSQL::Test::Utils::tempdir("etcd_$name"),
		logfile     => "$PostgreSQL::Test::Utils::log_path/${test}_$name.log",
		pid         => undef,
		paused      => 0,
	}, $class;
	push @all_servers, $self;
	return $self;
}

=pod

=item $etcd->member_of(initial_cluster => $spec, state => 'new', token => $token)

Makes this server a member of a cluster: start() then passes
--initial-cluster $spec (name=peer URL pairs of every member, this one
included), --initial-cluster-state $state ('new' for the members of a new
cluster, 'existing' for one added with `etcdctl member add`) and, if given,
--initial-cluster-token $token. Without member_of() the server is a cluster
of its own. Call before start().

=cut

sub member_of
{
	my ($self, %p) = @_;
	croak 'member_of needs initial_cluster' unless defined $p{initial_cluster};
	$self->{initial_cluster}       = $p{initial_cluster};
	$self->{initial_cluster_state} = $p{state} // 'new';
	$self->{initial_cluster_token} = $p{token};
	return;
}

=pod

=item $etcd->url()

The client URL, e.g. C<http://127.0.0.1:54321>. Valid before start().

=cut

sub url
{
	my $self = shift;
	return "http://127.0.0.1:$self->{client_port}";
}

sub client_port { return $_[0]->{client_port}; }
sub logfile     { return $_[0]->{logfile}; }
sub pid         { return $_[0]->{pid}; }
sub name        { return $_[0]->{name}; }

=pod

=item $etcd->peer_url()

The peer URL, e.g. C<http://127.0.0.1:54322>. Valid before start().

=item $etcd->is_running() / $etcd->is_paused()

Whether the process was started and not stopped or killed since; whether it
is paused (SIGSTOP) now.

=cut

sub peer_url    { return "http://127.0.0.1:$_[0]->{peer_port}"; }
sub is_running  { return defined $_[0]->{pid} ? 1 : 0; }
sub is_paused   { return defined $_[0]->{pid} && $_[0]->{paused} ? 1 : 0; }

=pod

=item $etcd->start(wait => 1)

Starts etcd in the background (log: tmp_check/log/<test>_<name>.log) and, unless
wait => 0, waits up to 60 s until `etcdctl endpoint health` succeeds. The data
directory is kept across stop/start.

=cut

sub start
{
	my ($self, %params) = @_;
	croak "etcd $self->{name} is already running" if defined $self->{pid};

	my $peer = $self->peer_url;
	my @cmd  = (
		'etcd',
		'--name',                        $self->{name},
		'--data-dir',                    "$self->{dir}/data",
		'--listen-client-urls',          $self->url,
		'--advertise-client-urls',       $self->url,
		'--listen-peer-urls',            $peer,
		'--initial-advertise-peer-urls', $peer,
		'--initial-cluster', $self->{initial_cluster} // "$self->{name}=$peer",
		'--initial-cluster-state', $self->{initial_cluster_state} // 'new',
		'--logger',      'zap',
		'--log-outputs', 'stderr');
	push @cmd, '--initial-cluster-token', $self->{initial_cluster_token}
	  if defined $self->{initial_cluster_token};

	note "starting etcd $self->{name} on " . $self->url;
	my $pid = fork();
	croak "fork failed: $!" unless defined $pid;
	if ($pid == 0)
	{
		# child: never return into the test script (no END blocks here)
		open(STDIN, '<', '/dev/null') or POSIX::_exit(127);
		open(STDOUT, '>>', $self->{logfile}) or POSIX::_exit(127);
		open(STDERR, '>&', \*STDOUT) or POSIX::_exit(127);
		exec(@cmd) or POSIX::_exit(127);
	}
	$self->{pid}    = $pid;
	$self->{paused} = 0;

	$params{wait} = 1 unless defined $params{wait};
	$self->wait_healthy if $params{wait};
	return;
}

=pod

=item $etcd->wait_healthy($timeout_s = 60)

Polls `etcdctl endpoint health`; dies (with the tail of the etcd log) when etcd
exits or does not become healthy in time.

=cut

sub wait_healthy
{
	my ($self, $timeout) = @_;
	$timeout = 60 unless defined $timeout;
	my $deadline = time() + $timeout;

	while (1)
	{
		if (!defined $self->{pid} || waitpid($self->{pid}, WNOHANG) != 0)
		{
			$self->{pid} = undef;
			croak "etcd $self->{name} exited during startup; log:\n"
			  . _tail($self->{logfile});
		}
		my ($rc) = $self->etcdctl_result('endpoint', 'health');
		return 1 if $rc == 0;
		croak "etcd $self->{name} not healthy after ${timeout}s; log:\n"
		  . _tail($self->{logfile})
		  if time() > $deadline;
		usleep(100_000);
	}
}

=pod

=item $etcd->stop()

SIGTERM (after SIGCONT, in case it is paused), wait up to 15 s, then SIGKILL.

=item $etcd->kill9()

SIGKILL and reap.

=cut

sub stop
{
	my $self = shift;
	return unless defined $self->{pid};
	note "stopping etcd $self->{name}";
	kill 'CONT', $self->{pid};
	kill 'TERM', $self->{pid};
	my $deadline = time() + 15;
	while (waitpid($self->{pid}, WNOHANG) == 0)
	{
		if (time() > $deadline)
		{
			kill 'KILL', $self->{pid};
			waitpid($self->{pid}, 0);
			last;
		}
		usleep(50_000);
	}
	$self->{pid}    = undef;
	$self->{paused} = 0;
	return;
}

sub kill9
{
	my $self = shift;
	return unless defined $self->{pid};
	note "killing etcd $self->{name}";
	kill 'KILL', $self->{pid};
	waitpid($self->{pid}, 0);
	$self->{pid}    = undef;
	$self->{paused} = 0;
	return;
}

=pod

=item $etcd->pause() / $etcd->resume()

SIGSTOP / SIGCONT the etcd process: connections stay open but nothing answers.

=cut

sub pause
{
	my $self = shift;
	croak "etcd $self->{name} is not running" unless defined $self->{pid};
	note "pausing etcd $self->{name} (SIGSTOP)";
	kill 'STOP', $self->{pid};
	$self->{paused} = 1;
	return;
}

sub resume
{
	my $self = shift;
	croak "etcd $self->{name} is not running" unless defined $self->{pid};
	note "resuming etcd $self->{name} (SIGCONT)";
	kill 'CONT', $self->{pid};
	$self->{paused} = 0;
	return;
}

=pod

=item $etcd->etcdctl_result(@args) => ($rc, $stdout, $stderr)

Runs `ETCDCTL_API=3 etcdctl --endpoints=<url> @args` with a 30 s bound.

=item $etcd->etcdctl(@args) => $stdout

Same, but dies unless it succeeds.

=cut

sub _etcdctl_cmd
{
	my ($self, @args) = @_;
	return [
		'etcdctl',              '--endpoints=' . $self->url,
		'--dial-timeout=2s',    '--command-timeout=5s',
		@args
	];
}

sub etcdctl_result
{
	my ($self, @args) = @_;
	my ($out, $err) = ('', '');
	local $ENV{ETCDCTL_API} = 3;
	my $ok = eval {
		IPC::Run::run($self->_etcdctl_cmd(@args),
			'<', \undef, '>', \$out, '2>', \$err,
			IPC::Run::timeout(30));
		1;
	};
	return (-1, $out, "$err$@") unless $ok;
	return ($? >> 8, $out, $err);
}

sub etcdctl
{
	my ($self, @args) = @_;
	my ($rc, $out, $err) = $self->etcdctl_result(@args);
	croak "etcdctl @args failed (rc $rc): $err" if $rc != 0;
	return $out;
}

=pod

=item $etcd->get_prefix($prefix) => list of hashes

Reads `get --prefix <prefix>/` as JSON and returns, sorted by create revision,
hashes { key, value, create_revision, mod_revision, lease } with key and value
decoded and lease as a decimal integer (0 when the key has no lease).

=cut

sub get_prefix
{
	my ($self, $prefix) = @_;
	my $json = $self->etcdctl('get', '--prefix', "$prefix/", '-w', 'json');
	my $resp = JSON::PP->new->allow_bignum->decode($json);
	my @kvs;
	foreach my $kv (@{ $resp->{kvs} || [] })
	{
		push @kvs,
		  {
			key             => decode_base64($kv->{key}),
			value           => decode_base64($kv->{value} // ''),
			create_revision => "" . ($kv->{create_revision} // 0),
			mod_revision    => "" . ($kv->{mod_revision} // 0),
			lease           => "" . ($kv->{lease} // 0),
		  };
	}
	my @sorted = sort { $a->{create_revision} <=> $b->{create_revision} } @kvs;
	return @sorted;    # in scalar context: the number of keys
}

=pod

=item $etcd->elect_leader($prefix, $timeout_s = 15) => ($key, $value)

Runs `etcdctl elect -l <prefix>` (which observes forever), reads the first
proclamation (two lines: key and value) and stops it. Returns () when there is
no leader within the bound.

=cut

sub elect_leader
{
	my ($self, $prefix, $timeout) = @_;
	$timeout = 15 unless defined $timeout;
	my ($out, $err) = ('', '');
	local $ENV{ETCDCTL_API} = 3;
	my $h = IPC::Run::start($self->_etcdctl_cmd('elect', '-l', $prefix),
		'<', \undef, '>', \$out, '2>', \$err);
	my $deadline = time() + $timeout;
	while ($out !~ /\A[^\n]*\n[^\n]*\n/ && time() < $deadline && $h->pumpable)
	{
		$h->pump_nb;
		usleep(20_000);
	}
	$h->kill_kill(grace => 2);
	if ($out =~ /\A([^\n]*)\n([^\n]*)\n/)
	{
		return ($1, $2);
	}
	diag "etcdctl elect -l $prefix gave no leader: stdout '$out' stderr '$err'";
	return ();
}

=pod

=item $etcd->start_elect($prefix, $value) => EtcdServer::Elect

Starts `etcdctl elect <prefix> <value>` in the background: a candidate of
etcd's own election recipe. See EtcdServer::Elect for its methods.

=cut

sub start_elect
{
	my ($self, $prefix, $value) = @_;
	my $el = bless { out => '', err => '', name => $value }, 'EtcdServer::Elect';
	local $ENV{ETCDCTL_API} = 3;
	note "starting etcdctl elect $prefix $value";
	$el->{h} = IPC::Run::start($self->_etcdctl_cmd('elect', $prefix, $value),
		'<', \undef, '>', \$el->{out}, '2>', \$el->{err});
	push @all_elects, $el;
	return $el;
}

sub _tail
{
	my $file = shift;
	return '(no log)' unless -f $file;
	my @lines = split /\n/, PostgreSQL::Test::Utils::slurp_file($file);
	splice(@lines, 0, @lines - 40) if @lines > 40;
	return join("\n", @lines) . "\n";
}

END
{
	my $exit_code = $?;
	foreach my $el (@all_elects)
	{
		eval { $el->kill; };
	}
	foreach my $etcd (@all_servers)
	{
		next unless defined $etcd->{pid};
		kill 'CONT', $etcd->{pid};
		kill 'KILL', $etcd->{pid};
		waitpid($etcd->{pid}, 0);
		$etcd->{pid} = undef;
	}
	$? = $exit_code;
}

=pod

=back

=head1 EtcdServer::Elect

=over

=item $el->wait_leading($timeout_s) => bool

Waits until etcdctl prints its key and value, which it does once elected.

=item $el->is_leading() => bool

Non-blocking version of the same.

=item $el->key()

The key etcdctl printed when it became leader (undef before).

=item $el->stop()

SIGINT: etcdctl resigns (deletes its key) if it leads, or gives up its
campaign (also deleting its key), then exits. Waits up to 10 s.

=item $el->kill()

SIGKILL: the key stays until its 60 s lease expires.

=back

=cut

package EtcdServer::Elect;

use strict;
use warnings;
use Time::HiRes qw(usleep time);

sub is_leading
{
	my $self = shift;
	$self->{h}->pump_nb if $self->{h}->pumpable;
	return $self->{out} =~ /\A[^\n]*\n\Q$self->{name}\E\n/ ? 1 : 0;
}

sub wait_leading
{
	my ($self, $timeout) = @_;
	my $deadline = time() + $timeout;
	while (time() < $deadline)
	{
		return 1 if $self->is_leading;
		return 0 unless $self->{h}->pumpable;
		usleep(20_000);
	}
	return $self->is_leading;
}

sub key
{
	my $self = shift;
	return $self->{out} =~ /\A([^\n]*)\n/ ? $1 : undef;
}

sub output { return $_[0]->{out} . $_[0]->{err}; }

sub stop
{
	my $self = shift;
	return if $self->{done};
	$self->{h}->signal('INT');
	my $deadline = time() + 10;
	while ($self->{h}->pumpable && time() < $deadline)
	{
		$self->{h}->pump_nb;
		usleep(20_000);
	}
	$self->{h}->kill_kill(grace => 1);
	$self->{done} = 1;
	return;
}

sub kill
{
	my $self = shift;
	return if $self->{done};
	$self->{h}->kill_kill(grace => 0);
	$self->{done} = 1;
	return;
}

1;
