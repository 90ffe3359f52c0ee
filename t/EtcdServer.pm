
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

  # TLS (certificates from t/make-test-certs.sh) and client certificates
  my $certs = EtcdServer::make_test_certs();   # a directory
  my $tls = EtcdServer->new('etcd', tls_dir => $certs);
  $tls->start;                           # https://127.0.0.1:<port>
  # users: root, and pgnode with readwrite on /leader_election/x*
  $tls->add_user('pgnode', 'secret', prefix => '/leader_election/x');
  $tls->enable_auth;                     # etcdctl goes on as root
  my $n = $tls->authenticate_count;      # from etcd's /metrics

Every etcd started here is killed in an END block, even when the test dies.

=cut

package EtcdServer;

use strict;
use warnings;

use Carp;
use File::Basename qw(basename dirname);
use File::Spec;
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

=item EtcdServer->new($name, %options)

Reserves a client and a peer port on 127.0.0.1 and a data directory below
the test's tmp_check directory. Does not start anything. Options (all for
TLS on the client URL; without tls_dir etcd speaks plain HTTP):

  tls_dir          a directory made by make_test_certs(): etcd serves
                   https with <server_cert>.crt/.key, and etcdctl trusts
                   ca.crt
  server_cert      the name of etcd's certificate in tls_dir (default
                   'server'; 'expired' and 'wronghost' make an etcd that
                   no client should trust)
  client_cert_auth 1 (default): --client-cert-auth with --trusted-ca-file
                   ca.crt; etcdctl and curl present client.crt/.key.
                   0: no client certificates (etcd asks for none)
  auth_token       etcd's --auth-token (default: etcd's, 'simple'); see
                   jwt_auth_token() and set_auth_token()

etcdctl skips verifying the server's certificate when server_cert is not
'server' (it still speaks TLS).

=cut

sub new
{
	my ($class, $name, %opts) = @_;
	$name = 'etcd' unless defined $name;
	foreach my $o (keys %opts)
	{
		croak "EtcdServer->new: unknown option $o"
		  unless $o =~ /^(tls_dir|server_cert|client_cert_auth|auth_token)$/;
	}

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
	$self->_init_security(%opts);
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
	my $scheme = $self->{tls} ? 'https' : 'http';
	return "$scheme://127.0.0.1:$self->{client_port}";
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
		'--log-outputs', 'stderr',
		$self->_server_security_args);
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
		$self->_etcdctl_security_args,
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

=pod

=item EtcdServer::make_test_certs() => directory

Runs t/make-test-certs.sh into a new temporary directory and returns it: a CA
(ca.crt), etcd's certificate for 127.0.0.1 (server.crt), client certificates
(client.crt, client2.crt), and the bad ones (expired.crt, wronghost.crt, a
second CA ca2.crt, other.key that matches no certificate); see the script.
Keys are mode 0600, owned by the user running the test (the one running
postgres). Dies if the script fails.

=cut

sub make_test_certs
{
	my $dir    = PostgreSQL::Test::Utils::tempdir('certs');
	my $script = File::Spec->catfile(dirname(__FILE__), 'make-test-certs.sh');
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'bash', $script, $dir ],
		'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(60))
	  or croak "make-test-certs.sh failed: $out$err";
	return $dir;
}

# TLS options of new(); auth starts disabled.
sub _init_security
{
	my ($self, %opts) = @_;
	$self->{auth_token} = $opts{auth_token};
	return unless defined $opts{tls_dir};
	$self->{tls} = {
		dir              => $opts{tls_dir},
		server_cert      => $opts{server_cert} // 'server',
		client_cert_auth => $opts{client_cert_auth} // 1,
	};
	croak "EtcdServer->new: no $opts{tls_dir}/$self->{tls}{server_cert}.crt"
	  unless -f "$opts{tls_dir}/$self->{tls}{server_cert}.crt";
	return;
}

# etcd's flags for TLS on the client URL (the peer URL stays plain: one member).
sub _server_security_args
{
	my $self = shift;
	my @token = defined $self->{auth_token} ? ('--auth-token', $self->{auth_token}) : ();
	my $tls  = $self->{tls} or return @token;
	my $d    = $tls->{dir};
	my @args = (@token,
		'--cert-file', "$d/$tls->{server_cert}.crt",
		'--key-file',  "$d/$tls->{server_cert}.key");
	push @args, '--trusted-ca-file', "$d/ca.crt", '--client-cert-auth'
	  if $tls->{client_cert_auth};
	return @args;
}

# etcdctl's flags for TLS, client certificates and the root user.
sub _etcdctl_security_args
{
	my $self = shift;
	my @args;
	if (my $tls = $self->{tls})
	{
		push @args, "--cacert=$tls->{dir}/ca.crt";
		push @args, "--cert=$tls->{dir}/client.crt", "--key=$tls->{dir}/client.key"
		  if $tls->{client_cert_auth};
		push @args, '--insecure-skip-tls-verify'
		  if $tls->{server_cert} ne 'server';
	}
	push @args, "--user=root:$self->{root_password}"
	  if defined $self->{root_password};
	return @args;
}

# curl's flags for the same.
sub _curl_security_args
{
	my $self = shift;
	my $tls  = $self->{tls} or return ();
	my @args = ('--cacert', "$tls->{dir}/ca.crt");
	push @args, '--cert', "$tls->{dir}/client.crt", '--key', "$tls->{dir}/client.key"
	  if $tls->{client_cert_auth};
	push @args, '--insecure' if $tls->{server_cert} ne 'server';
	return @args;
}

=pod

=item $etcd->tls_dir() / $etcd->tls_file($name)

The certificate directory given to new() (undef without TLS), and the path of
a file in it, e.g. C<< $etcd->tls_file('ca.crt') >>.

=cut

sub tls_dir { return $_[0]->{tls} ? $_[0]->{tls}{dir} : undef; }

sub tls_file
{
	my ($self, $name) = @_;
	croak "etcd $self->{name} has no TLS" unless $self->{tls};
	return "$self->{tls}{dir}/$name";
}

=pod

=item $etcd->add_user($name, $password, prefix => $prefix, perm => 'readwrite')

Creates an etcd user (`etcdctl user add`). With prefix, also a role
"<name>-role" with permission perm (read, write or readwrite) on every key
that starts with $prefix (`role grant-permission --prefix=true`: this covers
the election's keys <prefix>/..., <prefix>.term and <prefix>.record alike),
granted to the user. Without prefix the user has no permission at all.
Before enable_auth() this runs without a user, afterwards as root.

=item $etcd->enable_auth($root_password)

Creates the root user (password: the one given, or a random one) with the
root role and runs `etcdctl auth enable`; every later etcdctl call of this
object (and curl of http_request) authenticates as root. Auth is kept in the
data directory across stop/start.

=item $etcd->change_password($name, $password)

`etcdctl user passwd` (as root once auth is enabled). etcd drops the user's
simple tokens and moves the auth revision.

=item $etcd->root_password()

=cut

sub add_user
{
	my ($self, $name, $password, %p) = @_;
	croak "add_user: a password with ':' cannot go through etcdctl"
	  if $password =~ /:/;
	$self->etcdctl('user', 'add', "$name:$password", '--interactive=false');
	if (defined $p{prefix})
	{
		my $role = "$name-role";
		$self->etcdctl('role', 'add', $role);
		$self->etcdctl('role', 'grant-permission', $role, '--prefix=true',
			$p{perm} // 'readwrite', $p{prefix});
		$self->etcdctl('user', 'grant-role', $name, $role);
	}
	return;
}

sub enable_auth
{
	my ($self, $root_password) = @_;
	$root_password //= 'root-' . join('', map { ('a' .. 'z')[ int(rand(26)) ] } 1 .. 12);
	$self->etcdctl('user', 'add', "root:$root_password", '--interactive=false');
	# etcd 3.4 refuses `auth enable` unless root holds the root role
	$self->etcdctl('role', 'add', 'root');
	$self->etcdctl('user', 'grant-role', 'root', 'root');
	$self->etcdctl('auth', 'enable');
	$self->{root_password} = $root_password;
	note "etcd $self->{name}: auth enabled";
	return;
}

sub change_password
{
	my ($self, $name, $password) = @_;
	my ($out, $err) = ('', '');
	local $ENV{ETCDCTL_API} = 3;
	# without --interactive etcdctl reads the new password from stdin
	my $ok = eval {
		IPC::Run::run(
			$self->_etcdctl_cmd('user', 'passwd', $name, '--interactive=false'),
			'<', \"$password\n", '>', \$out, '2>', \$err,
			IPC::Run::timeout(30));
	};
	croak "etcdctl user passwd $name failed: $err$@" unless $ok;
	return;
}

sub root_password { return $_[0]->{root_password}; }

=pod

=item EtcdServer::jwt_auth_token($certs_dir, $ttl) => string

A value for the auth_token option: JWT tokens signed with jwt.key of a
make_test_certs() directory, valid for $ttl (e.g. '10s'; default: etcd's, 5
minutes). Unlike etcd's default simple tokens, a JWT carries the auth
revision it was issued at: after any auth change etcd refuses it with
"revision of auth store is old" (simple tokens stay valid); once expired it
is an "invalid auth token". A restart does not invalidate JWTs (it forgets
every simple token).

=item $etcd->set_auth_token($value)

Changes --auth-token for the next start (undef: etcd's default).

=cut

sub jwt_auth_token
{
	my ($dir, $ttl) = @_;
	my $v = "jwt,pub-key=$dir/jwt.pub,priv-key=$dir/jwt.key,sign-method=RS256";
	$v .= ",ttl=$ttl" if defined $ttl;
	return $v;
}

sub set_auth_token
{
	my ($self, $value) = @_;
	$self->{auth_token} = $value;
	return;
}

=pod

=item $etcd->http_request($path, $body) => ($http_status, $body)

One request with curl to the client URL (POST of $body when given, else GET),
with the TLS settings of etcdctl (no etcd user: send a token yourself in a
JSON gateway request if you need one). Status 0 when no answer came.

=item $etcd->metrics() => text

GET /metrics (Prometheus text).

=item $etcd->authenticate_count($grpc_code) => number

Authenticate calls etcd's gRPC server handled since etcd started
(grpc_server_handled_total of method Authenticate), of every gRPC code or
only of $grpc_code ('OK'; a wrong password is 'InvalidArgument'). The JSON
gateway's /v3/auth/authenticate counts here, and so does every etcdctl call
of this object once auth is enabled (it logs in as root).

=cut

sub http_request
{
	my ($self, $path, $body) = @_;
	my ($out, $err) = ('', '');
	my @cmd = ('curl', '-s', '-m', '10', '-w', '\n%{http_code}',
		$self->_curl_security_args);
	push @cmd, '-d', $body if defined $body;
	push @cmd, $self->url . $path;
	eval {
		IPC::Run::run(\@cmd, '<', \undef, '>', \$out, '2>', \$err,
			IPC::Run::timeout(30));
		1;
	} or return (0, "$err$@");
	return (0, $out . $err) unless $out =~ s/\n(\d+)\z//;
	return ($1, $out);
}

sub metrics
{
	my $self = shift;
	my ($status, $body) = $self->http_request('/metrics');
	croak "GET /metrics of etcd $self->{name} failed: $status $body"
	  unless $status == 200;
	return $body;
}

sub authenticate_count
{
	my ($self, $code) = @_;
	my $n = 0;
	foreach my $line (split /\n/, $self->metrics)
	{
		next
		  unless $line =~ /^grpc_server_handled_total\{([^}]*)\}\s+(\S+)/;
		my ($labels, $value) = ($1, $2);
		next unless $labels =~ /grpc_method="Authenticate"/;
		next if defined $code && $labels !~ /grpc_code="\Q$code\E"/;
		$n += $value;
	}
	return $n;
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
