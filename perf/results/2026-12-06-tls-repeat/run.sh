#!/usr/bin/env bash
# Issue 25's repeat: three batches of 3 plaintext/TLS round pairs on the max-rate workloads,
# then 3 pairs at 100 MB/s, with the committed TLS script. BROKER = the release broker under
# test (default target/release/broker); results under OUT (default /work/perf-data/tls-repeat).
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$root"
broker=${BROKER:-$root/target/release/broker}
out=${OUT:-/work/perf-data/tls-repeat}
for b in 1 2 3; do
  OUT=$out/batch$b BROKER=$broker ROUNDS=3 DURATION=10 WARMUP=3 \
    WORKLOADS="max-rate-1p-1kb max-rate-1p-1kb-written" PERF_DATA_DIR=/work/perf-data \
    perf/results/2026-12-04-tls/run.sh
done
OUT=$out/fr BROKER=$broker ROUNDS=3 DURATION=10 WARMUP=3 \
  WORKLOADS="fixed-rate-16p-1kb" PERF_DATA_DIR=/work/perf-data perf/results/2026-12-04-tls/run.sh
