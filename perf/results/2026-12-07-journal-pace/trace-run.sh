#!/bin/bash
# usage: trace-run.sh <broker-bin> <outdir>
T=/sys/kernel/tracing
echo 0 > $T/tracing_on; echo > $T/trace; echo 65536 > $T/buffer_size_kb
for e in sched/sched_switch sched/sched_wakeup irq/irq_handler_entry ipi/ipi_send_cpu block/block_rq_issue block/block_rq_complete jbd2/jbd2_start_commit jbd2/jbd2_end_commit jbd2/jbd2_run_stats io_uring/io_uring_submit_req io_uring/io_uring_complete ext4/ext4_sync_file_enter ext4/ext4_sync_file_exit; do echo 1 > $T/events/$e/enable; done
echo global > $T/trace_clock
d=$2; rm -rf $d $d-out
cd /work/main
( sleep 6; echo 1 > $T/tracing_on; sleep 4; echo 0 > $T/tracing_on ) &
target/release/bench-harness run bench-harness/workloads/fixed-rate-16p-1kb.toml --spawn --server-bin $1 --spawn-dir $d --shards 1 --server-cpus 1 --client-cpus 0 --duration 8 --warmup 3 --no-progress --out $d-out > $d.log 2>&1
wait
cat $T/trace > $d.trace
for e in sched/sched_switch sched/sched_wakeup irq/irq_handler_entry ipi/ipi_send_cpu block/block_rq_issue block/block_rq_complete jbd2/jbd2_start_commit jbd2/jbd2_end_commit jbd2/jbd2_run_stats io_uring/io_uring_submit_req io_uring/io_uring_complete ext4/ext4_sync_file_enter ext4/ext4_sync_file_exit; do echo 0 > $T/events/$e/enable; done
wc -l $d.trace
