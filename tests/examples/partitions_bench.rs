//! Many partitions on one broker: create them, write to a sample, restart, and report the
//! idle cost per partition (RSS, file descriptors) and the create and restart times.
//!
//! `cargo run --release -p integration-tests --example partitions_bench` (PARTITIONS, default
//! 10,000; SHARDS, default 2). Results are recorded in `perf/results/`.

use std::time::Instant;

use integration_tests::{create_topic, Broker, Conn};
use wire::*;

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn produce_one(conn: &mut Conn, partition: u32) {
    let mut b = BatchBuilder::new(1 << 16);
    b.append(0, Some(b"k"), Some(b"v"), &[]).unwrap();
    let resp: ProduceResponse = conn.call(&ProduceRequest {
        ack: AckLevel::Durable,
        timeout_ms: 10_000,
        topics: vec![ProduceTopic {
            name: "many".into(),
            partitions: vec![ProducePartition {
                partition,
                batches: b.finish().unwrap().to_vec(),
                expect: Default::default(),
            }],
        }],
    });
    let e = resp.topics[0].partitions[0].error;
    assert_eq!(e, 0, "partition {partition}: {:?}", ErrorCode::from_u16(e));
}

fn main() {
    let partitions: u32 =
        std::env::var("PARTITIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let shards: usize = std::env::var("SHARDS").ok().and_then(|s| s.parse().ok()).unwrap_or(2);
    let mut broker = Broker::start(shards);
    let mut admin = broker.connect();
    admin.set_read_timeout(Some(std::time::Duration::from_secs(600)));
    let (rss0, fds0) = (broker.rss_bytes(), fds(broker.pid()));
    let t = Instant::now();
    let owners = create_topic(&mut admin, "many", partitions);
    let create_s = t.elapsed().as_secs_f64();
    eprintln!("created {partitions} partitions in {create_s:.1} s");
    let (rss1, fds1) = (broker.rss_bytes(), fds(broker.pid()));
    let mut conns: Vec<Conn> = (0..shards).map(|i| broker.connect_shard(i)).collect();
    for c in &conns {
        c.set_read_timeout(Some(std::time::Duration::from_secs(600)));
    }
    let sample: Vec<u32> = (0..partitions).step_by(97).collect();
    let t = Instant::now();
    for &p in &sample {
        produce_one(&mut conns[owners[p as usize] as usize], p);
    }
    let produce_ms = t.elapsed().as_secs_f64() * 1e3 / sample.len() as f64;
    drop(conns);
    drop(admin);
    let t = Instant::now();
    assert_eq!(broker.stop(), Some(0));
    let stop_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    broker.restart();
    let restart_s = t.elapsed().as_secs_f64();
    let (rss2, fds2) = (broker.rss_bytes(), fds(broker.pid()));
    eprintln!("restarted in {restart_s:.1} s");
    let mut conn = broker.connect();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(600)));
    let d: DescribeTopicResponse = conn.call(&DescribeTopicRequest { name: "many".into() });
    let with_data = d.partitions.iter().filter(|p| p.high_watermark > 0).count();
    assert_eq!(d.partitions.len(), partitions as usize);
    assert_eq!(with_data, sample.len(), "every written partition came back");
    let n = f64::from(partitions);
    println!("| partitions | shards | create s | RSS/partition after create | fds/partition | durable produce ms (one partition, cold) | stop s | restart s | RSS/partition after restart |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {partitions} | {shards} | {create_s:.2} | {:.1} KiB | {:.2} | {produce_ms:.2} | {stop_s:.2} | {restart_s:.2} | {:.1} KiB |",
        rss1.saturating_sub(rss0) as f64 / n / 1024.0,
        (fds1.saturating_sub(fds0)) as f64 / n,
        rss2.saturating_sub(rss0) as f64 / n / 1024.0,
    );
    eprintln!("(fds after restart: {fds2})");
}
