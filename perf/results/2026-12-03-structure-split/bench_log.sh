#!/usr/bin/env bash
set -u
OUT=/tmp/benchlog; mkdir -p $OUT
for round in 1 2 3; do
  for v in before after; do
    d=/work/benchdata/log-$v-$round; rm -rf $d; mkdir -p $d
    BENCH_DIR=$d BENCH_SECS=5 taskset -c 1 /tmp/$v/partition_log-4cf849fc9e7b4b1f --bench > $OUT/$v-$round.txt 2>&1
    rm -rf $d
  done
done
