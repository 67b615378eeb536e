//! What the coordinator tracks per offsets partition it replayed, beside the groups' maps:
//! commits in flight, the keys a running snapshot must restate, and the tombstone markers
//! that keep a forgotten key forgotten (see the parent module's docs on compaction).

use std::collections::{BTreeMap, BTreeSet};

use super::assignor::TopicPartition;
use super::offsets_log::Committed;

/// A group id with one of its partitions: a key of the offsets log.
pub(super) type OffsetKey = (String, TopicPartition);

/// A record of the offsets log in flight: its log offset and the key's new value (`None`: a
/// tombstone, the key forgotten).
pub(super) type Pending = (u64, Option<Committed>);

/// What the coordinator tracks per offsets partition it replayed.
#[derive(Debug, Default)]
pub(super) struct OffsetsState {
    /// Commits enqueued and not yet applied or failed: the newest (largest log offset) per key.
    in_flight: BTreeMap<OffsetKey, Pending>,
    /// What `in_flight` keeps ([`super::offset_entry_bytes`] summed), kept as it changes.
    in_flight_bytes: usize,
    /// While a snapshot reads: keys committed since it began.
    pub(super) dirty: Option<BTreeSet<OffsetKey>>,
    /// A compaction is running.
    pub(super) compacting: bool,
    /// Log size when the last compaction ended (0 before the first: a log replayed at any
    /// size counts as grown by all of it).
    pub(super) compacted_size_bytes: u64,
    /// Bytes the last snapshot wrote.
    pub(super) snapshot_bytes: u64,
    /// Base log offsets of what was enqueued and is not yet applied or failed (commits, a
    /// compaction's snapshot), with how many start at each.
    pub(super) unapplied: BTreeMap<u64, usize>,
    /// Tombstones applied while records enqueued before them may still be applied: each
    /// key's tombstone log offset (and the same by offset, to forget them). Records are
    /// applied by their handlers' tasks once durable, not in log order, so an older value
    /// (a snapshot's restatement, a commit's late task) could otherwise bring a forgotten key
    /// back, and the next snapshot would make that durable. A marker goes once nothing
    /// enqueued before it is left unapplied.
    pub(super) deleted: BTreeMap<OffsetKey, u64>,
    pub(super) deleted_by_offset: BTreeMap<u64, Vec<OffsetKey>>,
}

impl OffsetsState {
    /// Commits enqueued and not yet applied or failed: the newest per key.
    pub(super) fn in_flight(&self) -> &BTreeMap<OffsetKey, Pending> {
        &self.in_flight
    }

    /// What the commits in flight keep, in bytes ([`super::offset_entry_bytes`]).
    pub(super) fn in_flight_bytes(&self) -> usize {
        self.in_flight_bytes
    }

    /// A commit of `key` enqueued: it is the key's value in flight unless a newer one is.
    pub(super) fn fly(&mut self, key: OffsetKey, pending: Pending) {
        if self.in_flight.get(&key).is_some_and(|old| old.0 >= pending.0) {
            return;
        }
        let bytes = pending_bytes(&key, &pending);
        if let Some(old) = self.in_flight.insert(key.clone(), pending) {
            self.in_flight_bytes -= pending_bytes(&key, &old);
        }
        self.in_flight_bytes += bytes;
    }

    /// The commit of `key` at `log_offset` was applied or failed: no longer in flight
    /// (unless a newer one of the key is).
    pub(super) fn land(&mut self, key: &OffsetKey, log_offset: u64) {
        if self.in_flight.get(key).is_some_and(|c| c.0 == log_offset) {
            let old = self.in_flight.remove(key).expect("just seen");
            self.in_flight_bytes -= pending_bytes(key, &old);
        }
    }

    /// Something enqueued at `base_offset` waits to be applied.
    pub(super) fn enqueued(&mut self, base_offset: u64) {
        *self.unapplied.entry(base_offset).or_default() += 1;
    }

    /// What was enqueued at `base_offset` was applied (or failed): markers nothing older
    /// can reach any more go.
    pub(super) fn settled(&mut self, base_offset: u64) {
        if let Some(n) = self.unapplied.get_mut(&base_offset) {
            *n -= 1;
            if *n == 0 {
                self.unapplied.remove(&base_offset);
            }
        }
        let oldest = self.unapplied.keys().next().copied().unwrap_or(u64::MAX);
        while let Some(entry) = self.deleted_by_offset.first_entry() {
            if *entry.key() >= oldest {
                break;
            }
            let (at, keys) = entry.remove_entry();
            for key in keys {
                if self.deleted.get(&key) == Some(&at) {
                    self.deleted.remove(&key);
                }
            }
        }
    }

    /// A tombstone of `key` at `log_offset` was applied.
    pub(super) fn deleted(&mut self, key: OffsetKey, log_offset: u64) {
        if self.deleted.get(&key).is_some_and(|&at| at >= log_offset) {
            return;
        }
        self.deleted.insert(key.clone(), log_offset);
        self.deleted_by_offset.entry(log_offset).or_default().push(key);
    }

    /// Whether a value of `key` at `log_offset` is older than a tombstone applied before it.
    pub(super) fn forgotten(&self, key: &OffsetKey, log_offset: u64) -> bool {
        self.deleted.get(key).is_some_and(|&at| at > log_offset)
    }
}

/// What a commit in flight keeps (a tombstone: its key).
fn pending_bytes((group, tp): &OffsetKey, (_, value): &Pending) -> usize {
    let metadata = value.as_ref().map_or("", |c| c.metadata.as_str());
    super::offset_entry_bytes(group, &tp.0, metadata)
}
