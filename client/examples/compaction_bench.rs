//! Compaction benchmark (issue 18): does the cleaner stall appends? Keyed durable produce at a
//! fixed rate to a plain and a compacted topic, side by side in one broker, one after the
//! other and then again (A B A B), with per-record ack latency; the cleaner rewrites the
//! compacted topic's closed segments meanwhile. Prints latency percentiles per run and the
//! bytes each topic holds on disk at the end.
//!
//! ```text
//! compaction_bench --broker A --data-dir DIR --rate 20000 --seconds 20 --keys 100000
//! ```

use std::time::{Duration, Instant};

use client::{Client, Producer, ProducerConfig};
use wire::{AckLevel, TopicConfig};

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// xorshift64*: key choice without a dependency.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let broker: String = arg(&args, "--broker", "127.0.0.1:9400".to_owned());
    let data_dir: String = arg(&args, "--data-dir", String::new());
    let rate: u64 = arg(&args, "--rate", 20_000);
    let seconds: u64 = arg(&args, "--seconds", 20);
    let keys: u64 = arg(&args, "--keys", 100_000);
    let value_bytes: usize = arg(&args, "--value-bytes", 1000);
    let client = Client::connect(&broker).await?;
    for (topic, compact) in [("plain", false), ("compacted", true)] {
        let config = TopicConfig {
            partition_count: 4,
            retention_ms: -1,
            retention_bytes: -1,
            segment_bytes_max: 8 << 20,
            compact,
            ..Default::default()
        };
        client.create_topic(topic, config).await?;
    }
    let producer = std::sync::Arc::new(Producer::new(
        client.clone(),
        ProducerConfig { ack: AckLevel::Durable, ..Default::default() },
    ));
    let value = vec![b'v'; value_bytes];
    let mut state = 0x1234_5678u64;
    for round in 0..2 {
        for topic in ["plain", "compacted"] {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
            let collector = tokio::spawn(async move {
                let mut h = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
                while let Some(us) = rx.recv().await {
                    let _ = h.record(us);
                }
                h
            });
            let started = Instant::now();
            let mut sent = 0u64;
            let total = rate * seconds;
            while sent < total {
                let due = ((started.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
                while sent < due {
                    let k = format!("key-{:08}", next(&mut state) % keys).into_bytes();
                    let t = Instant::now();
                    let ack = producer.send(topic, Some(&k), Some(&value), &[]).await?;
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        if ack.await.is_ok() {
                            let _ = tx.send(t.elapsed().as_micros() as u64);
                        }
                    });
                    sent += 1;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            producer.flush().await?;
            drop(tx);
            let h = collector.await?;
            println!(
                "round {round} {topic:>9}: {} acks at {rate}/s: p50 {} µs p99 {} µs p99.9 {} µs max {} µs",
                h.len(),
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99),
                h.value_at_quantile(0.999),
                h.max()
            );
        }
    }
    if !data_dir.is_empty() {
        // Give the cleaner a few passes after the last writes, then compare sizes.
        tokio::time::sleep(Duration::from_secs(5)).await;
        for topic in ["plain", "compacted"] {
            let path = std::path::Path::new(&data_dir).join("topics~").join(topic);
            println!("{topic:>9}: {:.1} MB on disk", dir_bytes(&path) as f64 / 1e6);
        }
    }
    Ok(())
}
