//! Ending a segment and starting the next.
//!
//! Contract: at a roll the old segment's data is synced (through its sync gate) before any
//! append goes to the new segment, so every closed segment is durable; its final index
//! entries and the trim of its preallocated space finish in the background (retention waits
//! on `Segment::sealing`; at most [`SEALING_MAX`] run at once), the old `.log` held open
//! under a slot of the storage budget; without a slot the seal finishes before the new
//! segment opens (the new `.log` takes the partition's reservation). The new segment is a fresh
//! file or the kept spare (`segment_recycle`), reused once no reader holds it: its stale
//! bytes past the new data are never served (reads stop at the segment's size), a write
//! that ends the data puts a zeroed page after it (so recovery finds a clean end), recovery
//! cuts whatever stale bytes follow the last valid batch, and sealing trims them. A roll
//! that cannot make the new segment removes whatever it left under its name before appends
//! go on in the old one. Closing seals the active segment the same way.

use std::path::Path;
use std::rc::Rc;

use tracing::{info, warn};

use super::core::LogCore;
use super::index_files::{IndexFiles, LazyAppender};
use super::retention::Doomed;
use super::writer::{new_zero_ahead, Writer};
use crate::descriptors::FileUse;
use crate::storage::error::{IoError, StorageError};
use crate::storage::io::{Disk, DiskFile, DISK_ALIGN};
use crate::storage::segment::{align_up, file_name, Segment};

/// Closed segments whose seal may run in the background at once; a roll past this waits for
/// the oldest.
pub(super) const SEALING_MAX: usize = 4;

/// Turns a kept deleted segment into the new segment at `base_offset`: renamed (directory
/// synced) and reopened under its new name. Returns the segment, its (lazy) index files and
/// the reused file's length.
pub(super) async fn recycle_segment<D: Disk>(
    sh: &LogCore<D>,
    spare: Doomed<D::File>,
    base_offset: u64,
) -> Result<(Rc<Segment<D::File>>, IndexFiles<D::File>, u64), StorageError> {
    drop(spare.segment); // closes the old handle
    let log_path = sh.dir.join(file_name(base_offset, "log"));
    if let Err(e) = sh.disk.rename(&spare.path, &log_path).await {
        sh.deleting.borrow_mut().push_back(Doomed { path: spare.path, segment: None });
        sh.deleter_signal.advance(sh.deleter_signal.get() + 1);
        return Err(e.into());
    }
    let (seg, files) = create_segment_files(&sh.disk, &sh.dir, base_offset, false).await?;
    let len = seg.log().size().await?;
    sh.bump_stats(|s| s.segments_recycled += 1);
    Ok((seg, files, len))
}

/// Creates a new, empty segment and its index files, and makes their names durable.
pub(super) async fn create_segment<D: Disk>(
    disk: &D,
    dir: &Path,
    base_offset: u64,
) -> Result<(Rc<Segment<D::File>>, IndexFiles<D::File>), StorageError> {
    create_segment_files(disk, dir, base_offset, true).await
}

/// Opens the segment at `base_offset` as empty (its `.log` emptied when `fresh`, else kept
/// as it is: a reused file whose bytes are stale), removes stale index files, syncs the
/// directory.
pub(super) async fn create_segment_files<D: Disk>(
    disk: &D,
    dir: &Path,
    base_offset: u64,
    fresh: bool,
) -> Result<(Rc<Segment<D::File>>, IndexFiles<D::File>), StorageError> {
    let log_path = dir.join(file_name(base_offset, "log"));
    let log = Rc::new(disk.open(&log_path, fresh).await?);
    if fresh {
        log.truncate(0).await?;
    }
    // Index files are created on their first entries (they are hints: recovery rebuilds
    // them when missing).
    for ext in ["index", "timeindex"] {
        match disk.remove(&dir.join(file_name(base_offset, ext))).await {
            Ok(()) | Err(IoError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    disk.sync_dir(dir).await?;
    let seg = Rc::new(Segment::new(base_offset, log, log_path, 0, base_offset));
    let files = IndexFiles {
        offsets: LazyAppender::new(dir.join(file_name(base_offset, "index")), FileUse::Kept),
        times: LazyAppender::new(dir.join(file_name(base_offset, "timeindex")), FileUse::Kept),
        offsets_persisted: 0,
        times_persisted: 0,
    };
    Ok((seg, files))
}

impl<D: Disk> Writer<D> {
    /// In a reused file whose data ends on a page boundary after a plain write: a zeroed
    /// page after the data, so recovery finds a clean end even before the trim.
    pub(super) async fn mark_end(&mut self) -> Result<(), StorageError> {
        if self.stale_end <= self.submitted || self.end_marked || !self.tail.is_empty() {
            return Ok(()); // no stale bytes, already marked, or the tail write carried a mark
        }
        let mut buf = self.seg.log().alloc_write_buf(DISK_ALIGN);
        buf.as_mut().fill(0);
        let end = self.submitted + DISK_ALIGN as u64;
        let zeroing = self.zero.before_write(self.submitted, end).await;
        self.count_zero(zeroing);
        self.seg.log().write_at(buf, self.submitted).await?;
        self.end_marked = true;
        Ok(())
    }

    /// A roll could not make the segment at `base_offset`, and appends go on in the current
    /// one: a `.log` a failed attempt left under that name (created, or a spare renamed
    /// there) must go, durably, or recovery would end the current segment where it starts
    /// and drop the batches written past that offset. If it cannot be removed the log is
    /// fenced.
    async fn unmake_segment(&self, base_offset: u64) {
        let path = self.sh.dir.join(file_name(base_offset, "log"));
        let removed = match self.sh.disk.remove(&path).await {
            Ok(()) | Err(IoError::NotFound { .. }) => self.sh.disk.sync_dir(&self.sh.dir).await,
            Err(e) => Err(e),
        };
        if let Err(e) = removed {
            warn!(path = %path.display(), error = %e, "cannot remove a segment a failed roll left");
            self.sh.fence(e);
        }
    }

    pub(super) async fn roll(&mut self, base_offset: u64) -> Result<(), StorageError> {
        self.drain().await?;
        self.mark_end().await?;
        // Nothing may still write into the old file when its seal trims it.
        let zeroing = self.zero.finish().await;
        self.count_zero(zeroing);
        // Only the old segment's data sync stands between the roll and new appends; its
        // index files and trim finish in the background.
        sync_sealed(&self.sh, &self.seg).await?;
        let dsync = self.seg.dsync.borrow_mut().take();
        if let Some((f, _slot)) = dsync {
            let _ = f.close().await;
        }
        self.sh.index_idle().await;
        let mut old_files = self.sh.active_index.borrow_mut().take();
        let (old, allocated) = (self.seg.clone(), self.allocated);
        // The new segment's `.log` takes the partition's reservation; the old one stays open
        // for its background seal under a slot of its own. Without one the seal finishes
        // here, and the old `.log` closes as soon as the new one is open (until then under a
        // brief slot if there is one: a moment's overlap, and the old file stays usable if
        // the new one cannot be made). Slots are held here until the new segment exists, so
        // a failed roll leaves none behind.
        let seal_slot = self.sh.file_slot(FileUse::Kept);
        let mut _overlap = None;
        if seal_slot.is_none() {
            while let Some(t) = self.sealing.pop_front() {
                let _ = t.await;
            }
            let _ = finish_seal(&self.sh, &old, old_files.take(), allocated).await;
            _overlap = self.sh.file_slot(FileUse::Brief);
        }
        let recycled = match self.sh.take_spare() {
            Some(spare) => recycle_segment(&self.sh, spare, base_offset)
                .await
                .map_err(
                    |e| warn!(error = %e, "cannot reuse a deleted segment; creating a new one"),
                )
                .ok(),
            None => None,
        };
        let (seg, files, reused_bytes) = match recycled {
            Some(r) => r,
            None => match create_segment(&self.sh.disk, &self.sh.dir, base_offset).await {
                Ok((seg, files)) => (seg, files, 0),
                Err(e) => {
                    self.unmake_segment(base_offset).await;
                    return Err(e);
                }
            },
        };
        info!(segment = %seg.log_path.display(), reused_bytes, "rolled to a new segment");
        // Marked before the new segment makes it deletable by retention.
        old.sealing.set(seal_slot.is_some());
        self.sh.segments.borrow_mut().push(seg.clone());
        *self.sh.active_index.borrow_mut() = Some(files);
        self.zero = new_zero_ahead(&self.sh, &seg, align_up(reused_bytes), 0);
        self.seg = seg;
        self.submitted = 0;
        self.reaped = 0;
        self.tail = Vec::new();
        self.tail_dirty = false;
        self.allocated = reused_bytes;
        self.stale_end = reused_bytes;
        self.end_marked = false;
        let Some(seal_slot) = seal_slot else {
            if let Some(f) = old.close_file() {
                let _ = f.close().await;
            }
            return Ok(());
        };
        old.keep_file_with(seal_slot);
        while self.sealing.len() >= SEALING_MAX {
            let _ = self.sealing.pop_front().expect("nonempty").await;
        }
        let sh = self.sh.clone();
        self.sealing.push_back(
            glommio::spawn_local(async move {
                let done = finish_seal(&sh, &old, old_files, allocated).await;
                // Sealed: its descriptor goes; readers reopen it on demand.
                if let Some(f) = old.close_file() {
                    let _ = f.close().await;
                }
                old.sealing.set(false);
                sh.sealed_signal.advance(sh.sealed_signal.get() + 1);
                done
            })
            .detach(),
        );
        Ok(())
    }
}

/// Makes a segment complete on disk: its data synced, then the final index entries
/// (synced), then the preallocated space trimmed.
pub(super) async fn seal<D: Disk>(
    sh: &Rc<LogCore<D>>,
    seg: &Rc<Segment<D::File>>,
    allocated: u64,
) -> Result<(), StorageError> {
    sync_sealed(sh, seg).await?;
    sh.index_idle().await;
    let files = sh.active_index.borrow_mut().take();
    finish_seal(sh, seg, files, allocated).await
}

/// The part of sealing later appends wait for: the segment's data synced (the syncer only
/// syncs the active segment) and its final time index entry.
pub(super) async fn sync_sealed<D: Disk>(
    sh: &Rc<LogCore<D>>,
    seg: &Rc<Segment<D::File>>,
) -> Result<(), StorageError> {
    sh.sync_segment(seg).await?;
    sh.bump_stats(|s| s.syncs += 1);
    seg.synced_to(seg.size_bytes.get());
    sh.mark_durable(seg.next_offset.get());
    sh.segments_synced(seg.next_offset.get());
    if seg.size_bytes.get() > 0 {
        let rel = u32::try_from(seg.next_offset.get() - 1 - seg.base_offset).unwrap_or(u32::MAX);
        seg.time_index.borrow_mut().push(seg.max_timestamp_ms.get(), rel);
    }
    Ok(())
}

/// The rest, which at a roll runs in the background: the index files completed and synced
/// (they are hints), the space past the data trimmed (its end is already marked).
pub(super) async fn finish_seal<D: Disk>(
    sh: &Rc<LogCore<D>>,
    seg: &Rc<Segment<D::File>>,
    files: Option<IndexFiles<D::File>>,
    allocated: u64,
) -> Result<(), StorageError> {
    if let Some(mut files) = files {
        sh.write_index_entries(seg, &mut files, true).await;
        // A closed segment keeps both files, even empty, so a restart trusts them instead of
        // rescanning the segment.
        for f in [&mut files.offsets, &mut files.times] {
            if let Err(e) = f.open_empty(&sh.disk, &sh.files).await {
                warn!(path = %f.path.display(), error = %e, "cannot create index file");
            }
        }
        for f in [&files.offsets, &files.times] {
            if let Err(e) = f.fdatasync().await {
                warn!(error = %e, "cannot sync index file");
            }
        }
    }
    if allocated > seg.size_bytes.get() {
        if let Err(e) = seg.log().truncate(seg.size_bytes.get()).await {
            warn!(segment = %seg.log_path.display(), error = %e, "cannot trim preallocated space");
        } else {
            sh.sync_segment(seg).await?;
        }
    }
    Ok(())
}

/// On close: seal the active segment, answer every waiter, close files.
pub(super) async fn seal_on_close<D: Disk>(
    sh: &Rc<LogCore<D>>,
    active: &Rc<Segment<D::File>>,
    allocated: u64,
) {
    if sh.queue.borrow().fenced.is_none() {
        if let Err(e) = seal(sh, active, allocated).await {
            warn!(error = %e, "final sync on close failed");
        }
    }
    sh.syncer_signal.advance(sh.syncer_signal.get() + 1);
    let segments: Vec<_> = sh.segments.borrow().clone();
    for seg in segments {
        let dsync = seg.dsync.borrow_mut().take();
        if let Some((f, _slot)) = dsync {
            let _ = f.close().await;
        }
        if let Some(f) = seg.close_file() {
            let _ = f.close().await;
        }
    }
}
