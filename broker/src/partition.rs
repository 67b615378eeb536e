//! One partition this shard owns, as the shard sees it: topic, incarnation, index and log.
//!
//! Contract: a partition is opened (its log recovered) when a metadata snapshot assigns it
//! to this shard, and retired (log closed, data moved to the trash) when its topic is gone;
//! both run on the owning shard. Handlers hold an `Rc<Partition>` only for the length of a
//! request or a subscription: a retired partition's log refuses appends and wakes readers.
//! Opening also rebuilds the idempotent producers' state (`producer_state.rs`) from the
//! batch headers appended within `producer_state_idle_ms` (older producers would have
//! expired anyway), so duplicates are recognized across a crash.

use std::cell::RefCell;
use std::path::Path;
use std::sync::Arc;

use tracing::{info, warn};

use crate::descriptors::StorageFiles;
use crate::key_index::KeyIndex;
use crate::layout::partition_dir;
use crate::metadata::Topic;
use crate::producer_state::ProducerStates;
use crate::storage::{DmaDisk, FirstBatch, LogConfig, PartitionCache, PartitionLog, StorageError};

/// Bytes read per step while rebuilding producer state.
const PRODUCER_SCAN_READ_BYTES: usize = 4 << 20;

/// One partition owned by this shard.
pub struct Partition {
    /// Topic name.
    pub topic: String,
    /// Topic incarnation.
    pub topic_id: u64,
    /// Partition number.
    pub index: u32,
    /// Its log.
    pub log: PartitionLog<DmaDisk>,
    /// Idempotent producers' last batches here.
    pub producers: RefCell<ProducerStates>,
    /// Key → last offset, built on the first key-conditional append.
    pub keys: KeyIndex,
}

impl Partition {
    /// Opens (recovering) partition `index` of `topic` under `data_dir`, reserving its
    /// descriptor in `files`.
    pub async fn open(
        data_dir: &Path,
        topic: &Topic,
        index: u32,
        config: LogConfig,
        cache: PartitionCache,
        files: Arc<StorageFiles>,
        producer_idle_ms: u64,
    ) -> Result<Self, StorageError> {
        let dir = partition_dir(data_dir, &topic.name, index);
        let log = PartitionLog::open(DmaDisk, dir, config, cache, files).await?;
        let producers = rebuild_producers(&log, producer_idle_ms).await;
        if !producers.is_empty() {
            info!(topic = %topic.name, partition = index, producers = producers.len(), "idempotent producer state rebuilt");
        }
        Ok(Partition {
            topic: topic.name.clone(),
            topic_id: topic.id,
            index,
            log,
            producers: RefCell::new(producers),
            keys: KeyIndex::default(),
        })
    }

    /// Its topic was deleted: closes the log and moves its data to the trash under
    /// `data_dir` (freed in the background). Failures are logged.
    pub async fn retire(&self, data_dir: &Path) {
        if let Err(e) = self.log.close().await {
            warn!(topic = %self.topic, partition = self.index, error = %e, "closing deleted partition");
        }
        let dir = self.log.dir().to_owned();
        if let Err(e) = crate::trash::move_to_trash(data_dir, &dir) {
            warn!(dir = %dir.display(), error = %e, "cannot move deleted partition's data to the trash");
        }
        info!(topic = %self.topic, partition = self.index, "partition deleted");
    }

    /// Closes the log (flush, sync, trim) unless `timeout` passes first; failures and an
    /// abandoned close are logged (what was acked durable is synced either way).
    pub async fn close_within(&self, timeout: std::time::Duration) {
        let closed = futures_lite::future::or(async { Some(self.log.close().await) }, async {
            glommio::timer::sleep(timeout).await;
            None
        })
        .await;
        match closed {
            Some(Ok(())) => {
                let snapshot = ProducerSnapshot {
                    covered_offset: self.log.next_offset(),
                    states: std::mem::take(&mut *self.producers.borrow_mut()),
                };
                if let Err(e) = store_snapshot(self.log.dir(), &snapshot) {
                    warn!(topic = %self.topic, partition = self.index, error = %e, "cannot store the producer-state snapshot; the next open reads the log");
                }
            }
            Some(Err(e)) => {
                warn!(topic = %self.topic, partition = self.index, error = %e, "close failed")
            }
            None => {
                warn!(topic = %self.topic, partition = self.index, "close did not finish before the shutdown deadline; abandoned")
            }
        }
    }
}

/// The producer state of the batches appended within the last `idle_ms`: every batch
/// header of the segments written in that window (by their files' modification times,
/// not the producers' record timestamps, which may be anything), in offset order.
async fn rebuild_producers(log: &PartitionLog<DmaDisk>, idle_ms: u64) -> ProducerStates {
    let oldest_ms = crate::clock::now_ms().saturating_sub(idle_ms.min(i64::MAX as u64) as i64);
    let since = std::time::SystemTime::now() - std::time::Duration::from_millis(idle_ms);
    // A clean close's snapshot covers everything before its offset: read only what follows
    // (and nothing older than the idle time, which would have expired anyway).
    let (mut states, covered) = match load_snapshot(log.dir()) {
        Some(s) if s.covered_offset <= log.next_offset() => (s.states, s.covered_offset),
        _ => (ProducerStates::default(), 0),
    };
    let Some(mut offset) = log.first_offset_modified_since(since) else {
        states.expire(oldest_ms);
        return states;
    };
    offset = offset.max(covered);
    let end = log.high_watermark();
    while offset < end {
        let out = match log.read(offset, PRODUCER_SCAN_READ_BYTES, FirstBatch::Always).await {
            Ok(out) => out,
            // Damage (fenced by recovery) is never served; go on after it. A producer whose
            // batches were in it is not recognized: its retry may be stored again.
            Err(e @ StorageError::Corrupt { .. }) => {
                warn!(dir = %log.dir().display(), offset, error = %e, "producer state: skipping a damaged segment");
                match log.segment_after(offset) {
                    Some(next) => {
                        offset = next;
                        continue;
                    }
                    None => break,
                }
            }
            // Anything else (no descriptor for a sealed segment, an I/O error): the partition
            // still opens, with the state read so far (warned: retries may be stored again).
            Err(e) => {
                warn!(dir = %log.dir().display(), offset, error = %e, "producer state: rebuild stopped early");
                break;
            }
        };
        if out.batches.is_empty() {
            break;
        }
        for view in &out.batches {
            for h in wire::batch::header::trusted_headers(view) {
                offset = offset.max(h.next_offset());
                states.record(
                    h.producer_id(),
                    h.producer_epoch(),
                    h.base_sequence(),
                    h.record_count(),
                    h.base_offset(),
                    h.log_append_time_ms(),
                );
            }
        }
    }
    states.expire(oldest_ms);
    states
}

/// The producer-state snapshot a clean close leaves in the partition's directory.
const PRODUCER_SNAPSHOT_FILE: &str = "producers.json";

/// What `PRODUCER_SNAPSHOT_FILE` holds.
#[derive(serde::Serialize, serde::Deserialize)]
struct ProducerSnapshot {
    /// The state reflects every batch before this offset (and none after).
    covered_offset: u64,
    states: ProducerStates,
}

fn load_snapshot(dir: &Path) -> Option<ProducerSnapshot> {
    let bytes = std::fs::read(dir.join(PRODUCER_SNAPSHOT_FILE)).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(s) => Some(s),
        Err(e) => {
            warn!(dir = %dir.display(), error = %e, "producer-state snapshot unreadable; rebuilding from the log");
            None
        }
    }
}

/// Writes the snapshot durably (temporary file, fsync, rename, directory fsync). Runs at a
/// clean close, when every append is synced, so the state covers exactly the log.
fn store_snapshot(dir: &Path, snapshot: &ProducerSnapshot) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!("{PRODUCER_SNAPSHOT_FILE}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec(snapshot).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(PRODUCER_SNAPSHOT_FILE))?;
    std::fs::File::open(dir)?.sync_all()
}
