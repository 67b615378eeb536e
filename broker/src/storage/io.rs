//! The I/O seam: the few file operations the storage engine needs.
//!
//! Two backends implement it: [`crate::storage::dma_disk::DmaDisk`] (glommio DMA files,
//! O_DIRECT through io_uring — the real thing) and [`crate::storage::sim_disk::SimDisk`] (in
//! memory, driven by a seed: torn writes at a crash, EIO, ENOSPC, EMFILE, slow syncs, and loss of
//! everything not yet synced). Every engine test that can run on the simulator also runs on
//! the real disk.
//!
//! Contract for implementations:
//! - `write_at` positions and lengths are multiples of [`DiskFile::alignment`]; the write is
//!   whole or an error (a short write is reported as an error).
//! - Data is durable only after `fdatasync` (of its file) or `sync_filesystem` (of the
//!   filesystem holding it) returns Ok, and only if that call began after its write
//!   completed; a created file's name is durable only after `sync_dir` of its directory.
//! - `read_at` may return fewer bytes than asked at the end of the file.

#![allow(async_fn_in_trait)]

use std::path::Path;
use std::rc::Rc;

use super::error::IoError;

/// Alignment every backend honours at least (O_DIRECT on 4 KiB-sector devices).
pub const DISK_ALIGN: usize = 4096;

/// A filesystem: opens files, lists and syncs directories.
pub trait Disk: Clone + 'static {
    /// Its file handle.
    type File: DiskFile;
    /// Opens `path` for reading and writing, creating it if `create`.
    async fn open(&self, path: &Path, create: bool) -> Result<Self::File, IoError>;
    /// Opens an existing file so that each write through this handle is durable when it
    /// completes (O_DSYNC): that write's range and the metadata needed to read it back, not
    /// necessarily earlier writes still in the device's cache (the device may use FUA).
    async fn open_dsync(&self, path: &Path) -> Result<Self::File, IoError>;
    /// Removes a file.
    async fn remove(&self, path: &Path) -> Result<(), IoError>;
    /// Renames a file (durable once its directory is synced).
    async fn rename(&self, from: &Path, to: &Path) -> Result<(), IoError>;
    /// Creates a directory and its parents.
    async fn create_dir_all(&self, path: &Path) -> Result<(), IoError>;
    /// Removes an empty directory.
    async fn remove_dir(&self, path: &Path) -> Result<(), IoError>;
    /// Names of the entries in a directory.
    async fn list_dir(&self, path: &Path) -> Result<Vec<String>, IoError>;
    /// Makes the directory's entries (created, removed files) durable.
    async fn sync_dir(&self, path: &Path) -> Result<(), IoError>;
    /// A handle on the filesystem holding a directory ([`Disk::open_filesystem`]).
    type Filesystem: 'static;
    /// Opens the filesystem holding `dir` for [`Disk::sync_filesystem`]; `None` where a
    /// filesystem sync cannot be trusted to report a failure (see the implementations).
    async fn open_filesystem(&self, dir: &Path) -> Result<Option<Self::Filesystem>, IoError>;
    /// Whether `path` is on `fs` (a different filesystem mounted below its directory is
    /// not).
    async fn on_filesystem(&self, fs: &Self::Filesystem, path: &Path) -> Result<bool, IoError>;
    /// syncfs(2): every write to any file of `fs` that completed before the call is durable
    /// when it returns Ok. Reports a failed device flush, and each writeback error of the
    /// filesystem since `fs` was opened once (an error may be another file's).
    async fn sync_filesystem(&self, fs: &Self::Filesystem) -> Result<(), IoError>;
}

/// An open file.
pub trait DiskFile: 'static {
    /// Buffer type `write_at` consumes.
    type WriteBuf: AsMut<[u8]> + AsRef<[u8]>;
    /// Buffer type `read_at` returns.
    type ReadBuf: AsRef<[u8]> + 'static;

    /// Required alignment of write positions and lengths (a multiple of [`DISK_ALIGN`]).
    fn alignment(&self) -> usize;
    /// A buffer of `len` bytes (a multiple of the alignment) for `write_at`. Its contents are
    /// unspecified: the caller fills every byte (zeroing is a full extra pass over
    /// megabyte writes).
    fn alloc_write_buf(&self, len: usize) -> Self::WriteBuf;
    /// Writes the whole buffer at `pos`.
    async fn write_at(&self, buf: Self::WriteBuf, pos: u64) -> Result<(), IoError>;
    /// Reads up to `len` bytes at `pos` (fewer at end of file).
    async fn read_at(&self, pos: u64, len: usize) -> Result<Self::ReadBuf, IoError>;
    /// Reserves space so writes below `len` do not fail with ENOSPC.
    async fn allocate(&self, len: u64) -> Result<(), IoError>;
    /// Sets the file's length.
    async fn truncate(&self, len: u64) -> Result<(), IoError>;
    /// Makes written data durable.
    async fn fdatasync(&self) -> Result<(), IoError>;
    /// Current length of the file.
    async fn size(&self) -> Result<u64, IoError>;
    /// Closes the file once every other handle is gone.
    async fn close(self: Rc<Self>) -> Result<(), IoError>;
}
