//! Idempotent producers as one partition sees them: each producer's epoch and its last
//! batches, so a batch sent twice is stored once.
//!
//! Contract: owned by the partition, on its shard. `check` is asked before a batch is
//! enqueued and `record` is told right after (both in enqueue order, so sequence order and
//! offset order agree). A batch whose sequence range equals one of the producer's last
//! `BATCHES_KEPT` batches is a duplicate: the caller answers with the original offsets. The
//! next batch must start right after the last one (sequences count records and wrap at
//! `i32::MAX` to 0); a gap is `OUT_OF_ORDER_SEQUENCE` (retriable: an earlier batch may still
//! be on its way), an older epoch `PRODUCER_FENCED`, and a new epoch starts at sequence 0. A
//! producer this partition does not know (new, or expired after `producer_state_idle_ms`
//! without a batch) may start at any sequence. The state is rebuilt from the batch headers
//! in the log when the partition opens (`Partition::open`), so it survives kill -9; periodic
//! and clean-close snapshots (`state_snapshot.rs`, with the durable offset they cover) let
//! the next open read only what was appended after that.

use std::collections::{HashMap, VecDeque};

use wire::ErrorCode;

/// Batches remembered per producer (as Kafka keeps five; the client keeps at most five in
/// flight per partition, so every retry finds its batch).
pub const BATCHES_KEPT: usize = 5;

/// One remembered batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct BatchMeta {
    first_sequence: i32,
    last_sequence: i32,
    base_offset: u64,
    last_offset: u64,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Entry {
    epoch: i16,
    batches: VecDeque<BatchMeta>,
    last_append_ms: i64,
}

/// What to do with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Append it.
    Append,
    /// It was appended before, at these offsets.
    Duplicate {
        /// Its first offset.
        base_offset: u64,
        /// Its last offset.
        last_offset: u64,
    },
    /// Refuse it with this code.
    Refuse(ErrorCode),
}

/// See the module docs.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ProducerStates {
    entries: HashMap<i64, Entry>,
}

pub use wire::batch::sequence_after;

impl ProducerStates {
    /// Producers known.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no producer is known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// What to do with a batch of `records` records from `producer_id` at `epoch` whose
    /// first record has `first_sequence`.
    pub fn check(
        &self,
        producer_id: i64,
        epoch: i16,
        first_sequence: i32,
        records: u32,
    ) -> Verdict {
        if producer_id < 0 {
            return Verdict::Append;
        }
        if first_sequence < 0 || epoch < 0 || records == 0 {
            return Verdict::Refuse(ErrorCode::InvalidBatch);
        }
        let Some(e) = self.entries.get(&producer_id) else { return Verdict::Append };
        if epoch < e.epoch {
            return Verdict::Refuse(ErrorCode::ProducerFenced);
        }
        if epoch > e.epoch {
            return if first_sequence == 0 {
                Verdict::Append
            } else {
                Verdict::Refuse(ErrorCode::OutOfOrderSequence)
            };
        }
        let last_sequence = sequence_after(first_sequence, records - 1);
        if let Some(b) = e
            .batches
            .iter()
            .find(|b| b.first_sequence == first_sequence && b.last_sequence == last_sequence)
        {
            return Verdict::Duplicate { base_offset: b.base_offset, last_offset: b.last_offset };
        }
        let Some(last) = e.batches.back() else { return Verdict::Append };
        let expected = sequence_after(last.last_sequence, 1);
        if first_sequence == expected {
            return Verdict::Append;
        }
        // Behind the expected sequence (by less than half the range): a batch older than
        // the ones remembered came again. Ahead: a gap.
        let behind = (i64::from(expected) - i64::from(first_sequence)).rem_euclid(1 << 31);
        if behind > 0 && behind < 1 << 30 {
            Verdict::Refuse(ErrorCode::DuplicateSequence)
        } else {
            Verdict::Refuse(ErrorCode::OutOfOrderSequence)
        }
    }

    /// Remembers an appended batch (call in offset order).
    pub fn record(
        &mut self,
        producer_id: i64,
        epoch: i16,
        first_sequence: i32,
        records: u32,
        base_offset: u64,
        append_ms: i64,
    ) {
        if producer_id < 0 || first_sequence < 0 || records == 0 {
            return;
        }
        let e = self.entries.entry(producer_id).or_insert_with(|| Entry {
            epoch,
            batches: VecDeque::with_capacity(BATCHES_KEPT),
            last_append_ms: append_ms,
        });
        if epoch != e.epoch {
            e.epoch = epoch;
            e.batches.clear();
        }
        if e.batches.len() == BATCHES_KEPT {
            e.batches.pop_front();
        }
        e.batches.push_back(BatchMeta {
            first_sequence,
            last_sequence: sequence_after(first_sequence, records - 1),
            base_offset,
            last_offset: base_offset + u64::from(records) - 1,
        });
        e.last_append_ms = e.last_append_ms.max(append_ms);
    }

    /// Forgets producers whose last batch was appended before `oldest_ms`; returns how many.
    pub fn expire(&mut self, oldest_ms: i64) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, e| e.last_append_ms >= oldest_ms);
        before - self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_duplicates_gaps_and_old_epochs_are_refused() {
        let mut s = ProducerStates::default();
        assert_eq!(s.check(7, 0, 0, 10), Verdict::Append);
        s.record(7, 0, 0, 10, 100, 1);
        assert_eq!(s.check(7, 0, 10, 5), Verdict::Append);
        s.record(7, 0, 10, 5, 110, 1);
        // The first batch again: its original offsets.
        assert_eq!(s.check(7, 0, 0, 10), Verdict::Duplicate { base_offset: 100, last_offset: 109 });
        assert_eq!(s.check(7, 0, 10, 5), Verdict::Duplicate { base_offset: 110, last_offset: 114 });
        // A gap, and a batch overlapping differently.
        assert_eq!(s.check(7, 0, 16, 1), Verdict::Refuse(ErrorCode::OutOfOrderSequence));
        assert_eq!(s.check(7, 0, 5, 10), Verdict::Refuse(ErrorCode::DuplicateSequence));
        // Epochs.
        assert_eq!(s.check(7, 1, 3, 1), Verdict::Refuse(ErrorCode::OutOfOrderSequence));
        assert_eq!(s.check(7, 1, 0, 1), Verdict::Append);
        s.record(7, 1, 0, 1, 200, 2);
        assert_eq!(s.check(7, 0, 15, 1), Verdict::Refuse(ErrorCode::ProducerFenced));
        // Not idempotent, and malformed.
        assert_eq!(s.check(-1, -1, -1, 3), Verdict::Append);
        assert_eq!(s.check(8, 0, -1, 3), Verdict::Refuse(ErrorCode::InvalidBatch));
    }

    #[test]
    fn only_the_last_batches_are_remembered_and_sequences_wrap() {
        let mut s = ProducerStates::default();
        for i in 0..8u32 {
            s.record(1, 0, (i * 2) as i32, 2, u64::from(i) * 2, 1);
        }
        assert_eq!(s.check(1, 0, 0, 2), Verdict::Refuse(ErrorCode::DuplicateSequence));
        assert_eq!(s.check(1, 0, 6, 2), Verdict::Duplicate { base_offset: 6, last_offset: 7 });
        let mut w = ProducerStates::default();
        w.record(2, 0, i32::MAX - 1, 2, 0, 1);
        assert_eq!(sequence_after(i32::MAX, 1), 0);
        assert_eq!(w.check(2, 0, 0, 1), Verdict::Append);
    }

    #[test]
    fn idle_producers_expire() {
        let mut s = ProducerStates::default();
        s.record(1, 0, 0, 1, 0, 100);
        s.record(2, 0, 0, 1, 1, 300);
        assert_eq!(s.expire(200), 1);
        assert_eq!(s.len(), 1);
        assert_eq!(s.check(1, 0, 9, 1), Verdict::Append, "an expired producer starts anew");
    }
}
