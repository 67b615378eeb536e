//! The seeded simulation: random appends, reads, crashes and faults on `SimDisk`, every
//! acked batch checked after each reopen (`SIM_SEEDS`, `SIM_SEED`, `SIM_STEPS`,
//! `SIM_VERBOSE`; see docs/RELIABILITY.md).

use super::*;

/// One seeded run: random appends (all ack levels, several in flight), reads, crashes,
/// clean reopens, retention, record deletion, EIO on writes and syncs, disk full, EMFILE on opens, a small
/// storage descriptor budget. After every reopen: every
/// batch acked `durable` is readable byte for byte, offsets are dense, nothing invalid is
/// returned, and batches not acked durable are either gone or intact. Unless
/// `read_unsynced` (a quarter of the seeds), every batch a read returned counts as durable
/// too: a consumer never sees data a crash can take back.
async fn simulate(seed: u64, steps: usize) {
    let _guard = SeedGuard(seed);
    let mut rng = fastrand::Rng::with_seed(seed);
    let disk = SimDisk::new(
        seed ^ 0x5EED,
        SimFaults {
            sync_delay_yields_max: rng.u32(0..4),
            write_delay_yields_max: rng.u32(0..4),
            ..SimFaults::default()
        },
    );
    let dir = PathBuf::from("/sim/topic/0");
    let shard = ShardCache::new(rng.usize(0..32 << 10));
    let mut config = small_config();
    config.segment_bytes_max = [8 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20][rng.usize(0..5)];
    config.index_interval_bytes = [256, 512, 4096][rng.usize(0..3)];
    config.read_unsynced = rng.u8(0..4) == 0;
    config.dsync_writes = rng.bool();
    config.zero_ahead_bytes = [0, 16 << 10, 64 << 10, 256 << 10][rng.usize(0..4)];
    // Descriptors, drawn apart so the other draws stay as they were: half the seeds run on a
    // storage budget of one partition and 1..=6 optional files (index files, O_DSYNC and
    // reopened segments go without; with one, only brief opens), and EMFILE on opens comes
    // and goes with the write faults.
    let mut frng = fastrand::Rng::with_seed(seed ^ 0xF11E5);
    // Record deletion draws apart too.
    let mut drng = fastrand::Rng::with_seed(seed ^ 0xDE1E7E);
    let files = if frng.bool() {
        unlimited_files()
    } else {
        crate::descriptors::StorageFiles::with_split(1, frng.usize(1..7))
    };
    let mut log = PartitionLog::open(
        disk.clone(),
        dir.clone(),
        config.clone(),
        shard.partition(),
        files.clone(),
    )
    .await
    .unwrap();
    // Offset -> stored bytes. `durable`: acked durable (must survive). `maybe`: the batches
    // that may be found at an offset after a crash (or nothing).
    let mut durable: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut maybe: BTreeMap<u64, Vec<Vec<u8>>> = BTreeMap::new();
    // The largest offset a deletion that returned `Ok` deleted records before.
    let mut deleted_before = 0;
    // The largest offset a deletion that failed since the last checkpoint written (or the
    // last reopen) asked for: its checkpoint may still land with a crash.
    let mut deletion_in_doubt = 0;
    let mut now_ms: i64 = 1_000_000;
    let mut tag = 0u64;

    let verbose = std::env::var("SIM_VERBOSE").is_ok();
    for step in 0..steps {
        now_ms += rng.i64(0..50);
        let op = rng.u8(0..100);
        if verbose {
            eprintln!("step {step} op {op} hw {} faults {:?}", log.high_watermark(), disk.faults());
        }
        match op {
            0..=54 => {
                // A burst of appends in flight together.
                let n = rng.usize(1..6);
                let mut waits = Vec::new();
                for _ in 0..n {
                    tag += 1;
                    let batch = make_batch(&mut rng, now_ms, tag);
                    let ack =
                        [AckLevel::None, AckLevel::Written, AckLevel::Durable][rng.usize(0..3)];
                    match log.enqueue(&batch, ack, now_ms) {
                        Ok(t) => {
                            let bytes = stored(&batch, t.base_offset, now_ms);
                            let base = t.base_offset;
                            waits.push((base, bytes, ack, glommio::spawn_local(t.wait())));
                        }
                        Err(e) => assert!(matches!(e, StorageError::Fenced(_)), "enqueue: {e}"),
                    }
                }
                for (base, bytes, ack, w) in waits {
                    match w.await {
                        Ok(()) if ack == AckLevel::Durable => {
                            maybe.remove(&base);
                            durable.insert(base, bytes);
                        }
                        Ok(()) => {
                            maybe.entry(base).or_default().push(bytes);
                        }
                        Err(e) => {
                            assert!(
                                matches!(
                                    e.code(),
                                    wire::ErrorCode::StorageIo
                                        | wire::ErrorCode::DiskFull
                                        | wire::ErrorCode::ResourceLimit
                                ),
                                "{e}"
                            );
                            // Its offset will be reused. A failed write may still have put
                            // it on the device, so it may come back after a crash (the append
                            // outcome is unknown, as with any failed request), but nothing of
                            // it may be expected.
                            maybe.entry(base).or_default().push(bytes);
                        }
                    }
                }
            }
            55..=64 => {
                // Read everything and compare with what is known.
                let got = read_all(&log, log.log_start_offset()).await.unwrap();
                for (o, bytes) in durable.range(log.log_start_offset()..) {
                    if *o < log.high_watermark() {
                        assert_eq!(
                            got.get(o),
                            Some(bytes),
                            "durable batch at {o} differs (live read)"
                        );
                    }
                }
                // A lookup by time finds only what readers see.
                if let Ok(Some((o, _))) = log.offset_for_timestamp(now_ms - rng.i64(0..200)).await {
                    assert!(o < log.high_watermark(), "time lookup found {o} past the hw");
                }
                if !config.read_unsynced {
                    // Readers see only synced data: whatever a read returned must survive
                    // any crash from now on, exactly as a durable ack.
                    for (o, bytes) in got.iter() {
                        if *o < deletion_in_doubt {
                            // A crash may still apply a deletion that failed.
                            maybe.entry(*o).or_default().push(bytes.clone());
                            continue;
                        }
                        maybe.remove(o);
                        durable.insert(*o, bytes.clone());
                    }
                }
                // Now and then, delete the records before a batch just read (or before the
                // high watermark): the start moves there at once, and from then on only what
                // lies at or past it must survive, and a crash keeps that start (its
                // checkpoint; `reopen_and_check`). A deletion that fails may or may not
                // hold after a crash.
                if drng.u8(0..4) == 0 {
                    let bases: Vec<u64> = got.keys().copied().collect();
                    let hw = log.high_watermark();
                    let target = if bases.is_empty() || drng.u8(0..8) == 0 {
                        hw
                    } else {
                        bases[drng.usize(0..bases.len())]
                    };
                    let before = log.log_start_offset();
                    let segments = log.segment_count();
                    let deleted = match log.delete_records_before(target).await {
                        Ok(deleted) => deleted,
                        Err(StorageError::Io(_)) => {
                            deletion_in_doubt = deletion_in_doubt.max(target);
                            let start = log.log_start_offset();
                            assert!(start == before || start == target.max(before));
                            for (o, bytes) in durable.split_off(&0).into_iter() {
                                match o < target {
                                    true => maybe.entry(o).or_default().push(bytes),
                                    false => _ = durable.insert(o, bytes),
                                }
                            }
                            continue;
                        }
                        Err(e) => panic!("delete records before {target}: {e}"),
                    };
                    assert_eq!(log.log_start_offset(), target.max(before));
                    deleted_before = deleted_before.max(target);
                    if target > before {
                        // Its checkpoint replaced whatever a failed one may have left.
                        deletion_in_doubt = 0;
                        // (A crash that took the end back below it started the log there.)
                        deleted_before = log.log_start_offset();
                    }
                    // (A roll may add a segment meanwhile.)
                    assert!(log.segment_count() + deleted >= segments);
                    if deleted > 0 {
                        SIM_DELETES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    let start = log.log_start_offset();
                    durable.retain(|o, _| *o >= start);
                    maybe.retain(|o, _| *o >= start);
                }
            }
            65..=74 => {
                // Crash: the process dies, the power goes.
                tally(&log);
                drop(log);
                disk.crash();
                disk.set_faults(SimFaults {
                    write_eio_per_mille: 0,
                    sync_eio_per_mille: 0,
                    open_emfile_per_mille: 0,
                    ..disk.faults()
                });
                log = reopen_and_check(
                    &disk,
                    &files,
                    &dir,
                    &config,
                    &shard,
                    &mut durable,
                    &mut maybe,
                )
                .await;
                deletion_in_doubt = 0;
                deleted_before = kept_start(&log, deleted_before);
            }
            75..=79 => {
                // Clean shutdown and restart.
                let _ = log.close().await;
                tally(&log);
                drop(log);
                disk.set_faults(SimFaults {
                    write_eio_per_mille: 0,
                    sync_eio_per_mille: 0,
                    open_emfile_per_mille: 0,
                    ..disk.faults()
                });
                log = reopen_and_check(
                    &disk,
                    &files,
                    &dir,
                    &config,
                    &shard,
                    &mut durable,
                    &mut maybe,
                )
                .await;
                deletion_in_doubt = 0;
                deleted_before = kept_start(&log, deleted_before);
            }
            80..=84 => {
                let mut c = config.clone();
                c.retention_bytes = rng.i64(0..64 << 10);
                // Retention applies to the log's own config; emulate by reopening with it.
                let _ = log.close().await;
                tally(&log);
                drop(log);
                disk.set_faults(SimFaults {
                    write_eio_per_mille: 0,
                    sync_eio_per_mille: 0,
                    open_emfile_per_mille: 0,
                    capacity_bytes: u64::MAX,
                    ..disk.faults()
                });
                log = PartitionLog::open(
                    disk.clone(),
                    dir.clone(),
                    c,
                    shard.partition(),
                    files.clone(),
                )
                .await
                .unwrap();
                // Measured after the reopen: a start record deletion moved goes back to the
                // first segment's base when the log reopens (it is not persisted).
                let before = log.log_start_offset();
                log.apply_retention(now_ms).await.unwrap();
                assert!(log.log_start_offset() >= before);
                let start = log.log_start_offset();
                durable.retain(|o, _| *o >= start);
                maybe.retain(|o, _| *o >= start);
            }
            85..=89 => {
                let f = disk.faults();
                disk.set_faults(SimFaults {
                    write_eio_per_mille: [0, 100, 500][rng.usize(0..3)],
                    open_emfile_per_mille: [0, 20, 200][frng.usize(0..3)],
                    ..f
                });
            }
            90..=93 => {
                let f = disk.faults();
                disk.set_faults(SimFaults { sync_eio_per_mille: [0, 200][rng.usize(0..2)], ..f });
            }
            _ => {
                // Disk full (or space back).
                let f = disk.faults();
                let cap =
                    if rng.bool() { disk.used_bytes() + rng.u64(0..16 << 10) } else { u64::MAX };
                disk.set_faults(SimFaults { capacity_bytes: cap, ..f });
            }
        }
    }
    tally(&log);
    SIM_FILES_REFUSED.fetch_add(files.refused(), std::sync::atomic::Ordering::Relaxed);
    drop(log);
    disk.crash();
    disk.set_faults(SimFaults::default());
    let log =
        reopen_and_check(&disk, &files, &dir, &config, &shard, &mut durable, &mut maybe).await;
    kept_start(&log, deleted_before);
    log.close().await.unwrap();
}

/// A reopened log starts no earlier than the last deletion that returned, `deleted_before`,
/// unless a crash took its end back below it (then at its end). Returns what a later reopen
/// must keep: the start now, if earlier. (Not a later start: one a failed deletion left
/// unsynced may still go back.)
fn kept_start(log: &PartitionLog<SimDisk>, deleted_before: u64) -> u64 {
    let (start, hw) = (log.log_start_offset(), log.high_watermark());
    assert!(
        start >= deleted_before.min(hw),
        "log starts at {start}, deleted before {deleted_before}"
    );
    deleted_before.min(start)
}

async fn reopen_and_check(
    disk: &SimDisk,
    files: &std::sync::Arc<crate::descriptors::StorageFiles>,
    dir: &Path,
    config: &LogConfig,
    shard: &Rc<ShardCache>,
    durable: &mut BTreeMap<u64, Vec<u8>>,
    maybe: &mut BTreeMap<u64, Vec<Vec<u8>>>,
) -> PartitionLog<SimDisk> {
    let full = SimFaults { capacity_bytes: u64::MAX, ..disk.faults() };
    let saved = disk.faults();
    disk.set_faults(full); // recovery rewrites index files; give it room
    let log = PartitionLog::open(
        disk.clone(),
        dir.to_owned(),
        config.clone(),
        shard.partition(),
        files.clone(),
    )
    .await
    .unwrap();
    disk.set_faults(saved);
    let start = log.log_start_offset();
    let hw = log.high_watermark();
    // The log never starts later than what must survive (nor earlier than a deletion that
    // returned: `kept_start`).
    if let Some((&first, _)) = durable.first_key_value() {
        assert!(start <= first, "log starts at {start}, past the durable batch at {first}");
    }
    let got = read_all(&log, start).await.unwrap();
    for (o, bytes) in durable.range(start..) {
        assert!(*o < hw, "durable batch at {o} lost: high watermark {hw}");
        assert_eq!(got.get(o), Some(bytes), "durable batch at {o} differs after reopen");
    }
    for (o, candidates) in maybe.iter() {
        if let Some(g) = got.get(o) {
            assert!(candidates.contains(g), "unacked batch at {o} came back altered");
        }
    }
    // What is on disk now is the truth: keep it as durable, forget the rest.
    maybe.clear();
    durable.clear();
    durable.extend(got);
    log
}

#[test]
fn simulation() {
    let seeds: Vec<u64> = match std::env::var("SIM_SEED") {
        Ok(s) => vec![s.parse().expect("SIM_SEED is a number")],
        Err(_) => {
            let n: u64 =
                std::env::var("SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1000);
            (0..n).collect()
        }
    };
    let steps = std::env::var("SIM_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(40);
    // Watchdog: a seed that stops making progress is a hang (an ack never resolved).
    // It ends with the simulation (it aborted the test process when other tests ran on for a
    // minute after the simulation finished).
    static CURRENT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(u64::MAX);
    const DONE: u64 = u64::MAX - 2;
    std::thread::spawn(|| {
        let mut last = u64::MAX - 1;
        loop {
            std::thread::sleep(std::time::Duration::from_secs(60));
            let now = CURRENT.load(std::sync::atomic::Ordering::Relaxed);
            if now == DONE {
                return;
            }
            if now == last {
                eprintln!("simulation hung with seed {now} (rerun: SIM_SEED={now} SIM_VERBOSE=1 cargo test -p broker simulation)");
                std::process::abort();
            }
            last = now;
        }
    });
    run(move || async move {
        let verbose = std::env::var("SIM_VERBOSE").is_ok();
        if verbose {
            let _ = tracing_subscriber::fmt()
                .with_env_filter("trace")
                .with_ansi(false)
                .with_writer(std::io::stderr)
                .try_init();
        }
        let many = seeds.len() >= 100;
        for seed in seeds {
            CURRENT.store(seed, std::sync::atomic::Ordering::Relaxed);
            if verbose {
                eprintln!("seed {seed}");
            }
            simulate(seed, steps).await;
        }
        CURRENT.store(DONE, std::sync::atomic::Ordering::Relaxed);
        let recycled = SIM_RECYCLED.load(std::sync::atomic::Ordering::Relaxed);
        assert!(!many || recycled > 0, "no seed reused a segment: recycling went untested");
        let dsync = SIM_DSYNC_WRITES.load(std::sync::atomic::Ordering::Relaxed);
        assert!(!many || dsync > 0, "no O_DSYNC write: that path went untested");
        let zeroed = SIM_ZEROED.load(std::sync::atomic::Ordering::Relaxed);
        assert!(!many || zeroed > 0, "no zero-ahead write: that path went untested");
        let deletes = SIM_DELETES.load(std::sync::atomic::Ordering::Relaxed);
        eprintln!("record deletion: {deletes} deletions dropped segments");
        assert!(
            !many || deletes > 0,
            "no record deletion dropped a segment: that path went untested"
        );
        let waits = SIM_ZERO_WAITS.load(std::sync::atomic::Ordering::Relaxed);
        eprintln!("zero-ahead: {zeroed} bytes, {waits} data writes waited for zeros");
        let refused = SIM_FILES_REFUSED.load(std::sync::atomic::Ordering::Relaxed);
        eprintln!("storage budget: {refused} optional opens refused");
        assert!(!many || refused > 0, "no open refused by the budget: that path went untested");
        assert!(!many || waits > 0, "no data write waited for zeros: that path went untested");
    });
}
