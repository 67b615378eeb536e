//! The client library and `brokerctl` against the real broker.

mod cli;

use cli::brokerctl;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use client::{Client, Consumer, Producer, ProducerConfig};
use integration_tests::Broker;
use wire::{AckLevel, StartPosition, TopicConfig};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn produce_and_consume_through_the_library_keys_stick_and_order_holds() {
    let broker = Broker::start(2);
    let addr = broker.public.to_string();
    rt().block_on(async move {
        let client = Client::connect(&addr).await.unwrap();
        client
            .create_topic(
                "events",
                TopicConfig {
                    partition_count: 4,
                    retention_ms: -1,
                    retention_bytes: -1,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let producer = Producer::new(
            client.clone(),
            ProducerConfig { ack: AckLevel::Written, ..Default::default() },
        );
        let mut pending = Vec::new();
        for i in 0..5_000u32 {
            let key = format!("user-{}", i % 37);
            let value = format!("{key}:{i}");
            let sent = producer
                .send(
                    "events",
                    Some(key.as_bytes()),
                    Some(value.as_bytes()),
                    &[("n", &i.to_le_bytes())],
                )
                .await
                .unwrap();
            pending.push((key, value, sent));
        }
        producer.flush().await.unwrap();
        let mut key_partition: BTreeMap<String, u32> = BTreeMap::new();
        let mut expected: BTreeMap<u32, Vec<(u64, String)>> = BTreeMap::new();
        for (key, value, f) in pending {
            let (p, o) = f.await.unwrap();
            assert_eq!(
                *key_partition.entry(key).or_insert(p),
                p,
                "the same key always lands on the same partition"
            );
            expected.entry(p).or_default().push((o, value));
        }
        for (p, want) in &expected {
            // Offsets per partition are dense and follow send order.
            let offsets: Vec<u64> = want.iter().map(|(o, _)| *o).collect();
            assert_eq!(offsets, (0..want.len() as u64).collect::<Vec<_>>());
            let mut consumer =
                Consumer::subscribe(&client, "events", *p, StartPosition::Earliest, 64 << 10)
                    .await
                    .unwrap();
            let mut got = Vec::new();
            while got.len() < want.len() {
                let batch = tokio::time::timeout(Duration::from_secs(10), consumer.next_batch())
                    .await
                    .unwrap()
                    .unwrap()
                    .unwrap();
                for r in batch.records() {
                    got.push((r.offset(), String::from_utf8(r.value().unwrap().to_vec()).unwrap()));
                }
            }
            assert_eq!(&got, want, "partition {p}");
            assert_eq!(consumer.position(), want.len() as u64);
            assert_eq!(consumer.lag(), 0);
            consumer.close().await.unwrap();
        }
        let stats = client.stats().await.unwrap();
        let produce_forwards: u64 = stats.iter().map(|s| s.forwards_in).sum();
        assert!(
            produce_forwards <= 2,
            "the producer is shard-aware (forwards seen: {produce_forwards})"
        );
    });
}

#[test]
fn brokerctl_topics_produce_consume_follow_and_errors() {
    let broker = Broker::start(2);
    let (ok, out, err) =
        brokerctl(&broker, &["topic", "create", "logs", "--partitions", "2"], None);
    assert!(ok, "{err}");
    assert!(out.contains("created logs"));
    let (ok, out, _) = brokerctl(&broker, &["topic", "list"], None);
    assert!(ok && out.contains("logs\t2"), "{out}");

    let (ok, out, err) = brokerctl(
        &broker,
        &["produce", "logs", "--key-separator", "=", "--header", "src=test", "--report"],
        Some("a=one\nb=two\na=three\n"),
    );
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 3, "{out}");

    let (ok, out, err) = brokerctl(&broker, &["consume", "logs", "--format", "json"], None);
    assert!(ok, "{err}");
    let lines: Vec<serde_json::Value> =
        out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    let a: Vec<&str> =
        lines.iter().filter(|l| l["key"] == "a").map(|l| l["value"].as_str().unwrap()).collect();
    assert_eq!(a, ["one", "three"], "order per key");
    assert!(lines.iter().all(|l| l["headers"]["src"] == "test"));

    // --follow sees records produced after it started (3 old + 2 new: it must wait).
    let mut follow = Command::new(env!("CARGO_BIN_EXE_brokerctl"))
        .args(["consume", "logs", "--from", "earliest", "--follow", "--count", "5"])
        .env("BROKER_ADDR", broker.public.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let (ok, _, err) = brokerctl(&broker, &["produce", "logs"], Some("new-1\nnew-2\n"));
    assert!(ok, "{err}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while follow.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "--follow did not see the new records");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = follow.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("new-1") && text.contains("new-2"), "{text}");

    // Errors a person can act on, non-zero exit.
    let (ok, _, err) = brokerctl(&broker, &["consume", "nope"], None);
    assert!(!ok && err.contains("unknown topic"), "{err}");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_brokerctl"));
    let out = cmd.args(["--broker", "127.0.0.1:1", "topic", "list"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach broker at 127.0.0.1:1"));
}

#[test]
fn producer_rides_out_a_broker_restart() {
    let mut broker = Broker::start_fixed_ports(2);
    let addr = broker.public.to_string();
    let rt = rt();
    let client = rt.block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        client
            .create_topic(
                "steady",
                TopicConfig {
                    partition_count: 2,
                    retention_ms: -1,
                    retention_bytes: -1,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        client
    });
    let producer = Producer::new_in(
        &rt,
        client.clone(),
        ProducerConfig {
            ack: AckLevel::Durable,
            in_flight_per_partition_max: 1,
            ..Default::default()
        },
    );
    let mut acked: Vec<(u32, u64, String)> = Vec::new();
    let send_some = |rt: &tokio::runtime::Runtime, from: u32, n: u32| -> Vec<(u32, u64, String)> {
        rt.block_on(async {
            let mut futs = Vec::new();
            for i in from..from + n {
                let v = format!("v{i}");
                futs.push((
                    v.clone(),
                    producer
                        .send(
                            "steady",
                            Some(format!("k{}", i % 5).as_bytes()),
                            Some(v.as_bytes()),
                            &[],
                        )
                        .await
                        .unwrap(),
                ));
            }
            let mut out = Vec::new();
            for (v, f) in futs {
                let (p, o) = f.await.expect("acked despite the restart");
                out.push((p, o, v));
            }
            out
        })
    };
    acked.extend(send_some(&rt, 0, 200));
    // Stop the broker, queue records while it is down, then bring it back.
    assert_eq!(broker.stop(), Some(0));
    let restarter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(600));
        broker.restart();
        broker
    });
    acked.extend(send_some(&rt, 200, 200));
    let broker = restarter.join().unwrap();
    acked.extend(send_some(&rt, 400, 100));
    assert_eq!(acked.len(), 500);
    // Nothing acked is lost (at least once: a value may appear twice after a retry).
    rt.block_on(async {
        for p in 0..2u32 {
            let ends = client.list_offsets("steady", wire::OffsetSpec::Latest).await.unwrap();
            let end = ends.iter().find(|e| e.0 == p).unwrap().1;
            let mut values: BTreeMap<u64, String> = BTreeMap::new();
            let mut offset = 0;
            while offset < end {
                let r = client.fetch("steady", p, offset, 1 << 20, 0).await.unwrap();
                let bytes = client::consumer::readable(&r.batches).unwrap();
                for b in wire::Batches::new(&bytes) {
                    let b = b.unwrap();
                    for rec in b.records() {
                        values.insert(
                            rec.offset(),
                            String::from_utf8(rec.value().unwrap().to_vec()).unwrap(),
                        );
                    }
                    offset = b.header().next_offset();
                }
            }
            for (q, o, v) in acked.iter().filter(|a| a.0 == p) {
                assert_eq!(values.get(o), Some(v), "acked {v} at {q}/{o} lost");
            }
        }
    });
    drop(broker);
}

#[test]
fn brokerctl_group_consume_describe_list_and_reset_offsets() {
    let broker = Broker::start(2);
    let (ok, _, err) = brokerctl(&broker, &["topic", "create", "jobs", "--partitions", "3"], None);
    assert!(ok, "{err}");
    let input: String = (0..30).map(|i| format!("k{i}=job-{i}\n")).collect();
    let (ok, _, err) =
        brokerctl(&broker, &["produce", "jobs", "--key-separator", "="], Some(&input));
    assert!(ok, "{err}");
    // A group member reads everything once, commits and leaves.
    let (ok, out, err) = brokerctl(
        &broker,
        &["consume", "jobs", "--group", "crew", "--from", "earliest", "--count", "30"],
        None,
    );
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 30, "{out}");
    let (ok, out, err) = brokerctl(&broker, &["group", "list"], None);
    assert!(ok && out.contains("crew\t0\t"), "{out}{err}");
    let (ok, out, err) = brokerctl(&broker, &["group", "describe", "crew"], None);
    assert!(ok, "{err}");
    let rows: Vec<&str> = out.lines().filter(|l| l.starts_with("jobs\t")).collect();
    assert_eq!(rows.len(), 3, "{out}");
    assert!(
        rows.iter().all(|r| r.split('\t').nth(4) == Some("0")),
        "lag 0 after a full read: {out}"
    );
    // Reset to the start: the lag is everything again, and the next member reads it all again.
    let (ok, _, err) = brokerctl(
        &broker,
        &["group", "reset-offsets", "crew", "--topic", "jobs", "--to", "earliest"],
        None,
    );
    assert!(ok, "{err}");
    let (_, out, _) = brokerctl(&broker, &["group", "describe", "crew"], None);
    let lag: u64 = out
        .lines()
        .filter(|l| l.starts_with("jobs\t"))
        .map(|l| l.split('\t').nth(4).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(lag, 30, "{out}");
    // While a member is in the group, offsets cannot be reset.
    let mut member = Command::new(env!("CARGO_BIN_EXE_brokerctl"))
        .args(["consume", "jobs", "--group", "crew", "--count", "1000"])
        .env("BROKER_ADDR", broker.public.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, out, _) = brokerctl(&broker, &["group", "list"], None);
        if out.contains("crew\t1\t") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the member never joined: {out}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The member shows its client id and the address it joined from.
    let (_, out, _) = brokerctl(&broker, &["group", "describe", "crew"], None);
    let row = out.lines().skip_while(|l| !l.starts_with("member\t")).nth(1).unwrap_or_default();
    let cols: Vec<&str> = row.split('\t').collect();
    assert_eq!(cols.get(2..4), Some(&["rust-client", "127.0.0.1"][..]), "{out}");
    let (ok, _, err) = brokerctl(
        &broker,
        &["group", "reset-offsets", "crew", "--topic", "jobs", "--to", "0"],
        None,
    );
    assert!(!ok && err.contains("GROUP_NOT_EMPTY"), "{err}");
    let _ = member.kill();
    let _ = member.wait();
}

/// Many tasks asking for the owners' connections at once (a producer's partition senders
/// starting together) share one connection per shard: none opens and installs its own, which
/// would split a partition's batches over two connections and their coalescers.
#[test]
fn concurrent_callers_share_one_connection_per_shard() {
    let broker = Broker::start(2);
    let addr = broker.public.to_string();
    rt().block_on(async move {
        let admin = Client::connect(&addr).await.unwrap();
        admin
            .create_topic("owners", TopicConfig { partition_count: 8, ..Default::default() })
            .await
            .unwrap();
        let client = Client::connect(&addr).await.unwrap();
        client.refresh_metadata().await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..64u32 {
            let client = client.clone();
            tasks.push(tokio::spawn(
                async move { client.owner_conn("owners", i % 8).await.unwrap() },
            ));
        }
        let mut by_addr: BTreeMap<
            std::net::SocketAddr,
            std::sync::Arc<client::connection::Connection>,
        > = BTreeMap::new();
        for t in tasks {
            let conn = t.await.unwrap();
            let first = by_addr.entry(conn.addr()).or_insert_with(|| conn.clone());
            assert!(
                std::sync::Arc::ptr_eq(first, &conn),
                "two connections to {}: concurrent connects replaced each other",
                conn.addr()
            );
        }
        assert_eq!(by_addr.len(), 2, "one connection per shard: {:?}", by_addr.keys());
    });
}

/// Restarted with fewer shards, the broker gives the partitions of the shards that are gone
/// to the remaining ones: every partition is served again with all its records, and takes
/// new ones (before, they pointed at shards that no longer existed).
#[test]
fn a_restart_with_fewer_shards_serves_every_partition() {
    let mut broker = Broker::start(3);
    let runtime = rt();
    let topic = || TopicConfig {
        partition_count: 6,
        retention_ms: -1,
        retention_bytes: -1,
        ..Default::default()
    };
    let addr = broker.public.to_string();
    runtime.block_on(async move {
        let client = Client::connect(&addr).await.unwrap();
        client.create_topic("spread", topic()).await.unwrap();
        let producer = Producer::new(
            client.clone(),
            ProducerConfig { ack: AckLevel::Durable, ..Default::default() },
        );
        let mut sent = Vec::new();
        for i in 0..60u32 {
            let key = format!("k{i}");
            sent.push(
                producer.send("spread", Some(key.as_bytes()), Some(b"v"), &[]).await.unwrap(),
            );
        }
        producer.flush().await.unwrap();
        for s in sent {
            s.await.unwrap();
        }
    });
    let before: Vec<u64> = runtime.block_on(async {
        let client = Client::connect(&broker.public.to_string()).await.unwrap();
        let mut hw = Vec::new();
        for p in 0..6 {
            hw.push(client.fetch("spread", p, 0, 1 << 20, 0).await.unwrap().high_watermark);
        }
        hw
    });
    assert_eq!(before.iter().sum::<u64>(), 60);
    broker.stop();
    broker.restart_with_shards(1);
    let addr = broker.public.to_string();
    runtime.block_on(async move {
        let client = Client::connect(&addr).await.unwrap();
        for p in 0..6u32 {
            let f = client.fetch("spread", p, 0, 1 << 20, 0).await.unwrap();
            assert_eq!(f.error, 0, "partition {p}");
            assert_eq!(f.high_watermark, before[p as usize], "partition {p} kept its records");
            let mut b = wire::BatchBuilder::new(1 << 20);
            b.append(0, None, Some(b"after"), &[]).unwrap();
            let batch = b.finish().unwrap();
            let r = client
                .produce_batches("spread", p, &batch, AckLevel::Durable)
                .await
                .unwrap_or_else(|e| panic!("partition {p}: {e}"));
            assert_eq!((r.error, r.base_offset), (0, before[p as usize] as i64), "partition {p}");
        }
    });
    assert!(broker.log_text().contains("moved to the remaining shards"), "logged");
}

/// Credit goes back to the broker half a window at a time, not per pushed batch: a tailing
/// consumer with a 64 KiB window gets 200 batches of 4 KiB pushed one by one, all of them,
/// with a couple of dozen grants (a grant per push was a request and an answer per batch).
#[test]
fn a_consumer_grants_credit_in_half_windows_and_receives_everything() {
    let broker = Broker::start(1);
    let addr = broker.public.to_string();
    rt().block_on(async move {
        let client = Client::connect(&addr).await.unwrap();
        client
            .create_topic("credit", TopicConfig { partition_count: 1, ..Default::default() })
            .await
            .unwrap();
        let requests = |stats: Vec<wire::ShardStats>| stats.iter().map(|s| s.requests).sum::<u64>();
        let mut consumer =
            Consumer::subscribe(&client, "credit", 0, StartPosition::Earliest, 64 << 10)
                .await
                .unwrap();
        let before = requests(client.stats().await.unwrap());
        let producer = Producer::new(
            client.clone(),
            ProducerConfig { ack: AckLevel::Written, linger: Duration::ZERO, ..Default::default() },
        );
        let produced = tokio::spawn(async move {
            let value = vec![7u8; 4 << 10];
            for _ in 0..200 {
                // One batch each: the previous one is acked before the next is sent.
                producer.send("credit", None, Some(&value), &[]).await.unwrap().await.unwrap();
            }
        });
        let (mut records, mut pushes) = (0, 0);
        while records < 200 {
            let batch = tokio::time::timeout(Duration::from_secs(10), consumer.next_batch())
                .await
                .expect("credit keeps flowing")
                .unwrap()
                .unwrap();
            pushes += 1;
            records += batch.records().count();
        }
        produced.await.unwrap();
        let after = requests(client.stats().await.unwrap());
        // The produce requests (one per batch), the second stats request and the grants:
        // 800 KiB / 32 KiB = 25.
        let grants = after - before - 200 - 1;
        assert!(pushes >= 100, "{pushes} pushes: the consumer was meant to tail");
        assert!((20..=30).contains(&grants), "{grants} credit grants for {pushes} pushes");
        consumer.close().await.unwrap();
    });
}

/// A consumer dropped without `close` ends its subscription on the broker (before, the
/// broker kept it until the connection closed: a group consumer that subscribed again after
/// a bad push, or whose reader task was aborted, left one behind each time).
#[test]
fn a_dropped_consumer_ends_its_subscription() {
    let broker = Broker::start(1);
    let addr = broker.public.to_string();
    let subscriptions = |b: &Broker| b.metric("broker_subscriptions", 0).expect("metrics on");
    rt().block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        let config = TopicConfig { partition_count: 1, ..Default::default() };
        client.create_topic("dropped", config).await.unwrap();
        let consumers: Vec<Consumer> = three_consumers(&client).await;
        assert_eq!(subscriptions(&broker), 3.0);
        let mut consumers = consumers.into_iter();
        consumers.next().unwrap().close().await.unwrap();
        drop(consumers);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while subscriptions(&broker) > 0.0 {
            assert!(
                std::time::Instant::now() < deadline,
                "a dropped consumer's subscription stays"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The client's connection is still open and serves.
        let again = Consumer::subscribe(&client, "dropped", 0, StartPosition::Earliest, 1 << 20);
        again.await.unwrap().close().await.unwrap();
    });
}

/// Three consumers of partition 0 of `dropped` on `client`.
async fn three_consumers(client: &Client) -> Vec<Consumer> {
    let mut out = Vec::new();
    for _ in 0..3 {
        let c = Consumer::subscribe(client, "dropped", 0, StartPosition::Earliest, 1 << 20);
        out.push(c.await.unwrap());
    }
    out
}
