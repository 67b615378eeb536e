//! The idempotent producer through broker crashes: kill -9 the broker again and again while
//! a producer sends at `durable`; afterwards every acked record is stored, and no record is
//! stored twice although the producer resent every request whose answer a crash ate.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use client::{Client, ClientConfig, Producer, ProducerConfig};
use integration_tests::Broker;
use wire::{AckLevel, TopicConfig};

const TOPIC: &str = "crashy";
const PARTITIONS: u32 = 4;

fn kills() -> usize {
    std::env::var("IDEMPOTENT_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(10)
}

#[test]
fn kill_9_loop_with_an_idempotent_producer_stores_every_acked_record_exactly_once() {
    let mut broker = Broker::start_fixed_ports(2);
    let addr = broker.public.to_string();
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let config =
        ClientConfig { retries: 60, request_timeout: Duration::from_secs(5), ..Default::default() };
    let client = rt.block_on(Client::connect_with(&addr, config)).unwrap();
    rt.block_on(client.create_topic(
        TOPIC,
        TopicConfig {
            partition_count: PARTITIONS,
            retention_ms: -1,
            retention_bytes: -1,
            ..Default::default()
        },
    ))
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let producing = {
        let (client, stop) = (client.clone(), stop.clone());
        rt.spawn(async move {
            let producer = Producer::new(
                client,
                ProducerConfig { ack: AckLevel::Durable, ..Default::default() },
            );
            let mut pending = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let value = format!("r{i}");
                let key = format!("k{}", i % 97);
                if let Ok(f) =
                    producer.send(TOPIC, Some(key.as_bytes()), Some(value.as_bytes()), &[]).await
                {
                    pending.push((value, f));
                }
                i += 1;
                if i % 64 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            let _ = producer.flush().await;
            let mut acked = Vec::new();
            for (value, f) in pending {
                if f.await.is_ok() {
                    acked.push(value);
                }
            }
            (i, acked)
        })
    };
    for _ in 0..kills() {
        std::thread::sleep(Duration::from_millis(400));
        broker.kill();
        broker.restart();
    }
    std::thread::sleep(Duration::from_millis(400));
    stop.store(true, Ordering::Relaxed);
    let (sent, acked) = rt.block_on(producing).unwrap();
    // Read everything back and count each record.
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    rt.block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        for p in 0..PARTITIONS {
            let mut offset = 0;
            loop {
                let r = client.fetch(TOPIC, p, offset, 4 << 20, 0).await.unwrap();
                let bytes = client::consumer::readable(&r.batches).unwrap();
                let mut progressed = false;
                for b in wire::Batches::new(&bytes) {
                    let b = b.unwrap();
                    for rec in b.records() {
                        let v = String::from_utf8(rec.value().unwrap().to_vec()).unwrap();
                        *counts.entry(v).or_default() += 1;
                    }
                    offset = b.header().next_offset();
                    progressed = true;
                }
                if !progressed || offset >= r.high_watermark {
                    break;
                }
            }
        }
    });
    let duplicates: Vec<_> = counts.iter().filter(|(_, &n)| n > 1).collect();
    let lost: Vec<_> = acked.iter().filter(|v| !counts.contains_key(*v)).collect();
    eprintln!(
        "{} kills: {sent} sent, {} acked, {} stored, {} stored twice, {} acked and lost",
        kills(),
        acked.len(),
        counts.len(),
        duplicates.len(),
        lost.len()
    );
    assert!(acked.len() > 1_000, "the producer got through the crashes");
    assert!(lost.is_empty(), "acked records lost: {:?}", &lost[..lost.len().min(5)]);
    assert!(duplicates.is_empty(), "stored twice: {:?}", &duplicates[..duplicates.len().min(5)]);
}

#[test]
fn a_producer_restarted_under_the_same_transactional_id_fences_its_zombie() {
    let broker = Broker::start(2);
    let addr = broker.public.to_string();
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let client = Client::connect(&addr).await.unwrap();
        client
            .create_topic("ledger", TopicConfig { partition_count: 2, ..Default::default() })
            .await
            .unwrap();
        let config = || ProducerConfig {
            transactional_id: Some("ledger-writer".into()),
            ..Default::default()
        };
        let zombie = Producer::new(client.clone(), config());
        zombie.send("ledger", Some(b"a"), Some(b"1"), &[]).await.unwrap().await.unwrap();
        let successor = Producer::new(client.clone(), config());
        successor.send("ledger", Some(b"a"), Some(b"2"), &[]).await.unwrap().await.unwrap();
        let err =
            zombie.send("ledger", Some(b"b"), Some(b"3"), &[]).await.unwrap().await.unwrap_err();
        assert!(err.to_string().contains("PRODUCER_FENCED"), "{err}");
        successor.send("ledger", Some(b"b"), Some(b"4"), &[]).await.unwrap().await.unwrap();
        // The zombie stays fenced: its refusal does not make it ask for the id again (which
        // would take the epoch back and fence its successor).
        let err =
            zombie.send("ledger", Some(b"c"), Some(b"5"), &[]).await.unwrap().await.unwrap_err();
        assert!(err.to_string().contains("PRODUCER_FENCED"), "{err}");
        successor.send("ledger", Some(b"c"), Some(b"6"), &[]).await.unwrap().await.unwrap();
    });
}

/// Concurrent first sends of a fresh transactional producer share one InitProducerId: each
/// call bumps the id's epoch, and before, each first send asked for its own, the producer kept
/// the first answer and so wrote with an epoch its own later ask had fenced (PRODUCER_FENCED
/// on every send).
#[test]
fn concurrent_first_sends_of_a_transactional_producer_do_not_fence_it() {
    let broker = Broker::start(2);
    let addr = broker.public.to_string();
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let client = Client::connect(&addr).await.unwrap();
        client
            .create_topic("first", TopicConfig { partition_count: 4, ..Default::default() })
            .await
            .unwrap();
        let producer = Producer::new(
            client.clone(),
            ProducerConfig { transactional_id: Some("first-writer".into()), ..Default::default() },
        );
        let sends: Vec<_> = (0..16)
            .map(|i| {
                let producer = producer.clone();
                tokio::spawn(async move {
                    let key = format!("k{i}");
                    producer.send("first", Some(key.as_bytes()), Some(b"v"), &[]).await?.await
                })
            })
            .collect();
        for s in sends {
            s.await.unwrap().expect("acked, not fenced");
        }
    });
}

/// Sends that wait behind a failing ask for a producer id fail with its error instead of each
/// asking again in turn: with the broker gone, 8 concurrent first sends took 8 asks' worth
/// of retries one after another.
#[test]
fn sends_behind_a_failed_producer_id_ask_fail_with_it() {
    let mut broker = Broker::start(1);
    let addr = broker.public.to_string();
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let config = ClientConfig {
            retries: 4,
            retry_backoff: Duration::from_millis(100),
            ..Default::default()
        };
        let client = Client::connect_with(&addr, config).await.unwrap();
        client
            .create_topic("gone", TopicConfig { partition_count: 1, ..Default::default() })
            .await
            .unwrap();
        broker.kill();
        let producer = Producer::new(client, ProducerConfig::default());
        let started = std::time::Instant::now();
        let sends: Vec<_> = (0..8)
            .map(|_| {
                let producer = producer.clone();
                tokio::spawn(async move { producer.send("gone", None, Some(b"v"), &[]).await })
            })
            .collect();
        let mut took = Vec::new();
        for s in sends {
            assert!(s.await.unwrap().is_err(), "no broker, no producer id");
            took.push(started.elapsed());
        }
        // One ask's retries: 0.1 + 0.2 + 0.4 + 0.8 s of backoff.
        let last = *took.last().unwrap();
        assert!(last < Duration::from_secs(6), "the last send failed after {last:?}: {took:?}");
    });
}
