#!/usr/bin/env bash
# Producer compression side by side: the json-orders-16p-1kb workload (1 KiB JSON order
# events, max rate, durable) with compression none, lz4 and zstd, ROUNDS rounds interleaved,
# each on a fresh broker (pinned to SERVER_CPUS) with the harness pinned to CLIENT_CPUS.
# Prints one line per run: msg/s, MB/s of records, e2e p50/p99, bytes the broker stored
# (its bytes_in counter: the batches as appended) and server CPU-s per GB of records.
#
#   ROUNDS=3 DURATION=10 WARMUP=3 DATA=/path/on/the/disk perf/compression.sh
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-3}
duration=${DURATION:-10}
warmup=${WARMUP:-3}
data=${DATA:-$PWD/perf-data/compression}
server_cpus=${SERVER_CPUS:-1}
client_cpus=${CLIENT_CPUS:-0}
out=${OUT:-$data/out}
bin=target/release
port=$((20000 + RANDOM % 20000))
mkdir -p "$data" "$out"
echo "| round | codec | msg/s | MB/s of records | e2e p50 µs | e2e p99 µs | bytes stored | stored ÷ value bytes acked | server CPU-s/GB |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
for round in $(seq 1 "$rounds"); do
    for codec in none lz4 zstd; do
        rm -rf "$data/broker"
        taskset -c "$server_cpus" "$bin/broker" --data-dir "$data/broker" \
            --listen "127.0.0.1:$port" --shard-port-base $((port + 1)) --shards 1 \
            >"$data/broker.log" 2>&1 &
        pid=$!
        for _ in $(seq 1 100); do
            BROKER_ADDR="127.0.0.1:$port" "$bin/brokerctl" topic list >/dev/null 2>&1 && break
            sleep 0.1
        done
        workload="$data/json-orders-$codec.toml"
        sed -e "s/^name = .*/name = \"json-orders-16p-1kb-$codec\"/" \
            -e "/^payload = /a compression = \"$codec\"" \
            bench-harness/workloads/json-orders-16p-1kb.toml >"$workload"
        "$bin/bench-harness" run "$workload" --broker "127.0.0.1:$port" \
            --server-pid "$pid" --server-cpus "$server_cpus" --client-cpus "$client_cpus" \
            --duration "$duration" --warmup "$warmup" --out "$out/r$round" --no-progress \
            --keep-topics >"$out/r$round-$codec.txt" 2>&1
        stored=$(BROKER_ADDR="127.0.0.1:$port" "$bin/brokerctl" stats | awk 'NR > 1 { s += $4 } END { printf "%.0f\n", s }')
        kill "$pid"
        wait "$pid" || true
        python3 - "$out/r$round/json-orders-16p-1kb-$codec-broker.json" "$round" "$codec" "$stored" <<'EOF'
import json, sys
path, rnd, codec, stored = sys.argv[1:]
r = json.load(open(path))
pub, e2e = r["publish"], r["end_to_end_latency"]
server = (r.get("cpu") or {}).get("server") or {}
print(f"| {rnd} | {codec} | {pub['msgs_per_s']:,.0f} | {pub['mb_per_s']:.1f} | "
      f"{e2e['p50_us']:,.0f} | {e2e['p99_us']:,.0f} | {int(stored):,} | "
      f"{int(stored) / (r['totals']['acked'] * r['workload']['message_bytes']):.3f} | {server.get('cpu_s_per_gb_produced') or float('nan'):.2f} |")
EOF
    done
done
