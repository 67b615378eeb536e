//! The writer task: the one task that writes the active segment.
//!
//! # Contract
//! - It takes queued appends in offset order and coalesces them (up to `write_bytes_max`)
//!   into O_DIRECT writes that start at the last partial page. Writes are pipelined: while
//!   more is queued each write ends on a page boundary and carries its partial page into
//!   the next, so up to [`WRITE_DEPTH_MAX`] writes touch disjoint pages and run together;
//!   when the queue runs dry the carried bytes go out padded, and the next write (which
//!   rewrites that page) waits for it. Writes are reaped in order.
//! - A batch is `written` (acked, cached, counted in `written`) once the write holding its
//!   last byte and every earlier write completed.
//! - Durable writes through O_DSYNC (`dsync_writes`): a write carrying `durable` appends (or
//!   only `none` ones, which readers see only once synced unless `read_unsynced`: one I/O
//!   to visibility instead of a write and an fdatasync) that ends the data, with nothing
//!   unsynced before it and nothing else in flight, goes through the segment's O_DSYNC
//!   descriptor and is durable when it completes (no fdatasync). Any other case, or no slot
//!   for that descriptor in the storage budget, leaves the sync to the syncer.
//! - A failed write fails its appends and every queued one and restarts after the last
//!   complete batch (`LogCore::fail_appends`); with the shard journal it fences the log
//!   first (the failed appends may be journaled), at close too — except for lack of space
//!   before close: the appends are kept and tried again after a pause (10 ms doubling to
//!   1 s) while new ones are refused (`LogCore::stall_for_space`).
//! - With the shard journal no write goes through O_DSYNC: durability comes from the
//!   journal (`LogCore::journal_progress`), acks and readers do not wait for segment writes,
//!   and the writer defers them ([`Writer::deferral`]) so a partition writes larger pieces
//!   less often; a reaped write moves its batches from `unwritten` to the cache.
//! - Zero-ahead (`zero_ahead.rs`) runs from here, only while nothing is queued or in flight
//!   and the last idle gap was long; rolls (`roll.rs`) run from here between writes.

use std::collections::VecDeque;
use std::rc::Rc;

use glommio::task::JoinHandle;
use tracing::{debug, trace, warn};
use wire::AckLevel;

use super::core::{LogCore, Pending, SegView};
use super::roll::seal_on_close;
use crate::descriptors::FileUse;
use crate::stage_latency::{self, Stage};
use crate::storage::bytes::ByteView;
use crate::storage::error::{IoError, StorageError};
use crate::storage::io::{Disk, DiskFile, DISK_ALIGN};
use crate::storage::retry_pause::RetryPause;
use crate::storage::segment::{align_down, align_up, ScannedBatch, Segment};
use crate::storage::zero_ahead::{ZeroAhead, ZeroProgress};

/// The first preallocation step of a segment (see `ensure_allocated`).
const PREALLOCATE_STEP_MIN_BYTES: u64 = 1 << 20;

/// Writes that may be in flight at once for one partition.
pub(super) const WRITE_DEPTH_MAX: usize = 4;

/// Largest zero-ahead write (at most a quarter of `zero_ahead_bytes`): small, so a data
/// write arriving meanwhile waits little behind it on the device.
pub(super) const ZERO_PIECE_BYTES: u64 = 256 << 10;

/// One write submitted to the device and not yet reaped.
pub(super) struct InFlight {
    pub(super) task: JoinHandle<Result<(), IoError>>,
    /// Logical end of the data this write completes (all data before it is in this write or
    /// in earlier ones).
    pub(super) data_end: u64,
    /// It ends inside a page, which the next write rewrites: that write must wait for it.
    pub(super) partial: bool,
    /// Went through the O_DSYNC descriptor with everything before it durable: its data is
    /// durable once it completes.
    pub(super) dsync: bool,
    /// When it was submitted (for `stage_latency`).
    pub(super) submitted_at: std::time::Instant,
}

/// The writer task's state for the active segment.
///
/// Writes are pipelined: while more data is queued, each write ends on a page boundary and
/// the bytes of the last partial page are carried into the next write, so up to
/// `WRITE_DEPTH_MAX` writes touch disjoint pages and can be in flight together. When the
/// queue runs dry the carried bytes go out in a padded write of the partial page; a later
/// write rewrites that page and so waits until it completed. Writes are reaped in order;
/// a batch is written once the write holding its last byte and every earlier one completed.
pub(super) struct Writer<D: Disk> {
    pub(super) sh: Rc<LogCore<D>>,
    pub(super) seg: Rc<Segment<D::File>>,
    /// Logical end of everything submitted (carried bytes included).
    pub(super) submitted: u64,
    /// Bytes `[align_down(submitted), submitted)`.
    pub(super) tail: Vec<u8>,
    /// The tail holds bytes that no submitted write carries yet.
    pub(super) tail_dirty: bool,
    /// End of the data covered by reaped, successful writes.
    pub(super) reaped: u64,
    pub(super) allocated: u64,
    /// The segment reuses a deleted one's file: bytes below this, past the data, are stale.
    pub(super) stale_end: u64,
    /// The last write put a zeroed page after the data (see `write`).
    pub(super) end_marked: bool,
    /// The segment (by base offset) whose O_DSYNC descriptor could not be opened.
    pub(super) dsync_failed: Option<u64>,
    /// Closed segments finishing their seal in the background.
    pub(super) sealing: VecDeque<JoinHandle<Result<(), StorageError>>>,
    pub(super) inflight: VecDeque<InFlight>,
    /// Appends submitted but not yet reaped, with their end positions.
    pub(super) items: VecDeque<(u64, Pending)>,
    /// Zeros past the active segment's data (`LogConfig::zero_ahead_bytes`).
    pub(super) zero: ZeroAhead<D::File>,
    /// With the journal, after a write failed for lack of space: when to try again (cleared
    /// by the next write that succeeds), and the pause before it.
    pub(super) no_space_retry_at: Option<std::time::Instant>,
    pub(super) no_space_pause: RetryPause,
    /// Since when the writer has had nothing in flight or queued (`None` while busy).
    pub(super) idle_since: Option<std::time::Instant>,
    /// Length of the last idle gap that ended.
    pub(super) last_gap: std::time::Duration,
}

/// The writer task: see the module docs and [`Writer`].
pub(super) async fn writer_loop<D: Disk>(sh: Rc<LogCore<D>>, active: Rc<Segment<D::File>>) {
    let size = active.size_bytes.get();
    let tail = match read_tail(&*active.log(), size).await {
        Ok(t) => t,
        Err(e) => {
            sh.fence(e);
            return;
        }
    };
    let zero = new_zero_ahead(&sh, &active, align_up(size), size);
    let mut w = Writer {
        sh,
        seg: active,
        submitted: size,
        tail,
        tail_dirty: false,
        reaped: size,
        allocated: 0,
        stale_end: 0,
        end_marked: false,
        dsync_failed: None,
        sealing: VecDeque::new(),
        inflight: VecDeque::new(),
        items: VecDeque::new(),
        zero,
        no_space_retry_at: None,
        no_space_pause: RetryPause::default(),
        idle_since: None,
        last_gap: std::time::Duration::ZERO,
    };
    loop {
        let seen = w.sh.writer_signal.get();
        w.zero_tick().await;
        let has_pending = !w.sh.queue.borrow().pending.is_empty();
        let last_partial = w.inflight.back().is_some_and(|f| f.partial);
        let deferred = if has_pending && !w.tail_dirty { w.deferral() } else { None };
        if (has_pending || w.tail_dirty)
            && deferred.is_none()
            && w.inflight.len() < WRITE_DEPTH_MAX
            && !last_partial
        {
            let items = w.sh.take_pending();
            let fenced = w.sh.queue.borrow().fenced.clone();
            if let Some(reason) = fenced {
                // Nothing new becomes durable: fail what is queued and what is carried.
                w.fail(items, StorageError::Fenced(reason)).await;
                continue;
            }
            if let Err((items, e)) = w.submit(items).await {
                w.fail(items, e).await;
            }
            continue;
        }
        if !w.inflight.is_empty() {
            match w.reap_one().await {
                Ok(()) if w.no_space_retry_at.is_some() => {
                    w.no_space_retry_at = None;
                    w.no_space_pause.succeeded();
                    w.sh.space_returned();
                }
                Ok(()) => {}
                Err(e) => w.fail(Vec::new(), e).await,
            }
            continue;
        }
        if w.sh.queue.borrow().closing && !has_pending {
            w.close().await;
            return;
        }
        match deferred {
            // Until the deferred write is due, or anything else changes (appends below
            // `bytes_due` and journal progress that wants nothing synced do not signal).
            Some(due_in) => {
                let due = async {
                    glommio::timer::sleep(due_in).await;
                    true
                };
                w.sh.writer_deferred_bytes_due.set(Some(w.bytes_due()));
                futures_lite::future::or(w.sh.writer_signal.wait_for(seen + 1), due).await;
                w.sh.writer_deferred_bytes_due.set(None);
            }
            None => {
                w.sh.writer_signal.wait_for(seen + 1).await;
            }
        }
    }
}

impl<D: Disk> Writer<D> {
    /// With the shard journal, how long the queued appends may still wait for their segment
    /// write (`None`: write now). The journal makes them durable meanwhile, so waiting turns
    /// a write per journal record into one per `journal_segment_write_delay_ms`. Due at once
    /// when `journal_segment_write_bytes` (at most half of `pending_bytes_max`, and at most
    /// the active segment's room) are queued,
    /// when a journal checkpoint wants data synced that is not written, or when the log
    /// closes or is fenced.
    pub(super) fn deferral(&self) -> Option<std::time::Duration> {
        self.sh.journal.as_ref()?; // deferred only behind the journal
        let c = &self.sh.config;
        let st = self.sh.queue.borrow();
        let oldest = st.pending.front()?.enqueued;
        let bytes_due = self.bytes_due();
        if st.closing || st.fenced.is_some() {
            return None;
        }
        if let Some(at) = self.no_space_retry_at {
            // Waiting for space: the next try is due then.
            let now = std::time::Instant::now();
            if at > now {
                return Some(at - now);
            }
        }
        if st.pending_bytes >= bytes_due || self.sh.journal_wants_synced() {
            return None;
        }
        let delay = std::time::Duration::from_millis(c.journal_segment_write_delay_ms);
        delay.checked_sub(oldest.elapsed()).filter(|d| !d.is_zero())
    }

    /// Queued bytes that make a deferred segment write due at once (see [`Self::deferral`]).
    pub(super) fn bytes_due(&self) -> usize {
        let c = &self.sh.config;
        // Nor more than the active segment has room for: the write would roll (and a roll
        // syncs the old segment anyway), and with small segments deferring more only rolls
        // several at once, ahead of the retention or compaction that removes them.
        let room = self.sh.live.segment_bytes_max().saturating_sub(self.submitted);
        c.journal_segment_write_bytes
            .min(c.pending_bytes_max / 2)
            .min(usize::try_from(room).unwrap_or(usize::MAX))
    }

    /// Submits `items` (rolling segments first when needed). On error returns the items that
    /// were not submitted.
    pub(super) async fn submit(
        &mut self,
        mut items: Vec<Pending>,
    ) -> Result<(), (Vec<Pending>, StorageError)> {
        while !items.is_empty() {
            if self.sh.needs_roll(&self.seg_view(), &items[0]) {
                if let Err(e) = self.roll(items[0].base_offset).await {
                    return Err((items, e));
                }
            }
            if self.seg.first_append_ms.get() == i64::MAX {
                self.seg.first_append_ms.set(items[0].append_ms);
            }
            // The run that fits in this segment.
            let mut run = 0;
            let mut run_bytes = 0u64;
            while run < items.len()
                && (run == 0
                    || (self.submitted + run_bytes + items[run].bytes.len() as u64
                        <= self.sh.live.segment_bytes_max()
                        && !self.sh.needs_roll(&self.seg_view(), &items[run])))
            {
                run_bytes += items[run].bytes.len() as u64;
                run += 1;
            }
            let rest = items.split_off(run);
            let flush = rest.is_empty() && self.sh.queue.borrow().pending.is_empty();
            let chunks: Vec<ByteView> = items.iter().map(|p| p.bytes.clone()).collect();
            // Synced as it is written (O_DSYNC when it can be): `durable` appends, and
            // unacked (`none`) ones that readers may see only once synced; a `written` ack
            // would wait for the sync, so a write carrying one stays plain.
            let durable = items.iter().any(|p| p.ack == AckLevel::Durable)
                || (!self.sh.config.read_unsynced && items.iter().all(|p| p.ack == AckLevel::None));
            if let Err(e) = self.write(&chunks, flush, durable).await {
                return Err((items.into_iter().chain(rest).collect(), e));
            }
            let mut end = self.submitted - run_bytes;
            if self.sh.journal.is_none() {
                // (With the journal the ack waits for no segment write.)
                for p in &items {
                    stage_latency::record_since(Stage::LogQueue, p.enqueued);
                }
            }
            for p in items {
                end += p.bytes.len() as u64;
                self.items.push_back((end, p));
            }
            items = rest;
        }
        if self.tail_dirty
            && self.sh.queue.borrow().pending.is_empty()
            && !self.inflight.back().is_some_and(|f| f.partial)
        {
            // Nothing more is queued: put the carried bytes on disk now.
            self.write(&[], true, false).await.map_err(|e| (Vec::new(), e))?;
        }
        Ok(())
    }

    /// The segment as seen for roll decisions: its size is what has been submitted.
    pub(super) fn seg_view(&self) -> SegView {
        SegView { size: self.submitted, first_append_ms: self.seg.first_append_ms.get() }
    }

    /// Builds and submits one write of the carried tail plus `chunks`; ends on a page
    /// boundary unless `flush`.
    pub(super) async fn write(
        &mut self,
        chunks: &[ByteView],
        flush: bool,
        durable: bool,
    ) -> Result<(), StorageError> {
        let page_start = align_down(self.submitted);
        let data_len: usize = chunks.iter().map(|c| c.len()).sum();
        let total = self.tail.len() + data_len;
        let write_len =
            if flush { align_up(total as u64) } else { align_down(total as u64) } as usize;
        let new_submitted = self.submitted + data_len as u64;
        let keep_from = align_down(total as u64) as usize;
        self.ensure_allocated(page_start + align_up(total as u64)).await?;
        // Ending the data inside a reused file: a zeroed page after it marks the end for
        // recovery (the buffer is zeroed), and orders the next write like a partial page.
        let end_mark = flush && write_len > 0 && page_start + (write_len as u64) < self.stale_end;
        // Durable appends in a write that ends the data, with nothing unsynced before it and
        // nothing else in flight: write through O_DSYNC, so no fdatasync has to follow.
        let dsync_file = if durable
            && flush
            && write_len > 0
            && self.sh.config.dsync_writes
            && self.sh.journal.is_none()
            && self.inflight.is_empty()
            && self.seg.durable_bytes() >= self.submitted
            && self.sh.queue.borrow().fenced.is_none()
        {
            self.dsync_file().await
        } else {
            None
        };
        let target = dsync_file.clone().unwrap_or_else(|| self.seg.log());
        let buf_len = write_len + if end_mark { DISK_ALIGN } else { 0 };
        let mut new_tail = Vec::with_capacity(total - keep_from);
        let mut buf = (write_len > 0).then(|| target.alloc_write_buf(buf_len));
        let mut at = 0usize;
        for piece in std::iter::once(&self.tail[..]).chain(chunks.iter().map(|c| c.as_ref())) {
            let end = at + piece.len();
            // [at, min(end, write_len)) goes to the write, [max(at, keep_from), end) is kept.
            if let Some(buf) = buf.as_mut() {
                if at < write_len {
                    let n = end.min(write_len) - at;
                    buf.as_mut()[at..at + n].copy_from_slice(&piece[..n]);
                }
            }
            if end > keep_from {
                new_tail.extend_from_slice(&piece[keep_from.saturating_sub(at)..]);
            }
            at = end;
        }
        debug_assert_eq!(at, total);
        if let Some(buf) = buf.as_mut() {
            // Page padding (and the end mark) after the data are zeros.
            let filled = total.min(write_len);
            buf.as_mut()[filled..].fill(0);
        }
        let partial = flush && (total % DISK_ALIGN != 0 || end_mark);
        let data_end = if flush { new_submitted } else { page_start + write_len as u64 };
        trace!(
            seg = self.seg.base_offset,
            page_start,
            write_len,
            flush,
            data_end,
            submitted = new_submitted,
            "submit write"
        );
        if write_len > 0 {
            self.end_marked = end_mark;
        }
        if let Some(buf) = buf {
            let zeroing = self.zero.before_write(page_start, page_start + buf_len as u64).await;
            self.count_zero(zeroing);
            let dsync = dsync_file.is_some();
            let file = target;
            // Behind the journal, within the shard's permits for segment writes (see
            // `JournalLink::segment_writes`); the permit goes when the write completes.
            let permits = self.sh.journal.as_ref().map(|j| j.segment_writes());
            let task = glommio::spawn_local(async move {
                let _permit = match &permits {
                    // Nothing closes it; were it closed, the write would go ahead unlimited.
                    Some(p) => p.acquire_static_permit(1).await.ok(),
                    None => None,
                };
                file.write_at(buf, page_start).await
            })
            .detach();
            let submitted_at = std::time::Instant::now();
            self.inflight.push_back(InFlight { task, data_end, partial, dsync, submitted_at });
            self.sh.bump_stats(|s| {
                s.writes += 1;
                s.bytes_written += data_len as u64;
                s.dsync_writes += u64::from(dsync);
                s.count_write_size(buf_len as u64);
            });
        }
        self.submitted = new_submitted;
        self.tail = new_tail;
        self.tail_dirty = !flush && !self.tail.is_empty();
        Ok(())
    }

    /// Reserves space up to at least `need`, within the segment's maximum size, in steps
    /// that grow with the segment: as large as what is allocated already, from
    /// `PREALLOCATE_STEP_MIN_BYTES` up to `preallocate_bytes`. A partition that writes little
    /// holds little unwritten space (1,000 slow partitions hold about 1 GiB, not 32 GiB),
    /// and a busy one still extends its file only a handful of times per segment.
    pub(super) async fn ensure_allocated(&mut self, need: u64) -> Result<(), IoError> {
        let c = &self.sh.config;
        let step = self
            .allocated
            .max(PREALLOCATE_STEP_MIN_BYTES)
            .min(c.preallocate_bytes)
            .min(self.sh.live.segment_bytes_max());
        if step > 0 && need > self.allocated {
            let target =
                need.max(self.allocated + step).min(self.sh.live.segment_bytes_max().max(need));
            self.seg.log().allocate(target).await?;
            self.allocated = target;
        }
        Ok(())
    }

    /// Collects finished zero-ahead work and, while this partition has no write in flight
    /// and nothing queued, starts the next zero piece when one is due. Zeros run at most
    /// `zero_ahead_bytes` past the data, and never further ahead than the data this writer
    /// has appended to the segment: an idle partition (or a restart) writes no zeros, and
    /// zeros never outnumber data. A log joined to a shard journal writes none: its acks
    /// wait for the journal's write, not for its segment's, and its segment is synced once
    /// per journal checkpoint, where one filesystem journal commit costs nothing an ack
    /// waits for (zeros there were a memset and a device write per byte for nothing).
    pub(super) async fn zero_tick(&mut self) {
        let c = &self.sh.config;
        if c.zero_ahead_bytes == 0 || c.preallocate_bytes == 0 || self.sh.journal.is_some() {
            return; // off: no zero work is ever started
        }
        let progress = self.zero.settle().await;
        self.count_zero(progress);
        if !self.inflight.is_empty() || !self.sh.queue.borrow().pending.is_empty() {
            if let Some(since) = self.idle_since.take() {
                self.last_gap = since.elapsed();
            }
            return;
        }
        self.idle_since.get_or_insert_with(std::time::Instant::now);
        // Zero only when the last idle gap was long: a partition written back to back has
        // no room for zeros, and a zero write in a short gap only delays the next data write
        // on the device.
        let gap_needed = std::time::Duration::from_micros(c.zero_idle_gap_us);
        if self.last_gap < gap_needed
            || self.sh.queue.borrow().fenced.is_some()
            || self.sh.queue.borrow().closing
        {
            return;
        }
        let piece = align_down(ZERO_PIECE_BYTES.min(c.zero_ahead_bytes / 4)).max(DISK_ALIGN as u64);
        let data_end = align_up(self.submitted);
        // One piece of room past the data: the next data write rarely waits for zeros.
        let floor = data_end + piece;
        let lead = self.zero.lead_bytes(self.submitted, c.zero_ahead_bytes);
        let target = (data_end + lead).min(align_down(self.sh.live.segment_bytes_max()));
        let refill_at = data_end + lead / 2;
        let Some((start, end, goal)) = self.zero.next_piece(floor, refill_at, target, piece) else {
            return;
        };
        if let Err(e) = self.ensure_allocated(end).await {
            debug!(segment = %self.seg.log_path.display(), error = %e, "no space to zero ahead");
            self.zero.stop();
            return;
        }
        let mut buf = self.seg.log().alloc_write_buf((end - start) as usize);
        buf.as_mut().fill(0);
        self.zero.start(buf, start, goal);
    }

    pub(super) fn count_zero(&self, p: ZeroProgress) {
        if p != ZeroProgress::default() {
            self.sh.bump_stats(|s| {
                s.zeroed_bytes += p.zeroed_bytes;
                s.zero_syncs += p.syncs;
                s.zero_waits += p.waits;
            });
        }
    }

    /// The active segment's O_DSYNC descriptor, opened on first use under a slot of the
    /// storage budget; `None` (and plain write + fdatasync) if it cannot be opened, or while
    /// the budget has no slot (asked again at the next durable write).
    pub(super) async fn dsync_file(&mut self) -> Option<Rc<D::File>> {
        if let Some((f, _)) = self.seg.dsync.borrow().as_ref() {
            return Some(f.clone());
        }
        if self.dsync_failed == Some(self.seg.base_offset) {
            return None;
        }
        let slot = self.sh.file_slot(FileUse::Kept)?;
        match self.sh.disk.open_dsync(&self.seg.log_path).await {
            Ok(f) => {
                let f = Rc::new(f);
                *self.seg.dsync.borrow_mut() = Some((f.clone(), slot));
                Some(f)
            }
            Err(e) => {
                warn!(segment = %self.seg.log_path.display(), error = %e, "cannot open O_DSYNC; durable writes use fdatasync");
                self.dsync_failed = Some(self.seg.base_offset);
                None
            }
        }
    }

    /// Waits for the oldest write and completes the appends it finished.
    pub(super) async fn reap_one(&mut self) -> Result<(), StorageError> {
        // Awaited in place: a writer cancelled meanwhile (a crash) cancels the write too.
        let front = self.inflight.front_mut().expect("a write in flight");
        let done = (&mut front.task).await;
        let f = self.inflight.pop_front().expect("awaited in place");
        let stage = if f.dsync { Stage::WriteDsync } else { Stage::Write };
        stage_latency::record_since(stage, f.submitted_at);
        match done {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(e.into()),
            None => return Err(StorageError::Closed),
        }
        self.reaped = f.data_end;
        assert!(
            self.reaped <= self.submitted,
            "{}: reaped {} past submitted {}",
            self.seg.log_path.display(),
            self.reaped,
            self.submitted
        );
        let sh = self.sh.clone();
        let mut any_durable = false;
        while self.items.front().is_some_and(|(end, _)| *end <= self.reaped) {
            let (end, p) = self.items.pop_front().expect("front exists");
            let len = p.bytes.len() as u64;
            let b = ScannedBatch {
                position: end - len,
                base_offset: p.base_offset,
                next_offset: p.next_offset,
                len,
                max_timestamp_ms: p.max_timestamp_ms,
            };
            trace!(
                seg = self.seg.base_offset,
                base = b.base_offset,
                position = b.position,
                len = b.len,
                "written"
            );
            self.seg.record(&b, sh.config.index_interval_bytes);
            sh.cache.insert(p.base_offset, p.next_offset, p.bytes.clone());
            sh.written.advance(p.next_offset);
            if sh.config.read_unsynced {
                sh.visible.advance(p.next_offset);
            }
            match (p.ack, p.tx) {
                (AckLevel::Durable, Some(tx)) => {
                    let fenced = sh.queue.borrow().fenced.clone();
                    if let Some(reason) = fenced {
                        let _ = tx.send(Err(StorageError::Fenced(reason)));
                    } else {
                        sh.queue.borrow_mut().durable_waiters.push_back((p.next_offset, tx));
                        any_durable = true;
                    }
                }
                (_, Some(tx)) => {
                    let _ = tx.send(Ok(()));
                }
                (_, None) => {}
            }
        }
        if sh.journal.is_some() {
            // Durable once journaled; the syncer syncs only for journal checkpoints.
            sh.unwritten.written_to(sh.written.get());
            sh.journal_progress();
            sh.syncer_signal.advance(sh.syncer_signal.get() + 1);
        } else if f.dsync && sh.queue.borrow().fenced.is_none() {
            // Nothing before it was unsynced and nothing else was in flight: everything
            // written so far is durable.
            self.seg.synced_to(f.data_end);
            sh.mark_durable(sh.written.get());
        } else if any_durable || !sh.config.read_unsynced {
            sh.syncer_signal.advance(sh.syncer_signal.get() + 1);
        }
        sh.persist_index_soon(self.seg.clone());
        Ok(())
    }

    /// With the shard journal, a failed write fences the log: the failed appends may be
    /// journaled already, so their offsets must not be reused by other batches (a restart
    /// replays the journal).
    fn fence_journaled(&self, e: &StorageError) {
        if self.sh.journal.is_some() && self.sh.queue.borrow().fenced.is_none() {
            self.sh.fence(match e {
                StorageError::Io(io) => io.clone(),
                other => IoError::Other {
                    op: "append",
                    path: self.seg.log_path.display().to_string(),
                    errno: None,
                    message: other.to_string(),
                },
            });
        }
    }

    /// A write failed: let the others finish (their data follows the failure and is
    /// discarded), fail every unwritten append, and restart from the last good position.
    /// With the journal, for lack of space (and not at close), the appends are kept and
    /// written again after a pause instead ([`LogCore::stall_for_space`]).
    pub(super) async fn fail(&mut self, extra: Vec<Pending>, e: StorageError) {
        let stall = match &e {
            StorageError::Io(io @ IoError::NoSpace { .. })
                if self.sh.journal.is_some()
                    && !self.sh.queue.borrow().closing
                    && self.sh.queue.borrow().fenced.is_none() =>
            {
                Some(io.clone())
            }
            _ => None,
        };
        if stall.is_none() {
            self.fence_journaled(&e);
        }
        while let Some(f) = self.inflight.front_mut() {
            let _ = (&mut f.task).await;
            self.inflight.pop_front();
        }
        let items: Vec<Pending> = self.items.drain(..).map(|(_, p)| p).chain(extra).collect();
        match stall {
            Some(io) if !items.is_empty() => {
                self.no_space_retry_at =
                    Some(std::time::Instant::now() + self.no_space_pause.failed());
                self.sh.stall_for_space(items, io);
            }
            // Only carried bytes failed: they are on disk already (read back below).
            Some(_) => {}
            None => self.sh.fail_appends(items, &e),
        }
        // Restart after the last complete batch (a reaped write may have ended mid-batch).
        self.reaped = self.seg.size_bytes.get();
        self.submitted = self.reaped;
        self.tail_dirty = false;
        match read_tail(&*self.seg.log(), self.reaped).await {
            Ok(t) => self.tail = t,
            Err(io) => self.sh.fence(io),
        }
    }

    /// Completes everything in flight and flushes carried bytes.
    pub(super) async fn drain(&mut self) -> Result<(), StorageError> {
        if self.tail_dirty {
            while self.inflight.back().is_some_and(|f| f.partial) {
                self.reap_one().await?;
            }
            self.write(&[], true, false).await?;
        }
        while !self.inflight.is_empty() {
            self.reap_one().await?;
        }
        Ok(())
    }

    pub(super) async fn close(&mut self) {
        while let Some(t) = self.sealing.pop_front() {
            let _ = t.await;
        }
        if let Err(e) = self.drain().await {
            self.fence_journaled(&e);
            let items: Vec<Pending> = self.items.drain(..).map(|(_, p)| p).collect();
            self.sh.fail_appends(items, &e);
        }
        let zeroing = self.zero.finish().await;
        self.count_zero(zeroing);
        seal_on_close(&self.sh, &self.seg, self.allocated).await;
    }
}

impl<D: Disk> Drop for Writer<D> {
    fn drop(&mut self) {
        // The writer task was cancelled (the log was dropped: a crash). Writes still in
        // flight die with it, as they would with the process.
        for f in self.inflight.drain(..) {
            f.task.cancel();
        }
        for t in self.sealing.drain(..) {
            t.cancel();
        }
    }
}

/// Zero-ahead for `seg`, whose first `zeroed_end` bytes are written blocks already and whose
/// data this writer starts appending at `origin`; a failed zero-ahead sync fences the log.
pub(super) fn new_zero_ahead<D: Disk>(
    sh: &Rc<LogCore<D>>,
    seg: &Segment<D::File>,
    zeroed_end: u64,
    origin: u64,
) -> ZeroAhead<D::File> {
    let fence = Rc::downgrade(sh);
    ZeroAhead::new(
        seg.log(),
        zeroed_end,
        origin,
        sh.writer_signal.clone(),
        seg.syncs.clone(),
        Rc::new(move |e| {
            if let Some(sh) = fence.upgrade() {
                sh.fence(e);
            }
        }),
    )
}

/// Reads the partial last page of a segment so the next write can rewrite it.
pub(super) async fn read_tail<F: DiskFile>(file: &F, size: u64) -> Result<Vec<u8>, IoError> {
    let start = align_down(size);
    if start == size {
        return Ok(Vec::new());
    }
    let buf = file.read_at(start, (size - start) as usize).await?;
    let bytes = buf.as_ref();
    if bytes.len() < (size - start) as usize {
        return Err(IoError::Other {
            op: "read tail",
            path: String::new(),
            errno: None,
            message: "short read".into(),
        });
    }
    Ok(bytes[..(size - start) as usize].to_vec())
}
