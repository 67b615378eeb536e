//! Group commit of syncfs for one shard's data filesystem: the journal checkpoint's one
//! device flush for all of its partitions' segments (issue 19,
//! `perf/results/2026-12-05-partitions-1000-checkpoints`).
//!
//! # Contract
//! - [`FilesystemSync::sync`] returns Ok once a syncfs that began after the call succeeded:
//!   every write to the filesystem completed before the call is then durable. Callers
//!   arriving while one runs share the next; the first caller lets the others of its moment
//!   join (one yield) before it begins.
//! - The syncfs runs in a task of its own, so a caller that goes away (its log closed) does
//!   not leave the others waiting on a sync nobody ends.
//! - A failure is final: that call and every later one fail with its error, so nothing
//!   counts as synced through this filesystem until the process restarts (a later syncfs
//!   may succeed without persisting what the failed one covered — its error is reported
//!   once). Whoever depended on it fences itself.
//! - Per-file syncs still run beside it (a roll's fdatasync of the old segment), and the
//!   two must not trust each other's luck: a filesystem sync that succeeded is trusted for
//!   a file once that file's syncs begun before it returned ended
//!   ([`super::sync_gate::SyncGate::settle`]), and a file's sync that succeeded once every
//!   filesystem sync begun before it returned ended and none failed
//!   ([`FilesystemSync::settle`]): a failed flush may have lost what either covered.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use futures_lite::future::yield_now;

use super::error::IoError;
use super::io::Disk;
use crate::watermark::Watermark;

/// See the module docs. Clones share the state.
pub(crate) struct FilesystemSync<D: Disk> {
    inner: Rc<Inner<D>>,
}

impl<D: Disk> Clone for FilesystemSync<D> {
    fn clone(&self) -> Self {
        FilesystemSync { inner: self.inner.clone() }
    }
}

struct Inner<D: Disk> {
    disk: D,
    fs: D::Filesystem,
    /// Syncs begun so far.
    begun: Cell<u64>,
    /// Syncs ended so far (advanced as each ends).
    ended: Watermark,
    /// A caller is gathering the next sync, or one runs.
    busy: Cell<bool>,
    /// The first failure (final).
    failed: RefCell<Option<IoError>>,
    /// Syncs that succeeded, for the journal's stats.
    completed: Cell<u64>,
}

impl<D: Disk> FilesystemSync<D> {
    pub(crate) fn new(disk: D, fs: D::Filesystem) -> Self {
        FilesystemSync {
            inner: Rc::new(Inner {
                disk,
                fs,
                begun: Cell::new(0),
                ended: Watermark::new(0),
                busy: Cell::new(false),
                failed: RefCell::new(None),
                completed: Cell::new(0),
            }),
        }
    }

    /// Whether `path` is on this filesystem.
    pub(crate) async fn covers(&self, path: &std::path::Path) -> Result<bool, IoError> {
        self.inner.disk.on_filesystem(&self.inner.fs, path).await
    }

    /// The failure, if a sync failed.
    pub(crate) fn failed(&self) -> Option<IoError> {
        self.inner.failed.borrow().clone()
    }

    /// Syncs that succeeded so far.
    pub(crate) fn completed(&self) -> u64 {
        self.inner.completed.get()
    }

    /// Returns once every filesystem sync begun before the call has ended; then
    /// [`FilesystemSync::failed`] says whether one failed.
    pub(crate) async fn settle(&self) {
        // `ended` never closes.
        self.inner.ended.wait_for(self.inner.begun.get()).await;
    }

    /// See the module docs.
    pub(crate) async fn sync(&self) -> Result<(), IoError> {
        let inner = &self.inner;
        // A sync that begins after now; one running now may have begun before our writes
        // completed.
        let need = inner.begun.get() + 1;
        loop {
            if let Some(e) = self.failed() {
                return Err(e);
            }
            let seen = inner.ended.get();
            if seen >= need {
                return Ok(());
            }
            if !inner.busy.get() {
                inner.busy.set(true);
                let inner = inner.clone();
                glommio::spawn_local(async move {
                    // Let the callers of this moment (a checkpoint wakes all its
                    // partitions at once) join before it begins.
                    yield_now().await;
                    inner.begun.set(inner.begun.get() + 1);
                    let synced = inner.disk.sync_filesystem(&inner.fs).await;
                    match synced {
                        Ok(()) => inner.completed.set(inner.completed.get() + 1),
                        Err(e) => {
                            inner.failed.borrow_mut().get_or_insert(e);
                        }
                    }
                    inner.busy.set(false);
                    inner.ended.advance(inner.begun.get());
                })
                .detach();
                continue;
            }
            inner.ended.wait_for(seen + 1).await;
        }
    }
}
