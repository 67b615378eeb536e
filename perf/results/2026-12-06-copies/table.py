#!/usr/bin/env python3
"""A/B table from run.sh's result files: per workload, the median over rounds of publish
MB/s, e2e p50/p99/p99.9, server cores busy and CPU-s/GB in, and B ÷ A."""
import glob
import json
import os
import statistics
import sys

here = sys.argv[1]
rows = {}
for path in sorted(glob.glob(os.path.join(here, "[AB]", "*", "*.json"))):
    side = path.split(os.sep)[-3]
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


print("| workload | side | rounds | " + " | ".join(cols) + " |")
print("|" + "---|" * (len(cols) + 3))
for w, sides in rows.items():
    meds = {s: {c: med(runs, c) for c in cols} for s, runs in sides.items()}
    for s in ("A", "B"):
        if s in sides:
            print(f"| {w} | {s} | {len(sides[s])} | "
                  + " | ".join(fmt(meds[s][c]) for c in cols) + " |")
    if "A" in meds and "B" in meds:
        ratio = []
        for c in cols:
            a, b = meds["A"][c], meds["B"][c]
            ratio.append("n/a" if not a or b is None else f"{b / a:.2f}×")
        print(f"| {w} | B ÷ A | | " + " | ".join(ratio) + " |")
    # Per round, B's CPU-s/GB over A's in the same round.
    a_runs, b_runs = sides.get("A", []), sides.get("B", [])
    pairs = [f"{b['server CPU-s/GB in'] / a['server CPU-s/GB in']:.2f}×"
             for a, b in zip(a_runs, b_runs)
             if a["server CPU-s/GB in"] and b["server CPU-s/GB in"]]
    if pairs:
        print(f"| {w} | B ÷ A CPU-s/GB per round | | " + ", ".join(pairs) + " |" + " |" * (len(cols) - 1))
