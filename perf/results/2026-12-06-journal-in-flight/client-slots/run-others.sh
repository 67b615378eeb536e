#!/bin/bash
cd /work/main
for w in partitions-100 max-rate-1p-1kb; do
for r in 1 2 3; do
  for v in base rif4; do
    bin=/work/scratch/broker-pipe2; wl=/tmp/wl2/$v
    out=/tmp/v3/$v/$w-$r; mkdir -p $out
    echo "==> $v $w $r $(head -1 /proc/pressure/io)"
    target/release/bench-harness run $wl/$w.toml --spawn --server-bin $bin --spawn-dir /work/perf-data --shards 1 --server-cpus 1 --client-cpus 0 --duration 14 --warmup 3 --no-progress --out $out > $out/report.txt
  done
done
done
