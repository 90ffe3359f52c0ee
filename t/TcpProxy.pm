
# Copyright: part of the leader_election extension's test suite.

=pod

=head1 NAME

TcpProxy - a one-process TCP proxy on loopback that TAP tests can freeze

=head1 SYNOPSIS

  use TcpProxy;

  my $proxy = TcpProxy->new(target_port => $etcd->client_port);
  $proxy->start;                 # listening when it returns
  my $url = $proxy->url;         # http://127.0.0.1:<port>, an etcd endpoint
  $proxy->freeze;                # SIGSTOP: a hung endpoint
  $proxy->thaw;                  # SIGCONT
  $proxy->drop_connections;      # closes every proxied connection, keeps listening
  $proxy->set_delay(1500);       # every chunk forwarded 1.5 s late, both ways
  $proxy->set_delay(0);
  $proxy->stop;

  # a slow endpoint from the start
  my $slow = TcpProxy->new(target_port => $port, delay_ms => 800);

Every proxy started here is killed in an END block, even when the test dies.

=head1 DESCRIPTION

One forked Perl process (IO::Socket::INET and IO::Select) accepts on
127.0.0.1:<port> and forwards each connection to the target, byte for byte.
As all connections live in that one process, SIGSTOP freezes all of them at
once: the kernel still completes TCP handshakes through the listen backlog,
but nothing sent through the proxy is ever answered. That is how an etcd
endpoint that hangs (rather than refuses connections) looks to a client.

With a delay (delay_ms, set_delay), every chunk read from either side is
forwarded that long after it arrived, in order: a slow network or a slow
etcd, as opposed to a silent one. Connections are still accepted at once.

Its log (accepted, closed and dropped connections) is
tmp_check/log/<test>_proxy_<name>.log.

=cut

package TcpProxy;

use strict;
use warnings;

use Carp;
use File::Basename qw(basename);
use IO::Handle;
use IO::Select;
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Time::HiRes qw(usleep time);

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my @all_proxies;

=pod

=head1 METHODS

=over

=item TcpProxy->new(target_port => $port, target_host => '127.0.0.1', name => 'proxy', delay_ms => 0)

Reserves a free port on 127.0.0.1 (PostgreSQL::Test::Cluster::get_free_port).
Does not start anything. delay_ms: see set_delay().

=cut

sub new
{
	my ($class, %params) = @_;
	croak 'TcpProxy->new needs target_port' unless $params{target_port};

	my $test = basename($0);
	$test =~ s/\.[^.]+$//;
	my $name = $params{name} // 'proxy';

	my $self = bless {
		name        => $name,
		target_host => $params{target_host} // '127.0.0.1',
		target_port => $params{target_port},
		port        => PostgreSQL::Test::Cluster::get_free_port(),
		logfile     => "$PostgreSQL::Test::Utils::log_path/${test}_proxy_$name.log",
		pid         => undef,
		frozen      => 0,
		ack         => undef,
		delay_ms    => $params{delay_ms} // 0,
		ctl         => PostgreSQL::Test::Utils::tempdir("proxy_$name") . '/delay_ms',
	}, $class;
	push @all_proxies, $self;
	return $self;
}

=pod

=item $proxy->port() / $proxy->url()

The port it listens on, and C<http://127.0.0.1:PORT>. Valid before start().

=cut

sub port { return $_[0]->{port}; }
sub pid  { return $_[0]->{pid}; }

sub url
{
	my $self = shift;
	return "http://127.0.0.1:$self->{port}";
}

=pod

=item $proxy->start()

Binds and listens (in the test process, so it accepts connections as soon as
start() returns), then forks the proxy process.

=cut

sub start
{
	my $self = shift;
	croak "proxy $self->{name} is already running" if defined $self->{pid};

	my $listen = IO::Socket::INET->new(
		LocalAddr => '127.0.0.1',
		LocalPort => $self->{port},
		Proto     => 'tcp',
		Listen    => 128,
		ReuseAddr => 1)
	  or croak "proxy $self->{name}: cannot listen on 127.0.0.1:$self->{port}: $!";

	# the proxy acknowledges drop_connections() through this pipe
	pipe(my $ack_r, my $ack_w) or croak "pipe failed: $!";

	note "starting proxy $self->{name} on "
	  . $self->url
	  . " to $self->{target_host}:$self->{target_port}";
	my $pid = fork();
	croak "fork failed: $!" unless defined $pid;
	if ($pid == 0)
	{
		# child: never return into the test script (no END blocks here)
		local $SIG{__DIE__} = 'DEFAULT';
		eval {
			close $ack_r;
			$self->_serve($listen, $ack_w);
			1;
		};
		POSIX::_exit(1);
	}
	close $listen;
	close $ack_w;
	$self->{pid}    = $pid;
	$self->{ack}    = $ack_r;
	$self->{frozen} = 0;
	return;
}

# The proxy process: one select loop over the listening socket and every
# connection, both sides.
sub _serve
{
	my ($self, $listen, $ack) = @_;
	my $drop = 0;
	my %peer;    # "$fh" => the other side's handle
	my $sel = IO::Select->new($listen);
	# set_delay(): chunks read are forwarded this many seconds later
	my $delay     = $self->{delay_ms} / 1000;
	my $new_delay = 0;
	# chunks waiting for their time, oldest first: [ due, to, bytes ], or
	# [ due, from, undef ] for a side that closed once everything before is sent
	my @queue;

	$SIG{USR1} = sub { $drop = 1; };
	$SIG{USR2} = sub { $new_delay = 1; };
	$SIG{TERM} = sub { POSIX::_exit(0); };
	$SIG{INT}  = 'DEFAULT';
	$SIG{PIPE} = 'IGNORE';
	$ack->autoflush(1);

	open(STDIN, '<', '/dev/null');
	open(my $log, '>>', $self->{logfile}) or POSIX::_exit(1);
	$log->autoflush(1);
	my $say = sub {
		my @t = localtime();
		printf $log "%02d:%02d:%02d.%03d %s\n", @t[ 2, 1, 0 ],
		  (time() * 1000) % 1000, shift;
	};
	$say->("listening on 127.0.0.1:$self->{port}, "
		  . "forwarding to $self->{target_host}:$self->{target_port}");

	my $close_pair = sub {
		my $fh    = shift;
		my $other = delete $peer{"$fh"};
		foreach my $h ($fh, $other)
		{
			next unless defined $h;
			delete $peer{"$h"};
			$sel->remove($h);
			close $h;
		}
	};

	# writes all of $buf to $to; false if the connection failed
	my $send = sub {
		my ($to, $buf) = @_;
		my ($n, $off) = (length $buf, 0);
		while ($off < $n)
		{
			my $w = syswrite($to, $buf, $n - $off, $off);
			if (!defined $w)
			{
				next if $!{EINTR};
				$say->("write failed: $!");
				return 0;
			}
			$off += $w;
		}
		return 1;
	};

	while (1)
	{
		if ($drop)
		{
			$drop = 0;
			my $n = 0;
			foreach my $h ($sel->handles)
			{
				next if $h == $listen || !$sel->exists($h);
				$n++;
				$close_pair->($h);
			}
			@queue = ();
			$say->("dropped every connection ($n)");
			syswrite($ack, "dropped $n\n");
		}
		if ($new_delay)
		{
			$new_delay = 0;
			if (open(my $c, '<', $self->{ctl}))
			{
				my $ms = <$c>;
				close $c;
				if (defined $ms && $ms =~ /^(\d+)/)
				{
					$delay = $1 / 1000;
					$say->("delay set to $1 ms");
				}
			}
			syswrite($ack, "delay\n");
		}

		# forward what is due; a connection closed meanwhile is skipped
		while (@queue && $queue[0][0] <= time())
		{
			my ($due, $h, $buf) = @{ shift @queue };
			next unless $sel->exists($h);
			if (!defined $buf)
			{
				$close_pair->($h);
				next;
			}
			$close_pair->($h) unless $send->($h, $buf);
		}

		# a signal interrupts the wait; the handler has run when it returns
		my $wait = 1;
		if (@queue)
		{
			$wait = $queue[0][0] - time();
			$wait = 0 if $wait < 0;
			$wait = 1 if $wait > 1;
		}
		my @ready = $sel->can_read($wait);
		foreach my $fh (@ready)
		{
			next unless $sel->exists($fh);
			if ($fh == $listen)
			{
				my $client = $listen->accept or next;
				my $server = IO::Socket::INET->new(
					PeerAddr => $self->{target_host},
					PeerPort => $self->{target_port},
					Proto    => 'tcp',
					Timeout  => 5);
				if (!$server)
				{
					$say->("accepted a connection, cannot reach the target: $!");
					close $client;
					next;
				}
				$say->("accepted from port " . $client->peerport);
				$peer{"$client"} = $server;
				$peer{"$server"} = $client;
				$sel->add($client, $server);
				next;
			}

			my $buf;
			my $n = sysread($fh, $buf, 65536);
			if (!defined $n && $!{EINTR})
			{
				next;
			}
			if (!$n)
			{
				$say->("a side closed its connection");
				# what it sent before closing is still delivered, in order
				if (@queue)
				{
					$sel->remove($fh);
					push @queue, [ time() + $delay, $peer{"$fh"}, undef ];
				}
				else
				{
					$close_pair->($fh);
				}
				next;
			}
			my $to = $peer{"$fh"};
			if ($delay > 0 || @queue)
			{
				push @queue, [ time() + $delay, $to, $buf ];
				next;
			}
			$close_pair->($fh) unless $send->($to, $buf);
		}
	}
}

=pod

=item $proxy->freeze() / $proxy->thaw()

SIGSTOP / SIGCONT the proxy process: connections stay open and new ones are
accepted by the kernel, but nothing is forwarded or answered while frozen.

=cut

sub freeze
{
	my $self = shift;
	croak "proxy $self->{name} is not running" unless defined $self->{pid};
	note "freezing proxy $self->{name} (SIGSTOP)";
	kill 'STOP', $self->{pid};
	$self->{frozen} = 1;
	return;
}

sub thaw
{
	my $self = shift;
	croak "proxy $self->{name} is not running" unless defined $self->{pid};
	note "thawing proxy $self->{name} (SIGCONT)";
	kill 'CONT', $self->{pid};
	$self->{frozen} = 0;
	return;
}

=pod

=item $proxy->drop_connections() => number of connections closed

Closes every proxied connection at once (both sides, so clients see the
server close it); keeps listening, so new connections work. Sends SIGUSR1
and waits up to 10 s until the proxy confirms; dies if it is frozen.

=cut

sub drop_connections
{
	my $self = shift;
	croak "proxy $self->{name} is not running" unless defined $self->{pid};
	croak "proxy $self->{name} is frozen" if $self->{frozen};
	kill 'USR1', $self->{pid};
	my $line = $self->_await_ack(qr/^dropped \d+$/m, 'drop_connections');
	my ($count) = $line =~ /^dropped (\d+)/m;
	note "proxy $self->{name} dropped its connections ($count)";
	return $count;
}

# Reads the proxy's acknowledgements until one line matches $re; returns it.
sub _await_ack
{
	my ($self, $re, $what) = @_;
	my $sel = IO::Select->new($self->{ack});
	my $deadline = time() + 10;
	my $buf = '';
	while (1)
	{
		while ($buf =~ s/^([^\n]*)\n//)
		{
			my $line = $1;
			return $line if $line =~ $re;
		}
		my $left = $deadline - time();
		croak "proxy $self->{name} did not confirm $what" if $left <= 0;
		next unless $sel->can_read($left);
		my $n = sysread($self->{ack}, $buf, 256, length $buf);
		croak "proxy $self->{name} exited" if defined $n && $n == 0;
	}
}

=pod

=item $proxy->set_delay($ms)

From now on every chunk read from either side is forwarded $ms
milliseconds after it arrived (0: at once); chunks already waiting keep
their time. Waits up to 10 s until the proxy confirms; dies if it is
frozen. Valid before start() too (the start value).

=cut

sub set_delay
{
	my ($self, $ms) = @_;
	croak "set_delay needs milliseconds" unless defined $ms && $ms =~ /^\d+$/;
	$self->{delay_ms} = $ms;
	return unless defined $self->{pid};
	croak "proxy $self->{name} is frozen" if $self->{frozen};
	open(my $c, '>', "$self->{ctl}.tmp") or croak "cannot write $self->{ctl}: $!";
	print $c "$ms\n";
	close $c;
	rename("$self->{ctl}.tmp", $self->{ctl}) or croak "cannot rename to $self->{ctl}: $!";
	kill 'USR2', $self->{pid};
	$self->_await_ack(qr/^delay$/m, 'set_delay');
	note "proxy $self->{name} now delays every chunk by $ms ms";
	return;
}

=pod

=item $proxy->stop()

SIGCONT, SIGTERM, and waits (SIGKILL after 10 s).

=cut

sub stop
{
	my $self = shift;
	return unless defined $self->{pid};
	note "stopping proxy $self->{name}";
	kill 'CONT', $self->{pid};
	kill 'TERM', $self->{pid};
	my $deadline = time() + 10;
	while (waitpid($self->{pid}, WNOHANG) == 0)
	{
		if (time() > $deadline)
		{
			kill 'KILL', $self->{pid};
			waitpid($self->{pid}, 0);
			last;
		}
		usleep(20_000);
	}
	$self->{pid} = undef;
	close $self->{ack} if $self->{ack};
	$self->{ack} = undef;
	return;
}

END
{
	my $exit_code = $?;
	foreach my $proxy (@all_proxies)
	{
		next unless defined $proxy->{pid};
		kill 'CONT', $proxy->{pid};
		kill 'KILL', $proxy->{pid};
		waitpid($proxy->{pid}, 0);
		$proxy->{pid} = undef;
	}
	$? = $exit_code;
}

=pod

=back

=cut

1;
