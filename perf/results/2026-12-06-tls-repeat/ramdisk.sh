#!/usr/bin/env bash
# TLS's latency cost at 100 MB/s without the disk's variance: the same plaintext/TLS pairs
# (perf/results/2026-12-04-tls/run.sh) with the data directory on an ext4 file system in
# RAM (a loop device over a file in /dev/shm: direct I/O and fdatasync work, and cost
# microseconds). Needs root. ROUNDS pairs (default 5); results under OUT.
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
img=/dev/shm/broker-bench.img
mnt=${MNT:-/mnt/broker-ram}
out=${OUT:-/work/perf-data/tls-ram}
mkdir -p "$mnt"
if ! mountpoint -q "$mnt"; then
  truncate -s 6G "$img"
  mkfs.ext4 -q -F "$img"
  mount -o loop "$img" "$mnt"
fi
trap 'umount "$mnt"; rm -f "$img"' EXIT
cd "$root"
OUT=$out BROKER=${BROKER:-$root/target/release/broker} ROUNDS=${ROUNDS:-5} DURATION=10 WARMUP=3 \
  WORKLOADS="fixed-rate-16p-1kb" PERF_DATA_DIR="$mnt" perf/results/2026-12-04-tls/run.sh
