//! `broker check`: a preflight that says plainly what would stop the broker on this host.

use std::path::Path;

use crate::config::BrokerConfig;

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Whether it prevents a correct start.
    pub fatal: bool,
    /// What was checked.
    pub what: &'static str,
    /// What was found and what to do.
    pub detail: String,
}

fn ok(what: &'static str, detail: String) -> Finding {
    Finding { fatal: false, what, detail }
}

fn fail(what: &'static str, detail: String) -> Finding {
    Finding { fatal: true, what, detail }
}

/// Runs every check.
pub fn run(config: &BrokerConfig) -> Vec<Finding> {
    vec![io_uring(), memlock(config), data_dir(&config.data_dir), cores(config)]
}

fn io_uring() -> Finding {
    if let Ok(v) = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled") {
        if v.trim() != "0" {
            return fail(
                "io_uring",
                format!("disabled by sysctl kernel.io_uring_disabled={}; set it to 0", v.trim()),
            );
        }
    }
    let mut params = [0u8; 120]; // struct io_uring_params
                                 // SAFETY: io_uring_setup reads and writes `params` (120 bytes, the kernel's struct size
                                 // for this ABI) and returns a file descriptor we close at once.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        let hint = match e.raw_os_error() {
            Some(libc::ENOSYS) => "the kernel has no io_uring (need Linux >= 5.8)",
            Some(libc::EPERM) => "blocked (seccomp profile of the container runtime, or a sysctl); allow io_uring_setup/enter/register",
            _ => "io_uring_setup failed",
        };
        return fail("io_uring", format!("{hint}: {e}"));
    }
    // SAFETY: closing the descriptor io_uring_setup just returned.
    unsafe { libc::close(fd as i32) };
    ok("io_uring", "available".into())
}

fn memlock(config: &BrokerConfig) -> Finding {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 {
        return fail("memlock", format!("getrlimit failed: {}", std::io::Error::last_os_error()));
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
    if soft != libc::RLIM_INFINITY && soft < need_min {
        return fail("memlock", format!("locked-memory limit {} is below the 512 KiB glommio needs; raise it (ulimit -l, LimitMEMLOCK=)", show(soft)));
    }
    if soft != libc::RLIM_INFINITY && soft < want {
        return ok("memlock", format!("limit {}: enough to run, but below the {} KiB that registered I/O buffers need ({} shards x 3 rings x io_memory_bytes); I/O still works without them", show(soft), want >> 10, config.shard_count()));
    }
    ok("memlock", format!("limit {}", show(soft)))
}

fn data_dir(dir: &Path) -> Finding {
    if let Err(e) = std::fs::create_dir_all(dir) {
        return fail("data dir", format!("cannot create {}: {e}", dir.display()));
    }
    // SAFETY: statfs fills a struct we own from a NUL-terminated path.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let cpath = match std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) {
        Ok(p) => p,
        Err(_) => return fail("data dir", "path contains a NUL byte".into()),
    };
    // SAFETY: see above.
    if unsafe { libc::statfs(cpath.as_ptr(), &mut st) } == 0
        && st.f_type as i64 == libc::TMPFS_MAGIC
    {
        return fail(
            "data dir",
            format!(
                "{} is on tmpfs, which has no O_DIRECT; use a disk filesystem (ext4, xfs)",
                dir.display()
            ),
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
        Err(e) => {
            fail("data dir", format!("{} does not support O_DIRECT writes: {e}", dir.display()))
        }
    }
}

fn cores(config: &BrokerConfig) -> Finding {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let shards = config.shard_count();
    if shards > cpus {
        return fail("cores", format!("{shards} shards but only {cpus} cores available; shards share cores and tail latency suffers (use --shards {cpus})"));
    }
    ok("cores", format!("{cpus} available, {shards} shards"))
}
