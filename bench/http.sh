#!/usr/bin/env bash
# Benchmark (not a test) of the HTTP endpoint (leader_election.http_listen) on etcd + 3 local
# nodes (lease_ttl=2 s, each its own database, as bench/handover.sh):
#   (a) throughput: requests per second that GET /primary (and /metrics) sustains on the
#       leader, with wrk on loopback (HTTP_SECONDS each, 2 threads; 4, 32 and 64 connections;
#       64 from one address is over the endpoint's 32 per address, so wrk sees refused
#       connections), the latency wrk measured, the HTTP worker's CPU time per request and its
#       RSS before and after, and the least validity the leader's leadership had left meanwhile
#       (leader_status() sampled every 100 ms: it should stay near TTL - 0.2 s - TTL/3);
#   (b) the cost on the election: handover time (leader_resign() to the successor's
#       leader_wait(), as bench/handover.sh measures it) with the endpoint off, on (idle), and
#       on while wrk hammers /primary on the resigning leader; interleaved (off, on, load) in
#       N rounds; the nodes restart when the setting changes (it is PGC_POSTMASTER).
# Usage: bench/http.sh [N]   N (default 10) rounds of (b); HTTP_SECONDS (default 10) per wrk
#        run of (a); HTTP_WRK_CONNECTIONS (default 4) connections of the wrk load in (b).
#        PG_BINDIR: run PostgreSQL's programs from that directory (a copy of PostgreSQL with
#        this build of the extension in it) instead of /usr/lib/postgresql/15/bin.
set -euo pipefail
source "$(dirname "$0")/../scripts/cluster-lib.sh"

N=${1:-10}
SECS=${HTTP_SECONDS:-10}
LOAD_CONNS=${HTTP_WRK_CONNECTIONS:-4}
[[ $N =~ ^[1-9][0-9]*$ && $SECS =~ ^[1-9][0-9]*$ && $LOAD_CONNS =~ ^[1-9][0-9]*$ ]] ||
	le_die "usage: bench/http.sh [rounds]  (HTTP_SECONDS, HTTP_WRK_CONNECTIONS: positive integers)"

if [[ ${LE_STAGE:-} != user ]]; then
	le_prepare http
	le_run_user bench/http.sh "$N"
	exit 0
fi

if [[ -n ${PG_BINDIR:-} ]]; then
	PATH=$PG_BINDIR:$PATH
fi
command -v wrk >/dev/null || le_die "wrk is not installed (apt-get install wrk)"

TTL=2
HTTP_BASE=58390    # node i's endpoint: 127.0.0.1:$((HTTP_BASE + i))
trap le_cleanup EXIT

http_url() { echo "http://127.0.0.1:$((HTTP_BASE + $1))$2"; }
http_code() { curl -s -o /dev/null -m 2 -w '%{http_code}' "$(http_url "$1" "$2")" || true; }
http_answers() { [[ $(http_code "$1" /liveness) == 200 ]]; }

postmaster_pid() { head -n 1 "$LE_WORK/node$1/postmaster.pid"; }
# The node's "leader_election http" worker (a child of its postmaster), if any.
http_pid() { pgrep -P "$(postmaster_pid "$1")" -f 'leader_election http' | head -n 1; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }    # utime + stime

# Writes every node's endpoint setting ($1: on | off) and restarts the nodes; waits for a
# leader, two followers and (on) every endpoint.
set_endpoint() {
	local i
	for ((i = 1; i <= LE_NODES; i++)); do
		if [[ $1 == on ]]; then
			echo "leader_election.http_listen = '127.0.0.1:$((HTTP_BASE + i))'"
		else
			echo "leader_election.http_listen = ''"
		fi >"$LE_WORK/node$i/http.conf"
		pg_ctl -D "$LE_WORK/node$i" -l "$LE_WORK/node$i.log" -m fast -w -t 30 restart >/dev/null ||
			le_die "node$i did not restart"
	done
	le_settled "$1"
	ENDPOINT=$1
}

le_settled() {
	local i
	le_wait_leader
	for ((i = 1; i <= LE_NODES; i++)); do
		((i == LE_LEADER)) || le_until 30 le_is_follower "$i" || le_die "node$i is no follower"
		if [[ $1 == on ]]; then
			le_until 30 http_answers "$i" || le_die "node$i's endpoint does not answer"
		fi
	done
}

# Samples the leader's remaining validity every 100 ms into $LE_WORK/valid.$1 until
# stop_sampler; sets SAMPLER_PID.
start_sampler() {
	printf '%s\n\\watch 0.1\n' "SELECT round(extract(epoch FROM valid_until - clock_timestamp())::numeric, 3)
		FROM leader_status()" >"$LE_WORK/valid.sql"
	psql -X -A -t -q -h "$LE_WORK" -p $((LE_PORT_BASE + LE_LEADER)) -U postgres -d postgres \
		-f "$LE_WORK/valid.sql" >"$LE_WORK/valid.$1" 2>&1 &
	SAMPLER_PID=$!
	LE_BG_PIDS+=("$SAMPLER_PID")
}
stop_sampler() {
	kill "$SAMPLER_PID" 2>/dev/null || true
	wait "$SAMPLER_PID" 2>/dev/null || true
}
least_valid() { grep -E '^-?[0-9.]+$' "$LE_WORK/valid.$1" | sort -g | head -n 1; }

table_head() {
	printf '  %-10s %5s %10s %9s %9s %10s  %19s  %11s\n' path conns req/s "lat avg" "lat max" \
		"us CPU/req" "worker RSS" "least valid"
}

# One wrk run against the leader: $1 label, $2 path, $3 connections. Prints a result line.
wrk_run() {
	local label=$1 path=$2 conns=$3 pid rss0 rss1 cpu0 cpu1 out rps lat_avg lat_max reqs non2xx sockerr
	pid=$(http_pid "$LE_LEADER")
	[[ -n $pid ]] || le_die "no HTTP worker on node$LE_LEADER"
	rss0=$(rss_kb "$pid")
	cpu0=$(cpu_ticks "$pid")
	start_sampler "$label"
	wrk -t 2 -c "$conns" -d "${SECS}s" "$(http_url "$LE_LEADER" "$path")" >"$LE_WORK/wrk.$label" 2>&1 ||
		{ cat "$LE_WORK/wrk.$label"; le_die "wrk failed"; }
	stop_sampler
	cpu1=$(cpu_ticks "$pid")
	rss1=$(rss_kb "$pid")
	[[ $(http_pid "$LE_LEADER") == "$pid" ]] || le_die "the HTTP worker of node$LE_LEADER restarted"
	out=$LE_WORK/wrk.$label
	rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
	reqs=$(awk '/requests in/ { print $1 }' "$out")
	lat_avg=$(awk '$1 == "Latency" { print $2 }' "$out")
	lat_max=$(awk '$1 == "Latency" { print $4 }' "$out")
	non2xx=$(awk '/Non-2xx/ { print $NF }' "$out")
	sockerr=$(awk -F': ' '/Socket errors/ { print $2 }' "$out")
	# CPU ticks are 1/100 s (USER_HZ)
	printf '  %-10s %5s %10s %9s %9s %10s  %6s -> %6s kB  %11s  %s\n' "$path" "$conns" "$rps" \
		"$lat_avg" "$lat_max" \
		"$(awk -v t=$((cpu1 - cpu0)) -v n="$reqs" 'BEGIN { printf "%.1f", n ? t * 10000 / n : 0 }')" \
		"$rss0" "$rss1" "$(least_valid "$label")" \
		"${non2xx:+non-2xx $non2xx }${sockerr:+socket errors: $sockerr}"
}

le_heading "setup: etcd on 127.0.0.1:23799, 3 nodes (ports 54391-54393), lease_ttl=${TTL}s"
le_etcd_start 23799 23809
le_nodes_init 3 54390 /leader_election/http "$TTL"
for i in 1 2 3; do
	echo "include_if_exists = 'http.conf'" >>"$LE_WORK/node$i/postgresql.conf"
	echo "leader_election.http_listen = '127.0.0.1:$((HTTP_BASE + i))'" >"$LE_WORK/node$i/http.conf"
	le_node_start "$i"
	le_psql "$i" "CREATE EXTENSION leader_election"
done
le_settled on
ENDPOINT=on
le_status_table

le_heading "(a) wrk against the leader node$LE_LEADER's endpoint, ${SECS} s each"
table_head
: >"$LE_WORK/results.a"
wrk_run warmup /primary 4 >/dev/null    # the worker's pools and malloc arenas, once
for run in "primary4 /primary 4" "primary32 /primary 32" "primary64 /primary 64" \
	"metrics4 /metrics 4" "primary4b /primary 4"; do
	# shellcheck disable=SC2086 # three words
	wrk_run $run | tee -a "$LE_WORK/results.a"
done
echo "  (a leader's leadership has about $(awk -v t=$TTL 'BEGIN { printf "%.2f", t - 0.2 - t / 3 }') s" \
	"left just before each renewal when nothing delays it)"

le_heading "(b) handover after leader_resign(), ms: endpoint off, on, on under wrk -c $LOAD_CONNS /primary"
: >"$LE_WORK/bench.off"
: >"$LE_WORK/bench.on"
: >"$LE_WORK/bench.load"
for ((r = 1; r <= N; r++)); do
	printf '  round %2s:' "$r"
	for mode in off on load; do
		want=on
		[[ $mode == off ]] && want=off
		[[ $ENDPOINT == "$want" ]] || set_endpoint "$want"
		le_settled "$want"
		WRK_PID=
		if [[ $mode == load ]]; then
			wrk -t 2 -c "$LOAD_CONNS" -d 120s "$(http_url "$LE_LEADER" /primary)" \
				>"$LE_WORK/wrk.load.$r" 2>&1 &
			WRK_PID=$!
			LE_BG_PIDS+=("$WRK_PID")
			sleep 1    # wrk is up to speed
		fi
		le_handover resign
		if [[ -n $WRK_PID ]]; then
			kill "$WRK_PID" 2>/dev/null || true
			wait "$WRK_PID" 2>/dev/null || true
		fi
		echo "$LE_HANDOVER_MS" >>"$LE_WORK/bench.$mode"
		printf '  %s %7s' "$mode" "$LE_HANDOVER_MS"
		le_until 30 le_is_follower "$LE_OLD" || le_die "node$LE_OLD did not rejoin as follower"
	done
	echo
done

le_heading "results (lease_ttl=${TTL}s)"
echo "  (a) wrk, 2 threads, ${SECS} s per run, on the leader's endpoint (loopback):"
table_head
cat "$LE_WORK/results.a"
echo
echo "  (b) N=$N rounds, interleaved"
printf '  %-52s %9s %9s %9s\n' "leader_resign() -> successor's leader_wait(), ms" min median max
printf '  %-52s %s\n' "endpoint off" "$(le_stats <"$LE_WORK/bench.off")"
printf '  %-52s %s\n' "endpoint on, idle" "$(le_stats <"$LE_WORK/bench.on")"
printf '  %-52s %s\n' "endpoint on, wrk -c $LOAD_CONNS on the old leader's /primary" \
	"$(le_stats <"$LE_WORK/bench.load")"
