//! Retention and record deletion: old segments leave the log, and the deleter frees their
//! space.
//!
//! Contract: retention ([`PartitionLog::apply_retention`]) and record deletion
//! ([`PartitionLog::delete_records_before`], Kafka's DeleteRecords) remove whole closed
//! segments (never the active one, never one a roll is still sealing) from the log at once,
//! so readers no longer find them; both go through one path, which renames each `.log` to
//! `.log.deleted` and syncs the directory before it returns and before any truncation, so a
//! crash never leaves a shortened segment under its real name. Record deletion first
//! persists the new log start offset (`log_start_checkpoint.rs`, synced), then
//! moves it forward (reads below it get OFFSET_OUT_OF_RANGE); records between the first kept
//! segment's base and that offset stay on disk, and a restart starts the log at the
//! checkpoint, never earlier (nor past the recovered end). The deleter task then waits until
//! no reader holds the segment and frees its space in paced truncation steps before
//! unlinking it (`LogConfig::delete_chunk_bytes`; at once when the storage budget has no
//! descriptor for the truncation); `.deleted` files found at open are
//! finished the same way. With `segment_recycle` one deleted segment at a time is kept
//! instead (`.log.spare`, kept across restarts) for the next roll (`roll.rs`).

use std::path::{Path, PathBuf};
use std::rc::Rc;

use tracing::{debug, info, warn};

use super::core::LogCore;
use super::PartitionLog;
use crate::descriptors::FileUse;
use crate::storage::deleter::{free_file, DeletePace};
use crate::storage::error::{IoError, StorageError};
use crate::storage::io::{Disk, DiskFile};
use crate::storage::segment::{file_name, Segment};

/// A file on its way out: renamed to `*.deleted`; its segment (if still loaded) tells the
/// deleter when readers are done with it.
pub(super) struct Doomed<F: DiskFile> {
    pub(super) path: PathBuf,
    pub(super) segment: Option<Rc<Segment<F>>>,
}

impl<D: Disk> PartitionLog<D> {
    /// Deletes whole closed segments beyond the retention size or older than the retention
    /// time; never the active one. Returns how many were deleted. Readers holding a deleted
    /// segment finish their read on the still-open file.
    pub async fn apply_retention(&self, now_ms: i64) -> Result<usize, StorageError> {
        let live = &self.shared.live;
        let (retention_bytes, retention_ms) = (live.retention_bytes(), live.retention_ms());
        let log_start = &self.shared.log_start_offset;
        self.drop_oldest_segments("retention", |segs| {
            let first = &segs[0];
            // Wholly below the start record deletion set (it was the active segment then, or
            // a crash came between the start's checkpoint and the segments' renames).
            if first.next_offset.get() <= log_start.get() {
                return true;
            }
            let total: u64 = segs.iter().map(|s| s.size_bytes.get()).sum();
            let by_size =
                retention_bytes >= 0 && total - first.size_bytes.get() >= retention_bytes as u64;
            let by_time = retention_ms >= 0
                && first.max_timestamp_ms.get() < now_ms.saturating_sub(retention_ms);
            by_size || by_time
        })
        .await
    }

    /// Moves the log start offset forward to `offset` (no change if it is already there or
    /// beyond) and deletes the closed segments that lie entirely below it; never the active
    /// one. Reads below the new start fail with `OffsetOutOfRange` at once. Once this returns
    /// `Ok`, the start holds across a crash (its checkpoint is synced first; a failure to
    /// write it fails the call and changes nothing) and the segments it deleted are out of
    /// the log for good (their renames are synced; segments it could not take out, and the
    /// active one once it rolls, go at retention's next pass); records of the first kept
    /// segment below `offset` stay on disk, unread. Returns how many segments were deleted. `offset` past
    /// the high watermark is refused: only records readers can see may be deleted.
    pub async fn delete_records_before(&self, offset: u64) -> Result<usize, StorageError> {
        let sh = &self.shared;
        let high_watermark = sh.visible.get();
        if offset > high_watermark {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: sh.log_start_offset.get(),
                high_watermark,
            });
        }
        if offset > sh.log_start_offset.get() {
            sh.persist_log_start(offset).await?;
        }
        if offset > sh.log_start_offset.get() {
            sh.log_start_offset.set(offset);
        }
        // The deletion holds from here (its start is persisted): a failure to take the
        // segments out only leaves them for retention's next pass, which drops every segment
        // wholly below the start.
        let deleted = match self
            .drop_oldest_segments("record deletion", |segs| segs[0].next_offset.get() <= offset)
            .await
        {
            Ok(deleted) => deleted,
            Err(e) => {
                warn!(dir = %sh.dir.display(), offset, error = %e, "record deletion: segments below the start stay until retention's next pass");
                0
            }
        };
        let start = sh.log_start_offset.get();
        let first_base_offset = sh.segments.borrow()[0].base_offset;
        assert!(
            first_base_offset <= start && offset <= start,
            "{}: log start {start} after deleting before {offset}, first segment at {first_base_offset}",
            sh.dir.display()
        );
        Ok(deleted)
    }

    /// Takes the oldest closed segment out of the log while `take_first(segments)` says so (it
    /// sees at least two segments: the active one is never taken), renames its files out of
    /// the way and syncs the directory before returning; the deleter frees them later.
    async fn drop_oldest_segments(
        &self,
        why: &'static str,
        mut take_first: impl FnMut(&[Rc<Segment<D::File>>]) -> bool,
    ) -> Result<usize, StorageError> {
        let sh = &self.shared;
        let _maintenance = sh.maintenance.acquire_permit(1).await;
        // Segments a compaction merge could not take out are still on disk under their
        // names: the merged segment covering them (and what follows) must stay until they
        // are gone, or a restart would find them again as the log's first segments (records
        // deleted here back, a gap after them). Their renames are tried again first.
        let held_from = match self.take_out_left_merged().await {
            true => None,
            false => sh.left_merged.borrow().first().map(|s| s.base_offset),
        };
        let mut deleted = 0;
        let mut renamed = Vec::new();
        loop {
            // A segment a roll is still sealing in the background is deleted once the seal
            // ends (it creates the segment's index files; see `Segment::sealing`).
            loop {
                let seen = sh.sealed_signal.get();
                let sealing = sh.segments.borrow().first().is_some_and(|s| s.sealing.get());
                if !sealing || !sh.sealed_signal.wait_for(seen + 1).await {
                    break;
                }
            }
            if sh.queue.borrow().closing {
                break;
            }
            let victim = {
                let segs = sh.segments.borrow();
                if segs.len() <= 1 {
                    break;
                }
                if !take_first(&segs) {
                    break;
                }
                if held_from.is_some_and(|from| segs[0].next_offset.get() > from) {
                    break;
                }
                segs[0].clone()
            };
            {
                let mut segs = sh.segments.borrow_mut();
                segs.remove(0);
                // Record deletion may have moved the start past the new first segment's base.
                sh.log_start_offset.set(sh.log_start_offset.get().max(segs[0].base_offset));
            }
            info!(segment = %victim.log_path.display(), next_offset = victim.next_offset.get(), "{why} deleted segment");
            let victim_bytes = victim.size_bytes.get();
            sh.bump_stats(|s| {
                s.segments_deleted += 1;
                s.bytes_deleted += victim_bytes;
            });
            for ext in ["index", "timeindex"] {
                let path = sh.dir.join(file_name(victim.base_offset, ext));
                match sh.disk.remove(&path).await {
                    Ok(()) | Err(IoError::NotFound { .. }) => {}
                    Err(e) => {
                        warn!(path = %path.display(), error = %e, "cannot remove segment file")
                    }
                }
            }
            // A full segment is worth keeping for the next roll.
            let keep = sh.config.segment_recycle
                && sh.spare.borrow().is_none()
                && !renamed.iter().any(|(_, spare)| *spare)
                && victim.size_bytes.get() >= sh.live.segment_bytes_max() / 2;
            let doomed =
                suffixed(&victim.log_path, if keep { SPARE_SUFFIX } else { DELETED_SUFFIX });
            match victim.rename(&sh.disk, doomed.clone()).await {
                Ok(()) => renamed.push((Doomed { path: doomed, segment: Some(victim) }, keep)),
                Err(IoError::NotFound { .. }) => {}
                Err(e) => {
                    warn!(path = %victim.log_path.display(), error = %e, "cannot remove segment file")
                }
            }
            deleted += 1;
        }
        if deleted > 0 {
            // The renames must be durable before any truncation: a crash must never leave a
            // shortened segment under its real name.
            sh.disk.sync_dir(&sh.dir).await?;
            for (doomed, keep) in renamed {
                if keep {
                    *sh.spare.borrow_mut() = Some(doomed);
                } else {
                    sh.deleting.borrow_mut().push_back(doomed);
                }
            }
            sh.deleter_signal.advance(sh.deleter_signal.get() + 1);
        }
        Ok(deleted)
    }
}

impl<D: Disk> LogCore<D> {
    /// Makes `offset` the log start a restart finds (`log_start_checkpoint.rs`), durably, unless the
    /// checkpoint already holds it or a later one. One write at a time.
    async fn persist_log_start(&self, offset: u64) -> Result<(), StorageError> {
        let _writing = self.log_start_writing.acquire_permit(1).await;
        // After `close` its directory may move (a deleted topic's goes to the trash, and one
        // created again under the same name takes its place): nothing may be written there.
        if self.queue.borrow().closing {
            return Err(StorageError::Closed);
        }
        if offset <= self.log_start_checkpoint.offset() {
            return Ok(());
        }
        self.log_start_checkpoint.write(&self.disk, &self.files, &self.dir, offset).await?;
        Ok(())
    }

    /// At open: the log starts where record deletion's checkpoint says, `asked`, but not
    /// before its first segment nor past its end (records a crash took back: see
    /// `log_start_checkpoint.rs`). A checkpoint past the end is replaced by the end first,
    /// or the offsets the next appends take would be deleted at the next restart.
    pub(super) async fn start_at_checkpoint(&self, asked: u64) -> Result<(), StorageError> {
        let end = self.visible.get();
        if asked > end {
            warn!(dir = %self.dir.display(), asked, end, "log start checkpoint past the recovered end: the log starts at its end");
            let _writing = self.log_start_writing.acquire_permit(1).await;
            self.log_start_checkpoint.write(&self.disk, &self.files, &self.dir, end).await?;
        }
        let start = asked.min(end).max(self.log_start_offset.get());
        self.log_start_offset.set(start);
        Ok(())
    }

    /// The kept deleted segment, if no reader holds it any more.
    pub(super) fn take_spare(&self) -> Option<Doomed<D::File>> {
        let mut spare = self.spare.borrow_mut();
        let free = spare
            .as_ref()
            .is_some_and(|s| s.segment.as_ref().is_none_or(|seg| Rc::strong_count(seg) == 1));
        if free {
            spare.take()
        } else {
            None
        }
    }
}

/// Suffix of a segment file retention took out of the log.
pub(super) const DELETED_SUFFIX: &str = ".deleted";
/// Suffix of a deleted segment kept for reuse (`segment_recycle`).
pub(super) const SPARE_SUFFIX: &str = ".spare";

pub(super) fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The deleter task: frees the space of files retention took out of the log, in paced
/// truncation steps, once no reader holds them. Stops (leaving the rest for the next open)
/// when the log closes.
pub(super) async fn deleter_loop<D: Disk>(sh: Rc<LogCore<D>>) {
    loop {
        let seen = sh.deleter_signal.get();
        if sh.queue.borrow().closing {
            return;
        }
        let next = sh.deleting.borrow_mut().pop_front();
        let Some(doomed) = next else {
            sh.deleter_signal.wait_for(seen + 1).await;
            continue;
        };
        if let Some(seg) = doomed.segment {
            // Readers that found the segment before retention finish on the open file.
            while Rc::strong_count(&seg) > 1 && !sh.queue.borrow().closing {
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
        let stop = || sh.queue.borrow().closing;
        // Paced truncation holds the file open: without a slot of the storage budget it is
        // unlinked at once instead.
        let slot = sh.file_slot(FileUse::Kept);
        let pace = match slot {
            Some(_) => sh.config.delete_pace(),
            None => DeletePace { chunk_bytes: 0, ..sh.config.delete_pace() },
        };
        match free_file(&sh.disk, &doomed.path, pace, &stop).await {
            Ok(true) => debug!(path = %doomed.path.display(), "deleted segment file removed"),
            Ok(false) => return, // the rest goes at the next open
            Err(e) => {
                warn!(path = %doomed.path.display(), error = %e, "cannot free deleted segment")
            }
        }
    }
}
