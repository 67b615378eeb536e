//! What a client's groups make the broker keep comes out of configured budgets: committed
//! offsets in bytes per shard (`group_offset_bytes_per_shard_max`), not only in count.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use integration_tests::{create_topic, Broker};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    ApiKey, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

mod kafka_wire;
use kafka_wire::{frame, kafka_addr, response_body, Conn};

const POLICY_VIOLATION: i16 = 44;

/// An administrative commit (no member, generation -1) to `group` of offset 7 for partitions
/// `partitions` of `topic`, each with `metadata_bytes` of metadata.
fn commit(
    group: &str,
    topic: &str,
    partitions: std::ops::Range<i32>,
    metadata_bytes: usize,
) -> OffsetCommitRequest {
    let mut req = OffsetCommitRequest::default();
    req.group_id = StrBytes::from_string(group.to_owned()).into();
    req.generation_id_or_member_epoch = -1;
    let mut t = OffsetCommitRequestTopic::default();
    t.name = TopicName(StrBytes::from_string(topic.to_owned()));
    t.partitions = partitions
        .map(|p| {
            let mut cp = OffsetCommitRequestPartition::default();
            cp.partition_index = p;
            cp.committed_offset = 7;
            cp.committed_metadata = Some(StrBytes::from_string("m".repeat(metadata_bytes)));
            cp
        })
        .collect();
    req.topics = vec![t];
    req
}

/// The error code of each partition of a commit's answer.
fn codes(c: &mut Conn, req: &OffsetCommitRequest) -> Vec<i16> {
    let answer: OffsetCommitResponse = c.call(ApiKey::OffsetCommit, 2, req);
    answer.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)).collect()
}

/// The metadata lengths `group` has committed, per partition (-1: none).
fn committed(c: &mut Conn, group: &str) -> Vec<(i32, i64, usize)> {
    let mut req = OffsetFetchRequest::default();
    req.group_id = StrBytes::from_string(group.to_owned()).into();
    req.topics = None; // all
    let answer: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, 2, &req);
    assert_eq!(answer.error_code, 0);
    let parts = answer.topics.iter().flat_map(|t| t.partitions.iter());
    parts
        .map(|p| {
            (p.partition_index, p.committed_offset, p.metadata.as_ref().map_or(0, |m| m.len()))
        })
        .collect()
}

/// Committed offsets are bounded in bytes per shard: 40 commits of 4,000 bytes of metadata
/// each on a budget of 64 KiB store the first 15 (about 4.1 KiB each) and refuse the rest
/// with POLICY_VIOLATION (before, only the count of keys was bounded: 1,000,000 keys of
/// 4 KiB, about 4 GiB per shard). A known key shrinking its metadata always fits, which makes
/// room for more; the count survives a kill -9 (the replay counts the bytes again).
#[test]
fn committed_offsets_are_bounded_in_bytes() {
    let env = [
        ("BROKER_KAFKA_LISTEN", "127.0.0.1:0"),
        ("BROKER_GROUP_OFFSET_BYTES_PER_SHARD_MAX", "65536"),
    ];
    let mut b = Broker::start_with_env(1, &env);
    create_topic(&mut b.connect(), "wide", 40);
    let mut c = Conn::new(&b);
    let first = codes(&mut c, &commit("g", "wide", 0..40, 4000));
    assert_eq!(first[..15], [0; 15], "{first:?}");
    assert_eq!(first[15..], [POLICY_VIOLATION; 25], "{first:?}");
    let stored = committed(&mut c, "g");
    assert_eq!(stored.len(), 15, "{stored:?}");
    assert!(stored.iter().all(|&(_, offset, metadata)| offset == 7 && metadata == 4000));
    // Shrinking known keys fits, and frees room for the other keys.
    assert_eq!(codes(&mut c, &commit("g", "wide", 0..15, 0)), [0; 15]);
    assert_eq!(codes(&mut c, &commit("g", "wide", 15..40, 0)), [0; 25]);
    // Growing a known key needs room for the growth: 40 small keys (~5.3 KiB) leave room for
    // 15 of them to grow by 4,000 bytes.
    let grown = codes(&mut c, &commit("g", "wide", 0..40, 4000));
    assert_eq!(grown[..15], [0; 15], "{grown:?}");
    assert_eq!(grown[15..], [POLICY_VIOLATION; 25], "{grown:?}");
    assert_eq!(codes(&mut c, &commit("g", "wide", 0..40, 0)), [0; 40]);
    // After a kill -9 the replayed offsets count as before: another group gets the same room.
    b.kill();
    b.restart();
    let mut c = Conn::new(&b);
    assert_eq!(committed(&mut c, "g").len(), 40);
    let other = codes(&mut c, &commit("h", "wide", 0..40, 4000));
    assert_eq!(other[..14], [0; 14], "{other:?}");
    assert_eq!(other[14..], [POLICY_VIOLATION; 26], "{other:?}");
}

/// Answers whose size the request does not bound (a group's committed offsets here) count
/// against the connection's send-queue budget: 256 OffsetFetch requests of groups whose
/// offsets answer with ~800 KiB each, sent and not read, hold about the budget (the reader
/// reads no request while the budget is full), and the answers come in order once the
/// client reads. (A guard: the Kafka listener already kept to it.)
#[test]
fn unread_offset_fetches_hold_only_the_send_queue_budget() {
    let env = [
        ("BROKER_KAFKA_LISTEN", "127.0.0.1:0"),
        ("BROKER_CONNECTION_SEND_QUEUE_BYTES_MAX", "4194304"),
    ];
    let b = Broker::start_with_env(2, &env);
    create_topic(&mut b.connect(), "wide", 200);
    let mut c = Conn::new(&b);
    // Groups coordinated by either shard: some answers are built on the other shard.
    let groups = ["g0", "g1", "g2", "g3"];
    for g in groups {
        assert_eq!(codes(&mut c, &commit(g, "wide", 0..200, 4000)), [0; 200]);
        assert_eq!(committed(&mut c, g).len(), 200);
    }
    let fetch = |g: &str| {
        let mut req = OffsetFetchRequest::default();
        req.group_id = StrBytes::from_string(g.to_owned()).into();
        req.topics = None;
        req
    };
    let before = b.rss_bytes();
    let mut greedy = TcpStream::connect(kafka_addr(&b)).unwrap();
    greedy.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut sent = 0;
    for i in 0..256 {
        let req = fetch(groups[i as usize % groups.len()]);
        if greedy.write_all(&frame(ApiKey::OffsetFetch, 2, i, &req)).is_err() {
            break;
        }
        sent += 1;
    }
    std::thread::sleep(Duration::from_secs(3));
    let grown = b.rss_bytes().saturating_sub(before);
    eprintln!("broker RSS grew {} MiB with {sent} unread offset fetches", grown >> 20);
    assert!(grown < 48 << 20, "{} MiB held for {sent} unread answers", grown >> 20);
    greedy.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    for i in 0..sent {
        let mut body = response_body(&mut greedy, i);
        let answer = OffsetFetchResponse::decode(&mut body, 2).unwrap();
        assert_eq!(answer.topics.iter().map(|t| t.partitions.len()).sum::<usize>(), 200);
    }
}

/// The same over the native protocol: 256 FetchOffsets of a group whose offsets answer with
/// ~800 KiB each, sent and not read, hold about the connection's send-queue budget (before,
/// such an answer reserved nothing: all 256 were built and queued, ~200 MiB).
#[test]
fn unread_native_offset_fetches_hold_only_the_send_queue_budget() {
    let env = [("BROKER_CONNECTION_SEND_QUEUE_BYTES_MAX", "4194304")];
    let b = Broker::start_with_env(2, &env);
    let mut c = b.connect();
    create_topic(&mut c, "wide", 200);
    let groups = ["g0", "g1", "g2", "g3"];
    for g in groups {
        let partitions = (0..200)
            .map(|p| wire::CommittedOffset { partition: p, offset: 7, metadata: "m".repeat(4000) })
            .collect();
        let topics = vec![wire::CommitTopic { name: "wide".into(), partitions }];
        let req = wire::CommitOffsetsRequest {
            group: g.into(),
            member_id: String::new(),
            generation: 0,
            topics,
        };
        let answer: wire::CommitOffsetsResponse = c.call(&req);
        assert_eq!(answer.error, 0, "{}", answer.message);
        assert!(answer.topics[0].partitions.iter().all(|p| p.error == 0));
    }
    let before = b.rss_bytes();
    let mut greedy = b.connect();
    let mut ids = Vec::new();
    for i in 0..256 {
        let group = groups[i % groups.len()].to_owned();
        ids.push(greedy.send(&wire::FetchOffsetsRequest { group, topics: vec![] }));
    }
    std::thread::sleep(Duration::from_secs(3));
    let grown = b.rss_bytes().saturating_sub(before);
    eprintln!("broker RSS grew {} MiB with 256 unread native offset fetches", grown >> 20);
    assert!(grown < 48 << 20, "{} MiB held for 256 unread answers", grown >> 20);
    for id in ids {
        let answer: wire::FetchOffsetsResponse = greedy.wait(id).decode();
        assert_eq!(answer.error, 0, "{}", answer.message);
        assert_eq!(answer.topics[0].partitions.len(), 200);
    }
}
