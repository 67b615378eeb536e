#!/bin/bash
cd /work/main
for r in 1 2 3; do
  for v in base rif4 w4; do
    case $v in base) bin=/work/scratch/broker-pipe2; wl=/tmp/wl2/base;; rif4) bin=/work/scratch/broker-pipe2; wl=/tmp/wl2/rif4;; w4) bin=/work/scratch/broker-pipe2-w4; wl=/tmp/wl2/base;; esac
    out=/tmp/v3/$v/fixed-rate-16p-1kb-$r; mkdir -p $out
    echo "==> $v $r $(head -1 /proc/pressure/io)"
    target/release/bench-harness run $wl/fixed-rate-16p-1kb.toml --spawn --server-bin $bin --spawn-dir /work/perf-data --shards 1 --server-cpus 1 --client-cpus 0 --duration 14 --warmup 3 --no-progress --out $out > $out/report.txt
  done
done
