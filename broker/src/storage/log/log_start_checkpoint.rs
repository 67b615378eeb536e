//! The log start offset record deletion set (`retention.rs`), on disk, so a restart does not
//! bring back records below it that still lie in the first kept segment.
//!
//! # Contract
//! - Two slot files per partition directory, [`SLOT_FILES`], written in turn, in place: one
//!   page each holding a magic, the offset, a sequence number and a CRC32C of the three (the
//!   rest zeros). The valid slot with the higher sequence number is the checkpoint. A write
//!   goes to the other slot than the one holding it and is fdatasynced before the deletion
//!   answers; a slot's first write in a run creates it if missing and syncs the directory.
//!   Slots found at open are fdatasynced and their directory synced before they count (a
//!   failed write of the last run may have left a slot, or its name, only in the page cache:
//!   taken as the start without that, a later deletion below it would be skipped, then lost
//!   with the power). So after a crash at
//!   any point the checkpoint is the previous one or the new one: a torn or lost write
//!   leaves its slot invalid or older, and the other slot holds the previous value. (A
//!   rename over one file would do on Linux, but a crash between the rename and the
//!   directory sync may lose both names under the simulated disk's stricter model.)
//! - Written before record deletion moves the start in memory, so a deletion that returned
//!   `Ok` holds across a crash; a failed write fails the deletion and changes nothing.
//! - At open the log starts at the larger of its first segment's base and the checkpoint,
//!   but never past the recovered end (records acked below `durable` that a crash took back):
//!   then the end is written as the new checkpoint first, or the offsets the next appends
//!   take would be deleted at the next restart.
//! - A damaged slot is ignored (logged); with both damaged the log starts at its first
//!   segment's base, as it did before the checkpoint existed.
//! - Writers are serialized by the caller (`LogCore::log_start_writing`).

use std::cell::Cell;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use tracing::warn;

use crate::descriptors::{FileUse, StorageFiles};
use crate::storage::error::IoError;
use crate::storage::io::{Disk, DiskFile, DISK_ALIGN};

/// The two slots' names in the partition directory.
pub(in crate::storage) const SLOT_FILES: [&str; 2] =
    ["log-start-checkpoint.0", "log-start-checkpoint.1"];
/// First bytes of a slot (format version 1).
const MAGIC: &[u8; 8] = b"LOGSTRT1";
/// Magic, offset, sequence number, CRC32C.
const CONTENT_BYTES: usize = 8 + 8 + 8 + 4;
const _: () = assert!(CONTENT_BYTES <= 512, "one sector: a torn write is old or new");

/// The checkpoint as the log knows it: what the slots hold.
#[derive(Debug, Default)]
pub(in crate::storage) struct LogStartCheckpoint {
    /// The checkpoint's offset; 0 when there is none.
    offset: Cell<u64>,
    /// Its sequence number (0: none written yet).
    seq: Cell<u64>,
    /// Which slots' names this run made durable (synced the directory after creating them).
    named: [Cell<bool>; 2],
}

fn encode(offset: u64, seq: u64, page: &mut [u8]) {
    page.fill(0);
    page[..8].copy_from_slice(MAGIC);
    page[8..16].copy_from_slice(&offset.to_le_bytes());
    page[16..24].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32c::crc32c(&page[..24]);
    page[24..28].copy_from_slice(&crc.to_le_bytes());
}

/// (offset, sequence number) a page holds, `None` when it is not a valid slot.
fn decode(page: &[u8]) -> Option<(u64, u64)> {
    if page.len() < CONTENT_BYTES || &page[..8] != MAGIC {
        return None;
    }
    let crc = u32::from_le_bytes(page[24..28].try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(page[at..at + 8].try_into().expect("8 bytes"));
    (crc == crc32c::crc32c(&page[..24])).then(|| (u64_at(8), u64_at(16)))
}

impl LogStartCheckpoint {
    /// Reads the slots in `dir` (whose file names are `names`, as recovery listed them): the
    /// checkpoint and what the slots hold. `TooManyFiles` when
    /// the storage budget has no descriptor to read an existing slot (none is taken for a
    /// missing one); other read errors fail too (the log would otherwise start before a
    /// deletion that was answered). Slots found are made durable (fdatasync, directory
    /// sync) before they count: a slot a failed write left in the page cache would otherwise
    /// be taken as the start, and a deletion below it skipped, then lost with the power.
    pub(in crate::storage) async fn read<D: Disk>(
        disk: &D,
        files: &Arc<StorageFiles>,
        dir: &Path,
        names: &[String],
    ) -> Result<(Option<u64>, Self), IoError> {
        let state = LogStartCheckpoint::default();
        let mut found: Option<(u64, u64)> = None;
        let mut present = [false; 2];
        for (slot, name) in SLOT_FILES.iter().enumerate() {
            if !names.iter().any(|n| n == name) {
                continue;
            }
            let path = dir.join(name);
            let _descriptor =
                files.take(FileUse::Brief).ok_or_else(|| IoError::over_budget("open", &path))?;
            let f = match disk.open(&path, false).await {
                Ok(f) => Rc::new(f),
                Err(IoError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            present[slot] = true;
            let read = async {
                let buf = f.read_at(0, DISK_ALIGN).await?;
                f.fdatasync().await?;
                Ok::<_, IoError>(buf)
            }
            .await;
            f.close().await?;
            match decode(read?.as_ref()) {
                Some((offset, seq)) if found.is_none_or(|(_, s)| seq > s) => {
                    found = Some((offset, seq));
                }
                Some(_) => {}
                None => warn!(path = %path.display(), "log start checkpoint slot damaged; ignored"),
            }
        }
        if present.contains(&true) {
            disk.sync_dir(dir).await?;
            for (slot, named) in state.named.iter().enumerate() {
                named.set(present[slot]);
            }
        }
        if let Some((offset, seq)) = found {
            state.offset.set(offset);
            state.seq.set(seq);
        }
        Ok((found.map(|(offset, _)| offset), state))
    }

    /// The offset the checkpoint holds (0: none).
    pub(super) fn offset(&self) -> u64 {
        self.offset.get()
    }

    /// Makes `offset` the checkpoint, durably (see the module docs); `TooManyFiles` when the
    /// storage budget has no descriptor for it. On an error the checkpoint is the previous
    /// one.
    pub(in crate::storage) async fn write<D: Disk>(
        &self,
        disk: &D,
        files: &Arc<StorageFiles>,
        dir: &Path,
        offset: u64,
    ) -> Result<(), IoError> {
        let seq = self.seq.get() + 1;
        let slot = (seq % 2) as usize;
        let path = dir.join(SLOT_FILES[slot]);
        super::page_file::write_page(disk, files, &path, false, |page| encode(offset, seq, page))
            .await?;
        if !self.named[slot].get() {
            disk.sync_dir(dir).await?;
            self.named[slot].set(true);
        }
        self.offset.set(offset);
        self.seq.set(seq);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_round_trips_and_damage_is_refused() {
        let mut page = vec![0xA5; DISK_ALIGN];
        encode(1234, 7, &mut page);
        assert_eq!(decode(&page), Some((1234, 7)));
        for i in 0..CONTENT_BYTES {
            let mut bad = page.clone();
            bad[i] ^= 0x10;
            assert_eq!(decode(&bad), None, "byte {i} flipped");
        }
        assert_eq!(decode(&page[..CONTENT_BYTES - 1]), None);
        assert_eq!(decode(&[0; DISK_ALIGN]), None);
    }
}
