//! Idempotent producers against the real broker: a batch sent again is stored once and
//! answered with its first offsets, also after kill -9; gaps and old epochs are refused.

use integration_tests::{create_topic, fetch_all, produce, Broker, Conn};
use wire::{AckLevel, BatchBuilder, ErrorCode, InitProducerIdRequest, InitProducerIdResponse};

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
        conn.call(&InitProducerIdRequest { transactional_id: "no spaces".into() });
    assert_eq!(code(bad.error), Some(ErrorCode::InvalidRequest));
    // The fence is durable.
    broker.kill();
    broker.restart();
    let mut conn = broker.connect();
    let zombie = produce(&mut conn, TOPIC, 1, &batch(id, 0, 2, 1), AckLevel::Durable);
    assert_eq!(code(zombie.error), Some(ErrorCode::ProducerFenced));
    assert_eq!(transactional(&mut conn, "billing-writer"), (id, 2));
}
