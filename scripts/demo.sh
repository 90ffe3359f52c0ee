#!/usr/bin/env bash
# `make demo`: three PostgreSQL 15 nodes elect a leader through a throwaway etcd on loopback.
# Shows each node's view and the etcd keys, then times three handovers: leader_resign(), a clean
# stop (pg_ctl stop -m fast) and a crash (pg_ctl stop -m immediate). Needs no input; everything
# it starts is stopped and removed on exit. Then the write fence refuses a follower's write, and a
# client that reconnects through one multi-host connection string (target_session_attrs=read-write)
# keeps writing across a resign and a clean stop, always on the leader. Last, a streaming-replication
# cluster (node1 primary, node2 and node3 standbys made with pg_basebackup): the primary crashes,
# the first standby in line promotes itself and the client writes on; the old primary comes back
# fenced, is rejoined as a standby with scripts/rejoin-standby.sh (pg_rewind) and stands again.
set -euo pipefail
source "$(dirname "$0")/cluster-lib.sh"

if [[ ${LE_STAGE:-} != user ]]; then
	le_prepare demo
	le_run_user scripts/demo.sh
	echo
	echo "Demo finished: etcd and the nodes are stopped; $LE_WORK is removed."
	exit 0
fi

PREFIX=/leader_election/demo
TTL=2
trap le_cleanup EXIT

# Aligned psql output for tables shown as they are.
show() {
	le_psql "$1" "$2" -P format=aligned -P tuples_only=off -P footer=off | sed -e '/^$/d' -e 's/^/  /'
}

# True when every running node names node$LE_LEADER as leader: followers learn of a new leader
# a few ms after it takes over, and the tables should show the settled state.
views_agree() {
	local i
	for ((i = 1; i <= LE_NODES; i++)); do
		le_node_up "$i" || continue
		[[ $(le_psql "$i" "SELECT leader_name FROM leader_status()") == "node$LE_LEADER" ]] || return 1
	done
}

etcd_keys() {
	echo "  etcd keys under $PREFIX/ (key = prefix/lease id in hex, value = node name):"
	le_etcdctl get --prefix "$PREFIX/" | paste - - | sed 's/^/    /'
}

le_heading "etcd: single member on 127.0.0.1:23793"
le_etcd_start 23793 23803
echo "  etcd $(etcd --version | sed -n "s/^etcd Version: //p"), $(le_etcdctl endpoint health 2>&1)"
# The stock etcdctl election observer: prints each new leader (key, value) of this prefix,
# which shows that the extension follows etcd's own election layout.
etcdctl --endpoints="$LE_ETCD_URL" elect -l "$PREFIX" >"$LE_WORK/observer.log" 2>&1 &
LE_BG_PIDS+=($!)

le_heading "Three nodes: lease_ttl=${TTL}s, prefix $PREFIX, started one by one"
le_nodes_init 3 54330 "$PREFIX" "$TTL"
for i in 1 2 3; do
	le_node_start "$i"
	le_psql "$i" "CREATE EXTENSION leader_election"
	if ((i == 1)); then
		[[ $(le_psql 1 "SELECT leader_wait(10000)") == t ]] || le_die "node1 did not become leader"
	else
		le_until 10 le_is_follower "$i" || le_die "node$i did not become a follower"
	fi
	echo "  node$i: port $((LE_PORT_BASE + i)), CREATE EXTENSION done, role: $(le_role "$i")"
done

le_heading "Live view: leader_status() on every node, refreshed every second"
for _ in 1 2 3; do
	echo "  -- $(date +%T.%3N)"
	le_status_table
	sleep 1
done
echo
echo "  leader_candidates() on node3 (the queue in etcd, oldest first):"
show 3 "SELECT * FROM leader_candidates()"
echo
etcd_keys

declare -A how_name=([resign]="leader_resign()" [fast]="pg_ctl stop -m fast"
	[immediate]="pg_ctl stop -m immediate")
declare -A how_step=([resign]=a [fast]=b [immediate]=c)
summary=()
for how in resign fast immediate; do
	le_find_leader || le_die "no leader"
	le_heading "(${how_step[$how]}) ${how_name[$how]} on the leader node$LE_LEADER"
	echo "  every follower waits in SELECT leader_wait(30000); the clock runs from the trigger"
	echo "  to the first of them returning true."
	le_handover "$how"
	echo "  node$LE_WINNER leads ${LE_HANDOVER_MS} ms after ${how_name[$how]} of node$LE_OLD"
	if [[ $how == resign ]]; then
		le_until 10 le_is_follower "$LE_OLD" || le_die "node$LE_OLD did not rejoin the queue"
		echo "  node$LE_OLD rejoined at the tail of the queue"
	fi
	le_until 5 views_agree || echo "  (not all nodes name node$LE_LEADER as leader yet)"
	echo
	le_status_table
	summary+=("$(printf '  %-26s node%s -> node%s %10s ms' "${how_name[$how]}" "$LE_OLD" \
		"$LE_WINNER" "$LE_HANDOVER_MS")")
done
echo "  (after an immediate stop nobody releases the dead node's key: the successor waits until"
echo "  its lease expires, about the TTL of ${TTL} s after its last keepalive)"

le_heading "(d) restart the stopped nodes: they join at the tail of the queue"
for i in 1 2 3; do
	if ! le_node_up "$i"; then
		le_node_start "$i"
		le_until 10 le_is_follower "$i" || le_die "node$i did not become a follower"
		echo "  node$i restarted, role: $(le_role "$i")"
	fi
done
echo
le_status_table
echo
le_find_leader || le_die "no leader"
echo "  leader_candidates() on node$LE_LEADER:"
show "$LE_LEADER" "SELECT * FROM leader_candidates()"
echo
etcd_keys

le_heading "(e) write fencing: only the leader node$LE_LEADER accepts writes"
follower=$((LE_LEADER % 3 + 1))
for i in 1 2 3; do
	# each node is its own database here: create the table everywhere (bypass: superuser only)
	le_psql "$i" "SET leader_election.fence_bypass = on; CREATE TABLE IF NOT EXISTS demo (note text)" >/dev/null
done
echo "  on the leader node$LE_LEADER:"
le_psql "$LE_LEADER" "INSERT INTO demo VALUES ('written on the leader') RETURNING 'INSERT ok: ' || note" 2>&1 | sed 's/^/    /'
echo "  on the follower node$follower:"
le_psql "$follower" "INSERT INTO demo VALUES ('written on a follower')" 2>&1 | sed 's/^/    /' || true
echo "  (SQLSTATE 25006; a transaction that wrote while its node led cannot COMMIT after it lost"
echo "  leadership either)"

le_heading "(f) clients find the leader: one connection string with target_session_attrs=read-write"
le_writer_build
for i in 1 2 3; do
	le_psql "$i" "SET leader_election.fence_bypass = on;
		CREATE TABLE IF NOT EXISTS routing (at timestamptz DEFAULT clock_timestamp())" >/dev/null
done
conninfo=$(le_rw_conninfo)
echo "  a client (bench/writer.c) connects, inserts one row and disconnects, in a loop, through"
echo "    ${conninfo//$LE_WORK/\$DIR}"
echo "  (\$DIR: the nodes' socket directory). Every node but the leader reports"
echo "  default_transaction_read_only = on to a new session, so libpq passes it by."
hhmmss() { date -d "@$1" +%T.%3N; }
writer_log=$LE_WORK/writer.log
le_writer_start "$writer_log" "$conninfo" "INSERT INTO routing DEFAULT VALUES" -p 2 -t 30
route_summary=()
le_find_leader || le_die "no leader"
if le_until 5 le_writer_landed "$writer_log" 0 -; then
	echo "  $(hhmmss "$LE_LANDED_AT")  first write: on node$LE_LANDED_NODE (the leader is node$LE_LEADER)"
	for how in resign fast; do
		sleep 1
		le_find_leader || le_die "no leader"
		old=$LE_LEADER
		le_trigger "$how" "$old"
		if le_until 8 le_writer_landed "$writer_log" "$LE_T0" $((LE_PORT_BASE + old)); then
			ms=$(le_ms "$LE_T0" "$LE_LANDED_AT")
			fails=$(awk -v t0="$LE_T0" -v t1="$LE_LANDED_AT" '$2 == "fail" && $1 + 0 > t0 + 0 &&
				$1 + 0 < t1 + 0 { n++ } END { print n + 0 }' "$writer_log")
			echo "  $(hhmmss "$LE_T0")  ${how_name[$how]} of node$old: the client writes on" \
				"node$LE_LANDED_NODE $ms ms later (failed attempts in between: $fails)"
			route_summary+=("$(printf '  %-26s node%s -> node%s %10s ms' "${how_name[$how]}" \
				"$old" "$LE_LANDED_NODE" "$ms")")
		else
			echo "  $(hhmmss "$LE_T0")  ${how_name[$how]} of node$old: no write on another node" \
				"within 8 s"
			route_summary+=("$(printf '  %-26s node%s -> %-5s %13s' "${how_name[$how]}" "$old" \
				"?" "no write in 8 s")")
		fi
	done
	sleep 0.5
	le_node_start "$old"
	le_until 10 le_is_follower "$old" || echo "  (node$old is not a follower yet)"
	echo "  $(date +%T.%3N)  node$old restarted: $(le_role "$old")"
	sleep 0.5
else
	echo "  no write succeeded within 5 s; last attempt:"
	tail -n 1 "$writer_log" | cut -c1-300 | sed 's/^/    /'
fi
le_writer_stop
attempts=$(wc -l <"$writer_log")
echo "  the client stopped after $attempts attempts. Rows it wrote, by node (its log; count(*) on the node):"
for i in 1 2 3; do
	echo "    node$i: $(awk -v p=$((LE_PORT_BASE + i)) '$2 == "ok" && $3 == p { n++ } END { print n + 0 }' \
		"$writer_log"); $(le_psql "$i" "SELECT count(*) FROM routing")"
done
echo "  write outages (from the first failed attempt to the next write):"
outages=$(le_writer_outages "$writer_log")
if [[ -z $outages ]]; then
	echo "    none: no attempt failed. An attempt tries the hosts in turn: the one under way at each"
	echo "    handover passed the old leader by (read-only, or gone) and wrote on the new one."
fi
while IFS='|' read -r first ms fails before after kinds; do
	[[ -n $first ]] || continue
	if [[ -n $ms ]]; then
		printf '    %s  %8s ms  node%s -> node%s  %d failed: %s\n' "$(hhmmss "$first")" "$ms" \
			"$before" "$after" "$fails" "$kinds"
	else
		printf '    %s  until the client stopped  %d failed: %s\n' "$(hhmmss "$first")" "$fails" \
			"$kinds"
	fi
done <<<"$outages"

le_heading "(g) streaming replication: the primary crashes, a standby promotes itself"
# The nodes of acts (a)-(f) are independent databases; this act builds a replicated cluster with
# the same names on new ports and its own prefix.
for i in 1 2 3; do
	if le_node_up "$i"; then le_node_stop "$i" fast; fi
	rm -rf "${LE_WORK:?}/node$i" "$LE_WORK/node$i.log"
done
RPREFIX=/leader_election/demo-replicated
echo "  the nodes of (a)-(f) are stopped and removed. New ones, prefix $RPREFIX, lease_ttl=${TTL}s:"
echo "  node1: initdb, the primary; node2, node3: pg_basebackup -X stream from node1, standby.signal."
echo "  Every node's postgresql.conf (README, Streaming replication) has wal_log_hints = on,"
echo "  recovery_target_timeline = 'latest', wal_retrieve_retry_interval = 1s and"
echo "  leader_election.http_listen = '127.0.0.1:5448<n>' (HAProxy's check GET /primary: 200 on the leader only)."
t=$SECONDS
LE_HTTP_BASE=54480
le_stream_init 3 54370 "$RPREFIX" "$TTL"
sed -n "s|^primary_conninfo = |    primary_conninfo = |p" "$LE_WORK/node2/postgresql.conf" | sed "s|$LE_WORK|\$DIR|g"
echo "  (application_name is each node's own name: the primary tells its standbys apart by it)"
le_psql 1 "CREATE TABLE failover (id bigserial PRIMARY KEY,
	at timestamptz NOT NULL DEFAULT clock_timestamp(),
	port integer NOT NULL DEFAULT current_setting('port')::integer)"
le_stream_settled 20 || echo "  (not every standby stands yet)"
echo "  ready after $((SECONDS - t)) s: node1 leads, both standbys stream from it and stand in the queue"
echo
le_stream_table

conninfo=$(le_rw_conninfo)
flog=$LE_WORK/failover-writer.log
le_writer_start "$flog" "$conninfo" "INSERT INTO failover DEFAULT VALUES" -p 5 -t 60
echo
echo "  the client of (f) (one row per connection, 5 ms pause) writes through the read-write string"
le_until 5 le_writer_landed "$flog" 0 - || le_die "the client wrote nothing within 5 s"
echo "  $(hhmmss "$LE_LANDED_AT")  first write: on node$LE_LANDED_NODE"
sleep 1
le_trigger immediate 1
echo "  $(hhmmss "$LE_T0")  pg_ctl stop -m immediate of the primary node1 (a crash); each node's role"
echo "  and what its HTTP endpoint answers to GET /primary (HAProxy's check):"
role_line() {
	local i out='' r
	for i in 1 2 3; do
		if le_node_up "$i"; then
			r=$(le_psql "$i" "SELECT role || CASE WHEN in_recovery THEN ' (standby)' ELSE '' END
				FROM leader_status()" 2>/dev/null) || r='?'
			r+=" $(curl -s -o /dev/null -m 1 -w '%{http_code}' \
				"http://127.0.0.1:$((LE_HTTP_BASE + i))/primary" || true)"
		else
			r='(down)'
		fi
		out+=$(printf '  node%s %-24s' "$i" "$r")
	done
	echo "$out"
}
deadline=$((SECONDS + 15))
until le_writer_landed "$flog" "$LE_T0" $((LE_PORT_BASE + 1)); do
	if ((SECONDS >= deadline)); then
		echo
		le_stream_table
		echo "  the client's last attempts:"
		tail -n 3 "$flog" | cut -c1-200 | sed 's/^/    /'
		le_die "no write on another node within 15 s of the crash"
	fi
	printf '   +%4.1f s %s\n' "$(le_ms "$LE_T0" "$(le_now)" | awk '{ print $1 / 1000 }')" "$(role_line)"
	sleep 0.4
done
crash_ms=$(le_ms "$LE_T0" "$LE_LANDED_AT")
new=$LE_LANDED_NODE
echo "  $(hhmmss "$LE_LANDED_AT")  the client writes on node$new, $crash_ms ms after the crash"
printf '   +%4.1f s %s\n' "$(le_ms "$LE_T0" "$(le_now)" | awk '{ print $1 / 1000 }')" "$(role_line)"
route_summary+=("$(printf '  %-26s node%s -> node%s %10s ms' "crash, streaming cluster" 1 "$new" \
	"$crash_ms")")
le_find_leader || le_die "no leader"
# A standby that had received more of node1's last WAL than node$new cannot follow the new
# timeline: it is rewound like a deposed primary (a line says so).
le_stream_unstick 15
le_stream_settled 20 || echo "  (the other standby does not stand yet)"
echo
le_stream_table
echo "  node$new promoted itself (timeline 2); the other standby found it through primary_conninfo"
echo "  (target_session_attrs=read-write) and follows the new timeline (recovery_target_timeline)."

le_heading "(h) the old primary comes back: fenced until it is rejoined as a standby"
le_node_start 1
le_until 10 le_ineligible 1 || echo "  (node1 does not say it is ineligible within 10 s)"
echo "  node1 restarted as it was: a primary on timeline 1, which etcd's cluster record has left"
echo
le_stream_table
echo
echo "  a write on node1:"
le_psql 1 "INSERT INTO failover DEFAULT VALUES" 2>&1 | sed 's/^/    /' || true
echo "  node1's log says why, once:"
grep -m 1 -E 'pg_rewind' "$LE_WORK/node1.log" | cut -c1-220 | sed 's/^/    /' || echo "    (no such line)"
echo
echo "  scripts/rejoin-standby.sh \$DIR/node1 '$(le_node_conninfo "$new" | sed "s|$LE_WORK|\$DIR|g")'"
echo "  (stop, keep the node's own configuration files, pg_rewind from the leader, standby.signal)"
t0=$(le_now)
le_stream_rejoin 1
le_until 20 le_streams_from 1 "$new" || echo "  (node1 does not stream from node$new within 20 s)"
le_until 20 le_stands 1 || echo "  (node1 does not stand within 20 s)"
echo "  node1 streams from node$new and stands again, $(le_ms "$t0" "$(le_now)") ms after the rejoin began"
grep -E '^pg_rewind: (servers diverged|need to copy)' "$LE_WORK/rejoin1.log" | sed 's/^/    /' || true
echo
le_stream_table

sleep 0.5
le_writer_stop
echo
echo "  the client stopped after $(wc -l <"$flog") attempts; write outages (first failed attempt to"
echo "  the next write):"
while IFS='|' read -r first ms fails before after kinds; do
	[[ -n $first ]] || continue
	if [[ -n $ms ]]; then
		printf '    %s  %8s ms  node%s -> node%s  %d failed: %s\n' "$(hhmmss "$first")" "$ms" \
			"$before" "$after" "$fails" "$kinds" | cut -c1-250
	else
		printf '    %s  until the client stopped  %d failed: %s\n' "$(hhmmss "$first")" "$fails" \
			"$kinds" | cut -c1-250
	fi
done <<<"$(le_writer_outages "$flog")"
echo "  (the crash costs about the lease TTL: the dead primary's key lives until its lease expires."
echo "  A one-attempt outage during the rejoin, if any, is libpq giving up the whole string when"
echo "  node1, its first host, closes a connection while it stops or starts; the next attempt writes.)"
lsn=$(le_psql "$new" "SELECT pg_current_wal_lsn()")
replayed() { [[ $(le_psql "$1" "SELECT pg_last_wal_replay_lsn() >= '$lsn'") == t ]]; }
echo "  rows: acknowledged to the client (its log) and present (count(*)), by the node that took them:"
printf '    %-22s %14s %16s %16s %16s\n' "" acknowledged "on node1" "on node2" "on node3"
for w in 1 2 3; do
	acked=$(awk -v p=$((LE_PORT_BASE + w)) '$2 == "ok" && $3 == p { n++ } END { print n + 0 }' "$flog")
	((acked > 0)) || continue
	row=$(printf '    %-22s %14s' "written on node$w" "$acked")
	for i in 1 2 3; do
		((i == new)) || le_until 10 replayed "$i" || true
		row+=$(printf ' %16s' "$(le_psql "$i" "SELECT count(*) FROM failover WHERE port = $((LE_PORT_BASE + w))")")
	done
	echo "$row"
done
echo "  (asynchronous replication: rows that node1 acknowledged in the last moment before the crash"
echo "  and had not yet sent are lost; a standby stands only while it is within"
echo "  leader_election.max_lag_on_failover (1MB) of the primary)"

le_heading "What 'etcdctl elect -l $PREFIX' observed (leader key, value)"
paste - - <"$LE_WORK/observer.log" | sed 's/^/  /'

le_heading "Summary: handover times (lease_ttl=${TTL}s)"
printf '  %-26s %-14s %13s\n' trigger handover time
printf '%s\n' "${summary[@]}"
echo
echo "  a client writing through one read-write connection string: from the trigger to its first"
echo "  write on the new leader"
if ((${#route_summary[@]} > 0)); then printf '%s\n' "${route_summary[@]}"; else echo "  (not measured)"; fi
