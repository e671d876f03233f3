#!/usr/bin/env bash
# run.sh — `make bench`: client-visible throughput of chordkv against the gRPC
# ceiling, on this machine.
#
# Starts, on 127.0.0.1:
#   - the ceiling server (test/bench/ceiling: bare gRPC, Get/Put on a map),
#   - a 1-node chordkv (data in a temp dir),
#   - a 3-node chordkv ring with --replicas 3,
# then runs `chordkv bench -o json` for get and put, at concurrency 1 (1
# connection) and 64 (8 connections), against each with --routing endpoint,
# and against the ring also with --routing client at 64/8, and prints a
# markdown report to standard output, with chordkv/ceiling and
# client/endpoint ratios; then, on the ring at 64/8 with client routing,
# --batch $BATCH (MultiGet/MultiPut, one RPC per owner) against unbatched.
# Progress and the
# nodes' log locations go to standard error. Every process it starts is
# stopped on exit, Ctrl-C included; every wait is bounded.
#
# Environment:
#   CHORDKV_BIN  binary to measure (default bin/chordkv; `make bench` builds it)
#   BASE_PORT    first of 5 consecutive ports (default 7950)
#   DURATION     measurement per run (default 5s)
#   KEYS         key space (default 10000)
#   VALUE_SIZE   bytes per value (default 100)
#   BATCH        keys per call of the batched runs (default 16)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"

BIN=${CHORDKV_BIN:-bin/chordkv}
BASE_PORT=${BASE_PORT:-7950}
DURATION=${DURATION:-5s}
KEYS=${KEYS:-10000}
VALUE_SIZE=${VALUE_SIZE:-100}
BATCH=${BATCH:-16}
HOST=127.0.0.1
READY_WAIT=60   # seconds for a server or ring to come up
STOP_GRACE=10   # seconds after SIGTERM before SIGKILL
BENCH_LIMIT=300 # seconds any one bench run (preload included) may take

die() {
	printf 'bench: %s\n' "$*" >&2
	exit 1
}
log() { printf 'bench: %s\n' "$*" >&2; }

[ -x "$BIN" ] || die "no executable at $BIN; run 'make build' first"
command -v jq >/dev/null || die "jq is needed to read the JSON reports"
# Clients started here must not pick up a user's CHORDKV_* settings.
while IFS= read -r var; do unset "$var"; done < <(compgen -e | grep '^CHORDKV_' || true)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/chordkv-bench.XXXXXX")
pids=()

# stop_all: SIGTERM everything started here, SIGKILL what is still alive
# after STOP_GRACE seconds, then remove the temp dir.
stop_all() {
	trap '' INT TERM
	local pid alive deadline=$((SECONDS + STOP_GRACE))
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	while ((SECONDS < deadline)); do
		alive=0
		for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
		((alive)) || break
		sleep 0.2
	done
	for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done # all dead: returns at once
	rm -rf "$tmp"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

port() { echo "$HOST:$((BASE_PORT + $1))"; }
ceiling=$(port 0)
single=$(port 1)
ring=("$(port 2)" "$(port 3)" "$(port 4)")

log "building the ceiling server"
go build -o "$tmp/ceiling" ./test/bench/ceiling

start() { # start NAME CMD...: run in the background, log to $tmp/NAME.log
	local name=$1
	shift
	"$@" >"$tmp/$name.log" 2>&1 &
	pids+=($!)
}

start ceiling "$tmp/ceiling" --addr "$ceiling"
start single "$BIN" serve --addr "$single" --data-dir "$tmp/single"
start ring1 "$BIN" serve --addr "${ring[0]}" --data-dir "$tmp/ring1" --replicas 3
for i in 1 2; do
	start "ring$((i + 1))" "$BIN" serve --addr "${ring[i]}" --data-dir "$tmp/ring$((i + 1))" --replicas 3 --join "${ring[0]}"
done

# until SECONDS WHAT CMD...: retry CMD every 0.2 s for at most SECONDS.
until_ok() {
	local limit=$1 what=$2 deadline
	shift 2
	deadline=$((SECONDS + limit))
	until "$@" >/dev/null 2>&1; do
		((SECONDS < deadline)) || die "$what not ready within ${limit}s; logs in $tmp"
		sleep 0.2
	done
}

ring_has_3() {
	local a
	for a in "${ring[@]}"; do
		[ "$("$BIN" ring --endpoints "$a" --timeout 1s -o json | jq '.nodes | length')" = 3 ] || return 1
		"$BIN" put bench-probe x --endpoints "$a" --timeout 1s --consistency all || return 1
	done
}

log "waiting for the servers"
until_ok "$READY_WAIT" "ceiling" "$BIN" put bench-probe x --endpoints "$ceiling" --timeout 1s
until_ok "$READY_WAIT" "1-node chordkv" "$BIN" put bench-probe x --endpoints "$single" --timeout 1s --consistency all
until_ok "$READY_WAIT" "3-node ring" ring_has_3

endpoints_of() {
	case $1 in
	ceiling) echo "$ceiling" ;;
	single) echo "$single" ;;
	ring3) (IFS=,; echo "${ring[*]}") ;;
	esac
}

targets=(ceiling single ring3)
ops=(get put)
loads=("1 1" "64 8") # concurrency connections

for t in "${targets[@]}"; do
	for op in "${ops[@]}"; do
		for load in "${loads[@]}"; do
			read -r c k <<<"$load"
			log "$t $op concurrency $c connections $k for $DURATION"
			timeout "$BENCH_LIMIT" "$BIN" bench --endpoints "$(endpoints_of "$t")" --op "$op" \
				--concurrency "$c" --connections "$k" --duration "$DURATION" \
				--keys "$KEYS" --value-size "$VALUE_SIZE" --routing endpoint -o json >"$tmp/$t-$op-$c.json"
		done
	done
done

# Client-side routing on the ring at 64/8; the endpoint-routed runs above
# are its baseline.
for op in "${ops[@]}"; do
	log "ring3 $op concurrency 64 connections 8, client routing, for $DURATION"
	timeout "$BENCH_LIMIT" "$BIN" bench --endpoints "$(endpoints_of ring3)" --op "$op" \
		--concurrency 64 --connections 8 --duration "$DURATION" \
		--keys "$KEYS" --value-size "$VALUE_SIZE" --routing client -o json >"$tmp/ring3client-$op-64.json"
done

# Batching on the ring at 64/8 with client routing; the client-routed
# runs above are its baseline.
for op in "${ops[@]}"; do
	log "ring3 $op concurrency 64 connections 8, client routing, --batch $BATCH, for $DURATION"
	timeout "$BENCH_LIMIT" "$BIN" bench --endpoints "$(endpoints_of ring3)" --op "$op" \
		--concurrency 64 --connections 8 --duration "$DURATION" --batch "$BATCH" \
		--keys "$KEYS" --value-size "$VALUE_SIZE" --routing client -o json >"$tmp/ring3batch-$op-64.json"
done

# field TARGET OP C JQ-EXPR
field() { jq -r "$4" "$tmp/$1-$2-$3.json"; }
fmt_ops() { field "$@" '.ops_per_sec | floor'; }
fmt_lat() { field "$@" '"\(.p50_ms) / \(.p99_ms) / \(.p999_ms)"'; }
ratio() { # ratio TARGET OP C [BASE]: ops/s of TARGET over BASE's (default the ceiling's)
	jq -rn --slurpfile a "$tmp/$1-$2-$3.json" --slurpfile b "$tmp/${4:-ceiling}-$2-$3.json" \
		'($a[0].ops_per_sec / $b[0].ops_per_sec * 100 | round / 100)'
}
fmt_fwd() { field "$@" '"\(.redirects) (\(.redirects / ([.ops, 1] | max) * 100 | round)%)"'; }
errors_total() { jq -s 'map(.errors) | add' "$tmp"/*.json; }

cat <<EOF
# chordkv bench report

$(date -u '+%Y-%m-%d %H:%M UTC'), $(git describe --tags --always --dirty 2>/dev/null || echo unknown),
$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), $(go version | cut -d' ' -f3).
The load generator runs on the same cores as the servers.

Each run: \`chordkv bench --op OP --concurrency C --connections K --duration $DURATION --keys $KEYS --value-size $VALUE_SIZE --routing endpoint -o json\`;
gets preload the keys first. 1-node and ring use the default --consistency quorum; the
ring's endpoints are all three nodes (connections round-robin over them, so C=1 talks to
one node only). Latency in ms: p50 / p99 / p99.9. Errors over all runs: $(errors_total).

| op | C / K | ceiling ops/s | ceiling latency | 1-node ops/s | 1-node latency | 1-node / ceiling | 3-node r=3 ops/s | 3-node latency | 3-node / ceiling |
|---|---|---:|---|---:|---|---:|---:|---|---:|
EOF
for op in "${ops[@]}"; do
	for load in "${loads[@]}"; do
		read -r c k <<<"$load"
		printf '| %s | %s / %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$op" "$c" "$k" \
			"$(fmt_ops ceiling "$op" "$c")" "$(fmt_lat ceiling "$op" "$c")" \
			"$(fmt_ops single "$op" "$c")" "$(fmt_lat single "$op" "$c")" "$(ratio single "$op" "$c")" \
			"$(fmt_ops ring3 "$op" "$c")" "$(fmt_lat ring3 "$op" "$c")" "$(ratio ring3 "$op" "$c")"
	done
done

cat <<EOF

Client-side routing, 3-node ring r=3, C=64 / K=8: \`--routing endpoint\` (the runs above) against
\`--routing client\` (each call straight to its key's owner, one connection per member).
Forwarded: calls the receiving node forwarded to the owner (chordkv-owner header), of all calls.

| op | endpoint ops/s | endpoint latency | endpoint forwarded | client ops/s | client latency | client forwarded | client / endpoint |
|---|---:|---|---:|---:|---|---:|---:|
EOF
for op in "${ops[@]}"; do
	printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$op" \
		"$(fmt_ops ring3 "$op" 64)" "$(fmt_lat ring3 "$op" 64)" "$(fmt_fwd ring3 "$op" 64)" \
		"$(fmt_ops ring3client "$op" 64)" "$(fmt_lat ring3client "$op" 64)" "$(fmt_fwd ring3client "$op" 64)" \
		"$(ratio ring3client "$op" 64 ring3)"
done

cat <<EOF

Batching, 3-node ring r=3, C=64 / K=8, \`--routing client\`: unbatched (the client-routed runs
above) against \`--batch $BATCH\` (MultiGet/MultiPut of $BATCH random keys, split by owner, one RPC
per owner). ops/s counts keys in both; batched latency is per RPC (up to $BATCH keys), unbatched per key.

| op | unbatched ops/s | unbatched latency | batched keys/s | batched latency per RPC | batched / unbatched |
|---|---:|---|---:|---|---:|
EOF
for op in "${ops[@]}"; do
	printf '| %s | %s | %s | %s | %s | %s |\n' "$op" \
		"$(fmt_ops ring3client "$op" 64)" "$(fmt_lat ring3client "$op" 64)" \
		"$(fmt_ops ring3batch "$op" 64)" "$(fmt_lat ring3batch "$op" 64)" \
		"$(ratio ring3batch "$op" 64 ring3client)"
done
