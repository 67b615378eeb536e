#!/bin/sh
BROKER_SHARD_JOURNAL_FILE_BYTES=1073741824 exec ${BROKER_BIN:-/work/perf-data/bin/broker-6d6bb88} "$@"
