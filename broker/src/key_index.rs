//! Key → last offset for one partition: what a key-conditional append compares with.
//!
//! Contract: built the first time a key-conditional append reaches the partition (a scan of
//! the whole log, in the background of that request), then kept current by every append on
//! the owning shard (`note`, called right after enqueue, so it counts appends not yet
//! acked, as the condition must). Appends that land while the scan runs are queued and
//! applied after it. Persisted: once built, the shard snapshots it with the partition's other
//! derived state (`state_snapshot.rs`, covering a durable offset), and after a restart the
//! first conditional append loads the snapshot and scans only the log after it. Appends
//! noted as they were enqueued may fail (the log's end rolls back and the offsets go to
//! others): an index built before the log's last rollback (`PartitionLog::rollbacks`) is
//! built again by the next conditional append, and not snapshotted meanwhile. It holds
//! every key whose records are still in the log: once retention or a record deletion moves
//! the log's start past a key's last record the key reads as never written at once (a last
//! offset below the start is not an answer), and the shard's next retention pass forgets it
//! and gives its memory back ([`KeyIndex::forget_before`]; a sweep per DeleteRecords request
//! would let deletions in steps of one record hold the shard). An index built from the log
//! then would not know it either, so the answer does not depend on when the index was built
//! or whether a snapshot was found. It belongs on partitions
//! used as event streams per key (an aggregate per key), which keep their records.
//! - Bounded: every key it holds (and every append queued while it builds) is charged to the
//!   shard's table memory (`table.rs::TableMemory`, `table_keys_bytes_per_shard`) at
//!   [`KEY_ENTRY_OVERHEAD_BYTES`] plus the key's length, and given back when the index is
//!   dropped. When the budget has no room the index is dropped and stays
//!   [`KeyIndexError::OverBudget`]: key-conditional appends to the partition answer
//!   `RESOURCE_LIMIT` (other appends are unaffected) until the broker restarts with a larger
//!   budget. Sticky, so a client cannot make the shard rescan the log over and over.

use indexmap::IndexMap;
use std::cell::Cell;
use std::rc::Rc;

use wire::{AlignedVec, Envelopes, ErrorCode};

use tracing::{info, warn};

use crate::state_snapshot;
use crate::storage::{DmaDisk, FirstBatch, PartitionLog, RemovedTombstones, StorageError};
use crate::table::TableMemory;
use crate::watermark::Watermark;

/// Records of a batch between two looks at the time while building
/// (`time_slice::TimeSlice`).
const CHECK_EVERY_RECORDS: usize = 64;
/// Bytes read per step while building.
const BUILD_READ_BYTES: usize = 4 << 20;
/// What one key costs the budget besides its bytes (the map's entry, the key's `Vec`).
/// (An `IndexMap` entry: 40 bytes of hash, `Vec` and offset, 8 of index and a control
/// byte, with the tables' growth slack.)
pub const KEY_ENTRY_OVERHEAD_BYTES: usize = 72;

/// A key and an offset.
type KeyAt = (Vec<u8>, u64);

/// Key → last offset, in the order keys were first seen (a snapshot walks it by position).
type Keys = IndexMap<Vec<u8>, u64>;

enum State {
    Absent,
    Building { tail: Vec<(Vec<u8>, u64)> },
    Ready(Keys),
    OverBudget,
}

/// Why a key-conditional append cannot be checked.
#[derive(Debug, thiserror::Error)]
pub enum KeyIndexError {
    /// Reading the log to build the index failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The shard's table memory cannot hold the partition's keys.
    #[error(
        "the partition's key index does not fit table_keys_bytes_per_shard ({bytes_max} bytes)"
    )]
    OverBudget {
        /// The budget.
        bytes_max: usize,
    },
}

impl KeyIndexError {
    /// The wire code.
    pub fn code(&self) -> ErrorCode {
        match self {
            KeyIndexError::Storage(e) => e.code(),
            KeyIndexError::OverBudget { .. } => ErrorCode::ResourceLimit,
        }
    }
}

/// See the module docs.
pub struct KeyIndex {
    state: std::cell::RefCell<State>,
    /// Advanced each time a build ends (ready or failed).
    ready: Watermark,
    /// The shard's budget, and what this index holds of it.
    memory: Rc<TableMemory>,
    held_bytes: Cell<usize>,
    /// The log's `rollbacks` when the build began: once it moved, appends noted in the
    /// index failed (their offsets are reused by others), so it is built again.
    built_at_rollbacks: Cell<u64>,
    /// The log start [`KeyIndex::forget_before`] last swept to.
    swept_to: Cell<u64>,
    /// Snapshots being written ([`KeyIndex::write_snapshot`]; more than one only while a
    /// cancelled one's future waits to be dropped at shutdown): no key is removed meanwhile
    /// (each walks the map by position).
    snapshotting: Cell<u32>,
    /// Bumped when keys compaction removed are forgotten: a snapshot walking the map then
    /// is abandoned (positions moved under it).
    removals: Cell<u64>,
    /// Tombstones compaction removed while the index was being built: applied when the
    /// build ends (its scan may have read them before they went). `None` inside: too many
    /// to name, the build is thrown away.
    removed_while_building: std::cell::RefCell<Option<Vec<KeyAt>>>,
    /// A background build was claimed ([`KeyIndex::claim_background_build`]).
    build_requested: Cell<bool>,
    /// When the last background build failed.
    failed_at: Cell<Option<std::time::Instant>>,
}

impl Drop for KeyIndex {
    fn drop(&mut self) {
        self.memory.give_back(self.held_bytes.get());
    }
}

/// What `key` costs the budget.
fn entry_bytes(key: &[u8]) -> usize {
    KEY_ENTRY_OVERHEAD_BYTES + key.len()
}

impl KeyIndex {
    /// An index (not built yet) whose keys come out of `memory`.
    pub fn new(memory: Rc<TableMemory>) -> Self {
        KeyIndex {
            state: std::cell::RefCell::new(State::Absent),
            ready: Watermark::new(0),
            memory,
            held_bytes: Cell::new(0),
            built_at_rollbacks: Cell::new(0),
            swept_to: Cell::new(0),
            snapshotting: Cell::new(0),
            removals: Cell::new(0),
            removed_while_building: std::cell::RefCell::new(Some(Vec::new())),
            build_requested: Cell::new(false),
            failed_at: Cell::new(None),
        }
    }

    /// Charges `bytes`; false (nothing charged) when the budget has no room.
    fn charge(&self, bytes: usize) -> bool {
        let ok = self.memory.take(bytes);
        if ok {
            self.held_bytes.set(self.held_bytes.get() + bytes);
        }
        ok
    }

    /// Gives back everything held; absent again (built anew by the next conditional append).
    fn forget_all(&self, state: &mut State) {
        *state = State::Absent;
        self.memory.give_back(self.held_bytes.replace(0));
    }

    /// Gives back everything held and stays over budget.
    fn overflow(&self, state: &mut State) {
        *state = State::OverBudget;
        self.memory.give_back(self.held_bytes.replace(0));
        warn!(bytes_max = self.memory.bytes_max(), "key index dropped: table_keys_bytes_per_shard is spent; key-conditional appends to this partition answer RESOURCE_LIMIT until a restart with a larger budget");
    }

    fn over_budget(&self) -> KeyIndexError {
        KeyIndexError::OverBudget { bytes_max: self.memory.bytes_max() }
    }

    /// Whether the index is built (key-conditional appends can be checked now).
    pub fn is_ready(&self) -> bool {
        matches!(*self.state.borrow(), State::Ready(_))
    }

    /// Whether a build runs now.
    pub fn is_building(&self) -> bool {
        self.build_requested.get() || matches!(*self.state.borrow(), State::Building { .. })
    }

    /// Whether the index was dropped for good (over budget): conditions answer
    /// `RESOURCE_LIMIT` until a restart.
    pub fn is_over_budget(&self) -> bool {
        matches!(*self.state.borrow(), State::OverBudget)
    }

    /// Claims the one background build (for forwarded conditional appends, `api/produce.rs`):
    /// false when a build runs or was claimed, or one failed less than a second ago (a
    /// failing disk is not scanned again for every request). Released by
    /// [`KeyIndex::background_build_ended`].
    pub fn claim_background_build(&self) -> bool {
        let recent_failure =
            self.failed_at.get().is_some_and(|at| at.elapsed() < std::time::Duration::from_secs(1));
        if self.is_building() || recent_failure {
            return false;
        }
        self.build_requested.set(true);
        true
    }

    /// The claimed background build ended (`failed`: with an error).
    pub fn background_build_ended(&self, failed: bool) {
        self.build_requested.set(false);
        self.failed_at.set(failed.then(std::time::Instant::now));
    }

    /// The index's snapshot on disk was removed: a snapshot being written now is not kept.
    pub fn snapshot_invalidated(&self) {
        self.removals.set(self.removals.get() + 1);
    }

    /// Whether the index is built and no append it noted failed since (the log's
    /// `rollbacks` is the one it was built at).
    pub fn is_current(&self, rollbacks: u64) -> bool {
        self.is_ready() && self.built_at_rollbacks.get() == rollbacks
    }

    /// Whether [`KeyIndex::note`] wants the batches appended (the index exists or is being
    /// built): a compressed batch is opened for it.
    pub fn wants_batches(&self) -> bool {
        !matches!(*self.state.borrow(), State::Absent | State::OverBudget)
    }

    /// Records the keys of a batch just enqueued at `base_offset` (once the index exists).
    pub fn note(&self, view: &wire::BatchView<'_>, base_offset: u64) {
        let mut state = self.state.borrow_mut();
        if matches!(*state, State::Absent | State::OverBudget) {
            return;
        }
        for (i, r) in view.records().enumerate() {
            let Some(key) = r.key() else { continue };
            let offset = base_offset + i as u64;
            let fits = match &mut *state {
                State::Building { tail } => {
                    let fits = self.charge(entry_bytes(key));
                    if fits {
                        tail.push((key.to_vec(), offset));
                    }
                    fits
                }
                State::Ready(map) => match map.get_mut(key) {
                    Some(last) => {
                        *last = offset;
                        true
                    }
                    None => {
                        let fits = self.charge(entry_bytes(key));
                        if fits {
                            map.insert(key.to_vec(), offset);
                        }
                        fits
                    }
                },
                State::Absent | State::OverBudget => return,
            };
            if !fits {
                self.overflow(&mut state);
                return;
            }
        }
    }

    /// Builds the index from `log` unless it exists (or is being built: then waits).
    /// An index built before appends failed (the log's `rollbacks` moved since) is built
    /// again: it may name offsets that were never stored and that other keys now hold.
    pub async fn ensure(&self, log: &PartitionLog<DmaDisk>) -> Result<(), KeyIndexError> {
        enum Next {
            Stale,
            Build,
            Wait,
        }
        loop {
            let seen = self.ready.get();
            let next = match &*self.state.borrow() {
                State::Ready(_) if self.built_at_rollbacks.get() == log.rollbacks() => {
                    return Ok(())
                }
                State::Ready(_) => Next::Stale,
                State::OverBudget => return Err(self.over_budget()),
                State::Building { .. } => Next::Wait,
                State::Absent => Next::Build,
            };
            match next {
                Next::Stale => self.forget_all(&mut self.state.borrow_mut()),
                Next::Build => self.build(log).await?,
                // A build ends (ready, or failed and absent again): look again.
                Next::Wait => {
                    self.ready.wait_for(seen + 1).await;
                }
            }
        }
    }

    /// Compaction took `removed` expired tombstones out of the log: a key whose last record
    /// was one of them is forgotten, as an index built from the log now would not know it
    /// (`KeyNeverWritten` holds for it again, before and after a restart alike). Too many
    /// to name ([`RemovedTombstones::overflowed`]): the index is dropped and built again by
    /// the next key-conditional append. The caller also removes the index's snapshot, which
    /// may name them.
    pub fn forget_removed(&self, removed: RemovedTombstones) {
        let mut state = self.state.borrow_mut();
        match &mut *state {
            State::Ready(_) if removed.overflowed => {
                self.forget_all(&mut state);
                self.removals.set(self.removals.get() + 1);
            }
            State::Ready(map) => {
                let mut freed = 0;
                for (key, offset) in &removed.keys {
                    // At or before the tombstone: every record of its key up to it went in
                    // that pass (a build may have read an earlier one before its swap).
                    if map.get(key.as_slice()).is_some_and(|at| at <= offset) {
                        map.swap_remove(key.as_slice());
                        freed += entry_bytes(key);
                    }
                }
                if freed > 0 {
                    self.memory.give_back(freed);
                    self.held_bytes.set(self.held_bytes.get() - freed);
                    self.removals.set(self.removals.get() + 1);
                }
            }
            State::Building { .. } => {
                let mut pending = self.removed_while_building.borrow_mut();
                match (&mut *pending, removed.overflowed) {
                    (Some(keys), false)
                        if keys.len() + removed.keys.len()
                            <= crate::storage::REMOVED_TOMBSTONES_MAX =>
                    {
                        keys.extend(removed.keys)
                    }
                    _ => *pending = None,
                }
            }
            State::Absent | State::OverBudget => {}
        }
    }

    /// How many times keys compaction removed were forgotten (a snapshot taken before the
    /// last may name them).
    pub fn removals(&self) -> u64 {
        self.removals.get()
    }

    /// The log's start moved to `log_start` (retention, deleted records): keys whose last
    /// record is before it are forgotten and their memory given back, so the index holds
    /// what one built from the log now would (reads already answer so: `last_offset`). One
    /// pass over the keys each time the start moved since the last: called by the shard's
    /// retention pass only, so its cost is bounded by the pass's timer.
    pub fn forget_before(&self, log_start: u64) {
        if log_start <= self.swept_to.get() || self.snapshotting.get() > 0 {
            // (While a snapshot is written: the next pass.)
            return;
        }
        self.swept_to.set(log_start);
        if let State::Ready(map) = &mut *self.state.borrow_mut() {
            self.drop_below(map, log_start);
        }
        // (A build in progress drops them when it ends: `build`.)
    }

    /// Forgets the keys of `map` whose last offset is below `log_start` and gives their
    /// memory back.
    fn drop_below(&self, map: &mut Keys, log_start: u64) {
        let mut freed = 0;
        map.retain(|key, offset| {
            let keep = *offset >= log_start;
            if !keep {
                freed += entry_bytes(key);
            }
            keep
        });
        self.memory.give_back(freed);
        self.held_bytes.set(self.held_bytes.get() - freed);
    }

    /// Builds the index (the state is `Absent`).
    async fn build(&self, log: &PartitionLog<DmaDisk>) -> Result<(), KeyIndexError> {
        self.built_at_rollbacks.set(log.rollbacks());
        *self.removed_while_building.borrow_mut() = Some(Vec::new());
        *self.state.borrow_mut() = State::Building { tail: Vec::new() };
        let built = self.scan(log).await;
        let mut state = self.state.borrow_mut();
        let tail = match std::mem::replace(&mut *state, State::Absent) {
            State::Building { tail } => Some(tail),
            _ => None, // went over budget while building
        };
        let result = match (built, tail) {
            (Ok(mut map), Some(tail)) => {
                for (key, offset) in tail {
                    // The tail's entries were charged as they came: a key the map had
                    // already was charged twice.
                    let bytes = entry_bytes(&key);
                    if map.insert(key, offset).is_some() {
                        self.memory.give_back(bytes);
                        self.held_bytes.set(self.held_bytes.get() - bytes);
                    }
                }
                // Keys whose records the log start passed while the index was built (the
                // appends noted meanwhile too: `forget_before` left them to this).
                self.drop_below(&mut map, log.log_start_offset());
                match self.removed_while_building.borrow_mut().replace(Vec::new()) {
                    Some(removed) => {
                        *state = State::Ready(map);
                        drop(state);
                        self.forget_removed(RemovedTombstones {
                            keys: removed,
                            ..Default::default()
                        });
                        state = self.state.borrow_mut();
                    }
                    // Too many went while it was built to say which: built again next time.
                    None => {
                        drop(map);
                        self.forget_all(&mut state);
                    }
                }
                Ok(())
            }
            (Ok(_), None) | (Err(KeyIndexError::OverBudget { .. }), _) => {
                self.overflow(&mut state);
                Err(self.over_budget())
            }
            // Absent again: the next conditional append tries anew.
            (Err(e), _) => {
                self.memory.give_back(self.held_bytes.replace(0));
                Err(e)
            }
        };
        drop(state);
        self.ready.advance(self.ready.get() + 1);
        result
    }

    /// The last offset written for `key` (`None`: never, or only below `log_start`, the
    /// log's start now: a deletion that moved it forgets the key only once its segments
    /// went, `forget_before`); the index must be ready ([`KeyIndex::is_ready`], checked with
    /// no await in between).
    pub fn last_offset(&self, key: &[u8], log_start: u64) -> Option<u64> {
        match &*self.state.borrow() {
            State::Ready(map) => map.get(key).copied().filter(|o| *o >= log_start),
            _ => panic!("key index read before it was built"),
        }
    }

    /// The last offset written for `key` if the index is built: `Some(None)` for a key never
    /// written (or only below `log_start`, as [`KeyIndex::last_offset`]), `None` while the
    /// index does not exist (nothing is known).
    pub fn known_last_offset(&self, key: &[u8], log_start: u64) -> Option<Option<u64>> {
        match &*self.state.borrow() {
            State::Ready(map) => Some(map.get(key).copied().filter(|o| *o >= log_start)),
            _ => None,
        }
    }

    /// Writes the index as a snapshot covering `covered_offset` (see `state_snapshot.rs`)
    /// into a temporary file in `dir`, a step of [`state_snapshot::SNAPSHOT_STEP_BYTES`] at a
    /// time, and returns it for the caller to finish once everything it names is durable.
    /// `None` when there is nothing to store: not built, built before appends failed
    /// (`rollbacks`, the log's when `covered_offset` was read, moved), or it did so while
    /// the snapshot was written.
    ///
    /// Appends go on meanwhile: a key noted after `covered_offset` may be written with its
    /// new offset or its old one, and keys first seen after it are left out. Either way the
    /// load replays the log from `covered_offset`, which sets each key to its last offset
    /// again; the caller waits until every offset noted before the last step is durable
    /// and no append failed (`partition.rs`). No key is removed while it is written
    /// (`snapshotting`), so walking the map by position sees each key once.
    pub async fn write_snapshot(
        &self,
        log: &PartitionLog<DmaDisk>,
        dir: std::path::PathBuf,
        covered_offset: u64,
        rollbacks: u64,
    ) -> std::io::Result<Option<state_snapshot::SnapshotWriter>> {
        let count = match &*self.state.borrow() {
            State::Ready(map) if self.built_at_rollbacks.get() == rollbacks => map.len(),
            _ => return Ok(None),
        };
        let _done = Walking::new(&self.snapshotting);
        let removals = self.removals.get();
        let mut file =
            state_snapshot::SnapshotWriter::create(dir, state_snapshot::KEYS_FILE.into()).await?;
        let mut step = state_snapshot::keys_header(covered_offset, count);
        let mut at = 0;
        loop {
            let walked = match &*self.state.borrow() {
                // Dropped (over budget) or to be built again, or appends failed since
                // `covered_offset` (the snapshot would be dropped): nothing to store.
                State::Ready(map)
                    if self.built_at_rollbacks.get() == rollbacks
                        && log.rollbacks() == rollbacks
                        && self.removals.get() == removals =>
                {
                    while at < count && step.len() < state_snapshot::SNAPSHOT_STEP_BYTES {
                        // (No key is removed meanwhile: the map only grew.)
                        let Some((key, offset)) = map.get_index(at) else { break };
                        state_snapshot::push_key_entry(&mut step, key, *offset);
                        at += 1;
                    }
                    true
                }
                _ => false,
            };
            if !walked || (at < count && step.len() < state_snapshot::SNAPSHOT_STEP_BYTES) {
                file.abandon().await;
                return Ok(None);
            }
            if at == count {
                let crc = crc32c::crc32c_append(file.crc(), &step);
                step.extend_from_slice(&crc.to_le_bytes());
            }
            let written = file.write(std::mem::take(&mut step)).await;
            if let Err(e) = written {
                file.abandon().await;
                return Err(e);
            }
            if at == count {
                return Ok(Some(file));
            }
        }
    }

    /// Keys known (0 until built).
    pub fn len(&self) -> usize {
        match &*self.state.borrow() {
            State::Ready(map) => map.len(),
            _ => 0,
        }
    }

    /// Whether no key is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys of everything appended before the scan started: waits until that is readable
    /// (appends become readable when synced), then reads what the snapshot (if any) does not
    /// cover.
    async fn scan(&self, log: &PartitionLog<DmaDisk>) -> Result<Keys, KeyIndexError> {
        let end = log.next_offset();
        // Fenced or closed: fails (a fenced log never makes the rest visible); appends that
        // failed meanwhile leave less to wait for.
        log.wait_visible(end).await?;
        let (covered, mut map) = match state_snapshot::load_keys(
            log.dir().to_owned(),
            state_snapshot::KEYS_FILE,
        )
        .await
        {
            Some((covered, map)) if covered <= end => (covered, map),
            _ => (0, Keys::new()),
        };
        // Keys whose records went since the snapshot (retention, deleted records) are not
        // loaded (`forget_before`).
        let log_start = log.log_start_offset();
        map.retain(|_, offset| *offset >= log_start);
        let loaded: usize = map.keys().map(|k: &Vec<u8>| entry_bytes(k)).sum();
        if !self.charge(loaded) {
            return Err(self.over_budget());
        }
        let mut scratch = AlignedVec::new();
        let mut slice = crate::time_slice::TimeSlice::default();
        let start = log.log_start_offset().max(covered);
        let mut offset = start;
        while offset < end {
            // Retention or a deletion may move the start past the cursor meanwhile: what
            // went is forgotten anyway (the read below the start would fail).
            offset = offset.max(log.log_start_offset());
            if offset >= end {
                break;
            }
            let out = log.read(offset, BUILD_READ_BYTES, FirstBatch::Always).await?;
            if out.batches.is_empty() {
                break;
            }
            for view in &out.batches {
                for envelope in Envelopes::new(view).filter_map(Result::ok) {
                    offset = offset.max(envelope.header().next_offset());
                    let Ok(batch) = envelope.open(&mut scratch) else { continue };
                    for (i, r) in batch.records().enumerate() {
                        // A batch may hold tens of thousands of records: the shard is given
                        // up within one too.
                        if i % CHECK_EVERY_RECORDS == CHECK_EVERY_RECORDS - 1 {
                            slice.yield_if_due().await;
                        }
                        if let (Some(key), true) = (r.key(), r.offset() < end) {
                            match map.get_mut(key) {
                                Some(last) => *last = r.offset(),
                                None if self.charge(entry_bytes(key)) => {
                                    map.insert(key.to_vec(), r.offset());
                                }
                                None => return Err(self.over_budget()),
                            }
                        }
                    }
                    // A read from the cache does not wait: a long log would hold the shard
                    // (every connection, the peers' forwards) until the whole scan ended.
                    slice.yield_if_due().await;
                }
            }
        }
        info!(dir = %log.dir().display(), keys = map.len(), snapshot_offset = covered, scanned_offsets = end.saturating_sub(start), "key index built");
        Ok(map)
    }
}

/// One snapshot walking the map: counted in `snapshotting` until dropped (the snapshot
/// ended, or its task was cancelled).
struct Walking<'a>(&'a Cell<u32>);

impl<'a> Walking<'a> {
    fn new(count: &'a Cell<u32>) -> Self {
        count.set(count.get() + 1);
        Walking(count)
    }
}

impl Drop for Walking<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}
