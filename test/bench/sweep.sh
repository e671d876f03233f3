#!/usr/bin/env bash
# sweep.sh — `make plots`: the data behind the figures of docs/benchmarks.md,
# and the figures.
#
#   1. `chordkv sim -o json` at N = SIM_NODES (converged ring, no failures);
#   2. starts, on 127.0.0.1, the ceiling (test/bench/ceiling), a 1-node
#      chordkv and a 3-node ring with --replicas 3, and runs `chordkv bench
#      -o json` for get and put at every concurrency C of CONCURRENCIES with
#      min(C, 8) connections: --routing endpoint on the ceiling and the 1-node
#      chordkv (there is nothing to route), --routing client on the ring;
#   3. writes every report to DATA_DIR (sim-n<N>.json,
#      bench-<target>-<op>-c<C>.json) and runs test/bench/plot, which writes
#      hops_vs_n.png, throughput_vs_concurrency.png and p99_vs_concurrency.png
#      to IMG_DIR.
#
# The process handling is run.sh's: every process started here is stopped on
# exit, Ctrl-C included; every wait is bounded. Progress goes to standard
# error. Old bench-*.json and sim-n*.json in DATA_DIR are replaced.
#
# Environment:
#   CHORDKV_BIN     binary to measure (default bin/chordkv; `make plots` builds it)
#   BASE_PORT       first of 5 consecutive ports (default 7970)
#   POINT_DURATION  measurement per bench point (default 3s)
#   CONCURRENCIES   bench points (default "1 2 4 8 16 32 64 128")
#   KEYS            key space (default 2000: every get point preloads it,
#                   at C=1 one put at a time)
#   VALUE_SIZE      bytes per value (default 100)
#   SIM_NODES       ring sizes to simulate (default "64 256 1024 4096 16384")
#   SIM_LOOKUPS     lookups per simulated ring (default 100000)
#   SIM / BENCH     1 (default) runs that part, 0 keeps DATA_DIR's old files
#   DATA_DIR        where the JSON goes (default docs/data)
#   IMG_DIR         where the PNGs go (default docs/img)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"

BIN=${CHORDKV_BIN:-bin/chordkv}
BASE_PORT=${BASE_PORT:-7970}
POINT_DURATION=${POINT_DURATION:-3s}
CONCURRENCIES=${CONCURRENCIES:-1 2 4 8 16 32 64 128}
KEYS=${KEYS:-2000}
VALUE_SIZE=${VALUE_SIZE:-100}
SIM_NODES=${SIM_NODES:-64 256 1024 4096 16384}
SIM_LOOKUPS=${SIM_LOOKUPS:-100000}
SIM=${SIM:-1}
BENCH=${BENCH:-1}
DATA_DIR=${DATA_DIR:-docs/data}
IMG_DIR=${IMG_DIR:-docs/img}
HOST=127.0.0.1
READY_WAIT=60   # seconds for a server or ring to come up
STOP_GRACE=10   # seconds after SIGTERM before SIGKILL
BENCH_LIMIT=300 # seconds any one bench run (preload included) may take
SIM_LIMIT=600   # seconds any one simulation may take (16,384 nodes: about 30 s)

NAME=sweep
# shellcheck source=test/bench/lib.sh
. test/bench/lib.sh
bench_setup

mkdir -p "$DATA_DIR"
# Results are written to the temp dir first and moved into DATA_DIR only
# when a whole part succeeded, so a failed sweep never leaves a mix of old
# and new points behind.

log "building the plot program"
go build -o "$tmp/plot" ./test/bench/plot

if [ "$SIM" = 1 ]; then
	mkdir -p "$tmp/sim"
	for n in $SIM_NODES; do
		log "sim --nodes $n --lookups $SIM_LOOKUPS --seed 1"
		timeout "$SIM_LIMIT" "$BIN" sim --nodes "$n" --lookups "$SIM_LOOKUPS" --seed 1 -o json >"$tmp/sim/sim-n$n.json" ||
			die "sim at $n nodes failed or took over ${SIM_LIMIT}s"
	done
	rm -f "$DATA_DIR"/sim-n*.json
	mv "$tmp"/sim/*.json "$DATA_DIR"/
fi

if [ "$BENCH" = 1 ]; then
	port() { echo "$HOST:$((BASE_PORT + $1))"; }
	ceiling=$(port 0)
	single=$(port 1)
	ring=("$(port 2)" "$(port 3)" "$(port 4)")

	start_targets
	wait_targets

	mkdir -p "$tmp/bench"
	# target name, endpoints, routing
	targets=("ceiling $ceiling endpoint" "single $single endpoint" "ring3 $(IFS=,; echo "${ring[*]}") client")
	for spec in "${targets[@]}"; do
		read -r t eps routing <<<"$spec"
		for op in get put; do
			for c in $CONCURRENCIES; do
				k=$((c < 8 ? c : 8))
				log "$t $op concurrency $c connections $k routing $routing for $POINT_DURATION"
				out=$tmp/bench/bench-$t-$op-c$c.json
				timeout "$BENCH_LIMIT" "$BIN" bench --endpoints "$eps" --op "$op" \
					--concurrency "$c" --connections "$k" --duration "$POINT_DURATION" \
					--keys "$KEYS" --value-size "$VALUE_SIZE" --routing "$routing" -o json >"$out" 2>"$tmp/bench.err" ||
					die "bench $t $op at $c failed: $(tail -n 3 "$tmp/bench.err")"
			done
		done
	done
	rm -f "$DATA_DIR"/bench-*.json
	mv "$tmp"/bench/*.json "$DATA_DIR"/
	# Provenance of the points: what was measured, where, when.
	jq -n --arg date "$(date -u '+%Y-%m-%dT%H:%M:%SZ')" \
		--arg commit "$(git describe --tags --always --dirty 2>/dev/null || echo unknown)" \
		--arg binary "$("$BIN" version 2>/dev/null || echo unknown)" \
		--arg cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" \
		--argjson cores "$(nproc)" --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
		--arg duration "$POINT_DURATION" --argjson keys "$KEYS" --argjson value_size "$VALUE_SIZE" \
		'{date: $date, commit: $commit, binary: $binary, cpu: $cpu, cores: $cores,
		  load_average_after: $load, point_duration: $duration, keys: $keys, value_size: $value_size}' \
		>"$DATA_DIR/sweep-meta.json"
fi

log "plotting into $IMG_DIR"
"$tmp/plot" --data "$DATA_DIR" --out "$IMG_DIR"
