//! Shard-to-shard traffic: a key-conditional append forwarded while its partition's key
//! index is not built starts the build in the background and is answered LOADING
//! (retriable) at once, so the peer's later requests, handled in order, do not wait behind
//! a scan of the whole log; nor do the answers to the building shard's own forwards, nor
//! its other work.

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

/// Shard A owns partition P, whose key index a conditional append forwarded by shard B
/// needs: it is answered LOADING at once and P's index is built in the background; a
/// produce from B's client to A's partition R right after it is answered meanwhile
/// (before, B's requests waited in A's inbox from B behind the build: the conditional
/// append waited for it there), as are a produce from A's client to B's partition Q and
/// one to R. Retried once the index is built, the conditional append is checked and made.
#[test]
fn a_forwarded_conditional_append_does_not_hold_the_peers_requests_behind_a_build() {
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
    // A conditional append to P from a client of shard B, forwarded to A.
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
    let code = |answer: &wire::ProduceResponse| {
        wire::ErrorCode::from_u16(answer.topics[0].partitions[0].error)
    };
    let sent = Instant::now();
    let r = produce(&mut c1, "inbox", r_local, &keyed_batch(0, 1), AckLevel::Written);
    eprintln!("baseline B→R {} ms", sent.elapsed().as_millis());
    assert_eq!(r.error, 0);
    let started = Instant::now();
    let first: wire::ProduceResponse = c1.call(&conditional);
    assert_eq!(code(&first), Some(wire::ErrorCode::Loading), "answered at once, retriable");
    // Right after it, from the same shard B: a produce to R (on A) is answered meanwhile.
    let sent = Instant::now();
    let r = produce(&mut c1, "inbox", r_local, &keyed_batch(0, 1), AckLevel::Written);
    let peer_ms = sent.elapsed().as_millis();
    assert_eq!(r.error, 0, "{:?}", wire::ErrorCode::from_u16(r.error));
    // A client of shard A writes to Q (on B): B answers A at once.
    let mut c2 = b.connect_shard(shard_a);
    let sent = Instant::now();
    let r = produce(&mut c2, "inbox", q, &keyed_batch(0, 1), AckLevel::Written);
    let forwarded_ms = sent.elapsed().as_millis();
    assert_eq!(r.error, 0, "{:?}", wire::ErrorCode::from_u16(r.error));
    // And A's client to R: the build gives the shard up between its reads.
    let sent = Instant::now();
    let r = produce(&mut c2, "inbox", r_local, &keyed_batch(0, 1), AckLevel::Written);
    let local_ms = sent.elapsed().as_millis();
    assert_eq!(r.error, 0, "{:?}", wire::ErrorCode::from_u16(r.error));
    // Retried (as clients retry a retriable code) until the index is built: then made.
    let deadline = Instant::now() + Duration::from_secs(60);
    let answer = loop {
        let answer: wire::ProduceResponse = c1.call(&conditional);
        if code(&answer) != Some(wire::ErrorCode::Loading) {
            break answer;
        }
        assert!(Instant::now() < deadline, "the key index was never built");
        std::thread::sleep(Duration::from_millis(20));
    };
    let build_ms = started.elapsed().as_millis();
    eprintln!("build {build_ms} ms; produces B→R {peer_ms}, A→Q {forwarded_ms}, A→R {local_ms} ms");
    assert_eq!(code(&answer), Some(wire::ErrorCode::None), "the key's last record");
    assert!(
        build_ms >= 400,
        "the build took {build_ms} ms: too short for this test to say anything"
    );
    for (what, ms) in
        [("from B to R", peer_ms), ("from A to Q", forwarded_ms), ("from A to R", local_ms)]
    {
        assert!(
            ms * 4 < build_ms,
            "the produce {what} took {ms} ms while P's index was built ({build_ms} ms)"
        );
    }
}
