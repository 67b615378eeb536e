//! One partition this shard owns, as the shard sees it: topic, incarnation, index and log.
//!
//! Contract: a partition is opened (its log recovered) when a metadata snapshot assigns it
//! to this shard, and retired (log closed, data moved to the trash) when its topic is gone;
//! both run on the owning shard. Handlers hold an `Rc<Partition>` only for the length of a
//! request or a subscription: a retired partition's log refuses appends and wakes readers.
//! Opening also rebuilds the idempotent producers' state (`producer_state.rs`) from the
//! batch headers appended within `producer_state_idle_ms` (older producers would have
//! expired anyway) after its last state snapshot (`state_snapshot.rs`), so duplicates are
//! recognized across a crash. A partition of a table topic also opens its projection table
//! (`table.rs`: its snapshot now, the log after it replayed by the shard's follow task).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use tracing::{info, warn};

use crate::descriptors::StorageFiles;
use crate::key_index::KeyIndex;
use crate::layout::partition_dir;
use crate::metadata::{DerivedTable, Topic};
use crate::producer_state::{ProducerStates, ShardProducers};
use crate::state_snapshot::{self, KEYS_FILE, PRODUCERS_FILE};
use crate::storage::log::JournalJoin;
use crate::storage::{DmaDisk, FirstBatch, LogConfig, PartitionCache, PartitionLog, StorageError};
use crate::table::{Table, TableMemory};

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
    /// The projection or state table, if the topic is a table.
    pub table: Option<Table>,
    /// State tables declared over this topic, by name (`metadata::DerivedTable`).
    pub derived: RefCell<BTreeMap<String, Rc<Table>>>,
    /// The offset the last stored state snapshot covers.
    snapshot_offset: Cell<u64>,
    /// Set when its topic was deleted ([`Partition::retire`]): a snapshot running then
    /// stores nothing more (its directory goes to the trash, and a topic made again under
    /// the name opens the same path).
    retired: Cell<bool>,
}

impl Partition {
    /// Opens (recovering) partition `index` of `topic` under `data_dir`, reserving its
    /// descriptor in `files`, joined to the shard journal and replaying its entries as
    /// `journal` says; a table's keys come out of `tables`.
    #[allow(clippy::too_many_arguments)]
    pub async fn open(
        data_dir: &Path,
        topic: &Topic,
        index: u32,
        config: LogConfig,
        cache: PartitionCache,
        files: Arc<StorageFiles>,
        (producer_idle_ms, shard_producers): (u64, &Rc<ShardProducers>),
        tables: &Rc<TableMemory>,
        journal: JournalJoin<'_, DmaDisk>,
    ) -> Result<Self, StorageError> {
        let dir = partition_dir(data_dir, &topic.name, index);
        let log = PartitionLog::open_journaled(DmaDisk, dir, config, cache, files, journal).await?;
        let mut producers = rebuild_producers(&log, producer_idle_ms).await;
        producers.attach(shard_producers);
        if !producers.is_empty() {
            info!(topic = %topic.name, partition = index, producers = producers.len(), "idempotent producer state rebuilt");
        }
        let table = match topic.settings.table {
            true => {
                let aggregate = topic.settings.aggregate.as_ref();
                let file = match aggregate {
                    Some(_) => state_snapshot::AGGREGATES_FILE,
                    None => state_snapshot::TABLE_FILE,
                };
                Some(Table::open(&log, tables.clone(), aggregate, file.to_owned()).await)
            }
            false => None,
        };
        Ok(Partition {
            topic: topic.name.clone(),
            topic_id: topic.id,
            index,
            log,
            producers: RefCell::new(producers),
            keys: KeyIndex::new(tables.clone()),
            table,
            derived: RefCell::new(BTreeMap::new()),
            snapshot_offset: Cell::new(0),
            retired: Cell::new(false),
        })
    }

    /// Snapshots the producers' state and the key index (if built) as of the log's end, once
    /// that end is durable (`state_snapshot.rs`), and the projection table (if any) as far as
    /// it got; nothing when nothing changed since the last one. Returns whether one was
    /// stored.
    pub async fn snapshot(&self) -> std::io::Result<bool> {
        // The table applies durable records only: its snapshot needs no wait.
        let derived: Vec<Rc<Table>> = self.derived.borrow().values().cloned().collect();
        for t in self.table.iter().chain(derived.iter().map(|t| &**t)) {
            t.write_snapshot(self.log.dir().to_owned()).await?;
        }
        let covered = self.log.next_offset();
        if covered == self.snapshot_offset.get() || self.retired.get() {
            return Ok(false);
        }
        // Captured together with `covered`: no await in between.
        let rollbacks = self.log.rollbacks();
        self.producers.borrow_mut().after_rollbacks(rollbacks, covered);
        let producers = state_snapshot::encode_producers(covered, &self.producers.borrow());
        let dir = self.log.dir().to_owned();
        // Written a step at a time while appends go on: it may name offsets noted up to
        // the log's end when it was done, which must be durable too.
        let removals = self.keys.removals();
        // Not while compaction drops tombstones the live index has not been told of.
        let keys = match self.log.pending_removed_tombstones() {
            true => None,
            false => self.keys.write_snapshot(&self.log, dir.clone(), covered, rollbacks).await?,
        };
        let end = match keys {
            Some(_) => self.log.next_offset(),
            None => covered,
        };
        // (Its first poll, in this step, notes the log's rollbacks: none may have failed
        // since `covered` was read.)
        if self.log.rollbacks() != rollbacks
            || self.log.wait_visible(end).await != Ok(true)
            || self.retired.get()
        {
            // Closed or fenced, or appends before `end` failed (the state captured counts
            // them, even if others refilled the end since): what is not durable must not be
            // remembered. Or the topic went meanwhile.
            if let Some(keys) = keys {
                keys.abandon().await;
            }
            return Ok(false);
        }
        if let Err(e) = state_snapshot::store(dir, PRODUCERS_FILE.to_owned(), producers).await {
            if let Some(keys) = keys {
                keys.abandon().await;
            }
            return Err(e);
        }
        if let Some(keys) = keys {
            keys.finish().await?;
            if self.keys.removals() != removals || self.log.pending_removed_tombstones() {
                // Keys compaction removed were forgotten while it was renamed into place
                // (`forget_removed_tombstones` may have removed the file before that).
                state_snapshot::remove(self.log.dir().to_owned(), KEYS_FILE).await?;
                return Ok(true);
            }
        }
        self.snapshot_offset.set(covered);
        Ok(true)
    }

    /// Tells the key index which expired tombstones compaction took out of the log
    /// (`PartitionLog::take_removed_tombstones`): their keys are forgotten
    /// (`KeyIndex::forget_removed`), and the index's snapshot, which may name them, is
    /// removed (the next snapshot stores the index again) so a restart does not bring them
    /// back.
    pub async fn forget_removed_tombstones(&self) {
        let removed = self.log.take_removed_tombstones();
        if removed.keys.is_empty() && !removed.overflowed {
            return;
        }
        self.keys.forget_removed(removed);
        // (Whatever the index's state: a snapshot being written is not kept.)
        self.keys.snapshot_invalidated();
        self.snapshot_offset.set(u64::MAX);
        if let Err(e) = state_snapshot::remove(self.log.dir().to_owned(), KEYS_FILE).await {
            warn!(topic = %self.topic, partition = self.index, error = %e, "cannot remove the key index's snapshot after compaction removed tombstones");
        }
    }

    /// Makes the state tables over this partition's topic those of `wanted`: drops the others
    /// (`Table::close`) and opens the missing ones, which it returns (the caller starts
    /// their follow tasks).
    pub async fn sync_tables(
        &self,
        wanted: &[&DerivedTable],
        memory: &Rc<TableMemory>,
    ) -> Vec<Rc<Table>> {
        let gone: Vec<Rc<Table>> = {
            let mut derived = self.derived.borrow_mut();
            let names: Vec<String> =
                derived.keys().filter(|n| !wanted.iter().any(|w| &w.name == *n)).cloned().collect();
            names.into_iter().filter_map(|n| derived.remove(&n)).collect()
        };
        for t in gone {
            t.close(self.log.dir());
        }
        let mut opened = Vec::new();
        for w in wanted {
            if self.derived.borrow().contains_key(&w.name) {
                continue;
            }
            let file = state_snapshot::derived_table_file(&w.name);
            let t = Rc::new(Table::open(&self.log, memory.clone(), Some(&w.aggregate), file).await);
            self.derived.borrow_mut().insert(w.name.clone(), t.clone());
            opened.push(t);
        }
        opened
    }

    /// Its topic was deleted: closes the log and moves its data to the trash under
    /// `data_dir` (freed in the background). Failures are logged.
    pub async fn retire(&self, data_dir: &Path) {
        self.retired.set(true);
        if let Err(e) = self.log.close().await {
            warn!(topic = %self.topic, partition = self.index, error = %e, "closing deleted partition");
        }
        if let Some(t) = &self.table {
            t.release();
        }
        for t in self.derived.borrow().values() {
            t.release();
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
            // Everything is synced: the snapshot covers exactly the log.
            Some(Ok(())) => {
                if let Err(e) = self.snapshot().await {
                    warn!(topic = %self.topic, partition = self.index, error = %e, "cannot store the partition's state snapshot; the next open reads the log");
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
    state_snapshot::remove_leftovers(log.dir());
    let (mut states, covered) = match state_snapshot::load_producers(log.dir()) {
        Some((covered, states)) if covered <= log.next_offset() => (states, covered),
        _ => (ProducerStates::default(), 0),
    };
    let Some(mut offset) = log.first_offset_modified_since(since) else {
        states.expire(oldest_ms);
        return states;
    };
    offset = offset.max(covered);
    let (start, end) = (offset, log.high_watermark());
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
                    // The batch's offset span: what the producer sent, even after compaction
                    // removed records from it.
                    h.last_offset_delta() + 1,
                    h.base_offset(),
                    h.log_append_time_ms(),
                );
            }
            // Reads from the cache do not wait: give the shard up now and then.
            glommio::yield_if_needed().await;
        }
    }
    states.expire(oldest_ms);
    if end > start {
        info!(dir = %log.dir().display(), snapshot_offset = covered, scanned_offsets = end - start, producers = states.len(), "producer state read from the log");
    }
    states
}
