#!/usr/bin/env python3
"""Issue 26's table from run.sh's result files: per broker, ack and rate, the median over
rounds of publish p50/p99, e2e p50/p99/p99.9, the echo floor's p99 and the server's
produce_ack p99 (µs)."""
import glob
import json
import os
import statistics
import sys

here = sys.argv[1]
cells = {}
for path in glob.glob(os.path.join(here, "runs", "*", "*", "*", "*-broker.json")):
    parts = path.split(os.sep)
    name, cell = parts[-3], parts[-2]
    ack, rate = cell.rsplit("-", 1)
    r = json.load(open(path))
    stages = {s["stage"]: s for s in r.get("server_stages") or []}
    pa = stages.get("produce_ack", {})
    cells.setdefault((name, ack, int(rate)), []).append({
        "pub p50": r["publish_latency"]["p50_us"],
        "pub p99": r["publish_latency"]["p99_us"],
        "e2e p50": r["end_to_end_latency"]["p50_us"],
        "e2e p99": r["end_to_end_latency"]["p99_us"],
        "e2e p99.9": r["end_to_end_latency"]["p99_9_us"],
        "echo p99": (r.get("echo_floor") or {}).get("p99_us"),
        "srv ack p99": pa.get("p99_us"),
        "lost": r["totals"]["missed"] + r["totals"]["gaps"] + r["totals"]["publish_errors"],
    })

cols = ["pub p50", "pub p99", "e2e p50", "e2e p99", "e2e p99.9", "echo p99", "srv ack p99",
        "lost"]
order = {"durable": 0, "written": 1, "none": 2}
print("| broker | ack | rate msg/s | rounds | " + " | ".join(c + (" µs" if c != "lost" else "")
                                                          for c in cols) + " |")
print("|" + "---|" * (len(cols) + 4))
for (name, ack, rate) in sorted(cells, key=lambda k: (k[2], order.get(k[1], 9), k[0])):
    runs = cells[(name, ack, rate)]
    vals = []
    for c in cols:
        xs = [x[c] for x in runs if x[c] is not None]
        vals.append("n/a" if not xs else f"{statistics.median(xs):,.0f}")
    print(f"| {name} | {ack} | {rate:,} | {len(runs)} | " + " | ".join(vals) + " |")
