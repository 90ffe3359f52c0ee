#!/usr/bin/env bash
# Benchmark (not a test) of how fast a client finds the new leader, on etcd + 3 local nodes
# (lease_ttl=2 s):
#   - a client (bench/writer.c) reconnects in a loop through ONE multi-host libpq connection
#     string with target_session_attrs=read-write and inserts one row per connection; the time
#     from leader_resign() / pg_ctl stop -m fast of the leader to its first write on another
#     node, N repetitions each (min/median/max). Goal: median under 100 ms.
#   - what a connection costs: pgbench -C of SELECT 1 against the leader, a follower, the same
#     follower without the library, and through the read-write string.
# Usage: bench/routing.sh [N]    N defaults to 10; BENCH_SECONDS (default 5) per pgbench run;
#        ROUTING_TIMEOUT (default 10) s to wait for the first write after a trigger.
set -euo pipefail
source "$(dirname "$0")/../scripts/cluster-lib.sh"

N=${1:-10}
SECS=${BENCH_SECONDS:-5}
TIMEOUT=${ROUTING_TIMEOUT:-10}
[[ $N =~ ^[1-9][0-9]*$ && $SECS =~ ^[1-9][0-9]*$ && $TIMEOUT =~ ^[1-9][0-9]*$ ]] ||
	le_die "usage: bench/routing.sh [repetitions]  (BENCH_SECONDS, ROUTING_TIMEOUT: positive integers)"

if [[ ${LE_STAGE:-} != user ]]; then
	le_prepare routing
	le_run_user bench/routing.sh "$N"
	exit 0
fi

TTL=2
GOAL_MS=100
SQL='INSERT INTO routing DEFAULT VALUES'
trap le_cleanup EXIT

median() { le_stats | awk '{ print $2 }'; }

le_heading "setup: etcd on 127.0.0.1:23796, 3 nodes, lease_ttl=${TTL}s"
le_etcd_start 23796 23806
le_nodes_init 3 54360 /leader_election/routing "$TTL"
for i in 1 2 3; do
	le_node_start "$i"
	le_psql "$i" "CREATE EXTENSION leader_election"
	# each node is its own database here: the table exists everywhere (bypass: superuser only)
	le_psql "$i" "SET leader_election.fence_bypass = on;
		CREATE TABLE routing (at timestamptz DEFAULT clock_timestamp())"
done
le_wait_leader
for i in 1 2 3; do
	((i == LE_LEADER)) || le_until 10 le_is_follower "$i" || le_die "node$i is no follower"
done
le_status_table
le_writer_build
CONNINFO=$(le_rw_conninfo)
echo
echo "  client: $LE_WORK/writer (bench/writer.c), one connection per '$SQL', through"
echo "    $CONNINFO"

# Each repetition starts from 3 running nodes: one leader, two followers. A fresh writer runs
# through it; the clock runs from the trigger to the writer's first write on another node.
declare -A timeouts=([resign]=0 [fast]=0)
for how in resign fast; do
	le_heading "$how: $N repetitions (ms from the trigger to the first write on the new leader)"
	: >"$LE_WORK/bench.$how"
	: >"$LE_WORK/fails.$how"
	: >"$LE_WORK/rate.$how"
	streak=0
	for ((r = 1; r <= N; r++)); do
		le_wait_leader
		old=$LE_LEADER
		log=$LE_WORK/writer.$how.$r
		le_writer_start "$log" "$CONNINFO" "$SQL" -t $((TIMEOUT + 40))
		le_until 10 le_writer_landed "$log" 0 - || printf ' [no write before the trigger]'
		sleep 0.3
		le_trigger "$how" "$old"
		if le_until "$TIMEOUT" le_writer_landed "$log" "$LE_T0" $((LE_PORT_BASE + old)); then
			ms=$(le_ms "$LE_T0" "$LE_LANDED_AT")
			echo "$ms" >>"$LE_WORK/bench.$how"
			awk -v t0="$LE_T0" -v t1="$LE_LANDED_AT" '$2 == "fail" && $1 + 0 > t0 + 0 &&
				$1 + 0 < t1 + 0 { n++ } END { print n + 0 }' "$log" >>"$LE_WORK/fails.$how"
			printf ' %s' "$ms"
			streak=0
		else
			printf ' timeout'
			timeouts[$how]=$((timeouts[$how] + 1))
			streak=$((streak + 1))
		fi
		le_writer_stop
		# attempts per second before the trigger: the resolution of the measurement
		awk -v t0="$LE_T0" 'NR == 1 { t = $1 } $1 + 0 < t0 + 0 { n++; last = $1 }
			END { if (n > 1) print (n - 1) / (last - t) }' "$log" >>"$LE_WORK/rate.$how"
		if [[ $how != resign ]]; then le_node_start "$old"; fi
		le_until 30 le_is_follower "$old" || le_die "node$old did not rejoin as follower"
		if ((streak == 2 && r < N)); then
			echo
			echo "  two repetitions in a row found no new leader within ${TIMEOUT} s; skipping the"
			echo "  rest of '$how'. Last writer log lines:"
			tail -n 3 "$log" | cut -c1-200 | sed 's/^/    /'
			break
		fi
	done
	echo
done

le_heading "connection cost: pgbench -C -n -T ${SECS} of SELECT 1, one client"
le_wait_leader
follower=$((LE_LEADER % 3 + 1))
other=$((follower % 3 + 1))
((other != LE_LEADER)) || other=$((other % 3 + 1))
echo 'SELECT 1;' >"$LE_WORK/one.sql"
rw_leader_last=$(le_rw_conninfo "$follower" "$other" "$LE_LEADER")
declare -A cps ms_conn
conn_bench() {    # $1: label; further arguments: pgbench connection arguments
	local out=$LE_WORK/pgbench.$1 tps ms
	pgbench -n -C -T "$SECS" -f "$LE_WORK/one.sql" "${@:2}" >"$out" 2>&1 ||
		{ cat "$out"; le_die "pgbench ($1) failed"; }
	tps=$(awk '/^tps/ { print $3 }' "$out")
	ms=$(awk '/^average connection time/ { print $5 }' "$out")
	if awk -v a="$tps" -v b="${cps[$1]:-0}" 'BEGIN { exit !(a > b) }'; then
		cps[$1]=$tps
		ms_conn[$1]=$ms
	fi
}
conn_bench_node() { conn_bench "$1" -h "$LE_WORK" -p $((LE_PORT_BASE + $2)) -U postgres postgres; }
# Two rounds, best of each: the machine's other load then hits all alike.
for round in 1 2; do
	conn_bench_node leader "$LE_LEADER"
	conn_bench_node follower "$follower"
	conn_bench string "$rw_leader_last"
	le_node_stop "$follower" fast
	pg_ctl -D "$LE_WORK/node$follower" -l "$LE_WORK/node$follower.log" -w -t 30 \
		-o "-c shared_preload_libraries=''" start >/dev/null || le_die "node$follower did not start"
	conn_bench_node plain "$follower"
	le_node_stop "$follower" fast
	le_node_start "$follower"
	le_until 30 le_is_follower "$follower" || le_die "node$follower did not rejoin as follower"
	echo "  round $round done"
done

le_heading "results (N=$N, lease_ttl=${TTL}s)"
printf '  %-44s %9s %9s %9s %8s %8s\n' "trigger -> first write on the new leader, ms" \
	min median max failed timeouts
for how in resign fast; do
	case $how in
	resign) label="leader_resign() on the leader" ;;
	fast) label="pg_ctl stop -m fast of the leader" ;;
	esac
	printf '  %-44s %s %8s %8s\n' "$label" "$(le_stats <"$LE_WORK/bench.$how")" \
		"$(median <"$LE_WORK/fails.$how")" "${timeouts[$how]}"
done
echo "  (failed: median number of failed attempts between the trigger and that write)"
echo "  the client made $(cat "$LE_WORK"/rate.* | median | awk '{ printf "%.0f", $1 }')" \
	"attempts/s before a trigger (median; one attempt = connect + INSERT + disconnect)"
for how in resign fast; do
	m=$(median <"$LE_WORK/bench.$how")
	if [[ $m == - ]]; then
		echo "  NOTE $how: no repetition found the new leader"
	elif awk -v m="$m" -v g="$GOAL_MS" 'BEGIN { exit !(m < g) }'; then
		echo "  PASS $how: median $m ms < goal $GOAL_MS ms"
	else
		echo "  NOTE $how: median $m ms, goal under $GOAL_MS ms"
	fi
done
echo
echo "  pgbench -n -C -c 1 of 'SELECT 1;', best of 2 runs of ${SECS} s:"
printf '  %-52s %10s %12s\n' "" "conn/s" "ms/connect"
for k in leader follower plain string; do
	case $k in
	leader) label="leader node$LE_LEADER (library loaded)" ;;
	follower) label="follower node$follower (library loaded)" ;;
	plain) label="node$follower without the library" ;;
	string) label="read-write string: node$follower, node$other, leader last" ;;
	esac
	printf '  %-52s %10.1f %12s\n' "$label" "${cps[$k]}" "${ms_conn[$k]:--}"
done
echo "  (through the string, libpq opens a session on each follower first and drops it when it"
echo "  reports default_transaction_read_only = on)"
