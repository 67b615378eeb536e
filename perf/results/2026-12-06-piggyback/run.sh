#!/usr/bin/env bash
# Two broker (and harness) binaries side by side (A = before, B = after), alternating, the broker pinned to
# CPU 1 and the harness to CPU 0; one result directory per (binary, workload, round).
#
#   A=/path/broker-before B=/path/broker-after [HA=/path/harness-a HB=/path/harness-b] \
#     perf/results/2026-12-06-piggyback/run.sh
#
# Environment: WORKLOADS, ROUNDS (default 3), DURATION (s, default 15), WARMUP (s, default 3),
# PERF_DATA_DIR (the disk under test, default /work/perf-data), OUT (default: here),
# WORKLOAD_DIR (where <workload>.toml files are, default bench-harness/workloads).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
out_dir=${OUT:-$here}
default_harness=$root/target/release/bench-harness
workloads=${WORKLOADS:-"max-rate-1p-1kb fixed-rate-16p-1kb"}
rounds=${ROUNDS:-3}
data=${PERF_DATA_DIR:-/work/perf-data}
mkdir -p "$data"
ulimit -l unlimited 2>/dev/null || ulimit -l 65536 2>/dev/null || true
for w in $workloads; do
    for round in $(seq 1 "$rounds"); do
        for side in A B; do
            bin=${!side}; hv=H$side; harness=${!hv:-$default_harness}
            out="$out_dir/$side/$w-$round"
            mkdir -p "$out"
            echo "==> $w $side round $round ($(cat /proc/pressure/io | head -1))" >&2
            (cd "$root" && "$harness" run "${WORKLOAD_DIR:-bench-harness/workloads}/$w.toml" --spawn \
                --server-bin "$bin" --spawn-dir "$data" --shards 1 --server-cpus 1 \
                --client-cpus 0 --duration "${DURATION:-15}" --warmup "${WARMUP:-3}" \
                --no-progress --out "$out" >"$out/report.txt")
        done
    done
done
python3 "$root/perf/ab_table.py" "$out_dir" >"$out_dir/table.md"
cat "$out_dir/table.md"
