#!/usr/bin/env python3
"""TLS on/off table from run.sh's result files: per workload, the median over rounds of
publish MB/s, e2e p50/p99/p99.9, server cores busy and CPU-s/GB in, and TLS ÷ plaintext."""
import glob
import json
import os
import statistics
import sys

here = sys.argv[1]
rows = {}
for path in sorted(glob.glob(os.path.join(here, "*", "round-*", "*.json"))):
    mode = path.split(os.sep)[-3]
    r = json.load(open(path))
    cpu = (r.get("cpu") or {}).get("server") or {}
    hcpu = (r.get("cpu") or {}).get("harness") or {}
    e2e = r["end_to_end_latency"]
    rows.setdefault(r["workload"]["name"], {}).setdefault(mode, []).append({
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


print("| workload | mode | rounds | " + " | ".join(cols) + " |")
print("|" + "---|" * (len(cols) + 3))
for w, modes in rows.items():
    meds = {m: {c: med(runs, c) for c in cols} for m, runs in modes.items()}
    for m in ("plain", "tls"):
        if m in modes:
            print(f"| {w} | {m} | {len(modes[m])} | "
                  + " | ".join(fmt(meds[m][c]) for c in cols) + " |")
    if "plain" in meds and "tls" in meds:
        ratio = []
        for c in cols:
            a, b = meds["plain"][c], meds["tls"][c]
            ratio.append("n/a" if not a or b is None else f"{b / a:.2f}×")
        print(f"| {w} | tls ÷ plain | | " + " | ".join(ratio) + " |")
