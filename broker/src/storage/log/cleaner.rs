//! Compaction: closed segments rewritten with only each key's latest record.
//!
//! # Contract
//! - [`PartitionLog::clean`] runs one pass on a log with `compact` set, in the shard's
//!   background task queue, paced (`cleaner_bytes_per_s`) so appends never wait behind it. It
//!   never touches the active segment, nor one a roll is still sealing.
//! - A pass maps key → latest offset (a 128-bit keyed hash of the key, so memory is bounded:
//!   `cleaner_key_map_bytes`) over the closed records not yet mapped (from `cleaned_to`),
//!   then rewrites every closed segment that starts below the map's end: a record is kept
//!   when it has no key, when the map has no later record of its key, or when it is that
//!   latest record, unless it is a tombstone older than `delete_retention_ms` that the map
//!   covers (so every earlier record of its key goes in the same pass). A record is
//!   only ever removed because a later record of its key exists in the log (or it is an
//!   expired tombstone), whatever the map's size: a full map just ends the pass early.
//! - Offsets never change: a rewritten batch keeps its offset span (`wire::batch::compact`),
//!   and a run of batches that lost every record becomes one empty batch over their span,
//!   so a segment's batches stay back to back and readers, recovery and consumers see the
//!   same offsets with records missing.
//! - Crash safety: the rewrite goes to `<base>.log.cleaned`, is synced, then the segment's
//!   index files are removed (directory synced: they describe the old file), then the
//!   rewrite is renamed over `<base>.log` (directory synced). A crash before the rename
//!   leaves the old segment (recovery deletes the `.cleaned` file and rebuilds the missing
//!   indexes); after it, the new one. Nothing acked is ever lost: only records a later
//!   record of the same key supersedes were left out, and that later record was durable
//!   before the pass began (closed segments hold only synced data).
//! - Readers never mix the two files: the old segment object keeps its file open (the old
//!   inode) until its last reader lets go (`Segment::retire`), and the log's segment list
//!   points at the new one from the swap on (and the cache forgets the old batches).
//!   Either is a consistent view of the same offsets. Retention and record deletion wait for a swap (`LogCore::maintenance`).
//! - The new segment's index lives in memory; its index files are written by the next
//!   recovery (which rebuilds missing ones).

use std::cell::Cell;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rkyv::util::AlignedVec;
use tracing::{debug, info, warn};
use wire::batch::compact::{empty_into, retain_into, Retained};
use wire::{BatchBuilder, BatchEnvelope, Envelopes};

use wire::batch::header::trusted_headers;

use super::core::LogCore;
use super::PartitionLog;
use crate::descriptors::{FileSlot, FileUse};
use crate::storage::bytes::ByteView;
use crate::storage::error::{IoError, StorageError};
use crate::storage::io::{Disk, DiskFile, DISK_ALIGN};
use crate::storage::segment::{file_name, read_view, ScannedBatch, Segment};
use crate::storage::FirstBatch;

/// Suffix of a segment's rewrite before it replaces the segment.
pub(super) const CLEANED_SUFFIX: &str = ".cleaned";

/// Bytes of a key-map entry, for the memory budget (hash, offset, table overhead).
const KEY_MAP_ENTRY_BYTES: u64 = 32;
/// Bytes read from a segment at a time.
const READ_CHUNK_BYTES: usize = 1 << 20;
/// Bytes of rewritten batches gathered before a write.
const WRITE_CHUNK_BYTES: usize = 1 << 20;

/// What compaction did to one log, summed over its passes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CleanerStats {
    /// Passes that ran (found something to map).
    pub passes: u64,
    /// Segments rewritten and swapped in.
    pub segments_rewritten: u64,
    /// Records left out of rewrites.
    pub records_removed: u64,
    /// Of those, expired tombstones.
    pub tombstones_removed: u64,
    /// Segment bytes before their rewrites.
    pub bytes_before: u64,
    /// Segment bytes after their rewrites.
    pub bytes_after: u64,
}

impl CleanerStats {
    fn add(&mut self, other: &CleanerStats) {
        self.passes += other.passes;
        self.segments_rewritten += other.segments_rewritten;
        self.records_removed += other.records_removed;
        self.tombstones_removed += other.tombstones_removed;
        self.bytes_before += other.bytes_before;
        self.bytes_after += other.bytes_after;
    }
}

/// Key → latest offset over part of a log: a keyed 128-bit hash of each key.
struct KeyMap {
    latest: HashMap<u128, u64>,
    hash: (std::collections::hash_map::RandomState, std::collections::hash_map::RandomState),
    entries_max: usize,
}

impl KeyMap {
    fn new(bytes_max: u64) -> Self {
        KeyMap {
            latest: HashMap::new(),
            hash: (Default::default(), Default::default()),
            entries_max: (bytes_max / KEY_MAP_ENTRY_BYTES).max(1) as usize,
        }
    }

    fn key_hash(&self, key: &[u8]) -> u128 {
        let mut a = self.hash.0.build_hasher();
        a.write(key);
        let mut b = self.hash.1.build_hasher();
        b.write(key);
        (u128::from(a.finish()) << 64) | u128::from(b.finish())
    }

    /// Records `key` at `offset`; false (nothing recorded) when a new key would overflow.
    fn insert(&mut self, key: &[u8], offset: u64) -> bool {
        let h = self.key_hash(key);
        if self.latest.len() >= self.entries_max && !self.latest.contains_key(&h) {
            return false;
        }
        self.latest.insert(h, offset);
        true
    }

    /// Whether a later record of `key` than `offset` is known.
    fn superseded(&self, key: &[u8], offset: u64) -> bool {
        self.latest.get(&self.key_hash(key)).is_some_and(|&latest| latest > offset)
    }
}

/// Paces a pass's I/O to `bytes_per_s`.
struct Pace {
    start: Instant,
    bytes: Cell<u64>,
    bytes_per_s: u64,
}

impl Pace {
    async fn spend(&self, bytes: u64) {
        self.bytes.set(self.bytes.get() + bytes);
        if self.bytes_per_s == 0 {
            return;
        }
        let due = Duration::from_secs_f64(self.bytes.get() as f64 / self.bytes_per_s as f64);
        if let Some(wait) = due.checked_sub(self.start.elapsed()) {
            glommio::timer::sleep(wait).await;
        }
    }
}

impl<D: Disk> PartitionLog<D> {
    /// One compaction pass (see the module docs); `None` when the log is not compacted or
    /// nothing was due. Stops early (without harm) when the log closes.
    pub async fn clean(&self, now_ms: i64) -> Result<Option<CleanerStats>, StorageError> {
        let sh = &self.shared;
        if !sh.config.compact {
            return Ok(None);
        }
        let pace = Pace {
            start: Instant::now(),
            bytes: Cell::new(0),
            bytes_per_s: sh.config.cleaner_bytes_per_s,
        };
        // Closed segments a pass may read: up to the first one a roll still seals, and only
        // durable data (a record counts as a key's latest only once it cannot be lost). A
        // fenced log (a failed sync: the state of unsynced data is unknown) is left alone.
        if sh.queue.borrow().fenced.is_some() {
            return Ok(None);
        }
        let durable = sh.durable_offset.get();
        let closed: Vec<Rc<Segment<D::File>>> = {
            let segs = sh.segments.borrow();
            let n = segs.len().saturating_sub(1);
            segs[..n]
                .iter()
                .take_while(|s| !s.sealing.get() && s.next_offset.get() <= durable)
                .cloned()
                .collect()
        };
        let Some(closed_end) = closed.last().map(|s| s.next_offset.get()) else {
            return Ok(None);
        };
        let from = sh.cleaned_to.get().max(closed[0].base_offset);
        if from >= closed_end {
            return Ok(None);
        }
        let total: u64 = closed.iter().map(|s| s.size_bytes.get()).sum();
        let dirty: u64 =
            closed.iter().filter(|s| s.next_offset.get() > from).map(|s| s.size_bytes.get()).sum();
        if total == 0 || dirty * 100 < total * u64::from(sh.config.cleaner_dirty_percent_min) {
            return Ok(None);
        }

        // Map the dirty part: key → latest offset, until the map is full.
        let mut map = KeyMap::new(sh.config.cleaner_key_map_bytes);
        let mut map_end = from;
        let mut scratch = AlignedVec::new();
        'mapping: for seg in closed.iter().filter(|s| s.next_offset.get() > from) {
            let mut full = false;
            let end = self
                .each_batch(seg, from.max(seg.base_offset), &pace, |envelope| {
                    let view = envelope.open(&mut scratch).map_err(|e| corrupt(seg, e))?;
                    // The mapped range ends before a batch whose keys did not all fit (the
                    // ones that did point at real records: removing by them is still right).
                    let fits =
                        view.records().all(|r| r.key().is_none_or(|k| map.insert(k, r.offset())));
                    if fits {
                        map_end = envelope.header().next_offset();
                    } else {
                        full = true;
                    }
                    Ok(fits)
                })
                .await?;
            if end.is_none() {
                return Ok(None); // the log is closing
            }
            if full {
                break 'mapping;
            }
        }
        if map_end <= from {
            warn!(dir = %sh.dir.display(), entries_max = map.entries_max, "compaction: one batch's keys overflow the key map; raise cleaner_key_map_bytes");
            return Ok(None);
        }

        let mut stats = CleanerStats { passes: 1, ..Default::default() };
        let expired_before = now_ms.saturating_sub(sh.config.delete_retention_ms);
        for seg in closed.iter().filter(|s| s.base_offset < map_end) {
            if sh.queue.borrow().closing {
                return Ok(None);
            }
            match self.rewrite(seg, &map, map_end, expired_before, &pace, &mut stats).await {
                Ok(()) => {}
                Err(e) => {
                    warn!(segment = %seg.log_path.display(), error = %e, "compaction: segment not rewritten");
                    let _ = sh.disk.remove(&cleaned_path(seg)).await;
                    return Err(e);
                }
            }
        }
        sh.cleaned_to.set(map_end);
        let mut total = sh.cleaner.get();
        total.add(&stats);
        sh.cleaner.set(total);
        info!(dir = %sh.dir.display(), mapped_from = from, mapped_to = map_end, keys = map.latest.len(),
            segments = stats.segments_rewritten, records_removed = stats.records_removed,
            bytes_before = stats.bytes_before, bytes_after = stats.bytes_after, "compaction pass");
        Ok(Some(stats))
    }

    /// What compaction did to this log so far.
    pub fn cleaner_stats(&self) -> CleanerStats {
        self.shared.cleaner.get()
    }

    /// Calls `on_batch` for every batch of `seg` from the one holding `from`, reading paced
    /// chunks, until it answers false; `None` when the log began closing.
    async fn each_batch(
        &self,
        seg: &Rc<Segment<D::File>>,
        from: u64,
        pace: &Pace,
        mut on_batch: impl FnMut(&BatchEnvelope<'_>) -> Result<bool, StorageError>,
    ) -> Result<Option<()>, StorageError> {
        let sh = &self.shared;
        let file = sh.read_file(seg).await?;
        let end = seg.next_offset.get();
        let mut offset = from;
        while offset < end {
            if sh.queue.borrow().closing {
                return Ok(None);
            }
            let views = seg
                .read(&file.file, offset, READ_CHUNK_BYTES, FirstBatch::Always, READ_CHUNK_BYTES)
                .await?;
            if views.is_empty() {
                break;
            }
            let mut read = 0u64;
            for view in &views {
                read += view.len() as u64;
                for envelope in Envelopes::new(view) {
                    let envelope = envelope.map_err(|e| corrupt(seg, e))?;
                    if envelope.header().last_offset() < offset {
                        continue;
                    }
                    if !on_batch(&envelope)? {
                        return Ok(Some(()));
                    }
                    offset = envelope.header().next_offset();
                }
            }
            pace.spend(read).await;
        }
        Ok(Some(()))
    }

    /// Rewrites `seg` without the records `map` supersedes and the expired tombstones, and
    /// swaps the rewrite in; nothing when it would remove nothing. Streams: holds about one
    /// read chunk and one write chunk, never the segment.
    async fn rewrite(
        &self,
        seg: &Rc<Segment<D::File>>,
        map: &KeyMap,
        map_end: u64,
        expired_before: i64,
        pace: &Pace,
        stats: &mut CleanerStats,
    ) -> Result<(), StorageError> {
        let sh = &self.shared;
        let path = cleaned_path(seg);
        let old = sh.read_file(seg).await?;
        let mut scratch = AlignedVec::new();
        let mut builder = BatchBuilder::new(wire::constants::BATCH_BYTES_MAX as usize);
        let mut filler = AlignedVec::new();
        let interval = sh.config.index_interval_bytes;
        // Until the first removal nothing is written: `prefix` bytes of the old file are
        // copied as they are once one happens.
        let mut prefix = 0u64;
        let mut w: Option<Rewrite<D>> = None;
        let mut run: Option<EmptyRun> = None;
        let (end, mut offset) = (seg.next_offset.get(), seg.base_offset);
        let (mut removed, mut tombstones) = (0u64, 0u64);
        while offset < end {
            if sh.queue.borrow().closing {
                return Ok(());
            }
            let views = seg
                .read(&old.file, offset, READ_CHUNK_BYTES, FirstBatch::Always, READ_CHUNK_BYTES)
                .await?;
            if views.is_empty() {
                break;
            }
            let mut pieces: Vec<Piece> = Vec::new();
            let mut read = 0u64;
            for view in &views {
                read += view.len() as u64;
                let mut at = 0usize;
                for envelope in Envelopes::new(view) {
                    let envelope = envelope.map_err(|e| corrupt(seg, e))?;
                    let len = envelope.bytes().len();
                    let h = envelope.header();
                    if h.last_offset() >= offset {
                        let mut bytes = AlignedVec::new();
                        let retained =
                            retain_into(&envelope, &mut scratch, &mut builder, &mut bytes, |r| {
                                let keep = match r.key() {
                                    None => true,
                                    Some(k) if map.superseded(k, r.offset()) => false,
                                    Some(_) => {
                                        // Only a tombstone the map covered: every earlier
                                        // record of its key goes in this pass too.
                                        let expired = r.value().is_none()
                                            && r.offset() < map_end
                                            && h.log_append_time_ms() < expired_before;
                                        tombstones += u64::from(expired);
                                        !expired
                                    }
                                };
                                removed += u64::from(!keep);
                                keep
                            })
                            .map_err(|e| compact_failed(seg, e.to_string()))?;
                        pieces.push(match retained {
                            Retained::All => Piece::Same(view.slice(at, at + len)),
                            Retained::Rewritten { records: 0, .. } => Piece::Empty(EmptyRun {
                                base_offset: h.base_offset(),
                                next_offset: h.next_offset(),
                                max_timestamp_ms: h.max_timestamp_ms(),
                                log_append_time_ms: h.log_append_time_ms(),
                            }),
                            Retained::Rewritten { range, .. } => {
                                Piece::Rewritten(bytes[range].to_vec())
                            }
                        });
                        offset = h.next_offset();
                    }
                    at += len;
                }
            }
            pace.spend(read).await;
            for piece in pieces {
                let writer = match (&mut w, &piece) {
                    (None, Piece::Same(v)) => {
                        prefix += v.len() as u64;
                        continue;
                    }
                    (None, _) => {
                        let mut fresh = Rewrite::<D>::create(sh, seg, &path).await?;
                        fresh.copy_prefix(&old.file, prefix, interval, pace).await?;
                        w.insert(fresh)
                    }
                    (Some(writer), _) => writer,
                };
                match piece {
                    Piece::Empty(e) => {
                        let r = run.get_or_insert(EmptyRun { ..e });
                        r.next_offset = e.next_offset;
                        r.max_timestamp_ms = r.max_timestamp_ms.max(e.max_timestamp_ms);
                        r.log_append_time_ms = r.log_append_time_ms.max(e.log_append_time_ms);
                        continue;
                    }
                    Piece::Same(v) => {
                        if let Some(r) = run.take() {
                            writer
                                .push_empty(&r, &mut builder, &mut filler, interval, pace)
                                .await?;
                        }
                        writer.push(&v, interval, pace).await?;
                    }
                    Piece::Rewritten(bytes) => {
                        if let Some(r) = run.take() {
                            writer
                                .push_empty(&r, &mut builder, &mut filler, interval, pace)
                                .await?;
                        }
                        writer.push(&bytes, interval, pace).await?;
                    }
                }
            }
        }
        let Some(mut w) = w else {
            return Ok(()); // nothing to remove
        };
        if let Some(r) = run.take() {
            w.push_empty(&r, &mut builder, &mut filler, interval, pace).await?;
        }
        w.flush(true).await?;
        w.file.fdatasync().await?;
        drop(old);
        let new = w.seg;
        if new.next_offset.get() != seg.next_offset.get() {
            let why = format!("rewrite ends at {} not {}", new.next_offset.get(), end);
            sh.disk.remove(&path).await?;
            return Err(compact_failed(seg, why));
        }
        new.synced_to(new.size_bytes.get());
        new.max_timestamp_ms.set(new.max_timestamp_ms.get().max(seg.max_timestamp_ms.get()));
        new.first_append_ms.set(seg.first_append_ms.get());
        let rel = u32::try_from(end.saturating_sub(seg.base_offset + 1)).unwrap_or(u32::MAX);
        new.time_index.borrow_mut().push(new.max_timestamp_ms.get(), rel);
        let (before, after) = (seg.size_bytes.get(), new.size_bytes.get());
        if self.swap(seg, Rc::new(new), &path).await? {
            stats.segments_rewritten += 1;
            stats.records_removed += removed;
            stats.tombstones_removed += tombstones;
            stats.bytes_before += before;
            stats.bytes_after += after;
            debug!(segment = %seg.log_path.display(), before, after, removed, "compaction rewrote segment");
        }
        Ok(())
    }

    /// Puts `new` (written and synced at `cleaned`) in the place of `old`: on disk (old index
    /// files gone, rename over the `.log`, both synced) and in the segment list.
    async fn swap(
        &self,
        old: &Rc<Segment<D::File>>,
        new: Rc<Segment<D::File>>,
        cleaned: &std::path::Path,
    ) -> Result<bool, StorageError> {
        let sh = &self.shared;
        let _maintenance = sh.maintenance.acquire_permit(1).await;
        if !sh.segments.borrow().iter().any(|s| Rc::ptr_eq(s, old)) || sh.queue.borrow().closing {
            sh.disk.remove(cleaned).await?;
            return Ok(false); // deleted meanwhile, or closing: the rewrite is not needed
        }
        old.retire(&sh.disk, &sh.files).await?;
        for ext in ["index", "timeindex"] {
            match sh.disk.remove(&sh.dir.join(file_name(old.base_offset, ext))).await {
                Ok(()) | Err(IoError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        sh.disk.sync_dir(&sh.dir).await?;
        sh.disk.rename(cleaned, &old.log_path).await?;
        sh.disk.sync_dir(&sh.dir).await?;
        // Like every sealed segment, the new one reopens its file on demand.
        if let Some(f) = new.close_file() {
            drop(f);
        }
        let mut segs = sh.segments.borrow_mut();
        if let Some(slot) = segs.iter_mut().find(|s| Rc::ptr_eq(s, old)) {
            *slot = new;
        }
        // Cached copies of the old batches would hide the rewrite from readers.
        sh.cache.forget_before(old.next_offset.get());
        Ok(true)
    }
}

/// A batch's fate in a rewrite.
enum Piece {
    /// Unchanged: its stored bytes.
    Same(ByteView),
    /// Some records removed.
    Rewritten(Vec<u8>),
    /// Every record removed: its span joins a run covered by one empty batch.
    Empty(EmptyRun),
}

/// Offsets whose batches lost every record, covered by one empty compacted batch.
#[derive(Debug, Clone, Copy)]
struct EmptyRun {
    base_offset: u64,
    next_offset: u64,
    max_timestamp_ms: i64,
    log_append_time_ms: i64,
}

/// A rewrite being written: aligned chunks of batches, the new segment's index as it goes.
struct Rewrite<D: Disk> {
    file: Rc<D::File>,
    pending: AlignedVec,
    written: u64,
    seg: Segment<D::File>,
    /// The storage budget's slot for `file`.
    _slot: FileSlot,
}

impl<D: Disk> Rewrite<D> {
    async fn create(
        sh: &LogCore<D>,
        old: &Segment<D::File>,
        path: &std::path::Path,
    ) -> Result<Self, StorageError> {
        let slot = sh
            .file_slot(FileUse::Brief)
            .ok_or_else(|| IoError::over_budget("write a compacted segment", path))?;
        let file = Rc::new(sh.disk.open(path, true).await?);
        file.truncate(0).await?; // a leftover from an earlier pass
        let seg =
            Segment::new(old.base_offset, file.clone(), old.log_path.clone(), 0, old.base_offset);
        Ok(Rewrite { file, pending: AlignedVec::new(), written: 0, seg, _slot: slot })
    }

    /// Copies the first `len` bytes of `old` (whole batches kept as they are).
    async fn copy_prefix(
        &mut self,
        old: &D::File,
        len: u64,
        interval: u32,
        pace: &Pace,
    ) -> Result<(), StorageError> {
        let mut pos = 0u64;
        while pos < len {
            let want = (len - pos).min(READ_CHUNK_BYTES as u64) as usize;
            let view = read_view(old, pos, want, len).await?;
            // Whole batches only; a batch cut by the chunk is read again from its start.
            let mut whole = 0usize;
            for h in trusted_headers(&view) {
                let l = h.batch_len() as usize;
                if whole + l > view.len() {
                    break;
                }
                whole += l;
            }
            if whole == 0 {
                let l = wire::batch::header::peek_batch_len(&view).unwrap_or(0) as usize;
                let view = read_view(old, pos, l.max(1), len).await?;
                if view.len() < l || l == 0 {
                    return Err(StorageError::Corrupt {
                        file: self.seg.log_path.display().to_string(),
                        position: pos,
                        reason: "short batch while copying a segment's prefix".into(),
                    });
                }
                self.push(&view[..l], interval, pace).await?;
                pos += l as u64;
                continue;
            }
            pace.spend(whole as u64).await;
            self.push(&view[..whole], interval, pace).await?;
            pos += whole as u64;
        }
        Ok(())
    }

    async fn push_empty(
        &mut self,
        run: &EmptyRun,
        builder: &mut BatchBuilder,
        filler: &mut AlignedVec,
        interval: u32,
        pace: &Pace,
    ) -> Result<(), StorageError> {
        filler.clear();
        let r = empty_into(
            builder,
            filler,
            run.base_offset,
            run.next_offset,
            run.max_timestamp_ms,
            run.log_append_time_ms,
        )
        .map_err(|e| compact_failed(&self.seg, e.to_string()))?;
        self.push(&filler[r], interval, pace).await
    }

    /// Appends whole batches stored back to back.
    async fn push(
        &mut self,
        batches: &[u8],
        interval: u32,
        pace: &Pace,
    ) -> Result<(), StorageError> {
        for h in trusted_headers(batches) {
            let scanned = ScannedBatch {
                position: self.seg.size_bytes.get(),
                base_offset: h.base_offset(),
                next_offset: h.next_offset(),
                len: u64::from(h.batch_len()),
                max_timestamp_ms: h.max_timestamp_ms(),
            };
            self.seg.record(&scanned, interval);
        }
        self.pending.extend_from_slice(batches);
        if self.pending.len() >= WRITE_CHUNK_BYTES {
            let n = self.flush(false).await?;
            pace.spend(n).await;
        }
        Ok(())
    }

    /// Writes the whole pages gathered (and with `last`, the rest zero-padded to a page).
    async fn flush(&mut self, last: bool) -> Result<u64, StorageError> {
        let align = self.file.alignment().max(DISK_ALIGN);
        let whole = if last {
            self.pending.len().div_ceil(align) * align
        } else {
            self.pending.len() / align * align
        };
        if whole == 0 {
            return Ok(0);
        }
        let mut buf = self.file.alloc_write_buf(whole);
        let data = self.pending.len().min(whole);
        buf.as_mut()[..data].copy_from_slice(&self.pending[..data]);
        buf.as_mut()[data..].fill(0);
        self.file.write_at(buf, self.written).await?;
        self.written += whole as u64;
        let rest = self.pending[data..].to_vec();
        self.pending.clear();
        self.pending.extend_from_slice(&rest);
        Ok(whole as u64)
    }
}

fn cleaned_path<F: DiskFile>(seg: &Segment<F>) -> PathBuf {
    let mut name = seg.log_path.as_os_str().to_owned();
    name.push(CLEANED_SUFFIX);
    PathBuf::from(name)
}

fn corrupt<F: DiskFile>(seg: &Segment<F>, e: wire::BatchError) -> StorageError {
    StorageError::Corrupt {
        file: seg.log_path.display().to_string(),
        position: 0,
        reason: e.to_string(),
    }
}

fn compact_failed<F: DiskFile>(seg: &Segment<F>, why: String) -> StorageError {
    StorageError::Corrupt {
        file: seg.log_path.display().to_string(),
        position: 0,
        reason: format!("compaction could not rewrite a batch: {why}"),
    }
}
