//! A member of the shard journal: one partition log as the journal knows it — its
//! journaled end, its queued bytes, what a checkpoint asks it to sync (`want_synced`) and
//! how far it did (`synced`), and the callbacks into its log. The contract is the journal
//! module's (`mod.rs`).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::storage::error::IoError;
use crate::watermark::Watermark;

/// What the journal calls when a member's journaled end or wanted sync moved.
pub(crate) type Notify = Box<dyn Fn()>;
/// What the journal calls when it failed under a member.
pub(crate) type OnFailed = Box<dyn Fn(IoError)>;

/// One partition log as the journal knows it.
pub struct Member {
    pub(super) topic_id: u64,
    pub(super) partition: u32,
    /// End of this member's entries in completed records.
    pub(super) journaled: Cell<u64>,
    /// Bytes of this member's entries queued or in flight (its log counts them in its
    /// write budget, so the journal's queue is bounded like the segment writer's).
    pub(super) queued_bytes: Cell<usize>,
    /// Offset below which the member's segment files are synced: journal entries below it
    /// are no longer needed. Closed when the member is fenced or gone.
    pub(crate) synced: Watermark,
    /// A checkpoint asks the member to sync its segments up to here.
    pub(crate) want_synced: Watermark,
    /// The last checkpoint that asked wants the sync through the filesystem sync (shared
    /// with its other members) rather than the member's own fdatasync.
    pub(super) by_filesystem: Cell<bool>,
    /// Called when `journaled` or `want_synced` moved.
    pub(super) notify: RefCell<Option<Notify>>,
    /// Called when the journal failed while the member depended on it.
    pub(super) on_failed: RefCell<Option<OnFailed>>,
}

/// A member's topic id, partition and address (two incarnations of one partition may
/// share a journal for a moment).
pub(super) type MemberKey = (u64, u32, usize);

impl Member {
    pub(super) fn key(self: &Rc<Self>) -> MemberKey {
        (self.topic_id, self.partition, Rc::as_ptr(self) as usize)
    }

    /// Whether the checkpoint that asked last wants the filesystem synced (see
    /// `checkpoint.rs`) rather than the member's own segment.
    pub(crate) fn sync_by_filesystem(&self) -> bool {
        self.by_filesystem.get()
    }

    /// End of this member's entries in completed records.
    pub(crate) fn journaled(&self) -> u64 {
        self.journaled.get()
    }

    /// Bytes of this member's entries not yet in a completed record.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.queued_bytes.get()
    }

    pub(super) fn dequeued(&self, bytes: usize) {
        self.queued_bytes.set(self.queued_bytes.get() - bytes);
    }

    /// Sets what the journal calls when this member's journaled end or wanted sync moved,
    /// and when the journal failed under it.
    pub(crate) fn set_callbacks(&self, notify: Notify, on_failed: OnFailed) {
        *self.notify.borrow_mut() = Some(notify);
        *self.on_failed.borrow_mut() = Some(on_failed);
    }

    pub(super) fn notify(&self) {
        if let Some(f) = self.notify.borrow().as_ref() {
            f();
        }
    }

    pub(super) fn failed(&self, e: IoError) {
        if let Some(f) = self.on_failed.borrow().as_ref() {
            f(e);
        }
    }
}
