//! The log of one partition: append, group commit, read, retention, recovery.
//!
//! # Contract
//! - Owned by one shard; every method runs on that shard's executor. Any number of tasks may
//!   call [`PartitionLog::enqueue`], [`PartitionLog::read`] and the lookups concurrently.
//! - `enqueue` assigns offsets synchronously, in call order, and never blocks; callers apply
//!   backpressure by awaiting [`PartitionLog::writable`] first. The batch must already be
//!   validated (`wire::BatchView::validate`).
//! - One writer task appends queued batches in offset order, coalescing everything queued
//!   (up to `write_bytes_max`) into one O_DIRECT write that starts at the last partial page.
//!   A batch is acked `written` once its write completed.
//! - Readers see a batch, and the high watermark counts it, once an fdatasync covered it
//!   (with `read_unsynced`: once its write completed). So a consumer never sees data a
//!   power loss could take back, and an offset it saw is never reused for other bytes.
//! - One syncer task issues fdatasync whenever `durable` appends wait or written data is not
//!   yet visible; appends that complete while a sync runs share the next one (group
//!   commit). An append acked `durable` was covered by a completed fdatasync of its
//!   segment, trusted only after every sync of that file begun meanwhile ended with no sync
//!   failed since open (`sync_gate.rs`), or was written through the segment's O_DSYNC
//!   descriptor with everything before it durable; every earlier segment was synced when it
//!   was sealed. So it survives power loss.
//! - A failed write fails that write's appends and every queued append, and rolls the next
//!   offset back to the written end: nothing acked is affected and later appends work
//!   (disk full is recoverable). A failed fdatasync fences the log: the state of unsynced
//!   data is unknown, so appends are refused until the log is reopened (reads keep working).
//! - Retention removes a segment from the log at once (readers no longer find it), renames its
//!   `.log` to `.log.deleted` and syncs the directory; a deleter task then waits until no
//!   reader holds the segment and frees its space in paced truncation steps before unlinking
//!   it (see `LogConfig::delete_chunk_bytes`). `.deleted` files found at open are finished
//!   the same way. With `segment_recycle`, one deleted segment at a time is kept instead
//!   (`.log.spare`, kept across restarts) and becomes the next segment at a roll once no
//!   reader holds it: its old
//!   bytes past the new data are never served (reads stop at the segment's size), a write
//!   that ends the data puts a zeroed page after it (so recovery finds a clean end), recovery
//!   cuts whatever stale bytes follow the last valid batch, and sealing trims them.
//! - Dropping the log without `close` is a crash: tasks stop where they are.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use futures_channel::oneshot;
use glommio::task::JoinHandle;
use tracing::{debug, info, trace, warn};
use wire::{AckLevel, BatchHeader, Batches};

use super::bytes::ByteView;
use super::cache::PartitionCache;
use super::config::LogConfig;
use super::deleter::free_file;
use super::error::{IoError, StorageError};
use super::index::{OffsetIndex, TimeIndex, OFFSET_ENTRY_BYTES, TIME_ENTRY_BYTES};
use super::io::{Disk, DiskFile};
use super::segment::{
    align_down, align_up, file_name, parse_log_name, scan, ScannedBatch, Segment,
};
use super::zero_ahead::{ZeroAhead, ZeroProgress};
use crate::watermark::Watermark;

type Ack = oneshot::Sender<Result<(), StorageError>>;

/// Where an enqueued batch landed; await [`AppendTicket::wait`] for its ack level.
#[derive(Debug)]
pub struct AppendTicket {
    /// Offset of its first record.
    pub base_offset: u64,
    /// Offset of its last record.
    pub last_offset: u64,
    /// Broker time stamped into it.
    pub log_append_time_ms: i64,
    rx: Option<oneshot::Receiver<Result<(), StorageError>>>,
}

impl AppendTicket {
    /// Resolves when the requested ack level is reached (at once for `none`).
    pub async fn wait(self) -> Result<(), StorageError> {
        match self.rx {
            None => Ok(()),
            Some(rx) => rx.await.unwrap_or(Err(StorageError::Closed)),
        }
    }
}

/// Batches read from the log, exactly as stored.
#[derive(Debug, Default)]
pub struct ReadOutcome {
    /// Whole batches, in offset order (several batches may share one view).
    pub batches: Vec<ByteView>,
    /// The high watermark: readers see data up to here.
    pub high_watermark: u64,
    /// First offset still stored.
    pub log_start_offset: u64,
}

impl ReadOutcome {
    /// Total bytes read.
    pub fn bytes(&self) -> usize {
        self.batches.iter().map(ByteView::len).sum()
    }

    /// The batches as one contiguous buffer for a response, with how many batches it holds
    /// and the offset after the last one (`None` if empty). The batches were validated when
    /// they entered the log or were read from disk, so only their headers are walked.
    pub fn concat(&self) -> (Vec<u8>, u64, Option<u64>) {
        let mut bytes = Vec::with_capacity(self.bytes());
        let mut count = 0;
        let mut next = None;
        for v in &self.batches {
            for h in wire::batch::header::trusted_headers(v) {
                count += 1;
                next = Some(h.next_offset());
            }
            bytes.extend_from_slice(v);
        }
        (bytes, count, next)
    }
}

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
}

/// See the module docs.
pub struct PartitionLog<D: Disk> {
    shared: Rc<Shared<D>>,
    tasks: RefCell<Vec<JoinHandle<()>>>,
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

struct Shared<D: Disk> {
    disk: D,
    dir: PathBuf,
    config: LogConfig,
    segments: RefCell<Vec<Rc<Segment<D::File>>>>,
    /// End of the written data (the next append's offset once the queue drains).
    written: Watermark,
    /// End of what readers see: `durable_offset`, or `written` with `read_unsynced`.
    visible: Watermark,
    durable_offset: Cell<u64>,
    log_start_offset: Cell<u64>,
    st: RefCell<State>,
    writer_signal: Watermark,
    syncer_signal: Watermark,
    space_signal: Watermark,
    cache: PartitionCache,
    stats: Cell<LogStats>,
    /// Index files of the active segment, with how many entries each holds.
    active_index: RefCell<Option<IndexFiles<D::File>>>,
    /// Files retention took out of the log, waiting for the deleter task.
    deleting: RefCell<VecDeque<Doomed<D::File>>>,
    /// A deleted segment kept for the next roll (`segment_recycle`).
    spare: RefCell<Option<Doomed<D::File>>>,
    /// The background run persisting index entries (one at a time; see `persist_index_soon`).
    index_task: RefCell<Option<JoinHandle<()>>>,
    index_busy: Cell<bool>,
    index_done: Watermark,
    deleter_signal: Watermark,
    /// Advanced whenever a roll's background seal ends (retention waits on it).
    sealed_signal: Watermark,
}

/// A file on its way out: renamed to `*.deleted`; its segment (if still loaded) tells the
/// deleter when readers are done with it.
struct Doomed<F: DiskFile> {
    path: PathBuf,
    segment: Option<Rc<Segment<F>>>,
}

struct State {
    next_offset: u64,
    pending: VecDeque<Pending>,
    pending_bytes: usize,
    durable_waiters: VecDeque<(u64, Ack)>,
    fenced: Option<String>,
    closing: bool,
}

struct Pending {
    base_offset: u64,
    next_offset: u64,
    max_timestamp_ms: i64,
    append_ms: i64,
    bytes: ByteView,
    ack: AckLevel,
    tx: Option<Ack>,
}

/// An append-only file written through O_DIRECT: each write starts at the page holding the
/// end of the file and rewrites that partial page together with the new bytes.
struct TailAppender<F: DiskFile> {
    file: Rc<F>,
    size: u64,
    tail: Vec<u8>,
    allocated: u64,
}

impl<F: DiskFile> TailAppender<F> {
    fn new(file: Rc<F>, size: u64, tail: Vec<u8>) -> Self {
        assert_eq!(
            tail.len() as u64,
            size - align_down(size),
            "tail must be the partial last page"
        );
        TailAppender { file, size, tail, allocated: 0 }
    }

    /// Appends `chunks` in one write. On error nothing changes (the next write rewrites the
    /// same range).
    async fn append(&mut self, chunks: &[&[u8]], preallocate_bytes: u64) -> Result<(), IoError> {
        let page_start = align_down(self.size);
        let data_len: usize = chunks.iter().map(|c| c.len()).sum();
        if data_len == 0 {
            return Ok(());
        }
        let total = self.tail.len() + data_len;
        let buf_len = align_up(total as u64);
        if preallocate_bytes > 0 && page_start + buf_len > self.allocated {
            let target = (page_start + buf_len).max(self.allocated + preallocate_bytes);
            self.file.allocate(target).await?;
            self.allocated = target;
        }
        let mut buf = self.file.alloc_write_buf(buf_len as usize);
        let b = buf.as_mut();
        b[..self.tail.len()].copy_from_slice(&self.tail);
        let mut at = self.tail.len();
        for c in chunks {
            b[at..at + c.len()].copy_from_slice(c);
            at += c.len();
        }
        b[at..].fill(0);
        let new_size = self.size + data_len as u64;
        let new_tail_start = (align_down(new_size) - page_start) as usize;
        let new_tail = b[new_tail_start..total].to_vec();
        self.file.write_at(buf, page_start).await?;
        self.size = new_size;
        self.tail = new_tail;
        Ok(())
    }
}

/// An index file of the active segment, opened (empty) on its first write: an idle
/// partition holds one descriptor, its log, instead of three.
struct LazyAppender<F: DiskFile> {
    path: PathBuf,
    open: Option<TailAppender<F>>,
}

impl<F: DiskFile> LazyAppender<F> {
    fn new(path: PathBuf) -> Self {
        LazyAppender { path, open: None }
    }

    /// Opens the file now, emptied (its entries are then rewritten from the start).
    async fn open_empty<D: Disk<File = F>>(&mut self, disk: &D) -> Result<(), IoError> {
        if self.open.is_none() {
            let f = Rc::new(disk.open(&self.path, true).await?);
            f.truncate(0).await?;
            self.open = Some(TailAppender::new(f, 0, Vec::new()));
        }
        Ok(())
    }

    async fn append<D: Disk<File = F>>(&mut self, disk: &D, bytes: &[u8]) -> Result<(), IoError> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.open_empty(disk).await?;
        self.open.as_mut().expect("opened above").append(&[bytes], 0).await
    }

    async fn fdatasync(&self) -> Result<(), IoError> {
        match &self.open {
            Some(a) => a.file.fdatasync().await,
            None => Ok(()),
        }
    }
}

/// The `.index` and `.timeindex` of the active segment.
struct IndexFiles<F: DiskFile> {
    offsets: LazyAppender<F>,
    times: LazyAppender<F>,
    offsets_persisted: usize,
    times_persisted: usize,
}

impl<D: Disk> PartitionLog<D> {
    /// Opens (recovering) or creates the log in `dir`. See the module docs and
    /// `recover_segment` for what recovery checks and repairs.
    pub async fn open(
        disk: D,
        dir: PathBuf,
        config: LogConfig,
        cache: PartitionCache,
    ) -> Result<Self, StorageError> {
        disk.create_dir_all(&dir).await?;
        let names = disk.list_dir(&dir).await?;
        let mut bases: Vec<u64> = names.iter().filter_map(|n| parse_log_name(n)).collect();
        let mut deleting: VecDeque<Doomed<D::File>> = names
            .iter()
            .filter(|n| n.ends_with(DELETED_SUFFIX) || n.ends_with(SPARE_SUFFIX))
            .map(|n| Doomed { path: dir.join(n), segment: None })
            .collect();
        // A kept segment survives a restart (when recycling is still on).
        let spare = deleting
            .iter()
            .position(|d| {
                config.segment_recycle && d.path.to_string_lossy().ends_with(SPARE_SUFFIX)
            })
            .and_then(|i| deleting.remove(i));
        bases.sort_unstable();
        let mut segments: Vec<Rc<Segment<D::File>>> = Vec::new();
        let mut active_index = None;
        if bases.is_empty() {
            let (seg, files) = create_segment(&disk, &dir, 0).await?;
            segments.push(seg);
            active_index = Some(files);
        }
        for (i, &base) in bases.iter().enumerate() {
            let is_active = i + 1 == bases.len();
            let end_offset = bases.get(i + 1).copied().unwrap_or(u64::MAX);
            let (seg, files) =
                recover_segment(&disk, &dir, base, is_active, end_offset, &config).await?;
            if let Some(next) = bases.get(i + 1) {
                if seg.next_offset.get() != *next {
                    warn!(segment = %seg.log_path.display(), end = seg.next_offset.get(), next_base = next,
                        "segment ends before the next one starts; offsets in between are lost");
                }
            }
            segments.push(seg);
            active_index = files;
        }
        let active = segments.last().expect("at least one segment").clone();
        // Recovery synced the active segment; closed segments were synced when sealed (a
        // roll makes the next segment only after that sync succeeded).
        let hw = active.next_offset.get();
        let shared = Rc::new(Shared {
            disk,
            dir,
            config,
            log_start_offset: Cell::new(segments[0].base_offset),
            segments: RefCell::new(segments),
            written: Watermark::new(hw),
            visible: Watermark::new(hw),
            durable_offset: Cell::new(hw),
            st: RefCell::new(State {
                next_offset: hw,
                pending: VecDeque::new(),
                pending_bytes: 0,
                durable_waiters: VecDeque::new(),
                fenced: None,
                closing: false,
            }),
            writer_signal: Watermark::new(0),
            syncer_signal: Watermark::new(0),
            space_signal: Watermark::new(0),
            cache,
            stats: Cell::new(LogStats::default()),
            active_index: RefCell::new(active_index),
            deleting: RefCell::new(deleting),
            spare: RefCell::new(spare),
            index_task: RefCell::new(None),
            index_busy: Cell::new(false),
            index_done: Watermark::new(0),
            deleter_signal: Watermark::new(0),
            sealed_signal: Watermark::new(0),
        });
        let writer = glommio::spawn_local(writer_loop(shared.clone(), active)).detach();
        let syncer = glommio::spawn_local(syncer_loop(shared.clone())).detach();
        let deleter = glommio::spawn_local(deleter_loop(shared.clone())).detach();
        Ok(PartitionLog { shared, tasks: RefCell::new(vec![writer, syncer, deleter]) })
    }

    /// Queues a validated batch for append, assigns its offsets and log-append time in place
    /// (on the log's own copy) and returns where it landed. See the module docs.
    pub fn enqueue(
        &self,
        batch: &[u8],
        ack: AckLevel,
        now_ms: i64,
    ) -> Result<AppendTicket, StorageError> {
        let sh = &self.shared;
        let mut st = sh.st.borrow_mut();
        if st.closing {
            return Err(StorageError::Closed);
        }
        if let Some(reason) = &st.fenced {
            return Err(StorageError::Fenced(reason.clone()));
        }
        if batch.len() > sh.config.batch_bytes_max {
            return Err(StorageError::BatchTooLarge {
                batch_bytes: batch.len(),
                batch_bytes_max: sh.config.batch_bytes_max,
            });
        }
        let header = BatchHeader::new(batch).expect("enqueue of an unvalidated batch");
        assert_eq!(header.batch_len() as usize, batch.len(), "enqueue of an unvalidated batch");
        let base_offset = st.next_offset;
        let next_offset = base_offset + u64::from(header.record_count());
        let max_timestamp_ms = header.max_timestamp_ms();
        let mut owned = wire::to_aligned(batch);
        wire::batch::header::assign(&mut owned, base_offset, now_ms);
        let (tx, rx) = match ack {
            AckLevel::None => (None, None),
            _ => {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            }
        };
        st.next_offset = next_offset;
        st.pending_bytes += batch.len();
        st.pending.push_back(Pending {
            base_offset,
            next_offset,
            max_timestamp_ms,
            append_ms: now_ms,
            bytes: ByteView::new(Rc::new(owned)),
            ack,
            tx,
        });
        drop(st);
        sh.writer_signal.advance(sh.writer_signal.get() + 1);
        Ok(AppendTicket {
            base_offset,
            last_offset: next_offset - 1,
            log_append_time_ms: now_ms,
            rx,
        })
    }

    /// Resolves once the queue of unwritten appends is below `pending_bytes_max`.
    pub async fn writable(&self) {
        loop {
            let seen = self.shared.space_signal.get();
            if self.shared.st.borrow().pending_bytes < self.shared.config.pending_bytes_max {
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

    /// Reads whole batches starting with the one containing `offset`, up to `max_bytes` (at
    /// least one batch), from the cache when it reaches back that far, else from disk.
    /// An empty result means nothing at `offset` is visible yet (it is at or past the high
    /// watermark, up to the written end).
    pub async fn read(&self, offset: u64, max_bytes: usize) -> Result<ReadOutcome, StorageError> {
        let sh = &self.shared;
        let high_watermark = sh.visible.get();
        let log_start_offset = sh.log_start_offset.get();
        // Offsets past what readers see but already assigned (written, not yet synced) read
        // as empty, like the high watermark itself: a consumer may ask for the offset a
        // producer's `written` ack just reported.
        if offset < log_start_offset || offset > sh.written.get().max(high_watermark) {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset,
                high_watermark,
            });
        }
        let mut out = ReadOutcome { batches: Vec::new(), high_watermark, log_start_offset };
        if offset >= high_watermark {
            return Ok(out);
        }
        // Written but unsynced data past the high watermark may come along in a read (checked
        // after the read: writes go on while a disk read waits).
        if let Some(batches) = sh.cache.read(offset, max_bytes) {
            out.batches = batches;
            if high_watermark < sh.written.get() {
                trim_to(&mut out.batches, high_watermark);
            }
            return Ok(out);
        }
        let mut offset = offset;
        while offset < high_watermark {
            let Some(seg) = sh.segment_for(offset) else { break };
            if offset >= seg.next_offset.get() {
                // A gap left by damage in a closed segment: continue in the next one.
                match sh.segment_after(seg.base_offset) {
                    Some(next) => offset = next.base_offset,
                    None => break,
                }
                continue;
            }
            out.batches = seg.read(offset, max_bytes, sh.config.read_ahead_bytes).await?;
            if high_watermark < sh.written.get() {
                trim_to(&mut out.batches, high_watermark);
            }
            break;
        }
        Ok(out)
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

    /// End of the written data: offsets up to here are valid read positions (reads past the
    /// high watermark return nothing yet).
    pub fn written_offset(&self) -> u64 {
        self.shared.written.get()
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

    /// Bytes stored across segments.
    pub fn size_bytes(&self) -> u64 {
        self.shared.segments.borrow().iter().map(|s| s.size_bytes.get()).sum()
    }

    /// Number of segments.
    pub fn segment_count(&self) -> usize {
        self.shared.segments.borrow().len()
    }

    /// Counters.
    pub fn stats(&self) -> LogStats {
        self.shared.stats.get()
    }

    /// The first offset whose record has a timestamp at or after `timestamp_ms`, with that
    /// timestamp; `None` if every stored record is older.
    pub async fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<(u64, i64)>, StorageError> {
        // Only what readers see: an offset past the high watermark could be lost and reused.
        let visible = self.shared.visible.get();
        let segments: Vec<_> = self.shared.segments.borrow().clone();
        for seg in segments {
            if seg.max_timestamp_ms.get() < timestamp_ms || seg.size_bytes.get() == 0 {
                continue;
            }
            if seg.base_offset >= visible {
                break;
            }
            let mut offset =
                seg.base_offset + u64::from(seg.time_index.borrow().scan_start(timestamp_ms));
            while offset < seg.next_offset.get().min(visible) {
                let views = seg
                    .read(
                        offset,
                        self.shared.config.read_ahead_bytes,
                        self.shared.config.read_ahead_bytes,
                    )
                    .await?;
                if views.is_empty() {
                    break;
                }
                for view in &views {
                    for batch in Batches::new(view) {
                        let batch = batch.map_err(|e| StorageError::Corrupt {
                            file: seg.log_path.display().to_string(),
                            position: 0,
                            reason: e.to_string(),
                        })?;
                        if batch.header().next_offset() > visible {
                            return Ok(None);
                        }
                        offset = batch.header().next_offset();
                        if batch.header().max_timestamp_ms() < timestamp_ms {
                            continue;
                        }
                        if let Some(r) = batch.records().find(|r| r.timestamp_ms() >= timestamp_ms)
                        {
                            return Ok(Some((r.offset(), r.timestamp_ms())));
                        }
                    }
                }
            }
        }
        Ok(None)
    }

    /// Deletes whole closed segments beyond the retention size or older than the retention
    /// time; never the active one. Returns how many were deleted. Readers holding a deleted
    /// segment finish their read on the still-open file.
    pub async fn apply_retention(&self, now_ms: i64) -> Result<usize, StorageError> {
        let sh = &self.shared;
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
            if sh.st.borrow().closing {
                break;
            }
            let victim = {
                let segs = sh.segments.borrow();
                if segs.len() <= 1 {
                    break;
                }
                let first = &segs[0];
                let total: u64 = segs.iter().map(|s| s.size_bytes.get()).sum();
                let by_size = sh.config.retention_bytes >= 0
                    && total - first.size_bytes.get() >= sh.config.retention_bytes as u64;
                let by_time = sh.config.retention_ms >= 0
                    && first.max_timestamp_ms.get() < now_ms.saturating_sub(sh.config.retention_ms);
                if !(by_size || by_time) {
                    break;
                }
                first.clone()
            };
            {
                let mut segs = sh.segments.borrow_mut();
                segs.remove(0);
                sh.log_start_offset.set(segs[0].base_offset);
            }
            info!(segment = %victim.log_path.display(), next_offset = victim.next_offset.get(), "retention deleted segment");
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
                && victim.size_bytes.get() >= sh.config.segment_bytes_max / 2;
            let doomed =
                suffixed(&victim.log_path, if keep { SPARE_SUFFIX } else { DELETED_SUFFIX });
            match sh.disk.rename(&victim.log_path, &doomed).await {
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

    /// Writes everything queued, syncs, persists the indexes, trims preallocated space and
    /// stops the log's tasks. Appends after this fail with `Closed`.
    pub async fn close(&self) -> Result<(), StorageError> {
        self.shared.st.borrow_mut().closing = true;
        self.shared.writer_signal.advance(self.shared.writer_signal.get() + 1);
        self.shared.syncer_signal.advance(self.shared.syncer_signal.get() + 1);
        self.shared.deleter_signal.advance(self.shared.deleter_signal.get() + 1);
        let tasks: Vec<_> = self.tasks.borrow_mut().drain(..).collect();
        for t in tasks {
            t.await;
        }
        self.shared.written.close();
        self.shared.visible.close();
        let fenced = self.shared.st.borrow().fenced.clone();
        match fenced {
            Some(reason) => Err(StorageError::Fenced(reason)),
            None => Ok(()),
        }
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

/// Offsets of a completed [`PartitionLog::append`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendTicketDone {
    /// First offset.
    pub base_offset: u64,
    /// Last offset.
    pub last_offset: u64,
}

impl<D: Disk> Shared<D> {
    fn active(&self) -> Rc<Segment<D::File>> {
        self.segments.borrow().last().expect("a log has an active segment").clone()
    }

    fn segment_for(&self, offset: u64) -> Option<Rc<Segment<D::File>>> {
        let segs = self.segments.borrow();
        let i = segs.partition_point(|s| s.base_offset <= offset);
        (i > 0).then(|| segs[i - 1].clone())
    }

    fn segment_after(&self, base_offset: u64) -> Option<Rc<Segment<D::File>>> {
        self.segments.borrow().iter().find(|s| s.base_offset > base_offset).cloned()
    }

    fn bump_stats(&self, f: impl FnOnce(&mut LogStats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
    }

    /// Takes queued appends for one write: at least one, at most `write_bytes_max` bytes.
    fn take_pending(&self) -> Vec<Pending> {
        let mut st = self.st.borrow_mut();
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
    fn fail_appends(&self, items: Vec<Pending>, error: &StorageError) {
        let queued: Vec<Pending> = {
            let mut st = self.st.borrow_mut();
            st.pending_bytes = 0;
            st.next_offset = self.written.get();
            st.pending.drain(..).collect()
        };
        let n = items.len() + queued.len();
        for p in items.into_iter().chain(queued) {
            if let Some(tx) = p.tx {
                let _ = tx.send(Err(error.clone()));
            }
        }
        warn!(dir = %self.dir.display(), error = %error, appends = n, "append failed; next offset rolled back to {}", self.written.get());
        self.space_signal.advance(self.space_signal.get() + 1);
    }

    fn mark_durable(&self, offset: u64) {
        if self.st.borrow().fenced.is_some() {
            // A sync failed (possibly a concurrent one on the same file, which consumed the
            // error): nothing more becomes durable or visible.
            return;
        }
        if offset > self.durable_offset.get() {
            self.durable_offset.set(offset);
        }
        self.visible.advance(offset);
        let ready: Vec<Ack> = {
            let mut st = self.st.borrow_mut();
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

    /// fdatasync of a segment's `.log`, trusted only once every sync of that file begun
    /// before it returned has ended and the log is not fenced: no sync since the log opened
    /// failed (see `sync_gate.rs`). A failure fences the log.
    async fn sync_segment(&self, seg: &Segment<D::File>) -> Result<(), StorageError> {
        if let Err(e) = seg.syncs.sync(seg.log.clone()).await {
            self.fence(e.clone());
            return Err(e.into());
        }
        match self.st.borrow().fenced.clone() {
            Some(reason) => Err(StorageError::Fenced(reason)),
            None => Ok(()),
        }
    }

    fn fence(&self, error: IoError) {
        let reason = error.to_string();
        warn!(dir = %self.dir.display(), error = %reason, "fdatasync failed; log fenced until reopened");
        let (waiters, queued): (Vec<_>, Vec<_>) = {
            let mut st = self.st.borrow_mut();
            st.fenced = Some(reason.clone());
            st.pending_bytes = 0;
            st.next_offset = self.written.get();
            (st.durable_waiters.drain(..).collect(), st.pending.drain(..).collect())
        };
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

    fn needs_roll(&self, seg: &SegView, item: &Pending) -> bool {
        let size = seg.size;
        if size == 0 {
            return false;
        }
        let by_size = size + item.bytes.len() as u64 > self.config.segment_bytes_max;
        let first = seg.first_append_ms;
        let by_age = self.config.segment_ms > 0
            && first != i64::MAX
            && item.append_ms.saturating_sub(first) >= self.config.segment_ms;
        by_size || by_age
    }

    /// Persists index entries that describe durable data only, so an index entry found on
    /// disk after a crash always points at a batch that survived. Writes happen in runs of
    /// at least `INDEX_PERSIST_ENTRIES_MIN` entries unless `all`. Index files are hints:
    /// errors are logged, not returned.
    /// Persists index entries in a background task, off the writer's path, unless a run is
    /// already going (the next write's reap tries again).
    fn persist_index_soon(self: &Rc<Self>, seg: Rc<Segment<D::File>>) {
        if self.index_busy.get() {
            return;
        }
        let due = self
            .active_index
            .borrow()
            .as_ref()
            .is_some_and(|files| self.index_write_due(&seg, files, false).is_some());
        if !due {
            return; // most writes: nothing to persist, no task
        }
        self.index_busy.set(true);
        let sh = self.clone();
        let task = glommio::spawn_local(async move {
            sh.persist_index(&seg, false).await;
            sh.index_busy.set(false);
            sh.index_done.advance(sh.index_done.get() + 1);
        })
        .detach();
        *self.index_task.borrow_mut() = Some(task);
    }

    /// Waits until no background index run holds the active segment's index files.
    async fn index_idle(&self) {
        while self.index_busy.get() {
            let seen = self.index_done.get();
            self.index_done.wait_for(seen + 1).await;
        }
    }

    async fn persist_index(&self, seg: &Segment<D::File>, all: bool) {
        let Some(mut files) = self.active_index.borrow_mut().take() else { return };
        self.write_index_entries(seg, &mut files, all).await;
        *self.active_index.borrow_mut() = Some(files);
    }

    /// See [`Shared::persist_index`]; for any segment's files.
    async fn write_index_entries(
        &self,
        seg: &Segment<D::File>,
        files: &mut IndexFiles<D::File>,
        all: bool,
    ) {
        let Some((n_offsets, n_times)) = self.index_write_due(seg, files, all) else { return };
        let (offsets, times) = {
            let mut offsets = Vec::new();
            seg.index.borrow().encode_from(files.offsets_persisted, &mut offsets);
            offsets.truncate(n_offsets * OFFSET_ENTRY_BYTES);
            let mut times = Vec::new();
            seg.time_index.borrow().encode_from(files.times_persisted, &mut times);
            times.truncate(n_times * TIME_ENTRY_BYTES);
            (offsets, times)
        };
        let result = async {
            files.offsets.append(&self.disk, &offsets).await?;
            files.times.append(&self.disk, &times).await?;
            Ok::<(), IoError>(())
        }
        .await;
        match result {
            Ok(()) => {
                files.offsets_persisted += n_offsets;
                files.times_persisted += n_times;
            }
            Err(e) => {
                warn!(segment = %seg.log_path.display(), error = %e, "cannot write index files")
            }
        }
    }

    /// How many offset and time entries a write would persist now (those describing durable
    /// data, or all of them if `all`), if one is due: always with `all`, else once a run of
    /// `INDEX_PERSIST_ENTRIES_MIN` has gathered.
    fn index_write_due(
        &self,
        seg: &Segment<D::File>,
        files: &IndexFiles<D::File>,
        all: bool,
    ) -> Option<(usize, usize)> {
        let relative_end =
            if all { u64::MAX } else { self.durable_offset.get().saturating_sub(seg.base_offset) };
        let n_offsets = seg.index.borrow().count_below(files.offsets_persisted, relative_end);
        let n_times = seg.time_index.borrow().count_below(files.times_persisted, relative_end);
        (all || n_offsets.max(n_times) >= INDEX_PERSIST_ENTRIES_MIN).then_some((n_offsets, n_times))
    }

    /// The kept deleted segment, if no reader holds it any more.
    fn take_spare(&self) -> Option<Doomed<D::File>> {
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

/// Index entries are persisted in runs of at least this many (each run is one small write).
const INDEX_PERSIST_ENTRIES_MIN: usize = 64;

/// Turns a kept deleted segment into the new segment at `base_offset`: renamed (directory
/// synced) and reopened under its new name. Returns the segment, its (lazy) index files and
/// the reused file's length.
async fn recycle_segment<D: Disk>(
    sh: &Shared<D>,
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
    let len = seg.log.size().await?;
    sh.bump_stats(|s| s.segments_recycled += 1);
    Ok((seg, files, len))
}

/// Creates a new, empty segment and its index files, and makes their names durable.
async fn create_segment<D: Disk>(
    disk: &D,
    dir: &Path,
    base_offset: u64,
) -> Result<(Rc<Segment<D::File>>, IndexFiles<D::File>), StorageError> {
    create_segment_files(disk, dir, base_offset, true).await
}

/// Opens the segment at `base_offset` as empty (its `.log` emptied when `fresh`, else kept
/// as it is: a reused file whose bytes are stale), removes stale index files, syncs the
/// directory.
async fn create_segment_files<D: Disk>(
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
        offsets: LazyAppender::new(dir.join(file_name(base_offset, "index"))),
        times: LazyAppender::new(dir.join(file_name(base_offset, "timeindex"))),
        offsets_persisted: 0,
        times_persisted: 0,
    };
    Ok((seg, files))
}

/// Opens one segment found on disk.
///
/// Loads its indexes (keeping their longest valid prefix), then scans the log from the last
/// index entry, checking every batch's length, CRC32C, archive and offset sequence. For the
/// active segment the first invalid batch and everything after it is cut off (torn or corrupt
/// tail) and the cut is logged; for a closed segment the damage is fenced: reads stop before
/// it. A closed segment ends where the next one starts (`end_offset`): valid batches past
/// that are stale, e.g. a failed write's bytes that landed past the data while the seal's
/// trim never became durable. Missing indexes are rebuilt; with `recovery_full_check` every
/// segment is scanned whole.
async fn recover_segment<D: Disk>(
    disk: &D,
    dir: &Path,
    base_offset: u64,
    is_active: bool,
    end_offset: u64,
    config: &LogConfig,
) -> Result<(Rc<Segment<D::File>>, Option<IndexFiles<D::File>>), StorageError> {
    let log_path = dir.join(file_name(base_offset, "log"));
    let log = Rc::new(disk.open(&log_path, false).await?);
    let file_len = log.size().await?;
    let index_path = dir.join(file_name(base_offset, "index"));
    let time_path = dir.join(file_name(base_offset, "timeindex"));
    let (index_bytes, index_found) = read_whole(disk, &index_path).await?;
    let (time_bytes, time_found) = read_whole(disk, &time_path).await?;
    let mut index = OffsetIndex::decode(&index_bytes, file_len);
    let mut time_index = TimeIndex::decode(&time_bytes, u64::from(u32::MAX));
    let rebuild = !index_found || !time_found || config.recovery_full_check;
    if rebuild {
        index = OffsetIndex::default();
        time_index = TimeIndex::default();
    }

    let mut attempt = 0;
    let (seg, end) = loop {
        let (rel, pos) = index.last();
        let seg = Segment::new(
            base_offset,
            log.clone(),
            log_path.clone(),
            u64::from(pos),
            base_offset + u64::from(rel),
        );
        let mut kept_index = index.clone();
        kept_index.truncate_at_position(u64::from(pos) + 1);
        *seg.index.borrow_mut() = kept_index;
        let mut kept_times = time_index.clone();
        kept_times.truncate_at_offset(rel);
        if let Some(t) = kept_times.max_timestamp_ms() {
            seg.max_timestamp_ms.set(t);
        }
        *seg.time_index.borrow_mut() = kept_times;
        let mut scanned = 0u64;
        let end = scan(
            &*log,
            u64::from(pos),
            base_offset + u64::from(rel),
            end_offset,
            file_len,
            config.read_ahead_bytes.max(1 << 20),
            |b: &ScannedBatch, _| {
                seg.record(b, config.index_interval_bytes);
                scanned += 1;
            },
        )
        .await?;
        if scanned == 0 && pos > 0 && attempt == 0 {
            // The index points at something that is not the batch it names: distrust it.
            warn!(index = %index_path.display(), position = pos, "index entry does not match the log; rebuilding from the start");
            index = OffsetIndex::default();
            time_index = TimeIndex::default();
            attempt += 1;
            continue;
        }
        break (seg, end);
    };

    if let Some(damage) = &end.damage {
        if is_active {
            warn!(segment = %log_path.display(), valid_end = end.position, next_offset = end.next_offset,
                cut_bytes = file_len - end.position, reason = %damage, "truncating torn or corrupt tail");
        } else {
            warn!(segment = %log_path.display(), valid_end = end.position, next_offset = end.next_offset,
                fenced_bytes = file_len - end.position, reason = %damage, "closed segment damaged; reads stop before the damage");
        }
    } else if end.position < file_len {
        debug!(segment = %log_path.display(), valid_end = end.position, file_len, "zeroed space after the last batch");
    }
    if is_active {
        if end.position < file_len {
            log.truncate(end.position).await?;
        }
        // What recovery found may never have been synced (a clean stop of a fenced log, or a
        // process crash without power loss), and may still sit in the device's volatile
        // cache: make it durable before it counts as such. With O_DIRECT what recovery read
        // is what the device holds, so a sync through this new descriptor covers it even
        // after an earlier failed sync (no page cache whose failed pages were dropped).
        log.fdatasync().await?;
    }
    seg.durable_bytes.set(end.position);

    let seg = Rc::new(seg);
    let files = if is_active || rebuild {
        // Rewrite the index files from what recovery now knows (they may hold stale entries
        // past a cut), then keep them open for the active segment. An active segment with no
        // entries and no files leaves them unopened until its first entries.
        let mut files = IndexFiles {
            offsets: LazyAppender::new(index_path.clone()),
            times: LazyAppender::new(time_path.clone()),
            offsets_persisted: 0,
            times_persisted: 0,
        };
        // A file with content is emptied now (whatever is rewritten below); an empty one is
        // already right and stays closed until entries come.
        if index_found && !index_bytes.is_empty() {
            files.offsets.open_empty(disk).await?;
        }
        if time_found && !time_bytes.is_empty() {
            files.times.open_empty(disk).await?;
        }
        let mut ob = Vec::new();
        seg.index.borrow().encode_from(0, &mut ob);
        let mut tb = Vec::new();
        if !is_active {
            let rel = u32::try_from(seg.next_offset.get().saturating_sub(base_offset + 1))
                .unwrap_or(u32::MAX);
            seg.time_index.borrow_mut().push(seg.max_timestamp_ms.get(), rel);
        }
        seg.time_index.borrow().encode_from(0, &mut tb);
        let ok = async {
            files.offsets.append(disk, &ob).await?;
            files.times.append(disk, &tb).await?;
            files.offsets.fdatasync().await?;
            files.times.fdatasync().await
        }
        .await;
        match ok {
            Ok(()) => {
                files.offsets_persisted = seg.index.borrow().len();
                files.times_persisted = seg.time_index.borrow().len();
            }
            Err(e) => {
                warn!(segment = %log_path.display(), error = %e, "cannot rewrite index files")
            }
        }
        is_active.then_some(files)
    } else {
        None
    };
    Ok((seg, files))
}

/// Reads a whole (small) file; `(bytes, existed)`.
async fn read_whole<D: Disk>(disk: &D, path: &Path) -> Result<(Vec<u8>, bool), StorageError> {
    match disk.open(path, false).await {
        Ok(f) => {
            let len = f.size().await?;
            if len == 0 {
                Rc::new(f).close().await?;
                return Ok((Vec::new(), true));
            }
            let buf = f.read_at(0, align_up(len) as usize).await?;
            let bytes = buf.as_ref()[..(len as usize).min(buf.as_ref().len())].to_vec();
            Rc::new(f).close().await?;
            Ok((bytes, true))
        }
        Err(IoError::NotFound { .. }) => Ok((Vec::new(), false)),
        Err(e) => Err(e.into()),
    }
}

/// Writes that may be in flight at once for one partition.
const WRITE_DEPTH_MAX: usize = 4;

/// Largest zero-ahead write (at most a quarter of `zero_ahead_bytes`): small, so a data
/// write arriving meanwhile waits little behind it on the device.
const ZERO_PIECE_BYTES: u64 = 256 << 10;

/// One write submitted to the device and not yet reaped.
struct InFlight {
    task: JoinHandle<Result<(), IoError>>,
    /// Logical end of the data this write completes (all data before it is in this write or
    /// in earlier ones).
    data_end: u64,
    /// It ends inside a page, which the next write rewrites: that write must wait for it.
    partial: bool,
    /// Went through the O_DSYNC descriptor with everything before it durable: its data is
    /// durable once it completes.
    dsync: bool,
}

/// The writer task's state for the active segment.
///
/// Writes are pipelined: while more data is queued, each write ends on a page boundary and
/// the bytes of the last partial page are carried into the next write, so up to
/// `WRITE_DEPTH_MAX` writes touch disjoint pages and can be in flight together. When the
/// queue runs dry the carried bytes go out in a padded write of the partial page; a later
/// write rewrites that page and so waits until it completed. Writes are reaped in order;
/// a batch is written once the write holding its last byte and every earlier one completed.
struct Writer<D: Disk> {
    sh: Rc<Shared<D>>,
    seg: Rc<Segment<D::File>>,
    /// Logical end of everything submitted (carried bytes included).
    submitted: u64,
    /// Bytes `[align_down(submitted), submitted)`.
    tail: Vec<u8>,
    /// The tail holds bytes that no submitted write carries yet.
    tail_dirty: bool,
    /// End of the data covered by reaped, successful writes.
    reaped: u64,
    allocated: u64,
    /// The segment reuses a deleted one's file: bytes below this, past the data, are stale.
    stale_end: u64,
    /// The last write put a zeroed page after the data (see `write`).
    end_marked: bool,
    /// The segment (by base offset) whose O_DSYNC descriptor could not be opened.
    dsync_failed: Option<u64>,
    /// Closed segments finishing their seal in the background.
    sealing: VecDeque<JoinHandle<Result<(), StorageError>>>,
    inflight: VecDeque<InFlight>,
    /// Appends submitted but not yet reaped, with their end positions.
    items: VecDeque<(u64, Pending)>,
    /// Zeros past the active segment's data (`LogConfig::zero_ahead_bytes`).
    zero: ZeroAhead<D::File>,
    /// Since when the writer has had nothing in flight or queued (`None` while busy).
    idle_since: Option<std::time::Instant>,
    /// Length of the last idle gap that ended.
    last_gap: std::time::Duration,
}

/// The writer task: see the module docs and [`Writer`].
async fn writer_loop<D: Disk>(sh: Rc<Shared<D>>, active: Rc<Segment<D::File>>) {
    let size = active.size_bytes.get();
    let tail = match read_tail(&*active.log, size).await {
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
        idle_since: None,
        last_gap: std::time::Duration::ZERO,
    };
    loop {
        let seen = w.sh.writer_signal.get();
        w.zero_tick().await;
        let has_pending = !w.sh.st.borrow().pending.is_empty();
        let last_partial = w.inflight.back().is_some_and(|f| f.partial);
        if (has_pending || w.tail_dirty) && w.inflight.len() < WRITE_DEPTH_MAX && !last_partial {
            let items = w.sh.take_pending();
            let fenced = w.sh.st.borrow().fenced.clone();
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
            if let Err(e) = w.reap_one().await {
                w.fail(Vec::new(), e).await;
            }
            continue;
        }
        if w.sh.st.borrow().closing && !has_pending {
            w.close().await;
            return;
        }
        w.sh.writer_signal.wait_for(seen + 1).await;
    }
}

impl<D: Disk> Writer<D> {
    /// Submits `items` (rolling segments first when needed). On error returns the items that
    /// were not submitted.
    async fn submit(
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
                        <= self.sh.config.segment_bytes_max
                        && !self.sh.needs_roll(&self.seg_view(), &items[run])))
            {
                run_bytes += items[run].bytes.len() as u64;
                run += 1;
            }
            let rest = items.split_off(run);
            let flush = rest.is_empty() && self.sh.st.borrow().pending.is_empty();
            let chunks: Vec<ByteView> = items.iter().map(|p| p.bytes.clone()).collect();
            let durable = items.iter().any(|p| p.ack == AckLevel::Durable);
            if let Err(e) = self.write(&chunks, flush, durable).await {
                return Err((items.into_iter().chain(rest).collect(), e));
            }
            let mut end = self.submitted - run_bytes;
            for p in items {
                end += p.bytes.len() as u64;
                self.items.push_back((end, p));
            }
            items = rest;
        }
        if self.tail_dirty
            && self.sh.st.borrow().pending.is_empty()
            && !self.inflight.back().is_some_and(|f| f.partial)
        {
            // Nothing more is queued: put the carried bytes on disk now.
            self.write(&[], true, false).await.map_err(|e| (Vec::new(), e))?;
        }
        Ok(())
    }

    /// The segment as seen for roll decisions: its size is what has been submitted.
    fn seg_view(&self) -> SegView {
        SegView { size: self.submitted, first_append_ms: self.seg.first_append_ms.get() }
    }

    /// Builds and submits one write of the carried tail plus `chunks`; ends on a page
    /// boundary unless `flush`.
    async fn write(
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
            && self.inflight.is_empty()
            && self.seg.durable_bytes.get() >= self.submitted
            && self.sh.st.borrow().fenced.is_none()
        {
            self.dsync_file().await
        } else {
            None
        };
        let target = dsync_file.clone().unwrap_or_else(|| self.seg.log.clone());
        let buf_len = write_len + if end_mark { DISK_ALIGN_U } else { 0 };
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
        let partial = flush && (total % DISK_ALIGN_U != 0 || end_mark);
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
            let task =
                glommio::spawn_local(async move { file.write_at(buf, page_start).await }).detach();
            self.inflight.push_back(InFlight { task, data_end, partial, dsync });
            self.sh.bump_stats(|s| {
                s.writes += 1;
                s.bytes_written += data_len as u64;
                s.dsync_writes += u64::from(dsync);
            });
        }
        self.submitted = new_submitted;
        self.tail = new_tail;
        self.tail_dirty = !flush && !self.tail.is_empty();
        Ok(())
    }

    /// Reserves space up to at least `need` (in `preallocate_bytes` steps, within the
    /// segment's maximum size).
    async fn ensure_allocated(&mut self, need: u64) -> Result<(), IoError> {
        let step = self.sh.config.preallocate_bytes.min(self.sh.config.segment_bytes_max);
        if step > 0 && need > self.allocated {
            let target =
                need.max(self.allocated + step).min(self.sh.config.segment_bytes_max.max(need));
            self.seg.log.allocate(target).await?;
            self.allocated = target;
        }
        Ok(())
    }

    /// Collects finished zero-ahead work and, while this partition has no write in flight
    /// and nothing queued, starts the next zero piece when one is due. Zeros run at most
    /// `zero_ahead_bytes` past the data, and never further ahead than the data this writer
    /// has appended to the segment: an idle partition (or a restart) writes no zeros, and
    /// zeros never outnumber data.
    async fn zero_tick(&mut self) {
        let c = &self.sh.config;
        if c.zero_ahead_bytes == 0 || c.preallocate_bytes == 0 {
            return; // off: no zero work is ever started
        }
        let progress = self.zero.settle().await;
        self.count_zero(progress);
        if !self.inflight.is_empty() || !self.sh.st.borrow().pending.is_empty() {
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
            || self.sh.st.borrow().fenced.is_some()
            || self.sh.st.borrow().closing
        {
            return;
        }
        let piece =
            align_down(ZERO_PIECE_BYTES.min(c.zero_ahead_bytes / 4)).max(DISK_ALIGN_U as u64);
        let data_end = align_up(self.submitted);
        // One piece of room past the data: the next data write rarely waits for zeros.
        let floor = data_end + piece;
        let lead = self.zero.lead_bytes(self.submitted, c.zero_ahead_bytes);
        let target = (data_end + lead).min(align_down(c.segment_bytes_max));
        let refill_at = data_end + lead / 2;
        let Some((start, end, goal)) = self.zero.next_piece(floor, refill_at, target, piece) else {
            return;
        };
        if let Err(e) = self.ensure_allocated(end).await {
            debug!(segment = %self.seg.log_path.display(), error = %e, "no space to zero ahead");
            self.zero.stop();
            return;
        }
        let mut buf = self.seg.log.alloc_write_buf((end - start) as usize);
        buf.as_mut().fill(0);
        self.zero.start(buf, start, goal);
    }

    fn count_zero(&self, p: ZeroProgress) {
        if p != ZeroProgress::default() {
            self.sh.bump_stats(|s| {
                s.zeroed_bytes += p.zeroed_bytes;
                s.zero_syncs += p.syncs;
                s.zero_waits += p.waits;
            });
        }
    }

    /// The active segment's O_DSYNC descriptor, opened on first use; `None` (and plain
    /// write + fdatasync) if it cannot be opened.
    async fn dsync_file(&mut self) -> Option<Rc<D::File>> {
        if let Some(f) = self.seg.dsync.borrow().as_ref() {
            return Some(f.clone());
        }
        if self.dsync_failed == Some(self.seg.base_offset) {
            return None;
        }
        match self.sh.disk.open_dsync(&self.seg.log_path).await {
            Ok(f) => {
                let f = Rc::new(f);
                *self.seg.dsync.borrow_mut() = Some(f.clone());
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
    async fn reap_one(&mut self) -> Result<(), StorageError> {
        // Awaited in place: a writer cancelled meanwhile (a crash) cancels the write too.
        let front = self.inflight.front_mut().expect("a write in flight");
        let done = (&mut front.task).await;
        let f = self.inflight.pop_front().expect("awaited in place");
        match done {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(e.into()),
            None => return Err(StorageError::Closed),
        }
        self.reaped = f.data_end;
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
                    let fenced = sh.st.borrow().fenced.clone();
                    if let Some(reason) = fenced {
                        let _ = tx.send(Err(StorageError::Fenced(reason)));
                    } else {
                        sh.st.borrow_mut().durable_waiters.push_back((p.next_offset, tx));
                        any_durable = true;
                    }
                }
                (_, Some(tx)) => {
                    let _ = tx.send(Ok(()));
                }
                (_, None) => {}
            }
        }
        if f.dsync && sh.st.borrow().fenced.is_none() {
            // Nothing before it was unsynced and nothing else was in flight: everything
            // written so far is durable.
            if f.data_end > self.seg.durable_bytes.get() {
                self.seg.durable_bytes.set(f.data_end);
            }
            sh.mark_durable(sh.written.get());
        } else if any_durable || !sh.config.read_unsynced {
            sh.syncer_signal.advance(sh.syncer_signal.get() + 1);
        }
        sh.persist_index_soon(self.seg.clone());
        Ok(())
    }

    /// A write failed: let the others finish (their data follows the failure and is
    /// discarded), fail every unwritten append, and restart from the last good position.
    async fn fail(&mut self, extra: Vec<Pending>, e: StorageError) {
        while let Some(f) = self.inflight.front_mut() {
            let _ = (&mut f.task).await;
            self.inflight.pop_front();
        }
        let items: Vec<Pending> = self.items.drain(..).map(|(_, p)| p).chain(extra).collect();
        self.sh.fail_appends(items, &e);
        // Restart after the last complete batch (a reaped write may have ended mid-batch).
        self.reaped = self.seg.size_bytes.get();
        self.submitted = self.reaped;
        self.tail_dirty = false;
        match read_tail(&*self.seg.log, self.reaped).await {
            Ok(t) => self.tail = t,
            Err(io) => self.sh.fence(io),
        }
    }

    /// Completes everything in flight and flushes carried bytes.
    async fn drain(&mut self) -> Result<(), StorageError> {
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

    /// In a reused file whose data ends on a page boundary after a plain write: a zeroed
    /// page after the data, so recovery finds a clean end even before the trim.
    async fn mark_end(&mut self) -> Result<(), StorageError> {
        if self.stale_end <= self.submitted || self.end_marked || !self.tail.is_empty() {
            return Ok(()); // no stale bytes, already marked, or the tail write carried a mark
        }
        let mut buf = self.seg.log.alloc_write_buf(DISK_ALIGN_U);
        buf.as_mut().fill(0);
        let end = self.submitted + DISK_ALIGN_U as u64;
        let zeroing = self.zero.before_write(self.submitted, end).await;
        self.count_zero(zeroing);
        self.seg.log.write_at(buf, self.submitted).await?;
        self.end_marked = true;
        Ok(())
    }

    async fn roll(&mut self, base_offset: u64) -> Result<(), StorageError> {
        self.drain().await?;
        self.mark_end().await?;
        // Nothing may still write into the old file when its seal trims it.
        let zeroing = self.zero.finish().await;
        self.count_zero(zeroing);
        // Only the old segment's data sync stands between the roll and new appends; its
        // index files and trim finish in the background.
        sync_sealed(&self.sh, &self.seg).await?;
        let dsync = self.seg.dsync.borrow_mut().take();
        if let Some(f) = dsync {
            let _ = f.close().await;
        }
        self.sh.index_idle().await;
        let old_files = self.sh.active_index.borrow_mut().take();
        let (old, allocated) = (self.seg.clone(), self.allocated);
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
            None => {
                let (seg, files) = create_segment(&self.sh.disk, &self.sh.dir, base_offset).await?;
                (seg, files, 0)
            }
        };
        info!(segment = %seg.log_path.display(), reused_bytes, "rolled to a new segment");
        // Marked before the new segment makes it deletable by retention.
        old.sealing.set(true);
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
        while self.sealing.len() >= 4 {
            let _ = self.sealing.pop_front().expect("nonempty").await;
        }
        let sh = self.sh.clone();
        self.sealing.push_back(
            glommio::spawn_local(async move {
                let done = finish_seal(&sh, &old, old_files, allocated).await;
                old.sealing.set(false);
                sh.sealed_signal.advance(sh.sealed_signal.get() + 1);
                done
            })
            .detach(),
        );
        Ok(())
    }

    async fn close(&mut self) {
        while let Some(t) = self.sealing.pop_front() {
            let _ = t.await;
        }
        if let Err(e) = self.drain().await {
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

const DISK_ALIGN_U: usize = super::io::DISK_ALIGN;

/// Zero-ahead for `seg`, whose first `zeroed_end` bytes are written blocks already and whose
/// data this writer starts appending at `origin`; a failed zero-ahead sync fences the log.
fn new_zero_ahead<D: Disk>(
    sh: &Rc<Shared<D>>,
    seg: &Segment<D::File>,
    zeroed_end: u64,
    origin: u64,
) -> ZeroAhead<D::File> {
    let fence = Rc::downgrade(sh);
    ZeroAhead::new(
        seg.log.clone(),
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

/// What a roll decision needs to know about the active segment.
struct SegView {
    size: u64,
    first_append_ms: i64,
}

/// Reads the partial last page of a segment so the next write can rewrite it.
async fn read_tail<F: DiskFile>(file: &F, size: u64) -> Result<Vec<u8>, IoError> {
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

/// Makes a segment complete on disk: its data synced, then the final index entries
/// (synced), then the preallocated space trimmed.
async fn seal<D: Disk>(
    sh: &Rc<Shared<D>>,
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
async fn sync_sealed<D: Disk>(
    sh: &Rc<Shared<D>>,
    seg: &Rc<Segment<D::File>>,
) -> Result<(), StorageError> {
    sh.sync_segment(seg).await?;
    sh.bump_stats(|s| s.syncs += 1);
    seg.durable_bytes.set(seg.size_bytes.get());
    sh.mark_durable(seg.next_offset.get());
    if seg.size_bytes.get() > 0 {
        let rel = u32::try_from(seg.next_offset.get() - 1 - seg.base_offset).unwrap_or(u32::MAX);
        seg.time_index.borrow_mut().push(seg.max_timestamp_ms.get(), rel);
    }
    Ok(())
}

/// The rest, which at a roll runs in the background: the index files completed and synced
/// (they are hints), the space past the data trimmed (its end is already marked).
async fn finish_seal<D: Disk>(
    sh: &Rc<Shared<D>>,
    seg: &Rc<Segment<D::File>>,
    files: Option<IndexFiles<D::File>>,
    allocated: u64,
) -> Result<(), StorageError> {
    if let Some(mut files) = files {
        sh.write_index_entries(seg, &mut files, true).await;
        // A closed segment keeps both files, even empty, so a restart trusts them instead of
        // rescanning the segment.
        for f in [&mut files.offsets, &mut files.times] {
            if let Err(e) = f.open_empty(&sh.disk).await {
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
        if let Err(e) = seg.log.truncate(seg.size_bytes.get()).await {
            warn!(segment = %seg.log_path.display(), error = %e, "cannot trim preallocated space");
        } else {
            sh.sync_segment(seg).await?;
        }
    }
    Ok(())
}

/// On close: seal the active segment, answer every waiter, close files.
async fn seal_on_close<D: Disk>(sh: &Rc<Shared<D>>, active: &Rc<Segment<D::File>>, allocated: u64) {
    if sh.st.borrow().fenced.is_none() {
        if let Err(e) = seal(sh, active, allocated).await {
            warn!(error = %e, "final sync on close failed");
        }
    }
    sh.syncer_signal.advance(sh.syncer_signal.get() + 1);
    let segments: Vec<_> = sh.segments.borrow().clone();
    for seg in segments {
        let dsync = seg.dsync.borrow_mut().take();
        if let Some(f) = dsync {
            let _ = f.close().await;
        }
        let _ = seg.log.clone().close().await;
    }
}

/// Suffix of a segment file retention took out of the log.
const DELETED_SUFFIX: &str = ".deleted";
/// Suffix of a deleted segment kept for reuse (`segment_recycle`).
const SPARE_SUFFIX: &str = ".spare";

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The deleter task: frees the space of files retention took out of the log, in paced
/// truncation steps, once no reader holds them. Stops (leaving the rest for the next open)
/// when the log closes.
async fn deleter_loop<D: Disk>(sh: Rc<Shared<D>>) {
    loop {
        let seen = sh.deleter_signal.get();
        if sh.st.borrow().closing {
            return;
        }
        let next = sh.deleting.borrow_mut().pop_front();
        let Some(doomed) = next else {
            sh.deleter_signal.wait_for(seen + 1).await;
            continue;
        };
        if let Some(seg) = doomed.segment {
            // Readers that found the segment before retention finish on the open file.
            while Rc::strong_count(&seg) > 1 && !sh.st.borrow().closing {
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
        let stop = || sh.st.borrow().closing;
        match free_file(&sh.disk, &doomed.path, sh.config.delete_pace(), &stop).await {
            Ok(true) => debug!(path = %doomed.path.display(), "deleted segment file removed"),
            Ok(false) => return, // the rest goes at the next open
            Err(e) => {
                warn!(path = %doomed.path.display(), error = %e, "cannot free deleted segment")
            }
        }
    }
}

/// The syncer task: see the module docs.
async fn syncer_loop<D: Disk>(sh: Rc<Shared<D>>) {
    loop {
        let seen = sh.syncer_signal.get();
        let fenced = sh.st.borrow().fenced.clone();
        if let Some(reason) = fenced {
            // After a failed sync nothing more becomes durable: fail whoever still waits.
            let waiters: Vec<_> = sh.st.borrow_mut().durable_waiters.drain(..).collect();
            for (_, tx) in waiters {
                let _ = tx.send(Err(StorageError::Fenced(reason.clone())));
            }
            if sh.st.borrow().closing {
                return;
            }
            sh.syncer_signal.wait_for(seen + 1).await;
            continue;
        }
        let (waiting, closing) = {
            let st = sh.st.borrow();
            // Readers see only synced data (unless `read_unsynced`): written data is synced
            // whether or not an append asked for `durable`.
            let unsynced_visible =
                !sh.config.read_unsynced && sh.written.get() > sh.durable_offset.get();
            (!st.durable_waiters.is_empty() || unsynced_visible, st.closing)
        };
        if !waiting {
            if closing && sh.st.borrow().pending.is_empty() {
                return;
            }
            sh.syncer_signal.wait_for(seen + 1).await;
            continue;
        }
        if sh.config.group_commit_delay_us > 0 {
            let unsynced =
                sh.active().size_bytes.get().saturating_sub(sh.active().durable_bytes.get());
            if unsynced < sh.config.group_commit_bytes_max {
                glommio::timer::sleep(std::time::Duration::from_micros(
                    sh.config.group_commit_delay_us,
                ))
                .await;
            }
        }
        let target = sh.written.get();
        let seg = sh.active();
        let size = seg.size_bytes.get();
        if sh.sync_segment(&seg).await.is_ok() {
            sh.bump_stats(|s| s.syncs += 1);
            if size > seg.durable_bytes.get() {
                seg.durable_bytes.set(size);
            }
            trace!(target, seg = seg.base_offset, size, "synced");
            sh.mark_durable(target);
        }
    }
}

/// Cuts `batches` (whole batches, in offset order) before the first batch that ends past
/// `end`.
fn trim_to(batches: &mut Vec<ByteView>, end: u64) {
    for i in 0..batches.len() {
        let mut keep = 0usize;
        let mut cut = false;
        for h in wire::batch::header::trusted_headers(&batches[i]) {
            if h.next_offset() > end {
                cut = true;
                break;
            }
            keep += h.batch_len() as usize;
        }
        if cut {
            if keep == 0 {
                batches.truncate(i);
            } else {
                batches[i] = batches[i].slice(0, keep);
                batches.truncate(i + 1);
            }
            return;
        }
    }
}
