//! The storage engine one shard uses for the partitions it owns.
//!
//! - [`PartitionLog`] (`log/`): append with `none`/`written`/`durable` acks and
//!   group commit, read, offsets, retention, recovery; one file per task, `log/mod.rs` maps them.
//! - [`Segment`](segment::Segment): one `.log` file plus its sparse `.index` / `.timeindex`.
//! - [`free_file`] (`deleter.rs`): frees big files in paced truncation steps.
//! - [`journal::ShardJournal`] (`journal/`): the optional shard journal, one O_DSYNC record
//!   per commit cycle for all of a shard's partitions, replayed at start.
//! - [`ShardCache`]: recent batches for tailing readers, bounded per shard.
//! - The I/O seam ([`io::Disk`], [`io::DiskFile`]) with the real glommio DMA backend
//!   ([`DmaDisk`]) and the seeded fault-injecting simulator ([`SimDisk`]).
//!
//! On disk: `<data>/topics~/<topic>/<partition>/<20-digit base offset>.{log,index,timeindex}`
//! (the data directory is mapped in `broker/src/layout.rs`).

pub mod bytes;
pub mod cache;
pub mod config;
pub mod deleter;
pub mod dma_disk;
pub mod error;
mod filesystem_sync;
pub mod index;
pub mod io;
pub mod journal;
pub mod log;
mod retry_pause;
pub mod segment;
pub mod sim_disk;
mod sync_gate;
mod zero_ahead;

#[cfg(test)]
pub(crate) mod tests;

pub use bytes::ByteView;
pub use cache::{PartitionCache, ShardCache};
pub use config::{LogConfig, SEGMENT_BYTES_LIMIT, SEGMENT_BYTES_MIN};
pub use deleter::{free_file, DeletePace};
pub use dma_disk::DmaDisk;
pub use error::{IoError, StorageError};
pub use log::{
    AppendTicket, Claim, PartitionLog, ReadOutcome, RemovedTombstones, TimestampLookup,
    REMOVED_TOMBSTONES_MAX,
};
pub use sim_disk::{SimDisk, SimFaults};

/// The size of one stored batch, told without reading it whole
/// (`PartitionLog::batch_bytes_at`): what a reader takes room for before it reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchBytes {
    /// Its stored length.
    pub stored: usize,
    /// Its records' length before compression (0 when not compressed).
    pub uncompressed: usize,
}

impl BatchBytes {
    /// What reading and opening it takes: the stored batch, and its records decompressed.
    pub fn opened(&self) -> usize {
        self.stored + self.uncompressed
    }
}

/// Whether a read returns its first batch when that batch alone exceeds the read's byte
/// limit. Every other batch is returned only whole and within the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstBatch {
    /// Always: the reader must get past a batch larger than its limit (a subscriber, or the
    /// first partition of a fetch that has data).
    Always,
    /// Only if it fits: the read may come back empty although data is there (later
    /// partitions of a fetch whose budget is spent).
    IfItFits,
}
