//! A [`SimDisk`] whose mutating operations stop for good after a budget: a process killed
//! between two exact disk operations. Tests freeze it, cancel the task that hangs, crash the
//! `SimDisk` and reopen, and learn which operation the kill came before.
//!
//! Counted operations are the ones the cleaner makes: creating opens, writes, truncates,
//! syncs and removes of any file but a `.log` (the cleaner writes `.log.cleaned`, never a
//! segment in place) or a `.deleted` one (the deleter's, paced by timers), every rename and
//! every directory sync. So with no appends running, a pass makes the same counted
//! operations in the same order on the same data. Once frozen, every mutating operation
//! hangs, counted or not.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::*;
use crate::storage::io::{Disk, DiskFile};
use crate::storage::sim_disk::SimFile;

#[derive(Default)]
struct FreezeState {
    counted: u64,
    budget: Option<u64>,
    frozen_at: Option<String>,
    last: String,
    /// Freeze `.1` counted operations after the first one labelled `.0` begins.
    armed: Option<(String, u64)>,
    /// Renames with this label fail (EIO) until cleared.
    failing_renames: Option<String>,
}

/// See the module docs.
#[derive(Clone)]
pub(crate) struct FreezeDisk {
    sim: SimDisk,
    state: Rc<RefCell<FreezeState>>,
}

impl FreezeDisk {
    pub(crate) fn new(sim: SimDisk) -> Self {
        FreezeDisk { sim, state: Rc::default() }
    }

    /// The disk underneath (crash, faults).
    pub(crate) fn sim(&self) -> &SimDisk {
        &self.sim
    }

    /// Counted operations so far.
    pub(crate) fn counted(&self) -> u64 {
        self.state.borrow().counted
    }

    /// Lets `n` more counted operations complete; every mutating one after them hangs.
    pub(crate) fn freeze_after(&self, n: u64) {
        let mut s = self.state.borrow_mut();
        s.budget = Some(s.counted + n);
        s.frozen_at = None;
    }

    /// Lets `n` counted operations complete from the first one labelled `label` on (the
    /// labels of `frozen_at`); every mutating one after them hangs.
    pub(crate) fn freeze_from(&self, label: &str, n: u64) {
        let mut s = self.state.borrow_mut();
        s.armed = Some((label.to_owned(), n));
        s.frozen_at = None;
    }

    /// Every rename labelled `label` (as `frozen_at` names them) fails with EIO until
    /// called with `None`.
    pub(crate) fn fail_renames(&self, label: Option<&str>) {
        self.state.borrow_mut().failing_renames = label.map(str::to_owned);
    }

    /// The operation that hung first, if one did.
    pub(crate) fn frozen_at(&self) -> Option<String> {
        self.state.borrow().frozen_at.clone()
    }

    /// Operations complete again (after the crash); returns the one that hung first.
    pub(crate) fn thaw(&self) -> Option<String> {
        let mut s = self.state.borrow_mut();
        s.budget = None;
        s.armed = None;
        s.frozen_at.take()
    }

    /// Before a mutating operation: hangs when frozen, else counts it if `counts`.
    async fn gate(&self, op: &str, path: &Path, counts: bool) {
        let label = match op {
            "sync_dir" => format!("sync_dir after {}", self.state.borrow().last),
            _ => format!("{op} {}", generic_name(path)),
        };
        let frozen = {
            let mut s = self.state.borrow_mut();
            if counts && s.armed.as_ref().is_some_and(|(l, _)| *l == label) {
                let (_, n) = s.armed.take().expect("armed");
                s.budget = Some(s.counted + n);
            }
            if s.budget.is_some_and(|b| s.counted >= b) {
                s.frozen_at.get_or_insert(label);
                true
            } else {
                if counts {
                    s.counted += 1;
                    s.last = label;
                }
                false
            }
        };
        if frozen {
            std::future::pending::<()>().await;
        }
    }
}

/// A file's name with a segment's 20-digit base offset written `<seg>`, so labels of the same
/// step on different segments are equal.
fn generic_name(path: &Path) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match name.get(..20) {
        Some(digits) if digits.bytes().all(|b| b.is_ascii_digit()) => {
            format!("<seg>{}", &name[20..])
        }
        _ => name,
    }
}

/// Whether the cleaner's operations on `path` are counted (see the module docs).
fn counted_file(path: &Path) -> bool {
    let name = path.to_string_lossy();
    !name.ends_with(".log") && !name.ends_with(".deleted")
}

/// A [`SimFile`] behind a [`FreezeDisk`].
pub(crate) struct FreezeFile {
    inner: SimFile,
    disk: FreezeDisk,
    path: PathBuf,
}

impl Disk for FreezeDisk {
    type File = FreezeFile;

    async fn open(&self, path: &Path, create: bool) -> Result<FreezeFile, IoError> {
        if create {
            self.gate("create", path, counted_file(path)).await;
        }
        let inner = self.sim.open(path, create).await?;
        Ok(FreezeFile { inner, disk: self.clone(), path: path.to_owned() })
    }

    async fn open_dsync(&self, path: &Path) -> Result<FreezeFile, IoError> {
        let inner = self.sim.open_dsync(path).await?;
        Ok(FreezeFile { inner, disk: self.clone(), path: path.to_owned() })
    }

    async fn remove(&self, path: &Path) -> Result<(), IoError> {
        self.gate("remove", path, counted_file(path)).await;
        self.sim.remove(path).await
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<(), IoError> {
        self.gate("rename", from, true).await;
        let label = format!("rename {}", generic_name(from));
        if self.state.borrow().failing_renames.as_ref() == Some(&label) {
            return Err(IoError::Other {
                op: "rename",
                path: from.display().to_string(),
                errno: Some(5),
                message: "injected EIO".into(),
            });
        }
        self.sim.rename(from, to).await
    }

    async fn create_dir_all(&self, path: &Path) -> Result<(), IoError> {
        self.sim.create_dir_all(path).await
    }

    async fn remove_dir(&self, path: &Path) -> Result<(), IoError> {
        self.sim.remove_dir(path).await
    }

    async fn list_dir(&self, path: &Path) -> Result<Vec<String>, IoError> {
        self.sim.list_dir(path).await
    }

    async fn sync_dir(&self, path: &Path) -> Result<(), IoError> {
        self.gate("sync_dir", path, true).await;
        self.sim.sync_dir(path).await
    }

    type Filesystem = <SimDisk as Disk>::Filesystem;

    async fn open_filesystem(&self, dir: &Path) -> Result<Option<Self::Filesystem>, IoError> {
        self.sim.open_filesystem(dir).await
    }

    async fn on_filesystem(&self, fs: &Self::Filesystem, path: &Path) -> Result<bool, IoError> {
        self.sim.on_filesystem(fs, path).await
    }

    async fn sync_filesystem(&self, fs: &Self::Filesystem) -> Result<(), IoError> {
        self.sim.sync_filesystem(fs).await
    }
}

impl DiskFile for FreezeFile {
    type WriteBuf = <SimFile as DiskFile>::WriteBuf;
    type ReadBuf = <SimFile as DiskFile>::ReadBuf;

    fn alignment(&self) -> usize {
        self.inner.alignment()
    }

    fn alloc_write_buf(&self, len: usize) -> Self::WriteBuf {
        self.inner.alloc_write_buf(len)
    }

    async fn write_at(&self, buf: Self::WriteBuf, pos: u64) -> Result<(), IoError> {
        self.disk.gate("write", &self.path, counted_file(&self.path)).await;
        self.inner.write_at(buf, pos).await
    }

    async fn read_at(&self, pos: u64, len: usize) -> Result<Self::ReadBuf, IoError> {
        self.inner.read_at(pos, len).await
    }

    async fn allocate(&self, len: u64) -> Result<(), IoError> {
        self.disk.gate("allocate", &self.path, counted_file(&self.path)).await;
        self.inner.allocate(len).await
    }

    async fn truncate(&self, len: u64) -> Result<(), IoError> {
        self.disk.gate("truncate", &self.path, counted_file(&self.path)).await;
        self.inner.truncate(len).await
    }

    async fn fdatasync(&self) -> Result<(), IoError> {
        self.disk.gate("fdatasync", &self.path, counted_file(&self.path)).await;
        self.inner.fdatasync().await
    }

    async fn size(&self) -> Result<u64, IoError> {
        self.inner.size().await
    }

    async fn close(self: Rc<Self>) -> Result<(), IoError> {
        match Rc::try_unwrap(self) {
            Ok(this) => Rc::new(this.inner).close().await,
            Err(_) => Ok(()),
        }
    }
}
