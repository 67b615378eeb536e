//! Where an append landed, and how to wait for its ack level; the offsets an append claimed
//! before its bytes are stored.
//!
//! Contract: a ticket resolves once its ack level is reached: at once for `none`, when the
//! write holding the batch completed for `written`, when a trusted sync (or an O_DSYNC
//! write) covered it for `durable`. A log closed or dropped first resolves it with `Closed`.

use futures_channel::oneshot;
use wire::AckLevel;

use crate::storage::error::StorageError;

/// Where an enqueued batch landed; await [`AppendTicket::wait`] for its ack level.
#[derive(Debug)]
pub struct AppendTicket {
    /// Offset of its first record.
    pub base_offset: u64,
    /// Offset of its last record.
    pub last_offset: u64,
    /// Broker time stamped into it.
    pub log_append_time_ms: i64,
    pub(super) rx: Option<oneshot::Receiver<Result<(), StorageError>>>,
}

impl AppendTicket {
    /// Resolves when the requested ack level is reached (at once for `none`).
    pub async fn wait(self) -> Result<(), StorageError> {
        match self.rx {
            None => Ok(()),
            Some(rx) => rx.await.unwrap_or(Err(StorageError::Closed)),
        }
    }
}

/// Offsets of a completed [`PartitionLog::append`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendTicketDone {
    /// First offset.
    pub base_offset: u64,
    /// Last offset.
    pub last_offset: u64,
}

/// The offsets [`super::PartitionLog::claim`] gave a batch, until
/// [`super::PartitionLog::store`] queues it. A claim dropped unstored would leave a gap in
/// the log's offsets: it is a bug, and debug builds panic.
#[derive(Debug)]
#[must_use = "a claim must be stored"]
pub struct Claim {
    parts: ClaimParts,
    stored: bool,
}

/// What a [`Claim`] holds.
#[derive(Debug, Clone, Copy)]
pub(super) struct ClaimParts {
    pub(super) base_offset: u64,
    pub(super) next_offset: u64,
    pub(super) max_timestamp_ms: i64,
    pub(super) len: usize,
    pub(super) ack: AckLevel,
    pub(super) now_ms: i64,
}

impl Claim {
    pub(super) fn new(parts: ClaimParts) -> Self {
        Claim { parts, stored: false }
    }

    /// Offset of the batch's first record: assign it (`wire::batch::header::assign`).
    pub fn base_offset(&self) -> u64 {
        self.parts.base_offset
    }

    pub(super) fn into_parts(mut self) -> ClaimParts {
        self.stored = true;
        self.parts
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        debug_assert!(
            self.stored || std::thread::panicking(),
            "offsets {}.. claimed and never stored",
            self.parts.base_offset
        );
    }
}
