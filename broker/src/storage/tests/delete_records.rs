//! Record deletion (`PartitionLog::delete_records_before`, Kafka's DeleteRecords): the log
//! start moves forward at once, whole closed segments below it leave the log, and after a
//! crash the log starts no later than asked.

use super::*;

/// A log of several 4 KiB segments, every batch acked `durable`; returns it with base offset
/// -> stored bytes.
async fn filled(disk: &SimDisk, dir: &Path) -> (PartitionLog<SimDisk>, BTreeMap<u64, Vec<u8>>) {
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

fn reopen(disk: &SimDisk, dir: &Path) -> impl std::future::Future<Output = PartitionLog<SimDisk>> {
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
        // Crash: the log starts no later than asked (at the first kept segment's base) and
        // everything from the asked offset on is there, byte for byte.
        drop(log);
        disk.crash();
        let log = reopen(&disk, &dir).await;
        let start = log.log_start_offset();
        assert!(start <= base, "after a crash the log starts at {start}, past {target}");
        assert_eq!(log.high_watermark(), hw);
        let got = read_all(&log, start).await.unwrap();
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
        // A clean restart starts at the active segment's base: earlier than asked, never later.
        let log = reopen(&disk, &dir).await;
        assert_eq!(log.segment_count(), 1);
        let start = log.log_start_offset();
        assert!(0 < start && start <= hw, "restarted at {start}, asked {hw}");
        assert_eq!(log.high_watermark(), done.last_offset + 1);
        read_all(&log, start).await.unwrap();
        log.close().await.unwrap();
    });
}
