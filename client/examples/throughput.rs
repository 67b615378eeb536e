//! End-to-end producer throughput through the real broker with the client library:
//! 1 KiB records, `written` (or `BENCH_ACK`) acks, one producer task, N seconds.
//!
//! `cargo run --release -p client --example throughput -- 127.0.0.1:9400 [partitions] [secs]`
//! (creates topic `throughput-<partitions>` if missing). Env: `BENCH_ACK` (default written),
//! `BENCH_BATCH_BYTES` (default 65536), `BENCH_IN_FLIGHT` (requests per partition, default 5).

use std::time::{Duration, Instant};

use client::{Client, Producer, ProducerConfig};
use wire::{AckLevel, TopicConfig};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), client::ClientError> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9400".into());
    let partitions: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let secs: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);
    let ack = std::env::var("BENCH_ACK")
        .ok()
        .and_then(|s| AckLevel::parse(&s))
        .unwrap_or(AckLevel::Written);
    let topic = format!("throughput-{partitions}");
    let client = Client::connect(&addr).await?;
    if client.partition_count(&topic).await.is_err() {
        client
            .create_topic(
                &topic,
                TopicConfig {
                    partition_count: partitions,
                    retention_ms: -1,
                    retention_bytes: -1,
                    ..Default::default()
                },
            )
            .await?;
    }
    let producer = Producer::new(
        client,
        ProducerConfig {
            ack,
            batch_bytes_max: env_or("BENCH_BATCH_BYTES", 64 << 10),
            linger: Duration::from_micros(500),
            in_flight_per_partition_max: env_or("BENCH_IN_FLIGHT", 5),
            ..Default::default()
        },
    );
    let value = vec![0x62u8; 1024];
    let start = Instant::now();
    let mut n = 0u64;
    let mut window = std::collections::VecDeque::new();
    while start.elapsed() < Duration::from_secs(secs) {
        for _ in 0..1000 {
            window
                .push_back(producer.send(&topic, Some(&n.to_le_bytes()), Some(&value), &[]).await?);
            n += 1;
        }
        while window.len() > 50_000 {
            window.pop_front().expect("nonempty").await?;
        }
    }
    producer.flush().await?;
    for f in window {
        f.await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{partitions} partition(s), ack {}: {n} records, {:.1} MB/s of values, {:.0} records/s",
        ack.name(),
        n as f64 * 1024.0 / elapsed / 1e6,
        n as f64 / elapsed
    );
    Ok(())
}
