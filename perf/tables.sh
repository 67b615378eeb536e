#!/usr/bin/env bash
# Tables (issue 18): load a keyed table topic (RECORDS records over KEYS keys, written acks),
# then measure how long a restarted broker takes until every partition's table reflects the
# whole log — with no table snapshot (a full replay) and after a clean stop (the close's
# snapshot: no replay) — and table_get latency under a concurrent keyed produce load.
# Broker pinned to SERVER_CPUS, the client to CLIENT_CPUS; release builds.
#
#   RECORDS=10000000 KEYS=1000000 DATA=/path/on/the/disk perf/tables.sh
set -euo pipefail
cd "$(dirname "$0")/.."
records=${RECORDS:-10000000}
keys=${KEYS:-1000000}
partitions=${PARTITIONS:-4}
gets=${GETS:-20000}
rate=${PRODUCE_RATE:-20000}
data=${DATA:-$PWD/perf-data/tables}
server_cpus=${SERVER_CPUS:-1}
client_cpus=${CLIENT_CPUS:-0}
bin=target/release
bench=target/release/examples/table_bench
port=$((20000 + RANDOM % 20000))
addr="127.0.0.1:$port"
rm -rf "$data"
mkdir -p "$data"
pid=
start_broker() {
    taskset -c "$server_cpus" "$bin/broker" --data-dir "$data/broker" --listen "$addr" \
        --shard-port-base $((port + 1)) --shards 1 --metrics off >>"$data/broker.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 600); do
        BROKER_ADDR="$addr" "$bin/brokerctl" topic list >/dev/null 2>&1 && return
        sleep 0.1
    done
    echo "broker did not start" >&2
    exit 1
}
stop_broker() { kill "$pid"; wait "$pid" || true; }
client() { taskset -c "$client_cpus" "$bench" "$@" --broker "$addr" --topic tbl --keys "$keys"; }

start_broker
client load --partitions "$partitions" --records "$records"
du -sh "$data/broker/topics~/tbl"
stop_broker
echo "== restart without table snapshots (full replay)"
find "$data/broker/topics~/tbl" -name table.snapshot -delete
start_broker
client ready
grep "table caught up" "$data/broker.log" | tail -"$partitions"
stop_broker
echo "== restart after a clean stop (the close stored each table's snapshot)"
start_broker
client ready
echo "== table_get under load"
client read --gets "$gets" --produce-rate "$rate"
stop_broker
