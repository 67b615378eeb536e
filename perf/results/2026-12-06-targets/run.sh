#!/bin/bash
# Issue 19's targets, 3 rounds each, the broker pinned to CPU 1 and the harness to CPU 0.
set -u
cd /work/main
out=${OUT:-/work/perf-data/targets}
bin=${BIN:-target/release/broker}
for r in 1 2 3; do
  for w in ${WORKLOADS:-fixed-rate-16p-1kb partitions-100 partitions-1000}; do
    o=$out/$w-$r; mkdir -p $o
    echo "==> $w round $r $(date +%T) ($(head -1 /proc/pressure/io))" >&2
    target/release/bench-harness run bench-harness/workloads/$w.toml --spawn --server-bin $bin \
      --spawn-dir /work/perf-data --shards 1 --server-cpus 1 --client-cpus 0 --duration 14 --warmup 3 \
      --no-progress --out $o > $o/report.txt 2>&1
  done
done
