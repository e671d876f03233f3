#!/usr/bin/env bash
# run-ring.sh — start a local chordkv ring for trying things out (`make run`).
#
# Node 1 creates the ring on 127.0.0.1:$BASE_PORT; nodes 2..$NODES join it on
# the following ports. Data lives in $RUN_DIR/node-N, logs in $RUN_DIR/node-N.log.
# The script waits until `chordkv ring` lists every node, prints how to look
# at the ring, then stays in the foreground. Ctrl-C or SIGTERM stops all
# nodes: SIGTERM first, SIGKILL for any still running after $STOP_GRACE s.
#
# Environment:
#   BASE_PORT   first port (default 7001)
#   NODES       ring size (default 5)
#   RUN_DIR     data and logs (default ./.run, relative to the repository)
#   CHORDKV_BIN binary to run (default bin/chordkv)
#   STOP_GRACE  seconds to wait after SIGTERM before SIGKILL (default 10)
#   JOIN_WAIT   seconds to wait for the ring to form (default 60)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"

BASE_PORT=${BASE_PORT:-7001}
NODES=${NODES:-5}
RUN_DIR=${RUN_DIR:-.run}
BIN=${CHORDKV_BIN:-bin/chordkv}
STOP_GRACE=${STOP_GRACE:-10}
JOIN_WAIT=${JOIN_WAIT:-60}
HOST=127.0.0.1

die() {
	printf 'run-ring: %s\n' "$*" >&2
	exit 1
}

for v in BASE_PORT NODES STOP_GRACE JOIN_WAIT; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a number, got '${!v}'"
done
((NODES >= 1)) || die "NODES must be at least 1"
((BASE_PORT >= 1 && BASE_PORT + NODES - 1 <= 65535)) || die "ports $BASE_PORT..$((BASE_PORT + NODES - 1)) are out of range"
[ -x "$BIN" ] || die "no executable at $BIN; run 'make build' (or 'make run', which builds first)"

# Clients started here must not pick up a user's CHORDKV_* settings.
while IFS= read -r var; do unset "$var"; done < <(compgen -e | grep '^CHORDKV_' || true)

# port_busy PORT: true when something already listens on HOST:PORT.
port_busy() {
	if command -v ss >/dev/null 2>&1; then
		[ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]
	else
		(exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
	fi
}

addr_of() { echo "$HOST:$((BASE_PORT + $1 - 1))"; }

for ((i = 1; i <= NODES; i++)); do
	if port_busy $((BASE_PORT + i - 1)); then
		die "port $(addr_of "$i") is already in use (a ring from an earlier 'make run' still running?).
Stop whatever holds it, or pick other ports: BASE_PORT=8001 make run"
	fi
done

mkdir -p "$RUN_DIR"
pids=()
stopping=0

# stop_all: SIGTERM every node, wait up to STOP_GRACE s, then SIGKILL the rest.
stop_all() {
	if ((stopping)); then
		return 0
	fi
	stopping=1
	trap '' INT TERM
	local alive=() pid
	for pid in "${pids[@]}"; do
		kill -0 "$pid" 2>/dev/null && alive+=("$pid")
	done
	((${#alive[@]})) || return 0
	echo
	echo "run-ring: stopping ${#alive[@]} node(s) with SIGTERM..."
	kill -TERM "${alive[@]}" 2>/dev/null || true
	local deadline=$((SECONDS + STOP_GRACE))
	while ((SECONDS < deadline)); do
		alive=()
		for pid in "${pids[@]}"; do
			kill -0 "$pid" 2>/dev/null && alive+=("$pid")
		done
		((${#alive[@]})) || break
		sleep 0.2
	done
	if ((${#alive[@]})); then
		echo "run-ring: ${#alive[@]} node(s) still running after ${STOP_GRACE}s, sending SIGKILL: ${alive[*]}"
		kill -KILL "${alive[@]}" 2>/dev/null || true
	fi
	wait 2>/dev/null || true
	echo "run-ring: all nodes stopped; data and logs kept in $RUN_DIR/ ('make clean' removes them)"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# tail_log N: the end of node N's log, to explain a failure.
tail_log() {
	echo "---- last lines of $RUN_DIR/node-$1.log ----" >&2
	tail -n 20 "$RUN_DIR/node-$1.log" >&2 || true
}

seed=$(addr_of 1)
for ((i = 1; i <= NODES; i++)); do
	args=(serve --addr "$(addr_of "$i")" --data-dir "$RUN_DIR/node-$i")
	if ((i > 1)); then
		args+=(--join "$seed")
	fi
	echo "run-ring: starting node $i on $(addr_of "$i")"
	printf '=== %s run-ring: %s %s\n' "$(date -Is)" "$BIN" "${args[*]}" >>"$RUN_DIR/node-$i.log"
	"$BIN" "${args[@]}" >>"$RUN_DIR/node-$i.log" 2>&1 &
	pids+=($!)
done

# dead_node: prints the number of the first node whose process has exited.
dead_node() {
	local i
	for ((i = 1; i <= NODES; i++)); do
		if ! kill -0 "${pids[i - 1]}" 2>/dev/null; then
			echo "$i"
			return 0
		fi
	done
	return 1
}

echo "run-ring: waiting up to ${JOIN_WAIT}s for all $NODES nodes to appear in the ring..."
deadline=$((SECONDS + JOIN_WAIT))
count=0
while :; do
	if n=$(dead_node); then
		tail_log "$n"
		die "node $n ($(addr_of "$n")) exited during start-up; see $RUN_DIR/node-$n.log"
	fi
	out=$("$BIN" ring --endpoints "$seed" --timeout 2s -o json 2>/dev/null) || out=""
	count=$(grep -o '"addr":' <<<"$out" | wc -l) || true
	((count == NODES)) && break
	if ((SECONDS >= deadline)); then
		for ((i = 1; i <= NODES; i++)); do tail_log "$i"; done
		die "the ring did not reach $NODES nodes within ${JOIN_WAIT}s (last count: $count)"
	fi
	sleep 0.5
done

cat <<EOF

chordkv ring is up: $NODES nodes on $HOST:$BASE_PORT..$((BASE_PORT + NODES - 1))
  pids: ${pids[*]}
  data: $RUN_DIR/node-1 .. $RUN_DIR/node-$NODES    logs: $RUN_DIR/node-N.log

Look at it from another terminal:
  $BIN ring   --endpoints $seed
  $BIN lookup hello --endpoints $(addr_of "$NODES") -o json
  $BIN status --endpoints $seed -o json
  tail -f $RUN_DIR/node-*.log

Try a crash: kill -9 one of the pids above and watch 'ring' heal.
Press Ctrl-C to stop every node.
EOF

# Stay in the foreground; report nodes that exit, stop when all are gone.
reported=()
while :; do
	alive=0
	for ((i = 1; i <= NODES; i++)); do
		if kill -0 "${pids[i - 1]}" 2>/dev/null; then
			alive=$((alive + 1))
		elif [ -z "${reported[i]:-}" ]; then
			reported[i]=1
			echo "run-ring: node $i ($(addr_of "$i"), pid ${pids[i - 1]}) has exited; see $RUN_DIR/node-$i.log"
		fi
	done
	((alive)) || die "every node has exited"
	sleep 1 &
	wait $! || true
done
