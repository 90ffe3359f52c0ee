#!/usr/bin/env bash
# Benchmark (not a test) of the write outage a client sees through HAProxy, which routes to the
# node whose HTTP endpoint (leader_election.http_listen) answers GET /primary with 200, next to
# the same events seen through libpq's own routing (one multi-host string with
# target_session_attrs=read-write, as bench/failover.sh), in the same run. etcd + 3 local
# streaming nodes made as README.md's "Streaming replication" recipe says, lease_ttl=2 s,
# synchronous_mode off; every node also listens on 127.0.0.1 (HAProxy forwards TCP) and answers
# health checks on its own endpoint port. HAProxy, started by the script as the same
# unprivileged user, has the configuration a Patroni user has (check every 100 ms, fall 2,
# rise 1, on-marked-down shutdown-sessions; printed at the start).
# Two clients write at the same time, one through HAProxy's port (plain libpq, no
# target_session_attrs), one through the read-write string; each commits single-row INSERTs
# in a loop on one connection and reconnects at once after any error. For each of
#   resign: SELECT leader_resign() on the leader,
#   fast:   pg_ctl stop -m fast of the leader,
#   crash:  pg_ctl stop -m immediate of the leader,
# N repetitions, the time from the trigger to each client's first write on the new leader
# (min/median/max per client and event), the failed attempts in between (fence refusals
# 25006 among them), and writes that landed on a node that did not lead (must be none). After
# each repetition the old leader is rejoined as a standby (scripts/rejoin-standby.sh, pg_rewind)
# and the next starts once both standbys stream from the leader and stand, and HAProxy marks
# only the leader UP.
# Last, from HAProxy's log: the client sessions HAProxy dispatched to a leader whose port had
# just closed (fast stop, crash) before its checks marked it DOWN: such a session waits out
# HAProxy's connection retries (retries 3, min(timeout connect, 1 s) apart), which neither
# on-marked-down shutdown-sessions nor the new leader's check ends, so the client waits until its
# connect_timeout (2 s; "timeout expired" among the failed attempts). HAPROXY_EXTRA='retries 0'
# measures the same configuration without retries (the client reconnects by itself).
# Usage: bench/haproxy.sh [N]   N defaults to 5 (per event);
#        HAPROXY_TIMEOUT (default 15) s to wait for each client's first write on the new leader,
#        HAPROXY_PAUSE_MS (default 0) ms each client sleeps between commits,
#        HAPROXY_INTER (default 100ms) HAProxy's check interval,
#        HAPROXY_EXTRA: more directives for the listen section, separated by ';' (e.g. 'retries 0'),
#        LE_PG_BIN: the PostgreSQL bin directory to use instead of /usr/lib/postgresql/15/bin
#          (a relocated copy, e.g. /tmp/run_tap.sh's: the build is installed there, or with
#          LE_SKIP_BUILD=1 nothing is installed and that copy's leader_election.so is used).
# Exits 1 if something broke or a client wrote on a node that did not lead, else 0.
set -euo pipefail
source "$(dirname "$0")/../scripts/cluster-lib.sh"
if [[ -n ${LE_PG_BIN:-} ]]; then
	PG_BIN=$LE_PG_BIN
	# shellcheck disable=SC2034 # le_prepare builds with it
	PG_CONFIG=$PG_BIN/pg_config
	PATH=$PG_BIN:$PATH
fi

N=${1:-5}
TIMEOUT=${HAPROXY_TIMEOUT:-15}
PAUSE_MS=${HAPROXY_PAUSE_MS:-0}
INTER=${HAPROXY_INTER:-100ms}
EXTRA=${HAPROXY_EXTRA:-}
[[ $N =~ ^[1-9][0-9]*$ && $TIMEOUT =~ ^[1-9][0-9]*$ && $PAUSE_MS =~ ^[0-9]+$ &&
	$INTER =~ ^[1-9][0-9]*(us|ms|s)?$ ]] ||
	le_die "usage: bench/haproxy.sh [N]  (N, HAPROXY_TIMEOUT: positive integers;" \
		"HAPROXY_PAUSE_MS: an integer >= 0; HAPROXY_INTER: an HAProxy time such as 100ms)"

HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
if [[ ${LE_STAGE:-} != user ]]; then
	[[ -x $HAPROXY ]] || le_die "haproxy is not installed (apt-get install haproxy)"
	le_prepare haproxy
	le_run_user bench/haproxy.sh "$N"
	exit
fi

TTL=2
# TCP ports below the kernel's ephemeral range (32768-60999 by default), so that no outgoing
# connection holds one as its local port when a node, its endpoint or HAProxy binds it
PORT_BASE=25390          # nodes: 25391-25393 (unix sockets and 127.0.0.1)
HTTP_BASE=25400          # their endpoints: 25401-25403
HP_PORT=25400            # HAProxy's bind port
trap le_cleanup EXIT

# The recipe's configuration (scripts/cluster-lib.sh), plus TCP on 127.0.0.1 and the endpoint:
# le_stream_init writes it for every node; a rejoined node keeps its own file.
eval "le_stream_conf_recipe() $(declare -f le_stream_conf | tail -n +2)"
le_stream_conf() {
	le_stream_conf_recipe "$1"
	cat >>"$LE_WORK/node$1/postgresql.conf" <<-EOC
		# --- bench/haproxy.sh: HAProxy forwards TCP and checks the endpoint
		listen_addresses = '127.0.0.1'
		leader_election.http_listen = '127.0.0.1:$((HTTP_BASE + $1))'
	EOC
}

# --- HAProxy ------------------------------------------------------------------------------------
# The configuration of a Patroni user (Patroni's template: option httpchk, http-check expect
# status 200, on-marked-down shutdown-sessions), with a 100 ms check interval. The stats socket
# is only for this script, to see which servers HAProxy marks UP; the log (every session, and
# every server state change, with the time) goes to haproxy.log.
haproxy_config() {
	local i d
	cat <<-EOC
		global
		    maxconn 100
		    stats socket $LE_WORK/haproxy.sock mode 600 level admin
		    log stderr format iso local0
		defaults
		    mode tcp
		    log global
		    option tcplog
		    timeout connect 2s
		    timeout client 30m
		    timeout server 30m
		    timeout check 1s
		listen primary
		    bind 127.0.0.1:$HP_PORT
		    option httpchk GET /primary
		    http-check expect status 200
		    default-server inter $INTER fall 2 rise 1 on-marked-down shutdown-sessions
	EOC
	IFS=';' read -ra d <<<"$EXTRA"
	for i in "${d[@]}"; do
		if [[ -n ${i// /} ]]; then echo "    $(echo "$i" | sed 's/^ *//; s/ *$//')"; fi
	done
	for ((i = 1; i <= LE_NODES; i++)); do
		echo "    server node$i 127.0.0.1:$((PORT_BASE + i)) check port $((HTTP_BASE + i))"
	done
}

haproxy_start() {
	haproxy_config >"$LE_WORK/haproxy.cfg"
	"$HAPROXY" -c -q -f "$LE_WORK/haproxy.cfg" || le_die "haproxy -c: the configuration is invalid"
	# -db: in the foreground (this script's child, stopped by le_cleanup); its messages
	# ("Server primary/node1 is DOWN ...") go to haproxy.log
	"$HAPROXY" -f "$LE_WORK/haproxy.cfg" -db >>"$LE_WORK/haproxy.log" 2>&1 &
	LE_BG_PIDS+=("$!")
	le_until 10 haproxy_up >/dev/null || le_die "HAProxy does not answer on its stats socket"
}

# Prints the servers HAProxy marks UP ("node1,node3"; "UP 1/2", one failed check of fall 2,
# counts: HAProxy still routes there); fails if HAProxy does not answer.
haproxy_up() {
	perl -MIO::Socket::UNIX -e '
		my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or exit 1;
		print $s "show stat\n";
		my @up;
		while (<$s>) {
			my @f = split /,/;    # pxname, svname, ..., status (the 18th field)
			push @up, $f[1] if $f[0] eq "primary" && $f[1] !~ /^(FRONTEND|BACKEND)$/
				&& ($f[17] // "") =~ /^UP/;
		}
		print join(",", @up), "\n";' "$LE_WORK/haproxy.sock"
}

haproxy_only() { [[ $(haproxy_up) == "node$1" ]]; }

# True when HAProxy holds no client session (the frontend's scur is 0).
haproxy_idle() {
	perl -MIO::Socket::UNIX -e '
		my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or exit 1;
		print $s "show stat\n";
		while (<$s>) { my @f = split /,/; exit($f[4] == 0 ? 0 : 1) if $f[0] eq "primary" && $f[1] eq "FRONTEND" }
		exit 1;' "$LE_WORK/haproxy.sock"
}

# --- the clients --------------------------------------------------------------------------------
# One connection (DBD::Pg, libpq) through the connection string $1; after connecting it asks the
# node's port (through HAProxy the connection's own port is HAProxy's); each INSERT is its own
# transaction; on any error it drops the connection and connects again at once (2 ms after a
# failed connection attempt). One line per attempt, in bench/writer.c's format (so that
# le_writer_landed reads it), with the port of the node the session is on:
#   <unix time> ok <port> <id>  |  <unix time> fail <port> <sqlstate> <message>
#   <unix time> fail - connect <message>
cat >"$LE_WORK/rowwriter.pl" <<'EOF'
use strict;
use warnings;
use DBI;
use Time::HiRes qw(time sleep);

my ($conninfo, $route, $seconds, $pause_ms) = @ARGV;
(my $dsn = $conninfo) =~ s/ /;/g;
my $stop = 0;
$SIG{TERM} = $SIG{INT} = sub { $stop = 1 };
$| = 1;
sub oneline { my $m = shift // ''; $m =~ s/\s+$//; $m =~ s/\n/ | /g; $m =~ s/\t//g; return $m }

my ($dbh, $port, $id) = (undef, '-', 0);
my $deadline = time + $seconds;
while (!$stop && time < $deadline) {
	unless ($dbh) {
		$dbh = DBI->connect("dbi:Pg:$dsn", '', '',
			{ AutoCommit => 1, RaiseError => 0, PrintError => 0 });
		($port) = $dbh->selectrow_array("SELECT current_setting('port')") if $dbh;
		unless ($dbh && defined $port) {
			printf "%.6f fail - connect %s\n", time, oneline($DBI::errstr);
			$dbh = undef;
			$port = '-';
			sleep 0.002;
			next;
		}
	}
	$id++;
	if ($dbh->do("INSERT INTO haproxy_bench (route, id) VALUES ('$route', $id)")) {
		printf "%.6f ok %s %d\n", time, $port, $id;
		sleep $pause_ms / 1000 if $pause_ms;
	} else {
		printf "%.6f fail %s %s %s\n", time, $port, $dbh->state || '-----', oneline($dbh->errstr);
		$dbh->disconnect;
		undef $dbh;
	}
}
EOF

declare -A WPID
# $1: route (haproxy | libpq), $2: log. Starts that route's client.
writer_start() {
	: >"$2"
	perl "$LE_WORK/rowwriter.pl" "${CONN[$1]}" "$1" $((TIMEOUT + 60)) "$PAUSE_MS" >>"$2" 2>&1 &
	WPID[$1]=$!
	LE_BG_PIDS+=("$!")
}

writer_stop() {
	kill "${WPID[$1]}" 2>/dev/null || true
	wait "${WPID[$1]}" 2>/dev/null || true
}

# Log $1, trigger time $2, first write on the new leader at $3: prints one reason per failed
# attempt in between: "25006 (fence refusal)", another SQLSTATE, or libpq's message.
fail_reasons() {
	awk -v t0="$2" -v t1="$3" '$2 == "fail" && $1 + 0 > t0 + 0 && $1 + 0 < t1 + 0 {
		if ($4 == "25006") { print "25006 (fence refusal)"; next }
		if ($4 != "connect" && $4 != "-----") { print "SQLSTATE " $4; next }
		msg = $0
		sub(/^[^ ]+ [^ ]+ [^ ]+ [^ ]+ /, "", msg)
		sub(/.*failed: /, "", msg)      # libpq names the address first
		sub(/ \|.*/, "", msg)
		print (($4 == "connect") ? "connect: " : "") substr(msg, 1, 70) }' "$1"
}

# Log $1, trigger time $2, old leader's port $3, new leader's port $4: prints the writes after
# the trigger that landed on neither, or on the old leader after the first one on the new.
stray_writes() {
	awk -v t0="$2" -v old="$3" -v new="$4" '$2 == "ok" && $1 + 0 > t0 + 0 {
		if ($3 == new) { seen = 1; next }
		if ($3 != old || seen) print }' "$1"
}

# Every running node but the leader streams from it and stands, and HAProxy marks only the
# leader UP; else the state, and die.
settle() {
	le_find_leader || le_until 30 le_find_leader || le_die "no leader"
	if ! le_stream_settled 40; then
		le_stream_table
		le_die "the standbys do not stream from node$LE_LEADER and stand within 40 s"
	fi
	if ! le_until 10 haproxy_only "$LE_LEADER"; then
		le_stream_table
		le_die "HAProxy marks '$(haproxy_up)' UP, not node$LE_LEADER alone, 10 s after it settled"
	fi
}

le_heading "setup: etcd on 127.0.0.1:23798, 3 streaming nodes (ports $((PORT_BASE + 1))-$((PORT_BASE + 3)), endpoints $((HTTP_BASE + 1))-$((HTTP_BASE + 3))), lease_ttl=${TTL}s, HAProxy on 127.0.0.1:$HP_PORT"
for p in $HP_PORT $((PORT_BASE + 1)) $((PORT_BASE + 2)) $((PORT_BASE + 3)) \
	$((HTTP_BASE + 1)) $((HTTP_BASE + 2)) $((HTTP_BASE + 3)); do
	le_port_free "$p" || le_die "port $p on 127.0.0.1 is in use"
done
le_etcd_start 23798 23808
le_stream_init 3 "$PORT_BASE" /leader_election/haproxy "$TTL"
le_psql 1 "CREATE TABLE haproxy_bench (route text NOT NULL, id integer NOT NULL,
	port integer NOT NULL DEFAULT current_setting('port')::integer,
	at timestamptz NOT NULL DEFAULT clock_timestamp())"
haproxy_start
settle
le_stream_table
declare -A CONN=(
	[haproxy]="host=127.0.0.1 port=$HP_PORT user=postgres dbname=postgres connect_timeout=2"
	[libpq]=$(le_rw_conninfo)
)
echo
echo "  HAProxy $("$HAPROXY" -v | awk 'NR == 1 { print $3 }'), configuration ($LE_WORK/haproxy.cfg):"
sed 's/^/    /' "$LE_WORK/haproxy.cfg"
echo
echo "  clients: $LE_WORK/rowwriter.pl (DBD::Pg), single-row INSERTs, autocommit, one connection,"
echo "  reconnecting at once after an error, both writing at the same time:"
echo "    haproxy: ${CONN[haproxy]}"
echo "    libpq:   ${CONN[libpq]}"
((PAUSE_MS == 0)) || echo "  each client sleeps $PAUSE_MS ms after each commit"

ROUTES=(haproxy libpq)
declare -A timeouts=() strays=()
# $1: resign | fast | immediate
run() {
	local how=$1 r old log route ms landed_at landed_node f
	for route in "${ROUTES[@]}"; do
		timeouts[$route.$how]=0 strays[$route.$how]=0
		for f in bench fails refusals reasons rate path; do : >"$LE_WORK/$f.$route.$how"; done
	done
	: >"$LE_WORK/rejoin.$how"
	for ((r = 1; r <= N; r++)); do
		settle
		old=$LE_LEADER
		for route in "${ROUTES[@]}"; do writer_start "$route" "$LE_WORK/writer.$route.$how.$r"; done
		for route in "${ROUTES[@]}"; do
			le_until 10 le_writer_landed "$LE_WORK/writer.$route.$how.$r" 0 - ||
				printf ' [%s: no write before the trigger]' "$route"
		done
		sleep 0.5
		le_trigger "$how" "$old"
		printf '  %s %s: node%s ->' "$how" "$r" "$old"
		landed_node=
		for route in "${ROUTES[@]}"; do
			log=$LE_WORK/writer.$route.$how.$r
			if le_until "$TIMEOUT" le_writer_landed "$log" "$LE_T0" $((PORT_BASE + old)); then
				ms=$(le_ms "$LE_T0" "$LE_LANDED_AT")
				landed_at=$LE_LANDED_AT
				landed_node=$LE_LANDED_NODE
				echo "$ms" >>"$LE_WORK/bench.$route.$how"
				echo "node$old -> node$LE_LANDED_NODE" >>"$LE_WORK/path.$route.$how"
				fail_reasons "$log" "$LE_T0" "$landed_at" >"$LE_WORK/reasons"
				wc -l <"$LE_WORK/reasons" >>"$LE_WORK/fails.$route.$how"
				grep -c '^25006' "$LE_WORK/reasons" >>"$LE_WORK/refusals.$route.$how" || true
				cat "$LE_WORK/reasons" >>"$LE_WORK/reasons.$route.$how"
				printf ' node%s  %s %s ms' "$LE_LANDED_NODE" "$route" "$ms"
			else
				timeouts[$route.$how]=$((timeouts[$route.$how] + 1))
				printf ' %s timeout' "$route"
			fi
		done
		sleep 0.2
		for route in "${ROUTES[@]}"; do
			writer_stop "$route"
			log=$LE_WORK/writer.$route.$how.$r
			if [[ -n $landed_node ]]; then
				stray_writes "$log" "$LE_T0" $((PORT_BASE + old)) $((PORT_BASE + landed_node)) \
					>"$LE_WORK/stray"
				if [[ -s $LE_WORK/stray ]]; then
					strays[$route.$how]=$((strays[$route.$how] + $(wc -l <"$LE_WORK/stray")))
					printf ' (%s: %s writes on a node that did not lead)' "$route" \
						"$(wc -l <"$LE_WORK/stray")"
					sed "s/^/    $route $how $r: /" "$LE_WORK/stray" >>"$LE_WORK/strays"
				fi
			fi
			# commits per second before the trigger: the resolution of the measurement
			awk -v t0="$LE_T0" '$2 == "ok" && $1 + 0 < t0 + 0 { if (!n++) t = $1; last = $1 }
				END { if (n > 1) print (n - 1) / (last - t) }' "$log" >>"$LE_WORK/rate.$route.$how"
		done
		echo
		le_find_leader || le_until 30 le_find_leader || { le_stream_table; le_die "no leader after $how $r"; }
		t=$(le_now)
		if ((LE_LEADER != old)); then le_stream_rejoin "$old"; fi
		le_stream_unstick 15 >"$LE_WORK/unstick"
		[[ -s $LE_WORK/unstick ]] && sed 's/^/  /' "$LE_WORK/unstick"
		le_ms "$t" "$(le_now)" >>"$LE_WORK/rejoin.$how"
		echo >>"$LE_WORK/rejoin.$how"
	done
}

for how in resign fast immediate; do
	case $how in
	resign) label="leader_resign() on the leader" ;;
	fast) label="pg_ctl stop -m fast of the leader" ;;
	immediate) label="pg_ctl stop -m immediate of the leader (crash)" ;;
	esac
	le_heading "$label: $N repetitions (ms from the trigger to each client's first write on the new leader)"
	run "$how"
done

settle
echo
le_stream_table

median() { le_stats | awk '{ print $2 }'; }
sum() { awk '{ s += $1 } END { print s + 0 }'; }
le_heading "results (N=$N, lease_ttl=${TTL}s, HAProxy check inter $INTER fall 2 rise 1${EXTRA:+; $EXTRA})"
printf '  %-34s %-8s %9s %9s %9s %7s %9s %8s\n' "trigger -> first write on the new leader, ms" \
	"" min median max failed refusals timeouts
for how in resign fast immediate; do
	case $how in
	resign) label="leader_resign()" ;;
	fast) label="pg_ctl stop -m fast" ;;
	immediate) label="pg_ctl stop -m immediate (crash)" ;;
	esac
	for route in "${ROUTES[@]}"; do
		printf '  %-34s %-8s %s %7s %9s %8s\n' "$label" "$route" "$(le_stats <"$LE_WORK/bench.$route.$how")" \
			"$(median <"$LE_WORK/fails.$route.$how")" "$(sum <"$LE_WORK/refusals.$route.$how")" \
			"${timeouts[$route.$how]}"
		label=""
	done
done
echo "  (failed: median number of failed attempts between the trigger and that write; refusals:"
echo "  fence refusals (25006) among them, summed over the repetitions)"
for route in "${ROUTES[@]}"; do
	echo "  $route: the client committed $(cat "$LE_WORK"/rate."$route".* | median |
		awk '{ printf "%.0f", $1 }') rows/s before a trigger (median)"
done
echo "  between repetitions, rejoin (pg_rewind) of the old leader: $(cat "$LE_WORK"/rejoin.* | le_stats) ms (min, median, max)"
echo
for how in resign fast immediate; do
	for route in "${ROUTES[@]}"; do
		[[ -s $LE_WORK/reasons.$route.$how ]] || continue
		echo "  $how, $route: failed attempts between the trigger and the first write, by kind:"
		sort "$LE_WORK/reasons.$route.$how" | uniq -c | sort -rn | sed 's/^/    /'
	done
done
# HAProxy's log (option tcplog: ... primary primary/<server> Tw/Tc/Tt bytes state
# actconn/feconn/beconn/srv_conn/retries ...): sessions HAProxy retried, i.e. dispatched to a
# server whose port had closed before HAProxy marked it DOWN; each waits out the retries
# (min(timeout connect, 1 s) apart), as on-marked-down shutdown-sessions does not end a session
# that is still connecting, and without option redispatch it stays on that server.
# (a session is logged when it ends: the clients have stopped, so wait until none is left)
le_until 10 haproxy_idle || echo "  (HAProxy still holds client sessions 10 s after the clients stopped)"
perl -ne 'print "$1\n" if m{ primary primary/\S+ -?\d+/-?\d+/(\d+) \d+ \S\S \d+/\d+/\d+/\d+/[1-9]\d* }' \
	"$LE_WORK/haproxy.log" >"$LE_WORK/retried"
echo "  haproxy: $(wc -l <"$LE_WORK/retried") client sessions waited in HAProxy's connection retries to a" \
	"stopped server;"
echo "  how long HAProxy kept each (ms; the client's connect_timeout=2 gives up at 2000): $(le_stats <"$LE_WORK/retried")"
rc=0
total_strays=0
for k in "${!strays[@]}"; do total_strays=$((total_strays + strays[$k])); done
echo
if ((total_strays == 0)); then
	echo "  PASS no client wrote on a node that did not lead (after a trigger, every write landed on the"
	echo "  old leader before the first one on the new leader, or on the new leader)"
else
	echo "  FAIL $total_strays writes landed on a node that did not lead:"
	cat "$LE_WORK/strays"
	rc=1
fi
exit "$rc"
