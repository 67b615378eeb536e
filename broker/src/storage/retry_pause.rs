//! The pause before storage work that failed for lack of space is tried again: 10 ms,
//! doubling per failure up to 1 s, back to nothing after a success. Shared by the shard
//! journal's file creation (`journal/mod.rs`) and a journaled log's segment writes
//! (`log/writer.rs`), so both retry on one schedule.

use std::time::Duration;

/// The first pause, and the granularity at which a waiter checks for a close.
pub(crate) const RETRY_PAUSE_MS_MIN: u64 = 10;
/// The longest pause.
pub(crate) const RETRY_PAUSE_MS_MAX: u64 = 1000;

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct RetryPause {
    /// The last pause (0: the last try did not fail).
    ms: u64,
}

impl RetryPause {
    /// A try failed: the pause before the next one.
    pub(crate) fn failed(&mut self) -> Duration {
        self.ms = (self.ms * 2).clamp(RETRY_PAUSE_MS_MIN, RETRY_PAUSE_MS_MAX);
        Duration::from_millis(self.ms)
    }

    /// A try succeeded; true if it ended a run of failures.
    pub(crate) fn succeeded(&mut self) -> bool {
        std::mem::take(&mut self.ms) > 0
    }

    /// The last try failed.
    pub(crate) fn failing(&self) -> bool {
        self.ms > 0
    }
}

#[cfg(test)]
mod tests {
    use super::RetryPause;

    #[test]
    fn pauses_double_up_to_a_second_and_a_success_resets_them() {
        let mut p = RetryPause::default();
        assert!(!p.failing());
        let ms: Vec<u128> = (0..9).map(|_| p.failed().as_millis()).collect();
        assert_eq!(ms, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        assert!(p.failing());
        assert!(p.succeeded(), "ended a run of failures");
        assert!(!p.succeeded() && !p.failing());
        assert_eq!(p.failed().as_millis(), 10);
    }
}
