//! Where a run happened: kernel, cores, CPU model, memory, OS, git commit, versions.

use serde::{Deserialize, Serialize};

/// See the module docs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Environment {
    /// Host name.
    pub hostname: String,
    /// `uname -r`.
    pub kernel: String,
    /// `PRETTY_NAME` of /etc/os-release.
    pub os: String,
    /// CPUs online on the machine (not only those the harness was pinned to: the run's
    /// placement is in the result's `pinning`).
    pub cores: usize,
    /// `model name` of /proc/cpuinfo.
    pub cpu_model: String,
    /// MemTotal.
    pub memory_bytes: u64,
    /// `git rev-parse HEAD` of the working directory (`-dirty` when it has changes).
    pub git_commit: String,
    /// This harness's version.
    pub harness_version: String,
}

impl Environment {
    /// Reads the facts of this machine.
    pub fn detect() -> Environment {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let meminfo = read("/proc/meminfo");
        let os_release = read("/etc/os-release");
        Environment {
            hostname: read("/proc/sys/kernel/hostname").trim().to_owned(),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            os: field(&os_release, "PRETTY_NAME", '=').trim_matches('"').to_owned(),
            cores: online_cpus(),
            cpu_model: field(&cpuinfo, "model name", ':').to_owned(),
            memory_bytes: field(&meminfo, "MemTotal", ':')
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .map_or(0, |kb| kb * 1024),
            git_commit: git_commit(),
            harness_version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

/// CPUs online (`sysconf(_SC_NPROCESSORS_ONLN)`), whatever this process's affinity.
fn online_cpus() -> usize {
    // SAFETY: sysconf only reads a configuration value.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 {
        n as usize
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// The value of the first `key<sep>value` line.
fn field<'a>(text: &'a str, key: &str, sep: char) -> &'a str {
    text.lines()
        .filter_map(|l| l.split_once(sep))
        .find(|(k, _)| k.trim() == key)
        .map_or("", |(_, v)| v.trim())
}

fn git_commit() -> String {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match run(&["rev-parse", "HEAD"]) {
        Some(head) => {
            let dirty = run(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{head}-dirty")
            } else {
                head
            }
        }
        None => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_this_machine() {
        let e = Environment::detect();
        assert!(!e.kernel.is_empty());
        assert!(e.cores >= 1);
        assert!(e.memory_bytes > 0);
        assert_eq!(field("a: 1\nmodel name\t: X Y\n", "model name", ':'), "X Y");
    }
}
