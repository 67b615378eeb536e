//! Per-shard counters for the stats api.
//!
//! Contract: plain cells, touched only on the owning shard; they wrap on overflow and never
//! fail. Gauges (open connections, subscriptions) go up with [`Counters::add`] and down with
//! [`Counters::sub`].

use std::cell::Cell;

/// Counters reported by the stats api.
#[derive(Debug, Default)]
pub struct Counters {
    /// Batch bytes appended.
    pub bytes_in: Cell<u64>,
    /// Batch bytes sent to consumers.
    pub bytes_out: Cell<u64>,
    /// Batches appended.
    pub batches_in: Cell<u64>,
    /// Batches sent.
    pub batches_out: Cell<u64>,
    /// Requests handled (including forwarded ones).
    pub requests: Cell<u64>,
    /// Open connections.
    pub connections: Cell<u64>,
    /// Accepted connections.
    pub connections_total: Cell<u64>,
    /// Partition-routed requests this shard forwarded to an owner.
    pub forwards_out: Cell<u64>,
    /// Partition-routed requests forwarded to this shard.
    pub forwards_in: Cell<u64>,
    /// Open subscriptions.
    pub subscriptions: Cell<u64>,
}

impl Counters {
    /// Adds `n` to a counter.
    pub fn add(cell: &Cell<u64>, n: u64) {
        cell.set(cell.get().wrapping_add(n));
    }

    /// Takes `n` from a gauge.
    pub fn sub(cell: &Cell<u64>, n: u64) {
        cell.set(cell.get().wrapping_sub(n));
    }
}
