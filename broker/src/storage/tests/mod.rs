//! Partition-log tests: the seeded simulation (`simulation.rs`: crash, torn writes, EIO,
//! ENOSPC, slow syncs), record deletion (`delete_records.rs`) and the same engine on the
//! real disk (`real_disk.rs`: glommio DMA files on a temp dir). Shared helpers live here.

mod cleaner_files;
mod compaction_sim;
mod delete_records;
mod freeze_disk;
mod journal_files;
mod journal_sim;
mod real_disk;
mod simulation;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use wire::{AckLevel, BatchBuilder, BatchView, Batches};

use super::*;

/// Runs `f` on a fresh glommio executor (small io_memory so many tests fit the memlock limit).
pub(crate) fn run<T: Send + 'static, F: std::future::Future<Output = T> + 'static>(
    f: impl FnOnce() -> F + Send + 'static,
) -> T {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(f)
        .expect("spawn executor")
        .join()
        .expect("executor thread")
}

/// A shard journal config: `file_bytes` files, batches up to `batch_bytes_max`, recycling,
/// commit cycles that write at once (no gathering), checkpoints that sync the filesystem.
pub(crate) fn journal_config(
    file_bytes: u64,
    batch_bytes_max: usize,
) -> crate::storage::journal::JournalConfig {
    crate::storage::journal::JournalConfig {
        file_bytes,
        batch_bytes_max,
        recycle: true,
        gather_us: 0,
        gather_entries_min: 1,
        checkpoint_syncfs: true,
        checkpoint_syncfs_members_min: 1,
        segment_writes_max: crate::storage::journal::SEGMENT_WRITES_MAX,
        writes_in_flight_max: crate::storage::journal::WRITES_IN_FLIGHT_MAX,
        writes_per_s_max: 0,
    }
}

/// A log config small enough that tests roll, index and delete often.
pub(crate) fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 16 << 10,
        segment_ms: 0,
        retention_bytes: -1,
        retention_ms: -1,
        index_interval_bytes: 512,
        preallocate_bytes: 8 << 10,
        write_bytes_max: 64 << 10,
        pending_bytes_max: 256 << 10,
        // Short: journal tests see segment writes both deferred and done.
        journal_segment_write_delay_ms: 5,
        journal_segment_write_bytes: 32 << 10,
        group_commit_delay_us: 0,
        group_commit_bytes_max: 1 << 20,
        batch_bytes_max: 32 << 10,
        recovery_full_check: false,
        read_ahead_bytes: 4 << 10,
        delete_chunk_bytes: 4 << 10,
        delete_bytes_per_s: 1 << 30,
        segment_recycle: true,
        read_unsynced: false,
        dsync_writes: true,
        zero_ahead_bytes: 16 << 10,
        zero_idle_gap_us: 0,
        compact: false,
        delete_retention_ms: 24 * 3600 * 1000,
        cleaner_dirty_percent_min: 50,
        cleaner_key_map_bytes: 64 << 20,
        cleaner_bytes_per_s: 0,
    }
}

/// `n` bytes (at least a batch header's 80) filled with `fill` that a journal record takes
/// back as a batch: its CRC field holds the CRC32C of the bytes it covers (JRN2 records check
/// each batch's own CRC, nothing else of it). `fill` stays the first byte.
fn journal_entry(fill: u8, n: usize) -> crate::storage::bytes::ByteView {
    let mut bytes = vec![fill; n];
    let crc = wire::batch::header::covered_crc(&bytes);
    bytes[4..8].copy_from_slice(&crc.to_le_bytes());
    crate::storage::bytes::ByteView::new(Rc::new(bytes))
}

fn make_batch(rng: &mut fastrand::Rng, ts: i64, tag: u64) -> wire::AlignedVec {
    let mut b = BatchBuilder::new(16 << 10);
    let n = rng.usize(1..6);
    // Now and then one large record, so writes outgrow a zero-ahead piece.
    let large = rng.u8(0..8) == 0;
    for i in 0..n {
        let len = if large && i == 0 { rng.usize(4 << 10..12 << 10) } else { rng.usize(0..400) };
        let value: Vec<u8> = (0..len).map(|j| (tag as usize + i + j) as u8).collect();
        let key = format!("k{tag}-{i}");
        let value = if rng.u8(0..10) == 0 { None } else { Some(&value[..]) };
        b.append(ts + i as i64, Some(key.as_bytes()), value, &[("tag", &tag.to_le_bytes())])
            .unwrap();
    }
    b.finish().unwrap()
}

/// The stored form of a batch: what the log assigns in place.
fn stored(batch: &[u8], base_offset: u64, now_ms: i64) -> Vec<u8> {
    let mut v = batch.to_vec();
    wire::batch::header::assign(&mut v, base_offset, now_ms);
    v
}

/// Reads every batch from `from` to the high watermark, checking they validate and that
/// offsets are dense. Returns base offset → bytes.
async fn read_all<D: io::Disk>(
    log: &PartitionLog<D>,
    from: u64,
) -> Result<BTreeMap<u64, Vec<u8>>, StorageError> {
    let mut out = BTreeMap::new();
    let mut next = from;
    let hw = log.high_watermark();
    while next < hw {
        // Out of descriptors is retriable, as for a client: the files holding them close.
        let mut tries = 0;
        let r = loop {
            match log.read(next, 8 << 10, FirstBatch::Always).await {
                Err(StorageError::Io(IoError::TooManyFiles { .. })) if tries < 10_000 => {
                    tries += 1;
                    glommio::timer::sleep(std::time::Duration::from_micros(100)).await;
                }
                r => break r?,
            }
        };
        assert!(!r.batches.is_empty(), "empty read at {next} below hw {hw}");
        for view in &r.batches {
            for b in Batches::new(view) {
                let b = b.expect("read returned an invalid batch");
                let h = b.header();
                if h.last_offset() < next {
                    continue; // the batch containing `next` came whole; earlier ones are skipped
                }
                // The first batch may begin before `from` (a log start inside a batch).
                assert!(
                    h.base_offset() == next || out.is_empty() && h.base_offset() < next,
                    "offsets not dense: {} at {next}",
                    h.base_offset()
                );
                out.insert(h.base_offset(), b.bytes().to_vec());
                next = h.next_offset();
            }
        }
    }
    Ok(out)
}

/// A storage descriptor budget no test reaches.
fn unlimited_files() -> std::sync::Arc<crate::descriptors::StorageFiles> {
    crate::descriptors::StorageFiles::unlimited()
}

/// Prints the seed if the test panics while it is alive.
struct SeedGuard(u64);

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("simulation failed with seed {} (rerun: SIM_SEED={} cargo test -p broker simulation)", self.0, self.0);
        }
    }
}

/// Segments reused across the simulation's seeds (the run checks recycling happened).
static SIM_RECYCLED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// O_DSYNC writes over all seeds (they must happen for the simulation to test them).
static SIM_DSYNC_WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Zero-ahead bytes written over all seeds.
static SIM_ZEROED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// Optional opens the storage budget refused over all seeds.
static SIM_FILES_REFUSED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// Record deletions that dropped at least one segment, over all seeds.
static SIM_DELETES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// Data writes that waited for a zero-ahead write over all seeds.
static SIM_ZERO_WAITS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Adds a log's recycled segments, O_DSYNC writes and zero-ahead bytes to the totals over
/// all seeds.
fn tally<D: io::Disk>(log: &PartitionLog<D>) {
    let stats = log.stats();
    SIM_ZEROED.fetch_add(stats.zeroed_bytes, std::sync::atomic::Ordering::Relaxed);
    SIM_ZERO_WAITS.fetch_add(stats.zero_waits, std::sync::atomic::Ordering::Relaxed);
    SIM_RECYCLED.fetch_add(stats.segments_recycled, std::sync::atomic::Ordering::Relaxed);
    SIM_DSYNC_WRITES.fetch_add(stats.dsync_writes, std::sync::atomic::Ordering::Relaxed);
}
