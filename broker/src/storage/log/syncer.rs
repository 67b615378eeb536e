//! The syncer task: group commit.
//!
//! Contract: one fdatasync of the active segment runs whenever `durable` appends wait or
//! written data is not yet visible (readers see only synced data unless `read_unsynced`);
//! appends whose writes complete while a sync runs share the next one, after an optional
//! `group_commit_delay_us` while less than `group_commit_bytes_max` is unsynced. A sync
//! counts only through the segment's sync gate ([`LogCore::sync_segment`]); a failed one
//! fences the log and fails every waiter. Closed segments are not its business: a roll
//! syncs the old segment before the new one takes appends. With the shard journal it syncs
//! only when a journal checkpoint asks for more than is synced (`Member::want_synced`),
//! and whatever is written then: with one syncfs shared by the shard's logs where the
//! journal syncs the filesystem (`LogCore::fs_sync`), else with its own fdatasync.

use std::rc::Rc;

use tracing::trace;

use super::core::LogCore;
use crate::stage_latency::{self, Stage};
use crate::storage::error::StorageError;
use crate::storage::io::Disk;

/// The syncer task (see the module docs).
pub(super) async fn syncer_loop<D: Disk>(sh: Rc<LogCore<D>>) {
    loop {
        let seen = sh.syncer_signal.get();
        let fenced = sh.queue.borrow().fenced.clone();
        if let Some(reason) = fenced {
            // After a failed sync nothing more becomes durable: fail whoever still waits.
            let waiters: Vec<_> = sh.queue.borrow_mut().durable_waiters.drain(..).collect();
            for (_, tx) in waiters {
                let _ = tx.send(Err(StorageError::Fenced(reason.clone())));
            }
            if sh.queue.borrow().closing {
                return;
            }
            sh.syncer_signal.wait_for(seen + 1).await;
            continue;
        }
        if let Some(j) = &sh.journal {
            // Durable acks come from the journal; sync the active segment only when a
            // journal checkpoint asks (past what is synced), once the data it asks for is
            // written.
            let m = j.member();
            let (want, synced, target) = (m.want_synced.get(), m.synced.get(), sh.written.get());
            if sh.queue.borrow().closing {
                return;
            }
            if want > synced && target > synced {
                let seg = sh.active();
                let size = seg.size_bytes.get();
                let started = std::time::Instant::now();
                let synced = match &sh.fs_sync {
                    Some(fs) if m.sync_by_filesystem() => {
                        sh.sync_segment_by_filesystem(&seg, fs).await
                    }
                    _ => sh.sync_segment(&seg).await,
                };
                stage_latency::record_since(Stage::Sync, started);
                if synced.is_ok() {
                    sh.bump_stats(|s| s.syncs += 1);
                    seg.synced_to(size);
                    trace!(target, seg = seg.base_offset, size, "synced for a journal checkpoint");
                    sh.segments_synced(target);
                    sh.mark_durable(target);
                }
                continue;
            }
            sh.syncer_signal.wait_for(seen + 1).await;
            continue;
        }
        let (waiting, closing) = {
            let st = sh.queue.borrow();
            // Readers see only synced data (unless `read_unsynced`): written data is synced
            // whether or not an append asked for `durable`.
            let unsynced_visible =
                !sh.config.read_unsynced && sh.written.get() > sh.durable_offset.get();
            (!st.durable_waiters.is_empty() || unsynced_visible, st.closing)
        };
        if !waiting {
            if closing && sh.queue.borrow().pending.is_empty() {
                return;
            }
            sh.syncer_signal.wait_for(seen + 1).await;
            continue;
        }
        if sh.config.group_commit_delay_us > 0 {
            let unsynced = sh.active().size_bytes.get().saturating_sub(sh.active().durable_bytes());
            if unsynced < sh.config.group_commit_bytes_max {
                glommio::timer::sleep(std::time::Duration::from_micros(
                    sh.config.group_commit_delay_us,
                ))
                .await;
            }
        }
        let target = sh.written.get();
        let seg = sh.active();
        let size = seg.size_bytes.get();
        let started = std::time::Instant::now();
        let synced = sh.sync_segment(&seg).await;
        stage_latency::record_since(Stage::Sync, started);
        if synced.is_ok() {
            sh.bump_stats(|s| s.syncs += 1);
            seg.synced_to(size);
            trace!(target, seg = seg.base_offset, size, "synced");
            sh.mark_durable(target);
        }
    }
}
