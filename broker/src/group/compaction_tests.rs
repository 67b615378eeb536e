//! Compaction of the offsets log (`Coordinator::compact`) racing with commits and deletions
//! (tombstones), on the simulated disk: no acked commit or deletion is ever replaced by an
//! older value, in memory, in a replay of the live log, or in a replay after a crash at any
//! moment.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::rc::Rc;

use wire::AckLevel;

use super::assignor::TopicPartition;
use super::offsets_log::{self, OffsetRecord, Position};
use super::Coordinator;
use crate::storage::{LogConfig, PartitionLog, ShardCache, SimDisk, SimFaults, StorageError};

fn run<F: std::future::Future<Output = ()> + 'static>(f: impl FnOnce() -> F + Send + 'static) {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(f)
        .expect("spawn executor")
        .join()
        .expect("executor thread");
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 4096,
        delete_chunk_bytes: 0,
        zero_ahead_bytes: 0,
        ..crate::storage::tests::small_config()
    }
}

async fn open(disk: &SimDisk) -> PartitionLog<SimDisk> {
    PartitionLog::open(
        disk.clone(),
        PathBuf::from("/sim/__consumer_offsets/0"),
        config(),
        ShardCache::new(0).partition(),
        crate::descriptors::StorageFiles::unlimited(),
    )
    .await
    .unwrap()
}

type Key = (String, TopicPartition);

/// What the commits did: every value's log offset, and per key the newest acked one. Values
/// in `tombstones` were deletions of their key (records without a value).
#[derive(Default, Clone)]
struct Book {
    enqueued: BTreeMap<u64, u64>,
    last_enqueued: BTreeMap<Key, (u64, u64)>,
    acked: BTreeMap<Key, u64>,
    tombstones: BTreeSet<u64>,
    /// Per key, the log offsets of its tombstones.
    deleted_at: BTreeMap<Key, Vec<u64>>,
}

impl Book {
    /// The value each key holds once everything enqueued applied (deleted keys absent).
    fn last_values(&self) -> BTreeMap<Key, u64> {
        let live = self.last_enqueued.iter().filter(|(_, (_, v))| !self.tombstones.contains(v));
        live.map(|(k, (_, v))| (k.clone(), *v)).collect()
    }
}

/// One commit as `api/group.rs` makes it: enqueue, register in flight in the same step,
/// wait for `durable`, apply. `value` is unique over the run; with `tombstone` the record
/// deletes the key instead (as `DeleteGroupOffsets` does).
async fn commit(
    co: &Coordinator,
    log: &PartitionLog<SimDisk>,
    book: &RefCell<Book>,
    key: Key,
    value: u64,
    tombstone: bool,
) -> Result<(), StorageError> {
    let metadata = format!("m{value}");
    let (group, tp) = key.clone();
    let committed = (!tombstone).then_some(Position { offset: value, metadata, topic_id: Some(1) });
    let record =
        OffsetRecord { group: group.clone(), tp: tp.clone(), committed: committed.clone() };
    let batch = offsets_log::encode(&[record], 1).unwrap();
    log.writable().await;
    let ticket = log.enqueue(&batch, AckLevel::Durable, 1)?;
    let base_offset = ticket.base_offset;
    let in_flight = co.commit_enqueued(0, &group, vec![(tp, committed)], base_offset, 1);
    {
        let mut b = book.borrow_mut();
        b.enqueued.insert(value, base_offset);
        if tombstone {
            b.tombstones.insert(value);
            b.deleted_at.entry(key.clone()).or_default().push(base_offset);
        }
        let last = b.last_enqueued.entry(key.clone()).or_insert((base_offset, value));
        if last.0 <= base_offset {
            *last = (base_offset, value);
        }
    }
    ticket.wait().await?;
    in_flight.applied();
    let mut b = book.borrow_mut();
    let acked = b.acked.entry(key).or_insert(base_offset);
    *acked = (*acked).max(base_offset);
    Ok(())
}

/// Replays `log` and checks it against the book: every acked key is there with a value
/// enqueued no earlier than its last ack (so never an older one); with `exact`, every key
/// holds its last enqueued value.
async fn check_replay(log: &PartitionLog<SimDisk>, book: &Book, exact: bool, seed: u64) {
    let (replayed, skipped) = offsets_log::replay(log).await.unwrap();
    assert_eq!(skipped, 0, "seed {seed}");
    let mut got: BTreeMap<Key, u64> = BTreeMap::new();
    for (group, offsets) in replayed {
        for (tp, c) in offsets {
            assert_eq!(c.metadata, format!("m{}", c.offset), "seed {seed}: metadata kept");
            got.insert((group.clone(), tp), c.offset);
        }
    }
    for (key, acked_at) in &book.acked {
        match got.get(key) {
            Some(value) => {
                let at = book.enqueued[value];
                assert!(
                    at >= *acked_at,
                    "seed {seed}: {key:?} replays value {value} (log offset {at}), older than the acked commit at {acked_at}"
                );
            }
            // Absent: only a deletion at or after the last ack may have removed it.
            None => assert!(
                book.deleted_at.get(key).is_some_and(|d| d.iter().any(|&at| at >= *acked_at)),
                "seed {seed}: acked key {key:?} lost"
            ),
        }
    }
    if exact {
        assert_eq!(got, book.last_values(), "seed {seed}: replay after everything settled");
    }
}

fn random_key(rng: &mut fastrand::Rng) -> Key {
    (format!("g{}", rng.u8(0..3)), (format!("t{}", rng.u8(0..2)), rng.u32(0..4)))
}

/// Commits from many tasks at once while compactions run, with slow writes and syncs; then a
/// crash at a random moment. Memory, the live log and the log after the crash must agree
/// with what was acked.
#[test]
fn compaction_racing_with_commits_never_loses_or_reverts_an_acked_commit() {
    run(|| async {
        let seeds: u64 =
            std::env::var("GROUP_COMPACTION_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
        // Compactions that ran to the end, and the segments they deleted.
        let done = Rc::new(std::cell::Cell::new((0usize, 0usize)));
        for seed in 0..seeds {
            let mut rng = fastrand::Rng::with_seed(seed);
            let disk = SimDisk::new(
                seed,
                SimFaults {
                    sync_delay_yields_max: rng.u32(0..5),
                    write_delay_yields_max: rng.u32(0..5),
                    ..SimFaults::default()
                },
            );
            let log = Rc::new(open(&disk).await);
            let co = Rc::new(Coordinator::default());
            co.ensure_loaded(0, &*log).await.unwrap();
            let book = Rc::new(RefCell::new(Book::default()));
            let mut value = 0u64;
            let rounds = rng.usize(5..40);
            let crash_round = rng.usize(0..rounds + 1);
            let mut tasks = Vec::new();
            for round in 0..rounds {
                for _ in 0..rng.usize(1..12) {
                    value += 1;
                    let (co, log, book) = (co.clone(), log.clone(), book.clone());
                    let key = random_key(&mut rng);
                    let (v, tombstone) = (value, rng.u8(0..5) == 0);
                    tasks.push(
                        glommio::spawn_local(async move {
                            commit(&co, &log, &book, key, v, tombstone).await.unwrap();
                        })
                        .detach(),
                    );
                }
                if co.compaction_due(0, log.size_bytes(), 1) {
                    let (co, log, done) = (co.clone(), log.clone(), done.clone());
                    tasks.push(
                        glommio::spawn_local(async move {
                            let c = co.compact(0, 1, &log, 1).await.unwrap();
                            let (compactions, deleted) = done.get();
                            done.set((compactions + 1, deleted + c.segments_deleted));
                        })
                        .detach(),
                    );
                }
                for _ in 0..rng.usize(0..30) {
                    glommio::executor().yield_now().await;
                }
                if round == crash_round {
                    break;
                }
            }
            let crashed = crash_round < rounds;
            if !crashed {
                for t in tasks.drain(..) {
                    t.await;
                }
                // Everything settled: one more compaction (unless the last one ran after
                // every commit), then memory and the live log hold exactly the last value
                // of every key.
                if co.compaction_due(0, log.size_bytes(), 1) {
                    let c = co.compact(0, 1, &log, 1).await.unwrap();
                    assert_eq!(log.log_start_offset(), c.log_start_offset, "seed {seed}");
                }
                let b = book.borrow().clone();
                let want = b.last_values();
                for key in b.last_enqueued.keys() {
                    let got = co.read_group(&key.0, |g| {
                        g.and_then(|g| g.offsets.get(&key.1).map(|c| c.offset))
                    });
                    assert_eq!(got, want.get(key).copied(), "seed {seed}: {key:?} in memory");
                }
                check_replay(&log, &b, true, seed).await;
            }
            // Crash: the tasks stop where they are, the log goes without closing.
            for t in tasks.drain(..) {
                t.cancel();
            }
            for _ in 0..10 {
                glommio::executor().yield_now().await;
            }
            drop(co);
            let log = Rc::try_unwrap(log).unwrap_or_else(|_| panic!("seed {seed}: log still held"));
            drop(log);
            disk.crash();
            let log = open(&disk).await;
            let b = book.borrow().clone();
            check_replay(&log, &b, !crashed, seed).await;
            log.close().await.unwrap();
        }
        let (compactions, segments_deleted) = done.get();
        eprintln!("{compactions} racing compactions deleted {segments_deleted} segments");
        assert!(seeds < 20 || compactions > 0, "no racing compaction ran to the end");
        assert!(seeds < 20 || segments_deleted > 0, "no racing compaction deleted a segment");
    });
}

/// The case the in-flight set exists for: a commit enqueued (its log offset before the
/// snapshot) but not yet acked when the snapshot reads must be restated with its new value,
/// not the map's older one.
#[test]
fn a_commit_in_flight_when_the_snapshot_reads_is_restated_with_its_new_value() {
    run(|| async {
        let disk = SimDisk::new(1, SimFaults { sync_delay_yields_max: 20, ..SimFaults::default() });
        let log = open(&disk).await;
        let co = Coordinator::default();
        co.ensure_loaded(0, &log).await.unwrap();
        let book = RefCell::new(Book::default());
        let key: Key = ("g".into(), ("t".into(), 0));
        commit(&co, &log, &book, key.clone(), 1, false).await.unwrap();
        // Enqueue value 2 and compact before its ack arrives.
        let (pending, compacted) =
            futures_lite::future::zip(commit(&co, &log, &book, key.clone(), 2, false), async {
                assert!(co.compaction_due(0, log.size_bytes(), 1));
                co.compact(0, 1, &log, 1).await.unwrap()
            })
            .await;
        pending.unwrap();
        assert_eq!(compacted.records, 1);
        assert!(compacted.log_start_offset > book.borrow().enqueued[&2], "snapshot after it");
        let b = book.borrow().clone();
        check_replay(&log, &b, true, 0).await;
        drop(log);
        disk.crash();
        let log = open(&disk).await;
        let b = book.borrow().clone();
        check_replay(&log, &b, true, 0).await;
        log.close().await.unwrap();
    });
}

/// A deletion enqueued but not yet acked when the snapshot reads: the snapshot must not
/// restate the map's older value after it, so the key stays deleted, live and after a crash.
#[test]
fn a_deletion_in_flight_when_the_snapshot_reads_stays_deleted() {
    run(|| async {
        let disk = SimDisk::new(1, SimFaults { sync_delay_yields_max: 20, ..SimFaults::default() });
        let log = open(&disk).await;
        let co = Coordinator::default();
        co.ensure_loaded(0, &log).await.unwrap();
        let book = RefCell::new(Book::default());
        let key: Key = ("g".into(), ("t".into(), 0));
        let other: Key = ("g".into(), ("t".into(), 1));
        commit(&co, &log, &book, key.clone(), 1, false).await.unwrap();
        commit(&co, &log, &book, other.clone(), 2, false).await.unwrap();
        let (pending, compacted) =
            futures_lite::future::zip(commit(&co, &log, &book, key.clone(), 3, true), async {
                assert!(co.compaction_due(0, log.size_bytes(), 1));
                co.compact(0, 1, &log, 1).await.unwrap()
            })
            .await;
        pending.unwrap();
        assert!(compacted.log_start_offset > book.borrow().enqueued[&3], "snapshot after it");
        let in_memory = co.read_group("g", |g| g.map(|g| g.offsets.keys().cloned().collect()));
        assert_eq!(in_memory, Some(vec![other.1.clone()]), "deleted in memory");
        let b = book.borrow().clone();
        check_replay(&log, &b, true, 0).await;
        drop(log);
        disk.crash();
        let log = open(&disk).await;
        check_replay(&log, &b, true, 0).await;
        log.close().await.unwrap();
    });
}

/// A snapshot restates each offset with the time it was committed, not the snapshot's: a
/// compaction must not make offsets younger (retention counts from the commit).
#[test]
fn a_snapshot_keeps_each_offsets_commit_time() {
    run(|| async {
        let disk = SimDisk::new(1, SimFaults::default());
        let log = open(&disk).await;
        let co = Coordinator::default();
        co.ensure_loaded(0, &log).await.unwrap();
        let book = RefCell::new(Book::default());
        for v in 1..=3 {
            commit(&co, &log, &book, ("g".into(), ("t".into(), v as u32)), v, false).await.unwrap();
        }
        assert!(co.compaction_due(0, log.size_bytes(), 1));
        let c = co.compact(0, 1, &log, 1_000_000).await.unwrap();
        assert_eq!(c.records, 3);
        let times = |co: &Coordinator| {
            co.read_group("g", |g| {
                g.unwrap().offsets.values().map(|c| c.committed_ms).collect::<Vec<i64>>()
            })
        };
        assert_eq!(times(&co), vec![1, 1, 1], "in memory after the snapshot");
        let (replayed, _) = offsets_log::replay(&log).await.unwrap();
        let replayed: Vec<i64> = replayed["g"].values().map(|c| c.committed_ms).collect();
        assert_eq!(replayed, vec![1, 1, 1], "replayed from the snapshot");
        assert!(log.log_start_offset() > 0, "the old records are gone: the snapshot is read");
        log.close().await.unwrap();
    });
}

/// Values applied out of log order around a tombstone (each record is applied by its own
/// handler's task once durable, a snapshot by the compaction's low-priority task): a value
/// older than an applied tombstone does not bring the key back, while anything enqueued
/// before the tombstone is unapplied; once nothing is, the marker goes and newer values
/// apply as ever. Before, a snapshot restating the old value applied after a deletion put it
/// back, and the next snapshot made that durable.
#[test]
fn a_value_older_than_an_applied_tombstone_does_not_bring_its_key_back() {
    let co = Coordinator::default();
    let tp: TopicPartition = ("t".into(), 0);
    let position = |offset| Some(Position { offset, metadata: String::new(), topic_id: Some(1) });
    let current = |co: &Coordinator| {
        co.current(0, "g").into_iter().map(|(_, c)| c.offset).collect::<Vec<_>>()
    };
    let older = co.commit_enqueued(0, "g", vec![(tp.clone(), position(7))], 5, 1);
    let tombstone = co.commit_enqueued(0, "g", vec![(tp.clone(), None)], 11, 1);
    tombstone.applied();
    older.applied();
    assert_eq!(current(&co), Vec::<u64>::new(), "the older value came back after the tombstone");
    assert_eq!(co.offsets.borrow()[&0].deleted.len(), 0, "nothing older is unapplied: marker gone");
    co.commit_enqueued(0, "g", vec![(tp.clone(), position(9))], 12, 1).applied();
    assert_eq!(current(&co), [9]);
    // A marker stays while something enqueued before it is unapplied.
    let pending = co.commit_enqueued(0, "g", vec![(("u".into(), 0), position(1))], 13, 1);
    co.commit_enqueued(0, "g", vec![(tp.clone(), None)], 14, 1).applied();
    assert_eq!(co.offsets.borrow()[&0].deleted.len(), 1);
    drop(pending); // failed
    assert_eq!(co.offsets.borrow()[&0].deleted.len(), 0);
    assert_eq!(co.offsets.borrow()[&0].unapplied.len(), 0);
}
