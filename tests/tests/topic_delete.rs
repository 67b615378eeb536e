//! Deleting topics through the broker binary: the data leaves the topic's place at once and
//! is freed in the background; data the metadata no longer names never comes back.

use std::path::Path;
use std::time::{Duration, Instant};

use integration_tests::{create_topic, produce, Broker, Conn};
use wire::*;

fn produce_mb(conn: &mut Conn, topic: &str, partition: u32, mb: usize) {
    let value = vec![0x33u8; 1000];
    for _ in 0..mb {
        let mut b = BatchBuilder::new(1 << 20);
        while b.append(1_700_000_000_000, None, Some(&value), &[]).is_ok() {}
        let batch = b.finish().unwrap();
        assert_eq!(produce(conn, topic, partition, &batch, AckLevel::Written).error, 0);
    }
}

fn high_watermarks(conn: &mut Conn, topic: &str) -> Vec<u64> {
    let d: DescribeTopicResponse = conn.call(&DescribeTopicRequest { name: topic.into() });
    assert_eq!(d.error, 0, "{}", d.message);
    d.partitions.iter().map(|p| p.high_watermark).collect()
}

fn trash_empties(data_dir: &Path) {
    let trash = data_dir.join("trash~"); // broker::trash::TRASH_DIR
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left: Vec<_> = match std::fs::read_dir(&trash) {
            Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        };
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "trash not emptied: {left:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn deleting_a_topic_moves_its_data_away_at_once_and_frees_it_in_the_background() {
    let broker = Broker::start(2);
    let mut conn = broker.connect();
    create_topic(&mut conn, "gone", 2);
    for p in 0..2 {
        produce_mb(&mut conn, "gone", p, 12);
    }
    assert!(high_watermarks(&mut conn, "gone").iter().all(|&hw| hw > 0));
    let resp: DeleteTopicResponse = conn.call(&DeleteTopicRequest { name: "gone".into() });
    assert_eq!(resp.error, 0, "{}", resp.message);
    assert!(!broker.topic_dir("gone").exists(), "the topic's directory is gone at once");
    trash_empties(&broker.data_dir);
    // A topic created again under the same name starts empty.
    create_topic(&mut conn, "gone", 2);
    assert_eq!(high_watermarks(&mut conn, "gone"), vec![0, 0]);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn data_the_metadata_does_not_name_is_moved_away_at_start_and_never_served() {
    let mut broker = Broker::start(1);
    {
        let mut conn = broker.connect();
        create_topic(&mut conn, "kept", 1);
        produce_mb(&mut conn, "kept", 0, 2);
    }
    assert_eq!(broker.stop(), Some(0));
    // What a crash between a delete's metadata commit and its move leaves behind: a topic
    // directory the metadata does not know, and a partition beyond a topic's count.
    let kept = broker.partition_dir("kept", 0);
    copy_dir(&kept, &broker.partition_dir("ghost", 0));
    copy_dir(&kept, &broker.partition_dir("kept", 5));
    broker.restart();
    assert!(!broker.topic_dir("ghost").exists());
    assert!(!broker.partition_dir("kept", 5).exists());
    assert!(broker.log_text().contains("the metadata does not name"));
    let mut conn = broker.connect();
    let kept_hw = high_watermarks(&mut conn, "kept");
    assert!(kept_hw[0] > 0, "the named partition keeps its data");
    create_topic(&mut conn, "ghost", 1);
    assert_eq!(high_watermarks(&mut conn, "ghost"), vec![0], "old records never come back");
    trash_empties(&broker.data_dir);
}

/// A subscription that ends on its own (its topic deleted: an UNKNOWN_TOPIC push) frees its
/// slot of the shard's and the connection's subscriptions, and its id may be used again:
/// before, each one stayed counted until the client unsubscribed or left, so a long-lived
/// connection that outlived a few deleted topics was refused RESOURCE_LIMIT for good (and
/// so was every other client of the shard).
#[test]
fn subscriptions_ended_by_a_topic_delete_free_their_slots() {
    let env = [
        ("BROKER_SUBSCRIPTIONS_PER_SHARD_MAX", "2"),
        ("BROKER_SUBSCRIPTIONS_PER_CONNECTION_MAX", "2"),
    ];
    let broker = Broker::start_with_env(1, &env);
    let mut admin = broker.connect();
    let mut sub = broker.connect();
    for round in 0..4u64 {
        let topic = format!("fleeting-{round}");
        create_topic(&mut admin, &topic, 1);
        let r: SubscribeResponse = sub.call(&SubscribeRequest {
            subscription_id: 1 + round % 2,
            topic: topic.clone(),
            partition: 0,
            start: StartPosition::Earliest,
            credit_bytes: 1 << 20,
            filter: String::new(),
        });
        assert_eq!(r.error, 0, "round {round}: {}", r.message);
        let r: DeleteTopicResponse = admin.call(&DeleteTopicRequest { name: topic });
        assert_eq!(r.error, 0);
        let end: SubscriptionData = sub.next_push().decode();
        assert_eq!(ErrorCode::from_u16(end.error), Some(ErrorCode::UnknownTopic));
    }
}
