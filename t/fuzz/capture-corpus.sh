#!/usr/bin/env bash
# Captures the seed corpus of the fuzz target (t/fuzz/etcd_answers.c) from a real
# etcd: starts a throwaway single-member etcd on loopback, sends it the requests
# src/etcd_api.c builds (same paths, same bodies: keys and values base64, 64-bit
# integers as strings) and stores each answer, prefixed with the selector byte
# that feeds it to the parser of that call, in t/fuzz/corpus/.
#
#   bash t/fuzz/capture-corpus.sh [client port] [peer port]
#
# Not run by `make test`: the corpus is committed.  Run it again (any user) when
# the extension starts making a new call, and add the new parser to the harness.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$HERE/corpus
CPORT=${1:-23970}
PPORT=${2:-23980}
URL=http://127.0.0.1:$CPORT
PREFIX=/leader_election/tap
WORK=$(mktemp -d /tmp/le-fuzz-capture.XXXXXX)
trap 'kill "$ETCD_PID" 2>/dev/null || true; wait "$ETCD_PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT

# Selector bytes: the low nibble chooses the parser, the high nibble the HTTP
# status (see the table in etcd_answers.c; 0 is 200).  Keep them in step.
P_GRANT=0 P_KEEPALIVE=1 P_CAMPAIGN=2 P_RANGE=3 P_READ_ELECTION=4 P_READ_KEY_AT=5
P_TXN=6 P_RESULT_OK=7 P_WATCH=8 P_WATCH_BYTE=9 P_WATCH_SMALL=10 P_WATCH_LARGE=11
P_TERM_VALUE=12 P_RECORD_VALUE=13
declare -A STATUS_NIBBLE=([200]=0 [400]=1 [401]=2 [403]=3 [404]=4 [412]=5 [429]=6
	[500]=7 [503]=8 [504]=9)

etcd --name capture --data-dir "$WORK/etcd" \
	--listen-client-urls "$URL" --advertise-client-urls "$URL" \
	--listen-peer-urls "http://127.0.0.1:$PPORT" \
	--initial-advertise-peer-urls "http://127.0.0.1:$PPORT" \
	--initial-cluster "capture=http://127.0.0.1:$PPORT" \
	--log-level error >"$WORK/etcd.log" 2>&1 &
ETCD_PID=$!
for _ in $(seq 100); do
	curl -sf "$URL/health" >/dev/null 2>&1 && break
	sleep 0.1
done
curl -sf "$URL/health" >/dev/null || { cat "$WORK/etcd.log"; exit 1; }

rm -rf "$OUT"
mkdir -p "$OUT"

b64() { printf '%s' "$1" | base64 -w0; }

# post NAME PARSER PATH BODY: stores the answer with its selector byte.
post() {
	local name=$1 parser=$2 path=$3 body=$4 status
	status=$(curl -s -o "$WORK/answer" -w '%{http_code}' -X POST \
		-H 'Content-Type: application/json' -d "$body" "$URL$path")
	[[ -n ${STATUS_NIBBLE[$status]:-} ]] || { echo "unexpected HTTP $status for $name" >&2; exit 1; }
	store "$name" "$parser" "${STATUS_NIBBLE[$status]}" "$WORK/answer"
	cp "$WORK/answer" "$WORK/last"
}

store() {
	local name=$1 parser=$2 nibble=$3 file=$4
	{ printf "\\x$(printf '%02x' $((nibble * 16 + parser)))"; cat "$file"; } >"$OUT/$name"
	printf '  %-28s HTTP nibble %x, %5d bytes: %.90s\n' "$name" "$nibble" \
		"$(stat -c %s "$file")" "$(tr -d '\n' <"$file")"
}

# the same answer, fed to another parser too (an answer of the wrong kind)
also() { store "$1" "$2" 0 "$WORK/last"; }

range_json() {	# the candidates' range, as candidates_range() builds it
	local extra=${1:-}
	printf '{"key":"%s","range_end":"%s","sort_order":"ASCEND","sort_target":"CREATE"%s}' \
		"$(b64 "$PREFIX/")" "$(b64 "${PREFIX}0")" "$extra"
}
reads_json() {	# add_election_reads()
	printf '{"request_range":%s},{"request_range":{"key":"%s"}},{"request_range":{"key":"%s"}},{"request_range":{"key":"%s"}}' \
		"$(range_json)" "$(b64 "$PREFIX.cluster")" "$(b64 "$PREFIX.term")" "$(b64 "$PREFIX.leader")"
}
delete_if_lease_json() {	# delete_if_lease(): the leader key, if on lease $1
	printf '{"compare":[{"key":"%s","target":"LEASE","result":"EQUAL","lease":"%s"}],"success":[{"request_delete_range":{"key":"%s"}}]}' \
		"$(b64 "$PREFIX.leader")" "$1" "$(b64 "$PREFIX.leader")"
}
first_compares() {	# add_first_in_line_compares()
	local key=$1 rev=$2
	printf '{"key":"%s","target":"CREATE","result":"EQUAL","create_revision":"%s"},' "$(b64 "$key")" "$rev"
	printf '{"key":"%s","range_end":"%s","target":"CREATE","result":"GREATER","create_revision":"%s"}' \
		"$(b64 "$PREFIX/")" "$(b64 "${PREFIX}0")" "$((rev - 1))"
}

echo "answers of etcd $(etcd --version | head -1 | awk '{print $3}') at $URL:"

# leases (long enough for the whole capture, even on a loaded machine: the
# queue's keys live on them)
post grant-ttl60 $P_GRANT /v3/lease/grant '{"TTL":"60"}'
LEASE1=$(sed -E 's/.*"ID":"([0-9]+)".*/\1/' "$WORK/last")
also grant-as-keepalive $P_KEEPALIVE
post grant-ttl0 $P_GRANT /v3/lease/grant '{"TTL":"0"}'
post grant-ttl-negative $P_GRANT /v3/lease/grant '{"TTL":"-3"}'
post grant-2 $P_GRANT /v3/lease/grant '{"TTL":"60"}'
LEASE2=$(sed -E 's/.*"ID":"([0-9]+)".*/\1/' "$WORK/last")
post grant-id-taken $P_GRANT /v3/lease/grant "{\"TTL\":\"5\",\"ID\":\"$LEASE1\"}"
post keepalive $P_KEEPALIVE /v3/lease/keepalive "{\"ID\":\"$LEASE1\"}"
also keepalive-as-grant $P_GRANT
post keepalive-unknown $P_KEEPALIVE /v3/lease/keepalive '{"ID":"12345"}'
post revoke-unknown $P_RESULT_OK /v3/lease/revoke '{"ID":"12345"}'
post not-json $P_GRANT /v3/lease/grant '{"TTL":'
post wrong-type $P_GRANT /v3/lease/grant '{"TTL":{}}'

HEX1=$(printf '%x' "$LEASE1") HEX2=$(printf '%x' "$LEASE2")
KEY1=$PREFIX/$HEX1 KEY2=$PREFIX/$HEX2

# etcd_campaign(): created, then the same again (the key exists)
campaign() {
	printf '{"compare":[{"key":"%s","target":"CREATE","result":"EQUAL","create_revision":"0"}],' "$(b64 "$1")"
	printf '"success":[{"request_put":{"key":"%s","value":"%s","lease":"%s"}}],' "$(b64 "$1")" "$(b64 "$2")" "$3"
	printf '"failure":[{"request_range":{"key":"%s"}}]}' "$(b64 "$1")"
}
post range-empty $P_RANGE /v3/kv/range "$(range_json)"
post read-election-empty $P_READ_ELECTION /v3/kv/txn "{\"success\":[$(reads_json)]}"
post campaign-created $P_CAMPAIGN /v3/kv/txn "$(campaign "$KEY1" node1 "$LEASE1")"
REV1=$(sed -E 's/.*"revision":"([0-9]+)".*/\1/' "$WORK/last")
also campaign-as-txn $P_TXN
post campaign-existing $P_CAMPAIGN /v3/kv/txn "$(campaign "$KEY1" node1 "$LEASE1")"
also campaign-existing-as-read $P_READ_ELECTION
post campaign-second $P_CAMPAIGN /v3/kv/txn "$(campaign "$KEY2" 'node 2 \u00e9' "$LEASE2")"
post campaign-no-lease $P_CAMPAIGN /v3/kv/txn "$(campaign "$PREFIX/abc" node3 99999)"

post range-two $P_RANGE /v3/kv/range "$(range_json)"
post range-max-revision $P_RANGE /v3/kv/range "$(range_json ",\"max_create_revision\":\"$REV1\"")"
post read-election-queue $P_READ_ELECTION /v3/kv/txn "{\"success\":[$(reads_json)]}"

# the values the extension writes (term_record_encode(), cluster_record_encode()),
# also on their own: the parsers of the values read
term_json='{"key":"'"$KEY1"'","revision":"'"$REV1"'","node":"node1","ttl":5}'
released_json='{"key":"'"$KEY1"'","revision":"'"$REV1"'","node":"node1","ttl":5,"released":true}'
record_json='{"system_identifier":"7312345678901234567","timeline":1,"node":"node1","wal_end":"0/3000148"}'
stopping_json='{"system_identifier":"7312345678901234567","timeline":2,"node":"node1","wal_end":"0/3000220","stopping":true,"successor":"node 2"}'
printf '%s' "$term_json" >"$WORK/v" && store value-term $P_TERM_VALUE 3 "$WORK/v"
printf '%s' "$released_json" >"$WORK/v" && store value-term-released $P_TERM_VALUE 3 "$WORK/v"
printf '%s' "$record_json" >"$WORK/v" && store value-record $P_RECORD_VALUE 0 "$WORK/v"
printf '%s' "$stopping_json" >"$WORK/v" && store value-record-stopping $P_RECORD_VALUE 0 "$WORK/v"
term=$(b64 "$term_json")

# etcd_confirm_term(): first in line (writes the term), then with a stale term revision
confirm() {
	local key=$1 rev=$2 written_at=${3:-}
	printf '{"compare":[%s' "$(first_compares "$key" "$rev")"
	[[ -n $written_at ]] && printf ',{"key":"%s","target":"MOD","result":"EQUAL","mod_revision":"%s"}' \
		"$(b64 "$PREFIX.term")" "$written_at"
	printf '],"success":[{"request_put":{"key":"%s","value":"%s"}},%s],' "$(b64 "$PREFIX.term")" "$term" "$(reads_json)"
	printf '"failure":[%s]}' "$(reads_json)"
}
post confirm-term $P_READ_ELECTION /v3/kv/txn "$(confirm "$KEY1" "$REV1")"
TERMREV=$(sed -E 's/^\{"header":\{[^}]*"revision":"([0-9]+)".*/\1/' "$WORK/last")
post confirm-term-again $P_READ_ELECTION /v3/kv/txn "$(confirm "$KEY1" "$REV1" "$TERMREV")"
post confirm-term-stale $P_READ_ELECTION /v3/kv/txn "$(confirm "$KEY1" "$REV1" 1)"
post confirm-term-not-first $P_READ_ELECTION /v3/kv/txn "$(confirm "$KEY2" $((REV1 + 1)))"
also confirm-term-as-txn $P_TXN

# etcd_put_if_first(): the cluster record
record=$(b64 "$record_json")
post put-if-first $P_TXN /v3/kv/txn "{\"compare\":[$(first_compares "$KEY1" "$REV1")],\"success\":[{\"request_put\":{\"key\":\"$(b64 "$PREFIX.cluster")\",\"value\":\"$record\"}}]}"
also put-if-first-as-campaign $P_CAMPAIGN
# etcd_put_if_first() of the leader key, on the leader's lease (leader_key.c)
post put-leader-key $P_TXN /v3/kv/txn "{\"compare\":[$(first_compares "$KEY1" "$REV1")],\"success\":[{\"request_put\":{\"key\":\"$(b64 "$PREFIX.leader")\",\"value\":\"$(b64 node1)\",\"lease\":\"$LEASE1\"}}]}"
post put-if-not-first $P_TXN /v3/kv/txn "{\"compare\":[$(first_compares "$KEY2" $((REV1 + 1)))],\"success\":[{\"request_put\":{\"key\":\"$(b64 "$PREFIX.cluster")\",\"value\":\"$record\"}}]}"
post read-election-full $P_READ_ELECTION /v3/kv/txn "{\"success\":[$(reads_json)]}"
also read-election-full-as-range $P_RANGE

# a watch of the first key, from its creation: created, the history, then live events
(curl -s -N -m 3 -X POST -d "{\"create_request\":{\"key\":\"$(b64 "$KEY1")\",\"start_revision\":\"$REV1\"}}" \
	"$URL/v3/watch" >"$WORK/watch-key1") &
WATCH1=$!
(curl -s -N -m 3 -X POST -d "{\"create_request\":{\"key\":\"$(b64 "$PREFIX.term")\",\"start_revision\":\"$((REV1 + 1))\"}}" \
	"$URL/v3/watch" >"$WORK/watch-term") &
WATCH2=$!
sleep 0.5
post confirm-term-2 $P_READ_ELECTION /v3/kv/txn "$(confirm "$KEY1" "$REV1")"

# etcd_read_key_at(): before and at the revision of the release below
release_rev=$(( $(sed -E 's/^\{"header":\{[^}]*"revision":"([0-9]+)".*/\1/' "$WORK/last") + 1 ))
# etcd_release(): the leader's key goes, with the term and the record
term=$(b64 "$released_json") record=$(b64 "$stopping_json")
post release $P_TXN /v3/kv/txn "{\"compare\":[{\"key\":\"$(b64 "$KEY1")\",\"target\":\"CREATE\",\"result\":\"EQUAL\",\"create_revision\":\"$REV1\"},{\"key\":\"$(b64 "$KEY2")\",\"target\":\"CREATE\",\"result\":\"EQUAL\",\"create_revision\":\"$((REV1 + 1))\"}],\"success\":[{\"request_put\":{\"key\":\"$(b64 "$PREFIX.term")\",\"value\":\"$term\"}},{\"request_put\":{\"key\":\"$(b64 "$PREFIX.cluster")\",\"value\":\"$record\"}},{\"request_delete_range\":{\"key\":\"$(b64 "$KEY1")\"}},{\"request_txn\":$(delete_if_lease_json "$LEASE1")}]}"
also release-as-read-election $P_READ_ELECTION
key_at() {
	printf '{"success":[{"request_range":{"key":"%s","revision":"%s"}},{"request_range":{"key":"%s","revision":"%s"}}]}' \
		"$(b64 "$1")" "$(($2 - 1))" "$(b64 "$1")" "$2"
}
post read-key-at $P_READ_KEY_AT /v3/kv/txn "$(key_at "$KEY1" "$release_rev")"
post read-key-at-before $P_READ_KEY_AT /v3/kv/txn "$(key_at "$KEY1" "$((release_rev - 1))")"
post read-key-at-future $P_READ_KEY_AT /v3/kv/txn "$(key_at "$KEY1" 100000)"
post read-election-released $P_READ_ELECTION /v3/kv/txn "{\"success\":[$(reads_json)]}"
# etcd_delete_if_lease(): a lapsed leader's key, which the release took already
post delete-if-lease $P_TXN /v3/kv/txn "$(delete_if_lease_json "$LEASE1")"
post revoke $P_RESULT_OK /v3/lease/revoke "{\"ID\":\"$LEASE2\"}"
wait "$WATCH1" "$WATCH2" || true
store watch-key1 $P_WATCH 0 "$WORK/watch-key1"
store watch-key1-bytewise $P_WATCH_BYTE 0 "$WORK/watch-key1"
store watch-term $P_WATCH_SMALL 0 "$WORK/watch-term"
store watch-term-large $P_WATCH_LARGE 0 "$WORK/watch-term"

# compaction: a read and a watch of a compacted revision
post compact 7 /v3/kv/compaction "{\"revision\":\"$release_rev\",\"physical\":true}"
rm "$OUT/compact"
post read-key-at-compacted $P_READ_KEY_AT /v3/kv/txn "$(key_at "$KEY1" 3)"
post range-compacted $P_RANGE /v3/kv/range "$(range_json ',"revision":"2"')"
curl -s -N -m 1 -X POST -d "{\"create_request\":{\"key\":\"$(b64 "$KEY1")\",\"start_revision\":\"2\"}}" \
	"$URL/v3/watch" >"$WORK/watch-compacted" || true
store watch-compacted $P_WATCH 0 "$WORK/watch-compacted"
# a watch request that etcd refuses as a whole
curl -s -o "$WORK/watch-refused" -m 1 -X POST -d '{"create_request":' "$URL/v3/watch" || true
store watch-refused $P_WATCH "${STATUS_NIBBLE[400]}" "$WORK/watch-refused"

# errors: a txn too large, a range of an impossible request, an unknown path
ops=$(for i in $(seq 130); do printf '{"request_range":{"key":"%s"}},' "$(b64 "k$i")"; done)
post txn-too-many-ops $P_TXN /v3/kv/txn "{\"success\":[${ops%,}]}"
post range-bad-key $P_RANGE /v3/kv/range '{"key":"!!"}'
post txn-duplicate-put $P_CAMPAIGN /v3/kv/txn "{\"success\":[{\"request_put\":{\"key\":\"$(b64 k)\",\"value\":\"\"}},{\"request_put\":{\"key\":\"$(b64 k)\",\"value\":\"\"}}]}"
echo "$(ls "$OUT" | wc -l) answers in $OUT"
