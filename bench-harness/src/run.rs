//! One run of a workload against a driver.
//!
//! Phases (live workloads): create topics → subscribe consumers from the start → start
//! producers → warm-up (not measured) → measured window → producers stop and their acks
//! drain → consumers drain until they received everything acknowledged → delete topics.
//! Backlog workloads instead fill the topics with `backlog_bytes` while no consumer runs,
//! then start the consumers and time the catch-up read.
//!
//! Each producer runs on its own OS thread so pacing does not depend on the runtime's 1 ms
//! timer: the thread sleeps until the next message's *intended* send time (the kernel's
//! default 50 µs timer slack lets one wake-up send the few messages that fell due together,
//! and any lateness counts in their latency), and every latency counts from that intended time (so a stalled server is not hidden by a stalled producer:
//! coordinated omission is corrected). Acks complete in a task on the runtime that records
//! publish latency when each arrives. Consumers read the intended time stamped in the payload
//! and record end-to-end latency on receipt.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use hdrhistogram::Histogram;
use tokio::sync::{mpsc, watch};

use crate::driver::{ConsumerDriver, Driver, ProducerDriver, ProducerSettings};
use crate::environment::Environment;
use crate::error::HarnessError;
use crate::keys::KeyGenerator;
use crate::ledger::{self, Ledger};
use crate::payload::{self, Payload};
use crate::progress::Progress;
use crate::result::{Latency, RunResult, Throughput, TimelinePoint, Totals, RESULT_FORMAT_VERSION};
use crate::workload::Workload;

/// Knobs of a run that are not part of the workload.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Show live rates on stderr.
    pub progress: bool,
    /// How long consumers may take to receive everything after producers stopped.
    pub drain_timeout: Duration,
    /// How long a backlog catch-up read may take.
    pub catch_up_timeout: Duration,
    /// Leave the topics in place after the run.
    pub keep_topics: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            progress: true,
            drain_timeout: Duration::from_secs(60),
            catch_up_timeout: Duration::from_secs(1800),
            keep_topics: false,
        }
    }
}

/// Latencies above this are recorded as this and counted (`totals.clamped`); 1 h, in ns.
const LATENCY_NS_MAX: u64 = 3_600_000_000_000;

/// A paced producer still behind schedule this long after the stop gives up the rest of its
/// schedule, counting it as missed (`totals.missed`) rather than silently dropping it.
const MISSED_GRACE_NS: u64 = 5_000_000_000;

/// Acks waiting for the collector per producer; at this many the producer waits (its
/// schedule keeps the intended times, so latency stays honest).
const ACK_QUEUE_MAX: usize = 64 * 1024;

/// Records `latency_ns`, counting it if it is above the histogram's bound.
fn record(h: &mut Histogram<u64>, latency_ns: u64, shared: &Shared) {
    if latency_ns > LATENCY_NS_MAX {
        shared.clamped.fetch_add(1, Relaxed);
    }
    h.saturating_record(latency_ns);
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_NS_MAX, 3).expect("valid bounds")
}

/// Counters shared by producers, ack collectors, consumers and the sampler.
#[derive(Debug)]
pub(crate) struct Shared {
    epoch: Instant,
    /// Start of the measured window (ns since `epoch`).
    window_start_ns: AtomicU64,
    /// End of the measured window (ns since `epoch`); `u64::MAX` while unknown.
    window_end_ns: AtomicU64,
    /// Producers stop sending at this time (ns since `epoch`).
    stop_ns: AtomicU64,
    /// Producers stop once this many payload bytes were sent (backlog fill; 0 = no limit).
    sent_bytes_limit: u64,
    stop: AtomicBool,
    /// Consumers record end-to-end latency (off for the catch-up read).
    live: AtomicBool,
    pub(crate) sent: AtomicU64,
    sent_bytes: AtomicU64,
    pub(crate) acked: AtomicU64,
    pub(crate) acked_bytes: AtomicU64,
    errors: AtomicU64,
    consume_errors: AtomicU64,
    /// Paced sends whose intended time fell in the run but that were never made: the
    /// producer was still that far behind `missed_grace_ns` after the stop.
    missed: AtomicU64,
    missed_grace_ns: u64,
    /// Latencies above `LATENCY_NS_MAX`, recorded as that.
    clamped: AtomicU64,
    pub(crate) consumed: AtomicU64,
    pub(crate) consumed_bytes: AtomicU64,
    /// Largest latencies since the sampler last took them (ns).
    pub(crate) publish_latency_max_ns: AtomicU64,
    pub(crate) end_to_end_latency_max_ns: AtomicU64,
    measured_published: AtomicU64,
    measured_published_bytes: AtomicU64,
    measured_consumed: AtomicU64,
    measured_consumed_bytes: AtomicU64,
    first_error: Mutex<Option<String>>,
    /// Which messages were received, per producer (duplicates and gaps).
    ledger: Ledger,
    duplicates: AtomicU64,
    foreign: AtomicU64,
}

impl Shared {
    fn new(sent_bytes_limit: u64, live: bool, producers: usize) -> Shared {
        Shared {
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

    fn in_window(&self, t_ns: u64) -> bool {
        t_ns >= self.window_start_ns.load(Relaxed) && t_ns < self.window_end_ns.load(Relaxed)
    }

    fn error(&self, e: &HarnessError) {
        self.errors.fetch_add(1, Relaxed);
        self.note_first_error(e);
    }

    fn consume_error(&self, e: &HarnessError) {
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

/// Runs `workload` against `driver`.
pub async fn run<D: Driver>(
    driver: Arc<D>,
    workload: &Workload,
    options: &RunOptions,
) -> Result<RunResult, HarnessError> {
    workload.check().map_err(HarnessError::Workload)?;
    let started_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let backlog = workload.backlog_bytes > 0;
    let producer_count = (workload.topics * workload.producers_per_topic) as usize;
    let shared = Arc::new(Shared::new(workload.backlog_bytes, !backlog, producer_count));

    let topics: Vec<String> =
        (0..workload.topics).map(|i| format!("bench-{started_unix_ms}-{i}")).collect();
    for t in &topics {
        driver.create_topic(t, workload.partitions_per_topic).await?;
    }
    let result = run_on_topics(&driver, workload, options, &shared, &topics).await;
    if !options.keep_topics {
        for t in &topics {
            if let Err(e) = driver.delete_topic(t).await {
                eprintln!("warning: could not delete topic {t}: {e}");
            }
        }
    }
    let (publish_latency, e2e, consume, catch_up, timeline, publish_seconds) = result?;

    let first_error = shared.first_error.lock().expect("not poisoned").clone();
    let publish = Throughput::new(
        shared.measured_published.load(Relaxed),
        shared.measured_published_bytes.load(Relaxed),
        publish_seconds,
    );
    Ok(RunResult {
        format_version: RESULT_FORMAT_VERSION,
        driver: driver.name().into(),
        server_version: driver.server_version(),
        workload: workload.clone(),
        environment: Environment::detect(),
        started_unix_ms,
        publish,
        consume,
        catch_up,
        publish_latency: Latency::from_histogram(&publish_latency),
        end_to_end_latency: e2e.filter(|h| !h.is_empty()).map(|h| Latency::from_histogram(&h)),
        totals: Totals {
            sent: shared.sent.load(Relaxed),
            acked: shared.acked.load(Relaxed),
            publish_errors: shared.errors.load(Relaxed),
            consume_errors: shared.consume_errors.load(Relaxed),
            missed: shared.missed.load(Relaxed),
            clamped: shared.clamped.load(Relaxed),
            consumed: shared.consumed.load(Relaxed),
            duplicates: shared.duplicates.load(Relaxed),
            gaps: if workload.consumers_per_topic > 0 { shared.ledger.gaps() } else { 0 },
            foreign: shared.foreign.load(Relaxed),
            first_error,
        },
        timeline,
        notes: Vec::new(),
    })
}

type Phases = (
    Histogram<u64>,
    Option<Histogram<u64>>,
    Throughput,
    Option<Throughput>,
    Vec<TimelinePoint>,
    f64,
);

async fn run_on_topics<D: Driver>(
    driver: &Arc<D>,
    workload: &Workload,
    options: &RunOptions,
    shared: &Arc<Shared>,
    topics: &[String],
) -> Result<Phases, HarnessError> {
    let backlog = workload.backlog_bytes > 0;
    let (stop_consumers, stop_rx) = watch::channel(false);
    let mut consumers = Vec::new();
    if !backlog {
        consumers = start_consumers(driver, workload, shared, topics, &stop_rx).await?;
    }

    let settings = ProducerSettings {
        partitions: workload.partitions_per_topic,
        ack: workload.ack,
        batch_bytes_max: workload.batch_bytes_max,
        linger_us: workload.linger_us,
        in_flight_per_partition_max: workload.in_flight_per_partition_max,
    };
    let mut producers = Vec::new();
    for t in topics {
        for _ in 0..workload.producers_per_topic {
            producers.push(driver.producer(t, &settings).await?);
        }
    }

    // The clock starts once everything is connected, with room for the producer threads to
    // start (a late start would make the first intended sends late).
    let start_ns = shared.now_ns() + 20_000_000 + 1_000_000 * producers.len() as u64;
    let warmup_ns = (workload.warmup_s * 1e9) as u64;
    let measured_ns = (workload.duration_s * 1e9) as u64;
    shared.window_start_ns.store(start_ns + warmup_ns, Relaxed);
    if !backlog {
        shared.window_end_ns.store(start_ns + warmup_ns + measured_ns, Relaxed);
        shared.stop_ns.store(start_ns + warmup_ns + measured_ns, Relaxed);
    }
    let planned_s = if backlog { None } else { Some(workload.warmup_s + workload.duration_s) };
    let progress = Progress::start(Arc::clone(shared), start_ns, planned_s, options.progress);

    let handle = tokio::runtime::Handle::current();
    let mut threads = Vec::new();
    let mut collectors = Vec::new();
    let mut spawn_failure = None;
    for (index, producer) in producers.into_iter().enumerate() {
        let (ack_tx, ack_rx) = mpsc::channel(ACK_QUEUE_MAX);
        collectors.push(tokio::spawn(collect_acks(ack_rx, Arc::clone(shared))));
        let plan = Plan {
            index,
            start_ns,
            interval_ns: match workload.rate_per_producer() {
                r if r > 0.0 => 1e9 / r,
                _ => 0.0,
            },
            keys: KeyGenerator::new(workload, index as u64 + 1),
            payload: Payload::new(workload.message_bytes, index as u64 + 1),
        };
        let thread_shared = Arc::clone(shared);
        let handle = handle.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("producer-{index}"))
            .spawn(move || handle.block_on(produce(producer, plan, &thread_shared, ack_tx)));
        match spawned {
            Ok(thread) => threads.push(thread),
            Err(e) => {
                // Stop and join the producers already running before giving up.
                shared.stop.store(true, Relaxed);
                spawn_failure = Some(HarnessError::Spawn(format!("producer thread: {e}")));
                break;
            }
        }
    }
    let mut panicked = false;
    for t in threads {
        panicked |=
            tokio::task::spawn_blocking(move || t.join()).await.expect("join task").is_err();
    }
    if let Some(e) = spawn_failure {
        return Err(e);
    }
    if panicked {
        return Err(HarnessError::Inconsistent("a producer thread panicked".into()));
    }
    let mut publish_latency = histogram();
    for c in collectors {
        let h = c.await.expect("ack collector");
        publish_latency.add(&h).expect("same bounds");
    }
    let publish_end_ns = shared.now_ns();
    let window_start = shared.window_start_ns.load(Relaxed);
    let publish_seconds = if backlog {
        shared.window_end_ns.store(publish_end_ns, Relaxed);
        publish_end_ns.saturating_sub(window_start) as f64 / 1e9
    } else {
        workload.duration_s
    };

    let mut catch_up = None;
    if backlog && workload.consumers_per_topic > 0 {
        let t0 = shared.now_ns();
        shared.window_start_ns.store(t0, Relaxed);
        shared.window_end_ns.store(u64::MAX, Relaxed);
        consumers = start_consumers(driver, workload, shared, topics, &stop_rx).await?;
        wait_consumed(shared, options.catch_up_timeout).await;
        let seconds = (shared.now_ns() - t0) as f64 / 1e9;
        catch_up = Some(Throughput::new(
            shared.consumed.load(Relaxed),
            shared.consumed_bytes.load(Relaxed),
            seconds,
        ));
    } else if workload.consumers_per_topic > 0 {
        wait_consumed(shared, options.drain_timeout).await;
    }
    let _ = stop_consumers.send(true);
    let mut e2e = None;
    for c in consumers {
        match c.await.expect("consumer task") {
            Ok(h) => e2e.get_or_insert_with(histogram).add(&h).expect("same bounds"),
            Err(e) => shared.consume_error(&e),
        }
    }
    let timeline = progress.finish().await;

    let consume = match catch_up {
        Some(c) => c,
        None => Throughput::new(
            shared.measured_consumed.load(Relaxed),
            shared.measured_consumed_bytes.load(Relaxed),
            workload.duration_s,
        ),
    };
    if backlog {
        e2e = None;
    }
    Ok((publish_latency, e2e, consume, catch_up, timeline, publish_seconds))
}

/// Waits until consumers received everything acknowledged (or `timeout`).
async fn wait_consumed(shared: &Shared, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while shared.consumed.load(Relaxed) < shared.acked.load(Relaxed)
        && shared.consume_errors.load(Relaxed) == 0
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn start_consumers<D: Driver>(
    driver: &Arc<D>,
    workload: &Workload,
    shared: &Arc<Shared>,
    topics: &[String],
    stop: &watch::Receiver<bool>,
) -> Result<Vec<tokio::task::JoinHandle<Result<Histogram<u64>, HarnessError>>>, HarnessError> {
    let mut tasks = Vec::new();
    for t in topics {
        for c in 0..workload.consumers_per_topic {
            for p in workload.partitions_of_consumer(c) {
                let consumer = driver.consumer(t, p).await?;
                tasks.push(tokio::spawn(consume(consumer, Arc::clone(shared), stop.clone())));
            }
        }
    }
    Ok(tasks)
}

/// One producer's pacing and sequence.
struct Plan {
    /// This producer's index (its identities in the ledger).
    index: usize,
    start_ns: u64,
    /// 0 = as fast as the producer accepts.
    interval_ns: f64,
    keys: KeyGenerator,
    payload: Payload,
}

type AckItem<A> = (u64, u64, A);

async fn produce<P: ProducerDriver>(
    mut producer: P,
    mut plan: Plan,
    shared: &Shared,
    acks: mpsc::Sender<AckItem<P::Ack>>,
) {
    let len = plan.payload.stamp(0, 0).len() as u64;
    let stop_ns = shared.stop_ns.load(Relaxed);
    // Wait for the common start.
    let now = shared.now_ns();
    if plan.start_ns > now {
        std::thread::sleep(Duration::from_nanos(plan.start_ns - now));
    }
    let mut sequence = 0u64;
    loop {
        let now = shared.now_ns();
        if shared.stop.load(Relaxed) {
            break;
        }
        let intended_ns = if plan.interval_ns > 0.0 {
            // A paced producer stops on its schedule, not the clock: sends that are late when
            // the stop comes are still made (and measured, with their intended times).
            let t = plan.start_ns + (sequence as f64 * plan.interval_ns) as u64;
            if t >= stop_ns {
                break;
            }
            if now >= stop_ns.saturating_add(shared.missed_grace_ns) {
                let end = ((stop_ns - plan.start_ns) as f64 / plan.interval_ns).ceil() as u64;
                shared.missed.fetch_add(end.saturating_sub(sequence), Relaxed);
                break;
            }
            if t > now {
                // Sleeping blocks only this thread; acks complete on the runtime.
                std::thread::sleep(Duration::from_nanos(t - now));
            }
            t
        } else {
            if now >= stop_ns {
                break;
            }
            now
        };
        if shared.sent_bytes_limit > 0
            && shared.sent_bytes.fetch_add(len, Relaxed) >= shared.sent_bytes_limit
        {
            break;
        }
        let key = plan.keys.next_key();
        shared.ledger.issue(plan.index, sequence);
        let payload = plan.payload.stamp(intended_ns, ledger::identity(plan.index, sequence));
        match producer.send(key, payload).await {
            Ok(ack) => {
                shared.sent.fetch_add(1, Relaxed);
                if acks.send((intended_ns, len, ack)).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                shared.error(&e);
                shared.stop.store(true, Relaxed);
                break;
            }
        }
        sequence += 1;
    }
    if let Err(e) = producer.flush().await {
        shared.error(&e);
    }
}

/// Records each ack's latency (from the intended send time) as it completes.
async fn collect_acks<A>(mut rx: mpsc::Receiver<AckItem<A>>, shared: Arc<Shared>) -> Histogram<u64>
where
    A: Future<Output = Result<(), HarnessError>> + Send + 'static,
{
    let mut h = histogram();
    let mut pending = FuturesUnordered::new();
    let mut open = true;
    loop {
        tokio::select! {
            biased;
            Some((intended_ns, len, r)) = pending.next(), if !pending.is_empty() => {
                match r {
                    Ok(()) => {
                        let now = shared.now_ns();
                        shared.acked.fetch_add(1, Relaxed);
                        shared.acked_bytes.fetch_add(len, Relaxed);
                        let latency_ns = now.saturating_sub(intended_ns).max(1);
                        shared.publish_latency_max_ns.fetch_max(latency_ns, Relaxed);
                        if shared.in_window(intended_ns) {
                            record(&mut h, latency_ns, &shared);
                            shared.measured_published.fetch_add(1, Relaxed);
                            shared.measured_published_bytes.fetch_add(len, Relaxed);
                        }
                    }
                    Err(e) => shared.error(&e),
                }
            }
            item = rx.recv(), if open => match item {
                Some((intended_ns, len, ack)) => {
                    pending.push(ack.map(move |r: Result<(), HarnessError>| (intended_ns, len, r)));
                }
                None => open = false,
            },
            else => break,
        }
    }
    h
}

/// Receives one partition until told to stop; returns its end-to-end latencies.
async fn consume<C: ConsumerDriver>(
    mut consumer: C,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Result<Histogram<u64>, HarnessError> {
    let mut h = histogram();
    let mut ids = Vec::new();
    loop {
        let (mut count, mut bytes, mut measured, mut measured_bytes) = (0u64, 0u64, 0u64, 0u64);
        let mut foreign = 0u64;
        let mut latency_max_ns = 0u64;
        let live = shared.live.load(Relaxed);
        ids.clear();
        let more = {
            let mut on_message = |p: &[u8]| {
                let now = shared.now_ns();
                count += 1;
                match ledger::identity_of(p) {
                    Some(id) => ids.push(id),
                    None => foreign += 1,
                }
                bytes += p.len() as u64;
                if shared.in_window(now) {
                    measured += 1;
                    measured_bytes += p.len() as u64;
                }
                if let Some(sent) = payload::intended_ns(p) {
                    if live {
                        let latency_ns = now.saturating_sub(sent).max(1);
                        latency_max_ns = latency_max_ns.max(latency_ns);
                        if shared.in_window(sent) {
                            record(&mut h, latency_ns, &shared);
                        }
                    }
                }
            };
            tokio::select! {
                r = consumer.receive(&mut on_message) => r?,
                _ = stop.wait_for(|s| *s) => false,
            }
        };
        let tally = shared.ledger.receive(&ids);
        shared.duplicates.fetch_add(tally.duplicates, Relaxed);
        shared.foreign.fetch_add(tally.foreign + foreign, Relaxed);
        shared.consumed.fetch_add(count, Relaxed);
        shared.consumed_bytes.fetch_add(bytes, Relaxed);
        shared.measured_consumed.fetch_add(measured, Relaxed);
        shared.measured_consumed_bytes.fetch_add(measured_bytes, Relaxed);
        shared.end_to_end_latency_max_ns.fetch_max(latency_max_ns, Relaxed);
        if !more {
            if !*stop.borrow() {
                // Counted here (not by the caller) so the drain wait sees it at once.
                shared.consume_error(&HarnessError::Inconsistent(
                    "a subscription ended before the run stopped".into(),
                ));
            }
            return Ok(h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A producer that takes 20 ms per send (a system far slower than the schedule).
    struct Slow;

    impl ProducerDriver for Slow {
        type Ack = std::future::Ready<Result<(), HarnessError>>;

        async fn send(
            &mut self,
            _key: Option<&[u8]>,
            _payload: &[u8],
        ) -> Result<Self::Ack, HarnessError> {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(std::future::ready(Ok(())))
        }

        async fn flush(&mut self) -> Result<(), HarnessError> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_producer_far_behind_schedule_counts_what_it_never_sent() {
        let mut shared = Shared::new(0, true, 1);
        shared.missed_grace_ns = 100_000_000;
        let shared = Arc::new(shared);
        let start_ns = shared.now_ns() + 1_000_000;
        // 1,000 msg/s for 50 ms: 50 intended sends, at 20 ms each the producer manages ~8
        // before the grace after the stop runs out.
        shared.stop_ns.store(start_ns + 50_000_000, Relaxed);
        shared.window_start_ns.store(start_ns, Relaxed);
        shared.window_end_ns.store(start_ns + 50_000_000, Relaxed);
        let workload =
            Workload::parse(include_str!("../workloads/smoke.toml")).expect("smoke workload");
        let plan = Plan {
            index: 0,
            start_ns,
            interval_ns: 1e6,
            keys: KeyGenerator::new(&workload, 1),
            payload: Payload::new(64, 1),
        };
        let (tx, rx) = mpsc::channel(ACK_QUEUE_MAX);
        let collector = tokio::spawn(collect_acks(rx, Arc::clone(&shared)));
        let s = Arc::clone(&shared);
        tokio::task::spawn_blocking(move || {
            tokio::runtime::Handle::current().block_on(produce(Slow, plan, &s, tx))
        })
        .await
        .unwrap();
        let h = collector.await.unwrap();
        let (sent, missed) = (shared.sent.load(Relaxed), shared.missed.load(Relaxed));
        assert_eq!(sent + missed, 50, "every intended send is either made or counted missed");
        assert!(missed >= 30, "{missed} missed, {sent} sent");
        // The sends that were made carry their lateness from the intended times.
        assert_eq!(h.len(), sent);
        assert!(h.max() >= 100_000_000, "latest send waited past the grace: {}", h.max());
    }
}
