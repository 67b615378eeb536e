//! Per-shard counters for the stats api and the metrics endpoint.
//!
//! Contract: plain cells, touched only on the owning shard; they wrap on overflow and never
//! fail. Gauges (open connections, subscriptions) go up with [`Counters::add`] and down with
//! [`Counters::sub`]. Nothing here is shared between threads: the metrics endpoint asks each
//! shard for a copy (`metrics/collect.rs`) and sums at scrape time.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::time::Duration;

use crate::storage::log::{CleanerStats, LogStats};

/// Api keys counted one by one in [`Counters::requests_by_api`]; larger keys share the last
/// slot (wire's api keys are 0..=21 today).
pub const API_SLOTS: usize = 32;

/// Distinct (api, error code) pairs a shard counts; further pairs count under the last one
/// seen (error codes are a small closed set, so this is a guard, not a limit in practice).
pub const ERROR_PAIRS_MAX: usize = 512;

/// Upper bounds of the latency histograms' buckets in microseconds (the `+Inf` bucket
/// follows). Roughly 1-2.5-5 steps from 50 µs to 10 s: a `durable` produce on NVMe lands in
/// the 100 µs – 2.5 ms buckets, a long-poll fetch up to its `max_wait_ms`.
pub const LATENCY_BUCKETS_US: [u64; 17] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];
const _: () = {
    let mut i = 1;
    while i < LATENCY_BUCKETS_US.len() {
        assert!(LATENCY_BUCKETS_US[i - 1] < LATENCY_BUCKETS_US[i], "bucket bounds ascend");
        i += 1;
    }
};

/// A latency histogram of one shard: a count per bucket of [`LATENCY_BUCKETS_US`] plus the
/// `+Inf` bucket, and the sum. Recording is a search over 17 bounds and two cell updates.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    buckets: [Cell<u64>; LATENCY_BUCKETS_US.len() + 1],
    /// Sum of all observations in microseconds.
    sum_us: Cell<u64>,
}

/// A copy of a [`LatencyHistogram`] that may cross threads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    pub buckets: Vec<u64>,
    /// Sum of all observations in microseconds.
    pub sum_us: u64,
}

impl HistogramSnapshot {
    /// Observations in all buckets.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Adds another shard's histogram to this one.
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a = a.wrapping_add(*b);
        }
        self.sum_us = self.sum_us.wrapping_add(other.sum_us);
    }
}

impl LatencyHistogram {
    /// Records one observation.
    pub fn record(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let i = LATENCY_BUCKETS_US.partition_point(|&bound| bound < us);
        Counters::add(&self.buckets[i], 1);
        Counters::add(&self.sum_us, us);
    }

    /// A copy.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: self.buckets.iter().map(Cell::get).collect(),
            sum_us: self.sum_us.get(),
        }
    }
}

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
    /// Batches appended that the log keeps in their request's frame (not copied:
    /// `api/produce.rs`).
    pub batches_in_frame: Cell<u64>,
    /// Records appended (the record counts of the appended batches).
    pub records_in: Cell<u64>,
    /// Records sent to consumers (fetch responses to clients and pushes).
    pub records_out: Cell<u64>,
    /// Requests handled (including forwarded ones).
    pub requests: Cell<u64>,
    /// Open connections.
    pub connections: Cell<u64>,
    /// Accepted connections.
    pub connections_total: Cell<u64>,
    /// TLS handshakes that failed or timed out (`tls.rs`): plaintext on a TLS port, bad or
    /// missing client certificates, slow clients.
    pub tls_handshakes_failed: Cell<u64>,
    /// Partition-routed requests this shard forwarded to an owner.
    pub forwards_out: Cell<u64>,
    /// Partition-routed requests forwarded to this shard.
    pub forwards_in: Cell<u64>,
    /// Open subscriptions.
    pub subscriptions: Cell<u64>,
    /// Times a subscription's push loop waited for credit while data was there to push.
    pub credit_stalls: Cell<u64>,
    /// Client requests answered by this shard's connections, by api key (the last slot
    /// takes keys ≥ `API_SLOTS - 1`).
    pub requests_by_api: [Cell<u64>; API_SLOTS],
    /// Client requests answered with an error frame, by (api key, error code).
    pub errors_by_api: RefCell<BTreeMap<(u16, u16), u64>>,
    /// Produce requests from a client connection: request read → response queued.
    pub produce_latency: LatencyHistogram,
    /// Fetch requests from a client connection (long-polls included).
    pub fetch_latency: LatencyHistogram,
    /// Records and bytes in and out per partition (`partition_traffic.rs`).
    pub partitions: crate::partition_traffic::PartitionTraffic,
    /// Log and compaction counters of partitions this shard no longer holds (their topic
    /// was deleted): the shard's totals include them, so its counters never go down.
    pub retired_logs: Cell<(LogStats, CleanerStats)>,
}

impl Counters {
    /// Keeps a removed partition's log counters in the shard's totals.
    pub fn retire_log(&self, log: &LogStats, cleaner: &CleanerStats) {
        let (mut l, mut c) = self.retired_logs.get();
        l.add(log);
        c.add(cleaner);
        self.retired_logs.set((l, c));
    }

    /// Adds `n` to a counter.
    pub fn add(cell: &Cell<u64>, n: u64) {
        cell.set(cell.get().wrapping_add(n));
    }

    /// Takes `n` from a gauge.
    pub fn sub(cell: &Cell<u64>, n: u64) {
        cell.set(cell.get().wrapping_sub(n));
    }

    /// Counts a client request that was answered: its api, its error code if the answer was
    /// an error frame (`error_code` 0 otherwise), and for produce and fetch its latency.
    pub fn answered(&self, api_key: u16, error_code: u16, elapsed: Duration) {
        let slot = usize::from(api_key).min(API_SLOTS - 1);
        Self::add(&self.requests_by_api[slot], 1);
        if error_code != 0 {
            let mut errors = self.errors_by_api.borrow_mut();
            let key =
                if errors.len() < ERROR_PAIRS_MAX || errors.contains_key(&(api_key, error_code)) {
                    (api_key, error_code)
                } else {
                    *errors.keys().next_back().expect("ERROR_PAIRS_MAX > 0")
                };
            *errors.entry(key).or_default() += 1;
        }
        if api_key == wire::ApiKey::Produce.as_u16() {
            self.produce_latency.record(elapsed);
        } else if api_key == wire::ApiKey::Fetch.as_u16() {
            self.fetch_latency.record(elapsed);
        }
    }
}

/// Byte offset of the flags in a frame header (`wire/src/frame.rs`: magic u32, version u16,
/// api key u16, flags u16).
const FRAME_FLAGS_OFFSET: usize = 8;

/// The error code of a response frame: the `ErrorBody`'s code when the frame has the error
/// flag, else 0 (per-partition errors inside a response body are not looked at). A frame
/// without the flag costs two byte reads: every answered request goes through here.
pub fn frame_error_code(frame: &[u8]) -> u16 {
    let flags = match frame.get(FRAME_FLAGS_OFFSET..FRAME_FLAGS_OFFSET + 2) {
        Some(&[lo, hi]) => u16::from_le_bytes([lo, hi]),
        _ => return 0,
    };
    if flags & wire::constants::FLAG_ERROR == 0 {
        return 0;
    }
    let Ok(Some((raw, _))) = wire::split_frame(frame, u32::MAX) else { return 0 };
    if !raw.header.has_flag(wire::constants::FLAG_ERROR) {
        return 0;
    }
    wire::access_body::<wire::ErrorBody>(raw.body).map_or(0, |e| e.code.to_native())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_take_what_is_at_or_below_their_bound() {
        let h = LatencyHistogram::default();
        h.record(Duration::from_micros(50)); // le 50
        h.record(Duration::from_micros(51)); // le 100
        h.record(Duration::from_secs(60)); // +Inf
        let s = h.snapshot();
        assert_eq!(s.buckets.len(), LATENCY_BUCKETS_US.len() + 1);
        assert_eq!((s.buckets[0], s.buckets[1], s.buckets[LATENCY_BUCKETS_US.len()]), (1, 1, 1));
        assert_eq!(s.count(), 3);
        assert_eq!(s.sum_us, 50 + 51 + 60_000_000);
        let mut total = HistogramSnapshot::default();
        total.merge(&s);
        total.merge(&s);
        assert_eq!((total.count(), total.sum_us), (6, 2 * s.sum_us));
    }

    #[test]
    fn answered_requests_count_by_api_and_error() {
        let c = Counters::default();
        let produce = wire::ApiKey::Produce.as_u16();
        c.answered(produce, 0, Duration::from_micros(10));
        c.answered(produce, 7, Duration::from_micros(10));
        c.answered(900, 0, Duration::ZERO);
        assert_eq!(c.requests_by_api[usize::from(produce)].get(), 2);
        assert_eq!(c.requests_by_api[API_SLOTS - 1].get(), 1);
        assert_eq!(c.errors_by_api.borrow().get(&(produce, 7)), Some(&1));
        assert_eq!(c.produce_latency.snapshot().count(), 2);
    }

    #[test]
    fn an_error_frame_carries_its_code() {
        let fetch = wire::ApiKey::Fetch.as_u16();
        let frame = wire::encode_error(fetch, 1, wire::ErrorCode::NotOwner, "elsewhere");
        assert_eq!(frame_error_code(&frame), wire::ErrorCode::NotOwner.as_u16());
        assert_eq!(frame_error_code(&[0u8; 4]), 0, "a short frame is no error");
        let ok = wire::encode_response(1, &wire::StatsResponse { shards: Vec::new() }).unwrap();
        assert_eq!(frame_error_code(&ok), 0, "an answer without the error flag");
    }
}
