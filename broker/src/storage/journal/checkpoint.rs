//! A journal checkpoint: a full file's members sync their segments past their entries in
//! it, then the file goes (removed, or kept as a spare).
//!
//! With the filesystem sync (`JournalConfig::checkpoint_syncfs`, the default where syncfs
//! can be trusted) a checkpoint of at least `checkpoint_syncfs_members_min` members
//! ([`super::CHECKPOINT_SYNCFS_MEMBERS_MIN`], 256) asks every member at once, and their
//! syncers share one syncfs of the data filesystem (`storage/filesystem_sync.rs`): one
//! device flush per checkpoint instead of one fdatasync per partition, which at 1,000
//! partitions made ~1,200 flushes a second and the segment and journal writes behind them
//! wait (`perf/results/2026-12-05-partitions-1000-checkpoints`). Otherwise members are
//! asked one at a time, each syncing its own segment: with fewer partitions that costs the
//! journal's writes less than a syncfs's filesystem commit
//! (`perf/results/2026-12-05-checkpoint-syncfs`).

use std::cell::Cell;
use std::rc::Rc;

use tracing::warn;

use super::{ActiveFile, Inner, SPARE_FILES_MAX};
use crate::storage::io::{Disk, DiskFile};

impl<D: Disk> Inner<D> {
    /// Checkpoints a full file in the background (see the module docs).
    pub(super) fn start_checkpoint(self: &Rc<Self>, f: ActiveFile<D>) {
        let j = self.clone();
        let done = Rc::new(Cell::new(false));
        let flag = done.clone();
        let task = glommio::spawn_local(async move {
            let ActiveFile { file, path, members, size, .. } = f;
            let _ = file.close().await;
            let members: Vec<_> = members.into_values().collect();
            // With the filesystem sync, every member at once (they share syncs); else one
            // at a time.
            let by_fs =
                j.fs_sync.is_some() && members.len() >= j.config.checkpoint_syncfs_members_min;
            let wave = if by_fs { members.len().max(1) } else { 1 };
            for wave in members.chunks(wave) {
                for (m, end) in wave {
                    m.by_filesystem.set(by_fs);
                    m.want_synced.advance(*end);
                    m.notify();
                }
                for (m, end) in wave {
                    if !m.synced.wait_for(*end).await {
                        warn!(path = %path.display(), topic_id = m.topic_id, partition = m.partition, "journal file kept: a partition in it was not synced (fenced or gone); the next start replays it");
                        flag.set(true);
                        return;
                    }
                }
            }
            if j.crashed.get() {
                return;
            }
            if j.config.recycle
                && size == j.config.file_bytes()
                && !j.closing.get()
                && j.failed.borrow().is_none()
                && j.spare.borrow().len() < SPARE_FILES_MAX
            {
                j.spare.borrow_mut().push(path);
                flag.set(true);
                return;
            }
            match j.disk.remove(&path).await {
                Ok(()) => {
                    let mut s = j.stats.get();
                    s.files_removed += 1;
                    j.stats.set(s);
                }
                Err(e) => warn!(path = %path.display(), error = %e, "cannot remove a checkpointed journal file"),
            }
            flag.set(true);
        })
        .detach();
        let mut cps = self.checkpoints.borrow_mut();
        cps.retain(|(_, d)| !d.get());
        cps.push((task, done));
    }
}
