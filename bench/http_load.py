#!/usr/bin/env python3
"""Keep-alive HTTP/1.1 GET load, bounded in time: C connections, each sending
one request at a time for D seconds. Used when `wrk` is not available; being
single-threaded Python it measures the client's limit as much as the server's.
Prints one JSON object: requests, requests_per_sec, errors, latency_us
percentiles. Loopback targets only.
"""

import argparse
import asyncio
import ipaddress
import json
import sys
import time


async def worker(host, port, path, end, lat, errors):
    req = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    except Exception:  # noqa: BLE001 - counted
        errors[0] += 1
        return
    try:
        while time.monotonic() < end:
            t0 = time.perf_counter()
            writer.write(req)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            status = head.split(b" ", 2)[1]
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await asyncio.wait_for(reader.readexactly(length), 5)
            lat.append(time.perf_counter() - t0)
            if status != b"200":
                errors[0] += 1
    except Exception:  # noqa: BLE001 - counted
        errors[0] += 1
    finally:
        writer.close()


async def run(args):
    host, _, port = args.addr.rpartition(":")
    if not ipaddress.ip_address(host.strip("[]")).is_loopback:
        raise SystemExit(f"http_load: refusing non-loopback target {args.addr}")
    lat, errors = [], [0]
    start = time.monotonic()
    end = start + args.duration
    await asyncio.gather(
        *(worker(host.strip("[]"), int(port), args.path, end, lat, errors)
          for _ in range(args.connections))
    )
    secs = time.monotonic() - start
    lat.sort()

    def q(p):
        return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1e6, 1) if lat else None

    return {
        "tool": "bench/http_load.py",
        "connections": args.connections,
        "requests": len(lat),
        "secs": round(secs, 3),
        "requests_per_sec": round(len(lat) / secs, 1) if secs else 0,
        "errors": errors[0],
        "latency_us": {"p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "max": q(1.0)},
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--addr", required=True)
    p.add_argument("--path", default="/")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--duration", type=float, default=5.0)
    args = p.parse_args()
    if not (0 < args.duration <= 60 and 0 < args.connections <= 1000):
        raise SystemExit("http_load: --duration in (0, 60], --connections in (0, 1000]")
    result = asyncio.run(asyncio.wait_for(run(args), args.duration + 15))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
