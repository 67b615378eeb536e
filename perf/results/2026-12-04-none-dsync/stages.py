#!/usr/bin/env python3
"""Where the time goes, per cell (broker, ack, rate; medians over rounds of each p50/p99 in
µs): the harness's send lag, the client's stages, the server's stages and the echo floor
next to publish and e2e latency. Usage: stages.py DIR [RUN_TAG_PREFIX]"""
import glob
import json
import os
import statistics
import sys

here = sys.argv[1]
tag = sys.argv[2] if len(sys.argv) > 2 else ""
cells = {}
for path in glob.glob(os.path.join(here, "runs", tag + "*", "*", "*", "*-broker.json")):
    parts = path.split(os.sep)
    name, cell = parts[-3], parts[-2]
    ack, rate = cell.rsplit("-", 1)
    r = json.load(open(path))
    row = {
        "publish": (r["publish_latency"]["p50_us"], r["publish_latency"]["p99_us"]),
        "e2e": (r["end_to_end_latency"]["p50_us"], r["end_to_end_latency"]["p99_us"]),
        "echo": (r["echo_floor"]["p50_us"], r["echo_floor"]["p99_us"]),
    }
    for s in r.get("client_stages") or []:
        row["c:" + s["stage"]] = (s["p50_us"], s["p99_us"])
    for s in r.get("server_stages") or []:
        if s["count"]:
            row["s:" + s["stage"]] = (s["p50_us"], s["p99_us"])
    cells.setdefault((name, ack, int(rate)), []).append(row)

order = {"durable": 0, "written": 1, "none": 2}
for key in sorted(cells, key=lambda k: (k[2], order.get(k[1], 9), k[0])):
    runs = cells[key]
    print(f"{key[0]} {key[1]} {key[2]:,} msg/s ({len(runs)} rounds): stage p50 / p99 µs")
    names = []
    for r in runs:
        names += [n for n in r if n not in names]
    for n in names:
        xs = [r[n] for r in runs if n in r]
        p50 = statistics.median(x[0] for x in xs)
        p99 = statistics.median(x[1] for x in xs)
        print(f"  {n:22} {p50:>9,.0f} {p99:>9,.0f}")
