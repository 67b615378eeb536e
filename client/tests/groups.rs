//! Consumer groups against the real broker: shared work, rebalancing, committed offsets
//! that survive kill -9, fan-out to several groups, fencing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use client::{Client, ClientError, GroupConfig, GroupConsumer, Producer, ProducerConfig};
use integration_tests::Broker;
use wire::{
    AckLevel, Assignor, ErrorCode, GroupMemberState, HeartbeatRequest, HeartbeatResponse,
    JoinGroupRequest, LeaveGroupRequest, LeaveGroupResponse, StartPosition, TopicConfig,
};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

async fn topic(client: &Client, name: &str, partitions: u32) {
    client
        .create_topic(
            name,
            TopicConfig {
                partition_count: partitions,
                retention_ms: -1,
                retention_bytes: -1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
}

/// Produces `n` records valued `{tag}-{i}` (keyed, so they spread over the partitions).
async fn produce(client: &Client, topic: &str, tag: &str, n: u32) -> BTreeSet<String> {
    let producer = Producer::new(
        client.clone(),
        ProducerConfig { ack: AckLevel::Durable, ..Default::default() },
    );
    let mut sent = Vec::new();
    let mut values = BTreeSet::new();
    for i in 0..n {
        let value = format!("{tag}-{i}");
        let key = format!("k{i}");
        sent.push(
            producer.send(topic, Some(key.as_bytes()), Some(value.as_bytes()), &[]).await.unwrap(),
        );
        values.insert(value);
    }
    producer.flush().await.unwrap();
    for s in sent {
        s.await.unwrap();
    }
    values
}

/// What one member saw: values with the partition they came from, and its assignment.
#[derive(Default)]
struct Seen {
    values: Vec<String>,
    assignment: Vec<(String, u32)>,
}

/// Runs a member until `stop` is dropped (a clean close) or the task is aborted (a crash:
/// no commit, no leave).
fn member(
    client: &Client,
    config: GroupConfig,
    seen: Arc<Mutex<Seen>>,
) -> (tokio::task::JoinHandle<()>, tokio::sync::oneshot::Sender<()>) {
    let client = client.clone();
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut c = GroupConsumer::join(&client, config).await.unwrap();
        let mut batches = 0u64;
        loop {
            tokio::select! {
                _ = &mut stop_rx => break,
                b = c.next() => {
                    let b = b.unwrap();
                    let mut s = seen.lock().unwrap();
                    for r in b.batch.records() {
                        s.values.push(String::from_utf8(r.value().unwrap().to_vec()).unwrap());
                    }
                    s.assignment = c.assignment();
                    drop(s);
                    // Exercise the manual commits too, between the automatic ones.
                    batches += 1;
                    if batches % 50 == 0 {
                        drop(c.commit_async());
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(20)) => {
                    seen.lock().unwrap().assignment = c.assignment();
                }
            }
        }
        c.close().await.unwrap();
    });
    (task, stop_tx)
}

fn config(group: &str, topic: &str) -> GroupConfig {
    GroupConfig {
        session_timeout_ms: 1_500,
        reset: StartPosition::Earliest,
        auto_commit_interval: Some(Duration::from_millis(200)),
        ..GroupConfig::new(group, &[topic])
    }
}

/// Waits until the members' assignments are disjoint, cover `partitions` and have the
/// given sizes; returns how long that took.
async fn settled(seen: &[Arc<Mutex<Seen>>], partitions: u32, sizes: &[usize]) -> Duration {
    let started = Instant::now();
    loop {
        let assignments: Vec<Vec<(String, u32)>> =
            seen.iter().map(|s| s.lock().unwrap().assignment.clone()).collect();
        let all: Vec<&(String, u32)> = assignments.iter().flatten().collect();
        let distinct: BTreeSet<&(String, u32)> = all.iter().copied().collect();
        let mut got: Vec<usize> = assignments.iter().map(Vec::len).collect();
        got.sort_unstable();
        if all.len() == distinct.len() && distinct.len() == partitions as usize && got == sizes {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "assignments did not settle: {assignments:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the members together saw every value in `want`.
async fn all_seen(seen: &[Arc<Mutex<Seen>>], want: &BTreeSet<String>) -> BTreeMap<String, usize> {
    let started = Instant::now();
    loop {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for s in seen {
            for v in &s.lock().unwrap().values {
                *counts.entry(v.clone()).or_default() += 1;
            }
        }
        if want.iter().all(|v| counts.contains_key(v)) {
            return counts;
        }
        let missing = want.iter().filter(|v| !counts.contains_key(*v)).count();
        assert!(started.elapsed() < Duration::from_secs(30), "{missing} records never consumed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn members_share_partitions_rebalance_incrementally_and_a_crashed_member_is_replaced() {
    let broker = Broker::start(2);
    let addr = broker.public.to_string();
    rt().block_on(async move {
        let client = Client::connect(&addr).await.unwrap();
        topic(&client, "work", 12).await;
        let mut seen: Vec<Arc<Mutex<Seen>>> = (0..3).map(|_| Arc::default()).collect();
        let mut members: Vec<_> =
            seen.iter().map(|s| member(&client, config("workers", "work"), s.clone())).collect();
        settled(&seen, 12, &[4, 4, 4]).await;
        let first = produce(&client, "work", "a", 3_000).await;
        let counts = all_seen(&seen, &first).await;
        assert!(counts.values().all(|&n| n == 1), "records consumed twice without a rebalance");

        // A fourth member: partitions move (3 of them), and live members consume no record
        // twice: each moved partition resumes at its last owner's committed position.
        seen.push(Arc::default());
        members.push(member(&client, config("workers", "work"), seen[3].clone()));
        let rebalance = settled(&seen, 12, &[3, 3, 3, 3]).await;
        eprintln!("rebalance 3 -> 4 members: {} ms", rebalance.as_millis());
        let second = produce(&client, "work", "b", 3_000).await;
        let counts = all_seen(&seen, &second).await;
        let twice = counts.iter().filter(|(v, &n)| v.starts_with('b') && n > 1).count();
        assert_eq!(twice, 0, "records consumed twice by live members after the rebalance");

        // One member crashes (no commit, no leave): the others get its partitions within the
        // session timeout, and every record is processed at least once.
        let (crashed, _stop) = members.remove(0);
        crashed.abort();
        let _ = crashed.await;
        let survivors = seen[1..].to_vec();
        let took = settled(&survivors, 12, &[4, 4, 4]).await;
        eprintln!("crashed member's partitions reassigned in {} ms", took.as_millis());
        assert!(took < Duration::from_millis(1_500 + 3_000), "reassigned late: {took:?}");
        let third = produce(&client, "work", "c", 3_000).await;
        let mut want = first.clone();
        want.extend(second);
        want.extend(third);
        all_seen(&seen, &want).await;
        for (task, stop) in members {
            drop(stop);
            task.await.unwrap();
        }
    });
}

#[test]
fn two_groups_each_see_every_record_and_offsets_survive_kill_9() {
    let mut broker = Broker::start_fixed_ports(2);
    let addr = broker.public.to_string();
    let committed = rt().block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        topic(&client, "feed", 4).await;
        let want = produce(&client, "feed", "r", 2_000).await;
        let (a, b): (Arc<Mutex<Seen>>, Arc<Mutex<Seen>>) = Default::default();
        let ma = member(&client, config("billing", "feed"), a.clone());
        let mb = member(&client, config("audit", "feed"), b.clone());
        all_seen(std::slice::from_ref(&a), &want).await;
        all_seen(std::slice::from_ref(&b), &want).await;
        for (task, stop) in [ma, mb] {
            drop(stop);
            task.await.unwrap();
        }
        let mut billing = client.fetch_offsets("billing", &[]).await.unwrap();
        billing.sort();
        let total: u64 = billing.iter().map(|(_, _, o)| o).sum();
        assert_eq!(total, 2_000, "closing commits every processed position: {billing:?}");
        let lag = client.group_lag("billing").await.unwrap();
        assert!(lag.iter().all(|l| l.lag == 0), "{lag:?}");
        let groups: Vec<String> =
            client.list_groups().await.unwrap().into_iter().map(|g| g.group).collect();
        assert_eq!(groups, ["audit", "billing"]);
        billing
    });
    broker.kill();
    broker.restart();
    rt().block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        let mut after = client.fetch_offsets("billing", &[]).await.unwrap();
        after.sort();
        assert_eq!(after, committed, "committed offsets survive kill -9");
        // A member that joins again resumes there: nothing old is delivered.
        let more = produce(&client, "feed", "s", 100).await;
        // Lag per group and partition is in the stats: 100 new records for each group.
        let stats = client.stats_with(true).await.unwrap();
        let lag = |group: &str| -> u64 {
            stats
                .iter()
                .flat_map(|s| &s.group_lag)
                .filter(|l| l.group == group)
                .map(|l| l.lag)
                .sum()
        };
        assert_eq!((lag("billing"), lag("audit")), (100, 100), "{stats:?}");
        let s: Arc<Mutex<Seen>> = Arc::default();
        let (task, stop) = member(&client, config("billing", "feed"), s.clone());
        all_seen(std::slice::from_ref(&s), &more).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(s.lock().unwrap().values.iter().all(|v| v.starts_with('s')), "re-read old records");
        drop(stop);
        task.await.unwrap();
    });
}

/// Members keep running through a broker crash: after kill -9 and a restart they join
/// again (the restarted coordinator does not know them), read on from the committed
/// offsets and see every record produced afterwards, without the application doing
/// anything; `next` reports no error meanwhile (the member task unwraps it).
#[test]
fn running_members_ride_out_a_broker_crash_and_restart() {
    let mut broker = Broker::start_fixed_ports(2);
    let addr = broker.public.to_string();
    let runtime = rt();
    let (members, seen) = runtime.block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        topic(&client, "live", 4).await;
        let before = produce(&client, "live", "a", 400).await;
        let seen: Vec<Arc<Mutex<Seen>>> = (0..2).map(|_| Arc::default()).collect();
        let members: Vec<_> =
            seen.iter().map(|s| member(&client, config("riders", "live"), s.clone())).collect();
        settled(&seen, 4, &[2, 2]).await;
        all_seen(&seen, &before).await;
        // Past an auto-commit interval: every position seen is committed.
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        (members, seen)
    });
    broker.kill();
    broker.restart();
    runtime.block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        let after = produce(&client, "live", "b", 400).await;
        let counts = all_seen(&seen, &after).await;
        // Everything before the crash was committed: the members resume past it, and no
        // record is delivered twice.
        let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "delivered again after the restart: {twice:?}");
        settled(&seen, 4, &[2, 2]).await;
        for (task, stop) in members {
            drop(stop);
            task.await.unwrap();
        }
        let lag = client.group_lag("riders").await.unwrap();
        assert!(
            lag.iter().all(|l| l.lag == 0),
            "closing commits every processed position: {lag:?}"
        );
    });
}

async fn raw_join(client: &Client, group: &str) -> GroupMemberState {
    client
        .group_request(
            group,
            &JoinGroupRequest {
                group: group.into(),
                member_id: String::new(),
                instance_id: String::new(),
                session_timeout_ms: 10_000,
                topics: vec!["t".into()],
                assignor: Assignor::Range,
                owned: vec![],
                client_id: "raw".into(),
                // The broker replaces it with the connection's address.
                client_host: "10.9.9.9".into(),
            },
        )
        .await
        .unwrap()
}

/// What a member's join keeps lives as long as the member: more topics than a member may
/// read, an over-long client id or too many owned partitions is refused with INVALID_REQUEST
/// and nothing is kept.
#[test]
fn joins_with_oversized_member_fields_are_refused() {
    let broker = Broker::start(1);
    let addr = broker.public.to_string();
    rt().block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        let join = |topics: Vec<String>, client_id: String| JoinGroupRequest {
            group: "fields".into(),
            member_id: String::new(),
            instance_id: String::new(),
            session_timeout_ms: 1_500,
            topics,
            assignor: Assignor::Range,
            owned: vec![],
            client_id,
            client_host: String::new(),
        };
        let many: Vec<String> = (0..10_001).map(|i| format!("t{i}")).collect();
        let owning = JoinGroupRequest {
            owned: vec![wire::TopicPartitions {
                topic: "t".into(),
                partitions: (0..100_001).collect(),
            }],
            ..join(vec!["t".into()], "ok".into())
        };
        for (what, req) in [
            ("10,001 topics", join(many, "ok".into())),
            ("a 256-byte client id", join(vec!["t".into()], "c".repeat(256))),
            ("100,001 owned partitions", owning),
        ] {
            let state: GroupMemberState = client.group_request("fields", &req).await.unwrap();
            assert_eq!(state.error, ErrorCode::InvalidRequest.as_u16(), "{what}: {state:?}");
            assert!(state.member_id.is_empty(), "{what}: nothing joined");
        }
        let ok: GroupMemberState =
            client.group_request("fields", &join(vec!["t".into()], "c".repeat(255))).await.unwrap();
        assert_eq!(ok.error, 0, "{ok:?}");
    });
}

/// What members keep (up to 10,000 topic names and 100,000 owned partitions each) is
/// bounded in bytes per shard (`group_member_bytes_per_shard_max`), not only in count
/// (100,000 members of megabytes each): a join past it is refused with RESOURCE_LIMIT, and a
/// member leaving makes room again.
#[test]
fn group_members_are_bounded_in_bytes_per_shard() {
    let broker =
        Broker::start_with_env(1, &[("BROKER_GROUP_MEMBER_BYTES_PER_SHARD_MAX", "2097152")]);
    let addr = broker.public.to_string();
    rt().block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        // 5,000 topic names of 200 bytes: ~1.2 MB kept.
        let topics: Vec<String> = (0..5_000).map(|i| format!("{i:0>200}")).collect();
        let join = |group: &str| JoinGroupRequest {
            group: group.into(),
            member_id: String::new(),
            instance_id: String::new(),
            session_timeout_ms: 30_000,
            topics: topics.clone(),
            assignor: Assignor::Range,
            owned: vec![],
            client_id: "big".into(),
            client_host: String::new(),
        };
        let first: GroupMemberState =
            client.group_request("bytes-1", &join("bytes-1")).await.unwrap();
        assert_eq!(first.error, 0, "{}", first.message);
        let second: GroupMemberState =
            client.group_request("bytes-2", &join("bytes-2")).await.unwrap();
        assert_eq!(second.error, ErrorCode::ResourceLimit.as_u16(), "{}", second.message);
        assert!(second.message.contains("group_member_bytes_per_shard_max"), "{}", second.message);
        let leave = LeaveGroupRequest { group: "bytes-1".into(), member_id: first.member_id };
        let left: LeaveGroupResponse = client.group_request("bytes-1", &leave).await.unwrap();
        assert_eq!(left.error, 0);
        let again: GroupMemberState =
            client.group_request("bytes-2", &join("bytes-2")).await.unwrap();
        assert_eq!(again.error, 0, "room again after the first left: {}", again.message);
    });
}

/// A group's holdings include its target and grants, which grow with the partitions its
/// members read: a join counts the partitions of topics new to its group, and a group whose
/// topic is created later, while the shard's budget is passed, loses its members (before,
/// only the member's own fields counted: every group below took all 1,000 partitions,
/// ~130 KB each, on a 500 KiB budget).
#[test]
fn group_targets_and_grants_count_against_the_member_budget() {
    let broker =
        Broker::start_with_env(1, &[("BROKER_GROUP_MEMBER_BYTES_PER_SHARD_MAX", "512000")]);
    let addr = broker.public.to_string();
    rt().block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        topic(&client, "wide", 1_000).await;
        let join = |group: &str, topic: &str| JoinGroupRequest {
            group: group.into(),
            member_id: String::new(),
            instance_id: String::new(),
            session_timeout_ms: 30_000,
            topics: vec![topic.into()],
            assignor: Assignor::Range,
            owned: vec![],
            client_id: "wide".into(),
            client_host: String::new(),
        };
        let heartbeat = |group: &str, m: &GroupMemberState| HeartbeatRequest {
            group: group.into(),
            member_id: m.member_id.clone(),
            instance_id: String::new(),
            generation: m.generation,
            owned: m.assignment.clone(),
            wait_ms: 0,
        };
        let partitions = |m: &GroupMemberState| -> usize {
            m.assignment.iter().map(|t| t.partitions.len()).sum()
        };
        // ~131 KB per group reading all of "wide" (target and grants): a fourth passes 500 KiB.
        let mut wide = Vec::new();
        for g in 0..3 {
            let group = format!("wide-{g}");
            let m: GroupMemberState =
                client.group_request(&group, &join(&group, "wide")).await.unwrap();
            assert_eq!((m.error, partitions(&m)), (0, 1_000), "{}", m.message);
            wide.push((group, m));
        }
        let fourth: GroupMemberState =
            client.group_request("wide-3", &join("wide-3", "wide")).await.unwrap();
        assert_eq!(fourth.error, ErrorCode::ResourceLimit.as_u16(), "{}", fourth.message);
        let (group, first) = wide.remove(0);
        let leave = LeaveGroupRequest { group: group.clone(), member_id: first.member_id };
        let left: LeaveGroupResponse = client.group_request(&group, &leave).await.unwrap();
        assert_eq!(left.error, 0);
        // Groups reading a topic that does not exist yet hold little; then it is created with
        // 1,000 partitions, and every one of them grows at once.
        let mut later = Vec::new();
        for g in 0..4 {
            let group = format!("later-{g}");
            let m: GroupMemberState =
                client.group_request(&group, &join(&group, "later")).await.unwrap();
            assert_eq!(m.error, 0, "{}", m.message);
            later.push((group, m));
        }
        topic(&client, "later", 1_000).await;
        let mut removed = 0;
        let mut kept = 0;
        for (group, mut m) in later {
            // Heartbeats take the grants: the group grows by them too.
            let mut alive = true;
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let beat: HeartbeatResponse =
                    client.group_request(&group, &heartbeat(&group, &m)).await.unwrap();
                if beat.state.error == ErrorCode::UnknownMember.as_u16() {
                    alive = false;
                    break;
                }
                assert_eq!(beat.state.error, 0, "{}", beat.state.message);
                m = beat.state;
            }
            if alive {
                kept += 1;
            } else {
                removed += 1;
                // Joining again is refused while the budget is taken.
                let again: GroupMemberState =
                    client.group_request(&group, &join(&group, "later")).await.unwrap();
                assert_eq!(again.error, ErrorCode::ResourceLimit.as_u16(), "{}", again.message);
            }
        }
        assert!(removed >= 2 && kept >= 1, "{removed} groups removed, {kept} kept");
        // The groups that fitted before are left alone.
        for (group, m) in &wide {
            let beat: HeartbeatResponse =
                client.group_request(group, &heartbeat(group, m)).await.unwrap();
            assert_eq!((beat.state.error, partitions(&beat.state)), (0, 1_000));
        }
    });
}

#[test]
fn stale_generations_strangers_and_admin_commits_to_live_groups_are_refused() {
    let broker = Broker::start(2);
    let addr = broker.public.to_string();
    rt().block_on(async move {
        let client = Client::connect(&addr).await.unwrap();
        topic(&client, "t", 4).await;
        let a = raw_join(&client, "g").await;
        assert_eq!(a.error, 0, "{}", a.message);
        assert_eq!(a.assignment.iter().map(|t| t.partitions.len()).sum::<usize>(), 4);
        let old_generation = a.generation;
        let b = raw_join(&client, "g").await;
        assert_eq!(b.error, 0);
        let described = client.describe_group("g").await.unwrap();
        assert!(
            described
                .members
                .iter()
                .all(|m| (m.client_id.as_str(), m.client_host.as_str()) == ("raw", "127.0.0.1")),
            "client id as sent, host from the connection: {:?}",
            described.members
        );
        // a learns its smaller assignment in a newer generation.
        let hb: HeartbeatResponse = client
            .group_request(
                "g",
                &HeartbeatRequest {
                    group: "g".into(),
                    member_id: a.member_id.clone(),
                    instance_id: String::new(),
                    generation: old_generation,
                    owned: a.assignment.clone(),
                    wait_ms: 0,
                },
            )
            .await
            .unwrap();
        assert!(hb.state.generation > old_generation);
        let kept = hb.state.assignment[0].partitions[0];
        let err = client
            .commit_offsets("g", &a.member_id, old_generation, &[("t".into(), kept, 1)])
            .await
            .unwrap_err();
        assert!(
            matches!(err, ClientError::Group { code: ErrorCode::StaleGeneration, .. }),
            "{err}"
        );
        client
            .commit_offsets("g", &a.member_id, hb.state.generation, &[("t".into(), kept, 1)])
            .await
            .unwrap();
        let err = client
            .commit_offsets("g", "nobody", hb.state.generation, &[("t".into(), kept, 1)])
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Group { code: ErrorCode::UnknownMember, .. }), "{err}");
        let err = client.commit_offsets("g", "", 0, &[("t".into(), kept, 1)]).await.unwrap_err();
        assert!(matches!(err, ClientError::Group { code: ErrorCode::GroupNotEmpty, .. }), "{err}");
        // Bad ids and the internal topic.
        let bad = raw_join(&client, "bell\u{7}").await;
        assert_eq!(bad.error, ErrorCode::InvalidGroupId.as_u16());
        let err = client.delete_topic("__consumer_offsets").await.unwrap_err();
        assert!(err.to_string().contains("INTERNAL_TOPIC"), "{err}");
    });
}

#[test]
fn a_static_member_restarting_gets_its_partitions_back_without_a_rebalance() {
    let broker = Broker::start(2);
    let addr = broker.public.to_string();
    rt().block_on(async move {
        let client = Client::connect(&addr).await.unwrap();
        topic(&client, "s", 6).await;
        let static_config = |name: &str| GroupConfig {
            instance_id: Some(name.into()),
            session_timeout_ms: 5_000,
            ..config("svc", "s")
        };
        let (a_seen, b_seen): (Arc<Mutex<Seen>>, Arc<Mutex<Seen>>) = Default::default();
        let a = member(&client, static_config("svc-a"), a_seen.clone());
        let b = member(&client, static_config("svc-b"), b_seen.clone());
        settled(&[a_seen.clone(), b_seen.clone()], 6, &[3, 3]).await;
        let before = client.describe_group("svc").await.unwrap();
        let a_had = a_seen.lock().unwrap().assignment.clone();
        // a stops (a static member's close does not leave) and starts again at once.
        drop(a.1);
        a.0.await.unwrap();
        let again: Arc<Mutex<Seen>> = Arc::default();
        let a2 = member(&client, static_config("svc-a"), again.clone());
        settled(&[again.clone(), b_seen.clone()], 6, &[3, 3]).await;
        assert_eq!(again.lock().unwrap().assignment, a_had, "the same partitions come back");
        let after = client.describe_group("svc").await.unwrap();
        assert_eq!(after.generation, before.generation, "no rebalance");
        assert_eq!(after.members.len(), 2);
        for (task, stop) in [a2, b] {
            drop(stop);
            task.await.unwrap();
        }
    });
}

#[test]
fn group_members_and_committed_offsets_come_out_of_stated_budgets() {
    let broker = Broker::start_with_env(
        1,
        &[
            ("BROKER_GROUP_MEMBERS_PER_SHARD_MAX", "2"),
            ("BROKER_GROUP_OFFSETS_PER_SHARD_MAX", "3"),
            ("BROKER_TRANSACTIONAL_IDS_MAX", "1"),
        ],
    );
    let addr = broker.public.to_string();
    rt().block_on(async move {
        let client = Client::connect(&addr).await.unwrap();
        topic(&client, "t", 4).await;
        // Members: two fit, the third is refused (a rejoin would not count).
        assert_eq!(raw_join(&client, "a").await.error, 0);
        assert_eq!(raw_join(&client, "b").await.error, 0);
        let third = raw_join(&client, "c").await;
        assert_eq!(third.error, ErrorCode::ResourceLimit.as_u16(), "{}", third.message);
        assert!(third.message.contains("group_members_per_shard_max"), "{}", third.message);
        // Offsets: three new ones fit (administrative commits to an empty group), a fourth new
        // one is refused, and committing a known one again still works.
        let three: Vec<(String, u32, u64)> = (0..3).map(|p| ("t".to_string(), p, 1)).collect();
        client.commit_offsets("empty", "", 0, &three).await.unwrap();
        let err = client.commit_offsets("empty", "", 0, &[("t".into(), 3, 1)]).await.unwrap_err();
        assert!(err.to_string().contains("RESOURCE_LIMIT"), "{err}");
        client.commit_offsets("empty", "", 0, &[("t".into(), 0, 9)]).await.unwrap();
        // Transactional ids: one is remembered; a second name is refused, the first again is
        // fine. (RESOURCE_LIMIT is retriable: this client does not retry.)
        let once = client::ClientConfig { retries: 0, ..Default::default() };
        let client = Client::connect_with(&addr, once).await.unwrap();
        let producer = |name: &str| {
            let name = name.to_string();
            let client = client.clone();
            async move { client.init_producer_id(Some(&name)).await }
        };
        producer("first").await.unwrap();
        let err = producer("second").await.unwrap_err();
        assert!(err.to_string().contains("RESOURCE_LIMIT"), "{err}");
        assert_eq!(producer("first").await.unwrap().1, 1);
    });
}

/// Concurrent commits of new keys cannot pass `group_offsets_per_shard_max` together: the
/// room is checked with the enqueue, against applied and in-flight commits (before, each of
/// 8 concurrent commits saw the whole room and all 40 keys were stored on a cap of 10).
#[test]
fn concurrent_commits_of_new_offsets_stay_within_the_shards_cap() {
    let broker = Broker::start_with_env(1, &[("BROKER_GROUP_OFFSETS_PER_SHARD_MAX", "10")]);
    let addr = broker.public.to_string();
    rt().block_on(async move {
        let once = client::ClientConfig { retries: 0, ..Default::default() };
        let client = Client::connect_with(&addr, once).await.unwrap();
        topic(&client, "wide", 40).await;
        let commits = (0..8u32).map(|g| {
            let client = client.clone();
            async move {
                let keys: Vec<(String, u32, u64)> =
                    (0..5).map(|p| ("wide".to_string(), g * 5 + p, 1)).collect();
                let _ = client.commit_offsets(&format!("g{g}"), "", 0, &keys).await;
            }
        });
        futures_util::future::join_all(commits).await;
        let mut stored = 0;
        for g in 0..8 {
            stored += client.fetch_offsets(&format!("g{g}"), &[]).await.unwrap().len();
        }
        assert!((1..=10).contains(&stored), "{stored} new offsets stored on a cap of 10");
    });
}

/// At `transactional_ids_max`, a new transactional id takes the place of ids whose producer
/// has not initialized for `transactional_id_expiration_ms`; the forgetting and the times
/// survive a restart.
#[test]
fn transactional_ids_unused_past_their_expiration_make_room_for_new_ones() {
    let mut broker = Broker::start_with_env(
        1,
        &[("BROKER_TRANSACTIONAL_IDS_MAX", "1"), ("BROKER_TRANSACTIONAL_ID_EXPIRATION_MS", "3000")],
    );
    let once = client::ClientConfig { retries: 0, ..Default::default() };
    let init = |broker: &Broker, name: &'static str| {
        let (addr, once) = (broker.public.to_string(), once.clone());
        rt().block_on(async move {
            let client = Client::connect_with(&addr, once).await.unwrap();
            client.init_producer_id(Some(name)).await
        })
    };
    let (first_id, _) = init(&broker, "first").unwrap();
    let err = init(&broker, "second").unwrap_err();
    assert!(err.to_string().contains("transactional_id_expiration_ms"), "{err}");
    std::thread::sleep(Duration::from_millis(3_200));
    // "first" has not initialized for longer than the expiration: "second" takes its place.
    let (second_id, epoch) = init(&broker, "second").unwrap();
    assert_eq!(epoch, 0);
    assert_ne!(second_id, first_id);
    broker.stop();
    broker.restart();
    // Remembered across the restart (the next epoch), and just used: "first" is refused.
    assert_eq!(init(&broker, "second").unwrap(), (second_id, 1));
    let err = init(&broker, "first").unwrap_err();
    assert!(err.to_string().contains("RESOURCE_LIMIT"), "{err}");
}

/// Deleting offsets: some partitions, a whole topic, then the group once its member left;
/// refused while a member reads the topic or the group has members; gone for good after a
/// kill -9 and restart, while another group's offsets stay.
#[test]
fn deleted_group_offsets_stay_deleted_across_a_crash_and_members_protect_theirs() {
    let mut broker = Broker::start(2);
    let addr = broker.public.to_string();
    let runtime = rt();
    runtime.block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        topic(&client, "t", 2).await;
        topic(&client, "u", 1).await;
        let offsets = [("t".to_string(), 0, 5), ("t".to_string(), 1, 6), ("u".to_string(), 0, 7)];
        client.commit_offsets("g", "", 0, &offsets).await.unwrap();
        client.commit_offsets("keep", "", 0, &offsets).await.unwrap();
        // One partition, then a whole topic.
        let gone = client.delete_group_offsets("g", &[("t".into(), vec![1])]).await.unwrap();
        assert_eq!(gone, [("t".to_string(), 1)]);
        let gone = client.delete_group_offsets("g", &[("u".into(), vec![])]).await.unwrap();
        assert_eq!(gone, [("u".to_string(), 0)]);
        // Naming more partitions than the broker may have is refused (each named one gets an
        // outcome: the request must not make the shard hold many times its size).
        let many: Vec<u32> = (0..100_001).collect();
        let err = client.delete_group_offsets("g", &[("t".into(), many)]).await.unwrap_err();
        assert!(matches!(err, ClientError::Group { code: ErrorCode::InvalidRequest, .. }), "{err}");
        assert_eq!(client.fetch_offsets("g", &[]).await.unwrap(), [("t".to_string(), 0, 5)]);
        // A member reading "t" protects the group and the topic's offsets.
        let member = raw_join(&client, "g").await;
        assert_eq!(member.error, 0, "{}", member.message);
        let err = client.delete_group("g").await.unwrap_err();
        assert!(matches!(err, ClientError::Group { code: ErrorCode::GroupNotEmpty, .. }), "{err}");
        let err = client.delete_group_offsets("g", &[("t".into(), vec![])]).await.unwrap_err();
        assert!(
            matches!(err, ClientError::Partition { code: ErrorCode::GroupSubscribedToTopic, .. }),
            "{err}"
        );
        assert_eq!(client.fetch_offsets("g", &[]).await.unwrap(), [("t".to_string(), 0, 5)]);
        client
            .group_request::<_, wire::LeaveGroupResponse>(
                "g",
                &wire::LeaveGroupRequest { group: "g".into(), member_id: member.member_id },
            )
            .await
            .unwrap();
        // Empty now: the group goes.
        assert_eq!(client.delete_group("g").await.unwrap(), [("t".to_string(), 0)]);
        let err = client.delete_group("g").await.unwrap_err();
        assert!(matches!(err, ClientError::Group { code: ErrorCode::UnknownGroup, .. }), "{err}");
        let groups: Vec<String> =
            client.list_groups().await.unwrap().into_iter().map(|g| g.group).collect();
        assert_eq!(groups, ["keep"]);
    });
    broker.kill();
    broker.restart();
    let addr = broker.public.to_string();
    runtime.block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        assert!(client.fetch_offsets("g", &[]).await.unwrap().is_empty(), "deleted offsets back");
        let kept = client.fetch_offsets("keep", &[]).await.unwrap();
        assert_eq!(kept.len(), 3, "{kept:?}");
        let groups: Vec<String> =
            client.list_groups().await.unwrap().into_iter().map(|g| g.group).collect();
        assert_eq!(groups, ["keep"]);
    });
}

/// Offsets of a deleted topic are forgotten; a group without members or commits for the
/// retention loses its offsets, one with a member keeps them; both survive kill -9.
#[test]
fn offsets_of_deleted_topics_and_of_groups_idle_past_the_retention_are_forgotten() {
    const RETENTION_MS: u64 = 1_500;
    let mut broker = Broker::start_with_env(2, &[("BROKER_GROUP_OFFSETS_RETENTION_MS", "1500")]);
    let addr = broker.public.to_string();
    let runtime = rt();
    runtime.block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        topic(&client, "t", 1).await;
        topic(&client, "doomed", 2).await;
        // "busy" has a member (reading "t"); "idle" has none.
        let member = raw_join(&client, "busy").await;
        assert_eq!(member.error, 0, "{}", member.message);
        client
            .commit_offsets("busy", &member.member_id, member.generation, &[("t".into(), 0, 3)])
            .await
            .unwrap();
        let committed = Instant::now();
        let idle = [("t".to_string(), 0, 4), ("doomed".to_string(), 1, 9)];
        client.commit_offsets("idle", "", 0, &idle).await.unwrap();
        client.delete_topic("doomed").await.unwrap();
        // The deleted topic's offset goes first (the topic set changed), the rest stays
        // until the retention passed.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut left = client.fetch_offsets("idle", &[]).await.unwrap();
        while left.len() > 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            left = client.fetch_offsets("idle", &[]).await.unwrap();
        }
        if committed.elapsed() < Duration::from_millis(RETENTION_MS) {
            assert_eq!(left, [("t".to_string(), 0, 4)], "only the deleted topic's offset went");
        }
        while !left.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            left = client.fetch_offsets("idle", &[]).await.unwrap();
        }
        assert!(left.is_empty(), "idle group's offsets kept: {left:?}");
        eprintln!("idle group's offsets forgotten after {:?}", committed.elapsed());
        assert!(
            committed.elapsed() >= Duration::from_millis(RETENTION_MS),
            "forgotten before the retention passed"
        );
        // The member's group keeps its offset (heartbeats are not needed: the session is
        // 10 s and the member is still there).
        assert_eq!(client.fetch_offsets("busy", &[]).await.unwrap(), [("t".to_string(), 0, 3)]);
    });
    broker.kill();
    broker.restart();
    let addr = broker.public.to_string();
    runtime.block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        assert!(client.fetch_offsets("idle", &[]).await.unwrap().is_empty(), "expired came back");
        // Membership is not persisted: after the restart "busy" is empty, but its offsets
        // stay for a retention counted from the restart.
        assert_eq!(client.fetch_offsets("busy", &[]).await.unwrap(), [("t".to_string(), 0, 3)]);
    });
}

/// A topic deleted and created again at once is another topic: offsets committed to the
/// old one are not the new one's, at once (before any sweep) and after kill -9, while an
/// offset committed to the new one is kept.
#[test]
fn a_topic_deleted_and_created_again_does_not_inherit_the_old_offsets() {
    let mut broker = Broker::start(2);
    let addr = broker.public.to_string();
    let runtime = rt();
    runtime.block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        topic(&client, "again", 2).await;
        topic(&client, "kept", 1).await;
        let old = [("again".to_string(), 0, 40), ("again".to_string(), 1, 41)];
        client.commit_offsets("g", "", 0, &old).await.unwrap();
        client.commit_offsets("g", "", 0, &[("kept".into(), 0, 7)]).await.unwrap();
        client.delete_topic("again").await.unwrap();
        topic(&client, "again", 2).await;
        // No wait for the expiry sweep: the old offsets are not the new topic's.
        let now = client.fetch_offsets("g", &[]).await.unwrap();
        assert_eq!(now, [("kept".to_string(), 0, 7)], "offsets of the old topic served");
        assert!(client.fetch_offsets("g", &["again".into()]).await.unwrap().is_empty());
        client.commit_offsets("g", "", 0, &[("again".into(), 1, 2)]).await.unwrap();
        let want = [("again".to_string(), 1, 2), ("kept".to_string(), 0, 7)];
        assert_eq!(client.fetch_offsets("g", &[]).await.unwrap(), want);
    });
    broker.kill();
    broker.restart();
    let addr = broker.public.to_string();
    runtime.block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        let want = [("again".to_string(), 1, 2), ("kept".to_string(), 0, 7)];
        assert_eq!(client.fetch_offsets("g", &[]).await.unwrap(), want, "after kill -9");
    });
}
