//! Records and bytes in and out per partition, counted on the shard that saw them go by.
//!
//! Contract:
//! - Produced records are counted on the partition's owner when they are queued for the log;
//!   fetched records on the shard that answers the client (after the response's byte budget
//!   cut them, so exactly what was sent); pushed records on the owner that pushes them. A
//!   scrape sums every shard's counts per (topic, partition), so a forwarded fetch counts
//!   once, where it was answered.
//! - Touched only on the owning shard (`RefCell`, no await while borrowed); a count is one
//!   hash lookup by topic name (no allocation) and an index by partition.
//! - Bounded: at most [`PARTITIONS_MAX`] partition slots (a topic's slots run from 0 to the
//!   highest index counted) per shard; past it, new partitions count only in the shard totals (`counters.rs`). Counts of deleted topics are dropped at the
//!   next scrape (`forget_missing`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// Most partitions one shard counts (the broker's own `partitions_max` is lower by default).
pub const PARTITIONS_MAX: usize = 100_000;

/// One partition's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Records appended.
    pub records_in: u64,
    /// Batch bytes appended.
    pub bytes_in: u64,
    /// Records sent to consumers (fetch answers and pushes).
    pub records_out: u64,
    /// Batch bytes sent to consumers.
    pub bytes_out: u64,
}

impl Traffic {
    /// Adds another count.
    pub fn add(&mut self, o: &Traffic) {
        self.records_in = self.records_in.wrapping_add(o.records_in);
        self.bytes_in = self.bytes_in.wrapping_add(o.bytes_in);
        self.records_out = self.records_out.wrapping_add(o.records_out);
        self.bytes_out = self.bytes_out.wrapping_add(o.bytes_out);
    }
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct PartitionTraffic {
    by_topic: RefCell<HashMap<String, Vec<Traffic>>>,
    counted: Cell<usize>,
}

impl PartitionTraffic {
    /// Counts `records` records of `bytes` bytes appended to `topic`/`partition`.
    pub fn count_in(&self, topic: &str, partition: u32, records: u64, bytes: u64) {
        self.with(topic, partition, |t| {
            t.records_in = t.records_in.wrapping_add(records);
            t.bytes_in = t.bytes_in.wrapping_add(bytes);
        });
    }

    /// Counts `records` records of `bytes` bytes sent from `topic`/`partition`.
    pub fn count_out(&self, topic: &str, partition: u32, records: u64, bytes: u64) {
        self.with(topic, partition, |t| {
            t.records_out = t.records_out.wrapping_add(records);
            t.bytes_out = t.bytes_out.wrapping_add(bytes);
        });
    }

    fn with(&self, topic: &str, partition: u32, f: impl FnOnce(&mut Traffic)) {
        let index = partition as usize;
        let mut by_topic = self.by_topic.borrow_mut();
        let slots = match by_topic.get_mut(topic) {
            Some(slots) => slots,
            None if self.counted.get() < PARTITIONS_MAX => {
                by_topic.entry(topic.to_owned()).or_default()
            }
            None => return,
        };
        if index >= slots.len() {
            let grow = index + 1 - slots.len();
            if self.counted.get() + grow > PARTITIONS_MAX {
                return;
            }
            self.counted.set(self.counted.get() + grow);
            slots.resize(index + 1, Traffic::default());
        }
        f(&mut slots[index]);
    }

    /// A copy of the counts of `topic`/`partition`.
    pub fn get(&self, topic: &str, partition: u32) -> Traffic {
        self.by_topic
            .borrow()
            .get(topic)
            .and_then(|slots| slots.get(partition as usize))
            .copied()
            .unwrap_or_default()
    }

    /// A copy of every count: (topic, partition, counts), partitions with traffic only.
    pub fn snapshot(&self) -> Vec<(String, u32, Traffic)> {
        let by_topic = self.by_topic.borrow();
        let mut out = Vec::new();
        for (topic, slots) in by_topic.iter() {
            for (i, t) in slots.iter().enumerate() {
                if *t != Traffic::default() {
                    out.push((topic.clone(), i as u32, *t));
                }
            }
        }
        out
    }

    /// Drops the counts of topics `exists` says are gone.
    pub fn forget_missing(&self, exists: impl Fn(&str) -> bool) {
        let mut by_topic = self.by_topic.borrow_mut();
        let mut freed = 0;
        by_topic.retain(|topic, slots| {
            let keep = exists(topic);
            if !keep {
                freed += slots.len();
            }
            keep
        });
        self.counted.set(self.counted.get() - freed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_partition_and_forgets_deleted_topics() {
        let t = PartitionTraffic::default();
        t.count_in("a", 2, 3, 300);
        t.count_in("a", 2, 1, 100);
        t.count_out("a", 2, 2, 200);
        t.count_out("b", 0, 5, 50);
        assert_eq!(
            t.get("a", 2),
            Traffic { records_in: 4, bytes_in: 400, records_out: 2, bytes_out: 200 }
        );
        assert_eq!(t.get("a", 0), Traffic::default());
        assert_eq!(t.snapshot().len(), 2, "partitions without traffic are not listed");
        t.forget_missing(|topic| topic == "b");
        assert_eq!(t.get("a", 2), Traffic::default());
        assert_eq!(t.counted.get(), 1);
    }

    #[test]
    fn the_number_of_counted_partitions_is_bounded() {
        let t = PartitionTraffic::default();
        t.count_in("x", u32::MAX, 1, 1);
        assert!(t.snapshot().is_empty(), "an index past the bound is not counted");
        let last = PARTITIONS_MAX as u32 / 2;
        for topic in ["p", "q", "r"] {
            t.count_in(topic, last - 1, 1, 1);
        }
        assert!(t.counted.get() <= PARTITIONS_MAX);
        assert_eq!(t.get("r", last - 1), Traffic::default(), "past the bound: not counted");
    }
}
