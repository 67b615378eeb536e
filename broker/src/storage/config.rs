//! Tunables of one partition log, with units in every name, and the limits the log's
//! formats put on them.

use super::io::DISK_ALIGN;

/// Smallest `segment_bytes_max`: one disk block.
pub const SEGMENT_BYTES_MIN: u64 = DISK_ALIGN as u64;
/// Largest `segment_bytes_max`. A sparse index entry stores a batch's position in its
/// segment as a `u32` (`index.rs`), and every batch starts below the segment's maximum size
/// (only a segment's first batch may end past it), so positions stay below 2^32.
pub const SEGMENT_BYTES_LIMIT: u64 = 1 << 32;
const _: () = assert!(SEGMENT_BYTES_LIMIT - 1 <= u32::MAX as u64);
const _: () = assert!(SEGMENT_BYTES_MIN < SEGMENT_BYTES_LIMIT);

/// Settings of a partition log. Defaults suit a production broker; tests shrink them. It is
/// also the `[log]` table of the broker's config file.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Roll the active segment before it would exceed this size
    /// ([`SEGMENT_BYTES_MIN`]..=[`SEGMENT_BYTES_LIMIT`]).
    pub segment_bytes_max: u64,
    /// Roll the active segment when its first batch is older than this; 0 = never by age.
    pub segment_ms: i64,
    /// Delete oldest closed segments while the log is larger than this; -1 = no limit.
    pub retention_bytes: i64,
    /// Delete closed segments whose newest record is older than this; -1 = forever.
    pub retention_ms: i64,
    /// One sparse index entry per this many bytes of log.
    pub index_interval_bytes: u32,
    /// Space is reserved (fallocate) ahead of the data in steps that double from 1 MiB up to
    /// this size (0 = off).
    pub preallocate_bytes: u64,
    /// Most bytes one write I/O carries (appends pending together are coalesced up to this).
    pub write_bytes_max: usize,
    /// Appends queued but not yet written above which producers should wait
    /// ([`super::PartitionLog::writable`]).
    pub pending_bytes_max: usize,
    /// With the shard journal (which makes appends durable and visible on its own; readers
    /// get unwritten batches from memory): a partition writes its segment once its oldest
    /// queued append is this old, so a slow partition makes one larger write instead of one
    /// per journal record; 0 = write at once. Sooner when `journal_segment_write_bytes` are
    /// queued, a journal checkpoint needs the data, or the log closes.
    pub journal_segment_write_delay_ms: u64,
    /// With the shard journal: write the segment at once when this much is queued (at most
    /// half of `pending_bytes_max` counts, so producers never wait on a deferred write).
    pub journal_segment_write_bytes: usize,
    /// Group commit: after a `durable` append arrives, wait up to this long for more before
    /// the fdatasync (0 = sync at once; appends arriving during a sync share the next one).
    pub group_commit_delay_us: u64,
    /// Group commit: sync without waiting once this many unsynced bytes are written.
    pub group_commit_bytes_max: u64,
    /// Largest batch accepted.
    pub batch_bytes_max: usize,
    /// On open, check every batch of closed segments too (not only the active one).
    pub recovery_full_check: bool,
    /// Catch-up reads fetch at least this much from disk at a time.
    pub read_ahead_bytes: usize,
    /// Retention frees a deleted segment's space in truncation steps of this size, so each
    /// filesystem journal commit (and online discard) stays small and syncs of the active
    /// segment are not held up behind one huge unlink; 0 = unlink at once.
    pub delete_chunk_bytes: u64,
    /// Pace of those truncation steps: at most this many bytes freed per second.
    pub delete_bytes_per_s: u64,
    /// Keep one segment retention deleted and reuse its file for the next roll: appends then
    /// overwrite blocks that are already written, so an fdatasync only flushes the device
    /// instead of also committing extent conversions to the filesystem journal (half the
    /// sync latency on ext4; `perf/results/2026-11-22-recycle.md`).
    pub segment_recycle: bool,
    /// Let readers see a batch as soon as its write completed, before an fdatasync covers
    /// it (lower end-to-end latency). After a power loss such a batch can be gone and its
    /// offset reused, so a consumer may have seen data that no longer exists. Off by
    /// default: readers see only synced data (the high watermark is the durable offset), and
    /// the log syncs whatever is written even when no append asked for `durable`.
    pub read_unsynced: bool,
    /// Writes that carry `durable` appends, when everything before them is already durable,
    /// go through an O_DSYNC descriptor and count as durable when they complete: one I/O
    /// round trip instead of a write and then an fdatasync (one more descriptor per active
    /// segment taking durable appends; `perf/results/2026-11-29-durable-floor.md`).
    pub dsync_writes: bool,
    /// Keep up to this much space past the active segment's data written with zeros and
    /// synced, in the background while the partition has no write in flight: appends then
    /// overwrite existing blocks, and their syncs (or O_DSYNC writes) only flush the device
    /// instead of also committing extent conversions to the filesystem journal. Never
    /// further ahead than the data appended to the segment since the log opened, so idle
    /// partitions write no zeros. Costs a second device write of each byte on fresh
    /// segments (reused ones need none). Zeros go out only in idle gaps (see
    /// `zero_idle_gap_us`), so a partition written back to back gets none and loses no
    /// throughput. Needs `preallocate_bytes` > 0; 0 (or anything below 16 KiB) = off
    /// (`perf/results/2026-11-29-zero-ahead.md`).
    pub zero_ahead_bytes: u64,
    /// Zero-ahead writes only while the partition's last idle gap (no write in flight,
    /// nothing queued) lasted at least this long: a partition written back to back gets no
    /// zeros in its short gaps.
    pub zero_idle_gap_us: u64,
    /// Compaction (`cleanup.policy = compact`; a topic setting): the cleaner rewrites
    /// closed segments keeping each key's latest record (`log/cleaner.rs`).
    pub compact: bool,
    /// Compaction: a tombstone (null value) that is a key's latest record is removed once it
    /// is this old (by its batch's log-append time), giving consumers time to see it.
    pub delete_retention_ms: i64,
    /// Compaction: clean once the part of the closed segments not yet cleaned is at least
    /// this many percent of them (Kafka's `min.cleanable.dirty.ratio` × 100).
    pub cleaner_dirty_percent_min: u8,
    /// Compaction: memory for one pass's key map (about 32 bytes a distinct key); a pass
    /// that fills it cleans what the map covers and the next pass goes on from there.
    pub cleaner_key_map_bytes: u64,
    /// Compaction: bytes a cleaner pass reads and writes per second at most (paced I/O, so
    /// appends never wait behind it).
    pub cleaner_bytes_per_s: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes_max: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            retention_ms: 7 * 24 * 3600 * 1000,
            index_interval_bytes: 4096,
            preallocate_bytes: 32 << 20,
            write_bytes_max: 1 << 20,
            pending_bytes_max: 8 << 20,
            journal_segment_write_delay_ms: 200,
            journal_segment_write_bytes: 256 << 10,
            group_commit_delay_us: 0,
            group_commit_bytes_max: 4 << 20,
            batch_bytes_max: wire::constants::BATCH_BYTES_MAX as usize,
            recovery_full_check: false,
            read_ahead_bytes: 256 << 10,
            delete_chunk_bytes: 8 << 20,
            delete_bytes_per_s: 256 << 20,
            segment_recycle: true,
            read_unsynced: false,
            dsync_writes: true,
            zero_ahead_bytes: 16 << 20,
            zero_idle_gap_us: 100,
            compact: false,
            delete_retention_ms: 24 * 3600 * 1000,
            cleaner_dirty_percent_min: 50,
            cleaner_key_map_bytes: 64 << 20,
            cleaner_bytes_per_s: 64 << 20,
        }
    }
}

impl LogConfig {
    /// How retention frees deleted segments.
    pub fn delete_pace(&self) -> super::DeletePace {
        super::DeletePace {
            chunk_bytes: self.delete_chunk_bytes,
            bytes_per_s: self.delete_bytes_per_s,
        }
    }
}
