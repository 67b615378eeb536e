#!/bin/sh
BROKER_SHARD_JOURNAL_CHECKPOINT_SYNCFS=false exec ${BROKER_BIN:-/work/perf-data/bin/broker-24d880e} "$@"
