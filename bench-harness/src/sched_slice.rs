//! A short scheduler slice for the harness's threads (`--sched-slice-us`): the paced
//! producers and the workers of the producers' and the consumers' runtimes.
//!
//! On one shared core the harness's threads (a paced producer, its runtime's worker, the
//! consumers' worker) take turns under the kernel's fair scheduler, whose default slice is
//! ~3 ms: a producer thread waking for its next burst, or the worker waking for an ack, may
//! wait behind another harness thread for most of a slice — a delay of the harness that its
//! figures would charge to the system under test (issue 26). Since Linux 6.12 a task may ask
//! EEVDF for a shorter slice (`sched_setattr` with `SCHED_OTHER` and `sched_runtime`, at
//! least 100 µs): its deadline comes sooner, so it runs first when it wakes and preempts a
//! task with a longer slice. Its share of the CPU is unchanged. Older kernels ignore the
//! runtime for `SCHED_OTHER` or refuse it; best effort either way (the result says which).

/// The slice asked for by default (`--sched-slice-us`): the kernel's minimum. Measured in
/// `perf/results/2026-12-07-harness-slice` (fixed-rate-16p-1kb, 5 runs each, medians): the
/// kernel's default slice e2e p99 2.24 ms, p99.9 6.3 ms; 100 µs for every harness thread
/// 1.42 / 4.2 ms, and no run with a tail of tens of milliseconds (3 of 5 had one before).
pub const SLICE_US_DEFAULT: u64 = 100;

/// Asks for a `slice_us` slice for the calling thread (0: leaves it as it is); whether the
/// kernel took it.
pub fn short_slice(slice_us: u64) -> bool {
    if slice_us == 0 {
        return false;
    }
    let attr = libc::sched_attr {
        size: std::mem::size_of::<libc::sched_attr>() as u32,
        sched_policy: libc::SCHED_OTHER as u32,
        sched_flags: 0,
        sched_nice: 0,
        sched_priority: 0,
        sched_runtime: slice_us.saturating_mul(1000),
        sched_deadline: 0,
        sched_period: 0,
    };
    // SAFETY: sched_setattr(2) reads `size` bytes of `attr`, which lives for the call; pid 0
    // is the calling thread and flags must be 0.
    let rc =
        unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const libc::sched_attr, 0) };
    rc == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_leaves_the_thread_as_it_is() {
        assert!(!short_slice(0));
    }

    #[test]
    fn a_thread_asks_for_a_short_slice() {
        // Accepted or refused by the kernel, never a crash; a refusal only on kernels that
        // do not know the attribute's size or policy.
        let taken = std::thread::spawn(|| short_slice(SLICE_US_DEFAULT)).join().unwrap();
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let v: Vec<u32> = release
            .split(|c: char| !c.is_ascii_digit())
            .take(2)
            .filter_map(|p| p.parse().ok())
            .collect();
        if v.len() == 2 && (v[0], v[1]) >= (6, 12) {
            assert!(taken, "Linux {release} takes a custom slice");
        }
    }
}
