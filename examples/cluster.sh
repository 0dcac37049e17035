#!/usr/bin/env bash
# Several nodes on this machine, joined through a private Redis: `make cluster
# NODES=2 ARGS="..."`, or `NODES=3 examples/cluster.sh [FLAGS...]`.
#
# Builds the release binary, starts redis-server on a free loopback port (no
# persistence, in the foreground of its own background job), then NODES nodes
# sharing the usual ports through --reuse-port, each named nodeN and keeping its
# history in data/nodeN. FLAGS go to every node after those, so they win (e.g.
# --no-persist, --host 127.0.0.1). Ctrl+C (or SIGTERM) stops exactly the
# processes started here, with SIGTERM so the nodes drain, and waits for them.
# If any of them exits on its own, the others are stopped too.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

NODES="${NODES:-2}"
CARGO="${CARGO:-cargo}"
BIN="${CARGO_TARGET_DIR:-target}/release/multiuserchat"

if ! [[ "$NODES" =~ ^[1-9][0-9]?$ ]]; then
    echo "cluster: NODES must be a number from 1 to 99 (got '$NODES')" >&2
    exit 2
fi

if ! command -v redis-server >/dev/null 2>&1; then
    echo "cluster: redis-server is not installed." >&2
    echo "  Debian/Ubuntu: sudo apt install redis-server" >&2
    echo "  (the package's own service is not needed: this script starts a private one)" >&2
    exit 1
fi

# A loopback port nobody listens on right now.
free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
        return
    fi
    local p
    for _ in $(seq 1 50); do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
    echo "cluster: no free port found" >&2
    return 1
}

# Every process started here, and only those, is stopped on the way out, with
# one SIGTERM each: a node drains on the first signal and exits at once on a
# second, so they are started in process groups of their own (`set -m` around
# each start) where a terminal's Ctrl+C does not reach them besides ours.
pids=()
cleanup() {
    trap - INT TERM EXIT
    if ((${#pids[@]} > 0)); then
        echo "cluster: stopping ${pids[*]}" >&2
        kill -TERM "${pids[@]}" 2>/dev/null || true
        wait "${pids[@]}" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$CARGO" build --release --bin multiuserchat

port="$(free_port)"
set -m
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize no --loglevel warning </dev/null &
redis_pid=$!
set +m
pids+=("$redis_pid")

# Wait (at most 5 s) until Redis answers PING.
ready=0
for _ in $(seq 1 50); do
    if ! kill -0 "$redis_pid" 2>/dev/null; then
        echo "cluster: redis-server exited at start-up (port $port)" >&2
        exit 1
    fi
    reply="$( (exec 3<>"/dev/tcp/127.0.0.1/$port" && printf 'PING\r\n' >&3 &&
        read -r -t 1 line <&3 && printf '%s' "$line") 2>/dev/null || true)"
    if [[ "$reply" == "+PONG"* ]]; then
        ready=1
        break
    fi
    sleep 0.1
done
if ((ready == 0)); then
    echo "cluster: redis-server on 127.0.0.1:$port did not answer PING within 5 s" >&2
    exit 1
fi
echo "cluster: redis-server on 127.0.0.1:$port (pid $redis_pid)"

for n in $(seq 1 "$NODES"); do
    set -m
    "$BIN" --reuse-port --redis "redis://127.0.0.1:$port" --node-id "node$n" \
        --data-dir "data/node$n" "$@" </dev/null &
    pids+=("$!")
    set +m
    echo "cluster: node$n (pid $!)"
done
echo "cluster: $NODES node(s) share the ports; Ctrl+C stops them all"

# Until one process exits on its own or a signal arrives (its trap exits).
status=0
wait -n || status=$?
echo "cluster: a process exited (status $status); stopping the others" >&2
exit "$status"
