//! One compaction rewrite: a group of consecutive closed segments written as one new segment
//! without the records a pass removes, with its index files, and swapped in.
//!
//! # Contract
//! - A group is one segment, or several back to back (each ends where the next starts)
//!   whose sizes sum to at most `segment_bytes_max` and whose offsets span less than 2^32
//!   (Kafka groups segments to clean the same way): they merge into one segment named by
//!   the first one's base offset. Offsets never change, so a merge only changes which file
//!   holds a batch. A single segment from which nothing would be removed is not written.
//! - Streams: holds about one read chunk and one write chunk, never a segment.
//! - Before the swap, the rewrite `<first>.log.cleaned` and its index files
//!   `<first>.index.cleaned`, `<first>.timeindex.cleaned` are written and synced (the index
//!   files are hints: without a descriptor or on an error they are left out, and recovery
//!   rebuilds them).
//! - The swap, crash-safe at every step (recovery ends a segment where the next `.log`
//!   starts, rebuilds missing index files and frees `*.cleaned` and `*.deleted` files):
//!   1. the group's index files are removed (directory synced): they describe old files;
//!   2. the rewrite is renamed over `<first>.log` (synced). A crash from here on finds the
//!      merged file, which holds the batches of the group's other segments too; while their
//!      `.log` files exist, recovery ends it where the next one starts, and reads them
//!      there: the same offsets and records either way;
//!   3. the other segments' `.log` files are renamed to `.deleted`, oldest first, each
//!      rename synced before the next (so a later one is never gone while an earlier one
//!      stays), and handed to the deleter, as retention does (a reader still holding one
//!      reads it there). One that cannot be renamed ends the step and the pass, and no
//!      pass runs (`LogCore::checkpoint_void`: a pass could expire a tombstone whose value
//!      is in a segment still on disk, or merge over it and leave a gap at the restart)
//!      until the next pass's start renames it and those after it after all
//!      (`LogCore::left_merged`, in the same order) or the log reopens;
//!   4. the new index files are renamed into place (synced): only now, so a restart never
//!      loads index entries past the first segment's end while the others still exist.
//! - Readers never mix files: the first segment's old object keeps its old file open
//!   (`Segment::retire`) for readers still holding it; the segment list points at the new
//!   segment from step 2 on, and the cache forgets the old batches. Runs under the log's
//!   `maintenance` permit (retention and record deletion wait).

use std::path::{Path, PathBuf};
use std::rc::Rc;

use rkyv::util::AlignedVec;
use tracing::{debug, warn};
use wire::batch::compact::{empty_into, retain_into, Retained};
use wire::batch::header::trusted_headers;
use wire::{BatchBuilder, Envelopes};

use super::cleaner::{compact_failed, corrupt, CleanerStats, KeyMap, Pace, CLEANED_SUFFIX};
use super::core::LogCore;
use super::index_files::LazyAppender;
use super::retention::{suffixed, Doomed, DELETED_SUFFIX};
use super::PartitionLog;
use crate::descriptors::{FileSlot, FileUse};
use crate::storage::bytes::ByteView;
use crate::storage::error::{IoError, StorageError};
use crate::storage::io::{Disk, DiskFile, DISK_ALIGN};
use crate::storage::segment::{file_name, read_view, ScannedBatch, Segment};
use crate::storage::FirstBatch;

/// Bytes read from a segment at a time.
pub(super) const READ_CHUNK_BYTES: usize = 1 << 20;
/// Bytes of rewritten batches gathered before a write.
const WRITE_CHUNK_BYTES: usize = 1 << 20;
/// Most offsets one segment may span (relative offsets are `u32`).
const SEGMENT_OFFSETS_MAX: u64 = u32::MAX as u64;

/// Splits `segments` (consecutive closed segments, oldest first) into rewrite groups (see
/// the module docs).
pub(super) fn group_segments<F: DiskFile>(
    segments: &[Rc<Segment<F>>],
    segment_bytes_max: u64,
) -> Vec<Vec<Rc<Segment<F>>>> {
    let mut groups: Vec<Vec<Rc<Segment<F>>>> = Vec::new();
    let mut bytes = 0u64;
    for seg in segments {
        let joins = groups.last().is_some_and(|g| {
            let (first, last) = (&g[0], &g[g.len() - 1]);
            last.next_offset.get() == seg.base_offset
                && bytes + seg.size_bytes.get() <= segment_bytes_max
                && seg.next_offset.get() - first.base_offset < SEGMENT_OFFSETS_MAX
        });
        if joins {
            bytes += seg.size_bytes.get();
            groups.last_mut().expect("joins a group").push(seg.clone());
        } else {
            bytes = seg.size_bytes.get();
            groups.push(vec![seg.clone()]);
        }
    }
    groups
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

/// What a pass decides for each record, and what it removed.
pub(super) struct Verdict<'a> {
    pub(super) map: &'a KeyMap,
    pub(super) map_end: u64,
    pub(super) expired_before: i64,
}

impl<D: Disk> PartitionLog<D> {
    /// Rewrites `group` as one segment without the records the pass removes and swaps it in
    /// (see the module docs). `Ok(false)` when the log began closing (nothing swapped).
    pub(super) async fn rewrite(
        &self,
        group: &[Rc<Segment<D::File>>],
        verdict: &Verdict<'_>,
        pace: &Pace,
        stats: &mut CleanerStats,
    ) -> Result<bool, StorageError> {
        let sh = &self.shared;
        let first = &group[0];
        let last = &group[group.len() - 1];
        let path = cleaned_path(&first.log_path);
        let mut scratch = AlignedVec::new();
        let mut builder = BatchBuilder::new(wire::constants::BATCH_BYTES_MAX as usize);
        let mut filler = AlignedVec::new();
        let interval = sh.config.index_interval_bytes;
        // A single segment is written only once a removal happens: `prefix` bytes of its
        // file are then copied as they are. A merge is written from the start.
        let mut prefix = 0u64;
        let mut w: Option<Rewrite<D>> = match group.len() {
            1 => None,
            _ => Some(Rewrite::<D>::create(sh, first, &path).await?),
        };
        let mut run: Option<EmptyRun> = None;
        let (mut removed, mut tombstones) = (0u64, 0u64);
        let mut gone = super::cleaner::RemovedTombstones::default();
        for seg in group {
            // A run of emptied batches never crosses into the next segment of a merge: a
            // crash before step 3 of the swap leaves the merged file ending where that
            // segment's `.log` starts (recovery cuts it there), which is a batch boundary
            // only if no batch of the merged file spans it.
            if let Some(writer) = w.as_mut() {
                if let Some(r) = run.take() {
                    writer.push_empty(&r, &mut builder, &mut filler, interval, pace).await?;
                }
            }
            let old = sh.read_file(seg).await?;
            let (end, mut offset) = (seg.next_offset.get(), seg.base_offset);
            while offset < end {
                if sh.queue.borrow().closing {
                    return Ok(false);
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
                            let retained = retain_into(
                                &envelope,
                                &mut scratch,
                                &mut builder,
                                &mut bytes,
                                |r| {
                                    let keep = match r.key() {
                                        None => true,
                                        Some(k) if verdict.map.superseded(k, r.offset()) => false,
                                        Some(_) => {
                                            // Only a tombstone the map covered: every earlier
                                            // record of its key goes in this pass too.
                                            let expired = r.value().is_none()
                                                && r.offset() < verdict.map_end
                                                && h.log_append_time_ms() < verdict.expired_before;
                                            tombstones += u64::from(expired);
                                            if let (true, Some(k)) = (expired, r.key()) {
                                                gone.push(k, r.offset());
                                            }
                                            !expired
                                        }
                                    };
                                    removed += u64::from(!keep);
                                    keep
                                },
                            )
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
                            let mut fresh = Rewrite::<D>::create(sh, first, &path).await?;
                            let closing = || sh.queue.borrow().closing;
                            fresh.copy_prefix(&old.file, prefix, interval, pace, closing).await?;
                            w.insert(fresh)
                        }
                        (Some(writer), _) => writer,
                    };
                    if let Piece::Empty(e) = piece {
                        let r = run.get_or_insert(EmptyRun { ..e });
                        r.next_offset = e.next_offset;
                        r.max_timestamp_ms = r.max_timestamp_ms.max(e.max_timestamp_ms);
                        r.log_append_time_ms = r.log_append_time_ms.max(e.log_append_time_ms);
                        continue;
                    }
                    if let Some(r) = run.take() {
                        writer.push_empty(&r, &mut builder, &mut filler, interval, pace).await?;
                    }
                    match piece {
                        Piece::Same(v) => writer.push(&v, interval, pace).await?,
                        Piece::Rewritten(bytes) => writer.push(&bytes, interval, pace).await?,
                        Piece::Empty(_) => unreachable!("handled above"),
                    }
                }
            }
        }
        let Some(mut w) = w else {
            return Ok(true); // one segment, nothing to remove
        };
        if let Some(r) = run.take() {
            w.push_empty(&r, &mut builder, &mut filler, interval, pace).await?;
        }
        w.flush(true).await?;
        w.file.fdatasync().await?;
        sh.trust_file_sync().await?;
        let new = w.seg;
        let end = last.next_offset.get();
        if new.next_offset.get() != end {
            let why = format!("rewrite ends at {} not {end}", new.next_offset.get());
            sh.disk.remove(&path).await?;
            return Err(compact_failed(first, why));
        }
        new.synced_to(new.size_bytes.get());
        let max_ts = group.iter().map(|s| s.max_timestamp_ms.get()).max().unwrap_or(i64::MIN);
        new.max_timestamp_ms.set(new.max_timestamp_ms.get().max(max_ts));
        new.first_append_ms
            .set(group.iter().map(|s| s.first_append_ms.get()).min().unwrap_or(i64::MAX));
        let rel = u32::try_from(end.saturating_sub(first.base_offset + 1)).unwrap_or(u32::MAX);
        new.time_index.borrow_mut().push(new.max_timestamp_ms.get(), rel);
        let indexed = write_index_files(sh, &new).await;
        let before: u64 = group.iter().map(|s| s.size_bytes.get()).sum();
        let after = new.size_bytes.get();
        let drops = !gone.keys.is_empty() || gone.overflowed;
        if drops {
            // The partition's key index snapshot may name these tombstones' keys: it goes
            // (durably) before they leave the log, so no crash between the two lets a
            // restart load keys the log no longer has (`Partition::forget_removed_tombstones`
            // tells the live index after the pass; until then no snapshot of it is kept:
            // `pending_removed_tombstones`). Nothing is swapped if it cannot go.
            sh.dropping_tombstones.set(true);
            let snapshot = sh.dir.join(crate::state_snapshot::KEYS_FILE);
            let removed = match sh.disk.remove(&snapshot).await {
                Ok(()) => sh.disk.sync_dir(&sh.dir).await.map_err(StorageError::from),
                Err(IoError::NotFound { .. }) => Ok(()),
                Err(e) => Err(e.into()),
            };
            if let Err(e) = removed {
                sh.dropping_tombstones.set(false);
                return Err(e);
            }
        }
        let swapped = self.swap(group, Rc::new(new), &path, indexed).await;
        if drops {
            if let Ok(true) = swapped {
                sh.removed_tombstones.borrow_mut().append(gone);
            }
            sh.dropping_tombstones.set(false);
        }
        let swapped = swapped?;
        if !swapped && sh.queue.borrow().closing {
            // Dropped unswapped: the pass must not record progress it did not make (its
            // checkpoint would let a later pass expire tombstones whose values stay here).
            return Ok(false);
        }
        if swapped {
            stats.segments_rewritten += 1;
            stats.segments_merged += group.len() as u64 - 1;
            stats.records_removed += removed;
            stats.tombstones_removed += tombstones;
            stats.bytes_before += before;
            stats.bytes_after += after;
            debug!(segment = %first.log_path.display(), merged = group.len(), before, after, removed, "compaction rewrote segment");
        }
        Ok(true)
    }

    /// Puts `new` (written and synced at `cleaned`, its index files too when `indexed`) in
    /// the place of `group`, in the steps the module docs list. `Ok(false)` when the group
    /// left the log meanwhile or the log is closing (the rewrite is dropped).
    async fn swap(
        &self,
        group: &[Rc<Segment<D::File>>],
        new: Rc<Segment<D::File>>,
        cleaned: &Path,
        indexed: bool,
    ) -> Result<bool, StorageError> {
        let sh = &self.shared;
        let first = &group[0];
        let cleaned_index =
            index_exts().map(|ext| cleaned_path(&sh.dir.join(file_name(first.base_offset, ext))));
        let _maintenance = sh.maintenance.acquire_permit(1).await;
        let at = {
            let segs = sh.segments.borrow();
            segs.iter().position(|s| Rc::ptr_eq(s, first)).filter(|&at| {
                group
                    .iter()
                    .enumerate()
                    .all(|(i, g)| segs.get(at + i).is_some_and(|s| Rc::ptr_eq(s, g)))
            })
        };
        let Some(at) = at.filter(|_| !sh.queue.borrow().closing) else {
            for path in std::iter::once(cleaned).chain(cleaned_index.iter().map(PathBuf::as_path)) {
                remove_if_present(&sh.disk, path).await?;
            }
            return Ok(false); // deleted meanwhile, or closing: the rewrite is not needed
        };
        // 1. The old index files go.
        first.retire(&sh.disk, &sh.files).await?;
        for seg in group {
            for ext in index_exts() {
                remove_if_present(&sh.disk, &sh.dir.join(file_name(seg.base_offset, ext))).await?;
            }
        }
        sh.disk.sync_dir(&sh.dir).await?;
        // 2. The rewrite takes the first segment's name, and its place in the list.
        sh.disk.rename(cleaned, &first.log_path).await?;
        sh.disk.sync_dir(&sh.dir).await?;
        // Like every sealed segment, the new one reopens its file on demand.
        if let Some(f) = new.close_file() {
            drop(f);
        }
        sh.segments.borrow_mut().splice(at..at + group.len(), [new]);
        sh.cache.forget_before(group[group.len() - 1].next_offset.get());
        // 3. The merged segments leave as retention's do, oldest first, each rename durable
        // before the next: a restart then finds the merged file followed by the rest of the
        // group still on disk (the merged file ends where they start), never a later one
        // gone while an earlier one stays, which would leave a gap. One that cannot be
        // renamed stops the step: it and the ones after it stay, and come back at a restart
        // as they were before this pass, so no later checkpoint may cover them.
        let gone = self.take_out_merged(&group[1..]).await;
        sh.left_merged.borrow_mut().extend(group[1 + gone..].iter().cloned());
        // With one still there, index entries past its base would mislead recovery.
        let indexed = indexed && gone + 1 == group.len();
        // 4. The new index files take their names.
        if !indexed {
            for path in &cleaned_index {
                remove_if_present(&sh.disk, path).await?;
            }
        } else {
            let renamed = async {
                for (ext, from) in index_exts().into_iter().zip(&cleaned_index) {
                    sh.disk.rename(from, &sh.dir.join(file_name(first.base_offset, ext))).await?;
                }
                sh.disk.sync_dir(&sh.dir).await
            }
            .await;
            if let Err(e) = renamed {
                warn!(segment = %first.log_path.display(), error = %e, "compaction: index files not put in place; recovery rebuilds them");
                for ext in index_exts() {
                    remove_if_present(&sh.disk, &sh.dir.join(file_name(first.base_offset, ext)))
                        .await?;
                }
            }
        }
        Ok(true)
    }
}

impl<D: Disk> PartitionLog<D> {
    /// Step 3 of a swap: renames merged segments' `.log` files to `.deleted`, oldest first,
    /// each rename synced before the next, and hands them to the deleter. Stops at the first
    /// that cannot be renamed; returns how many went.
    async fn take_out_merged(&self, segs: &[Rc<Segment<D::File>>]) -> usize {
        let sh = &self.shared;
        let mut doomed = Vec::new();
        for seg in segs {
            let to = suffixed(&seg.log_path, DELETED_SUFFIX);
            let renamed = async {
                seg.rename(&sh.disk, to.clone()).await?;
                sh.disk.sync_dir(&sh.dir).await
            };
            if let Err(e) = renamed.await {
                warn!(segment = %seg.log_path.display(), error = %e, "compaction: cannot remove a merged segment; the next pass tries again, a restart reads it again");
                break;
            }
            doomed.push(Doomed { path: to, segment: Some(seg.clone()) });
        }
        let gone = doomed.len();
        if gone > 0 {
            sh.deleting.borrow_mut().extend(doomed);
            sh.deleter_signal.advance(sh.deleter_signal.get() + 1);
        }
        gone
    }

    /// Before a pass, while a merged segment is still on disk (`checkpoint_void`): tries its
    /// rename (and the others') again. True once none is left: the disk then holds what a
    /// swap that never failed leaves (the merged file's index files aside, which recovery
    /// rebuilds), so passes and checkpoints may go on.
    pub(super) async fn retry_left_merged(&self) -> bool {
        let sh = &self.shared;
        if !sh.checkpoint_void() {
            return true;
        }
        let _maintenance = sh.maintenance.acquire_permit(1).await;
        if sh.queue.borrow().closing {
            return false;
        }
        self.take_out_left_merged().await
    }

    /// [`Self::retry_left_merged`] for a caller holding the `maintenance` permit (retention,
    /// which must not delete the merged segment while the ones it covers are on disk: a
    /// restart would bring them back, deleted records and a gap with them).
    pub(super) async fn take_out_left_merged(&self) -> bool {
        let sh = &self.shared;
        if !sh.checkpoint_void() {
            return true;
        }
        let left = sh.left_merged.borrow().clone();
        let gone = self.take_out_merged(&left).await;
        sh.left_merged.borrow_mut().drain(..gone);
        if sh.checkpoint_void() {
            return false;
        }
        tracing::info!(dir = %sh.dir.display(), "compaction: the merged segments left on disk are gone; the log is compacted again");
        true
    }
}

fn index_exts() -> [&'static str; 2] {
    ["index", "timeindex"]
}

/// Writes `seg`'s index as `<base>.index.cleaned` and `<base>.timeindex.cleaned`, synced;
/// false (and nothing left behind that matters: recovery frees `*.cleaned`) when a
/// descriptor or a write is missing. Both files exist even when empty, as for every closed
/// segment, so a restart trusts them instead of scanning.
async fn write_index_files<D: Disk>(sh: &LogCore<D>, seg: &Segment<D::File>) -> bool {
    let mut offsets = Vec::new();
    seg.index.borrow().encode_from(0, &mut offsets);
    let mut times = Vec::new();
    seg.time_index.borrow().encode_from(0, &mut times);
    let written = async {
        for (ext, bytes) in index_exts().into_iter().zip([offsets, times]) {
            let path = cleaned_path(&sh.dir.join(file_name(seg.base_offset, ext)));
            let mut f = LazyAppender::new(path, FileUse::Brief);
            f.open_empty(&sh.disk, &sh.files).await?;
            f.append(&sh.disk, &sh.files, &bytes).await?;
            f.fdatasync().await?;
        }
        Ok::<(), IoError>(())
    }
    .await;
    match written {
        Ok(()) => true,
        Err(e) => {
            debug!(segment = %seg.log_path.display(), error = %e, "compaction: index files left to recovery");
            false
        }
    }
}

async fn remove_if_present<D: Disk>(disk: &D, path: &Path) -> Result<(), IoError> {
    match disk.remove(path).await {
        Ok(()) | Err(IoError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// `<path>.cleaned`: a file of a rewrite before it replaces `path`.
pub(super) fn cleaned_path(path: &Path) -> PathBuf {
    suffixed(path, CLEANED_SUFFIX)
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
        first: &Segment<D::File>,
        path: &Path,
    ) -> Result<Self, StorageError> {
        let slot = sh
            .file_slot(FileUse::Brief)
            .ok_or_else(|| IoError::over_budget("write a compacted segment", path))?;
        let file = Rc::new(sh.disk.open(path, true).await?);
        file.truncate(0).await?; // a leftover from an earlier pass
        let seg = Segment::new(
            first.base_offset,
            file.clone(),
            first.log_path.clone(),
            0,
            first.base_offset,
        );
        Ok(Rewrite { file, pending: AlignedVec::new(), written: 0, seg, _slot: slot })
    }

    /// Copies the first `len` bytes of `old` (whole batches kept as they are).
    async fn copy_prefix(
        &mut self,
        old: &D::File,
        len: u64,
        interval: u32,
        pace: &Pace,
        closing: impl Fn() -> bool,
    ) -> Result<(), StorageError> {
        let mut pos = 0u64;
        while pos < len {
            // A prefix can be a whole segment's worth: `close` waits for the pass.
            if closing() {
                return Err(StorageError::Closed);
            }
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
            // Offsets stay dense (reads check what they copy; this keeps a damaged prefix an
            // error rather than the segment's assertion).
            if h.base_offset() != self.seg.next_offset.get() {
                let why = format!(
                    "batch at offset {} where {} was expected",
                    h.base_offset(),
                    self.seg.next_offset.get()
                );
                return Err(compact_failed(&self.seg, why));
            }
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
