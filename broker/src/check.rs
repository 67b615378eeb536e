//! `broker check`: a preflight that says plainly what would stop the broker on this host,
//! and for each problem the fix (a command, a sysctl, or the systemd unit line in
//! `deploy/broker.service`).

use std::path::Path;

use crate::config::BrokerConfig;

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Whether it prevents a correct start.
    pub fatal: bool,
    /// What was checked.
    pub what: &'static str,
    /// What was found.
    pub detail: String,
    /// How to fix it: set for every failure, and for a finding that runs but costs
    /// something (a warning).
    pub fix: Option<String>,
}

impl Finding {
    /// `FAIL`, `warn` (runs, but see the fix) or `ok`.
    pub fn verdict(&self) -> &'static str {
        match (self.fatal, &self.fix) {
            (true, _) => "FAIL",
            (false, Some(_)) => "warn",
            (false, None) => "ok",
        }
    }
}

fn ok(what: &'static str, detail: String) -> Finding {
    Finding { fatal: false, what, detail, fix: None }
}

fn warn(what: &'static str, detail: String, fix: impl Into<String>) -> Finding {
    Finding { fatal: false, what, detail, fix: Some(fix.into()) }
}

fn fail(what: &'static str, detail: String, fix: impl Into<String>) -> Finding {
    Finding { fatal: true, what, detail, fix: Some(fix.into()) }
}

/// Runs every check.
pub fn run(config: &BrokerConfig) -> Vec<Finding> {
    vec![
        io_uring(),
        memlock(config),
        huge_pages(config),
        open_files(config),
        data_dir(&config.data_dir),
        cores(config),
        metrics(config),
    ]
}

fn io_uring() -> Finding {
    if let Ok(v) = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled") {
        if v.trim() != "0" {
            return fail(
                "io_uring",
                format!("disabled by sysctl kernel.io_uring_disabled={}", v.trim()),
                "sysctl -w kernel.io_uring_disabled=0 (and kernel.io_uring_disabled = 0 in /etc/sysctl.d/)",
            );
        }
    }
    let mut params = [0u8; 120]; // struct io_uring_params
                                 // SAFETY: io_uring_setup reads and writes `params` (120 bytes, the kernel's struct size
                                 // for this ABI) and returns a file descriptor we close at once.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        let (hint, fix) = match e.raw_os_error() {
            Some(libc::ENOSYS) => ("the kernel has no io_uring", "run on Linux >= 5.8"),
            Some(libc::EPERM) => (
                "blocked (seccomp profile of the container runtime, or a sysctl)",
                "allow io_uring_setup/enter/register in the seccomp profile (docker: --security-opt seccomp=unconfined), or sysctl -w kernel.io_uring_disabled=0",
            ),
            Some(libc::ENOMEM) => (
                "no memory for the ring (locked-memory limit)",
                "raise the locked-memory limit: ulimit -l unlimited, or LimitMEMLOCK=infinity in the systemd unit",
            ),
            _ => ("io_uring_setup failed", "run on Linux >= 5.8 with io_uring allowed"),
        };
        return fail("io_uring", format!("{hint}: {e}"), fix);
    }
    // SAFETY: closing the descriptor io_uring_setup just returned.
    unsafe { libc::close(fd as i32) };
    ok("io_uring", "available".into())
}

fn memlock(config: &BrokerConfig) -> Finding {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 {
        let e = std::io::Error::last_os_error();
        return fail("memlock", format!("getrlimit failed: {e}"), "check the process's limits");
    }
    let soft = lim.rlim_cur;
    let need_min = 512u64 << 10; // glommio refuses to start below this
    let want = 3 * config.io_memory_bytes as u64 * config.shard_count() as u64;
    let show = |v: u64| {
        if v == libc::RLIM_INFINITY {
            "unlimited".to_string()
        } else {
            format!("{} KiB", v >> 10)
        }
    };
    const FIX: &str = "ulimit -l unlimited (shell), LimitMEMLOCK=infinity (systemd unit), or a memlock line in /etc/security/limits.conf";
    if soft != libc::RLIM_INFINITY && soft < need_min {
        return fail(
            "memlock",
            format!("locked-memory limit {} is below the 512 KiB glommio needs", show(soft)),
            FIX,
        );
    }
    if soft != libc::RLIM_INFINITY && soft < want {
        return warn("memlock", format!("limit {}: enough to run, but below the {} KiB that registered I/O buffers need ({} shards x 3 rings x io_memory_bytes); I/O still works without them", show(soft), want >> 10, config.shard_count()), FIX);
    }
    ok("memlock", format!("limit {}", show(soft)))
}

/// Transparent huge pages: the broker turns them off for itself unless configured not to
/// (`huge_pages.rs`); with them on (system mode `always`, or `madvise`, which the allocator
/// uses) a shard stalls while a 2 MiB page is zeroed.
fn huge_pages(config: &BrokerConfig) -> Finding {
    let Some(mode) = crate::huge_pages::system_mode() else {
        return ok("thp", "the kernel has no transparent huge pages".to_string());
    };
    if !config.transparent_huge_pages {
        return ok(
            "thp",
            format!("system mode {mode}; off for the broker (transparent_huge_pages = false)"),
        );
    }
    if mode != "never" {
        return warn(
            "thp",
            format!("system mode {mode} (the allocator asks for huge pages) and transparent_huge_pages = true: a shard stalls for milliseconds whenever the kernel zeroes a new 2 MiB page for it"),
            "set transparent_huge_pages = false (the default), or the system mode to never",
        );
    }
    ok("thp", format!("system mode {mode}"))
}

/// The open-files limit against what the configured connections and partitions want
/// (`descriptors.rs` lowers the limits to fit at start; this says so beforehand).
fn open_files(config: &BrokerConfig) -> Finding {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        let e = std::io::Error::last_os_error();
        return fail("open files", format!("getrlimit failed: {e}"), "check the process's limits");
    }
    // The broker raises its soft limit to the hard one at start.
    let hard = lim.rlim_max;
    let want = (config.connections_per_shard_max * config.shard_count()) as u64
        + u64::from(config.partitions_max)
        + crate::descriptors::OPEN_FILES_RESERVED;
    const FIX: &str = "LimitNOFILE=1048576 in the systemd unit, or ulimit -n (hard limit) before starting; fs.nr_open bounds it";
    if hard != libc::RLIM_INFINITY && hard < 4096 {
        return fail(
            "open files",
            format!("hard limit {hard}: too few for partitions and connections"),
            FIX,
        );
    }
    if hard != libc::RLIM_INFINITY && hard < want {
        return warn("open files", format!("hard limit {hard} is below the {want} that connections_per_shard_max x shards + partitions_max want; the broker lowers both to fit at start"), FIX);
    }
    ok("open files", format!("hard limit {hard}"))
}

/// Whether the metrics endpoint's address can be bound (the broker runs without it if not).
fn metrics(config: &BrokerConfig) -> Finding {
    match config.metrics_listen {
        crate::config::MetricsListen::Off => ok("metrics", "off".into()),
        crate::config::MetricsListen::On(addr) => match std::net::TcpListener::bind(addr) {
            Ok(_) => ok("metrics", format!("{addr} free")),
            Err(e) => warn(
                "metrics",
                format!("cannot bind {addr}: {e}; the broker would run without /metrics"),
                "free the port, or choose another with --metrics HOST:PORT / metrics_listen (\"off\" disables it)",
            ),
        },
    }
}

fn data_dir(dir: &Path) -> Finding {
    if let Err(e) = std::fs::create_dir_all(dir) {
        return fail(
            "data dir",
            format!("cannot create {}: {e}", dir.display()),
            "create it and give the broker's user ownership (StateDirectory=broker in the systemd unit), or choose --data-dir",
        );
    }
    // SAFETY: statfs fills a struct we own from a NUL-terminated path.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let cpath = match std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) {
        Ok(p) => p,
        Err(_) => {
            return fail("data dir", "path contains a NUL byte".into(), "choose another --data-dir")
        }
    };
    // SAFETY: see above.
    if unsafe { libc::statfs(cpath.as_ptr(), &mut st) } == 0
        && st.f_type as i64 == libc::TMPFS_MAGIC
    {
        return fail(
            "data dir",
            format!("{} is on tmpfs, which has no O_DIRECT", dir.display()),
            "put the data directory on a disk filesystem (ext4, xfs): --data-dir / data_dir",
        );
    }
    let probe = dir.join(".odirect-probe");
    let result = (|| -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(&probe)?;
        let layout = std::alloc::Layout::from_size_align(4096, 4096).expect("valid layout");
        // SAFETY: a 4096-byte, 4096-aligned zeroed allocation, freed below; written with pwrite.
        let buf = unsafe { std::alloc::alloc_zeroed(layout) };
        use std::os::fd::AsRawFd;
        // SAFETY: buf is valid for 4096 bytes.
        let n = unsafe { libc::pwrite(f.as_raw_fd(), buf as *const libc::c_void, 4096, 0) };
        // SAFETY: freeing the allocation made above with the same layout.
        unsafe { std::alloc::dealloc(buf, layout) };
        if n != 4096 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&probe);
    match result {
        Ok(()) => ok("data dir", format!("{} supports O_DIRECT", dir.display())),
        Err(e) => fail(
            "data dir",
            format!("{} does not support O_DIRECT writes: {e}", dir.display()),
            "put the data directory on ext4 or xfs (not tmpfs, overlayfs or a network filesystem), writable by the broker's user",
        ),
    }
}

fn cores(config: &BrokerConfig) -> Finding {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let shards = config.shard_count();
    if shards > cpus {
        return fail(
            "cores",
            format!("{shards} shards but only {cpus} cores available; shards share cores and tail latency suffers"),
            format!("--shards {cpus} (or 0: one per core), or allow more CPUs (CPUAffinity= in the systemd unit)"),
        );
    }
    ok("cores", format!("{cpus} available, {shards} shards"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_says_how_to_fix_it() {
        let config = BrokerConfig { shards: 100_000, ..BrokerConfig::default() };
        let found = cores(&config);
        assert!(found.fatal && found.fix.as_deref().is_some_and(|f| f.contains("--shards")));
        assert_eq!(found.verdict(), "FAIL");
        let tmp = std::path::PathBuf::from("/dev/shm/broker-check-probe");
        if Path::new("/dev/shm").is_dir() {
            let found = data_dir(&tmp);
            let _ = std::fs::remove_dir(&tmp);
            assert!(found.fatal && found.fix.is_some(), "{found:?}");
        }
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let config = BrokerConfig {
            metrics_listen: crate::config::MetricsListen::On(held.local_addr().unwrap()),
            ..BrokerConfig::default()
        };
        let found = metrics(&config);
        assert_eq!((found.verdict(), found.fatal), ("warn", false), "{found:?}");
    }
}
