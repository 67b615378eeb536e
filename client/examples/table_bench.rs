//! Table benchmark (issue 18): load a keyed table topic, then time `table_get` under a
//! concurrent produce load, and how long a restarted broker takes until its tables answer.
//!
//! ```text
//! table_bench load --broker A --topic T --partitions 4 --records 10000000 --keys 1000000
//! table_bench read --broker A --topic T --keys 1000000 --gets 20000 --produce-rate 20000
//! table_bench ready --broker A --topic T      # after a restart: ms until every partition
//!                                             # reflects the whole log
//! ```

use std::time::{Duration, Instant};

use client::{Client, KeyRange, Producer, ProducerConfig};
use wire::{AckLevel, OffsetSpec, TopicConfig};

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

fn key(i: u64) -> Vec<u8> {
    format!("key-{i:010}").into_bytes()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let phase = args.get(1).cloned().unwrap_or_default();
    let broker: String = arg(&args, "--broker", "127.0.0.1:9400".to_owned());
    let topic: String = arg(&args, "--topic", "tbl".to_owned());
    let keys: u64 = arg(&args, "--keys", 1_000_000);
    let value_bytes: usize = arg(&args, "--value-bytes", 100);
    let client = Client::connect(&broker).await?;
    match phase.as_str() {
        "load" => {
            let partitions: u32 = arg(&args, "--partitions", 4);
            let records: u64 = arg(&args, "--records", 10_000_000);
            let config = TopicConfig {
                partition_count: partitions,
                retention_ms: -1,
                retention_bytes: -1,
                table: true,
                ..Default::default()
            };
            client.create_topic(&topic, config).await?;
            let producer = Producer::new(
                client.clone(),
                ProducerConfig { ack: AckLevel::Written, ..Default::default() },
            );
            let value = vec![b'v'; value_bytes];
            let started = Instant::now();
            let mut pending = std::collections::VecDeque::new();
            for i in 0..records {
                pending.push_back(
                    producer.send(&topic, Some(&key(i % keys)), Some(&value), &[]).await?,
                );
                while pending.len() > 50_000 {
                    pending.pop_front().expect("nonempty").await?;
                }
            }
            producer.flush().await?;
            for p in pending {
                p.await?;
            }
            let s = started.elapsed().as_secs_f64();
            println!(
                "loaded {records} records over {keys} keys in {s:.1} s ({:.0} records/s)",
                records as f64 / s
            );
        }
        "ready" => {
            // The log's end now; then how long until every partition's table reflects it.
            let ends = client.list_offsets(&topic, OffsetSpec::Latest).await?;
            let started = Instant::now();
            let min_offsets: Vec<(u32, u64)> = ends.iter().map(|(p, o, _)| (*p, *o)).collect();
            loop {
                match client.table_scan(&topic, &KeyRange::all(), 1, &min_offsets).await {
                    Ok(_) => break,
                    Err(e) if started.elapsed() < Duration::from_secs(600) => {
                        eprintln!("not yet: {e}");
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            println!(
                "tables reflect the whole log {} ms after asking",
                started.elapsed().as_millis()
            );
        }
        "read" => {
            let gets: u64 = arg(&args, "--gets", 20_000);
            let rate: u64 = arg(&args, "--produce-rate", 20_000);
            // The concurrent load: keyed overwrites at `rate` records/s.
            let load = {
                let (client, topic) = (client.clone(), topic.clone());
                tokio::spawn(async move {
                    let producer = Producer::new(client, ProducerConfig::default());
                    let value = vec![b'w'; value_bytes];
                    let mut state = 0x1234_5678u64;
                    let started = Instant::now();
                    let mut sent = 0u64;
                    loop {
                        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
                        while sent < due {
                            let k = key(next(&mut state) % keys);
                            if producer.send(&topic, Some(&k), Some(&value), &[]).await.is_err() {
                                return sent;
                            }
                            sent += 1;
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                })
            };
            let mut h = hdrhistogram::Histogram::<u64>::new(3)?;
            let mut state = 0x9e37_79b9u64;
            let (mut found, started) = (0u64, Instant::now());
            for _ in 0..gets {
                let k = key(next(&mut state) % keys);
                let t = Instant::now();
                let got = client.table_get(&topic, &k, 0).await?;
                h.record(t.elapsed().as_micros() as u64)?;
                found += u64::from(got.entry.is_some());
            }
            let s = started.elapsed().as_secs_f64();
            load.abort();
            println!(
                "{gets} gets in {s:.1} s ({:.0}/s, {found} found) under {rate} records/s: p50 {} µs p99 {} µs p99.9 {} µs max {} µs",
                gets as f64 / s,
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99),
                h.value_at_quantile(0.999),
                h.max()
            );
        }
        _ => {
            eprintln!("usage: table_bench load|read|ready [--broker A] [--topic T] ...");
            std::process::exit(2);
        }
    }
    Ok(())
}
