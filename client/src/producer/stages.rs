//! The producer's own latency, by stage of a batch's life (issue 26), so a benchmark can tell
//! the client's share of a record's round trip from the broker's.
//!
//! Contract: every batch that is answered through its connection's coalescer records, in
//! microseconds, one sample in each stage it went through, on the clock of this process:
//! - `linger`: its first record appended → the batch shipped (closed, handed to its sender);
//! - `send_queue`: shipped → its request handed to the connection (waiting for the partition's
//!   in-flight limit and for the coalescer's request slot);
//! - `in_flight`: request handed to the connection → its answer decoded by the reader;
//! - `completion`: answer decoded → the batch's records resolved (the sender task's turn);
//! - `batch`: first record appended → records resolved (the whole of it, for comparison with
//!   a caller's own publish latency).
//!
//! A batch resent through the client's retrying path records only `linger` and `batch`.
//! Recording takes a short mutex and one histogram increment per stage (tens of
//! nanoseconds per batch, not per record); the histograms span 1 µs to 60 s with 2 significant
//! digits (~40 KiB each).

use std::sync::Mutex;
use std::time::Instant;

use hdrhistogram::Histogram;

/// One stage of a batch's life (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProducerStage {
    /// First record appended → shipped.
    Linger,
    /// Shipped → request handed to the connection.
    SendQueue,
    /// Request handed to the connection → answer decoded.
    InFlight,
    /// Answer decoded → records resolved.
    Completion,
    /// First record appended → records resolved.
    Batch,
}

impl ProducerStage {
    /// Every stage, in the order of a batch's life.
    pub const ALL: [ProducerStage; 5] = [
        ProducerStage::Linger,
        ProducerStage::SendQueue,
        ProducerStage::InFlight,
        ProducerStage::Completion,
        ProducerStage::Batch,
    ];

    /// The stage's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            ProducerStage::Linger => "linger",
            ProducerStage::SendQueue => "send_queue",
            ProducerStage::InFlight => "in_flight",
            ProducerStage::Completion => "completion",
            ProducerStage::Batch => "batch",
        }
    }
}

/// Longest latency a stage histogram holds, µs (longer samples are clamped to it).
const STAGE_US_MAX: u64 = 60_000_000;

/// A producer's stage histograms (see the module docs); shared by its handles and tasks.
#[derive(Debug)]
pub struct ProducerStages {
    histograms: Mutex<Vec<Histogram<u64>>>,
}

impl Default for ProducerStages {
    fn default() -> Self {
        ProducerStages {
            histograms: Mutex::new(
                ProducerStage::ALL.iter().map(|_| new_histogram()).collect::<Vec<_>>(),
            ),
        }
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, STAGE_US_MAX, 2).expect("static histogram bounds are valid")
}

impl ProducerStages {
    /// Records `stage` as having lasted from `from` to `to` (the producer's tasks do; public
    /// for benchmarks of the cost).
    pub fn record_between(&self, stage: ProducerStage, from: Instant, to: Instant) {
        self.record_each(stage, std::iter::once((from, to)));
    }

    /// Records one sample of `stage` for each `(from, to)`, under one lock (a request's
    /// batches at once).
    pub(crate) fn record_each(
        &self,
        stage: ProducerStage,
        spans: impl IntoIterator<Item = (Instant, Instant)>,
    ) {
        let mut h = self.histograms.lock().unwrap_or_else(|e| e.into_inner());
        let h = &mut h[stage as usize];
        for (from, to) in spans {
            let us = (to.saturating_duration_since(from).as_micros() as u64).clamp(1, STAGE_US_MAX);
            h.saturating_record(us);
        }
    }

    /// Each stage with its histogram (µs) so far; with `reset`, the histograms start afresh.
    pub fn histograms(&self, reset: bool) -> Vec<(ProducerStage, Histogram<u64>)> {
        let mut h = self.histograms.lock().unwrap_or_else(|e| e.into_inner());
        ProducerStage::ALL
            .iter()
            .zip(h.iter_mut())
            .map(|(&stage, hist)| {
                let out = hist.clone();
                if reset {
                    hist.reset();
                }
                (stage, out)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn records_per_stage_and_resets() {
        let s = ProducerStages::default();
        let t0 = Instant::now();
        s.record_between(ProducerStage::InFlight, t0, t0 + Duration::from_micros(250));
        s.record_between(ProducerStage::InFlight, t0, t0 + Duration::from_micros(750));
        s.record_between(ProducerStage::Linger, t0, t0); // clamped to 1 µs
        let h = s.histograms(true);
        let in_flight = &h.iter().find(|(st, _)| *st == ProducerStage::InFlight).unwrap().1;
        assert_eq!(in_flight.len(), 2);
        assert!((740..=760).contains(&in_flight.max()), "{}", in_flight.max());
        let linger = &h.iter().find(|(st, _)| *st == ProducerStage::Linger).unwrap().1;
        assert_eq!((linger.len(), linger.max()), (1, 1));
        assert!(s.histograms(false).iter().all(|(_, h)| h.is_empty()));
    }
}
