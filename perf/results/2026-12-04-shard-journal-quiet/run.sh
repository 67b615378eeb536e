#!/usr/bin/env bash
# Shard journal off vs on (issue 19), alternating, on a quiet machine: the same release broker
# spawned per run with BROKER_SHARD_JOURNAL=false|true, broker pinned to CPU 1, harness to
# CPU 0.
#
#   cargo build --release -p broker -p bench-harness
#   perf/results/2026-12-04-shard-journal-quiet/run.sh
#   python3 perf/results/2026-12-04-client-read-buffer/compare.py perf/results/2026-12-04-shard-journal-quiet
#
# Environment: WORKLOADS (default "partitions-100 partitions-1000"), DURATION (s, default 15),
# WARMUP (s, default 3), ROUNDS (off/on pairs, default 2), PERF_DATA_DIR (default ./perf-data),
# OUT (result directory, default this one).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
cd "$root"
out_dir=${OUT:-$here}
harness=$root/target/release/bench-harness
broker=${BROKER:-$root/target/release/broker}
workloads=${WORKLOADS:-"partitions-100 partitions-1000"}
duration=${DURATION:-15}
warmup=${WARMUP:-3}
rounds=${ROUNDS:-2}
data=${PERF_DATA_DIR:-$root/perf-data}
mkdir -p "$data"
ulimit -l unlimited 2>/dev/null || ulimit -l 65536 2>/dev/null || true
for w in $workloads; do
    for round in $(seq 1 "$rounds"); do
        for mode in off on; do
            out="$out_dir/journal-$mode/round-$round"
            mkdir -p "$out"
            echo "==> $w journal $mode round $round" >&2
            journal=false
            [ "$mode" = on ] && journal=true
            BROKER_SHARD_JOURNAL=$journal "$harness" run "bench-harness/workloads/$w.toml" \
                --spawn --server-bin "$broker" --spawn-dir "$data" --shards 1 \
                --server-cpus 1 --client-cpus 0 --duration "$duration" --warmup "$warmup" \
                --no-progress --out "$out" >"$out/$w.txt"
        done
    done
done
