//! Changing an existing topic's settings (`Client::alter_topic_config`, AlterTopicConfig,
//! `brokerctl topic alter`): retention, rolling and the default ack change while the
//! partitions are open and stay after a restart; settings fixed at creation, bad values,
//! unknown names and the internal topic are refused, and nothing of a refused request is
//! made.

mod cli;

use std::time::{Duration, Instant};

use client::{Client, ClientError};
use integration_tests::Broker;
use wire::{AckLevel, ErrorCode, TopicConfig};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn set(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// One batch of one 3,000-byte record.
fn batch() -> Vec<u8> {
    let mut b = wire::BatchBuilder::new(1 << 16);
    b.append(0, None, Some(&[7u8; 3000][..]), &[]).unwrap();
    b.finish().unwrap().to_vec()
}

#[test]
fn a_topics_retention_changes_while_it_is_open_and_stays_after_a_restart() {
    let mut broker = Broker::start_with_env(1, &[("BROKER_RETENTION_CHECK_MS", "200")]);
    let addr = broker.public.to_string();
    rt().block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        let config = TopicConfig {
            partition_count: 1,
            retention_ms: -1,
            retention_bytes: -1,
            segment_bytes_max: 4096,
            ..Default::default()
        };
        client.create_topic("kept", config).await.unwrap();
        for _ in 0..30 {
            client.produce_batches("kept", 0, &batch(), AckLevel::Durable).await.unwrap();
        }
        let start = |d: &wire::DescribeTopicResponse| d.partitions[0].log_start_offset;
        let before = client.describe_topic("kept").await.unwrap();
        assert_eq!(start(&before), 0, "nothing deleted while retention is -1");
        // Validate-only changes nothing.
        let shown = client
            .alter_topic_config("kept", &set(&[("retention_bytes", "20000")]), true)
            .await
            .unwrap();
        assert_eq!(shown.config.retention_bytes, 20_000);
        let d = client.describe_topic("kept").await.unwrap();
        assert_eq!(d.topic.unwrap().config.retention_bytes, -1, "validate-only changed it");
        // Retention by size, a default ack, and rolling by age.
        let changes = set(&[
            ("retention_bytes", "20000"),
            ("default_ack", "written"),
            ("segment_ms", "60000"),
        ]);
        let t = client.alter_topic_config("kept", &changes, false).await.unwrap();
        assert_eq!(
            (t.config.retention_bytes, t.config.default_ack, t.config.segment_ms),
            (20_000, AckLevel::Written, 60_000)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let d = client.describe_topic("kept").await.unwrap();
            let p = &d.partitions[0];
            // Retention takes the oldest segments out one at a time: wait for the pass.
            if p.log_start_offset > 0 && p.size_bytes <= 20_000 + 4096 {
                assert_eq!(p.high_watermark, 30);
                break;
            }
            assert!(Instant::now() < deadline, "retention never applied the new size: {p:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    broker.kill();
    broker.restart();
    let addr = broker.public.to_string();
    rt().block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        let c = client.describe_topic("kept").await.unwrap().topic.unwrap().config;
        assert_eq!(
            (c.retention_bytes, c.retention_ms, c.default_ack, c.segment_ms, c.segment_bytes_max),
            (20_000, -1, AckLevel::Written, 60_000, 4096),
            "kept across the restart"
        );
        // Back to the broker default.
        let t =
            client.alter_topic_config("kept", &set(&[("segment_ms", "")]), false).await.unwrap();
        assert_eq!(t.config.segment_ms, 0);
    });
}

#[test]
fn settings_fixed_at_creation_bad_values_and_the_internal_topic_are_refused() {
    let broker = Broker::start(1);
    let addr = broker.public.to_string();
    rt().block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        let config = TopicConfig { partition_count: 2, ..Default::default() };
        client.create_topic("fixed", config).await.unwrap();
        let code = |e: ClientError| match e {
            ClientError::Broker { code, message, .. } => (code, message),
            e => panic!("{e}"),
        };
        for (name, value, says) in [
            ("compact", "yes", "true, false"),
            ("table", "true", "fixed at creation"),
            ("partition_count", "4", "fixed at creation"),
            ("batch_bytes_max", "1000", "fixed at creation"),
            ("nope", "1", "one of"),
            ("retention_ms", "-2", "retention_ms"),
            ("retention_ms", "soon", "an integer"),
            ("segment_bytes_max", "100", "segment_bytes_max"),
            ("default_ack", "always", "default_ack"),
        ] {
            // A good change beside the bad one is not made either.
            let changes = set(&[("retention_ms", "1000"), (name, value)]);
            let err = client.alter_topic_config("fixed", &changes, false).await.unwrap_err();
            let (code, message) = code(err);
            assert_eq!(code, ErrorCode::InvalidTopicConfig, "{name}={value}: {message}");
            assert!(message.contains(says), "{name}={value}: {message}");
        }
        let c = client.describe_topic("fixed").await.unwrap().topic.unwrap().config;
        assert_eq!(c.retention_ms, 0, "nothing of a refused request was made");
        let one = set(&[("retention_ms", "1")]);
        let err = client.alter_topic_config("missing", &one, false).await.unwrap_err();
        assert_eq!(code(err).0, ErrorCode::UnknownTopic);
        let err = client.alter_topic_config("__consumer_offsets", &one, false).await.unwrap_err();
        assert_eq!(code(err).0, ErrorCode::InternalTopic);
    });
    // brokerctl.
    let (ok, out, err) = cli::brokerctl(
        &broker,
        &["topic", "alter", "fixed", "--set", "retention_ms=3600000", "--set", "default_ack=none"],
        None,
    );
    assert!(ok, "{err}");
    assert!(out.contains("retention_ms 3600000") && out.contains("default_ack none"), "{out}");
    let (ok, _, err) =
        cli::brokerctl(&broker, &["topic", "alter", "fixed", "--set", "table=true"], None);
    assert!(!ok && err.contains("INVALID_TOPIC_CONFIG"), "{err}");
    let (ok, out, err) =
        cli::brokerctl(&broker, &["topic", "alter", "fixed", "--set", "compact=true"], None);
    assert!(ok && out.contains("compact true"), "{out} {err}");
}
