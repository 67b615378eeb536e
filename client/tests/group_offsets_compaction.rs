//! Compaction of the committed-offsets log against the real broker: with a tiny threshold,
//! thousands of commits leave each offsets partition a few segments long, `fetch_offsets`
//! answers the latest values throughout, and after kill -9 every last commit is back.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use client::Client;
use integration_tests::Broker;
use wire::TopicConfig;

const OFFSETS_TOPIC: &str = "__consumer_offsets";
const OFFSETS_PARTITIONS: u32 = 2;
const GROUPS: u32 = 8;
const PARTITIONS: u32 = 16;
/// Compaction threshold, and so the offsets topic's segment size.
const COMPACT_BYTES: u64 = 16 << 10;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// (`.log` files, their bytes) of one offsets partition: segments still in the log (not
/// the `.deleted` ones being freed, nor the kept `.spare`).
fn segments(dir: &Path) -> (usize, u64) {
    let mut count = 0;
    let mut bytes = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if !e.file_name().to_string_lossy().ends_with(".log") {
            continue;
        }
        // A compaction may rename it to `.deleted` meanwhile.
        if let Ok(m) = e.metadata() {
            count += 1;
            bytes += m.len();
        }
    }
    (count, bytes)
}

/// The offset group `g` commits for partition `p` in round `round`.
fn offset(round: u64, g: u32, p: u32) -> u64 {
    round * 1_000 + u64::from(g) * 100 + u64::from(p)
}

async fn commit_round(client: &Client, round: u64) {
    let commits = (0..GROUPS).map(|g| {
        let offsets: Vec<(String, u32, u64)> =
            (0..PARTITIONS).map(|p| ("t".to_string(), p, offset(round, g, p))).collect();
        async move { client.commit_offsets(&format!("group-{g}"), "", 0, &offsets).await.unwrap() }
    });
    // The groups commit together, so commits race with the compactions they trigger.
    futures_util::future::join_all(commits).await;
}

async fn check_latest(client: &Client, round: u64) {
    for g in 0..GROUPS {
        let mut got = client.fetch_offsets(&format!("group-{g}"), &[]).await.unwrap();
        got.sort();
        let want: Vec<(String, u32, u64)> =
            (0..PARTITIONS).map(|p| ("t".to_string(), p, offset(round, g, p))).collect();
        assert_eq!(got, want, "group-{g} after round {round}");
    }
}

#[test]
fn offsets_log_stays_bounded_and_every_last_commit_survives_kill_9() {
    let compact = COMPACT_BYTES.to_string();
    let partitions = OFFSETS_PARTITIONS.to_string();
    let mut broker = Broker::start_with_env(
        2,
        &[
            ("BROKER_GROUP_OFFSETS_COMPACT_BYTES", &compact),
            ("BROKER_GROUP_OFFSETS_PARTITIONS", &partitions),
        ],
    );
    let dirs: Vec<_> =
        (0..OFFSETS_PARTITIONS).map(|i| broker.partition_dir(OFFSETS_TOPIC, i)).collect();
    let rounds = 300u64;
    let addr = broker.public.to_string();
    let largest = rt().block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        client
            .create_topic(
                "t",
                TopicConfig {
                    partition_count: PARTITIONS,
                    retention_ms: -1,
                    retention_bytes: -1,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let mut largest: BTreeMap<usize, (usize, u64)> = BTreeMap::new();
        for round in 1..=rounds {
            commit_round(&client, round).await;
            for (i, dir) in dirs.iter().enumerate() {
                let (count, bytes) = segments(dir);
                let l = largest.entry(i).or_default();
                *l = (l.0.max(count), l.1.max(bytes));
            }
            if round % 50 == 0 {
                check_latest(&client, round).await;
            }
        }
        check_latest(&client, rounds).await;
        largest
    });
    // Every round writes ~GROUPS * PARTITIONS records (~6 KB); uncompacted, the offsets
    // log would hold ~1.8 MB by now.
    let log = broker.log_text();
    let compactions = log.matches("group offsets compacted").count();
    assert!(compactions >= 20, "{compactions} compactions");
    assert!(log.contains("record deletion deleted segment"), "no segment deleted");
    for (i, (count, bytes)) in &largest {
        eprintln!("offsets partition {i}: at most {count} segments, {bytes} bytes");
        // (Commits race with the compactions they trigger: on a loaded machine a log grows
        // a segment or two more before one ends. Uncompacted it would be ~110.)
        assert!(*count <= 8, "offsets partition {i} reached {count} segments");
        assert!(*bytes <= 8 * COMPACT_BYTES, "offsets partition {i} reached {bytes} bytes");
    }
    // A crash right after the last acked commit: every last commit is back, from the
    // snapshot plus whatever followed it.
    broker.kill();
    broker.restart();
    let addr = broker.public.to_string();
    rt().block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        check_latest(&client, rounds).await;
        // And compaction goes on after the restart.
        let started = Instant::now();
        for round in rounds + 1..=rounds + 40 {
            commit_round(&client, round).await;
        }
        check_latest(&client, rounds + 40).await;
        assert!(started.elapsed() < Duration::from_secs(60));
    });
    let after = broker.log_text().matches("group offsets compacted").count();
    assert!(after > compactions, "no compaction after the restart");
    for dir in &dirs {
        let (count, bytes) = segments(dir);
        assert!(count <= 6 && bytes <= 8 * COMPACT_BYTES, "{count} segments, {bytes} bytes");
    }
    broker.kill();
    broker.restart();
    let addr = broker.public.to_string();
    rt().block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        check_latest(&client, rounds + 40).await;
    });
}
