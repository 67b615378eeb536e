#!/usr/bin/env bash
# Metrics overhead on max-rate produce (issue 21), three brokers side by side:
#   base: the last commit before the metrics work (81cac30), release build;
#   off:  this branch with --metrics off (the per-shard counters still count);
#   on:   this branch with the endpoint on, scraped every second.
# Alternating, the order rotating each round, fresh broker and data dir per run. Broker
# pinned to core 1 (--shards 1); harness and the scraper pinned to core 0. The scraper runs
# in every mode (its connections are refused where there is no endpoint), so the client
# core carries the same load. Binaries in $BIN: broker-base, broker-head, bench-harness.
# Usage (workspace root): bench_metrics.sh "ROUNDS" [OUT]
set -u
ROUNDS=${1:-"1 2 3"}
OUT=${2:-/tmp/metrics-bench}
BIN=${BIN:-target/bench-bin}
WL=bench-harness/workloads/max-rate-1p-1kb.toml
DATA=${BENCH_DATA_DIR:-$PWD/target/bench-metrics-data}
ulimit -l unlimited 2>/dev/null
mkdir -p "$OUT"
for round in $ROUNDS; do
  case $((round % 3)) in
    0) modes="base off on" ;;
    1) modes="off on base" ;;
    2) modes="on base off" ;;
  esac
  for mode in $modes; do
    d=$DATA/$mode-$round; rm -rf "$d"; mkdir -p "$d"
    rf=$d.ready; rm -f "$rf"
    case $mode in
      base) args=(); bin=$BIN/broker-base ;;
      off) args=(--metrics off); bin=$BIN/broker-head ;;
      on) args=(--metrics 127.0.0.1:19644); bin=$BIN/broker-head ;;
    esac
    taskset -c 1 "$bin" --shards 1 --listen 127.0.0.1:19400 --shard-port-base 19401 \
      "${args[@]}" --data-dir "$d" --ready-file "$rf" > "$d.log" 2>&1 &
    bp=$!
    for _ in $(seq 100); do [ -s "$rf" ] && break; sleep 0.1; done
    (while true; do taskset -c 0 curl -s -o /dev/null http://127.0.0.1:19644/metrics; sleep 1; done) &
    scraper=$!
    t0=$(awk '{print $14+$15}' /proc/$bp/stat)
    taskset -c 0 "$BIN/bench-harness" run $WL --broker 127.0.0.1:19400 \
      --duration 15 --warmup 3 --out "$OUT/$mode-$round" --no-progress --check \
      > "$OUT/$mode-$round.txt" 2>&1
    t1=$(awk '{print $14+$15}' /proc/$bp/stat)
    kill "$scraper"
    [ "$mode" = on ] && curl -s http://127.0.0.1:19644/metrics > "$OUT/$mode-$round.metrics.txt"
    echo "$mode round $round broker_cpu_s=$(echo "($t1-$t0)/100" | bc -l)" | tee -a "$OUT/cpu.txt"
    kill -TERM $bp; wait $bp
    rm -rf "$d" "$rf"
  done
done
