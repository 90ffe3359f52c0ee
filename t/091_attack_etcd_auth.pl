# Attack (issue 15): an etcd user whose credentials change under a running
# leader. One etcd with authentication; n1 authenticates as user pgnode
# (password in leader_election.password_file) and leads election /le/a; n2,
# without a user, leads election /le/b while etcd still runs without
# authentication.
#
#   a. auth enabled after start: n1 (user set) leads on; n2 (no user) stops
#      leading within 2 x TTL and says why.
#   b. pgnode's password changed in etcd, the file still old: n1 stops
#      leading within 2 x TTL (etcd 3.4 renews a lease without looking at
#      the token, so only the confirmations fail), says why, and does not
#      storm etcd with authentications (its backoff: 1, 2, 4, 8 s); a
#      transaction that wrote before that is open. The file gets the new
#      password: n1 leads again, and that transaction must not commit.
#   c. the role's permission revoked, then granted again: the same.
#   d. a new password, in a password file made 0644: no authentication
#      with it, a clear error; 0600 again: n1 leads again.
#   e. the user deleted, then created again: not the leader meanwhile,
#      the leader again after.
# Never a password or a token in any log.

use strict;
use warnings;

use File::Copy qw(move);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

use FindBin;
use lib $FindBin::RealBin;

use EtcdServer;
use LeaderElectionTest;

my $ttl = 4;
my @passwords = ('Pw-one-7c1f2a', 'Pw-two-93bd0e', 'Pw-three-5a6e11');
my $root = '--user=root:Root-pw-4e2d90';

my $etcd = EtcdServer->new('etcd');
$etcd->start;
$etcd->etcdctl('user', 'add', 'root:Root-pw-4e2d90');
$etcd->etcdctl('user', 'grant-role', 'root', 'root');
$etcd->etcdctl('user', 'add', "pgnode:$passwords[0]");
$etcd->etcdctl('role', 'add', 'le');
$etcd->etcdctl('role', 'grant-permission', 'le', '--prefix=true', 'readwrite', '/le/a');
$etcd->etcdctl('user', 'grant-role', 'pgnode', 'le');

my $dir     = PostgreSQL::Test::Utils::tempdir('secrets');
my $pwfile  = "$dir/etcd_password";
sub write_password
{
	my ($pw, $mode) = @_;
	open(my $fh, '>', "$pwfile.new") or die $!;
	print $fh "$pw\n";
	close($fh);
	chmod($mode // 0600, "$pwfile.new");
	move("$pwfile.new", $pwfile) or die $!;
}
write_password($passwords[0]);

my $n1 = le_node('n1', $etcd, prefix => '/le/a', lease_ttl => $ttl,
	extra_conf => "leader_election.username = 'pgnode'\n"
	  . "leader_election.password_file = '$pwfile'");
my $n2 = le_node('n2', $etcd, prefix => '/le/b', lease_ttl => $ttl);
ok(le_wait_leader($n1), 'n1 leads (etcd without authentication)');
ok(le_wait_leader($n2), 'n2 leads (etcd without authentication)');
$n1->safe_psql('postgres', 'CREATE TABLE w (id int PRIMARY KEY)');

sub leads { return $_[0]->safe_psql('postgres', 'SELECT leader_is_primary()') eq 't'; }

# etcd's count of Authenticate calls it handled
sub authentications
{
	my $m = `curl -s ${\ $etcd->url}/metrics`;
	my $n = 0;
	$n += $1 while $m =~ /^grpc_server_handled_total\{[^}]*grpc_method="Authenticate"[^}]*\} (\d+)/mg;
	return $n;
}

# a. auth enabled after start
$etcd->etcdctl('auth', 'enable');
ok(defined le_time_until(2 * $ttl, sub { !leads($n2) }), 'a: n2 (no user) stops leading');
note 'a: n2 last_error: ' . (le_status($n2)->{last_error} // '');
sleep(2);
ok(leads($n1), 'a: n1 (user set) leads on');
note 'a: n1 ' . join(' ', map { "$_=" . (le_status($n1)->{$_} // '') } qw(phase role last_error fencing_token));

# Runs one fault: opens a transaction that writes, breaks, checks fencing and
# the rate of authentications, repairs, checks that n1 leads again and that
# the transaction does not commit.
sub fault
{
	my ($what, $id, $break, $repair) = @_;
	ok(defined le_time_until(30, sub { leads($n1) }), "$what: n1 leads before");
	my $token = le_status($n1)->{fencing_token};
	my $bg = le_session($n1);
	my ($out, $err) = le_bg_query($bg, "BEGIN; INSERT INTO w VALUES ($id); SELECT 'ok'");
	is($out, 'ok', "$what: a transaction wrote");
	$break->();
	my $t0 = time();
	my $fenced = le_time_until(2 * $ttl, sub { !leads($n1) });
	ok(defined $fenced, "$what: n1 stops leading within 2 x TTL");
	my $a0 = authentications();
	sleep(15);
	my $a1 = authentications();
	my $st = le_status($n1);
	note "$what: fenced after " . sprintf('%.2f', $fenced // -1)
	  . " s; phase $st->{phase}, role $st->{role}, last_error: " . ($st->{last_error} // '');
	ok(!leads($n1), "$what: n1 is not the leader 15 s later");
	cmp_ok($a1 - $a0, '<=', 8, "$what: at most 8 authentications in 15 s (saw " . ($a1 - $a0) . ')');
	$repair->();
	my $back = le_time_until(30, sub { leads($n1) });
	ok(defined $back, "$what: n1 leads again after the repair");
	note sprintf('%s: leads again %.2f s after the repair, fencing token %s (was %s)',
		$what, $back // -1, le_status($n1)->{fencing_token}, $token);
	($out, $err) = le_bg_query($bg, 'COMMIT');
	like($err, qr/25006/, "$what: the transaction that wrote before does not commit (25006)")
	  or diag "out: $out; err: $err";
	$bg->quit;
	is($n1->safe_psql('postgres', "SELECT count(*) FROM w WHERE id = $id"), '0',
		"$what: ... its row is not there");
}

# etcdctl reads the new password from stdin with --interactive=false
# etcdctl reads the new password from stdin with --interactive=false; a new
# password also invalidates the user's tokens, so n1 must authenticate again
sub set_password
{
	my ($pw) = @_;
	my ($out, $err) = ('', '');
	local $ENV{ETCDCTL_API} = 3;
	IPC::Run::run([ 'etcdctl', '--endpoints=' . $etcd->url, $root, 'user', 'passwd',
		'pgnode', '--interactive=false' ], '<', \"$pw\n", '>', \$out, '2>', \$err);
	note "passwd: $out $err";
}

fault('b (password changed)', 1,
	sub { set_password($passwords[1]) },
	sub { write_password($passwords[1]) });

fault('c (permission revoked)', 2,
	sub { $etcd->etcdctl($root, 'role', 'revoke-permission', 'le', '/le/a', '--prefix=true') },
	sub { $etcd->etcdctl($root, 'role', 'grant-permission', 'le', '--prefix=true', 'readwrite', '/le/a') });

fault('d (password file 0644)', 3,
	sub {
		# the new password, in a file that others may read
		write_password($passwords[2], 0644);
		set_password($passwords[2]);
	},
	sub { chmod(0600, $pwfile) });
note 'd: n1 log lines about the file: '
  . join(' | ', grep { /password_file/ } split /\n/, slurp_file($n1->logfile));

fault('e (user deleted)', 4,
	sub { $etcd->etcdctl($root, 'user', 'delete', 'pgnode') },
	sub {
		$etcd->etcdctl($root, 'user', 'add', "pgnode:$passwords[2]");
		$etcd->etcdctl($root, 'user', 'grant-role', 'pgnode', 'le');
	});

# no secret in any log
my $leaks = '';
foreach my $f (glob("$PostgreSQL::Test::Utils::log_path/*"), $n1->logfile, $n2->logfile)
{
	next if $f =~ /regress_log/;    # the test's own log holds the etcdctl commands
	my $text = slurp_file($f);
	$leaks .= "$f: password\n" if grep { index($text, $_) >= 0 } @passwords;
	$leaks .= "$f: token $1\n" if $f !~ /etcd\.log$/ && $text =~ /([A-Za-z]{16}\.\d+)/;
}
is($leaks, '', 'no password or token in the logs');

done_testing();
