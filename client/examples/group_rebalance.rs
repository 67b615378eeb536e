//! Measures consumer group rebalance time against a running broker: `members` members read a
//! topic of `partitions` partitions, one more joins, and the time until the group has
//! settled again (every partition granted, counts differing by at most one, nothing moving,
//! as `DescribeGroup` reports) is recorded; then the newcomer leaves and that is timed too.
//!
//! ```text
//! cargo run --release -p client --example group_rebalance -- 127.0.0.1:9400 4 16 10
//! ```
//! Arguments: broker address, members before the join, partitions, rounds. Prints one JSON
//! line per round and a summary line with medians.

use std::time::{Duration, Instant};

use client::{Client, GroupConfig, GroupConsumer};
use wire::{StartPosition, TopicConfig};

fn arg<T: std::str::FromStr>(i: usize, default: T) -> T {
    std::env::args().nth(i).and_then(|a| a.parse().ok()).unwrap_or(default)
}

async fn settled(client: &Client, group: &str, members: usize, partitions: u32) -> Duration {
    let started = Instant::now();
    loop {
        if let Ok(d) = client.describe_group(group).await {
            let counts: Vec<usize> = d
                .members
                .iter()
                .map(|m| m.assignment.iter().map(|t| t.partitions.len()).sum())
                .collect();
            let total: usize = counts.iter().sum();
            let (lo, hi) = (counts.iter().min(), counts.iter().max());
            if d.members.len() == members
                && total == partitions as usize
                && hi.zip(lo).is_some_and(|(h, l)| h - l <= 1)
                && !d.rebalancing
            {
                return started.elapsed();
            }
        }
        assert!(started.elapsed() < Duration::from_secs(60), "group {group} never settled");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn spawn_member(client: &Client, group: &str, topic: &str) -> tokio::task::JoinHandle<()> {
    let (client, config) = (
        client.clone(),
        GroupConfig { reset: StartPosition::Latest, ..GroupConfig::new(group, &[topic]) },
    );
    tokio::spawn(async move {
        let mut member = GroupConsumer::join(&client, config).await.expect("join");
        while member.next().await.is_ok() {}
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let addr: String = arg(1, "127.0.0.1:9400".to_string());
    let members: usize = arg(2, 4);
    let partitions: u32 = arg(3, 16);
    let rounds: usize = arg(4, 10);
    let client = Client::connect(&addr).await.expect("connect");
    let topic = format!("rebalance-{}", std::process::id());
    let config = TopicConfig { partition_count: partitions, ..Default::default() };
    client.create_topic(&topic, config).await.expect("create topic");
    let (mut joins, mut leaves) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let group = format!("{topic}-{round}");
        let base: Vec<_> = (0..members).map(|_| spawn_member(&client, &group, &topic)).collect();
        settled(&client, &group, members, partitions).await;
        let started = Instant::now();
        let mut newcomer = GroupConsumer::join(
            &client,
            GroupConfig { reset: StartPosition::Latest, ..GroupConfig::new(&group, &[&topic]) },
        )
        .await
        .expect("join");
        // The newcomer applies its assignment inside `next`, so it runs while we watch.
        let join = tokio::select! {
            _ = settled(&client, &group, members + 1, partitions) => started.elapsed(),
            _ = async { loop { let _ = newcomer.next().await; } } => unreachable!(),
        };
        let left = Instant::now();
        newcomer.close().await.expect("close");
        settled(&client, &group, members, partitions).await;
        let leave = left.elapsed();
        println!(
            "{{\"round\":{round},\"members\":{members},\"partitions\":{partitions},\"join_ms\":{:.1},\"leave_ms\":{:.1}}}",
            join.as_secs_f64() * 1e3,
            leave.as_secs_f64() * 1e3
        );
        joins.push(join);
        leaves.push(leave);
        for m in base {
            m.abort();
        }
    }
    joins.sort();
    leaves.sort();
    println!(
        "{{\"summary\":true,\"members\":\"{members} -> {}\",\"partitions\":{partitions},\"rounds\":{rounds},\"join_median_ms\":{:.1},\"join_max_ms\":{:.1},\"leave_median_ms\":{:.1},\"leave_max_ms\":{:.1}}}",
        members + 1,
        joins[rounds / 2].as_secs_f64() * 1e3,
        joins[rounds - 1].as_secs_f64() * 1e3,
        leaves[rounds / 2].as_secs_f64() * 1e3,
        leaves[rounds - 1].as_secs_f64() * 1e3,
    );
    let _ = client.delete_topic(&topic).await;
}
