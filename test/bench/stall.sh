#!/usr/bin/env bash
# stall.sh — how long writes wait after a node is killed: the write stall a
# crash costs, which read leases (--read-lease) lengthen up to one lease.
#
# Starts NODES chordkv nodes on 127.0.0.1 (--replicas 3 and the default
# settings, plus SERVE_ARGS), writes KEYS keys, kills one node with SIGKILL,
# then overwrites every key at once, each with `chordkv put` through the
# surviving nodes, retried every 50 ms until it is acknowledged. Prints the
# three longest waits, from the kill to each key's acknowledgement, and how
# many keys waited over half a second (about the keys of the killed node's
# range, with leases on). Every process it starts is stopped on exit.
#
# Environment:
#   CHORDKV_BIN  binary to measure (default bin/chordkv)
#   BASE_PORT    first of NODES consecutive ports (default 8401)
#   NODES        ring size (default 5)
#   KEYS         keys written (default 40)
#   SERVE_ARGS   extra flags for every node, e.g. '--read-lease 0' (split on
#                spaces; default none)
#   SETTLE       seconds between the ring forming and the writes (default 4;
#                leases are taken within a second or two)
#   RETRY_LIMIT  seconds a key's put may be retried (default 30)
#   READS        1 (default): read every key once before the kill, so that
#                owners hold their leases as under a read load; 0: no reads,
#                the idle ring, whose leases have lapsed (--read-lease-idle)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"

BIN=${CHORDKV_BIN:-bin/chordkv}
BASE_PORT=${BASE_PORT:-8401}
NODES=${NODES:-5}
KEYS=${KEYS:-40}
SERVE_ARGS=${SERVE_ARGS:-}
SETTLE=${SETTLE:-4}
RETRY_LIMIT=${RETRY_LIMIT:-30}
READS=${READS:-1}
READY_WAIT=60
STOP_GRACE=10

NAME=stall
# shellcheck source=test/bench/lib.sh
. test/bench/lib.sh
bench_setup
((NODES >= 3)) || die "NODES must be at least 3 (r = 3)"

addr() { echo "127.0.0.1:$((BASE_PORT + $1))"; }
# shellcheck disable=SC2086 # SERVE_ARGS is split into flags on purpose
start_ring "$NODES" "$BASE_PORT" --replicas 3 $SERVE_ARGS
ring_whole() { [ "$("$BIN" ring --endpoints "$(addr 0)" --timeout 1s -o json | jq '.nodes | length')" = "$NODES" ]; }
until_ok "$READY_WAIT" "$NODES-node ring" ring_whole
sleep "$SETTLE"

victim=$((NODES / 2))
survivors=()
for i in $(seq 0 $((NODES - 1))); do ((i == victim)) || survivors+=("$(addr "$i")"); done
eps=$(IFS=,; echo "${survivors[*]}")
for k in $(seq 1 "$KEYS"); do
	"$BIN" put "stall-$k" before --endpoints "$eps" --timeout 3s >/dev/null || die "put stall-$k before the kill failed"
done
if [ "$READS" = 1 ]; then
	# Quorum reads reach each key's owner, which then takes its lease: the
	# stall of a ring serving reads, the longest there is.
	all=$(for i in $(seq 0 $((NODES - 1))); do addr "$i"; done | paste -sd,)
	for k in $(seq 1 "$KEYS"); do
		"$BIN" get "stall-$k" --endpoints "$all" --timeout 3s >/dev/null || die "get stall-$k before the kill failed"
	done
	sleep 1
fi

log "kill -9 of $(addr "$victim"); overwriting $KEYS keys through the $((NODES - 1)) others"
kill -KILL "${pids[victim]}"
killed=$(date +%s%N)
for k in $(seq 1 "$KEYS"); do
	(
		until "$BIN" put "stall-$k" after --endpoints "$eps" --timeout 3s >/dev/null 2>&1; do
			(($(date +%s%N) - killed < RETRY_LIMIT * 1000000000)) || {
				echo "stall-$k never"
				exit 0
			}
			sleep 0.05
		done
		echo "stall-$k $((($(date +%s%N) - killed) / 1000000))"
	) >"$tmp/took-$k" &
done
wait_puts() { for k in $(seq 1 "$KEYS"); do [ -s "$tmp/took-$k" ] || return 1; done; }
until_ok $((RETRY_LIMIT + 10)) "the puts" wait_puts
cat "$tmp"/took-* >"$tmp/took"
grep -q never "$tmp/took" && die "some keys were not acknowledged within ${RETRY_LIMIT}s: $(grep never "$tmp/took" | tr '\n' ' ')"
longest=$(sort -k2 -n -r "$tmp/took" | head -3 | awk '{printf "%s%.2f s", (NR > 1 ? ", " : ""), $2 / 1000}')
over=$(awk '$2 > 500' "$tmp/took" | wc -l)
echo "serve args '${SERVE_ARGS}', reads $READS: longest waits from the kill to an acknowledged put: $longest; $over of $KEYS keys waited over 0.5 s"
