//! The cleaner's progress on disk: `cleaned_to` of one compacted log, so a restart does not
//! map and rewrite the whole log again.
//!
//! # Contract
//! - One file per partition directory, [`CHECKPOINT_FILE`]: one page holding a magic, the
//!   offset and a CRC32C of both (the rest zeros). Written whole through the disk seam
//!   (O_DIRECT on the real disk): `<name>.tmp` created empty, written, fdatasynced, renamed
//!   over the file, the directory synced. After a crash at any point the file is the old
//!   checkpoint, the new one, or missing; never a mix (a torn or damaged one fails its CRC).
//! - Written only after every rewrite of a pass is swapped in (`cleaner.rs`), so a checkpoint
//!   never claims more than was cleaned: every offset below it was in a completed pass's key
//!   map. A checkpoint that is older (a crash before the write) or missing (damaged, no
//!   descriptor, never written) only costs work: the next pass maps from an earlier offset
//!   and removes what it would have removed anyway. One past the log's end after recovery
//!   (the directory was tampered with) is distrusted.
//! - Not written while a merged segment's file could not be taken out of the directory
//!   (`cleaner_rewrite.rs`): a restart finds that file again as it was before the pass, which
//!   the previous checkpoint covers and a new one would not.
//! - Errors are returned for the caller to log: the checkpoint is an optimisation, and a
//!   failed write leaves the previous one in place.

use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use tracing::warn;

use crate::descriptors::{FileUse, StorageFiles};
use crate::storage::error::IoError;
use crate::storage::io::{Disk, DiskFile, DISK_ALIGN};

/// The checkpoint's name in the partition directory.
pub(super) const CHECKPOINT_FILE: &str = "cleaner-checkpoint";
/// Its temporary name while it is written.
const CHECKPOINT_TMP: &str = "cleaner-checkpoint.tmp";
/// First bytes of the file (format version 1).
const MAGIC: &[u8; 8] = b"CLEANED1";
/// Magic, offset, CRC32C.
const CONTENT_BYTES: usize = 8 + 8 + 4;
const _: () = assert!(CONTENT_BYTES <= DISK_ALIGN);

fn encode(cleaned_to: u64, page: &mut [u8]) {
    page.fill(0);
    page[..8].copy_from_slice(MAGIC);
    page[8..16].copy_from_slice(&cleaned_to.to_le_bytes());
    let crc = crc32c::crc32c(&page[..16]);
    page[16..20].copy_from_slice(&crc.to_le_bytes());
}

/// The offset a page holds, `None` when it is not a valid checkpoint.
fn decode(page: &[u8]) -> Option<u64> {
    if page.len() < CONTENT_BYTES || &page[..8] != MAGIC {
        return None;
    }
    let crc = u32::from_le_bytes(page[16..20].try_into().expect("4 bytes"));
    (crc == crc32c::crc32c(&page[..16]))
        .then(|| u64::from_le_bytes(page[8..16].try_into().expect("8 bytes")))
}

/// Reads the checkpoint of the log in `dir`; 0 (map from the start) when there is none, it
/// is damaged, it lies past `log_end_offset`, or no descriptor is free to read it.
pub(super) async fn read_checkpoint<D: Disk>(
    disk: &D,
    files: &Arc<StorageFiles>,
    dir: &Path,
    log_end_offset: u64,
) -> u64 {
    let path = dir.join(CHECKPOINT_FILE);
    let Some(_slot) = files.take(FileUse::Brief) else {
        warn!(path = %path.display(), "no descriptor to read the cleaner checkpoint; the next pass maps the whole log");
        return 0;
    };
    let read = async {
        let f = Rc::new(disk.open(&path, false).await?);
        let buf = f.read_at(0, DISK_ALIGN).await;
        f.close().await?;
        Ok::<_, IoError>(decode(buf?.as_ref()))
    };
    match read.await {
        Ok(Some(offset)) if offset <= log_end_offset => offset,
        Ok(Some(offset)) => {
            warn!(path = %path.display(), offset, log_end_offset, "cleaner checkpoint past the log's end; ignored");
            0
        }
        Ok(None) => {
            warn!(path = %path.display(), "cleaner checkpoint damaged; ignored");
            0
        }
        Err(IoError::NotFound { .. }) => 0,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot read the cleaner checkpoint; ignored");
            0
        }
    }
}

/// Replaces the checkpoint of the log in `dir` with `cleaned_to`, durably (see the module
/// docs); `TooManyFiles` when the storage budget has no descriptor for it.
pub(super) async fn write_checkpoint<D: Disk>(
    disk: &D,
    files: &Arc<StorageFiles>,
    dir: &Path,
    cleaned_to: u64,
) -> Result<(), IoError> {
    let tmp = dir.join(CHECKPOINT_TMP);
    super::page_file::write_page(disk, files, &tmp, true, |page| encode(cleaned_to, page)).await?;
    disk.rename(&tmp, &dir.join(CHECKPOINT_FILE)).await?;
    disk.sync_dir(dir).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_round_trips_and_damage_is_refused() {
        let mut page = vec![0xA5; DISK_ALIGN];
        encode(1234, &mut page);
        assert_eq!(decode(&page), Some(1234));
        for i in 0..CONTENT_BYTES {
            let mut bad = page.clone();
            bad[i] ^= 0x10;
            assert_eq!(decode(&bad), None, "byte {i} flipped");
        }
        assert_eq!(decode(&page[..CONTENT_BYTES - 1]), None);
        assert_eq!(decode(&[0; DISK_ALIGN]), None);
    }
}
