#!/usr/bin/env bash
# Side-by-side A/B: fixed-rate-16p-1kb, broker pinned to core 1 (--shards 1), harness
# pinned to core 0, each version's own broker and harness from /tmp/<version>/.
# Usage: bench_pair.sh "ROUNDS" "VERSIONS", e.g. bench_pair.sh "1 2 3" "before after"
# (this record: rounds 1-6 before/after, 7-12 before/after2, 21-24 after2/now).
set -u
ROUNDS=${1:-"1 2 3"}
VERSIONS=${2:-"before after"}
ulimit -l unlimited
WL=/work/main/bench-harness/workloads/fixed-rate-16p-1kb.toml
OUT=/tmp/benchout; mkdir -p $OUT
for round in $ROUNDS; do
  for v in $VERSIONS; do
    d=/work/benchdata/$v-$round; rm -rf $d; mkdir -p $d
    rf=$d.ready; rm -f $rf
    taskset -c 1 /tmp/$v/broker --shards 1 --data-dir $d --ready-file $rf > $d.log 2>&1 &
    bp=$!
    for i in $(seq 100); do [ -s $rf ] && break; sleep 0.1; done
    t0=$(awk '{print $14+$15}' /proc/$bp/stat)
    taskset -c 0 /tmp/$v/bench-harness run $WL --duration 20 --warmup 5 --out $OUT/$v-$round --no-progress > $OUT/$v-$round.txt 2>&1
    t1=$(awk '{print $14+$15}' /proc/$bp/stat)
    echo "$v round $round broker_cpu_s=$(echo "($t1-$t0)/100" | bc -l)" | tee -a $OUT/cpu.txt
    kill -TERM $bp; wait $bp
    rm -rf $d
  done
done
