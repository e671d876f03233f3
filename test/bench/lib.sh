# lib.sh — what the bench scripts (run.sh, sweep.sh, rest.sh) share. It is
# sourced, not run. The sourcing script sets NAME (its name in messages),
# BIN (the chordkv binary) and STOP_GRACE (seconds after SIGTERM before
# SIGKILL), then calls bench_setup.

die() {
	printf '%s: %s\n' "$NAME" "$*" >&2
	exit 1
}
log() { printf '%s: %s\n' "$NAME" "$*" >&2; }

# bench_setup: check the tools, drop the user's CHORDKV_* settings (the
# clients started here must not pick them up), make the temp dir $tmp and
# arrange for stop_all to run on exit, Ctrl-C included.
bench_setup() {
	[ -x "$BIN" ] || die "no executable at $BIN; run 'make build' first"
	command -v jq >/dev/null || die "jq is needed to read the JSON reports"
	while IFS= read -r var; do unset "$var"; done < <(compgen -e | grep '^CHORDKV_' || true)
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/chordkv-$NAME.XXXXXX")
	pids=()
	trap stop_all EXIT
	trap 'exit 130' INT TERM
}

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

# start NAME CMD...: run CMD in the background, logging to $tmp/NAME.log.
start() {
	local name=$1
	shift
	"$@" >"$tmp/$name.log" 2>&1 &
	pids+=($!)
}

# start_ring COUNT BASE_PORT [FLAG...]: COUNT chordkv nodes node-0.. on
# 127.0.0.1:BASE_PORT and the ports after it, each with FLAG...; node-0
# creates the ring and the others join it. Their pids are pids[0..COUNT-1]
# when nothing was started before.
start_ring() {
	local count=$1 base=$2 i
	shift 2
	for ((i = 0; i < count; i++)); do
		local join=()
		((i == 0)) || join=(--join "127.0.0.1:$base")
		start "node-$i" "$BIN" serve --addr "127.0.0.1:$((base + i))" --data-dir "$tmp/node-$i" "${join[@]}" "$@"
		((i > 0)) || sleep 0.5 # the first node creates the ring
	done
}

# until_ok SECONDS WHAT CMD...: retry CMD every 0.2 s for at most SECONDS.
until_ok() {
	local limit=$1 what=$2 deadline
	shift 2
	deadline=$((SECONDS + limit))
	until "$@" >/dev/null 2>&1; do
		((SECONDS < deadline)) || die "$what not ready within ${limit}s; logs in $tmp"
		sleep 0.2
	done
}

# start_targets: the ceiling server on $ceiling, a 1-node chordkv on
# $single and a 3-node ring with --replicas 3 on ${ring[@]}.
start_targets() {
	log "building the ceiling server"
	go build -o "$tmp/ceiling" ./test/bench/ceiling
	start ceiling "$tmp/ceiling" --addr "$ceiling"
	start single "$BIN" serve --addr "$single" --data-dir "$tmp/single"
	start ring1 "$BIN" serve --addr "${ring[0]}" --data-dir "$tmp/ring1" --replicas 3
	local i
	for i in 1 2; do
		start "ring$((i + 1))" "$BIN" serve --addr "${ring[i]}" --data-dir "$tmp/ring$((i + 1))" --replicas 3 --join "${ring[0]}"
	done
}

# ring_has_3 [ADDR...]: every node of the ring (default ${ring[@]}) sees 3
# members and takes a write at all.
ring_has_3() {
	local a
	for a in "${@:-${ring[@]}}"; do
		[ "$("$BIN" ring --endpoints "$a" --timeout 1s -o json | jq '.nodes | length')" = 3 ] || return 1
		"$BIN" put bench-probe x --endpoints "$a" --timeout 1s --consistency all || return 1
	done
}

# wait_targets: until start_targets' servers answer, each within READY_WAIT.
wait_targets() {
	log "waiting for the servers"
	until_ok "$READY_WAIT" "ceiling" "$BIN" put bench-probe x --endpoints "$ceiling" --timeout 1s
	until_ok "$READY_WAIT" "1-node chordkv" "$BIN" put bench-probe x --endpoints "$single" --timeout 1s --consistency all
	until_ok "$READY_WAIT" "3-node ring" ring_has_3
}
