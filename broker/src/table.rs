//! A table of one partition of a topic declared a table (`TopicSettings::table`), kept on the
//! owning shard as records become visible: a projection table (the latest record per key) or
//! a state table (aggregates per group and window, `aggregate.rs`).
//!
//! Contract: the table is a reader of its own log ("the log is the truth"). A projection
//! table holds key → offset of the key's latest record in memory (values stay in the log and
//! are read through the shard cache); a state table holds each group's [`Aggregate`].
//! [`follow`] applies every batch below the high watermark — durable
//! records only, so the table never shows what a crash could take back — in offset order,
//! and [`Table::applied`] says how far: the table reflects every record before it
//! and none after. In a projection table a record without a value (a tombstone) removes its
//! key and records without a key are not in the table. Opening loads the last snapshot
//! (`table.snapshot` or `aggregates.json`, covering a durable offset, written with the
//! partition's other derived state by `partition.rs`) and
//! [`follow`] replays the log after it, so a restart rebuilds the table without replaying
//! everything. Keys whose latest record retention deleted read as absent, and are forgotten
//! by the retention pass after the log's start moved ([`Table::forget_before`]).
//!
//! Memory: the keys of every table on a shard come out of one budget
//! (`table_keys_bytes_per_shard`). A table that would pass it stops following and answers
//! reads with `RESOURCE_LIMIT` (logged once) instead of answering from a partial picture.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::rc::Rc;
use std::time::Duration;

use tracing::{info, warn};
use wire::{AlignedVec, Envelopes, TableEntry, TableEntryHeader};

use crate::aggregate::{Aggregate, AggregateSettings, Aggregator};
use crate::state_snapshot;
use crate::storage::{DmaDisk, FirstBatch, PartitionLog, StorageError};
use crate::watermark::Watermark;

mod snapshot;
#[cfg(test)]
mod tests;

/// Bytes read per step while following the log.
const FOLLOW_READ_BYTES: usize = 4 << 20;
/// What one key costs the budget besides its bytes (the map's node and the offset).
const KEY_OVERHEAD_BYTES: usize = 48;
/// What one group (and window) of a state table costs besides its key's bytes.
const GROUP_OVERHEAD_BYTES: usize = 112;
/// Changes a projection table remembers for its change feed (16 bytes each).
pub const TABLE_CHANGES_MAX: usize = 16_384;
/// What one remembered change costs the budget.
const CHANGE_BYTES: usize = 16;

/// The keys' memory of every table on one shard (and of the partitions' key indexes,
/// `key_index.rs`).
#[derive(Debug)]
pub struct TableMemory {
    used_bytes: Cell<usize>,
    bytes_max: usize,
}

impl TableMemory {
    /// A budget of `bytes_max` for the shard's tables.
    pub fn new(bytes_max: usize) -> Rc<Self> {
        Rc::new(TableMemory { used_bytes: Cell::new(0), bytes_max })
    }

    /// Bytes the shard's tables hold now.
    pub fn used_bytes(&self) -> usize {
        self.used_bytes.get()
    }

    /// The budget.
    pub fn bytes_max(&self) -> usize {
        self.bytes_max
    }

    /// Takes `bytes` from the budget; false (nothing taken) when it has no room.
    pub fn take(&self, bytes: usize) -> bool {
        let used = self.used_bytes.get();
        if used.saturating_add(bytes) > self.bytes_max {
            return false;
        }
        self.used_bytes.set(used + bytes);
        true
    }

    /// Gives back `bytes` taken before.
    pub fn give_back(&self, bytes: usize) {
        self.used_bytes.set(self.used_bytes.get().saturating_sub(bytes));
    }
}

/// Why a table cannot answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// The shard's table memory budget is spent; the table stopped following its log.
    #[error("the table's keys passed table_keys_bytes_per_shard ({bytes_max} bytes); it stopped at offset {applied}")]
    OverBudget {
        /// The budget.
        bytes_max: usize,
        /// Where the table stopped.
        applied: u64,
    },
    /// The table did not reach the offset asked for in time.
    #[error("the table reflects offsets before {applied}, not yet before {min_offset}")]
    Behind {
        /// Where it is.
        applied: u64,
        /// What was asked for.
        min_offset: u64,
    },
    /// Reading the log failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl TableError {
    /// The wire error code.
    pub fn code(&self) -> wire::ErrorCode {
        match self {
            TableError::OverBudget { .. } => wire::ErrorCode::ResourceLimit,
            TableError::Behind { .. } => wire::ErrorCode::Timeout,
            TableError::Storage(e) => e.code(),
        }
    }
}

/// What a table holds.
enum Contents {
    /// Projection: key → offset of its latest record.
    Latest(BTreeMap<Vec<u8>, u64>),
    /// State: (group key, window start) → aggregate.
    Aggregates { aggregator: Aggregator, groups: BTreeMap<(Vec<u8>, i64), Aggregate> },
}

/// A state table's snapshot (JSON).
#[derive(serde::Serialize, serde::Deserialize)]
struct AggregatesSnapshot {
    covered_offset: u64,
    groups: Vec<(Vec<u8>, i64, Aggregate)>,
    /// What the table aggregates: a table deleted and declared again under its name with
    /// other settings must not start from the old one's groups (a snapshot being stored as
    /// it was deleted, or left by a crash, can outlive it). `None` in snapshots written
    /// before it was recorded.
    #[serde(default)]
    settings: Option<crate::aggregate::AggregateSettings>,
}

/// See the module docs.
pub struct Table {
    /// Its snapshot's file name in the partition's directory.
    snapshot_file: String,
    /// Set when the table is dropped while its partition lives (a state table deleted).
    closed: Cell<bool>,
    contents: RefCell<Contents>,
    /// The table reflects every record before this offset.
    applied: Watermark,
    memory: Rc<TableMemory>,
    /// Set once the budget refused a key: the table stopped there.
    over_budget: Cell<bool>,
    /// The offset the last stored snapshot covers.
    snapshot_offset: Cell<u64>,
    /// Projection: the recent changes, `(offset, the key's previous offset)`, oldest first;
    /// at most [`TABLE_CHANGES_MAX`], each charged to the memory budget.
    changes: RefCell<VecDeque<(u64, Option<u64>)>>,
    /// Every change at or after this offset is in `changes`.
    changes_from: Cell<u64>,
    /// The log start [`Table::forget_before`] last swept to.
    swept_to: Cell<u64>,
    /// Snapshots being walked ([`Table::write_snapshot`]; more than one only while a
    /// cancelled one's future waits to be dropped at shutdown): the table holds still (no
    /// record applied, no key forgotten) until none is.
    snapshotting: Cell<u32>,
    /// Advanced each time a snapshot ends (the follow task waits for it).
    snapshot_ends: Watermark,
}

/// Why a change feed cannot start where asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangesForgotten {
    /// Every change at or after this offset is remembered.
    pub oldest_offset: u64,
}

impl Table {
    /// The table of `log` (a state table with `aggregate`): its last snapshot (the file
    /// `snapshot_file` in the log's directory) if there is a usable one (else empty), to be
    /// brought up to date by [`follow`].
    pub async fn open(
        log: &PartitionLog<DmaDisk>,
        memory: Rc<TableMemory>,
        aggregate: Option<&AggregateSettings>,
        snapshot_file: String,
    ) -> Table {
        let dir = log.dir().to_owned();
        let high_watermark = log.high_watermark();
        // A snapshot past the recovered log's durable end remembers what is gone: unused.
        let (covered, contents, bytes) = match aggregate.map(Aggregator::new) {
            None => {
                let loaded = state_snapshot::load_keys::<BTreeMap<Vec<u8>, u64>>(
                    dir.clone(),
                    state_snapshot::TABLE_FILE,
                )
                .await;
                let (covered, mut keys) = loaded
                    .filter(|(covered, _)| *covered <= high_watermark)
                    .unwrap_or((0, BTreeMap::new()));
                // Keys whose records retention deleted are not loaded (`forget_before`).
                let log_start = log.log_start_offset();
                keys.retain(|_, offset| *offset >= log_start);
                let bytes: usize = keys.keys().map(|k| k.len() + KEY_OVERHEAD_BYTES).sum();
                (covered, Contents::Latest(keys), bytes)
            }
            Some(aggregator) => {
                // Validated when the topic was created; a stored topic that fails now is a bug.
                let aggregator = aggregator.expect("aggregate settings validated at creation");
                let loaded = state_snapshot::load_json::<AggregatesSnapshot>(
                    dir.clone(),
                    snapshot_file.clone(),
                )
                .await
                .filter(|s| s.covered_offset <= high_watermark)
                .filter(|s| s.settings.as_ref().is_none_or(|kept| kept == aggregator.settings()));
                let (covered, groups) = match loaded {
                    Some(s) => (
                        s.covered_offset,
                        s.groups.into_iter().map(|(k, w, a)| ((k, w), a)).collect(),
                    ),
                    None => (0, BTreeMap::new()),
                };
                let bytes: usize = groups.keys().map(|(k, _)| k.len() + GROUP_OVERHEAD_BYTES).sum();
                (covered, Contents::Aggregates { aggregator, groups }, bytes)
            }
        };
        let table = Table {
            snapshot_file,
            closed: Cell::new(false),
            contents: RefCell::new(contents),
            applied: Watermark::new(covered),
            memory,
            over_budget: Cell::new(false),
            snapshot_offset: Cell::new(covered),
            changes: RefCell::new(VecDeque::new()),
            changes_from: Cell::new(covered),
            swept_to: Cell::new(0),
            snapshotting: Cell::new(0),
            snapshot_ends: Watermark::new(0),
        };
        if !table.memory.take(bytes) {
            table.over_budget.set(true);
            table.clear();
            warn!(dir = %dir.display(), keys_bytes = bytes, "table snapshot does not fit table_keys_bytes_per_shard; the table is unavailable");
        }
        table
    }

    /// Whether this is a state table (aggregates) rather than a projection.
    pub fn is_state(&self) -> bool {
        matches!(*self.contents.borrow(), Contents::Aggregates { .. })
    }

    /// The table reflects every record before this offset.
    pub fn applied(&self) -> u64 {
        self.applied.get()
    }

    /// Keys (projection) or groups and windows (state) in the table.
    pub fn len(&self) -> usize {
        match &*self.contents.borrow() {
            Contents::Latest(keys) => keys.len(),
            Contents::Aggregates { groups, .. } => groups.len(),
        }
    }

    /// Whether the table has no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until the table reflects every record before `min_offset`, at most `wait`.
    pub async fn wait_applied(&self, min_offset: u64, wait: Duration) -> Result<(), TableError> {
        self.check()?;
        if self.applied.get() < min_offset {
            let reached = futures_lite::future::or(self.applied.wait_for(min_offset), async {
                glommio::timer::sleep(wait).await;
                false
            })
            .await;
            if !reached {
                self.check()?;
                let applied = self.applied.get();
                return Err(TableError::Behind { applied, min_offset });
            }
        }
        self.check()
    }

    fn check(&self) -> Result<(), TableError> {
        if self.over_budget.get() {
            let (bytes_max, applied) = (self.memory.bytes_max, self.applied.get());
            return Err(TableError::OverBudget { bytes_max, applied });
        }
        Ok(())
    }

    /// Projection: the offset of `key`'s latest record, if the table has the key.
    pub fn lookup(&self, key: &[u8]) -> Option<u64> {
        match &*self.contents.borrow() {
            Contents::Latest(keys) => keys.get(key).copied(),
            Contents::Aggregates { .. } => None,
        }
    }

    /// Projection: up to `limit` keys from `start` (inclusive) to `end` (exclusive; `None`:
    /// the last key) with their offsets, in key order, stopping once `key_bytes_max` bytes of
    /// keys are copied (at least one key: a scan of many long keys copied them all, outside
    /// any budget).
    pub fn range(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
        key_bytes_max: usize,
    ) -> Vec<(Vec<u8>, u64)> {
        if end.is_some_and(|e| e <= start) {
            return Vec::new(); // an empty range (`BTreeMap::range` would panic on some)
        }
        let end = end.map_or(Bound::Unbounded, Bound::Excluded);
        match &*self.contents.borrow() {
            Contents::Latest(keys) => {
                // The keys are copied out: at most `key_bytes_max` of them (at least one).
                let mut copied = 0usize;
                keys.range::<[u8], _>((Bound::Included(start), end))
                    .take(limit)
                    .take_while(|(k, _)| {
                        let more = copied < key_bytes_max;
                        copied += k.len();
                        more
                    })
                    .map(|(k, &o)| (k.clone(), o))
                    .collect()
            }
            Contents::Aggregates { .. } => Vec::new(),
        }
    }

    /// State: the entries (one per group and window, in key then window order) of the
    /// groups from `start` (inclusive) to `end` (exclusive; `None`: the last), at most
    /// `limit` of them, and the first group left out. A group's windows are never split over
    /// two answers, unless one group alone has more than `limit` (then its newest `limit`).
    pub fn aggregates(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> (Vec<TableEntry>, Option<Vec<u8>>) {
        let contents = self.contents.borrow();
        let Contents::Aggregates { groups, .. } = &*contents else { return (Vec::new(), None) };
        if end.is_some_and(|e| e <= start) {
            return (Vec::new(), None);
        }
        let from = Bound::Included((start.to_vec(), i64::MIN));
        let mut out: Vec<TableEntry> = Vec::new();
        let mut group: Vec<TableEntry> = Vec::new();
        let mut current: Option<Vec<u8>> = None;
        for ((key, window), a) in groups.range((from, Bound::Unbounded)) {
            if end.is_some_and(|e| key.as_slice() >= e) {
                break;
            }
            if current.as_ref() != Some(key) {
                if out.len() + group.len() > limit {
                    break;
                }
                out.append(&mut group);
                if out.len() == limit {
                    return (out, Some(key.clone()));
                }
                current = Some(key.clone());
            }
            group.push(TableEntry {
                key: key.clone(),
                value: a.to_json(),
                offset: a.last_offset,
                timestamp_ms: *window,
                ..TableEntry::default()
            });
        }
        if out.len() + group.len() <= limit {
            out.append(&mut group);
            return (out, None);
        }
        if out.is_empty() {
            // One group with more windows than the limit: its newest.
            let skip = group.len() - limit;
            let next = Some(wire::key_after(&group[0].key));
            return (group.split_off(skip), next);
        }
        let next = group.first().map(|e| e.key.clone());
        (out, next)
    }

    /// Forgets `key` if its latest record is at `offset` (retention deleted it).
    pub fn forget_if_at(&self, key: &[u8], offset: u64) {
        if self.snapshotting.get() > 0 {
            return; // it reads as absent anyway; the next read or retention pass forgets it
        }
        if let Contents::Latest(keys) = &mut *self.contents.borrow_mut() {
            if keys.get(key) == Some(&offset) {
                keys.remove(key);
                self.memory.give_back(key.len() + KEY_OVERHEAD_BYTES);
            }
        }
    }

    /// Retention moved the log's start to `log_start`: a projection forgets the keys whose
    /// latest record is before it (they read as absent already; kept, a table over a topic
    /// with retention and ever new keys grew until `RESOURCE_LIMIT`) and the changes before
    /// it, and gives their memory back. One pass over the keys each time the start moved
    /// since the last: called by the shard's retention pass only, so the cost of a pass is
    /// bounded by its timer, not by how often a client deletes records
    /// ([`Table::forget_changes_before`] is what a deletion does at once).
    pub fn forget_before(&self, log_start: u64) {
        // The change feed is not in a snapshot: trimmed at once.
        let mut freed = self.drop_changes_before(log_start);
        if log_start <= self.swept_to.get() || self.snapshotting.get() > 0 {
            // (Keys, while a snapshot is walked: the next pass.)
            self.memory.give_back(freed);
            return;
        }
        self.swept_to.set(log_start);
        if let Contents::Latest(keys) = &mut *self.contents.borrow_mut() {
            keys.retain(|key, offset| {
                let keep = *offset >= log_start;
                if !keep {
                    freed += key.len() + KEY_OVERHEAD_BYTES;
                }
                keep
            });
        }
        if freed > 0 {
            // The stored snapshot still names the forgotten keys: the next pass stores
            // another (a restart would load them all and could find the budget taken).
            self.snapshot_offset.set(u64::MAX);
        }
        self.memory.give_back(freed);
    }

    /// Records before `log_start` were deleted (DeleteRecords): the change feed forgets the
    /// changes before it (a feed asked from there answers `OFFSET_OUT_OF_RANGE` with where it
    /// can start), at a cost of the changes dropped. The keys are left to the next retention
    /// pass ([`Table::forget_before`]; until then they read as absent, their records gone): a
    /// sweep of every key per request would let deletions in steps of one record hold the
    /// shard.
    pub fn forget_changes_before(&self, log_start: u64) {
        let freed = self.drop_changes_before(log_start);
        self.memory.give_back(freed);
    }

    /// Drops the changes before `log_start` and returns the bytes they held.
    fn drop_changes_before(&self, log_start: u64) -> usize {
        if !matches!(*self.contents.borrow(), Contents::Latest(_)) {
            return 0;
        }
        let mut freed = 0;
        let mut changes = self.changes.borrow_mut();
        while changes.front().is_some_and(|c| c.0 < log_start) {
            changes.pop_front();
            freed += CHANGE_BYTES;
        }
        self.changes_from.set(self.changes_from.get().max(log_start));
        freed
    }

    /// Applies one record; `false` when the budget refused a new key.
    fn apply(&self, r: &wire::RecordView<'_>) -> bool {
        match &mut *self.contents.borrow_mut() {
            Contents::Latest(keys) => {
                let Some(key) = r.key() else { return true };
                let previous = if r.value().is_none() {
                    let previous = keys.remove(key);
                    if previous.is_some() {
                        self.memory.give_back(key.len() + KEY_OVERHEAD_BYTES);
                    }
                    previous
                } else if let Some(at) = keys.get_mut(key) {
                    Some(std::mem::replace(at, r.offset()))
                } else {
                    if !self.memory.take(key.len() + KEY_OVERHEAD_BYTES) {
                        return false;
                    }
                    keys.insert(key.to_vec(), r.offset());
                    None
                };
                self.remember_change(r.offset(), previous);
                true
            }
            Contents::Aggregates { aggregator, groups } => {
                let Some(group) = aggregator.group(r) else { return true };
                let value = aggregator.value(r);
                if let Some(a) = groups.get_mut(&group) {
                    a.add(value, r.offset(), r.timestamp_ms());
                    return true;
                }
                if !self.memory.take(group.0.len() + GROUP_OVERHEAD_BYTES) {
                    return false;
                }
                let mut a = Aggregate::default();
                a.add(value, r.offset(), r.timestamp_ms());
                let key = group.0.clone();
                groups.insert(group, a);
                // A new window of a group that keeps only its newest: drop the oldest.
                let kept = aggregator.windows_kept();
                if kept > 0 {
                    let from = (key.clone(), i64::MIN);
                    let to = (key.clone(), i64::MAX);
                    let windows: Vec<i64> = groups.range(from..=to).map(|((_, w), _)| *w).collect();
                    for w in windows.iter().take(windows.len().saturating_sub(kept)) {
                        groups.remove(&(key.clone(), *w));
                        self.memory.give_back(key.len() + GROUP_OVERHEAD_BYTES);
                    }
                }
                true
            }
        }
    }

    fn remember_change(&self, offset: u64, previous: Option<u64>) {
        let mut changes = self.changes.borrow_mut();
        if changes.len() >= TABLE_CHANGES_MAX || !self.memory.take(CHANGE_BYTES) {
            // Full (or no budget for more): forget the oldest to keep this one.
            let Some((forgotten, _)) = changes.pop_front() else {
                self.changes_from.set(offset + 1); // no budget even for one
                return;
            };
            self.changes_from.set(forgotten + 1);
        }
        changes.push_back((offset, previous));
    }

    /// Projection: up to `limit` changes at or after `from` (below the applied offset),
    /// oldest first, as `(offset, previous offset)`; `Err` when changes at `from` are not
    /// remembered (forgotten, or from before the table opened).
    pub fn changes_since(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Option<u64>)>, ChangesForgotten> {
        if from < self.changes_from.get() {
            return Err(ChangesForgotten { oldest_offset: self.changes_from.get() });
        }
        let changes = self.changes.borrow();
        let start = changes.partition_point(|c| c.0 < from);
        Ok(changes.iter().skip(start).take(limit).copied().collect())
    }

    fn clear(&self) {
        match &mut *self.contents.borrow_mut() {
            Contents::Latest(keys) => keys.clear(),
            Contents::Aggregates { groups, .. } => groups.clear(),
        }
    }

    /// The table is dropped while its partition lives: its follow task ends, its memory goes
    /// back, its snapshot file is removed.
    pub fn close(&self, dir: &std::path::Path) {
        self.closed.set(true);
        self.release();
        let _ = std::fs::remove_file(dir.join(&self.snapshot_file));
    }

    /// Whether [`Table::close`] or [`Table::release`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// The partition is gone: the follow task ends (it would otherwise retry reads of a log
    /// moved to the trash for ever), the keys' memory goes back to the shard.
    pub fn release(&self) {
        self.closed.set(true);
        self.give_back();
    }

    /// Returns the keys' memory to the shard and forgets them.
    fn give_back(&self) {
        let bytes: usize = match &*self.contents.borrow() {
            Contents::Latest(keys) => keys.keys().map(|k| k.len() + KEY_OVERHEAD_BYTES).sum(),
            Contents::Aggregates { groups, .. } => {
                groups.keys().map(|(k, _)| k.len() + GROUP_OVERHEAD_BYTES).sum()
            }
        };
        // Every key held was taken from the budget (a snapshot that did not fit was dropped).
        let changes = std::mem::take(&mut *self.changes.borrow_mut());
        self.clear();
        self.memory.give_back(bytes + changes.len() * CHANGE_BYTES);
    }
}

/// Keeps `table`, partition `index` of `topic`, current with its `log`: applies every batch
/// below the high watermark, in offset order, until the log closes. Runs on the owning shard
/// for as long as the partition lives.
pub async fn follow(log: &PartitionLog<DmaDisk>, table: &Table, topic: &str, index: u32) {
    if table.over_budget.get() {
        return; // its snapshot did not fit: it answers RESOURCE_LIMIT and holds nothing
    }
    let mut scratch = AlignedVec::new();
    let mut slice = crate::time_slice::TimeSlice::default();
    let mut offset = table.applied();
    let started = (offset, std::time::Instant::now());
    let mut caught_up = false;
    loop {
        // Retention may have removed what the table has not read yet: go on from the start.
        offset = offset.max(log.log_start_offset());
        if offset >= log.high_watermark() && !caught_up {
            caught_up = true;
            if offset > started.0 {
                info!(topic = %topic, partition = index, keys = table.len(), replayed_offsets = offset - started.0, elapsed_ms = started.1.elapsed().as_millis() as u64, "table caught up with its log");
            }
        }
        if !log.high_watermark_mark().wait_for(offset + 1).await || table.is_closed() {
            return; // closed: the partition is retired, the broker stops, the table is gone
        }
        let out = match log.read(offset, FOLLOW_READ_BYTES, FirstBatch::Always).await {
            Ok(out) => out,
            Err(e @ StorageError::Corrupt { .. }) => {
                // Damage (fenced by recovery) is never served: the table skips it, like a
                // consumer would.
                warn!(topic = %topic, partition = index, offset, error = %e, "table: skipping a damaged segment");
                match log.segment_after(offset) {
                    Some(next) => offset = next,
                    None => glommio::timer::sleep(Duration::from_millis(100)).await,
                }
                continue;
            }
            Err(StorageError::Closed) => return,
            Err(e) => {
                warn!(topic = %topic, partition = index, offset, error = %e, "table: reading the log failed; retrying");
                glommio::timer::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if out.batches.is_empty() {
            // Nothing readable at `offset` although the high watermark is past it: retention
            // moved the start meanwhile; look again.
            glommio::timer::sleep(Duration::from_millis(1)).await;
            continue;
        }
        if table.is_closed() {
            return;
        }
        // A snapshot being written holds the table still.
        while table.snapshotting.get() > 0 {
            let seen = table.snapshot_ends.get();
            table.snapshot_ends.wait_for(seen + 1).await;
        }
        if table.is_closed() {
            return;
        }
        // Record deletion may have moved the start while this read waited, and forgotten the
        // keys below it (`Table::forget_before`): those records must not bring them back.
        offset = offset.max(log.log_start_offset());
        for view in &out.batches {
            for envelope in Envelopes::new(view).filter_map(Result::ok) {
                let next = envelope.header().next_offset();
                if next <= offset {
                    continue;
                }
                if let Ok(batch) = envelope.open(&mut scratch) {
                    for r in batch.records().filter(|r| r.offset() >= offset) {
                        if !table.apply(&r) {
                            // It answers RESOURCE_LIMIT from now on: what it holds goes back
                            // for the shard's other tables and key indexes.
                            table.over_budget.set(true);
                            table.give_back();
                            table.applied.advance(r.offset());
                            warn!(topic = %topic, partition = index, offset = r.offset(), bytes_max = table.memory.bytes_max, "table keys passed table_keys_bytes_per_shard; the table stops here and answers RESOURCE_LIMIT");
                            return;
                        }
                    }
                }
                offset = next;
            }
        }
        table.applied.advance(offset);
        // A replay reads from the cache without waiting: the shard is given up on time.
        slice.yield_if_due().await;
    }
}

/// The record at `offset` of `log` as a table entry (a tombstone too); `None` when it is gone
/// (retention) or has no key.
pub async fn read_record(
    log: &PartitionLog<DmaDisk>,
    offset: u64,
    scratch: &mut AlignedVec,
) -> Result<Option<TableEntry>, StorageError> {
    if offset < log.log_start_offset() {
        return Ok(None);
    }
    let out = log.read(offset, 1, FirstBatch::Always).await?;
    for view in &out.batches {
        for envelope in Envelopes::new(view).filter_map(Result::ok) {
            let h = envelope.header();
            if !(h.base_offset()..h.next_offset()).contains(&offset) {
                continue;
            }
            let Ok(batch) = envelope.open(scratch) else { return Ok(None) };
            return Ok(batch.records().find(|r| r.offset() == offset).and_then(|r| entry_of(&r)));
        }
    }
    Ok(None)
}

/// A keyed record as a table entry (`tombstone` when it has no value); `None` without a key.
pub fn entry_of(r: &wire::RecordView<'_>) -> Option<TableEntry> {
    Some(TableEntry {
        key: r.key()?.to_vec(),
        value: r.value().map(<[u8]>::to_vec).unwrap_or_default(),
        offset: r.offset(),
        timestamp_ms: r.timestamp_ms(),
        previous_offset: None,
        tombstone: r.value().is_none(),
        headers: r
            .headers()
            .map(|h| TableEntryHeader {
                key: h.key().to_owned(),
                value: h.value().to_vec(),
                null: h.is_null(),
            })
            .collect(),
    })
}
