#!/usr/bin/env python3
"""Benchmark scenarios for the chat server; called by bench/run.sh (`make bench`).

Each scenario starts a fresh server on free loopback ports (read from its
banner), drives it with target/release/chat-load (and, where needed,
bench/churn.py, wrk or bench/http_load.py), stops it by PID, and compares the
figures with the targets. A missed target is reported as MISS and does not
fail the run; the exit status is non-zero only when something could not run.
Writes bench/results.md and bench/results.json.

Floor baseline: fanout-1k, fanout-5k, burst-1k and idle-10k also run against
examples/floor_relay.rs (a minimal line relay with no protocol, driven by
`chat-load --floor`) right after the server, and results.md reports the
server's figures as a ratio to the floor's from the same run, with the
generator's CPU time beside each (in % of one core over its run: near 100
with one thread means chat-load, not the target, set the pace). burst-1k's
generator runs two threads (`--threads 2`) so that it is not the limit of the
floor run. Targets set as ratios to the floor (burst-1k deliveries/s and peak
RSS, fanout-1k and fanout-5k p99) are checked against the floor run of the
same scenario.

Slow readers: slow-readers starts 1,000 clients that join and never read
again (`chat-load --slow-readers`, SO_RCVBUF 4096) beside 100 normal clients
and one sender of 64-byte messages sending as fast as its window (256) lets
it, until /stats `dropped_slow_clients` reaches 1,000 (at most 60 s), then
waits for the normal clients to get everything sent. It reports the server's
peak RSS (VmHWM), the time until all were dropped, messages sent and the
normal group's losses, with the server's default --max-output-bytes.

Durability: durability-1k runs fanout-1k's load three ways, each against a
fresh server: in memory (no --data-dir), `--data-dir TMP --fsync everysec` and
`--data-dir TMP --fsync always` (lobby messages are room history, so every
message goes through the store), in 3 rounds (BENCH_DURABILITY_ROUNDS) with
the order rotated, and results.md gives each mode's medians, their ratio to
the in-memory medians, and each round's p99 over the same round's in-memory
p99. Every mode must lose nothing.

Cluster: cluster-2x and reuse-port-2x start a private redis-server (on a
free loopback port, nothing saved) and two nodes joined through it (`--redis`,
`--node-id n1`/`n2`), drive them with one chat-load whose clients are spread
over both, then run the same load against a single node, and report the two
side by side, with the CPU time of each node and of redis-server (from
/proc/PID/stat, over the chat-load run) and the users each node held.
cluster-2x gives each node its own ports (fanout-1k's load, clients split by
chat-load); reuse-port-2x starts both on the same three ports with
`--reuse-port` (burst-1k's load, clients spread by the kernel). They need
`redis-server` on the PATH (Debian package redis-server) and cannot run
without it.

`bench/run.py --only NAME[,NAME...] [NAME...]` runs just those scenarios
(results.md then says so). bench/compare.py reuses the functions here. The
binaries are taken from $CARGO_TARGET_DIR/release when that is set (as cargo
builds them there), else from target/release.
"""

import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
# Where `cargo build` put the binaries (bench/run.sh builds from the repository root).
TARGET = os.path.join(ROOT, os.environ.get("CARGO_TARGET_DIR") or "target")
SERVER = os.path.join(TARGET, "release", "multiuserchat")
LOAD = os.path.join(TARGET, "release", "chat-load")
FLOOR = os.path.join(TARGET, "release", "examples", "floor_relay")
REDIS_SERVER = shutil.which("redis-server")
# Per-connection logging at info level would be part of what is measured.
SERVER_FLAGS = ["--log-level", "warn"]

STARTED = []  # every child process still to be reaped: Popen objects
TMP = tempfile.mkdtemp(prefix="chat-bench-")


class CouldNotRun(Exception):
    """A scenario could not be run (as opposed to a target being missed)."""


# ---------------------------------------------------------------- processes


def spawn(cmd, **kw):
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, **kw)
    STARTED.append(p)
    return p


def stop(p, grace=3.0):
    """Stops one child we started, by its PID: SIGTERM, then SIGKILL."""
    if p.poll() is None:
        try:
            os.kill(p.pid, signal.SIGTERM)
            p.wait(timeout=grace)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    if p.poll() is None:
        try:
            os.kill(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(timeout=5)
    if p in STARTED:
        STARTED.remove(p)


def stop_all():
    for p in list(STARTED):
        try:
            stop(p, grace=1.0)
        except Exception:  # noqa: BLE001 - best effort during cleanup
            pass


def on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def run_json(cmd, limit, name):
    """Runs a bounded child; returns (exit code, last-line JSON or None, stdout, stderr)."""
    out_path = os.path.join(TMP, f"{name}.out")
    err_path = os.path.join(TMP, f"{name}.err")
    with open(out_path, "w") as out, open(err_path, "w") as err:
        p = spawn(cmd, stdout=out, stderr=err)
        try:
            p.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            stop(p)
            raise CouldNotRun(f"{name}: no result within {limit} s")
        STARTED.remove(p)
    return finish_json(p.returncode, out_path, err_path)


def finish_json(code, out_path, err_path):
    stdout = open(out_path).read()
    stderr = open(err_path).read()
    lines = [l for l in stdout.splitlines() if l.strip()]
    data = None
    if lines:
        try:
            data = json.loads(lines[-1])
        except ValueError:
            data = None
    return code, data, stdout, stderr


class Server:
    """A fresh server on free loopback ports; with `floor`, the floor relay
    (TCP port only) instead. `binary` overrides the server executable;
    `ports` = (tcp, ws, http) gives the ports instead of letting the kernel
    pick them (port 0)."""

    def __init__(self, name, extra=(), binary=None, floor=False, ports=(0, 0, 0)):
        self.log = os.path.join(TMP, f"{name}.server")
        self.out = open(self.log, "w")
        self.floor = floor
        tcp_port, ws_port, http_port = (str(x) for x in ports)
        cmd = [FLOOR, "0"] if floor else [
            binary or SERVER, "--host", "127.0.0.1", "--tcp-port", tcp_port, "--ws-port",
            ws_port, "--http-port", http_port, *SERVER_FLAGS, *extra]
        self.proc = spawn(cmd, stdout=self.out, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        deadline = time.monotonic() + 10
        self.tcp = self.ws = self.http = None
        while time.monotonic() < deadline:
            text = open(self.log).read()
            tcp = re.search(r"tcp://([0-9.]+:\d+)", text)
            ws = re.search(r"ws://([0-9.]+:\d+)/", text)
            http = re.search(r"http://([0-9.]+:\d+)/", text)
            if tcp and floor:
                self.tcp = tcp.group(1)
                break
            if tcp and ws and http:
                self.tcp, self.ws, self.http = tcp.group(1), ws.group(1), http.group(1)
                break
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        if not self.tcp:
            self.stop()
            raise CouldNotRun(f"server did not print its ports: {open(self.log).read()[-500:]!r}")

    def rss_kib(self):
        return status_kib(self.pid, "VmRSS")

    def stats(self):
        with urllib.request.urlopen(f"http://{self.http}/stats", timeout=5) as r:
            return json.loads(r.read())

    def wait_users(self, want, limit):
        """Polls /stats until `users == want`; returns the last count seen."""
        deadline = time.monotonic() + limit
        users = None
        while time.monotonic() < deadline:
            users = self.stats().get("users")
            if users == want:
                return users
            time.sleep(0.1)
        return users

    def stop(self):
        stop(self.proc)
        self.out.close()


class Redis:
    """A private redis-server on a free loopback port, nothing saved to disk,
    started in the foreground as our child and stopped by its PID."""

    def __init__(self, name):
        if not REDIS_SERVER:
            raise CouldNotRun("redis-server is not installed (Debian: apt install "
                              "redis-server); the cluster scenarios need it")
        self.port = free_ports(1)[0]
        self.url = f"redis://127.0.0.1:{self.port}"
        self.log = os.path.join(TMP, f"{name}.redis")
        self.out = open(self.log, "w")
        self.proc = spawn([REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                           "--save", "", "--appendonly", "no", "--daemonize", "no",
                           "--loglevel", "warning"],
                          stdout=self.out, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self.ping():
                return
            time.sleep(0.05)
        self.stop()
        raise CouldNotRun(f"redis-server on port {self.port} did not answer PING: "
                          f"{open(self.log).read()[-300:]!r}")

    def ping(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as c:
                c.sendall(b"PING\r\n")
                return c.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self):
        stop(self.proc)
        self.out.close()


def free_ports(n):
    """`n` distinct loopback TCP ports that nobody listens on right now (all
    bound at once, then released; another process could still take one)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def cpu_secs(pid):
    """utime + stime of a live process, in seconds (/proc/PID/stat), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
        # Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
        rest = text[text.rindex(")") + 2:].split()
        return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def status_kib(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def loadavg():
    try:
        return open("/proc/loadavg").read().split()[0]
    except OSError:
        return "?"


# ---------------------------------------------------------------- checks


def check(name, value, op, target, fmt="{}"):
    ok = value is not None and {"<=": value <= target, ">=": value >= target,
                                "==": value == target}[op]
    return {"check": name, "value": value, "shown": "n/a" if value is None else fmt.format(value),
            "target": f"{op} {fmt.format(target)}", "status": "PASS" if ok else "MISS"}


def load_checks(d, p99_ms=None, min_dps=None):
    errors = sum(d.get(k, 0) for k in ("lost", "duplicated", "reordered", "unexpected",
                                       "disconnected"))
    out = [check("lost", d["lost"], "==", 0),
           check("dup+reordered+unexpected+dropped", errors - d["lost"], "==", 0),
           check("run completed", d["result"], "==", "OK")]
    if p99_ms is not None:
        out.append(check("p99 latency (ms)", d["latency_us"]["p99"] / 1000, "<=", p99_ms,
                         "{:.2f}"))
    if min_dps is not None:
        out.append(check("deliveries/s", d["deliveries_per_sec"], ">=", min_dps, "{:,.0f}"))
    return out


def gen_cpu_shown(d):
    """The generator's CPU time: `S s (P% of one core, T thread(s))`."""
    cpu, pct = d.get("gen_cpu_secs"), d.get("gen_cpu_pct")
    if cpu is None:
        return "n/a"
    threads = d.get("threads", 1)
    return (f"{cpu:.2f} s (" + ("n/a" if pct is None else f"{pct:.0f}%")
            + f" of one core, {threads} thread{'s' if threads != 1 else ''})")


def load_figures(d):
    lat = d["latency_us"]
    return {
        "deliveries/s": f"{d['deliveries_per_sec']:,.0f}",
        "delivered": f"{d['deliveries']:,} of {d['expected_deliveries']:,}",
        "lost/dup/reord": f"{d['lost']}/{d['duplicated']}/{d['reordered']}",
        "latency ms p50/p90/p99/p999/max": "/".join(
            f"{lat[k] / 1000:.2f}" for k in ("p50", "p90", "p99", "p999", "max")),
        "connect s": f"{d['connect_secs']:.2f}",
        "server CPU s": d["server_cpu_secs"],
        "generator CPU": gen_cpu_shown(d),
        "server peak RSS KiB": d["server_peak_rss_kib"],
    }


def raise_open_files(want=65536):
    """Raises this process's soft open-file limit (children inherit it)."""
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        top = want if hard == resource.RLIM_INFINITY else min(want, hard)
        if soft != resource.RLIM_INFINITY and soft < top:
            resource.setrlimit(resource.RLIMIT_NOFILE, (top, hard))
        return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, ValueError, OSError):
        return None


def chat_load(srv, name, args, limit=90):
    ws = ["--ws-addr", srv.ws] if srv.ws else []
    floor = ["--floor"] if srv.floor else []
    cmd = [LOAD, "--addr", srv.tcp, *ws, *floor, *args,
           "--server-pid", str(srv.pid), "--json", "--timeout", str(limit - 10)]
    code, data, stdout, stderr = run_json(cmd, limit, name)
    if data is None:
        raise CouldNotRun(f"{name}: chat-load exited {code} without a result: "
                          f"{(stderr or stdout)[-400:]!r}")
    return {"cmd": "chat-load " + " ".join(floor + args),
            "exit": code, "report": data, "stderr": stderr.strip()[-400:]}


# ---------------------------------------------------------------- scenarios


FANOUT_1K = ["--proto", "tcp-json", "--clients", "1000", "--senders", "100",
             "--messages", "100000", "--rate", "1000", "--duration", "10"]
# The same 1M deliveries/s as fanout-1k: 5,000 receivers, 200 msg/s in all
# from 500 senders (each sends one message every 2.5 s).
FANOUT_5K = ["--proto", "tcp-json", "--clients", "5000", "--senders", "500",
             "--messages", "100000", "--rate", "200", "--duration", "10"]
# burst-1k's load with one generator thread, as reuse-port-2x measures it.
BURST_1K_LOAD = ["--proto", "tcp-json", "--clients", "1000", "--senders", "10",
                 "--messages", "10000000", "--duration", "8"]
# Two generator threads: one saturates its core against the floor relay.
BURST_1K = BURST_1K_LOAD + ["--threads", "2"]
# slow-readers: 1,000 clients that never read beside 100 normal ones and one
# sender (client 0) of 64-byte messages; chat-load adds --stats-addr.
SLOW_READERS = 1000
SLOW_READERS_CAP_SECS = 60
SLOW_READERS_LOAD = ["--proto", "tcp-json", "--clients", "101", "--senders", "1",
                     "--messages", "100000000", "--window", "256", "--message-bytes", "64",
                     "--slow-readers", str(SLOW_READERS), "--slow-rcvbuf", "4096",
                     "--duration", str(SLOW_READERS_CAP_SECS)]
IDLE_CLIENTS = 11000
# The broadcast goes out once no client has received anything for 500 ms: to
# idle connections, after the join traffic (welcomes, lists) has ended; the
# floor relay, which sends nothing on joining, waits the same way.
IDLE_10K = ["--proto", "tcp-json", "--clients", str(IDLE_CLIENTS), "--ws-clients", "1000",
            "--idle", "--settle-ms", "500"]
# The relay speaks no WebSocket: all 11,000 clients are TCP.
IDLE_10K_FLOOR = ["--proto", "tcp-json", "--clients", str(IDLE_CLIENTS), "--idle",
                  "--settle-ms", "500"]
# 100 rooms of 10 (client i in #load{i mod 100}); senders 0..99 are one per room.
ROOMS_1K = ["--proto", "tcp-json", "--clients", "1000", "--rooms", "100", "--senders", "100",
            "--messages", "100000", "--rate", "1000", "--duration", "10"]


def load_once(name, args, binary=None, floor=False, limit=90):
    """One chat-load run against a fresh server (or the floor relay)."""
    srv = Server(name, binary=binary, floor=floor)
    try:
        return chat_load(srv, name, args, limit)
    finally:
        srv.stop()


def idle_once(name, binary=None, floor=False):
    """One idle-10k run; the report gains the server's RSS before and per connection."""
    srv = Server(name, binary=binary, floor=floor)
    try:
        time.sleep(0.3)
        before = srv.rss_kib()
        r = chat_load(srv, name, IDLE_10K_FLOOR if floor else IDLE_10K, limit=120)
    finally:
        srv.stop()
    joined = r["report"].get("server_rss_joined_kib")
    r["rss_before_kib"] = before
    r["rss_per_conn_kib"] = (None if joined is None or before is None
                             else (joined - before) / IDLE_CLIENTS)
    return r


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def floor_figures(ours, floor):
    """Side-by-side rows for two chat-load results (server, floor relay):
    figure -> (ours, floor, ours / floor)."""
    rows = {}

    def row(key, get):
        a, b = get(ours), get(floor)
        rows[key] = (a, b, ratio(a, b))

    row("deliveries/s", lambda r: r["report"]["deliveries_per_sec"])
    row("p99 latency (ms)", lambda r: r["report"]["latency_us"]["p99"] / 1000)
    row("max latency (ms)", lambda r: r["report"]["latency_us"]["max"] / 1000)
    row("server CPU (s)", lambda r: r["report"].get("server_cpu_secs"))
    row("peak RSS (KiB)", lambda r: r["report"].get("server_peak_rss_kib"))
    row("generator CPU (s)", lambda r: r["report"].get("gen_cpu_secs"))
    row("generator CPU (% of one core)", lambda r: r["report"].get("gen_cpu_pct"))
    if "rss_per_conn_kib" in ours:
        row("RSS per connection (KiB)", lambda r: r.get("rss_per_conn_kib"))
    return {"rows": rows, "floor_ok": floor["report"]["result"] == "OK",
            "floor_cmd": floor["cmd"]}


def floor_check(name, rows, key, op, target):
    """A target set as a ratio to the floor relay's figure (`key` of
    floor_figures' rows), shown with both figures."""
    a, b, q = rows.get(key, (None, None, None))
    c = check(name, q, op, target, "{:.2f}")
    if q is not None:
        c["shown"] = f"{q:.2f} ({fmt_figure(key, a)} / {fmt_figure(key, b)})"
    return c


def simple_load(name, args, p99_ms=None, min_dps=None, floor=False, extra_checks=None,
                floor_checks=None):
    """A scenario of one chat-load run (then the floor relay's, with
    `floor`). `extra_checks(report)` and `floor_checks(floor rows)` return
    more checks."""
    def run():
        r = load_once(name, args)
        d = r["report"]
        out = {"figures": load_figures(d), "checks": load_checks(d, p99_ms, min_dps),
               "raw": r}
        if extra_checks:
            out["checks"] += extra_checks(d)
        if floor:
            f = load_once(f"{name}-floor", args, floor=True)
            out["floor"] = floor_figures(r, f)
            out["raw"] = {"server": r, "floor": f}
            out["figures"]["floor generator CPU"] = gen_cpu_shown(f["report"])
            if floor_checks:
                out["checks"] += floor_checks(out["floor"]["rows"])
        return out
    return run


# Targets of the delivery-path work, as ratios to the floor relay in the same run.
BURST_1K_MIN_DPS_RATIO = 0.8
BURST_1K_MAX_RSS_KIB = 10_000_000 / 1024  # 10 MB
BURST_1K_MAX_RSS_RATIO = 3.0
FANOUT_1K_MAX_P99_RATIO = 1.2
FANOUT_5K_MAX_P99_RATIO = 1.1
IDLE_10K_MAX_BROADCAST_MS = 60.0
SLOW_READERS_MAX_RSS_KIB = 64 * 1024  # 64 MiB


def burst_1k_floor_checks(rows):
    return [floor_check("deliveries/s / floor", rows, "deliveries/s", ">=",
                        BURST_1K_MIN_DPS_RATIO),
            floor_check("peak RSS / floor", rows, "peak RSS (KiB)", "<=",
                        BURST_1K_MAX_RSS_RATIO)]


def burst_1k_checks(d):
    return [check("server peak RSS (KiB), <= 10 MB", d.get("server_peak_rss_kib"), "<=",
                  BURST_1K_MAX_RSS_KIB, "{:,.0f}")]


def p99_floor_checks(target):
    return lambda rows: [floor_check("p99 latency / floor", rows, "p99 latency (ms)", "<=",
                                     target)]


def slow_readers_once(name, binary=None):
    """One slow-readers run against a fresh server; the report gains the
    server's /stats after the run and its --max-output-bytes (the default)."""
    srv = Server(name, binary=binary)
    try:
        r = chat_load(srv, name, SLOW_READERS_LOAD + ["--stats-addr", srv.http],
                      limit=SLOW_READERS_CAP_SECS + 60)
        try:
            r["stats_end"] = srv.stats()
        except (OSError, ValueError):
            r["stats_end"] = None
    finally:
        srv.stop()
    r["cmd"] = "chat-load " + " ".join(SLOW_READERS_LOAD) + " --stats-addr HTTP"
    return r


def slow_readers():
    name = "slow-readers"
    r = slow_readers_once(name)
    d = r["report"]
    stats_end = r.get("stats_end") or {}
    dropped = d.get("slow_dropped")
    secs = d.get("slow_all_dropped_secs")
    rss = d.get("server_peak_rss_kib")
    figures = {
        "server peak RSS KiB (VmHWM)": rss,
        "server peak RSS MiB": None if rss is None else round(rss / 1024, 1),
        "server RSS once all joined KiB": d.get("server_rss_joined_kib"),
        "slow readers joined / dropped by the server (/stats)":
            f"{d.get('slow_joined')} / {dropped}",
        "all slow readers dropped after (s, from the first send)":
            "not within the cap" if secs is None else f"{secs:.2f}",
        "messages sent (64-byte text)": f"{d['messages_sent']:,}",
        "normal group delivered": f"{d['deliveries']:,} of {d['expected_deliveries']:,} "
                                  f"({d['clients']} clients: 100 + the sender)",
        "lost/dup/reord": f"{d['lost']}/{d['duplicated']}/{d['reordered']}",
        "normal group latency ms p50/p99/max": "/".join(
            f"{d['latency_us'][k] / 1000:.2f}" for k in ("p50", "p99", "max")),
        "server CPU s": d["server_cpu_secs"],
        "generator CPU": gen_cpu_shown(d),
        "server --max-output-bytes": "4194304 (default)",
        "/stats at the end: users, dropped_slow_clients": (
            f"{stats_end.get('users')}, {stats_end.get('dropped_slow_clients')}"),
    }
    checks = load_checks(d) + [
        check("slow readers dropped by the server", dropped, "==", SLOW_READERS, "{:,}"),
        check("server peak RSS (KiB), <= 64 MiB", rss, "<=", SLOW_READERS_MAX_RSS_KIB,
              "{:,.0f}"),
        {"check": "all slow readers dropped after (s)", "value": secs,
         "shown": "n/a" if secs is None else f"{secs:.2f}",
         "target": "(no target: reported)", "status": "INFO"},
    ]
    return {"figures": figures, "checks": checks, "raw": r}


def rooms_1k():
    name = "rooms-1k"
    r = load_once(name, ROOMS_1K)
    d = r["report"]
    figures = load_figures(d)
    figures["rooms"] = d.get("rooms")
    figures["misdelivered"] = d.get("misdelivered")
    p99 = d["latency_us"]["p99"] / 1000
    checks = load_checks(d) + [
        check("misdelivered (outside the room)", d.get("misdelivered"), "==", 0),
        check("deliveries == 10 per message", d["deliveries"], "==", d["messages_sent"] * 10,
              "{:,}"),
        {"check": "p99 latency (ms)", "value": p99, "shown": f"{p99:.2f}",
         "target": "(no target: reported)", "status": "INFO"},
    ]
    return {"figures": figures, "checks": checks, "raw": r}


# fanout-1k's load against the server three ways: (mode, server flags). "memory"
# keeps history in memory only (no --data-dir); the others get a fresh data
# directory under the run's temporary directory, removed after the run.
DURABILITY_MODES = [("memory", None), ("everysec", ["--fsync", "everysec"]),
                    ("always", ["--fsync", "always"])]
# Rounds of the three modes (order rotated each round); BENCH_DURABILITY_ROUNDS
# overrides the default 3 (each round takes about 30 s).
DURABILITY_ROUNDS = int(os.environ.get("BENCH_DURABILITY_ROUNDS", "3"))


def durable_once(name, fsync_flags):
    """One fanout-1k run against a fresh server; with `fsync_flags`, the server
    keeps its history in a new data directory (removed afterwards). The
    report gains the server's /stats `history` at the end of the run."""
    data_dir = None
    extra = []
    if fsync_flags is not None:
        data_dir = tempfile.mkdtemp(prefix=f"{name}-data-", dir=TMP)
        extra = ["--data-dir", data_dir, *fsync_flags]
    try:
        srv = Server(name, extra)
        try:
            r = chat_load(srv, name, FANOUT_1K)
            try:
                r["history"] = srv.stats().get("history")
            except (OSError, ValueError):
                r["history"] = None
        finally:
            srv.stop()
    finally:
        if data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
    r["server_flags"] = ("(none: in memory)" if fsync_flags is None
                         else "--data-dir TMP " + " ".join(fsync_flags))
    return r


DURABILITY_FIGURES = [
    # (key, label, value from a chat-load report)
    ("p99_ms", "p99 ms", lambda d: d["latency_us"]["p99"] / 1000),
    ("max_ms", "max ms", lambda d: d["latency_us"]["max"] / 1000),
    ("dps", "deliveries/s", lambda d: d["deliveries_per_sec"]),
    ("cpu_s", "server CPU s", lambda d: d.get("server_cpu_secs")),
]


def durability_1k():
    runs = {mode: [] for mode, _ in DURABILITY_MODES}
    order = []
    for rnd in range(DURABILITY_ROUNDS):
        k = rnd % len(DURABILITY_MODES)
        for mode, flags in DURABILITY_MODES[k:] + DURABILITY_MODES[:k]:
            name = f"durability-1k-{mode}-{rnd + 1}"
            load = loadavg()
            print(f"  round {rnd + 1}: {mode} (load average {load})", flush=True)
            r = durable_once(name, flags)
            r["loadavg_before"] = load
            runs[mode].append(r)
            order.append(f"{mode} ({load})")

    def med(mode, get):
        vals = [get(r["report"]) for r in runs[mode]]
        vals = [v for v in vals if v is not None]
        return statistics.median(vals) if vals else None

    table = {}
    for mode, _ in DURABILITY_MODES:
        row = {"server_flags": runs[mode][0]["server_flags"], "runs": len(runs[mode]),
               "lost": sum(r["report"]["lost"] for r in runs[mode])}
        for key, _label, get in DURABILITY_FIGURES:
            row[key] = med(mode, get)
            row[key + "_runs"] = [get(r["report"]) for r in runs[mode]]
        table[mode] = row
    for mode in table:
        for key, *_ in DURABILITY_FIGURES:
            table[mode][key + "_ratio"] = ratio(table[mode][key], table["memory"][key])
            # Paired: each round's figure over the same round's in-memory figure
            # (runs minutes apart see different machine load; runs of one round
            # are back to back).
            per_round = [ratio(a, b) for a, b in zip(table[mode][key + "_runs"],
                                                     table["memory"][key + "_runs"])]
            table[mode][key + "_round_ratios"] = per_round
            known = [q for q in per_round if q is not None]
            table[mode][key + "_round_ratio_median"] = (statistics.median(known)
                                                        if known else None)

    figures, checks = {}, []
    for mode, flags in DURABILITY_MODES:
        row, rs = table[mode], runs[mode]
        figures[f"{mode}: p99 ms, per round"] = " / ".join(
            f"{v:.2f}" for v in row["p99_ms_runs"])
        figures[f"{mode}: max ms, per round"] = " / ".join(
            f"{v:.2f}" for v in row["max_ms_runs"])
        figures[f"{mode}: deliveries/s, per round"] = " / ".join(
            f"{v:,.0f}" for v in row["dps_runs"])
        figures[f"{mode}: server CPU s, per round"] = " / ".join(
            "n/a" if v is None else f"{v:.2f}" for v in row["cpu_s_runs"])
        if flags is not None:
            for key, label, _ in DURABILITY_FIGURES:
                figures[f"{mode}: {label} / in memory, same round"] = " / ".join(
                    "n/a" if q is None else f"{q:.2f}" for q in row[key + "_round_ratios"])
        figures[f"{mode}: delivered (all runs)"] = (
            f"{sum(r['report']['deliveries'] for r in rs):,} of "
            f"{sum(r['report']['expected_deliveries'] for r in rs):,}")
        hist = [r.get("history") or {} for r in rs]
        if flags is not None:
            figures[f"{mode}: history bytes at end per run"] = " / ".join(
                f"{h.get('bytes', 0):,}" for h in hist)
        errors = sum(r["report"].get(k, 0) for r in rs
                     for k in ("duplicated", "reordered", "unexpected", "disconnected"))
        checks += [
            check(f"{mode}: lost (all {len(rs)} runs)", row["lost"], "==", 0),
            check(f"{mode}: dup+reordered+unexpected+dropped", errors, "==", 0),
            check(f"{mode}: runs completed", sum(r["report"]["result"] == "OK" for r in rs),
                  "==", len(rs)),
        ]
        if flags is not None:
            checks += [
                check(f"{mode}: history stored (runs with bytes > 0)",
                      sum(h.get("bytes", 0) > 0 for h in hist), "==", len(rs)),
                check(f"{mode}: history degraded (runs)",
                      sum(bool(h.get("degraded", True)) for h in hist), "==", 0),
            ]
        q = row["p99_ms_ratio"]
        checks.append({"check": f"{mode}: p99 latency (ms), median of {len(rs)}",
                       "value": row["p99_ms"],
                       "shown": f"{row['p99_ms']:.2f}" + ("" if mode == "memory" or q is None
                                                          else f" ({q:.2f}x in memory)"),
                       "target": "(no target: reported)", "status": "INFO"})
    figures["run order (load average before)"] = ", ".join(order)
    return {
        "figures": figures, "checks": checks, "durability": table,
        "raw": {"chat_load": {"cmd": "chat-load " + " ".join(FANOUT_1K)},
                "runs": runs},
    }


def idle_10k(run_no):
    name = f"idle-10k-{run_no}"
    r = idle_once(name)
    d = r["report"]
    before, per = r["rss_before_kib"], r["rss_per_conn_kib"]
    joined = d.get("server_rss_joined_kib")
    f = idle_once(f"{name}-floor", floor=True)
    bmax = d["latency_us"]["max"] / 1000
    return {
        "figures": {
            "server VmRSS before KiB": before, "server VmRSS all joined KiB": joined,
            "RSS per connection KiB": None if per is None else round(per, 3),
            "broadcast to all 11,000 ms (max)": round(bmax, 2),
            "broadcast p50/p99 ms": f"{d['latency_us']['p50'] / 1000:.2f}/"
                                    f"{d['latency_us']['p99'] / 1000:.2f}",
            "connect+join s": f"{d['connect_secs']:.2f}",
            "delivered": f"{d['deliveries']:,} of {d['expected_deliveries']:,}",
        },
        "checks": [check("RSS per connection (KiB)", per, "<=", 2.0, "{:.2f}"),
                   check("broadcast reaches all (ms)", bmax, "<=", 100.0, "{:.1f}"),
                   check("broadcast reaches all (ms), delivery-path target", bmax, "<=",
                         IDLE_10K_MAX_BROADCAST_MS, "{:.1f}"),
                   check("lost", d["lost"], "==", 0),
                   check("run completed", d["result"], "==", "OK")],
        "key": bmax,
        "floor": floor_figures(r, f),
        "raw": {"server": r, "floor": f},
    }


def http_scenario():
    name = "http"
    srv = Server(name)
    try:
        wrk = shutil.which("wrk")
        if wrk:
            cmd = [wrk, "-t2", "-c64", "-d5s", "--latency", "--timeout", "5s",
                   f"http://{srv.http}/"]
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=30,
                                 stdin=subprocess.DEVNULL)
            if out.returncode != 0:
                raise CouldNotRun(f"wrk failed: {out.stderr[-300:]!r}")
            d = parse_wrk(out.stdout)
            d["cmd"] = "wrk -t2 -c64 -d5s --latency http://HOST:PORT/"
        else:
            code, d, stdout, stderr = run_json(
                [sys.executable, os.path.join(BENCH, "http_load.py"), "--addr", srv.http,
                 "--connections", "64", "--duration", "5"], 40, name)
            if d is None:
                raise CouldNotRun(f"http_load.py exited {code}: {stderr[-300:]!r}")
            d["cmd"] = "bench/http_load.py --connections 64 --duration 5"
        rss = srv.rss_kib()
    finally:
        srv.stop()
    lat = d["latency_us"]
    return {
        "figures": {"tool": d["tool"], "requests/s": f"{d['requests_per_sec']:,.0f}",
                    "requests": d["requests"], "errors": d["errors"],
                    "latency ms p50/p90/p99/max": "/".join(
                        "n/a" if lat.get(k) is None else f"{lat[k] / 1000:.2f}"
                        for k in ("p50", "p90", "p99", "max")),
                    "server RSS KiB": rss},
        "checks": [check("errors / non-200", d["errors"], "==", 0),
                   {"check": "requests/s, p99", "value": None,
                    "shown": f"{d['requests_per_sec']:,.0f} req/s, p99 "
                             + ("n/a" if lat.get("p99") is None
                                else f"{lat['p99'] / 1000:.2f} ms"),
                    "target": "(no target: reported)", "status": "INFO"}],
        "raw": d,
    }


def parse_wrk(text):
    def to_us(v):
        m = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", v)
        if not m:
            return None
        return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6, "m": 6e7}[m.group(2)]

    lat = {}
    for q, key in (("50%", "p50"), ("90%", "p90"), ("99%", "p99")):
        m = re.search(rf"^\s*{re.escape(q)}\s+(\S+)", text, re.M)
        lat[key] = to_us(m.group(1)) if m else None
    m = re.search(r"^\s*Latency\s+\S+\s+\S+\s+(\S+)", text, re.M)
    lat["max"] = to_us(m.group(1)) if m else None
    rps = re.search(r"Requests/sec:\s+([0-9.]+)", text)
    reqs = re.search(r"(\d+) requests in", text)
    errors = 0
    for m in re.finditer(r"Non-2xx or 3xx responses: (\d+)", text):
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errors += sum(int(x) for x in m.groups())
    return {"tool": "wrk", "requests_per_sec": float(rps.group(1)) if rps else 0.0,
            "requests": int(reqs.group(1)) if reqs else 0, "errors": errors,
            "latency_us": lat, "output": text}


def churn_scenario():
    name = "churn"
    srv = Server(name)
    try:
        time.sleep(0.3)
        rss_start = srv.rss_kib()
        load_args = ["--proto", "tcp-json", "--clients", "1000", "--senders", "100",
                     "--messages", "100000", "--rate", "100", "--duration", "14"]
        cmd = [LOAD, "--addr", srv.tcp, *load_args, "--server-pid", str(srv.pid),
               "--json", "--timeout", "80"]
        lo, le = os.path.join(TMP, "churn-load.out"), os.path.join(TMP, "churn-load.err")
        with open(lo, "w") as out, open(le, "w") as err:
            load = spawn(cmd, stdout=out, stderr=err)
        if srv.wait_users(1000, 30) != 1000:
            raise CouldNotRun("churn: the 1,000 staying clients did not join")
        churn_cmd = [sys.executable, os.path.join(BENCH, "churn.py"), "--addr", srv.tcp,
                     "--rate", "500", "--duration", "10", "--hold-ms", "50",
                     "--server-pid", str(srv.pid)]
        code, churn, _, cerr = run_json(churn_cmd, 60, "churn-cycles")
        if churn is None:
            raise CouldNotRun(f"churn.py exited {code}: {cerr[-300:]!r}")
        users_after_churn = srv.wait_users(1000, 5)
        rss_churn_end = srv.rss_kib()
        try:
            load.wait(timeout=90)
        except subprocess.TimeoutExpired:
            stop(load)
            raise CouldNotRun("churn: chat-load did not finish")
        STARTED.remove(load)
        lcode, d, lout, lerr = finish_json(load.returncode, lo, le)
        if d is None:
            raise CouldNotRun(f"churn: chat-load exited {lcode}: {(lerr or lout)[-300:]!r}")
        users_end = srv.wait_users(0, 10)
        time.sleep(0.5)
        rss_end = srv.rss_kib()
        stats_end = srv.stats()
    finally:
        srv.stop()
    samples = [kib for _, kib in churn["rss_kib"] if kib is not None]
    warm = samples[min(3, len(samples) - 1)] if samples else None
    last = samples[-1] if samples else None
    growth = None if warm is None or last is None else last - warm
    return {
        "figures": {
            "join/leave cycles": f"{churn['completed']:,} of {churn['started']:,} "
                                 f"({churn['cycles_per_sec']}/s, {churn['failed']} failed)",
            "churn join ms p50/p99/max": "/".join(
                "n/a" if churn["join_ms"][k] is None else f"{churn['join_ms'][k]:.1f}"
                for k in ("p50", "p99", "max")),
            "staying clients delivered": f"{d['deliveries']:,} of {d['expected_deliveries']:,}",
            "staying clients latency ms p50/p99/max": "/".join(
                f"{d['latency_us'][k] / 1000:.2f}" for k in ("p50", "p99", "max")),
            "users after churn / after all left": f"{users_after_churn} / {users_end}",
            "server VmRSS KiB start / churn 3 s / churn end / all left":
                f"{rss_start} / {warm} / {last} / {rss_end}",
            "RSS samples during churn KiB": " ".join(str(s) for s in samples),
        },
        "checks": [check("lost (staying clients)", d["lost"], "==", 0),
                   check("staying run completed", d["result"], "==", "OK"),
                   check("churn cycles failed", churn["failed"], "==", 0),
                   check("users == 1000 after churn", users_after_churn, "==", 1000),
                   check("/stats users after all left", users_end, "==", 0),
                   check("RSS growth churn 3 s -> end (KiB)", growth, "<=", 1024)],
        "raw": {"chat_load": {"cmd": "chat-load " + " ".join(load_args), "exit": lcode,
                              "report": d},
                "churn": {"cmd": "bench/churn.py --rate 500 --duration 10 --hold-ms 50",
                          "exit": code, "report": churn},
                "stats_end": stats_end},
    }


# ---------------------------------------------------------------- cluster

# The two nodes of cluster-2x and reuse-port-2x (their --node-id).
CLUSTER_NODES = ("n1", "n2")


def http_stats(addr, timeout=5):
    with urllib.request.urlopen(f"http://{addr}/stats", timeout=timeout) as r:
        return json.loads(r.read())


def node_stats(http_addrs, want, limit):
    """The latest /stats of each node in `want` (cluster node ids), polling
    `http_addrs` until every one of them has answered with its Redis link up.
    With --reuse-port one address reaches either node (the kernel picks), so
    it is asked again until both have answered. CouldNotRun after `limit` s."""
    seen = {}
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        for addr in http_addrs:
            try:
                st = http_stats(addr, timeout=2)
            except (OSError, ValueError):
                continue
            node = (st.get("cluster") or {}).get("node")
            if node in want:
                seen[node] = st
        if all(seen.get(n, {}).get("cluster", {}).get("up") for n in want):
            return seen
        time.sleep(0.05)
    state = {n: seen[n]["cluster"].get("up") if n in seen else "no answer" for n in want}
    raise CouldNotRun(f"cluster nodes not all up with Redis within {limit} s: {state}")


class UsersPoller:
    """Samples /stats `users` at every HTTP address, twice every 0.25 s (a
    shared port reaches one node or the other), in a thread; `stop()` returns
    the most users seen per node id ("node" for a server without a cluster)."""

    def __init__(self, http_addrs):
        self.addrs = list(http_addrs)
        self.peak = {}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.done.wait(0.25):
            for addr in self.addrs:
                for _ in range(2):
                    try:
                        st = http_stats(addr, timeout=2)
                    except (OSError, ValueError):
                        continue
                    node = (st.get("cluster") or {}).get("node", "node")
                    self.peak[node] = max(self.peak.get(node, 0), st.get("users") or 0)

    def stop(self):
        self.done.set()
        self.thread.join(timeout=10)
        return dict(self.peak)


def measured_load(name, addrs, http_addrs, procs, args, shown_addrs, limit=90):
    """One chat-load run with its clients spread over `addrs` (round-robin).
    The result gains the CPU time (utime + stime) each process of `procs`
    (label -> pid) used over the run, in seconds and in % of one core over
    the run's wall time, and the peak users of each node seen in /stats."""
    cmd = [LOAD, *[x for a in addrs for x in ("--addr", a)], *args, "--json",
           "--timeout", str(limit - 10)]
    before = {k: cpu_secs(pid) for k, pid in procs.items()}
    poller = UsersPoller(http_addrs)
    t0 = time.monotonic()
    try:
        code, data, stdout, stderr = run_json(cmd, limit, name)
    finally:
        wall = time.monotonic() - t0
        peak = poller.stop()
    after = {k: cpu_secs(pid) for k, pid in procs.items()}
    if data is None:
        raise CouldNotRun(f"{name}: chat-load exited {code} without a result: "
                          f"{(stderr or stdout)[-400:]!r}")
    cpu = {}
    for k in procs:
        a, b = before[k], after[k]
        used = None if a is None or b is None else b - a
        cpu[k] = {"secs": used, "pct_of_core": None if used is None else 100 * used / wall}
    return {"cmd": f"chat-load {shown_addrs} " + " ".join(args), "exit": code,
            "report": data, "stderr": stderr.strip()[-400:], "cpu": cpu,
            "wall_secs": round(wall, 2), "peak_users": peak}


def cluster_run(name, args, shared_port):
    """`args` against two nodes joined through a private redis-server: each on
    its own kernel-chosen ports, chat-load splitting the clients between them,
    or (`shared_port`) both on the same three free ports with --reuse-port,
    the kernel spreading the clients. The result gains each node's /stats
    after the run."""
    redis = Redis(name)
    nodes = []
    try:
        ports = tuple(free_ports(3)) if shared_port else (0, 0, 0)
        for nid in CLUSTER_NODES:
            extra = ["--redis", redis.url, "--node-id", nid]
            if shared_port:
                extra.append("--reuse-port")
            nodes.append(Server(f"{name}-{nid}", extra, ports=ports))
        tcp = list(dict.fromkeys(n.tcp for n in nodes))
        http = list(dict.fromkeys(n.http for n in nodes))
        node_stats(http, CLUSTER_NODES, 10)
        procs = {nid: n.pid for nid, n in zip(CLUSTER_NODES, nodes)}
        procs["redis"] = redis.pid
        shown = ("--addr SHARED (both nodes, --reuse-port)" if shared_port
                 else "--addr NODE1 --addr NODE2")
        r = measured_load(name, tcp, http, procs, args, shown)
        r["node_stats"] = node_stats(http, CLUSTER_NODES, 5)
    finally:
        for n in nodes:
            n.stop()
        redis.stop()
    return r


def single_run(name, args):
    """The same load against one node without Redis, measured the same way."""
    srv = Server(name)
    try:
        return measured_load(name, [srv.tcp], [srv.http], {"node": srv.pid}, args,
                             "--addr NODE")
    finally:
        srv.stop()


def order_shown(d):
    if d.get("order_same"):
        return f"same for {d.get('order_receivers')} receivers"
    return (f"DIFFERS ({d.get('order_distinct')} distinct orders, "
            f"{d.get('order_receivers')} compared)")


def cluster_rows(two, one):
    """Side-by-side rows [figure, 2 nodes, 1 node, 2 nodes / 1 node or None]."""
    a, b = two["report"], one["report"]
    rows = []

    def num(label, va, vb, fmt):
        rows.append([label, "n/a" if va is None else fmt.format(va),
                     "n/a" if vb is None else fmt.format(vb), ratio(va, vb)])

    def text(label, va, vb):
        rows.append([label, va, vb, None])

    num("deliveries/s", a["deliveries_per_sec"], b["deliveries_per_sec"], "{:,.0f}")
    text("delivered", f"{a['deliveries']:,} of {a['expected_deliveries']:,}",
         f"{b['deliveries']:,} of {b['expected_deliveries']:,}")
    text("lost / dup / reordered", f"{a['lost']}/{a['duplicated']}/{a['reordered']}",
         f"{b['lost']}/{b['duplicated']}/{b['reordered']}")
    text("order", order_shown(a), order_shown(b))
    for q in ("p50", "p99", "max"):
        num(f"{q} latency (ms)", a["latency_us"][q] / 1000, b["latency_us"][q] / 1000,
            "{:.2f}")
    text("users per node (peak in /stats)",
         ", ".join(f"{n} {two['peak_users'].get(n, 'n/a')}" for n in CLUSTER_NODES),
         str(one["peak_users"].get("node", "n/a")))

    def cpu_of(r, keys):
        vals = [r["cpu"][k]["secs"] for k in keys]
        return None if None in vals else sum(vals)

    def cpu_each(r, keys):
        """`n1 S s (P%), n2 ...`; one node's figure without its label."""
        shown = ["n/a" if r["cpu"][k]["secs"] is None else
                 f"{r['cpu'][k]['secs']:.2f} s ({r['cpu'][k]['pct_of_core']:.0f}%)"
                 for k in keys]
        if len(keys) == 1:
            return shown[0]
        return ", ".join(f"{k} {v}" for k, v in zip(keys, shown))

    text("node CPU s (% of one core)", cpu_each(two, CLUSTER_NODES), cpu_each(one, ["node"]))
    num("node CPU s, all nodes", cpu_of(two, CLUSTER_NODES), cpu_of(one, ["node"]), "{:.2f}")
    rc = two["cpu"]["redis"]
    text("redis-server CPU s (% of one core)",
         "n/a" if rc["secs"] is None else f"{rc['secs']:.2f} ({rc['pct_of_core']:.0f}%)",
         "(no Redis)")
    num("nodes + Redis CPU s", None if cpu_of(two, CLUSTER_NODES) is None or rc["secs"] is None
        else cpu_of(two, CLUSTER_NODES) + rc["secs"], cpu_of(one, ["node"]), "{:.2f}")
    num("generator CPU s", a.get("gen_cpu_secs"), b.get("gen_cpu_secs"), "{:.2f}")
    num("connect + join s", a["connect_secs"], b["connect_secs"], "{:.2f}")
    text("run (CPU window) s", f"{two['wall_secs']:.1f}", f"{one['wall_secs']:.1f}")
    return rows


def redis_figures(two):
    """Each node's Redis counters from /stats after the run."""
    out = {}
    for n in CLUSTER_NODES:
        c = two["node_stats"].get(n, {}).get("cluster", {})
        out[f"{n}: lines posted / received via Redis"] = (
            f"{c.get('posted', 0):,} / {c.get('received', 0):,}")
        out[f"{n}: gaps filled / lost, last Redis RTT us"] = (
            f"{c.get('gaps_filled')} / {c.get('gaps_lost')}, {c.get('rtt_us')}")
    return out


def cluster_checks(two, one, extra_info):
    a, b = two["report"], one["report"]

    def errors(d):
        return sum(d.get(k, 0) for k in ("duplicated", "reordered", "unexpected",
                                         "disconnected", "misdelivered"))

    same = a.get("order_same")
    return [
        check("2 nodes: lost", a["lost"], "==", 0),
        {"check": "2 nodes: same order at every receiver", "value": same,
         "shown": order_shown(a), "target": "== same",
         "status": "PASS" if same is True else "MISS"},
        check("2 nodes: dup+reordered+unexpected+dropped", errors(a), "==", 0),
        check("2 nodes: run completed", a["result"], "==", "OK"),
        check("1 node: lost", b["lost"], "==", 0),
        check("1 node: run completed", b["result"], "==", "OK"),
        *extra_info,
    ]


def cluster_2x():
    name = "cluster-2x"
    two = cluster_run(name, FANOUT_1K, shared_port=False)
    one = single_run(f"{name}-single", FANOUT_1K)
    a, b = two["report"], one["report"]
    p99a, p99b = a["latency_us"]["p99"] / 1000, b["latency_us"]["p99"] / 1000
    info = [{"check": "2 nodes: p99 latency (ms)", "value": p99a,
             "shown": f"{p99a:.2f} (1 node: {p99b:.2f})", "target": "(no target: reported)",
             "status": "INFO"},
            {"check": "2 nodes: deliveries/s", "value": a["deliveries_per_sec"],
             "shown": f"{a['deliveries_per_sec']:,.0f} (1 node: {b['deliveries_per_sec']:,.0f})",
             "target": "(no target: reported)", "status": "INFO"}]
    figures = {"clients per address (chat-load)": ", ".join(
        f"{x['addr']} {x['clients']}" for x in a.get("addrs", []))}
    figures.update(redis_figures(two))
    figures["run order"] = "2 nodes, then 1 node"
    return {"figures": figures, "checks": cluster_checks(two, one, info),
            "cluster": {"rows": cluster_rows(two, one)},
            "raw": {"two_nodes": two, "one_node": one}}


def reuse_port_2x():
    name = "reuse-port-2x"
    two = cluster_run(name, BURST_1K_LOAD, shared_port=True)
    one = single_run(f"{name}-single", BURST_1K_LOAD)
    a, b = two["report"], one["report"]
    q = ratio(a["deliveries_per_sec"], b["deliveries_per_sec"])
    info = [{"check": "deliveries/s, 2 nodes / 1 node", "value": q,
             "shown": f"{a['deliveries_per_sec']:,.0f} / {b['deliveries_per_sec']:,.0f} = "
                      + ("n/a" if q is None else f"{q:.2f}"),
             "target": "(no target: reported)", "status": "INFO"}]
    figures = {"shared ports": "tcp, ws, http: three free loopback ports, both nodes "
                               "--reuse-port"}
    figures.update(redis_figures(two))
    figures["run order"] = "2 nodes, then 1 node"
    return {"figures": figures, "checks": cluster_checks(two, one, info),
            "cluster": {"rows": cluster_rows(two, one)},
            "raw": {"two_nodes": two, "one_node": one}}


SCENARIOS = [
    ("chat-1k", "1,000 TCP clients, 100 senders, 100 msg/s aggregate for 10 s",
     simple_load("chat-1k", ["--proto", "tcp-json", "--clients", "1000", "--senders", "100",
                             "--messages", "100000", "--rate", "100", "--duration", "10"],
                 p99_ms=2.0), 1),
    ("fanout-1k", "1,000 TCP clients, 100 senders, 1,000 msg/s for 10 s (1M deliveries/s); "
                  "then the floor relay",
     simple_load("fanout-1k", FANOUT_1K, p99_ms=10.0, floor=True,
                 floor_checks=p99_floor_checks(FANOUT_1K_MAX_P99_RATIO)), 1),
    ("fanout-5k", "5,000 TCP clients, 500 senders, 200 msg/s aggregate for 10 s (1M "
                  "deliveries/s); then the floor relay",
     simple_load("fanout-5k", FANOUT_5K, floor=True,
                 floor_checks=p99_floor_checks(FANOUT_5K_MAX_P99_RATIO)), 1),
    ("burst-1k", "1,000 TCP clients, 10 senders as fast as the window (64) allows, 8 s, "
                 "generator on 2 threads; then the floor relay",
     simple_load("burst-1k", BURST_1K, min_dps=2_500_000, floor=True,
                 extra_checks=burst_1k_checks, floor_checks=burst_1k_floor_checks), 1),
    ("slow-readers", f"{SLOW_READERS:,} joined TCP clients that never read, 100 that read "
                     "everything, one sender of 64-byte messages as fast as its window "
                     f"(256) allows until the server dropped all {SLOW_READERS:,} "
                     f"(at most {SLOW_READERS_CAP_SECS} s)",
     slow_readers, 1),
    ("ws-fanout-1k", "fanout-1k over WebSocket",
     simple_load("ws-fanout-1k", ["--proto", "ws", "--clients", "1000", "--senders", "100",
                                  "--messages", "100000", "--rate", "1000", "--duration", "10"],
                 p99_ms=15.0), 1),
    ("rooms-1k", "1,000 TCP clients in 100 rooms of 10 (rooms feature), one sender per room, "
                 "1,000 msg/s aggregate for 10 s; each message must reach exactly its room",
     rooms_1k, 1),
    ("durability-1k", "fanout-1k's load (1,000 TCP clients in #lobby, 100 senders, 1,000 msg/s "
                      "for 10 s) in memory, with --data-dir --fsync everysec and with "
                      "--data-dir --fsync always; fresh server per run, "
                      f"{DURABILITY_ROUNDS} rounds with the order rotated, medians",
     durability_1k, 1),
    ("mixed", "500 TCP-JSON + 250 TCP-text + 250 WebSocket, 100 senders, 200 msg/s for 10 s",
     simple_load("mixed", ["--proto", "mix", "--clients", "1000", "--senders", "100",
                           "--messages", "100000", "--rate", "200", "--duration", "10"]), 1),
    ("idle-10k", "10,000 TCP + 1,000 WebSocket idle joined clients, then one broadcast "
                 "(3 runs, median by broadcast time; each followed by the floor relay with "
                 "11,000 TCP clients)", idle_10k, 3),
    ("http", "keep-alive GET / from 64 connections for 5 s", http_scenario, 1),
    ("churn", "500 joins+leaves/s for 10 s while 1,000 others chat (100 msg/s)",
     churn_scenario, 1),
    ("cluster-2x", "fanout-1k's load (1,000 TCP clients, 100 senders, 1,000 msg/s for 10 s) "
                   "split over 2 nodes joined through a private redis-server, each node on "
                   "its own ports; then the same load against 1 node",
     cluster_2x, 1),
    ("reuse-port-2x", "burst-1k's load (1,000 TCP clients, 10 senders as fast as the window "
                      "allows, 8 s) against 2 nodes sharing the same ports (--reuse-port) and "
                      "joined through a private redis-server; then against 1 node",
     reuse_port_2x, 1),
]


# ---------------------------------------------------------------- report


def machine():
    def cmd(*c):
        try:
            return subprocess.run(c, capture_output=True, text=True, timeout=10,
                                  stdin=subprocess.DEVNULL).stdout.strip()
        except Exception:  # noqa: BLE001
            return "?"
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = status_like("/proc/meminfo", "MemTotal")
    return {
        "nproc": cmd("nproc"),
        "cpu_model": model,
        "memory_kib": mem,
        "kernel": f"{platform.system()} {platform.release()} {platform.version()}",
        "rustc": cmd("rustc", "--version"),
        "python": platform.python_version(),
        "wrk": cmd("wrk", "--version").splitlines()[0] if shutil.which("wrk") else "not installed",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "open_files_limit": cmd("sh", "-c", "ulimit -n"),
        "loadavg_at_start": loadavg(),
    }


def status_like(path, field):
    try:
        for line in open(path):
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def fmt_figure(key, v):
    if v is None:
        return "n/a"
    if key == "deliveries/s":
        return f"{v:,.0f}"
    if "KiB" in key and "per connection" not in key:
        return f"{v:,.0f}"
    if "per connection" in key:
        return f"{v:.3f}"
    return f"{v:.2f}"


def floor_lines(results):
    """Markdown rows of the floor comparison."""
    md = []
    for r in results:
        fl = r.get("floor")
        if not fl:
            continue
        for key, (a, b, q) in fl["rows"].items():
            md.append(f"| {r['name']} | {key} | {fmt_figure(key, a)} | {fmt_figure(key, b)} | "
                      + ("n/a" if q is None else f"{q:.2f}") + " |")
        if not fl["floor_ok"]:
            md.append(f"| {r['name']} | floor run result | | not OK (see results.json) | |")
    return md


def cluster_lines(results):
    """Markdown rows of the cluster table: two nodes beside one node."""
    md = []
    for r in results:
        for label, two, one, q in (r.get("cluster") or {}).get("rows", []):
            md.append(f"| {r['name']} | {label} | {two} | {one} | "
                      + ("" if q is None else f"{q:.2f}") + " |")
    return md


def durability_lines(results):
    """Markdown rows of the durability table: each mode's medians, with the
    ratio to the in-memory run's median in brackets."""
    md = []
    for r in results:
        table = r.get("durability")
        if not table:
            continue
        for mode, row in table.items():
            cells = []
            for key, label, _ in DURABILITY_FIGURES:
                v, q = row[key], row[key + "_ratio"]
                shown = ("n/a" if v is None else f"{v:,.0f}" if key == "dps" else f"{v:.2f}")
                cells.append(shown + ("" if q is None or mode == "memory" else f" ({q:.2f}x)"))
            pr = row["p99_ms_round_ratios"]
            paired = ("(reference)" if mode == "memory" else "n/a" if not pr else
                      " / ".join("n/a" if q is None else f"{q:.2f}" for q in pr)
                      + f" (median {row['p99_ms_round_ratio_median']:.2f})")
            md.append(f"| {mode} | {row['server_flags']} | " + " | ".join(cells)
                      + f" | {paired} | {row['lost']} | "
                      + ("PASS" if row["lost"] == 0 else "MISS") + " |")
    return md


def write_results(mach, results, total_secs, only=None):
    with open(os.path.join(BENCH, "results.json"), "w") as f:
        json.dump({"machine": mach, "total_secs": round(total_secs, 1), "only": only,
                   "server_flags": SERVER_FLAGS, "scenarios": results}, f, indent=2)
        f.write("\n")
    md = ["# Benchmark results", "",
          "Written by `make bench` (bench/run.sh). Every scenario ran against a fresh "
          "server on loopback ports (`--log-level warn`, other flags at their defaults, "
          "`--summary-above` 1000, history in memory; durability-1k adds `--data-dir` and "
          "`--fsync`; cluster-2x and reuse-port-2x add `--redis` and `--node-id`, and "
          "reuse-port-2x `--reuse-port`). The load generator shares the machine with the "
          "server.",
          "",
          "## Machine", "",
          f"- CPUs: {mach['nproc']} x {mach['cpu_model']}, memory {mach['memory_kib']} KiB",
          f"- Kernel: {mach['kernel']}",
          f"- {mach['rustc']}; Python {mach['python']}; wrk: {mach['wrk']}",
          f"- Date: {mach['date']}; open-file limit {mach['open_files_limit']}",
          f"- Load average (1 min) at start: {mach['loadavg_at_start']}. This is a shared, "
          "noisy 2-core machine: other builds may run at the same time, and the generator, "
          "the server (and churn / HTTP clients) compete for the same two cores, so "
          "latency tails in particular vary between runs.",
          f"- Total bench time: {total_secs:.0f} s", ""]
    if only:
        md += [f"Partial run (`--only {','.join(only)}`): the other scenarios were not run.", ""]
    md += ["## Summary", "",
          "| Scenario | Check | Measured | Target | Result |",
          "|---|---|---|---|---|"]
    for r in results:
        if r.get("error"):
            md.append(f"| {r['name']} | could not run | {r['error'][:120]} | | ERROR |")
            continue
        for c in r["checks"]:
            md.append(f"| {r['name']} | {c['check']} | {c['shown']} | {c['target']} | "
                      f"{c['status']} |")
    floor = floor_lines(results)
    if floor:
        md += ["", "## Floor baseline", "",
               "`examples/floor_relay.rs` is about the least a line relay can do on this "
               "machine: one mio loop, no protocol (no join, no welcome, no parsing), every "
               "line read in a loop turn written to every connection with one `writev` per "
               "turn. Each of these scenarios ran against it right after the server, with "
               "the same chat-load flags plus `--floor` (idle-10k: 11,000 TCP clients, as the "
               "relay has no WebSocket; figures from the same run as the median). A ratio "
               "above 1 means the server's figure is higher: better for deliveries/s, worse "
               "for latency, CPU and memory. The generator rows are chat-load's own CPU time "
               "(utime + stime of all its threads) and that in % of one core over its run: "
               "near 100% with one thread, or near the machine's spare capacity with two "
               "(burst-1k runs `--threads 2`), means chat-load, not the relay, set the "
               "floor's pace, and a deliveries/s ratio then overstates the server.", "",
               "| Scenario | Figure | Server | Floor | Server / floor |",
               "|---|---|---|---|---|", *floor]
    durable = durability_lines(results)
    if durable:
        rounds = next(r["durability"]["memory"]["runs"] for r in results if r.get("durability"))
        md += ["", "## Durability (fanout-1k load)", "",
               "The durability-1k scenario: fanout-1k's load (1,000 TCP clients in #lobby, "
               "100 senders, 1,000 msg/s for 10 s, about 1M deliveries/s; lobby messages are "
               "room history, so every message is stored) against a fresh server per run, "
               "three ways: history in memory (no `--data-dir`), and in a fresh data "
               "directory under a temporary directory with `--fsync everysec` (written every "
               "loop turn, synced once a second) and `--fsync always` (group commit: one "
               "write and one `fdatasync` per loop turn before that turn's output is "
               f"flushed). {rounds} rounds, the three modes back to back in each, the order "
               "rotated from round to round so that a change in machine load does not hit "
               "one mode only. Each figure is the median over the rounds; in brackets its "
               "ratio to the in-memory median (above 1: higher than in memory, i.e. worse "
               "for latency and CPU, better for deliveries/s). Lost is the total over all "
               "runs of that mode and must be 0. \"p99 / in memory, per round\" pairs "
               "each run with the in-memory run of the same round (minutes apart the "
               "machine's load differs more than between back-to-back runs); its median is "
               "the steadier estimate of the cost when one round was disturbed. Per-run "
               "figures, and the load average before each run, are in the scenario's "
               "section below.", "",
               "| Mode | Server flags | p99 ms | max ms | deliveries/s | server CPU s "
               "| p99 / in memory, per round | lost | 0 lost |",
               "|---|---|---|---|---|---|---|---|---|", *durable]
    cluster = cluster_lines(results)
    if cluster:
        md += ["", "## Cluster: two nodes beside one", "",
               "cluster-2x and reuse-port-2x start a private `redis-server` (free loopback "
               "port, nothing saved) and two nodes joined through it (`--redis`, `--node-id "
               "n1`/`n2`), run one chat-load against both, stop them, then run the same load "
               "against one node without Redis, in the same run. cluster-2x gives each node "
               "its own ports and chat-load puts client i on node i mod 2; reuse-port-2x "
               "starts both nodes on the same three ports with `--reuse-port` and the kernel "
               "spreads the connections. In a cluster every room line goes through Redis "
               "(one Lua script per line, then pub/sub back to every node, the sender's "
               "included), so the nodes' work is not simply split in two. CPU figures are "
               "utime + stime from `/proc/PID/stat` over the chat-load run (\"run\" row), "
               "and % of one core is that over the run's wall time; the machine has two "
               "cores shared by the nodes, Redis and chat-load. Order: every receiver must "
               "have seen the lobby's lines in one and the same order (chat-load's same-order "
               "check). A ratio above 1 means the two nodes' figure is higher.", "",
               "| Scenario | Figure | 2 nodes | 1 node | 2 nodes / 1 node |",
               "|---|---|---|---|---|", *cluster]
    md += ["", "## Scenarios", ""]
    for r in results:
        md += [f"### {r['name']}: {r['status']}", "", r["description"], "",
               f"Load average (1 min) before: {r['loadavg_before']}; took {r['secs']:.1f} s.", ""]
        if r.get("error"):
            md += [f"Could not run: `{r['error']}`", ""]
            continue
        if r.get("runs"):
            md += [f"Runs (median shown, figures from that one run): "
                   + "; ".join(f"run {i + 1}: {k}" for i, k in enumerate(r["runs"])), ""]
        md += ["| Figure | Value |", "|---|---|"]
        md += [f"| {k} | {v} |" for k, v in r["figures"].items()]
        md.append("")
        cmds = commands_of(r["raw"])
        if cmds:
            md += ["Commands: " + "; ".join(f"`{c}`" for c in cmds), ""]
    with open(os.path.join(BENCH, "results.md"), "w") as f:
        f.write("\n".join(md) + "\n")


def floor_note(run):
    fl = run.get("floor", {}).get("rows", {})
    b = fl.get("max latency (ms)", (None, None, None))[1]
    per = fl.get("RSS per connection (KiB)", (None, None, None))[1]
    if b is None:
        return ""
    return f" (floor {b:.1f} ms, " + ("n/a" if per is None else f"{per:.3f}") + " KiB/conn)"


def commands_of(raw):
    if isinstance(raw, dict):
        if "cmd" in raw:
            return [raw["cmd"]]
        return [c for v in raw.values() for c in commands_of(v)]
    return []


def main():
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    only = None
    args = sys.argv[1:]
    if args[:1] == ["--only"] and len(args) >= 2:
        only = [n for a in args[1:] for n in a.split(",") if n]
        unknown = set(only) - {name for name, *_ in SCENARIOS}
        if unknown:
            print(f"bench: unknown scenario(s): {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
    elif args:
        print("usage: bench/run.py [--only NAME[,NAME...] [NAME...]]", file=sys.stderr)
        return 2
    raise_open_files()
    for exe in (SERVER, LOAD, FLOOR):
        if not os.access(exe, os.X_OK):
            print(f"bench: {exe} is missing; build first", file=sys.stderr)
            return 2
    t0 = time.monotonic()
    mach = machine()
    results, could_not_run = [], 0
    try:
        for name, desc, fn, repeat in SCENARIOS:
            if only and name not in only:
                continue
            print(f"bench: {name}: {desc}", flush=True)
            entry = {"name": name, "description": desc, "loadavg_before": loadavg()}
            s0 = time.monotonic()
            try:
                if repeat > 1:
                    runs = [fn(i + 1) for i in range(repeat)]
                    med = sorted(runs, key=lambda x: x["key"])[len(runs) // 2]
                    entry.update(med)
                    entry["runs"] = [f"{x['key']:.1f} ms broadcast, "
                                     f"{x['figures']['RSS per connection KiB']} KiB/conn"
                                     + floor_note(x) for x in runs]
                    entry["all_runs"] = [x["raw"] for x in runs]
                    entry["median_of"] = repeat
                else:
                    entry.update(fn())
                statuses = [c["status"] for c in entry["checks"]]
                entry["status"] = "MISS" if "MISS" in statuses else "PASS"
            except CouldNotRun as e:
                could_not_run += 1
                entry.update(status="ERROR", error=str(e))
            entry["secs"] = round(time.monotonic() - s0, 1)
            results.append(entry)
            for c in entry.get("checks", []):
                print(f"  {c['status']:<5} {c['check']}: {c['shown']} (target {c['target']})",
                      flush=True)
            for key, (a, b, q) in entry.get("floor", {}).get("rows", {}).items():
                print(f"  floor {key}: server {fmt_figure(key, a)}, floor {fmt_figure(key, b)}"
                      + ("" if q is None else f", ratio {q:.2f}"), flush=True)
            for label, two, one, q in entry.get("cluster", {}).get("rows", []):
                print(f"  {label}: 2 nodes {two}; 1 node {one}"
                      + ("" if q is None else f"; ratio {q:.2f}"), flush=True)
            for line in durability_lines([entry]):
                print("  " + line, flush=True)
            if entry.get("error"):
                print(f"  ERROR {entry['error']}", flush=True)
    finally:
        stop_all()
        write_results(mach, results, time.monotonic() - t0, only)
        if could_not_run:
            print(f"bench: logs kept in {TMP}", file=sys.stderr)
        else:
            shutil.rmtree(TMP, ignore_errors=True)
    print(f"bench: wrote bench/results.md and bench/results.json "
          f"({time.monotonic() - t0:.0f} s)")
    missed = [r["name"] for r in results if r["status"] == "MISS"]
    if missed:
        print(f"bench: targets missed in: {', '.join(missed)} (see bench/results.md)")
    if could_not_run:
        print(f"bench: {could_not_run} scenario(s) could not run", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
