//! The group consumer: one member of a consumer group, reading every partition the group
//! gives it and committing how far it got.
//!
//! The broker assigns (see `wire::message::group`): a background task heartbeats and learns
//! the member's assignment; [`GroupConsumer::next`] applies changes before it hands out the
//! next batch — it stops reading a partition that is taken away and commits its position
//! first, then starts reading new partitions at their committed offsets (or at
//! `GroupConfig::reset` when nothing is committed). A batch counts as processed when the
//! application asks for the next one (or commits, or closes), so commits — automatic every
//! `auto_commit_interval`, or [`GroupConsumer::commit`] — never pass what the application
//! has seen: delivery is at least once, and a partition that moves resumes where its last
//! owner stopped. Where a partition with nothing committed starts (`reset`, resolved to an
//! offset) is committed at once, as Kafka consumers commit their reset position. A
//! partition with nothing committed starts at its beginning whatever `reset` says when it
//! was created after the member joined (its topic grew, or did not exist yet), or after a
//! commit of the group (each commit records its topic's partition count in the offset's
//! metadata): it is newer than the group's reading, and `Latest` would skip what was written
//! to it before the group handed it out (Kafka's KIP-842 gap).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use wire::{
    Assignor, ErrorCode, GroupMemberState, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    LeaveGroupRequest, LeaveGroupResponse, StartPosition, TopicPartitions,
};

use crate::client::Client;
use crate::consumer::{Consumer, ConsumerBatch};
use crate::error::ClientError;

/// A topic and partition.
pub type TopicPartition = (String, u32);

/// Group consumer settings.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// Group id.
    pub group: String,
    /// Topics to read.
    pub topics: Vec<String>,
    /// Static membership: a stable name for this instance. A restart within the session
    /// timeout gets the same partitions back without a rebalance; `close` then does not
    /// leave the group.
    pub instance_id: Option<String>,
    /// The broker removes the member after this long without a heartbeat.
    pub session_timeout_ms: u32,
    /// How partitions are spread over the members.
    pub assignor: Assignor,
    /// Commit processed positions this often (`None`: only on `commit` and `close`).
    pub auto_commit_interval: Option<Duration>,
    /// Where to start a partition that has no committed offset (one created after the
    /// member joined starts at its beginning).
    pub reset: StartPosition,
    /// Bytes the broker may push ahead per partition.
    pub credit_window_bytes: u64,
    /// Only records matching this [`wire::filter`] expression are delivered (empty: all);
    /// positions and commits still move past the others.
    pub filter: String,
}

impl GroupConfig {
    /// Settings for `group` reading `topics`, with the defaults.
    pub fn new(group: &str, topics: &[&str]) -> Self {
        GroupConfig {
            group: group.into(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            instance_id: None,
            session_timeout_ms: 10_000,
            assignor: Assignor::Sticky,
            auto_commit_interval: Some(Duration::from_secs(5)),
            reset: StartPosition::Latest,
            credit_window_bytes: 1 << 20,
            filter: String::new(),
        }
    }
}

/// Batches of one partition, as the group consumer hands them out.
#[derive(Debug)]
pub struct GroupBatch {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// The batches; `batch.records()` iterates the records.
    pub batch: ConsumerBatch,
}

/// A change of what this member reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssignmentChange {
    /// Partitions this member now reads.
    Assigned(Vec<TopicPartition>),
    /// Partitions this member stopped reading (their positions were committed first).
    Revoked(Vec<TopicPartition>),
}

/// What the heartbeat task and the application share.
#[derive(Debug, Default)]
struct Membership {
    member_id: String,
    generation: u32,
    /// What the application side reads now.
    owned: BTreeSet<TopicPartition>,
    /// What the coordinator last said this member may own.
    assignment: BTreeSet<TopicPartition>,
    /// Counts changes of `assignment` (the application side reconciles only after one).
    assignment_version: u64,
    /// A fatal error (fenced).
    error: Option<ClientError>,
}

struct Delivered {
    tp: TopicPartition,
    epoch: u64,
    /// `None`: the reader's start was resolved (from `reset`, nothing committed) to `next`.
    batch: Option<ConsumerBatch>,
    next: u64,
}

struct Reader {
    epoch: u64,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

/// See the module docs.
pub struct GroupConsumer {
    client: Client,
    config: GroupConfig,
    shared: Arc<Mutex<Membership>>,
    changed: Arc<Notify>,
    kick: Arc<Notify>,
    heartbeats: JoinHandle<()>,
    readers: HashMap<TopicPartition, Reader>,
    tx: mpsc::Sender<Delivered>,
    rx: mpsc::Receiver<Delivered>,
    /// Processed positions (next offset to read).
    positions: HashMap<TopicPartition, u64>,
    /// The assignment version the last whole `reconcile` applied.
    reconciled_version: Option<u64>,
    /// Partitions given up whose revocation is not reported yet.
    revoking: BTreeSet<TopicPartition>,
    committed: HashMap<TopicPartition, u64>,
    /// Delivered, processed once the application asks for more.
    last: Option<(TopicPartition, u64)>,
    next_epoch: u64,
    next_auto_commit: Instant,
    changes: Vec<AssignmentChange>,
    /// Each topic's partition count when the member joined: partitions at or past it were
    /// created since.
    partitions_at_join: HashMap<String, u32>,
}

impl std::fmt::Debug for GroupConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupConsumer")
            .field("group", &self.config.group)
            .field("membership", &self.shared.lock().expect("membership lock"))
            .finish()
    }
}

fn to_set(tps: &[TopicPartitions]) -> BTreeSet<TopicPartition> {
    TopicPartitions::flatten(tps).collect()
}

fn to_wire(tps: &BTreeSet<TopicPartition>) -> Vec<TopicPartitions> {
    TopicPartitions::group(tps.iter().map(|(t, p)| (t.as_str(), *p)))
}

fn member_error(state: &GroupMemberState) -> Option<ClientError> {
    (state.error != 0).then(|| ClientError::Group {
        code: ErrorCode::from_u16(state.error).unwrap_or(ErrorCode::UnknownServerError),
        message: state.message.clone(),
    })
}

impl GroupConsumer {
    /// Joins the group; reading starts with the first [`GroupConsumer::next`].
    pub async fn join(client: &Client, config: GroupConfig) -> Result<GroupConsumer, ClientError> {
        wire::filter::parse(&config.filter)
            .map_err(|e| ClientError::InvalidFilter(e.to_string()))?;
        let shared = Arc::new(Mutex::new(Membership::default()));
        // The counts as of now (the cached metadata may predate a growth).
        let md = client.refresh_metadata().await.unwrap_or_else(|_| client.metadata());
        let partitions_at_join = config
            .topics
            .iter()
            .map(|t| {
                let known = md.topics.iter().find(|m| m.name == *t && m.error == 0);
                (t.clone(), known.map_or(0, |m| m.partitions.len() as u32))
            })
            .collect();
        let state = join_request(client, &config, &shared).await?;
        if let Some(e) = member_error(&state) {
            return Err(e);
        }
        apply_state(&shared, &state);
        let (changed, kick) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let first_ms = if state.pending > 0 && state.assignment.is_empty() {
            0
        } else {
            state.heartbeat_interval_ms
        };
        let heartbeats = tokio::spawn(heartbeat_loop(
            client.clone(),
            config.clone(),
            shared.clone(),
            changed.clone(),
            kick.clone(),
            first_ms,
        ));
        let (tx, rx) = mpsc::channel(16);
        let next_auto_commit = Instant::now() + config.auto_commit_interval.unwrap_or_default();
        Ok(GroupConsumer {
            client: client.clone(),
            config,
            shared,
            changed,
            kick,
            heartbeats,
            readers: HashMap::new(),
            tx,
            rx,
            positions: HashMap::new(),
            reconciled_version: None,
            revoking: BTreeSet::new(),
            committed: HashMap::new(),
            last: None,
            next_epoch: 0,
            next_auto_commit,
            changes: Vec::new(),
            partitions_at_join,
        })
    }

    /// The member id the broker gave this member.
    pub fn member_id(&self) -> String {
        self.shared.lock().expect("membership lock").member_id.clone()
    }

    /// The group generation this member last heard.
    pub fn generation(&self) -> u32 {
        self.shared.lock().expect("membership lock").generation
    }

    /// The partitions this member reads now.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.readers.keys().cloned().collect::<BTreeSet<_>>().into_iter().collect()
    }

    /// Assignment changes since the last call, oldest first.
    pub fn take_assignment_changes(&mut self) -> Vec<AssignmentChange> {
        std::mem::take(&mut self.changes)
    }

    /// The next batch from any assigned partition (waiting for one). Marks the previous
    /// batch processed, applies assignment changes and commits when auto-commit is due.
    /// Cancel-safe: a `next` dropped before it returns loses no batch, and the change it was
    /// applying is finished by the next call.
    pub async fn next(&mut self) -> Result<GroupBatch, ClientError> {
        self.mark_processed();
        loop {
            if let Some(e) = self.shared.lock().expect("membership lock").error.clone() {
                return Err(e);
            }
            self.reconcile().await;
            if let Some(every) = self.config.auto_commit_interval {
                if Instant::now() >= self.next_auto_commit {
                    self.next_auto_commit = Instant::now() + every;
                    // A failed automatic commit is retried at the next interval; the
                    // positions stay.
                    let _ = self.commit().await;
                }
            }
            let auto = self.config.auto_commit_interval.map(|_| self.next_auto_commit);
            let changed = self.changed.clone();
            tokio::select! {
                d = self.rx.recv() => {
                    let d = d.expect("the consumer holds a sender");
                    if self.readers.get(&d.tp).is_none_or(|r| r.epoch != d.epoch) {
                        continue;
                    }
                    let Some(batch) = d.batch else {
                        // Where a partition with nothing committed started: committed at
                        // once (as a Kafka consumer commits its reset position), so the
                        // next owner starts there too, not at its own `reset`, and the
                        // commit records the topic's partition count (`reset_for`).
                        self.positions.insert(d.tp, d.next);
                        if self.config.auto_commit_interval.is_some() {
                            self.next_auto_commit = Instant::now();
                        }
                        continue;
                    };
                    self.last = Some((d.tp.clone(), d.next));
                    return Ok(GroupBatch { topic: d.tp.0, partition: d.tp.1, batch });
                }
                _ = changed.notified() => {}
                _ = sleep_until_opt(auto) => {}
            }
        }
    }

    /// Commits the processed position of every partition read (or given up) since the
    /// last commit, and waits until it is stored durably.
    pub async fn commit(&mut self) -> Result<(), ClientError> {
        self.mark_processed();
        let due = self.due();
        if due.is_empty() {
            return Ok(());
        }
        // A commit can cross the heartbeat answer that moves this member to a newer
        // generation (STALE_GENERATION): heartbeat, then try again with the new one.
        let mut attempt = 0;
        let stamped = stamped(&self.client, &due).await;
        loop {
            let (member_id, generation) = {
                let m = self.shared.lock().expect("membership lock");
                (m.member_id.clone(), m.generation)
            };
            let group = &self.config.group;
            match self
                .client
                .commit_offsets_with_metadata(group, &member_id, generation, &stamped)
                .await
            {
                Err(ClientError::Group { code: ErrorCode::StaleGeneration, .. }) if attempt < 3 => {
                    attempt += 1;
                    self.kick.notify_one();
                    let deadline = Instant::now() + Duration::from_secs(1);
                    while self.generation() == generation && Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                r => break r?,
            }
        }
        for (t, p, o) in due {
            self.committed.insert((t, p), o);
        }
        // Positions of partitions this member no longer reads are not needed once stored.
        self.positions.retain(|tp, _| self.readers.contains_key(tp));
        Ok(())
    }

    /// Starts committing the processed positions and returns at once; the handle resolves
    /// when they are stored (or the commit failed). The next `commit` sends them again
    /// (harmless: a commit is idempotent), so a failed one is repaired by the next.
    pub fn commit_async(&mut self) -> JoinHandle<Result<(), ClientError>> {
        self.mark_processed();
        let due = self.due();
        let (member_id, generation) = {
            let m = self.shared.lock().expect("membership lock");
            (m.member_id.clone(), m.generation)
        };
        let (client, group) = (self.client.clone(), self.config.group.clone());
        tokio::spawn(async move {
            if due.is_empty() {
                return Ok(());
            }
            let stamped = stamped(&client, &due).await;
            client.commit_offsets_with_metadata(&group, &member_id, generation, &stamped).await
        })
    }

    /// Processed positions not yet known to be committed.
    fn due(&self) -> Vec<(String, u32, u64)> {
        self.positions
            .iter()
            .filter(|(tp, &o)| self.committed.get(*tp) != Some(&o))
            .map(|((t, p), &o)| (t.clone(), *p, o))
            .collect()
    }

    /// Reads `topic`/`partition` from `offset` next (it must be assigned to this member).
    pub async fn seek(
        &mut self,
        topic: &str,
        partition: u32,
        offset: u64,
    ) -> Result<(), ClientError> {
        let tp = (topic.to_owned(), partition);
        if !self.readers.contains_key(&tp) {
            return Err(ClientError::Partition {
                topic: topic.into(),
                partition,
                code: ErrorCode::NotAssigned,
            });
        }
        self.mark_processed();
        // A seek cut short between the stop and the start leaves the partition unread: the
        // next `reconcile` must look again.
        self.reconciled_version = None;
        self.stop_reader(&tp).await;
        self.positions.insert(tp.clone(), offset);
        self.start_reader(tp, StartPosition::Offset(offset));
        Ok(())
    }

    /// Commits, stops reading and leaves the group (a static member stays, so its
    /// restart gets its partitions back).
    pub async fn close(mut self) -> Result<(), ClientError> {
        let committed = self.commit().await;
        let tps: Vec<TopicPartition> = self.readers.keys().cloned().collect();
        for tp in &tps {
            self.stop_reader(tp).await;
        }
        self.heartbeats.abort();
        if self.config.instance_id.is_none() {
            let member_id = self.member_id();
            let r: LeaveGroupResponse = self
                .client
                .group_request(
                    &self.config.group,
                    &LeaveGroupRequest { group: self.config.group.clone(), member_id },
                )
                .await?;
            self.client.group_check(r.error, r.message)?;
        }
        committed
    }

    fn mark_processed(&mut self) {
        if let Some((tp, next)) = self.last.take() {
            if self.readers.contains_key(&tp) {
                self.positions.insert(tp, next);
            }
        }
    }

    /// Applies the coordinator's latest assignment: gives up what is gone (committing its
    /// position first), starts what is new, then heartbeats at once.
    async fn reconcile(&mut self) {
        // Every step can be cut short (a `next` dropped by the caller's `select!`) and is
        // finished by the next call: readers are the truth of what is read, positions of
        // partitions no longer read are committed before that is reported.
        // Nothing to do unless the assignment changed since the last whole pass (a pass cut
        // short is not recorded, so the next call finishes it): `next` runs this per batch.
        let (target, version) = {
            let m = self.shared.lock().expect("membership lock");
            if self.reconciled_version == Some(m.assignment_version) {
                return;
            }
            (m.assignment.clone(), m.assignment_version)
        };
        let owned: BTreeSet<TopicPartition> = self.readers.keys().cloned().collect();
        let revoked: Vec<TopicPartition> = owned.difference(&target).cloned().collect();
        let assigned: Vec<TopicPartition> = target.difference(&owned).cloned().collect();
        // Noted before they stop: a pass cut short after stopping some still reports them.
        self.revoking.extend(revoked.iter().cloned());
        for tp in &revoked {
            self.stop_reader(tp).await;
        }
        if self.positions.keys().any(|tp| !self.readers.contains_key(tp)) {
            // Commit before giving up, so the next owner starts where this one stopped. If
            // that fails, the next owner reads again from the last commit (at least once).
            let _ = self.commit().await;
            let readers = &self.readers;
            self.positions.retain(|tp, _| readers.contains_key(tp));
        }
        if !self.revoking.is_empty() {
            let revoked = std::mem::take(&mut self.revoking).into_iter().collect();
            self.changes.push(AssignmentChange::Revoked(revoked));
        }
        if !assigned.is_empty() {
            let committed = self
                .client
                .fetch_offsets_with_metadata(&self.config.group, &self.config.topics)
                .await
                .unwrap_or_default();
            for tp in &assigned {
                let start = committed
                    .iter()
                    .find(|(t, p, _, _)| *t == tp.0 && *p == tp.1)
                    .map(|&(_, _, o, _)| {
                        self.committed.insert(tp.clone(), o);
                        self.positions.insert(tp.clone(), o);
                        StartPosition::Offset(o)
                    })
                    .unwrap_or_else(|| self.reset_for(tp, &committed));
                self.start_reader(tp.clone(), start);
            }
            self.changes.push(AssignmentChange::Assigned(assigned));
        }
        let now: BTreeSet<TopicPartition> = self.readers.keys().cloned().collect();
        let mut m = self.shared.lock().expect("membership lock");
        if m.owned != now {
            m.owned = now;
            drop(m);
            self.kick.notify_one();
        }
        self.reconciled_version = Some(version);
    }

    /// Where `tp`, with nothing committed, starts: `reset`, or its beginning if it is newer
    /// than the group's reading of its topic: created after this member joined, or at or
    /// past the partition count a commit of the group recorded for its topic (`committed`:
    /// the group's offsets of its topics, with their metadata; every commit of this
    /// consumer records the count, [`stamped`]). Members commit where they start a
    /// partition at once, so a partition created after a commit is one a growth added: a
    /// member that joined after the growth, or a restarted static member, would otherwise
    /// start it at `Latest` and skip what was written to it before the group handed it out.
    /// (Partitions that existed at the commit follow `reset`, even with nothing committed
    /// yet: members of one generation start theirs at about the same time.)
    fn reset_for(
        &self,
        tp: &TopicPartition,
        committed: &[(String, u32, u64, String)],
    ) -> StartPosition {
        let created_after_join =
            self.partitions_at_join.get(&tp.0).is_some_and(|&count| tp.1 >= count);
        let created_after_a_commit = committed.iter().any(|(t, _, _, metadata)| {
            *t == tp.0 && count_of(metadata).is_some_and(|count| tp.1 >= count)
        });
        if created_after_join || created_after_a_commit {
            StartPosition::Earliest
        } else {
            self.config.reset
        }
    }

    fn start_reader(&mut self, tp: TopicPartition, start: StartPosition) {
        self.next_epoch += 1;
        let epoch = self.next_epoch;
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(read_partition(
            self.client.clone(),
            tp.clone(),
            epoch,
            start,
            self.config.reset,
            self.config.credit_window_bytes,
            self.config.filter.clone(),
            self.tx.clone(),
            stop_rx,
        ));
        self.readers.insert(tp, Reader { epoch, stop: Some(stop_tx), task });
    }

    async fn stop_reader(&mut self, tp: &TopicPartition) {
        if let Some(mut r) = self.readers.remove(tp) {
            if let Some(stop) = r.stop.take() {
                let _ = stop.send(());
            }
            let _ = r.task.await;
        }
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        self.heartbeats.abort();
        for r in self.readers.values() {
            r.task.abort();
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn join_request(
    client: &Client,
    config: &GroupConfig,
    shared: &Arc<Mutex<Membership>>,
) -> Result<GroupMemberState, ClientError> {
    let (member_id, owned) = {
        let m = shared.lock().expect("membership lock");
        (m.member_id.clone(), to_wire(&m.owned))
    };
    client
        .group_request(
            &config.group,
            &JoinGroupRequest {
                group: config.group.clone(),
                member_id,
                instance_id: config.instance_id.clone().unwrap_or_default(),
                session_timeout_ms: config.session_timeout_ms,
                topics: config.topics.clone(),
                assignor: config.assignor,
                owned,
                client_id: client.config().client_id.clone(),
                // Set by the broker from the connection.
                client_host: String::new(),
            },
        )
        .await
}

fn apply_state(shared: &Arc<Mutex<Membership>>, state: &GroupMemberState) -> bool {
    let mut m = shared.lock().expect("membership lock");
    m.member_id.clone_from(&state.member_id);
    m.generation = state.generation;
    let assignment = to_set(&state.assignment);
    let changed = assignment != m.assignment;
    if changed {
        m.assignment = assignment;
        m.assignment_version += 1;
    }
    changed
}

async fn heartbeat_loop(
    client: Client,
    config: GroupConfig,
    shared: Arc<Mutex<Membership>>,
    changed: Arc<Notify>,
    kick: Arc<Notify>,
    first_interval_ms: u32,
) {
    // Heartbeats are held by the coordinator while nothing changes (up to a third of the
    // session), so a rebalance reaches this member at once.
    let hold_ms = (config.session_timeout_ms / 3).min(3_000);
    let mut interval = Duration::from_millis(u64::from(first_interval_ms));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = kick.notified() => {}
        }
        let (member_id, generation, owned) = {
            let m = shared.lock().expect("membership lock");
            (m.member_id.clone(), m.generation, to_wire(&m.owned))
        };
        let answer = if member_id.is_empty() {
            join_request(&client, &config, &shared).await
        } else {
            client
                .group_request::<_, HeartbeatResponse>(
                    &config.group,
                    &HeartbeatRequest {
                        group: config.group.clone(),
                        member_id,
                        instance_id: config.instance_id.clone().unwrap_or_default(),
                        generation,
                        owned,
                        wait_ms: hold_ms,
                    },
                )
                .await
                .map(|r| r.state)
        };
        match answer {
            Ok(state) if state.error == 0 => {
                if apply_state(&shared, &state) {
                    changed.notify_one();
                }
                interval = Duration::from_millis(u64::from(state.heartbeat_interval_ms));
                // Waiting only for partitions others still hold: a held heartbeat is answered
                // the moment they are released.
                let idle =
                    to_set(&state.assignment) == shared.lock().expect("membership lock").owned;
                if state.pending > 0 && idle {
                    interval = Duration::ZERO;
                }
            }
            Ok(state) if state.error == ErrorCode::UnknownMember.as_u16() => {
                // The coordinator lost this member (a session that ran out, a broker
                // restart): join again at once, keeping what it reads if nobody else has it.
                shared.lock().expect("membership lock").member_id.clear();
                interval = Duration::from_millis(10);
            }
            Ok(state) => {
                shared.lock().expect("membership lock").error = member_error(&state);
                changed.notify_one();
                return;
            }
            Err(_) => interval = Duration::from_millis(200),
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn read_partition(
    client: Client,
    tp: TopicPartition,
    epoch: u64,
    start: StartPosition,
    reset: StartPosition,
    window: u64,
    filter: String,
    tx: mpsc::Sender<Delivered>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut start = start;
    // Whether the start is not an offset: where it resolves to is reported (and committed).
    let mut resolving = !matches!(start, StartPosition::Offset(_));
    loop {
        let subscribed = tokio::select! {
            _ = &mut stop => return,
            r = Consumer::subscribe_filtered(&client, &tp.0, tp.1, start, window, &filter) => r,
        };
        let mut consumer = match subscribed {
            Ok(c) if resolving => {
                resolving = false;
                let d = Delivered { tp: tp.clone(), epoch, batch: None, next: c.position() };
                tokio::select! {
                    _ = &mut stop => return,
                    r = tx.send(d) => if r.is_err() { return },
                }
                c
            }
            Ok(c) => c,
            Err(ClientError::Partition { code: ErrorCode::OffsetOutOfRange, .. }) => {
                start = reset;
                resolving = true;
                continue;
            }
            Err(_) => {
                tokio::select! {
                    _ = &mut stop => return,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => continue,
                }
            }
        };
        loop {
            let got = tokio::select! {
                _ = &mut stop => {
                    let _ = consumer.close().await;
                    return;
                }
                r = consumer.next_batch() => r,
            };
            match got {
                Ok(Some(batch)) => {
                    let next = consumer.position();
                    let d = Delivered { tp: tp.clone(), epoch, batch: Some(batch), next };
                    tokio::select! {
                        _ = &mut stop => {
                            let _ = consumer.close().await;
                            return;
                        }
                        r = tx.send(d) => if r.is_err() { return },
                    }
                }
                // The subscription ended (connection lost, broker restart): subscribe again
                // where it stopped.
                Ok(None) | Err(_) => {
                    start = StartPosition::Offset(consumer.position());
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The metadata this consumer commits with an offset: its topic's partition count then
/// (`partitions=N`; see [`GroupConsumer::reset_for`]).
const COUNT_PREFIX: &str = "partitions=";

/// `due` with each offset's metadata: its topic's partition count as the client knows it
/// (none if it does not).
async fn stamped(client: &Client, due: &[(String, u32, u64)]) -> Vec<(String, u32, u64, String)> {
    let mut counts: HashMap<String, String> = HashMap::new();
    let mut out = Vec::with_capacity(due.len());
    for (t, p, o) in due {
        if !counts.contains_key(t) {
            let count = client.partition_count(t).await.ok();
            counts.insert(t.clone(), count.map_or(String::new(), |c| format!("{COUNT_PREFIX}{c}")));
        }
        out.push((t.clone(), *p, *o, counts[t].clone()));
    }
    out
}

/// The partition count a commit's metadata recorded, if it is one of this consumer's.
fn count_of(metadata: &str) -> Option<u32> {
    metadata.strip_prefix(COUNT_PREFIX)?.parse().ok()
}
