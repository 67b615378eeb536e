//! What `/proc` says about a process: its CPU time (`/proc/PID/stat`: utime + stime, which
//! for a process count all its threads, those that exited included), its memory and the CPUs
//! its threads may run on (`/proc/PID/status`), and its threads (`/proc/PID/task`).
//!
//! The harness samples the server's and its own CPU time at the start and end of the
//! measured window; the difference over the payload bytes is "CPU seconds per GB" (GB =
//! 10^9 bytes), the cost figure that compares systems on any machine. Times are in clock
//! ticks (`sysconf(_SC_CLK_TCK)`, 100 per second on Linux): ±10 ms per sample.

use std::time::Instant;

/// A process's CPU time at one moment.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    /// When it was read.
    pub at: Instant,
    /// User-mode time, clock ticks.
    pub user_ticks: u64,
    /// Kernel-mode time, clock ticks.
    pub system_ticks: u64,
}

/// CPU time between two samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuDelta {
    /// User-mode seconds.
    pub user_s: f64,
    /// Kernel-mode seconds.
    pub system_s: f64,
    /// Wall seconds between the samples.
    pub wall_s: f64,
}

impl CpuDelta {
    /// User + kernel seconds.
    pub fn cpu_s(&self) -> f64 {
        self.user_s + self.system_s
    }
}

impl CpuSample {
    /// The CPU time of process `pid` now.
    pub fn read(pid: u32) -> std::io::Result<CpuSample> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let at = Instant::now();
        let (user_ticks, system_ticks) = parse_stat_times(&text).ok_or_else(|| {
            std::io::Error::other(format!("/proc/{pid}/stat: unexpected format: {text}"))
        })?;
        Ok(CpuSample { at, user_ticks, system_ticks })
    }

    /// The CPU time from `self` to `later`.
    pub fn until(&self, later: &CpuSample) -> CpuDelta {
        let tick_s = 1.0 / clock_ticks_per_s() as f64;
        assert!(
            later.user_ticks >= self.user_ticks && later.system_ticks >= self.system_ticks,
            "CPU time went backwards: {self:?} then {later:?} (a different process?)"
        );
        CpuDelta {
            user_s: (later.user_ticks - self.user_ticks) as f64 * tick_s,
            system_s: (later.system_ticks - self.system_ticks) as f64 * tick_s,
            wall_s: later.at.saturating_duration_since(self.at).as_secs_f64(),
        }
    }
}

/// Clock ticks per second of the times in `/proc/PID/stat`.
pub fn clock_ticks_per_s() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    assert!(t > 0, "sysconf(_SC_CLK_TCK) = {t}");
    t as u64
}

/// `(utime, stime)` in clock ticks from the text of `/proc/PID/stat`.
///
/// Layout: `pid (comm) state ppid ... utime stime ...` — utime and stime are fields 14 and 15
/// (1-based). `comm` may hold spaces and parentheses, so fields are counted after the last
/// `)`: there, `state` is field 3 and utime is the 12th word.
pub fn parse_stat_times(text: &str) -> Option<(u64, u64)> {
    let after_comm = &text[text.rfind(')')? + 1..];
    let mut words = after_comm.split_ascii_whitespace().skip(14 - 3);
    let utime = words.next()?.parse().ok()?;
    let stime = words.next()?.parse().ok()?;
    Some((utime, stime))
}

/// Memory and CPU placement of a process, from `/proc/PID/status`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    /// Resident set now (`VmRSS`), bytes.
    pub rss_bytes: Option<u64>,
    /// Largest resident set so far (`VmHWM`), bytes.
    pub rss_peak_bytes: Option<u64>,
    /// CPUs the main thread may run on (`Cpus_allowed_list`).
    pub cpus_allowed: Option<String>,
}

impl Status {
    /// Reads `/proc/PID/status`.
    pub fn read(pid: u32) -> std::io::Result<Status> {
        Ok(parse_status(&std::fs::read_to_string(format!("/proc/{pid}/status"))?))
    }
}

/// The fields of [`Status`] from the text of `/proc/PID/status` (`Key:\tvalue` lines; memory
/// in `kB`, which the kernel means as KiB).
pub fn parse_status(text: &str) -> Status {
    let field = |key: &str| {
        text.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.trim().to_owned())
    };
    let kib =
        |key: &str| field(key)?.strip_suffix("kB")?.trim().parse::<u64>().ok().map(|k| k * 1024);
    Status {
        rss_bytes: kib("VmRSS"),
        rss_peak_bytes: kib("VmHWM"),
        cpus_allowed: field("Cpus_allowed_list"),
    }
}

/// The thread ids of process `pid` (`/proc/PID/task`).
pub fn threads(pid: u32) -> std::io::Result<Vec<i32>> {
    let mut tids: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    Ok(tids)
}

/// The CPUs the threads of `pid` may run on, each distinct list with how many threads have
/// it: `"1 (12 threads)"`, or `"0 (1 thread); 1 (11 threads)"` when they differ.
pub fn thread_placement(pid: u32) -> std::io::Result<String> {
    let mut lists: Vec<(String, usize)> = Vec::new();
    for tid in threads(pid)? {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")) else {
            continue; // exited meanwhile
        };
        let Some(list) = parse_status(&text).cpus_allowed else { continue };
        match lists.iter_mut().find(|(l, _)| *l == list) {
            Some((_, n)) => *n += 1,
            None => lists.push((list, 1)),
        }
    }
    Ok(lists
        .iter()
        .map(|(l, n)| format!("{l} ({n} thread{})", if *n == 1 { "" } else { "s" }))
        .collect::<Vec<_>>()
        .join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_even_with_a_hostile_comm() {
        // Real line of a process, fields 14 and 15 = 1234 and 567.
        let line = "4242 (broker) S 1 4242 4242 0 -1 4194560 2000 0 0 0 1234 567 0 0 20 0 5 0 \
                    100 1000000 500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
        assert_eq!(parse_stat_times(line), Some((1234, 567)));
        // A command name with spaces and parentheses must not shift the fields.
        let hostile = line.replace("(broker)", "(a) b (c) d)");
        assert_eq!(parse_stat_times(&hostile), Some((1234, 567)));
        assert_eq!(parse_stat_times("4242 (broker) S 1 2"), None);
        assert_eq!(parse_stat_times("no parenthesis"), None);
    }

    #[test]
    fn parses_status() {
        let text = "Name:\tbroker\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\nThreads:\t5\n\
                    Cpus_allowed:\t2\nCpus_allowed_list:\t1\n";
        let s = parse_status(text);
        assert_eq!(s.rss_bytes, Some(100 << 20));
        assert_eq!(s.rss_peak_bytes, Some(200 << 20));
        assert_eq!(s.cpus_allowed.as_deref(), Some("1"));
        assert_eq!(parse_status("Name:\tx\n"), Status::default());
    }

    #[test]
    fn measures_this_process() {
        let pid = std::process::id();
        let before = CpuSample::read(pid).unwrap();
        // Burn ~50 ms of CPU on this thread.
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed().as_millis() < 50 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let d = before.until(&CpuSample::read(pid).unwrap());
        assert!(d.cpu_s() >= 0.02 && d.cpu_s() <= d.wall_s * 64.0 + 0.1, "{d:?}");
        assert!(d.wall_s >= 0.05);
        assert!(threads(pid).unwrap().contains(&(pid as i32)));
        let s = Status::read(pid).unwrap();
        assert!(s.rss_bytes.unwrap() > 0 && s.rss_peak_bytes >= s.rss_bytes, "{s:?}");
        assert!(thread_placement(pid).unwrap().contains("thread"));
        assert!((1..=10_000).contains(&clock_ticks_per_s()));
    }
}
