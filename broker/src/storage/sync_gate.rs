//! The syncs of one log's segment files that are in flight, so a sync that succeeded can
//! wait for the others before its result is trusted.
//!
//! Linux reports a failed writeback or device flush once per open file: of two fdatasyncs
//! running on one descriptor, the one that ends first may take the error report, and the
//! other returns Ok although the data it covers may not be durable. The partition log syncs
//! a segment from several tasks (the syncer, a roll's seal, zero-ahead bursts, a seal's
//! trim), all on the segment's one descriptor. So every such sync runs counted here and
//! fences the log when it fails, and a sync that succeeded waits until none is running
//! ([`SyncGate::wait_idle`]) and then checks the fence before anything counts as durable.

use std::cell::Cell;
use std::rc::Rc;

use crate::watermark::Watermark;

/// See the module docs. Clones share the count.
#[derive(Clone, Default)]
pub(crate) struct SyncGate {
    running: Rc<Cell<u32>>,
    ended: Watermark,
}

impl SyncGate {
    /// Counts one sync as running until the guard drops (also when its task is cancelled).
    pub(crate) fn begin(&self) -> SyncGuard {
        self.running.set(self.running.get() + 1);
        SyncGuard(self.clone())
    }

    /// Returns once no sync is running.
    pub(crate) async fn wait_idle(&self) {
        while self.running.get() > 0 {
            let seen = self.ended.get();
            self.ended.wait_for(seen + 1).await;
        }
    }

    /// Syncs running now.
    #[cfg(test)]
    pub(crate) fn running(&self) -> u32 {
        self.running.get()
    }
}

/// One sync counted as running; see [`SyncGate::begin`].
pub(crate) struct SyncGuard(SyncGate);

impl Drop for SyncGuard {
    fn drop(&mut self) {
        let s = &self.0;
        s.running.set(s.running.get() - 1);
        s.ended.advance(s.ended.get() + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_idle_returns_when_the_last_guard_drops() {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let gate = SyncGate::default();
                gate.wait_idle().await; // nothing running: at once
                let (a, b) = (gate.begin(), gate.begin());
                let done = Rc::new(Cell::new(false));
                let waiter = {
                    let (gate, done) = (gate.clone(), done.clone());
                    glommio::spawn_local(async move {
                        gate.wait_idle().await;
                        done.set(true);
                    })
                };
                futures_lite::future::yield_now().await;
                drop(a);
                futures_lite::future::yield_now().await;
                assert_eq!(gate.running(), 1);
                assert!(!done.get(), "one sync still runs");
                drop(b);
                waiter.await;
                assert!(done.get());
                assert_eq!(gate.running(), 0);
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
