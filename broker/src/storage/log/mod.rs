//! The log of one partition: its handle. Append with `none`/`written`/`durable` acks, read,
//! offsets, retention and record deletion (the log start moving forward), close.
//!
//! # Contract
//! - Owned by one shard; every method runs on that shard's executor. Any number of tasks may
//!   call [`PartitionLog::enqueue`], [`PartitionLog::read`] and the lookups concurrently.
//! - `enqueue` assigns offsets synchronously, in call order, and never blocks; callers apply
//!   backpressure by awaiting [`PartitionLog::writable`] first. The batch must already be
//!   validated (its envelope, and its records once, decompressed if need be: see
//!   `api/produce.rs`). [`PartitionLog::claim`] + [`PartitionLog::store`] is `enqueue` in
//!   two steps for a caller that writes the claimed offsets into its own bytes (a produce
//!   request's frame, kept as the log's view): claims are stored in order, before anything
//!   awaits. Reads and recovery check envelopes only (lengths, header, CRC32C over
//!   the records): the CRC proves the records are the ones checked at ingress.
//! - Dropping the log without `close` is a crash: its tasks stop where they are.
//! - Descriptors: an open log holds its partition's reservation in the broker's storage
//!   budget (`descriptors.rs` `StorageFiles`), which covers its active segment's `.log`
//!   (and, one at a time, recovery's scan of each closed segment). Every other file it opens
//!   takes an optional slot and goes without when none is left: index files are not
//!   written (recovery rebuilds them, or reads scan from the segment's start), durable
//!   writes fdatasync instead of O_DSYNC, a roll seals the old segment before the new one
//!   opens, the deleter unlinks without pacing, and a read of a sealed segment that cannot
//!   reopen it fails with `RESOURCE_LIMIT` (retriable).
//!
//! - With the shard journal ([`PartitionLog::open_journaled`], `storage/journal/`) every
//!   append is also handed to the journal at enqueue; `written` and `durable` acks and
//!   readers wait for its journal record only. Segment writes are deferred
//!   (`journal_segment_write_delay_ms`, `journal_segment_write_bytes`: fewer, larger
//!   writes) and readers get the batches not yet written from memory (`unwritten.rs`);
//!   segments are synced lazily (journal checkpoints, rolls, close). Opening replays an
//!   earlier run's journal entries that continue the recovered log.
//!
//! # Files, each headed by the rules it keeps
//! - `core.rs`: what the handle and its tasks share (segments, watermarks, append queue,
//!   fence); acks resolve and the fence falls there.
//! - `writer.rs`: the one task writing the active segment (pipelined O_DIRECT writes from the
//!   last partial page; `written` acks; O_DSYNC for durable writes that end the data).
//! - `syncer.rs`: group commit (fdatasync; `durable` acks; the high watermark for readers).
//! - `reader.rs`: reads, never past the high watermark.
//! - `roll.rs`: ending a segment (seal) and starting the next (new or recycled).
//! - `retention.rs`: segments leaving the log (retention; record deletion before an offset),
//!   and the deleter that frees their space.
//! - `recovery.rs`: opening: scanning segments, cutting torn tails, rebuilding indexes.
//! - `replay.rs`: opening with the shard journal: appending an earlier run's entries.
//! - `index_files.rs`: the active segment's `.index`/`.timeindex` on disk (hints).
//! - `ticket.rs`: where an append landed and how to wait for its ack.
//! - `unwritten.rs`: with the journal, the batches durable before their segment write.
//! - `cleaner.rs`: compaction: closed segments rewritten with each key's latest record;
//!   `cleaner_rewrite.rs` (one rewrite, merging small segments, and its swap) and
//!   `cleaner_checkpoint.rs` (how far it got, persisted).
//! - Record deletion's log start is persisted by `log_start_checkpoint.rs`.

mod cleaner;
mod cleaner_checkpoint;
mod cleaner_rewrite;
mod core;
mod index_files;
mod live_config;
pub(in crate::storage) mod log_start_checkpoint;
mod page_file;
mod reader;
mod recovery;
mod replay;
mod retention;
mod roll;
mod syncer;
mod ticket;
mod unwritten;
mod writer;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use futures_channel::oneshot;
use glommio::task::JoinHandle;
use wire::{AckLevel, BatchHeader};

use self::core::{AppendQueue, LogCore, Pending};
use self::recovery::{recover_dir, Recovered};
use self::retention::deleter_loop;
use self::syncer::syncer_loop;
use self::writer::writer_loop;
use super::bytes::ByteView;
use super::cache::PartitionCache;
use super::config::LogConfig;
use super::error::{IoError, StorageError};
use super::io::Disk;
use super::journal::{ReplayEntry, ShardJournal};
use crate::descriptors::{FileSlot, StorageFiles};
use crate::watermark::Watermark;

pub use self::cleaner::{CleanerStats, RemovedTombstones, REMOVED_TOMBSTONES_MAX};
pub use self::core::{LogStats, WRITE_SIZE_BUCKETS_BYTES};
pub use self::reader::{ReadOutcome, TimestampLookup};
use self::ticket::ClaimParts;
pub use self::ticket::{AppendTicket, AppendTicketDone, Claim};

/// How a log joins its shard's journal (see [`PartitionLog::open_journaled`]).
pub struct JournalJoin<'a, D: Disk> {
    /// The shard's journal, if it has one.
    pub journal: Option<&'a ShardJournal<D>>,
    /// Topic incarnation (`metadata.rs` topic id).
    pub topic_id: u64,
    /// Partition number.
    pub partition: u32,
    /// An earlier run's journal entries of this partition (`JournalReplay::take`).
    pub replay: Vec<ReplayEntry>,
}

impl<D: Disk> JournalJoin<'_, D> {
    /// No journal and nothing to replay.
    pub fn none() -> Self {
        JournalJoin { journal: None, topic_id: 0, partition: 0, replay: Vec::new() }
    }
}

/// See the module docs.
pub struct PartitionLog<D: Disk> {
    shared: Rc<LogCore<D>>,
    tasks: RefCell<Vec<JoinHandle<()>>>,
    /// The partition's reservation in the storage budget, until `close`.
    reservation: RefCell<Option<FileSlot>>,
    /// Batches appended from an earlier run's journal when it opened.
    replayed_batches: Cell<usize>,
}

impl<D: Disk> std::fmt::Debug for PartitionLog<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionLog")
            .field("dir", &self.shared.dir)
            .field("written", &self.shared.written.get())
            .field("visible", &self.shared.visible.get())
            .finish()
    }
}

impl<D: Disk> PartitionLog<D> {
    /// Opens (recovering) or creates the log in `dir`, reserving its partition's descriptor
    /// in `files` (refused with `RESOURCE_LIMIT` when `partitions_max` logs hold one). See
    /// the module docs and `recover_segment` for what recovery checks and repairs.
    pub async fn open(
        disk: D,
        dir: PathBuf,
        config: LogConfig,
        cache: PartitionCache,
        files: Arc<StorageFiles>,
    ) -> Result<Self, StorageError> {
        Self::open_journaled(disk, dir, config, cache, files, JournalJoin::none()).await
    }

    /// [`PartitionLog::open`], joined to its shard's journal if `join.journal` (durable
    /// appends then count once journaled, see `storage/journal/`), and appending the
    /// journal entries of an earlier run that continue the recovered log (`join.replay`,
    /// see `replay.rs`) before it returns. An entry past the recovered end that cannot be
    /// appended (a gap, or one that does not check out) fails the open: the journal files
    /// keep it, and the partition takes no appends that could reuse its offsets.
    pub async fn open_journaled(
        disk: D,
        dir: PathBuf,
        config: LogConfig,
        cache: PartitionCache,
        files: Arc<StorageFiles>,
        join: JournalJoin<'_, D>,
    ) -> Result<Self, StorageError> {
        let reservation = files.reserve_partition().ok_or_else(|| IoError::TooManyFiles {
            op: "open partition",
            path: dir.display().to_string(),
            reason: format!(
                "the storage descriptor budget holds {} partitions",
                files.partitions_max()
            ),
        })?;
        let Recovered { segments, active_index, deleting, spare, names } =
            recover_dir(&disk, &files, &dir, &config).await?;
        let active = segments.last().expect("at least one segment").clone();
        // Recovery synced the active segment; closed segments were synced when sealed (a
        // roll makes the next segment only after that sync succeeded).
        let hw = active.next_offset.get();
        let cleaned_to = match config.compact {
            true => cleaner_checkpoint::read_checkpoint(&disk, &files, &dir, hw).await,
            false => 0,
        };
        // Record deletion's start (`retention.rs`); applied once the journal's replay is in.
        let (start_checkpoint, log_start_checkpoint) =
            log_start_checkpoint::LogStartCheckpoint::read(&disk, &files, &dir, &names).await?;
        let journal = join.journal.map(|j| j.join(join.topic_id, join.partition, hw));
        let fs_sync = match join.journal {
            // A directory it cannot stat is synced file by file.
            Some(j) => j.filesystem_sync_for(&dir).await.unwrap_or_else(|e| {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot tell the partition's filesystem; its checkpoints fdatasync its segments");
                None
            }),
            None => None,
        };
        let shared = Rc::new(LogCore {
            journal,
            fs_sync,
            disk,
            files,
            dir,
            live: live_config::LiveConfig::new(&config),
            config,
            log_start_offset: Cell::new(segments[0].base_offset),
            log_start_checkpoint,
            log_start_writing: glommio::sync::Semaphore::new(1),
            segments: RefCell::new(segments),
            written: Watermark::new(hw),
            visible: Watermark::new(hw),
            durable_offset: Cell::new(hw),
            queue: RefCell::new(AppendQueue {
                next_offset: hw,
                pending: VecDeque::new(),
                pending_bytes: 0,
                durable_waiters: VecDeque::new(),
                fenced: None,
                no_space: None,
                closing: false,
                rollbacks: 0,
            }),
            writer_signal: Watermark::new(0),
            writer_deferred_bytes_due: Cell::new(None),
            syncer_signal: Watermark::new(0),
            space_signal: Watermark::new(0),
            cache,
            unwritten: Default::default(),
            stats: Cell::new(LogStats::default()),
            active_index: RefCell::new(active_index),
            deleting: RefCell::new(deleting),
            reopened: RefCell::new(VecDeque::new()),
            spare: RefCell::new(spare),
            index_task: RefCell::new(None),
            index_busy: Cell::new(false),
            index_done: Watermark::new(0),
            deleter_signal: Watermark::new(0),
            sealed_signal: Watermark::new(0),
            cleaned_to: Cell::new(cleaned_to),
            left_merged: RefCell::new(Vec::new()),
            maintenance: glommio::sync::Semaphore::new(1),
            pass: glommio::sync::Semaphore::new(1),
            cleaner: Cell::new(CleanerStats::default()),
            removed_tombstones: Default::default(),
            dropping_tombstones: Cell::new(false),
        });
        if let Some(link) = &shared.journal {
            let (progress, fence) = (Rc::downgrade(&shared), Rc::downgrade(&shared));
            link.member().set_callbacks(
                Box::new(move || {
                    if let Some(sh) = progress.upgrade() {
                        sh.journal_progress();
                        // A checkpoint may want data the writer is holding back (a writer
                        // not deferring looks again anyway at its next signal).
                        if sh.journal_wants_synced() || sh.writer_deferred_bytes_due.get().is_none()
                        {
                            sh.writer_signal.advance(sh.writer_signal.get() + 1);
                        }
                        sh.syncer_signal.advance(sh.syncer_signal.get() + 1);
                        sh.space_signal.advance(sh.space_signal.get() + 1);
                    }
                }),
                Box::new(move |e| {
                    if let Some(sh) = fence.upgrade() {
                        sh.fence(e);
                    }
                }),
            );
        }
        let writer = glommio::spawn_local(writer_loop(shared.clone(), active)).detach();
        let syncer = glommio::spawn_local(syncer_loop(shared.clone())).detach();
        let deleter = glommio::spawn_local(deleter_loop(shared.clone())).detach();
        let log = PartitionLog {
            shared,
            tasks: RefCell::new(vec![writer, syncer, deleter]),
            reservation: RefCell::new(Some(reservation)),
            replayed_batches: Cell::new(0),
        };
        if !join.replay.is_empty() {
            match log.replay_journal(join.replay).await {
                Ok(n) => log.replayed_batches.set(n),
                Err(e) => {
                    // Its entries stay in the journal files for the next open; nothing is
                    // appended after a stop, which could reuse their offsets.
                    let _ = log.close().await;
                    return Err(e);
                }
            }
        }
        if let Some(asked) = start_checkpoint {
            if let Err(e) = log.shared.start_at_checkpoint(asked).await {
                let _ = log.close().await;
                return Err(e);
            }
        }
        Ok(log)
    }

    /// Queues a validated batch for append, assigns its offsets and log-append time in place
    /// (on the log's own copy) and returns where it landed. See the module docs.
    pub fn enqueue(
        &self,
        batch: &[u8],
        ack: AckLevel,
        now_ms: i64,
    ) -> Result<AppendTicket, StorageError> {
        let claim = self.claim(batch, ack, now_ms)?;
        self.store_copy(claim, batch, now_ms)
    }

    /// [`PartitionLog::enqueue`] with a batch size limit of `batch_bytes_max` (journal
    /// replay takes back batches a larger limit accepted).
    fn enqueue_within(
        &self,
        batch: &[u8],
        ack: AckLevel,
        now_ms: i64,
        batch_bytes_max: usize,
    ) -> Result<AppendTicket, StorageError> {
        let claim = self.claim_within(batch, ack, now_ms, batch_bytes_max)?;
        self.store_copy(claim, batch, now_ms)
    }

    /// Stores the log's own copy of `batch`, its claimed offsets and append time assigned.
    fn store_copy(
        &self,
        claim: Claim,
        batch: &[u8],
        now_ms: i64,
    ) -> Result<AppendTicket, StorageError> {
        let mut owned = wire::to_aligned(batch);
        wire::batch::header::assign(&mut owned, claim.base_offset(), now_ms);
        self.store(claim, ByteView::new(Rc::new(owned)))
    }

    /// The first step of [`PartitionLog::enqueue`] for a caller that assigns the batch's
    /// offsets in its own bytes (a produce request's frame): checks that the log takes the
    /// validated `batch` and claims its offsets. The caller writes them into the batch
    /// (`wire::batch::header::assign` with [`Claim::base_offset`] and `now_ms`) and hands
    /// it to [`PartitionLog::store`] before anything awaits; claims of one log are stored
    /// in the order they were made.
    pub fn claim(&self, batch: &[u8], ack: AckLevel, now_ms: i64) -> Result<Claim, StorageError> {
        if let Some(e) = self.shared.no_space() {
            // With the journal: its file or this log's segment write waits for space.
            return Err(StorageError::Io(e));
        }
        self.claim_within(batch, ack, now_ms, self.shared.config.batch_bytes_max)
    }

    fn claim_within(
        &self,
        batch: &[u8],
        ack: AckLevel,
        now_ms: i64,
        batch_bytes_max: usize,
    ) -> Result<Claim, StorageError> {
        let sh = &self.shared;
        let mut st = sh.queue.borrow_mut();
        if st.closing {
            return Err(StorageError::Closed);
        }
        if let Some(reason) = &st.fenced {
            return Err(StorageError::Fenced(reason.clone()));
        }
        if batch.len() > batch_bytes_max {
            return Err(StorageError::BatchTooLarge { batch_bytes: batch.len(), batch_bytes_max });
        }
        let header = BatchHeader::new(batch).expect("enqueue of an unvalidated batch");
        assert_eq!(header.batch_len() as usize, batch.len(), "enqueue of an unvalidated batch");
        // The journal's records (JRN2) rely on each batch's own CRC: a batch enqueued with a
        // wrong one would read as a torn record at replay.
        debug_assert_eq!(
            header.crc(),
            wire::batch::header::covered_crc(batch),
            "enqueue of a batch whose CRC does not match"
        );
        let base_offset = st.next_offset;
        let next_offset = base_offset + u64::from(header.record_count());
        st.next_offset = next_offset;
        Ok(Claim::new(ClaimParts {
            base_offset,
            next_offset,
            max_timestamp_ms: header.max_timestamp_ms(),
            len: batch.len(),
            ack,
            now_ms,
        }))
    }

    /// The second step of [`PartitionLog::claim`]: queues `bytes` (the claimed batch, its
    /// offsets and append time assigned) and returns where it landed. The log keeps the
    /// view (its cache, the journal and the segment writer read it) until it is written and
    /// no reader needs it. Fails, queuing nothing, if the log was fenced since the claim
    /// (an earlier store's journal submission failed: the fence took back the claimed
    /// offsets); so do the claims stored after it.
    pub fn store(&self, claim: Claim, bytes: ByteView) -> Result<AppendTicket, StorageError> {
        let ClaimParts { base_offset, next_offset, max_timestamp_ms, len, ack, now_ms } =
            claim.into_parts();
        let sh = &self.shared;
        {
            let st = sh.queue.borrow();
            if let Some(reason) = &st.fenced {
                return Err(StorageError::Fenced(reason.clone()));
            }
            if st.closing {
                return Err(StorageError::Closed);
            }
        }
        let header = BatchHeader::new(&bytes).expect("a claimed batch");
        assert!(
            bytes.len() == len
                && header.base_offset() == base_offset
                && header.log_append_time_ms() == now_ms,
            "stored batch ({} bytes at offset {}) is not the one claimed ({len} at {base_offset})",
            bytes.len(),
            header.base_offset()
        );
        let enqueued = std::time::Instant::now();
        let mut st = sh.queue.borrow_mut();
        debug_assert!(st.next_offset >= next_offset, "claims are stored in order");
        let (mut tx, rx) = match ack {
            AckLevel::None => (None, None),
            _ => {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            }
        };
        st.pending_bytes += len;
        let journaled = sh.journal.as_ref().map(|_| bytes.clone());
        if sh.journal.is_some() {
            // Durable (and `written`) once journaled, before the deferred segment write:
            // readers get it from `unwritten` meanwhile.
            sh.unwritten.push(base_offset, next_offset, bytes.clone());
            if let Some(tx) = tx.take() {
                st.durable_waiters.push_back((next_offset, tx));
            }
        }
        st.pending.push_back(Pending {
            base_offset,
            next_offset,
            max_timestamp_ms,
            append_ms: now_ms,
            bytes,
            ack,
            tx,
            enqueued,
        });
        // A writer deferring its segment write wakes only once this makes the write due.
        let wake_writer =
            sh.writer_deferred_bytes_due.get().is_none_or(|due| st.pending_bytes >= due);
        drop(st);
        if let (Some(j), Some(bytes)) = (&sh.journal, journaled) {
            if let Err(e) = j.submit(base_offset, next_offset, bytes, enqueued) {
                // The journal failed: nothing more becomes durable here (this append too
                // fails, through the fence).
                sh.fence(e);
            }
        }
        if wake_writer {
            sh.writer_signal.advance(sh.writer_signal.get() + 1);
        }
        Ok(AppendTicket {
            base_offset,
            last_offset: next_offset - 1,
            log_append_time_ms: now_ms,
            rx,
        })
    }

    /// Resolves once the queue of unwritten appends is below `pending_bytes_max` (with the
    /// shard journal, counting its appends not yet journaled), or appends are refused for
    /// lack of space (the queue would not drain until space returns: `enqueue` says so).
    pub async fn writable(&self) {
        loop {
            let seen = self.shared.space_signal.get();
            if self.shared.queued_bytes() < self.shared.config.pending_bytes_max
                || self.shared.no_space().is_some()
            {
                return;
            }
            self.shared.space_signal.wait_for(seen + 1).await;
        }
    }

    /// Waits for room, enqueues, and waits for the ack level: the one-call append.
    pub async fn append(
        &self,
        batch: &[u8],
        ack: AckLevel,
        now_ms: i64,
    ) -> Result<AppendTicketDone, StorageError> {
        self.writable().await;
        let t = self.enqueue(batch, ack, now_ms)?;
        let done = AppendTicketDone { base_offset: t.base_offset, last_offset: t.last_offset };
        t.wait().await?;
        Ok(done)
    }

    /// Largest batch this log accepts.
    pub fn batch_bytes_max(&self) -> usize {
        self.shared.config.batch_bytes_max
    }

    /// The high watermark: readers see data up to here (synced data, or written data with
    /// `read_unsynced`).
    pub fn high_watermark(&self) -> u64 {
        self.shared.visible.get()
    }

    /// End of the written data (or of the visible data, with the journal's deferred segment
    /// writes): offsets up to here are valid read positions (reads past the high watermark
    /// return nothing yet).
    pub fn written_offset(&self) -> u64 {
        self.shared.written.get().max(self.shared.visible.get())
    }

    /// Takes `config`'s values of the settings its topic may change while the log is open
    /// (retention, rolling, compaction, tombstone retention: `live_config.rs`); the rest
    /// stays.
    pub fn set_live_config(&self, config: &LogConfig) {
        self.shared.live.set(config);
    }

    /// End of the data written to segments (with the journal, batches past it are durable in
    /// memory only).
    #[cfg(test)]
    pub(crate) fn segment_written_offset(&self) -> u64 {
        self.shared.written.get()
    }

    /// The offset the next enqueued batch gets: the log's end counting appends not yet
    /// written or acked (what a conditional append compares with).
    pub fn next_offset(&self) -> u64 {
        self.shared.queue.borrow().next_offset
    }

    /// Waits until everything enqueued before `end` is visible to readers: `Ok(true)`.
    /// `Ok(false)`: appends failed after the call began (the log's end rolled back, maybe
    /// below `end`: those offsets are refused, then reused), and what is stored is visible. Fails when the log is fenced
    /// (what is not durable now never becomes visible) or closed. (Waiting on the high
    /// watermark alone would wait for ever in both cases.)
    pub async fn wait_visible(&self, end: u64) -> Result<bool, StorageError> {
        // A rollback seen by no wake (the end refilled by later appends first) counts too.
        let rollbacks = self.rollbacks();
        let mut rolled_back = false;
        loop {
            let seen = self.shared.space_signal.get();
            if let Some(reason) = self.shared.queue.borrow().fenced.clone() {
                return Err(StorageError::Fenced(reason));
            }
            let next = self.next_offset();
            rolled_back |= next < end;
            let target = end.min(next);
            if self.high_watermark() >= target {
                return Ok(!rolled_back && self.rollbacks() == rollbacks);
            }
            let visible = self.shared.visible.wait_for(target);
            let changed = self.shared.space_signal.wait_for(seen + 1);
            if !futures_lite::future::or(visible, changed).await {
                return Err(StorageError::Closed);
            }
        }
    }

    /// How many times appends failed and the log's end rolled back (or it was fenced):
    /// state derived from appends as they were enqueued may name offsets never stored.
    pub fn rollbacks(&self) -> u64 {
        self.shared.queue.borrow().rollbacks
    }

    /// The high watermark as a waitable value (long-poll fetch, subscriptions).
    pub fn high_watermark_mark(&self) -> &Watermark {
        &self.shared.visible
    }

    /// Offset after the last batch covered by an fdatasync.
    pub fn durable_offset(&self) -> u64 {
        self.shared.durable_offset.get()
    }

    /// First offset still stored.
    pub fn log_start_offset(&self) -> u64 {
        self.shared.log_start_offset.get()
    }

    /// Bytes stored: across segments, and with the shard journal the journaled batches
    /// whose deferred segment write is still to come (a log's size does not lag its appends
    /// by `journal_segment_write_delay_ms`).
    pub fn size_bytes(&self) -> u64 {
        let segments: u64 = self.shared.segments.borrow().iter().map(|s| s.size_bytes.get()).sum();
        segments + self.shared.unwritten.bytes()
    }

    /// Number of segments.
    pub fn segment_count(&self) -> usize {
        self.shared.segments.borrow().len()
    }

    /// Counters.
    pub fn stats(&self) -> LogStats {
        self.shared.stats.get()
    }

    /// Writes everything queued, syncs, persists the indexes, trims preallocated space and
    /// stops the log's tasks. Appends after this fail with `Closed`.
    pub async fn close(&self) -> Result<(), StorageError> {
        self.shared.queue.borrow_mut().closing = true;
        self.shared.writer_signal.advance(self.shared.writer_signal.get() + 1);
        self.shared.syncer_signal.advance(self.shared.syncer_signal.get() + 1);
        self.shared.deleter_signal.advance(self.shared.deleter_signal.get() + 1);
        let tasks: Vec<_> = self.tasks.borrow_mut().drain(..).collect();
        for t in tasks {
            t.await;
        }
        self.shared.written.close();
        self.shared.visible.close();
        if let Some(j) = &self.shared.journal {
            // Sealed (or fenced): a journal checkpoint waits for nothing more from here.
            j.member().synced.close();
        }
        // A compaction pass sees `closing` at its next step and ends: after it, nothing
        // touches the log's files (its directory may move next).
        let _pass = self.shared.pass.acquire_permit(1).await;
        // Likewise retention or a record deletion taking segments out, and a log start
        // checkpoint being written (`persist_log_start` sees `closing` and writes nothing).
        let _maintenance = self.shared.maintenance.acquire_permit(1).await;
        let _writing = self.shared.log_start_writing.acquire_permit(1).await;
        // The writer closed the active segment's files: the partition's reservation goes
        // now, not when the last handler lets go of the log.
        drop(self.reservation.borrow_mut().take());
        let fenced = self.shared.queue.borrow().fenced.clone();
        match fenced {
            Some(reason) => Err(StorageError::Fenced(reason)),
            None => Ok(()),
        }
    }

    /// Batches appended from an earlier run's journal when it opened
    /// ([`PartitionLog::open_journaled`]).
    pub fn replayed_batches(&self) -> usize {
        self.replayed_batches.get()
    }

    /// Directory of the log.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }
}

impl<D: Disk> Drop for PartitionLog<D> {
    fn drop(&mut self) {
        // A crash, unless close() ran: cancel the tasks where they stand.
        for t in self.tasks.borrow_mut().drain(..) {
            t.cancel();
        }
        if let Some(t) = self.shared.index_task.borrow_mut().take() {
            t.cancel();
        }
    }
}
