#!/usr/bin/env bash
# rest.sh — a ring at rest: the RSS and CPU of each node with no traffic.
#
# Starts NODES chordkv nodes on 127.0.0.1 (a ring with the default
# settings), waits SETTLE seconds for it to form, then reads each process's
# CPU time (utime+stime from /proc/PID/stat) at the start and end of a
# WINDOW-second window and its VmRSS at the end, and prints one line per
# node and a summary. Every process it starts is stopped on exit, Ctrl-C
# included.
#
# Environment:
#   CHORDKV_BIN  binary to measure (default bin/chordkv)
#   BASE_PORT    first of NODES consecutive ports (default 8301)
#   NODES        ring size (default 8)
#   SETTLE       seconds before measuring (default 30)
#   WINDOW       seconds measured (default 60)
#   SERVE_ARGS   extra flags for every node, e.g. '--read-lease 0' (split on
#                spaces; default none)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"

BIN=${CHORDKV_BIN:-bin/chordkv}
BASE_PORT=${BASE_PORT:-8301}
NODES=${NODES:-8}
SETTLE=${SETTLE:-30}
WINDOW=${WINDOW:-60}
SERVE_ARGS=${SERVE_ARGS:-}
STOP_GRACE=10

NAME=rest
# shellcheck source=test/bench/lib.sh
. test/bench/lib.sh
bench_setup

# shellcheck disable=SC2086 # SERVE_ARGS is split into flags on purpose
start_ring "$NODES" "$BASE_PORT" $SERVE_ARGS

log "$NODES nodes started; measuring for ${WINDOW}s after ${SETTLE}s"
sleep "$SETTLE"
members=$("$BIN" ring --endpoints "127.0.0.1:$BASE_PORT" --timeout 2s -o json | jq '.nodes | length')
[ "$members" = "$NODES" ] || die "the ring has $members of $NODES nodes after ${SETTLE}s; logs in $tmp"

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
declare -A start
for pid in "${pids[@]}"; do start[$pid]=$(ticks "$pid"); done
sleep "$WINDOW"
hz=$(getconf CLK_TCK)
for pid in "${pids[@]}"; do
	cpu=$(ticks "$pid")
	rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
	awk -v t="$((cpu - start[$pid]))" -v hz="$hz" -v w="$WINDOW" -v rss="$rss" -v pid="$pid" \
		'BEGIN { printf "node pid %d: cpu %.2f%% of a core, rss %.1f MiB\n", pid, 100 * t / hz / w, rss / 1024 }'
done | tee "$tmp/report"
awk '{ cpu += $5; rss += $10; if ($5 > maxcpu) maxcpu = $5; if ($10 > maxrss) maxrss = $10; n++ }
	END { printf "mean cpu %.2f%% (max %.2f%%), mean rss %.1f MiB (max %.1f MiB) over %d nodes\n", cpu / n, maxcpu, rss / n, maxrss, n }' "$tmp/report"
