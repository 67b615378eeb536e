//! CPU pinning (`--server-cpus`, `--client-cpus`): CPU lists in taskset/cpuset syntax and
//! `sched_setaffinity` on a thread, a whole process, or a child about to `exec`.
//!
//! On a small shared machine the server and the load generator otherwise steal each other's
//! cores and the numbers move with the scheduler; pinned to separate cores, each system's
//! CPU time per GB ([`crate::process`]) and its latency can be compared run to run.
//!
//! ```text
//! "0"        → {0}
//! "0-3"      → {0, 1, 2, 3}
//! "0,2"      → {0, 2}
//! "0-7:2"    → {0, 2, 4, 6}     (taskset's stride)
//! ```
//!
//! Threads inherit the affinity of the thread that creates them, so pinning a process's
//! threads pins the threads it starts afterwards too; [`pin_process`] still lists
//! `/proc/PID/task` until no new thread appears, for threads created while it runs.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// The largest CPU number a `cpu_set_t` holds, plus one.
const CPU_SETSIZE: usize = libc::CPU_SETSIZE as usize;

/// Rounds of listing `/proc/PID/task` in [`pin_process`] before giving up on threads that
/// keep appearing (a process creating threads without end).
const PIN_ROUNDS_MAX: usize = 8;

/// A non-empty set of CPU numbers, parsed from and shown in taskset's list syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList {
    cpus: Vec<usize>,
}

impl CpuList {
    /// The CPUs, ascending, without duplicates.
    pub fn cpus(&self) -> &[usize] {
        &self.cpus
    }

    /// Whether the two lists share a CPU.
    pub fn overlaps(&self, other: &CpuList) -> bool {
        self.cpus.iter().any(|c| other.cpus.binary_search(c).is_ok())
    }

    /// The CPUs of `self` that are not in `allowed`.
    pub fn outside(&self, allowed: &CpuList) -> Vec<usize> {
        self.cpus.iter().copied().filter(|c| allowed.cpus.binary_search(c).is_err()).collect()
    }

    fn from_set(set: BTreeSet<usize>) -> Result<CpuList, String> {
        if set.is_empty() {
            return Err("empty CPU list".into());
        }
        Ok(CpuList { cpus: set.into_iter().collect() })
    }

    fn to_cpu_set(&self) -> libc::cpu_set_t {
        // SAFETY: cpu_set_t is a plain bit array; all zeroes is the empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        for &c in &self.cpus {
            assert!(c < CPU_SETSIZE, "checked by the parser: cpu {c}");
            // SAFETY: c < CPU_SETSIZE, so CPU_SET stays inside the set.
            unsafe { libc::CPU_SET(c, &mut set) };
        }
        set
    }
}

impl FromStr for CpuList {
    type Err = String;

    /// Parses `0`, `0-3`, `0,2,5-7`, `0-7:2` (stride), as `taskset -c` and cpusets do.
    fn from_str(text: &str) -> Result<CpuList, String> {
        let number = |s: &str| -> Result<usize, String> {
            let n: usize =
                s.trim().parse().map_err(|_| format!("`{s}` is not a CPU number in `{text}`"))?;
            if n >= CPU_SETSIZE {
                return Err(format!("CPU {n} is beyond the largest CPU set ({CPU_SETSIZE})"));
            }
            Ok(n)
        };
        let mut set = BTreeSet::new();
        for part in text.split(',') {
            let part = part.trim();
            if part.is_empty() {
                return Err(format!("empty element in CPU list `{text}`"));
            }
            let (range, stride) = match part.split_once(':') {
                Some((r, s)) => (r, number(s)?),
                None => (part, 1),
            };
            if stride == 0 {
                return Err(format!("stride 0 in CPU list `{text}`"));
            }
            let (first, last) = match range.split_once('-') {
                Some((a, b)) => (number(a)?, number(b)?),
                None => (number(range)?, number(range)?),
            };
            if first > last {
                return Err(format!("range {first}-{last} runs backwards in `{text}`"));
            }
            set.extend((first..=last).step_by(stride));
        }
        CpuList::from_set(set)
    }
}

impl fmt::Display for CpuList {
    /// The compact list: `0-2,5`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut i = 0;
        let mut first = true;
        while i < self.cpus.len() {
            let start = self.cpus[i];
            let mut end = start;
            while i + 1 < self.cpus.len() && self.cpus[i + 1] == end + 1 {
                i += 1;
                end = self.cpus[i];
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if end == start {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
            i += 1;
        }
        Ok(())
    }
}

/// The CPUs thread `tid` may run on (0 = the calling thread).
pub fn allowed(tid: i32) -> std::io::Result<CpuList> {
    // SAFETY: cpu_set_t is a plain bit array; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: sched_getaffinity writes at most size_of::<cpu_set_t>() bytes into `set`.
    let r =
        unsafe { libc::sched_getaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: c < CPU_SETSIZE, inside the set.
    let cpus: BTreeSet<usize> =
        (0..CPU_SETSIZE).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect();
    CpuList::from_set(cpus).map_err(std::io::Error::other)
}

/// Pins thread `tid` (0 = the calling thread) to `cpus`.
pub fn pin_thread(tid: i32, cpus: &CpuList) -> std::io::Result<()> {
    let set = cpus.to_cpu_set();
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    let r = unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Pins every thread of process `pid` (all of `/proc/PID/task`) to `cpus`; returns how many
/// threads it pinned. Threads that exit meanwhile are skipped.
pub fn pin_process(pid: u32, cpus: &CpuList) -> std::io::Result<usize> {
    let mut pinned = BTreeSet::new();
    for _ in 0..PIN_ROUNDS_MAX {
        let tids = crate::process::threads(pid)?;
        let fresh: Vec<i32> = tids.into_iter().filter(|t| !pinned.contains(t)).collect();
        if fresh.is_empty() {
            return Ok(pinned.len());
        }
        for tid in fresh {
            match pin_thread(tid, cpus) {
                Ok(()) => {
                    pinned.insert(tid);
                }
                // The thread exited between the listing and the call.
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(pinned.len())
}

/// Makes `cmd`'s child pin itself to `cpus` between `fork` and `exec`, so every thread of
/// the server is born on them (the broker places its shards on the CPUs it is allowed:
/// one shard per allowed CPU with `--shards 0`).
pub fn pin_command(cmd: &mut std::process::Command, cpus: &CpuList) {
    use std::os::unix::process::CommandExt;
    let set = cpus.to_cpu_set();
    // SAFETY: the closure runs in the forked child before exec; it only makes the
    // async-signal-safe sched_setaffinity system call on a set built before the fork (no
    // allocation, no locks).
    unsafe {
        cmd.pre_exec(move || {
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Vec<usize>, String> {
        s.parse::<CpuList>().map(|l| l.cpus().to_vec())
    }

    #[test]
    fn parses_taskset_lists() {
        assert_eq!(parse("0"), Ok(vec![0]));
        assert_eq!(parse("0-1"), Ok(vec![0, 1]));
        assert_eq!(parse("0,2"), Ok(vec![0, 2]));
        assert_eq!(parse(" 3, 0-1 ,1"), Ok(vec![0, 1, 3]));
        assert_eq!(parse("0-7:2"), Ok(vec![0, 2, 4, 6]));
        assert_eq!(parse("5-5"), Ok(vec![5]));
        for bad in ["", ",", "0,", "a", "-1", "3-1", "0-4:0", "1-", "4096", "0-99999"] {
            assert!(parse(bad).is_err(), "`{bad}` should be refused");
        }
    }

    #[test]
    fn shows_the_compact_list() {
        for (text, shown) in
            [("0", "0"), ("0,1,2,5", "0-2,5"), ("7,0-1,3", "0-1,3,7"), ("0-6:2", "0,2,4,6")]
        {
            assert_eq!(text.parse::<CpuList>().unwrap().to_string(), shown);
            // The shown form parses back to the same list.
            assert_eq!(shown.parse::<CpuList>().unwrap(), text.parse::<CpuList>().unwrap());
        }
        let a: CpuList = "0-1".parse().unwrap();
        assert!(a.overlaps(&"1,3".parse().unwrap()));
        assert!(!a.overlaps(&"2-3".parse().unwrap()));
        assert_eq!("0-3".parse::<CpuList>().unwrap().outside(&a), vec![2, 3]);
    }

    #[test]
    fn pins_a_thread_and_reads_it_back() {
        // A fresh thread so the test runner's other threads keep their affinity.
        std::thread::spawn(|| {
            let all = allowed(0).unwrap();
            let first = CpuList::from_set([all.cpus()[0]].into()).unwrap();
            pin_thread(0, &first).unwrap();
            assert_eq!(allowed(0).unwrap(), first);
        })
        .join()
        .unwrap();
    }
}
