#!/usr/bin/env bash
# Consumer groups (issue 16): the group workload and its plain twin, alternating, 3 rounds,
# against one release broker pinned to core 1 (--shards 1), harness pinned to core 0; then
# the rebalance timing (4 -> 5 members over 16 partitions, 10 rounds).
set -u
cd "$(dirname "$0")/../../.."
ulimit -l unlimited
D=/tmp/rb; rm -rf $D; mkdir -p $D
taskset -c 1 ./target/release/broker --shards 1 --data-dir $D/data --ready-file $D/ready > $D/log 2>&1 &
bp=$!
for i in $(seq 100); do [ -s $D/ready ] && break; sleep 0.1; done
OUT=/tmp/gb; mkdir -p $OUT
for r in 1 2 3; do
  for w in group-4-members-16p partition-consumers-4-16p; do
    t0=$(awk '{print $14+$15}' /proc/$bp/stat)
    taskset -c 0 ./target/release/bench-harness run bench-harness/workloads/$w.toml --out $OUT/$w-$r --no-progress --check > $OUT/$w-$r.txt 2>&1
    t1=$(awk '{print $14+$15}' /proc/$bp/stat)
    echo "$w round $r broker_cpu_s=$(echo "($t1-$t0)/100" | bc -l)" | tee -a $OUT/cpu.txt
  done
done
taskset -c 0 ./target/release/examples/group_rebalance 127.0.0.1:9400 4 16 10 | tee $OUT/rebalance.jsonl
kill -TERM $bp; wait $bp
