//! Transparent huge pages off for the broker process (`transparent_huge_pages`, default
//! false).
//!
//! The allocator (mimalloc) asks for huge pages on its arenas (`madvise(MADV_HUGEPAGE)`),
//! which the kernel grants in its `madvise` mode (the usual default, and this project's test
//! machine) as in `always` mode. Then the first touch of a 2 MiB-aligned stretch of new heap
//! memory faults in a whole huge page, which the faulting thread zeroes before it goes on.
//! On a shard that is a stall for every connection it serves: 3–7 ms per fault on a VM whose
//! memory the host backs on first touch. A broker touches new memory all the time while its
//! batch cache (`cache_bytes_per_shard`) fills, and again whenever the allocator returns
//! freed memory to the kernel and reuses the range. With 4 KiB pages the same zeroing comes
//! in 4 KiB steps between requests instead of one block. Measured (fixed-rate-16p-1kb,
//! 100,000 msg/s, durable): e2e p99 7–14 ms with THP, 1.6 ms without
//! (`perf/results/2026-12-05-thp-stalls`).
//!
//! `PR_SET_THP_DISABLE` sets a flag on the process's address space: it covers every thread
//! (those started before it, too), every mapping (whoever advised it) and is inherited by
//! children.

use std::io;

/// Turns transparent huge pages off (`enable` false) or leaves the system's setting
/// (`enable` true) for this whole process.
pub fn apply(enable: bool) -> io::Result<()> {
    if enable {
        return Ok(());
    }
    // SAFETY: PR_SET_THP_DISABLE takes one integer argument (1 = disable) and changes a flag
    // of this process's memory map; no memory is passed to the kernel.
    let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1 as libc::c_ulong, 0, 0, 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The system's THP mode (`always`, `madvise` or `never`), if the kernel has THP.
pub fn system_mode() -> Option<String> {
    let text = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").ok()?;
    selected(&text).map(str::to_owned)
}

/// The bracketed choice of a sysfs selector such as `always [madvise] never`.
fn selected(text: &str) -> Option<&str> {
    let start = text.find('[')? + 1;
    let len = text[start..].find(']')?;
    Some(&text[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bracketed_mode_is_the_selected_one() {
        assert_eq!(selected("[always] madvise never\n"), Some("always"));
        assert_eq!(selected("always [madvise] never"), Some("madvise"));
        assert_eq!(selected("always madvise never"), None);
    }
}
