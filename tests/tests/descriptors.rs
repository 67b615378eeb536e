//! Descriptors a partition holds do not grow with its segments: a sealed segment closes its
//! `.log` and a reader reopens it on demand (a few per partition stay open, most recently
//! read first). Before, a topic with 4 KiB segments kept one descriptor per segment: 300
//! batches, +295 descriptors, and a broker restarted on many segments opened them all.
//!
//! And all partitions together stay within the storage descriptor budget
//! (`BROKER_STORAGE_FILES_MAX`): partitions past it are refused at create, and busy ones
//! (rolling, durable writes, reads of sealed segments) go without optional files rather than
//! take the descriptors connections need.

use integration_tests::{create_topic, fetch_all, produce, Broker, Conn};
use wire::*;

const TOPIC: &str = "tiny-segments";
const BATCHES: u64 = 300;

/// Descriptors the broker process may gain for the whole test, beyond its open segments'
/// few: the test's connections, index files of the active segment, an O_DSYNC handle.
const FDS_SLACK: usize = 24;

fn batch(tag: u64) -> Vec<u8> {
    let mut b = BatchBuilder::new(1 << 16);
    b.append(0, None, Some(&[tag as u8; 3000][..]), &[]).expect("append");
    b.finish().expect("batch").to_vec()
}

fn create_tiny_segment_topic(conn: &mut Conn) {
    let resp: CreateTopicResponse = conn.call(&CreateTopicRequest {
        name: TOPIC.into(),
        config: TopicConfig {
            partition_count: 1,
            retention_ms: -1,
            retention_bytes: -1,
            segment_bytes_max: 4096,
            ..Default::default()
        },
    });
    assert_eq!(resp.error, 0, "create: {}", resp.message);
}

#[test]
fn sealed_segments_hold_no_descriptors_and_reopen_to_be_read() {
    let mut broker = Broker::start(1);
    let mut conn = broker.connect();
    create_topic(&mut conn, "warm-up", 1); // the first partition's fixed costs, counted out
    let base = broker.open_fds();
    create_tiny_segment_topic(&mut conn);
    let mut stored = Vec::new();
    for tag in 0..BATCHES {
        let r = produce(&mut conn, TOPIC, 0, &batch(tag), AckLevel::Durable);
        assert_eq!(r.error, 0, "produce {tag}");
        stored.push(r.base_offset);
    }
    let after_produce = broker.open_fds();
    eprintln!("{BATCHES} one-batch segments: {} descriptors more", after_produce - base);
    assert!(
        after_produce <= base + FDS_SLACK,
        "{BATCHES} segments hold {} descriptors (base {base})",
        after_produce - base
    );
    // Reading everything back reopens sealed segments; only a few stay open.
    let all = fetch_all(&mut conn, TOPIC, 0, BATCHES);
    assert_eq!(all.len(), BATCHES as usize, "every batch reads back");
    let after_read = broker.open_fds();
    eprintln!("after reading all: {} descriptors more", after_read - base);
    assert!(after_read <= base + FDS_SLACK, "reading left {} descriptors open", after_read - base);
    // A restart opens the segments to recover them and keeps only the active one.
    drop(conn);
    assert_eq!(broker.stop(), Some(0), "clean stop");
    broker.restart();
    let mut conn = broker.connect();
    let after_open = broker.open_fds();
    eprintln!("after a restart: {} descriptors more than before the topic", after_open - base);
    assert!(after_open <= base + FDS_SLACK, "recovery left the sealed segments open");
    let again = fetch_all(&mut conn, TOPIC, 0, BATCHES);
    assert_eq!(again, all, "the same bytes after a restart");
    let after_restart = broker.open_fds();
    eprintln!("after a restart and reading all: {} descriptors more", after_restart - base);
    assert!(after_restart <= base + FDS_SLACK, "reading after the restart left them open");
}

/// The storage budget of `storage_descriptors_stay_within_the_budget`: 30 partitions, 10
/// optional files (7 kept, 3 for brief opens).
const STORAGE_FILES_MAX: usize = 40;
const BUDGET_PARTITIONS: u32 = 30;
const BUSY_PARTITIONS: u32 = 8;
const BUSY_ROUNDS: u64 = 20;

/// Descriptors beyond the budget the broker may gain in that test: the test's second
/// connection, and brief uncounted ones (a directory synced after a roll, glommio's device
/// probe).
const FDS_BEYOND_BUDGET: usize = 6;

#[test]
fn storage_descriptors_stay_within_the_budget() {
    let files_max = STORAGE_FILES_MAX.to_string();
    // One partition of the budget goes to the internal committed-offsets topic.
    let broker = Broker::start_with_env(
        1,
        &[("BROKER_STORAGE_FILES_MAX", &files_max), ("BROKER_GROUP_OFFSETS_PARTITIONS", "1")],
    );
    let mut conn = broker.connect();
    let base = broker.open_fds();
    let busy: CreateTopicResponse = conn.call(&CreateTopicRequest {
        name: "busy".into(),
        config: TopicConfig {
            partition_count: BUSY_PARTITIONS,
            retention_ms: -1,
            retention_bytes: -1,
            segment_bytes_max: 4096,
            ..Default::default()
        },
    });
    assert_eq!(busy.error, 0, "create: {}", busy.message);
    create_topic(&mut conn, "idle", BUDGET_PARTITIONS - BUSY_PARTITIONS - 1);
    // One more partition than the budget holds: refused, and the message says why.
    let refused: CreateTopicResponse = conn.call(&CreateTopicRequest {
        name: "one-too-many".into(),
        config: TopicConfig { partition_count: 1, ..Default::default() },
    });
    assert_eq!(ErrorCode::from_u16(refused.error), Some(ErrorCode::ResourceLimit));
    eprintln!("refused: {}", refused.message);
    assert!(refused.message.contains("storage descriptor budget"), "{}", refused.message);
    assert!(refused.message.contains(&format!("{STORAGE_FILES_MAX} files")), "{}", refused.message);

    // Busy: every batch rolls its partition's segment, every ack is durable, and the sealed
    // segments are read back between rounds (each partition keeps reopened files).
    let mut peak = broker.open_fds();
    for round in 0..BUSY_ROUNDS {
        for p in 0..BUSY_PARTITIONS {
            let r = produce(&mut conn, "busy", p, &batch(round), AckLevel::Durable);
            assert_eq!(r.error, 0, "produce round {round} partition {p}");
            assert_eq!(r.base_offset, round as i64, "partition {p}");
            peak = peak.max(broker.open_fds());
        }
        if round % 5 == 4 {
            for p in 0..BUSY_PARTITIONS {
                let all = fetch_all(&mut conn, "busy", p, round + 1);
                assert_eq!(all.len() as u64, round + 1, "partition {p} reads back");
                peak = peak.max(broker.open_fds());
            }
        }
    }
    eprintln!(
        "{BUSY_PARTITIONS} busy and {} idle partitions: at most {} descriptors more than with \
         none (budget {STORAGE_FILES_MAX})",
        BUDGET_PARTITIONS - BUSY_PARTITIONS,
        peak - base
    );
    assert!(
        peak <= base + STORAGE_FILES_MAX + FDS_BEYOND_BUDGET,
        "storage held {} descriptors over a budget of {STORAGE_FILES_MAX}",
        peak - base
    );
    // Connections still get theirs.
    let mut other = broker.connect();
    let md: MetadataResponse = other.call(&MetadataRequest { topics: vec!["busy".into()] });
    assert_eq!(md.topics.len(), 1, "a new connection is served");
    let all = fetch_all(&mut other, "busy", 0, BUSY_ROUNDS);
    assert_eq!(all.len() as u64, BUSY_ROUNDS, "and reads every batch");
}
