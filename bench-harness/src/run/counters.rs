//! Counters shared by producers, ack collectors, consumers and the sampler, and the measured
//! window they are judged against.
//!
//! Times are ns since the counters' creation (`now_ns`). Publish latency and throughput count
//! a message when its intended send time falls in `[window_start_ns, window_end_ns)`;
//! consume throughput counts a receipt when its time does, end-to-end latency when the
//! message's intended send time does. Latencies go into HDR histograms bounded at
//! `LATENCY_NS_MAX`: larger ones are recorded as the bound and counted (`clamped`). The
//! first error of the run is kept for the result.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Instant;

use hdrhistogram::Histogram;

use crate::error::HarnessError;
use crate::ledger::Ledger;

/// Latencies above this are recorded as this and counted (`totals.clamped`); 1 h, in ns.
const LATENCY_NS_MAX: u64 = 3_600_000_000_000;

/// A paced producer still behind schedule this long after the stop gives up the rest of its
/// schedule, counting it as missed (`totals.missed`) rather than silently dropping it.
const MISSED_GRACE_NS: u64 = 5_000_000_000;

/// Records `latency_ns`, counting it if it is above the histogram's bound.
pub(super) fn record(h: &mut Histogram<u64>, latency_ns: u64, counters: &RunCounters) {
    if latency_ns > LATENCY_NS_MAX {
        counters.clamped.fetch_add(1, Relaxed);
    }
    h.saturating_record(latency_ns);
}

pub(super) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_NS_MAX, 3).expect("valid bounds")
}

/// Counters shared by producers, ack collectors, consumers and the sampler.
#[derive(Debug)]
pub(crate) struct RunCounters {
    epoch: Instant,
    /// Start of the measured window (ns since `epoch`).
    pub(super) window_start_ns: AtomicU64,
    /// End of the measured window (ns since `epoch`); `u64::MAX` while unknown.
    pub(super) window_end_ns: AtomicU64,
    /// Producers stop sending at this time (ns since `epoch`).
    pub(super) stop_ns: AtomicU64,
    /// Producers stop once this many payload bytes were sent (backlog fill; 0 = no limit).
    pub(super) sent_bytes_limit: u64,
    pub(super) stop: AtomicBool,
    /// Consumers record end-to-end latency (off for the catch-up read).
    pub(super) live: AtomicBool,
    pub(crate) sent: AtomicU64,
    pub(super) sent_bytes: AtomicU64,
    pub(crate) acked: AtomicU64,
    pub(crate) acked_bytes: AtomicU64,
    pub(super) errors: AtomicU64,
    pub(super) consume_errors: AtomicU64,
    /// Paced sends whose intended time fell in the run but that were never made: the
    /// producer was still that far behind `missed_grace_ns` after the stop.
    pub(super) missed: AtomicU64,
    pub(super) missed_grace_ns: u64,
    /// Latencies above `LATENCY_NS_MAX`, recorded as that.
    pub(super) clamped: AtomicU64,
    pub(crate) consumed: AtomicU64,
    pub(crate) consumed_bytes: AtomicU64,
    /// Largest latencies since the sampler last took them (ns).
    pub(crate) publish_latency_max_ns: AtomicU64,
    pub(crate) end_to_end_latency_max_ns: AtomicU64,
    pub(super) measured_published: AtomicU64,
    pub(super) measured_published_bytes: AtomicU64,
    pub(super) measured_consumed: AtomicU64,
    pub(super) measured_consumed_bytes: AtomicU64,
    pub(super) first_error: Mutex<Option<String>>,
    /// Which messages were received, per producer (duplicates and gaps).
    pub(super) ledger: Ledger,
    pub(super) duplicates: AtomicU64,
    pub(super) foreign: AtomicU64,
}

impl RunCounters {
    pub(super) fn new(sent_bytes_limit: u64, live: bool, producers: usize) -> RunCounters {
        RunCounters {
            epoch: Instant::now(),
            window_start_ns: AtomicU64::new(u64::MAX),
            window_end_ns: AtomicU64::new(u64::MAX),
            stop_ns: AtomicU64::new(u64::MAX),
            missed_grace_ns: MISSED_GRACE_NS,
            sent_bytes_limit,
            stop: AtomicBool::new(false),
            live: AtomicBool::new(live),
            sent: AtomicU64::new(0),
            sent_bytes: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            acked_bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            consume_errors: AtomicU64::new(0),
            missed: AtomicU64::new(0),
            clamped: AtomicU64::new(0),
            consumed: AtomicU64::new(0),
            consumed_bytes: AtomicU64::new(0),
            publish_latency_max_ns: AtomicU64::new(0),
            end_to_end_latency_max_ns: AtomicU64::new(0),
            measured_published: AtomicU64::new(0),
            measured_published_bytes: AtomicU64::new(0),
            measured_consumed: AtomicU64::new(0),
            measured_consumed_bytes: AtomicU64::new(0),
            first_error: Mutex::new(None),
            ledger: Ledger::new(producers),
            duplicates: AtomicU64::new(0),
            foreign: AtomicU64::new(0),
        }
    }

    pub(crate) fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    pub(super) fn in_window(&self, t_ns: u64) -> bool {
        t_ns >= self.window_start_ns.load(Relaxed) && t_ns < self.window_end_ns.load(Relaxed)
    }

    pub(super) fn error(&self, e: &HarnessError) {
        self.errors.fetch_add(1, Relaxed);
        self.note_first_error(e);
    }

    pub(super) fn consume_error(&self, e: &HarnessError) {
        self.consume_errors.fetch_add(1, Relaxed);
        self.note_first_error(e);
    }

    fn note_first_error(&self, e: &HarnessError) {
        let mut first = self.first_error.lock().expect("not poisoned");
        if first.is_none() {
            *first = Some(e.to_string());
        }
    }
}
