//! Typed storage errors, each mapped to a stable wire error code. Out of descriptors (the
//! OS's EMFILE or the storage budget's refusal) is `RESOURCE_LIMIT`, which clients retry.

use wire::ErrorCode;

/// An operating-system I/O failure, classified by what the caller can do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IoError {
    /// ENOSPC / EDQUOT: retry once space is freed.
    #[error("no space left on device ({op} {path})")]
    NoSpace {
        /// Operation that failed.
        op: &'static str,
        /// File it failed on.
        path: String,
    },
    /// EMFILE / ENFILE, or the storage descriptor budget (`descriptors.rs` `StorageFiles`)
    /// has no room: retry once files close.
    #[error("too many open files ({op} {path}): {reason}")]
    TooManyFiles {
        /// Operation that failed.
        op: &'static str,
        /// File it failed on.
        path: String,
        /// Which limit.
        reason: String,
    },
    /// The file does not exist.
    #[error("not found: {path}")]
    NotFound {
        /// The path.
        path: String,
    },
    /// Any other error (EIO, EINVAL, ...).
    #[error("{op} {path}: {message} (errno {errno:?})")]
    Other {
        /// Operation that failed.
        op: &'static str,
        /// File it failed on.
        path: String,
        /// OS error number if known.
        errno: Option<i32>,
        /// Description.
        message: String,
    },
}

impl IoError {
    /// Classifies an OS error number.
    pub fn from_errno(
        op: &'static str,
        path: &std::path::Path,
        errno: Option<i32>,
        message: String,
    ) -> Self {
        let path = path.display().to_string();
        match errno {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => IoError::NoSpace { op, path },
            Some(libc::ENOENT) => IoError::NotFound { path },
            Some(libc::EMFILE) | Some(libc::ENFILE) => {
                IoError::TooManyFiles { op, path, reason: message }
            }
            _ => IoError::Other { op, path, errno, message },
        }
    }

    /// The storage descriptor budget refused `op` on `path`.
    pub fn over_budget(op: &'static str, path: &std::path::Path) -> Self {
        IoError::TooManyFiles {
            op,
            path: path.display().to_string(),
            reason: "the storage descriptor budget is spent".into(),
        }
    }

    /// Classifies a `std::io::Error`.
    pub fn from_std(op: &'static str, path: &std::path::Path, e: &std::io::Error) -> Self {
        let errno = e.raw_os_error().or(match e.kind() {
            std::io::ErrorKind::StorageFull => Some(libc::ENOSPC),
            std::io::ErrorKind::NotFound => Some(libc::ENOENT),
            _ => None,
        });
        Self::from_errno(op, path, errno, e.to_string())
    }
}

/// What can go wrong in the partition log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// An I/O operation failed.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The requested offset is outside `[log_start_offset, high_watermark]`.
    #[error("offset {offset} out of range [{log_start_offset}, {high_watermark}]")]
    OffsetOutOfRange {
        /// Requested offset.
        offset: u64,
        /// First stored offset.
        log_start_offset: u64,
        /// Next offset to be written.
        high_watermark: u64,
    },
    /// Stored bytes failed validation on read; they are never returned as data.
    #[error("corrupt data in {file} at position {position}: {reason}")]
    Corrupt {
        /// Segment file.
        file: String,
        /// Byte position.
        position: u64,
        /// What failed.
        reason: String,
    },
    /// A batch larger than the log accepts.
    #[error("batch of {batch_bytes} bytes exceeds the maximum {batch_bytes_max}")]
    BatchTooLarge {
        /// Its size.
        batch_bytes: usize,
        /// The limit.
        batch_bytes_max: usize,
    },
    /// A previous fdatasync failed; the log refuses writes until it is reopened, because the
    /// state of unsynced data is unknown after a failed sync.
    #[error("partition log is fenced after a failed sync: {0}")]
    Fenced(String),
    /// The log is closing or closed.
    #[error("partition log is closed")]
    Closed,
}

impl StorageError {
    /// The wire code that reports this error to a client.
    pub fn code(&self) -> ErrorCode {
        match self {
            StorageError::Io(IoError::NoSpace { .. }) => ErrorCode::DiskFull,
            StorageError::Io(IoError::TooManyFiles { .. }) => ErrorCode::ResourceLimit,
            StorageError::Io(_) | StorageError::Fenced(_) => ErrorCode::StorageIo,
            StorageError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
            StorageError::Corrupt { .. } => ErrorCode::CorruptStoredData,
            StorageError::BatchTooLarge { .. } => ErrorCode::BatchTooLarge,
            StorageError::Closed => ErrorCode::ShuttingDown,
        }
    }
}
