//! Idempotent producers against the real broker: a batch sent again is stored once and
//! answered with its first offsets, also after kill -9; gaps and old epochs are refused.
//! What the log keeps of a produce request: its frame only when nearly all of it is stored.

use integration_tests::{create_topic, fetch_all, produce, Broker, Conn};
use wire::constants::BATCH_CRC_START;
use wire::{
    AckLevel, BatchBuilder, ErrorCode, InitProducerIdRequest, InitProducerIdResponse,
    ProducePartition, ProduceRequest, ProduceResponse, ProduceTopic,
};

const TOPIC: &str = "orders";

/// A batch of `n` records from producer `id` at `epoch` starting at `sequence`.
fn batch(id: i64, epoch: i16, sequence: i32, n: u32) -> Vec<u8> {
    let mut b = BatchBuilder::new(1 << 20);
    for i in 0..n {
        let v = format!("{id}-{epoch}-{}", sequence as u32 + i);
        b.append(1, Some(b"k"), Some(v.as_bytes()), &[]).unwrap();
    }
    b.set_producer(id, epoch, sequence);
    b.finish().unwrap().to_vec()
}

/// A batch of `n` records of no producer, their values tagged with `tag`.
fn plain(tag: u32, n: u32) -> Vec<u8> {
    let mut b = BatchBuilder::new(1 << 20);
    for i in 0..n {
        b.append(1, Some(b"k"), Some(format!("{tag}-{i}").as_bytes()), &[]).unwrap();
    }
    b.finish().unwrap().to_vec()
}

/// One durable request of `(partition, batches)` entries: each entry's error, first and last
/// offset.
fn produce_parts(conn: &mut Conn, entries: &[(u32, Vec<u8>)]) -> Vec<(u16, i64, i64)> {
    let resp: ProduceResponse = conn.call(&ProduceRequest {
        ack: AckLevel::Durable,
        timeout_ms: 10_000,
        topics: vec![ProduceTopic {
            name: TOPIC.into(),
            partitions: entries
                .iter()
                .map(|(partition, batches)| ProducePartition {
                    partition: *partition,
                    batches: batches.clone(),
                    expect: Default::default(),
                })
                .collect(),
        }],
    });
    resp.topics[0].partitions.iter().map(|p| (p.error, p.base_offset, p.last_offset)).collect()
}

fn producer_id(conn: &mut Conn) -> i64 {
    let r: InitProducerIdResponse = conn.call(&InitProducerIdRequest::default());
    assert_eq!(r.error, 0, "{}", r.message);
    r.producer_id
}

fn code(e: u16) -> Option<ErrorCode> {
    ErrorCode::from_u16(e)
}

#[test]
fn retried_batches_are_stored_once_also_after_kill_9_and_gaps_are_refused() {
    let mut broker = Broker::start_fixed_ports(2);
    let mut conn = broker.connect();
    create_topic(&mut conn, TOPIC, 2);
    let a = producer_id(&mut conn);
    let b = producer_id(&mut conn);
    assert_ne!(a, b, "ids are unique");

    let first = produce(&mut conn, TOPIC, 0, &batch(a, 0, 0, 3), AckLevel::Durable);
    assert_eq!((first.error, first.base_offset, first.last_offset), (0, 0, 2));
    let second = produce(&mut conn, TOPIC, 0, &batch(a, 0, 3, 2), AckLevel::Durable);
    assert_eq!((second.base_offset, second.last_offset), (3, 4));
    // The answer to the first was "lost": the retry gets the original offsets, nothing new
    // is stored.
    let retry = produce(&mut conn, TOPIC, 0, &batch(a, 0, 0, 3), AckLevel::Durable);
    assert_eq!((retry.error, retry.base_offset, retry.last_offset), (0, 0, 2));
    // A gap (sequence 6 while 5 is next) and a batch older than what is remembered.
    let gap = produce(&mut conn, TOPIC, 0, &batch(a, 0, 6, 1), AckLevel::Durable);
    assert_eq!(code(gap.error), Some(ErrorCode::OutOfOrderSequence));
    assert!(ErrorCode::OutOfOrderSequence.is_retriable());
    // Another producer on the same partition is independent.
    let other = produce(&mut conn, TOPIC, 0, &batch(b, 0, 0, 1), AckLevel::Durable);
    assert_eq!(other.base_offset, 5);

    // kill -9: the state is rebuilt from the log, so the retry is still recognized.
    broker.kill();
    broker.restart();
    let mut conn = broker.connect();
    let retry = produce(&mut conn, TOPIC, 0, &batch(a, 0, 3, 2), AckLevel::Durable);
    assert_eq!((retry.error, retry.base_offset, retry.last_offset), (0, 3, 4));
    let next = produce(&mut conn, TOPIC, 0, &batch(a, 0, 5, 1), AckLevel::Durable);
    assert_eq!((next.error, next.base_offset), (0, 6));
    // A new epoch starts at 0; the old one is then fenced.
    let bumped = produce(&mut conn, TOPIC, 0, &batch(a, 1, 0, 1), AckLevel::Durable);
    assert_eq!(bumped.error, 0);
    let zombie = produce(&mut conn, TOPIC, 0, &batch(a, 0, 6, 1), AckLevel::Durable);
    assert_eq!(code(zombie.error), Some(ErrorCode::ProducerFenced));
    let stored = fetch_all(&mut conn, TOPIC, 0, 8);
    assert_eq!(stored.len(), 5, "3 + 2 + 1 (other) + 1 + 1 batches, no duplicates");
    // Producer ids keep growing across restarts (never handed out twice).
    assert!(producer_id(&mut conn) > b);

    // A clean stop leaves a snapshot; the state comes back from it (and the log after it).
    drop(conn);
    assert_eq!(broker.stop(), Some(0));
    assert!(broker.partition_dir(TOPIC, 0).join("producers.json").exists());
    broker.restart();
    let mut conn = broker.connect();
    let retry = produce(&mut conn, TOPIC, 0, &batch(a, 1, 0, 1), AckLevel::Durable);
    assert_eq!(
        (retry.error, retry.base_offset),
        (0, bumped.base_offset),
        "a retry after a clean restart"
    );
    let next = produce(&mut conn, TOPIC, 0, &batch(a, 1, 1, 1), AckLevel::Durable);
    assert_eq!(next.error, 0);
    // Appends after the snapshot, then kill -9: snapshot + the log after it.
    broker.kill();
    broker.restart();
    let mut conn = broker.connect();
    let retry = produce(&mut conn, TOPIC, 0, &batch(a, 1, 1, 1), AckLevel::Durable);
    assert_eq!(
        (retry.error, retry.base_offset),
        (0, next.base_offset),
        "a retry after snapshot + crash"
    );
    assert!(broker.log_text().contains("idempotent producer state rebuilt"));
}

fn transactional(conn: &mut Conn, name: &str) -> (i64, i16) {
    let r: InitProducerIdResponse =
        conn.call(&InitProducerIdRequest { transactional_id: name.into() });
    assert_eq!(r.error, 0, "{}", r.message);
    (r.producer_id, r.producer_epoch)
}

#[test]
fn a_new_incarnation_of_a_transactional_id_fences_the_old_one_everywhere_and_across_restarts() {
    let mut broker = Broker::start_fixed_ports(2);
    let mut conn = broker.connect();
    create_topic(&mut conn, TOPIC, 2);
    let (id, epoch) = transactional(&mut conn, "billing-writer");
    assert_eq!(epoch, 0);
    for p in 0..2 {
        let r = produce(&mut conn, TOPIC, p, &batch(id, 0, 0, 2), AckLevel::Durable);
        assert_eq!(r.error, 0);
    }
    // The instance restarts: same id, next epoch.
    let (again, epoch) = transactional(&mut conn, "billing-writer");
    assert_eq!((again, epoch), (id, 1));
    // The zombie is refused on a partition the new incarnation has not written to yet.
    let zombie = produce(&mut conn, TOPIC, 1, &batch(id, 0, 2, 1), AckLevel::Durable);
    assert_eq!(code(zombie.error), Some(ErrorCode::ProducerFenced));
    let fresh = produce(&mut conn, TOPIC, 0, &batch(id, 1, 0, 1), AckLevel::Durable);
    assert_eq!(fresh.error, 0);
    // Other names and bad names.
    let (other, _) = transactional(&mut conn, "audit-writer");
    assert_ne!(other, id);
    let bad: InitProducerIdResponse =
        conn.call(&InitProducerIdRequest { transactional_id: "a bell \u{7}".into() });
    assert_eq!(code(bad.error), Some(ErrorCode::InvalidRequest));
    // The fence is durable.
    broker.kill();
    broker.restart();
    let mut conn = broker.connect();
    let zombie = produce(&mut conn, TOPIC, 1, &batch(id, 0, 2, 1), AckLevel::Durable);
    assert_eq!(code(zombie.error), Some(ErrorCode::ProducerFenced));
    assert_eq!(transactional(&mut conn, "billing-writer"), (id, 2));
}

/// Appends `batches` to partition 0 under a condition; that partition's result.
fn produce_expecting(
    conn: &mut Conn,
    batches: &[u8],
    expect: wire::ExpectedPosition,
) -> wire::ProducePartitionResult {
    let resp: wire::ProduceResponse = conn.call(&wire::ProduceRequest {
        ack: AckLevel::Durable,
        timeout_ms: 10_000,
        topics: vec![wire::ProduceTopic {
            name: TOPIC.into(),
            partitions: vec![wire::ProducePartition {
                partition: 0,
                batches: batches.to_vec(),
                expect,
            }],
        }],
    });
    resp.topics[0].partitions[0].clone()
}

/// The `name=value` field of the last log line containing `message`.
fn logged_field(log: &str, message: &str, name: &str) -> Option<u64> {
    let line = log.lines().rev().find(|l| l.contains(message))?;
    let at = line.find(&format!("{name}="))? + name.len() + 1;
    line[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

#[test]
fn periodic_state_snapshots_bound_what_recovery_reads_after_kill_9() {
    let mut broker = Broker::start_with_env(1, &[("BROKER_STATE_SNAPSHOT_INTERVAL_MS", "100")]);
    let mut conn = broker.connect();
    create_topic(&mut conn, TOPIC, 1);
    let a = producer_id(&mut conn);
    // 300 one-record batches, then a key condition builds the key index.
    for s in 0..300 {
        let r = produce(&mut conn, TOPIC, 0, &batch(a, 0, s, 1), AckLevel::Durable);
        assert_eq!((r.error, r.base_offset), (0, s as i64));
    }
    let r = produce_expecting(
        &mut conn,
        &batch(a, 0, 300, 1),
        wire::ExpectedPosition::KeyLastOffset(299),
    );
    assert_eq!((r.error, r.base_offset), (0, 300));
    // The shard snapshots the changed state within its interval.
    let dir = broker.partition_dir(TOPIC, 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !(dir.join("producers.json").exists() && dir.join("keys.snapshot").exists()) {
        assert!(std::time::Instant::now() < deadline, "no snapshot within 10 s");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    // Two more batches after the snapshot, then kill -9.
    for s in 301..303 {
        let r = produce(&mut conn, TOPIC, 0, &batch(a, 0, s, 1), AckLevel::Durable);
        assert_eq!((r.error, r.base_offset), (0, s as i64));
    }
    drop(conn);
    broker.kill();
    broker.restart();
    let mut conn = broker.connect();
    // Retries before and after the snapshot are both recognized.
    let retry = produce(&mut conn, TOPIC, 0, &batch(a, 0, 299, 1), AckLevel::Durable);
    assert_eq!((retry.error, retry.base_offset), (0, 299));
    let retry = produce(&mut conn, TOPIC, 0, &batch(a, 0, 302, 1), AckLevel::Durable);
    assert_eq!((retry.error, retry.base_offset), (0, 302));
    // The key index comes back from its snapshot plus the tail.
    let stale = produce_expecting(
        &mut conn,
        &batch(a, 0, 303, 1),
        wire::ExpectedPosition::KeyLastOffset(300),
    );
    assert_eq!((code(stale.error), stale.current_offset), (Some(ErrorCode::ConditionFailed), 302));
    let ok = produce_expecting(
        &mut conn,
        &batch(a, 0, 303, 1),
        wire::ExpectedPosition::KeyLastOffset(302),
    );
    assert_eq!((ok.error, ok.base_offset), (0, 303));
    // Recovery read only what followed the snapshots. A periodic snapshot may also land
    // between the last two batches and the kill (the interval is 100 ms): then it covers
    // more and the scan is shorter, but snapshot + scan always add up to the log's end.
    let log = broker.log_text();
    let covered = logged_field(&log, "producer state read from the log", "snapshot_offset");
    let scanned = logged_field(&log, "producer state read from the log", "scanned_offsets");
    match covered.zip(scanned) {
        Some((c, s)) => assert!((301..=302).contains(&c) && c + s == 303, "{log}"),
        // A snapshot covered all 303: nothing was read (and nothing logged).
        None => assert!(!log.contains("producer state read from the log"), "{log}"),
    }
    let covered = logged_field(&log, "key index built", "snapshot_offset");
    let scanned = logged_field(&log, "key index built", "scanned_offsets");
    assert!(matches!(covered, Some(301..=303)), "{log}");
    assert_eq!(covered.zip(scanned).map(|(c, s)| c + s), Some(303), "{log}");
}

/// `broker_producer_states` from the broker's metrics endpoint (shard 0).
fn producer_states(broker: &Broker) -> u64 {
    broker.metric("broker_producer_states", 0).expect("broker_producer_states") as u64
}

/// One request carrying a batch from each of `ids` (producer ids the client made up).
fn flood(conn: &mut Conn, partition: u32, ids: std::ops::Range<i64>) {
    let batches: Vec<u8> = ids.clone().flat_map(|id| batch(id, 0, 0, 1)).collect();
    let r = produce(conn, TOPIC, partition, &batches, AckLevel::Durable);
    assert_eq!((r.error, r.last_offset - r.base_offset + 1), (0, ids.count() as i64));
}

/// Producer ids are the client's to choose: a client inventing thousands cannot make a shard
/// remember more than `producer_states_per_shard_max` of them (plus one per partition). A
/// flood on one partition evicts that partition's least recently appended producers, not
/// another partition's; a producer evicted is unknown again (its retry is stored twice: the
/// documented price); after kill -9 the rebuilt state is cut to the limit too.
#[test]
fn made_up_producer_ids_stay_within_the_shards_limit() {
    let mut broker = Broker::start_with_env(
        1,
        &[
            ("BROKER_PRODUCER_STATES_PER_SHARD_MAX", "100"),
            ("BROKER_METRICS_LISTEN", "127.0.0.1:0"),
        ],
    );
    let mut conn = broker.connect();
    create_topic(&mut conn, TOPIC, 2);
    let a = producer_id(&mut conn);
    let first = produce(&mut conn, TOPIC, 0, &batch(a, 0, 0, 2), AckLevel::Durable);
    assert_eq!((first.error, first.base_offset), (0, 0));

    flood(&mut conn, 1, 5_000_000..5_005_000);
    let held = producer_states(&broker);
    assert!((2..=102).contains(&held), "5,000 made-up producers on a limit of 100: {held}");
    // Partition 0's producer was not evicted by partition 1's flood.
    let retry = produce(&mut conn, TOPIC, 0, &batch(a, 0, 0, 2), AckLevel::Durable);
    assert_eq!((retry.error, retry.base_offset, retry.last_offset), (0, 0, 1));

    // A flood on its own partition evicts it: its retry is stored again.
    flood(&mut conn, 0, 6_000_000..6_005_000);
    assert!(producer_states(&broker) <= 102, "{}", producer_states(&broker));
    let again = produce(&mut conn, TOPIC, 0, &batch(a, 0, 0, 2), AckLevel::Durable);
    assert_eq!(again.error, 0);
    assert!(again.base_offset > 1, "evicted: stored again at {}", again.base_offset);

    // Rebuilt from the log after kill -9: 10,000 producers appended within the idle time,
    // the limit kept.
    broker.kill();
    broker.restart();
    let mut conn = broker.connect();
    let held = producer_states(&broker);
    assert!((1..=100).contains(&held), "after the restart: {held}");
    // The most recent survive: the flood's last producer is still known.
    let last = produce(&mut conn, TOPIC, 0, &batch(6_004_999, 0, 0, 1), AckLevel::Durable);
    // (Offsets 0-1 a's first batch, 2..=5001 the flood: its last producer's batch is 5001.)
    assert_eq!((last.error, last.base_offset, last.last_offset), (0, 5_001, 5_001));
    let stored = fetch_all(&mut conn, TOPIC, 0, again.last_offset as u64 + 1);
    assert_eq!(stored.len(), 5_002, "1 + 5,000 + the evicted producer's retry");
    let next = produce(&mut conn, TOPIC, 0, &batch(-1, -1, -1, 1), AckLevel::Durable);
    assert_eq!(next.base_offset, again.last_offset + 1, "the duplicate took no offset");
}

/// A produce request's batches are stored as views of its frame (not copied) only when the
/// batches actually appended are nearly all of the frame: one partition's request, large or
/// small, in one entry or several; not two partitions' halves, and not a request an
/// idempotent producer's gap cut short (its refused bytes would stay in memory, uncounted).
/// Every batch reads back as produced, with its offsets, also after kill -9.
#[test]
fn batches_stay_in_their_frame_only_when_they_are_nearly_all_of_it() {
    let mut broker = Broker::start_with_env(1, &[("BROKER_METRICS_LISTEN", "127.0.0.1:0")]);
    let kept = |b: &Broker| b.metric("broker_batches_in_frame_total", 0).expect("metric") as u64;
    let mut conn = broker.connect();
    create_topic(&mut conn, TOPIC, 2);
    let before = kept(&broker);
    let mut expected: [Vec<Vec<u8>>; 2] = Default::default();
    // One partition, three batches in a ~100 KiB frame (read into a buffer of its own)...
    let big: Vec<Vec<u8>> = (0..3).map(|t| plain(t, 1000)).collect();
    let r = produce(&mut conn, TOPIC, 0, &big.concat(), AckLevel::Durable);
    assert_eq!((r.error, r.base_offset, r.last_offset), (0, 0, 2999));
    expected[0].extend(big);
    // ...and a small one (copied out of the connection's read buffer; ~1.5 KiB of a frame
    // whose other bytes are ~100): kept, all four.
    let small = plain(3, 100);
    let r = produce(&mut conn, TOPIC, 0, &small, AckLevel::Durable);
    assert_eq!((r.error, r.base_offset), (0, 3000));
    expected[0].push(small);
    assert_eq!(kept(&broker) - before, 4);

    // Two partitions' halves of one request: copied.
    let halves = [plain(4, 500), plain(5, 500)];
    let parts = produce_parts(&mut conn, &[(0, halves[0].clone()), (1, halves[1].clone())]);
    assert_eq!(parts, [(0, 3100, 3599), (0, 0, 499)]);
    let [h0, h1] = halves;
    expected[0].push(h0);
    expected[1].push(h1);
    assert_eq!(kept(&broker) - before, 4, "two partitions' halves are copied");

    // One partition nearly all of a request (kept) and a small one beside it (copied out of
    // the kept frame); then one partition twice in a request (a client may send each batch
    // as an entry of its own: together they are the frame, kept, in order). Both frames are
    // under 16 KiB, read into buffers of their size (a larger frame may be read into a
    // larger spare buffer, which is then copied: `frame_pool.rs`).
    let (most, little) = (plain(6, 200), plain(7, 10));
    assert!(most.len() + little.len() < 15 << 10);
    let parts = produce_parts(&mut conn, &[(0, most.clone()), (1, little.clone())]);
    assert_eq!(parts, [(0, 3600, 3799), (0, 500, 509)]);
    expected[0].push(most);
    expected[1].push(little);
    assert_eq!(kept(&broker) - before, 5);
    let (one, two) = (plain(8, 100), plain(9, 100));
    let parts = produce_parts(&mut conn, &[(0, one.clone()), (0, two.clone())]);
    assert_eq!(parts, [(0, 3800, 3899), (0, 3900, 3999)]);
    expected[0].extend([one, two]);
    assert_eq!(kept(&broker) - before, 7);

    // An idempotent producer's request whose second, large batch leaves a gap: the first
    // is appended, copied, and the frame goes.
    let a = producer_id(&mut conn);
    let first = batch(a, 0, 0, 10);
    let cut = [first.clone(), batch(a, 0, 50, 1000)].concat();
    let r = produce(&mut conn, TOPIC, 0, &cut, AckLevel::Durable);
    assert_eq!((r.error, r.base_offset, r.last_offset), (0, 4000, 4009));
    expected[0].push(first);
    assert_eq!(kept(&broker) - before, 7, "a frame mostly of refused bytes is not kept");

    let read_back = |conn: &mut Conn| {
        for (p, want) in expected.iter().enumerate() {
            let stored = fetch_all(conn, TOPIC, p as u32, if p == 0 { 4010 } else { 510 });
            assert_eq!(stored.len(), want.len(), "partition {p}");
            for (s, w) in stored.iter().zip(want) {
                // The broker assigned the offsets and append time (before the CRC's range).
                assert_eq!(s[BATCH_CRC_START..], w[BATCH_CRC_START..], "partition {p}");
                assert_eq!(s[..8], w[..8], "length and CRC as produced");
            }
        }
    };
    read_back(&mut conn);
    broker.kill();
    broker.restart();
    let mut conn = broker.connect();
    read_back(&mut conn);
}

/// A retry whose first batches were stored and the rest not (the parts of a client batch
/// split in several, some kept by a crash) is answered from the first stored batch's offset:
/// a Kafka client numbers every record of its batch from the answer's base offset (it was
/// the first new part's, so every record's offset came out wrong).
#[test]
fn a_retry_of_stored_and_new_batches_is_answered_from_the_first() {
    let b = Broker::start(1);
    let mut conn = b.connect();
    create_topic(&mut conn, TOPIC, 1);
    let id = producer_id(&mut conn);
    let first = batch(id, 0, 0, 5);
    assert_eq!(produce_parts(&mut conn, &[(0, first.clone())]), [(0, 0, 4)]);
    // Someone else's records, then the whole of it again: the first part and a new one.
    assert_eq!(produce_parts(&mut conn, &[(0, plain(1, 3))]), [(0, 5, 7)]);
    let mut again = first;
    again.extend_from_slice(&batch(id, 0, 5, 5));
    assert_eq!(produce_parts(&mut conn, &[(0, again)]), [(0, 0, 12)]);
}
