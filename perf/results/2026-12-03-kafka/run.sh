#!/usr/bin/env bash
# Kafka listener vs native client, same broker process, same shape of load (issue 22).
# Usage: perf/results/2026-12-03-kafka/run.sh DATA_DIR   (a disk that supports O_DIRECT)
# Needs: cargo build --release -p broker -p bench-harness; pip install confluent-kafka.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
data="${1:?data dir}"
rm -rf "$data" && mkdir -p "$data"
"$root/target/release/broker" --data-dir "$data/data" --listen 127.0.0.1:0 --shard-port-base 0 \
    --shards 2 --metrics off --kafka-listen 127.0.0.1:0 --ready-file "$data/ready.json" \
    >"$data/broker.log" 2>&1 &
pid=$!
trap 'kill $pid' EXIT
for _ in $(seq 100); do [ -f "$data/ready.json" ] && break; sleep 0.1; done
public=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['public'])" "$data/ready.json")
kafka=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['kafka'])" "$data/ready.json")
for round in 1 2; do
    echo "== round $round: native, 64 KiB batches (bench-harness max-rate-1p-1kb)"
    "$root/target/release/bench-harness" run "$root/bench-harness/workloads/max-rate-1p-1kb.toml" \
        --broker "$public" --server-pid "$pid" --duration 10 --warmup 2 --out "$data/out" | grep -E '^\| broker|server:'
    echo "== round $round: kafka (confluent-kafka), 64 KiB batches"
    BROKER_PID=$pid python3 "$here/kafka_perf.py" "$kafka" "k64-$round" 1 300000
    echo "== round $round: native, 1 MiB batches"
    "$root/target/release/bench-harness" run "$here/max-rate-1p-1kb-1mib-batches.toml" \
        --broker "$public" --server-pid "$pid" --duration 10 --warmup 2 --out "$data/out" | grep -E '^\| broker|server:'
    echo "== round $round: kafka (confluent-kafka), 1 MiB batches"
    BATCH=1048576 LINGER=5 BROKER_PID=$pid python3 "$here/kafka_perf.py" "$kafka" "k1m-$round" 1 600000
    echo "== round $round: kafka (confluent-kafka), 1 MiB batches, lz4"
    BATCH=1048576 LINGER=5 BROKER_PID=$pid python3 "$here/kafka_perf.py" "$kafka" "k1m-lz4-$round" 1 600000 lz4
done
