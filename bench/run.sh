#!/usr/bin/env bash
# `make bench`: builds the release binaries, raises the open-file limit, and runs
# the benchmark scenarios (bench/run.py), which write bench/results.md and
# bench/results.json. Missed targets are reported there; this script fails only
# when something could not run. Every process started is stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."

# 11,000 idle clients need 11,000+ descriptors in the server and in chat-load.
NEED_FDS=12000
if ! ulimit -n 65536 2>/dev/null; then
    hard=$(ulimit -Hn)
    if [[ "$hard" != unlimited ]] && ((hard < NEED_FDS)); then
        echo "bench: open-file limit cannot be raised to $NEED_FDS (hard limit $hard)." >&2
        echo "bench: raise it (e.g. 'ulimit -Hn 65536' as root, or LimitNOFILE) and retry." >&2
        exit 1
    fi
    ulimit -n "$hard"
fi
echo "bench: open-file limit $(ulimit -n)"

cargo build --release --bins --example floor_relay

# wrk for the HTTP scenario; without it bench/http_load.py (slower, Python) is used.
if ! command -v wrk >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    echo "bench: installing wrk"
    timeout 180 apt-get install -y -q wrk >/dev/null 2>&1 \
        || echo "bench: wrk could not be installed; the Python HTTP client will be used" >&2
fi

child=""
cleanup() {
    if [[ -n "$child" ]] && kill -0 "$child" 2>/dev/null; then
        kill -TERM "$child" 2>/dev/null || true
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$child" 2>/dev/null || break
            sleep 0.5
        done
        kill -KILL "$child" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

python3 bench/run.py &
child=$!
set +e
wait "$child"
rc=$?
set -e
child=""
exit "$rc"
