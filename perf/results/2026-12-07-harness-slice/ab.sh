#!/bin/bash
# Interleaved A/B runs of one workload against a spawned broker (server on core 1, harness
# on core 0), one variant after the other in each round.
# usage: ab.sh OUTDIR ROUNDS VARIANT...    VARIANT = label:ENV=v,ENV=v[:harness args, comma-separated]
# env: WL (workload, default fixed-rate-16p-1kb), DUR (measured s, default 14), BIN (broker binary)
out=$1; rounds=$2; shift 2
cd "$(git rev-parse --show-toplevel)"
mkdir -p $out
for r in $(seq 1 $rounds); do
  for v in "$@"; do
    label=${v%%:*}; rest=${v#*:}; envs=${rest%%:*}; args=""
    [ "$rest" != "$envs" ] && args=$(echo ${rest#*:} | tr ',' ' ')
    rm -rf $out/d
    env $(echo $envs | tr ',' ' ') target/release/bench-harness run bench-harness/workloads/${WL:-fixed-rate-16p-1kb}.toml \
      --spawn --server-bin ${BIN:-target/release/broker} --spawn-dir $out/d --shards 1 --server-cpus 1 --client-cpus 0 \
      --duration ${DUR:-14} --warmup 3 --no-progress --out $out/r-$label-$r $args > $out/log-$label-$r 2>&1
    echo "$label $r $(grep '^| broker' $out/log-$label-$r | awk -F'|' '{print "pub99",$9,"e2e50",$12,"e2e99",$13,"e2e999",$14}') $(grep 'server pid' $out/log-$label-$r | grep -o '[0-9.]* CPU-s/GB produced')"
  done
done
