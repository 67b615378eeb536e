#!/usr/bin/env python3
"""A/B medians from run.sh's result directory: per workload and side, the medians over rounds
of publish / e2e / echo p50 and p99, the client's and server's stages, the server's CPU-s/GB
and the harness's socket reads. Usage: compare.py DIR"""
import csv
import glob
import json
import os
import statistics
import sys

here = sys.argv[1]
cells = {}
for path in glob.glob(os.path.join(here, "*", "round-*", "*-broker.json")):
    parts = path.split(os.sep)
    side = parts[-3]
    workload = os.path.basename(path)[: -len("-broker.json")]
    r = json.load(open(path))
    row = {
        "publish": (r["publish_latency"]["p50_us"], r["publish_latency"]["p99_us"]),
        "e2e": (r["end_to_end_latency"]["p50_us"], r["end_to_end_latency"]["p99_us"]),
    }
    if r.get("echo_floor"):
        row["echo"] = (r["echo_floor"]["p50_us"], r["echo_floor"]["p99_us"])
    for s in r.get("client_stages") or []:
        row["c:" + s["stage"]] = (s["p50_us"], s["p99_us"])
    for s in r.get("server_stages") or []:
        if s["count"]:
            row["s:" + s["stage"]] = (s["p50_us"], s["p99_us"])
    stat = os.path.join(os.path.dirname(path), workload + ".perf-stat.csv")
    if os.path.exists(stat):
        for line in csv.reader(l for l in open(stat) if l.strip() and not l.startswith("#")):
            if line[0].isdigit():
                row["reads:" + line[2].split(":")[-1]] = (int(line[0]), int(line[0]))
    cells.setdefault((workload, side), []).append(row)

for key in sorted(cells):
    runs = cells[key]
    print(f"{key[0]} · {key[1]} ({len(runs)} rounds): medians of p50 / p99 (µs; reads: count)")
    names = []
    for r in runs:
        names += [n for n in r if n not in names]
    for n in names:
        xs = [r[n] for r in runs if n in r]
        p50 = statistics.median(x[0] for x in xs)
        p99 = statistics.median(x[1] for x in xs)
        print(f"  {n:32} {p50:>10,.0f} {p99:>10,.0f}")
