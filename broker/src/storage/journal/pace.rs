//! Pacing of the journal's writes: at most [`JournalConfig::writes_per_s_max`] records a
//! second on average, in bursts of up to [`PACE_BURST_US`] worth, so that under load each
//! O_DSYNC write (a write and a device flush) carries more and the device sees fewer
//! operations.
//!
//! Why: a device flush costs whoever emulates or provisions the device per operation, not
//! per byte. On this project's test host (a 2-vCPU VM) the host's share of a flush is
//! charged to the VM's CPU quota: 3,200 O_DSYNC writes a second (100 MB/s in 32 KiB) made
//! the whole VM stall 9–14 ms every 100 ms, where 800 a second (the same bytes in 128 KiB)
//! did not (`perf/results/2026-12-07-journal-pace`). Cloud volumes have the same cliff as a
//! provisioned IOPS limit (a gp3 volume's baseline is 3,000 a second). Below the limit
//! nothing waits: a burst of up to [`PACE_BURST_US`] worth of writes goes at once.
//!
//! [`WritePace`] is the generic cell rate algorithm: `tat` is the theoretical time the
//! next write would start at the paced rate; a write may start once `now` is within the
//! burst tolerance of it.
//!
//! [`JournalConfig::writes_per_s_max`]: super::JournalConfig::writes_per_s_max

use std::time::{Duration, Instant};

/// Writes that may go back to back after a quiet spell, as time at the paced rate: 10 ms
/// worth (at 2,000 a second, 20 writes).
pub const PACE_BURST_US: u64 = 10_000;

/// See the module docs.
#[derive(Debug)]
pub(super) struct WritePace {
    /// Time between writes at the paced rate (`None`: not paced).
    interval: Option<Duration>,
    /// How far ahead of `tat` a write may start (the burst).
    tolerance: Duration,
    /// When the next write would start at the paced rate.
    tat: Option<Instant>,
}

impl WritePace {
    /// Paces to `writes_per_s_max` a second (0: not paced).
    pub(super) fn new(writes_per_s_max: u64) -> Self {
        if writes_per_s_max == 0 {
            return Self { interval: None, tolerance: Duration::ZERO, tat: None };
        }
        let interval = Duration::from_nanos((1_000_000_000 / writes_per_s_max).max(1));
        let burst = (writes_per_s_max.saturating_mul(PACE_BURST_US) / 1_000_000).max(1);
        let tolerance = interval * (burst - 1).min(u64::from(u32::MAX)) as u32;
        Self { interval: Some(interval), tolerance, tat: None }
    }

    /// How long a write must wait at `now` (`None`: it may start).
    pub(super) fn wait(&self, now: Instant) -> Option<Duration> {
        let tat = self.tat?;
        let allowed = tat.checked_sub(self.tolerance).unwrap_or(tat);
        allowed.checked_duration_since(now).filter(|d| !d.is_zero())
    }

    /// A write started at `now`.
    pub(super) fn started(&mut self, now: Instant) {
        if let Some(interval) = self.interval {
            self.tat = Some(self.tat.map_or(now, |t| t.max(now)) + interval);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpaced_never_waits() {
        let mut p = WritePace::new(0);
        let now = Instant::now();
        for _ in 0..1000 {
            p.started(now);
            assert_eq!(p.wait(now), None);
        }
    }

    #[test]
    fn a_burst_goes_at_once_then_writes_are_paced() {
        // 1,000 a second: 1 ms apart, bursts of 10.
        let mut p = WritePace::new(1_000);
        let t0 = Instant::now();
        for _ in 0..10 {
            assert_eq!(p.wait(t0), None);
            p.started(t0);
        }
        let wait = p.wait(t0).expect("the burst is spent");
        assert_eq!(wait, Duration::from_millis(1));
        // Started when allowed, the next waits one interval again.
        let t1 = t0 + wait;
        assert_eq!(p.wait(t1), None);
        p.started(t1);
        assert_eq!(p.wait(t1), Some(Duration::from_millis(1)));
    }

    #[test]
    fn a_quiet_spell_refills_the_burst() {
        let mut p = WritePace::new(1_000);
        let t0 = Instant::now();
        for _ in 0..10 {
            p.started(t0);
        }
        assert!(p.wait(t0).is_some());
        let later = t0 + Duration::from_millis(50);
        for _ in 0..10 {
            assert_eq!(p.wait(later), None);
            p.started(later);
        }
        assert!(p.wait(later).is_some());
    }

    #[test]
    fn the_long_run_rate_is_the_limit() {
        // Writes started as soon as allowed over one simulated second: at most the rate
        // plus the burst.
        let mut p = WritePace::new(2_000);
        let t0 = Instant::now();
        let mut now = t0;
        let mut writes = 0;
        while now < t0 + Duration::from_secs(1) {
            match p.wait(now) {
                Some(w) => now += w,
                None => {
                    p.started(now);
                    writes += 1;
                }
            }
        }
        assert!((2_000..=2_020).contains(&writes), "{writes} writes");
    }

    #[test]
    fn a_rate_above_a_write_per_nanosecond_does_not_divide_by_zero() {
        let mut p = WritePace::new(u64::MAX);
        let now = Instant::now();
        p.started(now);
        let _ = p.wait(now);
    }
}
