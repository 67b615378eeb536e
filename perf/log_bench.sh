#!/usr/bin/env bash
# Partition-log benchmark next to the disk's own limit, measured in the same run.
# Usage: perf/log_bench.sh [DIR]   (DIR on the disk to test; default the system temp dir)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-${TMPDIR:-/tmp}}"
command -v fio >/dev/null || { apt-get update -qq && apt-get install -y -qq fio; }
echo "## fio O_DIRECT sequential write, 1 MiB blocks, iodepth 8 ($dir)"
fio --name=seqwrite --directory="$dir" --rw=write --direct=1 --ioengine=io_uring --bs=1M \
    --iodepth=8 --size=2G --runtime=10 --time_based --group_reporting --output-format=terse \
    --terse-version=3 | awk -F';' '{ printf "fio write: %.1f MB/s\n", $48 * 1024 / 1e6 }'
rm -f "$dir"/seqwrite.*
echo "## fio O_DIRECT write + fdatasync per 64 KiB (group-commit floor)"
fio --name=syncwrite --directory="$dir" --rw=write --direct=1 --ioengine=psync --bs=64k \
    --fdatasync=1 --size=512M --runtime=10 --time_based --output-format=terse --terse-version=3 \
    | awk -F';' '{ printf "fio 64k write+fdatasync: %.1f MB/s\n", $48 * 1024 / 1e6 }'
rm -f "$dir"/syncwrite.*
echo "## partition log"
BENCH_DIR="$dir" cargo bench -p broker --bench partition_log
