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
