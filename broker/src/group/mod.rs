//! Consumer groups: the coordinator's state on each shard.
//!
//! Contract: a group lives on one shard, its *coordinator*: the owner of partition
//! `crc32c(group) % n` of the internal topic [`OFFSETS_TOPIC`] (created at start with
//! `group_offsets_partitions` partitions, spread over the shards like any topic). Requests
//! for a group reach that shard (the api forwards them: `api/group.rs`). Membership
//! (`membership.rs`, with the assignors of `assignor.rs`) is kept in memory: after a restart
//! members join again. Committed offsets are records of the offsets partition
//! (`offsets_log.rs`), appended at `durable` before a commit is answered and replayed the
//! first time the coordinator needs the partition, so they survive kill -9 like any durable
//! append. This module holds state only; it imports no shard or api code.
//!
//! # Compaction of the offsets log
//! Every commit is a record, so an offsets partition grows without end. When it grew by
//! `group_offsets_compact_bytes` (or by the last snapshot's size, if larger) since the last
//! compaction, [`Coordinator::compact`] writes a *snapshot*, the latest value of every key
//! the partition holds as ordinary commit records appended at `durable`, and once that is
//! durable deletes the records before it (`PartitionLog::delete_records_before`: whole
//! segments go). Replay is unchanged (later records win), so a crash anywhere loses
//! nothing: before the deletion the old records are there, after it the snapshot is.
//!
//! Why a commit racing with a snapshot is never overwritten by an older value at replay:
//! - A commit is registered *in flight* ([`Coordinator::commit_enqueued`]) in the same
//!   synchronous step that assigns its log offset (`PartitionLog::enqueue`), and leaves
//!   that set only after its durable ack has applied it to the map (or it failed). So at
//!   any moment, the newest value of a key among commits enqueued so far is in the map or
//!   in flight (whichever has the larger log offset): its *current* value.
//! - The snapshot reads current values group by group, yielding between groups; every key
//!   committed after the reading began is marked dirty. Then, in one synchronous step
//!   (`T`), it appends the current values of the dirty keys after what it read and enqueues
//!   every batch. So each key's last record in the snapshot holds its current value as of
//!   `T` (a key not dirty did not change since it was read).
//! - Enqueue assigns offsets in call order: commits enqueued before `T` lie before the
//!   snapshot, those after `T` after it. Replaying up to any point therefore gives, for
//!   every key, the newest value enqueued before that point: the snapshot never restates
//!   an older value after a newer one, and nothing it restates is lost by the deletion,
//!   which waits for the whole snapshot to be durable.
//! - A commit in flight at `T` whose append then fails is restated by the snapshot anyway;
//!   that needs no care, because a failed write or sync fails every append queued after
//!   it, the snapshot included (`storage/log/core.rs`). Only a commit whose failure was
//!   not yet seen by its handler at `T` can be restated by a snapshot that succeeds: like
//!   any failed request, its outcome is unknown to the client. Once the snapshot is durable
//!   its records are applied to the map (a later log offset wins), so the map always says
//!   what a replay would.
//! - Records are applied by their handlers' tasks once durable (a snapshot by the
//!   compaction's low-priority task), not in log order. A later log offset wins; for
//!   deletions the map keeps the tombstone's offset as a marker while anything enqueued
//!   before it is unapplied (`OffsetsState::deleted`), so an older value applied late (a
//!   snapshot restating the key, a commit whose task ran late) does not bring it back.

pub mod assignor;
pub use self::coordinator_members::Removal;
mod coordinator_members;
pub mod membership;
pub mod offsets_log;
mod offsets_state;

#[cfg(test)]
mod compaction_tests;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use glommio::TaskQueueHandle;
use tracing::info;
use wire::AckLevel;

use self::assignor::TopicPartition;
use self::membership::Membership;
use self::offsets_log::{Committed, OffsetRecord, Packer, Position};
use self::offsets_state::{OffsetsState, Pending};
use crate::storage::io::Disk;
use crate::storage::{PartitionLog, StorageError};
use crate::watermark::Watermark;

/// The internal topic holding committed offsets (Kafka's name for the same idea).
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Longest group id.
pub const GROUP_ID_BYTES_MAX: usize = 249;
/// Longest metadata string stored with a committed offset (Kafka's default).
pub const COMMIT_METADATA_BYTES_MAX: usize = 4096;

/// What one committed offset keeps in memory, about: its key (group id, topic name), its
/// metadata, and the map entry around them. Committed offsets are bounded by it per shard
/// (`group_offset_bytes_per_shard_max`), applied and in flight.
pub fn offset_entry_bytes(group: &str, topic: &str, metadata: &str) -> usize {
    const ENTRY_BYTES: usize = 128;
    ENTRY_BYTES + group.len() + topic.len() + metadata.len()
}

/// [`offset_entry_bytes`] of a committed offset.
fn entry_bytes(group: &str, tp: &TopicPartition, c: &Committed) -> usize {
    offset_entry_bytes(group, &tp.0, &c.metadata)
}

/// Which partition of [`OFFSETS_TOPIC`] (of `partitions`) holds `group`.
pub fn offsets_partition(group: &str, partitions: u32) -> u32 {
    crc32c::crc32c(group.as_bytes()) % partitions.max(1)
}

/// Whether `group` is a valid id (`metadata::is_valid_id`: 1..=249 bytes, no control
/// characters).
pub fn valid_group_id(group: &str) -> bool {
    crate::metadata::is_valid_id(group)
}

/// Largest batch of a snapshot: the last one is encoded in the step that must not yield.
const SNAPSHOT_BATCH_BYTES_MAX: usize = 256 << 10;

/// What one compaction did.
#[derive(Debug, Clone, Copy)]
pub struct Compaction {
    /// Records the snapshot wrote.
    pub records: usize,
    /// Bytes the snapshot wrote.
    pub snapshot_bytes: u64,
    /// First offset of the snapshot: the new log start.
    pub log_start_offset: u64,
    /// Whole segments deleted.
    pub segments_deleted: usize,
    /// Log size after the deletion.
    pub size_bytes: u64,
    /// From start to end.
    pub elapsed: Duration,
}

/// One group: its members and its committed offsets.
#[derive(Debug)]
pub struct Group {
    /// Members, target and grants.
    pub membership: Membership,
    /// Committed offsets.
    pub offsets: BTreeMap<TopicPartition, Committed>,
    /// Since when it has had no members (`None` while it has some). A group this process
    /// has not seen with members counts as empty since it was loaded: after a restart
    /// offsets expire no earlier than `retention` later (membership is not persisted).
    pub empty_since: Option<Instant>,
    /// About what its members and target hold ([`Membership::bytes`]), counted again
    /// whenever the membership changes (`Coordinator::member_bytes` sums it per group).
    pub member_bytes: usize,
    /// `member_bytes` as of the last sweep (`Coordinator::expire`): a group holding more
    /// now grew (a join, grants, a topic's partitions) and is checked against the budget.
    swept_bytes: usize,
    /// Advanced whenever its target, grants or members change: its members' held heartbeats
    /// wait on it (`api/group.rs`; one group's churn wakes no other group's).
    pub changes: Watermark,
}

impl Group {
    fn new(id: &str) -> Group {
        Group {
            membership: Membership::new(id),
            offsets: BTreeMap::new(),
            empty_since: Some(Instant::now()),
            member_bytes: 0,
            swept_bytes: 0,
            changes: Watermark::new(0),
        }
    }

    /// Keeps `empty_since` and `member_bytes` true after the membership changed.
    fn note_membership(&mut self, now: Instant) {
        if !self.membership.is_empty() {
            self.empty_since = None;
        } else if self.empty_since.is_none() {
            self.empty_since = Some(now);
        }
        self.member_bytes = self.membership.bytes();
    }
}

/// The groups this shard coordinates; see the module docs.
pub struct Coordinator {
    groups: RefCell<BTreeMap<String, Group>>,
    /// Offsets partitions replayed into `groups`.
    loaded: RefCell<BTreeSet<u32>>,
    /// One replay at a time; the others wait for it.
    load_lock: glommio::sync::Semaphore,
    /// Commits in flight and compaction state, per replayed offsets partition.
    offsets: RefCell<BTreeMap<u32, OffsetsState>>,
    /// The low-priority task queue compactions run in (made on first use).
    compaction_queue: Cell<Option<TaskQueueHandle>>,
    /// Committed offsets over every group in `groups` and what they keep
    /// ([`offset_entry_bytes`] summed), kept as they change (`Coordinator::replaced`; a
    /// commit checks its room against them: summing per commit cost O(groups)).
    offset_count: Cell<usize>,
    offset_bytes: Cell<usize>,
}

impl Default for Coordinator {
    fn default() -> Self {
        Coordinator {
            groups: RefCell::new(BTreeMap::new()),
            loaded: RefCell::new(BTreeSet::new()),
            load_lock: glommio::sync::Semaphore::new(1),
            offsets: RefCell::new(BTreeMap::new()),
            compaction_queue: Cell::new(None),
            offset_count: Cell::new(0),
            offset_bytes: Cell::new(0),
        }
    }
}

/// A commit appended to the offsets log and not yet acked; see the module docs. Dropping
/// it (the append failed, or the request was dropped) forgets it; [`InFlight::applied`]
/// first records it in the map.
#[must_use = "a commit in flight stays registered until applied or dropped"]
pub struct InFlight<'a> {
    coordinator: &'a Coordinator,
    index: u32,
    group: String,
    commits: Vec<(TopicPartition, Pending)>,
    /// Where its records start (`OffsetsState::unapplied`).
    base_offset: u64,
}

impl InFlight<'_> {
    /// The commit is durable: record it in the map (a later log offset wins).
    pub fn applied(mut self) {
        for (tp, (log_offset, c)) in std::mem::take(&mut self.commits) {
            self.settled(&tp, log_offset);
            match c {
                Some(c) => self.coordinator.apply(self.index, &self.group, tp, c),
                None => self.coordinator.apply_tombstone(self.index, &self.group, &tp, log_offset),
            }
        }
    }

    /// No longer in flight (applied or failed).
    fn settled(&self, tp: &TopicPartition, log_offset: u64) {
        let mut offsets = self.coordinator.offsets.borrow_mut();
        let Some(st) = offsets.get_mut(&self.index) else { return };
        let key = (self.group.clone(), tp.clone());
        st.land(&key, log_offset);
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        for (tp, (log_offset, _)) in std::mem::take(&mut self.commits) {
            self.settled(&tp, log_offset);
        }
        self.coordinator.settled(self.index, self.base_offset);
    }
}

/// A compaction's snapshot from its enqueue until it was applied (or failed).
struct SnapshotInFlight<'a> {
    coordinator: &'a Coordinator,
    index: u32,
    base_offset: u64,
}

impl Drop for SnapshotInFlight<'_> {
    fn drop(&mut self) {
        self.coordinator.settled(self.index, self.base_offset);
    }
}

impl Coordinator {
    /// Replays offsets partition `index` (its `log`) the first time it is needed.
    pub async fn ensure_loaded<D: Disk>(
        &self,
        index: u32,
        log: &PartitionLog<D>,
    ) -> Result<(), StorageError> {
        if self.loaded.borrow().contains(&index) {
            return Ok(());
        }
        let _permit = self.load_lock.acquire_permit(1).await;
        if self.loaded.borrow().contains(&index) {
            return Ok(());
        }
        let started = Instant::now();
        let (replayed, skipped) = offsets_log::replay(log).await?;
        let mut groups = self.groups.borrow_mut();
        let mut committed = 0usize;
        for (id, offsets) in replayed {
            committed += offsets.len();
            let g = groups.entry(id.clone()).or_insert_with(|| Group::new(&id));
            for (tp, c) in offsets {
                // A commit made while replaying (none can be: commits wait for the load) or
                // a newer one wins.
                if g.offsets.get(&tp).is_none_or(|old| old.log_offset < c.log_offset) {
                    self.replaced(&id, &tp, Some(&c), g.offsets.get(&tp));
                    g.offsets.insert(tp, c);
                }
            }
        }
        self.loaded.borrow_mut().insert(index);
        self.offsets.borrow_mut().entry(index).or_default();
        info!(
            partition = index,
            committed,
            skipped,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "group offsets replayed"
        );
        Ok(())
    }

    /// Runs `f` on `group`, created (empty) if this coordinator does not know it.
    pub fn with_group<R>(&self, group: &str, f: impl FnOnce(&mut Group) -> R) -> R {
        let mut groups = self.groups.borrow_mut();
        let g = groups.entry(group.to_owned()).or_insert_with(|| Group::new(group));
        let (version, members_before) = (g.membership.version, g.membership.members.len());
        let r = f(g);
        if g.membership.version != version {
            g.note_membership(Instant::now());
            g.changes.advance(g.changes.get() + 1);
        } else if g.membership.members.len() != members_before {
            g.note_membership(Instant::now());
        }
        if g.membership.is_empty() && g.offsets.is_empty() {
            groups.remove(group);
        }
        r
    }

    /// `group` has members elsewhere (the Kafka listener's): while its native membership
    /// is empty, its retention counts from now (from when those members went, to within a
    /// sweep).
    pub fn used_elsewhere(&self, group: &str, now: Instant) {
        if let Some(g) = self.groups.borrow_mut().get_mut(group) {
            if g.membership.is_empty() {
                g.empty_since = Some(now);
            }
        }
    }

    /// Runs `f` on `group` if this coordinator knows it.
    pub fn read_group<R>(&self, group: &str, f: impl FnOnce(Option<&Group>) -> R) -> R {
        f(self.groups.borrow().get(group))
    }

    /// Keeps `offset_count` and `offset_bytes` true as `group`'s value of `tp` goes from
    /// `old` to `new` (every change of a group's offsets goes through it).
    fn replaced(
        &self,
        group: &str,
        tp: &TopicPartition,
        new: Option<&Committed>,
        old: Option<&Committed>,
    ) {
        let bytes = |c: Option<&Committed>| c.map_or(0, |c| entry_bytes(group, tp, c));
        self.offset_bytes.set(self.offset_bytes.get() + bytes(new) - bytes(old));
        let count = self.offset_count.get() + usize::from(new.is_some());
        self.offset_count.set(count - usize::from(old.is_some()));
    }

    /// What was enqueued at `base_offset` in offsets partition `index` was applied or failed.
    fn settled(&self, index: u32, base_offset: u64) {
        if let Some(st) = self.offsets.borrow_mut().get_mut(&index) {
            st.settled(base_offset);
        }
    }

    /// Records a stored commit in offsets partition `index` (a later log offset wins, a
    /// tombstone's too: see `OffsetsState::deleted`).
    pub fn apply(&self, index: u32, group: &str, tp: TopicPartition, committed: Committed) {
        if let Some(st) = self.offsets.borrow().get(&index) {
            if st.forgotten(&(group.to_owned(), tp.clone()), committed.log_offset) {
                return;
            }
        }
        self.with_group(group, |g| {
            if g.offsets.get(&tp).is_none_or(|old| old.log_offset < committed.log_offset) {
                self.replaced(group, &tp, Some(&committed), g.offsets.get(&tp));
                g.offsets.insert(tp, committed);
            }
        });
    }

    /// Records a stored tombstone of `tp` at `log_offset`: the key is forgotten unless a
    /// later commit set it.
    pub fn apply_tombstone(&self, index: u32, group: &str, tp: &TopicPartition, log_offset: u64) {
        self.with_group(group, |g| {
            if g.offsets.get(tp).is_some_and(|old| old.log_offset < log_offset) {
                self.replaced(group, tp, None, g.offsets.get(tp));
                g.offsets.remove(tp);
            }
        });
        if let Some(st) = self.offsets.borrow_mut().get_mut(&index) {
            st.deleted((group.to_owned(), tp.clone()), log_offset);
        }
    }

    /// Registers a commit of `group` to offsets partition `index` whose records were just
    /// enqueued at `base_offset` (one per entry of `commits`, in order: a position, or
    /// `None` for a tombstone). Must be called in the same synchronous step as the enqueue;
    /// see the module docs.
    pub fn commit_enqueued(
        &self,
        index: u32,
        group: &str,
        commits: Vec<(TopicPartition, Option<Position>)>,
        base_offset: u64,
        committed_ms: i64,
    ) -> InFlight<'_> {
        let commits: Vec<(TopicPartition, Pending)> = commits
            .into_iter()
            .enumerate()
            .map(|(i, (tp, value))| {
                let log_offset = base_offset + i as u64;
                (tp, (log_offset, value.map(|p| p.committed(log_offset, committed_ms))))
            })
            .collect();
        let mut offsets = self.offsets.borrow_mut();
        let st = offsets.entry(index).or_default();
        st.enqueued(base_offset);
        for (tp, pending) in &commits {
            let key = (group.to_owned(), tp.clone());
            if let Some(dirty) = &mut st.dirty {
                dirty.insert(key.clone());
            }
            st.fly(key, pending.clone());
        }
        InFlight { coordinator: self, index, group: group.to_owned(), commits, base_offset }
    }

    /// Whether offsets partition `index`, now `size_bytes` long, grew enough since its last
    /// compaction (by `compact_bytes`, or by the last snapshot's size if larger; 0 = never)
    /// and none is running. If so it is marked running: call [`Coordinator::compact`].
    pub fn compaction_due(&self, index: u32, size_bytes: u64, compact_bytes: u64) -> bool {
        let mut offsets = self.offsets.borrow_mut();
        let Some(st) = offsets.get_mut(&index) else { return false };
        let grown = size_bytes.saturating_sub(st.compacted_size_bytes);
        if compact_bytes == 0 || st.compacting || grown < compact_bytes.max(st.snapshot_bytes) {
            return false;
        }
        st.compacting = true;
        true
    }

    /// The low-priority task queue compactions run in.
    pub fn compaction_queue(&self) -> TaskQueueHandle {
        if let Some(q) = self.compaction_queue.get() {
            return q;
        }
        let q = glommio::executor().create_task_queue(
            glommio::Shares::Static(100),
            glommio::Latency::NotImportant,
            "group-offsets-compaction",
        );
        self.compaction_queue.set(Some(q));
        q
    }

    /// Compacts offsets partition `index` (of `partitions`), whose log is `log`: writes a
    /// snapshot of every key's current value, then deletes the records before it. See the
    /// module docs. Call only after [`Coordinator::compaction_due`] said so.
    pub async fn compact<D: Disk>(
        &self,
        index: u32,
        partitions: u32,
        log: &PartitionLog<D>,
        now_ms: i64,
    ) -> Result<Compaction, CompactionError> {
        let started = Instant::now();
        let result = self.compact_once(index, partitions, log, now_ms).await;
        let mut offsets = self.offsets.borrow_mut();
        let st = offsets.get_mut(&index).expect("compaction of a replayed partition");
        assert!(st.compacting, "offsets partition {index}: compaction not marked running");
        st.compacting = false;
        st.dirty = None;
        // A failed compaction waits for as much growth again before the next attempt.
        st.compacted_size_bytes = log.size_bytes();
        let mut c = result?;
        st.snapshot_bytes = c.snapshot_bytes;
        c.size_bytes = st.compacted_size_bytes;
        c.elapsed = started.elapsed();
        Ok(c)
    }

    async fn compact_once<D: Disk>(
        &self,
        index: u32,
        partitions: u32,
        log: &PartitionLog<D>,
        now_ms: i64,
    ) -> Result<Compaction, CompactionError> {
        // Read every key's current value, group by group, noting keys committed meanwhile.
        let ids: BTreeSet<String> = {
            let mut offsets = self.offsets.borrow_mut();
            let st = offsets.get_mut(&index).expect("compaction of a replayed partition");
            st.dirty = Some(BTreeSet::new());
            let groups = self.groups.borrow();
            let mapped = groups.keys().filter(|id| offsets_partition(id, partitions) == index);
            mapped.cloned().chain(st.in_flight().keys().map(|(g, _)| g.clone())).collect()
        };
        let batch_bytes_max = log.batch_bytes_max().min(SNAPSHOT_BATCH_BYTES_MAX);
        let mut packer = Packer::new(batch_bytes_max);
        for id in ids {
            for (tp, c) in self.current(index, &id) {
                // The commit's own time: a snapshot does not make an offset younger.
                let at_ms = c.committed_ms;
                let committed = Some(Position::from(c));
                packer.push(OffsetRecord { group: id.clone(), tp, committed }, at_ms)?;
            }
            if cfg!(test) {
                // Tests let commits in between every group, so the dirty keys matter.
                glommio::executor().yield_now().await;
            } else {
                glommio::yield_if_needed().await;
            }
        }
        // From here until every batch is enqueued: no await (the moment `T`).
        let dirty = {
            let mut offsets = self.offsets.borrow_mut();
            let st = offsets.get_mut(&index).expect("compaction of a replayed partition");
            st.dirty.take().expect("dirty keys are tracked while the snapshot reads")
        };
        for (group, tp) in dirty {
            // A key whose only commit failed meanwhile has no value: a tombstone undoes
            // whatever was read for it.
            let current = self.current_one(index, &group, &tp);
            let at_ms = current.as_ref().map_or(now_ms, |c| c.committed_ms);
            let committed = current.map(Position::from);
            packer.push(OffsetRecord { group, tp, committed }, at_ms)?;
        }
        let records = packer.records();
        let batches = packer.finish()?;
        let mut tickets = Vec::with_capacity(batches.len());
        for (batch, _) in &batches {
            tickets.push(log.enqueue(batch, AckLevel::Durable, now_ms)?);
        }
        // Nothing to restate: every record before the high watermark is superseded.
        let start = tickets.first().map_or(log.high_watermark(), |t| t.base_offset);
        let _unapplied = tickets.first().map(|t| {
            let mut offsets = self.offsets.borrow_mut();
            let st = offsets.get_mut(&index).expect("compaction of a replayed partition");
            st.enqueued(t.base_offset);
            SnapshotInFlight { coordinator: self, index, base_offset: t.base_offset }
        });
        // The moment `T` ends here.
        let mut snapshot_bytes = 0;
        for (ticket, (batch, written)) in tickets.into_iter().zip(&batches) {
            let base_offset = ticket.base_offset;
            ticket.wait().await?;
            snapshot_bytes += batch.len() as u64;
            // Durable: the map says what a replay would (a later log offset wins).
            for (i, (r, committed_ms)) in written.iter().enumerate() {
                let log_offset = base_offset + i as u64;
                match &r.committed {
                    Some(p) => {
                        let c = p.clone().committed(log_offset, *committed_ms);
                        self.apply(index, &r.group, r.tp.clone(), c);
                    }
                    None => self.apply_tombstone(index, &r.group, &r.tp, log_offset),
                }
            }
        }
        let segments_deleted = log.delete_records_before(start).await?;
        Ok(Compaction {
            records,
            snapshot_bytes,
            log_start_offset: start,
            segments_deleted,
            size_bytes: 0,
            elapsed: Duration::ZERO,
        })
    }

    /// The current value of every key of `group` in offsets partition `index`: the map's or
    /// the newest in flight, whichever has the larger log offset (a tombstone in flight
    /// hides the map's value).
    pub fn current(&self, index: u32, group: &str) -> Vec<(TopicPartition, Committed)> {
        let mut out: BTreeMap<TopicPartition, Committed> =
            self.groups.borrow().get(group).map(|g| g.offsets.clone()).unwrap_or_default();
        if let Some(st) = self.offsets.borrow().get(&index) {
            let from = (group.to_owned(), (String::new(), 0));
            for ((g, tp), (log_offset, c)) in st.in_flight().range(from..) {
                if g != group {
                    break;
                }
                if out.get(tp).is_none_or(|old| old.log_offset < *log_offset) {
                    match c {
                        Some(c) => out.insert(tp.clone(), c.clone()),
                        None => out.remove(tp),
                    };
                }
            }
        }
        out.into_iter().collect()
    }

    /// The current value of one key (see [`Coordinator::current`]).
    fn current_one(&self, index: u32, group: &str, tp: &TopicPartition) -> Option<Committed> {
        let mapped = self.groups.borrow().get(group).and_then(|g| g.offsets.get(tp).cloned());
        let offsets = self.offsets.borrow();
        let key = (group.to_owned(), tp.clone());
        let flying = offsets.get(&index).and_then(|st| st.in_flight().get(&key).cloned());
        match (mapped, flying) {
            (Some(m), Some((log_offset, f))) if log_offset > m.log_offset => f,
            (Some(m), _) => Some(m),
            (None, Some((_, f))) => f,
            (None, None) => None,
        }
    }

    /// Ids of every group this coordinator holds (loaded offsets partitions, members).
    pub fn group_ids(&self) -> Vec<String> {
        self.groups.borrow().keys().cloned().collect()
    }

    /// The committed offsets of `group` (in offsets partition `index`) to forget now, from
    /// their current values (commits in flight included): those of topics that no longer
    /// exist or were created again since (`topic_id` gives a topic's current id), and, when `retention_ms > 0` and the group has had no members for that long
    /// and no commit for that long, all of them (Kafka's `offsets.retention.minutes`).
    pub fn expired(
        &self,
        index: u32,
        group: &str,
        now: Instant,
        now_ms: i64,
        retention_ms: u64,
        topic_id: &dyn Fn(&str) -> Option<u64>,
    ) -> Vec<TopicPartition> {
        let current = self.current(index, group);
        let retention = Duration::from_millis(retention_ms);
        let idle = retention_ms > 0
            && self.groups.borrow().get(group).is_some_and(|g| {
                g.empty_since.is_some_and(|t| now.saturating_duration_since(t) >= retention)
            })
            && current.iter().all(|(_, c)| c.committed_ms <= now_ms - retention_ms as i64);
        current
            .into_iter()
            .filter(|(tp, c)| idle || !c.belongs_to(topic_id(&tp.0)))
            .map(|(tp, _)| tp)
            .collect()
    }

    /// Every committed offset this coordinator holds (loaded partitions only) that belongs
    /// to the topic of its name now (`topic_id` gives a topic's current id), at most `max`:
    /// (group, topic, partition, offset).
    pub fn committed(
        &self,
        max: usize,
        topic_id: &dyn Fn(&str) -> Option<u64>,
    ) -> Vec<(String, String, u32, u64)> {
        self.groups
            .borrow()
            .iter()
            .flat_map(|(id, g)| {
                g.offsets
                    .iter()
                    .filter(|((t, _), c)| c.belongs_to(topic_id(t)))
                    .map(move |((t, p), c)| (id.clone(), t.clone(), *p, c.offset))
            })
            .take(max)
            .collect()
    }

    /// Committed-offset records enqueued and not yet applied, over every offsets partition:
    /// with [`Coordinator::offset_count`], what a commit's room for new keys is checked
    /// against (an in-flight update of a known key counts too, so near the limit a new key
    /// may be refused a little early).
    pub fn offsets_in_flight(&self) -> usize {
        self.offsets.borrow().values().map(|st| st.in_flight().len()).sum()
    }

    /// What the committed offsets of all groups this coordinator holds and the commits in
    /// flight keep ([`offset_entry_bytes`] summed): what a commit's room in bytes is checked
    /// against (`group_offset_bytes_per_shard_max`).
    pub fn offset_bytes(&self) -> usize {
        debug_assert_eq!(
            self.offset_bytes.get(),
            self.groups
                .borrow()
                .iter()
                .flat_map(|(id, g)| g.offsets.iter().map(move |(tp, c)| entry_bytes(id, tp, c)))
                .sum::<usize>(),
            "the running count of committed offsets' bytes"
        );
        let flying: usize = self.offsets.borrow().values().map(|st| st.in_flight_bytes()).sum();
        self.offset_bytes.get() + flying
    }

    /// Committed offsets of all groups this coordinator holds.
    pub fn offset_count(&self) -> usize {
        debug_assert_eq!(
            self.offset_count.get(),
            self.groups.borrow().values().map(|g| g.offsets.len()).sum::<usize>(),
            "the running count of committed offsets"
        );
        self.offset_count.get()
    }
}

/// Why a compaction of the offsets log stopped (nothing is lost: see the module docs).
#[derive(Debug, thiserror::Error)]
pub enum CompactionError {
    /// Appending the snapshot or deleting the records before it failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A record did not fit a batch.
    #[error("cannot build a snapshot batch: {0}")]
    Build(#[from] wire::BuildError),
}
