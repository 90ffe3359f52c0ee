
# Copyright: part of the leader_election extension's test suite.

=pod

=head1 NAME

SecureEtcdTest - settings and checks for nodes that talk to a secured etcd
(TLS, client certificates, etcd users)

=head1 SYNOPSIS

  use EtcdServer;
  use LeaderElectionTest;
  use SecureEtcdTest;

  my $certs = EtcdServer::make_test_certs();
  my $etcd = EtcdServer->new('etcd', tls_dir => $certs); $etcd->start;
  my $n1 = le_node('node1', $etcd, extra_conf =>
      tls_conf("$certs/ca.crt", "$certs/client.crt", "$certs/client.key")
      . auth_conf('pgnode', $password_file));
  write_private_file($password_file, 'secret');          # mode 0600
  set_conf($n1, endpoints => $url, ca_file => '');       # append + reload
  ok(log_wait($n1, qr/.../, $offset), '...');
  ok(status_wait($n1, sub { $_[0]{last_error} =~ /expired/ }), '...');
  is(secrets_in($n1, 'secret'), '', 'no secret in the log');

=head1 FUNCTIONS

=over

=cut

package SecureEtcdTest;

use strict;
use warnings;

use Carp;
use Exporter 'import';
use Time::HiRes qw(usleep time);

use PostgreSQL::Test::Utils;
use Test::More;
use LeaderElectionTest;

our @EXPORT = qw(tls_conf auth_conf set_conf write_private_file log_wait
  status_wait secrets_in token_patterns);

=pod

=item tls_conf($ca_file, $cert_file, $key_file) => postgresql.conf lines

=item auth_conf($username, $password_file) => postgresql.conf lines

=cut

sub tls_conf
{
	my ($ca, $cert, $key) = @_;
	return "leader_election.ca_file = '$ca'\n"
	  . "leader_election.cert_file = '$cert'\n"
	  . "leader_election.key_file = '$key'\n";
}

sub auth_conf
{
	my ($user, $file) = @_;
	return "leader_election.username = '$user'\n"
	  . "leader_election.password_file = '$file'\n";
}

=pod

=item set_conf($node, setting => value, ...)

Appends leader_election.<setting> = 'value' lines to postgresql.conf (the
last line of a setting wins) and reloads. Returns the log offset before the
reload, for log_wait.

=cut

sub set_conf
{
	my ($node, @pairs) = @_;
	my $conf = '';
	while (my ($k, $v) = splice(@pairs, 0, 2))
	{
		$conf .= "leader_election.$k = '$v'\n";
	}
	my $offset = -s $node->logfile;
	$node->append_conf('postgresql.conf', $conf);
	$node->reload;
	return $offset;
}

=pod

=item write_private_file($path, $content, $mode = 0600)

Writes $content (as is: no newline added) to $path and sets its mode.

=cut

sub write_private_file
{
	my ($path, $content, $mode) = @_;
	open(my $fh, '>', $path) or croak "cannot write $path: $!";
	print $fh $content;
	close $fh;
	chmod(($mode // 0600), $path) or croak "chmod $path: $!";
	return;
}

=pod

=item log_wait($node, $regexp, $offset, $timeout_s = 30) => bool

Waits until the node's log after byte $offset matches $regexp; false (with a
diagnostic) after $timeout_s, where PostgreSQL::Test::Cluster's wait_for_log
would die.

=cut

sub log_wait
{
	my ($node, $re, $offset, $timeout) = @_;
	my $deadline = time() + ($timeout // 30);
	while (1)
	{
		return 1 if slurp_file($node->logfile, $offset // 0) =~ $re;
		last if time() > $deadline;
		usleep(100_000);
	}
	diag "no match for $re in the log of " . $node->name;
	return 0;
}

=pod

=item status_wait($node, $check, $timeout_s = 30) => bool

Polls le_status($node) every 100 ms until $check->($status) is true; false
(with a diagnostic of the last status) after $timeout_s.

=cut

sub status_wait
{
	my ($node, $check, $timeout) = @_;
	my $deadline = time() + ($timeout // 30);
	my $st;
	while (1)
	{
		$st = le_status($node);
		return 1 if $check->($st);
		last if time() > $deadline;
		usleep(100_000);
	}
	diag "status_wait on "
	  . $node->name
	  . " gave up; last status: "
	  . join(', ', map { "$_=" . ($st->{$_} // 'NULL') } sort keys %$st);
	return 0;
}

=pod

=item token_patterns() => list of regexps

What etcd's auth tokens look like: a "simple" one is 16 letters, a dot, a
number (e.g. C<jKoxlTUNHkCkdIjZ.13>); a JWT is three base64url parts, the
first two JSON (C<eyJ...>).

=item secrets_in($text, @secrets) => '' or what was found

Looks for each secret (a string, or a regexp) in $text; returns a
description of those found (the secret itself left out), or ''.

=cut

sub token_patterns
{
	return (qr/(?<![A-Za-z0-9])[A-Za-z]{16}\.[0-9]+(?![0-9])/,
		qr/eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+/);
}

sub secrets_in
{
	my ($text, @secrets) = @_;
	my @found;
	for my $i (0 .. $#secrets)
	{
		my $s = $secrets[$i];
		if (ref $s eq 'Regexp')
		{
			push @found, "a match of pattern #$i at offset $-[0]" if $text =~ $s;
		}
		elsif (index($text, $s) >= 0)
		{
			push @found, "secret #$i (" . length($s) . ' characters) at offset '
			  . index($text, $s);
		}
	}
	return join('; ', @found);
}

=pod

=back

=cut

1;
