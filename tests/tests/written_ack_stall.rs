//! Probe: how long `written` produces take, end to end and per broker stage, so a stall of
//! the partition's writer shows (`docs/notes/written-ack-stall.md`). Ignored by default: it
//! means something only under load (run it beside a build, see the note), and it asserts
//! only that every produce was acked.
//!
//! `PROBE_N` produces (default 400) of one batch of `PROBE_RECORDS` records (default 17) of
//! `PROBE_VALUE_BYTES` bytes (default 60,000: about 1 MiB a batch), one at a time, on a
//! 1-shard broker; prints the round trip's p50/p99/max, how many took over 20 ms / 100 ms /
//! 1 s, and the broker's stage histograms (`log_queue` = enqueued → write submitted: a
//! writer that was woken and not run shows there).

use std::time::{Duration, Instant};

use integration_tests::{create_topic, produce, Broker};
use wire::{AckLevel, BatchBuilder, StatsRequest, StatsResponse};

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

#[test]
#[ignore = "a load probe: run it with --ignored beside a build (docs/notes/written-ack-stall.md)"]
fn written_latency_probe() {
    let (n, records, value_bytes) =
        (knob("PROBE_N", 400), knob("PROBE_RECORDS", 17), knob("PROBE_VALUE_BYTES", 60_000));
    let broker = Broker::start_with_env(1, &[("BROKER_METRICS_LISTEN", "off")]);
    let mut c = broker.connect();
    create_topic(&mut c, "probe", 1);
    let value = vec![b'v'; value_bytes];
    let mut batch = BatchBuilder::new(64 << 20);
    for _ in 0..records {
        batch.append(1, None, Some(&value), &[]).expect("append");
    }
    let batch = batch.finish().expect("batch");
    let mut took = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        let r = produce(&mut c, "probe", 0, &batch, AckLevel::Written);
        let d = started.elapsed();
        assert_eq!(r.error, 0, "produce {i} answered {} after {d:?}", r.error);
        if d > Duration::from_millis(200) {
            eprintln!("produce {i}: {d:?}");
        }
        took.push(d);
    }
    took.sort();
    let over = |ms: u64| took.iter().filter(|d| **d > Duration::from_millis(ms)).count();
    eprintln!(
        "{n} written produces: p50 {:?} p99 {:?} max {:?}; over 20 ms: {}, over 100 ms: {}, over 1 s: {}",
        took[n / 2],
        took[n * 99 / 100],
        took[n - 1],
        over(20),
        over(100),
        over(1000)
    );
    let stats: StatsResponse = c.call(&StatsRequest {
        shards: Vec::new(),
        group_lag: false,
        latency: true,
        reset_latency: false,
    });
    for s in &stats.shards {
        for l in &s.latency {
            eprintln!(
                "shard {} {:14} n {:6} p50 {:8} p99 {:8} max {:8} us",
                s.shard_id, l.stage, l.count, l.p50_us, l.p99_us, l.max_us
            );
        }
    }
}
