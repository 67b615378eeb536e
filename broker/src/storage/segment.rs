//! One segment: a `.log` file of batches back to back, with its sparse indexes.
//!
//! A segment is shared (`Rc`) between the partition's writer task, which alone appends and
//! updates the counters, and any number of readers, which see `size_bytes` (the end of the
//! last completely written batch) and never read past it. A reader that holds a segment keeps
//! its file open, so retention may unlink it while the read finishes safely.
//!
//! Descriptors: the active segment, and a segment being sealed, keep their `.log` open
//! ([`Segment::log`]). A sealed segment closes it ([`Segment::close_file`]) and readers
//! reopen it on demand ([`Segment::file_for_read`]) at its current path (retention moves it
//! to `.deleted` through [`Segment::rename`], never while a reader reopens it); the log bounds how many reopened
//! files stay open, so descriptors do not grow with the number of segments. Every
//! descriptor but the active `.log` (which the partition's reservation covers) holds a slot
//! of the storage budget (`descriptors.rs`) beside it, given back when the segment lets go
//! of the file: a sealed `.log` kept open ([`Segment::keep_file_with`]), a reopened one, the
//! O_DSYNC handle.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use wire::batch::compression::UNCOMPRESSED_RECORDS_BYTES_MAX;
use wire::batch::header::peek_batch_len;
use wire::constants::{BATCH_BYTES_MAX, BATCH_HEADER_BYTES};
use wire::{BatchEnvelope, BatchHeader};

use super::bytes::ByteView;
use super::error::{IoError, StorageError};
use super::index::{OffsetIndex, TimeIndex};
use super::io::{Disk, DiskFile, DISK_ALIGN};
use super::sync_gate::SyncGate;
use super::{BatchBytes, FirstBatch};
use crate::descriptors::{FileSlot, FileUse, StorageFiles};

/// File name of a segment file: the 20-digit base offset and an extension.
pub fn file_name(base_offset: u64, ext: &str) -> String {
    format!("{base_offset:020}.{ext}")
}

/// Parses `00000000000000000042.log` into 42.
pub fn parse_log_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".log")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

pub(crate) fn align_down(n: u64) -> u64 {
    n & !(DISK_ALIGN as u64 - 1)
}

pub(crate) fn align_up(n: u64) -> u64 {
    align_down(n + DISK_ALIGN as u64 - 1)
}

/// See the module docs.
pub struct Segment<F: DiskFile> {
    /// Offset of the first batch.
    pub base_offset: u64,
    /// The `.log` file while it is open (see the module docs).
    file: RefCell<Option<Rc<F>>>,
    /// The storage budget's slot for `file`, unless the partition's reservation covers it.
    file_slot: RefCell<Option<FileSlot>>,
    /// Where the `.log` is now: `log_path`, or where retention moved it.
    file_path: RefCell<PathBuf>,
    /// Held while the `.log` is reopened or renamed: glommio panics when a path it is
    /// opening disappears (it `statfs`es the path after the open).
    path_lock: glommio::sync::Semaphore,
    /// Its path.
    pub log_path: PathBuf,
    /// End of the last completely written batch.
    pub size_bytes: Cell<u64>,
    /// Bytes covered by the last successful fdatasync (only grows: [`Segment::synced_to`]).
    durable_bytes: Cell<u64>,
    /// Offset after the last written batch.
    pub next_offset: Cell<u64>,
    /// Offset → position.
    pub index: RefCell<OffsetIndex>,
    /// Timestamp → offset.
    pub time_index: RefCell<TimeIndex>,
    /// Largest producer timestamp stored.
    pub max_timestamp_ms: Cell<i64>,
    /// Broker time of the first append into this segment (roll by age); `i64::MAX` if unknown.
    pub first_append_ms: Cell<i64>,
    /// Bytes appended since the last index entry.
    pub bytes_since_index: Cell<u64>,
    /// A roll's background seal (index files created, space trimmed) is still running:
    /// retention leaves the segment alone until it ends, because glommio panics when a path
    /// it is opening disappears (it `statfs`es the path after the open).
    pub sealing: Cell<bool>,
    /// A second descriptor of the log file opened O_DSYNC, for writes that carry `durable`
    /// appends (opened at the first such write; closed when the segment is sealed), with its
    /// slot of the storage budget.
    pub dsync: RefCell<Option<(Rc<F>, FileSlot)>>,
    /// fdatasyncs of `log` in flight (see `sync_gate.rs`).
    pub(crate) syncs: SyncGate,
    /// Compaction put a rewritten segment in this one's place: its `.log` stays open (the
    /// replaced file, which no longer has a name) until the last reader lets go of it.
    retired: Cell<bool>,
}

impl<F: DiskFile> std::fmt::Debug for Segment<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("base_offset", &self.base_offset)
            .field("next_offset", &self.next_offset.get())
            .field("size_bytes", &self.size_bytes.get())
            .finish()
    }
}

/// The `.log` a read uses ([`Segment::file_for_read`]).
pub struct ReadFile<F> {
    /// The file.
    pub file: Rc<F>,
    /// This read reopened the file and the segment keeps it open.
    pub reopened: bool,
    /// Opened for this read only: its slot of the storage budget, given back with the file.
    _brief: Option<FileSlot>,
}

/// A batch found by a scan.
#[derive(Debug, Clone, Copy)]
pub struct ScannedBatch {
    /// Its position in the file.
    pub position: u64,
    /// Its base offset.
    pub base_offset: u64,
    /// Offset after its last record.
    pub next_offset: u64,
    /// Its length in bytes.
    pub len: u64,
    /// Its largest producer timestamp.
    pub max_timestamp_ms: i64,
}

/// Where and why a scan stopped.
#[derive(Debug, Clone)]
pub struct ScanEnd {
    /// End of the last valid batch.
    pub position: u64,
    /// Offset after the last valid batch.
    pub next_offset: u64,
    /// Why scanning stopped before the end of the file, if it did: `None` for a clean end
    /// (end of file or zeroed, preallocated space).
    pub damage: Option<String>,
}

impl<F: DiskFile> Segment<F> {
    /// A segment over an open file whose valid content ends at `size_bytes`.
    pub fn new(
        base_offset: u64,
        log: Rc<F>,
        log_path: PathBuf,
        size_bytes: u64,
        next_offset: u64,
    ) -> Self {
        Segment {
            base_offset,
            file: RefCell::new(Some(log)),
            file_slot: RefCell::new(None),
            file_path: RefCell::new(log_path.clone()),
            path_lock: glommio::sync::Semaphore::new(1),
            log_path,
            size_bytes: Cell::new(size_bytes),
            durable_bytes: Cell::new(size_bytes),
            next_offset: Cell::new(next_offset),
            index: RefCell::new(OffsetIndex::default()),
            time_index: RefCell::new(TimeIndex::default()),
            max_timestamp_ms: Cell::new(i64::MIN),
            first_append_ms: Cell::new(i64::MAX),
            bytes_since_index: Cell::new(0),
            sealing: Cell::new(false),
            dsync: RefCell::new(None),
            syncs: SyncGate::default(),
            retired: Cell::new(false),
        }
    }

    /// Before compaction renames a rewritten file over this segment's `.log`: keeps the
    /// current file open for the readers still holding this segment (reopened under a slot
    /// of the storage budget if it was closed), so none of them ever opens the new file at
    /// this segment's positions. `TooManyFiles` when no slot is free.
    pub async fn retire<D: Disk<File = F>>(
        &self,
        disk: &D,
        files: &Arc<StorageFiles>,
    ) -> Result<(), IoError> {
        let _opening = self.path_lock.acquire_permit(1).await;
        if self.file.borrow().is_none() {
            let path = self.file_path.borrow().clone();
            let slot =
                files.take(FileUse::Kept).or_else(|| files.take(FileUse::Brief)).ok_or_else(
                    || IoError::over_budget("keep a compacted segment's old file", &path),
                )?;
            let f = Rc::new(disk.open(&path, false).await?);
            *self.file.borrow_mut() = Some(f);
            *self.file_slot.borrow_mut() = Some(slot);
        }
        self.retired.set(true);
        Ok(())
    }

    /// Bytes covered by a trusted sync.
    pub fn durable_bytes(&self) -> u64 {
        self.durable_bytes.get()
    }

    /// A trusted sync covered the first `bytes`: durable bytes only grow, and never past the
    /// data (`size_bytes`).
    pub fn synced_to(&self, bytes: u64) {
        assert!(bytes <= self.size_bytes.get(), "{self:?}: synced to {bytes} bytes, past its data");
        if bytes > self.durable_bytes.get() {
            self.durable_bytes.set(bytes);
        }
    }

    /// The open `.log`: only for the active segment or one being sealed (recovery and the
    /// writer's roll), which never close it.
    pub fn log(&self) -> Rc<F> {
        match self.file.borrow().as_ref() {
            Some(f) => f.clone(),
            None => panic!("{self:?}: the .log of a sealed segment used for writing or syncing"),
        }
    }

    /// Closes the `.log` (readers holding it finish first) and gives back its slot; `None`
    /// if it was closed.
    pub fn close_file(&self) -> Option<Rc<F>> {
        if self.retired.get() {
            return None; // its readers keep it open (see `retire`)
        }
        self.file_slot.borrow_mut().take();
        self.file.borrow_mut().take()
    }

    /// The open `.log` stays open under `slot` (a roll's background seal): the partition's
    /// reservation goes to the next segment.
    pub fn keep_file_with(&self, slot: FileSlot) {
        assert!(self.is_open(), "{self:?}: a slot for a closed .log");
        *self.file_slot.borrow_mut() = Some(slot);
    }

    /// Whether the `.log` is open now.
    pub fn is_open(&self) -> bool {
        self.file.borrow().is_some()
    }

    /// Renames the `.log` to `path` on `disk` (retention), never while a reader reopens it;
    /// readers reopen it at `path` from then on.
    pub async fn rename<D: Disk<File = F>>(&self, disk: &D, path: PathBuf) -> Result<(), IoError> {
        let _renaming = self.path_lock.acquire_permit(1).await;
        let from = self.file_path.borrow().clone();
        disk.rename(&from, &path).await?;
        *self.file_path.borrow_mut() = path;
        Ok(())
    }

    /// The `.log` to read from, reopened if it was closed: kept open under a
    /// [`FileUse::Kept`] slot when the budget has one (`reopened`), else for this read only
    /// under a [`FileUse::Brief`] slot; `TooManyFiles` when it has neither.
    pub async fn file_for_read<D: Disk<File = F>>(
        &self,
        disk: &D,
        files: &Arc<StorageFiles>,
    ) -> Result<ReadFile<F>, IoError> {
        let open = |file: Rc<F>| ReadFile { file, reopened: false, _brief: None };
        if let Some(f) = self.file.borrow().as_ref() {
            return Ok(open(f.clone()));
        }
        let _opening = self.path_lock.acquire_permit(1).await;
        if let Some(f) = self.file.borrow().as_ref() {
            return Ok(open(f.clone())); // another reader reopened it meanwhile
        }
        let path = self.file_path.borrow().clone();
        let (slot, kept) = match files.take(FileUse::Kept) {
            Some(slot) => (slot, true),
            None => {
                let slot = files
                    .take(FileUse::Brief)
                    .ok_or_else(|| IoError::over_budget("reopen sealed segment", &path))?;
                (slot, false)
            }
        };
        let f = Rc::new(disk.open(&path, false).await?);
        if !kept {
            return Ok(ReadFile { file: f, reopened: false, _brief: Some(slot) });
        }
        // Another reader may have reopened it meanwhile: keep one.
        let mut file = self.file.borrow_mut();
        match file.as_ref() {
            Some(open_file) => Ok(open(open_file.clone())),
            None => {
                *file = Some(f.clone());
                *self.file_slot.borrow_mut() = Some(slot);
                Ok(ReadFile { file: f, reopened: true, _brief: None })
            }
        }
    }

    /// Records a batch that now lies at `batch.position` (written or recovered): counters and
    /// sparse index entries.
    pub fn record(&self, batch: &ScannedBatch, index_interval_bytes: u32) {
        assert_eq!(
            batch.position,
            self.size_bytes.get(),
            "batch recorded out of order in {self:?}"
        );
        assert_eq!(batch.base_offset, self.next_offset.get(), "offset gap in {self:?}");
        let relative = u32::try_from(batch.base_offset - self.base_offset)
            .expect("segment spans < 2^32 offsets");
        let max_ts = self.max_timestamp_ms.get().max(batch.max_timestamp_ms);
        if self.bytes_since_index.get() >= u64::from(index_interval_bytes) || batch.position == 0 {
            self.index.borrow_mut().push(relative, batch.position as u32);
            self.time_index.borrow_mut().push(max_ts, relative);
            self.bytes_since_index.set(0);
        }
        self.bytes_since_index.set(self.bytes_since_index.get() + batch.len);
        self.size_bytes.set(batch.position + batch.len);
        self.next_offset.set(batch.next_offset);
        self.max_timestamp_ms.set(max_ts);
    }

    /// Reads whole batches starting with the one that contains `offset`, up to `max_bytes`
    /// (the first one even beyond it if `first` is [`FirstBatch::Always`]), never past
    /// `size_bytes`. Each batch's envelope is validated (lengths, header, CRC) before it is
    /// returned: damaged bytes become [`StorageError::Corrupt`], never data. A batch that will
    /// not be returned is not read in full.
    pub async fn read(
        &self,
        file: &F,
        offset: u64,
        max_bytes: usize,
        first: FirstBatch,
        read_ahead_bytes: usize,
    ) -> Result<Vec<ByteView>, StorageError> {
        let end = self.size_bytes.get();
        let relative = u32::try_from(offset.saturating_sub(self.base_offset)).unwrap_or(u32::MAX);
        let (start_relative, start) = self.index.borrow().lookup(relative);
        let mut pos = u64::from(start);
        // Batches lie back to back in offset order from the index entry's offset: a base
        // offset that is not the one expected is damage (the CRC does not cover it), never
        // data read at the wrong offsets (or a batch skipped as if it were before `offset`).
        let mut expected = self.base_offset + u64::from(start_relative);
        let mut out: Vec<ByteView> = Vec::new();
        let mut total = 0usize;
        'windows: while pos < end {
            let want =
                read_ahead_bytes.max(max_bytes.saturating_sub(total)).max(BATCH_HEADER_BYTES);
            let mut window = self.read_window(file, pos, want, end).await?;
            let first_len = self.batch_len_at(&window, pos, end)?;
            if first_len > window.len() {
                // A batch larger than the window: read it whole only if it will be returned
                // (or must be validated to be skipped). Its header is not validated yet: if
                // damage makes it look wanted, this read ends early with what it has, and the
                // read that must take it validates it.
                let wanted = BatchHeader::new(&window).is_some_and(|h| h.last_offset() >= offset);
                let must_take = out.is_empty() && first == FirstBatch::Always;
                if wanted && !must_take && total + first_len > max_bytes {
                    break 'windows;
                }
                window = self.read_window(file, pos, first_len, end).await?;
                if window.len() < first_len {
                    return Err(self.corrupt(pos, "short read inside the segment".into()));
                }
            }
            let mut at = 0usize;
            while at + BATCH_HEADER_BYTES <= window.len() {
                let here = pos + at as u64;
                let len = self.batch_len_at(&window.slice(at, window.len()), here, end)?;
                if at + len > window.len() {
                    break;
                }
                let view = BatchEnvelope::validate(&window[at..])
                    .map_err(|e| self.corrupt(here, e.to_string()))?;
                let base = view.header().base_offset();
                if base != expected || view.header().next_offset() > self.next_offset.get() {
                    let why = format!(
                        "batch at offset {base} where {expected} was expected (segment ends at {})",
                        self.next_offset.get()
                    );
                    return Err(self.corrupt(here, why));
                }
                expected = view.header().next_offset();
                if view.header().last_offset() >= offset {
                    let must_take = out.is_empty() && first == FirstBatch::Always;
                    if !must_take && total + len > max_bytes {
                        break 'windows;
                    }
                    out.push(window.slice(at, at + len));
                    total += len;
                }
                at += len;
            }
            debug_assert!(at > 0, "no progress reading {self:?} at {pos}");
            pos += at as u64;
        }
        Ok(ByteView::coalesce(out))
    }

    /// The announced length of the batch that contains `offset` (only headers are read, and
    /// not validated: the read that takes the batch validates it), or `None` if no batch at
    /// or after `offset` is stored here: what a reader takes room for before it reads the
    /// batch whole.
    pub async fn batch_bytes_at(
        &self,
        file: &F,
        offset: u64,
        read_ahead_bytes: usize,
    ) -> Result<Option<BatchBytes>, StorageError> {
        let end = self.size_bytes.get();
        let relative = u32::try_from(offset.saturating_sub(self.base_offset)).unwrap_or(u32::MAX);
        let (_, start) = self.index.borrow().lookup(relative);
        let mut pos = u64::from(start);
        // Headers are walked inside one read-ahead window at a time, as `read` does.
        while pos < end {
            let want = read_ahead_bytes.max(BATCH_HEADER_BYTES);
            let window = self.read_window(file, pos, want, end).await?;
            let mut at = 0usize;
            while at + BATCH_HEADER_BYTES <= window.len() {
                let here = pos + at as u64;
                let len = self.batch_len_at(&window[at..], here, end)?;
                if let Some(h) =
                    BatchHeader::new(&window[at..]).filter(|h| h.last_offset() >= offset)
                {
                    // Not validated yet: what a damaged header announces is capped at what a
                    // valid batch may be (the read that takes it reports the damage).
                    let stored = len.min(BATCH_BYTES_MAX as usize);
                    let uncompressed =
                        h.uncompressed_len().min(UNCOMPRESSED_RECORDS_BYTES_MAX) as usize;
                    return Ok(Some(BatchBytes { stored, uncompressed }));
                }
                at += len;
            }
            if at == 0 {
                // Fewer bytes than a header left: damage (`batch_len_at` names it).
                self.batch_len_at(&window, pos, end)?;
            }
            pos += at as u64;
        }
        Ok(None)
    }

    /// The announced length of the batch at the front of `window`, checked to fit the segment.
    fn batch_len_at(&self, window: &[u8], position: u64, end: u64) -> Result<usize, StorageError> {
        if window.len() < BATCH_HEADER_BYTES {
            return Err(self.corrupt(
                position,
                format!("{} bytes where a batch header was expected", window.len()),
            ));
        }
        let len = peek_batch_len(window).expect("header present") as usize;
        if len < BATCH_HEADER_BYTES || position + len as u64 > end {
            return Err(
                self.corrupt(position, format!("batch length {len} does not fit the segment"))
            );
        }
        Ok(len)
    }

    async fn read_window(
        &self,
        file: &F,
        pos: u64,
        len: usize,
        end: u64,
    ) -> Result<ByteView, StorageError> {
        Ok(read_view(file, pos, len, end).await?)
    }

    fn corrupt(&self, position: u64, reason: String) -> StorageError {
        // Operators learn of damage in closed segments (trusted through their index at open)
        // when a reader reaches it: say which file and where.
        tracing::warn!(segment = %self.log_path.display(), position, base_offset = self.base_offset,
            reason = %reason, "stored batch failed validation on read; reported to the reader as corrupt");
        StorageError::Corrupt { file: self.log_path.display().to_string(), position, reason }
    }
}

/// Reads `[pos, pos + len)` of `file`, clamped to `end`, as a view starting exactly at `pos`
/// (the read itself is aligned; the view may be shorter at the end of the file).
pub async fn read_view<F: DiskFile>(
    file: &F,
    pos: u64,
    len: usize,
    end: u64,
) -> Result<ByteView, IoError> {
    let aligned = align_down(pos);
    let stop = (pos + len as u64).min(end);
    if stop <= pos {
        return Ok(ByteView::new(Rc::new(Vec::<u8>::new())));
    }
    let read_len = align_up(stop - aligned) as usize;
    let buf = file.read_at(aligned, read_len).await?;
    let view = ByteView::new(Rc::new(buf));
    let avail = (view.len() as u64).min(stop - aligned) as usize;
    let skip = ((pos - aligned) as usize).min(avail);
    Ok(view.slice(skip, avail))
}

/// Scans `file` from `position`, expecting `expected_offset` there, validating every batch,
/// until the end of the file, zeroed space, a batch at or past `end_offset` (where the next
/// segment starts: a clean end) or the first damaged or out-of-sequence batch. Calls
/// `on_batch` for every valid batch with its bytes.
pub async fn scan<F: DiskFile>(
    file: &F,
    mut position: u64,
    mut expected_offset: u64,
    end_offset: u64,
    file_len: u64,
    chunk_bytes: usize,
    mut on_batch: impl FnMut(&ScannedBatch, &[u8]),
) -> Result<ScanEnd, IoError> {
    let mut damage = None;
    'windows: while position < file_len {
        let mut window = read_view(file, position, chunk_bytes, file_len).await?;
        if window.len() < BATCH_HEADER_BYTES {
            if window.iter().any(|&b| b != 0) {
                damage = Some(format!(
                    "{} trailing bytes at position {position} are too short for a batch",
                    window.len()
                ));
            }
            break;
        }
        if window[..BATCH_HEADER_BYTES].iter().all(|&b| b == 0) {
            break; // zeroed (preallocated) space: a clean end
        }
        let first_len = peek_batch_len(&window).expect("header present") as usize;
        if first_len > window.len() && position + first_len as u64 <= file_len {
            window = read_view(file, position, first_len, file_len).await?;
        }
        let mut at = 0usize;
        while at + BATCH_HEADER_BYTES <= window.len() {
            let here = position + at as u64;
            let header = &window[at..at + BATCH_HEADER_BYTES];
            if header.iter().all(|&b| b == 0) {
                position = here;
                break 'windows;
            }
            let len = peek_batch_len(header).expect("4 bytes") as usize;
            if len < BATCH_HEADER_BYTES
                || len > wire::constants::BATCH_BYTES_MAX as usize
                || here + len as u64 > file_len
            {
                position = here;
                damage = Some(format!("batch length {len} at position {here} does not fit"));
                break 'windows;
            }
            if at + len > window.len() {
                break;
            }
            match check(&window[at..at + len], here, expected_offset) {
                Ok(b) if b.base_offset >= end_offset => {
                    // The next segment starts here: what follows is not this segment's.
                    position = here;
                    break 'windows;
                }
                Ok(b) => {
                    on_batch(&b, &window[at..at + len]);
                    expected_offset = b.next_offset;
                    at += len;
                }
                Err(reason) => {
                    position = here;
                    damage = Some(reason);
                    break 'windows;
                }
            }
        }
        if at == 0 {
            damage = Some(format!("unreadable batch at position {position}"));
            break;
        }
        position += at as u64;
    }
    Ok(ScanEnd { position, next_offset: expected_offset, damage })
}

fn check(bytes: &[u8], position: u64, expected_offset: u64) -> Result<ScannedBatch, String> {
    let view =
        BatchEnvelope::validate(bytes).map_err(|e| format!("batch at position {position}: {e}"))?;
    let h: BatchHeader<'_> = view.header();
    if h.base_offset() != expected_offset {
        return Err(format!(
            "batch at position {position} has base offset {} where {expected_offset} was expected",
            h.base_offset()
        ));
    }
    Ok(ScannedBatch {
        position,
        base_offset: h.base_offset(),
        next_offset: h.next_offset(),
        len: bytes.len() as u64,
        max_timestamp_ms: h.max_timestamp_ms(),
    })
}
