//! The shard's cache of recently written batches, so tailing readers need no disk I/O.
//!
//! One [`ShardCache`] per shard holds a byte budget; each partition has a [`PartitionCache`]
//! (a queue of its newest batches). Eviction is FIFO across the whole shard: when an insert
//! takes the shard over budget, the oldest batches of any partition go first. Memory stays
//! within the budget however many readers there are: readers share the cached buffers.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};

use super::bytes::ByteView;
use super::FirstBatch;

/// The shard-wide budget and eviction order.
#[derive(Debug)]
pub struct ShardCache {
    budget_bytes: usize,
    used_bytes: Cell<usize>,
    fifo: RefCell<VecDeque<(Weak<RefCell<Entries>>, u64)>>,
    /// The FIFO is checked for entries of dropped partitions when it grows past this
    /// (doubling), so the check costs O(1) per insert amortized, not a scan per insert.
    compact_at: Cell<usize>,
}

#[derive(Debug, Default)]
struct Entries {
    batches: VecDeque<Cached>,
}

#[derive(Debug)]
struct Cached {
    base_offset: u64,
    next_offset: u64,
    bytes: ByteView,
}

impl ShardCache {
    /// A cache that holds at most `budget_bytes` of batches.
    pub fn new(budget_bytes: usize) -> Rc<Self> {
        Rc::new(ShardCache {
            budget_bytes,
            used_bytes: Cell::new(0),
            fifo: RefCell::new(VecDeque::new()),
            compact_at: Cell::new(FIFO_COMPACT_MIN),
        })
    }

    /// Bytes held now.
    pub fn used_bytes(&self) -> usize {
        self.used_bytes.get()
    }

    /// A cache for one more partition.
    pub fn partition(self: &Rc<Self>) -> PartitionCache {
        PartitionCache { shard: self.clone(), entries: Rc::new(RefCell::new(Entries::default())) }
    }

    fn evict_to_budget(&self) {
        let mut fifo = self.fifo.borrow_mut();
        while self.used_bytes.get() > self.budget_bytes {
            let Some((weak, base)) = fifo.pop_front() else { break };
            let Some(entries) = weak.upgrade() else { continue };
            let mut entries = entries.borrow_mut();
            if entries.batches.front().is_some_and(|c| c.base_offset == base) {
                let c = entries.batches.pop_front().expect("front exists");
                self.used_bytes.set(self.used_bytes.get() - c.bytes.len());
            }
        }
        // Drop bookkeeping of partitions that are gone, so the queue stays bounded.
        if fifo.len() > self.compact_at.get() {
            fifo.retain(|(w, _)| w.strong_count() > 0);
            self.compact_at.set((2 * fifo.len()).max(FIFO_COMPACT_MIN));
        }
    }
}

/// Smallest FIFO length at which entries of dropped partitions are looked for.
const FIFO_COMPACT_MIN: usize = 64;

/// One partition's newest batches.
#[derive(Debug)]
pub struct PartitionCache {
    shard: Rc<ShardCache>,
    entries: Rc<RefCell<Entries>>,
}

impl PartitionCache {
    /// Adds a written batch (offsets must follow the previous one).
    pub fn insert(&self, base_offset: u64, next_offset: u64, bytes: ByteView) {
        if bytes.len() > self.shard.budget_bytes {
            return;
        }
        {
            let mut e = self.entries.borrow_mut();
            if e.batches.back().is_some_and(|c| c.next_offset != base_offset) {
                // Not contiguous (after a failed write was rolled back): start over.
                let freed: usize = e.batches.drain(..).map(|c| c.bytes.len()).sum();
                self.shard.used_bytes.set(self.shard.used_bytes.get() - freed);
            }
            self.shard.used_bytes.set(self.shard.used_bytes.get() + bytes.len());
            e.batches.push_back(Cached { base_offset, next_offset, bytes });
        }
        self.shard.fifo.borrow_mut().push_back((Rc::downgrade(&self.entries), base_offset));
        self.shard.evict_to_budget();
    }

    /// Batches starting with the one that contains `offset`, up to `max_bytes` (the first
    /// one even beyond it if `first` is [`FirstBatch::Always`]), or `None` if the cache does
    /// not reach back to `offset`.
    pub fn read(&self, offset: u64, max_bytes: usize, first: FirstBatch) -> Option<Vec<ByteView>> {
        let e = self.entries.borrow();
        let oldest = e.batches.front()?;
        if offset < oldest.base_offset || offset >= e.batches.back()?.next_offset {
            return None;
        }
        let start = e.batches.partition_point(|c| c.next_offset <= offset);
        let mut out = Vec::new();
        let mut total = 0;
        for c in e.batches.range(start..) {
            let must_take = out.is_empty() && first == FirstBatch::Always;
            if !must_take && total + c.bytes.len() > max_bytes {
                break;
            }
            total += c.bytes.len();
            out.push(c.bytes.clone());
        }
        Some(out)
    }

    /// Drops the cached batches that end at or before `offset` (compaction replaced them on
    /// disk: readers get the rewrite from then on). The shard's FIFO skips their entries.
    pub fn forget_before(&self, offset: u64) {
        let mut e = self.entries.borrow_mut();
        let mut freed = 0;
        while e.batches.front().is_some_and(|c| c.next_offset <= offset) {
            freed += e.batches.pop_front().expect("front exists").bytes.len();
        }
        self.shard.used_bytes.set(self.shard.used_bytes.get() - freed);
    }

    /// Drops every cached batch of this partition.
    pub fn clear(&self) {
        let freed: usize = self.entries.borrow_mut().batches.drain(..).map(|c| c.bytes.len()).sum();
        self.shard.used_bytes.set(self.shard.used_bytes.get() - freed);
    }
}

impl Drop for PartitionCache {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(n: usize) -> ByteView {
        ByteView::new(Rc::new(vec![0u8; n]))
    }

    #[test]
    fn budget_is_shard_wide_fifo() {
        let shard = ShardCache::new(1000);
        let a = shard.partition();
        let b = shard.partition();
        for i in 0..5 {
            a.insert(i, i + 1, bytes(100));
            b.insert(i, i + 1, bytes(100));
        }
        assert_eq!(shard.used_bytes(), 1000);
        a.insert(5, 6, bytes(100));
        assert_eq!(shard.used_bytes(), 1000);
        // a's offset 0 was the oldest.
        assert!(a.read(0, 1 << 20, FirstBatch::Always).is_none());
        assert_eq!(a.read(1, 1 << 20, FirstBatch::Always).unwrap().len(), 5);
        assert_eq!(b.read(0, 250, FirstBatch::Always).unwrap().len(), 2);
        assert!(b.read(5, 10, FirstBatch::Always).is_none());
        drop(b);
        assert_eq!(shard.used_bytes(), 500);
    }

    #[test]
    fn first_batch_beyond_the_limit_only_when_asked() {
        let shard = ShardCache::new(1000);
        let a = shard.partition();
        for i in 0..3 {
            a.insert(i, i + 1, bytes(100));
        }
        assert_eq!(a.read(0, 1, FirstBatch::Always).unwrap().len(), 1);
        assert!(a.read(0, 99, FirstBatch::IfItFits).unwrap().is_empty());
        assert_eq!(a.read(0, 100, FirstBatch::IfItFits).unwrap().len(), 1);
        assert_eq!(a.read(1, 250, FirstBatch::IfItFits).unwrap().len(), 2);
    }
}
