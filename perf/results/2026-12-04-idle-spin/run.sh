#!/usr/bin/env bash
# Idle spinning A/B (issue 26): two brokers from one binary, pinned to CPU 1, one sleeping at
# once when idle (BROKER_IDLE_SPIN_US=0), one polling first (BROKER_IDLE_SPIN_US=$SPIN_US);
# the harness (CPU 0) with and without its own send spin (--send-spin-us 0 / $SEND_SPIN_US).
# Every cell alternates within a round; fixed-rate-16p-1kb, durable.
#
#   cargo build --release -p broker -p bench-harness
#   OUT=perf/results/2026-12-04-idle-spin RATES="1000 10000" ROUNDS=3 \
#     PERF_DATA_DIR=/work/perf-data perf/results/2026-12-04-idle-spin/run.sh
#   python3 perf/results/2026-12-04-client-read-buffer/compare.py perf/results/2026-12-04-idle-spin
#
# Environment: RATES (msg/s, default "1000"), DURATION (s, default 10), ROUNDS (default 3),
# SPIN_US (broker, default 200), SEND_SPIN_US (harness, default 200), BROKER, HARNESS,
# PERF_DATA_DIR (the disk under test, not tmpfs), OUT (result directory, default this one).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
cd "$root"
out_dir=${OUT:-$here}
rates=${RATES:-1000}
duration=${DURATION:-10}
rounds=${ROUNDS:-3}
spin_us=${SPIN_US:-200}
send_spin_us=${SEND_SPIN_US:-200}
broker=${BROKER:-$root/target/release/broker}
harness=${HARNESS:-$root/target/release/bench-harness}
data=${PERF_DATA_DIR:-$root/perf-data}/idle-spin
rm -rf "$data" && mkdir -p "$data" "$out_dir"
ulimit -l unlimited 2>/dev/null || ulimit -l 65536 2>/dev/null || true
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$data"' EXIT
declare -A addr pid
for b in sleep spin; do
    us=0
    [ "$b" = spin ] && us=$spin_us
    mkdir -p "$data/$b"
    BROKER_IDLE_SPIN_US=$us taskset -c 1 "$broker" --data-dir "$data/$b" --listen 127.0.0.1:0 \
        --shards 1 --shard-port-base 0 --metrics off --ready-file "$data/$b.ready" >"$out_dir/broker-$b.log" 2>&1 &
    pid[$b]=$!
    pids+=("$!")
done
for b in sleep spin; do
    for _ in $(seq 1 100); do [ -s "$data/$b.ready" ] && break; sleep 0.1; done
    addr[$b]=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['public'])" "$data/$b.ready")
done
for round in $(seq 1 "$rounds"); do
    for rate in $rates; do
        for b in sleep spin; do
            for h in 0 "$send_spin_us"; do
                side="broker-$b.send-spin-$h.rate-$rate"
                out="$out_dir/$side/round-$round"
                mkdir -p "$out"
                echo "==> round $round $side" >&2
                taskset -c 0 "$harness" run bench-harness/workloads/fixed-rate-16p-1kb.toml \
                    --broker "${addr[$b]}" --server-pid "${pid[$b]}" --rate "$rate" \
                    --duration "$duration" --warmup 2 --send-spin-us "$h" --no-progress \
                    --out "$out" >"$out/report.txt"
            done
        done
    done
done
