//! Shard-to-shard traffic: a forwarded request that waits in its first stage (here a
//! partition's key index being built for its first key-conditional append) delays the
//! peer's later requests, as their order demands, but not the answers to the waiting
//! shard's own forwards, nor the shard's other work.

use std::time::{Duration, Instant};

use integration_tests::{create_topic, produce, Broker};
use wire::{AckLevel, ExpectedPosition};

/// One batch of `records` records of 1,000 keys cycling, ~40 bytes each.
fn keyed_batch(from: usize, records: usize) -> Vec<u8> {
    let mut b = wire::BatchBuilder::new(wire::constants::BATCH_BYTES_MAX as usize);
    for i in from..from + records {
        let key = format!("key-{}", i % 1000);
        b.append(0, Some(key.as_bytes()), Some(b"0123456789abcdef"), &[]).expect("append");
    }
    b.finish().expect("batch").to_vec()
}

/// Shard A (owning partition P) builds P's key index for a conditional append forwarded by
/// shard B: a produce from A's client to B's partition Q is answered meanwhile (before, B's
/// answer waited in A's inbox from B behind the build, as long as the build).
#[test]
fn answers_to_forwards_do_not_wait_behind_a_peer_request_waiting_to_start() {
    let b = Broker::start(2);
    let mut admin = b.connect();
    let owners = create_topic(&mut admin, "inbox", 4);
    let (p, shard_a) = (0u32, owners[0] as usize);
    let on = |shard: usize, not: u32| {
        (0..4u32).find(|&i| i != not && owners[i as usize] as usize == shard).expect("spread")
    };
    let shard_b = 1 - shard_a;
    // Q on the other shard, R beside P.
    let (q, r_local) = (on(shard_b, p), on(shard_a, p));
    // P: enough records that building its key index takes a while.
    let mut direct = b.connect_shard(shard_a);
    let (records, per_batch) = (1_500_000usize, 15_000usize);
    for from in (0..records).step_by(per_batch) {
        let r = produce(&mut direct, "inbox", p, &keyed_batch(from, per_batch), AckLevel::Written);
        assert_eq!(r.error, 0, "{:?}", wire::ErrorCode::from_u16(r.error));
    }
    // A conditional append to P from a client of shard B: forwarded to A, whose inbox from B
    // builds P's key index before it can enqueue it.
    let mut c1 = b.connect_shard(shard_b);
    let conditional = wire::ProduceRequest {
        ack: AckLevel::Written,
        timeout_ms: 60_000,
        topics: vec![wire::ProduceTopic {
            name: "inbox".into(),
            partitions: vec![wire::ProducePartition {
                partition: p,
                batches: keyed_batch(records, 1),
                expect: ExpectedPosition::KeyLastOffset((records - 1000) as u64),
            }],
        }],
    };
    let started = Instant::now();
    let id = c1.send(&conditional);
    std::thread::sleep(Duration::from_millis(50));
    // Meanwhile a client of shard A writes to Q (on B): B answers A at once.
    let mut c2 = b.connect_shard(shard_a);
    let sent = Instant::now();
    let r = produce(&mut c2, "inbox", q, &keyed_batch(0, 1), AckLevel::Written);
    let forwarded_ms = sent.elapsed().as_millis();
    assert_eq!(r.error, 0, "{:?}", wire::ErrorCode::from_u16(r.error));
    // And a write of A's client to A's partition R: the build gives the shard up between
    // its reads (a read from the cache does not wait).
    let sent = Instant::now();
    let r = produce(&mut c2, "inbox", r_local, &keyed_batch(0, 1), AckLevel::Written);
    let local_ms = sent.elapsed().as_millis();
    assert_eq!(r.error, 0, "{:?}", wire::ErrorCode::from_u16(r.error));
    let answer: wire::ProduceResponse = c1.wait(id).decode();
    let conditional_ms = started.elapsed().as_millis();
    let r = &answer.topics[0].partitions[0];
    assert_eq!(r.error, 0, "the key's last record: {:?}", wire::ErrorCode::from_u16(r.error));
    assert!(
        conditional_ms >= 400,
        "the build took {conditional_ms} ms: too short for this test to say anything"
    );
    assert!(
        forwarded_ms * 4 < conditional_ms,
        "the produce to Q took {forwarded_ms} ms while P's index was built ({conditional_ms} ms)"
    );
    assert!(
        local_ms * 4 < conditional_ms,
        "the produce to R took {local_ms} ms while P's index was built ({conditional_ms} ms)"
    );
}
