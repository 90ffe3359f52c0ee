
# Copyright: part of the leader_election extension's test suite.

=pod

=head1 NAME

AckedWriter - a client that commits through a read-write connection string
and writes down every acknowledged commit, for the "no acknowledged commit
is lost" checks of the synchronous-mode tests (t/054, t/099)

=head1 SYNOPSIS

  use AckedWriter;

  $n1->safe_psql('postgres',
      'CREATE TABLE t (id bigint PRIMARY KEY, node text NOT NULL)');
  my $w = AckedWriter->start(connstr => le_rw_connstr(@nodes));
  ok(defined $w->wait_acked_on($n1, 50), 'the client commits on n1');
  $n1->stop('immediate');
  ...                                      # a new leader $new
  my ($nacked, @lost) = $w->lost_on($new);   # acknowledged ids $new lacks
  $w->exempt(@lost);                       # lost on purpose (e.g. in off)
  $w->stop;
  is($w->read_acked->{warned}, 0, 'no commit acknowledged with a warning');
  note "client: $_" foreach $w->log_lines;

=head1 DESCRIPTION

The client is a separate perl process (DBD::Pg, started with IPC::Run), so
it goes on committing while the test crashes, freezes and rejoins nodes. It
holds one connection through the connection string (normally
le_rw_connstr's, target_session_attrs=read-write) and commits, autocommit,
C<INSERT INTO $table (id, node) VALUES ($id,
current_setting('leader_election.node_name')) RETURNING node> with ids 1, 2,
3, ... (one per attempt, so an id that failed is never tried again); after
any error it disconnects and reconnects (every 50 ms until a node accepts).
The table must exist (C<id bigint PRIMARY KEY, node text NOT NULL>).

An acknowledged id is appended to the ack file at once (autoflush), before
the next attempt, as C<< <id> <node>\n >>, where node is the node that
answered. No statement_timeout is set: a commit whose wait for the
synchronous standby is cancelled is reported as committed with a WARNING
("canceling wait for synchronous replication ... committed locally"), which
is no acknowledgement of a replicated commit. Such an id goes to the file
as C<< <id> <node> warned\n >> (and to the log), and is no acknowledged id
for the checks below. Which warnings make a commit "warned" is the pattern
C<warned> (by default that of the synchronous-replication warning: other
warnings, e.g. "terminating connection due to immediate shutdown command"
read together with the answer of a commit that completed just before a
crash, leave the acknowledgement as it is).

Errors and warnings go to the log file (one line each).

=cut

package AckedWriter;

use strict;
use warnings;

use Carp;
use IPC::Run;
use Time::HiRes qw(usleep time);

use PostgreSQL::Test::Utils;
use Test::More;

my @all_writers;    # to stop in END those the test left running

# The client; arguments: connection string, ack file, table, the pattern of
# warnings that make an acknowledgement "warned".
my $client_code = <<'EOF';
use strict;
use warnings;
use DBI;
use IO::Handle;
use Time::HiRes qw(usleep);
my ($conninfo, $ackfile, $table, $warned_re) = @ARGV;
(my $dsn = "dbi:Pg:$conninfo") =~ s/ /;/g;
open(my $ack, '>>', $ackfile) or die "$ackfile: $!";
$ack->autoflush(1);
STDERR->autoflush(1);
my $stop = 0;
$SIG{TERM} = sub { $stop = 1 };
my $warned = '';
$SIG{__WARN__} = sub { $warned .= $_[0] };
my ($dbh, $id) = (undef, 0);
while (!$stop)
{
	unless ($dbh)
	{
		$dbh = DBI->connect($dsn, '', '',
			{ AutoCommit => 1, RaiseError => 0, PrintError => 0, PrintWarn => 1 });
		unless ($dbh)
		{
			print STDERR "connect: $DBI::errstr\n";
			usleep(50_000);
			next;
		}
		$dbh->do("SET client_min_messages = 'warning'");
		# the nodes log every statement (log_statement = all): not these
		$dbh->do("SET log_statement = 'none'");
	}
	$id++;
	$warned = '';
	my ($node) = $dbh->selectrow_array(
		"INSERT INTO $table (id, node) VALUES ($id, "
		  . "current_setting('leader_election.node_name')) RETURNING node");
	if (defined $node && $warned !~ /$warned_re/)
	{
		print $ack "$id $node\n";
	}
	elsif (defined $node)
	{
		print $ack "$id $node warned\n";
		print STDERR "id $id acknowledged with a warning: $warned";
	}
	else
	{
		print STDERR "id $id: " . ($dbh->errstr // 'error') . "\n";
		$dbh->disconnect;
		undef $dbh;
		usleep(20_000);
	}
}
EOF

=pod

=head1 METHODS

=over

=item AckedWriter->start(connstr => $connstr, table => 't', warned => qr/.../) => writer

Writes the client to a temporary directory and starts it; returns at once
(the first commits follow within moments, see wait_acked_on). C<table>
defaults to C<t>; C<warned>, the warnings that make an acknowledged commit
"warned", defaults to C<qr/synchronous replication|committed locally/>. The
ack file and the log are new files in a temporary directory of the test.

=cut

sub start
{
	my ($class, %p) = @_;
	my $connstr = $p{connstr} // croak 'AckedWriter->start needs connstr';
	my $table   = $p{table}   // 't';
	my $warned  = $p{warned}  // qr/synchronous replication|committed locally/;
	my $dir     = PostgreSQL::Test::Utils::tempdir();
	my $self    = bless {
		ackfile => "$dir/acked",
		log     => "$dir/acked.log",
		table   => $table,
		# read_acked's state
		offset => 0,
		acked  => { count => 0, max => 0, gaps => [], warned => 0 },
		exempt => {},
	}, $class;
	my $script = "$dir/writer.pl";
	open(my $fh, '>', $script) or croak "$script: $!";
	print $fh $client_code;
	close $fh;
	$self->{h} = IPC::Run::start(
		[ 'perl', $script, $connstr, $self->{ackfile}, $table, "$warned" ],
		'<', \undef, '>>', $self->{log}, '2>>', $self->{log});
	push @all_writers, $self;
	note "client commits through: $connstr";
	return $self;
}

=pod

=item $writer->stop

SIGTERM; waits until the client has left (it finishes the commit under
way, whose acknowledgement is written down like any other). After stop,
the ack file is complete: lost_on and read_acked still work.

=cut

sub stop
{
	my ($self) = @_;
	return unless $self->{h};
	$self->{h}->signal('TERM');
	$self->{h}->finish;
	delete $self->{h};
	return;
}

=pod

=item $writer->read_acked => hashref

The acknowledged ids so far, read incrementally from the ack file (ids are
appended in increasing order; a line the client is in the middle of writing
is read next time): { count => number acknowledged, max => the highest id
written down (acknowledged or warned), gaps => [ the ids below max that are
not acknowledged: the attempts that failed, few, around crashes, and the
warned ones ], warned => number of warned ids }. The acknowledged ids are
exactly 1 .. max but the gaps. Every id acknowledged before the call is in
it.

=cut

sub read_acked
{
	my ($self) = @_;
	my $ack = $self->{acked};
	open(my $fh, '<', $self->{ackfile}) or return $ack;
	seek($fh, $self->{offset}, 0);
	while (my $line = <$fh>)
	{
		# the client may be in the middle of a line: read it next time
		last unless $line =~ /^(\d+) (\S+)( warned)?\n\z/;
		$self->{offset} += length($line);
		my $id = $1;
		push @{ $ack->{gaps} }, ($ack->{max} + 1 .. $id - 1);
		$ack->{max} = $id;
		if ($3)
		{
			$ack->{warned}++;
			push @{ $ack->{gaps} }, $id;
			next;
		}
		$ack->{count}++;
	}
	close $fh;
	return $ack;
}

=pod

=item $writer->wait_acked_on($node_or_name, $n, $timeout_s = 60) => seconds or undef

Waits until the client had $n more commits acknowledged by the node (a
PostgreSQL::Test::Cluster node or its name), counted from the call (warned
ones do not count). Returns the seconds it took (test it with defined: it
may be 0), or undef after $timeout_s, with a diag.

=cut

sub wait_acked_on
{
	my ($self, $node, $n, $timeout) = @_;
	my $name    = ref $node ? $node->name : $node;
	my $ackfile = $self->{ackfile};
	$timeout //= 60;
	my $start    = -s $ackfile // 0;
	my $t0       = time();
	my $deadline = $t0 + $timeout;
	while (time() < $deadline)
	{
		my $tail =
		  (-s $ackfile // 0) > $start ? slurp_file($ackfile, $start) : '';
		my @mine = ($tail =~ /^\d+ \Q$name\E\n/mg);
		return time() - $t0 if @mine >= $n;
		usleep(50_000);
	}
	diag "wait_acked_on: fewer than $n commits acknowledged by $name in $timeout s";
	return undef;
}

=pod

=item $writer->exempt(@ids)

Takes @ids (acknowledged ids lost on purpose, e.g. on a crash in
synchronous_mode off) out of every later lost_on check.

=item $writer->exempted => number of exempted ids

=cut

sub exempt
{
	my ($self, @ids) = @_;
	$self->{exempt}{$_} = 1 foreach @ids;
	return;
}

sub exempted
{
	my ($self) = @_;
	return scalar(keys %{ $self->{exempt} });
}

=pod

=item $writer->lost_on($node) => ($nacked, @lost)

The acknowledged ids (exempted ones excepted) that $node does not have in
the table, in id order, and the number of ids acknowledged by then
(exempted ones included). The ack file is read first, so every id
acknowledged before the call is checked. The rows $node has among the
acknowledged ids are counted in SQL; only if some are missing are they
looked for one by one.

=cut

sub lost_on
{
	my ($self, $node) = @_;
	my $st     = $self->read_acked;
	my $table  = $self->{table};
	my @exempt = keys %{ $self->{exempt} };
	my @skip   = (@{ $st->{gaps} }, @exempt);
	my $want   = $st->{count} - scalar(@exempt);
	my $have   = $node->safe_psql('postgres',
		"SELECT count(*) FROM $table WHERE id BETWEEN 1 AND $st->{max} "
		  . "AND id <> ALL ('{" . join(',', @skip) . "}'::bigint[])");
	return ($st->{count}) if $have == $want;
	my %not = map { $_ => 1 } @skip;
	my %has = map { $_ => 1 } split /\n/,
	  $node->safe_psql('postgres',
		"SELECT id FROM $table WHERE id BETWEEN 1 AND $st->{max}");
	return ($st->{count}, grep { !$not{$_} && !$has{$_} } 1 .. $st->{max});
}

=pod

=item $writer->log_lines => list

The client's log so far: errors ("id N: ...", "connect: ...") and warned
acknowledgements, one line each.

=cut

sub log_lines
{
	my ($self) = @_;
	return () unless -e $self->{log};
	return split /\n/, slurp_file($self->{log});
}

# a client the test left running (it died, or forgot stop) must not go on
# reconnecting to nodes that are gone
END
{
	my $exit_code = $?;
	foreach my $w (@all_writers)
	{
		next unless $w->{h};
		eval { $w->{h}->kill_kill(grace => 5) };
		delete $w->{h};
	}
	$? = $exit_code;
}

=pod

=back

=cut

1;
