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

pub mod assignor;
pub mod membership;
pub mod offsets_log;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use tracing::info;

use self::assignor::TopicPartition;
use self::membership::Membership;
use self::offsets_log::Committed;
use crate::storage::{DmaDisk, PartitionLog, StorageError};
use crate::watermark::Watermark;

/// The internal topic holding committed offsets (Kafka's name for the same idea).
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Longest group id.
pub const GROUP_ID_BYTES_MAX: usize = 249;
/// Longest metadata string stored with a committed offset (Kafka's default).
pub const COMMIT_METADATA_BYTES_MAX: usize = 4096;

/// Which partition of [`OFFSETS_TOPIC`] (of `partitions`) holds `group`.
pub fn offsets_partition(group: &str, partitions: u32) -> u32 {
    crc32c::crc32c(group.as_bytes()) % partitions.max(1)
}

/// Whether `group` is a valid id: 1..=249 bytes of `[A-Za-z0-9._-]` (the topic rule).
pub fn valid_group_id(group: &str) -> bool {
    !group.is_empty()
        && group.len() <= GROUP_ID_BYTES_MAX
        && group.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// One group: its members and its committed offsets.
#[derive(Debug)]
pub struct Group {
    /// Members, target and grants.
    pub membership: Membership,
    /// Committed offsets.
    pub offsets: BTreeMap<TopicPartition, Committed>,
}

/// The groups this shard coordinates; see the module docs.
pub struct Coordinator {
    groups: RefCell<BTreeMap<String, Group>>,
    /// Offsets partitions replayed into `groups`.
    loaded: RefCell<BTreeSet<u32>>,
    /// One replay at a time; the others wait for it.
    load_lock: glommio::sync::Semaphore,
    /// Advanced whenever some group's target, grants or members change: a held heartbeat
    /// waits on it (`api/group.rs`).
    pub changes: Watermark,
}

impl Default for Coordinator {
    fn default() -> Self {
        Coordinator {
            groups: RefCell::new(BTreeMap::new()),
            loaded: RefCell::new(BTreeSet::new()),
            load_lock: glommio::sync::Semaphore::new(1),
            changes: Watermark::new(0),
        }
    }
}

impl Coordinator {
    /// Replays offsets partition `index` (its `log`) the first time it is needed.
    pub async fn ensure_loaded(
        &self,
        index: u32,
        log: &PartitionLog<DmaDisk>,
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
            let g = groups.entry(id.clone()).or_insert_with(|| Group {
                membership: Membership::new(&id),
                offsets: BTreeMap::new(),
            });
            for (tp, c) in offsets {
                // A commit made while replaying (none can be: commits wait for the load) or
                // a newer one wins.
                if g.offsets.get(&tp).is_none_or(|old| old.log_offset < c.log_offset) {
                    g.offsets.insert(tp, c);
                }
            }
        }
        self.loaded.borrow_mut().insert(index);
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
        let g = groups.entry(group.to_owned()).or_insert_with(|| Group {
            membership: Membership::new(group),
            offsets: BTreeMap::new(),
        });
        let version = g.membership.version;
        let r = f(g);
        if g.membership.version != version {
            self.changes.advance(self.changes.get() + 1);
        }
        if g.membership.is_empty() && g.offsets.is_empty() {
            groups.remove(group);
        }
        r
    }

    /// Runs `f` on `group` if this coordinator knows it.
    pub fn read_group<R>(&self, group: &str, f: impl FnOnce(Option<&Group>) -> R) -> R {
        f(self.groups.borrow().get(group))
    }

    /// Records a stored commit (a later log offset wins).
    pub fn apply(&self, group: &str, tp: TopicPartition, committed: Committed) {
        self.with_group(group, |g| {
            if g.offsets.get(&tp).is_none_or(|old| old.log_offset < committed.log_offset) {
                g.offsets.insert(tp, committed);
            }
        });
    }

    /// Removes members whose session timed out, in every group; returns (group, member).
    pub fn expire(
        &self,
        now: Instant,
        partition_count: &dyn Fn(&str) -> u32,
    ) -> Vec<(String, String)> {
        let mut gone = Vec::new();
        let mut changed = false;
        let mut groups = self.groups.borrow_mut();
        for (id, g) in groups.iter_mut() {
            if g.membership.is_empty() {
                continue;
            }
            let version = g.membership.version;
            for member in g.membership.expire(now, partition_count) {
                gone.push((id.clone(), member));
            }
            g.membership.refresh_partitions(partition_count);
            changed |= g.membership.version != version;
        }
        if changed {
            self.changes.advance(self.changes.get() + 1);
        }
        groups.retain(|_, g| !(g.membership.is_empty() && g.offsets.is_empty()));
        gone
    }

    /// Every committed offset this coordinator holds (loaded partitions only), at most
    /// `max`: (group, topic, partition, offset).
    pub fn committed(&self, max: usize) -> Vec<(String, String, u32, u64)> {
        self.groups
            .borrow()
            .iter()
            .flat_map(|(id, g)| {
                g.offsets.iter().map(move |((t, p), c)| (id.clone(), t.clone(), *p, c.offset))
            })
            .take(max)
            .collect()
    }

    /// Groups whose id starts with `prefix`: (id, members, generation).
    pub fn list(&self, prefix: &str) -> Vec<(String, u32, u32)> {
        self.groups
            .borrow()
            .iter()
            .filter(|(id, _)| id.starts_with(prefix))
            .map(|(id, g)| (id.clone(), g.membership.members.len() as u32, g.membership.generation))
            .collect()
    }
}
