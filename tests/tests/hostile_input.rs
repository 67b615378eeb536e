//! Hostile but well-formed requests against the real binary (issue 24): each is a valid frame
//! that asks for something the broker must refuse, or that once damaged it.
//!
//! - Topic names: Kafka's rule (1–249 bytes of `[A-Za-z0-9._-]`, not `.` or `..`) is
//!   enforced with `INVALID_TOPIC_NAME`; names of the broker's own files (`.lock`,
//!   `topics.json`, `topics.json.tmp`) are ordinary topics that work, because topics live in
//!   `topics~/` — in the flat layout `topics.json.tmp` made every later create and delete
//!   fail, across restarts. A data directory of the flat layout, bricked one included, opens
//!   with its records.
//! - Topic configs: every field outside its range (negative retention or roll age other
//!   than -1, segment or batch sizes beyond the log's limits, 0 or too many partitions) is
//!   refused with `INVALID_TOPIC_CONFIG` naming the field and its range; nothing is stored.
//! - Attribute bits: a produced batch with the control or transactional bit (valid bytes,
//!   features a producer may not use here) is refused with `INVALID_BATCH` on the owner and
//!   through another shard, alone or behind a good batch, and nothing is stored.

use std::path::Path;
use std::time::Duration;

use integration_tests::{create_topic, fetch_all, produce, Broker, Conn};
use wire::*;

fn one_batch(tag: &str) -> AlignedVec {
    let mut b = BatchBuilder::new(1 << 16);
    for i in 0..3u32 {
        let value = format!("{tag}-{i}");
        b.append(1_700_000_000_000 + i64::from(i), Some(b"k"), Some(value.as_bytes()), &[])
            .unwrap();
    }
    b.finish().unwrap()
}

/// `batch` with its attributes replaced (and its CRC made to match again).
fn with_attributes(batch: &[u8], attributes: u16) -> AlignedVec {
    let mut out = AlignedVec::new();
    out.extend_from_slice(batch);
    out[26..28].copy_from_slice(&attributes.to_le_bytes());
    let crc = wire::batch::header::covered_crc(&out);
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    BatchView::validate(&out).expect("still a valid batch");
    out
}

fn create(conn: &mut Conn, name: &str, config: TopicConfig) -> CreateTopicResponse {
    conn.call(&CreateTopicRequest { name: name.into(), config })
}

fn config(partition_count: u32) -> TopicConfig {
    TopicConfig { partition_count, retention_ms: -1, retention_bytes: -1, ..Default::default() }
}

fn delete(conn: &mut Conn, name: &str) -> DeleteTopicResponse {
    conn.call(&DeleteTopicRequest { name: name.into() })
}

fn high_watermarks(conn: &mut Conn, topic: &str) -> Vec<u64> {
    let d: DescribeTopicResponse = conn.call(&DescribeTopicRequest { name: topic.into() });
    assert_eq!(d.error, 0, "describe {topic}: {}", d.message);
    d.partitions.iter().map(|p| p.high_watermark).collect()
}

/// A normal topic can still be created, written and deleted (the metadata persists).
fn admin_still_works(conn: &mut Conn, name: &str) {
    let r = create(conn, name, config(2));
    assert_eq!(r.error, 0, "create {name}: {}", r.message);
    assert_eq!(produce(conn, name, 1, &one_batch(name), AckLevel::Durable).error, 0);
    let r = delete(conn, name);
    assert_eq!(r.error, 0, "delete {name}: {}", r.message);
}

#[test]
fn topic_names_follow_kafkas_rule_and_broker_file_names_are_ordinary_topics() {
    let mut broker = Broker::start(2);
    let mut conn = broker.connect();
    let long = "a".repeat(250);
    for bad in ["", ".", "..", "a/b", "../x", "/abs", long.as_str(), "trash~", "topics~", "a b"] {
        let r = create(&mut conn, bad, config(1));
        assert_eq!(
            ErrorCode::from_u16(r.error),
            Some(ErrorCode::InvalidTopicName),
            "{bad:?} must be refused: {}",
            r.message
        );
        assert!(r.message.contains("[A-Za-z0-9._-]"), "the message says the rule: {}", r.message);
    }
    let list: ListTopicsResponse = conn.call(&ListTopicsRequest { name_prefix: String::new() });
    assert!(list.topics.is_empty(), "nothing was created: {:?}", list.topics);

    // The names of the broker's own files, and the longest name, are topics like any other.
    let longest = "b".repeat(249);
    let names = ["topics.json.tmp", ".lock", "topics.json", "..a", longest.as_str()];
    for name in names {
        let r = create(&mut conn, name, config(2));
        assert_eq!(r.error, 0, "create {name}: {}", r.message);
        for p in 0..2 {
            let r = produce(&mut conn, name, p, &one_batch(name), AckLevel::Durable);
            assert_eq!(r.error, 0, "produce {name}/{p}: {:?}", ErrorCode::from_u16(r.error));
        }
    }
    admin_still_works(&mut conn, "orders");
    drop(conn);
    assert_eq!(broker.stop(), Some(0));

    broker.restart();
    let mut conn = broker.connect();
    for name in names {
        assert_eq!(high_watermarks(&mut conn, name), vec![3, 3], "{name} kept its records");
    }
    admin_still_works(&mut conn, "orders");
    for name in names {
        assert_eq!(delete(&mut conn, name).error, 0, "delete {name}");
    }
    assert!(
        broker.data_dir.join(".lock").is_file() && broker.data_dir.join("topics.json").is_file()
    );
}

/// Moves every topic directory from `topics~/` to the root: the layout brokers wrote before.
fn flatten(data_dir: &Path) {
    let topics = data_dir.join("topics~");
    for entry in std::fs::read_dir(&topics).unwrap() {
        let entry = entry.unwrap();
        std::fs::rename(entry.path(), data_dir.join(entry.file_name())).unwrap();
    }
    std::fs::remove_dir(&topics).unwrap();
}

#[test]
fn a_data_dir_of_the_flat_layout_opens_with_its_records_and_a_bricked_one_recovers() {
    let mut broker = Broker::start(2);
    let mut conn = broker.connect();
    let topics = ["orders", "topics.json.tmp"];
    for t in topics {
        create_topic(&mut conn, t, 2);
        for p in 0..2 {
            for i in 0..3 {
                let r = produce(&mut conn, t, p, &one_batch(&format!("{t}{i}")), AckLevel::Durable);
                assert_eq!(r.error, 0);
            }
        }
    }
    let stored: Vec<Vec<Vec<u8>>> = topics
        .iter()
        .flat_map(|t| (0..2).map(|p| fetch_all(&mut conn, t, p, 9)).collect::<Vec<_>>())
        .collect();
    drop(conn);
    assert_eq!(broker.stop(), Some(0));

    // What the flat layout holds after someone created `topics.json.tmp`: its directory sits
    // where the metadata's temporary file goes, so no metadata change could persist.
    flatten(&broker.data_dir);
    assert!(broker.data_dir.join("topics.json.tmp").is_dir());
    assert!(broker.data_dir.join("orders").join("1").is_dir());

    broker.restart();
    assert!(broker.log_text().contains("moved into topics~/"), "the migration is logged");
    assert!(!broker.data_dir.join("orders").exists());
    assert!(!broker.data_dir.join("topics.json.tmp").exists());
    let mut conn = broker.connect();
    let again: Vec<Vec<Vec<u8>>> = topics
        .iter()
        .flat_map(|t| (0..2).map(|p| fetch_all(&mut conn, t, p, 9)).collect::<Vec<_>>())
        .collect();
    assert_eq!(again, stored, "every record is back, byte for byte");
    admin_still_works(&mut conn, "after-migration");
    drop(conn);

    // And it stays migrated: a second restart moves nothing and serves the same.
    assert_eq!(broker.stop(), Some(0));
    let log_len = broker.log_text().len();
    broker.restart();
    std::thread::sleep(Duration::from_millis(50));
    assert!(!broker.log_text()[log_len..].contains("moved into topics~/"));
    let mut conn = broker.connect();
    assert_eq!(high_watermarks(&mut conn, "orders"), vec![9, 9]);
}

#[test]
fn invalid_topic_configs_are_refused_naming_the_field_and_nothing_is_created() {
    let broker = Broker::start(1);
    let mut conn = broker.connect();
    type Set = fn(&mut TopicConfig);
    let refused: &[(&str, Set)] = &[
        ("retention_ms", |c| c.retention_ms = -5),
        ("retention_ms", |c| c.retention_ms = i64::MIN),
        ("retention_bytes", |c| c.retention_bytes = -2),
        ("retention_bytes", |c| c.retention_bytes = i64::MIN),
        ("segment_ms", |c| c.segment_ms = i64::MIN),
        ("delete_retention_ms", |c| c.delete_retention_ms = -2),
        ("segment_bytes_max", |c| c.segment_bytes_max = 100),
        ("segment_bytes_max", |c| c.segment_bytes_max = 1 << 40),
        ("batch_bytes_max", |c| c.batch_bytes_max = 1),
        ("batch_bytes_max", |c| c.batch_bytes_max = 32 << 20),
        ("partition_count", |c| c.partition_count = 0),
        // Refused as a bad config, not as "the broker holds too many partitions".
        ("partition_count", |c| c.partition_count = u32::MAX),
    ];
    for (i, (field, set)) in refused.iter().enumerate() {
        let mut c = config(1);
        set(&mut c);
        let name = format!("bad-{i}");
        let r = create(&mut conn, &name, c.clone());
        assert_eq!(
            ErrorCode::from_u16(r.error),
            Some(ErrorCode::InvalidTopicConfig),
            "{c:?}: {}",
            r.message
        );
        assert!(
            r.message.contains(field) && r.message.contains("allowed: "),
            "the message names {field} and its range: {}",
            r.message
        );
    }
    let list: ListTopicsResponse = conn.call(&ListTopicsRequest { name_prefix: String::new() });
    assert!(list.topics.is_empty(), "nothing was stored: {:?}", list.topics);

    // The edges of every range are accepted and kept as given.
    let edges = TopicConfig {
        partition_count: 2,
        retention_ms: -1,
        retention_bytes: i64::MAX,
        segment_bytes_max: 4096,
        segment_ms: -1,
        default_ack: AckLevel::Written,
        batch_bytes_max: 96,
        table: true,
        aggregate: None,
        compact: true,
        delete_retention_ms: -1,
    };
    let r = create(&mut conn, "edges", edges.clone());
    assert_eq!(r.error, 0, "{}", r.message);
    let d: DescribeTopicResponse = conn.call(&DescribeTopicRequest { name: "edges".into() });
    assert_eq!(d.topic.expect("described").config, edges);
}

#[test]
fn batches_with_the_control_or_transactional_bit_are_refused_and_nothing_is_stored() {
    use wire::constants::{ATTR_CONTROL, ATTR_TRANSACTIONAL};
    let broker = Broker::start(2);
    let mut conn = broker.connect();
    let owners = create_topic(&mut conn, "attrs", 2);
    assert_eq!(owners, vec![0, 1]);
    let good = one_batch("good");
    for attributes in [ATTR_TRANSACTIONAL, ATTR_CONTROL, ATTR_CONTROL | ATTR_TRANSACTIONAL] {
        let marked = with_attributes(&good, attributes);
        // Through each shard: once on the owner, once forwarded to it.
        for shard in 0..2 {
            let mut via = broker.connect_shard(shard);
            for p in 0..2 {
                for batches in [marked.to_vec(), [&good[..], &marked[..]].concat()] {
                    let r = produce(&mut via, "attrs", p, &batches, AckLevel::Durable);
                    assert_eq!(
                        ErrorCode::from_u16(r.error),
                        Some(ErrorCode::InvalidBatch),
                        "attributes {attributes:#06x} to partition {p} via shard {shard}"
                    );
                    assert_eq!((r.base_offset, r.last_offset), (-1, -1));
                }
            }
        }
    }
    assert_eq!(high_watermarks(&mut conn, "attrs"), vec![0, 0], "nothing was stored");
    // The partitions still take ordinary batches, from offset 0.
    for p in 0..2 {
        let r = produce(&mut conn, "attrs", p, &good, AckLevel::Durable);
        assert_eq!((r.error, r.base_offset, r.last_offset), (0, 0, 2));
    }
    assert_eq!(high_watermarks(&mut conn, "attrs"), vec![3, 3]);
}
