#!/bin/bash
# Coalescer rule: 2 slots (workload sets 2) vs the default 4 with small batches gathering
# behind 2 (workload as committed); same broker binary (c701845), harness at the new rule.
cd /work/main
for w in partitions-100 fixed-rate-16p-1kb; do
for r in 1 2 3; do
  for v in base def; do
    out=/tmp/v6/$v/$w-$r; mkdir -p $out
    echo "==> $v $w $r $(head -1 /proc/pressure/io)"
    target/release/bench-harness run /tmp/wl2/$v/$w.toml --spawn --server-bin /work/scratch/broker-c701 --spawn-dir /work/perf-data --shards 1 --server-cpus 1 --client-cpus 0 --duration 14 --warmup 3 --no-progress --out $out > $out/report.txt
  done
done
done
