//! Partition-log throughput and latency on the real disk (not a criterion bench: it measures
//! sustained MB/s over seconds).
//!
//! Single partition, 1 KiB records in 64 KiB batches, 4 concurrent appenders, glommio DMA
//! files in a temp dir on the data disk (`BENCH_DIR`, default the system temp dir).
//! Modes: `written` and `durable` at full speed, then `durable` at a fixed 100 MB/s offered
//! load with latency measured from each append's intended start (no coordinated omission).
//!
//! Run: `cargo bench -p broker --bench partition_log` (env `BENCH_SECS`, default 5;
//! `BENCH_MODES=written,durable,rate-durable,rate-written,rate-none` picks modes;
//! `rate-retention`, only when named, fills 2 GiB and measures `durable` at 100 MB/s while
//! retention deletes it, with `BENCH_DELETE_CHUNK_BYTES` (0 = unlink at once);
//! `steady`, only when named, runs written/durable full speed and durable at 100 MB/s on a
//! log in steady state (64 MiB segments, 128 MiB retention), with fresh and with recycled
//! segments;
//! `BENCH_WRITE_BYTES_MAX` sets the largest write;
//! `BENCH_APPENDER_DEPTH` how many appends each full-speed appender keeps in flight
//! (default 1: each waits for its ack);
//! `BENCH_DSYNC_WRITES=0` makes durable writes use write + fdatasync instead of O_DSYNC;
//! `BENCH_ZERO_AHEAD_BYTES` sets how far zero-ahead runs past the data (0 = off) and
//! `BENCH_ZERO_IDLE_GAP_US` the idle gap it needs;
//! `BENCH_READ_UNSYNCED=1` lets readers see unsynced data (no background syncs);
//! `BENCH_SHOW_STALLS=1` prints every fixed-rate append slower than 100 ms with its time).
//! `perf/log_bench.sh` runs fio on the same disk first and reports the ratios.

use std::rc::Rc;
use std::time::{Duration, Instant};

use broker::storage::{DmaDisk, LogConfig, PartitionLog, ShardCache};
use hdrhistogram::Histogram;
use wire::{AckLevel, BatchBuilder};

/// Concurrent appenders at full speed (the benchmark: 4; `BENCH_APPENDERS`).
fn appenders() -> usize {
    std::env::var("BENCH_APPENDERS").ok().and_then(|s| s.parse().ok()).unwrap_or(4)
}

/// Appends each full-speed appender keeps in flight (`BENCH_APPENDER_DEPTH`, default 1: it
/// waits for each ack before the next append, as the benchmark is read; a pipelining
/// producer, like the Rust client, keeps several).
fn appender_depth() -> usize {
    std::env::var("BENCH_APPENDER_DEPTH").ok().and_then(|s| s.parse().ok()).unwrap_or(1).max(1)
}
const BATCH_BYTES: usize = 64 << 10;

fn batch() -> wire::AlignedVec {
    let mut b = BatchBuilder::new(BATCH_BYTES);
    let value = vec![0xABu8; 1000];
    let mut i = 0u64;
    while b.append(1_700_000_000_000, Some(&i.to_le_bytes()), Some(&value), &[]).is_ok() {
        i += 1;
    }
    b.finish().unwrap()
}

fn config() -> LogConfig {
    let mut c = LogConfig::default();
    if let Some(v) = std::env::var("BENCH_PREALLOCATE_BYTES").ok().and_then(|s| s.parse().ok()) {
        c.preallocate_bytes = v;
    }
    if let Some(v) = std::env::var("BENCH_WRITE_BYTES_MAX").ok().and_then(|s| s.parse().ok()) {
        c.write_bytes_max = v;
    }
    if let Ok(v) = std::env::var("BENCH_DSYNC_WRITES") {
        c.dsync_writes = v != "0";
    }
    if let Some(v) = std::env::var("BENCH_ZERO_AHEAD_BYTES").ok().and_then(|s| s.parse().ok()) {
        c.zero_ahead_bytes = v;
    }
    if let Some(v) = std::env::var("BENCH_ZERO_IDLE_GAP_US").ok().and_then(|s| s.parse().ok()) {
        c.zero_idle_gap_us = v;
    }
    if let Ok(v) = std::env::var("BENCH_READ_UNSYNCED") {
        c.read_unsynced = v == "1";
    }
    if let Some(v) = std::env::var("BENCH_INDEX_INTERVAL_BYTES").ok().and_then(|s| s.parse().ok()) {
        c.index_interval_bytes = v;
    }
    if let Some(v) = std::env::var("BENCH_DELETE_CHUNK_BYTES").ok().and_then(|s| s.parse().ok()) {
        c.delete_chunk_bytes = v;
    }
    c
}

struct Result {
    recycled: u64,
    mode: String,
    mb_per_s: f64,
    hist: Histogram<u64>,
    syncs: u64,
    writes: u64,
    zeroed_bytes: u64,
}

async fn full_speed(dir: std::path::PathBuf, ack: AckLevel, secs: u64) -> Result {
    full_speed_with(dir, ack, secs, config()).await
}

/// Runs retention on `log` every 50 ms until the returned task is cancelled.
fn retention_ticker(log: Rc<PartitionLog<DmaDisk>>) -> glommio::task::JoinHandle<()> {
    glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(Duration::from_millis(50)).await;
            log.apply_retention(i64::MAX).await.unwrap();
        }
    })
    .detach()
}

/// Steady state: 64 MiB segments, 128 MiB retention applied every 50 ms, a log already
/// 256 MiB into its life (so retention has run); with and without segment recycling.
async fn steady(root: std::path::PathBuf, secs: u64, recycle: bool) -> Vec<Result> {
    let mut c = config();
    c.segment_bytes_max = 64 << 20;
    c.retention_bytes = 128 << 20;
    c.segment_recycle = recycle;
    let dir = root.join(format!("steady-{recycle}"));
    {
        let log = Rc::new(
            PartitionLog::open(
                DmaDisk,
                dir.clone(),
                c.clone(),
                ShardCache::new(0).partition(),
                broker::descriptors::StorageFiles::unlimited(),
            )
            .await
            .unwrap(),
        );
        let ticker = retention_ticker(log.clone());
        let batch = batch();
        while log.stats().bytes_written < 256 << 20 {
            log.append(&batch, AckLevel::Written, 0).await.unwrap();
        }
        ticker.cancel();
        log.close().await.unwrap();
    }
    let label = if recycle { "recycled segments" } else { "fresh segments" };
    let mut out = Vec::new();
    for (ack, rate) in
        [(AckLevel::Written, None), (AckLevel::Durable, None), (AckLevel::Durable, Some(100.0))]
    {
        let mut r = match rate {
            None => full_speed_with(dir.clone(), ack, secs, c.clone()).await,
            Some(mb) => fixed_rate_with(dir.clone(), mb, secs, ack, c.clone(), None).await,
        };
        r.mode = format!("steady, {label}: {}", r.mode);
        out.push(r);
    }
    out
}

async fn full_speed_with(
    dir: std::path::PathBuf,
    ack: AckLevel,
    secs: u64,
    config: LogConfig,
) -> Result {
    let tick = config.retention_bytes >= 0;
    let log = Rc::new(
        PartitionLog::open(
            DmaDisk,
            dir,
            config,
            ShardCache::new(64 << 20).partition(),
            broker::descriptors::StorageFiles::unlimited(),
        )
        .await
        .unwrap(),
    );
    let ticker = tick.then(|| retention_ticker(log.clone()));
    let batch = Rc::new(batch());
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    let depth = appender_depth();
    for _ in 0..appenders() {
        let (log, batch) = (log.clone(), batch.clone());
        tasks.push(glommio::spawn_local(async move {
            let mut hist = Histogram::<u64>::new(3).unwrap();
            let mut bytes = 0u64;
            let mut inflight = std::collections::VecDeque::new();
            while Instant::now() < deadline || !inflight.is_empty() {
                if inflight.len() < depth && Instant::now() < deadline {
                    log.writable().await;
                    let ticket = log.enqueue(&batch, ack, 0).unwrap();
                    inflight.push_back((Instant::now(), ticket.wait()));
                    continue;
                }
                let (start, done) = inflight.pop_front().expect("nonempty");
                done.await.unwrap();
                hist.record(start.elapsed().as_micros() as u64).unwrap();
                bytes += batch.len() as u64;
            }
            (hist, bytes)
        }));
    }
    let started = Instant::now();
    let mut hist = Histogram::<u64>::new(3).unwrap();
    let mut bytes = 0;
    for t in tasks {
        let (h, b) = t.await;
        hist.add(h).unwrap();
        bytes += b;
    }
    let elapsed = started.elapsed().as_secs_f64();
    if let Some(t) = ticker {
        t.cancel();
    }
    let stats = log.stats();
    log.close().await.unwrap();
    Result {
        mode: match depth {
            1 => format!("{} full speed", ack.name()),
            d => format!("{} full speed, {d} in flight per appender", ack.name()),
        },
        mb_per_s: bytes as f64 / elapsed / 1e6,
        hist,
        syncs: stats.syncs,
        writes: stats.writes,
        recycled: stats.segments_recycled,
        zeroed_bytes: stats.zeroed_bytes,
    }
}

/// Fills a log with `closed` full 1 GiB segments (written acks, full speed), then measures
/// `durable` at 100 MB/s while retention deletes all of them one second in.
async fn rate_with_retention(dir: std::path::PathBuf, secs: u64, closed: usize) -> Result {
    {
        let log = Rc::new(
            PartitionLog::open(
                DmaDisk,
                dir.clone(),
                config(),
                ShardCache::new(0).partition(),
                broker::descriptors::StorageFiles::unlimited(),
            )
            .await
            .unwrap(),
        );
        let batch = Rc::new(batch());
        let mut tasks = Vec::new();
        for _ in 0..appenders() {
            let (log, batch) = (log.clone(), batch.clone());
            tasks.push(glommio::spawn_local(async move {
                while log.segment_count() <= closed {
                    log.append(&batch, AckLevel::Written, 0).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await;
        }
        log.close().await.unwrap();
    }
    let mut c = config();
    c.retention_bytes = 0;
    let mut r = fixed_rate_with(dir, 100.0, secs, AckLevel::Durable, c, Some(1)).await;
    r.mode = format!(
        "durable at 100 MB/s, retention deleting {closed} × 1 GiB (chunk {} KiB)",
        config().delete_chunk_bytes >> 10
    );
    r
}

async fn fixed_rate(dir: std::path::PathBuf, mb_per_s: f64, secs: u64, ack: AckLevel) -> Result {
    fixed_rate_with(dir, mb_per_s, secs, ack, config(), None).await
}

async fn fixed_rate_with(
    dir: std::path::PathBuf,
    mb_per_s: f64,
    secs: u64,
    ack: AckLevel,
    config: LogConfig,
    retention_after_s: Option<u64>,
) -> Result {
    let tick = config.retention_bytes >= 0 && retention_after_s.is_none();
    let log = Rc::new(
        PartitionLog::open(
            DmaDisk,
            dir,
            config,
            ShardCache::new(64 << 20).partition(),
            broker::descriptors::StorageFiles::unlimited(),
        )
        .await
        .unwrap(),
    );
    let ticker = tick.then(|| retention_ticker(log.clone()));
    if let Some(after) = retention_after_s {
        let log = log.clone();
        glommio::spawn_local(async move {
            glommio::timer::sleep(Duration::from_secs(after)).await;
            let t = Instant::now();
            let deleted = log.apply_retention(i64::MAX).await.unwrap();
            eprintln!("retention deleted {deleted} segments in {:?}", t.elapsed());
        })
        .detach();
    }
    let batch = Rc::new(batch());
    let interval = Duration::from_secs_f64(batch.len() as f64 / (mb_per_s * 1e6));
    let hist = Rc::new(std::cell::RefCell::new(Histogram::<u64>::new(3).unwrap()));
    let start = Instant::now();
    let mut n = 0u64;
    let mut inflight = Vec::new();
    while start.elapsed() < Duration::from_secs(secs) {
        let intended = start + interval * n as u32;
        if let Some(wait) = intended.checked_duration_since(Instant::now()) {
            glommio::timer::sleep(wait).await;
        }
        let (log, batch, hist) = (log.clone(), batch.clone(), hist.clone());

        inflight.push(glommio::spawn_local(async move {
            log.writable().await;
            let t0 = Instant::now();
            log.enqueue(&batch, ack, 0).unwrap().wait().await.unwrap();
            if std::env::var("BENCH_FROM_ENQUEUE").is_ok() {
                let _ = intended;
                hist.borrow_mut().record(t0.elapsed().as_micros() as u64).unwrap();
                return;
            }
            let us = intended.elapsed().as_micros() as u64;
            if us > 100_000 && std::env::var("BENCH_SHOW_STALLS").is_ok() {
                eprintln!("stall {us} µs at {:?}", intended - start);
            }
            hist.borrow_mut().record(us).unwrap();
        }));
        n += 1;
        if inflight.len() > 256 {
            for t in inflight.drain(..128) {
                t.await;
            }
        }
    }
    for t in inflight {
        t.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    if let Some(t) = ticker {
        t.cancel();
    }
    let stats = log.stats();
    log.close().await.unwrap();
    let hist = hist.borrow().clone();
    Result {
        mode: format!("{} at {mb_per_s} MB/s offered", ack.name()),
        mb_per_s: n as f64 * batch.len() as f64 / elapsed / 1e6,
        hist,
        syncs: stats.syncs,
        writes: stats.writes,
        recycled: stats.segments_recycled,
        zeroed_bytes: stats.zeroed_bytes,
    }
}

fn main() {
    let secs: u64 = std::env::var("BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let base = std::env::var("BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    let tmp = tempfile::Builder::new().prefix("log-bench-").tempdir_in(base).unwrap();
    let root = tmp.path().to_owned();
    let modes: Option<Vec<String>> = std::env::var("BENCH_MODES")
        .ok()
        .map(|s| s.split(',').map(|m| m.trim().to_owned()).collect());
    let results = glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(0))
        .io_memory(
            std::env::var("BENCH_IO_MEMORY_BYTES")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(broker::config::BrokerConfig::default().io_memory_bytes),
        )
        .spawn(move || async move {
            let wanted = |name: &str| modes.as_ref().is_none_or(|m| m.iter().any(|w| w == name));
            let mut out = Vec::new();
            if wanted("written") {
                out.push(full_speed(root.join("written"), AckLevel::Written, secs).await);
            }
            if wanted("durable") {
                out.push(full_speed(root.join("durable"), AckLevel::Durable, secs).await);
            }
            if wanted("rate-durable") {
                out.push(fixed_rate(root.join("rate"), 100.0, secs, AckLevel::Durable).await);
            }
            if wanted("rate-written") {
                out.push(fixed_rate(root.join("rate-w"), 100.0, secs, AckLevel::Written).await);
            }
            if wanted("rate-none") {
                out.push(fixed_rate(root.join("rate-n"), 100.0, secs, AckLevel::None).await);
            }
            // Not in the default set: it first writes 2 GiB.
            if modes.as_ref().is_some_and(|m| m.iter().any(|w| w == "steady")) {
                out.extend(steady(root.clone(), secs, false).await);
                out.extend(steady(root.clone(), secs, true).await);
            }
            if modes.as_ref().is_some_and(|m| m.iter().any(|w| w == "rate-retention")) {
                out.push(rate_with_retention(root.join("rate-ret"), secs, 2).await);
            }
            out
        })
        .unwrap()
        .join()
        .unwrap();
    println!(
        "| mode | MB/s | p50 µs | p99 µs | p99.9 µs | max µs | writes | fdatasyncs | segments reused | zeroed MiB |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in results {
        println!(
            "| {} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.mode,
            r.mb_per_s,
            r.hist.value_at_quantile(0.5),
            r.hist.value_at_quantile(0.99),
            r.hist.value_at_quantile(0.999),
            r.hist.max(),
            r.writes,
            r.syncs,
            r.recycled,
            r.zeroed_bytes >> 20
        );
    }
}
