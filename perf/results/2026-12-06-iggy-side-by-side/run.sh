#!/bin/bash
# Three rounds of the side-by-side suite (broker and Iggy without fsync, then Iggy with fsync),
# each round's results moved aside. Needs: a scratch clone of this repository at
# /tmp/harness-iggy with ../2026-12-05-iggy-side-by-side/harness-iggy-sdk.patch applied (the
# harness's Iggy driver against the Iggy checkout's SDK, /tmp/iggy-src), and an iggy-server
# built from that checkout (recipe in ../2026-12-05-iggy-side-by-side/README.md).
cd /tmp/harness-iggy
c=$(git rev-parse --short HEAD)
base=perf/results/$(date +%F)-$c-side-by-side
for r in 1 2 3; do
  echo "=== round $r $(date) $(head -1 /proc/pressure/io)"
  IGGY_ROOT_USERNAME=iggy IGGY_ROOT_PASSWORD=iggy SIDE_BY_SIDE=1 LIMITS=0 SHARDS=1 DRIVERS="broker iggy" \
    WORKLOADS="max-rate-1p-1kb fixed-rate-16p-1kb" DURATION=10 WARMUP=3 \
    PERF_DATA_DIR=/work/perf-data IGGY_SERVER_BIN=/work/scratch/iggy-src/target/release/iggy-server perf/run.sh > /tmp/sbs-r$r.log 2>&1
  echo "rc=$?"
  rm -rf /tmp/sbs-out/r$r; mkdir -p /tmp/sbs-out; mv $base /tmp/sbs-out/r$r
  echo "=== fsync round $r $(date) $(head -1 /proc/pressure/io)"
  IGGY_ENFORCE_FSYNC=1 IGGY_ROOT_USERNAME=iggy IGGY_ROOT_PASSWORD=iggy SIDE_BY_SIDE=1 LIMITS=0 SHARDS=1 DRIVERS="iggy" \
    WORKLOADS="max-rate-1p-1kb" DURATION=10 WARMUP=3 \
    PERF_DATA_DIR=/work/perf-data IGGY_SERVER_BIN=/work/scratch/iggy-src/target/release/iggy-server perf/run.sh > /tmp/sbs-f$r.log 2>&1
  echo "rc=$?"
  rm -rf /tmp/sbs-out/f$r; mv $base /tmp/sbs-out/f$r
done
echo done
