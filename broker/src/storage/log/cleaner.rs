//! Compaction: closed segments rewritten with only each key's latest record.
//!
//! # Contract
//! - [`PartitionLog::clean`] runs one pass on a log with `compact` set, in the shard's
//!   background task queue, paced (`cleaner_bytes_per_s`) so appends never wait behind it. It
//!   never touches the active segment, nor one a roll is still sealing. One pass at a time.
//! - A pass maps key → latest offset (a 128-bit keyed hash of the key, so memory is bounded:
//!   `cleaner_key_map_bytes`) over the closed records not yet mapped (from `cleaned_to`),
//!   then rewrites every closed segment that starts below the map's end: a record is kept
//!   when it has no key, when the map has no later record of its key, or when it is that
//!   latest record, unless it is a tombstone older than `delete_retention_ms` that the map
//!   covers (so every earlier record of its key goes in the same pass). A record is
//!   only ever removed because a later record of its key exists in the log (or it is an
//!   expired tombstone), whatever the map's size: a full map just ends the pass early.
//!   Invariant: below `cleaned_to` no key has two records.
//! - Consecutive small segments are merged while they are rewritten (their sizes sum to at
//!   most `segment_bytes_max`); the rewrite, its index files, the merge and the crash-safe
//!   swap are `cleaner_rewrite.rs`.
//! - Offsets never change: a rewritten batch keeps its offset span (`wire::batch::compact`),
//!   and a run of batches that lost every record becomes one empty batch over their span
//!   (never across the start of a merged segment: a crash mid-swap cuts the merged file
//!   there), so a segment's batches stay back to back and readers, recovery and consumers see the
//!   same offsets with records missing.
//! - Progress: once every rewrite of a pass is swapped in, `cleaned_to` moves to the map's
//!   end and is persisted (`cleaner_checkpoint.rs`), so a restart resumes from there
//!   instead of mapping the whole log again; a pass cut short (closing, an error, a crash)
//!   records nothing, and a stale or missing checkpoint only costs work. Nothing acked is
//!   ever lost: only records a later record of the same key supersedes are left out, and
//!   that later record was durable before the pass began (closed segments hold only synced
//!   data).
//! - Retention and record deletion wait for a swap (`LogCore::maintenance`).

use std::cell::Cell;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;
use std::time::{Duration, Instant};

use rkyv::util::AlignedVec;
use tracing::{info, warn};
use wire::{BatchEnvelope, Envelopes};

use super::cleaner_checkpoint::write_checkpoint;
use super::cleaner_rewrite::{cleaned_path, group_segments, Verdict, READ_CHUNK_BYTES};
use super::PartitionLog;
use crate::storage::error::StorageError;
use crate::storage::io::{Disk, DiskFile};
use crate::storage::segment::{file_name, Segment};
use crate::storage::FirstBatch;

/// Suffix of a segment's rewrite before it replaces the segment.
pub(super) const CLEANED_SUFFIX: &str = ".cleaned";

/// Bytes of a key-map entry, for the memory budget (hash, offset, table overhead).
const KEY_MAP_ENTRY_BYTES: u64 = 32;

/// What compaction did to one log, summed over its passes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CleanerStats {
    /// Passes that ran (found something to map).
    pub passes: u64,
    /// Segments rewritten and swapped in (a merge counts once).
    pub segments_rewritten: u64,
    /// Segments merged into the one before them (gone from the log).
    pub segments_merged: u64,
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
    /// Adds another log's (or pass's) counts.
    pub fn add(&mut self, other: &CleanerStats) {
        self.passes += other.passes;
        self.segments_rewritten += other.segments_rewritten;
        self.segments_merged += other.segments_merged;
        self.records_removed += other.records_removed;
        self.tombstones_removed += other.tombstones_removed;
        self.bytes_before += other.bytes_before;
        self.bytes_after += other.bytes_after;
    }
}

/// Tombstones kept for [`PartitionLog::take_removed_tombstones`] at most (and their keys'
/// bytes): past either, only that there were more is kept.
pub const REMOVED_TOMBSTONES_MAX: usize = 65_536;
/// See [`REMOVED_TOMBSTONES_MAX`].
pub const REMOVED_TOMBSTONE_KEY_BYTES_MAX: usize = 4 << 20;

/// Expired tombstones passes took out of the log, each `(key, offset)`: a key whose last
/// record was one is gone from the log, which what derives from the log (the key index)
/// must learn. Bounded ([`REMOVED_TOMBSTONES_MAX`]); beyond it `overflowed`.
#[derive(Debug, Default)]
pub struct RemovedTombstones {
    /// The tombstones, in no order.
    pub keys: Vec<(Vec<u8>, u64)>,
    /// Bytes of their keys.
    pub key_bytes: usize,
    /// More were removed than kept here: which keys went is not known.
    pub overflowed: bool,
}

impl RemovedTombstones {
    /// Notes tombstone `key` at `offset`.
    pub(super) fn push(&mut self, key: &[u8], offset: u64) {
        if self.overflowed {
            return;
        }
        if self.keys.len() >= REMOVED_TOMBSTONES_MAX
            || self.key_bytes + key.len() > REMOVED_TOMBSTONE_KEY_BYTES_MAX
        {
            *self = RemovedTombstones { overflowed: true, ..Default::default() };
            return;
        }
        self.key_bytes += key.len();
        self.keys.push((key.to_vec(), offset));
    }

    /// Adds `other`'s.
    pub(super) fn append(&mut self, other: RemovedTombstones) {
        if other.overflowed {
            *self = RemovedTombstones { overflowed: true, ..Default::default() };
        }
        for (key, offset) in other.keys {
            self.push(&key, offset);
        }
    }
}

/// Key → latest offset over part of a log: a keyed 128-bit hash of each key.
pub(super) struct KeyMap {
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
    pub(super) fn superseded(&self, key: &[u8], offset: u64) -> bool {
        self.latest.get(&self.key_hash(key)).is_some_and(|&latest| latest > offset)
    }
}

/// Paces a pass's I/O to `bytes_per_s`.
pub(super) struct Pace {
    start: Instant,
    bytes: Cell<u64>,
    bytes_per_s: u64,
}

impl Pace {
    pub(super) async fn spend(&self, bytes: u64) {
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
        if !sh.live.compact() {
            return Ok(None);
        }
        // Held to the end of the pass (`close` waits for it); none once closing.
        let Ok(_pass) = sh.pass.acquire_permit(1).await else { return Ok(None) };
        if sh.queue.borrow().closing {
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
        // A merged segment left on disk (`checkpoint_void`) comes back at a restart as it was
        // before its pass, holding records the log in memory no longer has: a pass removing
        // an expired tombstone would let the value it deleted come back with it, and a merge
        // over that range would leave a gap (the simulation found both). No pass until it
        // is renamed after all (tried here again) or the log reopens.
        if !self.retry_left_merged().await {
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
        let verdict = Verdict {
            map: &map,
            map_end,
            expired_before: now_ms.saturating_sub(sh.live.delete_retention_ms()),
        };
        let below: Vec<_> = closed.iter().filter(|s| s.base_offset < map_end).cloned().collect();
        for group in group_segments(&below, sh.live.segment_bytes_max()) {
            if sh.queue.borrow().closing {
                return Ok(None);
            }
            match self.rewrite(&group, &verdict, &pace, &mut stats).await {
                Ok(true) if sh.checkpoint_void() => {
                    warn!(dir = %sh.dir.display(), "compaction: a merged segment is still on disk; the log is not compacted again until the next pass can remove it or the log reopens");
                    return Ok(None);
                }
                Ok(true) => {}
                Ok(false) => return Ok(None), // the log is closing: nothing recorded
                Err(e) => {
                    let closing = sh.queue.borrow().closing;
                    if !closing {
                        warn!(segment = %group[0].log_path.display(), segments = group.len(), error = %e, "compaction: segment not rewritten");
                    }
                    let base = group[0].base_offset;
                    for path in [
                        cleaned_path(&group[0].log_path),
                        cleaned_path(&sh.dir.join(file_name(base, "index"))),
                        cleaned_path(&sh.dir.join(file_name(base, "timeindex"))),
                    ] {
                        let _ = sh.disk.remove(&path).await;
                    }
                    return Err(e);
                }
            }
        }
        drop(below);
        drop(closed);
        // A rewrite dropped because the log began closing during it is not in.
        if sh.queue.borrow().closing {
            return Ok(None);
        }
        // Every rewrite below `map_end` is in: only now may the progress say so.
        sh.cleaned_to.set(map_end);
        if let Err(e) = write_checkpoint(&sh.disk, &sh.files, &sh.dir, map_end).await {
            warn!(dir = %sh.dir.display(), error = %e, "compaction: progress not persisted; a restart maps from the previous checkpoint");
        }
        let mut total = sh.cleaner.get();
        total.add(&stats);
        sh.cleaner.set(total);
        info!(dir = %sh.dir.display(), mapped_from = from, mapped_to = map_end, keys = map.latest.len(),
            segments = stats.segments_rewritten, merged = stats.segments_merged, records_removed = stats.records_removed,
            bytes_before = stats.bytes_before, bytes_after = stats.bytes_after, "compaction pass");
        Ok(Some(stats))
    }

    /// Whether a pass is dropping tombstones or dropped some not yet taken
    /// ([`PartitionLog::take_removed_tombstones`]): a key index snapshot written now may
    /// name keys the log no longer has.
    pub fn pending_removed_tombstones(&self) -> bool {
        let r = self.shared.removed_tombstones.borrow();
        self.shared.dropping_tombstones.get() || !r.keys.is_empty() || r.overflowed
    }

    /// The expired tombstones passes removed (swapped out of the log) since the last call.
    pub fn take_removed_tombstones(&self) -> RemovedTombstones {
        std::mem::take(&mut *self.shared.removed_tombstones.borrow_mut())
    }

    /// Every offset below this was in a completed pass's key map (read from the checkpoint at
    /// open).
    pub fn cleaned_to(&self) -> u64 {
        self.shared.cleaned_to.get()
    }

    /// The first segment's base offset (what a restart starts the log at, at the latest).
    #[cfg(test)]
    pub(crate) fn first_segment_base(&self) -> u64 {
        self.shared.segments.borrow()[0].base_offset
    }

    /// Merged segments still on disk hold compaction back (`LogCore::checkpoint_void`).
    #[cfg(test)]
    pub(crate) fn compaction_held(&self) -> bool {
        self.shared.checkpoint_void()
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
}

pub(super) fn corrupt<F: DiskFile>(seg: &Segment<F>, e: wire::BatchError) -> StorageError {
    StorageError::Corrupt {
        file: seg.log_path.display().to_string(),
        position: 0,
        reason: e.to_string(),
    }
}

pub(super) fn compact_failed<F: DiskFile>(seg: &Segment<F>, why: String) -> StorageError {
    StorageError::Corrupt {
        file: seg.log_path.display().to_string(),
        position: 0,
        reason: format!("compaction could not rewrite a batch: {why}"),
    }
}

#[cfg(test)]
mod removed_tombstones_tests {
    use super::*;

    #[test]
    fn removed_tombstones_are_bounded_and_overflow_says_so() {
        let mut r = RemovedTombstones::default();
        for i in 0..REMOVED_TOMBSTONES_MAX as u64 {
            r.push(b"k", i);
        }
        assert!(!r.overflowed);
        assert_eq!(r.keys.len(), REMOVED_TOMBSTONES_MAX);
        r.push(b"k", 0);
        assert!(r.overflowed && r.keys.is_empty(), "past the count: only that there were more");
        let mut big = RemovedTombstones::default();
        big.push(&vec![0; REMOVED_TOMBSTONE_KEY_BYTES_MAX], 1);
        assert_eq!(big.key_bytes, REMOVED_TOMBSTONE_KEY_BYTES_MAX);
        big.push(b"k", 2);
        assert!(big.overflowed, "past the bytes");
        let mut sum = RemovedTombstones::default();
        sum.push(b"a", 1);
        sum.append(big);
        assert!(sum.overflowed && sum.keys.is_empty());
    }
}
