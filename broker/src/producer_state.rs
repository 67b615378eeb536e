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
//!
//! Budget: producer ids are the client's to choose, so a client could make a partition
//! remember any number of them (one per batch, ~700,000 in one 64 MiB request). The
//! partitions of a shard share one count ([`ShardProducers`], `producer_states_per_shard_max`);
//! a new producer that finds the shard at its limit first evicts the least recently appended
//! tenth of its own partition's producers (at least one, when it has any), so the shard holds
//! at most the limit plus one producer per partition that had none. An evicted producer is
//! unknown to the partition: its next batch may start at any sequence, so a retry of a batch
//! it sent before the eviction is stored again (Redpanda's `max_concurrent_producer_ids`
//! makes the same trade). Idle producers also go after `producer_state_idle_ms`.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use wire::ErrorCode;

/// Batches remembered per producer (as Kafka keeps five; the client keeps at most five in
/// flight per partition, so every retry finds its batch).
pub const BATCHES_KEPT: usize = 5;

/// Most sequences one remembered run spans: the remembered runs together stay within a
/// lap of the sequence space (`BATCHES_KEPT` × this < 2^31), so the next lap's sequences are
/// never inside one.
const RUN_SEQUENCES_MAX: u64 = 1 << 28;

/// How many sequence numbers `to` is after `from` (sequences wrap at `i32::MAX` to 0).
fn sequence_distance(from: i32, to: i32) -> u64 {
    (i64::from(to) - i64::from(from)).rem_euclid(1 << 31) as u64
}

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

/// The producers remembered by all of a shard's partitions, and their limit (see the module
/// docs).
#[derive(Debug)]
pub struct ShardProducers {
    max: usize,
    count: Cell<usize>,
}

impl ShardProducers {
    /// A count with room for `max` producers.
    pub fn new(max: usize) -> Rc<Self> {
        Rc::new(ShardProducers { max, count: Cell::new(0) })
    }

    /// Producers remembered now.
    pub fn count(&self) -> usize {
        self.count.get()
    }

    fn add(&self, n: usize) {
        self.count.set(self.count.get() + n);
    }

    fn sub(&self, n: usize) {
        self.count.set(self.count.get().saturating_sub(n));
    }
}

impl Default for ShardProducers {
    /// A partition's own count until it is attached to its shard's (no limit).
    fn default() -> Self {
        ShardProducers { max: usize::MAX, count: Cell::new(0) }
    }
}

/// See the module docs.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ProducerStates {
    entries: HashMap<i64, Entry>,
    /// The count this partition's producers are in (its shard's, once attached).
    #[serde(skip)]
    shard: Rc<ShardProducers>,
    /// The log's rollbacks (`PartitionLog::rollbacks`) this state last matched.
    #[serde(skip)]
    rollbacks_seen: u64,
}

impl Drop for ProducerStates {
    fn drop(&mut self) {
        self.shard.sub(self.entries.len());
    }
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

    /// Moves these producers into `shard`'s count; past its limit the least recently
    /// appended go first (a partition reopened with more than the limit allows).
    pub fn attach(&mut self, shard: &Rc<ShardProducers>) {
        self.shard.sub(self.entries.len());
        self.shard = shard.clone();
        shard.add(self.entries.len());
        let over = shard.count().saturating_sub(shard.max).min(self.entries.len());
        if over > 0 {
            self.evict_oldest(over);
        }
    }

    /// Forgets the `n` producers whose last batch is oldest.
    fn evict_oldest(&mut self, n: usize) {
        if n == 0 || self.entries.is_empty() {
            return;
        }
        let mut ages: Vec<(i64, i64)> =
            self.entries.iter().map(|(&id, e)| (e.last_append_ms, id)).collect();
        let n = n.min(ages.len());
        if n < ages.len() {
            ages.select_nth_unstable(n);
        }
        for &(_, id) in &ages[..n] {
            self.entries.remove(&id);
        }
        self.shard.sub(n);
    }

    /// Keeps the state true to the log after appends failed: once the log's `rollbacks`
    /// moved (failed writes gave their offsets back: the end is `next_offset` again and
    /// later appends take those offsets), remembered batches at or past `next_offset` were
    /// never stored, and are forgotten (a run is cut there). Otherwise a producer's batch
    /// after the failed one was taken (its sequence "followed"), and the failed batch's
    /// retry answered as a duplicate with offsets now holding others' records.
    pub fn after_rollbacks(&mut self, rollbacks: u64, next_offset: u64) {
        if rollbacks == self.rollbacks_seen {
            return;
        }
        self.rollbacks_seen = rollbacks;
        for e in self.entries.values_mut() {
            e.batches.retain_mut(|b| {
                if b.last_offset < next_offset {
                    return true;
                }
                if b.base_offset >= next_offset {
                    return false;
                }
                let kept = next_offset - b.base_offset;
                b.last_offset = next_offset - 1;
                b.last_sequence = sequence_after(b.first_sequence, kept as u32 - 1);
                true
            });
        }
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
        // Stored already: its records' sequences lie inside a remembered run (whose
        // sequences and offsets advance together, so its offsets follow from them).
        if let Some((b, delta)) = e.batches.iter().find_map(|b| {
            let delta = sequence_distance(b.first_sequence, first_sequence);
            let span = sequence_distance(b.first_sequence, b.last_sequence);
            (delta + u64::from(records) - 1 <= span).then_some((b, delta))
        }) {
            let base_offset = b.base_offset + delta;
            return Verdict::Duplicate {
                base_offset,
                last_offset: base_offset + u64::from(records) - 1,
            };
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
        if !self.entries.contains_key(&producer_id) {
            if self.shard.count() >= self.shard.max {
                // A tenth at a time, so the scan is paid once per tenth of new producers.
                self.evict_oldest((self.entries.len() / 10).max(1));
            }
            self.shard.add(1);
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
        // A batch that goes on where the last one ended, in sequence and in offset, extends
        // it: the parts of a client's batch that was split into several (a Kafka batch over
        // a native batch's size or time span) count once, so a retry of the whole batch
        // still finds every part (five parts of one batch filled the window before, and the
        // sixth's retry was answered DUPLICATE_SEQUENCE, which a Java producer takes as
        // stored, for records that were not).
        if let Some(last) = e.batches.back_mut() {
            // Runs stay short of the sequence space (a run spanning 2^31 sequences would hold
            // its next lap's sequences "inside" it).
            let span = sequence_distance(last.first_sequence, last.last_sequence);
            if first_sequence == sequence_after(last.last_sequence, 1)
                && base_offset == last.last_offset + 1
                && span + u64::from(records) < RUN_SEQUENCES_MAX
            {
                last.last_sequence = sequence_after(first_sequence, records - 1);
                last.last_offset = base_offset + u64::from(records) - 1;
                e.last_append_ms = e.last_append_ms.max(append_ms);
                return;
            }
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
        let gone = before - self.entries.len();
        self.shard.sub(gone);
        gone
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
        // A gap; records stored (in a run of sequences and offsets) cut differently.
        assert_eq!(s.check(7, 0, 16, 1), Verdict::Refuse(ErrorCode::OutOfOrderSequence));
        assert_eq!(s.check(7, 0, 5, 10), Verdict::Duplicate { base_offset: 105, last_offset: 114 });
        assert_eq!(s.check(7, 0, 12, 4), Verdict::Refuse(ErrorCode::DuplicateSequence));
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
        // Other producers' records between each of its batches (no run to extend).
        for i in 0..8u32 {
            s.record(1, 0, (i * 2) as i32, 2, u64::from(i) * 10, 1);
        }
        assert_eq!(s.check(1, 0, 0, 2), Verdict::Refuse(ErrorCode::DuplicateSequence));
        assert_eq!(s.check(1, 0, 6, 2), Verdict::Duplicate { base_offset: 30, last_offset: 31 });
        let mut w = ProducerStates::default();
        w.record(2, 0, i32::MAX - 1, 2, 0, 1);
        assert_eq!(sequence_after(i32::MAX, 1), 0);
        assert_eq!(w.check(2, 0, 0, 1), Verdict::Append);
    }

    /// The parts of one client batch split into several native batches (appended back to
    /// back) are one run: after a crash kept the first six of eight, the whole batch sent
    /// again finds those six stored and takes the last two (the six parts filled the five
    /// remembered batches, and the first part's retry was refused DUPLICATE_SEQUENCE, which
    /// a Java producer takes as stored, losing the last two).
    #[test]
    fn the_parts_of_a_split_batch_are_remembered_as_one_run() {
        let mut s = ProducerStates::default();
        s.record(3, 0, 0, 4, 50, 1);
        for part in 0..6u32 {
            s.record(3, 0, 4 + part as i32 * 10, 10, 60 + u64::from(part) * 10, 1);
        }
        assert_eq!(s.check(3, 0, 4, 10), Verdict::Duplicate { base_offset: 60, last_offset: 69 });
        assert_eq!(
            s.check(3, 0, 54, 10),
            Verdict::Duplicate { base_offset: 110, last_offset: 119 }
        );
        assert_eq!(s.check(3, 0, 64, 10), Verdict::Append);
        // Runs go on over the wrap of sequences at i32::MAX.
        let mut w = ProducerStates::default();
        w.record(4, 0, i32::MAX - 4, 5, 1000, 1);
        w.record(4, 0, 0, 5, 1005, 1);
        assert_eq!(
            w.check(4, 0, i32::MAX - 1, 4),
            Verdict::Duplicate { base_offset: 1003, last_offset: 1006 }
        );
        assert_eq!(w.check(4, 0, 5, 1), Verdict::Append);
        // Runs end before the remembered ones span a lap of the sequences: the next lap's
        // sequences are never inside one.
        let mut long = ProducerStates::default();
        let batch = 1u32 << 26;
        for i in 0..40u64 {
            let sequence = wire::batch::sequence_after(0, (i * u64::from(batch)) as u32);
            long.record(5, 0, sequence, batch, i * u64::from(batch), 1);
        }
        let next = wire::batch::sequence_after(0, (40 * u64::from(batch)) as u32);
        assert_eq!(next, 1 << 29, "the sequences went round once");
        assert_eq!(long.check(5, 0, next, batch), Verdict::Append);
    }

    /// Appends that failed (the log gave their offsets back) are not remembered as stored:
    /// the failed batch's retry is taken again, not answered with offsets others now hold.
    #[test]
    fn batches_past_a_rolled_back_end_are_forgotten() {
        let mut s = ProducerStates::default();
        s.record(5, 0, 0, 10, 100, 1);
        s.record(5, 0, 10, 10, 110, 1);
        s.record(6, 0, 0, 4, 120, 1);
        s.after_rollbacks(0, 115);
        assert_eq!(s.check(6, 0, 0, 4), Verdict::Duplicate { base_offset: 120, last_offset: 123 });
        // Writes from 115 on failed.
        s.after_rollbacks(1, 115);
        assert_eq!(s.check(5, 0, 10, 5), Verdict::Duplicate { base_offset: 110, last_offset: 114 });
        assert_eq!(s.check(5, 0, 15, 5), Verdict::Append);
        assert_eq!(s.check(5, 0, 10, 10), Verdict::Refuse(ErrorCode::DuplicateSequence));
        assert_eq!(s.check(6, 0, 0, 4), Verdict::Append, "nothing of producer 6 is stored");
    }

    #[test]
    fn a_shard_at_its_limit_evicts_a_partitions_least_recently_appended_producers() {
        let shard = ShardProducers::new(20);
        let mut a = ProducerStates::default();
        a.attach(&shard);
        let mut b = ProducerStates::default();
        b.attach(&shard);
        // Producer 0 of partition a keeps appending; 1..=15 append once each.
        for id in 1..=15 {
            a.record(id, 0, 0, 1, id as u64, id);
            a.record(0, 0, id as i32 - 1, 1, 100 + id as u64, 100 + id);
        }
        for id in 100..105 {
            b.record(id, 0, 0, 1, 0, 1);
        }
        assert_eq!((a.len(), b.len(), shard.count()), (16, 4, 20), "the 20th evicted one of b's");
        // A flood of new producers on a while producer 0 keeps appending: the shard stays at
        // its limit, a's least recently appended go first, b keeps what it has.
        let mut seq = 14;
        for id in 1_000..11_000 {
            a.record(id, 0, 0, 1, 0, 1_000 + id);
            if id % 5 == 0 {
                seq += 1;
                a.record(0, 0, seq, 1, id as u64, 1_000 + id);
            }
        }
        assert!(shard.count() <= 20, "{}", shard.count());
        assert_eq!(shard.count(), a.len() + b.len());
        assert_eq!(b.len(), 4);
        assert_eq!(a.check(10_999, 0, 0, 1), Verdict::Duplicate { base_offset: 0, last_offset: 0 });
        assert_eq!(
            a.check(0, 0, seq, 1),
            Verdict::Duplicate { base_offset: 10_995, last_offset: 10_995 },
            "the producer that kept appending is still known"
        );
        assert_eq!(a.check(3, 0, 0, 1), Verdict::Append, "evicted: unknown again");
        // Expiry and a dropped partition give their count back.
        let gone = a.expire(i64::MAX);
        assert_eq!(shard.count(), b.len());
        assert!(gone > 0);
        drop(b);
        assert_eq!(shard.count(), 0);
        // A partition reopened with more than the limit keeps the most recent.
        let mut c = ProducerStates::default();
        for id in 0..50 {
            c.record(id, 0, 0, 1, 0, id);
        }
        c.attach(&shard);
        assert_eq!((c.len(), shard.count()), (20, 20));
        assert_eq!(c.check(49, 0, 0, 1), Verdict::Duplicate { base_offset: 0, last_offset: 0 });
        assert_eq!(c.check(29, 0, 0, 1), Verdict::Append);
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
