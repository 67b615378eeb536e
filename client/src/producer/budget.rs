//! The send buffer: bytes of records accepted and not yet answered, against
//! `buffer_bytes_max`.
//!
//! `Producer::send` waits in [`Budget::wait_for_room`] while the count is at the limit
//! (backpressure instead of an unbounded queue); the accumulator [`take`](Budget::take)s a
//! record's [`record_cost`] when it appends the record and [`give`](Budget::give)s a batch's
//! cost back once the batch is answered or fails, which wakes the waiting senders. A record
//! that is admitted may take the count past the limit; the next `send` then waits.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// Bytes of records accepted and not yet answered, against `buffer_bytes_max`.
#[derive(Debug)]
pub(super) struct Budget {
    bytes: AtomicUsize,
    freed: Notify,
    max: usize,
}

impl Budget {
    /// An empty budget with room for `max` bytes.
    pub(super) fn new(max: usize) -> Budget {
        Budget { bytes: AtomicUsize::new(0), freed: Notify::new(), max }
    }

    /// Waits until the accepted-but-unanswered bytes are below the limit.
    pub(super) async fn wait_for_room(&self) {
        if self.bytes.load(Ordering::Acquire) < self.max {
            return;
        }
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.bytes.load(Ordering::Acquire) < self.max {
                return;
            }
            freed.await;
        }
    }

    pub(super) fn take(&self, n: usize) {
        self.bytes.fetch_add(n, Ordering::AcqRel);
    }

    pub(super) fn give(&self, n: usize) {
        self.bytes.fetch_sub(n, Ordering::AcqRel);
        self.freed.notify_waiters();
    }
}

/// What a record takes from the send buffer.
pub(super) fn record_cost(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[(&str, &[u8])],
) -> usize {
    16 + key.map_or(0, <[u8]>::len)
        + value.map_or(0, <[u8]>::len)
        + headers.iter().map(|(k, v)| k.len() + v.len() + 8).sum::<usize>()
}
