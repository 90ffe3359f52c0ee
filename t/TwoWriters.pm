
# Copyright: part of the leader_election extension's test suite.

=pod

=head1 NAME

TwoWriters - background watchers for "never two writers" and "no
acknowledged commit lost", for TAP tests

=head1 SYNOPSIS

  use TwoWriters;

  # every node has a table that takes INSERT INTO mon (node, round)
  my $mon = tw_monitor_start(nodes => [ $n1, $n2 ], table => 'mon');
  ...   # freeze, delete keys, reconfigure: the monitor polls meanwhile
  my $r = $mon->stop;
  is($r->{two_leader_rounds}, 0, 'never two nodes with leader_is_primary()');
  is($r->{two_write_rounds},  0, 'never two nodes that accepted a write');
  note tw_monitor_summary($r);

  # a client that writes through a connection string (one INSERT per
  # commit, increasing ids) and remembers which commits were acknowledged
  my $w = tw_writer_start(connstr => le_rw_connstr(@nodes), table => 't');
  ...
  my $res = $w->stop;           # { acked => { id => node }, attempts, errors }
  my @lost = tw_lost($res, $leader, 't');   # acknowledged ids not on $leader

=head1 DESCRIPTION

Both run in a forked Perl child with their own DBD::Pg connections, so they
keep polling while the test does other things (freezes a worker, reloads a
node). A child never returns into the test script: it leaves with
POSIX::_exit, so no END block (which would stop the nodes or etcd) runs in
it. Children still running when the test ends are killed in an END block.

=cut

package TwoWriters;

use strict;
use warnings;

use Carp;
use DBI;
use DBD::Pg;
use Exporter 'import';
use JSON::PP;
use POSIX qw(WNOHANG);
use Time::HiRes qw(usleep time);

use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(tw_monitor_start tw_monitor_summary tw_writer_start tw_lost);

my @all_children;

# A DBD::Pg data source for a PostgreSQL::Test::Cluster node.
sub _dsn
{
	my ($node) = @_;
	return 'dbi:Pg:host=' . $node->host . ';port=' . $node->port
	  . ';dbname=postgres;connect_timeout=2';
}

sub _connect
{
	my ($dsn) = @_;
	my $dbh = DBI->connect($dsn, '', '',
		{ AutoCommit => 1, RaiseError => 0, PrintError => 0, PrintWarn => 0 });
	return undef unless $dbh;
	# nothing the watchers send may hang; a write that waits is a failed one
	$dbh->do("SET statement_timeout = '5s'");
	$dbh->do("SET lock_timeout = '2s'");
	$dbh->do("SET client_min_messages = 'error'");
	return $dbh;
}

sub _fork_child
{
	my ($body) = @_;
	my $result = PostgreSQL::Test::Utils::tempdir() . '/result.json';
	my $pid    = fork();
	croak "fork failed: $!" unless defined $pid;
	if ($pid == 0)
	{
		local $SIG{__DIE__} = 'DEFAULT';
		# the parent's pipes (psql sessions, etcdctl) are not ours to hold
		POSIX::close($_) foreach 3 .. 1023;
		my $stop = 0;
		$SIG{TERM} = sub { $stop = 1; };
		$SIG{INT}  = 'DEFAULT';
		my $out = eval { $body->(\$stop) };
		$out = { error => "$@" } unless defined $out;
		if (open(my $fh, '>', "$result.tmp"))
		{
			print $fh JSON::PP->new->canonical->encode($out);
			close $fh;
			rename("$result.tmp", $result);
		}
		POSIX::_exit(0);
	}
	my $child = { pid => $pid, result => $result };
	push @all_children, $child;
	return $child;
}

# SIGTERM, wait (up to 30 s, then SIGKILL), read the child's result.
sub _stop_child
{
	my ($child) = @_;
	croak 'already stopped' unless defined $child->{pid};
	kill 'TERM', $child->{pid};
	my $deadline = time() + 30;
	while (waitpid($child->{pid}, WNOHANG) == 0)
	{
		if (time() > $deadline)
		{
			kill 'KILL', $child->{pid};
			waitpid($child->{pid}, 0);
			last;
		}
		usleep(20_000);
	}
	$child->{pid} = undef;
	my $text = -f $child->{result} ? slurp_file($child->{result}) : '';
	my $r = $text ne '' ? eval { JSON::PP->new->decode($text) } : undef;
	croak "the watcher left no result ($child->{result})" unless ref $r eq 'HASH';
	croak "the watcher failed: $r->{error}" if defined $r->{error};
	return $r;
}

=pod

=head1 FUNCTIONS

=over

=item tw_monitor_start(nodes => [ @nodes ], table => $table, interval_ms => 20) => monitor

Starts the two-writers monitor. Every interval_ms (a round) it asks every
node, through one persistent session per node, C<SELECT leader_is_primary()>,
and then (if table is given) tries C<INSERT INTO $table (node, round) VALUES
(...)> on every node (autocommit). A backend answers even while its node's
worker is frozen: leader_is_primary() compares the deadline in shared memory
with the clock, and the fence checks the same deadline. A session that fails
is dropped and reconnected (at most every 500 ms), so nodes may stop and
start meanwhile.

$monitor->stop ends it and returns a hash:

  rounds             rounds polled
  two_leader_rounds  rounds in which two or more nodes said true
  two_write_rounds   rounds in which two or more nodes accepted the INSERT
  leader_rounds      { node => rounds in which it said true }
  write_rounds       { node => rounds in which its INSERT committed }
  first_leader       { node => time (epoch) it first said true }
  last_leader        { node => time it last said true }
  overlaps           the first 20 overlapping rounds: [ time, "n1,n2", "n1,n2" ]
                     (leaders, writers)
  errors             { "node: first line of an error" => count } (INSERTs
                     refused by the fence are not counted)
  started, stopped   epoch times

=cut

sub tw_monitor_start
{
	my (%p) = @_;
	my @nodes = @{ $p{nodes} || croak 'tw_monitor_start needs nodes' };
	my $table    = $p{table};
	my $interval = ($p{interval_ms} // 20) / 1000;
	my @names = map { $_->name } @nodes;
	my @dsns  = map { _dsn($_) } @nodes;

	my $child = _fork_child(
		sub {
			my ($stop) = @_;
			my (@dbh, @next_connect);
			my %r = (
				rounds            => 0,
				two_leader_rounds => 0,
				two_write_rounds  => 0,
				leader_rounds     => { map { $_ => 0 } @names },
				write_rounds      => { map { $_ => 0 } @names },
				first_leader      => {},
				last_leader       => {},
				overlaps          => [],
				errors            => {},
				started           => time());
			my $err = sub {
				my ($i, $text) = @_;
				my ($first) = split /\n/, ($text // 'error');
				$r{errors}{"$names[$i]: $first"}++;
			};
			while (!$$stop)
			{
				my $t0 = time();
				my $round = ++$r{rounds};
				foreach my $i (0 .. $#names)
				{
					next if $dbh[$i] || $t0 < ($next_connect[$i] // 0);
					$dbh[$i] = _connect($dsns[$i]);
					$next_connect[$i] = $t0 + 0.5 unless $dbh[$i];
				}
				my (@leaders, @writers);
				foreach my $i (0 .. $#names)
				{
					next unless $dbh[$i];
					my ($v) = $dbh[$i]->selectrow_array('SELECT leader_is_primary()');
					if (!defined $v)
					{
						$err->($i, $dbh[$i]->errstr);
						$dbh[$i]->disconnect;
						$dbh[$i] = undef;
						next;
					}
					push @leaders, $names[$i] if $v;
				}
				if (defined $table)
				{
					foreach my $i (0 .. $#names)
					{
						next unless $dbh[$i];
						my $n = $dbh[$i]->do(
							"INSERT INTO $table (node, round) VALUES (?, ?)",
							undef, $names[$i], $round);
						if (defined $n)
						{
							push @writers, $names[$i];
							next;
						}
						my $state = $dbh[$i]->state // '';
						# refused by the fence, a standby or a read-only session
						next if $state eq '25006';
						$err->($i, $dbh[$i]->errstr);
						if (!$dbh[$i]->ping)
						{
							$dbh[$i]->disconnect;
							$dbh[$i] = undef;
						}
					}
				}
				my $now = time();
				foreach my $n (@leaders)
				{
					$r{leader_rounds}{$n}++;
					$r{first_leader}{$n} //= $now;
					$r{last_leader}{$n} = $now;
				}
				$r{write_rounds}{$_}++ foreach @writers;
				$r{two_leader_rounds}++ if @leaders > 1;
				$r{two_write_rounds}++  if @writers > 1;
				push @{ $r{overlaps} },
				  [ $now, join(',', @leaders), join(',', @writers) ]
				  if (@leaders > 1 || @writers > 1) && @{ $r{overlaps} } < 20;
				my $left = $interval - (time() - $t0);
				usleep($left * 1_000_000) if $left > 0;
			}
			$_ && $_->disconnect foreach @dbh;
			$r{stopped} = time();
			return \%r;
		});
	note "two-writers monitor (pid $child->{pid}) watches " . join(',', @names);
	return bless { child => $child, names => \@names }, 'TwoWriters::Monitor';
}

=pod

=item tw_monitor_summary($result) => text

One line: rounds, overlapping rounds, rounds each node led and wrote, and
the first overlaps.

=cut

sub tw_monitor_summary
{
	my ($r) = @_;
	my $s = sprintf('%d rounds in %.1f s; two leaders in %d, two writers in %d; ',
		$r->{rounds}, $r->{stopped} - $r->{started},
		$r->{two_leader_rounds}, $r->{two_write_rounds});
	$s .= 'led/wrote: '
	  . join(', ',
		map { "$_ $r->{leader_rounds}{$_}/$r->{write_rounds}{$_}" }
		  sort keys %{ $r->{leader_rounds} });
	if (@{ $r->{overlaps} })
	{
		my $o = $r->{overlaps}[0];
		$s .= sprintf('; first overlap %.3f s after the start: leaders %s, writers %s',
			$o->[0] - $r->{started}, $o->[1] || '-', $o->[2] || '-');
	}
	if (%{ $r->{errors} })
	{
		$s .= '; errors: '
		  . join('; ', map { "$r->{errors}{$_} x $_" } sort keys %{ $r->{errors} });
	}
	return $s;
}

=pod

=item tw_writer_start(connstr => $connstr, table => $table, pause_ms => 5, reconnect_every => 0) => writer

Starts a client that commits one row per transaction, C<INSERT INTO
$table (id, node) VALUES ($id, current_setting('leader_election.node_name'))
RETURNING node>, with ids 1, 2, 3, ... (one per attempt), through
$connstr (a libpq connection string, e.g. le_rw_connstr's), reconnecting
after any error and, with reconnect_every => N, after every N commits (as a
pool that recycles its connections would). $writer->stop ends it and returns a hash:

  acked     { id => node that acknowledged the commit }
  attempts  number of INSERTs tried
  errors    { first line of an error => count }

=cut

sub tw_writer_start
{
	my (%p) = @_;
	my $table = $p{table} // croak 'tw_writer_start needs table';
	(my $dsn = 'dbi:Pg:' . ($p{connstr} // croak 'tw_writer_start needs connstr')) =~
	  s/ /;/g;
	my $pause = ($p{pause_ms} // 5) * 1000;
	my $every = $p{reconnect_every} // 0;

	my $child = _fork_child(
		sub {
			my ($stop) = @_;
			my %r = (acked => {}, attempts => 0, errors => {});
			my $dbh;
			my $id = 0;
			while (!$$stop)
			{
				$dbh ||= _connect($dsn);
				if (!$dbh)
				{
					my ($first) = split /\n/, ($DBI::errstr // 'no connection');
					$r{errors}{"connect: $first"}++;
					usleep(50_000);
					next;
				}
				$id++;
				$r{attempts}++;
				my ($node) = $dbh->selectrow_array(
					"INSERT INTO $table (id, node) VALUES (?, "
					  . "current_setting('leader_election.node_name')) RETURNING node",
					undef, $id);
				if (defined $node)
				{
					$r{acked}{$id} = $node;
					if ($every > 0 && $id % $every == 0)
					{
						$dbh->disconnect;
						$dbh = undef;
					}
				}
				else
				{
					my ($first) = split /\n/, ($dbh->errstr // 'error');
					$r{errors}{$first}++;
					$dbh->disconnect;
					$dbh = undef;
					usleep(50_000);
				}
				usleep($pause) if $pause > 0;
			}
			$dbh->disconnect if $dbh;
			return \%r;
		});
	note "writer (pid $child->{pid}) commits through: $p{connstr}";
	return bless { child => $child }, 'TwoWriters::Writer';
}

=pod

=item tw_lost($writer_result, $node, $table) => list of ids

The acknowledged ids that $node does not have in $table with the node name
that acknowledged them, in id order.

=cut

sub tw_lost
{
	my ($res, $node, $table) = @_;
	my %have = map { split /\|/, $_, 2 } split /\n/,
	  $node->safe_psql('postgres', "SELECT id, node FROM $table");
	return grep { !defined $have{$_} || $have{$_} ne $res->{acked}{$_} }
	  sort { $a <=> $b } keys %{ $res->{acked} };
}

END
{
	my $exit_code = $?;
	foreach my $c (@all_children)
	{
		next unless defined $c->{pid};
		kill 'KILL', $c->{pid};
		waitpid($c->{pid}, 0);
		$c->{pid} = undef;
	}
	$? = $exit_code;
}

package TwoWriters::Monitor;

sub stop
{
	my ($self) = @_;
	return TwoWriters::_stop_child($self->{child});
}

package TwoWriters::Writer;

sub stop
{
	my ($self) = @_;
	return TwoWriters::_stop_child($self->{child});
}

=pod

=back

=cut

1;
