//! The fdatasyncs of one segment file that are in flight, so a sync that succeeded can wait
//! for the ones that may have taken its error report before its result is trusted.
//!
//! Linux reports a failed writeback or device flush once per open file description: of two
//! fdatasyncs running on one descriptor, the one that ends first may take the error report,
//! and the other returns Ok although the data it covers may not be durable. The partition
//! log syncs a segment's `.log` descriptor from several tasks (the syncer, a roll's seal, a
//! seal's trim, zero-ahead bursts). So each segment has a gate, and every such sync goes
//! through it ([`SyncGate::sync`]): it runs counted, and once it succeeded it waits until
//! every sync begun before it returned has ended. The caller fences the log when a sync
//! fails, and checks the fence after a success before anything counts as durable. Syncs begun later cannot have taken its report. (Writes through the segment's
//! O_DSYNC descriptor report their own errors: a separate open file.)

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::future::Future;
use std::rc::Rc;

use super::error::IoError;
use super::io::DiskFile;

use crate::watermark::Watermark;

/// See the module docs. Clones share the state.
#[derive(Clone, Default)]
pub(crate) struct SyncGate {
    inner: Rc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Ticket of the next sync to begin.
    next: Cell<u64>,
    /// Tickets of the syncs running.
    running: RefCell<BTreeSet<u64>>,
    /// Advanced whenever a sync ends.
    ended: Watermark,
}

impl SyncGate {
    /// fdatasync of `file`, counted from this call on (not from the first poll). On success
    /// it returns once every sync begun before it returned has ended.
    pub(crate) fn sync<F: DiskFile>(
        &self,
        file: Rc<F>,
    ) -> impl Future<Output = Result<(), IoError>> + 'static {
        let running = self.begin();
        let gate = self.clone();
        async move {
            let synced = file.fdatasync().await;
            drop(running);
            let begun = gate.next_ticket();
            synced?;
            gate.wait_earlier(begun).await;
            Ok(())
        }
    }

    /// Returns once every sync of this file begun before the call has ended: a sync of the
    /// whole filesystem that succeeded is trusted for this file after that (and a check of
    /// the caller's fence), like one of its own ([`SyncGate::sync`]).
    pub(crate) async fn settle(&self) {
        self.wait_earlier(self.next_ticket()).await;
    }

    /// Counts one sync as running until the guard drops (also when its task is cancelled).
    fn begin(&self) -> SyncGuard {
        let ticket = self.inner.next.get();
        self.inner.next.set(ticket + 1);
        self.inner.running.borrow_mut().insert(ticket);
        SyncGuard { gate: self.clone(), ticket }
    }

    /// The ticket the next sync to begin will get: [`SyncGate::wait_earlier`] with it waits
    /// for every sync begun so far.
    fn next_ticket(&self) -> u64 {
        self.inner.next.get()
    }

    /// Returns once no sync with a ticket below `ticket` is running.
    async fn wait_earlier(&self, ticket: u64) {
        loop {
            let seen = self.inner.ended.get();
            if self.inner.running.borrow().first().is_none_or(|t| *t >= ticket) {
                return;
            }
            self.inner.ended.wait_for(seen + 1).await;
        }
    }

    /// Syncs running now.
    #[cfg(test)]
    pub(crate) fn running(&self) -> usize {
        self.inner.running.borrow().len()
    }
}

/// One sync counted as running; see [`SyncGate::begin`].
struct SyncGuard {
    gate: SyncGate,
    ticket: u64,
}

impl Drop for SyncGuard {
    fn drop(&mut self) {
        let inner = &self.gate.inner;
        inner.running.borrow_mut().remove(&self.ticket);
        inner.ended.advance(inner.ended.get() + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::yield_now;

    #[test]
    fn waits_for_syncs_begun_earlier_only() {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let gate = SyncGate::default();
                gate.wait_earlier(gate.next_ticket()).await; // nothing running: at once
                let (a, b) = (gate.begin(), gate.begin());
                let limit = gate.next_ticket();
                let later = gate.begin(); // begun after: not waited for
                let done = Rc::new(Cell::new(false));
                let waiter = {
                    let (gate, done) = (gate.clone(), done.clone());
                    glommio::spawn_local(async move {
                        gate.wait_earlier(limit).await;
                        done.set(true);
                    })
                };
                yield_now().await;
                drop(a);
                yield_now().await;
                assert_eq!(gate.running(), 2);
                assert!(!done.get(), "one earlier sync still runs");
                drop(b);
                waiter.await;
                assert!(done.get());
                assert_eq!(gate.running(), 1, "the later one runs on");
                drop(later);
                assert_eq!(gate.running(), 0);
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
