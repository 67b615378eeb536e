//! A paced producer on its own OS thread (intended-time latency, coordinated omission
//! corrected) and its ack collector on the runtime.
//!
//! Contract: every message has an intended send time on the producer's schedule (`start_ns`
//! plus one interval per message, or at an interval under [`BURST_NS`] the start of that
//! message's burst window; "now" when unpaced), stamped in its payload with its
//! ledger identity, and its publish latency counts from that time, however late the send
//! was. A paced producer stops on its schedule, not the clock: sends due before `stop_ns` are
//! still made after it, until the producer is `missed_grace_ns` past the stop, when the rest
//! of its schedule counts as missed. A backlog fill stops once `sent_bytes_limit` payload
//! bytes were sent; a send error stops every producer. Each ack is recorded by the collector
//! when it completes. [`join_producers`] returns once every thread and collector finished,
//! with the publish latencies of the measured window.
//!
//! The producers' client tasks (connections, senders, coalescers) and the ack collectors run
//! on their own runtime ([`ProducerRuntime`], one worker thread), not on the one the
//! consumers' tasks share: a consumer working through a large push would otherwise hold up
//! the producers' answers on the same worker for milliseconds, a delay of the harness, not
//! of the server (issue 26: producers and consumers are separate services in practice).

use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use hdrhistogram::Histogram;
use tokio::sync::mpsc;

use super::counters::{histogram, record, RunCounters};
use crate::driver::{Driver, ProducerDriver, ProducerSettings};
use crate::error::HarnessError;
use crate::keys::KeyGenerator;
use crate::ledger;
use crate::payload::Payload;
use crate::workload::Workload;

/// Hand-offs of acks waiting for the collector per producer; at this many the producer
/// waits (its schedule keeps the intended times, so latency stays honest).
const ACK_QUEUE_MAX: usize = 64 * 1024;

/// Most acks handed to the collector at once (see [`BURST_NS`]).
const ACK_HANDOFF_MAX: usize = 256;

/// A paced producer wakes at most once per window of this long: at a shorter interval its schedule is
/// bursts, one per `BURST_NS` window, each at the window's start carrying the messages whose
/// even-paced times fall in the window ([`burst_due_ns`]), sent back to back with their acks
/// handed to the collector together. Its intended times are the bursts' (the same rate, in
/// bursts as the broker sees them), so the wait for a burst is not charged to the system
/// under test: before, each message carried its even-paced time and the burst's lateness
/// (up to `BURST_NS`: p50 ~55 µs, p99 ~130 µs of `harness_send_lag` at 100,000 msg/s) was in
/// every latency figure, a delay of the harness (issue 26). A burst's own lateness (a late
/// wake-up, the sends before a message in its burst, a producer that blocks) still counts.
/// One wake-up, one hand-off to the runtime and the context switches both cost per message
/// took ~0.3 of the harness's core at 50,000 msg/s (partitions-100), starving its client
/// and consumer tasks.
const BURST_NS: u64 = 100_000;

/// When the message whose even-paced time is `t_ns` is due on a bursting schedule that
/// started at `start_ns`: the start of its `BURST_NS` window (the same rate; a message stays
/// in the measured window its even-paced time is in when the window's ends are on the
/// 100 µs grid, as whole-second warm-ups and durations are).
fn burst_due_ns(start_ns: u64, t_ns: u64) -> u64 {
    start_ns + (t_ns - start_ns) / BURST_NS * BURST_NS
}

/// A connected producer with its keys and payloads, generated before the clock is set
/// (a ring of JSON documents, or the precomputed keys of idle-partition workloads, take
/// milliseconds that would otherwise make the first sends late).
pub(super) struct ReadyProducer<P> {
    producer: P,
    keys: KeyGenerator,
    payload: Payload,
}

/// The runtime the producers' client tasks and ack collectors run on (see the module docs).
pub(super) struct ProducerRuntime {
    runtime: Option<tokio::runtime::Runtime>,
}

impl ProducerRuntime {
    pub(super) fn new(sched_slice_us: u64) -> Result<ProducerRuntime, HarnessError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("producer-io")
            .on_thread_start(move || {
                crate::sched_slice::short_slice(sched_slice_us);
            })
            .enable_all()
            .build()
            .map_err(|e| HarnessError::Spawn(format!("producer runtime: {e}")))?;
        Ok(ProducerRuntime { runtime: Some(runtime) })
    }

    pub(super) fn handle(&self) -> tokio::runtime::Handle {
        self.runtime.as_ref().expect("present until dropped").handle().clone()
    }
}

impl Drop for ProducerRuntime {
    fn drop(&mut self) {
        // Dropped from async code: a blocking shutdown would panic there.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Connects the workload's producers, `producers_per_topic` for each of `topics`, on
/// `runtime` (their client tasks run there), and generates their keys and payloads.
pub(super) async fn connect_producers<D: Driver>(
    driver: &Arc<D>,
    workload: &Workload,
    topics: &[String],
    runtime: &tokio::runtime::Handle,
) -> Result<Vec<ReadyProducer<D::Producer>>, HarnessError> {
    let settings = ProducerSettings {
        partitions: workload.partitions_per_topic,
        ack: workload.ack,
        batch_bytes_max: workload.batch_bytes_max,
        linger_us: workload.linger_us,
        in_flight_per_partition_max: workload.in_flight_per_partition_max,
        requests_in_flight_per_connection_max: workload.requests_in_flight_per_connection_max,
        idempotence: workload.idempotence,
        compression: workload.compression.clone(),
    };
    let mut producers = Vec::new();
    for t in topics {
        for _ in 0..workload.producers_per_topic {
            let (d, topic, s) = (Arc::clone(driver), t.clone(), settings.clone());
            let producer = runtime
                .spawn(async move { d.producer(&topic, &s).await })
                .await
                .map_err(|e| HarnessError::Spawn(format!("producer connect task: {e}")))??;
            let seed = producers.len() as u64 + 1;
            producers.push(ReadyProducer {
                producer,
                keys: KeyGenerator::new(workload, seed),
                payload: Payload::new(workload.payload, workload.message_bytes, seed),
            });
        }
    }
    Ok(producers)
}

/// Producer threads and their ack collectors, started by [`start_producers`].
pub(super) struct RunningProducers {
    threads: Vec<std::thread::JoinHandle<()>>,
    collectors: Vec<tokio::task::JoinHandle<(Histogram<u64>, Histogram<u64>)>>,
    /// Why a producer thread could not start (the ones before it were told to stop).
    spawn_failure: Option<HarnessError>,
}

/// Starts each producer on its own thread, sending from `start_ns` on, with its collector
/// on `handle` (the producers' runtime).
pub(super) fn start_producers<P: ProducerDriver>(
    producers: Vec<ReadyProducer<P>>,
    workload: &Workload,
    counters: &Arc<RunCounters>,
    start_ns: u64,
    spin_ns: u64,
    sched_slice_us: u64,
    handle: &tokio::runtime::Handle,
) -> RunningProducers {
    let mut threads = Vec::new();
    let mut collectors = Vec::new();
    let mut spawn_failure = None;
    for (index, ReadyProducer { producer, keys, payload }) in producers.into_iter().enumerate() {
        let (ack_tx, ack_rx) = mpsc::channel(ACK_QUEUE_MAX);
        collectors.push(handle.spawn(collect_acks(ack_rx, Arc::clone(counters))));
        let plan = Plan {
            index,
            start_ns,
            interval_ns: match workload.rate_per_producer() {
                r if r > 0.0 => 1e9 / r,
                _ => 0.0,
            },
            spin_ns,
            keys,
            payload,
        };
        let thread_counters = Arc::clone(counters);
        let handle = handle.clone();
        let spawned =
            std::thread::Builder::new().name(format!("producer-{index}")).spawn(move || {
                precise_sleeps();
                crate::sched_slice::short_slice(sched_slice_us);
                handle.block_on(produce(producer, plan, &thread_counters, ack_tx))
            });
        match spawned {
            Ok(thread) => threads.push(thread),
            Err(e) => {
                // Stop and join the producers already running before giving up.
                counters.stop.store(true, Relaxed);
                spawn_failure = Some(HarnessError::Spawn(format!("producer thread: {e}")));
                break;
            }
        }
    }
    RunningProducers { threads, collectors, spawn_failure }
}

/// Waits for the producer threads to finish, then (if they all started and none panicked)
/// for their acks; returns the measured window's publish latencies and send lags (ns).
pub(super) async fn join_producers(
    running: RunningProducers,
) -> Result<(Histogram<u64>, Histogram<u64>), HarnessError> {
    let RunningProducers { threads, collectors, spawn_failure } = running;
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
    let (mut publish_latency, mut send_lag) = (histogram(), histogram());
    for c in collectors {
        let (h, lag) = c.await.expect("ack collector");
        publish_latency.add(&h).expect("same bounds");
        send_lag.add(&lag).expect("same bounds");
    }
    Ok((publish_latency, send_lag))
}

/// Asks the kernel to wake this thread's sleeps on time: the default timer slack (50 µs)
/// would make every paced send up to that much late, a delay of the harness that its
/// latency figures would charge to the system under test. Best effort.
fn precise_sleeps() {
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument (the slack in ns) and changes only
    // the calling thread's timer slack; no memory is passed.
    let _ = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
}

/// One producer's pacing and sequence.
struct Plan {
    /// This producer's index (its identities in the ledger).
    index: usize,
    start_ns: u64,
    /// 0 = as fast as the producer accepts.
    interval_ns: f64,
    /// Sleep until this long (at most a quarter of `interval_ns`) before a send is due, then
    /// poll (`RunOptions::send_spin_us`).
    spin_ns: u64,
    keys: KeyGenerator,
    payload: Payload,
}

/// A sent message waiting for its ack: intended send time (ns), when the send call was made
/// (ns), payload length, ack.
type AckItem<A> = (u64, u64, u64, A);

async fn produce<P: ProducerDriver>(
    mut producer: P,
    mut plan: Plan,
    counters: &RunCounters,
    acks: mpsc::Sender<Vec<AckItem<P::Ack>>>,
) {
    let len = plan.payload.len() as u64;
    // Acks of sends made since the last hand-off (only ever more than one in a burst).
    let mut unsent: Vec<AckItem<P::Ack>> = Vec::new();
    let bursts = plan.interval_ns > 0.0 && plan.interval_ns < BURST_NS as f64;
    let stop_ns = counters.stop_ns.load(Relaxed);
    // Wait for the common start.
    let now = counters.now_ns();
    if plan.start_ns > now {
        std::thread::sleep(Duration::from_nanos(plan.start_ns - now));
    }
    let mut sequence = 0u64;
    loop {
        let now = counters.now_ns();
        if counters.stop.load(Relaxed) {
            break;
        }
        let intended_ns = if plan.interval_ns > 0.0 {
            // A paced producer stops on its schedule, not the clock: sends that are late when
            // the stop comes are still made (and measured, with their intended times).
            let t = plan.start_ns + (sequence as f64 * plan.interval_ns) as u64;
            if t >= stop_ns {
                break;
            }
            let t = if bursts { burst_due_ns(plan.start_ns, t) } else { t };
            if now >= stop_ns.saturating_add(counters.missed_grace_ns) {
                let end = ((stop_ns - plan.start_ns) as f64 / plan.interval_ns).ceil() as u64;
                counters.missed.fetch_add(end.saturating_sub(sequence), Relaxed);
                break;
            }
            if t > now {
                // The sends made so far go to the collector before this thread waits.
                if !unsent.is_empty() && acks.send(std::mem::take(&mut unsent)).await.is_err() {
                    break;
                }
                // Polling at most a quarter of the interval: at 5,000 msg/s and more a full
                // 200 µs window never slept and took the CPU from the harness's own tasks.
                let spin_ns = plan.spin_ns.min((plan.interval_ns / 4.0) as u64);
                wait_until(counters, now, t, spin_ns);
            }
            t
        } else {
            if now >= stop_ns {
                break;
            }
            now
        };
        if counters.sent_bytes_limit > 0
            && counters.sent_bytes.fetch_add(len, Relaxed) >= counters.sent_bytes_limit
        {
            break;
        }
        let key = plan.keys.next_key();
        counters.ledger.issue(plan.index, sequence);
        let payload = plan.payload.stamp(intended_ns, ledger::identity(plan.index, sequence));
        let sent_ns = counters.now_ns();
        debug_assert!(sent_ns >= intended_ns, "a send before its intended time");
        match producer.send(key, payload).await {
            Ok(ack) => {
                counters.sent.fetch_add(1, Relaxed);
                unsent.push((intended_ns, sent_ns, len, ack));
                if (!bursts || unsent.len() >= ACK_HANDOFF_MAX)
                    && acks.send(std::mem::take(&mut unsent)).await.is_err()
                {
                    break;
                }
            }
            Err(e) => {
                counters.error(&e);
                counters.stop.store(true, Relaxed);
                break;
            }
        }
        sequence += 1;
    }
    if !unsent.is_empty() {
        let _ = acks.send(unsent).await;
    }
    if let Err(e) = producer.flush().await {
        counters.error(&e);
    }
}

/// Blocks this thread (acks complete on the runtime meanwhile) until `counters.now_ns()`
/// reaches `t_ns`: a sleep to `spin_ns` before it, then polling that yields the CPU to any
/// other runnable thread, so the send is not late by a wake-up.
fn wait_until(counters: &RunCounters, now_ns: u64, t_ns: u64, spin_ns: u64) {
    if t_ns - now_ns > spin_ns {
        std::thread::sleep(Duration::from_nanos(t_ns - now_ns - spin_ns));
    }
    while counters.now_ns() < t_ns {
        std::thread::yield_now();
    }
}

/// Records each ack's latency (from the intended send time) as it completes, and how late
/// the producer thread made the send call (its own scheduling: the harness's share).
async fn collect_acks<A>(
    mut rx: mpsc::Receiver<Vec<AckItem<A>>>,
    counters: Arc<RunCounters>,
) -> (Histogram<u64>, Histogram<u64>)
where
    A: Future<Output = Result<(), HarnessError>> + Send + 'static,
{
    let (mut h, mut lag) = (histogram(), histogram());
    let mut pending = FuturesUnordered::new();
    let mut open = true;
    loop {
        tokio::select! {
            biased;
            Some((intended_ns, sent_ns, len, r)) = pending.next(), if !pending.is_empty() => {
                match r {
                    Ok(()) => {
                        let now = counters.now_ns();
                        counters.acked.fetch_add(1, Relaxed);
                        counters.acked_bytes.fetch_add(len, Relaxed);
                        let latency_ns = now.saturating_sub(intended_ns).max(1);
                        counters.publish_latency_max_ns.fetch_max(latency_ns, Relaxed);
                        if counters.in_window(intended_ns) {
                            record(&mut h, latency_ns, &counters);
                            lag.saturating_record(u64::saturating_sub(sent_ns, intended_ns).max(1));
                            counters.measured_published.fetch_add(1, Relaxed);
                            counters.measured_published_bytes.fetch_add(len, Relaxed);
                        }
                    }
                    Err(e) => counters.error(&e),
                }
            }
            item = rx.recv(), if open => match item {
                Some(items) => {
                    for (intended_ns, sent_ns, len, ack) in items {
                        pending.push(ack.map(move |r: Result<(), HarnessError>| {
                            (intended_ns, sent_ns, len, r)
                        }));
                    }
                }
                None => open = false,
            },
            else => break,
        }
    }
    (h, lag)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A producer whose sends each take the given time (none when zero) and are acked at once.
    struct Fixed(Duration);

    impl ProducerDriver for Fixed {
        type Ack = std::future::Ready<Result<(), HarnessError>>;

        async fn send(
            &mut self,
            _key: Option<&[u8]>,
            _payload: &[u8],
        ) -> Result<Self::Ack, HarnessError> {
            if !self.0.is_zero() {
                tokio::time::sleep(self.0).await;
            }
            Ok(std::future::ready(Ok(())))
        }

        async fn flush(&mut self) -> Result<(), HarnessError> {
            Ok(())
        }
    }

    /// Runs `producer` on a schedule of one send per `interval_ns` for `window_ns` (stop and
    /// measured window alike) with its collector; returns the collector's publish latencies
    /// and send lags.
    async fn run_schedule(
        producer: Fixed,
        counters: &Arc<RunCounters>,
        interval_ns: f64,
        window_ns: u64,
    ) -> (Histogram<u64>, Histogram<u64>) {
        let start_ns = counters.now_ns() + 1_000_000;
        counters.stop_ns.store(start_ns + window_ns, Relaxed);
        counters.window_start_ns.store(start_ns, Relaxed);
        counters.window_end_ns.store(start_ns + window_ns, Relaxed);
        let workload =
            Workload::parse(include_str!("../../workloads/smoke.toml")).expect("smoke workload");
        let plan = Plan {
            index: 0,
            start_ns,
            interval_ns,
            spin_ns: 200_000,
            keys: KeyGenerator::new(&workload, 1),
            payload: Payload::new(crate::workload::PayloadKind::Random, 64, 1),
        };
        let (tx, rx) = mpsc::channel(ACK_QUEUE_MAX);
        let collector = tokio::spawn(collect_acks(rx, Arc::clone(counters)));
        let s = Arc::clone(counters);
        tokio::task::spawn_blocking(move || {
            tokio::runtime::Handle::current().block_on(produce(producer, plan, &s, tx))
        })
        .await
        .unwrap();
        collector.await.unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_producer_far_behind_schedule_counts_what_it_never_sent() {
        let mut counters = RunCounters::new(0, true, 1);
        counters.missed_grace_ns = 100_000_000;
        let counters = Arc::new(counters);
        // 1,000 msg/s for 50 ms: 50 intended sends, at 20 ms each the producer manages ~8
        // before the grace after the stop runs out.
        let slow = Fixed(Duration::from_millis(20));
        let (h, lag) = run_schedule(slow, &counters, 1e6, 50_000_000).await;
        let (sent, missed) = (counters.sent.load(Relaxed), counters.missed.load(Relaxed));
        assert_eq!(sent + missed, 50, "every intended send is either made or counted missed");
        assert!(missed >= 30, "{missed} missed, {sent} sent");
        // The sends that were made carry their lateness from the intended times.
        assert_eq!(h.len(), sent);
        assert!(h.max() >= 100_000_000, "latest send waited past the grace: {}", h.max());
        // Each send call was made late by the sends before it (20 ms each against a 1 ms
        // schedule): the send lag shows it, and never exceeds the whole latency.
        assert_eq!(lag.len(), sent);
        assert!(lag.max() >= 50_000_000 && lag.max() <= h.max(), "lag {}", lag.max());
    }

    /// At an interval shorter than a burst (50,000 msg/s) every message is sent or missed
    /// (none before its intended time: `wait_until`), and every ack made reaches the
    /// collector, the last burst's too.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fast_schedule_sends_in_bursts_never_early_and_every_ack_is_collected() {
        let counters = Arc::new(RunCounters::new(0, true, 1));
        let (h, lag) = run_schedule(Fixed(Duration::ZERO), &counters, 20_000.0, 20_000_000).await;
        let sent = counters.sent.load(Relaxed);
        assert_eq!(sent + counters.missed.load(Relaxed), 1000);
        assert_eq!(h.len(), sent, "every ack collected");
        assert_eq!(lag.len(), sent);
    }

    /// On a bursting schedule a message is due at the start of its window: on the window
    /// grid, within a window of its even-paced time, and the messages of one window share it.
    #[test]
    fn a_burst_is_due_at_the_start_of_its_window() {
        let start = 1_000_000;
        for t in [start, start + 1, start + 99_999, start + BURST_NS, start + 250_000] {
            let due = burst_due_ns(start, t);
            assert!(due <= t && t - due < BURST_NS, "t {t} due {due}");
            assert_eq!((due - start) % BURST_NS, 0, "t {t} due {due}");
        }
        assert_eq!(burst_due_ns(start, start), start, "the first message goes at the start");
        assert_eq!(burst_due_ns(start, start + 10_000), burst_due_ns(start, start + 90_000));
        assert_ne!(burst_due_ns(start, start + 90_000), burst_due_ns(start, start + 110_000));
    }

    /// A send never goes before its time, whether the wait sleeps, polls or both.
    #[test]
    fn waiting_for_a_send_never_returns_early() {
        let counters = RunCounters::new(0, true, 1);
        for (ahead_ns, spin_ns) in [(0, 0), (50_000, 0), (50_000, 200_000), (1_000_000, 200_000)] {
            let now = counters.now_ns();
            wait_until(&counters, now, now + ahead_ns, spin_ns);
            assert!(counters.now_ns() >= now + ahead_ns, "ahead {ahead_ns} spin {spin_ns}");
        }
    }
}
