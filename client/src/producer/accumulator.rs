//! The accumulator: open batches per partition and when they ship.
//!
//! Owns the producer's state behind its handles ([`Inner`]) and what it shares with the
//! background tasks ([`Pipeline`]). `Producer::send` appends through [`Inner::try_append`]
//! (learning a topic's partitions with [`Inner::add_topic`] first); `Producer::flush` calls
//! [`Inner::ship_all`]. A batch ships (is finished and handed to its partition's sender
//! task, spawned on first use) when nearly full, when its linger expires (checked by every
//! append and by [`linger_thread`]), or when nothing it could wait behind is on the wire: at
//! append, and again when the sender reports an answer through [`Inner::answered`]. Every
//! shipped batch is completed exactly once through [`Pipeline::finished`], which returns its
//! budget. Dropping the last handle ships every open batch.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Notify};
use wire::batch::sequence_after;
use wire::BatchBuilder;

use super::budget::{record_cost, Budget};
use super::completion::{BatchResult, Outcome, SendFuture};
use super::partitioner::partition_for;
use super::sender::partition_sender;
use super::stages::{ProducerStage, ProducerStages};
use super::ProducerConfig;
use crate::client::Client;
use crate::error::ClientError;

/// What the background tasks share with the handles (not the handles' lifetime).
#[derive(Debug)]
pub(super) struct Pipeline {
    pub(super) budget: Budget,
    /// Batches shipped and not yet answered, over all partitions, by ticket (for `flush`).
    pub(super) tickets: Mutex<Tickets>,
    pub(super) answered: Notify,
    /// Wakes the linger thread when a batch opens or the producer goes away.
    linger_wake: LingerWake,
    /// One produce request per connection for many partitions' batches.
    pub(super) coalescers: super::coalescer::Coalescers,
    /// The producer's per-stage latency (`stages.rs`).
    pub(super) stages: Arc<ProducerStages>,
}

/// What `Inner::try_append` did with a record.
pub(super) enum Appended {
    /// Appended to its partition's batch (or refused as a record).
    Sent(Result<SendFuture, ClientError>),
    /// The producer holds no identity now (a reset cleared it): ask, then try again.
    NoIdentity,
    /// The topic is not known yet: look it up, then try again.
    UnknownTopic,
}

/// Numbers for shipped batches, in shipping order, and those not answered yet: `flush` waits
/// for the batches shipped before it, not for a moment with none outstanding (which steady
/// sends from other tasks may never leave).
#[derive(Debug, Default)]
pub(super) struct Tickets {
    /// The next batch's number.
    pub(super) next: u64,
    /// Numbers of the batches shipped and not answered.
    pub(super) open: std::collections::BTreeSet<u64>,
}

impl Tickets {
    /// Whether every batch numbered below `upto` was answered.
    pub(super) fn answered_below(&self, upto: u64) -> bool {
        self.open.first().is_none_or(|&first| first >= upto)
    }
}

/// The producer behind its handles.
#[derive(Debug)]
pub(super) struct Inner {
    /// This producer, for the sender tasks (they must not keep it alive).
    me: Weak<Inner>,
    pub(super) client: Client,
    pub(super) config: ProducerConfig,
    runtime: tokio::runtime::Handle,
    pub(super) pipeline: Arc<Pipeline>,
    state: Mutex<State>,
    /// Idempotent producer id and epoch, once the broker gave them.
    /// `None` again once a batch carrying it failed for good (`sequence_lost`), until the
    /// next is given (batches wait for it).
    identity: Mutex<Option<(i64, i16)>>,
    /// Held while the identity is asked for: concurrent first sends share one
    /// InitProducerId (each bumps a transactional id's epoch, fencing the ones before).
    pub(super) identity_init: tokio::sync::Mutex<()>,
    /// When the last ask for an identity failed, and why: sends that waited behind that ask
    /// fail with it rather than each asking again in turn (each ask retries for ~26 s).
    identity_failed: Mutex<Option<(Instant, ClientError)>>,
    /// When [`Inner::follow_growth`] last looked (ms since `started`), and since when.
    growth_checked_ms: std::sync::atomic::AtomicU64,
    started: Instant,
}

/// How often a producer looks at its client's metadata for topics that grew.
const GROWTH_CHECK_MS: u64 = 1_000;

#[derive(Debug, Default)]
struct State {
    topics: HashMap<Arc<str>, TopicState>,
    /// Open batches in the order they opened (so in deadline order): `(deadline, topic,
    /// partition)`. Entries of batches that shipped early stay until their deadline passes
    /// and are then skipped.
    lingering: VecDeque<(Instant, Arc<str>, u32)>,
    /// Length at which `lingering` drops the entries of batches that already shipped (so a
    /// long linger with batches shipping early does not grow it with rate × linger).
    lingering_compact_at: usize,
}

/// `State::lingering` is compacted no more often than at this length.
const LINGERING_COMPACT_MIN: usize = 1024;

impl State {
    /// Drops the entries of batches that already shipped once the queue doubled since the
    /// last time (amortized O(1) per batch).
    fn compact_lingering(&mut self) {
        if self.lingering.len() < self.lingering_compact_at {
            return;
        }
        let topics = &self.topics;
        self.lingering.retain(|(deadline, t, p)| {
            topics
                .get(t)
                .and_then(|ts| ts.partitions.get(*p as usize)?.open.as_ref())
                .is_some_and(|o| o.deadline == *deadline)
        });
        self.lingering_compact_at = (self.lingering.len() * 2).max(LINGERING_COMPACT_MIN);
    }
}

#[derive(Debug)]
struct TopicState {
    name: Arc<str>,
    /// Where unkeyed records go until that partition's batch ships.
    sticky: u32,
    /// Batches of this topic shipped and not yet answered, over its partitions.
    outstanding: usize,
    partitions: Vec<PartitionState>,
}

#[derive(Debug)]
struct PartitionState {
    /// Reused across batches (it keeps its buffers).
    builder: BatchBuilder,
    /// Sequence number of the next record (idempotence).
    next_sequence: i32,
    open: Option<OpenBatch>,
    /// Batches shipped and not yet answered.
    outstanding: usize,
    sender: Option<mpsc::UnboundedSender<Shipment>>,
}

#[derive(Debug)]
struct OpenBatch {
    outcome: Arc<Outcome>,
    records: u32,
    /// Budget bytes its records took.
    cost: usize,
    deadline: Instant,
    /// When its first record was appended.
    opened: Instant,
}

/// A finished batch on its way to (and on) the wire.
#[derive(Debug)]
pub(super) struct Shipment {
    pub(super) batch: wire::AlignedVec,
    outcome: Arc<Outcome>,
    cost: usize,
    /// When its first record was appended.
    opened: Instant,
    /// When it was shipped (handed to its sender).
    pub(super) shipped: Instant,
    /// Its number in shipping order (`Tickets`).
    ticket: u64,
}

impl Inner {
    /// A producer's state; its linger task runs on the current tokio runtime.
    pub(super) fn new(client: Client, mut config: ProducerConfig) -> Arc<Inner> {
        // A batch must fit one request within the broker's frame limit (its handshake's);
        // a record bigger than that fails at `send` as one that fits no batch.
        let cap = super::coalescer::batch_bytes_cap(client.frame_body_bytes_max());
        config.batch_bytes_max = config.batch_bytes_max.min(cap);
        let pipeline = Arc::new(Pipeline {
            budget: Budget::new(config.buffer_bytes_max.max(1)),
            tickets: Mutex::default(),
            answered: Notify::new(),
            linger_wake: LingerWake::default(),
            coalescers: Default::default(),
            stages: Arc::default(),
        });
        let inner = Arc::new_cyclic(|me| Inner {
            me: me.clone(),
            client,
            config,
            runtime: tokio::runtime::Handle::current(),
            pipeline: pipeline.clone(),
            state: Mutex::new(State::default()),
            identity: Mutex::new(None),
            identity_init: tokio::sync::Mutex::new(()),
            identity_failed: Mutex::new(None),
            growth_checked_ms: Default::default(),
            started: Instant::now(),
        });
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("producer-linger".into())
            .spawn(move || linger_thread(weak, pipeline))
            .expect("spawn the producer's linger thread");
        inner
    }

    /// Ships the batches whose linger expired, then appends the record if its topic is known
    /// (`None` if not: learn its partitions and [`Inner::add_topic`] first).
    pub(super) fn try_append(
        &self,
        topic: &str,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, &[u8])],
    ) -> Appended {
        let mut st = self.state.lock().expect("producer lock");
        // Under the state lock: a reset (which takes it too) cannot clear the identity before
        // this record's batch ships.
        if self.needs_identity() && self.identity().is_none() {
            return Appended::NoIdentity;
        }
        let now = Instant::now();
        // Under load the sends themselves ship what expired, before the linger thread wakes.
        if st.lingering.front().is_some_and(|l| l.0 <= now) {
            self.ship_expired(&mut st, now);
        }
        if st.topics.contains_key(topic) {
            return Appended::Sent(self.append(
                &mut st,
                topic,
                now,
                timestamp_ms,
                key,
                value,
                headers,
            ));
        }
        Appended::UnknownTopic
    }

    /// Whether batches carry a producer identity (idempotence, or a transactional id).
    fn needs_identity(&self) -> bool {
        self.config.idempotence || self.config.transactional_id.is_some()
    }

    /// Asks the broker for an identity if batches need one and none is held (one ask at a
    /// time: each bumps a transactional id's epoch), then ships the batches that waited for
    /// it (a batch never ships without one: it would go unguarded, stored twice on a retry).
    pub(super) async fn ensure_identity(&self) -> Result<(), ClientError> {
        if !self.needs_identity() || self.identity().is_some() {
            return Ok(());
        }
        let waited_from = Instant::now();
        let _asking = self.identity_init.lock().await;
        if self.identity().is_some() {
            return Ok(());
        }
        if let Some((at, e)) = &*self.identity_failed.lock().expect("identity lock") {
            if *at >= waited_from {
                return Err(e.clone()); // the ask this one waited behind failed just now
            }
        }
        let asked = self.client.init_producer_id(self.config.transactional_id.as_deref()).await;
        let id = match asked {
            Ok(id) => id,
            Err(e) => {
                *self.identity_failed.lock().expect("identity lock") =
                    Some((Instant::now(), e.clone()));
                return Err(e);
            }
        };
        self.identity.lock().expect("identity lock").get_or_insert(id);
        self.ship_all();
        Ok(())
    }

    /// Makes `topic`, of `partitions` partitions, known (unless it already is).
    pub(super) fn add_topic(&self, topic: &str, partitions: u32) {
        let mut st = self.state.lock().expect("producer lock");
        let name: Arc<str> = topic.into();
        let ts = st.topics.entry(name.clone()).or_insert_with(|| TopicState {
            name,
            sticky: 0,
            outstanding: 0,
            partitions: Vec::new(),
        });
        self.grow(ts, partitions);
    }

    /// Gives `ts` partitions up to `partitions` (a topic grows, never shrinks).
    fn grow(&self, ts: &mut TopicState, partitions: u32) {
        while ts.partitions.len() < partitions as usize {
            ts.partitions.push(PartitionState {
                builder: BatchBuilder::new(self.config.batch_bytes_max),
                next_sequence: 0,
                open: None,
                outstanding: 0,
                sender: None,
            });
        }
    }

    /// At most once a second: known topics that the client's metadata (reloaded once it is
    /// `metadata_max_age` old) lists with more partitions grow to them, so records go to
    /// the new partitions too (keyed ones by the new count, as in Kafka).
    pub(super) fn follow_growth(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let now_ms = self.started.elapsed().as_millis() as u64;
        let last = self.growth_checked_ms.load(Relaxed);
        if now_ms < last + GROWTH_CHECK_MS
            || self.growth_checked_ms.compare_exchange(last, now_ms, Relaxed, Relaxed).is_err()
        {
            return;
        }
        let md = self.client.metadata();
        let mut st = self.state.lock().expect("producer lock");
        for t in md.topics.iter().filter(|t| t.error == 0) {
            if let Some(ts) = st.topics.get_mut(t.name.as_str()) {
                self.grow(ts, t.partitions.len() as u32);
            }
        }
    }

    /// Appends under the state lock; ships the batch when it is nearly full or when nothing
    /// it could wait behind is on the wire.
    #[allow(clippy::too_many_arguments)]
    fn append(
        &self,
        st: &mut State,
        topic: &str,
        now: Instant,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, &[u8])],
    ) -> Result<SendFuture, ClientError> {
        st.compact_lingering();
        let State { topics, lingering, .. } = st;
        let ts = topics.get_mut(topic).expect("the caller checked the topic");
        let partition = partition_for(key, ts.sticky, ts.partitions.len() as u32);
        let batch_bytes_max = self.config.batch_bytes_max;
        for round in 0..2 {
            let ps = &mut ts.partitions[partition as usize];
            match ps.builder.append(timestamp_ms, key, value, headers) {
                Ok(()) => {
                    let cost = record_cost(key, value, headers);
                    self.pipeline.budget.take(cost);
                    let open = ps.open.get_or_insert_with(|| {
                        // (A linger past what an Instant holds waits a year: it lingers
                        // until the batch fills or a flush.)
                        let deadline = now
                            .checked_add(self.config.linger)
                            .unwrap_or_else(|| now + Duration::from_secs(365 * 86_400));
                        if lingering.is_empty() {
                            self.pipeline.linger_wake.notify();
                        }
                        lingering.push_back((deadline, ts.name.clone(), partition));
                        OpenBatch {
                            outcome: Arc::new(Outcome::default()),
                            records: 0,
                            cost: 0,
                            deadline,
                            opened: now,
                        }
                    });
                    let future = SendFuture::new(open.outcome.clone(), open.records);
                    open.records += 1;
                    open.cost += cost;
                    let nearly_full = ps.builder.estimated_bytes() * 10 >= batch_bytes_max * 9;
                    // Ship at once when nearly full, or when nothing it could wait behind is
                    // on the wire: batching only happens while requests are outstanding, so a
                    // lightly loaded producer adds no linger to its latency. A keyed record
                    // waits behind its partition's requests; an unkeyed one behind its
                    // topic's, since it may go to any partition (otherwise every move of the
                    // sticky partition would ship a batch of one record).
                    let idle = match key {
                        Some(_) => ps.outstanding == 0,
                        None => ts.outstanding == 0,
                    };
                    if nearly_full || idle {
                        self.ship(ts, partition);
                    }
                    return Ok(future);
                }
                Err(wire::BuildError::Full { .. } | wire::BuildError::TooManyRecords { .. })
                    if round == 0 && !ps.builder.is_empty() =>
                {
                    self.ship(ts, partition)
                }
                Err(e) => return Err(ClientError::Record(e.to_string())),
            }
        }
        unreachable!("a record that does not fit an empty batch fails in the second round")
    }

    /// Finishes a partition's open batch and hands it to that partition's sender task.
    fn ship(&self, ts: &mut TopicState, partition: u32) {
        let identity = self.identity();
        if identity.is_none() && self.needs_identity() {
            // After a reset: it ships once the next identity came (`ensure_identity`).
            return;
        }
        let ps = &mut ts.partitions[partition as usize];
        let Some(open) = ps.open.take() else { return };
        if ts.sticky % ts.partitions.len() as u32 == partition {
            ts.sticky = ts.sticky.wrapping_add(1); // the next unkeyed records go elsewhere
        }
        let ps = &mut ts.partitions[partition as usize];
        if let Some((id, epoch)) = identity {
            ps.builder.set_producer(id, epoch, ps.next_sequence);
        }
        let batch = match ps.builder.finish() {
            Ok(b) => {
                if identity.is_some() {
                    ps.next_sequence = sequence_after(ps.next_sequence, open.records);
                }
                b
            }
            Err(e) => {
                ps.builder.clear();
                self.pipeline.budget.give(open.cost);
                open.outcome.complete(Err(ClientError::Record(e.to_string())));
                return;
            }
        };
        let tx = ps.sender.get_or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            self.runtime.spawn(partition_sender(
                self.client.clone(),
                self.config.clone(),
                self.pipeline.clone(),
                self.me.clone(),
                ts.name.clone(),
                partition,
                rx,
            ));
            tx
        });
        ps.outstanding += 1;
        ts.outstanding += 1;
        let ticket = {
            let mut t = self.pipeline.tickets.lock().expect("tickets lock");
            let ticket = t.next;
            t.next += 1;
            t.open.insert(ticket);
            ticket
        };
        let shipped = Instant::now();
        self.pipeline.stages.record_between(ProducerStage::Linger, open.opened, shipped);
        let shipment = Shipment {
            batch,
            outcome: open.outcome,
            cost: open.cost,
            opened: open.opened,
            shipped,
            ticket,
        };
        if let Err(mpsc::error::SendError(s)) = tx.send(shipment) {
            ts.partitions[partition as usize].outstanding -= 1;
            ts.outstanding -= 1;
            self.pipeline.finished(&s, Err(ClientError::Shutdown), None);
        }
    }

    /// Ships every open batch now.
    pub(super) fn ship_all(&self) {
        let mut st = self.state.lock().expect("producer lock");
        for ts in st.topics.values_mut() {
            for p in 0..ts.partitions.len() as u32 {
                self.ship(ts, p);
            }
        }
    }

    /// Ships the batches whose linger expired; returns the next deadline.
    fn ship_expired(&self, st: &mut State, now: Instant) -> Option<Instant> {
        while let Some((deadline, topic, partition)) = st.lingering.front() {
            if *deadline > now {
                return Some(*deadline);
            }
            if let Some(ts) = st.topics.get_mut(topic) {
                let p = *partition;
                // Skip the entries of batches that shipped before their deadline.
                // (A topic forgotten and known again may have fewer partitions now.)
                let open = ts.partitions.get(p as usize).and_then(|ps| ps.open.as_ref());
                if open.is_some_and(|o| o.deadline == *deadline) {
                    self.ship(ts, p);
                }
            }
            st.lingering.pop_front();
        }
        None
    }

    /// The idempotent producer id and epoch, once the broker gave them.
    pub(super) fn identity(&self) -> Option<(i64, i16)> {
        *self.identity.lock().expect("identity lock")
    }

    /// A batch carrying identity `lost` failed for good after its sequence was taken: the broker
    /// waits for that sequence on its partition, and would refuse every later batch as out
    /// of order (until it forgot the producer, an hour by default). Unless that identity was
    /// replaced already, the next send asks for a new one (a producer id the broker does not
    /// know, or with a transactional id the next epoch) and every partition starts again at
    /// sequence 0. Batches in flight under the old identity may still fail.
    pub(super) fn sequence_lost(&self, lost: (i64, i16)) {
        {
            let mut st = self.state.lock().expect("producer lock");
            let mut identity = self.identity.lock().expect("identity lock");
            if *identity != Some(lost) {
                return;
            }
            *identity = None;
            for ts in st.topics.values_mut() {
                for ps in &mut ts.partitions {
                    ps.next_sequence = 0;
                }
            }
        }
        // The next identity now, not at the next send: batches gathering meanwhile wait for
        // it. Failing, they fail (nothing else would ship them).
        let Some(inner) = self.me.upgrade() else { return };
        self.runtime.spawn(async move {
            if let Err(e) = inner.ensure_identity().await {
                inner.fail_open(&e);
            }
        });
    }

    /// Completes a partition's open batch, if any, with `error`, and gives its room back.
    fn fail_unshipped(&self, ps: &mut PartitionState, error: ClientError) {
        if let Some(open) = ps.open.take() {
            ps.builder.clear();
            self.pipeline.budget.give(open.cost);
            open.outcome.complete(Err(error));
        }
    }

    /// Completes every open batch with `error` (they cannot ship: no identity to be had).
    fn fail_open(&self, error: &ClientError) {
        let mut st = self.state.lock().expect("producer lock");
        if self.identity().is_some() {
            return; // a send got one meanwhile: they ship
        }
        for ts in st.topics.values_mut() {
            for ps in &mut ts.partitions {
                self.fail_unshipped(ps, error.clone());
            }
        }
    }

    /// A batch of `topic` failed as unknown after a metadata refresh (deleted, or fewer
    /// partitions now): the topic's state goes (its open batches ship first, to the same
    /// end), so the next send looks the topic up again (and fails at once if it is gone,
    /// or uses its partitions now). Its partitions' sequences go with it: with idempotence
    /// the producer takes a new identity too.
    pub(super) fn forget_topic(&self, topic: &str) {
        let gone = self.state.lock().expect("producer lock").topics.remove(topic);
        let Some(mut ts) = gone else { return };
        for p in 0..ts.partitions.len() as u32 {
            self.ship(&mut ts, p);
            // Not shipped (no identity): they would have failed the same way.
            let error = ClientError::UnknownTopic(topic.to_owned());
            self.fail_unshipped(&mut ts.partitions[p as usize], error);
        }
        if let Some(identity) = self.identity() {
            self.sequence_lost(identity);
        }
    }

    /// A partition's batch was answered: when its pipeline emptied, ship what gathered
    /// meanwhile rather than wait for the linger timer.
    pub(super) fn answered(&self, topic: &str, partition: u32) {
        let mut st = self.state.lock().expect("producer lock");
        let Some(ts) = st.topics.get_mut(topic) else { return };
        ts.outstanding = ts.outstanding.saturating_sub(1);
        // A batch shipped before its topic was forgotten and known again with fewer
        // partitions (deleted and made again, or a refresh from a shard that had not yet
        // applied a growth) answers for a partition it no longer has.
        let Some(ps) = ts.partitions.get_mut(partition as usize) else { return };
        ps.outstanding = ps.outstanding.saturating_sub(1);
        if ps.outstanding == 0 {
            self.ship(ts, partition);
        }
        if ts.outstanding == 0 {
            // Unkeyed records gathering on the sticky partition waited for the whole topic.
            let sticky = ts.sticky % ts.partitions.len() as u32;
            self.ship(ts, sticky);
        }
    }
}

impl Pipeline {
    /// Completes a batch's records and returns its budget.
    /// `answered`: when the broker's answer was decoded (for the `completion` stage), if it
    /// came through the coalescer.
    pub(super) fn finished(&self, s: &Shipment, result: BatchResult, answered: Option<Instant>) {
        self.budget.give(s.cost);
        s.outcome.complete(result);
        let now = Instant::now();
        if let Some(at) = answered {
            self.stages.record_between(ProducerStage::Completion, at, now);
        }
        self.stages.record_between(ProducerStage::Batch, s.opened, now);
        self.tickets.lock().expect("tickets lock").open.remove(&s.ticket);
        self.answered.notify_waiters();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle is gone: ship what is open; the senders finish in the background
        // and end when their queues close (the state, holding their senders, drops next).
        let mut st = std::mem::take(&mut *self.state.lock().unwrap_or_else(|e| e.into_inner()));
        for ts in st.topics.values_mut() {
            for p in 0..ts.partitions.len() as u32 {
                self.ship(ts, p);
                // Not shipped (no identity to be had): its records fail, not hang.
                self.fail_unshipped(&mut ts.partitions[p as usize], ClientError::Shutdown);
            }
        }
        self.pipeline.linger_wake.notify();
    }
}

/// Wakes [`linger_thread`]: a batch opened while none lingered, or the producer went away.
/// A wake that comes while the thread is not waiting is kept for its next wait.
#[derive(Debug, Default)]
struct LingerWake {
    woken: Mutex<bool>,
    cv: Condvar,
}

impl LingerWake {
    fn notify(&self) {
        *self.woken.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cv.notify_one();
    }

    /// Returns at `deadline` (never if `None`) or at a wake, whichever comes first.
    fn wait(&self, deadline: Option<Instant>) {
        let mut woken = self.woken.lock().unwrap_or_else(|e| e.into_inner());
        while !*woken {
            woken = match deadline {
                None => self.cv.wait(woken).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return;
                    }
                    self.cv.wait_timeout(woken, d - now).unwrap_or_else(|e| e.into_inner()).0
                }
            };
        }
        *woken = false;
    }
}

/// Ships batches whose linger expired, on a thread of its own until the producer is gone: a
/// runtime timer has millisecond resolution, so a 200 µs linger became up to a millisecond
/// whenever no later send shipped the batch first (issue 26); a condition variable's timeout
/// wakes within tens of microseconds.
fn linger_thread(inner: Weak<Inner>, pipeline: Arc<Pipeline>) {
    precise_wakes();
    loop {
        let next = match inner.upgrade() {
            Some(inner) => {
                let mut st = inner.state.lock().expect("producer lock");
                inner.ship_expired(&mut st, Instant::now())
            }
            None => return,
        };
        pipeline.linger_wake.wait(next);
    }
}

/// Asks the kernel to wake this thread's timed waits on time: with the default timer slack
/// (50 µs) a batch that lingered its whole 200 µs shipped after ~260 µs at p99 (fixed-rate
/// runs, `perf/results/2026-12-06-linger-slack`). Best effort; Linux only.
fn precise_wakes() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument (the slack in ns) and changes only
    // the calling thread's timer slack; no memory is passed.
    let _ = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::LingerWake;

    #[test]
    fn a_wake_before_the_wait_is_kept_and_a_deadline_or_a_wake_ends_the_wait() {
        let w = LingerWake::default();
        w.notify();
        w.wait(None); // returns at once: the wake was kept
        let d = Instant::now() + Duration::from_millis(2);
        w.wait(Some(d));
        assert!(Instant::now() >= d, "a deadline wait never returns early");
        let w = Arc::new(LingerWake::default());
        let waiter = {
            let w = w.clone();
            std::thread::spawn(move || w.wait(None))
        };
        std::thread::sleep(Duration::from_millis(5));
        w.notify();
        waiter.join().expect("woken");
    }
}
