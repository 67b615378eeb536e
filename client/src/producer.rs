//! The producer: per-partition batching with linger, a bounded send buffer, and ordered
//! pipelined sends to each partition's owner.
//!
//! `send` appends the record straight into its partition's open batch (one copy of key and
//! value, under a short mutex; no task hand-off per record) and returns a future that
//! resolves when that batch is answered. All records of a batch share one completion cell, so
//! a record costs no channel and no allocation of its own.
//!
//! Batching happens while requests are outstanding: a record with nothing on the wire ahead
//! of it ships at once, records arriving meanwhile gather into the next batch, which ships
//! when nearly full, when its linger expires, or as soon as the outstanding requests are
//! answered (so light load pays no linger and heavy load gets full batches). "Ahead of it"
//! is its partition's requests for a keyed record and its topic's for an unkeyed one, which
//! may go to any partition. Linger deadlines are checked by every `send` (sub-millisecond
//! under load) and by a timer task (the runtime's millisecond resolution) when sends stop.
//!
//! Backpressure: `send` waits while the bytes of records accepted and not yet answered reach
//! `buffer_bytes_max`, instead of letting a queue grow. Each partition has a sender task that
//! keeps up to `in_flight_per_partition_max` requests on the wire, sent in batch order and
//! along one connection (a switch, e.g. from the public port to the owner's shard port, waits
//! for the requests in flight, since a forwarded request can land after a later direct one); a
//! retriable error resends the batch (with more than one request in flight a retry can
//! reorder batches of a partition: set the limit to 1 for strict order under failures).
//! Dropping the last handle ships what is open; the sender tasks finish in the background.
//!
//! Partitioner: records with a key go to `hash(key) % partitions` (FNV-1a, stable across
//! runs and clients); records without a key stick to one partition until its batch ships.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesOrdered, StreamExt};
use tokio::sync::{mpsc, Notify};
use wire::{
    AckLevel, BatchBuilder, ErrorCode, ProducePartition, ProduceRequest, ProduceResponse,
    ProduceTopic,
};

use crate::client::Client;
use crate::connection::Connection;
use crate::error::ClientError;

/// Producer settings.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Ack level of every request.
    pub ack: AckLevel,
    /// How long a batch may wait for more records.
    pub linger: Duration,
    /// Largest batch.
    pub batch_bytes_max: usize,
    /// Bytes of records accepted but not yet answered (open batches and batches on the
    /// wire); at this limit `send` waits (backpressure instead of an unbounded queue).
    pub buffer_bytes_max: usize,
    /// Requests in flight per partition.
    pub in_flight_per_partition_max: usize,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            ack: AckLevel::Durable,
            linger: Duration::from_micros(500),
            batch_bytes_max: 256 << 10,
            buffer_bytes_max: 32 << 20,
            in_flight_per_partition_max: 5,
        }
    }
}

/// FNV-1a 64-bit: the key partitioner's hash.
pub fn key_hash(key: &[u8]) -> u64 {
    key.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// How a batch ended: `(partition, base offset)` or the error every record of it gets.
/// The base offset is `u64::MAX` when the broker does not report offsets (ack `none`).
type BatchResult = Result<(u32, u64), ClientError>;

/// The completion cell all records of one batch share.
#[derive(Debug, Default)]
struct Outcome {
    result: OnceLock<BatchResult>,
    wakers: Mutex<Vec<Option<Waker>>>,
}

impl Outcome {
    fn complete(&self, result: BatchResult) {
        let _ = self.result.set(result);
        let wakers = std::mem::take(&mut *self.wakers.lock().expect("outcome lock"));
        for w in wakers.into_iter().flatten() {
            w.wake();
        }
    }
}

/// Resolves to where a record landed: `(partition, offset)`.
#[derive(Debug)]
pub struct SendFuture {
    outcome: Arc<Outcome>,
    index: u32,
    /// This future's entry in `outcome.wakers`, once registered.
    slot: Option<usize>,
}

impl SendFuture {
    fn ready(&self, r: &BatchResult) -> Result<(u32, u64), ClientError> {
        match r {
            Ok((partition, base)) if *base == u64::MAX => Ok((*partition, u64::MAX)),
            Ok((partition, base)) => Ok((*partition, base + u64::from(self.index))),
            Err(e) => Err(e.clone()),
        }
    }
}

impl std::future::Future for SendFuture {
    type Output = Result<(u32, u64), ClientError>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Self::Output> {
        if let Some(r) = self.outcome.result.get() {
            return Poll::Ready(self.ready(r));
        }
        let outcome = self.outcome.clone();
        let mut wakers = outcome.wakers.lock().expect("outcome lock");
        // `complete` sets the result before it takes the wakers: checked under the lock, no
        // wake-up is lost.
        if let Some(r) = outcome.result.get() {
            drop(wakers);
            return Poll::Ready(self.ready(r));
        }
        match self.slot {
            Some(i) => match &mut wakers[i] {
                Some(w) if w.will_wake(cx.waker()) => {}
                w => *w = Some(cx.waker().clone()),
            },
            None => {
                wakers.push(Some(cx.waker().clone()));
                self.slot = Some(wakers.len() - 1);
            }
        }
        Poll::Pending
    }
}

/// See the module docs. Cheap to clone; clones share the batches.
#[derive(Debug, Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

/// Bytes of records accepted and not yet answered, against `buffer_bytes_max`.
#[derive(Debug)]
struct Budget {
    bytes: AtomicUsize,
    freed: Notify,
    max: usize,
}

impl Budget {
    /// Waits until the accepted-but-unanswered bytes are below the limit.
    async fn wait_for_room(&self) {
        if self.bytes.load(Ordering::Acquire) < self.max {
            return;
        }
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.bytes.load(Ordering::Acquire) < self.max {
                return;
            }
            freed.await;
        }
    }

    fn take(&self, n: usize) {
        self.bytes.fetch_add(n, Ordering::AcqRel);
    }

    fn give(&self, n: usize) {
        self.bytes.fetch_sub(n, Ordering::AcqRel);
        self.freed.notify_waiters();
    }
}

/// What the background tasks share with the handles (not the handles' lifetime).
#[derive(Debug)]
struct Shared {
    budget: Budget,
    /// Batches shipped and not yet answered, over all partitions (for `flush`).
    outstanding: AtomicUsize,
    answered: Notify,
    /// Wakes the linger task when a batch opens or the producer goes away.
    linger_wake: Notify,
}

#[derive(Debug)]
struct Inner {
    /// This producer, for the sender tasks (they must not keep it alive).
    me: Weak<Inner>,
    client: Client,
    config: ProducerConfig,
    runtime: tokio::runtime::Handle,
    shared: Arc<Shared>,
    state: Mutex<State>,
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
                .and_then(|ts| ts.partitions[*p as usize].open.as_ref())
                .is_some_and(|o| o.deadline == *deadline)
        });
        self.lingering_compact_at = (self.lingering.len() * 2).max(LINGERING_COMPACT_MIN);
    }
}

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
}

#[derive(Debug)]
struct Shipment {
    batch: wire::AlignedVec,
    outcome: Arc<Outcome>,
    cost: usize,
}

/// What a record takes from the send buffer.
fn record_cost(key: Option<&[u8]>, value: Option<&[u8]>, headers: &[(&str, &[u8])]) -> usize {
    16 + key.map_or(0, <[u8]>::len)
        + value.map_or(0, <[u8]>::len)
        + headers.iter().map(|(k, v)| k.len() + v.len() + 8).sum::<usize>()
}

impl Producer {
    /// A producer on `client`; its background tasks run on the current tokio runtime.
    pub fn new(client: Client, config: ProducerConfig) -> Producer {
        let shared = Arc::new(Shared {
            budget: Budget {
                bytes: AtomicUsize::new(0),
                freed: Notify::new(),
                max: config.buffer_bytes_max.max(1),
            },
            outstanding: AtomicUsize::new(0),
            answered: Notify::new(),
            linger_wake: Notify::new(),
        });
        let inner = Arc::new_cyclic(|me| Inner {
            me: me.clone(),
            client,
            config,
            runtime: tokio::runtime::Handle::current(),
            shared: shared.clone(),
            state: Mutex::new(State::default()),
        });
        tokio::spawn(linger_loop(Arc::downgrade(&inner), shared));
        Producer { inner }
    }

    /// A producer whose background tasks run on `rt` (for callers outside a runtime).
    pub fn new_in(
        rt: &tokio::runtime::Runtime,
        client: Client,
        config: ProducerConfig,
    ) -> Producer {
        let _guard = rt.enter();
        Producer::new(client, config)
    }

    /// Appends a record to its partition's batch (waiting while the send buffer is full) and
    /// returns a future of its `(partition, offset)`. Fails at once for an unknown topic or a
    /// record that cannot fit in a batch.
    pub async fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, &[u8])],
    ) -> Result<SendFuture, ClientError> {
        let inner = &self.inner;
        inner.shared.budget.wait_for_room().await;
        let timestamp_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        loop {
            {
                let mut st = inner.state.lock().expect("producer lock");
                let now = Instant::now();
                // The linger timer has the runtime's millisecond resolution; under load the
                // sends themselves keep a sub-millisecond linger.
                if st.lingering.front().is_some_and(|l| l.0 <= now) {
                    inner.ship_expired(&mut st, now);
                }
                if st.topics.contains_key(topic) {
                    return inner.append(&mut st, topic, now, timestamp_ms, key, value, headers);
                }
            }
            let partitions = inner.client.partition_count(topic).await?;
            let mut st = inner.state.lock().expect("producer lock");
            let name: Arc<str> = topic.into();
            st.topics.entry(name.clone()).or_insert_with(|| TopicState {
                name,
                sticky: 0,
                outstanding: 0,
                partitions: (0..partitions)
                    .map(|_| PartitionState {
                        builder: BatchBuilder::new(inner.config.batch_bytes_max),
                        open: None,
                        outstanding: 0,
                        sender: None,
                    })
                    .collect(),
            });
        }
    }

    /// Ships every open batch now and waits until every shipped batch was answered.
    pub async fn flush(&self) -> Result<(), ClientError> {
        self.inner.ship_all();
        let shared = &self.inner.shared;
        loop {
            let answered = shared.answered.notified();
            tokio::pin!(answered);
            answered.as_mut().enable();
            if shared.outstanding.load(Ordering::Acquire) == 0 {
                return Ok(());
            }
            answered.await;
        }
    }
}

impl Inner {
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
        let count = ts.partitions.len() as u32;
        let partition = match key {
            Some(k) => (key_hash(k) % u64::from(count)) as u32,
            None => ts.sticky % count,
        };
        let batch_bytes_max = self.config.batch_bytes_max;
        for round in 0..2 {
            let ps = &mut ts.partitions[partition as usize];
            match ps.builder.append(timestamp_ms, key, value, headers) {
                Ok(()) => {
                    let cost = record_cost(key, value, headers);
                    self.shared.budget.take(cost);
                    let open = ps.open.get_or_insert_with(|| {
                        let deadline = now + self.config.linger;
                        if lingering.is_empty() {
                            self.shared.linger_wake.notify_one();
                        }
                        lingering.push_back((deadline, ts.name.clone(), partition));
                        OpenBatch {
                            outcome: Arc::new(Outcome::default()),
                            records: 0,
                            cost: 0,
                            deadline,
                        }
                    });
                    let future = SendFuture {
                        outcome: open.outcome.clone(),
                        index: open.records,
                        slot: None,
                    };
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
        let ps = &mut ts.partitions[partition as usize];
        let Some(open) = ps.open.take() else { return };
        if ts.sticky % ts.partitions.len() as u32 == partition {
            ts.sticky = ts.sticky.wrapping_add(1); // the next unkeyed records go elsewhere
        }
        let ps = &mut ts.partitions[partition as usize];
        let batch = match ps.builder.finish() {
            Ok(b) => b,
            Err(e) => {
                ps.builder.clear();
                self.shared.budget.give(open.cost);
                open.outcome.complete(Err(ClientError::Record(e.to_string())));
                return;
            }
        };
        let tx = ps.sender.get_or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            self.runtime.spawn(partition_sender(
                self.client.clone(),
                self.config.clone(),
                self.shared.clone(),
                self.me.clone(),
                ts.name.clone(),
                partition,
                rx,
            ));
            tx
        });
        ps.outstanding += 1;
        ts.outstanding += 1;
        self.shared.outstanding.fetch_add(1, Ordering::AcqRel);
        let shipment = Shipment { batch, outcome: open.outcome, cost: open.cost };
        if let Err(mpsc::error::SendError(s)) = tx.send(shipment) {
            ts.partitions[partition as usize].outstanding -= 1;
            ts.outstanding -= 1;
            self.shared.finished(&s, Err(ClientError::Shutdown));
        }
    }

    fn ship_all(&self) {
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
                if ts.partitions[p as usize].open.as_ref().is_some_and(|o| o.deadline == *deadline)
                {
                    self.ship(ts, p);
                }
            }
            st.lingering.pop_front();
        }
        None
    }

    /// A partition's batch was answered: when its pipeline emptied, ship what gathered
    /// meanwhile rather than wait for the linger timer.
    fn answered(&self, topic: &str, partition: u32) {
        let mut st = self.state.lock().expect("producer lock");
        let Some(ts) = st.topics.get_mut(topic) else { return };
        ts.outstanding = ts.outstanding.saturating_sub(1);
        let ps = &mut ts.partitions[partition as usize];
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

impl Shared {
    /// Completes a batch's records and returns its budget.
    fn finished(&self, s: &Shipment, result: BatchResult) {
        self.budget.give(s.cost);
        s.outcome.complete(result);
        self.outstanding.fetch_sub(1, Ordering::AcqRel);
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
            }
        }
        self.shared.linger_wake.notify_one();
    }
}

/// Ships batches whose linger expired.
async fn linger_loop(inner: Weak<Inner>, shared: Arc<Shared>) {
    loop {
        let wake = shared.linger_wake.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        let next = match inner.upgrade() {
            Some(inner) => {
                let mut st = inner.state.lock().expect("producer lock");
                inner.ship_expired(&mut st, Instant::now())
            }
            None => return,
        };
        match next {
            Some(deadline) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline.into()) => {}
                    _ = wake => {}
                }
            }
            None => wake.await,
        }
    }
}

/// Sends one partition's batches in order, keeping up to `in_flight_per_partition_max` on
/// the wire.
///
/// A batch is sent the moment it arrives while there is room, not after the oldest answer:
/// the loop waits on the next shipment and the oldest response at once. Answers complete in
/// send order (`FuturesOrdered`), so a partition's records resolve in offset order.
async fn partition_sender(
    client: Client,
    config: ProducerConfig,
    shared: Arc<Shared>,
    inner: Weak<Inner>,
    topic: Arc<str>,
    partition: u32,
    mut rx: mpsc::UnboundedReceiver<Shipment>,
) {
    let in_flight_max = config.in_flight_per_partition_max.max(1);
    let mut in_flight = FuturesOrdered::new();
    // The connection the requests in flight went out on: a partition's requests are appended
    // in order only along one connection (one to the public port is forwarded and can land
    // after a later one sent straight to the owner's shard port).
    let mut on: Option<Arc<Connection>> = None;
    let mut open = true;
    let complete = |shipment: Shipment, result: BatchResult| {
        shared.finished(&shipment, result);
        if let Some(inner) = inner.upgrade() {
            inner.answered(&topic, partition);
        }
    };
    loop {
        let room = open && in_flight.len() < in_flight_max;
        tokio::select! {
            // Answers first: they free budget and may ship the next batch.
            biased;
            Some((shipment, result)) = in_flight.next(), if !in_flight.is_empty() => {
                complete(shipment, result);
            }
            next = rx.recv(), if room => match next {
                Some(shipment) => {
                    let conn = client.owner_conn(&topic, partition).await.ok();
                    let same = match (&conn, &on) {
                        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                        _ => false,
                    };
                    if !same {
                        // Switching connections: let what is in flight land first.
                        while let Some((s, r)) = in_flight.next().await {
                            complete(s, r);
                        }
                    }
                    on = conn.clone();
                    let pending = conn.and_then(|c| {
                        send_batch(&c, &client, &config, &topic, partition, &shipment.batch)
                    });
                    let (client, config, topic) = (client.clone(), config.clone(), topic.clone());
                    in_flight.push_back(async move {
                        let result =
                            finish_one(&client, &config, &topic, partition, &shipment, pending)
                                .await;
                        (shipment, result)
                    });
                }
                None => open = false,
            },
            else => return,
        }
    }
}

fn send_batch(
    conn: &Connection,
    client: &Client,
    config: &ProducerConfig,
    topic: &str,
    partition: u32,
    batch: &[u8],
) -> Option<crate::connection::PendingResponse> {
    conn.send(&ProduceRequest {
        ack: config.ack,
        timeout_ms: client.config().request_timeout.as_millis() as u32,
        topics: vec![ProduceTopic {
            name: topic.into(),
            partitions: vec![ProducePartition { partition, batches: batch.to_vec() }],
        }],
    })
    .ok()
}

/// Waits for a request's answer (retrying via the client on a retriable failure).
async fn finish_one(
    client: &Client,
    config: &ProducerConfig,
    topic: &str,
    partition: u32,
    shipment: &Shipment,
    pending: Option<crate::connection::PendingResponse>,
) -> BatchResult {
    let first = match pending {
        Some(p) => match p.wait().await {
            Ok(frame) => decode(&frame, topic, partition),
            Err(e) => Err(e),
        },
        None => Err(ClientError::Closed { addr: "0.0.0.0:0".parse().expect("addr") }),
    };
    let base = match first {
        Err(e) if e.is_retriable() => client
            .produce_batches(topic, partition, &shipment.batch, config.ack)
            .await
            .map(|r| r.base_offset),
        other => other,
    }?;
    Ok((partition, u64::try_from(base).unwrap_or(u64::MAX)))
}

fn decode(
    frame: &crate::connection::Frame,
    topic: &str,
    partition: u32,
) -> Result<i64, ClientError> {
    if frame.header.has_flag(wire::constants::FLAG_ERROR) {
        let e: wire::ErrorBody =
            wire::decode_body(frame.body()).map_err(|e| ClientError::Protocol(e.to_string()))?;
        return Err(ClientError::Partition {
            topic: topic.into(),
            partition,
            code: ErrorCode::from_u16(e.code).unwrap_or(ErrorCode::UnknownServerError),
        });
    }
    let resp: ProduceResponse =
        wire::decode_body(frame.body()).map_err(|e| ClientError::Protocol(e.to_string()))?;
    let r = resp
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or_else(|| ClientError::Protocol("empty produce response".into()))?;
    match ErrorCode::from_u16(r.error) {
        Some(ErrorCode::None) => Ok(r.base_offset),
        code => Err(ClientError::Partition {
            topic: topic.into(),
            partition,
            code: code.unwrap_or(ErrorCode::UnknownServerError),
        }),
    }
}
