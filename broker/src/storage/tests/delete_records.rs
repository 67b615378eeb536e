//! Record deletion (`PartitionLog::delete_records_before`, Kafka's DeleteRecords): the log
//! start moves forward at once, whole closed segments below it leave the log, and after a
//! crash the log starts where asked (its checkpoint, `offset_checkpoint.rs`).

use std::cell::Cell;

use super::freeze_disk::FreezeDisk;
use super::*;
use crate::storage::io::Disk;
use crate::storage::log::log_start_checkpoint::LogStartCheckpoint;

/// A log of several 4 KiB segments, every batch acked `durable`; returns it with base offset
/// -> stored bytes.
async fn filled<D: Disk + Clone>(
    disk: &D,
    dir: &Path,
) -> (PartitionLog<D>, BTreeMap<u64, Vec<u8>>) {
    let mut config = small_config();
    config.segment_bytes_max = 4096;
    let log = PartitionLog::open(
        disk.clone(),
        dir.to_owned(),
        config,
        ShardCache::new(64 << 10).partition(),
        unlimited_files(),
    )
    .await
    .unwrap();
    let mut rng = fastrand::Rng::with_seed(16);
    let mut stored_batches = BTreeMap::new();
    for i in 0..120 {
        let batch = make_batch(&mut rng, 1_000 + i, i as u64);
        let done = log.append(&batch, AckLevel::Durable, 5_000 + i).await.unwrap();
        stored_batches.insert(done.base_offset, stored(&batch, done.base_offset, 5_000 + i));
    }
    assert!(log.segment_count() >= 6, "{} segments", log.segment_count());
    (log, stored_batches)
}

fn reopen<D: Disk + Clone>(
    disk: &D,
    dir: &Path,
) -> impl std::future::Future<Output = PartitionLog<D>> {
    let mut config = small_config();
    config.segment_bytes_max = 4096;
    let (disk, dir) = (disk.clone(), dir.to_owned());
    async move {
        PartitionLog::open(disk, dir, config, ShardCache::new(0).partition(), unlimited_files())
            .await
            .unwrap()
    }
}

#[test]
fn delete_records_before_moves_the_start_and_drops_whole_segments_below_it() {
    run(|| async {
        let disk = SimDisk::new(3, SimFaults::default());
        let dir = PathBuf::from("/d/t/0");
        let (log, stored_batches) = filled(&disk, &dir).await;
        let segments = log.segment_count();
        let size_bytes = log.size_bytes();
        let hw = log.high_watermark();
        // An offset in the middle of the log, inside a batch (not at its base).
        let (&base, bytes) = stored_batches.range(hw / 2..).next().unwrap();
        let records = u64::from(wire::BatchHeader::new(bytes).unwrap().record_count());
        let target = if records > 1 { base + 1 } else { base };
        let deleted = log.delete_records_before(target).await.unwrap();
        assert!(deleted >= 2, "{deleted} of {segments} segments deleted");
        assert_eq!(log.segment_count(), segments - deleted);
        assert!(log.size_bytes() < size_bytes);
        assert_eq!(log.log_start_offset(), target, "the start moves to exactly the offset asked");
        // Below the start: out of range at once, although those records are still on disk.
        let r = log.read(target - 1, 1 << 20, FirstBatch::Always).await;
        assert!(
            matches!(r, Err(StorageError::OffsetOutOfRange { log_start_offset, .. }) if log_start_offset == target),
            "{r:?}"
        );
        // At the start: the batch holding it, whole.
        let r = log.read(target, 1 << 20, FirstBatch::Always).await.unwrap();
        let first = Batches::new(&r.batches[0]).next().unwrap().unwrap();
        assert_eq!(first.header().base_offset(), base);
        assert_eq!(r.log_start_offset, target);
        // A time lookup never answers below the start.
        let (o, _) = log.offset_for_timestamp(0).await.unwrap().unwrap();
        assert!(o >= target, "time lookup found {o} below the start {target}");
        // An offset below the start changes nothing; one past the high watermark is refused.
        assert_eq!(log.delete_records_before(1).await.unwrap(), 0);
        assert_eq!(log.log_start_offset(), target);
        let r = log.delete_records_before(hw + 1).await;
        assert!(matches!(r, Err(StorageError::OffsetOutOfRange { .. })), "{r:?}");
        // Retention afterwards never moves the start back.
        log.apply_retention(i64::MAX).await.unwrap();
        assert!(log.log_start_offset() >= target);
        // Crash: the log starts exactly where asked (its checkpoint was synced before the
        // deletion returned) and everything from there on is there, byte for byte.
        drop(log);
        disk.crash();
        let log = reopen(&disk, &dir).await;
        assert_eq!(log.log_start_offset(), target, "after a crash");
        assert_eq!(log.high_watermark(), hw);
        let r = log.read(target - 1, 1 << 20, FirstBatch::Always).await;
        assert!(matches!(r, Err(StorageError::OffsetOutOfRange { .. })), "{r:?}");
        let got = read_all(&log, target).await.unwrap();
        for (o, bytes) in stored_batches.range(base..) {
            assert_eq!(got.get(o), Some(bytes), "batch at {o} after the crash");
        }
        log.close().await.unwrap();
    });
}

#[test]
fn delete_records_before_the_high_watermark_keeps_the_active_segment() {
    run(|| async {
        let disk = SimDisk::new(5, SimFaults::default());
        let dir = PathBuf::from("/d/t/1");
        let (log, _) = filled(&disk, &dir).await;
        let hw = log.high_watermark();
        log.delete_records_before(hw).await.unwrap();
        assert_eq!(log.segment_count(), 1, "only the active segment stays");
        assert_eq!(log.log_start_offset(), hw);
        let r = log.read(hw, 1 << 20, FirstBatch::Always).await.unwrap();
        assert!(r.batches.is_empty());
        // Appends go on from there.
        let mut rng = fastrand::Rng::with_seed(1);
        let done = log.append(&make_batch(&mut rng, 1, 1), AckLevel::Durable, 1).await.unwrap();
        assert_eq!(done.base_offset, hw);
        log.close().await.unwrap();
        drop(log);
        // A clean restart starts where asked, inside the active segment.
        let log = reopen(&disk, &dir).await;
        assert_eq!(log.segment_count(), 1);
        assert_eq!(log.log_start_offset(), hw);
        assert_eq!(log.high_watermark(), done.last_offset + 1);
        read_all(&log, hw).await.unwrap();
        log.close().await.unwrap();
    });
}

/// A crash before every step of the log start checkpoint's write (a slot's first write,
/// which creates it, and a write in place), and before the deletion's first segment rename:
/// the log restarts at the start before the deletion or at the new one (nothing between, no
/// record after it missing), and at the new one once its checkpoint is durable.
#[test]
fn a_crash_while_the_log_start_is_persisted_keeps_the_old_start_or_the_new() {
    #[derive(Debug, PartialEq)]
    enum Start {
        Old,
        New,
        Either,
    }
    // (which deletion the crash comes in, before which step, the start after it)
    let cases = [
        (2, "create log-start-checkpoint.0", Start::Old),
        (2, "write log-start-checkpoint.0", Start::Old),
        (2, "fdatasync log-start-checkpoint.0", Start::Old),
        // The slot's name is not durable yet.
        (2, "sync_dir after fdatasync log-start-checkpoint.0", Start::Old),
        (2, "rename <seg>.log", Start::New),
        (2, "finished", Start::New),
        (3, "write log-start-checkpoint.1", Start::Old),
        (3, "fdatasync log-start-checkpoint.1", Start::Either),
        (4, "write log-start-checkpoint.0", Start::Old),
        (4, "fdatasync log-start-checkpoint.0", Start::Either),
        (4, "rename <seg>.log", Start::New),
        (3, "rename <seg>.log", Start::New),
        (3, "finished", Start::New),
    ];
    run(move || async move {
        for (i, (crash_in, step, expected)) in cases.iter().enumerate() {
            for seed in 0..4 {
                let disk = FreezeDisk::new(SimDisk::new(40 + seed, SimFaults::default()));
                let dir = PathBuf::from(format!("/d/t/{i}"));
                let (log, stored_batches) = filled(&disk, &dir).await;
                let hw = log.high_watermark();
                let asked = [hw / 5 + 1, hw * 2 / 5 + 1, hw * 3 / 5 + 1, hw * 4 / 5 + 1];
                for &offset in &asked[..crash_in - 1] {
                    log.delete_records_before(offset).await.unwrap();
                }
                let (old, new) = (asked[crash_in - 2], asked[crash_in - 1]);
                if *step != "finished" {
                    disk.freeze_from(step, 0);
                }
                let (log, done) = (Rc::new(log), Rc::new(Cell::new(false)));
                let deleting = glommio::spawn_local({
                    let (log, done) = (log.clone(), done.clone());
                    async move {
                        log.delete_records_before(new).await.unwrap();
                        done.set(true);
                    }
                });
                for _ in 0..100_000 {
                    if done.get() || disk.frozen_at().is_some() {
                        break;
                    }
                    futures_lite::future::yield_now().await;
                }
                let _ = deleting.cancel().await; // stopped where it is, as a killed process
                assert_eq!(done.get(), *step == "finished", "{step}: {:?}", disk.frozen_at());
                drop(log);
                disk.sim().crash();
                let frozen_at = disk.thaw();
                assert_eq!(frozen_at.as_deref().unwrap_or("finished"), *step);
                let log = reopen(&disk, &dir).await;
                let start = log.log_start_offset();
                let ok = match expected {
                    Start::Old => start == old,
                    Start::New => start == new,
                    Start::Either => start == old || start == new,
                };
                assert!(ok, "{step}: started at {start}, expected {expected:?} ({old} or {new})");
                assert_eq!(log.high_watermark(), hw);
                let r = log.read(start - 1, 1 << 20, FirstBatch::Always).await;
                assert!(matches!(r, Err(StorageError::OffsetOutOfRange { .. })), "{r:?}");
                let got = read_all(&log, start).await.unwrap();
                let from = *stored_batches.range(..=start).next_back().unwrap().0;
                for (o, bytes) in stored_batches.range(from..) {
                    assert_eq!(got.get(o), Some(bytes), "{step}: batch at {o}");
                }
                log.close().await.unwrap();
            }
        }
    });
}

/// A deletion whose checkpoint cannot be written fails and changes nothing: the log start
/// stays, the records below the asked offset are still read.
#[test]
fn a_deletion_whose_checkpoint_fails_changes_nothing() {
    run(|| async {
        let disk = SimDisk::new(9, SimFaults::default());
        let dir = PathBuf::from("/d/t/3");
        let (log, stored_batches) = filled(&disk, &dir).await;
        let (start, segments) = (log.log_start_offset(), log.segment_count());
        let hw = log.high_watermark();
        disk.set_faults(SimFaults { sync_eio_per_mille: 1000, ..SimFaults::default() });
        let r = log.delete_records_before(hw / 2).await;
        assert!(matches!(r, Err(StorageError::Io(_))), "{r:?}");
        disk.set_faults(SimFaults::default());
        assert_eq!(log.log_start_offset(), start);
        assert_eq!(log.segment_count(), segments);
        let got = read_all(&log, start).await.unwrap();
        assert_eq!(got.len(), stored_batches.len());
        // Once the disk syncs again, the same deletion goes through.
        log.delete_records_before(hw / 2).await.unwrap();
        assert_eq!(log.log_start_offset(), hw / 2);
        log.close().await.unwrap();
    });
}

/// A checkpoint past the recovered end (records acked below `durable`, deleted, then taken
/// back by a crash): the log starts at its end, and the next append lands there.
#[test]
fn a_log_start_past_the_recovered_end_starts_the_log_at_its_end() {
    run(|| async {
        let disk = SimDisk::new(11, SimFaults::default());
        let dir = PathBuf::from("/d/t/4");
        let (log, _) = filled(&disk, &dir).await;
        let end = log.high_watermark();
        log.close().await.unwrap();
        drop(log);
        let names = disk.list_dir(&dir).await.unwrap();
        let (_, checkpoint) =
            LogStartCheckpoint::read(&disk, &unlimited_files(), &dir, &names).await.unwrap();
        checkpoint.write(&disk, &unlimited_files(), &dir, end + 10).await.unwrap();
        let log = reopen(&disk, &dir).await;
        assert_eq!(log.high_watermark(), end);
        assert_eq!(log.log_start_offset(), end);
        let mut rng = fastrand::Rng::with_seed(3);
        let next = log.append(&make_batch(&mut rng, 1, 3), AckLevel::Durable, 3).await.unwrap();
        assert_eq!(next.base_offset, end);
        let r = log.read(end, 1 << 20, FirstBatch::Always).await.unwrap();
        assert_eq!(r.batches.len(), 1);
        // Appends past the old checkpoint are not deleted by the next restart.
        for i in 0..20 {
            log.append(&make_batch(&mut rng, 1, 4 + i), AckLevel::Durable, 4).await.unwrap();
        }
        assert!(log.high_watermark() > end + 10);
        log.close().await.unwrap();
        drop(log);
        let log = reopen(&disk, &dir).await;
        assert_eq!(log.log_start_offset(), end);
        // A later deletion moves it again, across a restart.
        log.delete_records_before(end + 1).await.unwrap();
        log.close().await.unwrap();
        drop(log);
        let log = reopen(&disk, &dir).await;
        assert_eq!(log.log_start_offset(), end + 1);
        log.close().await.unwrap();
    });
}

/// Records deleted while they lie in the active segment go once it rolls, at retention's
/// next pass (with retention off): a deletion did not free their space before.
#[test]
fn records_deleted_in_the_active_segment_go_with_retentions_next_pass() {
    run(|| async {
        let disk = SimDisk::new(13, SimFaults::default());
        let dir = PathBuf::from("/d/t/5");
        let mut config = small_config();
        config.segment_bytes_max = 4096;
        let open = PartitionLog::open(
            disk.clone(),
            dir.clone(),
            config,
            ShardCache::new(0).partition(),
            unlimited_files(),
        );
        let log = open.await.unwrap();
        let mut rng = fastrand::Rng::with_seed(5);
        // Everything written so far deleted before each append, until one rolls: the
        // segment that closes then was active at its last deletion, which kept it.
        let mut hw = 0;
        for i in 0.. {
            hw = log.high_watermark();
            assert_eq!(log.delete_records_before(hw).await.unwrap(), 0, "the active one stays");
            log.append(&make_batch(&mut rng, 400, 2 + i), AckLevel::Durable, 2).await.unwrap();
            if log.segment_count() > 1 {
                break;
            }
        }
        assert_eq!(log.segment_count(), 2);
        let size_bytes = log.size_bytes();
        let deleted = log.apply_retention(i64::MAX).await.unwrap();
        assert_eq!(deleted, 1, "the segment wholly below the start goes");
        assert!(log.size_bytes() < size_bytes);
        assert_eq!(log.log_start_offset(), hw);
        // Retention takes nothing at or past the start.
        assert_eq!(log.apply_retention(i64::MAX).await.unwrap(), 0);
        log.close().await.unwrap();
    });
}

/// A deletion after its log closed writes nothing into the directory (which may belong to
/// a topic created again under the same name by then) and fails.
#[test]
fn a_deletion_after_close_writes_nothing() {
    run(|| async {
        let disk = SimDisk::new(17, SimFaults::default());
        let dir = PathBuf::from("/d/t/6");
        let (log, _) = filled(&disk, &dir).await;
        let hw = log.high_watermark();
        log.close().await.unwrap();
        let r = log.delete_records_before(hw / 2).await;
        assert!(matches!(r, Err(StorageError::Closed)), "{r:?}");
        let names = disk.list_dir(&dir).await.unwrap();
        assert!(!names.iter().any(|n| n.starts_with("log-start-checkpoint")), "{names:?}");
        assert_eq!(log.log_start_offset(), 0);
    });
}
