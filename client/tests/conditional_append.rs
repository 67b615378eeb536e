//! Conditional appends against the real broker: optimistic concurrency per partition and per
//! key (an event-sourced aggregate), with 8 writers racing.

use std::sync::Arc;

use client::{Client, ClientError};
use integration_tests::Broker;
use tokio::sync::Barrier;
use wire::{AckLevel, BatchBuilder, ExpectedPosition, TopicConfig};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn event(key: &str, value: &str) -> Vec<u8> {
    let mut b = BatchBuilder::new(1 << 16);
    b.append(1, Some(key.as_bytes()), Some(value.as_bytes()), &[]).unwrap();
    b.finish().unwrap().to_vec()
}

#[test]
fn eight_writers_race_on_one_key_and_exactly_one_wins_each_round() {
    let broker = Broker::start(2);
    let addr = broker.public.to_string();
    rt().block_on(async move {
        let admin = Client::connect(&addr).await.unwrap();
        let config = TopicConfig { partition_count: 2, ..Default::default() };
        admin.create_topic("accounts", config).await.unwrap();
        // Noise from other keys interleaves in the same partition.
        admin.produce_batches("accounts", 0, &event("other", "x"), AckLevel::Durable).await.unwrap();
        const WRITERS: usize = 8;
        const ROUNDS: usize = 20;
        let barrier = Arc::new(Barrier::new(WRITERS));
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let (addr, barrier) = (addr.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                let client = Client::connect(&addr).await.unwrap();
                let mut expected = ExpectedPosition::KeyNeverWritten;
                let mut wins = 0;
                for round in 0..ROUNDS {
                    barrier.wait().await;
                    let e = event("acct-1", &format!("w{w}-r{round}"));
                    match client.produce_expecting("accounts", 0, &e, AckLevel::Durable, expected).await {
                        Ok(r) => {
                            wins += 1;
                            expected = ExpectedPosition::KeyLastOffset(r.last_offset as u64);
                        }
                        Err(ClientError::ConditionFailed { current_offset, .. }) => {
                            assert!(current_offset >= 0, "the conflict names the key's last offset");
                            expected = ExpectedPosition::KeyLastOffset(current_offset as u64);
                        }
                        Err(e) => panic!("writer {w}: {e}"),
                    }
                    // Everyone has answered before the next round starts.
                    barrier.wait().await;
                    // A stranger's event to another key moves the partition but not this key.
                    if w == 0 {
                        let noise = event("other", "y");
                        client.produce_batches("accounts", 0, &noise, AckLevel::Durable).await.unwrap();
                    }
                    barrier.wait().await;
                }
                wins
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        assert_eq!(total, ROUNDS, "exactly one writer wins each round");

        // The partition's end as the condition.
        let end = admin.list_offsets("accounts", wire::OffsetSpec::Latest).await.unwrap()[0].1;
        let stale = admin
            .produce_expecting("accounts", 0, &event("k", "v"), AckLevel::Durable, ExpectedPosition::NextOffset(end - 1))
            .await
            .unwrap_err();
        assert!(
            matches!(stale, ClientError::ConditionFailed { current_offset, .. } if current_offset == end as i64),
            "{stale}"
        );
        let ok = admin
            .produce_expecting("accounts", 0, &event("k", "v"), AckLevel::Durable, ExpectedPosition::NextOffset(end))
            .await
            .unwrap();
        assert_eq!(ok.base_offset, end as i64);
        // Records with different keys cannot be key-conditional.
        let mut two = BatchBuilder::new(1 << 16);
        two.append(1, Some(b"a"), Some(b"1"), &[]).unwrap();
        two.append(1, Some(b"b"), Some(b"2"), &[]).unwrap();
        let err = admin
            .produce_expecting("accounts", 0, &two.finish().unwrap(), AckLevel::Durable, ExpectedPosition::KeyNeverWritten)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("INVALID_REQUEST"), "{err}");
    });
}

#[test]
fn the_key_index_is_bounded_by_the_table_memory_budget() {
    // 16 KiB for the shard's tables and key indexes: about 200 keys of 20 bytes.
    let broker = Broker::start_with_env(1, &[("BROKER_TABLE_KEYS_BYTES_PER_SHARD", "16384")]);
    let addr = broker.public.to_string();
    rt().block_on(async move {
        let client = Client::connect(&addr).await.unwrap();
        let config = TopicConfig { partition_count: 1, ..Default::default() };
        client.create_topic("events", config).await.unwrap();
        client
            .create_topic("quiet", TopicConfig { partition_count: 1, ..Default::default() })
            .await
            .unwrap();
        let conditional = |key: String| {
            let client = client.clone();
            async move {
                let e = event(&key, "v");
                client
                    .produce_expecting(
                        "events",
                        0,
                        &e,
                        AckLevel::Durable,
                        ExpectedPosition::KeyNeverWritten,
                    )
                    .await
            }
        };
        // Conditional appends of distinct keys until the budget runs out.
        let mut accepted = 0;
        let refused = loop {
            match conditional(format!("aggregate-{accepted:010}")).await {
                Ok(_) => accepted += 1,
                Err(e) => break e,
            }
            assert!(accepted < 10_000, "the key index never hit its budget");
        };
        assert!(
            matches!(&refused, ClientError::Partition { code: wire::ErrorCode::ResourceLimit, .. }),
            "{refused}"
        );
        assert!(accepted > 50, "room for {accepted} keys only");
        // Sticky: further conditional appends are refused at once, even for a known key.
        let again = conditional("aggregate-0000000000".into()).await.unwrap_err();
        assert!(matches!(
            again,
            ClientError::Partition { code: wire::ErrorCode::ResourceLimit, .. }
        ));
        // Plain appends to the partition, and everything on other partitions, still work.
        client.produce_batches("events", 0, &event("k", "plain"), AckLevel::Durable).await.unwrap();
        let e = event("q", "v");
        client
            .produce_expecting("quiet", 0, &e, AckLevel::Durable, ExpectedPosition::KeyNeverWritten)
            .await
            .unwrap();
        // The dropped index gave its memory back: the other partition's index fits.
        for i in 0..50 {
            let e = event(&format!("q-{i}"), "v");
            client
                .produce_expecting(
                    "quiet",
                    0,
                    &e,
                    AckLevel::Durable,
                    ExpectedPosition::KeyNeverWritten,
                )
                .await
                .unwrap();
        }
    });
    assert!(!broker.log_text().contains("panicked"));
    let log = broker.log_text();
    assert!(log.contains("key index dropped"), "{log}");
}

/// `records` (key, value) as one zstd-compressed batch.
fn compressed(records: &[(&str, &str)]) -> Vec<u8> {
    let mut b = BatchBuilder::new(1 << 16);
    for (k, v) in records {
        // Compressible values, so the codec keeps the compressed form.
        b.append(1, Some(k.as_bytes()), Some(v.repeat(50).as_bytes()), &[]).unwrap();
    }
    let plain = b.finish().unwrap();
    let envelope = wire::BatchEnvelope::validate(&plain).unwrap();
    let mut out = wire::AlignedVec::new();
    let range =
        envelope.compress_into(wire::Compression::Zstd { level: 3 }, &mut out).expect("it shrinks");
    out[range].to_vec()
}

/// Compressed batches are opened one at a time and not kept while a request waits (a
/// request of small batches that decompress to 16 MiB each held them all): a key condition
/// still finds the records' one key, and the key index still learns the keys of compressed
/// batches appended without a condition (opened again when they are claimed).
#[test]
fn key_conditions_and_the_key_index_read_compressed_batches() {
    let broker = Broker::start(1);
    let addr = broker.public.to_string();
    rt().block_on(async move {
        let client = Client::connect(&addr).await.unwrap();
        let config = TopicConfig { partition_count: 1, ..Default::default() };
        client.create_topic("ledger", config).await.unwrap();
        let three = compressed(&[("acct", "a"), ("acct", "b"), ("acct", "c")]);
        let first = client
            .produce_expecting(
                "ledger",
                0,
                &three,
                AckLevel::Durable,
                ExpectedPosition::KeyNeverWritten,
            )
            .await
            .unwrap();
        assert_eq!((first.base_offset, first.last_offset), (0, 2));
        // Without a condition: the index (built by the first) notes the compressed batch.
        let two = compressed(&[("acct", "d"), ("acct", "e")]);
        client.produce_batches("ledger", 0, &two, AckLevel::Durable).await.unwrap();
        let stale = client
            .produce_expecting(
                "ledger",
                0,
                &two,
                AckLevel::Durable,
                ExpectedPosition::KeyLastOffset(2),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(stale, ClientError::ConditionFailed { current_offset: 4, .. }),
            "the key's last record is in the compressed batch: {stale}"
        );
        let next = client
            .produce_expecting(
                "ledger",
                0,
                &two,
                AckLevel::Durable,
                ExpectedPosition::KeyLastOffset(4),
            )
            .await
            .unwrap();
        assert_eq!(next.base_offset, 5);
        let mixed = compressed(&[("acct", "f"), ("other", "g")]);
        let err = client
            .produce_expecting(
                "ledger",
                0,
                &mixed,
                AckLevel::Durable,
                ExpectedPosition::KeyLastOffset(6),
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("INVALID_REQUEST"), "{err}");
    });
}

/// Deleted records take their keys out of the key index: a key whose every record is below
/// the new log start reads as never written, as an index built from the log after a restart
/// would have it, and a key with a record kept is still where it was (before, the live index
/// kept the deleted keys and a rebuilt one did not, so the same append could fail before a
/// restart and succeed after it).
#[test]
fn deleted_records_take_their_keys_out_of_the_key_index() {
    // Retention passes (which sweep deleted keys out and give their memory back) often.
    let mut broker = Broker::start_with_env(
        1,
        &[("BROKER_RETENTION_CHECK_MS", "200"), ("BROKER_METRICS_LISTEN", "127.0.0.1:0")],
    );
    let rt = rt();
    let append = |broker: &Broker, key: &'static str, expected: ExpectedPosition| {
        let addr = broker.public.to_string();
        async move {
            let client = Client::connect(&addr).await.unwrap();
            let e = event(key, "v");
            client.produce_expecting("acc", 0, &e, AckLevel::Durable, expected).await
        }
    };
    rt.block_on(async {
        let admin = Client::connect(&broker.public.to_string()).await.unwrap();
        let config = TopicConfig { partition_count: 1, ..Default::default() };
        admin.create_topic("acc", config).await.unwrap();
        for key in ["k1", "k2", "k1"] {
            admin.produce_batches("acc", 0, &event(key, "v"), AckLevel::Durable).await.unwrap();
        }
        // The first key-conditional append builds the index (k1 at 2, k2 at 1).
        let r = append(&broker, "k3", ExpectedPosition::KeyNeverWritten).await.unwrap();
        assert_eq!(r.last_offset, 3);
        let kept = admin.delete_records("acc", &[(0, wire::DeleteBefore::Offset(3))]).await;
        assert_eq!(kept.unwrap(), [(0, 3)]);
        // k1's records are all gone: never written, as far as anyone can tell now.
        append(&broker, "k1", ExpectedPosition::KeyNeverWritten).await.unwrap();
        match append(&broker, "k3", ExpectedPosition::KeyNeverWritten).await {
            Err(ClientError::ConditionFailed { current_offset, .. }) => {
                assert_eq!(current_offset, 3)
            }
            other => panic!("k3 is kept at 3: {other:?}"),
        }
    });
    // The next retention pass forgets k2 (its only record went) and gives its memory back:
    // k1 (written again at 4) and k3 are left, 72 + 2 bytes each.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let held = broker.metric("broker_table_keys_bytes", 0).expect("metric");
        if held == 148.0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the key index still holds {held} bytes");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    broker.kill();
    broker.restart();
    rt.block_on(async {
        // The same answers from an index built (or loaded from its snapshot) after the start.
        append(&broker, "k2", ExpectedPosition::KeyNeverWritten).await.unwrap();
        let r = append(&broker, "k3", ExpectedPosition::KeyLastOffset(3)).await.unwrap();
        assert_eq!(r.last_offset, 6);
        match append(&broker, "k1", ExpectedPosition::KeyNeverWritten).await {
            Err(ClientError::ConditionFailed { current_offset, .. }) => {
                assert_eq!(current_offset, 4)
            }
            other => panic!("k1 was written again at 4: {other:?}"),
        }
    });
}

/// A key index too large to snapshot in one step (256 KiB: ~11,000 of these keys) is
/// snapshotted a step at a time while appends go on noting keys (a snapshot every 50 ms);
/// after kill -9 the index loaded from such a snapshot (plus the log after it) answers every
/// key's last offset as the model has it. Before, the whole index was encoded at once on
/// the shard's thread (a million keys held it 80 ms).
#[test]
fn a_large_key_index_snapshotted_in_steps_while_appends_go_on_survives_a_crash() {
    let mut broker = Broker::start_with_env(1, &[("BROKER_STATE_SNAPSHOT_INTERVAL_MS", "50")]);
    const KEYS: usize = 40_000;
    const PER_BATCH: usize = 500;
    let key = |i: usize| format!("acct-{:06}", i % KEYS);
    let mut last = std::collections::HashMap::new();
    let rt = rt();
    rt.block_on(async {
        let client = Client::connect(&broker.public.to_string()).await.unwrap();
        let config = TopicConfig { partition_count: 1, ..Default::default() };
        client.create_topic("ledger", config).await.unwrap();
        // The first key-conditional append builds the index; every append after it is noted.
        let r = client
            .produce_expecting(
                "ledger",
                0,
                &event("opening", "v"),
                AckLevel::Durable,
                ExpectedPosition::KeyNeverWritten,
            )
            .await
            .unwrap();
        last.insert("opening".to_owned(), r.last_offset as u64);
        for j in 0..120 {
            let mut b = BatchBuilder::new(1 << 20);
            for i in 0..PER_BATCH {
                b.append(1, Some(key(j * PER_BATCH + i).as_bytes()), Some(b"v"), &[]).unwrap();
            }
            let batch = b.finish().unwrap().to_vec();
            let r = client.produce_batches("ledger", 0, &batch, AckLevel::Durable).await.unwrap();
            assert_eq!(r.last_offset - r.base_offset + 1, PER_BATCH as i64);
            let base = r.base_offset as u64;
            for i in 0..PER_BATCH {
                last.insert(key(j * PER_BATCH + i), base + i as u64);
            }
        }
    });
    let snapshot = broker.partition_dir("ledger", 0).join("keys.snapshot");
    let bytes = std::fs::metadata(&snapshot).map(|m| m.len()).unwrap_or(0);
    assert!(bytes > 2 * (256 << 10), "{} holds {bytes} bytes: 3 steps", snapshot.display());
    broker.kill();
    broker.restart();
    rt.block_on(async {
        let client = Client::connect(&broker.public.to_string()).await.unwrap();
        let mut names: Vec<&String> = last.keys().collect();
        names.sort();
        for name in names.into_iter().step_by(97) {
            let at = last[name];
            // One below its last offset fails and names the last; the last itself passes.
            match client
                .produce_expecting(
                    "ledger",
                    0,
                    &event(name, "late"),
                    AckLevel::Durable,
                    ExpectedPosition::KeyLastOffset(at.saturating_sub(1)),
                )
                .await
            {
                Err(ClientError::ConditionFailed { current_offset, .. }) => {
                    assert_eq!(current_offset, at as i64, "{name}")
                }
                other => panic!("{name} (last at {at}): {other:?}"),
            }
            let e = event(name, "next");
            let expect = ExpectedPosition::KeyLastOffset(at);
            let r = client.produce_expecting("ledger", 0, &e, AckLevel::Durable, expect).await;
            assert!(r.is_ok(), "{name} (last at {at}): {r:?}");
        }
    });
    // The index was loaded from a snapshot, not rebuilt from the whole log.
    let log = broker.log_text();
    let built = log.lines().rfind(|l| l.contains("key index built")).expect("built");
    let covered: u64 = built
        .split("snapshot_offset=")
        .nth(1)
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("snapshot_offset");
    assert!(covered > 0, "{built}");
}

/// A key whose last record was a tombstone that compaction removed (after
/// `delete_retention_ms`) is forgotten by the live key index, as an index built from the log
/// then would not know it: `KeyNeverWritten` holds for it again, before and after kill -9.
/// Before, the live index kept the tombstone's offset until a restart rebuilt it without a
/// snapshot, so the same append failed or passed depending on when the index was built.
#[test]
fn keys_whose_tombstones_compaction_removed_leave_the_key_index() {
    let env = [
        ("BROKER_RETENTION_CHECK_MS", "100"),
        ("BROKER_CLEANER_DIRTY_PERCENT_MIN", "0"),
        ("BROKER_STATE_SNAPSHOT_INTERVAL_MS", "100"),
    ];
    let mut broker = Broker::start_with_env(1, &env);
    let rt = rt();
    let tombstone = |key: &str| {
        let mut b = BatchBuilder::new(1 << 16);
        b.append(1, Some(key.as_bytes()), None, &[]).unwrap();
        b.finish().unwrap().to_vec()
    };
    rt.block_on(async {
        let client = Client::connect(&broker.public.to_string()).await.unwrap();
        let config = TopicConfig {
            partition_count: 1,
            compact: true,
            delete_retention_ms: 1,
            segment_bytes_max: 4096,
            ..Default::default()
        };
        client.create_topic("accounts", config).await.unwrap();
        for key in ["k1", "k2"] {
            client
                .produce_batches("accounts", 0, &event(key, "v"), AckLevel::Durable)
                .await
                .unwrap();
        }
        // The index is built (k1 at 0, k2 at 1), then the tombstones are noted (at 3, 4).
        let never = ExpectedPosition::KeyNeverWritten;
        client
            .produce_expecting("accounts", 0, &event("k0", "v"), AckLevel::Durable, never)
            .await
            .unwrap();
        for key in ["k1", "k2"] {
            client
                .produce_batches("accounts", 0, &tombstone(key), AckLevel::Durable)
                .await
                .unwrap();
        }
        // Into closed segments: the active one is never cleaned.
        let pad = event("pad", &"x".repeat(1500));
        for _ in 0..8 {
            client.produce_batches("accounts", 0, &pad, AckLevel::Durable).await.unwrap();
        }
        match client
            .produce_expecting("accounts", 0, &event("k1", "v2"), AckLevel::Durable, never)
            .await
        {
            Err(ClientError::ConditionFailed { current_offset: 3, .. }) => {}
            other => panic!("k1's tombstone is at 3 until compaction removes it: {other:?}"),
        }
        // Compaction removes both keys' records; then k1 was never written, as far as the
        // log can tell.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let e = event("k1", "again");
            match client.produce_expecting("accounts", 0, &e, AckLevel::Durable, never).await {
                Ok(_) => break,
                Err(ClientError::ConditionFailed { current_offset: 3, .. }) => {}
                other => panic!("{other:?}"),
            }
            assert!(std::time::Instant::now() < deadline, "k1 stayed known after compaction");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    });
    broker.kill();
    broker.restart();
    rt.block_on(async {
        let client = Client::connect(&broker.public.to_string()).await.unwrap();
        let never = ExpectedPosition::KeyNeverWritten;
        // The same after a restart (the index from its snapshot, or from the log).
        let r = client
            .produce_expecting("accounts", 0, &event("k2", "v"), AckLevel::Durable, never)
            .await;
        assert!(r.is_ok(), "k2's tombstone went with compaction: {r:?}");
        match client
            .produce_expecting("accounts", 0, &event("k1", "v3"), AckLevel::Durable, never)
            .await
        {
            Err(ClientError::ConditionFailed { .. }) => {}
            other => panic!("k1 was written again: {other:?}"),
        }
    });
}
