//! The active segment's `.index` and `.timeindex` on disk.
//!
//! Contract: index files are hints. Entries are persisted only for data already covered by
//! a trusted sync, so an entry found after a crash always points at a batch that survived;
//! they are written in runs of at least [`INDEX_PERSIST_ENTRIES_MIN`] entries by one
//! background run at a time, off the writer's path; files are opened lazily on their first
//! entries (an idle partition holds one descriptor, its `.log`). Errors are logged, never
//! returned: recovery rebuilds what is missing or wrong.
//!
//! At most [`INDEX_RUNS_PER_SHARD_MAX`] runs write at once on a shard: a journal checkpoint
//! makes the data of all its partitions durable together, and their index runs, all due
//! at once, were ~2,000 small O_DIRECT appends submitted in one go, which the kernel hands
//! to io_uring's worker threads on the shard's core; they took it from the shard for up to
//! 12 ms at a time, and partitions-1000's e2e p99 was 160–280 ms with them, 30 ms without
//! (`perf/results/2026-12-05-checkpoint-syncfs`).

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use tracing::{debug, warn};

use super::core::LogCore;
use crate::descriptors::{FileSlot, FileUse, StorageFiles};
use crate::storage::error::IoError;
use crate::storage::index::{OFFSET_ENTRY_BYTES, TIME_ENTRY_BYTES};
use crate::storage::io::{Disk, DiskFile};
use crate::storage::segment::{align_down, align_up, Segment};

/// An append-only file written through O_DIRECT: each write starts at the page holding the
/// end of the file and rewrites that partial page together with the new bytes.
pub(super) struct TailAppender<F: DiskFile> {
    pub(super) file: Rc<F>,
    pub(super) size: u64,
    pub(super) tail: Vec<u8>,
    pub(super) allocated: u64,
}

impl<F: DiskFile> TailAppender<F> {
    pub(super) fn new(file: Rc<F>, size: u64, tail: Vec<u8>) -> Self {
        assert_eq!(
            tail.len() as u64,
            size - align_down(size),
            "tail must be the partial last page"
        );
        TailAppender { file, size, tail, allocated: 0 }
    }

    /// Appends `chunks` in one write. On error nothing changes (the next write rewrites the
    /// same range).
    pub(super) async fn append(
        &mut self,
        chunks: &[&[u8]],
        preallocate_bytes: u64,
    ) -> Result<(), IoError> {
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
pub(super) struct LazyAppender<F: DiskFile> {
    pub(super) path: PathBuf,
    pub(super) open: Option<TailAppender<F>>,
    /// How long the file stays open once opened (its share of the storage budget).
    use_: FileUse,
    /// Its slot in the storage budget while open (after `open`: dropped after the file).
    slot: Option<FileSlot>,
}

impl<F: DiskFile> LazyAppender<F> {
    pub(super) fn new(path: PathBuf, use_: FileUse) -> Self {
        LazyAppender { path, open: None, use_, slot: None }
    }

    /// Opens the file now, emptied (its entries are then rewritten from the start);
    /// `TooManyFiles` when the storage budget has no slot for it.
    pub(super) async fn open_empty<D: Disk<File = F>>(
        &mut self,
        disk: &D,
        files: &Arc<StorageFiles>,
    ) -> Result<(), IoError> {
        if self.open.is_none() {
            let slot =
                files.take(self.use_).ok_or_else(|| IoError::over_budget("open", &self.path))?;
            let f = Rc::new(disk.open(&self.path, true).await?);
            f.truncate(0).await?;
            self.open = Some(TailAppender::new(f, 0, Vec::new()));
            self.slot = Some(slot);
        }
        Ok(())
    }

    pub(super) async fn append<D: Disk<File = F>>(
        &mut self,
        disk: &D,
        files: &Arc<StorageFiles>,
        bytes: &[u8],
    ) -> Result<(), IoError> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.open_empty(disk, files).await?;
        self.open.as_mut().expect("opened above").append(&[bytes], 0).await
    }

    pub(super) async fn fdatasync(&self) -> Result<(), IoError> {
        match &self.open {
            Some(a) => a.file.fdatasync().await,
            None => Ok(()),
        }
    }
}

/// The `.index` and `.timeindex` of the active segment.
pub(super) struct IndexFiles<F: DiskFile> {
    pub(super) offsets: LazyAppender<F>,
    pub(super) times: LazyAppender<F>,
    pub(super) offsets_persisted: usize,
    pub(super) times_persisted: usize,
}

impl<D: Disk> LogCore<D> {
    /// Persists index entries that describe durable data only, so an index entry found on
    /// disk after a crash always points at a batch that survived. Writes happen in runs of
    /// at least `INDEX_PERSIST_ENTRIES_MIN` entries unless `all`. Index files are hints:
    /// errors are logged, not returned.
    /// Persists index entries in a background task, off the writer's path, unless a run is
    /// already going (the next write's reap tries again).
    pub(super) fn persist_index_soon(self: &Rc<Self>, seg: Rc<Segment<D::File>>) {
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
            let runs = INDEX_RUNS.with(Rc::clone);
            // Closed only if the executor goes away; then the run is moot.
            let Ok(_run) = runs.acquire_static_permit(1).await else { return };
            sh.persist_index(&seg, false).await;
            sh.index_busy.set(false);
            sh.index_done.advance(sh.index_done.get() + 1);
        })
        .detach();
        *self.index_task.borrow_mut() = Some(task);
    }

    /// Waits until no background index run holds the active segment's index files.
    pub(super) async fn index_idle(&self) {
        while self.index_busy.get() {
            let seen = self.index_done.get();
            self.index_done.wait_for(seen + 1).await;
        }
    }

    pub(super) async fn persist_index(&self, seg: &Segment<D::File>, all: bool) {
        let Some(mut files) = self.active_index.borrow_mut().take() else { return };
        self.write_index_entries(seg, &mut files, all).await;
        *self.active_index.borrow_mut() = Some(files);
    }

    /// See [`LogCore::persist_index`]; for any segment's files.
    pub(super) async fn write_index_entries(
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
            files.offsets.append(&self.disk, &self.files, &offsets).await?;
            files.times.append(&self.disk, &self.files, &times).await?;
            Ok::<(), IoError>(())
        }
        .await;
        match result {
            Ok(()) => {
                files.offsets_persisted += n_offsets;
                files.times_persisted += n_times;
            }
            // Out of descriptors is expected under load: the entries wait for the next run.
            Err(e @ IoError::TooManyFiles { .. }) => {
                debug!(segment = %seg.log_path.display(), error = %e, "index files wait for a descriptor")
            }
            Err(e) => {
                warn!(segment = %seg.log_path.display(), error = %e, "cannot write index files")
            }
        }
    }

    /// How many offset and time entries a write would persist now (those describing durable
    /// data, or all of them if `all`), if one is due: always with `all`, else once a run of
    /// `INDEX_PERSIST_ENTRIES_MIN` has gathered.
    pub(super) fn index_write_due(
        &self,
        seg: &Segment<D::File>,
        files: &IndexFiles<D::File>,
        all: bool,
    ) -> Option<(usize, usize)> {
        let relative_end = if all {
            u64::MAX
        } else {
            self.segment_durable_offset().saturating_sub(seg.base_offset)
        };
        let n_offsets = seg.index.borrow().count_below(files.offsets_persisted, relative_end);
        let n_times = seg.time_index.borrow().count_below(files.times_persisted, relative_end);
        (all || n_offsets.max(n_times) >= INDEX_PERSIST_ENTRIES_MIN).then_some((n_offsets, n_times))
    }
}

/// Index entries are persisted in runs of at least this many (each run is one small write).
pub(super) const INDEX_PERSIST_ENTRIES_MIN: usize = 64;

/// Index runs writing at once on one shard (see the module docs).
pub(super) const INDEX_RUNS_PER_SHARD_MAX: u64 = 2;

thread_local! {
    /// The shard's index runs (one executor per thread: one shard's).
    static INDEX_RUNS: Rc<glommio::sync::Semaphore> =
        Rc::new(glommio::sync::Semaphore::new(INDEX_RUNS_PER_SHARD_MAX));
}
