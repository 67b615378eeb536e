//! The real backend: glommio DMA files (O_DIRECT, io_uring).
//!
//! Files are opened read-write (never with `DmaFile::create`, which truncates); lengths are
//! tracked by the engine, not by `stat` (glommio stats by path). Alignment is at least 4 KiB
//! even where sysfs reports 512, so the same code is correct on every device.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{DmaBuffer, DmaFile, OpenOptions, ReadResult};

use super::error::IoError;
use super::io::{Disk, DiskFile, DISK_ALIGN};

/// Glommio DMA-file backend. Must be used inside a glommio executor.
#[derive(Debug, Clone, Copy, Default)]
pub struct DmaDisk;

/// An open DMA file.
#[derive(Debug)]
pub struct DmaDiskFile {
    file: DmaFile,
    path: PathBuf,
    alignment: usize,
}

fn gerr<T: std::fmt::Debug>(op: &'static str, path: &Path, e: glommio::GlommioError<T>) -> IoError {
    let errno = e.raw_os_error();
    IoError::from_errno(op, path, errno, e.to_string())
}

thread_local! {
    /// Devices whose io_uring poll support this executor thread has probed.
    static PROBED_DEVICES: std::cell::RefCell<std::collections::HashSet<u64>> = Default::default();
}

/// Makes glommio learn, with a real read, whether the device of `dir` supports polled I/O.
///
/// glommio probes IOPOLL support once per device and thread, on the first DMA file opened,
/// by reading its first block. If that file is empty the read "succeeds" without reaching
/// the device, glommio wrongly enables the poll ring, and every later read fails with
/// EOPNOTSUPP on devices without polling (virtio, most cloud disks). Opening a non-empty
/// probe file first makes the probe meaningful.
async fn probe_device(dir: &Path) -> Result<(), IoError> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(dir).map_err(|e| IoError::from_std("stat", dir, &e))?.dev();
    if PROBED_DEVICES.with(|p| p.borrow().contains(&dev)) {
        return Ok(());
    }
    // One name per probe: shards probing the same directory at once (every shard reads the
    // shard journals' directory at start) must not remove each other's probe file, which
    // makes glommio panic in `statfs` after its open.
    static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let probe = dir.join(format!(".iopoll-probe-{}-{n}", std::process::id()));
    std::fs::write(&probe, [0u8; DISK_ALIGN])
        .map_err(|e| IoError::from_std("write probe", &probe, &e))?;
    let opened = DmaFile::open(&probe).await;
    let _ = std::fs::remove_file(&probe);
    let file = opened.map_err(|e| gerr("open probe", &probe, e))?;
    let _ = file.close().await;
    PROBED_DEVICES.with(|p| p.borrow_mut().insert(dev));
    Ok(())
}

/// Opens `path` read-write for DMA with extra open `flags`.
async fn open_dma(path: &Path, create: bool, flags: i32) -> Result<DmaDiskFile, IoError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .custom_flags(flags)
        .dma_open(path)
        .await
        .map_err(|e| gerr("open", path, e))?;
    let alignment = file.alignment().max(DISK_ALIGN as u64) as usize;
    Ok(DmaDiskFile { file, path: path.to_owned(), alignment })
}

impl Disk for DmaDisk {
    type File = DmaDiskFile;

    async fn open(&self, path: &Path, create: bool) -> Result<DmaDiskFile, IoError> {
        probe_device(path.parent().unwrap_or(Path::new("."))).await?;
        open_dma(path, create, 0).await
    }

    async fn open_dsync(&self, path: &Path) -> Result<DmaDiskFile, IoError> {
        open_dma(path, false, libc::O_DSYNC).await
    }

    async fn remove(&self, path: &Path) -> Result<(), IoError> {
        glommio::io::remove(path).await.map_err(|e| gerr("remove", path, e))
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<(), IoError> {
        glommio::io::rename(from, to).await.map_err(|e| gerr("rename", from, e))
    }

    async fn create_dir_all(&self, path: &Path) -> Result<(), IoError> {
        std::fs::create_dir_all(path).map_err(|e| IoError::from_std("mkdir", path, &e))
    }

    async fn remove_dir(&self, path: &Path) -> Result<(), IoError> {
        std::fs::remove_dir(path).map_err(|e| IoError::from_std("rmdir", path, &e))
    }

    async fn list_dir(&self, path: &Path) -> Result<Vec<String>, IoError> {
        let entries =
            std::fs::read_dir(path).map_err(|e| IoError::from_std("readdir", path, &e))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| IoError::from_std("readdir", path, &e))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    async fn sync_dir(&self, path: &Path) -> Result<(), IoError> {
        let dir = glommio::io::Directory::open(path).await.map_err(|e| gerr("opendir", path, e))?;
        dir.sync().await.map_err(|e| gerr("fsync dir", path, e))?;
        dir.close().await.map_err(|e| gerr("close dir", path, e))
    }

    type Filesystem = DmaFilesystem;

    /// `None` on Linux before 5.17, whose syncfs drops the filesystem's `sync_fs` result (a
    /// failed device flush would read as success).
    async fn open_filesystem(&self, dir: &Path) -> Result<Option<DmaFilesystem>, IoError> {
        use std::os::unix::fs::MetadataExt;
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        if !syncfs_reports_flush_errors(&release) {
            return Ok(None);
        }
        let file = std::fs::File::open(dir).map_err(|e| IoError::from_std("open", dir, &e))?;
        let dev = file.metadata().map_err(|e| IoError::from_std("stat", dir, &e))?.dev();
        Ok(Some(DmaFilesystem { file: std::sync::Arc::new(file), dev, path: dir.to_owned() }))
    }

    async fn on_filesystem(&self, fs: &DmaFilesystem, path: &Path) -> Result<bool, IoError> {
        use std::os::unix::fs::MetadataExt;
        let dev = std::fs::metadata(path).map_err(|e| IoError::from_std("stat", path, &e))?.dev();
        Ok(dev == fs.dev)
    }

    /// On a thread of the executor's blocking pool: io_uring has no syncfs.
    async fn sync_filesystem(&self, fs: &DmaFilesystem) -> Result<(), IoError> {
        use std::os::fd::AsRawFd;
        let file = fs.file.clone();
        let synced = glommio::executor()
            .spawn_blocking(move || {
                // SAFETY: syncfs only reads the descriptor, which `file` keeps open.
                match unsafe { libc::syncfs(file.as_raw_fd()) } {
                    0 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                }
            })
            .await;
        synced.map_err(|e| IoError::from_std("syncfs", &fs.path, &e))
    }
}

/// The filesystem holding a directory, open for syncfs (its descriptor's writeback error
/// cursor starts at the open).
#[derive(Debug)]
pub struct DmaFilesystem {
    file: std::sync::Arc<std::fs::File>,
    /// Its device number (`st_dev`).
    dev: u64,
    path: PathBuf,
}

/// Whether a kernel of this release (`uname -r`) has syncfs return the filesystem's flush
/// errors: Linux 5.17 ("fs: make sync_filesystem return errors from ->sync_fs"); writeback
/// errors since 5.8.
fn syncfs_reports_flush_errors(release: &str) -> bool {
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    let major = parts.next().and_then(|p| p.parse::<u32>().ok());
    let minor = parts.next().and_then(|p| p.parse::<u32>().ok());
    match (major, minor) {
        (Some(major), Some(minor)) => (major, minor) >= (5, 17),
        _ => false,
    }
}

/// A DMA buffer for one write (from glommio's I/O memory pool when it has room).
pub struct WriteBuffer(DmaBuffer);

impl AsRef<[u8]> for WriteBuffer {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl AsMut<[u8]> for WriteBuffer {
    fn as_mut(&mut self) -> &mut [u8] {
        self.0.as_bytes_mut()
    }
}

/// A completed DMA read.
pub struct DmaRead(ReadResult);

impl AsRef<[u8]> for DmaRead {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl DiskFile for DmaDiskFile {
    type WriteBuf = WriteBuffer;
    type ReadBuf = DmaRead;

    fn alignment(&self) -> usize {
        self.alignment
    }

    fn alloc_write_buf(&self, len: usize) -> WriteBuffer {
        assert!(len % self.alignment == 0 && len > 0, "unaligned DMA buffer of {len} bytes");
        WriteBuffer(self.file.alloc_dma_buffer(len))
    }

    async fn write_at(&self, buf: WriteBuffer, pos: u64) -> Result<(), IoError> {
        let len = buf.0.len();
        assert!(pos % self.alignment as u64 == 0, "unaligned write at {pos}");
        let written =
            self.file.write_at(buf.0, pos).await.map_err(|e| gerr("write", &self.path, e))?;
        if written != len {
            // A short O_DIRECT write happens when the device fills up mid-request.
            return Err(IoError::from_errno(
                "write",
                &self.path,
                Some(libc::ENOSPC),
                format!("short write: {written} of {len} bytes"),
            ));
        }
        Ok(())
    }

    async fn read_at(&self, pos: u64, len: usize) -> Result<DmaRead, IoError> {
        let len = len.max(1); // a zero-length O_DIRECT read is EOPNOTSUPP; reading 1 is harmless
        let r = self.file.read_at(pos, len).await.map_err(|e| gerr("read", &self.path, e))?;
        Ok(DmaRead(r))
    }

    async fn allocate(&self, len: u64) -> Result<(), IoError> {
        // Mode 0 (extends the size): appends below `len` then never change the file size,
        // so fdatasync has no size metadata to flush. Recovery finds the real end by CRC.
        self.file.pre_allocate(len, false).await.map_err(|e| gerr("fallocate", &self.path, e))
    }

    async fn truncate(&self, len: u64) -> Result<(), IoError> {
        self.file.truncate(len).await.map_err(|e| gerr("truncate", &self.path, e))
    }

    async fn fdatasync(&self) -> Result<(), IoError> {
        self.file.fdatasync().await.map_err(|e| gerr("fdatasync", &self.path, e))
    }

    async fn size(&self) -> Result<u64, IoError> {
        self.file.file_size().await.map_err(|e| gerr("stat", &self.path, e))
    }

    async fn close(self: Rc<Self>) -> Result<(), IoError> {
        match Rc::try_unwrap(self) {
            Ok(this) => this.file.close().await.map_err(|e| gerr("close", &this.path, e)),
            // Another handle (a reader) still holds it; it closes when that one drops.
            Err(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syncfs_is_trusted_from_linux_5_17() {
        for (release, trusted) in [
            ("6.18.0-firecracker", true),
            ("5.17.0", true),
            ("5.16.20-generic", false),
            ("4.19.0-27-amd64", false),
            ("10.0", true),
            ("garbage", false),
            ("", false),
        ] {
            assert_eq!(syncfs_reports_flush_errors(release), trusted, "{release}");
        }
    }

    #[test]
    fn a_filesystem_sync_covers_the_data_directory() {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let tmp = tempfile::tempdir().unwrap();
                let disk = DmaDisk;
                let fs = disk.open_filesystem(tmp.path()).await.unwrap().expect("Linux >= 5.17");
                let sub = tmp.path().join("topic");
                disk.create_dir_all(&sub).await.unwrap();
                assert!(disk.on_filesystem(&fs, &sub).await.unwrap());
                assert!(!disk.on_filesystem(&fs, Path::new("/proc")).await.unwrap());
                let file = disk.open(&sub.join("a.log"), true).await.unwrap();
                let mut buf = file.alloc_write_buf(DISK_ALIGN);
                buf.as_mut().fill(7);
                file.write_at(buf, 0).await.unwrap();
                disk.sync_filesystem(&fs).await.unwrap();
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
