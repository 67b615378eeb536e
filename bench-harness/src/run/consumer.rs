//! Consumers: one task per partition, reading from the first message; or, for a
//! `consumer_group` workload, one task per group member, reading what the server assigns.
//!
//! Contract: a consumer records each message on receipt — its end-to-end latency from the
//! intended send time stamped in the payload (while the run is live), whether it fell in
//! the measured window, and its identity in the ledger (duplicates, gaps, foreign messages)
//! — and runs until told to stop; a subscription that ends before that is a consume error.
//! [`wait_consumed`] is the drain: it returns once consumers received everything
//! acknowledged, a consume error occurred, or the timeout passed.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::watch;

use super::counters::{histogram, record, RunCounters};
use crate::driver::{ConsumerDriver, Driver};
use crate::error::HarnessError;
use crate::ledger;
use crate::payload;
use crate::workload::Workload;

/// A running consumer; it resolves to its end-to-end latencies.
pub(super) type ConsumerTask = tokio::task::JoinHandle<Result<Histogram<u64>, HarnessError>>;

/// Subscribes the workload's consumers to `topics` and starts them; they run until `stop`.
pub(super) async fn start_consumers<D: Driver>(
    driver: &Arc<D>,
    workload: &Workload,
    counters: &Arc<RunCounters>,
    topics: &[String],
    stop: &watch::Receiver<bool>,
) -> Result<Vec<ConsumerTask>, HarnessError> {
    let mut tasks = Vec::new();
    for t in topics {
        for c in 0..workload.consumers_per_topic {
            if workload.consumer_group {
                // One group per topic; the broker spreads the partitions over the members.
                let consumer = driver.group_consumer(t, &format!("{t}-group")).await?;
                tasks.push(tokio::spawn(consume(consumer, Arc::clone(counters), stop.clone())));
                continue;
            }
            for p in workload.partitions_of_consumer(c) {
                let consumer = driver.consumer(t, p).await?;
                tasks.push(tokio::spawn(consume(consumer, Arc::clone(counters), stop.clone())));
            }
        }
    }
    Ok(tasks)
}

/// Waits until consumers received everything acknowledged (or `timeout`).
pub(super) async fn wait_consumed(counters: &RunCounters, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while counters.consumed.load(Relaxed) < counters.acked.load(Relaxed)
        && counters.consume_errors.load(Relaxed) == 0
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits for the (stopped) consumers; returns their end-to-end latencies merged (`None`
/// without consumers) and counts their errors.
pub(super) async fn join_consumers(
    consumers: Vec<ConsumerTask>,
    counters: &RunCounters,
) -> Option<Histogram<u64>> {
    let mut e2e = None;
    for c in consumers {
        match c.await.expect("consumer task") {
            Ok(h) => e2e.get_or_insert_with(histogram).add(&h).expect("same bounds"),
            Err(e) => counters.consume_error(&e),
        }
    }
    e2e
}

/// Receives one partition until told to stop; returns its end-to-end latencies.
async fn consume<C: ConsumerDriver>(
    mut consumer: C,
    counters: Arc<RunCounters>,
    mut stop: watch::Receiver<bool>,
) -> Result<Histogram<u64>, HarnessError> {
    let mut h = histogram();
    let mut ids = Vec::new();
    loop {
        let (mut count, mut bytes, mut measured, mut measured_bytes) = (0u64, 0u64, 0u64, 0u64);
        let mut foreign = 0u64;
        let mut latency_max_ns = 0u64;
        let live = counters.live.load(Relaxed);
        ids.clear();
        let more = {
            let mut on_message = |p: &[u8]| {
                let now = counters.now_ns();
                count += 1;
                match ledger::identity_of(p) {
                    Some(id) => ids.push(id),
                    None => foreign += 1,
                }
                bytes += p.len() as u64;
                if counters.in_window(now) {
                    measured += 1;
                    measured_bytes += p.len() as u64;
                }
                if let Some(sent) = payload::intended_ns(p) {
                    if live {
                        let latency_ns = now.saturating_sub(sent).max(1);
                        latency_max_ns = latency_max_ns.max(latency_ns);
                        if counters.in_window(sent) {
                            record(&mut h, latency_ns, &counters);
                        }
                    }
                }
            };
            tokio::select! {
                r = consumer.receive(&mut on_message) => r?,
                _ = stop.wait_for(|s| *s) => false,
            }
        };
        let tally = counters.ledger.receive(&ids);
        counters.duplicates.fetch_add(tally.duplicates, Relaxed);
        counters.foreign.fetch_add(tally.foreign + foreign, Relaxed);
        counters.consumed.fetch_add(count, Relaxed);
        counters.consumed_bytes.fetch_add(bytes, Relaxed);
        counters.measured_consumed.fetch_add(measured, Relaxed);
        counters.measured_consumed_bytes.fetch_add(measured_bytes, Relaxed);
        counters.end_to_end_latency_max_ns.fetch_max(latency_max_ns, Relaxed);
        if !more {
            if !*stop.borrow() {
                // Counted here (not by the caller) so the drain wait sees it at once.
                counters.consume_error(&HarnessError::Inconsistent(
                    "a subscription ended before the run stopped".into(),
                ));
            }
            return Ok(h);
        }
    }
}
