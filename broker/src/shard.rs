//! One shard: the registry its handlers read.
//!
//! Contract: a shard is one glommio executor pinned to a core. It owns its metadata
//! snapshot, its partitions (`partition.rs`), the cache of recent batches, its counters and
//! its end of the mesh (`mesh.rs`); nothing of it is touched by another thread. It installs
//! metadata snapshots (opening and retiring partitions) and closes its partitions at
//! shutdown. It imports neither the api nor subscriptions: they use it, and the mesh inbox
//! (`peer.rs`) calls into them.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use glommio::channels::channel_mesh::Senders;
use tracing::{info, warn};

use crate::budget::MemoryBudget;
use crate::config::BrokerConfig;
use crate::counters::Counters;
use crate::descriptors::{ConnectionSlots, DescriptorPools, StorageFiles};
use crate::group::Coordinator;
use crate::layout::journal_root;
use crate::mesh::{Mesh, ShardMsg};
use crate::metadata::{DerivedTable, Metadata, Topic};
use crate::partition::Partition;
use crate::producer_state::ShardProducers;
use crate::storage::journal::{
    JournalConfig, JournalRead, JournalReplay, JournalStats, Owner, ShardJournal,
};
use crate::storage::log::JournalJoin;
use crate::storage::{DmaDisk, LogConfig, ShardCache};
use crate::table::TableMemory;

/// How long a graceful stop may spend closing (flushing, syncing) partition logs.
const SHUTDOWN_CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Addresses of the broker: the shared public one and each shard's own.
#[derive(Debug, Clone)]
pub struct Addresses {
    /// The public address (every shard accepts on it).
    pub public: SocketAddr,
    /// `shards[i]` is shard i's own address.
    pub shards: Vec<SocketAddr>,
}

/// See the module docs.
pub struct Shard {
    /// Shard number (its rank in the mesh).
    pub id: u32,
    /// Number of shards.
    pub shard_count: u32,
    /// CPU the executor is pinned to.
    pub cpu: u32,
    /// The background task queue (small share; retention, compaction, key index builds
    /// started for forwarded requests), once the server made it.
    pub background: std::cell::OnceCell<glommio::TaskQueueHandle>,
    /// Broker config.
    pub config: Arc<BrokerConfig>,
    /// Addresses.
    pub addresses: Arc<Addresses>,
    /// Recent batches for tailing readers.
    pub cache: Rc<ShardCache>,
    /// Counters.
    pub counters: Counters,
    /// What this shard's connections hold for their clients: request bodies being read,
    /// responses and pushes not yet written (`memory_bytes_per_shard`).
    pub memory: Rc<MemoryBudget>,
    /// This shard's end of the mesh.
    pub mesh: Mesh,
    /// The consumer groups this shard coordinates.
    pub groups: Coordinator,
    /// The broker-wide pool of connection descriptors every shard's accept loop takes from.
    pub connection_slots: Arc<ConnectionSlots>,
    /// The broker-wide storage descriptor budget every partition log takes from.
    pub storage_files: Arc<StorageFiles>,
    /// What this shard's projection tables hold (`table_keys_bytes_per_shard`).
    pub tables: Rc<TableMemory>,
    /// The idempotent producers its partitions remember (`producer_states_per_shard_max`).
    pub producers: Rc<ShardProducers>,
    /// Users and ACLs, shared by every shard (`auth/store.rs`).
    pub security: Arc<crate::auth::Security>,
    metadata: RefCell<Arc<Metadata>>,
    partitions: RefCell<HashMap<(String, u32), Rc<Partition>>>,
    /// This shard's journal (`shard_journal`; `start_journal`).
    journal: RefCell<Option<Rc<ShardJournal<DmaDisk>>>>,
    /// An earlier run's journal entries of the partitions this shard owns, until they
    /// opened with them.
    replay: RefCell<Option<Rc<JournalReplay>>>,
    /// Serializes metadata changes (used on shard 0).
    pub admin_lock: glommio::sync::Semaphore,
    /// Set when the broker is shutting down.
    pub stopping: Cell<bool>,
    /// The next idempotent producer id (controller shard; `None` until first used).
    pub next_producer_id: Cell<Option<i64>>,
}

impl Shard {
    /// A shard with no partitions open yet.
    pub fn new(
        id: u32,
        cpu: u32,
        config: Arc<BrokerConfig>,
        addresses: Arc<Addresses>,
        senders: Senders<ShardMsg>,
        pools: DescriptorPools,
        security: Arc<crate::auth::Security>,
    ) -> Rc<Self> {
        let shard_count = addresses.shards.len() as u32;
        Rc::new(Shard {
            id,
            shard_count,
            background: std::cell::OnceCell::new(),
            mesh: Mesh::new(id, shard_count, senders),
            cpu,
            cache: ShardCache::new(config.cache_bytes_per_shard),
            memory: MemoryBudget::new(config.memory_bytes_per_shard),
            tables: TableMemory::new(config.table_keys_bytes_per_shard),
            producers: ShardProducers::new(config.producer_states_per_shard_max),
            connection_slots: pools.connections,
            storage_files: pools.storage,
            groups: Coordinator::default(),
            security,
            config,
            addresses,
            counters: Counters::default(),
            metadata: RefCell::new(Arc::new(Metadata::default())),
            partitions: RefCell::new(HashMap::new()),
            journal: RefCell::new(None),
            replay: RefCell::new(None),
            admin_lock: glommio::sync::Semaphore::new(1),
            stopping: Cell::new(false),
            next_producer_id: Cell::new(None),
        })
    }

    /// The current metadata snapshot.
    pub fn metadata(&self) -> Arc<Metadata> {
        self.metadata.borrow().clone()
    }

    /// The partition if this shard owns it.
    pub fn partition(&self, topic: &str, partition: u32) -> Option<Rc<Partition>> {
        self.partitions.borrow().get(&(topic.to_owned(), partition)).cloned()
    }

    /// Every partition this shard owns.
    pub fn partitions(&self) -> Vec<Rc<Partition>> {
        self.partitions.borrow().values().cloned().collect()
    }

    /// Which shard owns a partition: `Err` with the wire error if it does not exist.
    pub fn owner(&self, topic: &str, partition: u32) -> Result<u32, wire::ErrorCode> {
        let md = self.metadata.borrow();
        let t = md.topic(topic).ok_or(wire::ErrorCode::UnknownTopic)?;
        t.shards.get(partition as usize).copied().ok_or(wire::ErrorCode::UnknownPartition)
    }

    /// The log settings for a topic: broker defaults overridden by the topic's.
    pub fn log_config(&self, topic: &Topic) -> LogConfig {
        topic.settings.log_config(&self.config.log)
    }

    /// Installs a metadata snapshot: opens (recovering) partitions newly assigned here,
    /// closes and deletes partitions whose topic is gone.
    pub async fn apply_metadata(self: &Rc<Self>, next: Arc<Metadata>) {
        if next.version < self.metadata.borrow().version {
            return;
        }
        *self.metadata.borrow_mut() = next.clone();
        let gone: Vec<Rc<Partition>> = {
            let mut parts = self.partitions.borrow_mut();
            let keys: Vec<_> = parts
                .iter()
                .filter(|(_, p)| next.topic(&p.topic).map(|t| t.id) != Some(p.topic_id))
                .map(|(k, _)| k.clone())
                .collect();
            keys.into_iter().filter_map(|k| parts.remove(&k)).collect()
        };
        for p in gone {
            p.retire(&self.config.data_dir).await;
            self.counters.retire_log(&p.log.stats(), &p.log.cleaner_stats());
        }
        for topic in next.topics.values() {
            let topic_config = self.log_config(topic);
            for (index, &owner) in topic.shards.iter().enumerate() {
                let index = index as u32;
                if owner != self.id {
                    continue;
                }
                if let Some(open) = self.partitions.borrow().get(&(topic.name.clone(), index)) {
                    // The settings a topic may change (`AlterTopicConfig`) reach it open.
                    open.log.set_live_config(&topic_config);
                    continue;
                }
                let config = topic_config.clone();
                let journal = self.journal.borrow().clone();
                let replay = self.replay.borrow().clone();
                let join = JournalJoin {
                    journal: journal.as_deref(),
                    topic_id: topic.id,
                    partition: index,
                    replay: replay.as_ref().map(|r| r.entries(topic.id, index)).unwrap_or_default(),
                };
                match Partition::open(
                    &self.config.data_dir,
                    topic,
                    index,
                    config,
                    self.cache.partition(),
                    self.storage_files.clone(),
                    (self.config.producer_state_idle_ms, &self.producers),
                    &self.tables,
                    join,
                )
                .await
                {
                    Ok(p) => {
                        if let Some(r) = &replay {
                            r.replayed(topic.id, index);
                        }
                        let p = Rc::new(p);
                        if p.table.is_some() {
                            let p = p.clone();
                            glommio::spawn_local(async move {
                                let table = p.table.as_ref().expect("checked above");
                                crate::table::follow(&p.log, table, &p.topic, p.index).await
                            })
                            .detach();
                        }
                        self.partitions.borrow_mut().insert((topic.name.clone(), index), p);
                    }
                    Err(e) => {
                        // Its journal entries stay for its next open (and in the files).
                        warn!(topic = %topic.name, partition = index, error = %e, "cannot open partition")
                    }
                }
            }
        }
        self.retire_replayed_journal().await;
        // State tables over topics: each owned partition keeps exactly the declared ones.
        for p in self.partitions() {
            let wanted: Vec<&DerivedTable> = next.tables_of(&p.topic, p.topic_id).collect();
            if wanted.is_empty() && p.derived.borrow().is_empty() {
                continue;
            }
            for t in p.sync_tables(&wanted, &self.tables).await {
                let p = p.clone();
                glommio::spawn_local(async move {
                    crate::table::follow(&p.log, &t, &p.topic, p.index).await
                })
                .detach();
            }
        }
    }

    /// Recovers the partitions this shard owns before it serves anything: shard 0 reads
    /// every journal file an earlier run left (of any shard) and hands each shard the
    /// entries of its partitions; every shard waits for that (`arrival`: none starts its
    /// journal, whose checkpoints remove files, or retires files before the read), starts
    /// its journal and opens its partitions, replaying their entries. `Err` (the broker
    /// refuses to start) when the journal files could not be read: starting without their
    /// entries would lose journal-acked data.
    pub async fn recover(
        self: &Rc<Self>,
        metadata: Arc<Metadata>,
        arrival: Arrival,
    ) -> Result<(), String> {
        let read = if self.id == 0 {
            let root = journal_root(&self.config.data_dir);
            match JournalRead::read(&DmaDisk, &root).await {
                Ok(r) => {
                    let owner = |topic_id: u64, partition: u32| {
                        match metadata.topics.values().find(|t| t.id == topic_id) {
                            Some(t) => t
                                .shards
                                .get(partition as usize)
                                .map_or(Owner::Gone, |&k| Owner::Shard(k as usize)),
                            None => Owner::Gone,
                        }
                    };
                    arrival.publish(r.split(self.shard_count as usize, owner));
                    Ok(())
                }
                Err(e) => Err(format!("shard {} cannot read the shard journal files under {}: {e}; refusing to start (the partitions would lose what those files acked)", self.id, root.display())),
            }
        } else {
            Ok(())
        };
        let replay = arrival.wait(read, self.id).await?;
        *self.replay.borrow_mut() = replay.map(Rc::new);
        self.start_journal().await;
        self.apply_metadata(metadata).await;
        Ok(())
    }

    /// Starts this shard's journal if `shard_journal` is on. A journal that cannot start is
    /// logged and the shard runs without it.
    async fn start_journal(&self) {
        let root = journal_root(&self.config.data_dir);
        if !self.config.shard_journal {
            return;
        }
        let config = JournalConfig {
            file_bytes: self.config.shard_journal_file_bytes,
            batch_bytes_max: wire::constants::BATCH_BYTES_MAX as usize,
            recycle: self.config.shard_journal_recycle,
            gather_us: self.config.shard_journal_gather_us,
            gather_entries_min: crate::storage::journal::GATHER_ENTRIES_MIN,
            checkpoint_syncfs: self.config.shard_journal_checkpoint_syncfs,
            checkpoint_syncfs_members_min: self
                .config
                .shard_journal_checkpoint_syncfs_partitions_min,
            segment_writes_max: self.config.shard_journal_segment_writes_max,
            writes_in_flight_max: self.config.shard_journal_writes_in_flight_max,
            writes_per_s_max: self.config.shard_journal_writes_per_s_max,
        };
        let dir = root.join(format!("shard-{}", self.id));
        let seen = self.replay.borrow().as_ref().and_then(|r| r.last_file_seq());
        match ShardJournal::open_after(DmaDisk, dir, config, seen).await {
            Ok(j) => *self.journal.borrow_mut() = Some(Rc::new(j)),
            Err(e) => {
                warn!(shard = self.id, error = %e, "cannot start the shard journal; running without it")
            }
        }
    }

    /// Reports the partitions that opened with their journal entries (and drops those of
    /// topics now gone); files of the earlier run go once every partition in them is done,
    /// whichever shard reports last (`JournalReplay::retire`). The replay is dropped once
    /// no partition here waits for its entries.
    async fn retire_replayed_journal(&self) {
        let Some(replay) = self.replay.borrow().clone() else { return };
        let md = self.metadata();
        let exists = |id: u64| md.topics.values().any(|t| t.id == id);
        let kept = replay.retire(&DmaDisk, exists).await;
        if replay.is_empty() {
            self.replay.borrow_mut().take();
            if kept > 0 {
                info!(shard = self.id, kept, "journal files of the last run wait for partitions that did not open (here or on other shards)");
            }
        }
    }

    /// The shard journal's counters, if it has one.
    pub fn journal_stats(&self) -> Option<JournalStats> {
        self.journal.borrow().as_ref().map(|j| j.stats())
    }

    /// Applies a snapshot here and on every other shard, returning when all have.
    pub async fn broadcast_metadata(self: &Rc<Self>, next: Arc<Metadata>) {
        let applied = self.mesh.broadcast_apply(&next).await;
        self.apply_metadata(next).await;
        if let Some(rx) = applied {
            let _ = rx.await;
        }
    }

    /// Stats of this shard.
    pub fn stats(&self) -> wire::ShardStats {
        let c = &self.counters;
        let parts = self.partitions();
        wire::ShardStats {
            shard_id: self.id,
            cpu: self.cpu,
            partitions: parts.len() as u32,
            bytes_in: c.bytes_in.get(),
            bytes_out: c.bytes_out.get(),
            batches_in: c.batches_in.get(),
            batches_out: c.batches_out.get(),
            requests: c.requests.get(),
            connections: c.connections.get(),
            connections_total: c.connections_total.get(),
            forwards_out: c.forwards_out.get(),
            forwards_in: c.forwards_in.get(),
            subscriptions: c.subscriptions.get(),
            syncs: parts.iter().map(|p| p.log.stats().syncs).sum(),
            group_lag: Vec::new(),
            latency: Vec::new(),
        }
    }

    /// Closes every partition log (flush, sync, trim): the last step of a graceful stop.
    pub async fn close_partitions(&self) {
        let parts: Vec<Rc<Partition>> =
            self.partitions.borrow_mut().drain().map(|(_, p)| p).collect();
        // A shutdown must end: a close that does not finish in time is abandoned (what was
        // acked durable is already synced, or journaled and replayed at the next start;
        // recovery trims the rest).
        let deadline = std::time::Instant::now() + SHUTDOWN_CLOSE_TIMEOUT;
        for p in parts {
            p.close_within(deadline.saturating_duration_since(std::time::Instant::now())).await;
        }
        // Then the journal: its last file goes once every partition in it synced at close.
        let journal = self.journal.borrow_mut().take();
        if let Some(j) = journal {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let closed = futures_lite::future::or(async { Some(j.close().await) }, async {
                glommio::timer::sleep(left).await;
                None
            })
            .await;
            match closed {
                Some(Ok(())) => {}
                Some(Err(e)) => warn!(shard = self.id, error = %e, "shard journal failed"),
                None => warn!(
                    shard = self.id,
                    "shard journal close abandoned; its files are replayed at the next start"
                ),
            }
        }
    }

    /// Snapshots the derived state of every partition that changed since its last snapshot.
    pub async fn snapshot_partitions(&self) {
        for p in self.partitions() {
            if let Err(e) = p.snapshot().await {
                warn!(topic = %p.topic, partition = p.index, error = %e, "cannot store the partition's state snapshot; a restart reads more of the log");
            }
        }
    }

    /// Applies retention to every partition.
    pub async fn apply_retention(&self, now_ms: i64) {
        let oldest_ms = now_ms.saturating_sub(self.config.producer_state_idle_ms as i64);
        for p in self.partitions() {
            p.producers.borrow_mut().expire(oldest_ms);
            if let Err(e) = p.log.apply_retention(now_ms).await {
                warn!(topic = %p.topic, partition = p.index, error = %e, "retention failed");
            }
            if let Some(table) = &p.table {
                table.forget_before(p.log.log_start_offset());
            }
            p.keys.forget_before(p.log.log_start_offset());
        }
    }

    /// One compaction pass over every compacted partition that is due (`cleaner.rs`).
    pub async fn clean_logs(&self, now_ms: i64) {
        for p in self.partitions() {
            if let Err(e) = p.log.clean(now_ms).await {
                warn!(topic = %p.topic, partition = p.index, error = %e, "compaction pass failed");
            }
            p.forget_removed_tombstones().await;
        }
    }
}

/// The start-up barrier of the journal replay (see [`Shard::recover`]): shard 0 reads every
/// shard's journal files once and hands each shard its part before any shard starts its
/// journal or removes a file; a failed read, or a shard that stopped before it arrived,
/// stops every shard's start (none waits forever).
#[derive(Debug)]
pub struct JournalBarrier {
    shards: usize,
    arrived: AtomicUsize,
    failure: Mutex<Option<String>>,
    /// Each shard's part of the journal read (shard 0 reads, each takes its own).
    replays: Mutex<Vec<Option<JournalReplay>>>,
}

impl JournalBarrier {
    /// A barrier for `shards` shards.
    pub fn new(shards: usize) -> Arc<Self> {
        Arc::new(JournalBarrier {
            shards,
            arrived: AtomicUsize::new(0),
            failure: Mutex::new(None),
            replays: Mutex::new(Vec::new()),
        })
    }

    /// One shard's place at the barrier: take it as the shard starts; dropped before
    /// [`Arrival::wait`] (the shard died), it fails every shard's start.
    pub fn arrival(self: &Arc<Self>) -> Arrival {
        Arrival { barrier: self.clone(), arrived: false }
    }

    fn fail(&self, reason: String) {
        self.failure.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(reason);
    }
}

/// See [`JournalBarrier::arrival`].
#[derive(Debug)]
pub struct Arrival {
    barrier: Arc<JournalBarrier>,
    arrived: bool,
}

impl Arrival {
    /// Hands the shards their parts of the journal read (index = shard id).
    fn publish(&self, parts: Vec<JournalReplay>) {
        *self.barrier.replays.lock().unwrap_or_else(|e| e.into_inner()) =
            parts.into_iter().map(Some).collect();
    }

    /// Records this shard's read (`Err`: it failed) and waits for every shard; then
    /// shard `id`'s part of the read. `Err` with the first failure if any shard failed or
    /// stopped.
    async fn wait(
        mut self,
        read: Result<(), String>,
        id: u32,
    ) -> Result<Option<JournalReplay>, String> {
        if let Err(e) = read {
            self.barrier.fail(e);
        }
        self.arrived = true;
        self.barrier.arrived.fetch_add(1, Ordering::SeqCst);
        loop {
            // A failure is recorded before its shard arrives: every shard sees it.
            if let Some(e) = self.barrier.failure.lock().unwrap_or_else(|e| e.into_inner()).clone()
            {
                return Err(e);
            }
            if self.barrier.arrived.load(Ordering::SeqCst) >= self.barrier.shards {
                let mut replays = self.barrier.replays.lock().unwrap_or_else(|e| e.into_inner());
                return Ok(replays.get_mut(id as usize).and_then(Option::take));
            }
            glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}

impl Drop for Arrival {
    fn drop(&mut self) {
        if !self.arrived {
            self.barrier.fail("a shard stopped before it read the shard journal files".into());
        }
    }
}
