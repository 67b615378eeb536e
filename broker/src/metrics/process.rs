//! Process metrics from `/proc/self`: resident memory, open descriptors, CPU time, start
//! time — the `process_*` names every Prometheus client library uses.
//!
//! Contract: read at scrape time on shard 0 (a few small procfs reads, no allocation beyond
//! the file text); a file that cannot be read or parsed leaves its value out, never fails
//! the scrape.

/// What `/proc/self` said at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessSnapshot {
    /// Resident set size in bytes (`statm` field 2 × page size).
    pub resident_memory_bytes: Option<u64>,
    /// Virtual memory size in bytes.
    pub virtual_memory_bytes: Option<u64>,
    /// Entries of `/proc/self/fd`.
    pub open_fds: Option<u64>,
    /// The soft `RLIMIT_NOFILE`.
    pub max_fds: Option<u64>,
    /// User + system CPU time in seconds (`stat` fields 14 and 15).
    pub cpu_seconds: Option<f64>,
    /// Start time in seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
    /// Threads (`stat` field 20).
    pub threads: Option<u64>,
}

/// Reads the process's metrics now.
pub fn read() -> ProcessSnapshot {
    // SAFETY: sysconf has no memory effects; it only returns a number.
    let page_bytes = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    // SAFETY: as above.
    let ticks_per_s = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100);
    let mut out = ProcessSnapshot::default();
    if let Ok(statm) = std::fs::read_to_string("/proc/self/statm") {
        let mut fields = statm.split_ascii_whitespace().map(|f| f.parse::<u64>().ok());
        out.virtual_memory_bytes = fields.next().flatten().map(|p| p * page_bytes);
        out.resident_memory_bytes = fields.next().flatten().map(|p| p * page_bytes);
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        // The read_dir handle itself is one of the entries.
        out.open_fds = Some((dir.count() as u64).saturating_sub(1));
    }
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        out.max_fds = Some(limit.rlim_cur);
    }
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        if let Some(s) = parse_stat(&stat) {
            out.cpu_seconds = Some((s.utime_ticks + s.stime_ticks) as f64 / ticks_per_s as f64);
            out.threads = Some(s.threads);
            out.start_time_seconds = boot_time_seconds()
                .map(|boot| boot as f64 + s.start_ticks as f64 / ticks_per_s as f64);
        }
    }
    out
}

/// The fields of `/proc/self/stat` used here.
#[derive(Debug, PartialEq, Eq)]
struct Stat {
    utime_ticks: u64,
    stime_ticks: u64,
    threads: u64,
    start_ticks: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may hold
/// spaces and parentheses itself, so fields are counted after its last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    // After ")": field 3 (state) is index 0, so field n is index n - 3.
    let f: Vec<&str> = rest.split_ascii_whitespace().collect();
    let get = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        utime_ticks: get(14)?,
        stime_ticks: get(15)?,
        threads: get(20)?,
        start_ticks: get(22)?,
    })
}

/// System boot time from `/proc/stat` (`btime`).
fn boot_time_seconds() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    text.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line = "4242 (a b) c)) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 7 0 12345 0 0";
        assert_eq!(
            parse_stat(line),
            Some(Stat { utime_ticks: 250, stime_ticks: 50, threads: 7, start_ticks: 12345 })
        );
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn this_process_reads_back() {
        let p = read();
        assert!(p.resident_memory_bytes.unwrap() > 0);
        assert!(p.open_fds.unwrap() >= 3, "stdin, stdout, stderr");
        assert!(p.cpu_seconds.is_some() && p.start_time_seconds.is_some());
    }
}
