//! Reads: with the journal the batches not yet written first, then the cache, then the
//! segments.
//!
//! Contract: whole batches, exactly as stored, in offset order; never past the high
//! watermark (`visible`: data covered by a trusted sync, or written data with
//! `read_unsynced`), so a consumer never sees a batch a power loss could take back and an
//! offset it saw is never reused for other bytes. A gap left by damage in a closed segment
//! is skipped. Reads run on the owning shard, concurrently with the writer and syncer.

use wire::{AlignedVec, Envelopes};

use super::PartitionLog;
use crate::storage::bytes::ByteView;
use crate::storage::error::StorageError;
use crate::storage::io::Disk;
use crate::storage::{BatchBytes, FirstBatch};

/// The most a batch's records take decompressed (a larger length in a header is damage).
const UNCOMPRESSED_BYTES_MAX: usize =
    wire::batch::compression::UNCOMPRESSED_RECORDS_BYTES_MAX as usize;

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

    /// The batches as one contiguous buffer.
    pub fn concat(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.bytes());
        for v in &self.batches {
            bytes.extend_from_slice(v);
        }
        bytes
    }

    /// How many batches and records were read and the offset after the last one, in one
    /// walk of their headers (the batches were validated when they entered the log or were
    /// read from disk).
    pub fn count(&self) -> BatchCount {
        let mut count = BatchCount::default();
        for h in self.batches.iter().flat_map(|v| wire::batch::header::trusted_headers(v)) {
            count.batches += 1;
            count.records += u64::from(h.record_count());
            count.next_offset = Some(h.next_offset());
        }
        count
    }
}

/// What [`ReadOutcome::count`] found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchCount {
    /// Batches.
    pub batches: u64,
    /// Records in them.
    pub records: u64,
    /// The offset after the last batch (`None` if none was read).
    pub next_offset: Option<u64>,
}

impl<D: Disk> PartitionLog<D> {
    /// Reads whole batches starting with the one containing `offset`, up to `max_bytes` (the
    /// first one even beyond it if `first` is [`FirstBatch::Always`]), from the cache when it
    /// reaches back that far, else from disk. An empty result means nothing at `offset` is
    /// visible yet (it is at or past the high watermark, up to the written end), or, with
    /// [`FirstBatch::IfItFits`], that the batch there does not fit `max_bytes`.
    pub async fn read(
        &self,
        offset: u64,
        max_bytes: usize,
        first: FirstBatch,
    ) -> Result<ReadOutcome, StorageError> {
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
        if offset >= high_watermark || (max_bytes == 0 && first == FirstBatch::IfItFits) {
            return Ok(out);
        }
        // With the journal, durable batches past the written end are still in memory only.
        if offset >= sh.written.get() {
            if let Some(batches) = sh.unwritten.read(offset, max_bytes, first) {
                sh.bump_stats(|s| s.cache_reads += 1);
                out.batches = ByteView::coalesce(batches);
                trim_to(&mut out.batches, high_watermark);
                return Ok(out);
            }
        }
        // Written but unsynced data past the high watermark may come along in a read (checked
        // after the read: writes go on while a disk read waits).
        if let Some(batches) = sh.cache.read(offset, max_bytes, first) {
            sh.bump_stats(|s| s.cache_reads += 1);
            out.batches = ByteView::coalesce(batches);
            if high_watermark < sh.written.get() {
                trim_to(&mut out.batches, high_watermark);
            }
            self.read_on_past_written(&mut out, max_bytes);
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
            sh.bump_stats(|s| s.disk_reads += 1);
            let read = sh.read_file(&seg).await?;
            out.batches =
                seg.read(&*read.file, offset, max_bytes, first, sh.config.read_ahead_bytes).await?;
            if high_watermark < sh.written.get() {
                trim_to(&mut out.batches, high_watermark);
            }
            self.read_on_past_written(&mut out, max_bytes);
            break;
        }
        Ok(out)
    }

    /// With the journal: a read that ended at the written end goes on with the durable
    /// batches past it, still in memory only (up to `max_bytes` in all, whole batches). The
    /// writer defers segment writes (`journal_segment_write_delay_ms`) and lags under disk
    /// load, so a reader behind the written end got only the part before it, one round trip
    /// per write (seen: a fetch of four batches acked `durable` returned one).
    fn read_on_past_written(&self, out: &mut ReadOutcome, max_bytes: usize) {
        let sh = &self.shared;
        if sh.unwritten.bytes() == 0 {
            return; // no journal, or nothing past the written end
        }
        let last = out.batches.last().and_then(|v| wire::batch::header::trusted_headers(v).last());
        let Some(next) = last.map(|h| h.next_offset()) else { return };
        let room = max_bytes.saturating_sub(out.bytes());
        // Checked now, after the read's await: the writer may have moved the written end.
        if next != sh.written.get() || next >= out.high_watermark || room == 0 {
            return;
        }
        if let Some(more) = sh.unwritten.read(next, room, FirstBatch::IfItFits) {
            out.batches.extend(ByteView::coalesce(more));
            trim_to(&mut out.batches, out.high_watermark);
        }
    }

    /// The length of the batch that contains `offset`, read from memory or from its header
    /// on disk without reading the batch (`None` if nothing at `offset` is visible, or a gap
    /// left by damage is there): what a reader takes room for before it reads a batch whole
    /// (`api/fetch.rs`, a first batch beyond the limits).
    pub async fn batch_bytes_at(&self, offset: u64) -> Result<Option<BatchBytes>, StorageError> {
        let sh = &self.shared;
        if offset < sh.log_start_offset.get() || offset >= sh.visible.get() {
            return Ok(None);
        }
        let first_len = |views: Vec<ByteView>| {
            let view = views.into_iter().next()?;
            let h = wire::batch::header::trusted_headers(&view).next()?;
            let (stored, uncompressed) = (h.batch_len() as usize, h.uncompressed_len() as usize);
            Some(BatchBytes { stored, uncompressed })
        };
        if offset >= sh.written.get() {
            if let Some(views) = sh.unwritten.read(offset, 0, FirstBatch::Always) {
                return Ok(first_len(views));
            }
        }
        if let Some(views) = sh.cache.read(offset, 0, FirstBatch::Always) {
            return Ok(first_len(views));
        }
        let Some(seg) = sh.segment_for(offset) else { return Ok(None) };
        if offset >= seg.next_offset.get() {
            return Ok(None);
        }
        let read = sh.read_file(&seg).await?;
        seg.batch_bytes_at(&*read.file, offset, sh.config.read_ahead_bytes).await
    }

    /// The first offset of the oldest segment whose `.log` was modified at or after `since`
    /// (wall clock), or `None` if none was. Every write to a segment (appends, zeros ahead,
    /// the trim at its seal) updates its modification time, so every batch *appended* at or
    /// after `since` lies at or after this offset, whatever its producer timestamps say.
    /// Stats each segment's file (a blocking call: for opening a partition, not the hot path).
    pub fn first_offset_modified_since(&self, since: std::time::SystemTime) -> Option<u64> {
        let start = self.shared.log_start_offset.get();
        let segments: Vec<_> = self.shared.segments.borrow().clone();
        segments.iter().find_map(|seg| {
            let modified = std::fs::metadata(&seg.log_path).and_then(|m| m.modified());
            // Unknown counts as recent: scanning more is only slower.
            let recent = modified.map_or(true, |m| m >= since);
            recent.then(|| seg.base_offset.max(start))
        })
    }

    /// The base offset of the first segment that starts after `offset` (where a scan can
    /// go on past damage that fenced the rest of `offset`'s segment).
    pub fn segment_after(&self, offset: u64) -> Option<u64> {
        self.shared.segments.borrow().iter().map(|seg| seg.base_offset).find(|&b| b > offset)
    }

    /// The first offset whose record has a timestamp at or after `timestamp_ms`, with that
    /// timestamp; `None` if every stored record is older. Reads however much it takes, so
    /// only tests use it: every lookup a client asks for is bounded
    /// ([`PartitionLog::offset_for_timestamp_within`], `api/timestamp_lookup.rs`).
    #[cfg(test)]
    pub async fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<(u64, i64)>, StorageError> {
        match self.offset_for_timestamp_within(timestamp_ms, usize::MAX).await? {
            TimestampLookup::Found(offset, ts) => Ok(Some((offset, ts))),
            TimestampLookup::Older | TimestampLookup::NeedsBytes(_) => Ok(None),
        }
    }

    /// [`PartitionLog::offset_for_timestamp`] holding at most `bytes_max` of read batches (or
    /// the read-ahead window, if configured larger) and at most `bytes_max` of records
    /// decompressed at any time: a batch whose reading or opening would take more ends the
    /// lookup with [`TimestampLookup::NeedsBytes`] (the larger of its length and its records'
    /// decompressed length), to be asked again with that much once the caller has room for
    /// twice that.
    pub async fn offset_for_timestamp_within(
        &self,
        timestamp_ms: i64,
        bytes_max: usize,
    ) -> Result<TimestampLookup, StorageError> {
        // Only what readers see: an offset past the high watermark could be lost and reused,
        // and none below the log start (record deletion leaves records there on disk).
        let visible = self.shared.visible.get();
        let start = self.shared.log_start_offset.get();
        // Taken first: a batch leaves it only once written to the active segment, which the
        // scan below then reaches.
        let unwritten = self.shared.unwritten.all();
        let segments: Vec<_> = self.shared.segments.borrow().clone();
        let mut search =
            TimestampSearch { timestamp_ms, start, visible, bytes_max, scratch: AlignedVec::new() };
        let window_bytes = self.shared.config.read_ahead_bytes.min(bytes_max);
        for seg in segments {
            if seg.max_timestamp_ms.get() < timestamp_ms
                || seg.size_bytes.get() == 0
                || seg.next_offset.get() <= start
            {
                continue;
            }
            if seg.base_offset >= visible {
                break;
            }
            let mut offset =
                seg.base_offset + u64::from(seg.time_index.borrow().scan_start(timestamp_ms));
            while offset < seg.next_offset.get().min(visible) {
                let read = self.shared.read_file(&seg).await?;
                let read_ahead_bytes = self.shared.config.read_ahead_bytes;
                let first =
                    if bytes_max == usize::MAX { FirstBatch::Always } else { FirstBatch::IfItFits };
                let file = &*read.file;
                let mut views =
                    seg.read(file, offset, window_bytes, first, read_ahead_bytes).await?;
                if views.is_empty() && first == FirstBatch::IfItFits {
                    // The next batch is larger than the window (or there is none): read whole
                    // if within `bytes_max`.
                    match seg.batch_bytes_at(file, offset, read_ahead_bytes).await? {
                        Some(b) if b.stored <= bytes_max => {
                            let whole = FirstBatch::Always;
                            views = seg
                                .read(file, offset, window_bytes, whole, read_ahead_bytes)
                                .await?;
                        }
                        Some(b) => {
                            return Ok(TimestampLookup::NeedsBytes(b.stored.max(b.uncompressed)))
                        }
                        None => break,
                    }
                }
                if views.is_empty() {
                    break;
                }
                let file = seg.log_path.display().to_string();
                match search.scan(&views, &file, &mut offset)? {
                    Scan::Found(at, ts) => return Ok(TimestampLookup::Found(at, ts)),
                    Scan::NeedsBytes(bytes) => return Ok(TimestampLookup::NeedsBytes(bytes)),
                    Scan::PastVisible => return Ok(TimestampLookup::Older),
                    Scan::Continue => {}
                }
            }
        }
        // With the journal: durable batches not yet written to a segment (in memory: only
        // opening them takes room).
        let mut offset = 0;
        match search.scan(&unwritten, "memory (not yet written)", &mut offset)? {
            Scan::Found(at, ts) => Ok(TimestampLookup::Found(at, ts)),
            Scan::NeedsBytes(bytes) => Ok(TimestampLookup::NeedsBytes(bytes)),
            Scan::PastVisible | Scan::Continue => Ok(TimestampLookup::Older),
        }
    }
}

/// How a timestamp lookup ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampLookup {
    /// The first record at or after the timestamp: its offset and timestamp.
    Found(u64, i64),
    /// Every stored record is older.
    Older,
    /// A batch on the way needs `bytes_max` to be at least this (its length, or its records
    /// decompressed): more than allowed.
    NeedsBytes(usize),
}

/// What [`PartitionLog::offset_for_timestamp`] looks for.
struct TimestampSearch {
    timestamp_ms: i64,
    start: u64,
    visible: u64,
    /// Most bytes of records opened (decompressed) at once.
    bytes_max: usize,
    scratch: AlignedVec,
}

/// How a scan of some batches for a timestamp ended.
enum Scan {
    /// The first record at or after the timestamp: its offset and timestamp.
    Found(u64, i64),
    /// A batch to open needs `bytes_max` to be at least this: more than allowed.
    NeedsBytes(usize),
    /// A batch past the high watermark came first.
    PastVisible,
    /// Not in these batches; `offset` was moved past them.
    Continue,
}

impl TimestampSearch {
    /// Scans `views` (whole batches read from `file`) in order, moving `offset` past each.
    fn scan(
        &mut self,
        views: &[ByteView],
        file: &str,
        offset: &mut u64,
    ) -> Result<Scan, StorageError> {
        for view in views {
            for batch in Envelopes::new(view) {
                let corrupt = |e: wire::BatchError| StorageError::Corrupt {
                    file: file.to_string(),
                    position: 0,
                    reason: e.to_string(),
                };
                let batch = batch.map_err(corrupt)?;
                if batch.header().next_offset() > self.visible {
                    return Ok(Scan::PastVisible);
                }
                *offset = batch.header().next_offset();
                if batch.header().max_timestamp_ms() < self.timestamp_ms {
                    continue;
                }
                let h = batch.header();
                // Validated when opened; a damaged length asks for at most the format's most.
                let uncompressed = (h.uncompressed_len() as usize).min(UNCOMPRESSED_BYTES_MAX);
                if uncompressed > self.bytes_max {
                    return Ok(Scan::NeedsBytes(uncompressed.max(h.batch_len() as usize)));
                }
                if let Some(r) = batch
                    .open(&mut self.scratch)
                    .map_err(corrupt)?
                    .records()
                    .find(|r| r.timestamp_ms() >= self.timestamp_ms && r.offset() >= self.start)
                {
                    return Ok(Scan::Found(r.offset(), r.timestamp_ms()));
                }
            }
        }
        Ok(Scan::Continue)
    }
}

/// `end`.
pub(super) fn trim_to(batches: &mut Vec<ByteView>, end: u64) {
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
