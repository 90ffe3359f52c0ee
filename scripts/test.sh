#!/usr/bin/env bash
# `make test` (and so CI): install packages, build and install as root, then, as an
# unprivileged user in a copy of the tree, run pg_regress against a throwaway etcd on
# 127.0.0.1:23790 and the TAP tests (which start their own etcd servers). Exits non-zero if
# anything fails, after printing regression.diffs and the TAP logs.
set -euo pipefail
source "$(dirname "$0")/cluster-lib.sh"

if [[ ${LE_STAGE:-} != user ]]; then
	le_heading "install dependencies, build, install"
	le_prepare test
	le_run_user scripts/test.sh
	exit 0
fi

# Bounds, so that a hanging test fails the run instead of eating CI's time.
REGRESS_TIMEOUT=${LE_REGRESS_TIMEOUT:-180}
TAP_TIMEOUT=${LE_TAP_TIMEOUT:-1800}
FUZZ_TIMEOUT=$((${LE_FUZZ_SECONDS:-15} + 300))	# its build included
trap le_cleanup EXIT

le_heading "etcd for pg_regress on 127.0.0.1:23790"
le_etcd_start 23790 23800
echo "etcd is healthy"

# pg_regress and the TAP tests run as two make invocations, so a failure in the first still
# lets the second run and report.
le_heading "pg_regress (make installcheck, REGRESS part)"
regress_rc=0
timeout "$REGRESS_TIMEOUT" make PG_CONFIG="$PG_CONFIG" installcheck TAP_TESTS= 2>&1 |
	tee "$LE_WORK/regress.out" || regress_rc=$?

# The fuzz target for the parsing of etcd's answers (t/fuzz), briefly: it needs no server,
# and it fails the run if it finds a crash, a sanitizer report, a leak or an ereport(ERROR).
# `make fuzz` alone runs it longer (FUZZ_SECONDS, default 60).
le_heading "fuzz: the parsing of etcd answers (make fuzz FUZZ_SECONDS=${LE_FUZZ_SECONDS:-15})"
fuzz_rc=0
timeout "$FUZZ_TIMEOUT" make PG_CONFIG="$PG_CONFIG" fuzz FUZZ_SECONDS="${LE_FUZZ_SECONDS:-15}" 2>&1 |
	tee "$LE_WORK/fuzz.out" || fuzz_rc=$?
((fuzz_rc != 124)) || echo "the fuzz target was stopped after ${FUZZ_TIMEOUT} s"

# Three TAP files at a time: most of their time is spent waiting for leases
# and replication (the files assert behaviour with generous bounds, not
# timing), and each starts its own etcd and nodes on free ports.  The
# longest files go first, so that the slots end together; --timer shows
# what each took.
le_heading "TAP tests (make installcheck, t/*.pl, three at a time)"
tap_rc=0
slow_first="t/054_sync_mode.pl t/009_endpoints.pl t/040_attack_mixed_ttl.pl t/006_hostile_etcd.pl t/091_attack_etcd_auth.pl"
tap_tests="$slow_first $(ls t/*.pl | grep -v -x -F "$(echo "$slow_first" | tr ' ' '\n')" | tr '\n' ' ')"
timeout "$TAP_TIMEOUT" make PG_CONFIG="$PG_CONFIG" installcheck REGRESS= \
	PROVE_FLAGS="-j3 --timer" PROVE_TESTS="$tap_tests" 2>&1 |
	tee "$LE_WORK/tap.out" || tap_rc=$?

le_etcd_stop

if ((regress_rc != 0)); then
	le_heading "pg_regress failed (exit $regress_rc)"
	for f in regression.diffs regression.out; do
		[[ -f $f ]] && { echo "--- $f"; cat "$f"; }
	done
	((regress_rc == 124)) && echo "pg_regress was stopped after ${REGRESS_TIMEOUT} s"
fi
if ((tap_rc != 0)); then
	le_heading "TAP tests failed (exit $tap_rc): logs from tmp_check/log"
	# The logs of the scripts that prove reports as failed; all logs if it named none.
	mapfile -t failed < <(sed -nE 's|^t/([^ ]+)\.pl +\(Wstat:.*|\1|p' "$LE_WORK/tap.out")
	logs=()
	for name in "${failed[@]}"; do logs+=(tmp_check/log/*"$name"*); done
	((${#failed[@]} > 0)) || logs=(tmp_check/log/*)
	for f in "${logs[@]}"; do
		[[ -f $f ]] || continue
		echo "--- $f (last 400 lines)"
		tail -n 400 "$f"
	done
	((tap_rc == 124)) && echo "the TAP tests were stopped after ${TAP_TIMEOUT} s"
fi

# Counted per pg_regress test and per TAP script. A suite that failed without saying which
# test failed (a crash, a timeout) counts as one failure.
regress_pass=0 regress_fail=0
if line=$(grep -E '^ *All [0-9]+ tests passed' "$LE_WORK/regress.out"); then
	regress_pass=$(grep -oE '[0-9]+' <<<"$line" | head -1)
elif line=$(grep -E '^ *[0-9]+ of [0-9]+ tests failed' "$LE_WORK/regress.out"); then
	read -r regress_fail _ total _ <<<"$line"
	regress_pass=$((total - regress_fail))
fi
((regress_rc == 0 || regress_fail > 0)) || regress_fail=1

# prove prints "[HH:MM:SS] t/NAME.pl .. ok  N ms" per passing script (--timer) and lists
# failing ones with "(Wstat:".
tap_pass=$(grep -cE '^(\[[0-9:]+\] )?t/[^ ]+\.pl \.+ ok' "$LE_WORK/tap.out" || true)
tap_fail=$(grep -cE '^t/[^ ]+\.pl +\(Wstat:' "$LE_WORK/tap.out" || true)
((tap_rc == 0 || tap_fail > 0)) || tap_fail=1

# The fuzz run counts as one test.
fuzz_pass=$((fuzz_rc == 0 ? 1 : 0)) fuzz_fail=$((fuzz_rc == 0 ? 0 : 1))

le_heading "Summary"
printf '  pg_regress (sql/):  %s  (%d passed, %d failed)\n' \
	"$( ((regress_rc == 0)) && echo PASS || echo FAIL)" "$regress_pass" "$regress_fail"
printf '  fuzz (t/fuzz/):     %s  (%s)\n' "$( ((fuzz_rc == 0)) && echo PASS || echo FAIL)" \
	"$(grep -oE '^  Done [0-9]+ runs in [0-9]+ second\(s\)' "$LE_WORK/fuzz.out" | sed 's/^  //' ||
		echo "exit $fuzz_rc")"
printf '  TAP tests (t/):     %s  (%d passed, %d failed)\n' \
	"$( ((tap_rc == 0)) && echo PASS || echo FAIL)" "$tap_pass" "$tap_fail"
echo "leader_election: $((regress_pass + fuzz_pass + tap_pass)) passed," \
	"$((regress_fail + fuzz_fail + tap_fail)) failed"
((regress_rc == 0 && fuzz_rc == 0 && tap_rc == 0))
