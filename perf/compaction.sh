#!/usr/bin/env bash
# Compaction (issue 18): keyed durable produce at RATE records/s to a plain and a compacted
# topic, side by side in one broker (A B A B), with per-record ack latency while the cleaner
# rewrites the compacted topic; then bytes on disk per topic and the cleaner's passes from
# the broker's log. Broker pinned to SERVER_CPUS, the client to CLIENT_CPUS; release builds.
#
#   RATE=20000 SECONDS=20 KEYS=100000 perf/compaction.sh
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${RATE:-20000}
seconds=${SECONDS_PER_RUN:-20}
keys=${KEYS:-100000}
data=${DATA:-$PWD/perf-data/compaction}
server_cpus=${SERVER_CPUS:-1}
client_cpus=${CLIENT_CPUS:-0}
bin=target/release
port=$((20000 + RANDOM % 20000))
addr="127.0.0.1:$port"
rm -rf "$data"
mkdir -p "$data"
BROKER_RETENTION_CHECK_MS=1000 taskset -c "$server_cpus" "$bin/broker" --data-dir "$data/broker" \
    --listen "$addr" --shard-port-base $((port + 1)) --shards 1 --metrics off >"$data/broker.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
    BROKER_ADDR="$addr" "$bin/brokerctl" topic list >/dev/null 2>&1 && break
    sleep 0.1
done
taskset -c "$client_cpus" target/release/examples/compaction_bench --broker "$addr" \
    --data-dir "$data/broker" --rate "$rate" --seconds "$seconds" --keys "$keys"
grep "compaction pass" "$data/broker.log" | awk '{
    for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] += kv[2] }
    n++ } END { printf "cleaner: %d passes, %d segments rewritten, %d records removed, %.1f MB -> %.1f MB\n",
    n, v["segments"], v["records_removed"], v["bytes_before"] / 1e6, v["bytes_after"] / 1e6 }'
kill "$pid"; wait "$pid" || true
