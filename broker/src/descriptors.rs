//! File descriptors: the process-wide limit shared out between connections and partitions.
//!
//! Contract: at start the broker raises its open-files limit as far as it may, keeps
//! `OPEN_FILES_RESERVED` for listeners, the data directory and the rest, and splits what is
//! left ([`DescriptorPlan`]): connections keep up to three quarters (more when partitions
//! need less), partitions the rest. The connection share is one process-wide pool
//! ([`ConnectionSlots`]) that every shard's accept loop takes from, so however the kernel
//! spreads connections over the shards' listeners, the broker holds as many as the limit
//! allows and never more. A partition past its share is refused at create with a clear
//! error (`partitions_max`); a client past the connection share is closed at accept.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tracing::info;

/// File descriptors a partition needs to open: its active segment's `.log`. Index files
/// (two more) open with a segment's first index entries and fail soft (they are hints), and
/// closed segments with data hold their `.log` open too, so busy partitions use more; an
/// exhausted limit then fails appends with a typed error, never the broker.
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
    /// Partitions the broker holds (`FDS_PER_PARTITION` each).
    pub partitions: u32,
}

impl DescriptorPlan {
    /// The configured limits when `open_files` covers them all beside
    /// `OPEN_FILES_RESERVED`; otherwise connections keep up to three quarters of what is
    /// usable (more when partitions need less) and partitions get the rest. Connections come
    /// first: a partition refused at create gets a clear error, a client refused at connect
    /// gets nothing.
    pub fn new(
        open_files: u64,
        shards: usize,
        connections_per_shard: usize,
        partitions: u32,
    ) -> Self {
        let usable = open_files.saturating_sub(OPEN_FILES_RESERVED);
        let shards = shards.max(1) as u64;
        let wanted = connections_per_shard as u64 * shards;
        let for_connections = wanted
            .min(usable / 4 * 3)
            .max(usable.saturating_sub(u64::from(partitions) * FDS_PER_PARTITION).min(wanted));
        let for_partitions = (usable - for_connections) / FDS_PER_PARTITION;
        DescriptorPlan {
            connections: for_connections as usize,
            partitions: for_partitions.min(u64::from(partitions)) as u32,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_are_shared_so_partitions_cannot_starve_connections() {
        // Plenty: the configured limits stand.
        let p = DescriptorPlan::new(1 << 20, 2, 20_000, 100_000);
        assert_eq!(p, DescriptorPlan { connections: 40_000, partitions: 100_000 });
        // 10,000 descriptors, 2 shards: 8,976 usable; connections keep three quarters.
        let p = DescriptorPlan::new(10_000, 2, 20_000, 100_000);
        assert_eq!(p, DescriptorPlan { connections: 6_732, partitions: 2_244 });
        // Few partitions wanted: connections may use what partitions leave.
        let p = DescriptorPlan::new(10_000, 2, 20_000, 1_000);
        assert_eq!(p, DescriptorPlan { connections: 7_976, partitions: 1_000 });
        // This machine's limit (20,000): 10,000 idle connections fit, however they spread.
        let p = DescriptorPlan::new(20_000, 2, 20_000, 100_000);
        assert_eq!(p, DescriptorPlan { connections: 14_232, partitions: 4_744 });
        // Few connections wanted: partitions get the rest.
        let p = DescriptorPlan::new(10_000, 1, 100, 100_000);
        assert_eq!(p, DescriptorPlan { connections: 100, partitions: 8_876 });
        // Nothing usable.
        let p = DescriptorPlan::new(1_000, 1, 100, 100);
        assert_eq!(p, DescriptorPlan { connections: 0, partitions: 0 });
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
