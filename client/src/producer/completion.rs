//! Completion: one cell per batch, shared by all its records.
//!
//! Owns [`Outcome`], which the accumulator creates when a batch opens and completes exactly
//! once (the sender task with the broker's answer, or the accumulator when the batch cannot
//! be built or sent), and [`SendFuture`], the future `Producer::send` returns: that cell plus
//! the record's index in the batch. A record costs no channel and no allocation of its own;
//! the futures of a batch resolve together, each to its own offset.

use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Poll, Waker};

use crate::error::ClientError;

/// How a batch ended: `(partition, base offset)` or the error every record of it gets.
/// The base offset is `u64::MAX` when the broker does not report offsets (ack `none`).
pub(super) type BatchResult = Result<(u32, u64), ClientError>;

/// The completion cell all records of one batch share.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    result: OnceLock<BatchResult>,
    wakers: Mutex<Vec<Option<Waker>>>,
}

impl Outcome {
    pub(super) fn complete(&self, result: BatchResult) {
        let _ = self.result.set(result);
        let wakers = std::mem::take(&mut *self.wakers.lock().expect("outcome lock"));
        for w in wakers.into_iter().flatten() {
            w.wake();
        }
    }
}

/// Resolves to where a record landed: `(partition, offset)`.
#[derive(Debug)]
pub struct SendFuture {
    outcome: Arc<Outcome>,
    index: u32,
    /// This future's entry in `outcome.wakers`, once registered.
    slot: Option<usize>,
}

impl SendFuture {
    /// The future of the record at `index` in the batch `outcome` completes.
    pub(super) fn new(outcome: Arc<Outcome>, index: u32) -> SendFuture {
        SendFuture { outcome, index, slot: None }
    }

    fn ready(&self, r: &BatchResult) -> Result<(u32, u64), ClientError> {
        match r {
            Ok((partition, base)) if *base == u64::MAX => Ok((*partition, u64::MAX)),
            Ok((partition, base)) => Ok((*partition, base + u64::from(self.index))),
            Err(e) => Err(e.clone()),
        }
    }
}

impl std::future::Future for SendFuture {
    type Output = Result<(u32, u64), ClientError>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Self::Output> {
        if let Some(r) = self.outcome.result.get() {
            return Poll::Ready(self.ready(r));
        }
        let outcome = self.outcome.clone();
        let mut wakers = outcome.wakers.lock().expect("outcome lock");
        // `complete` sets the result before it takes the wakers: checked under the lock, no
        // wake-up is lost.
        if let Some(r) = outcome.result.get() {
            drop(wakers);
            return Poll::Ready(self.ready(r));
        }
        match self.slot {
            Some(i) => match &mut wakers[i] {
                Some(w) if w.will_wake(cx.waker()) => {}
                w => *w = Some(cx.waker().clone()),
            },
            None => {
                wakers.push(Some(cx.waker().clone()));
                self.slot = Some(wakers.len() - 1);
            }
        }
        Poll::Pending
    }
}
