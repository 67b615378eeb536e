//! Hostile clients cannot make the broker hold memory it did not budget for. Each case runs
//! a pattern that, before the bounds, grew the broker's resident memory by hundreds of
//! megabytes, and asserts the growth stays under the configured bound plus a stated
//! constant while a normal client is still served:
//! - headers that declare 64 MiB bodies and then stall (buffers grow as bytes arrive);
//! - a frame dripped a byte at a time (the frame deadline is for the whole frame);
//! - pipelined fetches whose responses are never read (held bytes per connection, the
//!   in-flight permit kept until the response is on the socket), also with a `max_bytes` below
//!   the batch every such fetch returns whole (its room grown before the batch is copied);
//! - a subscriber granting endless credit and never reading, connected to the owner and
//!   relayed through another shard (the log is the buffer; a relayed slow consumer is cut);
//! - many connections that each stay within their bound but together would not (the
//!   shard's budget), and a client that stops reading altogether (the write stall cut-off);
//! - pipelined table scans (and key queries, the same way) that reserve nothing up front: each
//!   entry takes room as it is gathered (`budget::EntryRoom`);
//! - subscriptions opened without end (each a push task and its filter): refused past
//!   `subscriptions_per_connection_max` and `subscriptions_per_shard_max`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use integration_tests::{create_topic, produce, Broker, Conn};
use wire::constants::FRAME_HEADER_BYTES;
use wire::*;

const MIB: u64 = 1 << 20;

/// The connection bound these tests run with (`connection_send_queue_bytes_max`).
const SEND_QUEUE_BYTES_MAX: u64 = 4 * MIB;

/// Growth allowed on top of the bound under test: allocator slack, socket handling, one
/// response or push beyond the bound, thread stacks.
const SLACK_BYTES: u64 = 48 * MIB;

fn start(shards: usize) -> Broker {
    start_with(shards, &[])
}

fn start_with(shards: usize, env: &[(&str, &str)]) -> Broker {
    let queue = SEND_QUEUE_BYTES_MAX.to_string();
    let cache = (8 * MIB).to_string();
    let mut all = vec![
        ("BROKER_CONNECTION_SEND_QUEUE_BYTES_MAX", queue.as_str()),
        // The cache is a budget of its own; keep it small so it does not hide growth.
        ("BROKER_CACHE_BYTES_PER_SHARD", cache.as_str()),
        // Metrics on a port of its own (the default port is one per machine).
        ("BROKER_METRICS_LISTEN", "127.0.0.1:0"),
    ];
    all.extend_from_slice(env);
    Broker::start_with_env(shards, &all)
}

/// Pipelines `n` fetches of up to 16 MiB from offset 0 of partition 0, to be never read.
fn pipeline_fetches(broker: &Broker, topic: &str, n: u64) -> TcpStream {
    let mut s = TcpStream::connect(broker.public).expect("connect");
    for i in 0..n {
        let req = FetchRequest {
            max_wait_ms: 0,
            min_bytes: 0,
            max_bytes: 16 << 20,
            topics: vec![FetchTopic {
                name: topic.into(),
                partitions: vec![FetchPartition { partition: 0, offset: 0, max_bytes: 16 << 20 }],
            }],
        };
        s.write_all(&encode_request(i + 1, &req).expect("encode")).expect("send fetch");
    }
    s
}

/// A normal client is still served: metadata answers.
fn still_serves(broker: &Broker) {
    let mut c = broker.connect();
    c.set_read_timeout(Some(Duration::from_secs(10)));
    let md: MetadataResponse = c.call(&MetadataRequest { topics: Vec::new() });
    assert!(md.shard_count >= 1);
}

/// `mib` MiB of 512 KiB batches appended to partition 0 at `written`, through shard
/// `shard`'s own port.
fn fill(broker: &Broker, shard: usize, topic: &str, mib: u64) {
    let mut c = broker.connect_shard(shard);
    let mut b = BatchBuilder::new(1 << 20);
    let value = vec![7u8; 64 << 10];
    for _ in 0..8 {
        b.append(0, None, Some(&value), &[]).expect("append");
    }
    let batch = b.finish().expect("batch").to_vec();
    for _ in 0..(mib * 2) {
        let r = produce(&mut c, topic, 0, &batch, AckLevel::Written);
        assert_eq!(r.error, 0, "produce");
    }
}

/// 32 MiB of 4 MiB batches (four 1 MiB records each) appended to partition 0 of `topic`
/// through shard `shard`'s own port, at `durable`: offset 0 is read from disk (the cache is
/// 8 MiB), as slowly as a real backlog. The batch, to compare what is read back.
fn fill_big_batches(broker: &Broker, shard: usize, topic: &str) -> Vec<u8> {
    let batch = {
        let mut b = BatchBuilder::new(8 << 20);
        for _ in 0..4 {
            b.append(0, None, Some(&vec![9u8; 1 << 20]), &[]).expect("append");
        }
        b.finish().expect("batch").to_vec()
    };
    let mut c = broker.connect_shard(shard);
    for _ in 0..8 {
        assert_eq!(produce(&mut c, topic, 0, &batch, AckLevel::Durable).error, 0);
    }
    still_serves(broker);
    batch
}

/// The shard a client goes through: the one that does not own the partition `owner` owns
/// when there are two.
fn not_owning(owner: usize, shards: usize) -> usize {
    if shards > 1 {
        1 - owner
    } else {
        owner
    }
}

/// Waits until each of the `shards` shards holds nothing of its memory budget.
fn budgets_given_back(broker: &Broker, shards: usize) {
    for shard in 0..shards as u32 {
        budget_given_back(broker, shard);
    }
}

/// Waits until `shard` holds nothing of its memory budget (every response written, every
/// room a request took given back).
fn budget_given_back(broker: &Broker, shard: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let held = broker.metric("broker_memory_held_bytes", shard).expect("metrics on");
        if held == 0.0 {
            return;
        }
        assert!(Instant::now() < deadline, "shard {shard} still holds {held} bytes of its budget");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `req` 64 times on `conn` without reading the answers, asserts RSS grew at most the
/// connection bound, one `answer_bytes` answer and the slack over `base`, and that a normal
/// client is still served; the requests' ids, to read the answers later.
fn send_unread<T: Message>(
    broker: &Broker,
    conn: &mut Conn,
    req: &T,
    base: u64,
    answer_bytes: u64,
    what: &str,
) -> Vec<u64> {
    let ids = (0..64).map(|_| conn.send(req)).collect();
    let allowed = SEND_QUEUE_BYTES_MAX + answer_bytes + SLACK_BYTES;
    assert_growth(broker, base, allowed, &format!("64 pipelined {what} not read"));
    still_serves(broker);
    ids
}

/// Waits `settle`, then asserts RSS grew at most `allowed` over `base`.
fn assert_growth(broker: &Broker, base: u64, allowed: u64, what: &str) {
    let mut peak = 0;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        peak = peak.max(broker.rss_bytes());
        std::thread::sleep(Duration::from_millis(100));
    }
    let grew = peak.saturating_sub(base);
    eprintln!("{what}: RSS grew {} MiB (allowed {} MiB)", grew / MIB, allowed / MIB);
    assert!(grew <= allowed, "{what}: RSS grew {} MiB, allowed {} MiB", grew / MIB, allowed / MIB);
}

#[test]
fn stalled_headers_declaring_large_bodies_hold_no_memory() {
    let broker = start(1);
    still_serves(&broker);
    let base = broker.rss_bytes();
    // 8 connections each declare a 64 MiB body, send 1 KiB of it, and stall: before, the
    // broker allocated and zeroed the whole body at once (+512 MB).
    let header = FrameHeader {
        version: 1,
        api_key: ApiKey::Produce.as_u16(),
        flags: 0,
        correlation_id: 1,
        body_len: (64 << 20) - 16,
    };
    let stalled: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut s = TcpStream::connect(broker.public).expect("connect");
            s.write_all(&header.encode()).expect("header");
            s.write_all(&[0u8; 1024]).expect("some body");
            s
        })
        .collect();
    assert_growth(&broker, base, SLACK_BYTES, "8 stalled 64 MiB headers");
    still_serves(&broker);
    drop(stalled);
}

#[test]
fn a_frame_dripped_a_byte_at_a_time_is_cut_off_at_its_deadline() {
    let broker = Broker::start_with_env(1, &[("BROKER_FRAME_READ_TIMEOUT_MS", "1000")]);
    let frame = encode_request(1, &MetadataRequest { topics: Vec::new() }).expect("encode");
    let mut s = TcpStream::connect(broker.public).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
    let started = Instant::now();
    // One byte every 200 ms: every read restarted the old per-read timer, so the
    // connection (and its buffer) lived on as long as the client kept dripping.
    let mut closed_after = None;
    'drip: for &byte in frame.iter().take(FRAME_HEADER_BYTES - 1) {
        if s.write_all(&[byte]).is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        let until = Instant::now() + Duration::from_millis(200);
        while Instant::now() < until {
            let mut buf = [0u8; 64];
            match s.read(&mut buf) {
                Ok(0) => {
                    closed_after = Some(started.elapsed());
                    break 'drip;
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => {
                    closed_after = Some(started.elapsed());
                    break 'drip;
                }
            }
        }
    }
    let closed_after = closed_after.expect("a dripping client kept its connection for 6 s");
    assert!(
        closed_after < Duration::from_millis(2500),
        "closed only after {closed_after:?} (frame deadline 1 s)"
    );
    still_serves(&broker);
}

#[test]
fn pipelined_fetches_never_read_hold_at_most_the_connection_bound() {
    let broker = start(1);
    let mut admin = broker.connect();
    create_topic(&mut admin, "fetched", 1);
    fill(&broker, 0, "fetched", 32);
    still_serves(&broker);
    let base = broker.rss_bytes();
    // 96 fetches of up to 16 MiB each, pipelined, never read: before, each response was
    // queued whole (+1.5 GB); the in-flight permit went as soon as it was queued.
    let s = pipeline_fetches(&broker, "fetched", 96);
    assert_growth(
        &broker,
        base,
        SEND_QUEUE_BYTES_MAX + 16 * MIB + SLACK_BYTES,
        "96 pipelined 16 MiB fetches not read",
    );
    still_serves(&broker);
    drop(s);
}

#[test]
fn pipelined_fetches_below_their_first_batch_hold_at_most_the_connection_bound() {
    fetches_below_their_first_batch(1);
}

#[test]
fn pipelined_fetches_below_a_forwarded_first_batch_hold_at_most_the_connection_bound() {
    // The partition's owner reads the batch, the shard the client is connected to sends it:
    // before, the owner read each 4 MiB first batch whole and the connection's shard queued
    // it with 1 byte reserved (+256 MiB).
    fetches_below_their_first_batch(2);
}

/// 64 pipelined 1-byte fetches of a partition whose batches are 4 MiB, not read, through a
/// shard that does not own the partition when there are two.
fn fetches_below_their_first_batch(shards: usize) {
    let broker = start(shards);
    let mut admin = broker.connect();
    let owner = create_topic(&mut admin, "big-batches", 1)[0] as usize;
    let via = not_owning(owner, shards);
    let batch = fill_big_batches(&broker, owner, "big-batches");
    let base = broker.rss_bytes();
    // 64 fetches of at most 1 byte, each answered with the whole 4 MiB first batch: before,
    // each reserved its 1 byte and all 64 responses were made at once (+256 MiB).
    let mut conn = broker.connect_shard(via);
    let req = FetchRequest {
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: 1,
        topics: vec![FetchTopic {
            name: "big-batches".into(),
            partitions: vec![FetchPartition { partition: 0, offset: 0, max_bytes: 1 }],
        }],
    };
    let ids =
        send_unread(&broker, &mut conn, &req, base, 4 * MIB, "1-byte fetches of 4 MiB batches");
    // Read now, every response is the whole first batch.
    for id in ids {
        let resp: FetchResponse = conn.wait(id).decode();
        assert_eq!(resp.topics[0].partitions[0].batches.len(), batch.len());
    }
    budgets_given_back(&broker, shards);
}

#[test]
fn pipelined_key_queries_over_large_batches_hold_at_most_the_connection_bound() {
    key_queries_over_large_batches(1);
}

#[test]
fn pipelined_forwarded_key_queries_over_large_batches_hold_at_most_the_connection_bound() {
    // The owner reads with room lent by the shard the client is connected to: the first
    // (2.25 MiB) is too small for a 4 MiB batch, so each query is asked for again with more.
    key_queries_over_large_batches(2);
}

/// 64 pipelined key queries over 4 MiB batches, not read, through a shard that does not own
/// the partition when there are two.
fn key_queries_over_large_batches(shards: usize) {
    let broker = start(shards);
    let mut admin = broker.connect();
    let owner = create_topic(&mut admin, "scanned", 1)[0] as usize;
    let via = not_owning(owner, shards);
    fill_big_batches(&broker, owner, "scanned");
    let base = broker.rss_bytes();
    // Each query scans the whole partition for a key that is not there, reading it a batch
    // (4 MiB: more than its 1 MiB window) at a time: before, the 64 scans read at once
    // (+248 MiB), nothing taken for what they read.
    let mut conn = broker.connect_shard(via);
    let req = KeyQueryRequest {
        topics: vec![KeyQueryTopic {
            name: "scanned".into(),
            partitions: vec![KeyQueryPartition {
                partition: 0,
                key: b"nobody".to_vec(),
                from_timestamp_ms: 0,
                to_timestamp_ms: i64::MAX,
                start_offset: 0,
                limit: 10,
            }],
        }],
    };
    let ids = send_unread(&broker, &mut conn, &req, base, 0, "key queries over 4 MiB batches");
    for id in ids {
        let resp: KeyQueryResponse = conn.wait(id).decode();
        let p = &resp.topics[0].partitions[0];
        assert_eq!((p.error, p.records.len(), p.next_offset), (0, 0, None), "scanned to the end");
    }
    budgets_given_back(&broker, shards);
}

#[test]
fn pipelined_table_scans_never_read_hold_at_most_the_connection_bound() {
    table_scans_never_read(1);
}

#[test]
fn pipelined_forwarded_table_scans_never_read_hold_at_most_the_connection_bound() {
    // The partition's owner makes the answers, the shard the client is connected to holds
    // them: before, the owner read with no room at all (+ the same 8 MiB per scan).
    table_scans_never_read(2);
}

/// 64 pipelined 8 MiB table scans, not read, through a shard that does not own the
/// partition when there are two.
fn table_scans_never_read(shards: usize) {
    let broker = start(shards);
    let mut admin = broker.connect();
    let config = TopicConfig { partition_count: 1, table: true, ..TopicConfig::default() };
    let created: CreateTopicResponse =
        admin.call(&CreateTopicRequest { name: "big-values".into(), config });
    assert_eq!(created.error, 0, "{}", created.message);
    let owner = created.topic.expect("topic").partitions[0].shard as usize;
    let via = not_owning(owner, shards);
    let mut conn = broker.connect_shard(via);
    // Four keys of 2 MiB each: every scan answers with 8 MiB.
    for i in 0..4u8 {
        let mut b = BatchBuilder::new(4 << 20);
        b.append(0, Some(&[b'k', i]), Some(&vec![i; 2 << 20]), &[]).expect("append");
        let batch = b.finish().expect("batch").to_vec();
        assert_eq!(produce(&mut conn, "big-values", 0, &batch, AckLevel::Durable).error, 0);
    }
    let scan = |min_offset| TableReadRequest {
        wait_ms: 10_000,
        topics: vec![TableReadTopic {
            name: "big-values".into(),
            partitions: vec![TableReadPartition {
                partition: 0,
                kind: TableReadKind::Scan,
                start_key: Vec::new(),
                end_key: None,
                limit: 100,
                min_offset,
            }],
        }],
    };
    // Applied every record (a forwarded scan may answer partially: its owner was lent room
    // for 8 MiB).
    let applied: TableReadResponse = conn.call(&scan(4));
    let p = &applied.topics[0].partitions[0];
    assert_eq!((p.error, p.offset), (0, 4), "the table has every key");
    still_serves(&broker);
    let base = broker.rss_bytes();
    // 64 scans pipelined, never read: before, table reads reserved nothing and all 64
    // answers were made at once (+313 MiB measured; +124 MiB when entries took room only
    // once read, each scan reading a 2 MiB record before it found no room). Now room for
    // reading a record is taken before it is read.
    let ids = send_unread(&broker, &mut conn, &scan(0), base, 8 * MIB, "8 MiB table scans");
    // Read now: every scan comes, whole or continued from a key.
    for id in ids {
        let resp: TableReadResponse = conn.wait(id).decode();
        let p = &resp.topics[0].partitions[0];
        assert_eq!(p.error, 0);
        assert!(!p.entries.is_empty(), "at least one entry");
        assert_eq!(p.next_key.is_some(), p.entries.len() < 4, "a partial scan says where to go on");
    }
    budgets_given_back(&broker, shards);
}

/// A scan copies at most 256 KiB of keys (and one more key) out of the table per page (it
/// copied `limit + 1` keys of any length, held outside any room while the entries were
/// read): 64 pipelined scans, not read, of a table of 24 keys of 512 KiB (12 MiB each
/// before, 768 MiB for the 64; now at most 768 KiB each).
#[test]
fn pipelined_scans_of_long_keys_never_read_hold_at_most_the_connection_bound() {
    let broker = start(1);
    let mut conn = broker.connect();
    let config = TopicConfig { partition_count: 1, table: true, ..TopicConfig::default() };
    let created: CreateTopicResponse =
        conn.call(&CreateTopicRequest { name: "long-keys".into(), config });
    assert_eq!(created.error, 0, "{}", created.message);
    for i in 0..24u8 {
        let mut b = BatchBuilder::new(1 << 20);
        let key = [vec![b'k', i], vec![i; 512 << 10]].concat();
        b.append(0, Some(&key), Some(b"v"), &[]).expect("append");
        let batch = b.finish().expect("batch").to_vec();
        assert_eq!(produce(&mut conn, "long-keys", 0, &batch, AckLevel::Durable).error, 0);
    }
    let scan = |min_offset| TableReadRequest {
        wait_ms: 10_000,
        topics: vec![TableReadTopic {
            name: "long-keys".into(),
            partitions: vec![TableReadPartition {
                partition: 0,
                kind: TableReadKind::Scan,
                start_key: Vec::new(),
                end_key: None,
                limit: 1_000,
                min_offset,
            }],
        }],
    };
    let applied: TableReadResponse = conn.call(&scan(24));
    let p = &applied.topics[0].partitions[0];
    assert_eq!((p.error, p.offset), (0, 24), "the table has every key");
    assert!(p.entries.len() == 1 && p.next_key.is_some(), "a page ends after 256 KiB of keys");
    still_serves(&broker);
    let base = broker.rss_bytes();
    let ids = send_unread(&broker, &mut conn, &scan(0), base, 48 * MIB, "scans of long keys");
    // Read now: every page comes, and following next_key visits every key once.
    for id in ids {
        let resp: TableReadResponse = conn.wait(id).decode();
        assert_eq!(resp.topics[0].partitions[0].error, 0);
    }
    let (mut keys, mut start) = (0, Vec::new());
    loop {
        let mut page = scan(0);
        page.topics[0].partitions[0].start_key = start;
        let resp: TableReadResponse = conn.call(&page);
        let p = &resp.topics[0].partitions[0];
        keys += p.entries.len();
        match &p.next_key {
            Some(next) => start = next.clone(),
            None => break,
        }
    }
    assert_eq!(keys, 24);
    budgets_given_back(&broker, 1);
}

/// A table read of many partitions none of whose tables reach its `min_offset` answers after
/// its one `wait_ms`, not after one wait per partition (before: 8 partitions × 1 s).
#[test]
fn a_table_read_of_many_waiting_partitions_answers_after_one_wait() {
    let broker = start(1);
    let mut admin = broker.connect();
    let config = TopicConfig { partition_count: 8, table: true, ..TopicConfig::default() };
    let created: CreateTopicResponse =
        admin.call(&CreateTopicRequest { name: "waiting".into(), config });
    assert_eq!(created.error, 0, "{}", created.message);
    let read = TableReadRequest {
        wait_ms: 1_000,
        topics: vec![TableReadTopic {
            name: "waiting".into(),
            partitions: (0..8)
                .map(|partition| TableReadPartition {
                    partition,
                    kind: TableReadKind::Scan,
                    start_key: Vec::new(),
                    end_key: None,
                    limit: 10,
                    min_offset: 1_000,
                })
                .collect(),
        }],
    };
    let started = Instant::now();
    let resp: TableReadResponse = admin.call(&read);
    let waited = started.elapsed();
    assert_eq!(resp.topics[0].partitions.len(), 8);
    assert!(resp.topics[0].partitions.iter().all(|p| p.error != 0), "none reached offset 1,000");
    assert!(waited < Duration::from_secs(4), "answered after {waited:?}");
}

#[test]
fn pipelined_state_table_scans_never_read_hold_at_most_the_connection_bound() {
    state_scans_never_read(1);
}

#[test]
fn pipelined_forwarded_state_table_scans_never_read_hold_at_most_the_connection_bound() {
    state_scans_never_read(2);
}

/// 64 pipelined scans of a state table whose groups' keys take 8 MiB, not read, through a
/// shard that does not own the partition when there are two.
fn state_scans_never_read(shards: usize) {
    let broker = start(shards);
    let mut admin = broker.connect();
    let owner = create_topic(&mut admin, "visits", 1)[0] as usize;
    let created: CreateTableResponse = admin.call(&CreateTableRequest {
        name: "visits-by-key".into(),
        topic: "visits".into(),
        aggregate: AggregateSpec::default(), // a count per record key
    });
    assert_eq!(created.error, 0, "{}", created.message);
    // 512 groups whose keys are 16 KiB each: a scan of them all answers with 8 MiB.
    let mut c = broker.connect_shard(owner);
    for chunk in 0..8u32 {
        let mut b = BatchBuilder::new(2 << 20);
        for i in 0..64u32 {
            let mut key = vec![b'k'; 16 << 10];
            key[..4].copy_from_slice(&(chunk * 64 + i).to_be_bytes());
            b.append(0, Some(&key), Some(b"{}"), &[]).expect("append");
        }
        let batch = b.finish().expect("batch").to_vec();
        assert_eq!(produce(&mut c, "visits", 0, &batch, AckLevel::Durable).error, 0);
    }
    let scan = |min_offset| TableReadRequest {
        wait_ms: 10_000,
        topics: vec![TableReadTopic {
            name: "visits-by-key".into(),
            partitions: vec![TableReadPartition {
                partition: 0,
                kind: TableReadKind::Scan,
                start_key: Vec::new(),
                end_key: None,
                limit: 10_000,
                min_offset,
            }],
        }],
    };
    let mut conn = broker.connect_shard(not_owning(owner, shards));
    let applied: TableReadResponse = conn.call(&scan(512));
    let p = &applied.topics[0].partitions[0];
    assert_eq!((p.error, p.offset), (0, 512), "the table counted every record");
    still_serves(&broker);
    let base = broker.rss_bytes();
    // Before, a state table's answer took no room: all 64 were made at once (+512 MiB).
    let ids = send_unread(&broker, &mut conn, &scan(0), base, 8 * MIB, "8 MiB state scans");
    for id in ids {
        let resp: TableReadResponse = conn.wait(id).decode();
        let p = &resp.topics[0].partitions[0];
        assert_eq!(p.error, 0);
        assert!(!p.entries.is_empty(), "at least one group");
        assert_eq!(
            p.next_key.is_some(),
            p.entries.len() < 512,
            "a partial scan says where to go on"
        );
    }
    budgets_given_back(&broker, shards);
}

/// Subscribes on `conn` with endless credit and never reads again.
fn greedy_subscriber(mut conn: Conn, topic: &str) -> Conn {
    let resp: SubscribeResponse = conn.call(&SubscribeRequest {
        subscription_id: 1,
        topic: topic.into(),
        partition: 0,
        start: StartPosition::Earliest,
        credit_bytes: u64::MAX,
        filter: String::new(),
    });
    assert_eq!(resp.error, 0, "subscribe: {}", resp.message);
    conn
}

#[test]
fn a_subscriber_with_endless_credit_that_never_reads_holds_at_most_the_bound() {
    let broker = start(1);
    let mut admin = broker.connect();
    create_topic(&mut admin, "pushed", 1);
    still_serves(&broker);
    let base = broker.rss_bytes();
    let sub = greedy_subscriber(broker.connect_shard(0), "pushed");
    // Before, everything produced was queued for the subscriber (+209 MB for 200 MB).
    fill(&broker, 0, "pushed", 128);
    assert_growth(
        &broker,
        base,
        SEND_QUEUE_BYTES_MAX + 8 * MIB + SLACK_BYTES,
        "subscriber with endless credit, 128 MiB produced",
    );
    still_serves(&broker);
    drop(sub);
}

/// Subscriptions of one connection read within its queue's room, taken before each read:
/// each saw room and then read up to 1 MiB from disk together with the others (a
/// connection may hold 10,000), so 128 subscriptions with endless credit and a backlog on
/// disk, never read, queued ~128 MiB on a 4 MiB send queue.
#[test]
fn many_subscriptions_of_a_connection_that_never_reads_hold_at_most_the_bound() {
    let broker = start(1);
    let mut admin = broker.connect();
    create_topic(&mut admin, "backlog", 128);
    let batch = {
        let mut b = BatchBuilder::new(2 << 20);
        for _ in 0..16 {
            b.append(0, None, Some(&vec![3u8; 64 << 10]), &[]).expect("append");
        }
        b.finish().expect("batch").to_vec()
    };
    for p in 0..128 {
        assert_eq!(produce(&mut admin, "backlog", p, &batch, AckLevel::Written).error, 0);
    }
    still_serves(&broker);
    let base = broker.rss_bytes();
    let mut conn = broker.connect_shard(0);
    // Pipelined: the subscriptions start reading together.
    let ids: Vec<u64> = (0..128u32)
        .map(|p| {
            conn.send(&SubscribeRequest {
                subscription_id: u64::from(p) + 1,
                topic: "backlog".into(),
                partition: p,
                start: StartPosition::Earliest,
                credit_bytes: u64::MAX,
                filter: String::new(),
            })
        })
        .collect();
    drop(ids);
    assert_growth(
        &broker,
        base,
        SEND_QUEUE_BYTES_MAX + 8 * MIB + SLACK_BYTES,
        "128 subscriptions with endless credit over a 128 MiB backlog, not read",
    );
    still_serves(&broker);
    drop(conn);
}

#[test]
fn a_relayed_subscriber_that_never_reads_is_cut_off_as_slow() {
    let broker = start(2);
    let mut admin = broker.connect();
    let shards = create_topic(&mut admin, "relayed", 2);
    // Partition 0's owner is shards[0]; subscribe through the other shard's own port.
    let other = 1 - shards[0] as usize;
    let base = broker.rss_bytes();
    let sub = greedy_subscriber(broker.connect_shard(other), "relayed");
    fill(&broker, shards[0] as usize, "relayed", 96);
    assert_growth(
        &broker,
        base,
        2 * SEND_QUEUE_BYTES_MAX + 8 * MIB + SLACK_BYTES,
        "relayed subscriber with endless credit, 96 MiB produced",
    );
    // The connection was closed (its last frame may be cut short): reading it to the end
    // finishes.
    let mut raw = sub.into_stream();
    raw.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let mut bytes = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match raw.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the slow relayed subscriber's connection stayed open: {e}"),
        }
    }
    eprintln!("the slow relayed subscriber got {} MiB before it was cut off", bytes / MIB);
    still_serves(&broker);
}

#[test]
fn many_connections_together_stay_within_the_shard_budget() {
    // Each connection may hold 16 MiB, the shard 24 MiB over all of them.
    let broker = start_with(
        1,
        &[
            ("BROKER_CONNECTION_SEND_QUEUE_BYTES_MAX", "16777216"),
            ("BROKER_MEMORY_BYTES_PER_SHARD", "25165824"),
        ],
    );
    let mut admin = broker.connect();
    create_topic(&mut admin, "shared", 1);
    fill(&broker, 0, "shared", 32);
    still_serves(&broker);
    let base = broker.rss_bytes();
    // Six clients, each within its own bound, would hold ~6 x 32 MiB without the shard's.
    let hostile: Vec<TcpStream> = (0..6).map(|_| pipeline_fetches(&broker, "shared", 24)).collect();
    assert_growth(&broker, base, 24 * MIB + 16 * MIB + SLACK_BYTES, "6 connections x 24 fetches");
    // Requests that reserve nothing are never kept waiting by the full budget.
    still_serves(&broker);
    let mut c = broker.connect();
    let batch = {
        let mut b = BatchBuilder::new(1 << 16);
        b.append(0, None, Some(b"still here"), &[]).expect("append");
        b.finish().expect("batch").to_vec()
    };
    assert_eq!(produce(&mut c, "shared", 0, &batch, AckLevel::Durable).error, 0);
    drop(hostile);
}

#[test]
fn a_client_that_stops_reading_is_cut_off_after_the_write_stall() {
    let broker = start_with(1, &[("BROKER_CONNECTION_WRITE_STALL_MS", "1000")]);
    let mut admin = broker.connect();
    create_topic(&mut admin, "stalled", 1);
    fill(&broker, 0, "stalled", 16);
    // The filling connection's close may still be on its way.
    let until = Instant::now() + Duration::from_secs(10);
    while connections(&mut admin) > 1 {
        assert!(Instant::now() < until, "connections did not settle");
        std::thread::sleep(Duration::from_millis(50));
    }
    let hostile = pipeline_fetches(&broker, "stalled", 8);
    let until = Instant::now() + Duration::from_secs(15);
    // Its frames stop reaching the socket once the kernel's buffers are full; a second
    // later it is closed (before, it stayed, holding its queue, as long as it liked).
    while connections(&mut admin) > 1 {
        assert!(Instant::now() < until, "a client that reads nothing kept its connection");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(hostile);
}

/// A subscriber that never reads, then pipelines more requests than it has in-flight slots:
/// their answers queue behind the pushes stuck on the socket, holding their slots, and the
/// reader waits for one. When the writer gives up after `connection_write_stall_ms`, the
/// reader must see it (before: it waited forever for a slot that the queued answers held,
/// and the connection, its subscription and what it held never went).
#[test]
fn a_subscriber_that_never_reads_with_every_slot_taken_is_cut_off_after_the_write_stall() {
    let env =
        [("BROKER_CONNECTION_WRITE_STALL_MS", "3000"), ("BROKER_INFLIGHT_PER_CONNECTION_MAX", "2")];
    let broker = start_with(1, &env);
    let mut admin = broker.connect();
    create_topic(&mut admin, "stuck", 1);
    let mut hostile = greedy_subscriber(broker.connect_shard(0), "stuck");
    fill(&broker, 0, "stuck", 16);
    for _ in 0..3 {
        hostile.send(&MetadataRequest { topics: Vec::new() });
    }
    let until = Instant::now() + Duration::from_secs(20);
    while connections(&mut admin) > 1 {
        assert!(Instant::now() < until, "the stuck subscriber kept its connection");
        std::thread::sleep(Duration::from_millis(100));
    }
    budget_given_back(&broker, 0);
    still_serves(&broker);
    drop(hostile);
}

/// Connections the broker has open, over its shards.
fn connections(admin: &mut Conn) -> u64 {
    let stats: StatsResponse = admin.call(&StatsRequest {
        shards: Vec::new(),
        group_lag: false,
        latency: false,
        reset_latency: false,
    });
    stats.shards.iter().map(|s| s.connections).sum()
}

/// Subscribes `conn` to partition 0 of `topic` as `id`; the response's error code.
fn subscribe(conn: &mut Conn, topic: &str, id: u64) -> (u16, String) {
    let resp: SubscribeResponse = conn.call(&SubscribeRequest {
        subscription_id: id,
        topic: topic.into(),
        partition: 0,
        start: StartPosition::Latest,
        credit_bytes: 1 << 20,
        filter: String::new(),
    });
    (resp.error, resp.message)
}

#[test]
fn subscriptions_past_the_connection_and_shard_limits_are_refused() {
    let broker = start_with(
        1,
        &[
            ("BROKER_SUBSCRIPTIONS_PER_CONNECTION_MAX", "3"),
            ("BROKER_SUBSCRIPTIONS_PER_SHARD_MAX", "4"),
        ],
    );
    let mut a = broker.connect();
    create_topic(&mut a, "subs", 1);
    let limit = ErrorCode::ResourceLimit.as_u16();
    for id in 1..=3 {
        assert_eq!(subscribe(&mut a, "subs", id).0, 0, "subscription {id}");
    }
    let (code, message) = subscribe(&mut a, "subs", 4);
    assert_eq!(code, limit, "{message}");
    assert!(message.contains("subscriptions_per_connection_max"), "{message}");
    // One closed makes room on the connection.
    let closed: UnsubscribeResponse = a.call(&UnsubscribeRequest { subscription_id: 2 });
    assert_eq!(closed.error, 0);
    assert_eq!(subscribe(&mut a, "subs", 4).0, 0);
    // Another connection: the shard serves 4 at most.
    let mut b = broker.connect();
    assert_eq!(subscribe(&mut b, "subs", 1).0, 0);
    let (code, message) = subscribe(&mut b, "subs", 2);
    assert_eq!(code, limit, "{message}");
    assert!(message.contains("subscriptions_per_shard_max"), "{message}");
    // A closed connection gives its subscriptions back.
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(10);
    while subscribe(&mut b, "subs", 2).0 != 0 {
        assert!(Instant::now() < deadline, "the closed connection's subscriptions stayed");
        std::thread::sleep(Duration::from_millis(20));
    }
    still_serves(&broker);
}

/// A produce request of 48 small compressed batches that each decompress to 15 MiB: the
/// broker opens (validates) them one at a time and keeps none. Before, every opened batch
/// was kept until the request was claimed: 720 MiB held for a request of ~100 KiB, none of
/// it charged to a budget.
#[test]
fn a_request_of_compressed_batches_holds_one_opened_at_a_time() {
    let broker = start(1);
    create_topic(&mut broker.connect(), "bombs", 1);
    let one = integration_tests::zeros_batch_compressed(15 << 20);
    assert!(one.len() < 64 << 10, "compressed to {} bytes", one.len());
    let request: Vec<u8> = (0..48).flat_map(|_| one.iter().copied()).collect();
    let before = broker.status_bytes("VmHWM");
    let mut conn = broker.connect();
    let r = produce(&mut conn, "bombs", 0, &request, AckLevel::Durable);
    assert_eq!(r.error, 0, "{:?}", ErrorCode::from_u16(r.error));
    assert_eq!(r.base_offset, 0);
    let grown = broker.status_bytes("VmHWM").saturating_sub(before);
    eprintln!("peak resident memory grew by {} MiB", grown / MIB);
    assert!(grown < 4 * 15 * MIB + SLACK_BYTES, "peak resident memory grew by {grown} bytes");
    still_serves(&broker);
}

/// 64 subscriptions of one connection, each with 1 byte of credit, over 4 MiB batches read
/// from disk, never read: each push's first batch is read only once room for it whole is
/// held in the connection's queue, so the connection holds at most its bound (before, each
/// reserved its 1 byte and read its whole 4 MiB batch: +256 MiB at once). Then every push
/// arrives, whole.
#[test]
fn subscriptions_of_1_byte_credit_over_large_batches_hold_at_most_the_connection_bound() {
    let broker = start(1);
    let mut admin = broker.connect();
    create_topic(&mut admin, "big-batches", 1);
    let batch = fill_big_batches(&broker, 0, "big-batches");
    let base = broker.rss_bytes();
    let mut conn = broker.connect();
    let ids: Vec<u64> = (0..64u64)
        .map(|id| {
            conn.send(&SubscribeRequest {
                subscription_id: id,
                topic: "big-batches".into(),
                partition: 0,
                start: StartPosition::Earliest,
                credit_bytes: 1,
                filter: String::new(),
            })
        })
        .collect();
    let allowed = SEND_QUEUE_BYTES_MAX + 4 * MIB + SLACK_BYTES;
    assert_growth(&broker, base, allowed, "64 unread 1-byte-credit subscriptions of 4 MiB batches");
    still_serves(&broker);
    for id in ids {
        let r: SubscribeResponse = conn.wait(id).decode();
        assert_eq!(r.error, 0, "{}", r.message);
    }
    for _ in 0..64 {
        let push: SubscriptionData = conn.next_push().decode();
        assert_eq!(push.batches.len(), batch.len(), "a whole first batch");
    }
}
