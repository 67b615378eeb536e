//! Reports: a self-contained HTML page (tables and inline SVG plots) for one result or several
//! side by side, and a Markdown table with ratios against the first result.

use std::fmt::Write;

use crate::result::{Latency, ProcessCpu, RunResult};
use crate::svg::{self, escape, Axes, Scale, Series};

/// The label of a result in tables and legends.
pub fn label(r: &RunResult) -> String {
    format!("{} · {}", r.driver, r.workload.name)
}

/// Ratio text `a / b` (e.g. "1.52×"), or "–" when undefined.
fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a.is_finite() {
        format!("{:.2}×", a / b)
    } else {
        "–".into()
    }
}

fn lat(l: Option<&Latency>, f: impl Fn(&Latency) -> f64) -> Option<f64> {
    l.map(f)
}

/// Columns of the summary table: name, value getter, higher-is-better.
type Column = (&'static str, fn(&RunResult) -> Option<f64>, bool);

/// Columns whose missing value means "not measured" ("n/a") rather than "not applicable".
const MEASURED_COLUMNS: &[&str] = &["server CPU-s/GB in", "server CPU-s/GB out"];

const COLUMNS: &[Column] = &[
    ("publish msg/s", |r| Some(r.publish.msgs_per_s), true),
    ("publish MB/s", |r| Some(r.publish.mb_per_s), true),
    ("consume msg/s", |r| Some(r.consume.msgs_per_s), true),
    ("consume MB/s", |r| Some(r.consume.mb_per_s), true),
    ("catch-up MB/s", |r| r.catch_up.map(|c| c.mb_per_s), true),
    ("pub p50 µs", |r| Some(r.publish_latency.p50_us), false),
    ("pub p99 µs", |r| Some(r.publish_latency.p99_us), false),
    ("pub p99.9 µs", |r| Some(r.publish_latency.p99_9_us), false),
    ("pub max µs", |r| Some(r.publish_latency.max_us), false),
    ("e2e p50 µs", |r| lat(r.end_to_end_latency.as_ref(), |l| l.p50_us), false),
    ("e2e p99 µs", |r| lat(r.end_to_end_latency.as_ref(), |l| l.p99_us), false),
    ("e2e p99.9 µs", |r| lat(r.end_to_end_latency.as_ref(), |l| l.p99_9_us), false),
    ("e2e p99.99 µs", |r| lat(r.end_to_end_latency.as_ref(), |l| l.p99_99_us), false),
    ("e2e max µs", |r| lat(r.end_to_end_latency.as_ref(), |l| l.max_us), false),
    ("server CPU-s/GB in", |r| r.cpu.server.as_ref()?.cpu_s_per_gb_produced, false),
    ("server CPU-s/GB out", |r| r.cpu.server.as_ref()?.cpu_s_per_gb_consumed, false),
];

fn cell(v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) if v >= 1.0 => format!("{v:.1}"),
        // CPU-s per GB is often below 1: keep two significant digits.
        Some(v) if v > 0.0 => format!("{v:.2}"),
        Some(v) => format!("{v:.1}"),
        None => "–".into(),
    }
}

/// A CPU-s/GB figure, "n/a" when it was not measured.
fn per_gb(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.3}"))
}

fn process_line(role: &str, cpus: Option<&str>, threads: Option<&str>, p: &ProcessCpu) -> String {
    let mut s = format!(
        "{role} pid {} ({}; threads on {}): {:.2} CPU-s in {:.1} s ({:.2} cores: {:.2} user + {:.2} system)",
        p.pid,
        cpus.map_or_else(|| "not pinned".into(), |c| format!("pinned to {c}")),
        threads.unwrap_or("?"),
        p.cpu_s,
        p.window_s,
        p.cores_busy,
        p.user_s,
        p.system_s,
    );
    if let Some(c) = p.catch_up_cpu_s {
        let _ = write!(s, ", catch-up {c:.2} CPU-s");
    }
    let _ = write!(
        s,
        "; {} CPU-s/GB produced, {} CPU-s/GB consumed",
        per_gb(p.cpu_s_per_gb_produced),
        per_gb(p.cpu_s_per_gb_consumed)
    );
    if let (Some(rss), Some(peak)) = (p.rss_bytes, p.rss_peak_bytes) {
        let _ = write!(
            s,
            "; RSS {:.0} MiB (peak {:.0} MiB)",
            rss as f64 / 1048576.0,
            peak as f64 / 1048576.0
        );
    }
    s
}

/// CPU time of the server and the harness in the measured window, one line each (GB =
/// 10^9 payload bytes); "n/a" where a process could not be measured.
pub fn cpu_text(r: &RunResult) -> String {
    let p = &r.pinning;
    let server = match &r.cpu.server {
        Some(c) => process_line("server", p.server_cpus.as_deref(), p.server_threads.as_deref(), c),
        None => format!(
            "server{}: CPU n/a (pid unknown or unreadable); n/a CPU-s/GB produced, n/a CPU-s/GB consumed",
            p.server_cpus.as_deref().map_or_else(String::new, |c| format!(" (pinned to {c})"))
        ),
    };
    let harness = match &r.cpu.harness {
        Some(c) => {
            process_line("harness", p.client_cpus.as_deref(), p.harness_threads.as_deref(), c)
        }
        None => "harness: CPU n/a".into(),
    };
    let mut out = format!("{server}\n{harness}\n");
    if let Some(e) = &r.echo_floor {
        let _ = writeln!(
            out,
            "loopback echo floor (same runtime and pinning, {} round trips): p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs",
            e.count, e.p50_us, e.p99_us, e.p999_us, e.max_us
        );
    }
    if !r.server_stages.is_empty() {
        out.push_str("server stages (µs, measured window): shard stage count p50 p99 p99.9 max\n");
        for s in &r.server_stages {
            let _ = writeln!(
                out,
                "  {} {} {} {} {} {} {}",
                s.shard, s.stage, s.count, s.p50_us, s.p99_us, s.p999_us, s.max_us
            );
        }
    }
    if !r.client_stages.is_empty() {
        out.push_str(
            "client stages (µs per batch, measured window): stage count p50 p99 p99.9 max\n",
        );
        for s in &r.client_stages {
            let _ = writeln!(
                out,
                "  {} {} {} {} {} {}",
                s.stage, s.count, s.p50_us, s.p99_us, s.p999_us, s.max_us
            );
        }
    }
    out
}

/// A Markdown table of the results; with more than one, a ratio row per result against its
/// baseline (for rates: this ÷ baseline; for latencies: baseline ÷ this, so > 1 always means
/// better). The baseline is the first result of the same workload (a suite's table holds
/// several workloads, each run by several systems); when no workload repeats (a comparison
/// of different workloads) it is the first result.
pub fn markdown(results: &[RunResult]) -> String {
    let workload_repeats = results
        .iter()
        .enumerate()
        .any(|(i, r)| results[..i].iter().any(|b| b.workload.name == r.workload.name));
    let mut s = String::new();
    let _ = write!(s, "| run |");
    for (name, _, _) in COLUMNS {
        let _ = write!(s, " {name} |");
    }
    s.push('\n');
    s.push_str("|---|");
    s.push_str(&"---:|".repeat(COLUMNS.len()));
    s.push('\n');
    for (i, r) in results.iter().enumerate() {
        let _ = write!(s, "| {} |", label(r));
        for (name, get, _) in COLUMNS {
            let text = match get(r) {
                None if MEASURED_COLUMNS.contains(name) => "n/a".into(),
                v => cell(v),
            };
            let _ = write!(s, " {text} |");
        }
        s.push('\n');
        let base = match results[..i].iter().find(|b| b.workload.name == r.workload.name) {
            Some(b) => Some(b),
            None if i > 0 && !workload_repeats => Some(&results[0]),
            None => None,
        };
        if let Some(base) = base {
            let _ = write!(s, "| ↳ vs {} (>1 = better) |", label(base));
            for (_, get, higher) in COLUMNS {
                let text = match (get(r), get(base)) {
                    (Some(a), Some(b)) if *higher => ratio(a, b),
                    (Some(a), Some(b)) => ratio(b, a),
                    _ => "–".into(),
                };
                let _ = write!(s, " {text} |");
            }
            s.push('\n');
        }
    }
    s
}

/// X position of a percentile on a "number of nines" scale (90 → 1, 99 → 2, ...).
fn nines(p: f64) -> f64 {
    let tail = (1.0 - p / 100.0).max(1e-6);
    -tail.log10()
}

fn percentile_ticks() -> Vec<(f64, String)> {
    ["0", "90", "99", "99.9", "99.99", "99.999", "99.9999"]
        .iter()
        .map(|p| (nines(p.parse().expect("number")), format!("{p}%")))
        .collect()
}

fn latency_chart(
    results: &[RunResult],
    title: &str,
    get: fn(&RunResult) -> Option<&Latency>,
) -> String {
    let series: Vec<Series> = results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            get(r).map(|l| Series {
                label: label(r),
                points: l.percentiles.iter().map(|&(p, us)| (nines(p), us)).collect(),
                dashed: false,
                color: i,
            })
        })
        .collect();
    if series.is_empty() {
        return format!("<p>{}: no samples.</p>", escape(title));
    }
    svg::chart(
        &Axes {
            title: title.into(),
            x_label: "percentile".into(),
            y_label: "latency (µs, log)".into(),
            y_scale: Scale::Log,
            x_ticks: percentile_ticks(),
        },
        &series,
    )
}

fn throughput_chart(results: &[RunResult]) -> String {
    let mut series = Vec::new();
    for (i, r) in results.iter().enumerate() {
        series.push(Series {
            label: format!("{} publish", label(r)),
            points: r.timeline.iter().map(|p| (p.t_s, p.publish_mb_per_s)).collect(),
            dashed: false,
            color: i,
        });
        if r.workload.consumers_per_topic > 0 {
            series.push(Series {
                label: format!("{} consume", label(r)),
                points: r.timeline.iter().map(|p| (p.t_s, p.consume_mb_per_s)).collect(),
                dashed: true,
                color: i,
            });
        }
    }
    svg::chart(
        &Axes {
            title: "Throughput over time".into(),
            x_label: "seconds since producers started".into(),
            y_label: "MB/s".into(),
            y_scale: Scale::Linear,
            x_ticks: vec![],
        },
        &series,
    )
}

fn latency_over_time_chart(results: &[RunResult]) -> String {
    let mut series = Vec::new();
    for (i, r) in results.iter().enumerate() {
        series.push(Series {
            label: format!("{} publish max", label(r)),
            points: r.timeline.iter().map(|p| (p.t_s, p.publish_latency_max_us)).collect(),
            dashed: false,
            color: i,
        });
        if r.end_to_end_latency.is_some() {
            series.push(Series {
                label: format!("{} end-to-end max", label(r)),
                points: r.timeline.iter().map(|p| (p.t_s, p.end_to_end_latency_max_us)).collect(),
                dashed: true,
                color: i,
            });
        }
    }
    svg::chart(
        &Axes {
            title: "Largest latency per second".into(),
            x_label: "seconds since producers started".into(),
            y_label: "latency (µs, log)".into(),
            y_scale: Scale::Log,
            x_ticks: vec![],
        },
        &series,
    )
}

fn html_table(results: &[RunResult]) -> String {
    let md = markdown(results);
    let mut s = String::from("<table>");
    for (i, line) in md.lines().enumerate() {
        if i == 1 {
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let tag = if i == 0 { "th" } else { "td" };
        s.push_str("<tr>");
        for c in cells {
            let _ = write!(s, "<{tag}>{}</{tag}>", escape(c));
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
    s
}

/// The HTML report of one or more results.
pub fn html(results: &[RunResult]) -> String {
    let title = match results {
        [one] => format!("{} on {}", one.workload.name, one.driver),
        _ => format!("Comparison of {} runs", results.len()),
    };
    let mut s = String::new();
    let _ = write!(
        s,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>\
         body{{font-family:sans-serif;margin:24px;max-width:1200px}}\
         table{{border-collapse:collapse;margin:12px 0;font-size:13px}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}\
         td:first-child,th:first-child{{text-align:left}}\
         pre{{background:#f6f6f6;padding:8px;font-size:12px;overflow-x:auto}}\
         .charts{{display:flex;flex-wrap:wrap;gap:12px}}</style></head><body><h1>{t}</h1>",
        t = escape(&title)
    );
    s.push_str("<h2>Results</h2>");
    s.push_str(&html_table(results));
    s.push_str(
        "<p>Rates count the measured window only (warm-up excluded). Latencies count from each \
         message's intended send time (corrected for coordinated omission in rate-limited \
         runs). In comparisons, ratio rows are against the first run and &gt; 1 means better.</p>",
    );
    s.push_str("<div class=\"charts\">");
    s.push_str(&latency_chart(results, "Publish latency (send → ack)", |r| {
        Some(&r.publish_latency)
    }));
    s.push_str(&latency_chart(results, "End-to-end latency (send → receipt)", |r| {
        r.end_to_end_latency.as_ref()
    }));
    s.push_str(&throughput_chart(results));
    s.push_str(&latency_over_time_chart(results));
    s.push_str("</div>");
    s.push_str("<h2>Runs</h2>");
    for r in results {
        let e = &r.environment;
        let _ = write!(
            s,
            "<h3>{}</h3><p>{}</p><table>\
             <tr><td>server</td><td>{} {}</td></tr>\
             <tr><td>messages sent / acked / consumed; publish / consume errors; missed</td><td>{} / {} / {}; {} / {}; {}</td></tr>\
             <tr><td>host</td><td>{} · {} · {} cores · {:.1} GiB · kernel {} · {}</td></tr>\
             <tr><td>git commit</td><td>{}</td></tr>\
             <tr><td>harness</td><td>{}</td></tr>\
             <tr><td>CPU (measured window)</td><td>{}</td></tr></table>",
            escape(&label(r)),
            escape(&r.workload.description),
            escape(&r.driver),
            escape(&r.server_version),
            r.totals.sent,
            r.totals.acked,
            r.totals.consumed,
            r.totals.publish_errors,
            r.totals.consume_errors,
            r.totals.missed,
            escape(&e.hostname),
            escape(&e.cpu_model),
            e.cores,
            e.memory_bytes as f64 / f64::from(1u32 << 30),
            escape(&e.kernel),
            escape(&e.os),
            escape(&e.git_commit),
            escape(&e.harness_version),
            escape(&cpu_text(r)).replace('\n', "<br>"),
        );
        for note in &r.notes {
            let _ = write!(s, "<p><b>Note:</b> {}</p>", escape(note));
        }
        if let Some(err) = &r.totals.first_error {
            let _ = write!(s, "<p><b>First error:</b> {}</p>", escape(err));
        }
        let workload = toml::to_string(&r.workload).unwrap_or_default();
        let _ = write!(s, "<pre>{}</pre>", escape(&workload));
    }
    s.push_str("</body></html>\n");
    s
}
