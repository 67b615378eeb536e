//! Deleted topics and partitions: moved out of the way at once, freed in the background.
//!
//! Deleting a topic renames each partition directory (`<data>/topics~/<topic>/<partition>`)
//! into `<data>/trash~/` and syncs both directories, which takes microseconds however
//! much data the partition holds. Shard 0 then frees the trash with
//! [`crate::storage::free_file`] (paced truncation, so the other partitions' syncs are not
//! held up; removing gigabytes with `remove_dir_all` blocked the shard's thread for
//! seconds). At start, directories of topics that the metadata no longer names (a crash
//! between a delete's metadata commit and the move) go to the trash too, so a topic created
//! again under the same name never sees the old records.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::{info, warn};

use crate::layout::{topics_dir, TRASH_DIR};
use crate::metadata::Metadata;
use crate::storage::io::Disk;
use crate::storage::{free_file, DeletePace, DmaDisk, IoError};

static MOVES: AtomicU64 = AtomicU64::new(0);

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Moves `path` (a file or directory inside `data_dir`) into the trash, durably. A missing
/// `path` is not an error.
pub fn move_to_trash(data_dir: &Path, path: &Path) -> std::io::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let trash = data_dir.join(TRASH_DIR);
    std::fs::create_dir_all(&trash)?;
    let topics = topics_dir(data_dir);
    let label: String = path
        .strip_prefix(&topics)
        .or_else(|_| path.strip_prefix(data_dir))
        .unwrap_or(path)
        .to_string_lossy()
        .chars()
        .map(|c| if c == '/' { '_' } else { c })
        .collect();
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let target = trash.join(format!("{label}-{stamp}-{}", MOVES.fetch_add(1, Ordering::Relaxed)));
    match std::fs::rename(path, &target) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    sync_dir(&trash)?;
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Moves what `metadata` does not account for into the trash: topic directories (under
/// `topics~/`, [`crate::layout`]) of topics it does not name and partition directories beyond
/// a topic's partition count. Returns how many were moved. Nothing outside `topics~/` is
/// touched.
pub fn sweep_orphans(data_dir: &Path, metadata: &Metadata) -> std::io::Result<usize> {
    let mut moved = 0;
    let topics = topics_dir(data_dir);
    let entries = match std::fs::read_dir(&topics) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(topic) = metadata.topic(&name) else {
            warn!(path = %entry.path().display(), "data of a topic the metadata does not name: moving it to the trash");
            move_to_trash(data_dir, &entry.path())?;
            moved += 1;
            continue;
        };
        if !entry.file_type()?.is_dir() {
            continue;
        }
        for part in std::fs::read_dir(entry.path())? {
            let part = part?;
            let keep = part
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|p| (p as usize) < topic.shards.len());
            if !keep && part.file_type()?.is_dir() {
                warn!(dir = %part.path().display(), "partition directory the metadata does not name: moving it to the trash");
                move_to_trash(data_dir, &part.path())?;
                moved += 1;
            }
        }
    }
    Ok(moved)
}

/// Every file under `dir`, depth first, and the directories after their contents.
fn contents(dir: &Path, files: &mut Vec<PathBuf>, dirs: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            contents(&entry.path(), files, dirs)?;
        } else {
            files.push(entry.path());
        }
    }
    dirs.push(dir.to_owned());
    Ok(())
}

/// Frees everything in the trash (paced); stops early when `stop()` says so. Returns the
/// number of files freed.
pub async fn empty(data_dir: &Path, pace: DeletePace, stop: &dyn Fn() -> bool) -> usize {
    let trash = data_dir.join(TRASH_DIR);
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    match contents(&trash, &mut files, &mut dirs) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return 0,
        Err(e) => {
            warn!(dir = %trash.display(), error = %e, "cannot list the trash");
            return 0;
        }
    }
    dirs.pop(); // the trash directory itself stays
    let mut freed = 0;
    for f in &files {
        match free_file(&DmaDisk, f, pace, stop).await {
            Ok(true) => freed += 1,
            Ok(false) => return freed,
            // A file O_DIRECT cannot open (or that vanished) is removed plainly.
            Err(IoError::NotFound { .. }) => {}
            Err(e) => {
                warn!(path = %f.display(), error = %e, "cannot free by steps; removing at once");
                if let Err(e) = DmaDisk.remove(f).await {
                    warn!(path = %f.display(), error = %e, "cannot remove trashed file");
                } else {
                    freed += 1;
                }
            }
        }
    }
    for d in dirs {
        if let Err(e) = std::fs::remove_dir(&d) {
            warn!(dir = %d.display(), error = %e, "cannot remove trashed directory");
        }
    }
    if freed > 0 {
        info!(files = freed, "trash emptied");
    }
    freed
}
