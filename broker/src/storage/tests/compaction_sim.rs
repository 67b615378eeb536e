//! The seeded compaction simulation: keyed appends over a few keys, cleaner passes (some cut
//! short by a crash at any point: after a random number of yields, or right before a chosen
//! disk operation through `FreezeDisk`, aimed at the end of a pass where the checkpoint is
//! written; or by a clean stop), passes whose merges cannot rename their other segments
//! away, crashes, clean restarts, EIO, disk full and a small descriptor budget on
//! `SimDisk`. After every pass and every reopen the log is checked against a model built
//! from what was acked `durable` (`SIM_SEEDS`, `SIM_SEED`, `SIM_STEPS`; see
//! docs/RELIABILITY.md):
//! - every record read is the one appended at its offset (nothing altered, nothing moved);
//! - batches are back to back and the high watermark never moves back;
//! - each key's latest durable record is there, or a later record of the key is, or it is a
//!   tombstone and then no earlier record of the key is there either;
//! - records without a key are never removed;
//! - below the cleaner's progress (`cleaned_to`, persisted) no key has two records, and the
//!   progress is never past the high watermark: a checkpoint never claims more than was
//!   cleaned, and a restart after a completed pass keeps its progress.

use std::collections::BTreeMap as Histogram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::freeze_disk::FreezeDisk;
use super::*;

/// A record as appended: key and value (`None`: a tombstone).
pub(super) type Rec = (Option<Vec<u8>>, Option<Vec<u8>>);

static CLEAN_PASSES: AtomicU64 = AtomicU64::new(0);
static RECORDS_REMOVED: AtomicU64 = AtomicU64::new(0);
static CUT_SHORT: AtomicU64 = AtomicU64::new(0);
static MERGED: AtomicU64 = AtomicU64::new(0);
static CLOSED_DURING: AtomicU64 = AtomicU64::new(0);
/// Passes that failed to remove a merged segment, and passes after that removed it after all.
static LEFT_ON_DISK: AtomicU64 = AtomicU64::new(0);
static LEFT_REMOVED: AtomicU64 = AtomicU64::new(0);
/// Disk operation a frozen pass stopped before → crashes there (`"finished"`: none).
static CRASH_POINTS: Mutex<Histogram<String, u64>> = Mutex::new(Histogram::new());

/// The steps of a checkpoint write, as `FreezeDisk` names the operation a crash came before.
pub(super) const CHECKPOINT_STEPS: [&str; 6] = [
    "create cleaner-checkpoint.tmp",
    "truncate cleaner-checkpoint.tmp",
    "write cleaner-checkpoint.tmp",
    "fdatasync cleaner-checkpoint.tmp",
    "rename cleaner-checkpoint.tmp",
    "sync_dir after rename cleaner-checkpoint.tmp",
];
/// The steps of a merge's swap after the rewrite took the first segment's name.
pub(super) const MERGE_STEPS: [&str; 3] =
    ["sync_dir after rename <seg>.log.cleaned", "rename <seg>.log", "rename <seg>.index.cleaned"];

pub(super) fn count_crash_point(label: Option<String>) {
    let label = label.unwrap_or_else(|| "finished".into());
    *CRASH_POINTS.lock().unwrap().entry(label).or_default() += 1;
}

pub(super) fn keyed_batch(
    rng: &mut fastrand::Rng,
    keys: u32,
    ts: i64,
    tag: u64,
) -> (wire::AlignedVec, Vec<Rec>) {
    let mut b = BatchBuilder::new(16 << 10);
    let mut recs = Vec::new();
    for i in 0..rng.usize(1..8) {
        let key = (rng.u8(0..12) != 0).then(|| format!("key-{}", rng.u32(0..keys)).into_bytes());
        let value = (rng.u8(0..8) != 0).then(|| {
            let len = rng.usize(0..600);
            (0..len).map(|j| (tag as usize + i + j) as u8).collect::<Vec<u8>>()
        });
        b.append(ts + i as i64, key.as_deref(), value.as_deref(), &[("tag", &tag.to_le_bytes())])
            .unwrap();
        recs.push((key, value));
    }
    (b.finish().unwrap(), recs)
}

/// Offset → record, for every record the log holds from its start to the high watermark.
pub(super) async fn read_records<D: io::Disk>(log: &PartitionLog<D>) -> BTreeMap<u64, Rec> {
    let batches = read_all(log, log.log_start_offset()).await.unwrap();
    let mut out = BTreeMap::new();
    let mut scratch = wire::AlignedVec::new();
    for bytes in batches.values() {
        let env = wire::BatchEnvelope::validate(bytes).unwrap();
        let view = env.open(&mut scratch).unwrap();
        let mut last = None;
        for r in view.records() {
            assert!(last < Some(r.offset()), "record offsets do not increase");
            assert!(r.offset() < env.header().next_offset(), "record past its batch's span");
            last = Some(r.offset());
            out.insert(r.offset(), (r.key().map(<[u8]>::to_vec), r.value().map(<[u8]>::to_vec)));
        }
    }
    out
}

/// Below `cleaned_to` no key has two records (see the module docs).
pub(super) fn check_cleaned(got: &BTreeMap<u64, Rec>, cleaned_to: u64, high_watermark: u64) {
    assert!(
        cleaned_to <= high_watermark,
        "cleaned to {cleaned_to}, past the high watermark {high_watermark}"
    );
    let mut seen: BTreeMap<&[u8], u64> = BTreeMap::new();
    for (o, (key, _)) in got.range(..cleaned_to) {
        if let Some(k) = key {
            if let Some(before) = seen.insert(k, *o) {
                panic!("cleaned to {cleaned_to} but {k:?} is at {before} and {o}");
            }
        }
    }
}

/// Checks what the log holds against the model (see the module docs).
pub(super) fn check(
    got: &BTreeMap<u64, Rec>,
    durable: &BTreeMap<u64, Rec>,
    maybe: &BTreeMap<u64, Vec<Rec>>,
) {
    for (o, rec) in got {
        let known = durable.get(o) == Some(rec) || maybe.get(o).is_some_and(|c| c.contains(rec));
        assert!(known, "record at {o} was never appended there: {rec:?}");
    }
    let mut latest: BTreeMap<&[u8], u64> = BTreeMap::new();
    for (o, (key, _)) in durable {
        match key {
            Some(k) => {
                latest.insert(k, *o);
            }
            None => assert!(got.contains_key(o), "record without a key at {o} removed"),
        }
    }
    for (key, &l) in &latest {
        let later = got.range(l..).any(|(_, (k, _))| k.as_deref() == Some(*key));
        if later {
            continue;
        }
        let (_, value) = &durable[&l];
        assert!(value.is_none(), "latest record of {key:?} at {l} lost");
        let earlier = got.range(..l).find(|(_, (k, _))| k.as_deref() == Some(*key));
        assert!(earlier.is_none(), "tombstone of {key:?} at {l} gone but {earlier:?} is back");
    }
}

async fn simulate(seed: u64, steps: usize) {
    let _guard = SeedGuard(seed);
    let mut rng = fastrand::Rng::with_seed(seed);
    let disk = FreezeDisk::new(SimDisk::new(
        seed ^ 0xC0A1,
        SimFaults {
            sync_delay_yields_max: rng.u32(0..4),
            write_delay_yields_max: rng.u32(0..4),
            ..SimFaults::default()
        },
    ));
    let dir = PathBuf::from("/sim/compact/0");
    let shard = ShardCache::new(rng.usize(0..32 << 10));
    let mut config = small_config();
    config.compact = true;
    config.segment_bytes_max = [8 << 10, 16 << 10, 64 << 10][rng.usize(0..3)];
    config.delete_retention_ms = [0, 200, i64::MAX][rng.usize(0..3)];
    config.cleaner_key_map_bytes = [4 * 32, 16 * 32, 64 << 20][rng.usize(0..3)];
    config.cleaner_dirty_percent_min = [0, 50][rng.usize(0..2)];
    config.dsync_writes = rng.bool();
    let keys = [3, 20, 200][rng.usize(0..3)];
    let files = if rng.bool() {
        unlimited_files()
    } else {
        crate::descriptors::StorageFiles::with_split(1, rng.usize(1..5))
    };
    let open = |disk: &FreezeDisk| {
        PartitionLog::open(
            disk.clone(),
            dir.clone(),
            config.clone(),
            shard.partition(),
            files.clone(),
        )
    };
    let mut log = Rc::new(open(&disk).await.unwrap());
    let mut durable: BTreeMap<u64, Rec> = BTreeMap::new();
    let mut maybe: BTreeMap<u64, Vec<Rec>> = BTreeMap::new();
    let mut now_ms: i64 = 1_000_000;
    let mut tag = 0u64;
    // Counted disk operations of the last whole pass (where a frozen pass is stopped).
    let mut pass_ops = 32u64;
    // Which passes cut short are cut by a clean stop rather than a crash (its own stream, so
    // the main one's draws stay as they were).
    let mut stops = fastrand::Rng::with_seed(seed ^ 0x5709);
    // Which whole passes cannot rename a merge's other segments away (its own stream too).
    let mut failing = fastrand::Rng::with_seed(seed ^ 0xFA11);
    let no_faults = |disk: &SimDisk| {
        disk.set_faults(SimFaults {
            write_eio_per_mille: 0,
            sync_eio_per_mille: 0,
            open_emfile_per_mille: 0,
            capacity_bytes: u64::MAX,
            ..disk.faults()
        })
    };
    for _ in 0..steps {
        now_ms += rng.i64(0..100);
        match rng.u8(0..100) {
            0..=59 => {
                let mut waits = Vec::new();
                for _ in 0..rng.usize(1..6) {
                    tag += 1;
                    let (batch, recs) = keyed_batch(&mut rng, keys, now_ms, tag);
                    if let Ok(t) = log.enqueue(&batch, AckLevel::Durable, now_ms) {
                        waits.push((t.base_offset, recs, glommio::spawn_local(t.wait())));
                    }
                }
                for (base, recs, w) in waits {
                    let acked = w.await.is_ok();
                    for (i, rec) in recs.into_iter().enumerate() {
                        let o = base + i as u64;
                        if acked {
                            maybe.remove(&o);
                            durable.insert(o, rec);
                        } else {
                            maybe.entry(o).or_default().push(rec);
                        }
                    }
                }
            }
            60..=74 => {
                // A whole pass (it may fail on a fault, and then harms nothing).
                let hw = log.high_watermark();
                let ops = disk.counted();
                // A merge whose other segments cannot be renamed leaves them on disk (they
                // come back at a restart): no later pass may expire a tombstone.
                let fail_renames = failing.u8(0..8) == 0;
                disk.fail_renames(fail_renames.then_some("rename <seg>.log"));
                let held = log.compaction_held();
                let cleaned = log.clean(now_ms).await;
                disk.fail_renames(None);
                if !held && log.compaction_held() {
                    LEFT_ON_DISK.fetch_add(1, Ordering::Relaxed);
                } else if held && !log.compaction_held() {
                    LEFT_REMOVED.fetch_add(1, Ordering::Relaxed);
                }
                match cleaned {
                    Ok(Some(stats)) => {
                        pass_ops = disk.counted() - ops;
                        CLEAN_PASSES.fetch_add(1, Ordering::Relaxed);
                        RECORDS_REMOVED.fetch_add(stats.records_removed, Ordering::Relaxed);
                        MERGED.fetch_add(stats.segments_merged, Ordering::Relaxed);
                    }
                    Ok(None) => {}
                    Err(e) => assert!(
                        matches!(
                            e.code(),
                            wire::ErrorCode::StorageIo
                                | wire::ErrorCode::DiskFull
                                | wire::ErrorCode::ResourceLimit
                        ),
                        "clean: {e}"
                    ),
                }
                assert!(log.high_watermark() >= hw, "a pass moved the high watermark back");
                let got = read_records(&log).await;
                check(&got, &durable, &maybe);
                check_cleaned(&got, log.cleaned_to(), log.high_watermark());
            }
            75..=82 => {
                // A crash in the middle of a pass.
                let done = Rc::new(std::cell::Cell::new(false));
                let cleaning = {
                    let (log, done) = (log.clone(), done.clone());
                    glommio::spawn_local(async move {
                        let _ = log.clean(now_ms).await;
                        done.set(true);
                    })
                };
                let frozen = rng.u8(0..4) != 0;
                if frozen {
                    // Right before one disk operation: anywhere, in the checkpoint write, or
                    // in a swap.
                    match rng.u8(0..4) {
                        0 => disk.freeze_after(rng.u64(0..=pass_ops + 2)),
                        1 => disk.freeze_from(CHECKPOINT_STEPS[0], rng.u64(0..=6)),
                        2 => disk.freeze_from("rename <seg>.log.cleaned", rng.u64(0..=4)),
                        // Between the renames of a merge's other segments.
                        _ => disk.freeze_from("rename <seg>.log", rng.u64(0..=5)),
                    }
                    for _ in 0..100_000 {
                        if done.get() || disk.frozen_at().is_some() {
                            break;
                        }
                        futures_lite::future::yield_now().await;
                    }
                } else {
                    let most = [4, 30, 200][rng.usize(0..3)];
                    for _ in 0..rng.u32(0..most) {
                        futures_lite::future::yield_now().await;
                    }
                }
                let finished = done.get();
                if !frozen && !finished && stops.bool() {
                    // A clean stop during the pass (a graceful shutdown, a topic deleted):
                    // the pass ends as it may, then the log reopens.
                    let _ = log.close().await;
                    let _ = cleaning.await;
                    CLOSED_DURING.fetch_add(1, Ordering::Relaxed);
                    drop(log);
                    no_faults(disk.sim());
                    log = Rc::new(open(&disk).await.unwrap());
                    reopened(&log, &mut durable, &mut maybe).await;
                    continue;
                }
                let _ = cleaning.cancel().await; // stopped where it is, as a killed process
                CUT_SHORT.fetch_add(u64::from(!finished), Ordering::Relaxed);
                drop(log);
                disk.sim().crash();
                if frozen {
                    count_crash_point(disk.thaw());
                }
                no_faults(disk.sim());
                log = Rc::new(open(&disk).await.unwrap());
                reopened(&log, &mut durable, &mut maybe).await;
            }
            83..=88 => {
                // Crash, or a clean stop.
                if rng.bool() {
                    let _ = log.close().await;
                } else {
                    disk.sim().crash();
                }
                drop(log);
                no_faults(disk.sim());
                log = Rc::new(open(&disk).await.unwrap());
                reopened(&log, &mut durable, &mut maybe).await;
            }
            89..=93 => {
                let f = disk.sim().faults();
                disk.sim().set_faults(SimFaults {
                    write_eio_per_mille: [0, 100, 500][rng.usize(0..3)],
                    open_emfile_per_mille: [0, 20, 200][rng.usize(0..3)],
                    ..f
                });
            }
            _ => {
                let f = disk.sim().faults();
                let cap = if rng.bool() {
                    disk.sim().used_bytes() + rng.u64(0..16 << 10)
                } else {
                    u64::MAX
                };
                disk.sim().set_faults(SimFaults { capacity_bytes: cap, ..f });
            }
        }
    }
    // A last pass with no faults cleans, and a restart keeps what it left and how far.
    no_faults(disk.sim());
    let _ = log.close().await;
    drop(log);
    let log = Rc::new(open(&disk).await.unwrap());
    reopened(&log, &mut durable, &mut maybe).await;
    while let Ok(Some(stats)) = log.clean(now_ms + 1_000_000).await {
        CLEAN_PASSES.fetch_add(1, Ordering::Relaxed);
        RECORDS_REMOVED.fetch_add(stats.records_removed, Ordering::Relaxed);
        MERGED.fetch_add(stats.segments_merged, Ordering::Relaxed);
    }
    let got = read_records(&log).await;
    check(&got, &durable, &maybe);
    check_cleaned(&got, log.cleaned_to(), log.high_watermark());
    let cleaned_to = log.cleaned_to();
    drop(log);
    disk.sim().crash();
    let log = open(&disk).await.unwrap();
    let got = read_records(&log).await;
    check(&got, &durable, &maybe);
    check_cleaned(&got, log.cleaned_to(), log.high_watermark());
    assert_eq!(log.cleaned_to(), cleaned_to, "a restart lost the cleaner's progress");
    log.close().await.unwrap();
}

/// After a reopen: checked, then what is on disk is the truth (a record that may or may
/// not have survived did, or did not).
async fn reopened<D: io::Disk>(
    log: &PartitionLog<D>,
    durable: &mut BTreeMap<u64, Rec>,
    maybe: &mut BTreeMap<u64, Vec<Rec>>,
) {
    let got = read_records(log).await;
    check(&got, durable, maybe);
    check_cleaned(&got, log.cleaned_to(), log.high_watermark());
    let hw = log.high_watermark();
    // Acked records above the high watermark cannot exist: the check above found them.
    assert!(durable.keys().all(|&o| o < hw), "durable record past the high watermark {hw}");
    for (o, rec) in got {
        if maybe.remove(&o).is_some() {
            durable.insert(o, rec);
        }
    }
    maybe.clear();
}

#[test]
fn compaction_simulation() {
    let seeds: Vec<u64> = match std::env::var("SIM_SEED") {
        Ok(s) => vec![s.parse().expect("SIM_SEED is a number")],
        Err(_) => {
            let n: u64 =
                std::env::var("SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
            (0..n).collect()
        }
    };
    let steps = std::env::var("SIM_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    run(move || async move {
        let many = seeds.len() >= 100;
        for seed in seeds {
            simulate(seed, steps).await;
        }
        let passes = CLEAN_PASSES.load(Ordering::Relaxed);
        let removed = RECORDS_REMOVED.load(Ordering::Relaxed);
        let cut = CUT_SHORT.load(Ordering::Relaxed);
        let merged = MERGED.load(Ordering::Relaxed);
        let closed = CLOSED_DURING.load(Ordering::Relaxed);
        let (left, removed_later) =
            (LEFT_ON_DISK.load(Ordering::Relaxed), LEFT_REMOVED.load(Ordering::Relaxed));
        eprintln!("compaction: {passes} passes removed {removed} records and merged {merged} segments; {cut} passes cut short by a crash, {closed} by a clean stop; {left} left a merged segment on disk, {removed_later} later passes removed it");
        let points = CRASH_POINTS.lock().unwrap().clone();
        let line: Vec<String> = points.iter().map(|(p, n)| format!("{p}: {n}")).collect();
        eprintln!("compaction: frozen passes crashed before: {}", line.join(", "));
        assert!(
            !many
                || (passes > 0
                    && removed > 0
                    && cut > 0
                    && merged > 0
                    && closed > 0
                    && left > 0
                    && removed_later > 0),
            "compaction went untested"
        );
        if many {
            for step in CHECKPOINT_STEPS.iter().chain(&MERGE_STEPS) {
                assert!(points.get(*step).is_some_and(|&n| n > 0), "no crash before {step}");
            }
        }
    });
}

/// Seed 11370: a merge's run of emptied batches spanned the start of a segment of the group
/// whose `.log` a crash left on disk, so after the restart two segments overlapped.
#[test]
fn compaction_seed_11370() {
    run(|| async { simulate(11370, 60).await });
}

/// Seed 445: a clean stop while a pass rewrote its last group dropped that rewrite, and the
/// pass still wrote its checkpoint, so below the cleaner's progress a key kept two records
/// (an expired tombstone could then go while the value it deleted stayed).
#[test]
fn compaction_seed_445() {
    run(|| async { simulate(445, 60).await });
}

/// Record deletion (and retention) while a compaction merge's other segments could not be
/// renamed away: the merged segment that covers them stays (and what follows it), so a
/// restart does not find them again as the log's first segments (deleted records back, a
/// gap after them). (Deletion first tries their renames again, as a pass does.)
#[test]
fn record_deletion_keeps_a_merged_segment_while_the_ones_it_covers_are_on_disk() {
    run(|| async {
        let disk = FreezeDisk::new(SimDisk::new(9, SimFaults::default()));
        let dir = PathBuf::from("/sim/compact/held");
        let shard = ShardCache::new(0);
        let config = LogConfig { compact: true, segment_bytes_max: 8 << 10, ..small_config() };
        let open = |disk: &FreezeDisk| {
            PartitionLog::open(
                disk.clone(),
                dir.clone(),
                config.clone(),
                shard.partition(),
                unlimited_files(),
            )
        };
        let log = open(&disk).await.unwrap();
        let mut rng = fastrand::Rng::with_seed(9);
        for tag in 0..120 {
            let (batch, _) = keyed_batch(&mut rng, 3, 1_000_000, tag);
            log.enqueue(&batch, AckLevel::Durable, 1_000_000).unwrap().wait().await.unwrap();
        }
        // A first pass shrinks the segments; later ones merge them.
        log.clean(1_000_000).await.unwrap();
        disk.fail_renames(Some("rename <seg>.log"));
        for round in 0..20 {
            for tag in 0..40 {
                let (batch, _) = keyed_batch(&mut rng, 3, 1_000_000, 1_000 * round + tag);
                log.enqueue(&batch, AckLevel::Durable, 1_000_000).unwrap().wait().await.unwrap();
            }
            let _ = log.clean(1_000_000).await;
            if log.compaction_held() {
                break;
            }
        }
        assert!(log.compaction_held(), "a pass merged and could not rename a segment away");
        let hw = log.high_watermark();
        log.delete_records_before(hw).await.unwrap();
        let kept_from = log.first_segment_base();
        assert!(log.compaction_held());
        // A crash: what a restart finds must not start before what the deletion kept.
        drop(log);
        disk.sim().crash();
        disk.fail_renames(None);
        let log = open(&disk).await.unwrap();
        assert!(
            log.log_start_offset() >= kept_from,
            "deleted segments came back: the log starts at {} (kept from {kept_from})",
            log.log_start_offset()
        );
        log.close().await.unwrap();
    });
}
