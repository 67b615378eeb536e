//! A monotonically increasing counter that tasks on the same shard can wait on.
//!
//! Used for a partition's high watermark (long-poll fetch and subscriptions wake when it
//! passes their offset). Single-threaded: no locks; wakers are kept in a small vector.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// See the module docs.
#[derive(Clone, Default)]
pub struct Watermark {
    inner: Rc<RefCell<Inner>>,
}

#[derive(Default)]
struct Inner {
    value: u64,
    closed: bool,
    next_id: u64,
    /// (waiter id, target, waker); a dropped waiter removes its entry.
    waiters: Vec<(u64, u64, Waker)>,
}

impl std::fmt::Debug for Watermark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Watermark({})", self.get())
    }
}

impl Watermark {
    /// A watermark starting at `value`.
    pub fn new(value: u64) -> Self {
        Watermark { inner: Rc::new(RefCell::new(Inner { value, ..Inner::default() })) }
    }

    /// Current value.
    pub fn get(&self) -> u64 {
        self.inner.borrow().value
    }

    /// Raises the value (never lowers it) and wakes every waiter whose target it reached.
    /// Allocates nothing when no waiter is due (the common case: a partition's marks move
    /// on every append).
    pub fn advance(&self, value: u64) {
        let wake: Vec<Waker> = {
            let mut inner = self.inner.borrow_mut();
            if value <= inner.value {
                return;
            }
            inner.value = value;
            if !inner.waiters.iter().any(|w| w.1 <= value) {
                return;
            }
            // One pass (removing due waiters one by one moved the rest each time: with
            // thousands waiting on one mark, every advance was quadratic).
            let (due, kept): (Vec<_>, Vec<_>) =
                std::mem::take(&mut inner.waiters).into_iter().partition(|w| w.1 <= value);
            inner.waiters = kept;
            due.into_iter().map(|w| w.2).collect()
        };
        wake.into_iter().for_each(Waker::wake);
    }

    /// Whether [`Watermark::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.inner.borrow().closed
    }

    /// Wakes every waiter for good: waits return `false` from now on.
    pub fn close(&self) {
        let wake: Vec<Waker> = {
            let mut inner = self.inner.borrow_mut();
            inner.closed = true;
            inner.waiters.drain(..).map(|(_, _, w)| w).collect()
        };
        wake.into_iter().for_each(Waker::wake);
    }

    /// Resolves to `true` once the value is `>= target`, or `false` if the watermark closed.
    pub fn wait_for(&self, target: u64) -> WaitFor {
        let id = {
            let mut inner = self.inner.borrow_mut();
            inner.next_id += 1;
            inner.next_id
        };
        WaitFor { mark: self.clone(), target, id }
    }
}

/// Future returned by [`Watermark::wait_for`].
pub struct WaitFor {
    mark: Watermark,
    target: u64,
    id: u64,
}

impl Future for WaitFor {
    type Output = bool;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let mut inner = self.mark.inner.borrow_mut();
        if inner.value >= self.target {
            return Poll::Ready(true);
        }
        if inner.closed {
            return Poll::Ready(false);
        }
        let (id, target) = (self.id, self.target);
        match inner.waiters.iter_mut().find(|(i, _, _)| *i == id) {
            Some(slot) => slot.2 = cx.waker().clone(),
            None => inner.waiters.push((id, target, cx.waker().clone())),
        }
        Poll::Pending
    }
}

impl Drop for WaitFor {
    fn drop(&mut self) {
        if let Ok(mut inner) = self.mark.inner.try_borrow_mut() {
            let id = self.id;
            inner.waiters.retain(|(i, _, _)| *i != id);
        }
    }
}

/// Resolves when any of the waits does: `true` if it reached its target (or there are no
/// waits), `false` if its watermark was closed.
pub struct WaitAny(pub Vec<WaitFor>);

impl Future for WaitAny {
    type Output = bool;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        for w in self.0.iter_mut() {
            if let Poll::Ready(reached) = Pin::new(w).poll(cx) {
                return Poll::Ready(reached);
            }
        }
        if self.0.is_empty() {
            Poll::Ready(true)
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_wake_in_order_and_dropped_ones_leave() {
        glommio::LocalExecutor::default().run(async {
            let mark = Watermark::new(0);
            let m = mark.clone();
            let t = glommio::spawn_local(async move { m.wait_for(5).await });
            for _ in 0..100 {
                drop(mark.wait_for(3)); // never polled: must not linger
            }
            glommio::executor().yield_now().await;
            mark.advance(4);
            assert_eq!(mark.inner.borrow().waiters.len(), 1);
            mark.advance(5);
            assert!(t.await);
            assert!(mark.inner.borrow().waiters.is_empty());
            mark.close();
            assert!(!mark.wait_for(9).await);
        });
    }
}
