#!/usr/bin/env bash
# Benchmark (not a test) of what the write fence costs the leader: pgbench's simple-update TPS on
# one node with shared_preload_libraries = 'leader_election' and fence_writes = on, the node
# leading (A), against the same data directory restarted without the library (B).
# Goal: median(A) / median(B) >= 98 %. The result is informational: the script exits 0 unless
# something broke.
# Usage: bench/fence.sh [ROUNDS]    ROUNDS (default 3) runs of each configuration, interleaved
#   A B, B A, A B, ...; BENCH_SECONDS (default 20) per simple-update run, BENCH_RO_SECONDS
#   (default 10, 0 = skip) per select-only run, BENCH_WARMUP (default 3) seconds of unmeasured
#   simple-update after each restart, BENCH_SCALE (default 10) pgbench scale.
set -euo pipefail
source "$(dirname "$0")/../scripts/cluster-lib.sh"

ROUNDS=${1:-3}
SECS=${BENCH_SECONDS:-20}
RO_SECS=${BENCH_RO_SECONDS:-10}
WARMUP=${BENCH_WARMUP:-3}
SCALE=${BENCH_SCALE:-10}
[[ $ROUNDS =~ ^[1-9][0-9]*$ && $SECS =~ ^[1-9][0-9]*$ && $RO_SECS =~ ^[0-9]+$ &&
	$WARMUP =~ ^[0-9]+$ && $SCALE =~ ^[1-9][0-9]*$ ]] ||
	le_die "usage: bench/fence.sh [rounds]  (BENCH_SECONDS, BENCH_SCALE: positive integers;" \
		"BENCH_RO_SECONDS, BENCH_WARMUP: integers >= 0)"

if [[ ${LE_STAGE:-} != user ]]; then
	le_prepare fence-bench
	le_run_user bench/fence.sh "$ROUNDS"
	exit 0
fi

PREFIX=/leader_election/bench-fence
TTL=10
GOAL=98
CLIENTS=(-c 4 -j 2)
trap le_cleanup EXIT
# Nothing fails silently: set -e names the line where it stopped the script.
set -E
trap 'echo "ERROR: bench/fence.sh stopped at line $LINENO: $BASH_COMMAND" >&2' ERR

node_conf=$LE_WORK/node1/postgresql.conf
mode_conf=$LE_WORK/node1/bench_mode.conf
pg=(-h "$LE_WORK" -p 54351 -U postgres)
declare -A mode_name=([A]="A: leader_election, fence_writes = on, leading"
	[B]="B: shared_preload_libraries = ''")

# Reads numbers, one per line; prints their median.
median() {
	sort -g | awk '{ v[NR] = $1 }
		END { printf "%.1f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", 100 * a / b }'; }

# --- how much CPU others used during a run: the machine's busy time (/proc/stat, steal included)
# minus what the node (postmaster, its live children and those it reaped), etcd and pgbench used.
HZ=$(getconf CLK_TCK)
busy_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
node_ticks() {
	local pm pids pid
	pm=$(head -n 1 "$LE_WORK/node1/postmaster.pid")
	mapfile -t pids < <(echo "$pm"; pgrep -P "$pm"; echo "$LE_ETCD_PID")
	# utime stime cutime cstime are fields 14-17; the command name (field 2) has no blanks here.
	# A backend may exit between pgrep and cat: its time is then in the postmaster's cutime.
	for pid in "${pids[@]}"; do cat "/proc/$pid/stat" 2>/dev/null || true; done |
		awk '{ t += $14 + $15 + $16 + $17 } END { print t }'
}

# $1: A | B. Restarts the node in that configuration (also when it already runs in it, so that
# every run starts from the same state) and checks that the configuration took effect.
restart_as() {
	if [[ $1 == A ]]; then
		echo "shared_preload_libraries = 'leader_election'" >"$mode_conf"
	else
		echo "shared_preload_libraries = ''" >"$mode_conf"
	fi
	if le_node_up 1; then le_node_stop 1 fast; fi
	le_node_start 1
	local libs
	libs=$(le_psql 1 "SHOW shared_preload_libraries")
	if [[ $1 == A ]]; then
		[[ $libs == leader_election && $(le_psql 1 "SHOW leader_election.fence_writes") == on ]] ||
			le_die "configuration A: the library is not preloaded or fence_writes is off"
		[[ $(le_psql 1 "SELECT leader_wait(30000)") == t ]] || le_die "node1 did not lead within 30 s"
		if [[ $(so_sum) != "$SO_SUM" ]]; then
			SO_SUM=$(so_sum)
			echo "  WARNING: $SO was replaced during the benchmark (another make install?)"
		fi
		LE_TOKEN=$(le_psql 1 "SELECT fencing_token FROM leader_status()")
	else
		[[ -z $libs ]] || le_die "configuration B: shared_preload_libraries is '$libs'"
	fi
}

# The library every A run loads: `make install` elsewhere on the machine could replace it.
SO=$("$PG_CONFIG" --pkglibdir)/leader_election.so
so_sum() { md5sum <"$SO"; }
SO_SUM=$(so_sum)

# Runs pgbench with the arguments given; prints its tps, average latency (ms) and the CPU seconds
# that processes other than the node, etcd and pgbench used meanwhile.
run_pgbench() {
	local out=$LE_WORK/pgbench.out b0 n0 TIMEFORMAT='%3U %3S'
	b0=$(busy_ticks)
	n0=$(node_ticks)
	{ time pgbench -n -M prepared "${CLIENTS[@]}" "$@" "${pg[@]}" postgres >"$out" 2>&1; } \
		2>"$LE_WORK/pgbench.cpu" || { cat "$out" >&2; le_die "pgbench $* failed"; }
	sleep 0.2    # lets the postmaster reap the backends, so their time is counted
	awk -v b="$(($(busy_ticks) - b0))" -v n="$(($(node_ticks) - n0))" -v hz="$HZ" \
		-v p="$(awk '{ print $1 + $2 }' "$LE_WORK/pgbench.cpu")" \
		'/^tps/ { t = $3 } /^latency average/ { l = $4 }
		END { o = (b - n) / hz - p; printf "%.1f %.3f %.1f", t, l, o < 0 ? 0 : o }' "$out"
}

le_heading "setup: etcd on 127.0.0.1:23795, one node on port 54351, lease_ttl=${TTL}s"
echo "  $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
le_etcd_start 23795 23805
le_nodes_init 1 54350 "$PREFIX" "$TTL"
# The same settings for A and B; chosen to take the disk and checkpoints out of the numbers
# (later lines override those le_nodes_init wrote, e.g. shared_buffers).
cat >>"$node_conf" <<EOF
leader_election.fence_writes = on
shared_buffers = 256MB
fsync = off
synchronous_commit = off
checkpoint_timeout = 1h
max_wal_size = 8GB
autovacuum = off
include_if_exists = 'bench_mode.conf'
EOF
echo "  settings for A and B: fsync = off, synchronous_commit = off, shared_buffers = 256MB,"
echo "  checkpoint_timeout = 1h, max_wal_size = 8GB, autovacuum = off (VACUUM before every run)"
echo "shared_preload_libraries = 'leader_election'" >"$mode_conf"
le_node_start 1
le_psql 1 "CREATE EXTENSION leader_election; CREATE EXTENSION pg_prewarm"
restart_as A
echo "  pgbench -i -s $SCALE"
pgbench -i -q -s "$SCALE" "${pg[@]}" postgres >"$LE_WORK/pgbench-init.out" 2>&1 ||
	{ cat "$LE_WORK/pgbench-init.out" >&2; le_die "pgbench -i failed"; }

# Shows that the fence is live in configuration A: an etcdctl candidate queues behind node1,
# node1 resigns, and as a follower it refuses a write; then the candidate resigns (SIGINT).
le_heading "fence check (configuration A)"
etcdctl --endpoints="$LE_ETCD_URL" elect "$PREFIX" blocker </dev/null >"$LE_WORK/blocker.log" 2>&1 &
blocker=$!
LE_BG_PIDS+=("$blocker")
queued() { [[ $(le_psql 1 "SELECT count(*) FROM leader_candidates()") == 2 ]]; }
le_until 15 queued || le_die "the etcdctl candidate did not queue behind node1"
[[ $(le_psql 1 "SELECT leader_resign()") == t ]] || le_die "leader_resign() on node1 failed"
follows_blocker() {
	[[ $(le_psql 1 "SELECT role || '/' || coalesce(leader_name, '') FROM leader_status()") == follower/blocker ]]
}
le_until 15 follows_blocker || le_die "node1 did not become a follower of the etcdctl candidate"
if refused=$(le_psql 1 "UPDATE pgbench_branches SET bbalance = bbalance WHERE bid = 1" 2>&1); then
	le_die "fence check: node1 accepted a write as a follower"
fi
[[ $refused == *"it is not the leader"* ]] || le_die "fence check: unexpected answer: $refused"
echo "  node1 as a follower: $(head -n 1 <<<"$refused")"
blocker_gone() { ! kill -0 "$blocker" 2>/dev/null; }
kill -INT "$blocker"
le_until 10 blocker_gone || kill -KILL "$blocker" 2>/dev/null || true
wait "$blocker" 2>/dev/null || true
LE_BG_PIDS=("$LE_ETCD_PID")
[[ $(le_psql 1 "SELECT leader_wait(30000)") == t ]] || le_die "node1 did not lead again"
echo "  node1 leads again once the etcdctl candidate resigned"

# One measured run in configuration $1 (round $2): restart, prewarm, warm up, vacuum, checkpoint,
# then simple-update (and select-only).
measure() {
	local cfg=$1 round=$2 up ro=''
	restart_as "$cfg"
	le_psql 1 "SELECT sum(pg_prewarm(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'public' AND c.relname LIKE 'pgbench%' AND c.relkind IN ('r', 'i')" >/dev/null
	if ((WARMUP > 0)); then run_pgbench -b simple-update -T "$WARMUP" >/dev/null; fi
	le_psql 1 "TRUNCATE pgbench_history"
	le_psql 1 "VACUUM pgbench_branches, pgbench_tellers, pgbench_accounts, pgbench_history"
	le_psql 1 "CHECKPOINT"
	up=$(run_pgbench -b simple-update -T "$SECS")
	if ((RO_SECS > 0)); then ro=$(run_pgbench -S -T "$RO_SECS"); fi
	if [[ $cfg == A ]]; then
		# The node must have led throughout, under the same leadership.
		[[ $(le_psql 1 "SELECT leader_is_primary() AND fencing_token = $LE_TOKEN FROM leader_status()") == t ]] ||
			le_die "node1 lost its leadership during the run"
	fi
	echo "${up%% *}" >>"$LE_WORK/update.$cfg"
	# shellcheck disable=SC2086 # $up and $ro are "tps latency other-cpu"
	printf '  round %-2s %s  simple-update %8s tps %6s ms %5s s' "$round" "$cfg" $up
	if [[ -n $ro ]]; then
		echo "${ro%% *}" >>"$LE_WORK/select.$cfg"
		# shellcheck disable=SC2086
		printf '   select-only %8s tps %6s ms %5s s' $ro
	fi
	echo
}

le_heading "$ROUNDS rounds: pgbench -n -b simple-update ${CLIENTS[*]} -T $SECS -M prepared, scale $SCALE"
((RO_SECS == 0)) || echo "  then pgbench -n -S ${CLIENTS[*]} -T $RO_SECS -M prepared"
echo "  ${mode_name[A]}"
echo "  ${mode_name[B]}"
echo "  each run: restart, pg_prewarm, ${WARMUP} s warm-up, VACUUM, CHECKPOINT, then the measured run(s)."
echo "  Columns: tps, average latency, CPU seconds used by other processes during the run (of"
echo "  $(nproc) CPUs x the run's seconds; steal included): more than a few means the numbers are noisy."
for ((r = 1; r <= ROUNDS; r++)); do
	# A B, B A, A B, ...: a drift over time hits both configurations alike.
	if ((r % 2)); then order=(A B); else order=(B A); fi
	for cfg in "${order[@]}"; do measure "$cfg" "$r"; done
done
le_node_stop 1 fast

le_heading "results ($ROUNDS runs of each configuration)"
# $1: update | select, $2: label
report() {
	local a b ratio
	a=$(median <"$LE_WORK/$1.A")
	b=$(median <"$LE_WORK/$1.B")
	ratio=$(pct "$a" "$b")
	printf '  %-14s A: %s\n' "$2" "$(paste -sd' ' "$LE_WORK/$1.A")"
	printf '  %-14s B: %s\n' "" "$(paste -sd' ' "$LE_WORK/$1.B")"
	printf '  %-14s A/B by round: %s %%\n' "" "$(paste "$LE_WORK/$1.A" "$LE_WORK/$1.B" |
		awk '{ printf "%s%.1f", (NR > 1 ? " " : ""), 100 * $1 / $2 }')"
	printf '  %-14s median A %s tps, median B %s tps, ratio A/B %s %%\n' "" "$a" "$b" "$ratio"
	RATIO=$ratio
}
report update "simple-update"
update_ratio=$RATIO
if ((RO_SECS > 0)); then report select "select-only"; fi
echo
if awk -v r="$update_ratio" -v g="$GOAL" 'BEGIN { exit !(r >= g) }'; then
	echo "  PASS: simple-update with the fence on runs at $update_ratio % of the server without" \
		"the extension (goal: >= $GOAL %)"
else
	echo "  NOTE: simple-update with the fence on runs at $update_ratio % of the server without" \
		"the extension, below the $GOAL % goal (see the per-run CPU used by other" \
		"processes above, and the spread of the runs)"
fi
