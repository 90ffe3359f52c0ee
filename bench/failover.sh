#!/usr/bin/env bash
# Benchmark (not a test) of automatic failover in a streaming-replication cluster: etcd + 3 local
# nodes made as README.md's "Streaming replication" recipe says (node1 initdb'd, node2 and node3
# by pg_basebackup), lease_ttl=2 s. A client writes single-row commits as fast as it can through
# ONE multi-host libpq connection string with target_session_attrs=read-write, and
#   (a) crash: pg_ctl stop -m immediate of the primary; the time from the crash to the client's
#       first write on the new primary, N_CRASH repetitions. Goal: TTL + 1 s.
#   (b) switchover: SELECT leader_resign() on the primary; the time from the call to the client's
#       first write on the new primary (goal: under 1 s), and the acknowledged rows that are
#       missing on the new primary (must be 0), N_SWITCH repetitions.
# After each repetition the old primary is rejoined as a standby (scripts/rejoin-standby.sh:
# pg_rewind from the new primary) and the next repetition starts once both standbys stream
# from the primary and stand in the queue.
# Usage: bench/failover.sh [N_CRASH [N_SWITCH]]   defaults 5 and 20;
#        FAILOVER_TIMEOUT (default 15) s to wait for the first write on the new primary.
# Exits 1 if a switchover lost an acknowledged row (or something broke), else 0.
set -euo pipefail
source "$(dirname "$0")/../scripts/cluster-lib.sh"

N_CRASH=${1:-5}
N_SWITCH=${2:-20}
TIMEOUT=${FAILOVER_TIMEOUT:-15}
[[ $N_CRASH =~ ^[0-9]+$ && $N_SWITCH =~ ^[0-9]+$ && $TIMEOUT =~ ^[1-9][0-9]*$ ]] ||
	le_die "usage: bench/failover.sh [N_CRASH [N_SWITCH]]  (FAILOVER_TIMEOUT: a positive integer)"

if [[ ${LE_STAGE:-} != user ]]; then
	le_prepare failover
	le_run_user bench/failover.sh "$N_CRASH" "$N_SWITCH"
	exit
fi

TTL=2
CRASH_GOAL_MS=$((TTL * 1000 + 1000))
SWITCH_GOAL_MS=1000
trap le_cleanup EXIT

median() { le_stats | awk '{ print $2 }'; }
sum() { awk '{ s += $1 } END { print s + 0 }'; }
ms_since() { le_ms "$1" "$(le_now)"; echo; }    # one line: ms from time $1 to now

# The client: one connection (DBD::Pg, libpq) through the read-write string; each INSERT is its
# own transaction with the next id of this run; on an error it drops the connection and connects
# again at once (after a failed connection attempt, 2 ms later). One line per attempt, in
# bench/writer.c's format (so that le_writer_landed and le_writer_outages read it), the id in
# the fourth field of an "ok" line:
#   <unix time> ok <port> <id>  |  <unix time> fail <port> <sqlstate> <message>
#   <unix time> fail - connect <message>
cat >"$LE_WORK/rowwriter.pl" <<'EOF'
use strict;
use warnings;
use DBI;
use Time::HiRes qw(time sleep);

my ($conninfo, $rep, $seconds) = @ARGV;
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
		unless ($dbh) {
			printf "%.6f fail - connect %s\n", time, oneline($DBI::errstr);
			sleep 0.002;
			next;
		}
		$port = $dbh->{pg_port};
	}
	$id++;
	if ($dbh->do("INSERT INTO failover (rep, id) VALUES ($rep, $id)")) {
		printf "%.6f ok %s %d\n", time, $port, $id;
	} else {
		printf "%.6f fail %s %s %s\n", time, $port, $dbh->state || '-----', oneline($dbh->errstr);
		$dbh->disconnect;
		undef $dbh;
	}
}
EOF

# $1: log, $2: run number (the table's rep). Sets LE_WRITER_PID.
rowwriter_start() {
	: >"$1"
	perl "$LE_WORK/rowwriter.pl" "$CONNINFO" "$2" $((TIMEOUT + 60)) >>"$1" 2>&1 &
	LE_WRITER_PID=$!
	LE_BG_PIDS+=("$LE_WRITER_PID")
}

# Acknowledged rows of run $2 (the ids in log $1) that node $3 does not have; sets MISSING, and
# EXTRA to the rows it has that the client was not told about (a commit whose answer was lost).
check_rows() {
	local out
	awk '$2 == "ok" { print $4 }' "$1" >"$1.acked"
	out=$(le_psql "$3" "CREATE TEMP TABLE acked (id integer PRIMARY KEY)" \
		-c "\\copy acked FROM '$1.acked'" \
		-c "SELECT (SELECT count(*) FROM acked a WHERE NOT EXISTS
				(SELECT FROM failover f WHERE f.rep = $2 AND f.id = a.id)),
			(SELECT count(*) FROM failover f WHERE f.rep = $2 AND NOT EXISTS
				(SELECT FROM acked a WHERE a.id = f.id))" | tail -n 1)
	IFS='|' read -r MISSING EXTRA <<<"$out"
}

# What the nodes say about their replication, and the end of their logs: printed before the
# script gives up (the work dir is removed on exit).
diagnose() {
	local i
	echo
	le_stream_table
	for ((i = 1; i <= LE_NODES; i++)); do
		le_node_up "$i" || continue
		echo "  node$i: pg_stat_wal_receiver / pg_stat_replication / WAL positions:"
		le_psql "$i" "SELECT status, received_tli, receive_start_lsn, written_lsn, flushed_lsn,
				latest_end_lsn, sender_port FROM pg_stat_wal_receiver" -P format=aligned \
			-P tuples_only=off -P footer=off | sed 's/^/    /'
		le_psql "$i" "SELECT application_name, state, sent_lsn, write_lsn, flush_lsn, replay_lsn
				FROM pg_stat_replication" -P format=aligned -P tuples_only=off -P footer=off |
			sed 's/^/    /'
		le_psql "$i" "SELECT CASE WHEN pg_is_in_recovery() THEN 'receive ' ||
				pg_last_wal_receive_lsn() || ', replay ' || pg_last_wal_replay_lsn()
				ELSE 'current ' || pg_current_wal_lsn() END" | sed 's/^/    /'
	done
	for ((i = 1; i <= LE_NODES; i++)); do
		echo "  --- node$i.log, last 25 lines"
		tail -n 25 "$LE_WORK/node$i.log" | cut -c1-250 | sed 's/^/    /'
	done
}

# Every running node but the leader streams from it and stands; else the state, and die.
settle() {
	le_find_leader || le_until 30 le_find_leader || { diagnose; le_die "no leader"; }
	if ! le_stream_settled 40; then
		diagnose
		le_die "the standbys do not stream from node$LE_LEADER and stand within 40 s"
	fi
}

le_heading "setup: etcd on 127.0.0.1:23797, 3 streaming nodes, lease_ttl=${TTL}s"
le_etcd_start 23797 23807
le_stream_init 3 54380 /leader_election/failover "$TTL"
le_psql 1 "CREATE TABLE failover (rep integer, id integer,
	port integer NOT NULL DEFAULT current_setting('port')::integer, PRIMARY KEY (rep, id))"
settle
le_stream_table
CONNINFO=$(le_rw_conninfo)
echo
echo "  client: $LE_WORK/rowwriter.pl (DBD::Pg), single-row INSERTs, autocommit, through"
echo "    $CONNINFO"

# $1: crash | switchover, $2: repetitions, $3: first run number.
declare -A timeouts=([crash]=0 [switchover]=0) errors=([crash]=0 [switchover]=0)
run() {
	local how=$1 n=$2 r rep old log out ms t streak=0
	: >"$LE_WORK/bench.$how"
	: >"$LE_WORK/missing.$how"
	: >"$LE_WORK/extra.$how"
	: >"$LE_WORK/rate.$how"
	: >"$LE_WORK/path.$how"
	: >"$LE_WORK/call.$how"
	: >"$LE_WORK/rejoin.$how"
	: >"$LE_WORK/settle.$how"
	for ((r = 1; r <= n; r++)); do
		rep=$(($3 + r))
		le_find_leader || le_until 30 le_find_leader || { diagnose; le_die "no leader"; }
		old=$LE_LEADER
		log=$LE_WORK/writer.$how.$r
		rowwriter_start "$log" "$rep"
		le_until 10 le_writer_landed "$log" 0 - || printf ' [no write before the trigger]'
		# with the client writing: a standby restarted on an idle primary may wait for new WAL
		# before it counts as caught up (see bench/README.md)
		t=$(le_now)
		settle
		ms_since "$t" >>"$LE_WORK/settle.$how"
		sleep 0.5
		if [[ $how == crash ]]; then
			le_trigger immediate "$old"
		elif out=$(le_psql "$old" "SELECT extract(epoch FROM clock_timestamp()), leader_resign()" 2>&1) &&
			[[ $out == *'|t' ]]; then
			LE_T0=${out%|t}
			ms_since "$LE_T0" >>"$LE_WORK/call.$how"
		else
			le_writer_stop
			printf ' error'
			errors[$how]=$((errors[$how] + 1))
			{
				echo "--- $how $r: leader_resign() on node$old: $out"
				le_psql "$old" "SELECT 'WAL insert ' || pg_current_wal_insert_lsn() || ', write ' ||
					pg_current_wal_lsn() || ', flush ' || pg_current_wal_flush_lsn()"
				le_psql "$old" "SELECT application_name, state, sent_lsn, flush_lsn
					FROM pg_stat_replication" -P format=aligned -P tuples_only=off -P footer=off
			} >>"$LE_WORK/errors.$how" 2>&1
			continue
		fi
		if le_until "$TIMEOUT" le_writer_landed "$log" "$LE_T0" $((LE_PORT_BASE + old)); then
			ms=$(le_ms "$LE_T0" "$LE_LANDED_AT")
			echo "$ms" >>"$LE_WORK/bench.$how"
			printf ' %s' "$ms"
			echo "node$old -> node$LE_LANDED_NODE" >>"$LE_WORK/path.$how"
			streak=0
			sleep 0.2
			le_writer_stop
			check_rows "$log" "$rep" "$LE_LANDED_NODE"
			echo "$MISSING" >>"$LE_WORK/missing.$how"
			echo "$EXTRA" >>"$LE_WORK/extra.$how"
			((MISSING == 0)) || printf '(%s missing)' "$MISSING"
		else
			le_writer_stop
			printf ' timeout'
			timeouts[$how]=$((timeouts[$how] + 1))
			streak=$((streak + 1))
			{
				echo "--- $how $r: no write on another node within ${TIMEOUT} s of the trigger"
				le_stream_table
				tail -n 3 "$log" | cut -c1-300
			} >>"$LE_WORK/errors.$how"
		fi
		# commits per second before the trigger: the resolution of the measurement
		awk -v t0="$LE_T0" 'NR == 1 { t = $1 } $2 == "ok" && $1 + 0 < t0 + 0 { n++; last = $1 }
			END { if (n > 1) print (n - 1) / (last - t) }' "$log" >>"$LE_WORK/rate.$how"
		le_find_leader || le_until 30 le_find_leader || { diagnose; le_die "no leader after $how $r"; }
		t=$(le_now)
		le_stream_rejoin "$old"
		ms_since "$t" >>"$LE_WORK/rejoin.$how"
		le_stream_unstick 15 >"$LE_WORK/unstick"
		if [[ -s $LE_WORK/unstick ]]; then
			printf '[rewound: node%s]' "${LE_REWOUND[*]}"
			{
				echo "--- $how $r: node$old -> node$LE_LEADER; afterwards:"
				cat "$LE_WORK/unstick"
			} >>"$LE_WORK/stuck.$how"
		fi
		if ((streak == 2 && r < n)); then
			echo
			echo "  two repetitions in a row found no new primary within ${TIMEOUT} s; skipping the"
			echo "  rest of '$how'. See below."
			break
		fi
	done
	echo
}

if ((N_CRASH > 0)); then
	le_heading "(a) crash: $N_CRASH repetitions (ms from pg_ctl stop -m immediate to the first write on the new primary)"
	run crash "$N_CRASH" 0
fi
if ((N_SWITCH > 0)); then
	le_heading "(b) switchover: $N_SWITCH repetitions (ms from leader_resign() to the first write on the new primary)"
	run switchover "$N_SWITCH" 1000
fi
le_find_leader || le_until 30 le_find_leader || { diagnose; le_die "no leader"; }
le_stream_settled 20 || echo "  (not every standby stands 20 s after the last rejoin: see bench/README.md)"
echo
le_stream_table

le_heading "results (lease_ttl=${TTL}s; the old primary rejoined with pg_rewind after each)"
printf '  %-46s %3s %9s %9s %9s %8s %8s %8s\n' "trigger -> first write on the new primary, ms" \
	N min median max timeouts missing extra
for how in crash switchover; do
	[[ -f $LE_WORK/bench.$how ]] || continue
	case $how in
	crash) label="pg_ctl stop -m immediate of the primary" ;;
	switchover) label="leader_resign() on the primary" ;;
	esac
	printf '  %-46s %3s %s %8s %8s %8s\n' "$label" "$(wc -l <"$LE_WORK/bench.$how")" \
		"$(le_stats <"$LE_WORK/bench.$how")" "${timeouts[$how]}" \
		"$(sum <"$LE_WORK/missing.$how")" "$(sum <"$LE_WORK/extra.$how")"
done
if ((errors[switchover] > 0)); then
	echo "  leader_resign() raised an error in ${errors[switchover]} repetitions (shown below)"
fi
echo "  (missing: acknowledged rows not on the new primary, summed over the repetitions; extra:"
echo "  rows there whose commit the client was not told about)"
if [[ -s $LE_WORK/call.switchover ]]; then
	printf '  %-46s %3s %s\n' "leader_resign() until psql returned, ms" \
		"$(wc -l <"$LE_WORK/call.switchover")" "$(le_stats <"$LE_WORK/call.switchover")"
fi
printf '  %-46s %3s %s\n' "between repetitions: rejoin (pg_rewind), ms" \
	"$(cat "$LE_WORK"/rejoin.* | wc -l)" "$(cat "$LE_WORK"/rejoin.* | le_stats)"
printf '  %-46s %3s %s\n' "writer started -> both standbys stand, ms" \
	"$(cat "$LE_WORK"/settle.* | wc -l)" "$(cat "$LE_WORK"/settle.* | le_stats)"
echo "  the client committed $(cat "$LE_WORK"/rate.* | median | awk '{ printf "%.0f", $1 }')" \
	"rows/s before a trigger (median)"
for how in crash switchover; do
	[[ -f $LE_WORK/path.$how ]] || continue
	echo "  $how, old -> new primary: $(sort "$LE_WORK/path.$how" | uniq -c |
		awk '{ printf "%s%s %s %s x%s", sep, $2, $3, $4, $1; sep = ", " }')"
done
for how in crash switchover; do
	if [[ -s $LE_WORK/stuck.$how ]]; then
		echo
		echo "  $how: $(grep -c '^---' "$LE_WORK/stuck.$how") repetitions left a standby that could not" \
			"follow the new primary:"
		sed 's/^/    /' "$LE_WORK/stuck.$how"
	fi
	if [[ -s $LE_WORK/errors.$how ]]; then
		echo
		echo "  $how: errors and timeouts:"
		sed 's/^/    /' "$LE_WORK/errors.$how"
	fi
done
echo
rc=0
verdict() {    # $1: name, $2: median, $3: goal
	if [[ $2 == - ]]; then
		echo "  NOTE $1: no repetition found the new primary"
	elif awk -v m="$2" -v g="$3" 'BEGIN { exit !(m < g) }'; then
		echo "  PASS $1: median $2 ms < goal $3 ms"
	else
		echo "  NOTE $1: median $2 ms, goal under $3 ms"
	fi
}
if [[ -f $LE_WORK/bench.crash ]]; then
	verdict crash "$(median <"$LE_WORK/bench.crash")" "$CRASH_GOAL_MS"
	echo "  (a crash loses what the primary acknowledged but had not yet sent: asynchronous"
	echo "  replication, bounded by leader_election.max_lag_on_failover; 'missing' above counts it)"
fi
if [[ -f $LE_WORK/bench.switchover ]]; then
	verdict switchover "$(median <"$LE_WORK/bench.switchover")" "$SWITCH_GOAL_MS"
	lost=$(sum <"$LE_WORK/missing.switchover")
	done_n=$(wc -l <"$LE_WORK/missing.switchover")
	if ((lost == 0)); then
		echo "  PASS switchover: no acknowledged row missing on the new primary ($done_n repetitions)"
	else
		echo "  FAIL switchover: $lost acknowledged rows missing on the new primary ($done_n repetitions)"
		rc=1
	fi
fi
exit "$rc"
