#!/usr/bin/env bash
# Client read buffer A/B (issue 26): one broker (pinned to CPU 1), two harness binaries built
# without and with the client's frame read buffer (pinned to CPU 0), alternating; `perf stat`
# counts the harness's socket reads over each run.
#
#   A=/path/harness-without B=/path/harness-with perf/results/2026-12-04-client-read-buffer/run.sh
#
# Environment: WORKLOADS (default "fixed-rate-16p-1kb max-rate-1p-1kb"), RATE (msg/s for
# fixed-rate workloads, default 50000), DURATION (s, default 10), ROUNDS (default 2),
# BROKER (binary, default target/release/broker), PERF_DATA_DIR (default ./perf-data), OUT
# (result directory, default this one).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
cd "$root"
out_dir=${OUT:-$here}
workloads=${WORKLOADS:-"fixed-rate-16p-1kb max-rate-1p-1kb"}
rate=${RATE:-50000}
duration=${DURATION:-10}
rounds=${ROUNDS:-2}
broker=${BROKER:-$root/target/release/broker}
data=${PERF_DATA_DIR:-$root/perf-data}/client-read-buffer
rm -rf "$data" "$data.ready" && mkdir -p "$data" "$out_dir"
taskset -c 1 "$broker" --data-dir "$data" --listen 127.0.0.1:0 --shards 1 --metrics off \
    --ready-file "$data.ready" >"$out_dir/broker.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data" "$data.ready"' EXIT
for _ in $(seq 1 100); do [ -s "$data.ready" ] && break; sleep 0.1; done
addr=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['public'])" "$data.ready")
for w in $workloads; do
    rate_args=()
    case $w in fixed-rate*) rate_args=(--rate "$rate") ;; esac
    for round in $(seq 1 "$rounds"); do
        for side in without with; do
            bin=$A
            [ "$side" = with ] && bin=$B
            out="$out_dir/$side/round-$round"
            mkdir -p "$out"
            echo "==> $w $side round $round" >&2
            perf stat -x, -o "$out/$w.perf-stat.csv" \
                -e 'syscalls:sys_enter_recvfrom,syscalls:sys_enter_read,syscalls:sys_enter_epoll_wait' \
                -- taskset -c 0 "$bin" run "bench-harness/workloads/$w.toml" --broker "$addr" \
                --server-pid "$pid" "${rate_args[@]}" --duration "$duration" --warmup 2 \
                --no-progress --out "$out" >"$out/$w.txt"
        done
    done
done
