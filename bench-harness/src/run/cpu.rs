//! CPU time of the server and of the harness over the measured window (and over a backlog's
//! catch-up read), from `/proc` ([`crate::process`]).
//!
//! Contract: [`CpuMeter::window`] starts a thread that samples every measured process when
//! the window opens and, for live workloads, when it closes (or at once when the run stops
//! early); a backlog fill's window closes when publishing ends, so [`WindowSampler::finish`]
//! takes that sample. A thread with `std::thread::sleep`, not a runtime task, so a busy
//! runtime does not shift the samples. A process that cannot be read (no pid given, or it
//! exited) has no figures: the report says "n/a", never a guess.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use super::counters::RunCounters;
use crate::process::{thread_placement, CpuDelta, CpuSample, Status};

/// Longest sleep between checks of the run's stop flag while waiting for a window edge.
const WAIT_SLICE_MS: u64 = 50;

/// Which processes to measure.
#[derive(Debug, Clone)]
pub(super) struct CpuMeter {
    /// `[server, harness]`; the server's pid is unknown for a server given by address only.
    pids: [Option<u32>; 2],
}

/// What was measured of one process.
#[derive(Debug, Clone)]
pub(super) struct Measured {
    pub(super) pid: u32,
    /// The measured window (live workloads) or the backlog fill.
    pub(super) window: CpuDelta,
    /// Backlog workloads: the catch-up read.
    pub(super) catch_up: Option<CpuDelta>,
    /// Memory at the end of the window.
    pub(super) status: Option<Status>,
    /// Where its threads may run, at the end of the window.
    pub(super) placement: Option<String>,
}

/// What [`CpuMeter`] measured: `[server, harness]`, and why a figure is missing.
#[derive(Debug, Default)]
pub(super) struct CpuFigures {
    pub(super) processes: [Option<Measured>; 2],
    pub(super) problems: Vec<String>,
}

/// Samples of every measured process at one moment (`None`: unreadable).
type Samples = [Option<CpuSample>; 2];

/// The window sampler thread of a run.
pub(super) struct WindowSampler {
    meter: CpuMeter,
    thread: std::thread::JoinHandle<(Samples, Option<Samples>, Vec<String>)>,
}

impl CpuMeter {
    /// Measures `server_pid` (when known) and this process.
    pub(super) fn new(server_pid: Option<u32>) -> CpuMeter {
        CpuMeter { pids: [server_pid, Some(std::process::id())] }
    }

    fn sample(&self, problems: &mut Vec<String>) -> Samples {
        self.pids.map(|pid| {
            let pid = pid?;
            CpuSample::read(pid)
                .map_err(|e| problems.push(format!("cannot read the CPU time of pid {pid}: {e}")))
                .ok()
        })
    }

    /// Starts sampling the window: at its start, and at its end when `live`.
    pub(super) fn window(&self, counters: &Arc<RunCounters>, live: bool) -> WindowSampler {
        let meter = self.clone();
        let counters = Arc::clone(counters);
        let thread = std::thread::Builder::new()
            .name("cpu-sampler".into())
            .spawn(move || {
                let mut problems = Vec::new();
                wait_until(&counters, counters.window_start_ns.load(Relaxed));
                let start = meter.sample(&mut problems);
                let end = live.then(|| {
                    wait_until(&counters, counters.window_end_ns.load(Relaxed));
                    meter.sample(&mut problems)
                });
                (start, end, problems)
            })
            .expect("spawn the CPU sampler thread");
        WindowSampler { meter: self.clone(), thread }
    }

    /// Adds the CPU time from `before` to now as the catch-up read's.
    pub(super) fn catch_up(&self, before: &Samples, figures: &mut CpuFigures) {
        let after = self.sample(&mut figures.problems);
        for (i, m) in figures.processes.iter_mut().enumerate() {
            if let (Some(m), Some(b), Some(a)) = (m, &before[i], &after[i]) {
                m.catch_up = Some(b.until(a));
            }
        }
    }

    /// A sample now, for [`CpuMeter::catch_up`].
    pub(super) fn now(&self, figures: &mut CpuFigures) -> Samples {
        self.sample(&mut figures.problems)
    }
}

impl WindowSampler {
    /// The window's figures; a backlog fill's window (not `live`) ends now.
    pub(super) fn finish(self) -> CpuFigures {
        let (start, end, mut problems) = self.thread.join().expect("CPU sampler thread");
        let end = end.unwrap_or_else(|| self.meter.sample(&mut problems));
        let mut figures = CpuFigures { processes: [None, None], problems };
        for (i, pid) in self.meter.pids.iter().enumerate() {
            let (Some(pid), Some(s), Some(e)) = (pid, &start[i], &end[i]) else { continue };
            figures.processes[i] = Some(Measured {
                pid: *pid,
                window: s.until(e),
                catch_up: None,
                status: Status::read(*pid).ok(),
                placement: thread_placement(*pid).ok(),
            });
        }
        figures
    }
}

/// Sleeps until `t_ns` on the counters' clock, or until the run is stopped.
fn wait_until(counters: &RunCounters, t_ns: u64) {
    loop {
        let now = counters.now_ns();
        if now >= t_ns || counters.stop.load(Relaxed) {
            return;
        }
        std::thread::sleep(
            Duration::from_nanos(t_ns - now).min(Duration::from_millis(WAIT_SLICE_MS)),
        );
    }
}
