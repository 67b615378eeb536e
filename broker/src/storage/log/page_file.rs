//! One page of a small file written whole through the disk seam (O_DIRECT on the real disk)
//! and fdatasynced: the checkpoints a partition keeps beside its segments
//! (`cleaner_checkpoint.rs`, `log_start_checkpoint.rs`). Naming it durably (renames,
//! directory syncs) is the caller's.

use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use crate::descriptors::{FileUse, StorageFiles};
use crate::storage::error::IoError;
use crate::storage::io::{Disk, DiskFile, DISK_ALIGN};

/// Writes one page at offset 0 of `path` (created if missing; cut to that page first with
/// `truncate`), filled by `fill`, and fdatasyncs it; `TooManyFiles` when the storage budget
/// has no descriptor for it.
pub(super) async fn write_page<D: Disk>(
    disk: &D,
    files: &Arc<StorageFiles>,
    path: &Path,
    truncate: bool,
    fill: impl FnOnce(&mut [u8]),
) -> Result<(), IoError> {
    let _descriptor =
        files.take(FileUse::Brief).ok_or_else(|| IoError::over_budget("open", path))?;
    let f = Rc::new(disk.open(path, true).await?);
    let written = async {
        if truncate {
            f.truncate(0).await?;
        }
        let mut buf = f.alloc_write_buf(f.alignment().max(DISK_ALIGN));
        fill(buf.as_mut());
        f.write_at(buf, 0).await?;
        f.fdatasync().await
    }
    .await;
    f.close().await?;
    written
}
