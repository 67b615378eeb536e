//! The result of one run, as written to `<out>/<workload>-<driver>.json`.

use std::path::Path;

use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::environment::Environment;
use crate::error::HarnessError;
use crate::workload::Workload;

/// Bumped when the JSON layout changes incompatibly.
pub const RESULT_FORMAT_VERSION: u32 = 1;

/// See the module docs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    /// [`RESULT_FORMAT_VERSION`].
    pub format_version: u32,
    /// Driver name ("broker", "nats", "iggy").
    pub driver: String,
    /// The server's version as it reported it.
    pub server_version: String,
    /// The workload as run (after command-line overrides).
    pub workload: Workload,
    /// Where it ran.
    pub environment: Environment,
    /// Wall-clock start (ms since the Unix epoch).
    pub started_unix_ms: u64,
    /// Publishing in the measured window (messages whose intended send time falls in it,
    /// acknowledged).
    pub publish: Throughput,
    /// Consuming in the measured window (messages received in it). For backlog workloads,
    /// the catch-up read.
    pub consume: Throughput,
    /// Backlog workloads: the catch-up read of everything written in the fill phase.
    pub catch_up: Option<Throughput>,
    /// Send (intended time) → ack, in the measured window.
    pub publish_latency: Latency,
    /// Send (intended time) → consumer receipt, in the measured window. `None` when nothing
    /// was consumed live (publish-only or backlog workloads).
    pub end_to_end_latency: Option<Latency>,
    /// Counts over the whole run (warm-up and drain included).
    pub totals: Totals,
    /// Rates per second of the run.
    pub timeline: Vec<TimelinePoint>,
    /// Caveats the reader must know (e.g. a peer ran with weaker durability).
    #[serde(default)]
    pub notes: Vec<String>,
    /// Where the server and the harness ran (`--server-cpus`, `--client-cpus`).
    #[serde(default)]
    pub pinning: Pinning,
    /// CPU time of the server and the harness in the measured window.
    #[serde(default)]
    pub cpu: CpuUsage,
    /// The server's own per-stage latency in the measured window (this broker only: its
    /// `stage_latency` histograms, reset when the window starts), per shard.
    #[serde(default)]
    pub server_stages: Vec<StageRow>,
    /// The harness's producers' own per-stage latency in the measured window (this broker's
    /// client only: `client::ProducerStages`, every producer merged, `shard` 0): linger,
    /// send queue, in flight, completion, batch.
    #[serde(default)]
    pub client_stages: Vec<StageRow>,
    /// The harness's floor: a plain loopback echo measured with the same runtime and
    /// pinning just before the run (`echo.rs`).
    #[serde(default)]
    pub echo_floor: Option<crate::echo::EchoFloor>,
}

/// One stage of request handling on one server shard (microseconds).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StageRow {
    /// Shard id (0 for client stages).
    pub shard: u32,
    /// Stage name.
    pub stage: String,
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest.
    pub max_us: u64,
}

impl StageRow {
    /// The row of `stage` (shard 0) from a histogram whose values are `unit_ns` nanoseconds.
    pub fn from_histogram(stage: &str, h: &hdrhistogram::Histogram<u64>, unit_ns: u64) -> Self {
        let us = |v: u64| v * unit_ns / 1_000;
        StageRow {
            shard: 0,
            stage: stage.into(),
            count: h.len(),
            p50_us: us(h.value_at_quantile(0.5)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
        }
    }
}

/// CPU placement of a run, as asked and as found.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Pinning {
    /// `--server-cpus` (taskset list), `None` when the server was not pinned.
    pub server_cpus: Option<String>,
    /// `--client-cpus`: the harness's threads, `None` when not pinned.
    pub client_cpus: Option<String>,
    /// The server's process (spawned, or `--server-pid`); `None` when unknown.
    pub server_pid: Option<u32>,
    /// The CPUs the server's threads were allowed at the end of the window, e.g.
    /// `"1 (9 threads)"` (`/proc/PID/task/*/status`).
    pub server_threads: Option<String>,
    /// The same for the harness's threads.
    pub harness_threads: Option<String>,
}

/// CPU time of the processes of a run in the measured window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CpuUsage {
    /// The server; `None` when its pid was unknown or unreadable (reported "n/a").
    pub server: Option<ProcessCpu>,
    /// The harness itself (producers, consumers, the client or SDK).
    pub harness: Option<ProcessCpu>,
}

/// One process's CPU time (`/proc/PID/stat` utime + stime, all threads) in the measured
/// window, and per GB of payload (GB = 10^9 bytes).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProcessCpu {
    /// Its pid.
    pub pid: u32,
    /// User-mode CPU seconds in the window (a backlog workload: the fill).
    pub user_s: f64,
    /// Kernel-mode CPU seconds in the window.
    pub system_s: f64,
    /// `user_s + system_s`.
    pub cpu_s: f64,
    /// Wall seconds between the two samples.
    pub window_s: f64,
    /// `cpu_s / window_s`: cores kept busy on average.
    pub cores_busy: f64,
    /// Backlog workloads: CPU seconds of the catch-up read.
    pub catch_up_cpu_s: Option<f64>,
    /// `cpu_s` ÷ GB published in the window; `None` when nothing was published.
    pub cpu_s_per_gb_produced: Option<f64>,
    /// CPU seconds ÷ GB consumed in the window (a backlog workload: the catch-up read's
    /// CPU over its bytes); `None` when nothing was consumed.
    pub cpu_s_per_gb_consumed: Option<f64>,
    /// Resident memory at the end of the window (`VmRSS`), bytes.
    pub rss_bytes: Option<u64>,
    /// Peak resident memory so far (`VmHWM`), bytes.
    pub rss_peak_bytes: Option<u64>,
}

/// CPU seconds per GB (10^9 bytes) of `bytes`; `None` for no bytes.
pub fn cpu_s_per_gb(cpu_s: f64, bytes: u64) -> Option<f64> {
    (bytes > 0).then(|| cpu_s / (bytes as f64 / 1e9))
}

/// Messages and bytes over a span of time.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Throughput {
    /// Messages.
    pub messages: u64,
    /// Payload bytes.
    pub bytes: u64,
    /// Length of the span.
    pub seconds: f64,
    /// `messages / seconds`.
    pub msgs_per_s: f64,
    /// `bytes / seconds / 1e6`.
    pub mb_per_s: f64,
}

impl Throughput {
    /// Rates from counts.
    pub fn new(messages: u64, bytes: u64, seconds: f64) -> Throughput {
        let s = seconds.max(1e-9);
        Throughput {
            messages,
            bytes,
            seconds,
            msgs_per_s: messages as f64 / s,
            mb_per_s: bytes as f64 / s / 1e6,
        }
    }
}

/// Whole-run counts; a clean run has `acked == consumed` (when consumers run) and no errors.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Totals {
    /// Messages handed to the producers.
    pub sent: u64,
    /// Messages acknowledged.
    pub acked: u64,
    /// Sends or acks that failed.
    pub publish_errors: u64,
    /// Consumers that failed (subscribe or receive).
    #[serde(default)]
    pub consume_errors: u64,
    /// Paced sends whose intended time fell in the run but that were never made (the system
    /// was too far behind when the run stopped).
    #[serde(default)]
    pub missed: u64,
    /// Latencies above the histograms' 1 h bound (recorded as 1 h).
    #[serde(default)]
    pub clamped: u64,
    /// Messages received by consumers.
    pub consumed: u64,
    /// Messages consumers received more than once (by the identity in the payload).
    #[serde(default)]
    pub duplicates: u64,
    /// Messages sent that no consumer received (by identity; 0 without consumers).
    #[serde(default)]
    pub gaps: u64,
    /// Messages received whose identity no producer of the run issued.
    #[serde(default)]
    pub foreign: u64,
    /// The first error seen, if any.
    pub first_error: Option<String>,
}

/// One second of the run.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct TimelinePoint {
    /// Seconds since producers started (end of the sample).
    pub t_s: f64,
    /// Acks per second.
    pub publish_msgs_per_s: f64,
    /// Acked MB per second.
    pub publish_mb_per_s: f64,
    /// Messages received per second.
    pub consume_msgs_per_s: f64,
    /// MB received per second.
    pub consume_mb_per_s: f64,
    /// Largest publish latency acknowledged in this second (µs).
    #[serde(default)]
    pub publish_latency_max_us: f64,
    /// Largest end-to-end latency received in this second (µs).
    #[serde(default)]
    pub end_to_end_latency_max_us: f64,
}

/// A latency distribution in microseconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Smallest.
    pub min_us: f64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p99_9_us: f64,
    /// 99.99th percentile.
    pub p99_99_us: f64,
    /// Largest.
    pub max_us: f64,
    /// `(percentile, µs)` points for plotting, from 0 to 100 on a log-of-nines scale.
    pub percentiles: Vec<(f64, f64)>,
    /// The histogram (ns values) in HdrHistogram's V2 deflate encoding, base64.
    pub hdr_histogram: String,
}

/// Percentiles reported in the plot series.
const PLOT_PERCENTILES: &[f64] = &[
    0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.995, 99.999, 100.0,
];

impl Latency {
    /// Summarizes a histogram of nanoseconds.
    pub fn from_histogram(h: &Histogram<u64>) -> Latency {
        let us = |ns: u64| ns as f64 / 1000.0;
        let q = |p: f64| us(h.value_at_quantile(p / 100.0));
        let mut blob = Vec::new();
        V2DeflateSerializer::new().serialize(h, &mut blob).expect("serialize to a Vec");
        Latency {
            count: h.len(),
            min_us: if h.is_empty() { 0.0 } else { us(h.min()) },
            mean_us: h.mean() / 1000.0,
            p50_us: q(50.0),
            p90_us: q(90.0),
            p99_us: q(99.0),
            p99_9_us: q(99.9),
            p99_99_us: q(99.99),
            max_us: if h.is_empty() { 0.0 } else { us(h.max()) },
            percentiles: PLOT_PERCENTILES.iter().map(|&p| (p, q(p))).collect(),
            hdr_histogram: base64::engine::general_purpose::STANDARD.encode(blob),
        }
    }

    /// The histogram back from [`Latency::hdr_histogram`].
    pub fn histogram(&self) -> Result<Histogram<u64>, String> {
        let blob = base64::engine::general_purpose::STANDARD
            .decode(&self.hdr_histogram)
            .map_err(|e| e.to_string())?;
        Deserializer::new().deserialize(&mut blob.as_slice()).map_err(|e| format!("{e:?}"))
    }

    /// The named percentiles in order, for checks and tables.
    pub fn ladder(&self) -> [(&'static str, f64); 7] {
        [
            ("p50", self.p50_us),
            ("p90", self.p90_us),
            ("p99", self.p99_us),
            ("p99.9", self.p99_9_us),
            ("p99.99", self.p99_99_us),
            ("max", self.max_us),
            ("mean", self.mean_us),
        ]
    }
}

impl RunResult {
    /// Writes the JSON file.
    pub fn save(&self, path: &Path) -> Result<(), HarnessError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| HarnessError::file(path, e))?;
        std::fs::write(path, text).map_err(|e| HarnessError::file(path, e))
    }

    /// Reads a JSON file.
    pub fn load(path: &Path) -> Result<RunResult, HarnessError> {
        let text = std::fs::read_to_string(path).map_err(|e| HarnessError::file(path, e))?;
        let r: RunResult = serde_json::from_str(&text).map_err(|e| HarnessError::file(path, e))?;
        if r.format_version != RESULT_FORMAT_VERSION {
            return Err(HarnessError::file(
                path,
                format!(
                    "result format {} (this harness reads {RESULT_FORMAT_VERSION})",
                    r.format_version
                ),
            ));
        }
        Ok(r)
    }

    /// Checks the numbers add up: nothing lost or failed, percentiles non-decreasing.
    pub fn check_consistent(&self) -> Result<(), HarnessError> {
        let t = &self.totals;
        let fail = |m: String| Err(HarnessError::Inconsistent(m));
        if t.publish_errors > 0 {
            return fail(format!(
                "{} publish errors (first: {})",
                t.publish_errors,
                t.first_error.as_deref().unwrap_or("?")
            ));
        }
        if t.consume_errors > 0 {
            return fail(format!(
                "{} consumer errors (first: {})",
                t.consume_errors,
                t.first_error.as_deref().unwrap_or("?")
            ));
        }
        if t.missed > 0 {
            return fail(format!(
                "{} paced sends never made: the system fell behind its schedule by more than \
                 the grace period",
                t.missed
            ));
        }
        if t.clamped > 0 {
            return fail(format!("{} latencies above the histogram bound (1 h)", t.clamped));
        }
        if t.acked != t.sent {
            return fail(format!("{} sent but {} acked", t.sent, t.acked));
        }
        if self.workload.consumers_per_topic > 0 && t.consumed != t.acked {
            return fail(format!("{} acked but {} consumed", t.acked, t.consumed));
        }
        if t.duplicates > 0 || t.gaps > 0 || t.foreign > 0 {
            return fail(format!(
                "by identity: {} received twice, {} sent and never received, {} foreign",
                t.duplicates, t.gaps, t.foreign
            ));
        }
        let mut lats = vec![("publish", &self.publish_latency)];
        if let Some(e2e) = &self.end_to_end_latency {
            lats.push(("end-to-end", e2e));
        }
        for (name, l) in lats {
            let ladder = l.ladder();
            for w in ladder[..6].windows(2) {
                if w[1].1 < w[0].1 {
                    return fail(format!(
                        "{name} latency {} ({}) below {} ({})",
                        w[1].0, w[1].1, w[0].0, w[0].1
                    ));
                }
            }
            if l.min_us > l.p50_us {
                return fail(format!("{name} latency min above p50"));
            }
        }
        Ok(())
    }
}
