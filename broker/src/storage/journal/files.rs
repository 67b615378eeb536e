//! Making a shard journal's next file: from a checkpointed spare (recycled: first block
//! zeroed by one O_DSYNC write, renamed, directory synced) or, without one, a new file of
//! zeros, synced. The contract is the journal module's (`mod.rs`, "Files" and "Recycling").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use tracing::{debug, warn};

use super::{closed_error, journal_file_name, ActiveFile, Inner, ZERO_WRITE_BYTES};
use crate::storage::error::IoError;
use crate::storage::io::{Disk, DiskFile, DISK_ALIGN};

impl<D: Disk> Inner<D> {
    /// A new file of `size` bytes, named durably, open for O_DSYNC writes: a spare made
    /// new when one fits, else a file of zeros, synced. A file that could not be made
    /// whole is removed again.
    pub(super) async fn create_file(&self, size: u64) -> Result<ActiveFile<D>, IoError> {
        self.alive()?;
        let seq = self.next_file_seq.get();
        self.next_file_seq.set(seq + 1);
        let path = self.dir.join(journal_file_name(seq));
        if size == self.config.file_bytes() {
            loop {
                self.alive()?;
                let Some(old) = self.spare.borrow_mut().pop() else { break };
                match self.recycle_file(&old, &path, size).await {
                    Ok(f) => return Ok(f),
                    Err(_) if self.crashed.get() => return Err(closed_error(&self.dir)),
                    Err(e) => {
                        warn!(path = %old.display(), error = %e, "cannot recycle a journal file: it goes");
                        self.remove_quietly(&old, "a journal file that could not be recycled")
                            .await;
                        self.remove_quietly(&path, "a journal file that could not be recycled")
                            .await;
                    }
                }
            }
        }
        let made = self.make_file(path.clone(), size).await;
        if made.is_err() && !self.crashed.get() {
            self.remove_quietly(&path, "a journal file that could not be made").await;
        }
        made
    }

    /// Removes `path` (`what` it is, for the warning) if it exists. A failure is only
    /// logged: every file removed this way holds nothing a later start needs (zeros, or
    /// entries its partitions had synced into their segments).
    pub(super) async fn remove_quietly(&self, path: &Path, what: &str) {
        match self.disk.remove(path).await {
            Ok(()) | Err(IoError::NotFound { .. }) => {}
            Err(e) => warn!(path = %path.display(), error = %e, "cannot remove {what}"),
        }
    }

    async fn make_file(&self, path: PathBuf, size: u64) -> Result<ActiveFile<D>, IoError> {
        let file = Rc::new(self.disk.open(&path, true).await?);
        file.truncate(0).await?;
        file.allocate(size).await?;
        let mut at = 0u64;
        while at < size {
            let n = (size - at).min(ZERO_WRITE_BYTES as u64) as usize;
            let mut buf = file.alloc_write_buf(n);
            buf.as_mut().fill(0);
            file.write_at(buf, at).await?;
            at += n as u64;
        }
        file.fdatasync().await?;
        self.alive()?;
        self.disk.sync_dir(&self.dir).await?;
        let dsync = Rc::new(self.disk.open_dsync(&path).await?);
        let _ = file.close().await;
        let mut s = self.stats.get();
        s.files_created += 1;
        self.stats.set(s);
        debug!(path = %path.display(), size, "journal file created");
        Ok(ActiveFile { file: dsync, path, pos: 0, size, members: BTreeMap::new() })
    }

    /// Makes checkpointed file `old` (of `size` bytes) the new file `path`: see the module
    /// docs (first block zeroed durably before the rename, so its old records cannot be
    /// read as the new name's).
    async fn recycle_file(
        &self,
        old: &Path,
        path: &Path,
        size: u64,
    ) -> Result<ActiveFile<D>, IoError> {
        let dsync = Rc::new(self.disk.open_dsync(old).await?);
        let made = async {
            if dsync.size().await? != size {
                return Err(IoError::Other {
                    op: "recycle journal file",
                    path: old.display().to_string(),
                    errno: None,
                    message: format!("not {size} bytes long"),
                });
            }
            let mut head = dsync.alloc_write_buf(DISK_ALIGN);
            head.as_mut().fill(0);
            dsync.write_at(head, 0).await?;
            self.alive()?;
            self.disk.rename(old, path).await?;
            self.disk.sync_dir(&self.dir).await
        }
        .await;
        if let Err(e) = made {
            let _ = dsync.close().await;
            return Err(e);
        }
        let mut s = self.stats.get();
        s.files_recycled += 1;
        self.stats.set(s);
        debug!(from = %old.display(), path = %path.display(), "journal file recycled");
        Ok(ActiveFile {
            file: dsync,
            path: path.to_owned(),
            pos: 0,
            size,
            members: BTreeMap::new(),
        })
    }
}
