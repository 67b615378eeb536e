//! Deleting a partition's records before an offset (`Client::delete_records`, native
//! DeleteRecords, `brokerctl topic delete-records`): the log start moves there on the
//! partition's owner (another shard's partitions too), reads below it are refused, whole
//! segments below it go, and the start holds across kill -9; offsets past the high
//! watermark, compacted topics without retention, the internal topic and unknown topics are
//! refused.

mod cli;

use client::{Client, ClientError};
use integration_tests::Broker;
use wire::{AckLevel, DeleteBefore, ErrorCode, OffsetSpec, TopicConfig};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// One batch of ten 100-byte records.
fn batch() -> Vec<u8> {
    let mut b = wire::BatchBuilder::new(1 << 16);
    for i in 0..10u8 {
        b.append(i64::from(i), None, Some(&[i; 100][..]), &[]).unwrap();
    }
    b.finish().unwrap().to_vec()
}

fn refused(e: ClientError) -> ErrorCode {
    match e {
        ClientError::Partition { code, .. } => code,
        e => panic!("{e}"),
    }
}

async fn earliest(client: &Client, topic: &str) -> Vec<u64> {
    let offsets = client.list_offsets(topic, OffsetSpec::Earliest).await.unwrap();
    offsets.into_iter().map(|(_, o, _)| o).collect()
}

#[test]
fn deleted_records_stay_deleted_across_kill_9() {
    let mut broker = Broker::start(2);
    let addr = broker.public.to_string();
    let segments_before = rt().block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        let config = TopicConfig {
            partition_count: 2,
            retention_ms: -1,
            retention_bytes: -1,
            segment_bytes_max: 4096,
            ..Default::default()
        };
        client.create_topic("events", config).await.unwrap();
        for p in 0..2 {
            for _ in 0..30 {
                client.produce_batches("events", p, &batch(), AckLevel::Durable).await.unwrap();
            }
        }
        let d = client.describe_topic("events").await.unwrap();
        let segments: Vec<u32> = d.partitions.iter().map(|p| p.segment_count).collect();
        assert!(segments.iter().all(|&n| n >= 6), "{segments:?}");
        // Inside a batch and a segment of partition 0; all of partition 1.
        let asked = [(0, DeleteBefore::Offset(155)), (1, DeleteBefore::HighWatermark)];
        let starts = client.delete_records("events", &asked).await.unwrap();
        assert_eq!(starts, [(0, 155), (1, 300)]);
        assert_eq!(earliest(&client, "events").await, [155, 300]);
        let d = client.describe_topic("events").await.unwrap();
        assert!(d.partitions[0].segment_count < segments[0], "{:?}", d.partitions[0]);
        assert_eq!(d.partitions[1].segment_count, 1, "only the active segment stays");
        // Below the start: refused; at it: the batch holding it.
        let err = client.fetch("events", 0, 149, 1 << 20, 0).await.unwrap_err();
        assert_eq!(refused(err), ErrorCode::OffsetOutOfRange);
        let r = client.fetch("events", 0, 155, 1 << 20, 0).await.unwrap();
        assert_eq!(r.log_start_offset, 155);
        let first = wire::Batches::new(&r.batches).next().unwrap().unwrap();
        assert!(first.header().base_offset() <= 155 && first.header().last_offset() >= 155);
        // An offset below the start changes nothing.
        let starts = client.delete_records("events", &[(0, DeleteBefore::Offset(10))]).await;
        assert_eq!(starts.unwrap(), [(0, 155)]);
        segments
    });
    broker.kill();
    broker.restart();
    let addr = broker.public.to_string();
    rt().block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        assert_eq!(earliest(&client, "events").await, [155, 300], "after kill -9");
        let err = client.fetch("events", 0, 150, 1 << 20, 0).await.unwrap_err();
        assert_eq!(refused(err), ErrorCode::OffsetOutOfRange);
        // Appends go on after the deleted ones.
        let done = client.produce_batches("events", 1, &batch(), AckLevel::Durable).await.unwrap();
        assert_eq!(done.base_offset, 300);
        let d = client.describe_topic("events").await.unwrap();
        assert!(d.partitions[0].segment_count < segments_before[0]);
    });
    // brokerctl, every partition.
    let (ok, out, err) = cli::brokerctl(
        &broker,
        &["topic", "delete-records", "events", "--partition", "0", "--before", "200"],
        None,
    );
    assert!(ok && out.contains("events/0 starts at 200"), "{out}{err}");
    let (ok, out, err) =
        cli::brokerctl(&broker, &["topic", "delete-records", "events", "--before", "hw"], None);
    assert!(ok && out.contains("events/0 starts at 300"), "{out}{err}");
    assert!(out.contains("events/1 starts at 310"), "{out}");
    let (ok, _, err) =
        cli::brokerctl(&broker, &["topic", "delete-records", "events", "--before", "soon"], None);
    assert!(!ok && err.contains("an offset or hw"), "{err}");
}

#[test]
fn deletions_past_the_end_of_compacted_topics_and_of_the_internal_topic_are_refused() {
    let broker = Broker::start(1);
    let addr = broker.public.to_string();
    rt().block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        let config = TopicConfig { partition_count: 1, ..Default::default() };
        client.create_topic("plain", config).await.unwrap();
        for _ in 0..3 {
            client.produce_batches("plain", 0, &batch(), AckLevel::Durable).await.unwrap();
        }
        let err = client.delete_records("plain", &[(0, DeleteBefore::Offset(31))]).await;
        assert_eq!(refused(err.unwrap_err()), ErrorCode::OffsetOutOfRange);
        let err = client.delete_records("plain", &[(7, DeleteBefore::HighWatermark)]).await;
        assert_eq!(refused(err.unwrap_err()), ErrorCode::UnknownPartition);
        let err = client.delete_records("missing", &[(0, DeleteBefore::HighWatermark)]).await;
        assert_eq!(refused(err.unwrap_err()), ErrorCode::UnknownTopic);
        assert_eq!(earliest(&client, "plain").await, [0], "nothing of a refusal was made");
        // Compacted: kept by key, unless retention also applies (compact,delete).
        let compacted = TopicConfig { partition_count: 1, compact: true, ..Default::default() };
        client.create_topic("by-key", compacted.clone()).await.unwrap();
        let err = client.delete_records("by-key", &[(0, DeleteBefore::HighWatermark)]).await;
        assert_eq!(refused(err.unwrap_err()), ErrorCode::PolicyViolation);
        let both = TopicConfig { retention_ms: 86_400_000, ..compacted };
        client.create_topic("by-key-and-age", both).await.unwrap();
        client.produce_batches("by-key-and-age", 0, &batch(), AckLevel::Durable).await.unwrap();
        let done = client.delete_records("by-key-and-age", &[(0, DeleteBefore::HighWatermark)]);
        assert_eq!(done.await.unwrap(), [(0, 10)]);
        let err = client.delete_records("__consumer_offsets", &[(0, DeleteBefore::HighWatermark)]);
        assert_eq!(refused(err.await.unwrap_err()), ErrorCode::InternalTopic);
    });
}
