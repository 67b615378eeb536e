//! Once a second: sample the run's counters into the timeline, and show the current rates
//! (an indicatif progress bar on a terminal, a plain line every 5 s otherwise).

use std::io::IsTerminal;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::oneshot;

use crate::result::TimelinePoint;
use crate::run::counters::RunCounters;

/// The sampler task of one run.
#[derive(Debug)]
pub struct Progress {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Vec<TimelinePoint>>,
}

impl Progress {
    /// Starts sampling; `planned_s` sizes the bar (unknown for backlog fills).
    pub(crate) fn start(
        shared: Arc<RunCounters>,
        start_ns: u64,
        planned_s: Option<f64>,
        show: bool,
    ) -> Progress {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let terminal = show && std::io::stderr().is_terminal();
            let bar = if terminal {
                let bar = match planned_s {
                    Some(s) => ProgressBar::new(s.ceil() as u64),
                    None => ProgressBar::new_spinner(),
                };
                bar.set_style(
                    ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len}s {msg}")
                        .expect("valid template")
                        .progress_chars("=> "),
                );
                Some(bar)
            } else {
                None
            };
            let mut timeline = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            let mut last = (shared.now_ns(), 0u64, 0u64, 0u64, 0u64);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = &mut stopped => break,
                }
                let now = shared.now_ns();
                let cur = (
                    now,
                    shared.acked.load(Relaxed),
                    shared.acked_bytes.load(Relaxed),
                    shared.consumed.load(Relaxed),
                    shared.consumed_bytes.load(Relaxed),
                );
                let dt = (cur.0 - last.0) as f64 / 1e9;
                let p = TimelinePoint {
                    t_s: now.saturating_sub(start_ns) as f64 / 1e9,
                    publish_msgs_per_s: (cur.1 - last.1) as f64 / dt,
                    publish_mb_per_s: (cur.2 - last.2) as f64 / dt / 1e6,
                    consume_msgs_per_s: (cur.3 - last.3) as f64 / dt,
                    consume_mb_per_s: (cur.4 - last.4) as f64 / dt / 1e6,
                    publish_latency_max_us: shared.publish_latency_max_ns.swap(0, Relaxed) as f64
                        / 1e3,
                    end_to_end_latency_max_us: shared.end_to_end_latency_max_ns.swap(0, Relaxed)
                        as f64
                        / 1e3,
                };
                last = cur;
                timeline.push(p);
                let line = format!(
                    "publish {:>9.0} msg/s {:>7.1} MB/s max {:>8.1} ms | consume {:>9.0} msg/s {:>7.1} MB/s max {:>8.1} ms | backlog {}",
                    p.publish_msgs_per_s,
                    p.publish_mb_per_s,
                    p.publish_latency_max_us / 1e3,
                    p.consume_msgs_per_s,
                    p.consume_mb_per_s,
                    p.end_to_end_latency_max_us / 1e3,
                    cur.1.saturating_sub(cur.3),
                );
                match &bar {
                    Some(bar) => {
                        bar.set_position(p.t_s.max(0.0) as u64);
                        bar.set_message(line);
                    }
                    None if show && timeline.len() % 5 == 0 => {
                        eprintln!("[{:>6.1}s] {line}", p.t_s);
                    }
                    None => {}
                }
            }
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            timeline
        });
        Progress { stop, task }
    }

    /// Stops sampling and returns the timeline.
    pub async fn finish(self) -> Vec<TimelinePoint> {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}
