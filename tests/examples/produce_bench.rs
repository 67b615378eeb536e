//! End-to-end produce benchmark through the real broker (issue 4; the full harness is the
//! `bench-harness` crate's job): one producer thread, 1 KiB records in 64 KiB batches,
//! `written` acks, 8 requests in flight per connection, against 1 partition and against 8
//! (shard-aware: each partition's requests go to its owner's port).
//!
//! Run: `cargo run --release -p integration-tests --example produce_bench` (env
//! `BENCH_SECS`, default 5; `BENCH_ACK=durable`). Spawns its own broker (2 shards) on a temp
//! dir.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use integration_tests::{create_topic, Broker, Conn};
use wire::*;

const DEPTH: usize = 8;

fn main() {
    let secs: u64 = std::env::var("BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let ack = std::env::var("BENCH_ACK")
        .ok()
        .and_then(|s| AckLevel::parse(&s))
        .unwrap_or(AckLevel::Written);
    let broker = Broker::start(2);
    let mut admin = broker.connect();
    println!(
        "| partitions | ack | MB/s | records/s | p50 µs | p99 µs | p99.9 µs | max µs | forwards |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for partitions in [1u32, 8] {
        let topic = format!("bench{partitions}");
        let owners = create_topic(&mut admin, &topic, partitions);
        let mut conns: Vec<Conn> = (0..2).map(|i| broker.connect_shard(i)).collect();
        let mut inflight: Vec<VecDeque<(u64, Instant)>> = vec![VecDeque::new(); 2];
        let mut b = BatchBuilder::new(64 << 10);
        let value = vec![0x42u8; 1000];
        let mut n = 0u64;
        while b.append(0, Some(&n.to_le_bytes()), Some(&value), &[]).is_ok() {
            n += 1;
        }
        let batch = b.finish().unwrap().to_vec();
        let records_per_batch = n;
        let requests: Vec<ProduceRequest> = (0..partitions)
            .map(|p| ProduceRequest {
                ack,
                timeout_ms: 30_000,
                topics: vec![ProduceTopic {
                    name: topic.clone(),
                    partitions: vec![ProducePartition {
                        partition: p,
                        batches: batch.clone(),
                        expect: Default::default(),
                    }],
                }],
            })
            .collect();
        let mut hist = Histogram::<u64>::new(3).unwrap();
        let start = Instant::now();
        let mut done = 0u64;
        let mut i = 0usize;
        let deadline = start + Duration::from_secs(secs);
        while Instant::now() < deadline {
            let p = i % partitions as usize;
            i += 1;
            let s = owners[p] as usize;
            if inflight[s].len() >= DEPTH {
                let (id, sent) = inflight[s].pop_front().unwrap();
                let r: ProduceResponse = conns[s].wait(id).decode();
                assert_eq!(r.topics[0].partitions[0].error, 0);
                hist.record(sent.elapsed().as_micros() as u64).unwrap();
                done += 1;
            }
            let id = conns[s].send(&requests[p]);
            inflight[s].push_back((id, Instant::now()));
        }
        for s in 0..2 {
            while let Some((id, sent)) = inflight[s].pop_front() {
                let r: ProduceResponse = conns[s].wait(id).decode();
                assert_eq!(r.topics[0].partitions[0].error, 0);
                hist.record(sent.elapsed().as_micros() as u64).unwrap();
                done += 1;
            }
        }
        let elapsed = start.elapsed().as_secs_f64();
        let stats: StatsResponse = admin.call(&StatsRequest {
            shards: vec![],
            group_lag: false,
            latency: false,
            reset_latency: false,
        });
        let forwards: u64 = stats.shards.iter().map(|s| s.forwards_out).sum();
        println!(
            "| {partitions} | {} | {:.1} | {:.0} | {} | {} | {} | {} | {forwards} |",
            ack.name(),
            done as f64 * batch.len() as f64 / elapsed / 1e6,
            done as f64 * records_per_batch as f64 / elapsed,
            hist.value_at_quantile(0.5),
            hist.value_at_quantile(0.99),
            hist.value_at_quantile(0.999),
            hist.max()
        );
    }
}
