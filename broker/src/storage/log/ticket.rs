//! Where an append landed, and how to wait for its ack level.
//!
//! Contract: a ticket resolves once its ack level is reached: at once for `none`, when the
//! write holding the batch completed for `written`, when a trusted sync (or an O_DSYNC
//! write) covered it for `durable`. A log closed or dropped first resolves it with `Closed`.

use futures_channel::oneshot;

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
