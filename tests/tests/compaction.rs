//! Compaction against the real broker: a compacted topic keeps exactly each key's latest
//! record (a model of a random keyed workload decides which), tombstones take their key with
//! them, offsets never move, a consumer reads dense batches across cleanings, and kill -9 in
//! the middle of cleaning loses nothing (a seeded kill loop; `COMPACTION_SEED` replays it).
//! Small cleaned segments merge, each cleaned segment has its index files at once (fetches
//! by offset and by timestamp into them are right), and the cleaner's progress is on disk.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use integration_tests::{fetch_all, produce, Broker, Conn};
use wire::*;

const TOPIC: &str = "kv";

/// A record as produced: key and value (`None`: a tombstone).
type Rec = (Option<Vec<u8>>, Option<Vec<u8>>);

fn create_compacted(conn: &mut Conn, delete_retention_ms: i64, segment_bytes_max: u64) {
    let resp: CreateTopicResponse = conn.call(&CreateTopicRequest {
        name: TOPIC.into(),
        config: TopicConfig {
            partition_count: 1,
            segment_bytes_max,
            compact: true,
            delete_retention_ms,
            ..Default::default()
        },
    });
    assert_eq!(resp.error, 0, "create: {}", resp.message);
    let c = resp.topic.expect("topic").config;
    assert!(c.compact, "the topic says it is compacted");
}

/// Produces `records` as one durable batch; the offset of its first record.
fn append(conn: &mut Conn, records: &[Rec], ts: i64) -> u64 {
    let mut b = BatchBuilder::new(1 << 20);
    for (k, v) in records {
        b.append(ts, k.as_deref(), v.as_deref(), &[("h", b"1")]).unwrap();
    }
    let r = produce(conn, TOPIC, 0, &b.finish().unwrap(), AckLevel::Durable);
    assert_eq!(r.error, 0, "produce: {:?}", ErrorCode::from_u16(r.error));
    r.base_offset as u64
}

fn high_watermark(conn: &mut Conn) -> u64 {
    let resp: FetchResponse = conn.call(&FetchRequest {
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: 1,
        topics: vec![FetchTopic {
            name: TOPIC.into(),
            partitions: vec![FetchPartition { partition: 0, offset: 0, max_bytes: 1 }],
        }],
    });
    resp.topics[0].partitions[0].high_watermark
}

/// Offset → record of everything stored (dense batches checked by `fetch_all`).
fn stored(conn: &mut Conn) -> BTreeMap<u64, Rec> {
    let hw = high_watermark(conn);
    let mut out = BTreeMap::new();
    let mut scratch = AlignedVec::new();
    for bytes in fetch_all(conn, TOPIC, 0, hw) {
        let aligned = to_aligned(&bytes);
        let env = BatchEnvelope::validate(&aligned).unwrap();
        let view = env.open(&mut scratch).unwrap();
        for r in view.records() {
            out.insert(r.offset(), (r.key().map(<[u8]>::to_vec), r.value().map(<[u8]>::to_vec)));
        }
    }
    out
}

fn random_records(rng: &mut fastrand::Rng, keys: u32, value_bytes: usize) -> Vec<Rec> {
    (0..rng.usize(1..6))
        .map(|_| {
            let key =
                (rng.u8(0..20) != 0).then(|| format!("key-{}", rng.u32(0..keys)).into_bytes());
            let value = (rng.u8(0..10) != 0)
                .then(|| (0..rng.usize(1..value_bytes)).map(|_| rng.u8(..)).collect::<Vec<u8>>());
            (key, value)
        })
        .collect()
}

/// Records a compacted log must still hold of `produced` (all of them durable): keyless ones,
/// and each key's latest unless it is a tombstone.
fn expected(produced: &BTreeMap<u64, Rec>) -> BTreeMap<u64, Rec> {
    let mut latest: BTreeMap<&[u8], u64> = BTreeMap::new();
    for (o, (k, _)) in produced {
        if let Some(k) = k {
            latest.insert(k, *o);
        }
    }
    produced
        .iter()
        .filter(|(o, (k, v))| match k {
            None => true,
            Some(k) => latest[k.as_slice()] == **o && v.is_some(),
        })
        .map(|(o, r)| (*o, r.clone()))
        .collect()
}

#[test]
fn a_compacted_topic_keeps_exactly_each_keys_latest_record_at_its_offset() {
    // Every pass runs (no dirty-ratio wait), so the log converges on the model.
    let env = [("BROKER_RETENTION_CHECK_MS", "100"), ("BROKER_CLEANER_DIRTY_PERCENT_MIN", "0")];
    let mut broker = Broker::start_with_env(1, &env);
    let mut conn = broker.connect();
    create_compacted(&mut conn, 1, 4096);
    let mut rng = fastrand::Rng::with_seed(7);
    let mut produced: BTreeMap<u64, Rec> = BTreeMap::new();
    for i in 0..600 {
        let records = random_records(&mut rng, 40, 200);
        let base = append(&mut conn, &records, 1_000 + i);
        for (j, r) in records.into_iter().enumerate() {
            produced.insert(base + j as u64, r);
        }
    }
    // Push every workload record into closed segments: the active one is never cleaned.
    let workload_end = high_watermark(&mut conn);
    for _ in 0..12 {
        append(&mut conn, &[(Some(b"pad".to_vec()), Some(vec![0; 1500]))], 5_000);
    }
    let want = expected(&produced);
    let workload = |s: &BTreeMap<u64, Rec>| -> BTreeMap<u64, Rec> {
        s.range(..workload_end).map(|(o, r)| (*o, r.clone())).collect()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = stored(&mut conn);
        for (o, r) in &got {
            if *o < workload_end {
                assert_eq!(produced.get(o), Some(r), "record at {o} is not the one produced there");
            }
        }
        if workload(&got) == want {
            break;
        }
        if Instant::now() >= deadline {
            eprintln!("{}", broker.log_text());
        }
        assert!(
            Instant::now() < deadline,
            "not compacted after 60 s: {} records of {} wanted",
            got.range(..workload_end).count(),
            want.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(want.len() * 2 < produced.len(), "the workload left most records in place");
    // Offsets never move: the next append lands where it would have, and kill -9 keeps it.
    let hw = high_watermark(&mut conn);
    broker.kill();
    broker.restart();
    let mut conn = broker.connect();
    assert_eq!(high_watermark(&mut conn), hw, "the high watermark moved across a restart");
    assert_eq!(workload(&stored(&mut conn)), want, "a restart changed the compacted log");
    let next = append(&mut conn, &[(Some(b"after".to_vec()), Some(b"x".to_vec()))], 9_000);
    assert_eq!(next, hw);
    let _ = broker.stop();
}

#[test]
fn kill_9_during_cleaning_loses_nothing() {
    let seed: u64 =
        std::env::var("COMPACTION_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
                as u64
        });
    eprintln!("COMPACTION_SEED={seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    // A slow cleaner, so kills land in the middle of passes.
    let env = [("BROKER_RETENTION_CHECK_MS", "100"), ("BROKER_CLEANER_BYTES_PER_S", "200000")];
    let mut broker = Broker::start_with_env(1, &env);
    let mut conn = broker.connect();
    create_compacted(&mut conn, 50, 4096);
    let mut produced: BTreeMap<u64, Rec> = BTreeMap::new();
    let mut ts = 1_000;
    for round in 0..8 {
        for _ in 0..rng.usize(50..200) {
            ts += 1;
            let records = random_records(&mut rng, 30, 300);
            let base = append(&mut conn, &records, ts);
            for (j, r) in records.into_iter().enumerate() {
                produced.insert(base + j as u64, r);
            }
        }
        std::thread::sleep(Duration::from_millis(rng.u64(0..800)));
        broker.kill();
        broker.restart();
        conn = broker.connect();
        let got = stored(&mut conn);
        for (o, r) in &got {
            assert_eq!(
                produced.get(o),
                Some(r),
                "round {round}: record at {o} is not the one produced there"
            );
        }
        // Each key's latest record is there (or it was a tombstone, and then none of its
        // earlier records came back).
        let mut latest: BTreeMap<&[u8], u64> = BTreeMap::new();
        for (o, (k, _)) in &produced {
            match k {
                Some(k) => {
                    latest.insert(k, *o);
                }
                None => assert!(got.contains_key(o), "round {round}: keyless record at {o} lost"),
            }
        }
        for (k, &l) in &latest {
            if produced[&l].1.is_some() {
                assert!(got.contains_key(&l), "round {round}: latest record of {k:?} at {l} lost");
            } else {
                let earlier = got.range(..l).find(|(_, (key, _))| key.as_deref() == Some(*k));
                assert!(
                    earlier.is_none() || got.contains_key(&l),
                    "round {round}: tombstone of {k:?} gone but {earlier:?} is back"
                );
            }
        }
        assert_eq!(high_watermark(&mut conn), produced.keys().last().unwrap() + 1);
    }
    // The loop tested something: the cleaner did remove records.
    let deadline = Instant::now() + Duration::from_secs(30);
    while stored(&mut conn).len() * 2 > produced.len() {
        assert!(Instant::now() < deadline, "the cleaner removed too little in 30 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = broker.stop();
}

/// Base offsets of the partition's segments on disk, oldest first (the last is active).
fn segment_bases(dir: &Path) -> Vec<u64> {
    let mut bases: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let stem = name.strip_suffix(".log")?;
            (stem.len() == 20).then(|| stem.parse().ok())?
        })
        .collect();
    bases.sort_unstable();
    bases
}

/// The entries of a closed segment's `.index` (and that its `.timeindex` exists), each checked
/// to point at the batch it names; `None` while either file is missing.
fn index_entries(dir: &Path, base: u64) -> Option<Vec<(u32, u32)>> {
    let index = std::fs::read(dir.join(format!("{base:020}.index"))).ok()?;
    std::fs::metadata(dir.join(format!("{base:020}.timeindex"))).ok()?;
    let log = std::fs::read(dir.join(format!("{base:020}.log"))).ok()?;
    let mut entries = Vec::new();
    for e in index.chunks_exact(8) {
        let rel = u32::from_le_bytes(e[0..4].try_into().unwrap());
        let pos = u32::from_le_bytes(e[4..8].try_into().unwrap());
        if (rel, pos) == (0, 0) {
            break; // zero padding after the entries
        }
        let h = BatchHeader::new(&log[pos as usize..]).expect("a batch at an index entry");
        assert_eq!(h.base_offset(), base + u64::from(rel), "index entry of {base} at {pos}");
        entries.push((rel, pos));
    }
    Some(entries)
}

/// Offset → (timestamp, record) of everything stored.
fn stored_with_times(conn: &mut Conn) -> BTreeMap<u64, (i64, Rec)> {
    let hw = high_watermark(conn);
    let mut out = BTreeMap::new();
    let mut scratch = AlignedVec::new();
    for bytes in fetch_all(conn, TOPIC, 0, hw) {
        let aligned = to_aligned(&bytes);
        let env = BatchEnvelope::validate(&aligned).unwrap();
        for r in env.open(&mut scratch).unwrap().records() {
            let rec = (r.key().map(<[u8]>::to_vec), r.value().map(<[u8]>::to_vec));
            out.insert(r.offset(), (r.timestamp_ms(), rec));
        }
    }
    out
}

/// The batches a fetch at `offset` returns.
fn fetch_at(conn: &mut Conn, offset: u64) -> Vec<Vec<u8>> {
    let resp: FetchResponse = conn.call(&FetchRequest {
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: 1 << 20,
        topics: vec![FetchTopic {
            name: TOPIC.into(),
            partitions: vec![FetchPartition { partition: 0, offset, max_bytes: 1 << 16 }],
        }],
    });
    let p = &resp.topics[0].partitions[0];
    assert_eq!(p.error, 0, "fetch at {offset}: {:?}", ErrorCode::from_u16(p.error));
    let bytes = to_aligned(&p.batches);
    Batches::new(&bytes).map(|b| b.unwrap().bytes().to_vec()).collect()
}

fn offset_for_timestamp(conn: &mut Conn, timestamp_ms: i64) -> (u64, i64) {
    let resp: ListOffsetsResponse = conn.call(&ListOffsetsRequest {
        topics: vec![ListOffsetsTopic {
            name: TOPIC.into(),
            partitions: vec![ListOffsetsPartition {
                partition: 0,
                spec: OffsetSpec::Timestamp(timestamp_ms),
            }],
        }],
    });
    let p = &resp.topics[0].partitions[0];
    assert_eq!(p.error, 0, "list offsets at {timestamp_ms}: {:?}", ErrorCode::from_u16(p.error));
    (p.offset, p.timestamp_ms)
}

#[test]
fn cleaned_segments_merge_and_are_read_through_index_files_written_with_them() {
    let env = [("BROKER_RETENTION_CHECK_MS", "100"), ("BROKER_CLEANER_DIRTY_PERCENT_MIN", "0")];
    let mut broker = Broker::start_with_env(1, &env);
    let mut conn = broker.connect();
    create_compacted(&mut conn, i64::MAX, 32 << 10);
    let dir = broker.partition_dir(TOPIC, 0);
    // 12 keys, 1 KB values, increasing timestamps: ~10 segments that clean down to a few KB.
    let mut produced: BTreeMap<u64, Rec> = BTreeMap::new();
    let mut ts = 10_000;
    let started = Instant::now();
    // Every segment a roll made (the cleaner already merges while this runs).
    let mut rolled = std::collections::BTreeSet::new();
    for i in 0..300u32 {
        ts += 1;
        let rec = (Some(format!("key-{}", i % 12).into_bytes()), Some(vec![i as u8; 1000]));
        let base = append(&mut conn, std::slice::from_ref(&rec), ts);
        produced.insert(base, rec);
        rolled.extend(segment_bases(&dir));
    }
    let workload_end = high_watermark(&mut conn);
    let want = expected(&produced);
    // New data keeps coming (a padding key that compacts itself), so passes keep running: the
    // merges come with the pass after the one that shrank the segments.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for _ in 0..4 {
            ts += 1;
            append(&mut conn, &[(Some(b"pad".to_vec()), Some(vec![7; 4000]))], ts);
        }
        std::thread::sleep(Duration::from_millis(300));
        let got: BTreeMap<u64, Rec> =
            stored(&mut conn).range(..workload_end).map(|(o, r)| (*o, r.clone())).collect();
        let bases = segment_bases(&dir);
        rolled.extend(&bases);
        let (after, before) = (bases.len(), rolled.len());
        if got == want && after * 2 < before && dir.join("cleaner-checkpoint").exists() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not cleaned and merged in 60 s: {after} of {before} segments; {} of {} records",
            got.len(),
            want.len()
        );
    }
    eprintln!(
        "cleaned and merged: {} segments of {} rolled, after {:?}",
        segment_bases(&dir).len(),
        rolled.len(),
        started.elapsed()
    );
    // Let the cleaner settle (nothing new to map), then look at the files without a restart.
    std::thread::sleep(Duration::from_millis(600));
    let bases = segment_bases(&dir);
    let stored = stored_with_times(&mut conn);
    let mut probed = 0;
    for (i, &base) in bases[..bases.len() - 1].iter().enumerate() {
        let entries = index_entries(&dir, base)
            .unwrap_or_else(|| panic!("closed segment {base} has no index files"));
        let next = bases[i + 1];
        // A fetch at each entry's offset starts at that batch and returns the records there.
        for (rel, _) in entries {
            let offset = base + u64::from(rel);
            let batches = fetch_at(&mut conn, offset);
            let first = BatchHeader::new(&batches[0]).unwrap();
            assert!(first.base_offset() <= offset && offset <= first.last_offset());
            let mut scratch = AlignedVec::new();
            for b in &batches {
                let aligned = to_aligned(b);
                let env = BatchEnvelope::validate(&aligned).unwrap();
                for r in env.open(&mut scratch).unwrap().records() {
                    let rec = (r.key().map(<[u8]>::to_vec), r.value().map(<[u8]>::to_vec));
                    assert_eq!(stored[&r.offset()].1, rec, "record at {}", r.offset());
                }
            }
            probed += 1;
        }
        // A lookup by the timestamp of each record kept in it finds that record (timestamps
        // grow with offsets).
        for (&o, (t, _)) in stored.range(base..next) {
            assert_eq!(offset_for_timestamp(&mut conn, *t), (o, *t), "segment {base}");
        }
    }
    assert!(probed > 0, "no closed segment has index entries");
    eprintln!(
        "{probed} fetches at index entries, {} timestamp lookups, after {:?}",
        stored.len(),
        started.elapsed()
    );
    let cleaned_to = std::fs::read(dir.join("cleaner-checkpoint")).unwrap();
    assert_eq!(&cleaned_to[..8], b"CLEANED1");
    let cleaned_to = u64::from_le_bytes(cleaned_to[8..16].try_into().unwrap());
    assert!(cleaned_to >= workload_end && cleaned_to <= high_watermark(&mut conn));
    // A restart keeps it all.
    broker.kill();
    broker.restart();
    let mut conn = broker.connect();
    assert_eq!(stored_with_times(&mut conn), stored);
    assert_eq!(segment_bases(&dir), bases);
    // ... and the cleaner resumes from its checkpoint: no pass maps the log again.
    std::thread::sleep(Duration::from_millis(800));
    let text = broker.log_text();
    let since_restart = &text[text.rfind("broker starting").unwrap()..];
    assert!(
        !since_restart.contains("compaction pass"),
        "a pass after the restart: {since_restart}"
    );
    let _ = broker.stop();
}

/// Sets topic setting `name` to `value` (native AlterTopicConfig); the topic's config after.
fn alter(conn: &mut Conn, name: &str, value: &str) -> TopicConfig {
    let resp: AlterTopicConfigResponse = conn.call(&AlterTopicConfigRequest {
        name: TOPIC.into(),
        changes: vec![TopicSettingChange { name: name.into(), value: value.into() }],
        validate_only: false,
    });
    assert_eq!(resp.error, 0, "alter {name}={value}: {}", resp.message);
    resp.topic.expect("topic").config
}

/// Compaction turned on for a topic created without it (Kafka's `cleanup.policy` changed by
/// `kafka-configs --alter`) compacts the log it already has, without a reopen, stays on
/// across kill -9, and turned off leaves new records alone (before: `compact` was fixed at
/// creation, INVALID_TOPIC_CONFIG).
#[test]
fn compaction_turned_on_and_off_while_the_log_is_open() {
    let env = [("BROKER_RETENTION_CHECK_MS", "100"), ("BROKER_CLEANER_DIRTY_PERCENT_MIN", "0")];
    let mut broker = Broker::start_with_env(1, &env);
    let mut conn = broker.connect();
    let resp: CreateTopicResponse = conn.call(&CreateTopicRequest {
        name: TOPIC.into(),
        config: TopicConfig {
            partition_count: 1,
            segment_bytes_max: 4096,
            delete_retention_ms: 1,
            // Kept by age for ever: the records' timestamps are from 1970.
            retention_ms: -1,
            ..Default::default()
        },
    });
    assert_eq!(resp.error, 0, "create: {}", resp.message);
    let mut rng = fastrand::Rng::with_seed(11);
    let mut produced: BTreeMap<u64, Rec> = BTreeMap::new();
    let mut workload = |conn: &mut Conn, produced: &mut BTreeMap<u64, Rec>, batches: i64| {
        for i in 0..batches {
            let records = random_records(&mut rng, 30, 200);
            let base = append(conn, &records, 1_000 + i);
            for (j, r) in records.into_iter().enumerate() {
                produced.insert(base + j as u64, r);
            }
        }
        let end = high_watermark(conn);
        // Every workload record into closed segments: the active one is never cleaned.
        for _ in 0..12 {
            append(conn, &[(Some(b"pad".to_vec()), Some(vec![0; 1500]))], 5_000);
        }
        end
    };
    let end = workload(&mut conn, &mut produced, 300);
    let below = |s: BTreeMap<u64, Rec>, end: u64| -> BTreeMap<u64, Rec> {
        s.into_iter().filter(|(o, _)| *o < end).collect()
    };
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(below(stored(&mut conn), end), produced, "not compacted: every record is kept");
    let config = alter(&mut conn, "compact", "true");
    assert!(config.compact);
    let want = expected(&produced);
    let deadline = Instant::now() + Duration::from_secs(60);
    while below(stored(&mut conn), end) != want {
        assert!(Instant::now() < deadline, "not compacted 60 s after compaction was turned on");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(want.len() * 2 < produced.len(), "the workload left most records in place");
    broker.kill();
    broker.restart();
    let mut conn = broker.connect();
    assert_eq!(below(stored(&mut conn), end), want, "a restart changed the compacted log");
    let d: DescribeTopicResponse = conn.call(&DescribeTopicRequest { name: TOPIC.into() });
    assert!(d.topic.expect("topic").config.compact, "the setting survived kill -9");
    // Off: what comes next is kept whole.
    assert!(!alter(&mut conn, "compact", "false").compact);
    let mut more = BTreeMap::new();
    let start = high_watermark(&mut conn);
    let end = workload(&mut conn, &mut more, 100);
    std::thread::sleep(Duration::from_millis(1_000));
    let kept: BTreeMap<u64, Rec> =
        stored(&mut conn).into_iter().filter(|(o, _)| (start..end).contains(o)).collect();
    assert_eq!(kept, more, "compaction is off: every new record is kept");
    let _ = broker.stop();
}
