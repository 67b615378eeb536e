//! Growing a topic (`Client::create_partitions`, CreatePartitions): its partitions and data
//! stay, the new ones are served at once and after a kill -9, and a producer and a group
//! member on other clients follow.

mod cli;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use client::{Client, ClientConfig, GroupConfig, GroupConsumer, Producer, ProducerConfig};
use integration_tests::Broker;
use wire::{
    AckLevel, Assignor, GroupMemberState, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    TopicConfig,
};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Sends 200 records keyed `{tag}-{i}` and returns the partitions they went to.
async fn send_keyed(producer: &Producer, tag: &str) -> BTreeSet<u32> {
    let mut sent = Vec::new();
    for i in 0..200 {
        let key = format!("{tag}-{i}");
        sent.push(producer.send("grow", Some(key.as_bytes()), Some(b"v"), &[]).await.unwrap());
    }
    producer.flush().await.unwrap();
    let mut partitions = BTreeSet::new();
    for s in sent {
        partitions.insert(s.await.unwrap().0);
    }
    partitions
}

/// (partition, high watermark) of every partition of "grow".
async fn high_watermarks(client: &Client) -> Vec<(u32, u64)> {
    let d = client.describe_topic("grow").await.unwrap();
    let mut hw: Vec<(u32, u64)> =
        d.partitions.iter().map(|p| (p.partition, p.high_watermark)).collect();
    hw.sort();
    hw
}

fn assigned(m: &GroupMemberState) -> usize {
    m.assignment.iter().map(|t| t.partitions.len()).sum()
}

#[test]
fn a_grown_topic_keeps_its_data_and_producers_and_groups_follow() {
    let mut broker = Broker::start(2);
    let addr = broker.public.to_string();
    let before = rt().block_on(async {
        let admin = Client::connect(&addr).await.unwrap();
        let config = TopicConfig {
            partition_count: 2,
            retention_ms: -1,
            retention_bytes: -1,
            ..Default::default()
        };
        admin.create_topic("grow", config).await.unwrap();
        // A producer on another client, whose metadata is reloaded once 300 ms old.
        let aging =
            ClientConfig { metadata_max_age: Duration::from_millis(300), ..Default::default() };
        let other = Client::connect_with(&addr, aging).await.unwrap();
        let config = ProducerConfig { ack: AckLevel::Durable, ..Default::default() };
        let producer = Producer::new(other.clone(), config);
        let before = send_keyed(&producer, "before").await;
        assert_eq!(before, BTreeSet::from([0, 1]));
        // A group member reading the topic.
        let join = JoinGroupRequest {
            group: "growers".into(),
            member_id: String::new(),
            instance_id: String::new(),
            session_timeout_ms: 30_000,
            topics: vec!["grow".into()],
            assignor: Assignor::Range,
            owned: vec![],
            client_id: "grow".into(),
            client_host: String::new(),
        };
        let mut member: GroupMemberState = admin.group_request("growers", &join).await.unwrap();
        assert_eq!((member.error, assigned(&member)), (0, 2), "{}", member.message);
        // A group consumer starting partitions with nothing committed at the latest offset
        // (the default): the partitions created after it joined are read from their start.
        let mut reader =
            GroupConsumer::join(&other, GroupConfig::new("readers", &["grow"])).await.unwrap();

        let grown = admin.create_partitions("grow", 5).await.unwrap();
        let owners: Vec<u32> = grown.partitions.iter().map(|p| p.shard).collect();
        assert_eq!(owners.len(), 5);
        assert_eq!(&owners[..2], &[0, 1], "the first two stay where they were");

        // The producer's client notices by the metadata's age: records reach the new ones.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let used = send_keyed(&producer, "after").await;
            if used.iter().any(|&p| p >= 2) {
                assert!(used.iter().all(|&p| p < 5), "{used:?}");
                break;
            }
            assert!(Instant::now() < deadline, "the producer never used the new partitions");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // The consumer starts reading only now, after records went to the new partitions.
        let (firsts_tx, mut firsts) = tokio::sync::mpsc::unbounded_channel();
        let reading = tokio::spawn(async move {
            loop {
                let b = reader.next().await.expect("a batch");
                let first = b.batch.records().next().map(|r| r.offset());
                if firsts_tx.send((b.partition, first)).is_err() {
                    return;
                }
            }
        });
        // The group member is given them as it heartbeats.
        let deadline = Instant::now() + Duration::from_secs(15);
        while assigned(&member) < 5 {
            assert!(Instant::now() < deadline, "the member has {} partitions", assigned(&member));
            let beat = HeartbeatRequest {
                group: "growers".into(),
                member_id: member.member_id.clone(),
                instance_id: String::new(),
                generation: member.generation,
                owned: member.assignment.clone(),
                wait_ms: 0,
            };
            let answer: HeartbeatResponse = admin.group_request("growers", &beat).await.unwrap();
            assert_eq!(answer.state.error, 0, "{}", answer.state.message);
            member = answer.state;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The consumer got the new partitions' records from their first (written before the
        // group handed the partitions out).
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = BTreeSet::new();
        while seen.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let got = tokio::time::timeout(left, firsts.recv()).await;
            let (partition, first) = got.expect("no batch of a new partition in 20 s").unwrap();
            if partition >= 2 {
                assert_eq!(first, Some(0), "partition {partition} read from its start");
                seen.insert(partition);
            }
        }
        reading.abort();
        // What cannot grow: the same count or fewer, the offsets topic, an unknown topic.
        for (topic, count, code) in [
            ("grow", 5, "INVALID_TOPIC_CONFIG"),
            ("grow", 3, "INVALID_TOPIC_CONFIG"),
            ("__consumer_offsets", 64, "INTERNAL_TOPIC"),
            ("nope", 4, "UNKNOWN_TOPIC"),
        ] {
            let err = admin.create_partitions(topic, count).await.unwrap_err();
            assert!(err.to_string().contains(code), "{topic} to {count}: {err}");
        }
        high_watermarks(&admin).await
    });
    assert_eq!(before.len(), 5, "{before:?}");
    assert!(before[0].1 > 0 && before[1].1 > 0, "{before:?}");
    // After a kill -9 the topic has its five partitions and every record.
    broker.kill();
    broker.restart();
    let addr = broker.public.to_string();
    rt().block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        assert_eq!(high_watermarks(&client).await, before, "every partition with every record");
    });
    // brokerctl grows it too.
    let (ok, out, err) =
        cli::brokerctl(&broker, &["topic", "grow", "grow", "--partitions", "7"], None);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "grow has 7 partitions");
    let (ok, _, err) =
        cli::brokerctl(&broker, &["topic", "grow", "grow", "--partitions", "7"], None);
    assert!(!ok && err.contains("INVALID_TOPIC_CONFIG"), "{err}");
}

/// One batch of one record `value`.
fn one_record(value: &[u8]) -> Vec<u8> {
    let mut b = wire::BatchBuilder::new(1 << 16);
    b.append(0, None, Some(value), &[]).unwrap();
    b.finish().unwrap().to_vec()
}

/// A group consumer commits where it starts a partition with nothing committed (its
/// `reset` resolved), as Kafka consumers do; so a member that joins after the topic grew
/// reads the new partition, which the group never committed while it committed the
/// others, from its start. Before: the first member committed nothing for partitions it
/// read nothing from, and the late member started the new partition at `Latest`, skipping
/// what was written to it between the growth and its join.
#[test]
fn a_member_joining_after_a_growth_reads_the_new_partition_from_its_start() {
    let broker = Broker::start(1);
    let addr = broker.public.to_string();
    rt().block_on(async move {
        let client = Client::connect(&addr).await.unwrap();
        let config = TopicConfig { partition_count: 2, ..Default::default() };
        client.create_topic("late", config).await.unwrap();
        // Written before anyone reads: `Latest` skips it, as asked.
        client.produce_batches("late", 0, &one_record(b"old"), AckLevel::Durable).await.unwrap();
        let group = GroupConfig::new("late-readers", &["late"]);
        let mut first = GroupConsumer::join(&client, group.clone()).await.unwrap();
        // It reads nothing, yet commits where it started both partitions.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let _ = tokio::time::timeout(Duration::from_millis(100), first.next()).await;
            let mut committed =
                client.fetch_offsets("late-readers", &["late".into()]).await.unwrap();
            committed.sort_unstable();
            if committed.len() == 2 {
                assert_eq!(committed, [("late".into(), 0, 1), ("late".into(), 1, 0)]);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the start positions were not committed: {committed:?}"
            );
        }
        first.close().await.unwrap();
        client.create_partitions("late", 3).await.unwrap();
        client.produce_batches("late", 2, &one_record(b"new"), AckLevel::Durable).await.unwrap();
        let mut second = GroupConsumer::join(&client, group).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let b = second.next().await.unwrap();
                let first =
                    b.batch.records().next().map(|r| (r.offset(), r.value().map(<[u8]>::to_vec)));
                if let Some((offset, value)) = first {
                    return (b.partition, offset, value);
                }
            }
        })
        .await
        .expect("the new partition's record was skipped");
        assert_eq!(got, (2, 0, Some(b"new".to_vec())));
        second.close().await.unwrap();
    });
}
