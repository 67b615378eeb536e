#!/bin/bash
cd /work/main
for w in partitions-100 fixed-rate-16p-1kb; do
for r in 1 2; do
  for v in base rif3 rif4; do
    out=/tmp/v5/$v/$w-$r; mkdir -p $out
    echo "==> $v $w $r $(head -1 /proc/pressure/io)"
    target/release/bench-harness run /tmp/wl2/$v/$w.toml --spawn --server-bin /work/scratch/broker-c701 --spawn-dir /work/perf-data --shards 1 --server-cpus 1 --client-cpus 0 --duration 14 --warmup 3 --no-progress --out $out > $out/report.txt
  done
done
done
