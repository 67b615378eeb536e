//! Opening a log: list its directory, recover each segment, rebuild what is missing.
//!
//! Contract: runs once, before the log's tasks start. Every segment's batches are checked
//! from its last trusted index entry on (length, CRC32C, archive, dense offsets). The active
//! segment's torn or corrupt tail is cut and the segment synced before its data counts as
//! durable; damage in a closed segment is fenced (reads stop before it); a closed segment
//! ends where the next one starts, so stale batches past that are never read. Missing or
//! invalid index files are rebuilt (they are hints). `.deleted` files found here are handed
//! to the deleter, and a `.spare` is kept for the next roll while recycling is on. A
//! `*.cleaned` file is part of a compaction rewrite that never replaced its segment
//! (`cleaner_rewrite.rs`): renamed to `*.cleaned.deleted` (so freeing it never races a new
//! rewrite under the same name) and freed by the deleter; the segment under the real name
//! is the one in the log. A merge cut short leaves a first segment whose file also holds
//! the batches of the segments after it: it ends where the next `.log` starts, like any
//! closed segment. The cleaner's checkpoint is read after recovery (`cleaner_checkpoint.rs`).
//!
//! Descriptors: segments are recovered one at a time, each `.log` under the partition's
//! reservation (closed ones are closed again before the next opens). Index files take
//! slots of the storage budget (brief ones, except the active segment's kept files); an
//! index file that cannot get one counts as missing, and is removed if it had content, so
//! entries recovery could not check or rewrite are never trusted later: the segment is
//! scanned, and its index rebuilt when a slot is free (or never, for a closed segment).

use std::collections::VecDeque;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use tracing::{debug, warn};

use super::cleaner::CLEANED_SUFFIX;
use super::index_files::{IndexFiles, LazyAppender};
use super::retention::{Doomed, DELETED_SUFFIX, SPARE_SUFFIX};
use super::roll::create_segment;
use crate::descriptors::{FileUse, StorageFiles};
use crate::storage::config::LogConfig;
use crate::storage::error::{IoError, StorageError};
use crate::storage::index::{OffsetIndex, TimeIndex};
use crate::storage::io::{Disk, DiskFile};
use crate::storage::segment::{align_up, file_name, parse_log_name, scan, ScannedBatch, Segment};

/// What recovery found in a log's directory.
pub(super) struct Recovered<D: Disk> {
    /// Every segment, oldest first; the last is the active one (never empty).
    pub(super) segments: Vec<Rc<Segment<D::File>>>,
    /// The active segment's index files.
    pub(super) active_index: Option<IndexFiles<D::File>>,
    /// Files retention took out of the log before a restart, still to be freed.
    pub(super) deleting: VecDeque<Doomed<D::File>>,
    /// A deleted segment kept for reuse (`segment_recycle`).
    pub(super) spare: Option<Doomed<D::File>>,
    /// The directory's file names when it was listed (the other files of the partition
    /// are read by their own modules: `log_start_checkpoint.rs`).
    pub(super) names: Vec<String>,
}

/// Lists `dir` (creating it if needed) and recovers every segment in it, or creates the
/// first one. See [`recover_segment`] for what is checked and repaired.
pub(super) async fn recover_dir<D: Disk>(
    disk: &D,
    files: &Arc<StorageFiles>,
    dir: &Path,
    config: &LogConfig,
) -> Result<Recovered<D>, StorageError> {
    disk.create_dir_all(dir).await?;
    let names = disk.list_dir(dir).await?;
    let mut bases: Vec<u64> = names.iter().filter_map(|n| parse_log_name(n)).collect();
    let mut deleting: VecDeque<Doomed<D::File>> = names
        .iter()
        .filter(|n| n.ends_with(DELETED_SUFFIX) || n.ends_with(SPARE_SUFFIX))
        .map(|n| Doomed { path: dir.join(n), segment: None })
        .collect();
    // A compaction rewrite that never replaced its segment: renamed out of the way first, so
    // the deleter freeing it never touches a new rewrite of the same segment.
    for n in names.iter().filter(|n| n.ends_with(CLEANED_SUFFIX)) {
        let (from, to) = (dir.join(n), dir.join(format!("{n}{DELETED_SUFFIX}")));
        match disk.rename(&from, &to).await {
            Ok(()) => deleting.push_back(Doomed { path: to, segment: None }),
            Err(IoError::NotFound { .. }) => {}
            Err(_) => remove_if_present(disk, &from).await?,
        }
    }
    // A kept segment survives a restart (when recycling is still on).
    let spare = deleting
        .iter()
        .position(|d| config.segment_recycle && d.path.to_string_lossy().ends_with(SPARE_SUFFIX))
        .and_then(|i| deleting.remove(i));
    bases.sort_unstable();
    let mut segments: Vec<Rc<Segment<D::File>>> = Vec::new();
    let mut active_index = None;
    if bases.is_empty() {
        let (seg, index) = create_segment(disk, dir, 0).await?;
        segments.push(seg);
        active_index = Some(index);
    }
    for (i, &base) in bases.iter().enumerate() {
        let is_active = i + 1 == bases.len();
        let end_offset = bases.get(i + 1).copied().unwrap_or(u64::MAX);
        let (seg, index) =
            recover_segment(disk, files, dir, base, is_active, end_offset, config).await?;
        if let Some(next) = bases.get(i + 1) {
            if seg.next_offset.get() != *next {
                warn!(segment = %seg.log_path.display(), end = seg.next_offset.get(), next_base = next,
                    "segment ends before the next one starts; offsets in between are lost");
            }
        }
        if !is_active {
            // Closed segments are read rarely: their descriptors open on demand.
            if let Some(f) = seg.close_file() {
                f.close().await?;
            }
        }
        segments.push(seg);
        active_index = index;
    }
    Ok(Recovered { segments, active_index, deleting, spare, names })
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
pub(super) async fn recover_segment<D: Disk>(
    disk: &D,
    files: &Arc<StorageFiles>,
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
    let (index_bytes, index_found) = read_whole(disk, files, &index_path).await?;
    let (time_bytes, time_found) = read_whole(disk, files, &time_path).await?;
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
    seg.synced_to(end.position);

    let seg = Rc::new(seg);
    let active_files = if is_active || rebuild {
        // Rewrite the index files from what recovery now knows (they may hold stale entries
        // past a cut), then keep them open for the active segment. An active segment with no
        // entries and no files leaves them unopened until its first entries.
        let use_ = if is_active { FileUse::Kept } else { FileUse::Brief };
        let mut index = IndexFiles {
            offsets: LazyAppender::new(index_path.clone(), use_),
            times: LazyAppender::new(time_path.clone(), use_),
            offsets_persisted: 0,
            times_persisted: 0,
        };
        // A file with content is emptied now (whatever is rewritten below), or removed when
        // it cannot be opened; an empty one is already right and stays closed until entries
        // come.
        for (f, found, bytes) in [
            (&mut index.offsets, index_found, &index_bytes),
            (&mut index.times, time_found, &time_bytes),
        ] {
            if found && !bytes.is_empty() {
                if let Err(e) = f.open_empty(disk, files).await {
                    warn!(path = %f.path.display(), error = %e, "cannot empty a stale index file; removing it");
                    remove_if_present(disk, &f.path).await?;
                }
            }
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
            index.offsets.append(disk, files, &ob).await?;
            index.times.append(disk, files, &tb).await?;
            index.offsets.fdatasync().await?;
            index.times.fdatasync().await
        }
        .await;
        match ok {
            Ok(()) => {
                index.offsets_persisted = seg.index.borrow().len();
                index.times_persisted = seg.time_index.borrow().len();
            }
            Err(e) => {
                warn!(segment = %log_path.display(), error = %e, "cannot rewrite index files")
            }
        }
        is_active.then_some(index)
    } else {
        None
    };
    Ok((seg, active_files))
}

/// Reads a whole (small) index file; `(bytes, existed)`. Without a slot of the storage
/// budget to open it, the file is removed and counts as missing (see the module docs).
pub(super) async fn read_whole<D: Disk>(
    disk: &D,
    files: &Arc<StorageFiles>,
    path: &Path,
) -> Result<(Vec<u8>, bool), StorageError> {
    let Some(_slot) = files.take(FileUse::Brief) else {
        warn!(path = %path.display(), "no descriptor to read an index file; removing it, the segment is scanned instead");
        remove_if_present(disk, path).await?;
        return Ok((Vec::new(), false));
    };
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
        Err(e @ IoError::TooManyFiles { .. }) => {
            warn!(path = %path.display(), error = %e, "cannot open an index file; removing it, the segment is scanned instead");
            remove_if_present(disk, path).await?;
            Ok((Vec::new(), false))
        }
        Err(e) => Err(e.into()),
    }
}

/// Removes `path` if it exists.
async fn remove_if_present<D: Disk>(disk: &D, path: &Path) -> Result<(), IoError> {
    match disk.remove(path).await {
        Ok(()) | Err(IoError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}
