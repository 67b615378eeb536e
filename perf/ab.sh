#!/usr/bin/env bash
# A/B of two broker settings (or binaries), alternating, on a quiet machine: each run spawns
# the release broker with side A's or side B's environment, broker pinned to CPU 1, harness to
# CPU 0, one shard. Results go to $OUT/<side name>/round-<n>/; compare with
#   python3 perf/results/2026-12-04-client-read-buffer/compare.py $OUT
#
#   cargo build --release -p broker -p bench-harness
#   OUT=perf/results/<dir> A_NAME=zeros A_ENV="BROKER_SHARD_JOURNAL=true BROKER_SHARD_JOURNAL_RECYCLE=false" \
#     B_NAME=recycle B_ENV="BROKER_SHARD_JOURNAL=true" WORKLOADS="fixed-rate-16p-1kb" perf/ab.sh
#
# Environment: OUT (required), A_NAME/B_NAME (default a/b), A_ENV/B_ENV (space-separated
# NAME=value pairs for the broker), A_BIN/B_BIN (broker binaries, default the release build),
# WORKLOADS (default "partitions-100"), DURATION (s, default 10), WARMUP (s, default 3),
# ROUNDS (A/B pairs, default 2), PERF_DATA_DIR (default ./perf-data), HARNESS_ARGS (extra).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out_dir=${OUT:?set OUT to the result directory}
harness=$root/target/release/bench-harness
workloads=${WORKLOADS:-partitions-100}
duration=${DURATION:-10}
warmup=${WARMUP:-3}
rounds=${ROUNDS:-2}
data=${PERF_DATA_DIR:-$root/perf-data}
mkdir -p "$data"
ulimit -l unlimited 2>/dev/null || ulimit -l 65536 2>/dev/null || true
for w in $workloads; do
    for round in $(seq 1 "$rounds"); do
        for side in A B; do
            name_var=${side}_NAME env_var=${side}_ENV bin_var=${side}_BIN
            name=${!name_var:-$(echo "$side" | tr AB ab)}
            bin=${!bin_var:-$root/target/release/broker}
            out="$out_dir/$name/round-$round"
            mkdir -p "$out"
            echo "==> $w $name round $round" >&2
            # shellcheck disable=SC2086
            env ${!env_var:-} "$harness" run "bench-harness/workloads/$w.toml" \
                --spawn --server-bin "$bin" --spawn-dir "$data" --shards 1 \
                --server-cpus 1 --client-cpus 0 --duration "$duration" --warmup "$warmup" \
                --no-progress --out "$out" ${HARNESS_ARGS:-} >"$out/$w.txt"
        done
    done
done
