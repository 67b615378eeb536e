//! File descriptors: the process-wide limit shared out between connections and storage.
//!
//! Contract: at start the broker raises its open-files limit as far as it may, keeps
//! `OPEN_FILES_RESERVED` for listeners, the data directory and the rest, and splits what is
//! left ([`DescriptorPlan`]): connections keep up to three quarters (more when storage needs
//! less), storage the rest. Each share is one process-wide pool of atomic counts that every
//! shard (a thread) takes from, so however work spreads over the shards the broker holds
//! as many descriptors as the limit allows and never more:
//! - [`ConnectionSlots`]: one slot a connection; a client past it is closed at accept.
//! - [`StorageFiles`]: the storage budget (`storage_files_max` may cap it). Each open
//!   partition reserves [`FDS_PER_PARTITION`] for its active segment's `.log` (required);
//!   creating a partition past [`StorageFiles::partitions_max`] is refused with a clear
//!   error. The rest of the budget (at least a quarter) is for optional files, which take a
//!   [`FileSlot`] when they open and give it back when closed, and fail soft when none is
//!   left: index files (hints), the O_DSYNC handle (fdatasync instead), a sealed segment's
//!   `.log` kept open for reads or for its background seal, recovery's index reads, the
//!   deleter's paced truncation. [`FileUse::Kept`] files may take all but a quarter of the
//!   optional files; that quarter is left for [`FileUse::Brief`] opens (one read of a sealed
//!   segment, recovery), so long-held hints never stop reads.
//!
//! Not counted (they come out of `OPEN_FILES_RESERVED`): a directory open for its fsync or
//! listing, and glommio's one-time device probe per shard.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tracing::info;

/// File descriptors a partition reserves in [`StorageFiles`]: its active segment's `.log`.
/// Everything else it opens (index files, O_DSYNC, sealed segments for reads or a seal)
/// is optional and takes a [`FileSlot`] while open.
pub const FDS_PER_PARTITION: u64 = 1;
/// Descriptors kept for listeners, the data directory, the trash and everything else.
pub const OPEN_FILES_RESERVED: u64 = 1024;

/// Raises the open-files limit: every partition holds a few file descriptors and every
/// connection one, and the usual soft default (1024) is far below what a broker with
/// thousands of partitions or connections needs. A privileged broker raises the hard limit
/// too (to 1,048,576); otherwise the soft limit goes up to the hard one. Returns the limit
/// in force.
pub fn raise_open_files_limit() -> u64 {
    const WANTED: libc::rlim_t = 1 << 20;
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with valid pointers to stack rlimits we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        let old = lim.rlim_cur;
        let both = libc::rlimit { rlim_cur: WANTED, rlim_max: WANTED.max(lim.rlim_max) };
        if old < WANTED && libc::setrlimit(libc::RLIMIT_NOFILE, &both) == 0 {
            info!(from = old, to = WANTED, "raised the open-files limit");
            return WANTED;
        }
        if old < lim.rlim_max {
            let max = lim.rlim_max;
            lim.rlim_cur = max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                info!(from = old, to = max, "raised the open-files limit");
                return max;
            }
        }
        old
    }
}

/// How the open-files limit is shared out at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescriptorPlan {
    /// Connections the whole broker holds at once (one descriptor each).
    pub connections: usize,
    /// The storage budget ([`StorageFiles`]): partitions' reservations and optional files.
    pub storage_files: u64,
    /// Partitions the storage budget holds (`FDS_PER_PARTITION` each, at most the
    /// configured number).
    pub partitions: u32,
}

impl DescriptorPlan {
    /// The configured limits when `open_files` covers them all beside
    /// `OPEN_FILES_RESERVED`; otherwise connections keep up to three quarters of what is
    /// usable (more when storage needs less) and storage gets the rest, capped at
    /// `storage_files_max` unless that is 0. Connections come first: a partition refused at
    /// create gets a clear error, a client refused at connect gets nothing.
    pub fn new(
        open_files: u64,
        shards: usize,
        connections_per_shard: usize,
        partitions: u32,
        storage_files_max: u64,
    ) -> Self {
        let usable = open_files.saturating_sub(OPEN_FILES_RESERVED);
        let shards = shards.max(1) as u64;
        let wanted = connections_per_shard as u64 * shards;
        let storage_wanted = StorageFiles::files_for_partitions(partitions);
        let for_connections =
            wanted.min(usable / 4 * 3).max(usable.saturating_sub(storage_wanted).min(wanted));
        let mut storage_files = usable - for_connections;
        if storage_files_max > 0 {
            storage_files = storage_files.min(storage_files_max);
        }
        DescriptorPlan {
            connections: for_connections as usize,
            storage_files,
            partitions: StorageFiles::partitions_for_files(storage_files, partitions),
        }
    }
}

/// The broker-wide pool of connection descriptors; see the module docs.
#[derive(Debug)]
pub struct ConnectionSlots {
    max: usize,
    open: AtomicUsize,
}

impl ConnectionSlots {
    /// A pool of `max` connections.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(ConnectionSlots { max, open: AtomicUsize::new(0) })
    }

    /// A slot for one more connection, or `None` when the pool is spent. The slot returns
    /// to the pool when dropped.
    pub fn take(self: &Arc<Self>) -> Option<ConnectionSlot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max).then_some(n + 1))
            .ok()
            .map(|_| ConnectionSlot { pool: self.clone() })
    }

    /// Connections holding a slot now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// The pool's size.
    pub fn max(&self) -> usize {
        self.max
    }
}

/// One connection's share of [`ConnectionSlots`], given back on drop.
#[derive(Debug)]
pub struct ConnectionSlot {
    pool: Arc<ConnectionSlots>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.pool.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The broker-wide descriptor pools every shard takes from.
#[derive(Debug, Clone)]
pub struct DescriptorPools {
    /// One slot a connection.
    pub connections: Arc<ConnectionSlots>,
    /// The storage budget.
    pub storage: Arc<StorageFiles>,
}

/// Why a storage file is open, which decides how much of the optional files it may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileUse {
    /// Held for a while: index files, the O_DSYNC handle, a sealed `.log` kept for later
    /// reads or its seal, the deleter's file. All optional files but a quarter.
    Kept,
    /// Held for one operation and closed at once: a read of a sealed segment that could not
    /// keep its file, recovery's index files. Any optional file.
    Brief,
}

/// The broker-wide storage descriptor budget; see the module docs.
#[derive(Debug)]
pub struct StorageFiles {
    files_max: u64,
    partitions_max: u32,
    /// Optional files open at once, at most (`files_max` less the partitions' reservations).
    optional_max: usize,
    /// Of those, [`FileUse::Kept`] ones (the rest stay free for brief opens).
    kept_max: usize,
    partitions: AtomicUsize,
    optional: AtomicUsize,
    /// Optional opens refused so far (the callers went without).
    refused: AtomicU64,
}

impl StorageFiles {
    /// A budget of `files_max` descriptors: at most `partitions_wanted` partitions, and at
    /// least a quarter of the files for optional ones.
    pub fn new(files_max: u64, partitions_wanted: u32) -> Arc<Self> {
        let partitions_max = Self::partitions_for_files(files_max, partitions_wanted);
        let optional = files_max - u64::from(partitions_max) * FDS_PER_PARTITION;
        Self::with_split(partitions_max, optional as usize)
    }

    /// A budget of exactly `partitions_max` partitions and `optional_max` optional files
    /// (tests and the simulation pick small ones).
    pub fn with_split(partitions_max: u32, optional_max: usize) -> Arc<Self> {
        Arc::new(StorageFiles {
            files_max: u64::from(partitions_max) * FDS_PER_PARTITION + optional_max as u64,
            partitions_max,
            optional_max,
            kept_max: optional_max - optional_max.div_ceil(4),
            partitions: AtomicUsize::new(0),
            optional: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// A budget no test reaches.
    pub fn unlimited() -> Arc<Self> {
        Self::with_split(u32::MAX, usize::MAX >> 1)
    }

    /// Partitions a budget of `files` holds: at most `wanted`, leaving a quarter of the
    /// files (rounded up) or more for optional ones.
    pub fn partitions_for_files(files: u64, wanted: u32) -> u32 {
        let for_partitions = files - files.div_ceil(4);
        (for_partitions / FDS_PER_PARTITION).min(u64::from(wanted)) as u32
    }

    /// The smallest budget that holds `partitions` partitions.
    pub fn files_for_partitions(partitions: u32) -> u64 {
        let reserved = u64::from(partitions) * FDS_PER_PARTITION;
        reserved + reserved.div_ceil(3)
    }

    /// One partition's reservation (`FDS_PER_PARTITION`, for its active `.log`), or `None`
    /// when `partitions_max` partitions hold one. Given back on drop.
    pub fn reserve_partition(self: &Arc<Self>) -> Option<FileSlot> {
        let max = self.partitions_max as usize;
        self.partitions
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .ok()
            .map(|_| FileSlot { pool: self.clone(), partition: true })
    }

    /// A slot for one optional file, or `None` when `use_`'s share is spent: the caller goes
    /// without (see the module docs). Given back on drop, which must come with the file's
    /// close.
    pub fn take(self: &Arc<Self>, use_: FileUse) -> Option<FileSlot> {
        let max = match use_ {
            FileUse::Kept => self.kept_max,
            FileUse::Brief => self.optional_max,
        };
        let taken = self
            .optional
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1));
        if taken.is_err() {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        taken.ok().map(|_| FileSlot { pool: self.clone(), partition: false })
    }

    /// Optional opens refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// The whole budget in descriptors.
    pub fn files_max(&self) -> u64 {
        self.files_max
    }

    /// Partitions the budget holds.
    pub fn partitions_max(&self) -> u32 {
        self.partitions_max
    }

    /// Optional files the budget holds.
    pub fn optional_max(&self) -> usize {
        self.optional_max
    }

    /// Partitions holding a reservation now.
    pub fn partitions_open(&self) -> usize {
        self.partitions.load(Ordering::Acquire)
    }

    /// Optional files holding a slot now.
    pub fn optional_open(&self) -> usize {
        self.optional.load(Ordering::Acquire)
    }
}

/// A partition's reservation or an optional file's slot in [`StorageFiles`], given back on
/// drop.
#[derive(Debug)]
pub struct FileSlot {
    pool: Arc<StorageFiles>,
    partition: bool,
}

impl Drop for FileSlot {
    fn drop(&mut self) {
        let count = if self.partition { &self.pool.partitions } else { &self.pool.optional };
        count.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_are_shared_so_partitions_cannot_starve_connections() {
        let plan = |connections, storage_files, partitions| DescriptorPlan {
            connections,
            storage_files,
            partitions,
        };
        // Plenty: the configured limits stand.
        let p = DescriptorPlan::new(1 << 20, 2, 20_000, 100_000, 0);
        assert_eq!(p, plan(40_000, 1_007_552, 100_000));
        // 10,000 descriptors, 2 shards: 8,976 usable; connections keep three quarters,
        // partitions three quarters of the rest.
        let p = DescriptorPlan::new(10_000, 2, 20_000, 100_000, 0);
        assert_eq!(p, plan(6_732, 2_244, 1_683));
        // Few partitions wanted: connections may use what storage leaves.
        let p = DescriptorPlan::new(10_000, 2, 20_000, 1_000, 0);
        assert_eq!(p, plan(7_642, 1_334, 1_000));
        // This machine's limit (20,000): 10,000 idle connections fit, however they spread.
        let p = DescriptorPlan::new(20_000, 2, 20_000, 100_000, 0);
        assert_eq!(p, plan(14_232, 4_744, 3_558));
        // Few connections wanted: storage gets the rest.
        let p = DescriptorPlan::new(10_000, 1, 100, 100_000, 0);
        assert_eq!(p, plan(100, 8_876, 6_657));
        // `storage_files_max` caps the storage budget (connections keep their share).
        let p = DescriptorPlan::new(10_000, 1, 100, 100_000, 40);
        assert_eq!(p, plan(100, 40, 30));
        // Nothing usable.
        let p = DescriptorPlan::new(1_000, 1, 100, 100, 0);
        assert_eq!(p, plan(0, 0, 0));
        // The budget for n partitions holds n of them.
        for n in 0..2_000 {
            let files = StorageFiles::files_for_partitions(n);
            assert!(StorageFiles::partitions_for_files(files, u32::MAX) >= n, "{n}");
        }
    }

    #[test]
    fn storage_files_keep_partitions_and_brief_opens_apart_from_kept_files() {
        let files = StorageFiles::new(40, u32::MAX);
        assert_eq!((files.partitions_max(), files.optional_max()), (30, 10));
        let parts: Vec<_> = (0..30).map(|_| files.reserve_partition().expect("room")).collect();
        assert!(files.reserve_partition().is_none(), "31 partitions in a budget of 30");
        // Kept files take 7 of the 10 optional ones; 3 stay for brief opens.
        let kept: Vec<_> = (0..7).map(|_| files.take(FileUse::Kept).expect("room")).collect();
        assert!(files.take(FileUse::Kept).is_none(), "kept files past their share");
        let brief: Vec<_> = (0..3).map(|_| files.take(FileUse::Brief).expect("room")).collect();
        assert!(files.take(FileUse::Brief).is_none(), "past the budget");
        assert_eq!(files.optional_open(), 10);
        drop(brief);
        drop(kept);
        drop(parts);
        assert_eq!((files.partitions_open(), files.optional_open()), (0, 0));
        // From another shard's thread: the same pool.
        let taken = std::thread::spawn({
            let files = files.clone();
            move || files.take(FileUse::Kept)
        })
        .join()
        .unwrap();
        assert!(taken.is_some());
        assert_eq!(files.optional_open(), 1);
    }

    #[test]
    fn connection_slots_are_one_pool_across_threads_and_come_back_on_drop() {
        let pool = ConnectionSlots::new(3);
        let a = pool.take().expect("first");
        let b = std::thread::spawn({
            let pool = pool.clone();
            move || pool.take().expect("second, from another shard's thread")
        })
        .join()
        .unwrap();
        let _c = pool.take().expect("third");
        assert!(pool.take().is_none(), "the pool is spent");
        assert_eq!(pool.open(), 3);
        drop(a);
        drop(b);
        assert_eq!(pool.open(), 1);
        assert!(pool.take().is_some(), "a returned slot is taken again");
    }
}
