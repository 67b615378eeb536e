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
//! and any lateness counts in their latency), and every latency counts from that intended
//! time (so a stalled server is not hidden by a stalled producer: coordinated omission is
//! corrected). Acks complete in a task on the runtime that records publish latency when each
//! arrives. Consumers read the intended time stamped in the payload and record end-to-end
//! latency on receipt.
//!
//! Layout: this module runs the phases in order and assembles the result; `counters` holds
//! what producers, ack collectors, consumers and the sampler ([`crate::progress`]) share,
//! and the measured window; `producer` the paced producer threads and their ack collectors;
//! `consumer` the consumers and the drain; `cpu` the server's and the harness's CPU time
//! over the measured window.

mod consumer;
pub(crate) mod counters;
mod cpu;
mod producer;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::sync::watch;

use self::consumer::{join_consumers, start_consumers, wait_consumed, ConsumerTask};
use self::counters::RunCounters;
use self::cpu::{CpuFigures, CpuMeter};
use self::producer::{connect_producers, join_producers, start_producers, ProducerRuntime};
use crate::driver::Driver;
use crate::environment::Environment;
use crate::error::HarnessError;
use crate::progress::Progress;
use crate::result::{
    cpu_s_per_gb, CpuUsage, Latency, Pinning, ProcessCpu, RunResult, Throughput, TimelinePoint,
    Totals, RESULT_FORMAT_VERSION,
};
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
    /// The server's process, whose CPU time is measured (`None`: reported "n/a").
    pub server_pid: Option<u32>,
    /// The pinning the caller applied, recorded in the result.
    pub pinning: Pinning,
    /// Round trips of the loopback echo floor measured before the run (0: none), and the
    /// CPUs its echo thread is pinned to (the server's).
    pub echo_round_trips: u64,
    /// See `echo_round_trips`.
    pub echo_cpus: Option<crate::affinity::CpuList>,
    /// A paced producer sleeps until this long (at most a quarter of its send interval)
    /// before a send is due and polls (yielding its CPU to any other runnable thread) for
    /// the rest, so a thread wake-up's latency (tens of µs on a VM) is not charged to the
    /// system under test (0: sleep to the time).
    pub send_spin_us: u64,
    /// The scheduler slice the paced producers and the producers' runtime worker ask for
    /// (µs; 0: the kernel's default; `crate::sched_slice`).
    pub sched_slice_us: u64,
}

/// [`RunOptions::send_spin_us`]'s default: above the ~80 µs send lag measured on this
/// project's VM with sleeps alone (perf/results/2026-12-04-tail).
pub const SEND_SPIN_US_DEFAULT: u64 = 200;

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            progress: true,
            drain_timeout: Duration::from_secs(60),
            catch_up_timeout: Duration::from_secs(1800),
            keep_topics: false,
            server_pid: None,
            pinning: Pinning::default(),
            echo_round_trips: 2000,
            echo_cpus: None,
            send_spin_us: SEND_SPIN_US_DEFAULT,
            sched_slice_us: crate::sched_slice::SLICE_US_DEFAULT,
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
    let counters = Arc::new(RunCounters::new(workload.backlog_bytes, !backlog, producer_count));

    let echo_floor = match options.echo_round_trips {
        0 => None,
        n => match crate::echo::measure(n, options.echo_cpus.as_ref()).await {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!("warning: loopback echo floor not measured: {e}");
                None
            }
        },
    };
    let topics: Vec<String> =
        (0..workload.topics).map(|i| format!("bench-{started_unix_ms}-{i}")).collect();
    for t in &topics {
        driver.create_topic(t, workload.partitions_per_topic).await?;
    }
    let result = run_on_topics(&driver, workload, options, &counters, &topics).await;
    if !options.keep_topics {
        for t in &topics {
            if let Err(e) = driver.delete_topic(t).await {
                eprintln!("warning: could not delete topic {t}: {e}");
            }
        }
    }
    let phases = result?;
    let mut result = assemble(&*driver, workload, options, started_unix_ms, &counters, phases);
    result.echo_floor = echo_floor;
    Ok(result)
}

/// What the phases measured, besides the counters.
struct Phases {
    publish_latency: Histogram<u64>,
    /// `None` without consumers, and for backlog workloads.
    end_to_end_latency: Option<Histogram<u64>>,
    consume: Throughput,
    /// Backlog workloads with consumers: the catch-up read.
    catch_up: Option<Throughput>,
    timeline: Vec<TimelinePoint>,
    /// Length of the measured publishing (the window; a backlog fill's duration).
    publish_seconds: f64,
    /// CPU time of the server and the harness.
    cpu: CpuFigures,
    /// The server's per-stage latency over the measured window.
    server_stages: Vec<crate::result::StageRow>,
    /// The client's (the harness's producers') over the same window.
    client_stages: Vec<crate::result::StageRow>,
}

/// The phases between creating the topics and deleting them.
async fn run_on_topics<D: Driver>(
    driver: &Arc<D>,
    workload: &Workload,
    options: &RunOptions,
    counters: &Arc<RunCounters>,
    topics: &[String],
) -> Result<Phases, HarnessError> {
    let backlog = workload.backlog_bytes > 0;
    let (stop_consumers, stop_rx) = watch::channel(false);
    let mut consumers = Vec::new();
    if !backlog {
        consumers = start_consumers(driver, workload, counters, topics, &stop_rx).await?;
    }

    let producer_runtime = ProducerRuntime::new(options.sched_slice_us)?;
    let producers = connect_producers(driver, workload, topics, &producer_runtime.handle()).await?;
    let start_ns = schedule(workload, counters, producers.len());
    let meter = CpuMeter::new(options.server_pid);
    let cpu_window = meter.window(counters, !backlog);
    let planned_s = if backlog { None } else { Some(workload.warmup_s + workload.duration_s) };
    let progress = Progress::start(Arc::clone(counters), start_ns, planned_s, options.progress);
    let running = start_producers(
        producers,
        workload,
        counters,
        start_ns,
        options.send_spin_us * 1000,
        options.sched_slice_us,
        &producer_runtime.handle(),
    );
    // The server's stage histograms start afresh with the measured window.
    let stages_reset = {
        let (driver, warmup) = (Arc::clone(driver), workload.warmup_s);
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs_f64(warmup)).await;
            driver.stage_latency(true).await;
            driver.client_stage_latency(true);
        })
    };
    let publish_latency = join_producers(running).await;
    let _ = stages_reset.await;
    let server_stages = driver.stage_latency(false).await;
    let mut client_stages = driver.client_stage_latency(false);
    let publish_seconds = end_publishing(workload, counters);
    // Joined before `?`: the sampler thread returns at once once the run is stopped.
    let mut cpu = tokio::task::spawn_blocking(move || cpu_window.finish())
        .await
        .expect("CPU sampler join task");
    let (publish_latency, send_lag) = publish_latency?;
    if !send_lag.is_empty() {
        // The harness's own share: how late its producer threads made their sends.
        client_stages.push(crate::result::StageRow::from_histogram(
            "harness_send_lag",
            &send_lag,
            1,
        ));
    }

    let mut catch_up = None;
    if backlog && workload.consumers_per_topic > 0 {
        let before = meter.now(&mut cpu);
        let (started, read) =
            catch_up_read(driver, workload, counters, topics, &stop_rx, options.catch_up_timeout)
                .await?;
        meter.catch_up(&before, &mut cpu);
        consumers = started;
        catch_up = Some(read);
    } else if workload.consumers_per_topic > 0 {
        wait_consumed(counters, options.drain_timeout).await;
    }
    let _ = stop_consumers.send(true);
    let mut end_to_end_latency = join_consumers(consumers, counters).await;
    let timeline = progress.finish().await;

    let consume = match catch_up {
        Some(c) => c,
        None => Throughput::new(
            counters.measured_consumed.load(Relaxed),
            counters.measured_consumed_bytes.load(Relaxed),
            workload.duration_s,
        ),
    };
    if backlog {
        end_to_end_latency = None;
    }
    Ok(Phases {
        publish_latency,
        end_to_end_latency,
        consume,
        catch_up,
        timeline,
        publish_seconds,
        cpu,
        server_stages,
        client_stages,
    })
}

/// Sets the clock once everything is connected: returns when producers start (ns since the
/// counters' epoch), with room for `producers` threads to start (a late start would make the
/// first intended sends late). The measured window opens after the warm-up; live workloads
/// also close it, and stop the producers, `duration_s` later.
fn schedule(workload: &Workload, counters: &RunCounters, producers: usize) -> u64 {
    let backlog = workload.backlog_bytes > 0;
    let start_ns = counters.now_ns() + 20_000_000 + 1_000_000 * producers as u64;
    let warmup_ns = (workload.warmup_s * 1e9) as u64;
    let measured_ns = (workload.duration_s * 1e9) as u64;
    counters.window_start_ns.store(start_ns + warmup_ns, Relaxed);
    if !backlog {
        counters.window_end_ns.store(start_ns + warmup_ns + measured_ns, Relaxed);
        counters.stop_ns.store(start_ns + warmup_ns + measured_ns, Relaxed);
    }
    start_ns
}

/// Once every ack arrived: how long the measured publishing lasted (s). A backlog fill's
/// window closes now.
fn end_publishing(workload: &Workload, counters: &RunCounters) -> f64 {
    let publish_end_ns = counters.now_ns();
    let window_start = counters.window_start_ns.load(Relaxed);
    if workload.backlog_bytes > 0 {
        counters.window_end_ns.store(publish_end_ns, Relaxed);
        publish_end_ns.saturating_sub(window_start) as f64 / 1e9
    } else {
        workload.duration_s
    }
}

/// Backlog workloads: opens a new window, starts the consumers and times their read of
/// everything acknowledged (or until `timeout`).
async fn catch_up_read<D: Driver>(
    driver: &Arc<D>,
    workload: &Workload,
    counters: &Arc<RunCounters>,
    topics: &[String],
    stop: &watch::Receiver<bool>,
    timeout: Duration,
) -> Result<(Vec<ConsumerTask>, Throughput), HarnessError> {
    let t0 = counters.now_ns();
    counters.window_start_ns.store(t0, Relaxed);
    counters.window_end_ns.store(u64::MAX, Relaxed);
    let consumers = start_consumers(driver, workload, counters, topics, stop).await?;
    wait_consumed(counters, timeout).await;
    let seconds = (counters.now_ns() - t0) as f64 / 1e9;
    let read = Throughput::new(
        counters.consumed.load(Relaxed),
        counters.consumed_bytes.load(Relaxed),
        seconds,
    );
    Ok((consumers, read))
}

/// The result of a run whose phases completed.
fn assemble<D: Driver>(
    driver: &D,
    workload: &Workload,
    options: &RunOptions,
    started_unix_ms: u64,
    counters: &RunCounters,
    phases: Phases,
) -> RunResult {
    let Phases {
        publish_latency,
        end_to_end_latency,
        consume,
        catch_up,
        timeline,
        publish_seconds,
        cpu,
        server_stages,
        client_stages,
    } = phases;
    let first_error = counters.first_error.lock().expect("not poisoned").clone();
    let publish = Throughput::new(
        counters.measured_published.load(Relaxed),
        counters.measured_published_bytes.load(Relaxed),
        publish_seconds,
    );
    let [server, harness] = cpu.processes.clone();
    let figures = |m: Option<self::cpu::Measured>| {
        m.map(|m| {
            let cpu_s = m.window.cpu_s();
            let consume_cpu_s = m.catch_up.map_or(cpu_s, |c| c.cpu_s());
            ProcessCpu {
                pid: m.pid,
                user_s: m.window.user_s,
                system_s: m.window.system_s,
                cpu_s,
                window_s: m.window.wall_s,
                cores_busy: cpu_s / m.window.wall_s.max(1e-9),
                catch_up_cpu_s: m.catch_up.map(|c| c.cpu_s()),
                cpu_s_per_gb_produced: cpu_s_per_gb(cpu_s, publish.bytes),
                cpu_s_per_gb_consumed: cpu_s_per_gb(consume_cpu_s, consume.bytes),
                rss_bytes: m.status.as_ref().and_then(|s| s.rss_bytes),
                rss_peak_bytes: m.status.as_ref().and_then(|s| s.rss_peak_bytes),
            }
        })
    };
    let mut pinning = options.pinning.clone();
    pinning.server_pid = options.server_pid;
    pinning.server_threads = server.as_ref().and_then(|m| m.placement.clone());
    pinning.harness_threads = harness.as_ref().and_then(|m| m.placement.clone());
    let mut notes = cpu.problems.clone();
    if options.server_pid.is_none() {
        notes.push(
            "server CPU time not measured: its pid is unknown (pass --server-pid, or --spawn)"
                .into(),
        );
    }
    RunResult {
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
        end_to_end_latency: end_to_end_latency
            .filter(|h| !h.is_empty())
            .map(|h| Latency::from_histogram(&h)),
        totals: Totals {
            sent: counters.sent.load(Relaxed),
            acked: counters.acked.load(Relaxed),
            publish_errors: counters.errors.load(Relaxed),
            consume_errors: counters.consume_errors.load(Relaxed),
            missed: counters.missed.load(Relaxed),
            clamped: counters.clamped.load(Relaxed),
            consumed: counters.consumed.load(Relaxed),
            duplicates: counters.duplicates.load(Relaxed),
            gaps: if workload.consumers_per_topic > 0 { counters.ledger.gaps() } else { 0 },
            foreign: counters.foreign.load(Relaxed),
            first_error,
        },
        timeline,
        notes,
        pinning,
        cpu: CpuUsage { server: figures(server), harness: figures(harness) },
        server_stages,
        client_stages,
        echo_floor: None,
    }
}
