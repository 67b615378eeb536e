//! Freeing a large file without stalling the shard's other I/O.
//!
//! Unlinking a 1 GiB segment at once frees all its extents in one filesystem journal
//! transaction (with online discard, one huge discard too); every fdatasync on the same
//! filesystem waits behind it — measured at ~0.8 s without a durable ack on ext4
//! (`perf/results/2026-11-22-retention-delete.md`). Instead the file is truncated in steps,
//! paced, and only the last step is unlinked (RocksDB's `DeleteScheduler` does the same).
//! Callers first rename the file out of the way and sync the directory, so a crash between
//! steps never leaves a shortened file under a name that means data.

use std::path::Path;
use std::time::Duration;

use super::io::{Disk, DiskFile};
use super::IoError;

/// How fast files are freed.
#[derive(Debug, Clone, Copy)]
pub struct DeletePace {
    /// Truncation step; 0 = unlink at once.
    pub chunk_bytes: u64,
    /// At most this many bytes freed per second.
    pub bytes_per_s: u64,
}

/// Truncates the file at `path` in paced steps, then removes it. Returns `Ok(false)` if
/// `stop()` said to stop between steps (the file stays, shorter, for a later attempt).
/// A missing file counts as freed.
pub async fn free_file<D: Disk>(
    disk: &D,
    path: &Path,
    pace: DeletePace,
    stop: &dyn Fn() -> bool,
) -> Result<bool, IoError> {
    if pace.chunk_bytes > 0 {
        let file = match disk.open(path, false).await {
            Ok(f) => f,
            Err(IoError::NotFound { .. }) => return Ok(true),
            Err(e) => return Err(e),
        };
        let pause =
            Duration::from_secs_f64(pace.chunk_bytes as f64 / pace.bytes_per_s.max(1) as f64);
        let mut len = file.size().await?;
        while len > pace.chunk_bytes {
            len -= pace.chunk_bytes;
            file.truncate(len).await?;
            glommio::timer::sleep(pause).await;
            if stop() {
                return Ok(false);
            }
        }
        drop(file);
    }
    match disk.remove(path).await {
        Ok(()) | Err(IoError::NotFound { .. }) => Ok(true),
        Err(e) => Err(e),
    }
}
