#!/usr/bin/env bash
# `make demo`: three PostgreSQL 15 nodes elect a leader through a throwaway etcd on loopback.
# Shows each node's view and the etcd keys, then times three handovers: leader_resign(), a clean
# stop (pg_ctl stop -m fast) and a crash (pg_ctl stop -m immediate). Needs no input; everything
# it starts is stopped and removed on exit. Then the write fence refuses a follower's write, and a
# client that reconnects through one multi-host connection string (target_session_attrs=read-write)
# keeps writing across a resign and a clean stop, always on the leader.
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

le_heading "What 'etcdctl elect -l $PREFIX' observed (leader key, value)"
paste - - <"$LE_WORK/observer.log" | sed 's/^/  /'

le_heading "Summary: handover times (lease_ttl=${TTL}s)"
printf '  %-26s %-14s %13s\n' trigger handover time
printf '%s\n' "${summary[@]}"
echo
echo "  a client writing through one read-write connection string: from the trigger to its first"
echo "  write on the new leader"
if ((${#route_summary[@]} > 0)); then printf '%s\n' "${route_summary[@]}"; else echo "  (not measured)"; fi
