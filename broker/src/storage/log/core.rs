//! What a log's handle and its tasks share: the segment list, the watermarks, the append
//! queue and its acks, the fence.
//!
//! # Contract
//! - Offsets: `durable_offset <= written <= next_offset` (the queue's next offset; with the
//!   journal `durable_offset` may pass `written`, see below); readers see up to `visible`,
//!   which is `durable_offset` (or `written` with `read_unsynced`).
//! - A failed write fails that write's appends and every queued append, and rolls the next
//!   offset back to the written end: nothing acked is affected and later appends work (disk
//!   full is recoverable).
//! - A failed fdatasync fences the log ([`LogCore::fence`]): the state of unsynced data is
//!   unknown, so appends are refused and nothing more becomes durable or visible until the
//!   log is reopened (reads keep working).
//! - With the shard journal (`journal`): an append is durable (`written` and `durable` acks
//!   answered, readers see it) once its journal record completed
//!   ([`LogCore::journal_progress`]), before its segment write, which the writer defers
//!   (`journal_segment_write_delay_ms`); until that write is reaped readers get it from
//!   `unwritten`, so `durable_offset` may run ahead of `written` (never past the queue's
//!   next offset). Segments are synced when a journal checkpoint asks (the writer writes
//!   what it asks for first), at a roll and at close ([`LogCore::segments_synced`]). A
//!   failed journal write fences the log like a failed sync, and so does a failed segment
//!   write (its entries may already be journaled, so its offsets must not be reused) —
//!   except for lack of space: then the appends stay queued (journaled, acked, readable from
//!   `unwritten`) and their segment write is tried again after a pause, while new appends
//!   are refused with `DISK_FULL` ([`LogCore::stall_for_space`]); the first write that
//!   succeeds lets appends in again.
//! - Every sync of a segment goes through [`LogCore::sync_segment`] (its sync gate): a sync is
//!   trusted only after every sync of that file begun meanwhile ended, with none failed since
//!   open (`sync_gate.rs`).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::rc::{Rc, Weak};
use std::sync::Arc;

use futures_channel::oneshot;
use glommio::task::JoinHandle;
use tracing::{info, warn};
use wire::AckLevel;

use super::index_files::IndexFiles;
use super::retention::Doomed;
use super::unwritten::Unwritten;
use crate::descriptors::{FileSlot, StorageFiles};
use crate::storage::bytes::ByteView;
use crate::storage::cache::PartitionCache;
use crate::storage::config::LogConfig;
use crate::storage::error::{IoError, StorageError};
use crate::storage::filesystem_sync::FilesystemSync;
use crate::storage::io::Disk;
use crate::storage::journal::JournalLink;
use crate::storage::segment::{ReadFile, Segment};
use crate::watermark::Watermark;

pub(super) type Ack = oneshot::Sender<Result<(), StorageError>>;

/// Counters of one log.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogStats {
    /// Trusted fdatasyncs of segment files by the syncer and seals (not zero-ahead's, a
    /// seal's trim or recovery's).
    pub syncs: u64,
    /// Write I/Os issued for batches.
    pub writes: u64,
    /// Batch bytes written.
    pub bytes_written: u64,
    /// Rolls that reused a deleted segment's file.
    pub segments_recycled: u64,
    /// Writes through the O_DSYNC descriptor (durable without an fdatasync).
    pub dsync_writes: u64,
    /// Zeros written past the data by zero-ahead.
    pub zeroed_bytes: u64,
    /// fdatasync calls by zero-ahead, one per burst (not counted in `syncs`).
    pub zero_syncs: u64,
    /// Data writes that waited for a zero-ahead write over the same pages.
    pub zero_waits: u64,
    /// Time in successful `sync_segment` fdatasyncs, microseconds (the metrics endpoint).
    pub sync_us: u64,
    /// Batch write I/Os by size (page-padded, with the re-written partial tail page): the
    /// count per bucket of [`WRITE_SIZE_BUCKETS_BYTES`] (at or
    /// below the bound), the last one past every bound.
    pub write_sizes: [u64; WRITE_SIZE_BUCKETS_BYTES.len() + 1],
    /// Bytes of those write I/Os (the histogram's sum).
    pub write_io_bytes: u64,
    /// Reads served from the shard's batch cache (no disk I/O).
    pub cache_reads: u64,
    /// Reads that went to a segment file (they may still hit the page cache's read-ahead).
    pub disk_reads: u64,
    /// With the journal: segment writes that failed for lack of space and were kept to be
    /// tried again (`LogCore::stall_for_space`).
    pub space_waits: u64,
    /// Segments deleted by retention (size or time) or record deletion.
    pub segments_deleted: u64,
    /// Bytes of those segments.
    pub bytes_deleted: u64,
}

/// Upper bounds of the write-size buckets of [`LogStats::write_sizes`], bytes: one page up
/// to the largest write the writer makes by default (`write_bytes_max`, 1 MiB) and beyond.
pub const WRITE_SIZE_BUCKETS_BYTES: [u64; 9] =
    [4_096, 8_192, 16_384, 32_768, 65_536, 131_072, 262_144, 524_288, 1_048_576];

impl LogStats {
    /// Counts one batch write I/O of `bytes`.
    pub fn count_write_size(&mut self, bytes: u64) {
        let i = WRITE_SIZE_BUCKETS_BYTES.partition_point(|&bound| bound < bytes);
        self.write_sizes[i] += 1;
        self.write_io_bytes += bytes;
    }

    /// Adds another log's counts (a shard's totals keep a removed log's).
    pub fn add(&mut self, o: &LogStats) {
        self.syncs = self.syncs.wrapping_add(o.syncs);
        self.writes = self.writes.wrapping_add(o.writes);
        self.bytes_written = self.bytes_written.wrapping_add(o.bytes_written);
        self.segments_recycled = self.segments_recycled.wrapping_add(o.segments_recycled);
        self.dsync_writes = self.dsync_writes.wrapping_add(o.dsync_writes);
        self.zeroed_bytes = self.zeroed_bytes.wrapping_add(o.zeroed_bytes);
        self.zero_syncs = self.zero_syncs.wrapping_add(o.zero_syncs);
        self.zero_waits = self.zero_waits.wrapping_add(o.zero_waits);
        self.sync_us = self.sync_us.wrapping_add(o.sync_us);
        for (a, b) in self.write_sizes.iter_mut().zip(o.write_sizes) {
            *a = a.wrapping_add(b);
        }
        self.write_io_bytes = self.write_io_bytes.wrapping_add(o.write_io_bytes);
        self.cache_reads = self.cache_reads.wrapping_add(o.cache_reads);
        self.disk_reads = self.disk_reads.wrapping_add(o.disk_reads);
        self.space_waits = self.space_waits.wrapping_add(o.space_waits);
        self.segments_deleted = self.segments_deleted.wrapping_add(o.segments_deleted);
        self.bytes_deleted = self.bytes_deleted.wrapping_add(o.bytes_deleted);
    }
}

/// Sealed segments of one log whose reopened `.log` may stay open at once.
pub(super) const REOPENED_FILES_MAX: usize = 4;

/// The state a log's handle and its tasks share (see the module docs).
pub(super) struct LogCore<D: Disk> {
    /// Its tie to the shard journal (`shard_journal`): appends are durable once written and
    /// journaled, and segments are synced lazily, when a journal checkpoint asks.
    pub(super) journal: Option<JournalLink<D>>,
    /// With the journal, where its checkpoints sync the data filesystem and this log's
    /// directory is on it: what the syncer syncs with ([`LogCore::sync_segment_by_filesystem`]).
    pub(super) fs_sync: Option<FilesystemSync<D>>,
    pub(super) disk: D,
    /// The broker's storage descriptor budget (see the module docs of `log/mod.rs`).
    pub(super) files: Arc<StorageFiles>,
    pub(super) dir: PathBuf,
    /// Fixed when the log opens, but for what `live` holds (read those there).
    pub(super) config: LogConfig,
    /// The settings its topic may change while it is open.
    pub(super) live: super::live_config::LiveConfig,
    pub(super) segments: RefCell<Vec<Rc<Segment<D::File>>>>,
    /// End of the written data (the next append's offset once the queue drains).
    pub(super) written: Watermark,
    /// End of what readers see: `durable_offset`, or `written` with `read_unsynced`.
    pub(super) visible: Watermark,
    pub(super) durable_offset: Cell<u64>,
    pub(super) log_start_offset: Cell<u64>,
    /// Record deletion's log start on disk (`log_start_checkpoint.rs`).
    pub(super) log_start_checkpoint: super::log_start_checkpoint::LogStartCheckpoint,
    /// Held while the log start checkpoint is written (one write at a time).
    pub(super) log_start_writing: glommio::sync::Semaphore,
    pub(super) queue: RefCell<AppendQueue>,
    pub(super) writer_signal: Watermark,
    /// While the writer sleeps on a deferred segment write (journal only): the queued bytes
    /// that make the write due at once. An append below them, or journal progress that
    /// wants nothing synced, does not wake it (its timer does): without this every append
    /// and every journal cycle woke every deferring writer (~95k wake-ups a second at
    /// partitions-100, each computing the deferral and arming a timer again).
    pub(super) writer_deferred_bytes_due: Cell<Option<usize>>,
    pub(super) syncer_signal: Watermark,
    pub(super) space_signal: Watermark,
    pub(super) cache: PartitionCache,
    /// With the journal: the batches past `written` (see `unwritten.rs`).
    pub(super) unwritten: Unwritten,
    pub(super) stats: Cell<LogStats>,
    /// Index files of the active segment, with how many entries each holds.
    pub(super) active_index: RefCell<Option<IndexFiles<D::File>>>,
    /// Files retention took out of the log, waiting for the deleter task.
    pub(super) deleting: RefCell<VecDeque<Doomed<D::File>>>,
    /// Sealed segments whose `.log` a reader reopened, oldest first (see `read_file`).
    pub(super) reopened: RefCell<VecDeque<Weak<Segment<D::File>>>>,
    /// A deleted segment kept for the next roll (`segment_recycle`).
    pub(super) spare: RefCell<Option<Doomed<D::File>>>,
    /// The background run persisting index entries (one at a time; see `persist_index_soon`).
    pub(super) index_task: RefCell<Option<JoinHandle<()>>>,
    pub(super) index_busy: Cell<bool>,
    pub(super) index_done: Watermark,
    pub(super) deleter_signal: Watermark,
    /// Advanced whenever a roll's background seal ends (retention waits on it).
    pub(super) sealed_signal: Watermark,
    /// Compaction: every offset below this was in a completed cleaner pass's key map
    /// (`cleaner.rs`; persisted by `cleaner_checkpoint.rs`).
    pub(super) cleaned_to: Cell<u64>,
    /// The merged segments still on disk under their `.log` names, oldest first: out of the
    /// segment list, to be renamed to `.deleted` before the next pass. While there are any
    /// ([`LogCore::checkpoint_void`]) a restart finds them again as they were before that
    /// pass, so no later pass may run (nor write a checkpoint).
    pub(super) left_merged: RefCell<Vec<Rc<Segment<D::File>>>>,
    /// Held by whatever takes closed segments out of the list or puts others in their place
    /// (retention, record deletion, the cleaner's swap): one at a time.
    pub(super) maintenance: glommio::sync::Semaphore,
    /// Held by a compaction pass while it runs: `close` waits for it, so no pass touches the
    /// log's files once its directory may move (a deleted topic goes to the trash).
    pub(super) pass: glommio::sync::Semaphore,
    /// What the cleaner did so far.
    pub(super) cleaner: Cell<super::cleaner::CleanerStats>,
    /// Expired tombstones the cleaner took out of the log since the last
    /// [`super::PartitionLog::take_removed_tombstones`] (their keys are gone from it).
    pub(super) removed_tombstones: std::cell::RefCell<super::cleaner::RemovedTombstones>,
    /// Set from the removal of the key index's snapshot before a swap that drops
    /// tombstones until they are noted in `removed_tombstones` (or the swap failed).
    pub(super) dropping_tombstones: Cell<bool>,
}

/// Appends assigned offsets and not yet written, and the acks waiting for a sync.
pub(super) struct AppendQueue {
    pub(super) next_offset: u64,
    pub(super) pending: VecDeque<Pending>,
    pub(super) pending_bytes: usize,
    pub(super) durable_waiters: VecDeque<(u64, Ack)>,
    pub(super) fenced: Option<String>,
    /// With the journal: segment writes wait for space (see [`LogCore::stall_for_space`]);
    /// new appends are refused with this error until a write succeeds.
    pub(super) no_space: Option<IoError>,
    pub(super) closing: bool,
    /// How many times appends failed and the end rolled back (or the log was fenced): what
    /// was derived from appends as they were enqueued (a key index) may name offsets that
    /// were never stored.
    pub(super) rollbacks: u64,
}

/// One queued append: its stored bytes (offsets assigned) and its ack.
pub(super) struct Pending {
    pub(super) base_offset: u64,
    pub(super) next_offset: u64,
    pub(super) max_timestamp_ms: i64,
    pub(super) append_ms: i64,
    pub(super) bytes: ByteView,
    pub(super) ack: AckLevel,
    pub(super) tx: Option<Ack>,
    /// When it was enqueued (for `stage_latency`).
    pub(super) enqueued: std::time::Instant,
}

impl<D: Disk> LogCore<D> {
    /// A merged segment's `.log` could not be taken out yet (`left_merged`): no compaction
    /// pass or checkpoint until it is (or the log reopens).
    pub(super) fn checkpoint_void(&self) -> bool {
        !self.left_merged.borrow().is_empty()
    }

    /// The file to read `seg` from. A sealed segment's `.log` is reopened on demand and
    /// counts among the log's [`REOPENED_FILES_MAX`] most recently reopened; the oldest beyond
    /// that is closed (a reader still holding it finishes first), so a partition's descriptors
    /// do not grow with its segments. A reopened file kept open holds a [`FileUse::Kept`]
    /// slot of the storage budget; without one it is opened for this read only (a
    /// [`FileUse::Brief`] slot, held by the returned [`ReadFile`]), and without that the read
    /// fails with `TooManyFiles` (`RESOURCE_LIMIT`, retriable).
    ///
    /// [`FileUse::Kept`]: crate::descriptors::FileUse::Kept
    /// [`FileUse::Brief`]: crate::descriptors::FileUse::Brief
    pub(super) async fn read_file(
        &self,
        seg: &Rc<Segment<D::File>>,
    ) -> Result<ReadFile<D::File>, StorageError> {
        let read = seg.file_for_read(&self.disk, &self.files).await?;
        if read.reopened {
            let mut open = self.reopened.borrow_mut();
            open.retain(|s| s.strong_count() > 0);
            open.push_back(Rc::downgrade(seg));
            while open.len() > REOPENED_FILES_MAX {
                if let Some(old) = open.pop_front().and_then(|s| s.upgrade()) {
                    old.close_file();
                }
            }
        }
        Ok(read)
    }

    /// A slot in the storage budget for an optional file (`None`: go without).
    pub(super) fn file_slot(&self, use_: crate::descriptors::FileUse) -> Option<FileSlot> {
        self.files.take(use_)
    }

    pub(super) fn active(&self) -> Rc<Segment<D::File>> {
        self.segments.borrow().last().expect("a log has an active segment").clone()
    }

    pub(super) fn segment_for(&self, offset: u64) -> Option<Rc<Segment<D::File>>> {
        let segs = self.segments.borrow();
        let i = segs.partition_point(|s| s.base_offset <= offset);
        (i > 0).then(|| segs[i - 1].clone())
    }

    pub(super) fn segment_after(&self, base_offset: u64) -> Option<Rc<Segment<D::File>>> {
        self.segments.borrow().iter().find(|s| s.base_offset > base_offset).cloned()
    }

    pub(super) fn bump_stats(&self, f: impl FnOnce(&mut LogStats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
    }

    /// Takes queued appends for one write: at least one, at most `write_bytes_max` bytes.
    pub(super) fn take_pending(&self) -> Vec<Pending> {
        let mut st = self.queue.borrow_mut();
        let mut taken = Vec::new();
        let mut bytes = 0;
        while let Some(p) = st.pending.front() {
            if !taken.is_empty() && bytes + p.bytes.len() > self.config.write_bytes_max {
                break;
            }
            bytes += p.bytes.len();
            taken.push(st.pending.pop_front().expect("front exists"));
        }
        st.pending_bytes -= bytes;
        drop(st);
        if !taken.is_empty() {
            self.space_signal.advance(self.space_signal.get() + 1);
        }
        taken
    }

    /// Fails `items` and everything still queued, and rolls the next offset back to the
    /// written end so later appends continue densely.
    pub(super) fn fail_appends(&self, items: Vec<Pending>, error: &StorageError) {
        let queued: Vec<Pending> = {
            let mut st = self.queue.borrow_mut();
            st.pending_bytes = 0;
            st.next_offset = self.end_kept();
            st.rollbacks += 1;
            st.pending.drain(..).collect()
        };
        let n = items.len() + queued.len();
        for p in items.into_iter().chain(queued) {
            if let Some(tx) = p.tx {
                let _ = tx.send(Err(error.clone()));
            }
        }
        warn!(dir = %self.dir.display(), error = %error, appends = n, "append failed; next offset rolled back to {}", self.end_kept());
        self.space_signal.advance(self.space_signal.get() + 1);
    }

    /// With the journal, a segment write failed for lack of space: `items` (journaled, or
    /// about to be: acked or soon acked, so they cannot fail) go back to the head of the
    /// queue to be written again, and new appends are refused with `error` until a write
    /// succeeds ([`LogCore::space_returned`]). Bounded: nothing is added meanwhile.
    pub(super) fn stall_for_space(&self, items: Vec<Pending>, error: IoError) {
        let mut st = self.queue.borrow_mut();
        for p in items.into_iter().rev() {
            st.pending_bytes += p.bytes.len();
            st.pending.push_front(p);
        }
        if st.no_space.is_none() {
            warn!(dir = %self.dir.display(), error = %error, "segment write failed for lack of space: appends are refused (DISK_FULL) until it succeeds; journaled appends are kept and written when space returns");
        }
        st.no_space = Some(error);
        drop(st);
        self.bump_stats(|s| s.space_waits += 1);
        // Producers waiting for room go on to be refused.
        self.space_signal.advance(self.space_signal.get() + 1);
    }

    /// A segment write succeeded: appends are taken again.
    pub(super) fn space_returned(&self) {
        if self.queue.borrow_mut().no_space.take().is_some() {
            info!(dir = %self.dir.display(), "segment writes succeed again: appends are taken again");
        }
    }

    /// Why appends are refused for lack of space, if they are: this log's segment writes
    /// wait for space, or its shard journal cannot create a file.
    pub(super) fn no_space(&self) -> Option<IoError> {
        if let Some(e) = &self.queue.borrow().no_space {
            return Some(e.clone());
        }
        self.journal.as_ref().and_then(|j| j.no_space())
    }

    /// Where the next offset goes back to when queued appends fail: the written end, or with
    /// the journal the durable end if that is further (journaled appends are acked before
    /// their segment write and keep their offsets: the next start replays them).
    fn end_kept(&self) -> u64 {
        self.written.get().max(self.durable_offset.get())
    }

    pub(super) fn mark_durable(&self, offset: u64) {
        if self.queue.borrow().fenced.is_some() {
            // A sync failed (possibly a concurrent one on the same file, which consumed the
            // error): nothing more becomes durable or visible.
            return;
        }
        // With the journal a journaled append is durable before its segment write.
        let end = match self.journal {
            Some(_) => self.queue.borrow().next_offset,
            None => self.written.get(),
        };
        assert!(
            offset <= end,
            "{}: durable offset {offset} past the end {end}",
            self.dir.display()
        );
        if offset > self.durable_offset.get() {
            self.durable_offset.set(offset);
        }
        self.visible.advance(offset);
        let ready: Vec<Ack> = {
            let mut st = self.queue.borrow_mut();
            let mut ready = Vec::new();
            while st.durable_waiters.front().is_some_and(|(end, _)| *end <= offset) {
                ready.push(st.durable_waiters.pop_front().expect("front exists").1);
            }
            ready
        };
        for tx in ready {
            let _ = tx.send(Ok(()));
        }
    }

    /// Bytes of appends not yet written, and with the journal those not yet journaled
    /// (what [`PartitionLog::writable`](super::PartitionLog::writable) bounds).
    pub(super) fn queued_bytes(&self) -> usize {
        let journal = self.journal.as_ref().map_or(0, |j| j.member().queued_bytes());
        self.queue.borrow().pending_bytes + journal
    }

    /// With the journal: everything journaled is durable (in offset order: the journaled end
    /// only grows and covers every offset below it), written to its segment or not.
    /// With the shard journal: whether a checkpoint wants data synced that is not written
    /// yet (a deferred segment write is then due at once).
    pub(super) fn journal_wants_synced(&self) -> bool {
        self.journal.as_ref().is_some_and(|j| j.member().want_synced.get() > self.written.get())
    }

    pub(super) fn journal_progress(&self) {
        if let Some(j) = &self.journal {
            let end = j.member().journaled();
            if end > self.durable_offset.get() {
                self.mark_durable(end);
            }
        }
    }

    /// End of the data durable in the segment files themselves: the durable offset, or with
    /// the journal what segment syncs covered (an index entry past it could point beyond a
    /// hole a crash leaves in unsynced writes, and recovery trusts the indexed prefix).
    pub(super) fn segment_durable_offset(&self) -> u64 {
        match &self.journal {
            Some(j) => j.member().synced.get().min(self.durable_offset.get()),
            None => self.durable_offset.get(),
        }
    }

    /// The segment files are synced up to `offset` (journal entries below it can go).
    pub(super) fn segments_synced(&self, offset: u64) {
        if let Some(j) = &self.journal {
            if self.queue.borrow().fenced.is_none() {
                j.member().synced.advance(offset);
            }
        }
    }

    /// fdatasync of a segment's `.log`, trusted only once every sync of that file begun
    /// before it returned has ended and the log is not fenced: no sync since the log opened
    /// failed (see `sync_gate.rs`). A failure fences the log.
    pub(super) async fn sync_segment(&self, seg: &Segment<D::File>) -> Result<(), StorageError> {
        let started = std::time::Instant::now();
        let synced = async {
            seg.syncs.sync(seg.log()).await?;
            self.trust_file_sync().await
        }
        .await;
        self.sync_ended(started, synced)
    }

    /// After a segment sync that began at `started`: a failure fences the log; a success
    /// counts (and its time in the stats) only if the log is not fenced.
    fn sync_ended(
        &self,
        started: std::time::Instant,
        synced: Result<(), IoError>,
    ) -> Result<(), StorageError> {
        if let Err(e) = synced {
            self.fence(e.clone());
            return Err(e.into());
        }
        self.bump_stats(|s| s.sync_us += started.elapsed().as_micros() as u64);
        match self.queue.borrow().fenced.clone() {
            Some(reason) => Err(StorageError::Fenced(reason)),
            None => Ok(()),
        }
    }

    /// Whether a sync of one of this log's files that just succeeded can be trusted: with the
    /// filesystem sync, once every one begun before now ended, and if none failed (a failed
    /// flush may have lost what the file's sync covered, see `filesystem_sync.rs`).
    pub(super) async fn trust_file_sync(&self) -> Result<(), IoError> {
        if let Some(fs) = &self.fs_sync {
            fs.settle().await;
            if let Some(e) = fs.failed() {
                return Err(e);
            }
        }
        Ok(())
    }

    /// A sync of the whole data filesystem, shared with the other logs asking now
    /// (`filesystem_sync.rs`), instead of `seg`'s own fdatasync: trusted as in
    /// [`LogCore::sync_segment`] once every sync of `seg` begun before it returned ended and
    /// the log is not fenced. A failure fences the log.
    pub(super) async fn sync_segment_by_filesystem(
        &self,
        seg: &Segment<D::File>,
        fs: &FilesystemSync<D>,
    ) -> Result<(), StorageError> {
        let started = std::time::Instant::now();
        let synced = fs.sync().await;
        if synced.is_ok() {
            seg.syncs.settle().await;
        }
        self.sync_ended(started, synced)
    }

    pub(super) fn fence(&self, error: IoError) {
        let reason = error.to_string();
        warn!(dir = %self.dir.display(), error = %reason, "storage failed; log fenced until reopened");
        let (waiters, queued): (Vec<_>, Vec<_>) = {
            let mut st = self.queue.borrow_mut();
            st.fenced = Some(reason.clone());
            st.pending_bytes = 0;
            st.next_offset = self.end_kept();
            st.rollbacks += 1;
            (st.durable_waiters.drain(..).collect(), st.pending.drain(..).collect())
        };
        if let Some(j) = &self.journal {
            // Its segments cannot be trusted past what is synced: journal files holding its
            // entries stay for the next start's replay.
            j.member().synced.close();
        }
        self.space_signal.advance(self.space_signal.get() + 1);
        let err = StorageError::Fenced(reason);
        for (_, tx) in waiters {
            let _ = tx.send(Err(err.clone()));
        }
        for p in queued {
            if let Some(tx) = p.tx {
                let _ = tx.send(Err(err.clone()));
            }
        }
    }

    pub(super) fn needs_roll(&self, seg: &SegView, item: &Pending) -> bool {
        let size = seg.size;
        if size == 0 {
            return false;
        }
        let by_size = size + item.bytes.len() as u64 > self.live.segment_bytes_max();
        let first = seg.first_append_ms;
        let segment_ms = self.live.segment_ms();
        let by_age = segment_ms > 0
            && first != i64::MAX
            && item.append_ms.saturating_sub(first) >= segment_ms;
        by_size || by_age
    }
}

/// What a roll decision needs to know about the active segment.
pub(super) struct SegView {
    pub(super) size: u64,
    pub(super) first_append_ms: i64,
}
