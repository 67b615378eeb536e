//! Long work in the background giving the shard up on time: [`TimeSlice::yield_if_due`]
//! waits for a timer once [`SLICE`] of work passed since the last time it did.
//!
//! Why not `glommio::yield_if_needed`: it yields only once the executor's preempt timer
//! fired, and while the latency-sensitive `requests` queue has no task to run (its
//! connections waiting for data) that timer is glommio's default, 100 ms. A request arriving
//! does not end the running queue's slice, so a key index build or a table's replay held
//! the shard up to 100 ms after it (`tests/tests/peer_inbox.rs`: produces waited 100–200 ms
//! during a build). A 2 ms preempt timer for the whole executor did the same for every
//! task, at ~5 % more CPU per GB at fixed-rate-16p-1kb; this costs a clock read per check.

use std::time::{Duration, Instant};

/// Work between two yields at most (the `requests` queue asks for 1 ms).
pub const SLICE: Duration = Duration::from_millis(1);

/// See the module docs.
pub struct TimeSlice {
    since: Instant,
}

impl Default for TimeSlice {
    fn default() -> Self {
        TimeSlice { since: Instant::now() }
    }
}

impl TimeSlice {
    /// Gives the shard up (the executor then polls I/O and runs what it woke) if [`SLICE`]
    /// passed since the last time; else only what `yield_if_needed` would.
    pub async fn yield_if_due(&mut self) {
        if self.since.elapsed() >= SLICE {
            // Not `yield_task_queue_now`: it lets queues run that are runnable already, but
            // a request's arrival is only seen when the executor polls its rings, which it
            // does once nothing is runnable: a short sleep makes this task wait for a
            // timer, so the executor polls (and runs what arrived) before it goes on.
            glommio::timer::sleep(Duration::from_micros(1)).await;
            self.since = Instant::now();
        } else {
            glommio::yield_if_needed().await;
        }
    }
}
