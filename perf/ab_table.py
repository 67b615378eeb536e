#!/usr/bin/env python3
"""Two-sided comparison table from harness result files laid out as
`<dir>/<side>/<run>/*.json` (the A/B and TLS scripts under perf/results/): per workload, the
median over runs of publish MB/s, e2e p50/p99/p99.9, server cores busy and CPU-s/GB in,
second side ÷ first, and the CPU-s/GB ratio per run pair.

    python3 perf/ab_table.py <dir> [first-side second-side]    # default: A B
"""
import glob
import json
import os
import statistics
import sys

here = sys.argv[1]
first, second = (sys.argv[2], sys.argv[3]) if len(sys.argv) > 3 else ("A", "B")
rows = {}
for side in (first, second):
    for path in sorted(glob.glob(os.path.join(here, side, "*", "*.json"))):
        r = json.load(open(path))
        cpu = (r.get("cpu") or {}).get("server") or {}
        hcpu = (r.get("cpu") or {}).get("harness") or {}
        e2e = r["end_to_end_latency"]
        rows.setdefault(r["workload"]["name"], {}).setdefault(side, []).append({
            "MB/s": r["publish"]["mb_per_s"],
            "e2e p50 ms": e2e["p50_us"] / 1000,
            "e2e p99 ms": e2e["p99_us"] / 1000,
            "e2e p99.9 ms": e2e["p99_9_us"] / 1000,
            "server cores": cpu.get("cores_busy"),
            "server CPU-s/GB in": cpu.get("cpu_s_per_gb_produced"),
            "harness cores": hcpu.get("cores_busy"),
        })

cols = ["MB/s", "e2e p50 ms", "e2e p99 ms", "e2e p99.9 ms", "server cores",
        "server CPU-s/GB in", "harness cores"]


def med(runs, c):
    vals = [x[c] for x in runs if x[c] is not None]
    return statistics.median(vals) if vals else None


def fmt(v):
    return "n/a" if v is None else f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"


label = f"{second} ÷ {first}"
print("| workload | side | rounds | " + " | ".join(cols) + " |")
print("|---|---|---|" + "---|" * len(cols))
for w, sides in sorted(rows.items()):
    meds = {s: {c: med(runs, c) for c in cols} for s, runs in sides.items()}
    for s in (first, second):
        if s in sides:
            print(f"| {w} | {s} | {len(sides[s])} | "
                  + " | ".join(fmt(meds[s][c]) for c in cols) + " |")
    if first in meds and second in meds:
        ratio = []
        for c in cols:
            a, b = meds[first][c], meds[second][c]
            ratio.append(f"{b / a:.2f}×" if a and b is not None else "n/a")
        print(f"| {w} | {label} | | " + " | ".join(ratio) + " |")
    # Per run pair, the second side's CPU-s/GB over the first's in the same round.
    a_runs, b_runs = sides.get(first, []), sides.get(second, [])
    pairs = [f"{b['server CPU-s/GB in'] / a['server CPU-s/GB in']:.2f}×"
             for a, b in zip(a_runs, b_runs)
             if a["server CPU-s/GB in"] and b["server CPU-s/GB in"]]
    if pairs:
        print(f"| {w} | {label} CPU-s/GB per round | | " + ", ".join(pairs) + " |"
              + " |" * (len(cols) - 1))
