#!/usr/bin/env bash
# Issue 26's table re-measured: fixed-rate-16p-1kb at 1,000 / 10,000 / 100,000 msg/s with
# durable, written and none acks, against one or more broker binaries side by side
# (alternating per cell), a fresh spawned broker per run, broker pinned to CPU 1 and the
# harness to CPU 0, each run preceded by the harness's loopback echo floor.
#
#   cargo build --release -p broker -p bench-harness
#   BROKERS="base=/path/broker-A new=/path/broker-B" perf/results/2026-12-04-tail/run.sh
#
# Environment: BROKERS (name=binary ..., default: target/release/broker as "main"), ACKS,
# RATES, ROUNDS (default 3), DURATION (s, default 8), WARMUP (s, default 2), PERF_DATA_DIR
# (the disk under test, not tmpfs), RUN_TAG (prefix of the result directories), OUT (where
# runs/, workloads/ and table.md go; default this directory).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
cd "$root"
out_dir=${OUT:-$here}
harness=${HARNESS:-$root/target/release/bench-harness}
brokers=${BROKERS:-"main=$root/target/release/broker"}
acks=${ACKS:-"durable written none"}
rates=${RATES:-"1000 10000 100000"}
rounds=${ROUNDS:-3}
duration=${DURATION:-8}
warmup=${WARMUP:-2}
data=${PERF_DATA_DIR:-$root/perf-data}
mkdir -p "$data" "$out_dir/workloads"
ulimit -l unlimited 2>/dev/null || ulimit -l 65536 2>/dev/null || true

for ack in $acks; do
    sed "s/^ack = .*/ack = \"$ack\"/" bench-harness/workloads/fixed-rate-16p-1kb.toml \
        >"$out_dir/workloads/fixed-rate-16p-1kb-$ack.toml"
done

for round in $(seq 1 "$rounds"); do
    for rate in $rates; do
        for ack in $acks; do
            for b in $brokers; do
                name=${b%%=*} bin=${b#*=}
                out="$out_dir/runs/${RUN_TAG:-}$round/$name/$ack-$rate"
                mkdir -p "$out"
                echo "==> round $round $name $ack $rate msg/s" >&2
                "$harness" run "$out_dir/workloads/fixed-rate-16p-1kb-$ack.toml" --spawn \
                    --server-bin "$bin" --spawn-dir "$data" --shards 1 --server-cpus 1 \
                    --client-cpus 0 --rate "$rate" --duration "$duration" --warmup "$warmup" \
                    --no-progress --check --out "$out" >"$out/report.txt" 2>&1 \
                    || echo "run failed: $out" >&2
            done
        done
    done
done
python3 "$here/table.py" "$out_dir" | tee "$out_dir/table.md"
