#!/usr/bin/env python3
"""Compares two server binaries on fanout-1k, burst-1k and idle-10k (and, when
asked with --scenarios, rooms-1k, which needs a server with rooms on both sides,
fanout-5k, and slow-readers, whose end needs /stats `dropped_slow_clients` on
both sides: a server without it is driven to the 60 s cap instead).

Usage:
    bench/compare.py OLD NEW [--runs N] [--scenarios NAME,...] [--threshold F] [--json PATH]

OLD and NEW are paths to two `multiuserchat` release binaries, e.g. the commit
before a refactor built in its own worktree, and the refactored tree:

    git worktree add /tmp/chat-old 2b80f00
    (cd /tmp/chat-old && cargo build --release --bin multiuserchat)
    cargo build --release --bins
    bench/compare.py /tmp/chat-old/target/release/multiuserchat \\
                     target/release/multiuserchat

Each of the N rounds (default 3) runs every scenario against both binaries back
to back, OLD first in odd rounds and NEW first in even ones, so a change in
machine load hits both alike. Both are driven by this tree's
target/release/chat-load with the flags of bench/run.py (fresh server per run,
loopback, free ports). Prints per scenario the median of each figure for OLD
and NEW and the ratio NEW/OLD, and flags WORSE any figure more than the
threshold (default 5%) worse: deliveries/s lower; latency, server CPU, peak RSS
or RSS per connection higher. The spread column ((max - min) / median over
one side's runs, the larger of the two) shows how noisy a figure is; on this
shared 2-core machine latency tails, server CPU and peak RSS (which follows
the output backlog) vary by tens of percent between identical runs, so rerun
with more rounds before acting on one of those flags alone. fanout-1k and
idle-10k are paced, so their deliveries/s mainly confirms that everything
arrived; burst-1k is the throughput figure. slow-readers' figure is the peak
RSS (with the time until every slow reader was dropped); its deliveries/s
and latency are the 100 normal clients' and follow how fast the server
moved the sender's messages. A warning is printed when the
1-minute load average before a run exceeded the CPU count (other work, such
as a build, competed with the runs).

Exit status: 0 nothing flagged; 1 a figure flagged WORSE or a run with lost,
duplicated, reordered or unexpected messages; 2 bad usage or a run that could
not be made.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402  (bench/run.py: servers, chat-load, scenario flags)

SCENARIOS = {
    "fanout-1k": lambda name, binary: bench.load_once(name, bench.FANOUT_1K, binary=binary),
    "burst-1k": lambda name, binary: bench.load_once(name, bench.BURST_1K, binary=binary),
    "idle-10k": lambda name, binary: bench.idle_once(name, binary=binary),
    "rooms-1k": lambda name, binary: bench.load_once(name, bench.ROOMS_1K, binary=binary),
    "fanout-5k": lambda name, binary: bench.load_once(name, bench.FANOUT_5K, binary=binary),
    "slow-readers": lambda name, binary: bench.slow_readers_once(name, binary=binary),
}
# Run unless --scenarios says otherwise (rooms-1k needs rooms in OLD too).
DEFAULT_SCENARIOS = ("fanout-1k", "burst-1k", "idle-10k")

# (figure, True if higher is better, value from one run's result, format)
FIGURES = [
    ("deliveries/s", True, lambda r: r["report"]["deliveries_per_sec"], "{:,.0f}"),
    ("p99 latency (ms)", False, lambda r: r["report"]["latency_us"]["p99"] / 1000, "{:.2f}"),
    ("max latency (ms)", False, lambda r: r["report"]["latency_us"]["max"] / 1000, "{:.2f}"),
    ("server CPU (s)", False, lambda r: r["report"].get("server_cpu_secs"), "{:.2f}"),
    ("peak RSS (KiB)", False, lambda r: r["report"].get("server_peak_rss_kib"), "{:,.0f}"),
    ("RSS per connection (KiB)", False, lambda r: r.get("rss_per_conn_kib"), "{:.3f}"),
    ("slow readers dropped (s)", False, lambda r: r["report"].get("slow_all_dropped_secs"),
     "{:.2f}"),
]

ERROR_KEYS = ("lost", "duplicated", "reordered", "unexpected", "disconnected", "misdelivered")


def errors_of(r):
    d = r["report"]
    return sum(d.get(k, 0) for k in ERROR_KEYS) + (0 if d["result"] == "OK" else 1)


def show(v, fmt):
    return "n/a" if v is None else fmt.format(v)


def spread(values):
    """(max - min) / median of one side's runs, or None with fewer than two."""
    values = [v for v in values if v is not None]
    mid = statistics.median(values) if len(values) > 1 else None
    return None if not mid else (max(values) - min(values)) / mid


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Run fanout-1k, burst-1k and idle-10k alternately against two server "
                    "binaries and compare the medians (see the top of bench/compare.py).")
    p.add_argument("old", help="path of the OLD server binary")
    p.add_argument("new", help="path of the NEW server binary")
    p.add_argument("--runs", type=int, default=3, help="rounds; each runs both (default 3)")
    p.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS),
                   help="comma-separated subset of " + ", ".join(SCENARIOS))
    p.add_argument("--threshold", type=float, default=0.05,
                   help="flag a figure worse by more than this fraction (default 0.05)")
    p.add_argument("--json", help="also write every run's chat-load report to this file")
    a = p.parse_args(argv)
    a.scenarios = [s for s in a.scenarios.split(",") if s]
    unknown = [s for s in a.scenarios if s not in SCENARIOS]
    if unknown or not a.scenarios:
        p.error(f"unknown scenario(s): {', '.join(unknown)}" if unknown else "no scenario")
    if not 1 <= a.runs <= 50:
        p.error("--runs must be between 1 and 50")
    a.old, a.new = os.path.abspath(a.old), os.path.abspath(a.new)
    for exe in (a.old, a.new, bench.LOAD):
        if not os.access(exe, os.X_OK):
            p.error(f"{exe} is not an executable file (build it first)")
    return a


def summarize(args, results):
    """Prints the table; returns the number of flagged figures."""
    flagged = 0
    head = (f"{'scenario':<12} {'figure':<25} {'OLD':>13} {'NEW':>13} {'NEW/OLD':>8} "
            f"{'spread':>7}")
    print(f"\nmedians of {args.runs} run(s) each; OLD = {args.old}\n"
          f"{'':<28}NEW = {args.new}\n")
    print(head)
    print("-" * len(head))
    for scen in args.scenarios:
        runs = results[scen]
        first = True
        for figure, higher_better, get, fmt in FIGURES:
            old = median(get(r) for r in runs["old"])
            new = median(get(r) for r in runs["new"])
            if old is None and new is None:
                continue
            q = None if old in (None, 0) or new is None else new / old
            worse = q is not None and (q < 1 - args.threshold if higher_better
                                       else q > 1 + args.threshold)
            flagged += worse
            spreads = [x for x in (spread([get(r) for r in runs[side]]) for side in ("old", "new"))
                       if x is not None]
            noise = f"{max(spreads):.0%}" if spreads else "n/a"
            print(f"{scen if first else '':<12} {figure:<25} {show(old, fmt):>13} "
                  f"{show(new, fmt):>13} "
                  f"{'n/a' if q is None else f'{q:.3f}':>8} {noise:>7}"
                  + ("  WORSE" if worse else ""))
            first = False
        errs = {side: sum(errors_of(r) for r in runs[side]) for side in ("old", "new")}
        n = {side: len(runs[side]) for side in ("old", "new")}
        print(f"{'':<12} {'runs / delivery errors':<25} {n['old']:>7} / {errs['old']:<3} "
              f"{n['new']:>7} / {errs['new']:<3}")
    print(f"\nWORSE: more than {args.threshold:.0%} worse than OLD "
          "(deliveries/s lower; latency, CPU, RSS higher).\n"
          "spread: (max - min) / median over the runs of the noisier side; a ratio "
          "within it is not a clear difference.")
    return flagged


def main(argv):
    try:
        args = parse_args(argv)
    except SystemExit:
        shutil.rmtree(bench.TMP, ignore_errors=True)
        raise
    signal.signal(signal.SIGTERM, bench.on_signal)
    signal.signal(signal.SIGHUP, bench.on_signal)
    limit = bench.raise_open_files()
    if "idle-10k" in args.scenarios and limit is not None and limit < 12000:
        print(f"compare: open-file limit {limit} is below the 12,000 idle-10k needs",
              file=sys.stderr)
        return 2
    sides = {"old": args.old, "new": args.new}
    results = {s: {"old": [], "new": []} for s in args.scenarios}
    could_not_run = 0
    loads = []
    try:
        for rnd in range(1, args.runs + 1):
            order = ("old", "new") if rnd % 2 else ("new", "old")
            for scen in args.scenarios:
                for side in order:
                    name = f"{scen}-{side}-{rnd}"
                    load = bench.loadavg()
                    loads.append(load)
                    print(f"compare: round {rnd}/{args.runs} {scen} {side.upper()} "
                          f"(load average {load})", flush=True)
                    try:
                        r = SCENARIOS[scen](name, sides[side])
                    except bench.CouldNotRun as e:
                        could_not_run += 1
                        print(f"  could not run: {e}", file=sys.stderr, flush=True)
                        continue
                    d = r["report"]
                    results[scen][side].append(r)
                    print(f"  {d['result']}: {d['deliveries_per_sec']:,.0f} deliveries/s, "
                          f"p99 {d['latency_us']['p99'] / 1000:.2f} ms, "
                          f"peak RSS {d.get('server_peak_rss_kib')} KiB, "
                          f"errors {errors_of(r)}", flush=True)
    finally:
        bench.stop_all()
        if could_not_run:
            print(f"compare: logs kept in {bench.TMP}", file=sys.stderr)
        else:
            shutil.rmtree(bench.TMP, ignore_errors=True)
    flagged = summarize(args, results)
    busiest = max((float(x) for x in loads if x != "?"), default=None)
    cpus = os.cpu_count() or 1
    if busiest is not None and busiest > cpus:
        print(f"compare: the 1-minute load average reached {busiest:.2f} on {cpus} CPUs "
              "before a run: other work competed with the runs, so the figures may reflect "
              "that more than the binaries; rerun on a quiet machine.", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"old": args.old, "new": args.new, "runs": args.runs,
                       "load_averages": loads, "results": results}, f, indent=2)
            f.write("\n")
    delivery_errors = sum(errors_of(r) for s in results.values()
                          for side in s.values() for r in side)
    if could_not_run:
        print(f"compare: {could_not_run} run(s) could not be made", file=sys.stderr)
        return 2
    return 1 if flagged or delivery_errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
