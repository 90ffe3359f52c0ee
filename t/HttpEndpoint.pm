# Helpers for the tests of the HTTP endpoint (leader_election.http_listen):
# requests with curl, as HAProxy and Kubernetes would send them.
package HttpEndpoint;

use strict;
use warnings;

use Carp;
use Exporter 'import';
use File::Temp qw(tempfile);
use IPC::Run;
use PostgreSQL::Test::Cluster;

use LeaderElectionTest qw(le_postmaster_pid);
use Time::HiRes qw(usleep time);

our @EXPORT = qw(le_http_port le_http le_http_code le_http_wait le_http_json le_http_worker_pid);

=pod

=item le_http_port() => port

A free TCP port on 127.0.0.1 for a node's endpoint (as PostgreSQL::Test
picks its own ports).

=cut

sub le_http_port
{
	return PostgreSQL::Test::Cluster::get_free_port();
}

=pod

=item le_http($port, $path, %opt) => ($code, $body, $headers)

One request to http://127.0.0.1:$port$path with curl: method => 'GET'
(default), 'HEAD', 'OPTIONS', 'POST', ...; https => 1 with cacert =>
$file; data => a request body; timeout => seconds (default 5).  $code is 0 when nothing answered.

=cut

sub le_http
{
	my ($port, $path, %opt) = @_;
	my $method  = $opt{method}  // 'GET';
	my $timeout = $opt{timeout} // 5;
	my $scheme  = $opt{https} ? 'https' : 'http';
	my (undef, $bodyfile) = tempfile(UNLINK => 1);
	my (undef, $headfile) = tempfile(UNLINK => 1);
	my @cmd = ('curl', '-s', '-m', $timeout, '-o', $bodyfile, '-D', $headfile,
		'-w', '%{http_code}');
	push @cmd, $method eq 'HEAD' ? ('-I') : ('-X', $method);
	push @cmd, '--cacert', $opt{cacert} if $opt{cacert};
	push @cmd, '--data-binary', $opt{data} if defined $opt{data};
	push @cmd, "$scheme://127.0.0.1:$port$path";
	my ($out, $err) = ('', '');
	IPC::Run::run(\@cmd, '>', \$out, '2>', \$err);
	my $code = ($out =~ /(\d{3})\s*$/) ? $1 + 0 : 0;
	my $body = do { local (@ARGV, $/) = ($bodyfile); <> } // '';
	my $head = do { local (@ARGV, $/) = ($headfile); <> } // '';
	# curl -I writes the head where the body would go: what follows it is the body
	$body =~ s/\A.*?\r?\n\r?\n//s if $method eq 'HEAD';
	return ($code, $body, $head);
}

=pod

=item le_http_code($port, $path, %opt) => code

=cut

sub le_http_code
{
	my ($code) = le_http(@_);
	return $code;
}

=pod

=item le_http_wait($port, $path, $code, $timeout_s) => bool

True once $path answers $code (polled every 100 ms, at most $timeout_s,
default 60).

=cut

sub le_http_wait
{
	my ($port, $path, $want, $timeout) = @_;
	my $deadline = time() + ($timeout // 60);
	while (time() < $deadline)
	{
		return 1 if le_http_code($port, $path, timeout => 2) == $want;
		usleep(100_000);
	}
	return 0;
}

=pod

=item le_http_json($port, $path) => hashref

The JSON document $path answers (GET), decoded; undef if none.

=cut

sub le_http_json
{
	my ($port, $path) = @_;
	my ($code, $body) = le_http($port, $path);
	return undef unless $code && $body =~ /^\{/;
	require JSON::PP;
	return eval { JSON::PP->new->decode($body) };
}

=pod

=item le_http_worker_pid($node) => pid

The pid of the node's "leader_election http" worker (a child of its
postmaster, by its title, as le_worker_pid finds the election worker); 0 if
none runs.

=cut

sub le_http_worker_pid
{
	my $node       = shift;
	my $postmaster = le_postmaster_pid($node);
	foreach my $dir (glob('/proc/[0-9]*'))
	{
		next unless open(my $sf, '<', "$dir/stat");
		my $stat = <$sf>;
		close $sf;
		next unless defined $stat && $stat =~ /^.*\)\s+\S+\s+(\d+)/s && $1 == $postmaster;
		next unless open(my $cf, '<', "$dir/cmdline");
		my $cmdline = <$cf> // '';
		close $cf;
		return (split m{/}, $dir)[-1]
		  if $cmdline =~ /^postgres: (?:[^:]*: )?leader_election http/;
	}
	return 0;
}

1;
