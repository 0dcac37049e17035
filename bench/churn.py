#!/usr/bin/env python3
"""Join/leave churn against the chat port, bounded in count and time.

Starts one short-lived client every 1/RATE seconds (at most --max-cycles, at
most --max-in-flight at once, for --duration seconds). Each client joins
(3 of 4 as JSON lines, 1 of 4 in plain-text mode), waits for its welcome, stays
--hold-ms while discarding whatever it receives, then leaves: half send the
protocol's exit request and wait for the server to close, half just close the
socket (an abrupt leave). Every wait has a deadline.

With --server-pid, the server's VmRSS is sampled once per second.
Prints one JSON object (the last stdout line): cycles started / completed /
failed, join latency percentiles, RSS samples. Loopback targets only.
"""

import argparse
import asyncio
import ipaddress
import json
import os
import sys
import time

JOIN_TIMEOUT = 5.0
LEAVE_TIMEOUT = 3.0


def loopback(addr):
    host, _, port = addr.rpartition(":")
    host = host.strip("[]")
    if not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"churn: refusing non-loopback target {addr}")
    return host, int(port)


def vm_rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def pct(sorted_vals, q):
    if not sorted_vals:
        return None
    i = min(len(sorted_vals) - 1, int(q * len(sorted_vals)))
    return sorted_vals[i]


class Stats:
    def __init__(self):
        self.started = 0
        self.completed = 0
        self.failed = 0
        self.first_error = None
        self.join_ms = []
        self.skipped_busy = 0

    def fail(self, why):
        self.failed += 1
        if self.first_error is None:
            self.first_error = why


async def read_until(reader, needle, deadline):
    buf = b""
    while needle not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no {needle!r} in time")
        chunk = await asyncio.wait_for(reader.read(65536), left)
        if not chunk:
            raise ConnectionError("server closed before the welcome")
        buf = (buf + chunk)[-4096:]
    return buf


async def drain_for(reader, secs):
    deadline = time.monotonic() + secs
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        try:
            chunk = await asyncio.wait_for(reader.read(65536), left)
        except asyncio.TimeoutError:
            return
        if not chunk:
            raise ConnectionError("server closed during the stay")


async def cycle(n, args, stats, tag):
    host, port = args.target
    name = f"churn-{tag}-{n}"
    text_mode = n % 4 == 3
    graceful = n % 2 == 0
    writer = None
    try:
        t0 = time.monotonic()
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), JOIN_TIMEOUT
        )
        if text_mode:
            writer.write(name.encode() + b"\n")
        else:
            writer.write(json.dumps({"type": "join", "sender": name}).encode() + b"\n")
        await writer.drain()
        await read_until(reader, b"Welcome", t0 + JOIN_TIMEOUT)
        stats.join_ms.append((time.monotonic() - t0) * 1000.0)
        await drain_for(reader, args.hold_ms / 1000.0)
        if graceful:
            if text_mode:
                writer.write(b"/quit\n")
            else:
                writer.write(b'{"type":"exit"}\n')
            await writer.drain()
            deadline = time.monotonic() + LEAVE_TIMEOUT
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("server did not close after exit")
                chunk = await asyncio.wait_for(reader.read(65536), left)
                if not chunk:
                    break
        stats.completed += 1
    except Exception as e:  # noqa: BLE001 - every failure is counted and reported
        stats.fail(f"{name}: {type(e).__name__}: {e}")
    finally:
        if writer is not None:
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            except Exception:  # noqa: BLE001
                pass


async def main_async(args):
    stats = Stats()
    tag = f"{os.getpid():x}"
    rss = []
    tasks = set()
    start = time.monotonic()
    end = start + args.duration
    next_rss = start
    interval = 1.0 / args.rate
    n = 0
    while n < args.max_cycles:
        now = time.monotonic()
        if now >= end:
            break
        if args.server_pid and now >= next_rss:
            rss.append([round(now - start, 2), vm_rss_kib(args.server_pid)])
            next_rss += 1.0
        due = start + n * interval
        if due > now:
            await asyncio.sleep(min(due - now, 0.05))
            continue
        if len(tasks) >= args.max_in_flight:
            stats.skipped_busy += 1
            await asyncio.sleep(0.001)
            continue
        stats.started += 1
        t = asyncio.ensure_future(cycle(n, args, stats, tag))
        tasks.add(t)
        t.add_done_callback(tasks.discard)
        n += 1
    launch_secs = time.monotonic() - start
    if args.server_pid:
        rss.append([round(time.monotonic() - start, 2), vm_rss_kib(args.server_pid)])
    if tasks:
        done, pending = await asyncio.wait(
            set(tasks), timeout=JOIN_TIMEOUT + LEAVE_TIMEOUT + args.hold_ms / 1000.0 + 2
        )
        for t in pending:
            t.cancel()
            stats.fail("cycle still running at the end")
    join = sorted(stats.join_ms)
    return {
        "started": stats.started,
        "completed": stats.completed,
        "failed": stats.failed,
        "first_error": stats.first_error,
        "launch_secs": round(launch_secs, 3),
        "cycles_per_sec": round(stats.started / launch_secs, 1) if launch_secs else 0,
        "behind_at_max_in_flight": stats.skipped_busy,
        "join_ms": {
            "p50": pct(join, 0.50),
            "p99": pct(join, 0.99),
            "max": join[-1] if join else None,
        },
        "rss_kib": rss,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--addr", required=True, help="chat port HOST:PORT (loopback)")
    p.add_argument("--rate", type=float, default=500.0, help="joins per second")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of churn")
    p.add_argument("--max-cycles", type=int, default=20000)
    p.add_argument("--max-in-flight", type=int, default=400)
    p.add_argument("--hold-ms", type=float, default=50.0, help="stay this long")
    p.add_argument("--server-pid", type=int)
    args = p.parse_args()
    args.target = loopback(args.addr)
    if not (0 < args.rate <= 10000 and 0 < args.duration <= 120):
        raise SystemExit("churn: --rate must be in (0, 10000], --duration in (0, 120]")
    result = asyncio.run(asyncio.wait_for(main_async(args), args.duration + 30))
    for k in ("p50", "p99", "max"):
        v = result["join_ms"][k]
        result["join_ms"][k] = None if v is None else round(v, 2)
    print(json.dumps(result))
    return 0 if result["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
