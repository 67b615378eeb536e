#!/usr/bin/env bash
# TLS read buffer A/B (issue 25): the same TLS workload against two broker binaries, counting
# the broker's receive syscalls and io_uring submissions with `perf stat` over the run.
#
#   A=/path/broker-without B=/path/broker-with perf/results/2026-12-04-tls-read-buffer/run.sh
#
# Environment: WORKLOAD (default fixed-rate-16p-1kb), RATE (msg/s, default 50000), DURATION
# (s, default 10), ROUNDS (A/B pairs, default 2), PERF_DATA_DIR (default ./perf-data).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
cd "$root"
harness=$root/target/release/bench-harness
workload=${WORKLOAD:-fixed-rate-16p-1kb}
rate=${RATE:-50000}
duration=${DURATION:-10}
rounds=${ROUNDS:-2}
data=${PERF_DATA_DIR:-$root/perf-data}
mkdir -p "$data"
certs=$(mktemp -d)
trap 'rm -rf "$certs"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout "$certs/ca.key" -out "$certs/ca.pem" -subj /CN=bench-ca 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$certs/server.key" -out "$certs/server.csr" -subj /CN=localhost 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' \
    >"$certs/ext"
openssl x509 -req -in "$certs/server.csr" -CA "$certs/ca.pem" -CAkey "$certs/ca.key" \
    -CAcreateserial -days 2 -extfile "$certs/ext" -out "$certs/server.pem" 2>/dev/null

run() { # NAME BINARY ROUND
    local name=$1 bin=$2 round=$3 out="$here/$1/round-$3"
    local dir="$data/tls-read-buffer"
    rm -rf "$dir" && mkdir -p "$out"
    taskset -c 1 "$bin" --data-dir "$dir" --listen 127.0.0.1:0 --shards 1 --metrics off \
        --tls-cert "$certs/server.pem" --tls-key "$certs/server.key" \
        --ready-file "$dir.ready" >"$out/broker.log" 2>&1 &
    local pid=$!
    for _ in $(seq 1 100); do [ -s "$dir.ready" ] && break; sleep 0.1; done
    local addr
    addr=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['public'])" "$dir.ready")
    perf stat -x, -e 'syscalls:sys_enter_recvfrom,syscalls:sys_enter_recvmsg,syscalls:sys_enter_read,syscalls:sys_enter_io_uring_enter,io_uring:io_uring_submit_req' \
        -p "$pid" -o "$out/perf-stat.csv" &
    local perf_pid=$!
    echo "==> $name round $round ($addr)" >&2
    taskset -c 0 "$harness" run "bench-harness/workloads/$workload.toml" --broker "$addr" \
        --tls-ca "$certs/ca.pem" --tls-server-name localhost --server-pid "$pid" \
        --rate "$rate" --duration "$duration" --warmup 2 --no-progress --out "$out" \
        >"$out/$workload.txt"
    kill -INT "$perf_pid"; wait "$perf_pid" || true
    kill "$pid"; wait "$pid" || true
    rm -rf "$dir" "$dir.ready"
}

for round in $(seq 1 "$rounds"); do
    run without "${A:?broker binary without the buffer}" "$round"
    run with "${B:?broker binary with the buffer}" "$round"
done
