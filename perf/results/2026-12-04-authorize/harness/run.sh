#!/usr/bin/env bash
# A/B: authentication off (no users) vs required with a non-superuser whose ACL (a prefix rule
# among 50 others) allows the harness's topics. Broker pinned to CPU 1, harness to CPU 0.
set -u
REL=/work/wt-auth/target/release
OUT=/tmp/authbench/out
mkdir -p $OUT
W=/work/wt-auth/bench-harness/workloads
round=$1
for mode in off on; do
  D=/tmp/authbench/data-$mode-$round; rm -rf $D; mkdir -p $D
  if [ $mode = on ]; then
    echo 'admin-pw' | $REL/broker user add admin --data-dir $D --superuser >/dev/null
  fi
  $REL/broker --data-dir $D --listen 127.0.0.1:19800 --shard-port-base 19801 --shards 1 --metrics off > /tmp/authbench/broker-$mode-$round.log 2>&1 &
  PID=$!
  sleep 2
  if [ $mode = on ]; then
    export BROKER_ADDR=127.0.0.1:19800 BROKER_USER=admin BROKER_PASSWORD=admin-pw
    echo 'bench-pw' | $REL/../debug/brokerctl user add bench >/dev/null
    for i in $(seq 1 49); do $REL/../debug/brokerctl acl add --user "u$i" --topic "t$i" --op read >/dev/null; done
    $REL/../debug/brokerctl acl add --user bench --topic-prefix bench- --op all >/dev/null
    export BROKER_USER=bench BROKER_PASSWORD=bench-pw
  else
    export BROKER_ADDR=127.0.0.1:19800; unset BROKER_USER BROKER_PASSWORD
  fi
  for wl in max-rate-1p-1kb fixed-rate-16p-1kb; do
    $REL/bench-harness run $W/$wl.toml --broker 127.0.0.1:19800 --server-pid $PID \
      --server-cpus 1 --client-cpus 0 --duration 15 --warmup 3 --no-progress --check \
      --out $OUT/$mode-$round > $OUT/$mode-$round-$wl.txt 2>&1
    echo "$mode round $round $wl rc=$?"
  done
  kill $PID; wait $PID 2>/dev/null
done
