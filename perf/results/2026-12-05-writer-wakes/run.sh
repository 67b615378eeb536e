#!/usr/bin/env bash
# One partitions-100 run against an external broker binary pinned to CPU 1 (harness on CPU 0),
# optionally profiled (PROFILE=1: perf record -g of the broker for 5 s after 6 s).
#   BIN=/path/broker NAME=label [PROFILE=1] [DUR=10] [WORKLOAD=partitions-100] perf/results/2026-12-05-writer-wakes/run.sh
set -u
root=$(cd "$(dirname "$0")/../../.." && pwd)
data=${PERF_DATA_DIR:-/work/perf-data}/p100
mkdir -p "$data"; cd "$data"
rm -rf data; mkdir data
taskset -c 1 "${BIN:-$root/target/release/broker}" --data-dir data --listen 127.0.0.1:9400 --shards 1 > broker.log 2>&1 &
BP=$!
sleep 1
SP=
if [ -n "${PROFILE:-}" ]; then
    (sleep 6; perf record -F 4000 -g -p $BP -o "perf-$NAME.data" -- sleep 5 >/dev/null 2>&1) & SP=$!
fi
"${HARNESS:-$root/target/release/bench-harness}" run "$root/bench-harness/workloads/${WORKLOAD:-partitions-100}.toml" \
    --server-pid $BP --client-cpus 0 --server-cpus 1 --duration "${DUR:-10}" --warmup 3 \
    --out out --no-progress > "h-$NAME.txt" 2>&1
[ -n "$SP" ] && wait $SP
kill $BP; wait $BP
echo "$NAME: msg/s, e2e p50 µs, e2e p99 µs, CPU-s/GB: $(grep -A2 '^| run' "h-$NAME.txt" | tail -1 | cut -d'|' -f3,12,13,17) $(grep '^server pid' "h-$NAME.txt" | grep -o '[0-9.]* cores')"
