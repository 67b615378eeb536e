//! Opening with the shard journal: appending an earlier run's journal entries that continue
//! the recovered log (`storage/journal/replay.rs` reads them).
//!
//! # Contract
//! - Entries ending at or below the recovered end are skipped (the segments kept them).
//! - Every other entry must continue the log exactly (its base offset is the log's end) and
//!   check out (header, length, CRC, at most the wire's largest batch: the limit the log was
//!   configured with when it journaled the batch may have been larger than today's). They
//!   are appended in order with `durable` acks, and replay returns once all are durable
//!   again (in the segments, or journaled anew).
//! - Replay succeeds only if it used every entry past the recovered end; anything else is an
//!   error, so the caller keeps the journal files and never opens the partition without
//!   them (appends there would reuse journal-acked offsets).

use wire::{AckLevel, BatchHeader};

use super::PartitionLog;
use crate::storage::error::{IoError, StorageError};
use crate::storage::io::Disk;
use crate::storage::journal::ReplayEntry;
use tracing::info;

impl<D: Disk> PartitionLog<D> {
    /// Appends `entries` (an earlier run's journal entries of this partition, in offset
    /// order) as the module docs say; returns how many batches it appended.
    pub(super) async fn replay_journal(
        &self,
        entries: Vec<ReplayEntry>,
    ) -> Result<usize, StorageError> {
        let start = self.next_offset();
        let batch_bytes_max = wire::constants::BATCH_BYTES_MAX as usize;
        let mut tickets = Vec::new();
        for e in entries {
            let next = self.next_offset();
            if e.next_offset <= next {
                continue;
            }
            let header = BatchHeader::new(&e.bytes);
            let checks = header.is_some_and(|h| {
                h.base_offset() == e.base_offset
                    && h.next_offset() == e.next_offset
                    && h.batch_len() as usize == e.bytes.len()
                    && wire::batch::header::covered_crc(&e.bytes) == h.crc()
                    && e.bytes.len() <= batch_bytes_max
            });
            if e.base_offset != next || !checks {
                return Err(StorageError::Io(IoError::Other {
                    op: "journal replay",
                    path: self.dir().display().to_string(),
                    errno: None,
                    message: format!(
                        "the journal entry of offsets {}..{} does not continue the log at {next} (checks out: {checks}); the journal files are kept",
                        e.base_offset, e.next_offset
                    ),
                }));
            }
            let append_ms = header.expect("checked").log_append_time_ms();
            self.writable().await;
            tickets.push(self.enqueue_within(
                &e.bytes,
                AckLevel::Durable,
                append_ms,
                batch_bytes_max,
            )?);
        }
        let n = tickets.len();
        for t in tickets {
            t.wait().await?;
        }
        if n > 0 {
            info!(dir = %self.dir().display(), from = start, to = self.next_offset(), batches = n, "journal entries replayed");
        }
        Ok(n)
    }
}
