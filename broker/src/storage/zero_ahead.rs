//! Zero-ahead: the space just past a fresh segment's data is written with zeros and synced
//! in the background, so appends overwrite blocks that already exist.
//!
//! Appends into fallocated space write unwritten extents: the filesystem converts them when
//! the write completes, and the next fdatasync (or O_DSYNC write) must commit that conversion
//! to its journal before it returns. On ext4 that is most of a sync's latency. An append over
//! blocks that already hold bytes is a plain overwrite and its sync only flushes the device
//! (`perf/results/2026-11-29-zero-ahead.md`). Reused segments (`segment_recycle`) get this for
//! free; zero-ahead gives it to fresh ones, at the price of writing each byte twice.
//!
//! # Contract
//! - Owned by the partition's writer task, one per active segment.
//! - A zero write covers only pages at or after the first page past everything submitted
//!   when it starts ([`ZeroAhead::next_piece`] takes that floor), and the writer calls
//!   [`ZeroAhead::before_write`] before every write it submits, which waits for a zero write
//!   in flight over any of the same pages. So zeros never land on data, whatever order the
//!   device completes writes in.
//! - Zeros past the data are a clean end for recovery, exactly like unwritten space.
//! - A failed zero write stops zeroing for the segment (appends work on unwritten space
//!   too).
//! - A burst that reaches its goal is synced by its own fdatasync, concurrently with the
//!   syncer's (the device coalesces them). It shares the descriptor, and so its error
//!   report, with the segment's other syncs, so it could take an error that concerned
//!   data. Hence it runs counted in the segment's [`SyncGate`] and a failed zero sync fences
//!   the log from its own task (see `sync_gate.rs`).

use std::rc::Rc;

use futures_lite::future::poll_once;
use glommio::task::JoinHandle;
use tracing::warn;

use super::error::IoError;
use super::io::DiskFile;
use super::segment::{align_down, align_up};
use super::sync_gate::SyncGate;
use crate::watermark::Watermark;

type IoTask = JoinHandle<Result<(), IoError>>;

/// A zero write in flight over `[start, end)`.
struct ZeroWrite {
    task: IoTask,
    start: u64,
    end: u64,
}

/// See the module docs.
pub(crate) struct ZeroAhead<F: DiskFile> {
    file: Rc<F>,
    /// Zeros (or data, or a reused file's old bytes) reach up to here; the next piece starts
    /// here or past the data, whichever is further.
    zeroed_end: u64,
    /// Where the writer started appending to this segment.
    origin: u64,
    /// Zeroed bytes no sync has been started for yet.
    unsynced_bytes: u64,
    /// Where the current (or last) burst wants zeros to reach.
    target: u64,
    write: Option<ZeroWrite>,
    /// A zero write failed: no more zeroing in this segment.
    stopped: bool,
    sync: Option<IoTask>,
    /// Advanced when a zero write or sync completes, so an idle writer goes on.
    wake: Watermark,
    /// The segment's syncs in flight.
    syncs: SyncGate,
    /// Fences the log.
    on_sync_error: Rc<dyn Fn(IoError)>,
}

/// What a zero-ahead step did, for the log's counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ZeroProgress {
    /// Bytes of zeros whose write completed.
    pub zeroed_bytes: u64,
    /// Syncs that completed.
    pub syncs: u64,
    /// Data writes that waited for a zero write over the same pages.
    pub waits: u64,
}

impl<F: DiskFile> ZeroAhead<F> {
    /// Zero-ahead over `file`, whose first `zeroed_end` bytes are written blocks already and
    /// whose data the writer starts appending at `origin`.
    pub(crate) fn new(
        file: Rc<F>,
        zeroed_end: u64,
        origin: u64,
        wake: Watermark,
        syncs: SyncGate,
        on_sync_error: Rc<dyn Fn(IoError)>,
    ) -> Self {
        ZeroAhead {
            file,
            zeroed_end,
            origin,
            unsynced_bytes: 0,
            target: 0,
            write: None,
            stopped: false,
            sync: None,
            wake,
            syncs,
            on_sync_error,
        }
    }

    /// Collects finished work without waiting. Once zeros reach a burst's goal, starts one
    /// sync of what was zeroed. A burst the data overtook starts none: the partition is
    /// busy, its data syncs commit the journal anyway, and an extra sync only competes with
    /// them (syncing overtaken bursts too cost `durable` full speed 9–24 %); what it zeroed
    /// is synced with the next burst that completes.
    pub(crate) async fn settle(&mut self) -> ZeroProgress {
        let mut progress = ZeroProgress::default();
        if let Some(w) = self.write.as_mut() {
            if let Some(done) = poll_once(&mut w.task).await {
                let w = self.write.take().expect("checked above");
                progress.zeroed_bytes += self.finish_write(&w, done);
            }
        }
        if let Some(t) = self.sync.as_mut() {
            if let Some(done) = poll_once(t).await {
                self.sync = None;
                progress.syncs += u64::from(done.is_some_and(|r| r.is_ok()));
            }
        }
        let reached = self.write.is_none() && self.zeroed_end >= self.target;
        if reached && self.unsynced_bytes > 0 && self.sync.is_none() {
            self.unsynced_bytes = 0;
            self.start_sync();
        }
        progress
    }

    fn start_sync(&mut self) {
        let sync = self.syncs.sync(self.file.clone());
        let (wake, on_error) = (self.wake.clone(), self.on_sync_error.clone());
        self.sync = Some(
            glommio::spawn_local(async move {
                let r = sync.await;
                if let Err(e) = &r {
                    on_error(e.clone());
                }
                wake.advance(wake.get() + 1);
                r
            })
            .detach(),
        );
    }

    /// How far past the data zeros should reach once the data ends at `data_end`: up to
    /// `window_bytes`, but no more than the data appended since `origin`.
    pub(crate) fn lead_bytes(&self, data_end: u64, window_bytes: u64) -> u64 {
        align_down(window_bytes.min(data_end.saturating_sub(self.origin)))
    }

    /// The next piece to zero, `[start, end)`, and the goal of its burst, if one is due.
    /// Zeroing runs in bursts, so that the filesystem's extent conversions are committed by
    /// one sync per burst and data syncs in between find nothing to commit: a burst starts
    /// when zeros reach less than `refill_at` and runs to `target`. Nothing at or before
    /// `floor` (past the submitted data) is touched. The caller makes sure space up to `end`
    /// is allocated, then calls [`ZeroAhead::start`].
    pub(crate) fn next_piece(
        &self,
        floor: u64,
        refill_at: u64,
        target: u64,
        piece_bytes: u64,
    ) -> Option<(u64, u64, u64)> {
        if self.stopped || self.write.is_some() {
            return None;
        }
        // A burst is over once zeros reach its goal, or the data overtook it.
        let bursting = self.zeroed_end.max(floor) < self.target;
        if !bursting && self.zeroed_end.max(floor) >= refill_at {
            return None;
        }
        let goal = if bursting { self.target } else { target };
        let start = align_up(self.zeroed_end.max(floor));
        let end = align_down(goal.min(start + piece_bytes));
        (start < end).then_some((start, end, goal))
    }

    /// Submits a zero write of `buf` (all zeros) at `start`, aiming for `target` overall.
    pub(crate) fn start(&mut self, buf: F::WriteBuf, start: u64, target: u64) {
        let end = start + buf.as_ref().len() as u64;
        let (file, wake) = (self.file.clone(), self.wake.clone());
        let task = glommio::spawn_local(async move {
            let r = file.write_at(buf, start).await;
            wake.advance(wake.get() + 1);
            r
        })
        .detach();
        self.target = target;
        self.write = Some(ZeroWrite { task, start, end });
    }

    /// Stops zeroing this segment (space could not be allocated).
    pub(crate) fn stop(&mut self) {
        self.stopped = true;
    }

    /// Waits for a zero write in flight over any page of `[start, end)`.
    pub(crate) async fn before_write(&mut self, start: u64, end: u64) -> ZeroProgress {
        let mut progress = ZeroProgress::default();
        if self.write.as_ref().is_some_and(|w| w.start < end && start < w.end) {
            progress.zeroed_bytes += self.wait_write().await;
            progress.waits += 1;
        }
        progress
    }

    /// Waits for the zero write and sync in flight, if any, and stops zeroing (before the
    /// segment is sealed or the log closed).
    pub(crate) async fn finish(&mut self) -> ZeroProgress {
        let zeroed_bytes = self.wait_write().await;
        self.stopped = true;
        let mut syncs = 0;
        if let Some(t) = self.sync.as_mut() {
            syncs = u64::from(t.await.is_some_and(|r| r.is_ok()));
            self.sync = None;
        }
        ZeroProgress { zeroed_bytes, syncs, ..ZeroProgress::default() }
    }

    /// Waits for the zero write in flight; the bytes it zeroed. The handle stays in place
    /// while awaited, so a writer cancelled meanwhile (a crash) cancels the write too.
    async fn wait_write(&mut self) -> u64 {
        let Some(w) = self.write.as_mut() else {
            return 0;
        };
        let done = (&mut w.task).await;
        let w = self.write.take().expect("awaited in place");
        self.finish_write(&w, done)
    }

    /// Records a completed zero write; the bytes it zeroed.
    fn finish_write(&mut self, w: &ZeroWrite, done: Option<Result<(), IoError>>) -> u64 {
        match done {
            Some(Ok(())) => {
                let len = w.end - w.start;
                self.zeroed_end = self.zeroed_end.max(w.end);
                self.unsynced_bytes += len;
                len
            }
            Some(Err(e)) => {
                warn!(error = %e, "zero-ahead write failed; appends go to unwritten space");
                self.stopped = true;
                0
            }
            None => {
                self.stopped = true;
                0
            }
        }
    }
}

impl<F: DiskFile> Drop for ZeroAhead<F> {
    fn drop(&mut self) {
        // The writer was dropped (a crash) or moved on after `finish`: no new zero write may
        // start into the file (one the kernel already has still completes).
        if let Some(w) = self.write.take() {
            w.task.cancel();
        }
        if let Some(t) = self.sync.take() {
            t.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::path::Path;

    use super::*;
    use crate::storage::io::Disk;
    use crate::storage::{SimDisk, SimFaults};

    const PIECE: u64 = 4 << 10;
    const K: u64 = 1 << 10;

    /// Starts the piece `next_piece` offered and waits for it.
    async fn zero_piece(z: &mut ZeroAhead<crate::storage::sim_disk::SimFile>, p: (u64, u64, u64)) {
        let (start, end, goal) = p;
        let mut buf = z.file.alloc_write_buf((end - start) as usize);
        buf.as_mut().fill(0);
        z.start(buf, start, goal);
        let done = z.before_write(start, end).await;
        assert_eq!(done.zeroed_bytes, end - start);
    }

    #[test]
    fn bursts_refill_from_half_the_lead_and_restart_when_data_overtakes_them() {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(|| async {
                let disk = SimDisk::new(1, SimFaults::default());
                disk.create_dir_all(Path::new("/z")).await.unwrap();
                let file = Rc::new(disk.open(Path::new("/z/0.log"), true).await.unwrap());
                let errors = Rc::new(Cell::new(0));
                let seen = errors.clone();
                let on_error = Rc::new(move |_| seen.set(seen.get() + 1));
                let syncs = SyncGate::default();
                let mut z = ZeroAhead::new(file, 0, 0, Watermark::new(0), syncs.clone(), on_error);
                // The lead never exceeds the data appended since the origin.
                assert_eq!(z.lead_bytes(6 * K, 64 * K), 4 * K);
                assert_eq!(z.lead_bytes(100 * K, 64 * K), 64 * K);
                // Data ends at 8 KiB: a burst from one piece past it towards 72 KiB.
                let p = z.next_piece(12 * K, 40 * K, 72 * K, PIECE).unwrap();
                assert_eq!(p, (12 * K, 16 * K, 72 * K));
                zero_piece(&mut z, p).await;
                // Mid-burst, its goal stands although zeros passed the refill mark.
                let p = z.next_piece(12 * K, 8 * K, 99 * K, PIECE).unwrap();
                assert_eq!(p, (16 * K, 20 * K, 72 * K));
                zero_piece(&mut z, p).await;
                // The data overtakes the burst: no sync for it, and the next burst starts
                // one piece past the data.
                assert_eq!(z.settle().await.syncs, 0);
                let p = z.next_piece(80 * K, 100 * K, 140 * K, PIECE).unwrap();
                assert_eq!(p, (80 * K, 84 * K, 140 * K));
                zero_piece(&mut z, p).await;
                assert_eq!(z.settle().await.syncs, 0, "mid-burst: no sync yet");
                // A burst that reached its goal asks for one sync, covering what the
                // overtaken one zeroed too; then nothing until zeros fall below the refill
                // mark.
                z.target = 84 * K;
                assert_eq!(z.settle().await.syncs, 0);
                assert!(z.sync.is_some(), "the burst's sync started");
                while syncs.running() > 0 {
                    futures_lite::future::yield_now().await;
                }
                assert_eq!(z.settle().await.syncs, 1);
                assert!(z.sync.is_none(), "one sync per burst");
                assert_eq!(errors.get(), 0);
                assert_eq!(z.next_piece(20 * K, 84 * K, 200 * K, PIECE), None);
                let p = z.next_piece(20 * K, 85 * K, 200 * K, PIECE);
                assert_eq!(p, Some((84 * K, 88 * K, 200 * K)));
                let (start, end, goal) = p.unwrap();
                let mut buf = z.file.alloc_write_buf((end - start) as usize);
                buf.as_mut().fill(0);
                z.start(buf, start, goal);
                // Finishing waits for the write in flight and stops zeroing.
                assert_eq!(z.finish().await.zeroed_bytes, PIECE);
                assert_eq!(z.next_piece(20 * K, 300 * K, 400 * K, PIECE), None);
            })
            .expect("spawn executor")
            .join()
            .expect("executor thread");
    }
}
