//! With the shard journal: the batches a log has taken but not yet written to its segment.
//!
//! # Contract
//! - Holds, in offset order and densely, every batch from the written end to the queue's
//!   next offset (`LogCore::written` ..= `AppendQueue::next_offset`): pushed at enqueue,
//!   dropped once the write holding it was reaped (the shard's cache takes it then). The
//!   same shared buffers as the append queue: no copy, no memory beyond the log's
//!   `pending_bytes_max` budget.
//! - A journaled batch is durable (acked, visible) before its segment write, which the writer
//!   defers (`LogConfig::journal_segment_write_delay_ms`): readers get such batches from
//!   here. A fenced log keeps them (readers still see what was acked; the next start replays
//!   them from the journal).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

use crate::storage::bytes::ByteView;
use crate::storage::FirstBatch;

/// One batch not yet written: its offsets and stored bytes.
struct Batch {
    base_offset: u64,
    next_offset: u64,
    bytes: ByteView,
}

/// The batches of a log past its written end (see the module docs).
#[derive(Default)]
pub(super) struct Unwritten {
    batches: RefCell<VecDeque<Batch>>,
    /// Bytes of `batches`.
    bytes: Cell<u64>,
}

impl Unwritten {
    /// Adds the batch enqueued after the last one.
    pub(super) fn push(&self, base_offset: u64, next_offset: u64, bytes: ByteView) {
        let mut b = self.batches.borrow_mut();
        debug_assert!(b.back().is_none_or(|l| l.next_offset == base_offset));
        self.bytes.set(self.bytes.get() + bytes.len() as u64);
        b.push_back(Batch { base_offset, next_offset, bytes });
    }

    /// Bytes of the batches held (stored, durable with the journal, not yet in a segment).
    pub(super) fn bytes(&self) -> u64 {
        self.bytes.get()
    }

    /// Drops the batches that end at or before `written` (their writes were reaped).
    pub(super) fn written_to(&self, written: u64) {
        let mut b = self.batches.borrow_mut();
        while b.front().is_some_and(|x| x.next_offset <= written) {
            let x = b.pop_front().expect("front exists");
            self.bytes.set(self.bytes.get() - x.bytes.len() as u64);
        }
    }

    /// Batches starting with the one that contains `offset`, up to `max_bytes` (the first
    /// one even beyond it with [`FirstBatch::Always`]); `None` if `offset` is not here.
    pub(super) fn read(
        &self,
        offset: u64,
        max_bytes: usize,
        first: FirstBatch,
    ) -> Option<Vec<ByteView>> {
        let b = self.batches.borrow();
        if offset < b.front()?.base_offset || offset >= b.back()?.next_offset {
            return None;
        }
        let start = start_of(&b, offset);
        let mut out = Vec::new();
        let mut total = 0;
        for x in b.range(start..) {
            let must_take = out.is_empty() && first == FirstBatch::Always;
            if !must_take && total + x.bytes.len() > max_bytes {
                break;
            }
            total += x.bytes.len();
            out.push(x.bytes.clone());
        }
        Some(out)
    }

    /// Every batch held, oldest first (for a timestamp search past the segments).
    pub(super) fn all(&self) -> Vec<ByteView> {
        self.batches.borrow().iter().map(|x| x.bytes.clone()).collect()
    }
}

/// The index of the batch that contains `offset` (within the held range). A caught-up
/// reader asks for one of the last few batches, so those are looked at first (a binary
/// search over a long queue costs a cache miss a step, on every read).
fn start_of(b: &VecDeque<Batch>, offset: u64) -> usize {
    const TAIL_STEPS: usize = 4;
    for (back, x) in b.iter().rev().take(TAIL_STEPS).enumerate() {
        if x.base_offset <= offset {
            return b.len() - 1 - back;
        }
    }
    b.partition_point(|x| x.next_offset <= offset)
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;

    fn bytes(n: usize) -> ByteView {
        ByteView::new(Rc::new(vec![0u8; n]))
    }

    #[test]
    fn reads_what_is_past_the_written_end_and_forgets_what_was_written() {
        let u = Unwritten::default();
        assert!(u.read(0, 1 << 20, FirstBatch::Always).is_none());
        for i in 0..4 {
            u.push(10 + 2 * i, 12 + 2 * i, bytes(100));
        }
        assert_eq!(u.bytes(), 400);
        assert!(u.read(9, 1 << 20, FirstBatch::Always).is_none());
        assert!(u.read(18, 1 << 20, FirstBatch::Always).is_none());
        assert_eq!(u.read(11, 1 << 20, FirstBatch::Always).unwrap().len(), 4);
        assert_eq!(u.read(12, 250, FirstBatch::Always).unwrap().len(), 2);
        assert_eq!(u.read(12, 50, FirstBatch::Always).unwrap().len(), 1);
        assert_eq!(u.read(17, 1 << 20, FirstBatch::Always).unwrap().len(), 1, "in the last batch");
        assert!(u.read(12, 50, FirstBatch::IfItFits).unwrap().is_empty());
        u.written_to(14);
        assert!(u.read(13, 1 << 20, FirstBatch::Always).is_none());
        assert_eq!(u.read(14, 1 << 20, FirstBatch::Always).unwrap().len(), 2);
        assert_eq!(u.all().len(), 2);
        assert_eq!(u.bytes(), 200);
        // Deeper than the tail steps: the binary search finds the batch.
        for i in 4..20 {
            u.push(10 + 2 * i, 12 + 2 * i, bytes(100));
        }
        for offset in 14..50 {
            let got = u.read(offset, 100, FirstBatch::Always).unwrap();
            assert_eq!(got.len(), 1);
            assert!(std::ptr::eq(
                got[0].as_ptr(),
                u.batches.borrow()[(offset as usize - 14) / 2].bytes.as_ptr()
            ));
        }
        u.written_to(50);
        assert!(u.all().is_empty());
        assert_eq!(u.bytes(), 0);
    }
}
