#!/bin/bash
# interleaved old/new broker binaries on fixed-rate-16p-1kb
out=$1; rounds=$2
cd /work/main; mkdir -p $out
for r in $(seq 1 $rounds); do
  for v in ${VARIANTS:-old new}; do
    rm -rf $out/d
    target/release/bench-harness run bench-harness/workloads/fixed-rate-16p-1kb.toml --spawn --server-bin /tmp/broker-$v --spawn-dir $out/d --shards 1 --server-cpus 1 --client-cpus 0 --duration 14 --warmup 3 --no-progress --out $out/r-$v-$r > $out/log-$v-$r 2>&1
    echo "$v $r $(grep '^| broker' $out/log-$v-$r | awk -F'|' '{print "pub99",$9,"e2e50",$12,"e2e99",$13,"e2e999",$14}') $(grep 'server pid' $out/log-$v-$r | grep -o '[0-9.]* CPU-s/GB produced')"
  done
done
