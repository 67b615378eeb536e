//! Projection tables against the real broker: reads equal a model built from what was
//! produced (puts, overwrites, tombstones, headers), read-your-writes with `min_offset`, the
//! same after `kill -9` and a restart (snapshot + replay), refusals (not a table, the keys'
//! memory budget).

use std::collections::BTreeMap;

use client::{Client, ClientError, KeyRange, Producer, ProducerConfig};
use integration_tests::Broker;
use wire::{ErrorCode, OffsetSpec, TableEntry, TopicConfig};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// xorshift64*: a seeded workload without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Key → (value, headers) of the latest non-tombstone record.
type Model = BTreeMap<Vec<u8>, (Vec<u8>, Vec<(String, Vec<u8>)>)>;

/// Sends `count` records over `keys` keys (one in ten a tombstone), updating `model`;
/// returns the last acked offset + 1 per partition.
async fn produce(
    client: &Client,
    topic: &str,
    rng: &mut Rng,
    count: usize,
    keys: u64,
    model: &mut Model,
) -> BTreeMap<u32, u64> {
    let producer = Producer::new(client.clone(), ProducerConfig::default());
    let mut acks = Vec::new();
    for i in 0..count {
        let key = format!("user/{:04}", rng.below(keys)).into_bytes();
        if rng.below(10) == 0 {
            model.remove(&key);
            acks.push(producer.send(topic, Some(&key), None, &[]).await.unwrap());
        } else {
            let value = format!("value-{i}-{}", rng.next()).into_bytes();
            let headers = vec![("n".to_owned(), i.to_string().into_bytes())];
            let hs: Vec<(&str, &[u8])> =
                headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
            acks.push(producer.send(topic, Some(&key), Some(&value), &hs).await.unwrap());
            model.insert(key, (value, headers));
        }
    }
    producer.flush().await.unwrap();
    let mut ends = BTreeMap::new();
    for a in acks {
        let (p, o) = a.await.unwrap();
        let end = ends.entry(p).or_insert(0);
        *end = (*end).max(o + 1);
    }
    ends
}

fn as_model(entries: &[TableEntry]) -> Model {
    entries
        .iter()
        .map(|e| {
            let headers = e.headers.iter().map(|h| (h.key.clone(), h.value.clone())).collect();
            (e.key.clone(), (e.value.clone(), headers))
        })
        .collect()
}

/// Scans the whole table in pages of `page`, waiting for `ends` (read-your-writes).
async fn scan_all(client: &Client, topic: &str, ends: &BTreeMap<u32, u64>, page: u32) -> Model {
    let min_offsets: Vec<(u32, u64)> = ends.iter().map(|(&p, &o)| (p, o)).collect();
    let mut range = KeyRange::all();
    let mut entries = Vec::new();
    loop {
        let scan = client.table_scan(topic, &range, page, &min_offsets).await.unwrap();
        for (p, o) in &scan.offsets {
            assert!(*o >= ends.get(p).copied().unwrap_or(0), "partition {p} answered at {o}");
        }
        assert!(scan.entries.len() <= page as usize);
        assert!(scan.entries.windows(2).all(|w| w[0].key < w[1].key), "key order");
        entries.extend(scan.entries);
        match scan.next_key {
            Some(next) => range.start = next,
            None => break,
        }
    }
    as_model(&entries)
}

async fn check_gets(client: &Client, topic: &str, model: &Model, ends: &BTreeMap<u32, u64>) {
    for i in (0..300).step_by(7) {
        let key = format!("user/{i:04}").into_bytes();
        let partition = (client::producer::key_hash(&key) % 4) as u32;
        let min = ends.get(&partition).copied().unwrap_or(0);
        let got = client.table_get(topic, &key, min).await.unwrap();
        assert_eq!(got.partition, partition);
        assert!(got.offset >= min);
        let want = model.get(&key);
        let have = got.entry.as_ref().map(|e| as_model(std::slice::from_ref(e)));
        match (want, have) {
            (None, None) => {}
            (Some(w), Some(h)) => assert_eq!(h.get(&key), Some(w), "key {i}"),
            (w, h) => panic!("key {i}: model {w:?}, table {h:?}"),
        }
    }
}

#[test]
fn projection_reads_equal_the_model_across_kill_and_restart() {
    let mut broker = Broker::start_with_env(2, &[("BROKER_STATE_SNAPSHOT_INTERVAL_MS", "100")]);
    let addr = broker.public.to_string();
    let mut model = Model::new();
    let mut rng = Rng(0x7ab1e);
    let ends = rt().block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        let config = TopicConfig {
            partition_count: 4,
            retention_ms: -1,
            retention_bytes: -1,
            table: true,
            ..Default::default()
        };
        client.create_topic("profiles", config).await.unwrap();
        let ends = produce(&client, "profiles", &mut rng, 4_000, 300, &mut model).await;
        assert_eq!(scan_all(&client, "profiles", &ends, 1_000).await, model);
        // Small pages: the merge over 4 partitions resumes exactly where it stopped.
        assert_eq!(scan_all(&client, "profiles", &ends, 7).await, model);
        check_gets(&client, "profiles", &model, &ends).await;
        // A prefix and a range.
        let prefix = client
            .table_scan("profiles", &KeyRange::prefix(b"user/001"), 1_000, &[])
            .await
            .unwrap();
        let want: Model = model
            .range(b"user/001".to_vec()..b"user/002".to_vec())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(as_model(&prefix.entries), want);
        let empty = KeyRange { start: b"user/2".to_vec(), end: Some(b"user/1".to_vec()) };
        assert!(client.table_scan("profiles", &empty, 10, &[]).await.unwrap().entries.is_empty());
        // Let a snapshot cover most of it, then write more that only the log has.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        produce(&client, "profiles", &mut rng, 1_000, 300, &mut model).await
    });
    for p in 0..4 {
        let snapshot = broker.partition_dir("profiles", p).join("table.snapshot");
        assert!(snapshot.exists(), "{} was written", snapshot.display());
    }
    broker.kill();
    broker.restart();
    let addr = broker.public.to_string();
    rt().block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        // Everything acked durable is in the rebuilt table, with nothing else.
        assert_eq!(scan_all(&client, "profiles", &ends, 1_000).await, model);
        check_gets(&client, "profiles", &model, &ends).await;
        // Changes from before the snapshot the table reopened from are not remembered.
        match client.table_changes("profiles", 0, 0, 10).await {
            Err(ClientError::Partition { code: ErrorCode::OffsetOutOfRange, .. }) => {}
            other => panic!("expected OFFSET_OUT_OF_RANGE, got {other:?}"),
        }
        // Writes after the restart keep it current.
        let ends = produce(&client, "profiles", &mut rng, 500, 300, &mut model).await;
        assert_eq!(scan_all(&client, "profiles", &ends, 1_000).await, model);
    });
    assert!(
        broker.log_text().contains("table caught up with its log"),
        "the restart replayed the log's tail"
    );
}

#[test]
fn a_topic_that_is_not_a_table_and_a_spent_budget_are_refused_clearly() {
    // 40 keys of ~8 bytes fit (about 56 bytes each); 2,000 do not.
    let broker = Broker::start_with_env(1, &[("BROKER_TABLE_KEYS_BYTES_PER_SHARD", "4096")]);
    let addr = broker.public.to_string();
    rt().block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        let plain = TopicConfig { partition_count: 1, ..Default::default() };
        client.create_topic("plain", plain).await.unwrap();
        match client.table_get("plain", b"k", 0).await {
            Err(ClientError::Broker { code: ErrorCode::NotATable, .. }) => {}
            other => panic!("expected NOT_A_TABLE, got {other:?}"),
        }
        let table = TopicConfig { partition_count: 1, table: true, ..Default::default() };
        client.create_topic("small", table).await.unwrap();
        let mut model = Model::new();
        let mut rng = Rng(99);
        let ends = produce(&client, "small", &mut rng, 40, 40, &mut model).await;
        let got =
            client.table_scan("small", &KeyRange::all(), 100, &[(0, ends[&0])]).await.unwrap();
        assert_eq!(as_model(&got.entries), model);
        let ends = produce(&client, "small", &mut rng, 2_000, 2_000, &mut model).await;
        // The table stops at the budget and says so instead of answering from part of it.
        let mut refused = None;
        for _ in 0..50 {
            match client.table_get("small", b"user/0001", 0).await {
                Err(ClientError::Partition { code, .. }) => {
                    refused = Some(code);
                    break;
                }
                Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(refused, Some(ErrorCode::ResourceLimit), "ends {ends:?}");
        // The table that stopped gave its keys' memory back: another table of the shard
        // still serves (before: the stopped one held the whole budget).
        let table = TopicConfig { partition_count: 1, table: true, ..Default::default() };
        client.create_topic("other", table).await.unwrap();
        let mut other = Model::new();
        let ends = produce(&client, "other", &mut Rng(7), 10, 10, &mut other).await;
        let got =
            client.table_scan("other", &KeyRange::all(), 100, &[(0, ends[&0])]).await.unwrap();
        assert_eq!(as_model(&got.entries), other);
    });
    assert!(broker.log_text().contains("table_keys_bytes_per_shard"));
}

/// (group, window start) → (count, values, sum, min, max, last).
type StateModel = BTreeMap<(Vec<u8>, i64), (u64, u64, f64, f64, f64, f64)>;

/// Sends `count` orders (key `user/N`, header `region`, header `qty`, JSON `amount`) with
/// strictly increasing timestamps from `ts`, to both state tables; updates both models.
async fn produce_orders(
    client: &Client,
    rng: &mut Rng,
    count: usize,
    ts: &mut i64,
    by_region: &mut StateModel,
    by_user_minute: &mut StateModel,
) -> (BTreeMap<u32, u64>, BTreeMap<u32, u64>) {
    let mut batches: BTreeMap<(&str, u32), wire::BatchBuilder> = BTreeMap::new();
    for _ in 0..count {
        *ts += 97;
        let user = format!("user/{:02}", rng.below(40));
        let region = ["eu", "us", "apac"][rng.below(3) as usize];
        let amount = rng.below(1_000) as i64 - 100;
        let qty = rng.below(10);
        // One in ten has no amount: counted, not summed.
        let value = match rng.below(10) {
            0 => br#"{"note":"no amount"}"#.to_vec(),
            _ => format!(r#"{{"amount":{amount}}}"#).into_bytes(),
        };
        let has_amount = !value.starts_with(br#"{"note""#);
        let qty_text = qty.to_string();
        let headers: [(&str, &[u8]); 2] =
            [("region", region.as_bytes()), ("qty", qty_text.as_bytes())];
        let add = |model: &mut StateModel, group: Vec<u8>, window: i64, v: Option<f64>| {
            let e = model.entry((group, window)).or_insert((0, 0, 0.0, f64::MAX, f64::MIN, 0.0));
            e.0 += 1;
            if let Some(v) = v {
                e.1 += 1;
                e.2 += v;
                e.3 = e.3.min(v);
                e.4 = e.4.max(v);
                e.5 = v;
            }
        };
        add(by_region, region.as_bytes().to_vec(), 0, has_amount.then_some(amount as f64));
        add(
            by_user_minute,
            user.clone().into_bytes(),
            *ts - ts.rem_euclid(60_000),
            Some(qty as f64),
        );
        for (topic, partitions) in [("by_region", 3u64), ("by_user_minute", 2u64), ("recent", 2u64)]
        {
            let p = (client::producer::key_hash(user.as_bytes()) % partitions) as u32;
            let b = batches.entry((topic, p)).or_insert_with(|| wire::BatchBuilder::new(1 << 20));
            b.append(*ts, Some(user.as_bytes()), Some(&value), &headers).unwrap();
        }
    }
    let (mut region_ends, mut user_ends) = (BTreeMap::new(), BTreeMap::new());
    for ((topic, p), mut b) in batches {
        let batch = b.finish().unwrap();
        let r = client.produce_batches(topic, p, &batch, wire::AckLevel::Durable).await.unwrap();
        // "recent" gets the same records as "by_user_minute" at the same offsets.
        let ends = if topic == "by_region" { &mut region_ends } else { &mut user_ends };
        ends.insert(p, r.last_offset as u64 + 1);
    }
    (region_ends, user_ends)
}

/// Each group's newest two windows.
fn newest_two(model: &StateModel) -> StateModel {
    let mut out = StateModel::new();
    for ((key, window), v) in model.iter().rev() {
        if out.keys().filter(|(k, _)| k == key).count() < 2 {
            out.insert((key.clone(), *window), *v);
        }
    }
    out
}

async fn read_state(client: &Client, topic: &str, ends: &BTreeMap<u32, u64>) -> StateModel {
    let min_offsets: Vec<(u32, u64)> = ends.iter().map(|(&p, &o)| (p, o)).collect();
    let scan = client.state_scan(topic, &KeyRange::all(), 1_000, &min_offsets).await.unwrap();
    assert_eq!(scan.next_key, None);
    scan.entries
        .into_iter()
        .map(|e| {
            let (min, max) = (e.min.unwrap_or(f64::MAX), e.max.unwrap_or(f64::MIN));
            (
                (e.key, e.window_start_ms),
                (e.count, e.values, e.sum, min, max, e.last.unwrap_or(0.0)),
            )
        })
        .collect()
}

#[test]
fn state_tables_equal_the_model_across_kill_and_restart() {
    let mut broker = Broker::start_with_env(2, &[("BROKER_STATE_SNAPSHOT_INTERVAL_MS", "100")]);
    let addr = broker.public.to_string();
    let (mut by_region, mut by_user_minute) = (StateModel::new(), StateModel::new());
    let mut rng = Rng(0x57a7e);
    let mut ts = 1_700_000_000_000i64;
    let (region_ends, user_ends) = rt().block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        let region = wire::AggregateSpec {
            group_by_header: Some("region".into()),
            field_json_path: Some("$.amount".into()),
            ..Default::default()
        };
        let user = wire::AggregateSpec {
            field_header: Some("qty".into()),
            window_ms: 60_000,
            ..Default::default()
        };
        let recent = wire::AggregateSpec { windows_kept: 2, ..user.clone() };
        for (name, partitions, spec) in
            [("by_region", 3, region), ("by_user_minute", 2, user), ("recent", 2, recent)]
        {
            let config = TopicConfig {
                partition_count: partitions,
                retention_ms: -1,
                retention_bytes: -1,
                table: true,
                aggregate: Some(spec),
                ..Default::default()
            };
            client.create_topic(name, config).await.unwrap();
        }
        // A bad declaration is refused at creation, naming the field.
        let bad = TopicConfig {
            partition_count: 1,
            table: true,
            aggregate: Some(wire::AggregateSpec {
                field_json_path: Some("$.a..b".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        match client.create_topic("bad", bad).await {
            Err(ClientError::Broker { code: ErrorCode::InvalidTopicConfig, message, .. }) => {
                assert!(message.contains("aggregate"), "{message}")
            }
            other => panic!("expected INVALID_TOPIC_CONFIG, got {other:?}"),
        }
        let ends =
            produce_orders(&client, &mut rng, 2_000, &mut ts, &mut by_region, &mut by_user_minute)
                .await;
        assert_eq!(read_state(&client, "by_region", &ends.0).await, by_region);
        assert_eq!(read_state(&client, "by_user_minute", &ends.1).await, by_user_minute);
        assert_eq!(read_state(&client, "recent", &ends.1).await, newest_two(&by_user_minute));
        assert!(
            by_user_minute.keys().map(|(_, w)| w).collect::<std::collections::BTreeSet<_>>().len()
                > 2,
            "several windows"
        );
        let eu = client.state_get("by_region", b"eu", &[]).await.unwrap();
        assert_eq!(eu.entries.len(), 1);
        assert_eq!(eu.entries[0].count, by_region[&(b"eu".to_vec(), 0)].0);
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        produce_orders(&client, &mut rng, 500, &mut ts, &mut by_region, &mut by_user_minute).await
    });
    broker.kill();
    broker.restart();
    let addr = broker.public.to_string();
    rt().block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        assert_eq!(read_state(&client, "by_region", &region_ends).await, by_region);
        assert_eq!(read_state(&client, "by_user_minute", &user_ends).await, by_user_minute);
        assert_eq!(read_state(&client, "recent", &user_ends).await, newest_two(&by_user_minute));
    });
    for p in 0..3 {
        assert!(broker.partition_dir("by_region", p).join("aggregates.json").exists());
    }
}

#[test]
fn the_change_feed_names_each_keys_previous_record_and_tombstones() {
    let broker = Broker::start(2);
    let addr = broker.public.to_string();
    rt().block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        let config = TopicConfig { partition_count: 2, table: true, ..Default::default() };
        client.create_topic("feed", config).await.unwrap();
        let mut model = Model::new();
        let mut rng = Rng(0xfeed);
        let ends = produce(&client, "feed", &mut rng, 300, 40, &mut model).await;
        // "Now": every partition's table has applied everything written so far.
        let min_offsets: Vec<(u32, u64)> = ends.iter().map(|(&p, &o)| (p, o)).collect();
        let now = client.table_scan("feed", &KeyRange::all(), 1_000, &min_offsets).await.unwrap();
        assert_eq!(now.next_key, None);
        // Each key's live record at "now", from the same scan.
        let mut live: BTreeMap<Vec<u8>, u64> =
            now.entries.iter().map(|e| (e.key.clone(), e.offset)).collect();
        let producer = Producer::new(client.clone(), ProducerConfig::default());
        let mut sent = Vec::new();
        for i in 0..400u64 {
            let key = format!("user/{:04}", rng.below(60)).into_bytes();
            let value = (i % 7 != 0).then(|| format!("v{i}").into_bytes());
            sent.push((
                key.clone(),
                producer.send("feed", Some(&key), value.as_deref(), &[]).await.unwrap(),
            ));
        }
        producer.flush().await.unwrap();
        let mut acked: Vec<(Vec<u8>, u32, u64)> = Vec::new();
        for (key, ack) in sent {
            let (p, o) = ack.await.unwrap();
            acked.push((key, p, o));
        }
        let mut got = Vec::new();
        for &(partition, from) in &now.offsets {
            let want: Vec<u64> = acked.iter().filter(|a| a.1 == partition).map(|a| a.2).collect();
            let mut at = from;
            let mut mine = Vec::new();
            while mine.len() < want.len() {
                let changes = client.table_changes("feed", partition, at, 50).await.unwrap();
                assert!(changes.entries.len() <= 50);
                assert!(changes.next_offset > at, "the feed moves on");
                mine.extend(changes.entries);
                at = changes.next_offset;
            }
            assert_eq!(mine.iter().map(|e| e.offset).collect::<Vec<_>>(), want);
            // Nothing more: a read at the end waits, then answers empty at the same place.
            let idle = client.table_changes("feed", partition, at, 50).await.unwrap();
            assert!(idle.entries.is_empty());
            assert_eq!(idle.next_offset, at);
            got.extend(mine);
        }
        // Each change names the key's live record before it; a tombstone ends it.
        got.sort_by_key(|e| (client::producer::key_hash(&e.key) % 2, e.offset));
        for e in &got {
            assert_eq!(e.previous_offset, live.get(&e.key).copied(), "{e:?}");
            if e.tombstone {
                assert!(e.value.is_empty());
                live.remove(&e.key);
            } else {
                live.insert(e.key.clone(), e.offset);
            }
        }
        assert!(got.iter().any(|e| e.tombstone) && got.iter().any(|e| e.previous_offset.is_some()));
        // The feed remembers every change since the table opened (at offset 0 here).
        assert_eq!(client.table_changes("feed", 0, 0, 10).await.unwrap().entries.len(), 10);
    });
}

/// Region → (count, values, sum, min, max) of `amount`.
type RegionModel = BTreeMap<Vec<u8>, (u64, u64, f64, f64, f64)>;

async fn produce_regions(
    client: &Client,
    rng: &mut Rng,
    count: usize,
    model: &mut RegionModel,
) -> BTreeMap<u32, u64> {
    let producer = Producer::new(client.clone(), ProducerConfig::default());
    let mut acks = Vec::new();
    for _ in 0..count {
        let user = format!("user/{:02}", rng.below(30));
        let region = ["eu", "us", "apac"][rng.below(3) as usize];
        let amount = rng.below(500) as f64;
        let value = format!(r#"{{"amount":{amount}}}"#);
        let hs: [(&str, &[u8]); 1] = [("region", region.as_bytes())];
        acks.push(
            producer
                .send("orders", Some(user.as_bytes()), Some(value.as_bytes()), &hs)
                .await
                .unwrap(),
        );
        let e = model.entry(region.as_bytes().to_vec()).or_insert((0, 0, 0.0, f64::MAX, f64::MIN));
        (e.0, e.1, e.2, e.3, e.4) =
            (e.0 + 1, e.1 + 1, e.2 + amount, e.3.min(amount), e.4.max(amount));
    }
    producer.flush().await.unwrap();
    let mut ends = BTreeMap::new();
    for a in acks {
        let (p, o) = a.await.unwrap();
        let end = ends.entry(p).or_insert(0);
        *end = (*end).max(o + 1);
    }
    ends
}

async fn read_regions(client: &Client, ends: &BTreeMap<u32, u64>) -> RegionModel {
    let min_offsets: Vec<(u32, u64)> = ends.iter().map(|(&p, &o)| (p, o)).collect();
    let scan = client.state_scan("revenue", &KeyRange::all(), 100, &min_offsets).await.unwrap();
    scan.entries
        .into_iter()
        .map(|e| (e.key, (e.count, e.values, e.sum, e.min.unwrap(), e.max.unwrap())))
        .collect()
}

#[test]
fn a_state_table_over_an_existing_topic_replays_it_and_survives_a_crash() {
    let mut broker = Broker::start_with_env(2, &[("BROKER_STATE_SNAPSHOT_INTERVAL_MS", "100")]);
    let addr = broker.public.to_string();
    let mut model = RegionModel::new();
    let mut rng = Rng(0x0de7);
    let spec = wire::AggregateSpec {
        group_by_header: Some("region".into()),
        field_json_path: Some("$.amount".into()),
        ..Default::default()
    };
    let ends = rt().block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        let config = TopicConfig { partition_count: 3, ..Default::default() };
        client.create_topic("orders", config).await.unwrap();
        // Records stored before the table exists count too: it replays the topic.
        produce_regions(&client, &mut rng, 600, &mut model).await;
        client.create_table("revenue", "orders", spec.clone()).await.unwrap();
        let ends = produce_regions(&client, &mut rng, 400, &mut model).await;
        assert_eq!(read_regions(&client, &ends).await, model);
        assert!(client.is_state_table("revenue").await.unwrap());
        // Names are shared with topics; the topic must exist; the declaration is checked.
        let clash = |r: Result<(), ClientError>, want: ErrorCode| match r {
            Err(ClientError::Broker { code, .. }) => assert_eq!(code, want),
            other => panic!("expected {want:?}, got {other:?}"),
        };
        clash(
            client.create_table("orders", "orders", spec.clone()).await,
            ErrorCode::TopicAlreadyExists,
        );
        clash(client.create_table("t2", "nope", spec.clone()).await, ErrorCode::UnknownTopic);
        let bad = wire::AggregateSpec { window_ms: 0, windows_kept: 2, ..spec.clone() };
        clash(client.create_table("t2", "orders", bad).await, ErrorCode::InvalidTopicConfig);
        // It counts every record: its topic cannot be compacted, nor a compacted topic get one.
        let compact = [("compact".to_owned(), "true".to_owned())];
        let r = client.alter_topic_config("orders", &compact, false).await.map(|_| ());
        clash(r, ErrorCode::InvalidTopicConfig);
        let kept = TopicConfig { partition_count: 1, compact: true, ..Default::default() };
        client.create_topic("kept", kept).await.unwrap();
        clash(client.create_table("t3", "kept", spec.clone()).await, ErrorCode::InvalidTopicConfig);
        let plain = TopicConfig { partition_count: 1, ..Default::default() };
        match client.create_topic("revenue", plain).await {
            Err(ClientError::Broker { code: ErrorCode::TopicAlreadyExists, .. }) => {}
            other => panic!("a topic named like a table: {other:?}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        produce_regions(&client, &mut rng, 300, &mut model).await
    });
    broker.kill();
    broker.restart();
    let addr = broker.public.to_string();
    rt().block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        assert_eq!(read_regions(&client, &ends).await, model);
    });
    let snapshots = |b: &Broker| {
        (0..3).filter(|p| b.partition_dir("orders", *p).join("table-revenue.json").exists()).count()
    };
    assert_eq!(snapshots(&broker), 3, "every partition stored the table's snapshot");
    let kept = |p: u32| broker.data_dir.with_extension(format!("revenue-{p}.json"));
    for p in 0..3 {
        std::fs::copy(broker.partition_dir("orders", p).join("table-revenue.json"), kept(p))
            .unwrap();
    }
    rt().block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        client.delete_table("revenue").await.unwrap();
        assert!(client.state_scan("revenue", &KeyRange::all(), 10, &[]).await.is_err());
        assert!(client.metadata().tables.is_empty());
    });
    assert_eq!(snapshots(&broker), 0, "a deleted table's snapshots are removed");
    // A snapshot that outlives its table (being stored as the table was deleted, or left by a
    // crash) is not taken by a table declared again under its name with other settings:
    // grouped by record key now, it replays the topic (before: it started from the old
    // table's groups by region).
    for p in 0..3 {
        std::fs::copy(kept(p), broker.partition_dir("orders", p).join("table-revenue.json"))
            .unwrap();
    }
    rt().block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        let by_user = wire::AggregateSpec { group_by_header: None, ..spec.clone() };
        client.create_table("revenue", "orders", by_user).await.unwrap();
        let min_offsets: Vec<(u32, u64)> = ends.iter().map(|(&p, &o)| (p, o)).collect();
        let scan = client.state_scan("revenue", &KeyRange::all(), 100, &min_offsets).await.unwrap();
        assert!(scan.entries.iter().all(|e| e.key.starts_with(b"user/")), "old groups kept");
        assert_eq!(scan.entries.iter().map(|e| e.count).sum::<u64>(), 1300);
        client.delete_table("revenue").await.unwrap();
    });
    rt().block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        // A topic's deletion takes its tables with it.
        client.create_table("again", "orders", spec.clone()).await.unwrap();
        client.delete_topic("orders").await.unwrap();
        assert!(client.metadata().tables.is_empty());
    });
}

/// One partition of a projection table with 4 KiB segments of which 16 KiB are kept: a few
/// hundred small records make retention delete segments.
fn small_retained_table() -> TopicConfig {
    TopicConfig {
        partition_count: 1,
        table: true,
        segment_bytes_max: 4096,
        retention_bytes: 16 << 10,
        retention_ms: -1,
        ..Default::default()
    }
}

/// A scan page whose keys include one whose record retention deleted (the table forgets it
/// when a read finds it gone) still names where the rest starts: before, the page came back
/// without `next_key`, and the keys after it were never returned.
#[test]
fn a_scan_past_a_key_whose_record_retention_deleted_still_reaches_every_key() {
    let broker = Broker::start_with_env(1, &[("BROKER_RETENTION_CHECK_MS", "100")]);
    let addr = broker.public.to_string();
    rt().block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        client.create_topic("pages", small_retained_table()).await.unwrap();
        let producer = Producer::new(client.clone(), ProducerConfig::default());
        let filler = vec![7u8; 200];
        let mut acks = vec![producer.send("pages", Some(b"a"), Some(b"old"), &[]).await.unwrap()];
        producer.flush().await.unwrap();
        // Enough of key z to roll many segments, so the one holding a's record goes.
        for _ in 0..300 {
            acks.push(producer.send("pages", Some(b"z"), Some(&filler), &[]).await.unwrap());
            producer.flush().await.unwrap();
        }
        for key in [b"b", b"c", b"d"] {
            acks.push(producer.send("pages", Some(key), Some(b"new"), &[]).await.unwrap());
        }
        producer.flush().await.unwrap();
        let mut end = 0;
        for a in acks {
            end = end.max(a.await.unwrap().1 + 1);
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while client.list_offsets("pages", OffsetSpec::Earliest).await.unwrap()[0].1 == 0 {
            assert!(std::time::Instant::now() < deadline, "retention never deleted a's record");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let mut range = KeyRange::all();
        let mut keys = Vec::new();
        for _ in 0..10 {
            let page = client.table_scan("pages", &range, 2, &[(0, end)]).await.unwrap();
            keys.extend(page.entries.into_iter().map(|e| e.key));
            match page.next_key {
                Some(k) => range.start = k,
                None => break,
            }
        }
        let want: Vec<Vec<u8>> = [&b"b"[..], b"c", b"d", b"z"].iter().map(|k| k.to_vec()).collect();
        assert_eq!(keys, want);
    });
}

/// Keys whose latest record retention deleted leave the table's memory when retention moves
/// the log's start, not only when a read finds them gone: before, a table over a topic with
/// retention and ever new keys (session ids, order ids) kept every key it ever saw until the
/// shard's `table_keys_bytes_per_shard` refused the next, and the table answered
/// `RESOURCE_LIMIT` from then on. The changes before the start go too.
#[test]
fn retention_takes_the_keys_it_deleted_out_of_the_table() {
    let broker = Broker::start_with_env(
        1,
        &[("BROKER_RETENTION_CHECK_MS", "100"), ("BROKER_METRICS_LISTEN", "127.0.0.1:0")],
    );
    let addr = broker.public.to_string();
    rt().block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        client.create_topic("sessions", small_retained_table()).await.unwrap();
        let producer = Producer::new(client.clone(), ProducerConfig::default());
        let value = vec![7u8; 200];
        const KEYS: u64 = 300;
        let mut acks = Vec::new();
        for i in 0..KEYS {
            let key = format!("key-{i:04}"); // 8 bytes; key i at offset i
            acks.push(
                producer.send("sessions", Some(key.as_bytes()), Some(&value), &[]).await.unwrap(),
            );
            producer.flush().await.unwrap();
        }
        for (i, a) in acks.into_iter().enumerate() {
            assert_eq!(a.await.unwrap().1, i as u64);
        }
        // Each key held: its bytes + 48 (node and offset) + 16 (its change).
        let held = |keys: u64| (keys * (8 + 48 + 16)) as f64;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let start = loop {
            let start = client.list_offsets("sessions", OffsetSpec::Earliest).await.unwrap()[0].1;
            let bytes = broker.metric("broker_table_keys_bytes", 0).expect("metrics on");
            if start > 0 && bytes == held(KEYS - start) {
                break start;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "log start {start}: the table holds {bytes} bytes, {} for the keys after it \
                 ({} for all {KEYS})",
                held(KEYS - start),
                held(KEYS)
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        // Retention may move the start again meanwhile: a scan between two equal starts.
        let mut start = start;
        loop {
            let scan = client.table_scan("sessions", &KeyRange::all(), 1000, &[(0, KEYS)]).await;
            let keys: Vec<Vec<u8>> = scan.unwrap().entries.into_iter().map(|e| e.key).collect();
            let after = client.list_offsets("sessions", OffsetSpec::Earliest).await.unwrap()[0].1;
            if after == start {
                let want: Vec<Vec<u8>> =
                    (start..KEYS).map(|i| format!("key-{i:04}").into_bytes()).collect();
                assert_eq!(keys, want, "the table has exactly the keys whose records are kept");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the log start keeps moving");
            // The sweep follows the retention pass that moved the start.
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            start = after;
        }
        let gone = client.table_get("sessions", b"key-0000", KEYS).await.unwrap();
        assert!(gone.entry.is_none());
        // The change feed starts at the log's start now.
        match client.table_changes("sessions", 0, 0, 10).await {
            Err(ClientError::Partition { code: ErrorCode::OffsetOutOfRange, .. }) => {}
            other => panic!("changes from 0 after retention: {other:?}"),
        }
    });
}

/// DeleteRecords trims a table's change feed at once (a feed from before the new start
/// answers OFFSET_OUT_OF_RANGE) and its deleted keys read as absent at once; their memory
/// is given back by the next retention pass, not by the request (a sweep of every key per
/// request let deletions in steps of one record hold the shard).
#[test]
fn deleted_records_trim_the_change_feed_at_once() {
    // The default retention check (30 s): no retention pass runs during the test.
    let broker = Broker::start_with_env(1, &[("BROKER_METRICS_LISTEN", "127.0.0.1:0")]);
    let addr = broker.public.to_string();
    rt().block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        client.create_topic("carts", small_retained_table()).await.unwrap();
        let producer = Producer::new(client.clone(), ProducerConfig::default());
        let mut acks = Vec::new();
        for key in [b"a", b"b", b"c"] {
            acks.push(producer.send("carts", Some(key), Some(b"v"), &[]).await.unwrap());
        }
        producer.flush().await.unwrap();
        for (i, a) in acks.into_iter().enumerate() {
            assert_eq!(a.await.unwrap().1, i as u64);
        }
        let feed = client.table_changes("carts", 0, 0, 10).await.unwrap();
        assert_eq!(feed.entries.len(), 3);
        let held = broker.metric("broker_table_keys_bytes", 0).expect("metrics on");
        let kept = client.delete_records("carts", &[(0, wire::DeleteBefore::Offset(2))]).await;
        assert_eq!(kept.unwrap(), [(0, 2)]);
        match client.table_changes("carts", 0, 0, 10).await {
            Err(ClientError::Partition { code: ErrorCode::OffsetOutOfRange, .. }) => {}
            other => panic!("changes from 0 after the deletion: {other:?}"),
        }
        let feed = client.table_changes("carts", 0, 2, 10).await.unwrap();
        assert_eq!(feed.entries.iter().map(|e| e.key.clone()).collect::<Vec<_>>(), [b"c"]);
        assert!(client.table_get("carts", b"a", 3).await.unwrap().entry.is_none());
        let scan = client.table_scan("carts", &KeyRange::all(), 10, &[(0, 3)]).await.unwrap();
        assert_eq!(scan.entries.iter().map(|e| e.key.clone()).collect::<Vec<_>>(), [b"c"]);
        // The two changes' memory came back; the keys' waits for the retention pass (a read
        // that found a key gone forgets it: the get and the scan took a and b out).
        let now = broker.metric("broker_table_keys_bytes", 0).expect("metrics on");
        assert!(now < held, "{now} of {held}");
    });
}

/// A table too large to snapshot in one step (256 KiB: ~12,000 of these keys) is snapshotted
/// a step at a time while records keep arriving (a snapshot every 50 ms), and the table
/// reopened from such a snapshot after kill -9 equals the model. Before, the whole table was
/// encoded at once on the shard's thread (a million keys held it 80 ms) and copied in memory.
#[test]
fn a_large_table_snapshotted_in_steps_while_records_arrive_survives_a_crash() {
    let mut broker = Broker::start_with_env(1, &[("BROKER_STATE_SNAPSHOT_INTERVAL_MS", "50")]);
    let addr = broker.public.to_string();
    let mut model = Model::new();
    let mut rng = Rng(0x5ca1e);
    const KEYS: u64 = 40_000;
    let (ends, total) = rt().block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        let config = TopicConfig {
            partition_count: 1,
            retention_ms: -1,
            retention_bytes: -1,
            table: true,
            ..Default::default()
        };
        client.create_topic("big", config).await.unwrap();
        let mut ends = BTreeMap::new();
        for _ in 0..12 {
            ends = produce(&client, "big", &mut rng, 5_000, KEYS, &mut model).await;
        }
        let total = ends[&0];
        (ends, total)
    });
    let snapshot = broker.partition_dir("big", 0).join("table.snapshot");
    let bytes = std::fs::metadata(&snapshot).map(|m| m.len()).unwrap_or(0);
    assert!(bytes > 2 * (256 << 10), "{} holds {bytes} bytes: 3 steps", snapshot.display());
    broker.kill();
    broker.restart();
    let addr = broker.public.to_string();
    rt().block_on(async {
        let client = Client::connect(&addr).await.unwrap();
        assert_eq!(scan_all(&client, "big", &ends, 5_000).await, model);
    });
    // It reopened from a snapshot: the replay read less than the whole log.
    let log = broker.log_text();
    let replayed: u64 = log
        .lines()
        .filter(|l| l.contains("table caught up with its log"))
        .filter_map(|l| l.split("replayed_offsets=").nth(1))
        .filter_map(|v| v.split_whitespace().next()?.parse().ok())
        .next_back()
        .unwrap_or(0);
    assert!(replayed < total, "the restart replayed {replayed} of {total} offsets");
}
