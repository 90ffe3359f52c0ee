# Shared helpers for scripts/test.sh, scripts/demo.sh and bench/*.sh (sourced, not run).
#
# Each of those scripts runs in two stages, because PostgreSQL refuses to run as root:
#   1. le_prepare (as root, or as whoever runs it): install packages, build, `make install`,
#      then copy the tree into a private work dir under /tmp owned by the unprivileged user;
#   2. le_run_user re-runs the same script from that copy as that user (LE_STAGE=user), where
#      the le_etcd_* / le_node_* / le_handover helpers start etcd and PostgreSQL nodes on
#      loopback only (le_stream_* a streaming-replication cluster); le_cleanup stops them again.
#
# Environment:
#   LE_SKIP_BUILD=1   le_prepare skips `make` and `make install` and uses the extension that is
#                     already installed (for example while src/ is being edited and may not
#                     compile); it still installs missing packages.

PG_BIN=/usr/lib/postgresql/15/bin
PG_CONFIG=$PG_BIN/pg_config
PATH=$PG_BIN:$PATH
export ETCDCTL_API=3
LE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

le_die() { echo "ERROR: $*" >&2; exit 1; }
le_heading() { printf '\n=== %s ===\n' "$*"; }
le_now() { date +%s.%N; }
le_ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) * 1000 }'; }

# Retries a command every 50 ms until it succeeds; fails after $1 seconds.
le_until() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@"; do
		((SECONDS < deadline)) || return 1
		sleep 0.05
	done
}

# Reads numbers (ms), one per line; prints min, median and max ("-" for none).
le_stats() {
	sort -g | awk '{ v[NR] = $1 }
		END { if (NR == 0) { printf "%9s %9s %9s", "-", "-", "-"; exit }
		      m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		      printf "%9.1f %9.1f %9.1f", v[1], m, v[NR] }'
}

# ---------------------------------------------------------------- stage 1 (root)

# $1: a word naming the work dir. Sets LE_USER and LE_WORK; removes LE_WORK on exit.
le_prepare() {
	bash "$LE_ROOT/scripts/install-deps.sh"
	if [[ ${LE_SKIP_BUILD:-} == 1 ]]; then
		echo "LE_SKIP_BUILD=1: not building; using the installed $("$PG_CONFIG" --pkglibdir)/leader_election.so"
	else
		make -C "$LE_ROOT" -s PG_CONFIG="$PG_CONFIG"
		make -C "$LE_ROOT" -s PG_CONFIG="$PG_CONFIG" install >/dev/null
	fi
	if ((EUID == 0)); then LE_USER=postgres; else LE_USER=$(id -un); fi
	# /tmp rather than $TMPDIR: the unprivileged user must reach it, and socket paths stay short.
	LE_WORK=$(mktemp -d "/tmp/leader_election-$1.XXXXXX")
	trap le_cleanup_root EXIT
	# tar keeps mtimes, so the copy's built objects stay up to date and make rebuilds nothing.
	mkdir "$LE_WORK/tree"
	tar -C "$LE_ROOT" --exclude=./.git --exclude=./tmp_check --exclude=./tmp_check_regress \
		--exclude=./results -cf - . | tar -C "$LE_WORK/tree" -xf -
	chown -R "$LE_USER:" "$LE_WORK"
}

# Runs the script $1 (a path relative to the tree) from the copy, as LE_USER, in stage 2.
le_run_user() {
	local cmd=(env LE_STAGE=user LE_WORK="$LE_WORK" HOME="$LE_WORK" bash "$LE_WORK/tree/$1")
	shift
	cd "$LE_WORK/tree"
	if ((EUID == 0)); then
		runuser -u "$LE_USER" -- "${cmd[@]}" "$@"
	else
		"${cmd[@]}" "$@"
	fi
}

# Stage 2 stops what it started; what is still alive here was left by a test that was killed
# (timeout, signal) before its own teardown. Such a process names the unique work dir on its
# command line or runs inside it, so it is found by that path and stopped by pid.
le_strays() {
	local p
	pgrep -f -- "$LE_WORK/" || true
	for p in /proc/[0-9]*; do
		[[ $(readlink "$p/cwd" 2>/dev/null) == "$LE_WORK"/* ]] && echo "${p#/proc/}"
	done
	return 0
}

le_cleanup_root() {
	local pids
	cd /    # this shell is no stray
	mapfile -t pids < <(le_strays | sort -un)
	if ((${#pids[@]} > 0)); then
		echo "cleanup: stopping leftover processes: ${pids[*]}" >&2
		kill -INT "${pids[@]}" 2>/dev/null || true
		sleep 5
		kill -KILL "${pids[@]}" 2>/dev/null || true
	fi
	rm -rf "$LE_WORK"
}

# ---------------------------------------------------------------- stage 2 (unprivileged)

LE_BG_PIDS=()   # background processes of this shell to stop on exit (etcd, observers)
LE_NODES=0      # number of PostgreSQL nodes (node1..nodeN) created by le_nodes_init

le_cleanup() {
	local i
	for ((i = 1; i <= LE_NODES; i++)); do
		if le_node_up "$i"; then
			pg_ctl -D "$LE_WORK/node$i" -m immediate -w stop >/dev/null 2>&1 || true
		fi
	done
	for i in "${LE_BG_PIDS[@]}"; do kill "$i" 2>/dev/null || true; done
	for i in "${LE_BG_PIDS[@]}"; do wait "$i" 2>/dev/null || true; done
}

le_port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

le_etcdctl() { etcdctl --endpoints="$LE_ETCD_URL" --dial-timeout=1s --command-timeout=2s "$@"; }
le_etcd_healthy() { le_etcdctl endpoint health >/dev/null 2>&1; }

# Starts a single-member etcd on 127.0.0.1 (client port $1, peer port $2); sets LE_ETCD_URL.
le_etcd_start() {
	local p
	for p in "$1" "$2"; do
		le_port_free "$p" || le_die "port $p on 127.0.0.1 is in use (a leftover etcd?)"
	done
	LE_ETCD_URL=http://127.0.0.1:$1
	etcd --name le --data-dir "$LE_WORK/etcd" \
		--listen-client-urls "$LE_ETCD_URL" --advertise-client-urls "$LE_ETCD_URL" \
		--listen-peer-urls "http://127.0.0.1:$2" --initial-advertise-peer-urls "http://127.0.0.1:$2" \
		--initial-cluster "le=http://127.0.0.1:$2" \
		--logger zap --log-outputs stderr --log-level warn >"$LE_WORK/etcd.log" 2>&1 &
	LE_ETCD_PID=$!
	LE_BG_PIDS+=("$LE_ETCD_PID")
	if ! le_until 30 le_etcd_healthy; then
		tail -n 30 "$LE_WORK/etcd.log" >&2
		le_die "etcd at $LE_ETCD_URL did not become healthy within 30 s"
	fi
}

le_etcd_stop() {
	kill "$LE_ETCD_PID" 2>/dev/null || true
	wait "$LE_ETCD_PID" 2>/dev/null || true
}

# Creates node1..node$1 listening on unix sockets in LE_WORK only, ports $2+1..$2+$1, all
# electing under prefix $3 with lease TTL $4 s at LE_ETCD_URL.
le_nodes_init() {
	local i pids=()
	LE_NODES=$1
	LE_PORT_BASE=$2
	for ((i = 1; i <= LE_NODES; i++)); do
		initdb -D "$LE_WORK/node$i" -U postgres -A trust -E UTF8 --locale=C --no-sync \
			--no-instructions >"$LE_WORK/initdb$i.log" 2>&1 &
		pids+=($!)
	done
	for ((i = 1; i <= LE_NODES; i++)); do
		wait "${pids[i - 1]}" || { cat "$LE_WORK/initdb$i.log" >&2; le_die "initdb node$i failed"; }
		cat >>"$LE_WORK/node$i/postgresql.conf" <<-EOF
			port = $((LE_PORT_BASE + i))
			listen_addresses = ''
			unix_socket_directories = '$LE_WORK'
			shared_preload_libraries = 'leader_election'
			leader_election.endpoints = '$LE_ETCD_URL'
			leader_election.prefix = '$3'
			leader_election.node_name = 'node$i'
			leader_election.lease_ttl = $4
			fsync = off
			shared_buffers = 16MB
			max_connections = 20
		EOF
	done
}

le_node_up() { pg_ctl -D "$LE_WORK/node$1" status >/dev/null 2>&1; }

le_node_start() {
	if ! pg_ctl -D "$LE_WORK/node$1" -l "$LE_WORK/node$1.log" -w -t 30 start >/dev/null; then
		tail -n 30 "$LE_WORK/node$1.log" >&2
		le_die "node$1 did not start"
	fi
}

# $1: node, $2: pg_ctl shutdown mode (fast, immediate)
le_node_stop() { pg_ctl -D "$LE_WORK/node$1" -m "$2" -w -t 30 stop >/dev/null; }

# Runs SQL $2 on node $1; unaligned output, fields separated by '|'. Further arguments are
# psql options that override these (e.g. -P format=aligned).
le_psql() {
	psql -X -A -t -q -v ON_ERROR_STOP=1 -h "$LE_WORK" -p $((LE_PORT_BASE + $1)) -U postgres \
		-d postgres -c "$2" "${@:3}"
}

le_role() { le_psql "$1" "SELECT role FROM leader_status()"; }
le_is_follower() { [[ $(le_role "$1") == follower ]]; }

# Sets LE_LEADER to the running node whose leader_is_primary() is true, if any.
le_find_leader() {
	local i
	for ((i = 1; i <= LE_NODES; i++)); do
		if le_node_up "$i" && [[ $(le_psql "$i" "SELECT leader_is_primary()") == t ]]; then
			LE_LEADER=$i
			return 0
		fi
	done
	return 1
}

le_wait_leader() { le_until 30 le_find_leader || le_die "no node became leader within 30 s"; }

# One table row per node: this node's own view from leader_status(); "valid" is how long its
# leadership stays valid without another keepalive.
le_status_table() {
	local i row role leader pos token valid lease err
	local fmt='  %-6s %-6s %-13s %-7s %-6s %-8s %-6s %-17s %s\n'
	# shellcheck disable=SC2059 # the format is the variable
	printf "$fmt" node port role leader queue fencing valid lease_id last_error
	for ((i = 1; i <= LE_NODES; i++)); do
		if ! le_node_up "$i"; then
			printf '  %-6s %-6s %-13s\n' "node$i" $((LE_PORT_BASE + i)) "(stopped)"
			continue
		fi
		row=$(le_psql "$i" "SELECT role, coalesce(leader_name, '-'),
			coalesce(queue_position::text, '-'), coalesce(fencing_token::text, '-'),
			coalesce(round(extract(epoch FROM valid_until - clock_timestamp()), 1) || 's', '-'),
			coalesce(to_hex(lease_id), '-'), translate(coalesce(last_error, ''), E'\n|', '  ')
			FROM leader_status()")
		IFS='|' read -r role leader pos token valid lease err <<<"$row"
		# shellcheck disable=SC2059
		printf "$fmt" "node$i" $((LE_PORT_BASE + i)) "$role" "$leader" "$pos" "$token" "$valid" \
			"$lease" "$err"
	done
}

# --- measuring a handover ---------------------------------------------------
# Every running follower gets a session blocked in leader_wait(); the handover time is from the
# trigger to the first of those calls returning true, as read from the server's clock (the same
# clock as `date` on this machine).

le_waiter_active() {
	[[ $(le_psql "$1" "SELECT count(*) FROM pg_stat_activity
		WHERE application_name = 'le_wait' AND state = 'active'") == 1 ]]
}

# Sets LE_WINNER/LE_WON_AT when some waiter's leader_wait() returned true.
le_waiter_won() {
	local i line
	for i in "${LE_WAITERS[@]}"; do
		line=$(grep '^t|' "$LE_WORK/wait.$i" 2>/dev/null) || continue
		LE_WINNER=$i
		LE_WON_AT=${line#t|}
		return 0
	done
	return 1
}

# $1: resign | fast | immediate. Acts on the current leader LE_LEADER and sets LE_OLD,
# LE_WINNER and LE_HANDOVER_MS.
le_handover() {
	local i t0 pids=() out
	LE_OLD=$LE_LEADER
	LE_WAITERS=()
	for ((i = 1; i <= LE_NODES; i++)); do
		if ((i != LE_OLD)) && le_node_up "$i"; then LE_WAITERS+=("$i"); fi
	done
	((${#LE_WAITERS[@]} > 0)) || le_die "no follower is running"
	for i in "${LE_WAITERS[@]}"; do
		PGAPPNAME=le_wait le_psql "$i" \
			"SELECT leader_wait(30000), extract(epoch FROM clock_timestamp())" \
			>"$LE_WORK/wait.$i" 2>&1 &
		pids+=($!)
	done
	for i in "${LE_WAITERS[@]}"; do
		le_until 10 le_waiter_active "$i" || le_die "leader_wait() did not start on node$i"
	done

	case $1 in
	resign)
		# The server's clock just before leader_resign() runs (target list order).
		out=$(le_psql "$LE_OLD" "SELECT extract(epoch FROM clock_timestamp()), leader_resign()")
		[[ $out == *'|t' ]] || le_die "leader_resign() on node$LE_OLD returned '$out'"
		t0=${out%|t}
		;;
	fast | immediate)
		t0=$(le_now)
		le_node_stop "$LE_OLD" "$1"
		;;
	*) le_die "le_handover: unknown trigger $1" ;;
	esac

	if ! le_until 40 le_waiter_won; then
		for i in "${LE_WAITERS[@]}"; do echo "node$i: $(cat "$LE_WORK/wait.$i")" >&2; done
		le_die "no follower became leader within 40 s after '$1' of node$LE_OLD"
	fi
	LE_HANDOVER_MS=$(le_ms "$t0" "$LE_WON_AT")
	# The other followers still wait: cancel their leader_wait() calls.
	for i in "${LE_WAITERS[@]}"; do
		le_psql "$i" "SELECT pg_cancel_backend(pid) FROM pg_stat_activity
			WHERE application_name = 'le_wait'" >/dev/null || true
	done
	wait "${pids[@]}" 2>/dev/null || true
	LE_LEADER=$LE_WINNER
}

# --- clients that find the leader (bench/routing.sh, demo act f) --------------

# $1: resign | fast | immediate; $2: node (the leader). Sets LE_T0 to the time just before the
# trigger: for resign the server's clock as leader_resign() starts, else `date` before pg_ctl.
le_trigger() {
	local out
	case $1 in
	resign)
		out=$(le_psql "$2" "SELECT extract(epoch FROM clock_timestamp()), leader_resign()")
		[[ $out == *'|t' ]] || le_die "leader_resign() on node$2 returned '$out'"
		LE_T0=${out%|t}
		;;
	fast | immediate)
		LE_T0=$(le_now)
		le_node_stop "$2" "$1" || le_die "node$2 did not stop (-m $1)"
		;;
	*) le_die "le_trigger: unknown trigger $1" ;;
	esac
}

# One libpq connection string naming every node, in the order of the node numbers given (all
# nodes by default), that lands only on a node whose sessions may write.
le_rw_conninfo() {
	local i hosts='' ports=''
	(($# > 0)) || set -- $(seq 1 "$LE_NODES")
	for i in "$@"; do
		hosts+=${hosts:+,}$LE_WORK
		ports+=${ports:+,}$((LE_PORT_BASE + i))
	done
	echo "host=$hosts port=$ports user=postgres dbname=postgres" \
		"target_session_attrs=read-write connect_timeout=2"
}

# Compiles bench/writer.c (a client that reconnects and writes once per connection) into
# $LE_WORK/writer.
le_writer_build() {
	gcc -O2 -o "$LE_WORK/writer" "$LE_ROOT/bench/writer.c" -I"$(pg_config --includedir)" -lpq ||
		le_die "could not compile bench/writer.c (is libpq-dev installed?)"
}

# Starts the writer in the background: $1 log file, $2 connection string, $3 SQL, further
# arguments are writer options (-p PAUSE_MS, -t SECONDS). Sets LE_WRITER_PID.
le_writer_start() {
	: >"$1"    # exists before the background shell opens it, for le_writer_landed
	"$LE_WORK/writer" "${@:4}" "$2" "$3" >>"$1" 2>&1 &
	LE_WRITER_PID=$!
	LE_BG_PIDS+=("$LE_WRITER_PID")
}

le_writer_stop() {
	kill "$LE_WRITER_PID" 2>/dev/null || true
	wait "$LE_WRITER_PID" 2>/dev/null || true
}

# True when the writer's log $1 shows a write after time $2 on a node other than port $3 ("-":
# any node); sets LE_LANDED_AT (time) and LE_LANDED_NODE.
le_writer_landed() {
	local line
	line=$(awk -v t0="$2" -v old="$3" '$2 == "ok" && $1 + 0 > t0 + 0 && $3 != old {
		print $1, $3; exit }' "$1") || return 1
	[[ -n $line ]] || return 1
	LE_LANDED_AT=${line% *}
	LE_LANDED_NODE=$((${line#* } - LE_PORT_BASE))
}

# Reads a writer's log $1; prints one line per outage (a run of failed attempts), with fields
# separated by '|': time of the first failure, duration in ms from the first failure to the
# next write (empty when no write followed), failed attempts, node written to before (0: none),
# node written to after (0: none), the kinds of failure with their counts. A failed connection
# counts under its hosts' distinct reasons ("session is read-only", "No such file or directory",
# ...), a failed statement under its SQLSTATE (or, if the connection broke, libpq's message) and
# node.
le_writer_outages() {
	awk -v base="$LE_PORT_BASE" '
	function reason(   msg, r, out, seen) {
		if ($4 != "connect" && $4 != "-----")
			return $4 " on node" ($3 - base)
		if ($4 == "-----") {    # no SQLSTATE: the connection broke; the first line of the message
			msg = $0
			sub(/^[^ ]+ [^ ]+ [^ ]+ [^ ]+ /, "", msg)
			sub(/ \|.*/, "", msg)
			return msg " on node" ($3 - base)
		}
		msg = $0
		out = ""
		while (match(msg, /failed: [^|]*/)) {
			r = substr(msg, RSTART + 8, RLENGTH - 8)
			sub(/ +$/, "", r)
			sub(/^FATAL: +/, "", r)
			if (!(r in seen)) {
				seen[r] = 1
				out = out (out == "" ? "" : " / ") r
			}
			msg = substr(msg, RSTART + RLENGTH)
		}
		return out == "" ? "connection failed" : out
	}
	function flush(end, after,   k, kinds) {
		kinds = ""
		for (k in count)
			kinds = kinds (kinds == "" ? "" : ", ") count[k] "x " k
		printf "%s|%s|%d|%d|%d|%s\n", first, end == "" ? "" : sprintf("%.1f", (end - first) * 1000),
			fails, before, after, kinds
		for (k in count)
			delete count[k]
		fails = 0
	}
	$2 == "ok" {
		if (fails > 0)
			flush($1, $3 - base)
		before = $3 - base
		next
	}
	$2 == "fail" {
		if (fails == 0)
			first = $1
		fails++
		count[reason()]++
	}
	END { if (fails > 0) flush("", 0) }
	' "$1"
}

# --- a streaming-replication cluster (demo act g, bench/failover.sh) ---------
# The recipe of README.md, "Streaming replication": node1 is initdb'd and leads as the primary;
# node2..N are copies made with pg_basebackup -X stream and run as hot standbys. Every node has
# the same settings but its own port, node name and application_name, and a primary_conninfo
# that lists every node with target_session_attrs=read-write, so a standby streams from
# whichever node accepts writes. The superuser postgres replicates (initdb's pg_hba.conf trusts
# local replication connections).

# libpq connection string of node $1 (pg_rewind's source server).
le_node_conninfo() { echo "host=$LE_WORK port=$((LE_PORT_BASE + $1)) user=postgres dbname=postgres"; }

# Writes node $1's whole postgresql.conf: initdb's original, then the cluster's settings, then the
# node's own (with LE_HTTP_BASE set, its HTTP endpoint on 127.0.0.1:LE_HTTP_BASE+$1). pg_basebackup and pg_rewind copy the source's postgresql.conf, so this is written
# again after a copy (the rejoin script keeps the node's own file instead).
le_stream_conf() {
	local n hosts='' ports=''
	for ((n = 1; n <= LE_NODES; n++)); do
		hosts+=${hosts:+,}$LE_WORK
		ports+=${ports:+,}$((LE_PORT_BASE + n))
	done
	{
		cat "$LE_WORK/postgresql.conf.initdb"
		cat <<-EOC
			# --- leader_election streaming cluster
			listen_addresses = ''
			unix_socket_directories = '$LE_WORK'
			shared_preload_libraries = 'leader_election'
			leader_election.endpoints = '$LE_ETCD_URL'
			leader_election.prefix = '$LE_PREFIX'
			leader_election.lease_ttl = $LE_TTL
			wal_level = replica
			max_wal_senders = 10
			wal_log_hints = on
			wal_keep_size = '256MB'
			hot_standby = on
			recovery_target_timeline = 'latest'
			wal_receiver_status_interval = 1s
			wal_retrieve_retry_interval = 1s
			fsync = off
			shared_buffers = 16MB
			max_connections = 20
			# --- this node's own settings
			port = $((LE_PORT_BASE + $1))
			leader_election.node_name = 'node$1'
			primary_conninfo = 'host=$hosts port=$ports user=postgres target_session_attrs=read-write application_name=node$1 connect_timeout=2'
			${LE_HTTP_BASE:+leader_election.http_listen = '127.0.0.1:$((${LE_HTTP_BASE:-0} + $1))'}
		EOC
	} >"$LE_WORK/node$1/postgresql.conf"
}

# Creates and starts node1..node$1 (ports $2+1..$2+$1, prefix $3, lease TTL $4 s, at
# LE_ETCD_URL): node1 as the primary, with the extension created, leading; the others as
# standbys streaming from it. Sets LE_LEADER=1.
le_stream_init() {
	local i pids=()
	LE_NODES=$1
	LE_PORT_BASE=$2
	LE_PREFIX=$3
	LE_TTL=$4
	initdb -D "$LE_WORK/node1" -U postgres -A trust -E UTF8 --locale=C --no-sync \
		--no-instructions >"$LE_WORK/initdb1.log" 2>&1 || { cat "$LE_WORK/initdb1.log" >&2; le_die "initdb node1 failed"; }
	cp "$LE_WORK/node1/postgresql.conf" "$LE_WORK/postgresql.conf.initdb"
	le_stream_conf 1
	le_node_start 1
	le_psql 1 "CREATE EXTENSION leader_election"
	[[ $(le_psql 1 "SELECT leader_wait(10000)") == t ]] || le_die "node1 did not lead within 10 s"
	LE_LEADER=1
	for ((i = 2; i <= LE_NODES; i++)); do
		pg_basebackup -D "$LE_WORK/node$i" -X stream -c fast --no-sync -h "$LE_WORK" \
			-p $((LE_PORT_BASE + 1)) -U postgres >"$LE_WORK/basebackup$i.log" 2>&1 &
		pids+=($!)
	done
	for ((i = 2; i <= LE_NODES; i++)); do
		wait "${pids[i - 2]}" || { cat "$LE_WORK/basebackup$i.log" >&2; le_die "pg_basebackup of node$i failed"; }
		le_stream_conf "$i"
		touch "$LE_WORK/node$i/standby.signal"
		le_node_start "$i"
	done
	for ((i = 2; i <= LE_NODES; i++)); do
		le_until 30 le_streams "$i" || le_die "node$i does not stream within 30 s"
	done
}

# True when node $1 is a standby whose WAL receiver streams.
le_streams() {
	[[ $(le_psql "$1" "SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'") == 1 ]]
}

# True when node $1 is a standby that streams from node $2, on node $2's timeline (a standby
# that cannot follow a new timeline streams the old one's tail again and again).
le_streams_from() {
	local tli
	# the primary's current timeline: the first 8 hex digits of its current WAL file's name
	tli=$(le_psql "$2" "SELECT ('x' || left(pg_walfile_name(pg_current_wal_lsn()), 8))::bit(32)::integer") ||
		return 1
	[[ $(le_psql "$1" "SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'
		AND sender_port = $((LE_PORT_BASE + $2)) AND received_tli = $tli") == 1 ]]
}

# True when node $1 stands for election: an eligible follower in the queue.
le_stands() {
	[[ $(le_psql "$1" "SELECT role = 'follower' AND eligible AND queue_position IS NOT NULL
		FROM leader_status()") == t ]]
}

# True when node $1 says it is not eligible, with a reason.
le_ineligible() {
	[[ $(le_psql "$1" "SELECT NOT eligible AND ineligible_reason IS NOT NULL
		AND ineligible_reason NOT LIKE 'starting up%' FROM leader_status()") == t ]]
}

# Waits until every running node but the leader LE_LEADER streams from it and stands; $1: seconds.
le_stream_settled() {
	local i deadline=$((SECONDS + $1))
	for ((i = 1; i <= LE_NODES; i++)); do
		if ((i == LE_LEADER)) || ! le_node_up "$i"; then continue; fi
		le_until $((deadline - SECONDS)) le_streams_from "$i" "$LE_LEADER" || return 1
		le_until $((deadline - SECONDS)) le_stands "$i" || return 1
	done
}

# Turns node $1, a deposed primary (running or not), into a standby of the leader LE_LEADER with
# scripts/rejoin-standby.sh (pg_rewind from the leader; the node keeps its own configuration),
# and starts it. Its output goes to $LE_WORK/rejoin$1.log.
le_stream_rejoin() {
	local log=$LE_WORK/rejoin$1.log
	echo "--- $(date +%T.%3N) rejoin node$1 from node$LE_LEADER" >>"$log"
	if ! bash "$LE_ROOT/scripts/rejoin-standby.sh" "$LE_WORK/node$1" \
		"$(le_node_conninfo "$LE_LEADER")" >>"$log" 2>&1; then
		tail -n 20 "$log" >&2
		le_die "rejoining node$1 as a standby of node$LE_LEADER failed"
	fi
	le_node_up "$1" || le_node_start "$1"
}

# One table row per node: its own view of the election and of its replication, from
# leader_status() and pg_stat_wal_receiver ("streams from").
le_stream_table() {
	local i row role leader pos rec tli lag elig from reason
	local fmt='  %-6s %-6s %-10s %-7s %-6s %-12s %-9s %-14s %-9s %-13s %s\n'
	# shellcheck disable=SC2059 # the format is the variable
	printf "$fmt" node port role leader queue in_recovery timeline wal_lag_bytes eligible \
		"streams from" ineligible_reason
	for ((i = 1; i <= LE_NODES; i++)); do
		if ! le_node_up "$i"; then
			printf '  %-6s %-6s %-10s\n' "node$i" $((LE_PORT_BASE + i)) "(stopped)"
			continue
		fi
		row=$(le_psql "$i" "SELECT role, coalesce(leader_name, '-'),
			coalesce(queue_position::text, '-'), in_recovery, timeline,
			coalesce(wal_lag_bytes::text, '-'), eligible,
			coalesce((SELECT 'node' || (sender_port - $LE_PORT_BASE) FROM pg_stat_wal_receiver
				WHERE status = 'streaming'), '-'),
			translate(coalesce(ineligible_reason, '-'), E'\n|', '  ')
			FROM leader_status()") || row='?|?|?|?|?|?|?|?|(leader_status() failed)'
		IFS='|' read -r role leader pos rec tli lag elig from reason <<<"$row"
		# shellcheck disable=SC2059
		printf "$fmt" "node$i" $((LE_PORT_BASE + i)) "$role" "$leader" "$pos" "$rec" "$tli" "$lag" \
			"$elig" "$from" "$reason"
	done
}

# A standby that had replayed further on the old timeline than the point where the new primary's
# timeline forked off cannot follow it (its log says "new timeline N forked off current database
# system timeline M before current recovery point"); like a deposed primary it must be rewound.
# Each running standby that does not stream from the leader LE_LEADER within $1 s is rejoined
# with le_stream_rejoin; prints a line for each, and sets LE_REWOUND to their numbers.
le_stream_unstick() {
	local i line deadline=$((SECONDS + $1))
	LE_REWOUND=()
	for ((i = 1; i <= LE_NODES; i++)); do
		if ((i == LE_LEADER)) || ! le_node_up "$i"; then continue; fi
		le_until $((deadline - SECONDS)) le_streams_from "$i" "$LE_LEADER" && continue
		line=$(grep -h 'forked off current database system timeline' "$LE_WORK/node$i.log" |
			tail -n 1 | sed 's/^.*LOG: *//') || true
		echo "  node$i does not stream from node$LE_LEADER (${line:-its log does not say why});" \
			"rejoining it with pg_rewind"
		le_stream_rejoin "$i"
		LE_REWOUND+=("$i")
	done
}
