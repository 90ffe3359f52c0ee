#!/usr/bin/env bash
# Benchmark (not a test) of automatic failover in a streaming-replication cluster: etcd + 3 local
# nodes made as README.md's "Streaming replication" recipe says (node1 initdb'd, node2 and node3
# by pg_basebackup), lease_ttl=2 s, for each leader_election.synchronous_mode in FAILOVER_MODES
# (default "off on"; set with ALTER SYSTEM on every node, as the README says). A client writes
# single-row commits as fast as it can through ONE multi-host libpq connection string with
# target_session_attrs=read-write, and
#   (a) crash: pg_ctl stop -m immediate of the primary; the time from the crash to the client's
#       first write on the new primary, and the acknowledged rows the new primary lacks, N_CRASH
#       repetitions per mode. Goals: TTL + 1 s; with synchronous_mode = on, no row lost, and only
#       a member of the recorded synchronous set promotes.
#   (b) switchover: SELECT leader_resign() on the primary; the time from the call to the client's
#       first write on the new primary (goal: under 1 s), and the acknowledged rows that are
#       missing on the new primary (must be 0), N_SWITCH repetitions per mode.
# After each repetition the old primary is rejoined as a standby (scripts/rejoin-standby.sh:
# pg_rewind from the new primary) and the next repetition starts once both standbys stream
# from the primary and stand in the queue (and, in sync mode, the leader has a synchronous
# standby on record).
# Then (c): what sync mode costs commits: pgbench against the leader with off and with on,
# interleaved in the same run, tps of each and the ratio on/off.
# Usage: bench/failover.sh [N_CRASH [N_SWITCH]]   defaults 10 and 10 (per mode);
#        FAILOVER_MODES (default "off on"; a build without leader_election.synchronous_mode runs
#          "off" only), FAILOVER_TIMEOUT (default 15) s to wait for the first write on the new
#          primary, FAILOVER_PGBENCH_SECONDS (default 15, 0 skips (c)) per pgbench run,
#          FAILOVER_PGBENCH_ROUNDS (default 2) rounds of one run per mode (off on, on off, ...),
#          FAILOVER_PGBENCH_WORKLOAD insert (default: single-row INSERTs) or tpcb-like (scale 4),
#          FAILOVER_SAVE_LOGS=DIR copies the node and client logs there on exit (DIR must be
#          writable by the user the nodes run as).
# Exits 1 if a switchover lost an acknowledged row, if in sync mode a crash lost one or a standby
# outside the synchronous set promoted (or something broke), else 0.
set -euo pipefail
source "$(dirname "$0")/../scripts/cluster-lib.sh"

N_CRASH=${1:-10}
N_SWITCH=${2:-10}
TIMEOUT=${FAILOVER_TIMEOUT:-15}
MODES=${FAILOVER_MODES:-off on}
PGB_SECS=${FAILOVER_PGBENCH_SECONDS:-15}
PGB_ROUNDS=${FAILOVER_PGBENCH_ROUNDS:-2}
PGB_WORKLOAD=${FAILOVER_PGBENCH_WORKLOAD:-insert}
SAVE_LOGS=${FAILOVER_SAVE_LOGS:-}
[[ $N_CRASH =~ ^[0-9]+$ && $N_SWITCH =~ ^[0-9]+$ && $TIMEOUT =~ ^[1-9][0-9]*$ &&
	$PGB_SECS =~ ^[0-9]+$ && $PGB_ROUNDS =~ ^[1-9][0-9]*$ &&
	$PGB_WORKLOAD =~ ^(insert|tpcb-like)$ && $MODES =~ ^(off|on)( (off|on))*$ ]] ||
	le_die "usage: bench/failover.sh [N_CRASH [N_SWITCH]]  (FAILOVER_TIMEOUT: a positive integer;" \
		"FAILOVER_MODES: off and/or on; FAILOVER_PGBENCH_SECONDS: an integer >= 0;" \
		"FAILOVER_PGBENCH_ROUNDS: a positive integer; FAILOVER_PGBENCH_WORKLOAD: insert | tpcb-like)"

if [[ ${LE_STAGE:-} != user ]]; then
	le_prepare failover
	if [[ -n $SAVE_LOGS ]]; then
		mkdir -p "$SAVE_LOGS"
		chown "$LE_USER:" "$SAVE_LOGS"
	fi
	le_run_user bench/failover.sh "$N_CRASH" "$N_SWITCH"
	exit
fi

TTL=2
CRASH_GOAL_MS=$((TTL * 1000 + 1000))
SWITCH_GOAL_MS=1000

# Copies what a reader of the results may want to see (FAILOVER_SAVE_LOGS) before le_cleanup and
# stage 1 remove the work dir.
save_logs() {
	[[ -n $SAVE_LOGS ]] || return 0
	cp -p "$LE_WORK"/*.log "$LE_WORK"/writer.* "$LE_WORK"/detail.* "$LE_WORK"/errors.* \
		"$LE_WORK"/stuck.* "$LE_WORK"/yields.* "$LE_WORK"/pgbench.* "$SAVE_LOGS"/ 2>/dev/null || true
	echo "  logs copied to $SAVE_LOGS"
}
trap 'save_logs; le_cleanup' EXIT

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

# --- synchronous mode ----------------------------------------------------------------------
# HAS_SYNC: this build has leader_election.synchronous_mode and leader_status()'s columns for it
# (extension version 1.2); set after the cluster is made.
HAS_SYNC=0
MODE=off

# Sets leader_election.synchronous_mode to $1 on every running node (ALTER SYSTEM, so it survives
# the rejoins: scripts/rejoin-standby.sh keeps a node's own postgresql.auto.conf) and reloads.
set_mode() {
	local i
	MODE=$1
	((HAS_SYNC)) || return 0
	for ((i = 1; i <= LE_NODES; i++)); do
		le_node_up "$i" || continue
		le_psql "$i" "ALTER SYSTEM SET leader_election.synchronous_mode = '$1'" \
			-c "SELECT pg_reload_conf()" >/dev/null
	done
}

# True when the leader LE_LEADER runs in mode MODE: for on, its record names a synchronous set
# (so a crash may fail over), PostgreSQL's synchronous_standby_names is set, and every member of
# the set streams as 'sync'; for off, no synchronous_standby_names.
mode_ready() {
	local q
	if ((!HAS_SYNC)); then
		q="SELECT current_setting('synchronous_standby_names') = ''"
	elif [[ $MODE == on ]]; then
		q="SELECT s.synchronous_mode = 'on' AND s.automatic_failover
			AND cardinality(s.synchronous_standbys) > 0
			AND current_setting('synchronous_standby_names') <> ''
			AND NOT EXISTS (SELECT FROM unnest(s.synchronous_standbys) m(name)
				WHERE NOT EXISTS (SELECT FROM pg_stat_replication r
					WHERE r.application_name = m.name AND r.sync_state = 'sync'))
			FROM leader_status() s"
	else
		q="SELECT s.synchronous_mode = 'off' AND current_setting('synchronous_standby_names') = ''
			FROM leader_status() s"
	fi
	[[ $(le_psql "$LE_LEADER" "$q" 2>/dev/null) == t ]]
}

# The recorded synchronous set as the leader $1 sees it ("node2,node3"; "-" when off or empty).
sync_set() {
	local s=''
	if ((HAS_SYNC)); then
		s=$(le_psql "$1" "SELECT array_to_string(synchronous_standbys, ',') FROM leader_status()" \
			2>/dev/null) || s='?'
	fi
	echo "${s:--}"
}

# One row per node: what it says about synchronous mode (this build's leader_status() columns).
sync_table() {
	local i
	((HAS_SYNC)) || return 0
	for ((i = 1; i <= LE_NODES; i++)); do
		le_node_up "$i" || continue
		printf '  node%s: ' "$i"
		le_psql "$i" "SELECT format('%s %s, mode %s, synchronous_standby %s, set %s, '
				|| 'automatic_failover %s, published %s, yielded %s, synchronous_standby_names %L',
				role, coalesce(phase, '-'), synchronous_mode, synchronous_standby,
				synchronous_standbys, automatic_failover, coalesce(published_lsn::text, '-'),
				coalesce(yielded, '-'), current_setting('synchronous_standby_names'))
			FROM leader_status()" 2>&1 | tr '\n' ' '
		echo
	done
}

# The "yields its place" lines of every node's log, in time order (log lines begin with the time).
yield_lines() { cat "$LE_WORK"/node*.log 2>/dev/null | grep 'yields its place' | sort || true; }

# What the nodes say about their replication, and the end of their logs: printed before the
# script gives up (the work dir is removed on exit).
diagnose() {
	local i
	echo
	le_stream_table
	sync_table
	for ((i = 1; i <= LE_NODES; i++)); do
		le_node_up "$i" || continue
		echo "  node$i: pg_stat_wal_receiver / pg_stat_replication / WAL positions:"
		le_psql "$i" "SELECT status, received_tli, receive_start_lsn, written_lsn, flushed_lsn,
				latest_end_lsn, sender_port FROM pg_stat_wal_receiver" -P format=aligned \
			-P tuples_only=off -P footer=off | sed 's/^/    /'
		le_psql "$i" "SELECT application_name, state, sync_state, sent_lsn, write_lsn, flush_lsn,
				replay_lsn FROM pg_stat_replication" -P format=aligned -P tuples_only=off \
			-P footer=off | sed 's/^/    /'
		le_psql "$i" "SELECT CASE WHEN pg_is_in_recovery() THEN 'receive ' ||
				pg_last_wal_receive_lsn() || ', replay ' || pg_last_wal_replay_lsn()
				ELSE 'current ' || pg_current_wal_lsn() END" | sed 's/^/    /'
	done
	for ((i = 1; i <= LE_NODES; i++)); do
		echo "  --- node$i.log, last 25 lines"
		tail -n 25 "$LE_WORK/node$i.log" | cut -c1-250 | sed 's/^/    /'
	done
}

# Every running node but the leader streams from it and stands, and the leader runs in mode
# MODE (mode_ready); else the state, and die.
settle() {
	le_find_leader || le_until 30 le_find_leader || { diagnose; le_die "no leader"; }
	if ! le_stream_settled 40; then
		diagnose
		le_die "the standbys do not stream from node$LE_LEADER and stand within 40 s"
	fi
	if ! le_until 30 mode_ready; then
		diagnose
		le_die "node$LE_LEADER does not run in synchronous_mode = $MODE (with a synchronous" \
			"standby on record for on) within 30 s"
	fi
}

le_heading "setup: etcd on 127.0.0.1:23797, 3 streaming nodes, lease_ttl=${TTL}s"
le_etcd_start 23797 23807
le_stream_init 3 54380 /leader_election/failover "$TTL"
le_psql 1 "CREATE TABLE failover (rep integer, id integer,
	port integer NOT NULL DEFAULT current_setting('port')::integer, PRIMARY KEY (rep, id))"
if [[ $(le_psql 1 "SELECT count(*) FROM pg_settings
		WHERE name = 'leader_election.synchronous_mode'") == 1 ]] &&
	le_psql 1 "SELECT synchronous_standbys, automatic_failover FROM leader_status()" >/dev/null 2>&1
then
	HAS_SYNC=1
else
	echo "  NOTE: this build has no leader_election.synchronous_mode (or leader_status() lacks its"
	echo "  columns): measuring synchronous_mode = off (the default) only"
	MODES=off
fi
settle
le_stream_table
CONNINFO=$(le_rw_conninfo)
echo
echo "  client: $LE_WORK/rowwriter.pl (DBD::Pg), single-row INSERTs, autocommit, through"
echo "    $CONNINFO"

# --- (c) what synchronous mode costs commits ----------------------------------------------------
# $1: mode, $2: round. One pgbench run against the leader; appends its tps to pgbench.$1 and
# prints a line.
pgbench_run() {
	local out tps lat load0 load1 args
	set_mode "$1"
	settle
	le_psql "$LE_LEADER" "CHECKPOINT"
	if [[ $PGB_WORKLOAD == insert ]]; then
		args=(-f "$LE_WORK/insert.sql")
	else
		args=(-b tpcb-like)
	fi
	load0=$(cut -d' ' -f1 /proc/loadavg)
	out=$(pgbench -n -c 4 -j 2 -T "$PGB_SECS" "${args[@]}" -h "$LE_WORK" \
		-p $((LE_PORT_BASE + LE_LEADER)) -U postgres postgres 2>&1) ||
		{ echo "$out" | tail -n 20 >&2; le_die "pgbench failed (synchronous_mode = $1)"; }
	load1=$(cut -d' ' -f1 /proc/loadavg)
	echo "$out" >>"$LE_WORK/pgbench.log"
	tps=$(echo "$out" | awk '/^tps = / { print $3; exit }')
	lat=$(echo "$out" | awk '/^latency average = / { print $4; exit }')
	[[ -n $tps ]] || { echo "$out" | tail -n 20 >&2; le_die "no tps in pgbench's output"; }
	# still in that mode at the end (sync: the standby stayed synchronous throughout, or the
	# leader would have dropped it from the set)
	mode_ready || echo "  NOTE: node$LE_LEADER no longer runs as synchronous_mode = $1 says after the run"
	echo "$tps" >>"$LE_WORK/pgbench.$1"
	printf '  round %s  synchronous_mode = %-3s  node%s  %10.1f tps  latency %6s ms  sync set %-6s load %s -> %s\n' \
		"$2" "$1" "$LE_LEADER" "$tps" "$lat" "$(sync_set "$LE_LEADER")" "$load0" "$load1"
}

read -ra MODE_LIST <<<"$MODES"
# $1: crash | switchover, $2: repetitions, $3: first run number. Uses MODE; the files of a kind are
# named <what>.<MODE>.<kind>.
declare -A timeouts=() errors=() outside=()
run() {
	local how=$1 n=$2 r rep old log out ms t streak=0 key=$MODE.$1 set yields f i
	timeouts[$key]=0 errors[$key]=0 outside[$key]=0
	for f in bench missing extra rate path call rejoin settle detail; do : >"$LE_WORK/$f.$key"; done
	for ((r = 1; r <= n; r++)); do
		rep=$(($3 + r))
		le_find_leader || le_until 30 le_find_leader || { diagnose; le_die "no leader"; }
		old=$LE_LEADER
		log=$LE_WORK/writer.$key.$r
		rowwriter_start "$log" "$rep"
		le_until 10 le_writer_landed "$log" 0 - || printf ' [no write before the trigger]'
		# with the client writing: a standby restarted on an idle primary may wait for new WAL
		# before it counts as caught up (see bench/README.md)
		t=$(le_now)
		settle
		ms_since "$t" >>"$LE_WORK/settle.$key"
		sleep 0.5
		set=$(sync_set "$old")
		yields=$(yield_lines | wc -l)
		if [[ $how == crash ]]; then
			le_trigger immediate "$old"
		elif out=$(le_psql "$old" "SELECT extract(epoch FROM clock_timestamp()), leader_resign()" 2>&1) &&
			[[ $out == *'|t' ]]; then
			LE_T0=${out%|t}
			ms_since "$LE_T0" >>"$LE_WORK/call.$key"
		else
			le_writer_stop
			printf ' error'
			errors[$key]=$((errors[$key] + 1))
			{
				echo "--- $how $r: leader_resign() on node$old: $out"
				le_psql "$old" "SELECT 'WAL insert ' || pg_current_wal_insert_lsn() || ', write ' ||
					pg_current_wal_lsn() || ', flush ' || pg_current_wal_flush_lsn()"
				le_psql "$old" "SELECT application_name, state, sync_state, sent_lsn, flush_lsn
					FROM pg_stat_replication" -P format=aligned -P tuples_only=off -P footer=off
				sync_table
			} >>"$LE_WORK/errors.$key" 2>&1
			continue
		fi
		if le_until "$TIMEOUT" le_writer_landed "$log" "$LE_T0" $((LE_PORT_BASE + old)); then
			ms=$(le_ms "$LE_T0" "$LE_LANDED_AT")
			echo "$ms" >>"$LE_WORK/bench.$key"
			printf ' %s' "$ms"
			echo "node$old -> node$LE_LANDED_NODE" >>"$LE_WORK/path.$key"
			streak=0
			sleep 0.2
			le_writer_stop
			check_rows "$log" "$rep" "$LE_LANDED_NODE"
			echo "$MISSING" >>"$LE_WORK/missing.$key"
			echo "$EXTRA" >>"$LE_WORK/extra.$key"
			((MISSING == 0)) || printf '(%s missing)' "$MISSING"
			# the invariant of sync mode: only a member of the set recorded before the crash promotes
			if [[ $MODE == on && $how == crash && ",$set," != *",node$LE_LANDED_NODE,"* ]]; then
				printf '(node%s outside the set %s promoted)' "$LE_LANDED_NODE" "$set"
				outside[$key]=$((outside[$key] + 1))
			fi
			printf '%3s  node%s -> node%s  %-11s %9s %7s %5s' "$r" "$old" "$LE_LANDED_NODE" "$set" \
				"$ms" "$MISSING" "$EXTRA" >>"$LE_WORK/detail.$key"
		else
			le_writer_stop
			printf ' timeout'
			timeouts[$key]=$((timeouts[$key] + 1))
			streak=$((streak + 1))
			{
				echo "--- $how $r: no write on another node within ${TIMEOUT} s of the trigger" \
					"(node$old was the primary; synchronous set on record: $set)"
				le_stream_table
				sync_table
				tail -n 3 "$log" | cut -c1-300
				for ((i = 1; i <= LE_NODES; i++)); do
					((i == old)) && continue
					echo "  node$i.log, last 8 lines:"
					tail -n 8 "$LE_WORK/node$i.log" | cut -c1-250 | sed 's/^/    /'
				done
			} >>"$LE_WORK/errors.$key" 2>&1
			printf '%3s  node%s -> (none)  %-11s %9s %7s %5s' "$r" "$old" "$set" timeout - - \
				>>"$LE_WORK/detail.$key"
		fi
		# a node that gave up its place to a more advanced one (the log line, once per yield)
		yield_lines | tail -n +$((yields + 1)) | sed "s/^/    $how $r: /" >"$LE_WORK/new-yields"
		if [[ -s $LE_WORK/new-yields ]]; then
			cat "$LE_WORK/new-yields" >>"$LE_WORK/yields.$key"
			printf '  %s yield(s)' "$(wc -l <"$LE_WORK/new-yields")" >>"$LE_WORK/detail.$key"
		fi
		# commits per second before the trigger: the resolution of the measurement
		awk -v t0="$LE_T0" 'NR == 1 { t = $1 } $2 == "ok" && $1 + 0 < t0 + 0 { n++; last = $1 }
			END { if (n > 1) print (n - 1) / (last - t) }' "$log" >>"$LE_WORK/rate.$key"
		if ! le_find_leader && ! le_until 10 le_find_leader; then
			# a failover that did not happen (sync mode with nobody eligible, say): the old primary
			# coming back ends it
			echo "--- $how $r: no leader 10 s after the timeout: starting node$old again" \
				>>"$LE_WORK/errors.$key"
			le_node_up "$old" || le_node_start "$old"
			le_until 30 le_find_leader || { diagnose; le_die "no leader after $how $r"; }
		fi
		t=$(le_now)
		if ((LE_LEADER != old)); then le_stream_rejoin "$old"; fi
		ms_since "$t" >>"$LE_WORK/rejoin.$key"
		le_stream_unstick 15 >"$LE_WORK/unstick"
		if [[ -s $LE_WORK/unstick ]]; then
			printf '[rewound: node%s]' "${LE_REWOUND[*]}"
			printf '  rewound node%s' "${LE_REWOUND[*]}" >>"$LE_WORK/detail.$key"
			{
				echo "--- $how $r: node$old -> node$LE_LEADER; afterwards:"
				cat "$LE_WORK/unstick"
			} >>"$LE_WORK/stuck.$key"
		fi
		echo >>"$LE_WORK/detail.$key"
		if ((streak == 2 && r < n)); then
			echo
			echo "  two repetitions in a row found no new primary within ${TIMEOUT} s; skipping the"
			echo "  rest of '$how' (synchronous_mode = $MODE). See below."
			break
		fi
	done
	echo
}

for MODE in "${MODE_LIST[@]}"; do
	set_mode "$MODE"
	settle
	# the runs of each mode and kind have their own numbers in the table failover
	if [[ $MODE == on ]]; then base=2000; else base=0; fi
	if ((N_CRASH > 0)); then
		le_heading "(a) synchronous_mode = $MODE, crash: $N_CRASH repetitions (ms from pg_ctl stop -m immediate to the first write on the new primary)"
		run crash "$N_CRASH" "$base"
	fi
	if ((N_SWITCH > 0)); then
		le_heading "(b) synchronous_mode = $MODE, switchover: $N_SWITCH repetitions (ms from leader_resign() to the first write on the new primary)"
		run switchover "$N_SWITCH" $((base + 1000))
	fi
done
# (c) last: pgbench writes a lot of WAL, which wal_keep_size keeps and every pg_rewind of a
# rejoin would copy (seconds more per repetition).
if ((PGB_SECS > 0)); then
	le_find_leader || le_until 30 le_find_leader || { diagnose; le_die "no leader"; }
	le_heading "(c) commit throughput: pgbench -n -c 4 -j 2 -T $PGB_SECS ($PGB_WORKLOAD) on the leader, $PGB_ROUNDS round(s) per mode"
	if [[ $PGB_WORKLOAD == insert ]]; then
		le_psql "$LE_LEADER" "CREATE TABLE tps_bench (client integer NOT NULL)"
		echo 'INSERT INTO tps_bench (client) VALUES (:client_id);' >"$LE_WORK/insert.sql"
	else
		pgbench -i -q -s 4 -h "$LE_WORK" -p $((LE_PORT_BASE + LE_LEADER)) -U postgres postgres \
			>"$LE_WORK/pgbench-init.log" 2>&1 ||
			{ cat "$LE_WORK/pgbench-init.log" >&2; le_die "pgbench -i failed"; }
	fi
	for ((r = 1; r <= PGB_ROUNDS; r++)); do
		if ((r % 2)); then order=("${MODE_LIST[@]}"); else
			order=()
			for ((k = ${#MODE_LIST[@]} - 1; k >= 0; k--)); do order+=("${MODE_LIST[k]}"); done
		fi
		for m in "${order[@]}"; do pgbench_run "$m" "$r"; done
	done
fi

le_find_leader || le_until 30 le_find_leader || { diagnose; le_die "no leader"; }
le_stream_settled 20 || echo "  (not every standby stands 20 s after the last rejoin: see bench/README.md)"
echo
le_stream_table
sync_table

le_heading "results (lease_ttl=${TTL}s; the old primary rejoined with pg_rewind after each)"
printf '  %-4s %-46s %3s %9s %9s %9s %8s %8s %8s\n' mode \
	"trigger -> first write on the new primary, ms" N min median max timeouts missing extra
for MODE in "${MODE_LIST[@]}"; do
	for how in crash switchover; do
		key=$MODE.$how
		[[ -f $LE_WORK/bench.$key ]] || continue
		case $how in
		crash) label="pg_ctl stop -m immediate of the primary" ;;
		switchover) label="leader_resign() on the primary" ;;
		esac
		printf '  %-4s %-46s %3s %s %8s %8s %8s\n' "$MODE" "$label" "$(wc -l <"$LE_WORK/bench.$key")" \
			"$(le_stats <"$LE_WORK/bench.$key")" "${timeouts[$key]}" \
			"$(sum <"$LE_WORK/missing.$key")" "$(sum <"$LE_WORK/extra.$key")"
	done
done
echo "  (missing: acknowledged rows not on the new primary, summed over the repetitions; extra:"
echo "  rows there whose commit the client was not told about)"
for MODE in "${MODE_LIST[@]}"; do
	[[ -s $LE_WORK/missing.$MODE.crash ]] || continue
	echo "  synchronous_mode = $MODE, acknowledged rows lost per crash:" \
		"$(tr '\n' ' ' <"$LE_WORK/missing.$MODE.crash")(total $(sum <"$LE_WORK/missing.$MODE.crash"))"
done
for MODE in "${MODE_LIST[@]}"; do
	for how in crash switchover; do
		key=$MODE.$how
		if ((${errors[$key]:-0} > 0)); then
			echo "  $MODE: leader_resign() raised an error in ${errors[$key]} repetitions (shown below)"
		fi
	done
done
if ((PGB_SECS > 0)); then
	echo
	printf '  %-48s %s\n' "pgbench ($PGB_WORKLOAD, -c 4 -j 2 -T $PGB_SECS) on the leader, tps:" \
		"runs, mean"
	for m in "${MODE_LIST[@]}"; do
		printf '    synchronous_mode = %-3s %s  mean %.1f\n' "$m" \
			"$(awk '{ printf "%10.1f", $1 }' "$LE_WORK/pgbench.$m")" \
			"$(awk '{ s += $1 } END { print s / NR }' "$LE_WORK/pgbench.$m")"
	done
	if [[ -s $LE_WORK/pgbench.on && -s $LE_WORK/pgbench.off ]]; then
		echo "    ratio on/off (means): $(awk 'FNR == 1 { f++ } { s[f] += $1; n[f]++ }
			END { printf "%.3f", (s[1] / n[1]) / (s[2] / n[2]) }' "$LE_WORK/pgbench.on" \
			"$LE_WORK/pgbench.off")"
	fi
fi
echo
for MODE in "${MODE_LIST[@]}"; do
	for how in crash switchover; do
		key=$MODE.$how
		[[ -s $LE_WORK/detail.$key ]] || continue
		echo "  synchronous_mode = $MODE, $how: repetition, old -> new primary, synchronous set" \
			"before, ms, missing, extra"
		sed 's/^/  /' "$LE_WORK/detail.$key"
	done
done
# $1: label, $2: what (the files <what>.*): N, min, median and max over every mode and kind
stats_line() {
	local v
	v=$(cat "$LE_WORK/$2".* 2>/dev/null) || true
	[[ -n $v ]] || return 0
	printf '  %-50s %3s %s\n' "$1" "$(echo "$v" | wc -l)" "$(echo "$v" | le_stats)"
}
stats_line "leader_resign() until psql returned, ms" call
stats_line "between repetitions: rejoin (pg_rewind), ms" rejoin
stats_line "writer started -> both standbys stand, ms" settle
for MODE in "${MODE_LIST[@]}"; do
	[[ -n $(cat "$LE_WORK"/rate."$MODE".* 2>/dev/null) ]] || continue
	echo "  synchronous_mode = $MODE: the client committed" \
		"$(cat "$LE_WORK"/rate."$MODE".* | median | awk '{ printf "%.0f", $1 }') rows/s before a trigger (median)"
done
for MODE in "${MODE_LIST[@]}"; do
	for how in crash switchover; do
		key=$MODE.$how
		if [[ -s $LE_WORK/yields.$key ]]; then
			echo
			echo "  synchronous_mode = $MODE, $how: a standby yielded its place to a more advanced one:"
			cat "$LE_WORK/yields.$key"
		fi
		if [[ -s $LE_WORK/stuck.$key ]]; then
			echo
			echo "  synchronous_mode = $MODE, $how: $(grep -c '^---' "$LE_WORK/stuck.$key") repetitions" \
				"left a standby that could not follow the new primary:"
			sed 's/^/    /' "$LE_WORK/stuck.$key"
		fi
		if [[ -s $LE_WORK/errors.$key ]]; then
			echo
			echo "  synchronous_mode = $MODE, $how: errors and timeouts:"
			sed 's/^/    /' "$LE_WORK/errors.$key"
		fi
	done
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
for MODE in "${MODE_LIST[@]}"; do
	key=$MODE.crash
	if [[ -f $LE_WORK/bench.$key ]]; then
		verdict "crash, $MODE" "$(median <"$LE_WORK/bench.$key")" "$CRASH_GOAL_MS"
		lost=$(sum <"$LE_WORK/missing.$key")
		done_n=$(wc -l <"$LE_WORK/missing.$key")
		if [[ $MODE == off ]]; then
			echo "  (with synchronous_mode = off a crash loses what the primary acknowledged but had"
			echo "  not yet sent: asynchronous replication, bounded by leader_election.max_lag_on_failover;"
			echo "  $lost rows in $done_n crashes)"
		elif ((lost == 0 && outside[$key] == 0)); then
			echo "  PASS crash, on: no acknowledged row missing on the new primary, and only a member of" \
				"the synchronous set promoted ($done_n crashes)"
		else
			echo "  FAIL crash, on: $lost acknowledged rows missing on the new primary; a standby" \
				"outside the synchronous set promoted ${outside[$key]} times ($done_n crashes)"
			rc=1
		fi
	fi
	key=$MODE.switchover
	if [[ -f $LE_WORK/bench.$key ]]; then
		verdict "switchover, $MODE" "$(median <"$LE_WORK/bench.$key")" "$SWITCH_GOAL_MS"
		lost=$(sum <"$LE_WORK/missing.$key")
		done_n=$(wc -l <"$LE_WORK/missing.$key")
		if ((lost == 0)); then
			echo "  PASS switchover, $MODE: no acknowledged row missing on the new primary ($done_n repetitions)"
		else
			echo "  FAIL switchover, $MODE: $lost acknowledged rows missing on the new primary ($done_n repetitions)"
			rc=1
		fi
	fi
done
exit "$rc"
