//! Filtered reads from the Rust client against the real broker: a group member with a
//! filter receives only the matching records, and its committed positions still reach the
//! end of each partition (the records the broker skipped count as read).

use std::collections::BTreeSet;
use std::time::Duration;

use client::{Client, ClientError, GroupConfig, GroupConsumer, Producer, ProducerConfig};
use integration_tests::Broker;
use wire::{AckLevel, OffsetSpec, StartPosition, TopicConfig};

#[test]
fn a_filtered_group_member_gets_only_matches_and_commits_past_the_rest() {
    let broker = Broker::start(2);
    let addr = broker.public.to_string();
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        let config = TopicConfig {
            partition_count: 3,
            retention_ms: -1,
            retention_bytes: -1,
            ..Default::default()
        };
        client.create_topic("f", config).await.unwrap();
        let producer = Producer::new(
            client.clone(),
            ProducerConfig { ack: AckLevel::Durable, ..Default::default() },
        );
        let mut want = BTreeSet::new();
        let mut acks = Vec::new();
        for i in 0..300u32 {
            let key = if i % 20 == 0 { format!("hot-{i}") } else { format!("cold-{i}") };
            if i % 20 == 0 {
                want.insert(key.clone());
            }
            acks.push(producer.send("f", Some(key.as_bytes()), Some(b"{}"), &[]).await.unwrap());
        }
        producer.flush().await.unwrap();
        for a in acks {
            a.await.unwrap();
        }
        // An invalid filter is refused before anything is sent.
        let bad = GroupConfig { filter: "key =".into(), ..GroupConfig::new("g0", &["f"]) };
        assert!(matches!(
            GroupConsumer::join(&client, bad).await,
            Err(ClientError::InvalidFilter(_))
        ));
        assert!(matches!(
            client::Consumer::subscribe_filtered(
                &client,
                "f",
                0,
                StartPosition::Earliest,
                1 << 20,
                "key ="
            )
            .await,
            Err(ClientError::InvalidFilter(_))
        ));

        let config = GroupConfig {
            reset: StartPosition::Earliest,
            auto_commit_interval: None,
            filter: r#"key prefix "hot-""#.into(),
            ..GroupConfig::new("g", &["f"])
        };
        let mut member = GroupConsumer::join(&client, config).await.unwrap();
        let mut got = BTreeSet::new();
        // Read until every match arrived and no batch came for a second (the broker's
        // position-only pushes arrive within 200 ms of the last record).
        loop {
            match tokio::time::timeout(Duration::from_secs(1), member.next()).await {
                Ok(b) => {
                    for r in b.unwrap().batch.records() {
                        let key = String::from_utf8(r.key().unwrap().to_vec()).unwrap();
                        assert!(key.starts_with("hot-"), "{key} does not match");
                        assert!(got.insert(key), "delivered twice");
                    }
                }
                Err(_) if got.len() == want.len() => break,
                Err(_) => {}
            }
        }
        assert_eq!(got, want);
        member.commit().await.unwrap();
        let ends = client.list_offsets("f", OffsetSpec::Latest).await.unwrap();
        let committed = client.fetch_offsets("g", &["f".to_string()]).await.unwrap();
        for (p, end, _) in ends {
            let c = committed.iter().find(|(_, q, _)| *q == p).map(|c| c.2);
            assert_eq!(c, Some(end), "partition {p}: committed position is the end");
        }
        member.close().await.unwrap();
    });
}
