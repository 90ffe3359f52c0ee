#!/usr/bin/env bash
# Benchmark (not a test) of leader_election on etcd + 3 local nodes (lease_ttl=2 s):
#   - handover time after leader_resign(), pg_ctl stop -m fast and pg_ctl stop -m immediate,
#     N repetitions each (min/median/max);
#   - the cost of leader_is_primary(): pgbench against SELECT 1, ns per call in a loop, and the
#     syscalls a backend makes while calling it.
# Usage: bench/handover.sh [N]    N defaults to 10; BENCH_SECONDS (default 10) per pgbench run.
set -euo pipefail
source "$(dirname "$0")/../scripts/cluster-lib.sh"

N=${1:-10}
SECS=${BENCH_SECONDS:-10}
[[ $N =~ ^[1-9][0-9]*$ && $SECS =~ ^[1-9][0-9]*$ ]] ||
	le_die "usage: bench/handover.sh [repetitions]  (BENCH_SECONDS: a positive integer)"

if [[ ${LE_STAGE:-} != user ]]; then
	le_prepare bench
	le_run_user bench/handover.sh "$N"
	exit 0
fi

TTL=2
CALLS=2000000
trap le_cleanup EXIT


le_heading "setup: etcd on 127.0.0.1:23794, 3 nodes, lease_ttl=${TTL}s"
le_etcd_start 23794 23804
le_nodes_init 3 54340 /leader_election/bench "$TTL"
for i in 1 2 3; do
	le_node_start "$i"
	le_psql "$i" "CREATE EXTENSION leader_election"
done
le_wait_leader
for i in 1 2 3; do
	((i == LE_LEADER)) || le_until 10 le_is_follower "$i" || le_die "node$i is no follower"
done
le_status_table

# Each repetition starts from 3 running nodes: one leader, two followers.
for how in resign fast immediate; do
	le_heading "$how: $N repetitions (ms)"
	: >"$LE_WORK/bench.$how"
	for ((r = 1; r <= N; r++)); do
		le_wait_leader
		le_handover "$how"
		echo "$LE_HANDOVER_MS" >>"$LE_WORK/bench.$how"
		printf ' %s' "$LE_HANDOVER_MS"
		if [[ $how != resign ]]; then le_node_start "$LE_OLD"; fi
		le_until 30 le_is_follower "$LE_OLD" || le_die "node$LE_OLD did not rejoin as follower"
	done
	echo
done

le_heading "cost of leader_is_primary() on the leader node$LE_LEADER"
pg=(-h "$LE_WORK" -p $((LE_PORT_BASE + LE_LEADER)) -U postgres)
declare -A bench_sql=([one]='SELECT 1;' [primary]='SELECT leader_is_primary();')
declare -A best_tps
# Two interleaved rounds, best of each: the machine's other load then hits both alike.
for round in 1 2; do
	for q in one primary; do
		echo "${bench_sql[$q]}" >"$LE_WORK/$q.sql"
		pgbench -n -M prepared -c 1 -T "$SECS" -f "$LE_WORK/$q.sql" "${pg[@]}" postgres \
			>"$LE_WORK/pgbench.$q.$round" 2>&1 || { cat "$LE_WORK/pgbench.$q.$round"; le_die "pgbench failed"; }
		tps=$(awk '/^tps/ { print $3 }' "$LE_WORK/pgbench.$q.$round")
		if awk -v a="$tps" -v b="${best_tps[$q]:-0}" 'BEGIN { exit !(a > b) }'; then
			best_tps[$q]=$tps
		fi
	done
done

# $CALLS rows from a join of two small series: a single generate_series() of that size would
# spill its tuplestore to disk and add I/O (and syscalls) to the loop.
LOOP="FROM generate_series(1, $((CALLS / 1000))) a, generate_series(1, 1000) b"

# ns per call: the same aggregate with leader_is_primary() and with a trivial built-in C
# function, timed by the server.
per_call() {
	le_psql "$LE_LEADER" "SELECT round(extract(epoch FROM clock_timestamp() - statement_timestamp())
		* 1e9 / $CALLS, 1) FROM (SELECT count(*) FILTER (WHERE $1) $LOOP) s"
}
ns_primary=$(per_call 'leader_is_primary()')
ns_base=$(per_call 'pg_backend_pid() > 0')

# Syscalls of a backend while it runs the loop (strace attaches during a pg_sleep first).
strace_calls() {
	local psql_pid strace_pid
	PGAPPNAME=le_strace le_psql "$LE_LEADER" "SELECT pg_sleep(1);
		SELECT count(*) FILTER (WHERE $1) $LOOP" >/dev/null &
	psql_pid=$!
	le_until 10 backend_pid || le_die "no backend to trace"
	strace -c -f -o "$LE_WORK/strace.$2" -p "$LE_STRACE_PID" 2>/dev/null &
	strace_pid=$!
	wait "$psql_pid"
	wait "$strace_pid" || return 1
}
backend_pid() {
	LE_STRACE_PID=$(le_psql "$LE_LEADER" "SELECT pid FROM pg_stat_activity
		WHERE application_name = 'le_strace'")
	[[ -n $LE_STRACE_PID ]]
}
syscall_total() { awk '$NF == "total" { print $4 }' "$LE_WORK/strace.$1"; }
if strace_calls 'leader_is_primary()' primary && strace_calls 'true' base; then
	echo "  strace -c -f of a backend during pg_sleep(1) + $CALLS calls of leader_is_primary():"
	sed 's/^/    /' "$LE_WORK/strace.primary"
	strace_line="syscalls: $(syscall_total primary) with $CALLS leader_is_primary() calls, $(syscall_total base) without"
else
	strace_line="syscalls: not measured (strace could not attach to a backend)"
fi

le_heading "results (N=$N, lease_ttl=${TTL}s)"
printf '  %-48s %9s %9s %9s\n' "handover, ms" min median max
printf '  %-48s %s\n' "leader_resign() -> successor's leader_wait()" "$(le_stats <"$LE_WORK/bench.resign")"
printf '  %-48s %s\n' "pg_ctl stop -m fast -> successor leads" "$(le_stats <"$LE_WORK/bench.fast")"
printf '  %-48s %s\n' "pg_ctl stop -m immediate -> successor leads" "$(le_stats <"$LE_WORK/bench.immediate")"
echo
echo "  pgbench, 1 client, prepared, best of 2 runs of ${SECS} s:"
for q in one primary; do
	awk -v q="${bench_sql[$q]}" -v t="${best_tps[$q]}" \
		'BEGIN { printf "  %-30s %10.0f tps  %6.2f us/transaction\n", q, t, 1e6 / t }'
done
echo
echo "  per call in a $CALLS-row aggregate: leader_is_primary() ${ns_primary} ns," \
	"pg_backend_pid() > 0 ${ns_base} ns"
echo "  $strace_line"
