//! The partition log on the real disk: glommio DMA files in a temp dir, crashes simulated by
//! dropping the log, damage made by writing the files directly.

use super::*;

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("broker-storage-").tempdir().expect("temp dir")
}

#[test]
fn real_disk_write_reopen_read_back() {
    let tmp = temp_dir();
    let dir = tmp.path().join("t").join("0");
    run(move || async move {
        let shard = ShardCache::new(0); // no cache: every read hits the disk
        let mut config = small_config();
        config.segment_bytes_max = 64 << 10;
        let log = PartitionLog::open(
            DmaDisk,
            dir.clone(),
            config.clone(),
            shard.partition(),
            unlimited_files(),
        )
        .await
        .unwrap();
        let mut rng = fastrand::Rng::with_seed(7);
        let mut expected = BTreeMap::new();
        for i in 0..200u64 {
            let batch = make_batch(&mut rng, 1000 + i as i64, i);
            let ack = [AckLevel::Written, AckLevel::Durable][(i % 2) as usize];
            let t = log.enqueue(&batch, ack, 5000).unwrap();
            expected.insert(t.base_offset, stored(&batch, t.base_offset, 5000));
            if i % 7 == 0 {
                t.wait().await.unwrap();
            } else {
                glommio::spawn_local(t.wait()).detach();
            }
        }
        // A final durable append: every earlier write completed before it (order kept).
        let last = make_batch(&mut rng, 9999, 999);
        let t = log.enqueue(&last, AckLevel::Durable, 5000).unwrap();
        expected.insert(t.base_offset, stored(&last, t.base_offset, 5000));
        t.wait().await.unwrap();
        assert!(log.segment_count() > 1, "expected several segments");
        assert_eq!(read_all(&log, 0).await.unwrap(), expected);
        log.close().await.unwrap();
        drop(log);

        let log =
            PartitionLog::open(DmaDisk, dir.clone(), config, shard.partition(), unlimited_files())
                .await
                .unwrap();
        let got = read_all(&log, 0).await.unwrap();
        for (o, bytes) in &expected {
            assert_eq!(got.get(o), Some(bytes), "batch at {o}");
        }
        // Reads from the middle of a batch return that whole batch first.
        let (o, bytes) = expected.iter().nth(50).unwrap();
        let view = BatchView::validate(bytes).unwrap();
        if view.len() > 1 {
            let r = log.read(o + 1, 1, FirstBatch::Always).await.unwrap();
            assert_eq!(&r.batches[0][..bytes.len()], &bytes[..]);
        }
        // With FirstBatch::IfItFits only whole batches within the limit come back, none if
        // the first does not fit; a batch larger than the read-ahead window that will not be
        // returned is not needed whole.
        let big = expected.iter().skip(1).find(|(_, b)| b.len() > 4 << 10);
        let (&o, bytes) = big.expect("make_batch makes some batches over 4 KiB");
        let (&before, prev) = expected.range(..o).next_back().unwrap();
        for (from, limit, want) in [
            (o, bytes.len() - 1, 0),
            (o, bytes.len(), bytes.len()),
            (o, 0, 0),
            (before, prev.len() + bytes.len() - 1, prev.len()),
            (before, prev.len() + bytes.len(), prev.len() + bytes.len()),
        ] {
            let r = log.read(from, limit, FirstBatch::IfItFits).await.unwrap();
            assert_eq!(r.bytes(), want, "read at {from} within {limit}");
            assert!(r.high_watermark > from);
        }
        let r = log.read(o, 1, FirstBatch::Always).await.unwrap();
        assert_eq!(r.bytes(), bytes.len());
        // The length of the batch holding an offset, from its header (no cache here: every
        // one from disk), for every offset of every batch; none past the end.
        for (&base, bytes) in &expected {
            let records = u64::from(BatchView::validate(bytes).unwrap().len() as u32);
            for at in base..base + records {
                let told = log.batch_bytes_at(at).await.unwrap().map(|b| b.stored);
                assert_eq!(told, Some(bytes.len()), "at {at}");
            }
        }
        let end = log.high_watermark();
        assert_eq!(log.batch_bytes_at(end).await.unwrap(), None);
        // Offset by timestamp.
        let (found, ts) = log.offset_for_timestamp(1050).await.unwrap().unwrap();
        assert!(ts >= 1050);
        assert!(found > 0);
        assert_eq!(log.offset_for_timestamp(i64::MAX).await.unwrap(), None);
        // Bounded: a lookup allowed 1 byte says how much a batch on its way takes to read and
        // open; asked again with that much (again while a later batch asks for more), it
        // finds the same record.
        let mut bytes_max = 1;
        let bounded = loop {
            match log.offset_for_timestamp_within(1050, bytes_max).await.unwrap() {
                TimestampLookup::NeedsBytes(n) => {
                    assert!(n > bytes_max, "asks for more than it had: {n} <= {bytes_max}");
                    bytes_max = n;
                }
                other => break other,
            }
        };
        assert_eq!(bounded, TimestampLookup::Found(found, ts));
        log.close().await.unwrap();
    });
}

#[test]
fn real_disk_retention_right_after_rolls_waits_for_the_seal() {
    // Retention that reaches a segment whose roll is still sealing it in the background
    // (creating its index files) used to remove those files mid-open, and glommio panics
    // when an opened path is gone. Tiny segments and retention after every append.
    let tmp = temp_dir();
    let dir = tmp.path().join("t").join("0");
    run(move || async move {
        let shard = ShardCache::new(1 << 20);
        let mut config = small_config();
        config.segment_bytes_max = 8 << 10;
        config.retention_bytes = 0;
        let log =
            PartitionLog::open(DmaDisk, dir.clone(), config, shard.partition(), unlimited_files())
                .await
                .unwrap();
        let mut rng = fastrand::Rng::with_seed(11);
        let mut last = 0;
        for i in 0..400u64 {
            let batch = make_batch(&mut rng, 1000, i);
            let ack = [AckLevel::Written, AckLevel::Durable][(i % 2) as usize];
            let t = log.enqueue(&batch, ack, 5000).unwrap();
            last = t.last_offset;
            t.wait().await.unwrap();
            log.apply_retention(5000).await.unwrap();
        }
        assert!(log.log_start_offset() > 0, "retention deleted segments");
        let r = log.read(log.log_start_offset(), 1 << 20, FirstBatch::Always).await.unwrap();
        assert_eq!(r.high_watermark, last + 1);
        log.close().await.unwrap();
    });
}

#[test]
fn readers_see_written_data_once_synced_unless_read_unsynced() {
    let tmp = temp_dir();
    let dir = tmp.path().join("t");
    run(move || async move {
        let mut rng = fastrand::Rng::with_seed(5);
        for read_unsynced in [false, true] {
            let shard = ShardCache::new(1 << 20);
            let mut config = small_config();
            config.read_unsynced = read_unsynced;
            let log = PartitionLog::open(
                DmaDisk,
                dir.join(read_unsynced.to_string()),
                config,
                shard.partition(),
                unlimited_files(),
            )
            .await
            .unwrap();
            let mut end = 0;
            for i in 0..10 {
                let t = log.enqueue(&make_batch(&mut rng, 1, i), AckLevel::Written, 5).unwrap();
                end = t.last_offset + 1;
                t.wait().await.unwrap();
            }
            if read_unsynced {
                assert_eq!(log.high_watermark(), end, "visible at the written ack");
                assert_eq!(log.stats().syncs, 0, "nothing asked for a sync");
            } else {
                // No append asked for `durable`, yet the log syncs so readers see the data.
                let seen = glommio::timer::timeout(std::time::Duration::from_secs(10), async {
                    Ok(log.high_watermark_mark().wait_for(end).await)
                })
                .await
                .unwrap();
                assert!(seen);
                assert!(log.durable_offset() >= end);
                assert!(log.stats().syncs >= 1);
            }
            assert_eq!(read_all(&log, 0).await.unwrap().len(), 10);
            log.close().await.unwrap();
        }
    });
}

/// Opens (recovering) the log in `dir` on the real disk, with no cache and no descriptor cap.
async fn open_real(dir: PathBuf, config: LogConfig) -> Result<PartitionLog<DmaDisk>, StorageError> {
    PartitionLog::open(DmaDisk, dir, config, ShardCache::new(0).partition(), unlimited_files())
        .await
}

/// Builds a closed log of a few segments on the real disk and returns its expected content.
async fn build_real_log(dir: &Path, config: &LogConfig) -> BTreeMap<u64, Vec<u8>> {
    let log = open_real(dir.to_owned(), config.clone()).await.unwrap();
    let mut rng = fastrand::Rng::with_seed(3);
    let mut expected = BTreeMap::new();
    for i in 0..60u64 {
        let batch = make_batch(&mut rng, 100 + i as i64, i);
        let t = log.enqueue(&batch, AckLevel::Durable, 77).unwrap();
        expected.insert(t.base_offset, stored(&batch, t.base_offset, 77));
        t.wait().await.unwrap();
    }
    log.close().await.unwrap();
    expected
}

/// The `.log` files in `dir`, oldest segment first.
fn log_paths(dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs
}

fn active_log_path(dir: &Path) -> PathBuf {
    log_paths(dir).pop().unwrap()
}

#[test]
fn real_disk_recovers_cut_mid_batch_and_garbage_tail_and_missing_index() {
    let tmp = temp_dir();
    let dir = tmp.path().join("t").join("0");
    run(move || async move {
        let config = small_config();
        let expected = build_real_log(&dir, &config).await;
        let active = active_log_path(&dir);
        let len = std::fs::metadata(&active).unwrap().len();
        assert!(len > 200);

        // 1. Cut the active segment in the middle of its last batch.
        let f = std::fs::OpenOptions::new().write(true).open(&active).unwrap();
        f.set_len(len - 37).unwrap();
        drop(f);
        let log = open_real(dir.clone(), config.clone()).await.unwrap();
        let got = read_all(&log, 0).await.unwrap();
        let hw = log.high_watermark();
        assert_eq!(got.len(), expected.len() - 1, "exactly the torn batch is cut");
        for (o, bytes) in &got {
            assert_eq!(expected.get(o), Some(bytes));
        }
        // Appends continue densely after the cut.
        let mut rng = fastrand::Rng::with_seed(11);
        let batch = make_batch(&mut rng, 1, 1);
        let t = log.append(&batch, AckLevel::Durable, 1).await.unwrap();
        assert_eq!(t.base_offset, hw);
        log.close().await.unwrap();
        drop(log);

        // 2. Random garbage appended to the active segment.
        let mut garbage = vec![0u8; 3000];
        fastrand::Rng::with_seed(5).fill(&mut garbage);
        let before = std::fs::metadata(&active).unwrap().len();
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().append(true).open(&active).unwrap();
            f.write_all(&garbage).unwrap();
        }
        let log = open_real(dir.clone(), config.clone()).await.unwrap();
        let after_garbage = read_all(&log, 0).await.unwrap();
        assert_eq!(after_garbage.len(), got.len() + 1);
        log.close().await.unwrap();
        drop(log);
        assert_eq!(std::fs::metadata(&active).unwrap().len(), before, "garbage truncated");

        // 3. Index files deleted → rebuilt, reads still work (and use them).
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|e| e == "index" || e == "timeindex") {
                std::fs::remove_file(p).unwrap();
            }
        }
        let log = open_real(dir.clone(), config.clone()).await.unwrap();
        assert_eq!(read_all(&log, 0).await.unwrap(), after_garbage);
        log.close().await.unwrap();
        let rebuilt = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|e| e == "index"))
            .count();
        assert!(rebuilt >= 2, "index files rebuilt");
    });
}

#[test]
fn real_disk_flipped_byte_in_closed_segment_is_reported_not_returned() {
    let tmp = temp_dir();
    let dir = tmp.path().join("t").join("0");
    run(move || async move {
        let config = small_config();
        build_real_log(&dir, &config).await;
        let logs = log_paths(&dir);
        let first = &logs[0];
        let mut bytes = std::fs::read(first).unwrap();
        bytes[200] ^= 0x40;
        std::fs::write(first, &bytes).unwrap();
        let log = open_real(dir.clone(), config).await.unwrap();
        let err = read_all(&log, 0).await.unwrap_err();
        assert_eq!(err.code(), wire::ErrorCode::CorruptStoredData, "{err}");
        log.close().await.unwrap();
    });
}

/// A batch's base offset is not covered by its CRC: one bit flipped there (the second batch
/// of a closed segment, one offset lower) is damage reported by reads and by a compaction
/// pass, never records returned at the wrong offsets, keys mapped to them, or a panic (the
/// cleaner's rewrite asserted offsets are dense and took the shard down, again at every
/// start).
#[test]
fn real_disk_a_damaged_base_offset_is_reported_not_returned() {
    let tmp = temp_dir();
    let dir = tmp.path().join("t").join("0");
    run(move || async move {
        let mut config = small_config();
        build_real_log(&dir, &config).await;
        let logs = log_paths(&dir);
        let mut bytes = std::fs::read(&logs[0]).unwrap();
        let first_len = wire::BatchHeader::new(&bytes).unwrap().batch_len() as usize;
        bytes[first_len + 8] ^= 0x01;
        std::fs::write(&logs[0], &bytes).unwrap();
        config.compact = true;
        config.cleaner_dirty_percent_min = 0;
        let log = open_real(dir.clone(), config).await.unwrap();
        let err = read_all(&log, 0).await.unwrap_err();
        assert_eq!(err.code(), wire::ErrorCode::CorruptStoredData, "{err}");
        let cleaned = log.clean(i64::MAX / 2).await;
        assert!(cleaned.is_err(), "a pass over the damage: {cleaned:?}");
        log.close().await.unwrap();
    });
}

#[test]
fn real_disk_stale_batches_past_a_closed_segments_end_are_not_read() {
    // A failed write can land bytes past a segment's data; if the segment is then sealed
    // and its trim never becomes durable, valid batches carrying the next segment's offsets
    // sit past its end. Recovery must end the closed segment where the next one starts.
    let tmp = temp_dir();
    let dir = tmp.path().join("t").join("0");
    run(move || async move {
        let config = small_config();
        let expected = build_real_log(&dir, &config).await;
        let logs = log_paths(&dir);
        assert!(logs.len() >= 2, "expected several segments");
        let next_base: u64 =
            logs[1].file_stem().unwrap().to_str().unwrap().parse().expect("20-digit name");
        let mut rng = fastrand::Rng::with_seed(99);
        let stale = stored(&make_batch(&mut rng, 5, 1_000_000), next_base, 77);
        assert_ne!(Some(&stale), expected.get(&next_base));
        let mut bytes = std::fs::read(&logs[0]).unwrap();
        bytes.extend_from_slice(&stale);
        std::fs::write(&logs[0], &bytes).unwrap();
        let log = open_real(dir.clone(), config).await.unwrap();
        assert_eq!(read_all(&log, 0).await.unwrap(), expected);
        log.close().await.unwrap();
    });
}

#[test]
fn disk_full_and_eio_are_typed_errors_and_nothing_acked_is_lost() {
    run(|| async {
        let disk = SimDisk::new(1, SimFaults::default());
        let dir = PathBuf::from("/d/t/0");
        let log = PartitionLog::open(
            disk.clone(),
            dir.clone(),
            small_config(),
            ShardCache::new(1 << 20).partition(),
            unlimited_files(),
        )
        .await
        .unwrap();
        let mut rng = fastrand::Rng::with_seed(2);
        let mut acked = BTreeMap::new();
        for i in 0..20 {
            let b = make_batch(&mut rng, i, i as u64);
            let t = log.append(&b, AckLevel::Durable, 9).await.unwrap();
            acked.insert(t.base_offset, stored(&b, t.base_offset, 9));
        }
        // Disk full.
        disk.set_faults(SimFaults { capacity_bytes: disk.used_bytes(), ..SimFaults::default() });
        let mut full_errors = 0;
        for i in 0..10 {
            let b = make_batch(&mut rng, i, 100 + i as u64);
            match log.append(&b, AckLevel::Durable, 9).await {
                Err(e) => {
                    assert_eq!(e.code(), wire::ErrorCode::DiskFull, "{e}");
                    full_errors += 1;
                }
                Ok(t) => {
                    acked.insert(t.base_offset, stored(&b, t.base_offset, 9));
                }
            }
        }
        assert!(full_errors > 0, "the disk never filled");
        // Reads keep working while full.
        let got = read_all(&log, 0).await.unwrap();
        for (o, b) in &acked {
            assert_eq!(got.get(o), Some(b));
        }
        // EIO on writes.
        disk.set_faults(SimFaults { write_eio_per_mille: 1000, ..SimFaults::default() });
        let e = log.append(&make_batch(&mut rng, 0, 500), AckLevel::Written, 9).await.unwrap_err();
        assert_eq!(e.code(), wire::ErrorCode::StorageIo);
        // Space returns: appends work again, densely.
        disk.set_faults(SimFaults::default());
        let hw = log.high_watermark();
        let b = make_batch(&mut rng, 0, 600);
        let t = log.append(&b, AckLevel::Durable, 9).await.unwrap();
        assert_eq!(t.base_offset, hw);
        acked.insert(t.base_offset, stored(&b, t.base_offset, 9));
        drop(log);
        disk.crash();
        let log = PartitionLog::open(
            disk.clone(),
            dir,
            small_config(),
            ShardCache::new(0).partition(),
            unlimited_files(),
        )
        .await
        .unwrap();
        let got = read_all(&log, 0).await.unwrap();
        for (o, b) in &acked {
            assert_eq!(got.get(o), Some(b), "acked batch at {o} lost");
        }
        log.close().await.unwrap();
    });
}

#[test]
fn failed_sync_fences_the_log_until_reopened() {
    run(|| async {
        let disk = SimDisk::new(3, SimFaults::default());
        let dir = PathBuf::from("/d/t/0");
        // Durable appends go through fdatasync here (an O_DSYNC write that fails is a failed
        // write, covered by the disk-full / EIO test).
        let config = LogConfig { dsync_writes: false, ..small_config() };
        let log = PartitionLog::open(
            disk.clone(),
            dir.clone(),
            config,
            ShardCache::new(0).partition(),
            unlimited_files(),
        )
        .await
        .unwrap();
        let mut rng = fastrand::Rng::with_seed(4);
        log.append(&make_batch(&mut rng, 0, 1), AckLevel::Durable, 1).await.unwrap();
        disk.set_faults(SimFaults { sync_eio_per_mille: 1000, ..SimFaults::default() });
        let e = log.append(&make_batch(&mut rng, 0, 2), AckLevel::Durable, 1).await.unwrap_err();
        assert!(matches!(e, StorageError::Fenced(_)), "{e}");
        disk.set_faults(SimFaults::default());
        assert!(matches!(
            log.enqueue(&make_batch(&mut rng, 0, 3), AckLevel::None, 1),
            Err(StorageError::Fenced(_))
        ));
        // Reads still work; the batch whose sync failed is in an unknown state and is not
        // shown to readers.
        assert_eq!(read_all(&log, 0).await.unwrap().len(), 1, "reads still work");
        drop(log);
        let log = PartitionLog::open(
            disk,
            dir,
            small_config(),
            ShardCache::new(0).partition(),
            unlimited_files(),
        )
        .await
        .unwrap();
        log.append(&make_batch(&mut rng, 0, 4), AckLevel::Durable, 1).await.unwrap();
        log.close().await.unwrap();
    });
}

/// Waiting for what was enqueued to become visible (a key index's build, a state snapshot)
/// ends when appends before it failed (`Ok(false)`: the end rolled back) and when the log is
/// fenced (`Err`): before, those waited on the high watermark for ever.
#[test]
fn waiting_for_visibility_ends_when_appends_fail_or_the_log_is_fenced() {
    run(|| async {
        let disk = SimDisk::new(5, SimFaults::default());
        let config = LogConfig { dsync_writes: false, ..small_config() };
        let log = PartitionLog::open(
            disk.clone(),
            PathBuf::from("/d/t/0"),
            config,
            ShardCache::new(0).partition(),
            unlimited_files(),
        )
        .await
        .unwrap();
        let mut rng = fastrand::Rng::with_seed(6);
        log.append(&make_batch(&mut rng, 0, 1), AckLevel::Durable, 1).await.unwrap();
        assert_eq!(log.wait_visible(log.next_offset()).await, Ok(true));
        let within = |wait| async move {
            futures_lite::future::or(async { Some(wait.await) }, async {
                glommio::timer::sleep(std::time::Duration::from_secs(5)).await;
                None
            })
            .await
        };
        // A write that fails: the end rolls back below what was waited for.
        disk.set_faults(SimFaults { write_eio_per_mille: 1000, ..SimFaults::default() });
        let failing = log.enqueue(&make_batch(&mut rng, 0, 2), AckLevel::Written, 1).unwrap();
        let end = log.next_offset();
        assert_eq!(within(log.wait_visible(end)).await, Some(Ok(false)));
        assert!(failing.wait().await.is_err());
        // The same, with the end refilled by a later append before the waiter looks again.
        let failing = log.enqueue(&make_batch(&mut rng, 0, 4), AckLevel::Written, 1).unwrap();
        let end = log.next_offset();
        let mut waiting = Box::pin(log.wait_visible(end));
        assert!(futures_lite::future::poll_once(&mut waiting).await.is_none(), "waits");
        assert!(failing.wait().await.is_err());
        disk.set_faults(SimFaults::default());
        let mut refills = Vec::new();
        while log.next_offset() < end {
            let batch = make_batch(&mut rng, 0, 5 + refills.len() as u64);
            refills.push(log.enqueue(&batch, AckLevel::Durable, 1).unwrap());
        }
        let waited = futures_lite::future::or(async { Some(waiting.await) }, async {
            glommio::timer::sleep(std::time::Duration::from_secs(5)).await;
            None
        })
        .await;
        assert_eq!(waited, Some(Ok(false)), "the rollback went unseen");
        for r in refills {
            r.wait().await.unwrap();
        }
        disk.set_faults(SimFaults { write_eio_per_mille: 1000, ..SimFaults::default() });
        // A sync that fails fences the log: what was enqueued never becomes visible.
        disk.set_faults(SimFaults { sync_eio_per_mille: 1000, ..SimFaults::default() });
        let fenced = log.enqueue(&make_batch(&mut rng, 0, 3), AckLevel::Durable, 1).unwrap();
        let end = log.next_offset();
        let waited = within(log.wait_visible(end)).await;
        assert!(matches!(waited, Some(Err(StorageError::Fenced(_)))), "{waited:?}");
        assert!(fenced.wait().await.is_err());
        disk.set_faults(SimFaults::default());
        drop(log);
    });
}

#[test]
fn retention_by_size_and_time_keeps_the_active_segment() {
    run(|| async {
        let disk = SimDisk::new(9, SimFaults::default());
        let dir = PathBuf::from("/d/t/0");
        let mut config = small_config();
        config.segment_bytes_max = 4096;
        config.retention_bytes = 8192;
        let log = PartitionLog::open(
            disk.clone(),
            dir.clone(),
            config.clone(),
            ShardCache::new(0).partition(),
            unlimited_files(),
        )
        .await
        .unwrap();
        let mut rng = fastrand::Rng::with_seed(4);
        for i in 0..100 {
            log.append(&make_batch(&mut rng, i, i as u64), AckLevel::Written, 1).await.unwrap();
        }
        let segments = log.segment_count();
        assert!(segments > 4);
        // A reader holding an old segment's bytes finishes safely after deletion.
        let held = log.read(0, 1 << 20, FirstBatch::Always).await.unwrap();
        let deleted = log.apply_retention(0).await.unwrap();
        assert!(deleted > 0);
        assert!(log.size_bytes() >= 8192 - 4096);
        assert!(log.log_start_offset() > 0);
        for v in &held.batches {
            for b in Batches::new(v) {
                b.unwrap();
            }
        }
        assert!(matches!(
            log.read(0, 10, FirstBatch::Always).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        log.close().await.unwrap();
        drop(log);
        // By time: everything older than now - retention goes, but never the active segment.
        config.retention_bytes = -1;
        config.retention_ms = 10;
        let log = PartitionLog::open(
            disk,
            dir,
            config,
            ShardCache::new(0).partition(),
            unlimited_files(),
        )
        .await
        .unwrap();
        log.apply_retention(1_000_000).await.unwrap();
        assert_eq!(log.segment_count(), 1);
        assert_eq!(log.log_start_offset(), log.log_start_offset());
        log.close().await.unwrap();
    });
}

/// Names in `dir` ending with `suffix`.
fn names_ending(dir: &std::path::Path, suffix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(suffix))
        .collect()
}

/// Waits (a few seconds at most) until `dir` holds no `.deleted` file.
async fn deleted_files_gone(dir: &std::path::Path) {
    for _ in 0..500 {
        if names_ending(dir, ".deleted").is_empty() {
            return;
        }
        glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("still being deleted: {:?}", names_ending(dir, ".deleted"));
}

#[test]
fn real_disk_retention_frees_space_in_steps_and_finishes_leftovers() {
    let tmp = temp_dir();
    let dir = tmp.path().join("t").join("0");
    run(move || async move {
        let mut config = small_config();
        config.segment_bytes_max = 256 << 10;
        config.preallocate_bytes = 64 << 10;
        config.retention_bytes = 0;
        config.delete_chunk_bytes = 16 << 10;
        config.delete_bytes_per_s = 16 << 20; // 1 ms between steps
        let log = open_real(dir.clone(), config.clone()).await.unwrap();
        let mut rng = fastrand::Rng::with_seed(21);
        let mut i = 0u64;
        while log.segment_count() < 5 {
            log.append(&make_batch(&mut rng, i as i64, i), AckLevel::Written, 1).await.unwrap();
            i += 1;
        }
        let logs_before = names_ending(&dir, ".log").len();
        let deleted = log.apply_retention(0).await.unwrap();
        assert_eq!(deleted, 4, "every closed segment goes, the active one stays");
        // Out of the log at once: only the active segment keeps a `.log` name.
        assert_eq!(logs_before, 5);
        assert_eq!(names_ending(&dir, ".log").len(), 1);
        assert!(names_ending(&dir, ".index").len() <= 1, "deleted segments lose their indexes");
        deleted_files_gone(&dir).await;
        // Reads from the start now answer out of range; appends go on.
        let start = log.log_start_offset();
        assert!(start > 0);
        assert!(matches!(
            log.read(0, 10, FirstBatch::Always).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        log.append(&make_batch(&mut rng, 1, 1), AckLevel::Durable, 1).await.unwrap();
        log.close().await.unwrap();
        drop(log);

        // A crash in the middle of a deletion leaves a `.deleted` file: the next open
        // finishes it and leaves the log alone.
        let leftover = dir.join("00000000000000000000.log.deleted");
        std::fs::write(&leftover, vec![0x5Au8; 200 << 10]).unwrap();
        let log = open_real(dir.clone(), config).await.unwrap();
        assert_eq!(log.log_start_offset(), start);
        deleted_files_gone(&dir).await;
        log.close().await.unwrap();
    });
}

/// Batches tagged (and timestamped) with consecutive numbers, from a seeded RNG.
struct Tagged {
    rng: fastrand::Rng,
    tag: u64,
}

impl Tagged {
    fn new(seed: u64) -> Self {
        Tagged { rng: fastrand::Rng::with_seed(seed), tag: 0 }
    }

    /// Appends the next batch to `log`, acked durable.
    async fn append_durable<D: io::Disk>(
        &mut self,
        log: &PartitionLog<D>,
    ) -> log::AppendTicketDone {
        let batch = make_batch(&mut self.rng, self.tag as i64, self.tag);
        self.tag += 1;
        log.append(&batch, AckLevel::Durable, 1).await.unwrap()
    }
}

/// The log in `dir` on the real disk, without a cache.
async fn open_dma(dir: &Path, config: LogConfig) -> PartitionLog<DmaDisk> {
    open_real(dir.to_owned(), config).await.unwrap()
}

/// Crashes `log` (dropped without close) and reopens it: every batch from `start` comes
/// back and nothing after them, and the next append continues the offsets. Returns the
/// reopened log and the batches it held before the crash.
async fn crash_reopen_append(
    log: PartitionLog<DmaDisk>,
    dir: &Path,
    config: LogConfig,
    start: u64,
    batches: &mut Tagged,
) -> (PartitionLog<DmaDisk>, BTreeMap<u64, Vec<u8>>) {
    let hw = log.high_watermark();
    let before = read_all(&log, start).await.unwrap();
    assert_eq!(before.keys().next(), Some(&start));
    drop(log);
    let log = open_dma(dir, config).await;
    assert_eq!(log.high_watermark(), hw, "every durable batch back, nothing stale after");
    assert_eq!(read_all(&log, start).await.unwrap(), before);
    assert_eq!(batches.append_durable(&log).await.base_offset, hw);
    (log, before)
}

#[test]
fn real_disk_recycled_segment_serves_only_new_data_and_survives_a_crash() {
    let tmp = temp_dir();
    let dir = tmp.path().join("t").join("0");
    run(move || async move {
        let mut config = small_config();
        config.segment_bytes_max = 128 << 10;
        config.preallocate_bytes = 32 << 10;
        config.retention_bytes = 128 << 10;
        config.delete_chunk_bytes = 16 << 10;
        let log = open_dma(&dir, config.clone()).await;
        let mut batches = Tagged::new(33);
        while log.segment_count() < 4 {
            batches.append_durable(&log).await;
        }
        assert!(log.apply_retention(0).await.unwrap() >= 1);
        assert_eq!(names_ending(&dir, ".spare").len(), 1, "one deleted segment kept");
        // Roll into the kept file, then write part of it (its old bytes lie beyond).
        while log.stats().segments_recycled == 0 {
            batches.append_durable(&log).await;
        }
        for _ in 0..10 {
            batches.append_durable(&log).await;
        }
        // Crash: nothing is sealed or trimmed; recovery must stop at the last new batch.
        let start = log.log_start_offset();
        let (log, before) =
            crash_reopen_append(log, &dir, config.clone(), start, &mut batches).await;
        log.close().await.unwrap();
        drop(log);
        // A clean stop trims the reused file to its data.
        let log = open_dma(&dir, config).await;
        let after = read_all(&log, start).await.unwrap();
        assert_eq!(after.len(), before.len() + 1);
        log.close().await.unwrap();
        let active = active_log_path(&dir);
        let len = std::fs::metadata(&active).unwrap().len();
        assert!(len < 128 << 10, "sealed segment trimmed to its data ({len} bytes)");
    });
}

/// Small pieces of zeros within one large segment.
fn zero_ahead_config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 4 << 20,
        preallocate_bytes: 64 << 10,
        zero_ahead_bytes: 256 << 10,
        ..small_config()
    }
}

#[test]
fn real_disk_zero_ahead_writes_zeros_past_the_data_and_recovers_cleanly() {
    let tmp = temp_dir();
    let dir = tmp.path().join("t").join("0");
    run(move || async move {
        let config = zero_ahead_config();
        let log = open_dma(&dir, config.clone()).await;
        let mut batches = Tagged::new(41);
        // One durable append at a time: the writer is idle in between, so zeros go out.
        while log.size_bytes() < 768 << 10 {
            batches.append_durable(&log).await;
        }
        // Let a last zero write and its sync finish (they run in the background).
        for _ in 0..200 {
            if log.stats().zero_syncs > 0 && log.stats().zeroed_bytes >= 256 << 10 {
                break;
            }
            glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
        }
        let stats = log.stats();
        assert!(stats.zeroed_bytes >= 256 << 10, "zeros written ahead: {stats:?}");
        assert!(stats.zero_syncs > 0, "zeros synced: {stats:?}");
        let size = log.size_bytes();
        // Past the data the file holds zeros (the page holding the data's end aside).
        let file = std::fs::read(active_log_path(&dir)).unwrap();
        let data_page_end = (size as usize).div_ceil(4096) * 4096;
        assert!(file.len() >= data_page_end + (64 << 10), "space past the data: {}", file.len());
        assert!(file[size as usize..].iter().all(|b| *b == 0), "only zeros past the data");
        // Crash: recovery finds the end of the data in the zeros and loses nothing.
        let (log, before) = crash_reopen_append(log, &dir, config.clone(), 0, &mut batches).await;
        // A restarted log writes no zeros until it has appended as much data again.
        assert_eq!(log.stats().zeroed_bytes, 0);
        log.close().await.unwrap();
        drop(log);
        // A clean stop trims the zeros.
        let len = std::fs::metadata(active_log_path(&dir)).unwrap().len();
        let log = open_dma(&dir, config).await;
        assert_eq!(len, log.size_bytes(), "sealed segment trimmed to its data");
        assert_eq!(read_all(&log, 0).await.unwrap().len(), before.len() + 1);
        log.close().await.unwrap();
    });
}

#[test]
fn real_disk_zero_ahead_waits_for_a_long_idle_gap() {
    let tmp = temp_dir();
    let dir = tmp.path().join("t").join("0");
    run(move || async move {
        let mut config = zero_ahead_config();
        // Long enough that no scheduling hiccup of a loaded machine looks like a gap.
        config.zero_idle_gap_us = 50_000;
        config.pending_bytes_max = 4 << 20;
        let mut rng = fastrand::Rng::with_seed(43);
        let batches: Vec<_> = (0..200u64).map(|i| make_batch(&mut rng, 1, i)).collect();
        let log = open_real(dir, config).await.unwrap();
        // Written back to back (all queued at once): no idle gap, no zeros, even once the
        // log then sits idle (a gap counts when it ends).
        let tickets: Vec<_> =
            batches.iter().map(|b| log.enqueue(b, AckLevel::Durable, 1).unwrap()).collect();
        for t in tickets {
            t.wait().await.unwrap();
        }
        glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(log.stats().zeroed_bytes, 0, "no zeros without a long gap");
        // Appends with long gaps between them: zeros follow.
        for i in 0..3u64 {
            glommio::timer::sleep(std::time::Duration::from_millis(120)).await;
            log.append(&make_batch(&mut rng, 1, 1000 + i), AckLevel::Durable, 1).await.unwrap();
        }
        for _ in 0..200 {
            if log.stats().zeroed_bytes > 0 {
                break;
            }
            glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(log.stats().zeroed_bytes > 0, "zeros after long gaps: {:?}", log.stats());
        log.close().await.unwrap();
    });
}
