//! `bench-harness summary`: the perf suite's `summary.md` — the machine's own limits measured
//! in the same run (fio, iperf3), every result, the ratios broker ÷ disk limit and broker ÷
//! peer, and the targets marked met or missed (by how much).

use std::fmt::Write;
use std::path::{Path, PathBuf};

use crate::error::HarnessError;
use crate::report;
use crate::result::RunResult;
use crate::workload::Ack;

/// Arguments of `bench-harness summary`.
#[derive(clap::Args, Debug)]
pub struct SummaryArgs {
    /// Directory of result JSON files.
    #[arg(long)]
    pub results: PathBuf,
    /// fio's JSON output (`--output-format=json`) of the O_DIRECT sequential write.
    #[arg(long)]
    pub fio: Option<PathBuf>,
    /// iperf3's JSON output (`-J`) of the loopback run.
    #[arg(long)]
    pub iperf: Option<PathBuf>,
    /// File to write (default: <results>/summary.md).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Target: durable produce bandwidth ÷ fio's O_DIRECT write bandwidth.
pub const DURABLE_VS_DISK_TARGET: f64 = 0.70;
/// Target: end-to-end p99 at 100 MB/s durable (µs).
pub const E2E_P99_TARGET_US: f64 = 1000.0;
/// Target: end-to-end p99.9 at 100 MB/s durable (µs).
pub const E2E_P99_9_TARGET_US: f64 = 2000.0;
/// Target: broker msgs/s ÷ NATS JetStream msgs/s on the same workload.
pub const VS_NATS_TARGET: f64 = 10.0;

fn read_json(path: &Path) -> Result<serde_json::Value, HarnessError> {
    let text = std::fs::read_to_string(path).map_err(|e| HarnessError::file(path, e))?;
    serde_json::from_str(&text).map_err(|e| HarnessError::file(path, e))
}

/// fio's write bandwidth in MB/s from its JSON output.
pub fn fio_mb_per_s(v: &serde_json::Value) -> Option<f64> {
    let bytes_per_s: f64 =
        v["jobs"].as_array()?.iter().filter_map(|j| j["write"]["bw_bytes"].as_f64()).sum();
    (bytes_per_s > 0.0).then_some(bytes_per_s / 1e6)
}

/// iperf3's received bandwidth in Gbit/s from its JSON output.
pub fn iperf_gbit_per_s(v: &serde_json::Value) -> Option<f64> {
    v["end"]["sum_received"]["bits_per_second"].as_f64().map(|b| b / 1e9)
}

/// Writes the summary.
pub fn write(args: &SummaryArgs) -> Result<(), HarnessError> {
    let mut results = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&args.results)
        .map_err(|e| HarnessError::file(&args.results, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    entries.sort();
    for p in entries {
        // Other JSON in the directory (fio, iperf) is not a result.
        if let Ok(r) = RunResult::load(&p) {
            results.push(r);
        }
    }
    let fio = args.fio.as_deref().map(read_json).transpose()?.as_ref().and_then(fio_mb_per_s);
    let iperf =
        args.iperf.as_deref().map(read_json).transpose()?.as_ref().and_then(iperf_gbit_per_s);
    let text = render(&results, fio, iperf);
    let out = args.out.clone().unwrap_or_else(|| args.results.join("summary.md"));
    std::fs::write(&out, &text).map_err(|e| HarnessError::file(&out, e))?;
    print!("{text}");
    Ok(())
}

fn verdict(met: bool, by: String) -> String {
    if met {
        format!("**met** ({by})")
    } else {
        format!("**missed** ({by})")
    }
}

/// The summary text.
pub fn render(results: &[RunResult], fio_mb_per_s: Option<f64>, iperf_gbit: Option<f64>) -> String {
    let mut s = String::from("# Performance summary\n\n");
    if let Some(r) = results.first() {
        let e = &r.environment;
        let _ = writeln!(
            s,
            "Commit `{}` · {} · {} cores · {:.1} GiB · kernel {} · {}\n",
            e.git_commit,
            e.cpu_model,
            e.cores,
            e.memory_bytes as f64 / f64::from(1u32 << 30),
            e.kernel,
            e.os
        );
    }
    s.push_str("## Machine limits (measured in the same run)\n\n");
    match fio_mb_per_s {
        Some(v) => {
            let _ = writeln!(
                s,
                "- fio O_DIRECT sequential write (1 MiB, QD 8, io_uring): **{v:.0} MB/s**"
            );
        }
        None => s.push_str("- fio: not measured\n"),
    }
    match iperf_gbit {
        Some(v) => {
            let _ =
                writeln!(s, "- iperf3 loopback TCP: **{v:.1} Gbit/s** ({:.0} MB/s)", v * 1e3 / 8.0);
        }
        None => s.push_str("- iperf3: not measured\n"),
    }
    s.push_str("\n## Results\n\n");
    s.push_str(&report::markdown(results));
    for r in results {
        for n in &r.notes {
            let _ = writeln!(s, "\nNote ({}): {n}", report::label(r));
        }
    }

    // Broker vs peer, per workload.
    s.push_str("\n## Broker ÷ peer and ÷ disk\n\n");
    s.push_str("| workload | broker msg/s | peer | peer msg/s | broker ÷ peer | broker publish MB/s ÷ fio |\n|---|---:|---|---:|---:|---:|\n");
    let brokers: Vec<&RunResult> = results.iter().filter(|r| r.driver == "broker").collect();
    let mut vs_peer = Vec::new();
    for b in &brokers {
        let peers: Vec<&RunResult> = results
            .iter()
            .filter(|r| r.driver != "broker" && r.workload.name == b.workload.name)
            .collect();
        let disk = fio_mb_per_s
            .map_or("–".into(), |f| format!("{:.0} %", b.publish.mb_per_s / f * 100.0));
        if peers.is_empty() {
            let _ = writeln!(
                s,
                "| {} | {:.0} | – | – | – | {disk} |",
                b.workload.name, b.publish.msgs_per_s
            );
        }
        for p in peers {
            let ratio = b.publish.msgs_per_s / p.publish.msgs_per_s.max(1e-9);
            vs_peer.push((b.workload.name.clone(), p.driver.clone(), ratio));
            let _ = writeln!(
                s,
                "| {} | {:.0} | {} | {:.0} | {ratio:.2}× | {disk} |",
                b.workload.name, b.publish.msgs_per_s, p.driver, p.publish.msgs_per_s
            );
        }
    }

    s.push_str(&side_by_side(results));

    s.push_str("\n## Targets\n\n");
    // Durable produce vs the disk.
    let best_durable = brokers
        .iter()
        .filter(|r| r.workload.ack == Ack::Durable)
        .max_by(|a, b| a.publish.mb_per_s.total_cmp(&b.publish.mb_per_s));
    match (best_durable, fio_mb_per_s) {
        (Some(r), Some(f)) => {
            let share = r.publish.mb_per_s / f;
            let _ = writeln!(
                s,
                "- Durable produce ≥ {:.0} % of fio: {:.0} MB/s = {:.0} % of {f:.0} MB/s ({}) — {}",
                DURABLE_VS_DISK_TARGET * 100.0,
                r.publish.mb_per_s,
                share * 100.0,
                r.workload.name,
                verdict(
                    share >= DURABLE_VS_DISK_TARGET,
                    format!("{:+.0} points", (share - DURABLE_VS_DISK_TARGET) * 100.0)
                )
            );
        }
        _ => s.push_str(
            "- Durable produce vs fio: not measured (need a durable broker run and fio)\n",
        ),
    }
    // End-to-end latency at ~100 MB/s durable.
    let at_100 = brokers.iter().find(|r| {
        let offered_mb =
            r.workload.producer_rate_msgs_per_s as f64 * r.workload.message_bytes as f64 / 1e6;
        r.workload.ack == Ack::Durable
            && (90.0..=110.0).contains(&offered_mb)
            && r.end_to_end_latency.is_some()
    });
    match at_100.and_then(|r| r.end_to_end_latency.as_ref().map(|l| (r, l))) {
        Some((r, l)) => {
            let _ = writeln!(
                s,
                "- End-to-end p99 ≤ {:.0} µs at 100 MB/s durable ({}): p99 {:.0} µs — {}",
                E2E_P99_TARGET_US,
                r.workload.name,
                l.p99_us,
                verdict(
                    l.p99_us <= E2E_P99_TARGET_US,
                    format!("{:.1}× the target", l.p99_us / E2E_P99_TARGET_US)
                )
            );
            let _ = writeln!(
                s,
                "- End-to-end p99.9 ≤ {:.0} µs at 100 MB/s durable ({}): p99.9 {:.0} µs — {}",
                E2E_P99_9_TARGET_US,
                r.workload.name,
                l.p99_9_us,
                verdict(
                    l.p99_9_us <= E2E_P99_9_TARGET_US,
                    format!("{:.1}× the target", l.p99_9_us / E2E_P99_9_TARGET_US)
                )
            );
        }
        None => s.push_str("- End-to-end latency at 100 MB/s durable: no such broker run\n"),
    }
    // Messages per second compare only where both ran as fast as they could; at a fixed
    // rate both deliver the offered rate (or one falls behind), and latency is the measure.
    let nats: Vec<&(String, String, f64)> = vs_peer
        .iter()
        .filter(|(w, p, _)| {
            p == "nats"
                && brokers
                    .iter()
                    .any(|b| &b.workload.name == w && b.workload.producer_rate_msgs_per_s == 0)
        })
        .collect();
    if nats.is_empty() {
        s.push_str("- ≥ 10× NATS JetStream msgs/s: no max-rate NATS runs\n");
    }
    for (w, _, ratio) in nats {
        let _ = writeln!(
            s,
            "- ≥ {VS_NATS_TARGET:.0}× NATS JetStream msgs/s ({w}): {ratio:.2}× — {}",
            verdict(
                *ratio >= VS_NATS_TARGET,
                format!("{:.0} % of the target", ratio / VS_NATS_TARGET * 100.0)
            )
        );
    }
    s
}

/// `a ÷ b` as "1.23×", "n/a" when either is missing.
fn times(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 && a.is_finite() => format!("{:.2}×", a / b),
        _ => "n/a".into(),
    }
}

/// A figure with about three significant digits (whole numbers from 100 up), "n/a" when
/// missing.
fn figure(v: Option<f64>) -> String {
    match v {
        None => "n/a".into(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) if v.abs() >= 1.0 => format!("{v:.2}"),
        Some(v) => format!("{v:.3}"),
    }
}

/// The comparison table of the side-by-side mode: per workload that ran on more than one
/// system, each system's throughput, end-to-end latency and server CPU per GB, each ÷ the
/// broker's ("ours") on the same workload.
pub fn side_by_side(results: &[RunResult]) -> String {
    let mut workloads: Vec<&str> = Vec::new();
    for r in results {
        if !workloads.contains(&r.workload.name.as_str()) {
            workloads.push(&r.workload.name);
        }
    }
    type Get = fn(&RunResult) -> Option<f64>;
    let columns: [(&str, Get); 7] = [
        ("publish msg/s", |r| Some(r.publish.msgs_per_s)),
        ("publish MB/s", |r| Some(r.publish.mb_per_s)),
        ("e2e p50 µs", |r| r.end_to_end_latency.as_ref().map(|l| l.p50_us)),
        ("e2e p99 µs", |r| r.end_to_end_latency.as_ref().map(|l| l.p99_us)),
        ("e2e p99.9 µs", |r| r.end_to_end_latency.as_ref().map(|l| l.p99_9_us)),
        ("server CPU-s/GB in", |r| r.cpu.server.as_ref()?.cpu_s_per_gb_produced),
        ("server CPU-s/GB out", |r| r.cpu.server.as_ref()?.cpu_s_per_gb_consumed),
    ];
    let mut s = String::from("\n## Side by side (each ÷ ours)\n\n");
    s.push_str(
        "Same workloads, the systems back to back; `÷ ours` is the system's figure divided by \
         the broker's on the same workload (throughput: > 1 = it did more; latency and CPU-s \
         per GB: > 1 = it needed more). CPU-s per GB: the server process's utime + stime \
         (/proc, all threads) over the measured window ÷ payload GB (10^9 bytes) produced or \
         consumed in it; n/a where the server's pid was unknown.\n\n",
    );
    s.push_str("| workload | system | server CPUs / harness CPUs |");
    for (name, _) in &columns {
        let _ = write!(s, " {name} | ÷ ours |");
    }
    s.push_str("\n|---|---|---|");
    s.push_str(&"---:|---:|".repeat(columns.len()));
    s.push('\n');
    let mut rows = 0;
    for w in workloads {
        let runs: Vec<&RunResult> = results.iter().filter(|r| r.workload.name == w).collect();
        if runs.len() < 2 {
            continue;
        }
        let ours = runs.iter().find(|r| r.driver == "broker").copied();
        for r in runs {
            rows += 1;
            let p = &r.pinning;
            let _ = write!(
                s,
                "| {w} | {} | {} / {} |",
                r.driver,
                p.server_cpus.as_deref().unwrap_or("–"),
                p.client_cpus.as_deref().unwrap_or("–")
            );
            for (_, get) in &columns {
                let _ = write!(s, " {} | {} |", figure(get(r)), times(get(r), ours.and_then(get)));
            }
            s.push('\n');
        }
    }
    if rows == 0 {
        return "\n## Side by side (each ÷ ours)\n\nNo workload ran on more than one system.\n"
            .into();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fio_and_iperf() {
        let fio = serde_json::json!({"jobs": [{"write": {"bw_bytes": 1_000_000_000u64}}]});
        assert_eq!(fio_mb_per_s(&fio), Some(1000.0));
        let iperf = serde_json::json!({"end": {"sum_received": {"bits_per_second": 4.0e10}}});
        assert_eq!(iperf_gbit_per_s(&iperf), Some(40.0));
        assert_eq!(fio_mb_per_s(&serde_json::json!({})), None);
        let text = render(&[], Some(1000.0), None);
        assert!(text.contains("1000 MB/s") && text.contains("iperf3: not measured"));
    }

    #[test]
    fn side_by_side_divides_by_ours_and_says_na() {
        use crate::result::{ProcessCpu, Throughput};
        // A result written before pinning and CPU figures existed still loads.
        let json = include_str!("../tests/data/result-v1.json");
        let mut ours: RunResult = serde_json::from_str(json).unwrap();
        assert!(ours.cpu.server.is_none() && ours.pinning.server_cpus.is_none());
        assert!(crate::report::cpu_text(&ours).contains("n/a CPU-s/GB produced"));
        ours.driver = "broker".into();
        ours.publish = Throughput::new(1000, 1_000_000_000, 1.0);
        ours.cpu.server = Some(ProcessCpu {
            cpu_s_per_gb_produced: Some(2.0),
            cpu_s_per_gb_consumed: Some(2.0),
            ..ProcessCpu::default()
        });
        ours.pinning.server_cpus = Some("1".into());
        let mut peer = ours.clone();
        peer.driver = "nats".into();
        peer.publish = Throughput::new(500, 500_000_000, 1.0);
        peer.cpu.server.as_mut().unwrap().cpu_s_per_gb_produced = Some(5.0);
        peer.cpu.server.as_mut().unwrap().cpu_s_per_gb_consumed = None;
        let text = side_by_side(&[ours.clone(), peer]);
        let nats = text.lines().find(|l| l.contains("| nats |")).unwrap();
        assert!(nats.contains("| 500 | 0.50× |"), "{nats}");
        assert!(nats.contains("| 5.00 | 2.50× |"), "{nats}");
        assert!(nats.contains("| n/a | n/a |"), "{nats}");
        assert!(nats.contains("| 1 / – |"), "{nats}");
        let broker = text.lines().find(|l| l.contains("| broker |")).unwrap();
        assert!(broker.contains("| 1000 | 1.00× |"), "{broker}");
        assert!(side_by_side(&[ours]).contains("No workload ran on more than one system"));
    }

    /// A suite's table with two workloads, each run by two systems: each peer's ratio row is
    /// against the broker's run of the same workload, and a first run gets none.
    #[test]
    fn ratio_rows_compare_runs_of_the_same_workload() {
        let json = include_str!("../tests/data/result-v1.json");
        let base: RunResult = serde_json::from_str(json).unwrap();
        let run = |driver: &str, workload: &str| {
            let mut r = base.clone();
            r.driver = driver.into();
            r.workload.name = workload.into();
            r
        };
        let results =
            [run("broker", "w1"), run("nats", "w1"), run("broker", "w2"), run("nats", "w2")];
        let md = crate::report::markdown(&results);
        let vs: Vec<&str> = md.lines().filter(|l| l.starts_with("| ↳ vs")).collect();
        assert_eq!(vs.len(), 2, "{md}");
        assert!(vs[0].starts_with("| ↳ vs broker · w1 "), "{md}");
        assert!(vs[1].starts_with("| ↳ vs broker · w2 "), "{md}");
        // Different workloads, none repeated: compared with the first, as before.
        let md = crate::report::markdown(&[run("broker", "a"), run("broker", "b")]);
        assert!(md.contains("| ↳ vs broker · a "), "{md}");
    }
}
