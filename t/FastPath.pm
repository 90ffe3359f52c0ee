
# Copyright: part of the leader_election extension's test suite.

=pod

=head1 NAME

FastPath - a minimal frontend/backend protocol 3.0 client, for fast-path calls

=head1 SYNOPSIS

  use FastPath;

  my $c = FastPath->connect($node);                  # OS user, database postgres
  my $c = FastPath->connect($node, user => 'app');   # trust authentication only
  my $r = $c->query('SELECT 1, NULL');
  # $r->{rows} = [ [ '1', undef ] ], $r->{error} = undef, $r->{status} = 'I'
  my $fn = $c->query("SELECT 'nextval(regclass)'::regprocedure::oid")->{rows}[0][0];
  $r = $c->call($fn, [ FastPath::oid($seq_oid) ]);   # libpq's PQfn
  # $r->{value} = '1' (text), or $r->{error} = { C => '25006', M => ..., D => ... }
  $c->close;

=head1 DESCRIPTION

Speaks just enough of the protocol over the node's Unix socket to send
simple queries ('Q') and function calls ('F', the "fast path" of libpq's
PQfn, which runs a function by OID without the parser, planner or executor).
Authentication must be trust. Every answer is read up to the next
ReadyForQuery, so the connection is always ready for the next message; a
read waits at most $PostgreSQL::Test::Utils::timeout_default seconds, then
dies.

=cut

package FastPath;

use strict;
use warnings;

use Carp;
use IO::Select;
use IO::Socket::UNIX;

use PostgreSQL::Test::Utils;

=pod

=head1 METHODS

=over

=item FastPath->connect($node, %params)

Connects to $node's Unix socket and starts a session. Parameters: user
(default: the OS user, the test cluster's superuser), dbname (default
postgres). Dies if the server refuses the connection.

=cut

sub connect
{
	my ($class, $node, %p) = @_;
	my $user = $p{user} // scalar getpwuid($<);
	my $dbname = $p{dbname} // 'postgres';
	my $path = $node->host . '/.s.PGSQL.' . $node->port;
	my $sock = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Peer => $path)
	  or croak "cannot connect to $path: $!";
	my $self = bless { sock => $sock, buf => '', status => undef }, $class;

	my $body = pack('N', 196608)
	  . "user\0$user\0database\0$dbname\0application_name\0FastPath\0\0";
	$self->_write(pack('N', 4 + length $body) . $body);

	my $error;
	while (1)
	{
		my ($type, $msg) = $self->_read_message;
		if ($type eq 'R')
		{
			my $code = unpack('N', $msg);
			croak "FastPath: authentication method $code is not supported (trust only)"
			  unless $code == 0;
		}
		elsif ($type eq 'E')
		{
			$error = _fields($msg);
			croak "FastPath: connection refused: $error->{C}: $error->{M}";
		}
		elsif ($type eq 'Z')
		{
			$self->{status} = $msg;
			last;
		}
		# 'S' ParameterStatus, 'K' BackendKeyData, 'N' NoticeResponse
	}
	return $self;
}

=pod

=item $c->query($sql) => { rows => [[...]], error => undef or {...}, status => 'I'|'T'|'E', notices => [...] }

Sends $sql as a simple query ('Q'). rows holds every data row of every
statement in it (text format, NULL as undef); error the fields of the
ErrorResponse, if any (C: SQLSTATE, M: message, D: detail, H: hint, ...);
status the transaction status of the ReadyForQuery that ends the answer.

=cut

sub query
{
	my ($self, $sql) = @_;
	$self->_write('Q' . pack('N', 4 + length($sql) + 1) . $sql . "\0");
	my $r = { rows => [], error => undef, notices => [] };
	while (1)
	{
		my ($type, $msg) = $self->_read_message;
		if ($type eq 'D')
		{
			my $n = unpack('n', $msg);
			my $pos = 2;
			my @row;
			for (1 .. $n)
			{
				my $len = unpack('l>', substr($msg, $pos, 4));
				$pos += 4;
				if ($len < 0) { push @row, undef; next; }
				push @row, substr($msg, $pos, $len);
				$pos += $len;
			}
			push @{ $r->{rows} }, \@row;
		}
		# 'T' RowDescription, 'C' CommandComplete, 'I' EmptyQueryResponse,
		# 'S' ParameterStatus, 'A' NotificationResponse: nothing to keep
		else { last if $self->_common_message($r, $type, $msg); }
	}
	return $r;
}

# ErrorResponse, NoticeResponse and ReadyForQuery, as query() and call() keep
# them in $r; true at ReadyForQuery, which ends the answer.
sub _common_message
{
	my ($self, $r, $type, $msg) = @_;
	if ($type eq 'E') { $r->{error} = _fields($msg); }
	elsif ($type eq 'N') { push @{ $r->{notices} }, _fields($msg); }
	elsif ($type eq 'Z')
	{
		$r->{status} = $self->{status} = $msg;
		return 1;
	}
	return 0;
}

=pod

=item $c->call($fn_oid, \@args, %params) => { value => ..., error => undef or {...}, status => ... }

Sends a FunctionCall message ('F') for the function with OID $fn_oid. Each
argument is [format, bytes] (format 0 text, 1 binary) or undef for NULL;
see int4(), int8(), oid() and text() below. result_format (default 0, text)
is the format of the result. value is the result's bytes (undef if NULL or
on error); error and status as for query().

=cut

sub call
{
	my ($self, $fn_oid, $args, %p) = @_;
	my $result_format = $p{result_format} // 0;
	my @args = @{ $args // [] };

	my $body = pack('N', $fn_oid);
	$body .= pack('n', scalar @args);
	$body .= pack('n', defined $_ ? $_->[0] : 0) foreach @args;
	$body .= pack('n', scalar @args);
	foreach my $a (@args)
	{
		if (!defined $a) { $body .= pack('l>', -1); next; }
		$body .= pack('l>', length $a->[1]) . $a->[1];
	}
	$body .= pack('n', $result_format);
	$self->_write('F' . pack('N', 4 + length $body) . $body);

	my $r = { value => undef, error => undef, notices => [] };
	while (1)
	{
		my ($type, $msg) = $self->_read_message;
		if ($type eq 'V')
		{
			my $len = unpack('l>', $msg);
			$r->{value} = substr($msg, 4, $len) if $len >= 0;
		}
		else { last if $self->_common_message($r, $type, $msg); }
	}
	return $r;
}

=pod

=item $c->close

Sends Terminate ('X') and closes the socket.

=cut

sub close
{
	my $self = shift;
	return unless $self->{sock};
	eval { $self->_write('X' . pack('N', 4)); };
	$self->{sock}->close;
	delete $self->{sock};
	return;
}

sub DESTROY
{
	my $self = shift;
	$self->close if $self->{sock};
	return;
}

=pod

=back

=head1 ARGUMENT HELPERS

FastPath::int4($v), int8($v) and oid($v) are binary arguments (network
byte order); FastPath::text($s) a text argument.

=cut

sub int4 { return [ 1, pack('l>', $_[0]) ]; }
sub int8 { return [ 1, pack('q>', $_[0]) ]; }
sub oid  { return [ 1, pack('N',  $_[0]) ]; }
sub text { return [ 0, $_[0] ]; }

# ErrorResponse / NoticeResponse fields: { C => sqlstate, M => message, ... }
sub _fields
{
	my $msg = shift;
	my %f;
	while ($msg =~ /\G([^\0])([^\0]*)\0/gc)
	{
		$f{$1} = $2;
	}
	return \%f;
}

sub _write
{
	my ($self, $data) = @_;
	my $sock = $self->{sock} or croak 'FastPath: connection is closed';
	while (length $data)
	{
		my $n = syswrite($sock, $data);
		croak "FastPath: write failed: $!" unless defined $n;
		substr($data, 0, $n) = '';
	}
	return;
}

# Reads at least $n bytes into the buffer, waiting at most timeout_default.
sub _fill
{
	my ($self, $n) = @_;
	my $sel = IO::Select->new($self->{sock});
	while (length($self->{buf}) < $n)
	{
		croak "FastPath: no answer from the server within "
		  . "$PostgreSQL::Test::Utils::timeout_default s"
		  unless $sel->can_read($PostgreSQL::Test::Utils::timeout_default);
		my $got = sysread($self->{sock}, $self->{buf}, 65536,
			length $self->{buf});
		croak "FastPath: read failed: $!" unless defined $got;
		croak 'FastPath: the server closed the connection' if $got == 0;
	}
	return;
}

# One backend message: (type, body)
sub _read_message
{
	my $self = shift;
	$self->_fill(5);
	my ($type, $len) = unpack('a N', $self->{buf});
	$self->_fill(1 + $len);
	my $body = substr($self->{buf}, 5, $len - 4);
	substr($self->{buf}, 0, 1 + $len) = '';
	return ($type, $body);
}

1;
