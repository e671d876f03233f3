#!/usr/bin/env bash
# run.sh — `make bench`: client-visible throughput of chordkv against the gRPC
# ceiling, on this machine.
#
# Starts, on 127.0.0.1:
#   - the ceiling server (test/bench/ceiling: bare gRPC, Get/Put on a map),
#   - a 1-node chordkv (data in a temp dir),
#   - a 3-node chordkv ring with --replicas 3 (and the default 1s read
#     leases, as every ring here but the reference ring below),
# then runs `chordkv bench -o json` for get and put, at concurrency 1 (1
# connection) and 64 (8 connections), against each with --routing endpoint,
# and against the ring also with --routing client at 64/8, and prints a
# markdown report to standard output, with chordkv/ceiling and
# client/endpoint ratios; then, on the ring at 64/8 with client routing,
# --batch $BATCH (MultiGet/MultiPut, one RPC per owner) against unbatched;
# then GOAL_PAIRS more interleaved ceiling and client-routed ring runs, so
# that the 3-node goal ratios are medians; then, for reference and not as a
# goal, one pair with the ring's Get at --consistency one.
# Two more sections, each behind a switch:
#   - ghz (GHZ=1): the load generator the performance goals name, built at a
#     pinned version through the Go module proxy, drives Get and Put on the
#     ceiling and on the 1-node chordkv at 64 callers over 8 connections;
#   - Redis (REDIS=1): redis-benchmark against a private, non-persistent
#     redis-server, next to `chordkv bench --batch B` on the 1-node chordkv
#     and the 3-node ring, then GOAL_PAIRS more interleaved pairs of Redis
#     and the ring at the last of REDIS_BATCHES, so that the 3-node batched goal
#     ratios are medians (skipped, with the install command, when
#     redis-server or redis-benchmark is missing).
# Progress and the
# nodes' log locations go to standard error. Every process it starts is
# stopped on exit, Ctrl-C included; every wait is bounded.
#
# Environment:
#   CHORDKV_BIN  binary to measure (default bin/chordkv; `make bench` builds it)
#   BASE_PORT    first of 9 consecutive ports (default 7950)
#   DURATION     measurement per run (default 5s)
#   KEYS         key space (default 10000)
#   VALUE_SIZE   bytes per value (default 100)
#   BATCH        keys per call of the batched runs (default 16)
#   GHZ          1 (default) runs the ghz section, 0 skips it
#   GHZ_VERSION  ghz version built when GHZ_BIN is unset (default v0.120.0)
#   GHZ_BIN      a ghz binary to use instead of building one
#   GHZ_COUNT    calls per ghz run (default 20000)
#   REDIS        1 (default) runs the Redis section, 0 skips it
#   REDIS_REQUESTS  requests per redis-benchmark test (default 100000)
#   REDIS_BATCHES   --batch sizes compared with Redis (default "16 64 500"; 500
#                   is what `chordkv put|get|del --batch` sends per call)
#   FIXED_RATE   puts/s of the fixed-load section (default: half the ring's
#                client-routed put rate measured here, in hundreds)
#   LEASE        --read-lease of a second 3-node ring whose Get is measured
#                against the ceiling in GOAL_PAIRS + 1 interleaved pairs, for
#                reference (default 0: leases off, every quorum get reads a
#                second replica; skip skips it)
#   GOAL_PAIRS   extra interleaved pairs of ceiling and client-routed ring
#                runs per op behind the 3-node goal ratios, which are the
#                median of these and the first pair (default 2; 0: one pair);
#                as many of Redis and the ring's batched runs
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"

BIN=${CHORDKV_BIN:-bin/chordkv}
BASE_PORT=${BASE_PORT:-7950}
DURATION=${DURATION:-5s}
KEYS=${KEYS:-10000}
VALUE_SIZE=${VALUE_SIZE:-100}
BATCH=${BATCH:-16}
GHZ=${GHZ:-1}
GHZ_VERSION=${GHZ_VERSION:-v0.120.0}
GHZ_COUNT=${GHZ_COUNT:-20000}
REDIS=${REDIS:-1}
REDIS_REQUESTS=${REDIS_REQUESTS:-100000}
REDIS_BATCHES=${REDIS_BATCHES:-16 64 500}
GOAL_PAIRS=${GOAL_PAIRS:-2}
LEASE=${LEASE:-0}
HOST=127.0.0.1
READY_WAIT=60   # seconds for a server or ring to come up
STOP_GRACE=10   # seconds after SIGTERM before SIGKILL
BENCH_LIMIT=300 # seconds any one bench run (preload included) may take
GHZ_BUILD_LIMIT=900 # seconds for building ghz (about 2 minutes on 2 cores, uncached)

NAME=bench
# shellcheck source=test/bench/lib.sh
. test/bench/lib.sh
bench_setup

port() { echo "$HOST:$((BASE_PORT + $1))"; }
ceiling=$(port 0)
single=$(port 1)
ring=("$(port 2)" "$(port 3)" "$(port 4)")
redis_port=$((BASE_PORT + 5))

# ghz is built once per version into the user's cache, never added to
# go.mod: it is a tool run against the servers, not a dependency of chordkv.
ghz=
if [ "$GHZ" = 1 ]; then
	if [ -n "${GHZ_BIN:-}" ]; then
		ghz=$GHZ_BIN
		[ -x "$ghz" ] || die "GHZ_BIN=$ghz is not executable"
	else
		ghz_dir=${XDG_CACHE_HOME:-$HOME/.cache}/chordkv-bench/ghz-$GHZ_VERSION
		ghz=$ghz_dir/ghz
		if [ ! -x "$ghz" ]; then
			log "building ghz $GHZ_VERSION into $ghz_dir (once per version; about 2 minutes)"
			mkdir -p "$ghz_dir"
			if ! (cd "$tmp" && GOBIN=$ghz_dir GOFLAGS=-buildvcs=false timeout "$GHZ_BUILD_LIMIT" \
				go install "github.com/bojand/ghz/cmd/ghz@$GHZ_VERSION") >"$tmp/ghz-build.log" 2>&1; then
				rmdir "$ghz_dir" 2>/dev/null || true # leave no empty cache entry behind
				die "cannot build ghz $GHZ_VERSION through the Go module proxy ($(tail -n 3 "$tmp/ghz-build.log" | tr '\n' ' ')); set GHZ=0 to skip the ghz section, or GHZ_BIN to a ghz binary"
			fi
		fi
	fi
fi

redis=0
goal_batch=${REDIS_BATCHES##* } # the last size: the 3-node batched goals' pairs run at it
redis_test() { if [ "$1" = put ]; then echo SET; else echo GET; fi; } # redis_test OP
if [ "$REDIS" = 1 ]; then
	if command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null && command -v redis-cli >/dev/null; then
		redis=1
	else
		log "SKIPPING the Redis comparison: redis-server, redis-benchmark or redis-cli is not installed (Debian: apt-get install -y redis-server; REDIS=0 silences this)"
	fi
fi

start_targets
if ((redis)); then
	# Private and memory-only: no RDB snapshots, no append-only file, its
	# working directory in the temp dir, loopback only.
	start redis redis-server --port "$redis_port" --bind "$HOST" --save '' --appendonly no \
		--dir "$tmp" --daemonize no
fi

wait_targets
if ((redis)); then
	until_ok "$READY_WAIT" "redis-server" redis-cli -h "$HOST" -p "$redis_port" ping
fi

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

# The 3-node goals compare the client-routed ring with the ceiling. On a
# shared VM either one's rate moves by 10-15% between runs, enough to flip
# a verdict, so the goal ratios are the median over interleaved pairs: the
# runs above and GOAL_PAIRS more, each a ceiling run straight followed by a
# ring run (files TARGET-OP-64pN.json).
for ((pair = 1; pair <= GOAL_PAIRS; pair++)); do
	for op in "${ops[@]}"; do
		log "goal pair $pair of $GOAL_PAIRS: ceiling and client-routed ring3 $op at 64/8 for $DURATION each"
		timeout "$BENCH_LIMIT" "$BIN" bench --endpoints "$ceiling" --op "$op" \
			--concurrency 64 --connections 8 --duration "$DURATION" \
			--keys "$KEYS" --value-size "$VALUE_SIZE" --routing endpoint -o json >"$tmp/ceiling-$op-64p$pair.json"
		timeout "$BENCH_LIMIT" "$BIN" bench --endpoints "$(endpoints_of ring3)" --op "$op" \
			--concurrency 64 --connections 8 --duration "$DURATION" \
			--keys "$KEYS" --value-size "$VALUE_SIZE" --routing client -o json >"$tmp/ring3client-$op-64p$pair.json"
	done
done

# Not a goal: one more pair with the ring's Get at --consistency one, where
# the coordinator answers alone, shows what the quorum read's second
# replica costs on this machine.
log "reference pair: ceiling get and client-routed ring3 get --consistency one at 64/8 for $DURATION each"
timeout "$BENCH_LIMIT" "$BIN" bench --endpoints "$ceiling" --op get \
	--concurrency 64 --connections 8 --duration "$DURATION" \
	--keys "$KEYS" --value-size "$VALUE_SIZE" --routing endpoint -o json >"$tmp/ceiling-get-64one.json"
timeout "$BENCH_LIMIT" "$BIN" bench --endpoints "$(endpoints_of ring3)" --op get --consistency one \
	--concurrency 64 --connections 8 --duration "$DURATION" \
	--keys "$KEYS" --value-size "$VALUE_SIZE" --routing client -o json >"$tmp/ring3one-get-64one.json"

# Batching on the ring at 64/8 with client routing; the client-routed
# runs above are its baseline.
for op in "${ops[@]}"; do
	log "ring3 $op concurrency 64 connections 8, client routing, --batch $BATCH, for $DURATION"
	timeout "$BENCH_LIMIT" "$BIN" bench --endpoints "$(endpoints_of ring3)" --op "$op" \
		--concurrency 64 --connections 8 --duration "$DURATION" --batch "$BATCH" \
		--keys "$KEYS" --value-size "$VALUE_SIZE" --routing client -o json >"$tmp/ring3batch-$op-64.json"
done

# ghz: the same call for both targets, from the .proto file because the
# ceiling has no reflection service. Every call of a run comes from one
# JSON array that ghz parses once and uses round-robin, so its keys are
# chordkv bench's (bench-NNNNNNNNN), which the get runs above preloaded on
# both targets, and templates cost nothing per call. A fixed count (-n)
# rather than a duration (-z): at -z's deadline ghz cuts its connections
# with calls in flight, which would count as errors.
ghz_data() { # ghz_data OP: the request array for OP on standard output
	local value
	value=$(head -c "$VALUE_SIZE" /dev/urandom | base64 -w0)
	jq -nc --argjson n "$KEYS" --arg v "$value" --arg op "$1" \
		'[range($n) | {key: ("bench-" + ("000000000" + tostring)[-9:] | @base64)}
		  | if $op == "put" then .value = $v else . end]'
}
if [ -n "$ghz" ]; then
	for op in "${ops[@]}"; do
		ghz_data "$op" >"$tmp/ghz-data-$op.req"
		method=Get
		[ "$op" = put ] && method=Put
		for t in ceiling single; do
			log "ghz $t $op: -c 64 --connections 8 -n $GHZ_COUNT"
			timeout "$BENCH_LIMIT" "$ghz" --insecure --proto proto/chordkv/v1/kv.proto \
				--call "chordkv.v1.KV/$method" --data-file "$tmp/ghz-data-$op.req" \
				-c 64 --connections 8 -n "$GHZ_COUNT" --format json "$(endpoints_of "$t")" \
				>"$tmp/ghz-$t-$op.raw" || die "ghz $t $op failed: $(tail -c 600 "$tmp/ghz-$t-$op.raw")"
			# Keep the summary only: the raw report lists every call.
			jq '{rps, count, errors: (.count - (.statusCodeDistribution.OK // 0)),
			     p50_ms: (.latencyDistribution[] | select(.percentage == 50) | .latency / 1e6),
			     p99_ms: (.latencyDistribution[] | select(.percentage == 99) | .latency / 1e6)}' \
				"$tmp/ghz-$t-$op.raw" >"$tmp/ghz-$t-$op.sum"
			rm -f "$tmp/ghz-$t-$op.raw"
		done
	done
fi

# Redis: redis-benchmark GET and SET without pipelining (-P 1) at 64 and 16
# clients, random keys out of 10,000, VALUE_SIZE-byte values; against it
# `chordkv bench --batch B` (MultiGet/MultiPut, client routing) at 64
# callers over 8 connections on the 1-node chordkv and the 3-node ring.
redis_clients=(64 16)
if ((redis)); then
	for c in "${redis_clients[@]}"; do
		log "redis-benchmark -t get,set -c $c -n $REDIS_REQUESTS -d $VALUE_SIZE -P 1 -r 10000"
		timeout "$BENCH_LIMIT" redis-benchmark -h "$HOST" -p "$redis_port" -t get,set -c "$c" \
			-n "$REDIS_REQUESTS" -d "$VALUE_SIZE" -P 1 -r 10000 --csv >"$tmp/redis-$c.csv" ||
			die "redis-benchmark at -c $c failed: $(tail -c 600 "$tmp/redis-$c.csv")"
	done
	for t in single ring3; do
		for op in "${ops[@]}"; do
			for b in $REDIS_BATCHES; do
				log "$t $op concurrency 64 connections 8, client routing, --batch $b, for $DURATION"
				timeout "$BENCH_LIMIT" "$BIN" bench --endpoints "$(endpoints_of "$t")" --op "$op" \
					--concurrency 64 --connections 8 --duration "$DURATION" --batch "$b" \
					--keys "$KEYS" --value-size "$VALUE_SIZE" --routing client -o json >"$tmp/$t-$op-b$b.json"
			done
		done
	done
	# The 3-node batched goals are on the edge for puts, and Redis's rate
	# moves as much as the ring's between runs minutes apart (45,000 to
	# 78,000 SET/s within an hour on a 2-core VM), so, like the single-key
	# 3-node goals, they are the median over interleaved pairs: the runs
	# above (Redis first, the ring at --batch $goal_batch later) and
	# GOAL_PAIRS more, each a redis-benchmark run of the op's test at -c 64
	# straight followed by the ring's run (redis-64pN-OP.csv,
	# ring3-OP-bBpN.json).
	for ((pair = 1; pair <= GOAL_PAIRS; pair++)); do
		for op in "${ops[@]}"; do
			log "batched goal pair $pair of $GOAL_PAIRS: redis-benchmark $(redis_test "$op") -c 64, then ring3 $op --batch $goal_batch for $DURATION"
			timeout "$BENCH_LIMIT" redis-benchmark -h "$HOST" -p "$redis_port" -t "$(redis_test "$op")" -c 64 \
				-n "$REDIS_REQUESTS" -d "$VALUE_SIZE" -P 1 -r 10000 --csv >"$tmp/redis-64p$pair-$op.csv" ||
				die "redis-benchmark at -c 64 failed: $(tail -c 600 "$tmp/redis-64p$pair-$op.csv")"
			timeout "$BENCH_LIMIT" "$BIN" bench --endpoints "$(endpoints_of ring3)" --op "$op" \
				--concurrency 64 --connections 8 --duration "$DURATION" --batch "$goal_batch" \
				--keys "$KEYS" --value-size "$VALUE_SIZE" --routing client -o json >"$tmp/ring3-$op-b${goal_batch}p$pair.json"
		done
	done
fi

# Fixed load: every target takes the same put rate, below all their
# saturation points (--rate, open loop), and the report gives each one's
# server CPU per put, read from /proc before and after. Saturated ops/s
# moves by ±10% from run to run on a shared 2-core VM; CPU per operation
# at a fixed rate moves by about ±1%, so it is the figure to compare two
# versions by. The processes are those start_targets started, in order.
declare -A server_pids
server_pids=([ceiling]="${pids[0]}" [single]="${pids[1]}" [ring3]="${pids[*]:2:3}")
cpu_ticks() { # cpu_ticks PID...: user+system clock ticks of the processes
	local t=0 p
	for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
	echo "$t"
}
fixed_rate=${FIXED_RATE:-$(jq -r '[.ops_per_sec / 200 | floor, 1] | max * 100' "$tmp/ring3client-put-64.json")}
for t in "${targets[@]}"; do
	routing=endpoint
	[ "$t" = ring3 ] && routing=client
	log "$t put at --rate $fixed_rate, $routing routing, for $DURATION"
	# shellcheck disable=SC2086 # the ring's three pids are three words
	before=$(cpu_ticks ${server_pids[$t]})
	timeout "$BENCH_LIMIT" "$BIN" bench --endpoints "$(endpoints_of "$t")" --op put --rate "$fixed_rate" \
		--concurrency 64 --connections 8 --duration "$DURATION" \
		--keys "$KEYS" --value-size "$VALUE_SIZE" --routing "$routing" -o json >"$tmp/fixed-$t-put.json"
	# shellcheck disable=SC2086
	after=$(cpu_ticks ${server_pids[$t]})
	jq -n --argjson b "$before" --argjson a "$after" --argjson hz "$(getconf CLK_TCK)" \
		'{cpu_seconds: (($a - $b) / $hz)}' >"$tmp/fixed-$t-cpu.txt"
done

# Read leases (--read-lease, 1s by default): a second 3-node ring with
# another --read-lease (by default 0, so that every quorum get reads a
# second replica), against the ceiling in interleaved pairs as for the
# goals. Gets only: a lease changes nothing for puts.
if [ "$LEASE" != skip ]; then
	lease_ring=("$(port 6)" "$(port 7)" "$(port 8)")
	start lease1 "$BIN" serve --addr "${lease_ring[0]}" --data-dir "$tmp/lease1" --replicas 3 --read-lease "$LEASE"
	for i in 1 2; do
		start "lease$((i + 1))" "$BIN" serve --addr "${lease_ring[i]}" --data-dir "$tmp/lease$((i + 1))" \
			--replicas 3 --read-lease "$LEASE" --join "${lease_ring[0]}"
	done
	until_ok "$READY_WAIT" "3-node ring with --read-lease $LEASE" ring_has_3 "${lease_ring[@]}"
	for ((pair = 0; pair <= GOAL_PAIRS; pair++)); do
		log "lease pair $((pair + 1)) of $((GOAL_PAIRS + 1)): ceiling get and client-routed ring get with --read-lease $LEASE at 64/8 for $DURATION each"
		timeout "$BENCH_LIMIT" "$BIN" bench --endpoints "$ceiling" --op get \
			--concurrency 64 --connections 8 --duration "$DURATION" \
			--keys "$KEYS" --value-size "$VALUE_SIZE" --routing endpoint -o json >"$tmp/ceiling-get-64l$pair.json"
		timeout "$BENCH_LIMIT" "$BIN" bench --endpoints "$(IFS=,; echo "${lease_ring[*]}")" --op get \
			--concurrency 64 --connections 8 --duration "$DURATION" \
			--keys "$KEYS" --value-size "$VALUE_SIZE" --routing client -o json >"$tmp/ring3lease-get-64l$pair.json"
	done
fi

# field TARGET OP C JQ-EXPR
field() { jq -r "$4" "$tmp/$1-$2-$3.json"; }
fmt_ops() { field "$@" '.ops_per_sec | floor'; }
fmt_lat() { field "$@" '"\(.p50_ms) / \(.p99_ms) / \(.p999_ms)"'; }
ratio() { # ratio TARGET OP C [BASE]: ops/s of TARGET over BASE's (default the ceiling's)
	jq -rn --slurpfile a "$tmp/$1-$2-$3.json" --slurpfile b "$tmp/${4:-ceiling}-$2-$3.json" \
		'($a[0].ops_per_sec / $b[0].ops_per_sec * 100 | round / 100)'
}
fmt_fwd() { field "$@" '"\(.redirects) (\(.redirects / ([.ops, 1] | max) * 100 | round)%)"'; }
pair_ratios() { # pair_ratios OP: the client-routed ring's ratio to the ceiling in each pair, first pair first
	local pair
	ratio ring3client "$1" 64
	for ((pair = 1; pair <= GOAL_PAIRS; pair++)); do ratio ring3client "$1" "64p$pair" ceiling; done
}
lease_ratios() { # lease_ratios: the second ring's get ratio to the ceiling in each lease pair
	local pair
	for ((pair = 0; pair <= GOAL_PAIRS; pair++)); do ratio ring3lease get "64l$pair" ceiling; done
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
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

if [ -n "$ghz" ]; then
	ghz_label="ghz github.com/bojand/ghz@$GHZ_VERSION"
	[ -n "${GHZ_BIN:-}" ] && ghz_label="ghz from GHZ_BIN=$GHZ_BIN"
	ghz_field() { jq -r "$3" "$tmp/ghz-$1-$2.sum"; }
	ghz_ratio() { # ghz_ratio OP: the 1-node chordkv's ghz rate over the ceiling's
		jq -rn --slurpfile a "$tmp/ghz-single-$1.sum" --slurpfile b "$tmp/ghz-ceiling-$1.sum" '$a[0].rps / $b[0].rps * 100 | round / 100'
	}
	cat <<EOF2

$ghz_label:
\`ghz --insecure --proto proto/chordkv/v1/kv.proto --call chordkv.v1.KV/Get|Put --data-file F -c 64 --connections 8 -n $GHZ_COUNT --format json HOST:PORT\`,
F a JSON array of $KEYS requests (keys bench-000000000…, $VALUE_SIZE-byte value for Put) that ghz uses
round-robin. 1-node chordkv at the default --consistency quorum, puts fsync'd. Latency in ms: p50 / p99.
Goals (issue 5): Get at least 0.8 of the ceiling, durable Put at least 0.6.

| op | ceiling ops/s | ceiling latency | ceiling errors | 1-node ops/s | 1-node latency | 1-node errors | 1-node / ceiling |
|---|---:|---|---:|---:|---|---:|---:|
EOF2
	for op in "${ops[@]}"; do
		printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$op" \
			"$(ghz_field ceiling "$op" '.rps | floor')" "$(ghz_field ceiling "$op" '"\(.p50_ms * 1000 | round / 1000) / \(.p99_ms * 1000 | round / 1000)"')" \
			"$(ghz_field ceiling "$op" .errors)" \
			"$(ghz_field single "$op" '.rps | floor')" "$(ghz_field single "$op" '"\(.p50_ms * 1000 | round / 1000) / \(.p99_ms * 1000 | round / 1000)"')" \
			"$(ghz_field single "$op" .errors)" "$(ghz_ratio "$op")"
	done
fi

if ((redis)); then
	# redis_col C TEST COLUMN: a column of redis-benchmark's CSV ("test","rps",
	# "avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms",
	# "p99_latency_ms","max_latency_ms") for TEST (GET or SET) at C clients.
	redis_col() { awk -F'"' -v t="$2" -v c="$3" '$2 == t { print $(2 * c) }' "$tmp/redis-$1.csv"; }
	redis_pair_ratios() { # redis_pair_ratios OP: the ring's keys/s at --batch goal_batch over Redis -c 64 in each pair, first pair first
		local pair test
		test=$(redis_test "$1")
		redis_ratio ring3 "$1" "$goal_batch" "$test"
		for ((pair = 1; pair <= GOAL_PAIRS; pair++)); do
			redis_ratio ring3 "$1" "${goal_batch}p$pair" "$test" "64p$pair-$1"
		done
	}
	redis_rps() { redis_col "$1" "$2" 2 | cut -d. -f1; }
	redis_ratio() { # redis_ratio TARGET OP B TEST [RUN]: keys/s of the --batch B run (file TARGET-OP-bB.json) over TEST's in Redis run RUN (redis-RUN.csv, default 64: the -c 64 run)
		jq -rn --slurpfile a "$tmp/$1-$2-b$3.json" --argjson r "$(redis_col "${5:-64}" "$4" 2)" '$a[0].ops_per_sec / $r * 100 | round / 100'
	}
	cat <<EOF2

Redis $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p'), private, no persistence (\`--save '' --appendonly no\`):
\`redis-benchmark -t get,set -c C -n $REDIS_REQUESTS -d $VALUE_SIZE -P 1 -r 10000 --csv\` (no pipelining).
chordkv: \`chordkv bench --op get|put --batch B --concurrency 64 --connections 8 --duration $DURATION --keys $KEYS --value-size $VALUE_SIZE --routing client\`;
keys/s counted per key, latency per RPC of B keys; chordkv puts are fsync'd, quorum on the ring.
Goal (issue 5): batched Get and Put at least 1.0 of Redis without pipelining.

| op | Redis -c 64 ops/s (p50 / p99 ms) | Redis -c 16 ops/s (p50 / p99 ms) | chordkv | --batch | keys/s | latency p50 / p99 ms | / Redis -c 64 |
|---|---:|---:|---|---:|---:|---|---:|
EOF2
	for op in "${ops[@]}"; do
		test=GET
		[ "$op" = put ] && test=SET
		for t in single ring3; do
			for b in $REDIS_BATCHES; do
				name=1-node
				[ "$t" = ring3 ] && name="3-node r=3"
				printf '| %s | %s (%s / %s) | %s (%s / %s) | %s | %s | %s | %s | %s |\n' "$op" \
					"$(redis_rps 64 "$test")" "$(redis_col 64 "$test" 5)" "$(redis_col 64 "$test" 7)" \
					"$(redis_rps 16 "$test")" "$(redis_col 16 "$test" 5)" "$(redis_col 16 "$test" 7)" \
					"$name" "$b" "$(fmt_ops "$t" "$op" "b$b")" "$(field "$t" "$op" "b$b" '"\(.p50_ms) / \(.p99_ms)"')" \
					"$(redis_ratio "$t" "$op" "$b" "$test")"
			done
		done
	done
	cat <<EOF2

The 3-node batched goals over $((GOAL_PAIRS + 1)) pairs at \`--batch $goal_batch\`: the runs above, and $GOAL_PAIRS more, each
\`redis-benchmark -t get|set -c 64\` straight followed by the ring's run. The goals table takes the median.

| op | ring keys/s / Redis -c 64 ops/s, pair by pair | median |
|---|---|---:|
EOF2
	for op in "${ops[@]}"; do
		printf '| %s | %s | %s |\n' "$op" "$(redis_pair_ratios "$op" | paste -sd ' ' | sed 's/ /, /g')" "$(redis_pair_ratios "$op" | median)"
	done
fi

cat <<EOF

Fixed load: \`chordkv bench --op put --rate $fixed_rate --concurrency 64 --connections 8 --duration $DURATION --keys $KEYS --value-size $VALUE_SIZE\`
(endpoint routing for the ceiling and the 1-node chordkv, client routing for the ring), every
target at the same rate. Server CPU: user + system time of the server processes (the three
nodes together for the ring) over the run, per put. It moves far less between runs than
saturated ops/s, but below saturation a put's cost is mostly wakeups, so a change that saves
work at saturation can leave it unmoved. Latency counts from each call's scheduled start.

| target | puts/s | latency p50 / p99 ms | server CPU µs per put |
|---|---:|---|---:|
EOF
for t in "${targets[@]}"; do
	jq -rn --slurpfile r "$tmp/fixed-$t-put.json" --slurpfile c "$tmp/fixed-$t-cpu.txt" --arg t "$t" \
		'$r[0] as $r | "| \($t) | \($r.ops_per_sec | floor) | \($r.p50_ms) / \($r.p99_ms) | \($c[0].cpu_seconds / ([$r.ops, 1] | max) * 1e6 | round) |"'
done

# goal_row GOAL TARGET MEASURED: one row of the goals table; MEASURED is a
# ratio, or empty when its section did not run.
goal_row() {
	local verdict="not met"
	if [ -z "$3" ]; then
		verdict="not measured"
	elif jq -en --argjson m "$3" --argjson g "$2" '$m >= $g' >/dev/null; then
		verdict=met
	fi
	printf '| %s | ≥ %s | %s | %s |\n' "$1" "$2" "${3:--}" "$verdict"
}
ghz_goal() { [ -z "$ghz" ] || ghz_ratio "$1"; } # empty when ghz did not run
redis_best() { # redis_best TARGET OP TEST: the best --batch run's ratio to Redis, empty without Redis
	((redis)) || return 0
	local b
	for b in $REDIS_BATCHES; do redis_ratio "$1" "$2" "$b" "$3"; done | sort -g | tail -n 1
}
cat <<EOF

The 3-node goal ratios over $((GOAL_PAIRS + 1)) interleaved pairs (a ceiling run, then the client-routed
ring, \`chordkv bench\` at 64 callers over 8 connections for $DURATION each; the first pair is the
runs above). The goals table takes the median.

| op | ring / ceiling, pair by pair | median |
|---|---|---:|
EOF
for op in "${ops[@]}"; do
	printf '| %s | %s | %s |\n' "$op" "$(pair_ratios "$op" | paste -sd ' ' | sed 's/ /, /g')" "$(pair_ratios "$op" | median)"
done

cat <<EOF

Not a goal, for reference: in one more pair, the client-routed ring's Get at \`--consistency one\`
(the coordinator answers alone, without the second replica's read that a quorum Get waits for)
did $(fmt_ops ring3one get 64one) ops/s, $(ratio ring3one get 64one) of the ceiling's $(fmt_ops ceiling get 64one).
EOF

if [ "$LEASE" != skip ]; then
	cat <<EOF

Read leases: the rings above run with the default \`--read-lease 1s\`, so each owner answers
quorum gets alone while its replicas grant it a lease. For reference, a second 3-node ring,
r=3, every node started with \`--read-lease $LEASE\` ($([ "$LEASE" = 0 ] && echo "leases off: every quorum get reads a second replica" || echo "not the default")).
$((GOAL_PAIRS + 1)) interleaved pairs, each a ceiling Get run, then the client-routed second ring's
Get at the default \`--consistency quorum\`, \`chordkv bench\` at 64/8 for $DURATION each.

| pair | ceiling ops/s | second ring ops/s | second ring latency | second ring / ceiling |
|---|---:|---:|---|---:|
EOF
	for ((pair = 0; pair <= GOAL_PAIRS; pair++)); do
		printf '| %d | %s | %s | %s | %s |\n' "$((pair + 1))" "$(fmt_ops ceiling get "64l$pair")" \
			"$(fmt_ops ring3lease get "64l$pair")" "$(fmt_lat ring3lease get "64l$pair")" "$(ratio ring3lease get "64l$pair")"
	done
	printf "\nMedian: the second ring's Get at %s of the ceiling (not a goal: not the default).\n" "$(lease_ratios | median)"
fi

cat <<EOF

Issue 5's goals in this run: ratios of ops/s within this run; the ring's are the median
above of its client-routed ops/s over the ceiling's for the same op; the 1-node batched ones
are the best of --batch $REDIS_BATCHES over Redis at -c 64, the 3-node ones the median above.

| goal | target | measured | |
|---|---:|---:|---|
EOF
goal_row "1 node Get / ceiling, ghz" 0.8 "$(ghz_goal get)"
goal_row "1 node durable Put / ceiling, ghz" 0.6 "$(ghz_goal put)"
goal_row "3 nodes r=3 Get / ceiling, client routing (default --read-lease 1s)" 0.6 "$(pair_ratios get | median)"
goal_row "3 nodes r=3 quorum Put / ceiling, client routing" 0.3 "$(pair_ratios put | median)"
goal_row "1 node batched Get / Redis" 1.0 "$(redis_best single get GET)"
goal_row "1 node batched durable Put / Redis" 1.0 "$(redis_best single put SET)"
goal_row "3 nodes r=3 batched Get / Redis, median of pairs at --batch $goal_batch" 1.0 "$( ((redis)) && redis_pair_ratios get | median)"
goal_row "3 nodes r=3 batched quorum Put / Redis, median of pairs at --batch $goal_batch" 1.0 "$( ((redis)) && redis_pair_ratios put | median)"

# Runs with errors, with the first error each saw, so a report with errors
# says what they were (chordkv bench keeps its first error in first_error).
with_errors=$(jq -r 'select(.errors > 0) | "| \(input_filename | sub(".*/"; "") | sub("\\.json$"; "")) | \(.errors) | \(.first_error // "" | gsub("\\|"; "/")) |"' "$tmp"/*.json)
if [ -n "$with_errors" ]; then
	cat <<EOF2

Runs with errors (file name: target-op-concurrency, or -bBATCH, or -64pN for goal pair N):

| run | errors | first error |
|---|---:|---|
$with_errors
EOF2
fi
