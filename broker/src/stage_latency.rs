//! Per-stage latency on this shard: where a request's time goes, so a benchmark's tail can be
//! attributed (issue 26).
//!
//! Contract: one set of HDR histograms per thread (a shard is one thread), recorded without
//! locks or atomics (`record` borrows a thread-local cell: a few nanoseconds), read by the
//! stats api on the same shard (`summaries`), optionally reset after reading so a benchmark
//! measures its own window. Values are microseconds, 1 µs to 60 s, 2 significant figures
//! (1 % resolution); values beyond are clamped. Simulations and tests record into their own
//! thread's set, which nobody reads.
//!
//! Stages, in the order a produce request meets them:
//! - `read_wake`: a connection's socket read completed (its task woken) → the task runs
//!   (its turn on the shard: how long bytes that arrived wait for the broker to look).
//! - `frame_read`: a request frame's first bytes read from the socket → the frame complete
//!   (a large frame takes several reads, each waiting for the socket and the shard's turn).
//! - `request_queue`: frame complete on the socket → its handler starts (scheduling).
//! - `log_queue`: a batch enqueued on its partition's log → the write carrying it submitted
//!   (with the shard journal: the write of its journal record, which its ack waits for).
//! - `write`: write submitted → completed (plain O_DIRECT writes).
//! - `write_dsync`: the same for O_DSYNC writes (durable when they complete).
//! - `sync`: an fdatasync of the active segment, submitted → completed.
//! - `produce_ack`: a produce request's batches enqueued → every ack level reached.
//! - `produce`: frame complete → response ready (the whole request on this shard).
//! - `fetch`: frame complete → response ready.
//! - `push`: a subscription's new data visible (its wake-up) → the push frame queued.
//! - `response_write`: a response or push frame queued on its connection → written to the
//!   socket (the connection's writer task: its turn on the shard, then the write).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// A stage (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Socket read completed → the connection's task runs.
    ReadWake,
    /// Frame's first bytes read → frame complete.
    FrameRead,
    /// Frame complete → handler starts.
    RequestQueue,
    /// Batch enqueued → its write submitted.
    LogQueue,
    /// Plain write submitted → completed.
    Write,
    /// O_DSYNC write submitted → completed.
    WriteDsync,
    /// fdatasync submitted → completed.
    Sync,
    /// Produce batches enqueued → acks reached.
    ProduceAck,
    /// Produce frame complete → response ready.
    Produce,
    /// Fetch frame complete → response ready.
    Fetch,
    /// Subscription woken by new data → push queued.
    Push,
    /// Frame queued on its connection → written to the socket.
    ResponseWrite,
}

impl Stage {
    /// Every stage, in report order.
    pub const ALL: [Stage; 12] = [
        Stage::ReadWake,
        Stage::FrameRead,
        Stage::RequestQueue,
        Stage::LogQueue,
        Stage::Write,
        Stage::WriteDsync,
        Stage::Sync,
        Stage::ProduceAck,
        Stage::Produce,
        Stage::Fetch,
        Stage::Push,
        Stage::ResponseWrite,
    ];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Stage::ReadWake => "read_wake",
            Stage::FrameRead => "frame_read",
            Stage::RequestQueue => "request_queue",
            Stage::LogQueue => "log_queue",
            Stage::Write => "write",
            Stage::WriteDsync => "write_dsync",
            Stage::Sync => "sync",
            Stage::ProduceAck => "produce_ack",
            Stage::Produce => "produce",
            Stage::Fetch => "fetch",
            Stage::Push => "push",
            Stage::ResponseWrite => "response_write",
        }
    }
}

const VALUE_MAX_US: u64 = 60_000_000;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, VALUE_MAX_US, 2).expect("static bounds")
}

thread_local! {
    static STAGES: RefCell<Vec<Histogram<u64>>> =
        RefCell::new(Stage::ALL.iter().map(|_| histogram()).collect());
}

/// Records one sample of `stage`.
#[inline]
pub fn record(stage: Stage, elapsed: Duration) {
    let us = (elapsed.as_micros() as u64).clamp(1, VALUE_MAX_US);
    STAGES.with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            s[stage as usize].saturating_record(us);
        }
    });
}

/// Records the time since `start` as one sample of `stage`.
#[inline]
pub fn record_since(stage: Stage, start: Instant) {
    record(stage, start.elapsed());
}

/// A future whose wake-up → next poll delay is recorded as `stage`: how long its task waited
/// for its turn on the shard once what it waited for had happened.
pub struct WakeTimed<F> {
    inner: F,
    stage: Stage,
    note: NoteWaker,
}

/// `inner`, its wake-up → poll delays recorded as `stage` (see [`WakeTimed`]).
pub fn wake_timed<F: Future + Unpin>(stage: Stage, inner: F) -> WakeTimed<F> {
    WakeTimed { inner, stage, note: NoteWaker::default() }
}

impl<F: Future + Unpin> Future for WakeTimed<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let woke = this.note.woke.swap(0, Ordering::Relaxed);
        if woke != 0 {
            record(this.stage, Duration::from_nanos(now_ns().saturating_sub(woke)));
        }
        Pin::new(&mut this.inner).poll(&mut Context::from_waker(this.note.waker(cx)))
    }
}

/// A future that also says when it was last woken (see [`woken`]).
pub struct Woken<F> {
    inner: F,
    note: NoteWaker,
}

/// `inner`, its output paired with when it was last woken before it was ready (`None` if it
/// was ready at once): where a stage that starts with an event it waited for begins, the
/// wait for its task's turn included.
pub fn woken<F: Future + Unpin>(inner: F) -> Woken<F> {
    Woken { inner, note: NoteWaker::default() }
}

impl<F: Future + Unpin> Future for Woken<F> {
    type Output = (F::Output, Option<Instant>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll(&mut Context::from_waker(this.note.waker(cx))) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(out) => {
                let woke = this.note.woke.load(Ordering::Relaxed);
                Poll::Ready((out, (woke != 0).then(|| base() + Duration::from_nanos(woke))))
            }
        }
    }
}

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// Nanoseconds since the first call (never 0 once called: 0 means "not woken").
fn now_ns() -> u64 {
    (base().elapsed().as_nanos() as u64).max(1)
}

/// The waker [`WakeTimed`] and [`Woken`] hand their inner future, made once per task waker
/// (a poll with the same task's waker reuses it: no allocation per poll).
#[derive(Default)]
struct NoteWaker {
    /// When it was last woken ([`now_ns`]; 0: not since reset).
    woke: Arc<AtomicU64>,
    /// The task's waker it was made for, and the note wrapping it.
    made: Option<(Waker, Waker)>,
}

impl NoteWaker {
    fn waker(&mut self, cx: &Context<'_>) -> &Waker {
        if !matches!(&self.made, Some((task, _)) if task.will_wake(cx.waker())) {
            let note = NoteWake { woke: self.woke.clone(), waker: cx.waker().clone() };
            self.made = Some((cx.waker().clone(), Waker::from(Arc::new(note))));
        }
        &self.made.as_ref().expect("made above").1
    }
}

/// Notes when it is woken, then wakes the task.
struct NoteWake {
    woke: Arc<AtomicU64>,
    waker: Waker,
}

impl Wake for NoteWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woke.store(now_ns(), Ordering::Relaxed);
        self.waker.wake_by_ref();
    }
}

/// This thread's stages with at least one sample; starts them afresh when `reset`.
pub fn summaries(reset: bool) -> Vec<wire::StageLatency> {
    STAGES.with(|s| {
        let mut s = s.borrow_mut();
        let out = Stage::ALL
            .iter()
            .zip(s.iter())
            .filter(|(_, h)| !h.is_empty())
            .map(|(stage, h)| wire::StageLatency {
                stage: stage.name().into(),
                count: h.len(),
                p50_us: h.value_at_quantile(0.50),
                p90_us: h.value_at_quantile(0.90),
                p99_us: h.value_at_quantile(0.99),
                p999_us: h.value_at_quantile(0.999),
                max_us: h.max(),
            })
            .collect();
        if reset {
            s.iter_mut().for_each(Histogram::reset);
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_summarizes_and_resets_per_thread() {
        for us in 1..=1000 {
            record(Stage::Write, Duration::from_micros(us));
        }
        record(Stage::Sync, Duration::from_secs(3600)); // clamped, not lost
        let s = summaries(true);
        let write = s.iter().find(|l| l.stage == "write").unwrap();
        assert_eq!(write.count, 1000);
        assert!((495..=505).contains(&write.p50_us), "{write:?}");
        assert!((985..=1000).contains(&write.p99_us), "{write:?}");
        let sync = s.iter().find(|l| l.stage == "sync").unwrap();
        assert!(sync.max_us >= VALUE_MAX_US * 99 / 100, "{sync:?}");
        assert!(summaries(false).is_empty(), "reset");
        // Another thread has its own set.
        std::thread::spawn(|| assert!(summaries(false).is_empty())).join().unwrap();
    }
}
