//! The shard journal across a change of the shard count, through the broker binary: after
//! a SIGKILL every `durable`-acked batch comes back whichever shard count the broker
//! restarts with (higher or lower), and the earlier run's journal files go once their
//! partitions replayed: files of a shard beyond the new count, and files holding only a
//! deleted topic's entries, included; no stale shard directory stays. And a journal paced
//! to a number of records a second (`shard_journal_writes_per_s_max`) keeps to it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use integration_tests::{create_topic, fetch_all, produce, Broker};
use wire::*;

const ENV: [(&str, &str); 2] =
    [("BROKER_SHARD_JOURNAL", "true"), ("BROKER_SHARD_JOURNAL_FILE_BYTES", "1048576")];

/// (topic, partition) -> the stored form of every batch acked `durable`, in offset order.
type Acked = BTreeMap<(String, u32), Vec<Vec<u8>>>;

/// Every file under the journal root, and the shard directories there.
fn journal_listing(data_dir: &Path) -> (Vec<PathBuf>, Vec<String>) {
    let root = data_dir.join("journal~"); // broker::layout::JOURNAL_DIR
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    for d in std::fs::read_dir(&root).expect("journal root").flatten() {
        dirs.push(d.file_name().to_string_lossy().into_owned());
        for f in std::fs::read_dir(d.path()).expect("shard dir").flatten() {
            files.push(f.path());
        }
    }
    dirs.sort();
    files.sort();
    (files, dirs)
}

/// Appends `n` batches to `topic`/`partition` on its owner with `durable` acks.
fn append(b: &Broker, owners: &[u32], topic: &str, n: u64, tag: u64, acked: &mut Acked) {
    for p in 0..owners.len() as u32 {
        let mut conn = b.connect_shard(owners[p as usize] as usize);
        for i in 0..n {
            let mut builder = BatchBuilder::new(1 << 20);
            let value = vec![(tag + i + u64::from(p)) as u8; 3000];
            for _ in 0..4 {
                builder.append(1_700_000_000_000, Some(b"k"), Some(&value), &[]).unwrap();
            }
            let batch = builder.finish().unwrap();
            let r = produce(&mut conn, topic, p, &batch, AckLevel::Durable);
            assert_eq!(r.error, 0, "produce {topic}/{p}: {:?}", ErrorCode::from_u16(r.error));
            let mut stored = batch.to_vec();
            wire::batch::header::assign(&mut stored, r.base_offset as u64, r.log_append_time_ms);
            acked.entry((topic.to_owned(), p)).or_default().push(stored);
        }
    }
}

/// Every acked batch is back, byte for byte, offsets dense.
fn verify(b: &Broker, owners: &BTreeMap<String, Vec<u32>>, acked: &Acked) -> usize {
    let mut checked = 0;
    for ((topic, p), want) in acked {
        let Some(owners) = owners.get(topic) else { continue };
        let mut conn = b.connect_shard(owners[*p as usize] as usize);
        let end = want.last().map_or(0, |s| {
            let bytes = to_aligned(s);
            let next = Batches::new(&bytes).next().unwrap().unwrap().header().next_offset();
            next
        });
        let got = fetch_all(&mut conn, topic, *p, end);
        assert_eq!(&got, want, "{topic}/{p}: acked batches lost or altered");
        checked += want.len();
    }
    checked
}

#[test]
fn journal_files_follow_a_shard_count_change() {
    let mut b = Broker::start_with_env(1, &ENV);
    let mut owners: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    owners.insert("kept".into(), create_topic(&mut b.connect(), "kept", 2));
    assert!(b.stop() == Some(0));

    // Higher: three shards. A second topic lands on shard 1, one to delete on shard 2.
    b.restart_with_shards(3);
    owners.insert("kept2".into(), create_topic(&mut b.connect(), "kept2", 1));
    let dropped = create_topic(&mut b.connect(), "dropped", 2);
    assert!(dropped.contains(&2), "a partition of the dropped topic on shard 2: {dropped:?}");
    assert!(owners.values().flatten().all(|&s| s < 2), "kept topics on shards 0 and 1: {owners:?}");
    let mut acked = Acked::new();
    for (topic, o) in &owners {
        append(&b, o, topic, 20, 1, &mut acked);
    }
    let mut gone = Acked::new();
    append(&b, &dropped, "dropped", 20, 2, &mut gone);
    let resp: DeleteTopicResponse =
        b.connect().call(&DeleteTopicRequest { name: "dropped".into() });
    assert_eq!(resp.error, 0, "{}", resp.message);
    for (topic, o) in &owners {
        append(&b, o, topic, 20, 3, &mut acked);
    }
    let (before, dirs) = journal_listing(&b.data_dir);
    assert!(
        before.iter().any(|f| f.parent().unwrap().ends_with("shard-2")),
        "shard 2 journaled the dropped topic: {before:?}"
    );
    assert_eq!(dirs, ["shard-0", "shard-1", "shard-2"]);
    b.kill();

    // Lower: two shards. Shard 2's files hold only the deleted topic's entries.
    b.restart_with_shards(2);
    let checked = verify(&b, &owners, &acked);
    let (after, dirs) = journal_listing(&b.data_dir);
    let left: Vec<_> = before.iter().filter(|f| after.contains(f)).collect();
    assert!(left.is_empty(), "journal files of the killed run left after replay: {left:?}");
    assert_eq!(dirs, ["shard-0", "shard-1"], "no directory of a shard beyond the count");
    eprintln!(
        "lowered to 2 shards: {checked} acked batches back, {} old files removed",
        before.len()
    );

    // Higher again, after another kill.
    for (topic, o) in &owners {
        append(&b, o, topic, 20, 4, &mut acked);
    }
    let (before, _) = journal_listing(&b.data_dir);
    assert!(!before.is_empty());
    b.kill();
    b.restart_with_shards(3);
    let checked = verify(&b, &owners, &acked);
    let (after, _) = journal_listing(&b.data_dir);
    let left: Vec<_> = before.iter().filter(|f| after.contains(f)).collect();
    assert!(left.is_empty(), "journal files of the killed run left after replay: {left:?}");
    eprintln!(
        "raised to 3 shards: {checked} acked batches back, {} old files removed",
        before.len()
    );

    // A clean stop checkpoints the last files: nothing is left.
    for (topic, o) in &owners {
        append(&b, o, topic, 5, 5, &mut acked);
    }
    assert_eq!(b.stop(), Some(0));
    let (files, dirs) = journal_listing(&b.data_dir);
    assert!(files.is_empty(), "journal files left after a clean stop: {files:?}");
    assert_eq!(dirs, ["shard-0", "shard-1", "shard-2"]);
    b.restart();
    verify(&b, &owners, &acked);
}

/// `shard_journal_writes_per_s_max`: a journal paced to 100 records a second starts no more
/// than that (after its burst of one), so durable produces from eight connections at once
/// share records — and every one of them is acked and stored, across a kill -9.
#[test]
fn a_paced_journal_shares_its_records_and_keeps_every_ack() {
    let env = [
        ("BROKER_SHARD_JOURNAL", "true"),
        ("BROKER_SHARD_JOURNAL_WRITES_PER_S_MAX", "100"),
        // No gathering: only the pace makes produces share records.
        ("BROKER_SHARD_JOURNAL_GATHER_US", "0"),
        ("BROKER_METRICS_LISTEN", "127.0.0.1:0"),
    ];
    let mut b = Broker::start_with_env(1, &env);
    let owners = create_topic(&mut b.connect(), "paced", 8);
    let records_before = b.metric("broker_journal_records_total", 0).expect("metric");
    let started = std::time::Instant::now();
    let acked: Vec<Acked> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8u32)
            .map(|p| {
                let (b, owners) = (&b, &owners);
                s.spawn(move || {
                    let mut acked = Acked::new();
                    let mut conn = b.connect_shard(owners[p as usize] as usize);
                    for i in 0..25u64 {
                        let mut builder = BatchBuilder::new(1 << 20);
                        let value = vec![(i + u64::from(p)) as u8; 100];
                        builder.append(1_700_000_000_000, None, Some(&value), &[]).unwrap();
                        let batch = builder.finish().unwrap();
                        let r = produce(&mut conn, "paced", p, &batch, AckLevel::Durable);
                        assert_eq!(r.error, 0, "{:?}", ErrorCode::from_u16(r.error));
                        let mut stored = batch.to_vec();
                        wire::batch::header::assign(
                            &mut stored,
                            r.base_offset as u64,
                            r.log_append_time_ms,
                        );
                        acked.entry(("paced".to_owned(), p)).or_default().push(stored);
                    }
                    acked
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("producer")).collect()
    });
    let elapsed = started.elapsed();
    let records = b.metric("broker_journal_records_total", 0).expect("metric") - records_before;
    let paced = b.metric("broker_journal_records_paced_total", 0).expect("metric");
    // 100 a second, a burst of one, and one record for the topic's creation at most.
    let bound = 2.0 + elapsed.as_secs_f64() * 100.0;
    assert!(records <= bound, "{records} journal records in {elapsed:?} (at most {bound})");
    assert!(paced > 0.0, "no record waited for its turn");
    let acked: Acked = acked.into_iter().flatten().collect();
    b.kill();
    b.restart();
    let owners = BTreeMap::from([("paced".to_owned(), owners)]);
    assert_eq!(verify(&b, &owners, &acked), 200);
}
