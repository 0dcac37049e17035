#!/usr/bin/env bash
# Browser end-to-end tests: build the server, start it on free loopback ports,
# run e2e/chat.test.mjs in headless Chromium, always stop the server.
#
# Usage: e2e/run.sh            (from anywhere; `make e2e` calls this)
# Needs: e2e/install.sh done once (chromium + npm ci).
# Environment (all optional):
#   E2E_SKIP_BUILD=1        use the existing server binary, do not build
#   E2E_SERVER_BIN=PATH     server binary (default target/debug/multiuserchat)
#   E2E_ARTIFACTS=DIR       failure screenshots/DOM/console + server.log
#                           (default: target/e2e-artifacts)
#   E2E_SCREENSHOTS=always  capture every test, not only failures
#   E2E_CHROMIUM=PATH       browser binary (default /usr/bin/chromium)
#   E2E_TIMEOUT_MS=N        per-step wait in the tests (default 10000)
#   E2E_RUN_TIMEOUT=SECS    bound on the whole test run (default 300)
#   E2E_TEST_ARGS="..."     extra node --test flags, e.g. --test-name-pattern=private
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

target_dir="${CARGO_TARGET_DIR:-$root/target}"
bin="${E2E_SERVER_BIN:-$target_dir/debug/multiuserchat}"
artifacts="${E2E_ARTIFACTS:-$root/target/e2e-artifacts}"
run_timeout="${E2E_RUN_TIMEOUT:-300}"

if [ ! -f e2e/node_modules/playwright-core/package.json ] || [ ! -f e2e/node_modules/axe-core/axe.min.js ]; then
  echo "e2e: playwright-core or axe-core is missing; run e2e/install.sh first" >&2
  exit 2
fi
if [ ! -x "${E2E_CHROMIUM:-/usr/bin/chromium}" ]; then
  echo "e2e: ${E2E_CHROMIUM:-/usr/bin/chromium} not found; run e2e/install.sh first" >&2
  exit 2
fi

if [ "${E2E_SKIP_BUILD:-0}" != 1 ]; then
  timeout 1200 cargo build --locked --bin multiuserchat
fi

rm -rf "$artifacts"
mkdir -p "$artifacts"
server_log="$artifacts/server.log"
pidfile="$artifacts/server.pid"
: > "$server_log"
: > "$pidfile"

# Free loopback ports, chosen here (not port 0) so a restarted server gets the same ones.
read -r http_port tcp_port ws_port < <(node -e '
  const net = require("net");
  const servers = [0, 1, 2].map(() => net.createServer());
  Promise.all(servers.map((s) => new Promise((ok) => s.listen(0, "127.0.0.1", ok)))).then(() => {
    console.log(servers.map((s) => s.address().port).join(" "));
    servers.forEach((s) => s.close());
  });')

server_cmd="'$bin' --host 127.0.0.1 --http-port $http_port --tcp-port $tcp_port --ws-port $ws_port"

stop_server() {
  local pid
  for pid in "${first_pid:-}" "$(cat "$pidfile" 2>/dev/null || true)"; do
    [ -n "$pid" ] || continue
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    fi
  done
  wait 2>/dev/null || true
}
trap stop_server EXIT
trap 'exit 130' INT TERM

echo "e2e: $(chromium --version 2>/dev/null || echo 'chromium version unknown'); node $(node --version)"
echo "e2e: server on http://127.0.0.1:$http_port (tcp $tcp_port, ws $ws_port), log $server_log"
"$bin" --host 127.0.0.1 --http-port "$http_port" --tcp-port "$tcp_port" --ws-port "$ws_port" \
  >>"$server_log" 2>&1 &
first_pid=$!
echo "$first_pid" > "$pidfile"

# Ready means /healthz answers and the TCP port accepts (every listener is bound).
ready=0
for _ in $(seq 1 300); do
  if ! kill -0 "$first_pid" 2>/dev/null; then
    echo "e2e: the server exited during start-up:" >&2
    tail -n 50 "$server_log" >&2
    exit 1
  fi
  if node -e '
      fetch(process.argv[1], { signal: AbortSignal.timeout(1000) })
        .then((r) => r.text().then((t) => process.exit(r.status === 200 && t.trim() === "ok" ? 0 : 1)))
        .catch(() => process.exit(1));' "http://127.0.0.1:$http_port/healthz" \
     && (exec 3<>"/dev/tcp/127.0.0.1/$tcp_port") 2>/dev/null; then
    ready=1
    break
  fi
  sleep 0.1
done
if [ "$ready" != 1 ]; then
  echo "e2e: the server did not become ready in 30 s" >&2
  tail -n 50 "$server_log" >&2
  exit 1
fi

status=0
(
  cd e2e
  # shellcheck disable=SC2086 # E2E_TEST_ARGS is a list of flags
  E2E_BASE_URL="http://127.0.0.1:$http_port" \
  E2E_TCP_PORT="$tcp_port" \
  E2E_SERVER_CMD="$server_cmd" \
  E2E_SERVER_PIDFILE="$pidfile" \
  E2E_SERVER_LOG="$server_log" \
  E2E_ARTIFACTS="$artifacts" \
  timeout --kill-after=10 "$run_timeout" \
    node --test --test-concurrency=1 --test-reporter=spec ${E2E_TEST_ARGS:-} chat.test.mjs
) || status=$?

if [ "$status" != 0 ]; then
  echo "e2e: FAILED (exit $status). Artifacts in $artifacts:" >&2
  ls -l "$artifacts" >&2 || true
  echo "---- last 60 lines of the server log ----" >&2
  tail -n 60 "$server_log" >&2 || true
fi
exit "$status"
