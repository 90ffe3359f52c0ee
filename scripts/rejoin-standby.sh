#!/usr/bin/env bash
# Turns a deposed primary (or any node that ran ahead on its own timeline) into a streaming
# standby of the current leader, with pg_rewind (README, "Streaming replication").
#
#   scripts/rejoin-standby.sh [--start] [--stop-mode MODE] DATA_DIR 'SOURCE_CONNINFO' [PG_CTL_OPTION...]
#
#   DATA_DIR          the node's data directory
#   SOURCE_CONNINFO   a libpq connection string of the leader, e.g.
#                     'host=h2 port=5432 user=postgres dbname=postgres', or one listing every node
#                     with target_session_attrs=read-write; name a database (dbname=...);
#                     the role must be allowed to run pg_rewind (a superuser, or see
#                     pg_rewind's docs) and CHECKPOINT (pg_checkpoint)
#   --start           start the node afterwards (pg_ctl start -w -D DATA_DIR PG_CTL_OPTION...,
#                     e.g. -l logfile); by default it is left stopped and the caller starts it
#   --stop-mode MODE  how to stop the node if it runs: smart, fast (default) or immediate
#
# Steps: stop the node if it runs; save its own postgresql.conf, postgresql.auto.conf,
# pg_hba.conf and pg_ident.conf (pg_rewind copies the leader's); CHECKPOINT on the leader (so
# that its control file names its new timeline, which pg_rewind reads); pg_rewind
# --target-pgdata=DATA_DIR --source-server=SOURCE_CONNINFO (it first runs crash recovery in
# single-user mode if the node was not shut down cleanly); restore the saved files; create
# standby.signal. The node then streams from whichever node its primary_conninfo finds (the
# recipe lists every node with target_session_attrs=read-write) and follows the latest timeline.
#
# Run it as the operating system user that owns DATA_DIR (not root), with PostgreSQL's programs
# in PATH (or PG_BINDIR set to their directory).
#
# Exit status: 0 done; 1 a step failed (the message says which; if pg_rewind itself failed, the
# node's configuration files are restored but its data directory may be unusable: take a new
# base backup); 2 usage error.
set -euo pipefail

PROG=$(basename "$0")

usage() {
	cat <<-EOF
		usage: $PROG [--start] [--stop-mode smart|fast|immediate] DATA_DIR 'SOURCE_CONNINFO' [PG_CTL_OPTION...]

		Rejoins the node in DATA_DIR as a streaming standby of the leader that SOURCE_CONNINFO
		reaches: stops it, rewinds it with pg_rewind, keeps its own configuration files and
		creates standby.signal. The node is left stopped unless --start is given; the
		PG_CTL_OPTIONs (e.g. -l logfile) are passed to pg_ctl start.
	EOF
}

die() {
	echo "$PROG: ERROR: $*" >&2
	exit 1
}
usage_error() {
	echo "$PROG: $*" >&2
	usage >&2
	exit 2
}
say() { echo "$PROG: $*"; }

start=0
stop_mode=fast
while (($# > 0)); do
	case $1 in
	-h | --help)
		usage
		exit 0
		;;
	--start)
		start=1
		shift
		;;
	--stop-mode)
		(($# >= 2)) || usage_error "--stop-mode needs a value"
		stop_mode=$2
		shift 2
		;;
	--stop-mode=*)
		stop_mode=${1#--stop-mode=}
		shift
		;;
	--)
		shift
		break
		;;
	-*) usage_error "unknown option $1" ;;
	*) break ;;
	esac
done
(($# >= 2)) || usage_error "DATA_DIR and SOURCE_CONNINFO are required"
case $stop_mode in
smart | fast | immediate) ;;
*) usage_error "--stop-mode must be smart, fast or immediate, not '$stop_mode'" ;;
esac
DATA=$1
SOURCE=$2
shift 2
PG_CTL_OPTS=("$@")
((start == 1 || ${#PG_CTL_OPTS[@]} == 0)) ||
	usage_error "pg_ctl options (${PG_CTL_OPTS[*]}) are only used with --start"

((EUID != 0)) || die "run this as the operating system user that owns the data directory, not root"
[[ -n $SOURCE ]] || usage_error "SOURCE_CONNINFO is empty"
[[ -d $DATA ]] || die "$DATA is not a directory"
[[ -f $DATA/PG_VERSION ]] || die "$DATA is not a PostgreSQL data directory (no PG_VERSION)"
[[ -O $DATA ]] || die "$DATA is owned by another user than $(id -un)"
DATA=$(cd "$DATA" && pwd)

if [[ -n ${PG_BINDIR:-} ]]; then
	PATH=$PG_BINDIR:$PATH
elif ! command -v pg_rewind >/dev/null 2>&1 && command -v pg_config >/dev/null 2>&1; then
	PATH=$(pg_config --bindir):$PATH
fi
for prog in pg_ctl pg_rewind psql; do
	command -v "$prog" >/dev/null 2>&1 ||
		die "$prog not found in PATH (set PG_BINDIR to PostgreSQL's bin directory)"
done

# 1. Stop the node if it runs. pg_ctl status: 0 running, 3 not running (also with a stale
#    postmaster.pid left by a crash), 4 not a data directory.
status_rc=0
pg_ctl status -D "$DATA" >/dev/null 2>&1 || status_rc=$?
case $status_rc in
0)
	say "stopping the node in $DATA (-m $stop_mode)"
	pg_ctl stop -D "$DATA" -m "$stop_mode" -w -t 60 >/dev/null ||
		die "could not stop the node in $DATA (pg_ctl stop -m $stop_mode)"
	;;
3) say "the node in $DATA is not running" ;;
*) die "pg_ctl status -D $DATA failed (exit $status_rc)" ;;
esac

# 2. Save the node's own configuration files.
SAVED=$(mktemp -d "${TMPDIR:-/tmp}/rejoin-standby.XXXXXX")
CONF_FILES=(postgresql.conf postgresql.auto.conf pg_hba.conf pg_ident.conf)
for f in "${CONF_FILES[@]}"; do
	if [[ -f $DATA/$f ]]; then
		cp -p "$DATA/$f" "$SAVED/$f" || die "could not save $DATA/$f in $SAVED"
	fi
done
say "saved the node's configuration files in $SAVED"

restore_conf() {
	local f
	for f in "${CONF_FILES[@]}"; do
		if [[ -f $SAVED/$f ]]; then
			cp -p "$SAVED/$f" "$DATA/$f" || return 1
		else
			rm -f "$DATA/$f"    # the node had none: keep none (pg_rewind copied the leader's)
		fi
	done
}

# 3. The leader's control file must show its current timeline: right after a promotion it
#    does so only after the first checkpoint on the new timeline.
say "running CHECKPOINT on the source"
if ! out=$(psql -X -q -v ON_ERROR_STOP=1 -d "$SOURCE" -c 'CHECKPOINT' 2>&1); then
	rm -rf "$SAVED"
	die "CHECKPOINT on the source failed (a superuser or a member of pg_checkpoint is needed): $out"
fi

# 4. Rewind.
say "pg_rewind --target-pgdata=$DATA --source-server=<SOURCE_CONNINFO>"
rewind_rc=0
pg_rewind --target-pgdata="$DATA" --source-server="$SOURCE" --progress || rewind_rc=$?
if ((rewind_rc != 0)); then
	if restore_conf; then
		say "restored the node's configuration files"
	else
		echo "$PROG: could not restore the configuration files; copies are in $SAVED" >&2
	fi
	die "pg_rewind failed (exit $rewind_rc): the data directory $DATA may be unusable" \
		"(take a new base backup of the leader)"
fi

# 5. Restore the node's own configuration, make it a standby.
restore_conf || die "could not restore the configuration files into $DATA; copies are in $SAVED"
rm -rf "$SAVED"
rm -f "$DATA/recovery.signal"
touch "$DATA/standby.signal" || die "could not create $DATA/standby.signal"
say "$DATA is now a standby (standby.signal); its primary_conninfo decides where it streams from"

# 6. Start it if asked.
if ((start == 1)); then
	say "starting the node"
	pg_ctl start -D "$DATA" -w -t 60 "${PG_CTL_OPTS[@]}" >/dev/null ||
		die "the node in $DATA did not start (see its log)"
	say "started"
else
	say "the node is stopped; start it with pg_ctl start -D $DATA"
fi
exit 0
